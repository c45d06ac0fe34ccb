// The storage seam: every read and write of uploaded bytes goes through `Storage`, so the HTTP layer
// (uploads.ts) never touches `fs` for them and an object-store backend can be added later without
// touching it. The one implementation here is the local disk layout of PROTOCOL.md §1:
//
//   <dataDir>/f/<id>/<path>            committed uploads (the layout Wave's client copies into)
//   <dataDir>/.wharf-tmp/<pid>.<instance>.<n>/<id>/<path>
//                                      one request's staged files, invisible to readers; same
//                                      filesystem, so committing an upload is one directory rename
import { randomBytes } from 'node:crypto';
import { close, constants, mkdir as mkdirCb, open, writev } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { WharfError, fromFsError } from './errors.js';
import { isUploadId } from './filenames.js';
import { createDirectorySource, type FileSource } from './static.js';

/** A staged file being written; `bytes` counts what it has accepted so far. */
export interface StagedFile extends Writable {
  readonly bytes: number;
}

/**
 * One request's files on their way in. Nothing staged is visible to readers until `commit`, which
 * publishes every upload id of the request together (each id appears whole or not at all); `abort`
 * removes every staged byte. After either, the staging cannot be used again.
 */
export interface Staging {
  /**
   * A writable for `<id>/<rel>` (`rel` already checked by `checkFilename`). Bytes are coalesced and
   * written with few syscalls; backpressure is real (`write()` returns false while a batch is on its
   * way to disk). `finish` means every byte is stored and the file closed; an I/O error destroys it.
   */
  file(id: string, rel: string): StagedFile;
  /** Stages a copy of the local file `from` as `<id>/<rel>` (copy-on-write where the filesystem can); resolves with its size. */
  copy(id: string, rel: string, from: string): Promise<number>;
  /** Publishes every upload id staged. Every file must be finished. On failure nothing is published. */
  commit(): Promise<void>;
  /** Stops writers, waits for their descriptors to close and removes every staged byte. Idempotent. */
  abort(): Promise<void>;
}

export interface Storage {
  /** The read side (`stat`, ranged `open`) for `<id>/<path>`, served by the static engine; anything whose first segment is not an upload id is absent. */
  readonly source: FileSource;
  /** Creates the layout and removes what a crashed run left in the temp area. */
  start(): Promise<void>;
  stage(): Staging;
  /** Copies the stored file `<id>/<rel>` to the local path `to` (through a temp file next to it, then a rename); resolves with its size. 404 if absent. */
  copyOut(id: string, rel: string, to: string): Promise<number>;
  /** Removes upload `id` whole, at once for readers; false if there was none. */
  remove(id: string): Promise<boolean>;
}

export interface LocalStorageOptions {
  /** Bytes gathered before one `writev` to disk. Default 256 KiB: 2,048 syscalls for 512 MiB, and at most ~2 batches held per file being written. */
  writeBatch?: number;
}

/** The temp area's name inside `dataDir`: distinctive, so sweeping it can never touch the host's own files. */
export const TEMP_DIR = '.wharf-tmp';

// Storage instances alive in this process: a start() sweeps its own process's leftovers only when
// they belong to none of these (a second server on the same dataDir in one process keeps its uploads).
const liveInstances = new Set<string>();

/**
 * Maps a storage failure to what the uploader is told. Unlike a read, a write that fails for lack of
 * permission is the server's fault, not the client's, so it is a 500 rather than `fromFsError`'s 403.
 */
export function storageError(err: unknown): WharfError {
  if (err instanceof WharfError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EROFS':
    case 'EMFILE':
    case 'ENFILE':
      return fromFsError(err);
    case 'EACCES':
    case 'EPERM':
      return new WharfError('STORAGE_DENIED', `the server may not write to its data directory (${code})`, 500, { cause: err });
    // Two names that this filesystem folds together (case, normalisation): a client problem.
    case 'EEXIST':
    case 'ENOTDIR':
    case 'EISDIR':
      return new WharfError('DUPLICATE_FILENAME', 'two files of the upload have the same name on this server', 400, { cause: err });
    case 'ENAMETOOLONG':
      return new WharfError('BAD_FILENAME', 'a filename is too long for this server', 400, { cause: err });
    default:
      return new WharfError('STORAGE_ERROR', `storage I/O error${code ? ` (${code})` : ''}`, 500, { cause: err });
  }
}

