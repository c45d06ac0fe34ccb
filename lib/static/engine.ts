// The static engine: answers GET/HEAD for one file of a `FileSource` — conditionals, ranges,
// content type, downloads — from a small revalidated memory cache or streamed from disk.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { close as closeFd, closeSync, constants, createReadStream, fstat, fstatSync, lstatSync, open as openFd, openSync, read as readFd, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { basename, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { attachment } from './disposition.js';
import { WharfError, fromFsError } from '../common/errors.js';
import { sendError } from '../http/answer.js';
import type { Limits } from '../common/limits.js';
import { contentTypeFor } from '../common/mime.js';
import { slownessFor, type SyncIo } from './sync-io.js';
import { UNTRUSTED_CSP, untrustedView } from '../uploads/upload-record.js';
import { hasDotSegment } from '../http/request-path.js';

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
   * Answers GET/HEAD for the file `rel` of `source`. Never rejects. `isPrivate`: only some may read
   * `source` (a private mapping; uploads behind an `authorize` hook), so its answers, 304s included,
   * carry the private `Cache-Control`: a shared cache must not store an answer given to one user
   * and hand it to the next (RFC 9111 §5.2.2.7).
   */
  serve(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate?: boolean): Promise<void>;
  /**
   * `serve`, but an answer that needs nothing beyond a synchronous stat (a cached file, a 304) is
   * given before it returns, and then it returns undefined: no promise per request on the hot path.
   * Otherwise it returns the promise of the rest. Never throws, never rejects.
   */
  respond(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate?: boolean): Promise<void> | undefined;
}

export const DEFAULT_CACHE_CONTROL = 'public, max-age=0, must-revalidate';
/** The browser may keep it but must ask again each time, so a revoked session is refused at once. */
export const DEFAULT_PRIVATE_CACHE_CONTROL = 'private, max-age=0, must-revalidate';

/**
 * A synchronous revalidation (realpath + stat of a file just served, so its metadata is in the
 * kernel's caches) normally takes a few µs (see slowness.ts for when the source stops making them).
 * Only one revalidation in STAT_SAMPLE is timed: reading the clock twice costs as much as the rest
 * of the check (bench/static, 304 case), and slow storage makes nearly every call slow, so sampled
 * calls still catch it within a few hundred requests.
 */
const STAT_SAMPLE = 8;

/** Answers up to this many bytes from a file not in memory are read in one go instead of streamed. */
const SMALL_READ = 64 * 1024;

/**
 * Read size of file streams: fewer, larger reads cost less CPU per MiB (fewer thread-pool round
 * trips and socket writes; 512 KiB measured cheapest of 64 KiB…1 MiB in bench/static). Memory stays
 * bounded whatever the client's speed: a download holds at most about two chunks (the stream's
 * buffer and the socket's pending write), ~1 MiB.
 */
const STREAM_CHUNK = 512 * 1024;

// ---------------------------------------------------------------------------------------------
// Directory source

const NO_THROW = { throwIfNoEntry: false } as const;

/** "A symlink is on the way": the cheap containment check cannot decide, realpath must. */
const SYMLINK = Symbol('symlink');

const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']);
const isGone = (err: unknown): boolean => GONE.has((err as NodeJS.ErrnoException).code ?? '');
const orGone = (err: unknown): null => {
  if (isGone(err)) return null;
  throw err;
};

// O_NONBLOCK: opening a FIFO planted in a root must not park a thread-pool thread forever (it is
// then refused as "not a regular file"); it changes nothing for regular files. O_NOFOLLOW: the path
// opened is a real path, so its last component being a symlink means it was swapped in since.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

function openFile(path: string): Promise<number> {
  return new Promise((ok, fail) => openFd(path, OPEN_FLAGS, (err, fd) => (err ? fail(err) : ok(fd))));
}

/** An `open` failure that means "no such regular file" is null (404); anything else is thrown. */
function orNotFile(err: unknown): null {
  if (isGone(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return null;
  throw err;
}

/**
 * The OpenFile for an open descriptor of a regular file; it owns `fd` from here on. `syncClose`:
 * the file was opened synchronously (fast local storage), so closing it after a small read is too.
 */
function openFileOf(fd: number, st: FileInfo, syncClose: boolean): OpenFile {
  let used = false;
  const use = (): void => {
    if (used) throw new Error('OpenFile already used');
    used = true;
  };
  return {
    size: st.size,
    mtimeMs: st.mtimeMs,
    ino: st.ino,
    stream(start, end) {
      use();
      return createReadStream('', { fd, start, end, autoClose: true, emitClose: true, highWaterMark: STREAM_CHUNK });
    },
    read(start, end) {
      use();
      const buf = Buffer.allocUnsafe(end - start + 1);
      return new Promise((ok, fail) => {
        readFd(fd, buf, 0, buf.length, start, (err, n) => {
          if (syncClose) closeSyncQuietly(fd);
          else closeFd(fd, () => {});
          if (err) fail(err);
          else ok(n === buf.length ? buf : buf.subarray(0, n));
        });
      });
    },
    close() {
      if (used) return Promise.resolve();
      used = true;
      if (!syncClose) return closeQuietly(fd);
      closeSyncQuietly(fd);
      return Promise.resolve();
    },
  };
}

function closeSyncQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing useful to do: the descriptor is gone either way
  }
}

