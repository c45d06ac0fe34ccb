// The storage seam: every read and write of uploaded bytes goes through `Storage`, so the HTTP layer
// (uploads.ts) never touches `fs` for them and an object-store backend can be added later without
// touching it. The one implementation here is the local disk layout of docs/protocol.md §1:
//
//   <dataDir>/f/<id>/<path>            committed uploads (the layout Wave's client copies into)
//   <dataDir>/f/<id>/.wharf-upload.json
//                                      the upload's record: who uploaded it (trust.ts), written
//                                      into the staged directory, so published by the same rename
//   <dataDir>/.wharf-tmp/<pid>.<instance>.<n>/<path>
//                                      one upload id being staged, invisible to readers; same
//                                      filesystem, so committing it is one rename to f/<id>
//
// Commits are atomic for readers, not durable: nothing is fsync'd, so a power cut right after an
// answer may lose the upload's last bytes (as with busboy, formidable or multer writing to disk).
import { randomBytes } from 'node:crypto';
import { close, closeSync, constants, linkSync, mkdir as mkdirCb, mkdirSync, open, openSync, renameSync, writev, writevSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, open as openHandle, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { WharfError, fromFsError } from '../common/errors.js';
import { isUploadId } from './filenames.js';
import { slownessFor, type Slowness, type SyncIo } from '../static/sync-io.js';
import { createDirectorySource, type FileSource, type OpenFile } from '../static/engine.js';
import { MAX_RECORD_BYTES, RECORD_NAME, isRecordName, serializeRecord, trustOf, type Trust, type UploadRecord } from './upload-record.js';

/**
 * A staged file being written. Not a stream: the multipart parser hands it slices as it parses them
 * (`sinkPart`), with no `Writable`, pipe or per-chunk callback between the socket and the file.
 */
export interface StagedFile {
  /** Bytes accepted so far. */
  readonly bytes: number;
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
  /** Creates the layout and removes what a crashed run left in the temp area. */
  start(): Promise<void>;
  stage(): Staging;
  /** Copies the stored file `<id>/<rel>` to the local path `to` (through a temp file next to it, then a rename); resolves with its size. 404 if absent. */
  copyOut(id: string, rel: string, to: string): Promise<number>;
  /** Removes upload `id` whole, at once for readers; false if there was none. */
  remove(id: string): Promise<boolean>;
}

export interface LocalStorageOptions {
  /** Bytes of one file gathered before one `writev` to disk. Default 1 MiB: 512 syscalls for 512 MiB. */
  writeBatch?: number;
  /**
   * Bytes all files being written may hold, together, while they gather batches; past it each
   * writes what it has at its next chunk, so 64 uploads at once do not hold 64 batches. Default 8 MiB.
   */
  writeBuffer?: number;
  /**
   * The first this many bytes of each file are written on the event loop as they arrive (mkdir,
   * open, one `writev` per 64 KiB, close), the rest in batches through the thread pool. A
   * page-cache write of 64 KiB costs less CPU than the thread-pool round trip that would carry it
   * (two thread wake-ups, an eventfd, an epoll turn), and a chunk written at once is a chunk no
   * longer held: 64 uploads of 1 MiB at once peak ~15 MiB lower than with batches (bench/uploads).
   * The loop is held for one write at a time, as nginx holds it to write a request body to its
   * temp file; should those writes turn out slow (slowness.ts: a throttled or network disk), every
   * write goes through the thread pool for a while (a back-off that grows while they stay slow).
   * 0 turns it off. Default 1 MiB.
   */
  syncWriteBelow?: number;
  /** `'off'`: no file-system call of this storage on the event loop, ever (see slowness.ts). Default `'auto'`. */
  syncIo?: SyncIo;
  /**
   * The trust of an upload without a record (trust.ts): files copied straight into the layout, or
   * stored before records existed. Default `'user'`: whoever made them cannot be known, so they
   * are served so that they cannot run script.
   */
  unrecorded?: Trust;
  /**
   * Directories are made 0750 and files 0640 (the data dir's group may read uploads: a web server
   * serving it, say) instead of owner-only 0700 and 0600. Either way the umask can only take bits
   * away. Default false.
   */
  groupReadable?: boolean;
  /** Where `start` says that an `f/` it did not make is open to other accounts. Default: nowhere. */
  warn?: (message: string) => void;
}

/** Modes of what storage creates: owner-only as Wave's upload directories, or readable by the group. */
export interface StorageModes {
  dir: number;
  file: number;
}

export function storageModes(groupReadable = false): StorageModes {
  return groupReadable ? { dir: 0o750, file: 0o640 } : { dir: 0o700, file: 0o600 };
}

const octal = (mode: number): string => `0${(mode & 0o777).toString(8)}`;

/** The temp area's name inside `dataDir`: distinctive, so sweeping it can never touch the host's own files. */
export const TEMP_DIR = '.wharf-tmp';

// Upload ids published per turn of the event loop on commit.
const RENAME_SLICE = 64;

// Upload ids whose trust is remembered: an id's record never changes once it is committed, so the
// record is read once, when a file of the id is first opened (at most ~1.5 MiB for all of them).
const TRUST_CACHE = 8192;

// O_NONBLOCK: a FIFO planted where a record should be must not park a thread-pool thread.
const RECORD_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

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
  const memory: WriteMemory = {
    batch: Math.max(16 * 1024, options.writeBatch ?? 1024 * 1024),
    syncBelow: Math.max(0, options.syncWriteBelow ?? 1024 * 1024),
    slowness: slownessFor(options.syncIo),
    budget: Math.max(0, options.writeBuffer ?? 8 * 1024 * 1024),
    held: 0,
  };
  const filesDir = join(dataDir, 'f');
  const tempDir = join(dataDir, TEMP_DIR);
  const modes = storageModes(options.groupReadable);
  const instance = randomBytes(4).toString('hex');
  liveInstances.add(instance);
  let seq = 0;
  const prefix = join(tempDir, `${process.pid}.${instance}.`);
  const tempName = (): string => `${prefix}${++seq}`;

  // Created on first use: the directory may not exist before start().
  let dir: FileSource | undefined;
  const uploads = (): FileSource => (dir ??= createDirectorySource(filesDir, { dotfiles: true, syncIo: options.syncIo ?? 'auto' }));
  /** Is `rel` a file of an upload that may be served: under an upload id, and not the id's record? */
  const servable = (rel: string): boolean => {
    const slash = rel.indexOf('/');
    if (!isUploadId(slash < 0 ? rel : rel.slice(0, slash))) return false;
    // Every spelling of the record's name starts with a dot: other names cost one comparison.
    if (slash < 0 || rel.charCodeAt(slash + 1) !== 46) return true;
    const next = rel.indexOf('/', slash + 1);
    return !isRecordName(next < 0 ? rel.slice(slash + 1) : rel.slice(slash + 1, next));
  };
  const unrecorded = options.unrecorded ?? 'user';
  const trusts = new Map<string, Trust>();
  /**
   * The trust of upload `id` from its record; never rejects. A record that cannot be read now (EMFILE,
   * EIO…) makes an end user's answer that is not remembered: the next open reads it again.
   */
  const readTrust = (id: string): Promise<Trust | undefined> =>
    readRecord(join(filesDir, id, RECORD_NAME)).then((text) => trustOf(text, unrecorded), () => undefined);
  const source: FileSource = {
    stat: async (rel) => (servable(rel) ? uploads().stat(rel) : null),
    async open(rel) {
      if (!servable(rel)) return null;
      const slash = rel.indexOf('/');
      const id = slash < 0 ? rel : rel.slice(0, slash);
      let trust = trusts.get(id);
      let file: OpenFile | null;
      if (trust === undefined) {
        // The record is read beside the file's own open, not after it.
        let read: Trust | undefined;
        [file, read] = await Promise.all([uploads().open(rel), readTrust(id)]);
        if (file === null) return null; // no such file: no id to remember (nor to fill the cache with)
        if (read !== undefined) {
          if (trusts.size >= TRUST_CACHE) trusts.delete(trusts.keys().next().value!);
          trusts.set(id, read);
        }
        trust = read ?? 'user';
      } else {
        file = await uploads().open(rel);
        if (file === null) return null;
      }
      if (trust !== 'app') file.untrusted = true;
      return file;
    },
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
      // Made with the modes (the data dir too, and any missing parent); never chmod'ed after: the
      // mode of a directory that was there already is its owner's call. An open data dir shows
      // others the names f/ and .wharf-tmp only; an open f/ (an older wharf made it 0755) shows
      // every upload id, and that is said out loud.
      await mkdir(filesDir, { recursive: true, mode: modes.dir });
      await mkdir(tempDir, { recursive: true, mode: modes.dir });
      const filesMode = (await stat(filesDir)).mode & 0o777;
      if ((filesMode & ~modes.dir) !== 0) {
        options.warn?.(`wharf: warning: ${filesDir} has mode ${octal(filesMode)}: other accounts on this machine can list every upload id in it (each id is the URL of an upload) and read the uploads made before; wharf does not change the mode of a directory it did not create (new uploads are ${octal(modes.dir)}/${octal(modes.file)}): chmod ${octal(modes.dir)} ${filesDir}, and chmod -R ${modes.dir === 0o700 ? 'go-rwx' : 'g-w,o-rwx'} it for the uploads made before`);
      }
      const stale = (await readdir(tempDir)).filter(isStale);
      await Promise.all(stale.map((name) => rm(join(tempDir, name), { recursive: true, force: true })));
    },
    stage: () => createStaging(tempName, filesDir, memory, modes),
    async copyOut(id, rel, to) {
      const info = await source.stat(`${id}/${rel}`);
      if (!info) throw new WharfError('NOT_FOUND', 'no such uploaded file', 404);
      const temp = join(dirname(to), `.wharf-${randomBytes(6).toString('hex')}.tmp`);
      try {
        // The copy is the app's file: it gets the mode a new file gets (0666 less the umask), as
        // with the HTTP client, not the upload's owner-only one that copyFile would carry over.
        const created = await openHandle(temp, 'wx');
        const mode = (await created.stat().finally(() => created.close())).mode;
        await copyFile(join(filesDir, id, rel), temp, constants.COPYFILE_FICLONE);
        await chmod(temp, mode & 0o777);
        await rename(temp, to);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return info.size;
    },
    async remove(id) {
      if (!isUploadId(id)) return false;
      trusts.delete(id);
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

function createStaging(tempName: () => string, filesDir: string, memory: WriteMemory, modes: StorageModes): Staging {
  // Each upload id is staged in a temp directory of its own, renamed to f/<id> on commit: two
  // inodes per file of a plain upload (its directory and itself), the least the layout allows, and
  // a link to the request's record.
  const roots = new Map<string, Root>();
  const writers = new Set<StagedFile>();
  const copies = new Set<Promise<unknown>>();
  let state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  let aborting: Promise<void> | undefined;
  // A file that failed may have left a partial copy under its id: such a staging can only be aborted.
  let broken = false;

  const rootOf = (id: string): Root => {
    if (state !== 'open') throw new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
    let root = roots.get(id);
    if (root === undefined) {
      root = createRoot(tempName(), modes);
      roots.set(id, root);
    }
    return root;
  };
  // `rel` is a checked relative path: joining needs no normalising.
  const pathOf = (root: Root, rel: string): string => `${root.path}${sep}${rel}`;
  const dirOf = (root: Root, rel: string): string => {
    const slash = rel.lastIndexOf('/');
    return slash < 0 ? root.path : pathOf(root, rel.slice(0, slash));
  };
  const removeAll = (): Promise<unknown> => Promise.all([...roots.values()].map((root) => rm(root.path, { recursive: true, force: true })));

  const staging: Staging = {
    file(id, rel, drain) {
      const root = rootOf(id);
      const writer = createFileWriter(pathOf(root, rel), dirOf(root, rel), root, memory, drain);
      writers.add(writer);
      writer.done.then(
        () => writers.delete(writer),
        () => {
          writers.delete(writer);
          broken = true;
        },
      );
      return writer;
    },
    put(id, rel, chunks) {
      let size = 0;
      for (const c of chunks) size += c.length;
      if (size <= memory.syncBelow && !memory.slowness.slow) {
        const t0 = performance.now();
        try {
          const root = rootOf(id);
          if (root.dirSync(dirOf(root, rel))) {
            writeFileSync(pathOf(root, rel), chunks, size, modes.file);
            return Promise.resolve(size);
          }
        } catch (err) {
          broken = true;
          return Promise.reject(err);
        } finally {
          memory.slowness.timed(t0);
        }
      }
      // A directory of it is being made through the thread pool, or the file is big: a writer,
      // whose backpressure means nothing here (the bytes are all in memory already).
      let writer: StagedFile;
      try {
        writer = staging.file(id, rel, noop);
      } catch (err) {
        return Promise.reject(err); // an aborted staging: a rejection, as on the path above
      }
      for (const c of chunks) writer.write(c);
      writer.end();
      return writer.done;
    },
    async copy(id, rel, from) {
      const root = rootOf(id);
      const path = pathOf(root, rel);
      const work = root.dir(dirname(path))
        .then(() => copyFile(from, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE))
        // copyFile gives the copy its source's mode: the upload's own instead.
        .then(() => chmod(path, modes.file))
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
    async commit(record) {
      if (state !== 'open') throw new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
      if (writers.size > 0 || copies.size > 0 || broken) throw new WharfError('INTERNAL', 'commit with a file unfinished or failed', 500);
      state = 'committing';
      // Every record first, so that no id is published without one.
      try {
        await writeRecords([...roots.values()], Buffer.from(serializeRecord(record)), memory);
      } catch (err) {
        state = 'aborted';
        await removeAll();
        throw err;
      }
      // Renames are the cheapest metadata syscall there is, cheaper than a thread-pool round trip:
      // done on this thread, a slice at a time, so a 1,000-file request holds the loop for no more
      // than a slice.
      const published: string[] = [];
      try {
        for (const [id, root] of roots) {
          try {
            renameSync(root.path, join(filesDir, id));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
            mkdirExistingSync(filesDir, modes.dir);
            renameSync(root.path, join(filesDir, id));
          }
          published.push(id);
          if (published.length % RENAME_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      } catch (err) {
        state = 'aborted';
        await Promise.all(published.map((id) => rm(join(filesDir, id), { recursive: true, force: true })));
        await removeAll();
        throw err;
      }
      state = 'committed';
    },
    abort() {
      if (state === 'committed') return Promise.resolve();
      state = 'aborted';
      return (aborting ??= (async () => {
        const closing = [...writers].map((w) => w.done.catch(noop));
        const why = new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
        for (const w of writers) w.destroy(why);
        await Promise.all(closing);
        await Promise.allSettled(copies);
        // Every mkdir must have landed before the tree is removed, or a late one could resurrect it.
        await Promise.all([...roots.values()].map((root) => root.settled()));
        await removeAll();
      })());
    },
  };
  return staging;
}

// `.wharf-tmp` and `f` removed under a running server (a restore, a remount) are made again, but
// never the data directory itself: where it is gone (an unmounted volume) uploads fail rather than
// land on whatever disk is below.
const mkdirRootSync = (path: string, mode: number): void => {
  try {
    mkdirSync(path, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirExistingSync(dirname(path), mode);
    mkdirSync(path, mode);
  }
};
const mkdirRoot = (path: string, mode: number): Promise<void> =>
  mkdirOne(path, mode).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
    await mkdirOne(dirname(path), mode).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await mkdirOne(path, mode);
  });
/** mkdir that is content when the directory is already there. */
function mkdirExistingSync(path: string, mode: number): void {
  try {
    mkdirSync(path, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
const mkdirOne = (path: string, mode: number): Promise<void> =>
  new Promise((resolve, reject) => mkdirCb(path, mode, (err) => (err ? reject(err) : resolve())));

/**
 * One upload id's temp directory, and the directories made in it: one mkdir per directory, shared
 * by every file in it, made when its first file is. A plain upload's file sits in its root, so
 * nothing but the root's own flag is ever looked at; the sets are for directory uploads.
 */
interface Root {
  readonly path: string;
  /** Modes of the directories and files made in it. */
  readonly modes: StorageModes;
  /** Makes `dir` (the root or a directory in it) and those above it, through the thread pool. */
  dir(dir: string): Promise<void>;
  /** The same without the thread pool; false when that cannot be done (an async mkdir of it is under way). */
  dirSync(dir: string): boolean;
  /** Resolves once no mkdir is on its way any more (so removing the tree cannot race one). */
  settled(): Promise<unknown>;
}

function createRoot(path: string, modes: StorageModes): Root {
  let rootMade = false;
  let rootMaking: Promise<void> | undefined;
  // Directories below the root known to exist, and those whose mkdir is on its way.
  let made: Set<string> | undefined;
  let dirs: Map<string, Promise<void>> | undefined;
  const root: Root = {
    path,
    modes,
    dir(dir) {
      if (dir === path) {
        return (rootMaking ??= mkdirRoot(path, modes.dir).then(() => {
          rootMade = true;
        }));
      }
      const making = (dirs ??= new Map()).get(dir);
      if (making) return making;
      const known = (made ??= new Set());
      const now = root.dir(dirname(dir)).then(() => mkdirOne(dir, modes.dir)).then(() => {
        known.add(dir);
      });
      dirs.set(dir, now);
      return now;
    },
    dirSync(dir) {
      if (dir === path) {
        if (rootMade) return true;
        if (rootMaking) return false;
        mkdirRootSync(path, modes.dir);
        rootMade = true;
        rootMaking = Promise.resolve();
        return true;
      }
      if (made?.has(dir)) return true;
      if (dirs?.has(dir)) return false;
      if (!root.dirSync(dirname(dir))) return false;
      mkdirSync(dir, modes.dir);
      (made ??= new Set()).add(dir);
      (dirs ??= new Map()).set(dir, Promise.resolve());
      return true;
    },
    settled: () => Promise.allSettled([rootMaking, ...(dirs?.values() ?? [])]),
  };
  return root;
}

function noop(): void {}

/**
 * Writes `text` as the record of each staged root. The first root gets the file; the others a hard
 * link to it: one syscall and no inode each, where a file of its own costs three and an inode (1,000
 * files of one request, each its own id, cost 40% more CPU with a file per record; bench/uploads on
 * tmpfs). The ids of one request share one uploader, so one record; a record is never changed in
 * place. Where the file system has no hard links (or a file would have too many), a file each.
 * On the event loop, a slice at a time, as the small files of `put` are (cheaper than the
 * thread-pool round trips that would carry them); through the thread pool once this storage
 * proved slow.
 */
async function writeRecords(roots: Root[], text: Buffer, memory: WriteMemory): Promise<void> {
  const pathOf = (root: Root): string => `${root.path}${sep}${RECORD_NAME}`;
  // Every root of one staging is made with the same modes.
  const mode = roots[0]?.modes.file;
  let first: string | undefined;
  for (let i = 0; i < roots.length; i++) {
    const path = pathOf(roots[i]!);
    if (memory.slowness.slow) {
      const rest = roots.slice(i).map(pathOf);
      if (first === undefined) await writeFile((first = rest.shift()!), text, { flag: 'wx', mode });
      const from = first;
      await Promise.all(rest.map((to) => link(from, to).catch(() => writeFile(to, text, { flag: 'wx', mode }))));
      return;
    }
    if (i > 0 && i % RENAME_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
    const t0 = performance.now();
    try {
      if (first !== undefined && linkOrFalse(first, path)) continue;
      writeFileSync(path, [text], text.length, mode!);
      first = path;
    } finally {
      memory.slowness.timed(t0);
    }
  }
}

/** `link(from, to)`; false where that cannot be done (no hard links there, too many links): write a file instead. */
function linkOrFalse(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw err;
    return false;
  }
}

/** The text of the record at `path` (at most MAX_RECORD_BYTES, else ''); undefined when there is none. */
async function readRecord(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await openHandle(path, RECORD_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(MAX_RECORD_BYTES + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return bytesRead > MAX_RECORD_BYTES ? '' : buf.toString('utf8', 0, bytesRead);
  } finally {
    await handle.close();
  }
}

// Bytes a file accepts past a batch being written before it pushes back: one socket read. More
// would only move data from the kernel's socket buffer (not our memory) into ours.
const WRITING_AHEAD = 64 * 1024;
// Bytes gathered for one write on the event loop: one socket read, whatever slices it came in.
const SYNC_WRITE = 64 * 1024;

/** Write batching shared by the files of one storage. */
interface WriteMemory {
  batch: number;
  /** Bytes at the start of each file written without the thread pool (see createFileWriter). */
  syncBelow: number;
  /** Whether writes on the event loop turned out slow: then none are made until it says otherwise. */
  slowness: Slowness;
  budget: number;
  /** Bytes all writers hold right now, gathered or on their way to disk. */
  held: number;
}

/**
 * A file written with as few syscalls and as little held as possible. Its first `memory.syncBelow`
 * bytes go down on the event loop, a `writev` per SYNC_WRITE bytes gathered, the file opened (and
 * its directory made) at the first. Past that, or while a directory is being made through the
 * thread pool, or once the storage proved slow: chunks (slices of socket reads, 16–64 KiB) are
 * gathered into batches, each batch one `writev` through the thread pool. While a batch is on its
 * way, up to `WRITING_AHEAD` more bytes are taken before `write` says to wait (backpressure). A
 * batch is `memory.batch` bytes, or less once all writers together hold `memory.budget`.
 */
function createFileWriter(path: string, dir: string, root: Root, memory: WriteMemory, drain: () => void): StagedFile {
  let fd: number | undefined;
  let held: Buffer[] = [];
  let heldBytes = 0;
  let bytes = 0;
  // A batch (with the open before it, or the close after it) on its way through the thread pool.
  let busy = false;
  let ending = false;
  let failure: Error | undefined;
  let settled = false;
  // `write` returned false: `drain` is owed.
  let owed = false;
  let resolveDone!: (size: number) => void;
  let rejectDone!: (err: Error) => void;
  const done = new Promise<number>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  done.catch(noop);

  const drop = (): void => {
    memory.held -= heldBytes;
    held = [];
    heldBytes = 0;
  };
  /** Whether what this file holds now goes down on the event loop rather than in a batch. */
  const syncing = (): boolean => !busy && bytes <= memory.syncBelow && !memory.slowness.slow;
  /** While `syncing()`: writes what is held on this thread; false (nothing done) while its directory is made through the thread pool. */
  const flushSync = (): boolean => {
    const t0 = performance.now();
    try {
      if (fd === undefined) {
        if (!root.dirSync(dir)) return false;
        fd = openSync(path, 'wx', root.modes.file);
      }
      const chunks = held;
      const size = heldBytes;
      drop();
      writeAllSync(fd, chunks, size);
      return true;
    } finally {
      memory.slowness.timed(t0);
    }
  };
  /** One batch through the thread pool, the file opened (and its directory made) first if need be. */
  const flush = async (): Promise<void> => {
    const chunks = held;
    const size = heldBytes;
    held = [];
    heldBytes = 0;
    try {
      if (fd === undefined) {
        await root.dir(dir);
        fd = await openExclusive(path, root.modes.file);
      }
      if (size > 0) await writeAll(fd, chunks, size);
    } finally {
      memory.held -= size;
    }
  };
  /** Settles `done` once the descriptor is closed. */
  const close = (): void => {
    settled = true;
    const open = fd;
    fd = undefined;
    if (failure !== undefined) {
      const err = failure;
      if (open === undefined) rejectDone(err);
      else closeFd(open).then(() => rejectDone(err), () => rejectDone(err));
    } else {
      resolveDone(bytes);
    }
  };
  const fail = (err: unknown): void => {
    if (failure !== undefined || settled) return;
    failure = err as Error;
    drop();
    if (!busy) close();
  };
  const landed = (): void => {
    busy = false;
    if (failure !== undefined) return close();
    if (ending && fd === undefined) return close();
    advance();
    if (owed && (!busy || heldBytes < WRITING_AHEAD) && failure === undefined) {
      owed = false;
      drain();
    }
  };
  const lost = (err: unknown): void => {
    busy = false;
    if (failure === undefined) failure = err as Error;
    close();
  };
  /** After taking bytes, ending, or a batch landing (never while `busy`): write here, start a batch, close, or wait for more. */
  const advance = (): void => {
    try {
      if (syncing()) {
        if (!ending && heldBytes < SYNC_WRITE) return;
        if (flushSync()) {
          if (!ending) return;
          const open = fd!;
          fd = undefined;
          closeSync(open);
          return close();
        }
      }
      if (ending) {
        busy = true;
        flush()
          .then(() => {
            const open = fd!;
            fd = undefined;
            return closeFd(open);
          })
          .then(landed, lost);
      } else if (heldBytes > 0 && (heldBytes >= memory.batch || memory.held >= memory.budget)) {
        // Never a batch of nothing: with the file already open it would land in a microtask with
        // no I/O, and while other files keep the budget full this would start the next one at once,
        // for ever, starving the event loop (so no socket is read and the budget never comes down).
        busy = true;
        flush().then(landed, lost);
      }
    } catch (err) {
      fail(err);
    }
  };

  return {
    get bytes() {
      return bytes;
    },
    done,
    write(chunk) {
      if (ending || failure !== undefined) return true;
      held.push(chunk);
      heldBytes += chunk.length;
      memory.held += chunk.length;
      bytes += chunk.length;
      if (!busy) advance();
      if (busy && heldBytes >= WRITING_AHEAD) {
        owed = true;
        return false;
      }
      return true;
    },
    end() {
      if (ending || failure !== undefined) return;
      ending = true;
      if (!busy) advance();
    },
    destroy: fail,
  };
}

/** A whole small file in three syscalls on this thread: open, writev, close. */
function writeFileSync(path: string, chunks: Buffer[], size: number, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    writeAllSync(fd, chunks, size);
  } finally {
    closeSync(fd);
  }
}

/** `writevSync` until every byte is down: a short write (a disk filling up) is retried for the rest, which then fails with the real error. */
function writeAllSync(fd: number, chunks: Buffer[], size: number): void {
  let bufs = chunks;
  let left = size;
  while (left > 0) {
    const written = writevSync(fd, bufs);
    if (written === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    left -= written;
    if (left > 0) bufs = skipBytes(bufs, written);
  }
}

const openExclusive = (path: string, mode: number): Promise<number> =>
  new Promise((resolve, reject) => open(path, 'wx', mode, (err, fd) => (err ? reject(err) : resolve(fd))));
const closeFd = (fd: number): Promise<void> => new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));

/** `writev` until every byte is down: a short write (a disk filling up) is retried for the rest, which then fails with the real error. */
function writeAll(fd: number, chunks: Buffer[], size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (bufs: Buffer[], left: number): void => {
      writev(fd, bufs, (err, written) => {
        if (err) return reject(err);
        if (written >= left) return resolve();
        if (written === 0) return reject(Object.assign(new Error('write made no progress'), { code: 'EIO' }));
        step(skipBytes(bufs, written), left - written);
      });
    };
    step(chunks, size);
  });
}

/** `bufs` without its first `n` bytes (after a short write). */
function skipBytes(bufs: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (skip >= bufs[i]!.length) skip -= bufs[i++]!.length;
  const rest = bufs.slice(i);
  rest[0] = rest[0]!.subarray(skip);
  return rest;
}
