// The storage seam: every read and write of uploaded bytes goes through `Storage`, so the HTTP layer
// (route.ts) never touches `fs` for them. Two implementations: the local disk layout
// (local-storage.ts, docs/protocol.md §1) and an S3-compatible store (s3-storage.ts, §8).
import { WharfError, fromFsError } from '../common/errors.js';
import type { Limits } from '../common/limits.js';
import type { FileSource } from '../static/engine.js';
import type { SyncIo } from '../static/sync-io.js';
import type { Quota } from './quota.js';
import type { UploadLife } from './upload-meta.js';
import type { Trust, UploadRecord } from './upload-record.js';

/**
 * A staged file being written. Not a stream: the multipart parser hands it slices as it parses them
 * (`sinkPart`), with no `Writable`, pipe or per-chunk callback between the socket and the file.
 */
export interface StagedFile {
  /**
   * Takes `chunk`, kept until written (it must not change meanwhile). False when the file holds
   * enough: write more once the `drain` given to `Staging.file` was called. Ignored after `end`,
   * `destroy` or a failure.
   */
  write(chunk: Buffer): boolean;
  /** No more bytes: `done` resolves once every one is stored and the file closed. */
  end(): void;
  /** Gives up on the file: `done` rejects with `err` once a write under way has landed and the descriptor is closed. */
  destroy(err: Error): void;
  /**
   * Settles once the file's descriptor is closed: with its size after `end`, or with the first I/O
   * error (or `destroy`'s). Nobody has to watch it: its staging does.
   */
  readonly done: Promise<number>;
}

/**
 * One request's files on their way in. Nothing staged is visible to readers until `commit`, which
 * publishes every upload id of the request together (each id appears whole or not at all); `abort`
 * removes every staged byte. After either, the staging cannot be used again.
 */
export interface Staging {
  /**
   * A file `<id>/<rel>` to write (`rel` already checked by `checkFilename`). Bytes are coalesced and
   * written with few syscalls; backpressure is real: `write()` returns false while a batch is on its
   * way to disk and enough is held behind it, and `drain` is called (never from inside `write`)
   * when it can take more.
   */
  file(id: string, rel: string, drain: () => void): StagedFile;
  /**
   * Stages the whole file `<id>/<rel>` from `chunks` (a small file the parser gathered: no stream);
   * resolves with its size. On the event loop when it is under `syncWriteBelow`, as with `file`.
   */
  put(id: string, rel: string, chunks: Buffer[]): Promise<number>;
  /** Stages a copy of the local file `from` as `<id>/<rel>` (copy-on-write where the filesystem can); resolves with its size. */
  copy(id: string, rel: string, from: string): Promise<number>;
  /**
   * Publishes every upload id staged, each with `record` (trust.ts) written next to its files first,
   * so an id never appears without it. Every file must be finished. On failure nothing is published.
   */
  commit(record: UploadRecord): Promise<void>;
  /** Stops writers, waits for their descriptors to close and removes every staged byte. Idempotent. */
  abort(): Promise<void>;
}

export interface Storage {
  /**
   * The read side (`stat`, ranged `open`) for `<id>/<path>`, served by the static engine; anything
   * whose first segment is not an upload id is absent, and so is each upload's record. A file
   * `open` returns is marked `untrusted` unless its upload's record says it is the app's own.
   */
  readonly source: FileSource;
  /**
   * Creates the layout and this node's staging area, removes what dead nodes left in the temp area
   * (their leases stale), and keeps this node's lease fresh until `close`. Rejects when the temp
   * area or `f/` cannot be written.
   */
  start(): Promise<void>;
  /** Proves storage writable now (a write in this node's area, `f/` writable); rejects with the `fs` error. */
  probe(): Promise<void>;
  /** Stops its background work (the expiry sweep) and removes this node's staging area: once every staging was settled. */
  close(): Promise<void>;
  stage(): Staging;
  /** Copies the stored file `<id>/<rel>` to the local path `to` (through a temp file next to it, then a rename); resolves with its size. 404 if absent. */
  copyOut(id: string, rel: string, to: string): Promise<number>;
  /** Removes upload `id` whole, at once for readers; false if there was none. */
  remove(id: string): Promise<boolean>;
  /** Who upload `id` was recorded as made by (`UploadRecord.owner`); undefined when nobody (or no such upload). */
  owner(id: string): Promise<string | undefined>;
  /**
   * Optional: the quota (`limits.storeSize`) uploads are held to while they arrive; without it,
   * none. Committed and removed bytes are counted by the storage itself.
   */
  readonly quota?: Quota;
  /** Optional: the life (deadline, `once`) of upload `id`; null when there is none or it is gone for readers. */
  life?(id: string): Promise<UploadLife | null>;
}

/** What `createFileServer` tells the storage it builds (`FileServerOptions.storage`). */
export interface StorageContext {
  /** The limits in force: `uploadTtl` and `storeSize` are the storage's to keep, `fileSize` sizes its writes. */
  limits: Limits;
  /** This process among the nodes sharing the store (`FileServerOptions.nodeId`). */
  nodeId: string;
  /** The trust of an upload stored without a record (`trustUnrecordedUploads`). */
  unrecorded: Trust;
  syncIo: SyncIo;
  warn: (message: string) => void;
}

/**
 * Builds the storage of a file server, told what the server decided (`FileServerOptions.storage`):
 * `s3Storage({ client, bucket })`, or the local data dir by default.
 */
export type StorageFactory = (context: StorageContext) => Storage;

/**
 * Maps a storage failure to what the uploader is told. Unlike a read, a write that fails for lack of
 * permission is the server's fault, not the client's, so it is a 500 rather than `fromFsError`'s 403.
 */
export function storageError(err: unknown): WharfError {
  if (err instanceof WharfError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'EACCES' || code === 'EPERM') {
    return new WharfError('STORAGE_DENIED', `the server may not write to its data directory (${code})`, 500, { cause: err });
  }
  // Two names that this filesystem folds together (case, normalisation): a client problem.
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') {
    return new WharfError('DUPLICATE_FILENAME', 'two files of the upload have the same name on this server', 400, { cause: err });
  }
  if (code === 'ENAMETOOLONG') return new WharfError('BAD_FILENAME', 'a filename is too long for this server', 400, { cause: err });
  // A full disk, a read-only one, no descriptors left: said as for a read.
  if (code !== undefined && SAME_AS_READ.has(code)) return fromFsError(err);
  return new WharfError('STORAGE_ERROR', `storage I/O error${code ? ` (${code})` : ''}`, 500, { cause: err });
}

const SAME_AS_READ = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EMFILE', 'ENFILE']);