function closeQuietly(fd: number): Promise<void> {
  return new Promise((ok) => closeFd(fd, () => ok()));
}

function fstatFile(fd: number): Promise<Stats> {
  return new Promise((ok, fail) => fstat(fd, (err, st) => (err ? fail(err) : ok(st))));
}

/**
 * Test seams, not API: this module is not among the package's exports. `beforeOpen` runs right
 * before the directory source opens a path it has checked, and `afterOpen` right after, before the
 * descriptor is checked, so a test can swap a directory for a symlink (and back) exactly in those
 * windows; `procFd` false makes the source verify descriptors the way it does where
 * /proc/self/fd is missing (it also turns false by itself on a Linux without /proc).
 */
export const directorySeams: { beforeOpen: ((path: string) => void) | undefined; afterOpen: ((path: string) => void) | undefined; procFd: boolean } = {
  beforeOpen: undefined,
  afterOpen: undefined,
  procFd: process.platform === 'linux',
};

/**
 * Where descriptor `fd` leads now, as the kernel names it (Linux: `/proc/self/fd/N`, the path of
 * the very file opened, whatever path was used to open it); undefined when that cannot be known.
 * A procfs call that never touches the file's storage, so it is made synchronously: cheaper than a
 * thread-pool round trip even on network storage. A file deleted since it was opened reads as
 * `<path> (deleted)`, still under the directory it was in.
 */
function fdPath(fd: number): string | undefined {
  if (!directorySeams.procFd) return undefined;
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No /proc here (a container without it, a chroot): verify the other way from now on.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') directorySeams.procFd = false;
    return undefined;
  }
}

/** Does the descriptor's `st` (fstat) name the same file as `now` (a stat of a path)? */
const sameInode = (st: Stats, now: Stats | undefined | null): boolean => now != null && now.ino === st.ino && now.dev === st.dev;

/**
 * Serves the regular files under `root`.
 *
 * Threat model: requests may name any path (the engine hands over only decoded relative paths
 * without `.`/`..` segments), and a local account able to write inside the root may plant
 * symlinks, FIFOs and devices there and rename its directories at any moment. Nothing outside
 * the root's real path (nor a dotfile, when those are off) may be answered.
 *
 * Containment, in two steps (docs/protocol.md §3):
 * 1. Before opening: the requested path is resolved with `realpath` (symlinks followed, so a
 *    symlinked root works and a link inside the root that leads out is a 404) and must lie inside
 *    the root's own real path; the file is then opened by that real path, with `O_NOFOLLOW` and
 *    `O_NONBLOCK`. For a file served recently, an `lstat` of each directory below the root stands
 *    in for the realpath when none is a symlink. This step is what keeps outside paths from even
 *    being opened in the ordinary case (opening some devices has effects).
 * 2. After opening, on the descriptor itself, because a directory on the way can be swapped for a
 *    symlink between step 1 and the open: the descriptor is accepted only if the file it holds
 *    lies inside the root. (A file right in the root directory needs no such check: its open
 *    crossed no directory below the root, and `O_NOFOLLOW` refuses its name turned symlink.)
 *    On Linux its path is read from `/proc/self/fd/N` (one procfs call, no
 *    storage access), which names the file actually opened whatever path led there. Elsewhere
 *    (or without /proc) the path opened is resolved again with `realpath` after the open; that
 *    real path must lie inside the root, a `stat` of it must show the descriptor's own device
 *    and inode, and a second `realpath` must still give the same path, all back to back on the
 *    event loop (through the thread pool, with wider windows, once the storage proved slow).
 *    That is a narrower window, not none: swaps timed to the µs (back in for the
 *    first realpath, out for the stat, in again for the second) would pass it: the real race of
 *    test/security.test.ts run that way (RACE_MODE=portable) got 3 answers of 32,000 through,
 *    where the Linux check let none through and no check 307 of 4,000.
 *    Closing it needs `openat2(RESOLVE_BENEATH)`, `O_RESOLVE_BENEATH` or `F_GETPATH`, none of
 *    which Node offers. A refused descriptor is closed before the 404 is sent.
 * No per-file real path is ever cached; only the root's real path is, and it is re-resolved when
 * a result falls outside it, so a root that is re-pointed is followed. A descriptor is checked
 * once, when it is opened; the engine's memory cache holds only bytes read from checked
 * descriptors, and revalidating an entry that changed opens (and checks) the file again. A
 * file swapped in by a race can still be opened (and then refused): a local attacker can make
 * wharf open, never answer, a FIFO or device outside the root. Hard links are not symlinks:
 * one inside the root to an outside file is inside the root, as in every file server.
 *
 * Cost: for a file the engine has served recently (`statSync`/`openSync`), realpath, stat, open,
 * fstat and the descriptor check are made synchronously: the kernel has that metadata cached, so
 * each takes a few µs, where each thread-pool round trip costs ~20 µs of CPU (measured in
 * bench/static). Should these calls turn out slow on average (network storage), the source goes
 * asynchronous (slowness.ts). First requests and every read of file content go through the thread pool.
 * The descriptor check is one procfs readlink on either path, ~4–6 µs per file opened below a
 * directory of the root (bench/static's "one directory down" row); files right in the root, answers
 * from the memory cache (files up to `limits.cacheFileSize`) and 304s pay nothing for it.
 */
