// The directory source: the regular files under a mapped directory, as a `FileSource`, confined to
// that directory whatever a local account does inside it (see `createDirectorySource`).
import { fstatSync, lstatSync, openSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { hasDotSegment } from '../http/request-path.js';
import { closeQuietly, closeSyncQuietly, fstatFile, isGone, OPEN_FLAGS, openFile, openFileOf, orGone, orNotFile } from './open-file.js';
import type { FileInfo, FileSource, OpenFile } from './engine.js';
import { slownessFor, type Slowness, type SyncIo } from './sync-io.js';

/**
 * A synchronous revalidation (realpath + stat of a file just served, so its metadata is in the
 * kernel's caches) normally takes a few µs (see slowness.ts for when the source stops making them).
 * Only one revalidation in STAT_SAMPLE is timed: reading the clock twice costs as much as the rest
 * of the check (bench/static, 304 case), and slow storage makes nearly every call slow, so sampled
 * calls still catch it within a few hundred requests.
 */
const STAT_SAMPLE = 8;

const NO_THROW = { throwIfNoEntry: false } as const;

/** "A symlink is on the way": the cheap containment check cannot decide, realpath must. */
const SYMLINK = Symbol('symlink');

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


/** What a directory source knows of its root, shared by the checks below. */
interface Root {
  /** The root as given, absolute, with a trailing separator: requested paths are joined to it. */
  readonly slash: string;
  readonly abs: string;
  readonly dotfiles: boolean;
  /** `options.exclude`, absolute. */
  readonly exclude: readonly string[];
  /** The root's real path, ending in a separator: undefined until resolved, or while it is missing. */
  real: string | undefined;
  /** The real paths of `exclude` inside the root, each ending in a separator; resolved with the root. */
  excluded: string[];
  /** Turns on once synchronous checks take too long: this storage is not local and warm, go async. */
  readonly slowness: Slowness;
  /** `statSync` calls so far, to time one in STAT_SAMPLE. */
  stats: number;
}

export function createDirectorySource(root: string, options: DirectorySourceOptions = {}): FileSource {
  const abs = resolve(root);
  const r: Root = {
    slash: abs + sep,
    abs,
    dotfiles: options.dotfiles ?? false,
    exclude: (options.exclude ?? []).map((p) => resolve(p)),
    real: undefined,
    excluded: [],
    slowness: slownessFor(options.syncIo),
    stats: 0,
  };
  return {
    stat: (rel) => statFile(r, rel),
    statSync: (rel) => statFileSync(r, rel),
    open: (rel) => openConfined(r, rel),
    openSync: (rel) => openConfinedSync(r, rel),
  };
}

// ---- step 1: where a requested path leads, before anything is opened ------------------------

async function resolveRoot(r: Root): Promise<string | undefined> {
  try {
    const real = await realpath(r.abs);
    const inRoot = real.endsWith(sep) ? real : real + sep;
    r.real = inRoot;
    if (r.exclude.length > 0) {
      // Only those inside the root matter (usually none: then nothing is checked per request).
      // One not there yet keeps its path as given: it can only appear there.
      const reals = await Promise.all(r.exclude.map((p) => realpath(p).catch(() => p).then((x) => x + sep)));
      r.excluded = reals.filter((x) => x !== inRoot && (x.startsWith(inRoot) || x.startsWith(r.slash)));
    }
  } catch (err) {
    if (!isGone(err)) throw err;
    r.real = undefined;
  }
  return r.real;
}

/** `locate` without the thread pool (dotfiles already checked); undefined when it cannot decide cheaply. */
function locateSync(r: Root, rel: string): string | null | undefined {
  const realRoot = r.real;
  if (realRoot === undefined) return undefined;
  const real = realpathSync.native(r.slash + rel);
  // Outside the root as last resolved: the async path re-resolves the root and decides.
  if (!real.startsWith(realRoot)) return undefined;
  return allowed(r, real, realRoot) ? real : null;
}

/**
 * `lstat` of each component of `rel` below the root (the last one only if `last`). When none is a
 * symlink the path cannot leave the root, whatever the root itself resolves to: one system call
 * per level below the root, where realpath makes one per level of the whole path and then a stat
 * is still needed. Returns the last component's stats (`last`) or true (the directories are
 * plain), SYMLINK when a symlink is on the way (realpath decides then), null when missing.
 */
function plainSync(r: Root, rel: string, last: boolean): Stats | true | typeof SYMLINK | null {
  let from = 0;
  for (;;) {
    const slash = rel.indexOf('/', from);
    if (slash < 0 && !last) return true;
    const st = lstatSync(r.slash + (slash < 0 ? rel : rel.slice(0, slash)), NO_THROW);
    if (st === undefined) return null;
    if (st.isSymbolicLink()) return SYMLINK;
    if (slash < 0) return st;
    if (!st.isDirectory()) return null;
    from = slash + 1;
  }
}

/** Is the real path `real` inside the root `realRoot` (a real path ending in a separator) and allowed? */
const allowed = (r: Root, real: string, realRoot: string): boolean =>
  // A symlink named `visible` pointing at `.secret` inside the root is still a dotfile.
  real.startsWith(realRoot) && (r.dotfiles || !hasDotSegment(real.slice(realRoot.length))) && (r.excluded.length === 0 || !r.excluded.some((e) => real.startsWith(e)));

/** `allowed` against the root's real path, re-resolved once when `real` falls outside it. */
async function inside(r: Root, real: string): Promise<boolean> {
  const realRoot = r.real ?? (await resolveRoot(r));
  if (realRoot === undefined) return false;
  if (real.startsWith(realRoot)) return allowed(r, real, realRoot);
  const again = await resolveRoot(r);
  return again !== undefined && allowed(r, real, again);
}

/** The real path of `rel` if it is inside the root and allowed, else null. */
async function locate(r: Root, rel: string): Promise<string | null> {
  if (!r.dotfiles && hasDotSegment(rel)) return null;
  let real: string;
  try {
    real = await realpath(r.slash + rel);
  } catch (err) {
    if (isGone(err)) return null;
    throw err;
  }
  return (await inside(r, real)) ? real : null;
}

// ---- step 2: what an open descriptor holds ---------------------------------------------------

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
async function realOf(r: Root, fd: number, st: Stats, path: string): Promise<string | null> {
  const at = fdPath(fd);
  if (at !== undefined) return at;
  if (r.slowness.slow) return resolved(st, path);
  const t0 = performance.now();
  try {
    return resolvedSync(st, path);
  } finally {
    r.slowness.timed(t0);
  }
}

/**
 * Is `path` (as opened, with O_NOFOLLOW) an entry of the root directory itself? Then the open
 * crossed no directory below the root — nothing a local account writing inside the root could
 * swap — and its last component cannot have been a symlink, so the descriptor needs no check.
 * (The root's own path is the operator's: whoever may rename it can re-point the root, which
 * is followed anyway.)
 */
function inRootDir(r: Root, path: string): boolean {
  const from = path.startsWith(r.slash) ? r.slash.length : r.real !== undefined && path.startsWith(r.real) ? r.real.length : -1;
  return from >= 0 && !path.includes(sep, from);
}

/** Step 2 of containment: does descriptor `fd` (of `st`, opened by `path`) hold a file inside the root, and an allowed one? */
async function confined(r: Root, fd: number, st: Stats, path: string): Promise<boolean> {
  if (inRootDir(r, path)) return true;
  const real = await realOf(r, fd, st, path);
  return real !== null && (await inside(r, real));
}

/** `confined` without the thread pool; undefined when it cannot decide cheaply (outside the root as last resolved: the root may have moved). */
function confinedSync(r: Root, fd: number, st: Stats, path: string): boolean | undefined {
  if (inRootDir(r, path)) return true;
  const realRoot = r.real;
  if (realRoot === undefined) return undefined;
  const real = fdPath(fd) ?? resolvedSync(st, path);
  if (real === null) return false;
  return real.startsWith(realRoot) ? allowed(r, real, realRoot) : undefined;
}

// ---- the FileSource methods ------------------------------------------------------------------

async function statFile(r: Root, rel: string): Promise<FileInfo | null> {
  const real = await locate(r, rel);
  if (real === null) return null;
  const st = await stat(real).catch(orGone);
  return st !== null && st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } : null;
}

