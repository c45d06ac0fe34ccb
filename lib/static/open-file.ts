// Descriptors a directory source opened, as `OpenFile`s: reading, streaming and closing them.
import { close as closeFd, closeSync, constants, createReadStream, fstat, open as openFd, read as readFd, type Stats } from 'node:fs';
import type { FileInfo, OpenFile } from './engine.js';
import { PUMP_CHUNK } from './file-pump.js';

/** Errors that mean "no file there" (404), as opposed to a failure worth reporting. */
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']);
export const isGone = (err: unknown): boolean => GONE.has((err as NodeJS.ErrnoException).code ?? '');
export const orGone = (err: unknown): null => {
  if (isGone(err)) return null;
  throw err;
};

// O_NONBLOCK: opening a FIFO planted in a root must not park a thread-pool thread forever (it is
// then refused as "not a regular file"); it changes nothing for regular files. O_NOFOLLOW: the path
// opened is a real path, so its last component being a symlink means it was swapped in since.
export const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

export function openFile(path: string): Promise<number> {
  return new Promise((ok, fail) => openFd(path, OPEN_FLAGS, (err, fd) => (err ? fail(err) : ok(fd))));
}

/** An `open` failure that means "no such regular file" is null (404); anything else is thrown. */
export function orNotFile(err: unknown): null {
  if (isGone(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return null;
  throw err;
}

/**
 * The OpenFile for an open descriptor of a regular file; it owns `fd` from here on. `syncClose`:
 * the file was opened synchronously (fast local storage), so closing it after a small read is too.
 */
export function openFileOf(fd: number, st: FileInfo, syncClose: boolean): OpenFile {
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
      return createReadStream('', { fd, start, end, autoClose: true, emitClose: true, highWaterMark: PUMP_CHUNK });
    },
    readAt(buf, length, position, done) {
      if (used) throw new Error('OpenFile already used');
      readFd(fd, buf, 0, length, position, (err, n) => done(err, n));
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

export function closeSyncQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing useful to do: the descriptor is gone either way
  }
}

export function closeQuietly(fd: number): Promise<void> {
  return new Promise((ok) => closeFd(fd, () => ok()));
}

export function fstatFile(fd: number): Promise<Stats> {
  return new Promise((ok, fail) => fstat(fd, (err, st) => (err ? fail(err) : ok(st))));
}