export interface DirectorySourceOptions {
  /** Serve files and directories whose name starts with `.`. Default false. */
  dotfiles?: boolean;
  /** `'off'`: no synchronous file-system call on the event loop (slowness.ts). Default `'auto'`. */
  syncIo?: SyncIo;
  /**
   * Directories that another route serves (a nested mapping, the upload store): nothing under them
   * is served from this root, however it is reached — a symlink inside the root that leads there
   * included — so each is reached only by its own rules (docs/protocol.md §3). Checked on real
   * paths, where containment is, so it costs nothing while this is empty.
   */
  exclude?: readonly string[];
}

export function createDirectorySource(root: string, options: DirectorySourceOptions = {}): FileSource {
  const absRoot = resolve(root);
  const dotfiles = options.dotfiles ?? false;
  const exclude = (options.exclude ?? []).map((p) => resolve(p));
  let realRoot: string | undefined;
  // The real paths of `exclude`, each ending in a separator; resolved with the root.
  let realExcluded: string[] = [];
  /** Turns on once synchronous checks take too long: this storage is not local and warm, go async. */
  const slowness = slownessFor(options.syncIo);
  let stats = 0;
  const rootSlash = absRoot + sep;

  async function resolveRoot(): Promise<string | undefined> {
    try {
      const r = await realpath(absRoot);
      realRoot = r.endsWith(sep) ? r : r + sep;
      if (exclude.length > 0) {
        // Only those inside the root matter (usually none: then nothing is checked per request).
        // One not there yet keeps its path as given: it can only appear there.
        const inRoot = realRoot;
        const reals = await Promise.all(exclude.map((p) => realpath(p).catch(() => p).then((x) => x + sep)));
        realExcluded = reals.filter((x) => x !== inRoot && (x.startsWith(inRoot) || x.startsWith(rootSlash)));
      }
    } catch (err) {
      if (!isGone(err)) throw err;
      realRoot = undefined;
    }
    return realRoot;
  }

  /** `locate` without the thread pool (dotfiles already checked); undefined when it cannot decide cheaply. */
  function locateSync(rel: string): string | null | undefined {
    if (realRoot === undefined) return undefined;
    const real = realpathSync.native(rootSlash + rel);
    // Outside the root as last resolved: the async path re-resolves the root and decides.
    if (!real.startsWith(realRoot)) return undefined;
    return allowed(real, realRoot) ? real : null;
  }

  /**
   * `lstat` of each component of `rel` below the root (the last one only if `last`). When none is a
   * symlink the path cannot leave the root, whatever the root itself resolves to: one system call
   * per level below the root, where realpath makes one per level of the whole path and then a stat
   * is still needed. Returns the last component's stats (`last`) or true (the directories are
   * plain), SYMLINK when a symlink is on the way (realpath decides then), null when missing.
   */
  function plainSync(rel: string, last: boolean): Stats | true | typeof SYMLINK | null {
    let from = 0;
    for (;;) {
      const slash = rel.indexOf('/', from);
      if (slash < 0 && !last) return true;
      const st = lstatSync(rootSlash + (slash < 0 ? rel : rel.slice(0, slash)), NO_THROW);
      if (st === undefined) return null;
      if (st.isSymbolicLink()) return SYMLINK;
      if (slash < 0) return st;
      if (!st.isDirectory()) return null;
      from = slash + 1;
    }
  }

  /** Is the real path `real` inside the root `r` (a real path ending in a separator) and allowed? */
  const allowed = (real: string, r: string): boolean =>
    // A symlink named `visible` pointing at `.secret` inside the root is still a dotfile.
    real.startsWith(r) && (dotfiles || !hasDotSegment(real.slice(r.length))) && (realExcluded.length === 0 || !realExcluded.some((e) => real.startsWith(e)));

  /** `allowed` against the root's real path, re-resolved once when `real` falls outside it. */
  async function inside(real: string): Promise<boolean> {
    const r = realRoot ?? (await resolveRoot());
    if (r === undefined) return false;
    if (real.startsWith(r)) return allowed(real, r);
    const again = await resolveRoot();
    return again !== undefined && allowed(real, again);
  }

  /** The real path of `rel` if it is inside the root and allowed, else null. */
  async function locate(rel: string): Promise<string | null> {
    if (!dotfiles && hasDotSegment(rel)) return null;
    let real: string;
    try {
      real = await realpath(rootSlash + rel);
    } catch (err) {
      if (isGone(err)) return null;
      throw err;
    }
    return (await inside(real)) ? real : null;
  }

  /**
   * Where there is no /proc/self/fd: the real path of the file that descriptor of `st` (its fstat)
   * holds, found by resolving `path` (the path it was opened by) again, which must then lead to
   * the descriptor's very inode and still resolve the same after that stat (a swap back and forth
   * around the stat would show); null when the file is no longer to be found there. Each further
   * check needs one more swap timed to the µs to fool it, but no finite number of path lookups can
   * rule a race out (see createDirectorySource).
   */
  function resolvedSync(st: Stats, path: string): string | null {
    let real: string;
    try {
      real = realpathSync.native(path);
      if (!sameInode(st, statSync(real, NO_THROW))) return null;
      return realpathSync.native(path) === real ? real : null;
    } catch (err) {
      return orGone(err);
    }
  }

  /** `resolvedSync` through the thread pool, for storage that proved slow. */
  async function resolved(st: Stats, path: string): Promise<string | null> {
    try {
      const real = await realpath(path);
      if (!sameInode(st, await stat(real).catch(orGone))) return null;
      return (await realpath(path)) === real ? real : null;
    } catch (err) {
      return orGone(err);
    }
  }

  /**
   * The real path of the file descriptor `fd` holds (`st` its fstat, `path` the path it was opened
   * by), or null. On Linux, the descriptor's own path; elsewhere `resolvedSync`, made back to back
   * on the event loop (timed, as the other synchronous calls) unless this storage proved slow, so
   * that the windows between open, realpath and stat stay µs wide.
   */
  async function realOf(fd: number, st: Stats, path: string): Promise<string | null> {
    const at = fdPath(fd);
    if (at !== undefined) return at;
    if (slowness.slow) return resolved(st, path);
    const t0 = performance.now();
    try {
      return resolvedSync(st, path);
    } finally {
      slowness.timed(t0);
    }
  }

  /**
   * Is `path` (as opened, with O_NOFOLLOW) an entry of the root directory itself? Then the open
   * crossed no directory below the root — nothing a local account writing inside the root could
   * swap — and its last component cannot have been a symlink, so the descriptor needs no check.
   * (The root's own path is the operator's: whoever may rename it can re-point the root, which
   * is followed anyway.)
   */
  function inRootDir(path: string): boolean {
    const from = path.startsWith(rootSlash) ? rootSlash.length : realRoot !== undefined && path.startsWith(realRoot) ? realRoot.length : -1;
    return from >= 0 && !path.includes(sep, from);
  }

  /** Step 2 of containment: does descriptor `fd` (of `st`, opened by `path`) hold a file inside the root, and an allowed one? */
  async function confined(fd: number, st: Stats, path: string): Promise<boolean> {
    if (inRootDir(path)) return true;
    const real = await realOf(fd, st, path);
    return real !== null && (await inside(real));
  }

  /** `confined` without the thread pool; undefined when it cannot decide cheaply (outside the root as last resolved: the root may have moved). */
  function confinedSync(fd: number, st: Stats, path: string): boolean | undefined {
    if (inRootDir(path)) return true;
    const r = realRoot;
    if (r === undefined) return undefined;
    const real = fdPath(fd) ?? resolvedSync(st, path);
    if (real === null) return false;
    return real.startsWith(r) ? allowed(real, r) : undefined;
  }

  return {
    async stat(rel) {
      const real = await locate(rel);
      if (real === null) return null;
      const st = await stat(real).catch(orGone);
      return st !== null && st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } : null;
    },
    statSync(rel) {
      if (slowness.slow) return undefined;
      if (!dotfiles && hasDotSegment(rel)) return null;
      const t0 = ++stats % STAT_SAMPLE === 0 ? performance.now() : -1;
      try {
        // With a directory excluded inside the root, its real path decides (it may be reached by a link).
        let st = realExcluded.length > 0 ? SYMLINK : plainSync(rel, true);
        if (st === SYMLINK) {
          const real = locateSync(rel);
          if (real === undefined || real === null) return real;
          st = statSync(real, NO_THROW) ?? null;
        }
        // The Stats object itself is a FileInfo: no copy on the hot path of every revalidation.
        return st !== null && st !== true && st.isFile() ? st : null;
      } catch (err) {
        return orGone(err);
      } finally {
        if (t0 >= 0) slowness.timed(t0);
      }
    },
    async open(rel) {
      const real = await locate(rel);
      if (real === null) return null;
      directorySeams.beforeOpen?.(real);
      let fd: number;
      try {
        fd = await openFile(real);
      } catch (err) {
        return orNotFile(err);
      }
      directorySeams.afterOpen?.(real);
      try {
        const st = await fstatFile(fd);
        if (st.isFile() && (await confined(fd, st, real))) return openFileOf(fd, st, false);
      } catch (err) {
        await closeQuietly(fd);
        throw err;
      }
      await closeQuietly(fd);
      return null;
    },
    openSync(rel) {
      if (slowness.slow) return undefined;
      if (!dotfiles && hasDotSegment(rel)) return null;
      const t0 = performance.now();
      let fd: number;
      let path: string | null | undefined;
      try {
        const dirs = plainSync(rel, false);
        if (dirs === null) return null;
        path = dirs === SYMLINK ? locateSync(rel) : rootSlash + rel;
        if (path === undefined || path === null) return path;
        directorySeams.beforeOpen?.(path);
        try {
          fd = openSync(path, OPEN_FLAGS);
        } catch (err) {
          // ELOOP from O_NOFOLLOW: the file itself is a symlink; realpath decides where it leads.
          if ((err as NodeJS.ErrnoException).code !== 'ELOOP' || dirs === SYMLINK) return orNotFile(err);
          path = locateSync(rel);
          if (path === undefined || path === null) return path;
          directorySeams.beforeOpen?.(path);
          fd = openSync(path, OPEN_FLAGS);
        }
      } catch (err) {
        return orNotFile(err);
      } finally {
        slowness.timed(t0);
      }
      directorySeams.afterOpen?.(path);
      let ok: boolean | undefined;
      let st: Stats;
      try {
        st = fstatSync(fd);
        ok = st.isFile() ? confinedSync(fd, st, path) : false;
      } catch (err) {
        closeSyncQuietly(fd);
        throw err;
      }
      if (ok === true) return openFileOf(fd, st, true);
      closeSyncQuietly(fd);
      // undefined: outside the root as last resolved; the thread-pool path re-resolves it and decides.
      return ok === false ? null : undefined;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Validators and conditionals (RFC 9110 §8.8, §13)

/**
 * Strong: changes whenever size, mtime (µs) or inode do, i.e. whenever the bytes are rewritten, and
 * between an untrusted file's answer and a trusted one's. Their headers differ, and a 304 carries
 * none of them (RFC 9110 §15.4.5): a browser holding a copy served before wharf protected end
 * users' uploads must get the protected answer, not a 304 that revives its unprotected copy.
 */
function etagOf(info: FileInfo, untrusted: boolean): string {
  return `"${untrusted ? 'u' : ''}${info.ino.toString(36)}-${info.size.toString(36)}-${Math.round(info.mtimeMs * 1000).toString(36)}"`;
}

const opaque = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** Does the `If-Match`/`If-None-Match` list `header` match `etag` (`*` matches any)? */
function tagListMatches(header: string, etag: string, weak: boolean): boolean {
  if (header === etag) return true;
  const want = weak ? opaque(etag) : etag;
  for (const raw of header.split(',')) {
    const tag = raw.trim();
    if (tag === '*') return true;
    if (weak ? opaque(tag) === want : tag === want) return true;
  }
  return false;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** 0 to go on, else 304 or 412, in the order of RFC 9110 §13.2.2. */
function precondition(h: IncomingHttpHeaders, etag: string, mtimeMs: number): number {
  const ifMatch = h['if-match'];
  if (ifMatch !== undefined) {
    if (!tagListMatches(ifMatch, etag, false)) return 412;
  } else {
    const ius = h['if-unmodified-since'];
    if (ius !== undefined) {
      const t = Date.parse(ius);
      if (!Number.isNaN(t) && seconds(mtimeMs) > seconds(t)) return 412;
    }
  }
  const inm = h['if-none-match'];
  if (inm !== undefined) return tagListMatches(inm, etag, true) ? 304 : 0;
  const ims = h['if-modified-since'];
  if (ims !== undefined) {
    const t = Date.parse(ims);
    if (!Number.isNaN(t) && seconds(mtimeMs) <= seconds(t)) return 304;
  }
  return 0;
}

type Span = readonly [start: number, end: number];
const UNSATISFIABLE = 'unsatisfiable';

/**
 * One `Range: bytes=a-b` (RFC 9110 §14.1.2). `null` means "answer 200 with the whole file": no or
 * an unparsable Range, another unit, several ranges (allowed by §14.2; multipart/byteranges is not
 * worth its weight here), or an empty file (nothing a range could select).
 */
function parseRange(header: string, size: number): Span | typeof UNSATISFIABLE | null {
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes' || size === 0) return null;
  const m = /^\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.slice(eq + 1));
  if (!m) return null;
  const [, first = '', last = ''] = m;
  if (first === '') {
    if (last === '') return null;
    const n = Number(last);
    return n === 0 ? UNSATISFIABLE : [Math.max(0, size - n), size - 1];
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (last !== '' && end < start) return null; // invalid, so ignored (§14.1.1)
  if (start >= size) return UNSATISFIABLE;
  return [start, Math.min(end, size - 1)];
}

/** `If-Range` (§13.1.5): the range applies only if the representation is still the one the client has. */
function ifRangeHolds(value: string, etag: string, mtimeMs: number): boolean {
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag; // strong comparison
  const t = Date.parse(value);
  return !Number.isNaN(t) && seconds(t) === seconds(mtimeMs);
}

/** `?download` → the file's own name, `?download=name` → that name; undefined when absent. */
function downloadName(url: string, rel: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0 || !url.includes('download', q)) return undefined;
  const value = new URLSearchParams(url.slice(q + 1)).get('download');
  if (value === null) return undefined;
  return value || basename(rel);
}

// ---------------------------------------------------------------------------------------------
// The engine

/** A file as answered: validators and type computed once, body cached when small. */
interface Entry {
  size: number;
  mtimeMs: number;
  ino: number;
  etag: string;
  lastModified: string;
  /** The Content-Type sent. */
  type: string;
  /** See `OpenFile.untrusted`. */
  untrusted: boolean;
  /** The Content-Disposition sent when the URL asks for none (`?download`), if any. */
  disposition: string | undefined;
  /** The whole file, or null for a file too big to cache (its validators still answer 304s cheaply). */
  data: Buffer | null;
  /** Bytes this entry is charged against `limits.cacheSize`. */
  cost: number;
  /** Its key in `map`, the cache of its source (null until cached): how eviction finds it. */
  rel: string;
  map: Map<string, Entry> | null;
  /** See `touch`. */
  gen: number;
}

/** Bookkeeping charged per entry on top of its bytes, so many tiny or data-less entries stay bounded too. */
const ENTRY_OVERHEAD = 256;

function entryOf(info: FileInfo, rel: string, data: Buffer | null, untrusted: boolean): Entry {
  let type = contentTypeFor(rel);
  let disposition: string | undefined;
  if (untrusted) {
    const view = untrustedView(type);
    type = view.type;
    if (view.attachment) disposition = attachment(basename(rel));
  }
  return {
    size: info.size,
    mtimeMs: info.mtimeMs,
    ino: info.ino,
    etag: etagOf(info, untrusted),
    lastModified: new Date(info.mtimeMs).toUTCString(),
    type,
    untrusted,
    disposition,
    data,
    cost: ENTRY_OVERHEAD + rel.length + (data?.length ?? 0),
    rel,
    map: null,
    gen: 0,
  };
}

const sameFile = (a: FileInfo, b: FileInfo): boolean => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;

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

/**
 * Cuts the connection of a download whose client has taken nothing for `ms` (checked every `ms`, so
 * after `ms` to `2 ms`): a client that never reads would otherwise keep its socket and the file's
 * descriptor for as long as it stays connected. Progress is the socket's `bytesWritten`, which stops
 * growing once the kernel's buffers are full and the stream is held back. A response still queued
 * behind another on its connection has no socket yet: the one ahead of it is watched.
 */
function watchStall(res: ServerResponse, ms: number): void {
  const socket = res.socket;
  if (ms <= 0 || socket === null) return;
  let last = socket.bytesWritten;
  const timer = setInterval(() => {
    const now = socket.bytesWritten;
    if (now === last) res.destroy();
    last = now;
  }, ms).unref();
  res.once('close', () => clearInterval(timer));
}

const notFound = (): WharfError => new WharfError('NOT_FOUND', 'file not found', 404);

export function createStatic(options: StaticOptions): StaticEngine {
  const { limits } = options;
  const publicCacheControl = options.cacheControl ?? DEFAULT_CACHE_CONTROL;
  const privateCacheControl = options.privateCacheControl ?? DEFAULT_PRIVATE_CACHE_CONTROL;
  const cacheOn = limits.cacheFileSize > 0 && limits.cacheSize > 0;
  // One map per source (rel → entry: no key to build per request) and one LRU order over all of
  // them: a Set keeps insertion order, so its first entry is the least recently used.
  const caches = new WeakMap<FileSource, Map<string, Entry>>();
  const noCache = new Map<string, Entry>();
  const order = new Set<Entry>();
  let cached = 0;
  /** Insertions into `order` so far; an entry's `gen` is this count when it was last (re)inserted. */
  let inserts = 0;

  function cacheOf(source: FileSource): Map<string, Entry> {
    if (!cacheOn) return noCache;
    let map = caches.get(source);
    if (map === undefined) caches.set(source, (map = new Map()));
    return map;
  }

  function forget(map: Map<string, Entry>, rel: string): void {
    const e = map.get(rel);
    if (e === undefined) return;
    map.delete(rel);
    order.delete(e);
    cached -= e.cost;
  }

  function remember(map: Map<string, Entry>, rel: string, e: Entry): void {
    forget(map, rel);
    if (e.cost > limits.cacheSize) return;
    e.map = map;
    map.set(rel, e);
    order.add(e);
    e.gen = ++inserts;
    cached += e.cost;
    for (const old of order) {
      if (cached <= limits.cacheSize) break;
      order.delete(old);
      old.map?.delete(old.rel);
      cached -= old.cost;
    }
  }

  /**
   * Marks `e` as just used. Moving it to the young end of the order is two hash-table updates, a
   * measurable share of a 304's CPU, so an entry still in the younger half is left where it is: it
   * cannot be evicted before it has aged through the older half, where its next hit moves it.
   */
  function touch(e: Entry): void {
    if (inserts - e.gen <= order.size >> 1) return;
    order.delete(e);
    order.add(e);
    e.gen = ++inserts;
  }

  /** Writes the answer for `e`, its body from `e.data` or from `file` (which this then owns). */
  function answer(req: IncomingMessage, res: ServerResponse, e: Entry, rel: string, file: OpenFile | null, isPrivate: boolean): void {
    const cacheControl = isPrivate ? privateCacheControl : publicCacheControl;
    const h = req.headers;
    const cond = h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined || h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined
      ? precondition(h, e.etag, e.mtimeMs)
      : 0;
    if (cond === 304) {
      void file?.close();
      // §15.4.5: the validators and Cache-Control a 200 would have carried.
      res.writeHead(304, ['ETag', e.etag, 'Last-Modified', e.lastModified, 'Cache-Control', cacheControl]);
      res.end();
      return;
    }
    if (cond === 412) {
      void file?.close();
      sendError(res, new WharfError('PRECONDITION_FAILED', 'precondition failed', 412), { ETag: e.etag });
      return;
    }
    let start = 0;
    let end = e.size - 1;
    let status = 200;
    const range = req.method === 'GET' ? h.range : undefined; // §14.2: Range is defined for GET only
    const ifRange = h['if-range'] as string | undefined;
    if (range !== undefined && (ifRange === undefined || ifRangeHolds(ifRange, e.etag, e.mtimeMs))) {
      const span = parseRange(range, e.size);
      if (span === UNSATISFIABLE) {
        void file?.close();
        sendError(res, new WharfError('RANGE_NOT_SATISFIABLE', 'range not satisfiable', 416), { 'Content-Range': `bytes */${e.size}` });
        return;
      }
      if (span !== null) {
        [start, end] = span;
        status = 206;
      }
    }
    const headers = [
      'Content-Type', e.type,
      'Content-Length', String(end - start + 1),
      'ETag', e.etag,
      'Last-Modified', e.lastModified,
      'Cache-Control', cacheControl,
      'Accept-Ranges', 'bytes',
      'X-Content-Type-Options', 'nosniff',
    ];
    if (status === 206) headers.push('Content-Range', `bytes ${start}-${end}/${e.size}`);
    const name = downloadName(req.url ?? '', rel);
    if (name !== undefined) headers.push('Content-Disposition', attachment(name));
    else if (e.disposition !== undefined) headers.push('Content-Disposition', e.disposition);
    if (e.untrusted) headers.push('Content-Security-Policy', UNTRUSTED_CSP);
    if (req.method === 'HEAD' || end < start) {
      void file?.close();
      res.writeHead(status, headers);
      res.end();
      return;
    }
    if (file === null) {
      res.writeHead(status, headers);
      res.end(start === 0 && end === e.size - 1 ? e.data : e.data!.subarray(start, end + 1));
      return;
    }
    if (res.destroyed) {
      // The client left while the file was being opened: nobody would ever drain the stream.
      void file.close();
      return;
    }
    const want = end - start + 1;
    if (want <= SMALL_READ && file.read) {
      // A small answer (a Range, say) in one read: no stream machinery, and the headers wait for
      // the bytes, so a failed read can still be answered properly.
      file.read(start, end).then(
        (buf) => {
          if (buf.length !== want) {
            sendError(res, new WharfError('FILE_CHANGED', 'the file changed while it was read; try again', 503));
            return;
          }
          res.writeHead(status, headers);
          res.end(buf);
        },
        (err: unknown) => sendError(res, fromFsError(err)),
      );
      return;
    }
    res.writeHead(status, headers);
    const body = file.stream(start, end);
    // pipe() rather than pipeline(): measurably cheaper per response (no AbortController/eos
    // bookkeeping), with the two teardown paths pipeline would give wired by hand.
    body.once('end', () => {
      // A file truncated while it was being sent ends the stream early: cut the connection (this
      // runs before pipe() ends the response) so the client sees the short body as a failure.
      const sent = (body as { bytesRead?: number }).bytesRead;
      if (sent !== undefined && sent !== want) res.destroy();
    });
    body.once('error', () => res.destroy());
    // Client gone: the stream closes its descriptor. A response queued behind another on the same
    // connection (pipelining) never emits 'close' when the connection dies; its request does.
    const stop = (): void => {
      body.destroy();
    };
    res.once('close', stop);
    req.once('close', stop);
    body.pipe(res);
    watchStall(res, limits.downloadStallTimeout);
  }

  /** Can `hit` answer this request once revalidated, without opening the file? */
  const answersFromMemory = (req: IncomingMessage, hit: Entry): boolean =>
    hit.data !== null || req.method === 'HEAD' || req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined;

  function respond(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate = false): Promise<void> | undefined {
    let map: Map<string, Entry>;
    let hit: Entry | undefined;
    try {
      map = cacheOf(source);
      hit = map.get(rel);
      // Revalidate a cached entry with one stat; for a big file only when that can spare the open
      // (a conditional request or HEAD), since a full download needs the open anyway.
      if (hit !== undefined && answersFromMemory(req, hit)) {
        const info = source.statSync?.(rel);
        if (info === undefined) return load(req, res, source, rel, map, hit, true, isPrivate);
        if (revalidated(req, res, map, hit, info, rel, isPrivate)) return undefined;
        return load(req, res, source, rel, map, hit, false, isPrivate);
      }
    } catch (err) {
      sendError(res, fromFsError(err));
      return undefined;
    }
    return load(req, res, source, rel, map, hit, false, isPrivate);
  }

  /** Answers from `hit` when `info` shows the file unchanged (true); else forgets it (false: open it). */
  function revalidated(req: IncomingMessage, res: ServerResponse, map: Map<string, Entry>, hit: Entry, info: FileInfo | null, rel: string, isPrivate: boolean): boolean {
    if (info === null) {
      forget(map, rel);
      sendError(res, notFound());
      return true;
    }
    if (sameFile(info, hit)) {
      touch(hit);
      if (hit.data !== null || req.method === 'HEAD' || precondition(req.headers, hit.etag, hit.mtimeMs) !== 0) {
        answer(req, res, hit, rel, null, isPrivate);
        return true;
      }
    }
    forget(map, rel);
    return false;
  }

  /**
   * The rest of `respond`, through the thread pool where needed: `stat` first when `revalidate`
   * (`hit` is cached and the source could not stat it cheaply), then open and answer.
   */
  async function load(req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, map: Map<string, Entry>, hit: Entry | undefined, revalidate: boolean, isPrivate: boolean): Promise<void> {
    let file: OpenFile | null = null;
    try {
      if (revalidate && hit !== undefined && revalidated(req, res, map, hit, await source.stat(rel), rel, isPrivate)) return;
      // A file served recently has its metadata in the kernel's caches: open it without the thread pool.
      let opened = hit !== undefined ? source.openSync?.(rel) : undefined;
      if (opened === undefined) opened = await source.open(rel);
      file = opened;
      if (file === null) {
        if (cacheOn) forget(map, rel);
        sendError(res, notFound());
        return;
      }
      if (cacheOn && file.size <= limits.cacheFileSize) {
        const f = file;
        file = null;
        const data = await readWhole(f);
        const e = entryOf(data.length === f.size ? f : { ...f, size: data.length }, rel, data, f.untrusted === true);
        if (data.length === f.size) remember(map, rel, e);
        answer(req, res, e, rel, null, isPrivate);
        return;
      }
      const e = entryOf(file, rel, null, file.untrusted === true);
      if (cacheOn) remember(map, rel, e);
      const f = file;
      file = null;
      answer(req, res, e, rel, f, isPrivate);
    } catch (err) {
      if (file !== null) void file.close();
      sendError(res, fromFsError(err));
    }
  }

  const done = Promise.resolve();
  const serve = (req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate = false): Promise<void> =>
    respond(req, res, source, rel, isPrivate) ?? done;

  return { serve, respond };
}
