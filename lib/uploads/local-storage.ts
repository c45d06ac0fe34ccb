// The local disk's `Storage` (storage.ts; the other is s3-storage.ts): the layout of
// docs/protocol.md §1:
//
//   <dataDir>/f/<id>/<path>            committed uploads (the layout Wave's client copies into)
//   <dataDir>/f/<id>/.wharf-upload.json
//                                      the upload's record: who uploaded it (trust.ts), written
//                                      into the staged directory, so published by the same rename
//   <dataDir>/.wharf-expiry/<bucket>/<id>
//   <dataDir>/.wharf-usage/<pid>.<instance>
//                                      the expiry index and the quota's ledgers (lifecycle.ts)
//   <dataDir>/.wharf-tmp/<node-id>.<instance>/<n>/<path>
//                                      one upload id being staged, invisible to readers; same
//                                      filesystem, so committing it is one rename to f/<id>. Each
//                                      process stages in an area of its own, kept by a lease
//                                      (lease.ts): several nodes may share one data dir
//
// Commits are atomic for readers, not durable: nothing is fsync'd, so a power cut right after an
// answer may lose the upload's last bytes (as with busboy, formidable or multer writing to disk).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, copyFile, mkdir, open as openHandle, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { WharfError } from '../common/errors.js';
import { slownessFor, type SyncIo } from '../static/sync-io.js';
import type { WriteMemory } from './file-writer.js';
import { isUploadId } from './filenames.js';
import { createNodeArea, DEFAULT_LEASE_INTERVAL } from './lease.js';
import { treeSize } from './census.js';
import { createLifecycle, type LifecycleOptions } from './lifecycle.js';
import { LocalStaging } from './staging.js';
import type { Storage } from './storage.js';
import { createUploadSource } from './upload-source.js';
import type { Trust } from './upload-record.js';
import { defaultNodeId } from '../common/node-id.js';

// The seam, importable from here as before it had a module of its own.
export { storageError, type StagedFile, type Staging, type Storage } from './storage.js';

export interface LocalStorageOptions {
  /**
   * Bytes of one file gathered before one `writev` to disk, on the event loop as through the thread
   * pool. Default 1 MiB: 512 syscalls for 512 MiB, one for an upload of 1 MiB.
   */
  writeBatch?: number;
  /**
   * Bytes all files being written may hold, together, while they gather batches; past it each
   * writes what it has at its next chunk, so 64 uploads at once do not hold 64 batches. Default 8 MiB.
   */
  writeBuffer?: number;
  /**
   * The first this many bytes of each file are written on the event loop (mkdir, open, a `writev`
   * per batch, close), the rest through the thread pool, in the same batches (`writeBatch`, less
   * once `writeBuffer` is full). A page-cache write costs less CPU than the thread-pool round trip
   * that would carry it (two thread wake-ups, an eventfd, an epoll turn). Batches rather than a
   * write per socket read: written 64 KiB at a time, 64 uploads of 1 MiB at once cost ~1.2x the
   * CPU, though they peaked 10–20 MiB lower (bench/README.md, "What cut upload CPU").
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
  /** This process's name among those sharing the data dir: its staging area is `.wharf-tmp/<nodeId>.<random>`. Default `<hostname>-<pid>`. */
  nodeId?: string;
  /**
   * ms between two rewrites of this node's lease (lease.ts); another node's staging area is swept
   * once its lease is LEASE_STALE_FACTOR (6) intervals old. Default 10 s.
   */
  leaseInterval?: number;
  /** Where `start` says that an `f/` it did not make is open to other accounts, and the lease's troubles. Default: nowhere. */
  warn?: (message: string) => void;
  /** `limits.uploadTtl` and `limits.storeSize` (lifecycle.ts). Default: neither (0). */
  lifecycle?: Partial<LifecycleOptions>;
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
  const area = createNodeArea(tempDir, {
    nodeId: options.nodeId ?? defaultNodeId(),
    interval: options.leaseInterval ?? DEFAULT_LEASE_INTERVAL,
    modes,
    ...(options.warn ? { warn: options.warn } : {}),
  });
  const tempName = area.tempName;
  // Root may write anywhere whatever the modes say, but not to a read-only mount; others are told
  // by the kernel (ACLs and NFS servers included) what writing would be.
  const filesWritable = (): Promise<void> => access(filesDir, constants.W_OK | constants.X_OK);
  const warn = options.warn ?? ((message: string) => console.warn(message));
  const removeLater = (id: string): void => {
    remove(id).catch((err: unknown) => warn(`wharf: could not remove a downloaded once-only upload ${id}: ${String(err)}`));
  };
  const { source, forget, life, owner } = createUploadSource(filesDir, options.unrecorded ?? 'user', options.syncIo ?? 'auto', removeLater);
  const lifecycle = createLifecycle(dataDir, filesDir, { uploadTtl: options.lifecycle?.uploadTtl ?? 0, storeSize: options.lifecycle?.storeSize ?? 0 }, (id) => remove(id), warn);

  async function remove(id: string): Promise<boolean> {
    if (!isUploadId(id)) return false;
    // Out of readers' sight in one rename (which one racer wins), then deleted at leisure. What is
    // remembered of it is forgotten only then: a `once` upload already downloaded stays gone to
    // readers until the rename has landed.
    const grave = tempName();
    try {
      await rename(join(filesDir, id), grave);
    } catch (err) {
      forget(id);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    forget(id);
    if (lifecycle.quota.limit > 0) lifecycle.freeing(id, await treeSize(grave));
    await rm(grave, { recursive: true, force: true });
    return true;
  }

  return {
    source,
    owner,
    quota: lifecycle.quota,
    life,
    remove,
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
      // This node's area and lease first: a node starting beside it sees them fresh, never stale.
      await area.start();
      await filesWritable();
      await lifecycle.start();
    },
    async probe() {
      await area.renew();
      await filesWritable();
    },
    // The sweep stops first: it stages its removals in this node's area.
    close: async () => {
      await lifecycle.stop();
      await area.close();
    },
    stage: () => lifecycle.stage(new LocalStaging(tempName, filesDir, memory, modes)),
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
  };
}
