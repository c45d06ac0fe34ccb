// What local storage does for uploads that do not live forever (docs/protocol.md §1, "Expiry, once
// and the quota"): marks deadlines in the expiry index before a commit publishes them, counts the
// bytes committed and removed against the quota, and runs the start scan (census.ts) and the sweep.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { censusUploads, treeSize } from './census.js';
import { createExpiryIndex, diskMarks, type ExpiryIndex, type MarkStore } from './expiry.js';
import { createQuota, diskLedgers, type LedgerStore, type Quota } from './quota.js';
import type { StagedFile, Staging } from './storage.js';
import { lifeOfRecord } from './upload-meta.js';
import { RECORD_NAME, type UploadRecord } from './upload-record.js';

export interface LifecycleOptions {
  /** `limits.uploadTtl`: ms; 0 none. */
  uploadTtl: number;
  /** `limits.storeSize`: bytes; 0 none. */
  storeSize: number;
}

export interface Lifecycle {
  readonly quota: Quota;
  readonly expiry: ExpiryIndex;
  /** `inner`, its commit marking deadlines first and counting its bytes after. */
  stage(inner: Staging): Staging;
  /** Upload `id`, taken out of readers' sight and about to be deleted: its `bytes` leave the quota. */
  freeing(id: string, bytes: number): void;
  /** Starts the quota's ledgers and the sweep; the start scan runs on in the background. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Where a lifecycle keeps its index and ledgers, and how it looks at the uploads stored. */
export interface LifecycleStore {
  marks: MarkStore;
  ledgers: LedgerStore;
  /** Calls `visit` for each upload id stored, a few at once, until `stopped()` says so. */
  census(visit: (id: string) => Promise<void>, stopped: () => boolean): Promise<void>;
  /** Upload `id`'s bytes (when `bytes`), its record's text, and when it was committed; null when it is gone. */
  inspect(id: string, bytes: boolean): Promise<{ bytes: number; record: string | undefined; born: number | undefined } | null>;
}

/** The lifecycle of the local layout: index and ledgers in the data dir, uploads under `filesDir`. */
export function createLifecycle(dataDir: string, filesDir: string, options: LifecycleOptions, remove: (id: string) => Promise<boolean>, warn: (message: string) => void): Lifecycle {
  const store: LifecycleStore = {
    marks: diskMarks(dataDir),
    ledgers: diskLedgers(dataDir),
    census: (visit, stopped) => censusUploads(filesDir, visit, stopped),
    async inspect(id, bytes) {
      const dir = join(filesDir, id);
      const record = join(dir, RECORD_NAME);
      // Born when its record was written (at commit), else when its directory was last changed.
      const [size, text, born] = await Promise.all([
        bytes ? treeSize(dir) : 0,
        readFile(record, 'utf8').catch(() => undefined),
        stat(record).catch(() => stat(dir)).then((s) => s.mtimeMs, () => undefined),
      ]);
      return { bytes: size, record: text, born };
    },
  };
  return createLifecycleOf(store, options, remove, warn);
}

/** The lifecycle of uploads kept in `store` (local-storage.ts, s3-lifecycle.ts). */
export function createLifecycleOf(store: LifecycleStore, options: LifecycleOptions, remove: (id: string) => Promise<boolean>, warn: (message: string) => void): Lifecycle {
  const quota = createQuota(store.ledgers, options.storeSize, warn);
  const expiry = createExpiryIndex(store.marks, { remove, warn });
  const scan = new ScanTally();
  let stopped = false;
  let census: Promise<void> = Promise.resolve();

  /** The start scan's look at upload `id`: its bytes, and a mark if the TTL reaches it first. */
  async function visit(id: string): Promise<void> {
    const seen = await store.inspect(id, options.storeSize > 0);
    if (seen === null) return;
    if (options.storeSize > 0 && scan.claim(id)) quota.scanned(seen.bytes);
    if (options.uploadTtl <= 0 || seen.born === undefined) return;
    const byTtl = seen.born + options.uploadTtl;
    const stored = lifeOfRecord(seen.record).expiresAt;
    if (stored === undefined || byTtl < stored) await expiry.mark([id], byTtl);
  }

  return {
    quota,
    expiry,
    stage: (inner) => new LifecycleStaging(inner, quota, expiry, scan),
    freeing(id, bytes) {
      if (options.storeSize > 0 && scan.counts(id)) quota.change(-bytes);
    },
    async start() {
      stopped = false;
      await quota.start();
      await expiry.start();
      if (options.storeSize > 0 || options.uploadTtl > 0) {
        scan.begin();
        census = store.census(visit, () => stopped)
          .catch((err: unknown) => warn(`wharf: the start scan of the uploads failed: ${errorMessage(err)}`))
          .finally(() => scan.end());
      }
    },
    async stop() {
      stopped = true;
      await census;
      await Promise.all([expiry.stop(), quota.stop()]);
    },
  };
}

const noop = (): void => {};

/**
 * What the start scan may count. It runs in the background while uploads come and go, so without
 * this an upload committed before the scan listed it was counted twice, by its commit and by the
 * scan (under load, the quota's test saw a store half full with one upload in it), and one removed
 * before the scan reached it had its bytes taken off a total that never held them.
 */
export class ScanTally {
  private running = false;
  /** Counted by the scan: removing one takes its bytes off. */
  private readonly seen = new Set<string>();
  /** Committed by this process while the scan runs: counted by the commit, not the scan. */
  private readonly committed = new Set<string>();
  /** Removed before the scan reached them: counted by neither, and the scan must not count them. */
  private readonly gone = new Set<string>();

