// What the HTTP upload route (route.ts) and the in-process site (in-process-site.ts) share: staging
// and committing a request's files, announcing them to `onUpload`, and stopping both on close.
import { WharfError, errorDetail } from '../common/errors.js';
import type { Limits } from '../common/limits.js';
import { uploadUrl } from './filenames.js';
import { createLocalStorage } from './local-storage.js';
import { storageError, type Staging, type Storage } from './storage.js';
import { grantLife, withLife, type LifeRequest, type UploadLife } from './upload-meta.js';
import type { UploadRecord } from './upload-record.js';

export interface UploadedFile {
  /** URL path, `{base}_f/<id>/<name>`, the name as stored (only `%`, `#`, `?` escaped), as the uploader was answered. */
  path: string;
  /** Relative name as stored (`a/b.txt` for directory uploads). */
  filename: string;
  size: number;
  contentType: string;
}

/**
 * One committed upload id and its files. A plain request with three files commits three ids, so
 * `onUpload` runs three times (one file each); a directory upload is one id with all its files.
 */
export interface UploadEvent {
  id: string;
  files: UploadedFile[];
  /** Who uploaded it, as `authorize` named them (`{ identity }`); absent when it gave no identity. */
  owner?: string;
  /** When the upload expires (its own `expiresIn` or `limits.uploadTtl`); absent when it does not. */
  expiresAt?: Date;
  /** True when it is removed after its first complete download. */
  once?: boolean;
}

/** What an upload asks of its life, and, once it is committed, what it was granted (upload-meta.ts). */
export interface LifeTerms {
  asked: LifeRequest;
  granted: UploadLife | undefined;
}

/** A file staged by a request: under upload id `id` as `rel`. */
export interface Stored {
  id: string;
  rel: string;
  size: number;
  contentType: string;
}

export interface UploadCoreConfig {
  dataDir: string;
  /** Normalised base URL, always starting and ending with `/`. */
  base: string;
  limits: Limits;
  /**
   * Called once per upload id after its request is committed (HTTP or `site.upload`), without
   * being awaited: the uploader's answer is already decided and never changes. A hook that throws
   * or rejects is reported through `warn`.
   */
  onUpload?: (event: UploadEvent) => void | Promise<void>;
  /** Where failures nobody else sees go (a failing `onUpload`, a temp dir that would not go away). Default `console.warn`. */
  warn?: (message: string) => void;
  /** Where uploaded bytes live. Default: the local layout of docs/protocol.md §1 under `dataDir`. */
  storage?: Storage;
}

export interface UploadCore {
  readonly base: string;
  readonly limits: Limits;
  readonly storage: Storage;
  readonly warn: (message: string) => void;
  /** True once `close` was called: nothing new starts. */
  readonly closed: boolean;
  /** `work`, which `close` waits for. */
  settle<T>(work: Promise<T>): Promise<T>;
  /**
   * Stages and commits with `record`; any failure removes every staged byte and rethrows. `failed`
   * hears of a failure before the abort, which fails every file still being written.
   */
  withStaging<T>(record: UploadRecord, fill: (staging: Staging) => Promise<T>, failed?: (err: unknown) => void, terms?: LifeTerms): Promise<T>;
  /**
   * Tells `onUpload` of each upload id of a committed request, without waiting for it: with the life
   * it was granted, who made it (`owner`, if `authorize` named them), its paths under `mount` (the
   * path a host framework mounted wharf under).
   */
  announce(stored: Stored[], about?: { life?: UploadLife | undefined; owner?: string | undefined; mount?: string }): void;
  /** Stops new work, runs `stop` (to stop what the caller reads), aborts every staging and waits for all work to settle. */
  close(stop: () => void): Promise<void>;
}

export function createUploadCore(config: UploadCoreConfig): UploadCore {
  const { base, limits } = config;
  const warn = config.warn ?? ((message: string) => console.warn(message));
  const storage = config.storage ?? createLocalStorage(config.dataDir, { warn });
  // What close() must stop: every staging (HTTP or site) not yet settled, and the work around it.
  const stagings = new Set<Staging>();
  const running = new Set<Promise<unknown>>();
  let closed = false;

  return {
    base,
    limits,
    storage,
    warn,
    get closed() {
      return closed;
    },
    settle(work) {
      running.add(work);
      const forget = (): void => void running.delete(work);
      work.then(forget, forget);
      return work;
    },
    async withStaging(record, fill, failed, terms) {
      if (closed) throw shuttingDown();
      const staging = storage.stage();
      stagings.add(staging);
      try {
        const result = await fill(staging);
        if (closed) throw shuttingDown();
        // The life counts from the commit, not from the first byte of a long upload.
        const life = grantLife(terms?.asked ?? {}, limits.uploadTtl, Date.now());
        await staging.commit(withLife(record, life));
        if (terms) terms.granted = life;
        return result;
      } catch (err) {
        failed?.(err);
        await staging.abort().catch((e: unknown) => warn(`wharf: could not remove an aborted upload's temp files: ${String(e)}`));
        throw err;
      } finally {
        stagings.delete(staging);
      }
    },
    announce(stored, { life, owner, mount = '' } = {}) {
      const hook = config.onUpload;
      if (!hook) return;
      const byId = new Map<string, UploadedFile[]>();
      for (const f of stored) {
        const files = byId.get(f.id) ?? [];
        files.push({ path: mount + uploadUrl(base, f.id, f.rel), filename: f.rel, size: f.size, contentType: f.contentType });
        byId.set(f.id, files);
      }
      for (const [id, files] of byId) {
        const event: UploadEvent = { id, files };
        if (owner !== undefined) event.owner = owner;
        if (life?.expiresAt !== undefined) event.expiresAt = new Date(life.expiresAt);
        if (life?.once) event.once = true;
        Promise.resolve()
          .then(() => hook(event))
          .catch((err: unknown) => warn(`wharf: onUpload hook failed for upload ${id}: ${errorDetail(err)}`));
      }
    },
    async close(stop) {
      closed = true;
      stop();
      for (const staging of stagings) void staging.abort().catch(() => {});
      await Promise.allSettled([...running]);
    },
  };
}

export const shuttingDown = (): WharfError => new WharfError('SHUTTING_DOWN', 'the server is shutting down', 503);
export { requestTooLarge } from '../http/body-watch.js';

/** A WharfError as is; an `fs` failure as a storage error; anything else is a bug, reported and answered 500. */
export function classify(err: unknown, warn: (message: string) => void): WharfError {
  if (err instanceof WharfError) return err;
  if (typeof (err as NodeJS.ErrnoException | null)?.code === 'string' && 'syscall' in (err as object)) return storageError(err);
  warn(`wharf: upload failed: ${errorDetail(err)}`);
  return new WharfError('INTERNAL', 'internal error', 500, { cause: err });
}
