// What the static engine reads from: a `FileSource` (a mapped directory, the upload storage) and the
// files it opens.
import type { Readable } from 'node:stream';

/** What the static engine needs to know of a file to answer conditionals and ranges. */
export interface FileInfo {
  size: number;
  mtimeMs: number;
  ino: number;
}

/** A regular file opened for reading; exactly one of `stream`, `read` or `close` must be called, once. */
export interface OpenFile extends FileInfo {
  /**
   * Written by someone not trusted to run script on this origin (an end user's upload, trust.ts):
   * served with `Content-Security-Policy: sandbox`, active types as attachments of a type that
   * cannot run (see `untrustedView`).
   */
  untrusted?: boolean;
  /** Bytes `start`..`end` inclusive; the stream owns the descriptor and closes it on end, error or destroy. */
  stream(start: number, end: number): Readable;
  /**
   * Optional: bytes `start`..`end` inclusive in one buffer (fewer bytes if the file shrank), then
   * the descriptor is closed. The engine uses it for small answers only.
   */
  read?(start: number, end: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Where the static engine reads from: a mapped directory, or the upload storage. `rel` is always a
 * decoded, validated relative path (`a/b.txt`: no empty, `.` or `..` segment, no backslash, no NUL,
 * not absolute). `null` means 404: absent, not a regular file, a dotfile when those are off, or
 * outside the root once symlinks are resolved.
 */
export interface FileSource {
  stat(rel: string): Promise<FileInfo | null>;
  open(rel: string): Promise<OpenFile | null>;
  /**
   * Optional: `stat` without a thread-pool round trip, for revalidating a file the engine holds in
   * memory. `undefined` means "cannot answer cheaply now, use `stat`".
   */
  statSync?(rel: string): FileInfo | null | undefined;
  /** Optional: `open` without the thread pool, for a file served recently. `undefined`: use `open`. */
  openSync?(rel: string): OpenFile | null | undefined;
}