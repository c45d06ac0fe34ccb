// The static engine: answers GET/HEAD for one file of a `FileSource` — conditionals, ranges,
// content type, downloads (answer.ts) — from a small revalidated memory cache (memory-cache.ts) or
// streamed from disk. This module wires the two: revalidate, load, answer.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError, fromFsError } from '../common/errors.js';
import { sendError } from '../http/answer.js';
import type { Limits } from '../common/limits.js';
import { answer, precondition, redirect } from './answer.js';
import { answeredFromBlocks, answeredFromKeptBlock, blockSpan } from './hot-blocks.js';
import { createMemoryCache, entryOf, sameFile, type Entry } from './memory-cache.js';
import type { Readable } from 'node:stream';

export { createDirectorySource, directorySeams, type DirectorySourceOptions } from './directory-source.js';

/** What the static engine needs to know of a file to answer conditionals and ranges. */
export interface FileInfo {
  size: number;
  mtimeMs: number;
  ino: number;
}

/**
 * A regular file opened for reading; exactly one of `stream`, `read` or `close` must be called, once
 * (`close` after any number of `readAt`s).
 */
export interface OpenFile extends FileInfo {
  /**
   * Written by someone not trusted to run script on this origin (an end user's upload, trust.ts):
   * served with `Content-Security-Policy: sandbox`, active types as attachments of a type that
   * cannot run (see `untrustedView`).
   */
  untrusted?: boolean;
  /**
   * The file's deadline, ms since the epoch (an upload that expires, upload-meta.ts): answers carry
   * `Expires`, and no `max-age` of theirs outlives it.
   */
  expiresAt?: number;
  /**
   * Called once a whole-file 200 body was written out (`finish`): a `once` upload is removed then.
   * A HEAD, a 304, a Range (206) or a download cut short never calls it. A file that has it is never
   * kept in the memory cache (each download must open it) and is answered `Cache-Control: no-store`.
   */
  onComplete?: () => void;
  /**
   * Optional: a URL the same bytes can be fetched from with these response headers (a presigned S3
   * GET): a GET that would be answered 200 or 206 is answered `302` to it instead, the file closed.
   * Conditionals are still answered here (304, 412).
   */
  location?(headers: { type: string; disposition: string | undefined }): Promise<string>;
  /** Bytes `start`..`end` inclusive; the stream owns the descriptor and closes it on end, error or destroy. */
  stream(start: number, end: number): Readable;
  /**
   * Optional: bytes `start`..`end` inclusive in one buffer (fewer bytes if the file shrank), then
   * the descriptor is closed. The engine uses it for small answers only.
   */
  read?(start: number, end: number): Promise<Buffer>;
  /**
   * Optional: reads up to `length` bytes at `position` into `buf` (a positional read, the
   * descriptor left open), any number of times, then `close` once. The engine sends big answers
   * with it through reused buffers (file-pump.ts) instead of `stream`.
   */
  readAt?(buf: Buffer, length: number, position: number, done: (err: Error | null, bytesRead: number) => void): void;
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

export interface StaticOptions {
  limits: Limits;
  /** `Cache-Control` for files anyone may read. Default `public, max-age=0, must-revalidate`. */
  cacheControl?: string;
  /** `Cache-Control` for files only some may read (`respond`'s `isPrivate`). Default `private, max-age=0, must-revalidate`. */
  privateCacheControl?: string;
}

/**
 * `rel` is the path of the file as routing decoded and checked it (`filePath` in urlpath.ts): decoded
 * once, relative, no empty, `.` or `..` segment, no backslash or control character. The engine
 * never decodes or re-reads it: what routing matched is what is served (docs/protocol.md §3).
 */
export interface StaticEngine {
  /**
   * Answers GET/HEAD for the file `rel` of `source`. An answer that needs nothing beyond a
   * synchronous stat (a cached file, a 304) is given before it returns, and then it returns
   * undefined: no promise per request on the hot path. Otherwise it returns the promise of the
   * rest. Never throws, never rejects. `isPrivate`: only some may read `source` (a private mapping;
   * uploads behind an `authorize` hook), so its answers, 304s included, carry the private
   * `Cache-Control`: a shared cache must not store an answer given to one user and hand it to the
   * next (RFC 9111 §5.2.2.7). `missing`, when given, answers instead of the 404 when `source` has no
   * such file (index pages look for a directory there).
   */
  respond(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate?: boolean, missing?: Missing): Promise<void> | undefined;
}

/** Answers a request for a file its source does not have (see `StaticEngine.respond`). */
export type Missing = (req: IncomingMessage, res: ServerResponse) => void;

const notFoundAnswer: Missing = (_req, res) => sendError(res, notFound());

export const DEFAULT_CACHE_CONTROL = 'public, max-age=0, must-revalidate';
/** The browser may keep it but must ask again each time, so a revoked session is refused at once. */
export const DEFAULT_PRIVATE_CACHE_CONTROL = 'private, max-age=0, must-revalidate';

function readWhole(file: OpenFile): Promise<Buffer> {
  if (file.size === 0) return file.close().then(() => Buffer.alloc(0));
  if (file.read) return file.read(0, file.size - 1);
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    const s = file.stream(0, file.size - 1);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('error', fail);
    s.once('end', () => ok(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
  });
}

/** Is `hit` (cached, without bytes) the representation of `file`, just opened? */
const describes = (hit: Entry, file: OpenFile): boolean =>
  hit.data === null && sameFile(file, hit) && hit.untrusted === (file.untrusted === true) && hit.expiresAt === file.expiresAt;

const notFound = (): WharfError => new WharfError('NOT_FOUND', 'file not found', 404);

export function createStatic(options: StaticOptions): StaticEngine {
  const { limits } = options;
  const publicCacheControl = options.cacheControl ?? DEFAULT_CACHE_CONTROL;
  const privateCacheControl = options.privateCacheControl ?? DEFAULT_PRIVATE_CACHE_CONTROL;
  const cache = createMemoryCache(limits);
  const cacheOn = cache.on;

  const send = (req: IncomingMessage, res: ServerResponse, e: Entry, rel: string, file: OpenFile | null, isPrivate: boolean): void =>
    answer(req, res, e, rel, file, isPrivate ? privateCacheControl : publicCacheControl, limits.downloadStallTimeout);

  /** Can `hit` answer this request once revalidated, without opening the file? */
  const answersFromMemory = (req: IncomingMessage, hit: Entry): boolean =>
    hit.data !== null || req.method === 'HEAD' || req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined;

  function respond(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate = false, missing = notFoundAnswer): Promise<void> | undefined {
    let map: Map<string, Entry>;
    let hit: Entry | undefined;
    try {
      map = cache.of(source);
      hit = map.get(rel);
      // Revalidate a cached entry with one stat; for a big file only when that can spare the open
      // (a conditional request or HEAD), since a full download needs the open anyway.
      if (hit !== undefined && answersFromMemory(req, hit)) {
        const info = source.statSync?.(rel);
        if (info === undefined) return load(req, res, source, rel, map, hit, true, isPrivate, missing);
        if (revalidated(req, res, map, hit, info, rel, isPrivate, missing)) return undefined;
        return load(req, res, source, rel, map, hit, false, isPrivate, missing);
      }
      // A Range within a hot block of a big file: one stat, no open.
      if (hit?.blocks != null && answeredFromKeptBlock(cache, req, res, source, map, hit, rel, isPrivate ? privateCacheControl : publicCacheControl, missing)) return undefined;
    } catch (err) {
      sendError(res, fromFsError(err));
      return undefined;
    }
    return load(req, res, source, rel, map, hit, false, isPrivate, missing);
  }

  /** Answers from `hit` when `info` shows the file unchanged (true); else forgets it (false: open it). */
  function revalidated(req: IncomingMessage, res: ServerResponse, map: Map<string, Entry>, hit: Entry, info: FileInfo | null, rel: string, isPrivate: boolean, missing: Missing): boolean {
    const state = cache.recheck(map, hit, info, rel);
    if (state === 'gone') {
      missing(req, res);
      return true;
    }
    if (state === 'same' && (hit.data !== null || req.method === 'HEAD' || precondition(req.headers, hit.etag, hit.mtimeMs) !== 0)) {
      send(req, res, hit, rel, null, isPrivate);
      return true;
    }
    if (state === 'same') cache.forget(map, rel);
    return false;
  }

  /**
   * The rest of `respond`, through the thread pool where needed: `stat` first when `revalidate`
   * (`hit` is cached and the source could not stat it cheaply), then open and answer.
   */
  async function load(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, map: Map<string, Entry>, hit: Entry | undefined, revalidate: boolean, isPrivate: boolean, missing: Missing): Promise<void> {
    let file: OpenFile | null = null;
    try {
      if (revalidate && hit !== undefined && revalidated(req, res, map, hit, await source.stat(rel), rel, isPrivate, missing)) return;
      // A file served recently has its metadata in the kernel's caches: open it without the thread pool.
      let opened = hit !== undefined ? source.openSync?.(rel) : undefined;
      if (opened === undefined) opened = await source.open(rel);
      file = opened;
      if (file === null) {
        if (cacheOn) cache.forget(map, rel);
        missing(req, res);
        return;
      }
      if (file.location !== undefined && req.method === 'GET') {
        const f = file;
        file = null;
        await redirect(req, res, entryOf(f, rel, null, f.untrusted === true, f.expiresAt), rel, f, isPrivate ? privateCacheControl : publicCacheControl);
        return;
      }
      if (file.onComplete !== undefined) {
        // Downloaded once: never from memory, never stored by a cache on the way.
        const f = file;
        file = null;
        answer(req, res, entryOf(f, rel, null, f.untrusted === true, f.expiresAt), rel, f, 'no-store', limits.downloadStallTimeout);
        return;
      }
      // A file with a `location` is redirected on every GET: its bytes are never kept here.
      if (cacheOn && file.location === undefined && cache.admits(file.size, hit !== undefined)) {
        const f = file;
        file = null;
        const data = await readWhole(f);
        const e = entryOf(data.length === f.size ? f : { ...f, size: data.length }, rel, data, f.untrusted === true, f.expiresAt);
        if (data.length === f.size) cache.remember(map, rel, e);
        send(req, res, e, rel, null, isPrivate);
        return;
      }
      let e: Entry;
      if (hit !== undefined && map.get(rel) === hit && describes(hit, file)) {
        // Still cached, and the same file as last time: its validators, type and headers are made.
        e = hit;
        cache.touch(hit);
      } else {
        e = entryOf(file, rel, null, file.untrusted === true, file.expiresAt);
        if (cacheOn) cache.remember(map, rel, e);
      }
      const f = file;
      file = null;
      const span = blockSpan(req, e);
      if (span !== null && (await answeredFromBlocks(cache, req, res, e, rel, f, span, isPrivate ? privateCacheControl : publicCacheControl))) return;
      send(req, res, e, rel, f, isPrivate);
    } catch (err) {
      if (file !== null) void file.close();
      sendError(res, fromFsError(err));
    }
  }

  return { respond };
}
