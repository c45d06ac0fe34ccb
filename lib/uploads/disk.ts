// The file and directory syscalls of local storage: callback `fs` as promises for the thread pool,
// and the `*Sync` twins for what is written on the event loop (`LocalStorageOptions.syncWriteBelow`).
import { close, closeSync, mkdir, mkdirSync, open, openSync, writev, writevSync } from 'node:fs';
import { dirname } from 'node:path';

// ---- writing every byte ---------------------------------------------------------------------
// `writev` may write less than it was given (a disk filling up): the rest is written again, which
// then fails with the real error (ENOSPC). A write of nothing at all would loop for ever: EIO.

/** `writev` until every byte is down: a short write is retried for the rest. */
export function writeAll(fd: number, chunks: Buffer[], size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (bufs: Buffer[], left: number): void => {
      writev(fd, bufs, (err, written) => {
        if (err) return reject(err);
        if (written >= left) return resolve();
        if (written === 0) return reject(noProgress());
        step(skipBytes(bufs, written), left - written);
      });
    };
    step(chunks, size);
  });
}

/** `writevSync` until every byte is down, on this thread: a short write is retried for the rest. */
export function writeAllSync(fd: number, chunks: Buffer[], size: number): void {
  let bufs = chunks;
  let left = size;
  while (left > 0) {
    const written = writevSync(fd, bufs);
    if (written === 0) throw noProgress();
    left -= written;
    if (left > 0) bufs = skipBytes(bufs, written);
  }
}

const noProgress = (): Error => Object.assign(new Error('write made no progress'), { code: 'EIO' });

/** `bufs` without its first `n` bytes (after a short write). */
function skipBytes(bufs: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (skip >= bufs[i]!.length) skip -= bufs[i++]!.length;
  const rest = bufs.slice(i);
  rest[0] = rest[0]!.subarray(skip);
  return rest;
}

/** A whole small file in three syscalls on this thread: open, writev, close. */
export function writeFileSync(path: string, chunks: Buffer[], size: number, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    writeAllSync(fd, chunks, size);
  } finally {
    closeSync(fd);
  }
}

export const openExclusive = (path: string, mode: number): Promise<number> =>
  new Promise((resolve, reject) => open(path, 'wx', mode, (err, fd) => (err ? reject(err) : resolve(fd))));
export const closeFd = (fd: number): Promise<void> => new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));

// ---- directories ----------------------------------------------------------------------------
// `.wharf-tmp`, this node's area in it and `f` removed under a running server (a restore, a
// remount, a node that found this one's lease stale) are made again, but never the data directory
// itself: where it is gone (an unmounted volume) uploads fail rather than land on whatever disk is below.

/** Directories above a staged upload id that may be made again: this node's area, and `.wharf-tmp`. */
export const ROOT_PARENTS = 2;

/** Makes the directory `path` whose `parents` nearest ancestors may have been removed, on this thread. */
export const mkdirRootSync = (path: string, mode: number, parents = ROOT_PARENTS): void => {
  try {
    mkdirSync(path, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parents === 0) throw err;
    try {
      mkdirRootSync(dirname(path), mode, parents - 1);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    mkdirSync(path, mode);
  }
};
/** The same through the thread pool; a parent made meanwhile by someone else (EEXIST) is fine. */
export const mkdirRoot = (path: string, mode: number, parents = ROOT_PARENTS): Promise<void> =>
  mkdirOne(path, mode).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT' || parents === 0) throw err;
    await mkdirRoot(dirname(path), mode, parents - 1).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await mkdirOne(path, mode);
  });
/** mkdir that is content when the directory is already there. */
export function mkdirExistingSync(path: string, mode: number): void {
  try {
    mkdirSync(path, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
export const mkdirOne = (path: string, mode: number): Promise<void> =>
  new Promise((resolve, reject) => mkdir(path, mode, (err) => (err ? reject(err) : resolve())));
