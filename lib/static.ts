// STUB — owned by the static/server helper; the exported names and types below are the contract.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Limits } from './limits.js';

/** What the static engine needs to know of a file to answer conditionals and ranges. */
export interface FileInfo {
  size: number;
  mtimeMs: number;
  ino: number;
}

/** A regular file opened for reading; `stream` or `close` must be called exactly once. */
export interface OpenFile extends FileInfo {
  /** Bytes `start`..`end` inclusive; the stream owns the descriptor and closes it on end, error or destroy. */
  stream(start: number, end: number): Readable;
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
}

export interface StaticOptions {
  limits: Limits;
  /** `Cache-Control` for served files. Default `public, max-age=0, must-revalidate`. */
  cacheControl?: string;
}

export interface StaticEngine {
  /** Answers GET/HEAD for `rawPath` (still percent-encoded, no query string) from `source`. Never rejects. */
  serve(req: IncomingMessage, res: ServerResponse, source: FileSource, rawPath: string): Promise<void>;
}

export function createStatic(_options: StaticOptions): StaticEngine {
  throw new Error('not implemented');
}

export function createDirectorySource(_root: string, _options?: { dotfiles?: boolean }): FileSource {
  throw new Error('not implemented');
}