function statFileSync(r: Root, rel: string): FileInfo | null | undefined {
  if (r.slowness.slow) return undefined;
  if (!r.dotfiles && hasDotSegment(rel)) return null;
  const t0 = ++r.stats % STAT_SAMPLE === 0 ? performance.now() : -1;
  try {
    // Excluded directories need no realpath here, unlike in `locate`: this only revalidates a file
    // the engine holds, whose bytes were read from a descriptor the checks admitted, and a plain
    // path (no symlink below the root) to the same inode, size and mtime is that file still.
    let st = plainSync(r, rel, true);
    if (st === SYMLINK) {
      const real = locateSync(r, rel);
      if (real === undefined || real === null) return real;
      st = statSync(real, NO_THROW) ?? null;
    }
    // The Stats object itself is a FileInfo: no copy on the hot path of every revalidation.
    return st !== null && st !== true && st.isFile() ? st : null;
  } catch (err) {
    return orGone(err);
  } finally {
    if (t0 >= 0) r.slowness.timed(t0);
  }
}

async function openConfined(r: Root, rel: string): Promise<OpenFile | null> {
  const real = await locate(r, rel);
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
    if (st.isFile() && (await confined(r, fd, st, real))) return openFileOf(fd, st, false);
  } catch (err) {
    await closeQuietly(fd);
    throw err;
  }
  await closeQuietly(fd);
  return null;
}

function openConfinedSync(r: Root, rel: string): OpenFile | null | undefined {
  if (r.slowness.slow) return undefined;
  if (!r.dotfiles && hasDotSegment(rel)) return null;
  const t0 = performance.now();
  let fd: number;
  let path: string | null | undefined;
  try {
    const dirs = plainSync(r, rel, false);
    if (dirs === null) return null;
    path = dirs === SYMLINK ? locateSync(r, rel) : r.slash + rel;
    if (path === undefined || path === null) return path;
    directorySeams.beforeOpen?.(path);
    try {
      fd = openSync(path, OPEN_FLAGS);
    } catch (err) {
      // ELOOP from O_NOFOLLOW: the file itself is a symlink; realpath decides where it leads.
      if ((err as NodeJS.ErrnoException).code !== 'ELOOP' || dirs === SYMLINK) return orNotFile(err);
      path = locateSync(r, rel);
      if (path === undefined || path === null) return path;
      directorySeams.beforeOpen?.(path);
      fd = openSync(path, OPEN_FLAGS);
    }
  } catch (err) {
    return orNotFile(err);
  } finally {
    r.slowness.timed(t0);
  }
  directorySeams.afterOpen?.(path);
  let ok: boolean | undefined;
  let st: Stats;
  try {
    st = fstatSync(fd);
    ok = st.isFile() ? confinedSync(r, fd, st, path) : false;
  } catch (err) {
    closeSyncQuietly(fd);
    throw err;
  }
  if (ok === true) return openFileOf(fd, st, true);
  closeSyncQuietly(fd);
  // undefined: outside the root as last resolved; the thread-pool path re-resolves it and decides.
  return ok === false ? null : undefined;
}