  begin(): void {
    this.running = true;
  }

  end(): void {
    this.running = false;
    this.seen.clear();
    this.committed.clear();
    this.gone.clear();
  }

  /** Uploads this process has just committed (and counted). */
  commit(ids: Iterable<string>): void {
    if (!this.running) return;
    for (const id of ids) this.committed.add(id);
  }

  /** Whether the scan counts upload `id`: false for one committed or removed meanwhile. */
  claim(id: string): boolean {
    if (this.committed.has(id) || this.gone.has(id)) return false;
    this.seen.add(id);
    return true;
  }

  /** Whether removing upload `id` takes bytes off the total: false when nothing counted it yet. */
  counts(id: string): boolean {
    if (!this.running || this.seen.has(id) || this.committed.has(id)) return true;
    this.gone.add(id);
    return false;
  }
}

/** A staging whose commit marks the deadline before publishing and counts the bytes after. */
class LifecycleStaging implements Staging {
  private readonly ids = new Set<string>();
  private bytes = 0;

  constructor(
    private readonly inner: Staging,
    private readonly quota: Quota,
    private readonly expiry: ExpiryIndex,
    private readonly scan: ScanTally,
  ) {}

  file(id: string, rel: string, drain: () => void): StagedFile {
    const f = this.inner.file(id, rel, drain);
    this.ids.add(id);
    f.done.then((n) => void (this.bytes += n), noop);
    return f;
  }

  put(id: string, rel: string, chunks: Buffer[]): Promise<number> {
    this.ids.add(id);
    return this.inner.put(id, rel, chunks).then((n) => this.count(n));
  }

  copy(id: string, rel: string, from: string): Promise<number> {
    this.ids.add(id);
    return this.inner.copy(id, rel, from).then((n) => this.count(n));
  }

  async commit(record: UploadRecord): Promise<void> {
    if (record.expires !== undefined) await this.expiry.mark([...this.ids], record.expires);
    // Told before it is published: the scan may list an id the moment it is.
    this.scan.commit(this.ids);
    await this.inner.commit(record);
    this.quota.change(this.bytes);
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  private count(n: number): number {
    this.bytes += n;
    return n;
  }
}