export function createLocalStorage(dataDir: string, options: LocalStorageOptions = {}): Storage {
  const batch = Math.max(16 * 1024, options.writeBatch ?? 256 * 1024);
  const filesDir = join(dataDir, 'f');
  const tempDir = join(dataDir, TEMP_DIR);
  const instance = randomBytes(4).toString('hex');
  liveInstances.add(instance);
  let seq = 0;
  const tempName = (): string => join(tempDir, `${process.pid}.${instance}.${++seq}`);

  // Created on first use: the directory may not exist before start().
  let dir: FileSource | undefined;
  const uploads = (): FileSource => (dir ??= createDirectorySource(filesDir, { dotfiles: true }));
  const isUpload = (rel: string): boolean => {
    const slash = rel.indexOf('/');
    return isUploadId(slash < 0 ? rel : rel.slice(0, slash));
  };
  const source: FileSource = {
    stat: async (rel) => (isUpload(rel) ? uploads().stat(rel) : null),
    open: async (rel) => (isUpload(rel) ? uploads().open(rel) : null),
  };

  function isStale(name: string): boolean {
    const m = /^(\d+)\.([0-9a-f]{8})\./.exec(name);
    if (!m) return true;
    const pid = Number(m[1]);
    if (pid === process.pid) return !liveInstances.has(m[2]!);
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }

  return {
    source,
    async start() {
      await mkdir(filesDir, { recursive: true });
      await mkdir(tempDir, { recursive: true });
      const stale = (await readdir(tempDir)).filter(isStale);
      await Promise.all(stale.map((name) => rm(join(tempDir, name), { recursive: true, force: true })));
    },
    stage: () => createStaging(tempName(), filesDir, batch),
    async copyOut(id, rel, to) {
      const info = await source.stat(`${id}/${rel}`);
      if (!info) throw new WharfError('NOT_FOUND', 'no such uploaded file', 404);
      const temp = join(dirname(to), `.wharf-${randomBytes(6).toString('hex')}.tmp`);
      try {
        await copyFile(join(filesDir, id, rel), temp, constants.COPYFILE_FICLONE);
        await rename(temp, to);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return info.size;
    },
    async remove(id) {
      if (!isUploadId(id)) return false;
      // Out of readers' sight in one rename, then deleted at leisure.
      const grave = tempName();
      try {
        await rename(join(filesDir, id), grave);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
      await rm(grave, { recursive: true, force: true });
      return true;
    },
  };
}

function createStaging(root: string, filesDir: string, batch: number): Staging {
  const ids = new Set<string>();
  const dirs = new Map<string, Promise<void>>();
  const writers = new Set<StagedFile>();
  const copies = new Set<Promise<unknown>>();
  let state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  let aborting: Promise<void> | undefined;

  // One mkdir per directory, shared by every file in it; the request's own directory is created
  // only when its first file is, so a request refused early costs no syscall at all.
  const ensureDir = (path: string): Promise<void> => {
    let made = dirs.get(path);
    if (!made) {
      made = path === root ? mkdirp(root) : ensureDir(dirname(path)).then(() => mkdirOne(path));
      dirs.set(path, made);
    }
    return made;
  };
  // A file that failed may have left a partial copy under its id: such a staging can only be aborted.
  let broken = false;
  const usable = (id: string): void => {
    if (state !== 'open') throw new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
    ids.add(id);
  };

  return {
    file(id, rel) {
      usable(id);
      const path = join(root, id, rel);
      const writer = createFileWriter(path, () => ensureDir(dirname(path)), batch);
      writers.add(writer);
      writer.once('finish', () => writers.delete(writer));
      writer.once('close', () => {
        if (writers.delete(writer)) broken = true;
      });
      return writer;
    },
    async copy(id, rel, from) {
      usable(id);
      const path = join(root, id, rel);
      const work = ensureDir(dirname(path))
        .then(() => copyFile(from, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE))
        .then(() => stat(path));
      copies.add(work);
      try {
        return (await work).size;
      } catch (err) {
        broken = true;
        throw err;
      } finally {
        copies.delete(work);
      }
    },
    async commit() {
      if (state !== 'open') throw new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
      if (writers.size > 0 || copies.size > 0 || broken) throw new WharfError('INTERNAL', 'commit with a file unfinished or failed', 500);
      state = 'committing';
      const moves = [...ids].map((id) => rename(join(root, id), join(filesDir, id)).then(() => id));
      const results = await Promise.allSettled(moves);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        state = 'aborted';
        const published = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
        await Promise.all(published.map((id) => rm(join(filesDir, id), { recursive: true, force: true })));
        await rm(root, { recursive: true, force: true });
        throw failed.reason;
      }
      state = 'committed';
      if (dirs.size > 0) await rm(root, { recursive: true, force: true });
    },
    abort() {
      if (state === 'committed') return Promise.resolve();
      state = 'aborted';
      return (aborting ??= (async () => {
        const closing = [...writers].map((w) => new Promise((resolve) => (w.closed ? resolve(null) : w.once('close', resolve))));
        for (const w of writers) w.destroy();
        await Promise.all(closing);
        await Promise.allSettled(copies);
        // Every mkdir must have landed before the tree is removed, or a late one could resurrect it.
        await Promise.allSettled(dirs.values());
        if (dirs.size > 0) await rm(root, { recursive: true, force: true });
      })());
    },
  };
}

const mkdirp = async (path: string): Promise<void> => {
  await mkdir(path, { recursive: true });
};
const mkdirOne = (path: string): Promise<void> =>
  new Promise((resolve, reject) => mkdirCb(path, (err) => (err ? reject(err) : resolve())));

/**
 * A file written through the thread pool with as few syscalls as possible: chunks (slices of socket
 * reads, 16–64 KiB) are gathered into batches of `batch` bytes and each batch goes down in one
 * `writev`; the file is opened only at the first batch (a small file costs open + writev + close).
 * Each accepted chunk is acknowledged at once while a batch fills, and only the chunk that completes
 * a batch waits for the disk, so memory per file is bounded by about two batches.
 */
function createFileWriter(path: string, ready: () => Promise<void>, batch: number): StagedFile {
  let fd: number | undefined;
  let held: Buffer[] = [];
  let heldBytes = 0;
  let bytes = 0;
  let io: Promise<void> | undefined;

  const flush = async (): Promise<void> => {
    if (fd === undefined) {
      await ready();
      fd = await openExclusive(path);
    }
    const chunks = held;
    const size = heldBytes;
    held = [];
    heldBytes = 0;
    if (size > 0) await writeAll(fd, chunks, size);
  };
  const track = (work: Promise<void>, cb: (err?: Error | null) => void): void => {
    io = work;
    work.then(() => cb(), cb).finally(() => {
      if (io === work) io = undefined;
    });
  };
  const accept = (chunks: Buffer[], cb: (err?: Error | null) => void): void => {
    for (const chunk of chunks) {
      held.push(chunk);
      heldBytes += chunk.length;
      bytes += chunk.length;
    }
    if (heldBytes < batch) return cb();
    track(flush(), cb);
  };

  const writer = new Writable({
    highWaterMark: batch,
    write: (chunk: Buffer, _enc, cb) => accept([chunk], cb),
    writev: (entries, cb) => accept(entries.map((e) => e.chunk as Buffer), cb),
    final: (cb) =>
      track(
        flush().then(() => {
          const done = fd!;
          fd = undefined;
          return closeFd(done);
        }),
        cb,
      ),
    // A batch may still be on its way to disk: let it land before the descriptor is closed.
    destroy: (err, cb) => {
      held = [];
      void Promise.resolve(io)
        .catch(() => {})
        .then(() => (fd === undefined ? undefined : closeFd(fd).catch(() => {})))
        .then(() => {
          fd = undefined;
          cb(err);
        });
    },
  });
  Object.defineProperty(writer, 'bytes', { get: () => bytes, enumerable: true });
  return writer as StagedFile;
}

const openExclusive = (path: string): Promise<number> =>
  new Promise((resolve, reject) => open(path, 'wx', 0o644, (err, fd) => (err ? reject(err) : resolve(fd))));
const closeFd = (fd: number): Promise<void> => new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));

/** `writev` until every byte is down: a short write (a disk filling up) is retried for the rest, which then fails with the real error. */
function writeAll(fd: number, chunks: Buffer[], size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (bufs: Buffer[], left: number): void => {
      writev(fd, bufs, (err, written) => {
        if (err) return reject(err);
        if (written >= left) return resolve();
        if (written === 0) return reject(Object.assign(new Error('write made no progress'), { code: 'EIO' }));
        let skip = written;
        let i = 0;
        while (skip >= bufs[i]!.length) skip -= bufs[i++]!.length;
        const rest = bufs.slice(i);
        rest[0] = rest[0]!.subarray(skip);
        step(rest, left - written);
      });
    };
    step(chunks, size);
  });
}
