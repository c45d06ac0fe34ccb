import { WharfError } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Every limit wharf enforces, in one place. Each has a safe default; pass a partial object to
 * `createFileServer({ limits })` (or the CLI's `--limit-*` flags) to change some.
 */
export interface Limits {
  /** Bytes in one uploaded file. Past it: 413 `LIMIT_FILE_SIZE`. Default 8 GiB. */
  fileSize: number;
  /** Files in one upload request. Default 1,000. */
  files: number;
  /** Bytes in one upload request body, all parts and framing included. Default 16 GiB. */
  requestSize: number;
  /** Parts (files and fields) in one multipart body. Default 2,000. */
  parts: number;
  /** Non-file fields in one multipart body. Default 100. */
  fields: number;
  /** Bytes in one non-file field's value. Default 1 MiB. */
  fieldSize: number;
  /** Bytes in one part's header block. Default 16 KiB. */
  headerSize: number;
  /** Bytes in one image-stream frame (Wave's own limit is 5 MiB). Default 5 MiB. */
  frameSize: number;
  /** Image streams alive at once. Default 1,000. */
  streams: number;
  /** Viewers of one image stream. Default 1,000. */
  viewersPerStream: number;
  /** ms a viewer may leave a frame unread before it is dropped; 0: never. Default 10 s. */
  viewerStallTimeout: number;
  /** ms without a frame after which a stream is ended (an app that forgot `unlink`); 0: never. Default 10 min. */
  streamIdleTimeout: number;
  /** ms an upload body may go without receiving a byte. Replaces Node's whole-request timeout on upload routes, so a slow but live 2 GiB upload is never killed; 0: never. Default 60 s. */
  uploadIdleTimeout: number;
  /** ms a client has to send its request headers (slowloris). Default 10 s. */
  headersTimeout: number;
  /**
   * Files up to this size are kept in the static engine's memory cache (revalidated by `stat` on
   * every request): those up to 64 KiB from their first read, bigger ones once asked for again
   * while still remembered (hot). Of bigger files, the aligned 64 KiB blocks that a Range asked
   * for again falls within, up to this size per file. 0 turns the cache off. Default 1 MiB.
   */
  cacheFileSize: number;
  /** Total bytes in the static engine's memory cache. Default 32 MiB. */
  cacheSize: number;
  /** ms `close()` lets in-flight downloads finish before it cuts them off. Default 5 s. */
  closeGrace: number;
  /**
   * ms a file download may go without its client taking a byte before the connection is closed:
   * otherwise a client that never reads holds a socket and an open file for as long as it stays
   * connected (nginx's `send_timeout`). 0: never. Default 60 s.
   */
  downloadStallTimeout: number;
  /**
   * ms an upload lives at most: older ones are removed (as `DELETE` removes them) by a sweep that
   * runs every second or so; an uploader's own `expiresIn` is held to it. 0: uploads live until
   * unloaded, as in Wave. Default 0.
   */
  uploadTtl: number;
  /**
   * Bytes the data dir's uploads may take, all of them together (across the nodes sharing the data
   * dir, approximately: docs/protocol.md §1). An upload that would go over it is refused with 507
   * `STORE_FULL`. 0: no quota. Default 0.
   */
  storeSize: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  fileSize: 8 * GiB,
  files: 1000,
  requestSize: 16 * GiB,
  parts: 2000,
  fields: 100,
  fieldSize: 1 * MiB,
  headerSize: 16 * KiB,
  frameSize: 5 * MiB,
  streams: 1000,
  viewersPerStream: 1000,
  viewerStallTimeout: 10_000,
  streamIdleTimeout: 600_000,
  uploadIdleTimeout: 60_000,
  headersTimeout: 10_000,
  cacheFileSize: MiB,
  cacheSize: 32 * MiB,
  closeGrace: 5_000,
  downloadStallTimeout: 60_000,
  uploadTtl: 0,
  storeSize: 0,
});

/**
 * What each limit counts, so the CLI's `--limit-*` flags can take `512MiB` or `30s`. Keyed by
 * `keyof Limits`: a new limit does not compile until it says which it is. `'age'` is ms too, but a
 * deadline's distance rather than a timer's: never held to MAX_TIMER (an upload may live 90 days).
 */
export type LimitUnit = 'bytes' | 'ms' | 'age' | 'count';
export const LIMIT_UNITS: Readonly<Record<keyof Limits, LimitUnit>> = Object.freeze({
  fileSize: 'bytes',
  files: 'count',
  requestSize: 'bytes',
  parts: 'count',
  fields: 'count',
  fieldSize: 'bytes',
  headerSize: 'bytes',
  frameSize: 'bytes',
  streams: 'count',
  viewersPerStream: 'count',
  viewerStallTimeout: 'ms',
  streamIdleTimeout: 'ms',
  uploadIdleTimeout: 'ms',
  headersTimeout: 'ms',
  cacheFileSize: 'bytes',
  cacheSize: 'bytes',
  closeGrace: 'ms',
  downloadStallTimeout: 'ms',
  uploadTtl: 'age',
  storeSize: 'bytes',
});

/**
 * Node runs a timer set for more than 2^31-1 ms after 1 ms instead (with a warning), so a wait
 * longer than this, about 24.8 days, is held to it: as good as never, and never a busy loop.
 */
export const MAX_TIMER = 2 ** 31 - 1;

/**
 * Merges `partial` over the defaults; an unknown key or a value that is not a non-negative finite
 * integer fails fast. A time limit over MAX_TIMER is held to it, so no timer set from a limit fires early.
 */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const out: Limits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in DEFAULT_LIMITS)) throw new WharfError('INVALID_OPTION', `limits.${key}: unknown limit`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new WharfError('INVALID_OPTION', `limits.${key}: expected a non-negative integer, got ${String(value)}`);
    }
    out[key as keyof Limits] = LIMIT_UNITS[key as keyof Limits] === 'ms' ? Math.min(value, MAX_TIMER) : value;
  }
  return out;
}
