// What local storage does for uploads that do not live forever (docs/protocol.md §1, "Expiry, once
// and the quota"): marks deadlines in the expiry index before a commit publishes them, counts the
// bytes committed and removed against the quota, and runs the start scan (census.ts) and the sweep.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { censusUploads, treeSize } from './census.js';
import { createExpiryIndex, type ExpiryIndex } from './expiry.js';
import { createQuota, type Quota } from './quota.js';
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
  /** An upload moved out of readers' sight to `grave`, about to be deleted: its bytes leave the quota. */
  freeing(grave: string): Promise<void>;
  /** Starts the quota's ledgers and the sweep; the start scan runs on in the background. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createLifecycle(dataDir: string, filesDir: string, options: LifecycleOptions, remove: (id: string) => Promise<boolean>, warn: (message: string) => void): Lifecycle {
  const quota = createQuota(dataDir, options.storeSize, warn);
  const expiry = createExpiryIndex(dataDir, { remove, warn });
  let stopped = false;
  let census: Promise<void> = Promise.resolve();

  /** The start scan's look at upload `id`: its bytes, and a mark if the TTL reaches it first. */
  async function visit(id: string): Promise<void> {
    const dir = join(filesDir, id);
    if (options.storeSize > 0) quota.scanned(await treeSize(dir));
    if (options.uploadTtl <= 0) return;
    const record = join(dir, RECORD_NAME);
    // Born when its record was written (at commit), else when its directory was last changed.
    const [text, born] = await Promise.all([
      readFile(record, 'utf8').catch(() => undefined),
      stat(record).catch(() => stat(dir)).then((s) => s.mtimeMs, () => undefined),
    ]);
    if (born === undefined) return;
    const byTtl = born + options.uploadTtl;
    const stored = lifeOfRecord(text).expiresAt;
    if (stored === undefined || byTtl < stored) await expiry.mark([id], byTtl);
  }

  return {
    quota,
    expiry,
    stage: (inner) => new LifecycleStaging(inner, quota, expiry),
    async freeing(grave) {
      if (options.storeSize > 0) quota.change(-(await treeSize(grave)));
    },
    async start() {
      stopped = false;
      await quota.start();
      await expiry.start();
      if (options.storeSize > 0 || options.uploadTtl > 0) {
        census = censusUploads(filesDir, visit, () => stopped).catch((err: unknown) => warn(`wharf: the start scan of the uploads failed: ${errorMessage(err)}`));
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

/** A staging whose commit marks the deadline before publishing and counts the bytes after. */
class LifecycleStaging implements Staging {
  private readonly ids = new Set<string>();
  private bytes = 0;

  constructor(
    private readonly inner: Staging,
    private readonly quota: Quota,
    private readonly expiry: ExpiryIndex,
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
