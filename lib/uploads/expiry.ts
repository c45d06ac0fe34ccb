// The expiry index and its sweep (docs/protocol.md §1, "Expiry, once and the quota").
//
//   <dataDir>/.wharf-expiry/<bucket>/<id>          an empty file: upload <id> is due in that bucket
//   <dataDir>/.wharf-expiry/<bucket>/<first id>+<n> one per request of n > 1 upload ids (a plain
//                                                  upload of n files): its ids, one a line
//
// Most marks are of one id and empty: sweeping one is the upload's removal and an unlink, no read.
// `<bucket>` is `floor(deadline / BUCKET_MS)`. A mark is written before its ids are published, so an
// upload with a deadline never exists without one (a mark whose upload never appeared is harmless:
// removing it finds nothing). The deadline itself is in the upload's record, and readers treat an
// upload past it as absent at once (upload-source.ts): the sweep only frees the disk.
//
// The sweep costs nothing while nothing is due: each tick (TICK_MS) looks at the buckets whose end
// has passed since the last one, usually none or one, by name, with no listing. A due bucket is read
// entry by entry (`opendir`) and its uploads removed SWEEP_WIDTH at a time through the thread pool,
// so its cost is the number of uploads due, never the number stored, and the event loop is never
// held. The top of the index is listed once at start (buckets left while no node ran) and every
// RELIST_MS (buckets another node, its clock behind ours, wrote behind us): a listing of at most
// one name per BUCKET_MS of the longest lifetime (7 days: 121,000 names).
//
// Several nodes sweeping one data dir race for the same marks: removal is a rename that one wins
// (storage.ts `remove`), the loser sees ENOENT, and a mark or bucket already gone is no error.
import { mkdir, readdir, readFile, rmdir, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { eachEntry } from './census.js';
import { isUploadId } from './filenames.js';

export const EXPIRY_DIR = '.wharf-expiry';
export const BUCKET_MS = 5_000;
const TICK_MS = 1_000;
const RELIST_MS = 10 * 60_000;
// Uploads removed at once by a sweep.
const SWEEP_WIDTH = 16;

export const bucketOf = (t: number): number => Math.floor(t / BUCKET_MS);

export interface ExpiryIndex {
  /** Marks `ids` to be removed at `expiresAt` (ms since the epoch); resolves once the mark is on disk. */
  mark(ids: string[], expiresAt: number): Promise<void>;
  /** Sweeps what is overdue, then keeps sweeping each tick. */
  start(): Promise<void>;
  /** Stops the ticks and waits for a sweep under way. */
  stop(): Promise<void>;
  /** Sweeps every bucket due at `now` (the ticks do this by themselves); resolves with the uploads removed. */
  sweep(now?: number): Promise<number>;
}

export interface ExpiryOptions {
  /** Removes upload `id` whole; false when it was not there (another node won). */
  remove(id: string): Promise<boolean>;
  warn(message: string): void;
}

export function createExpiryIndex(dataDir: string, options: ExpiryOptions): ExpiryIndex {
  const dir = join(dataDir, EXPIRY_DIR);
  // Buckets known to exist (listed, or marked by this node) that are not swept yet, ascending.
  let pending: number[] = [];
  const add = (b: number): void => {
    let lo = 0;
    let hi = pending.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pending[mid]! < b) lo = mid + 1;
      else hi = mid;
    }
    if (pending[lo] !== b) pending.splice(lo, 0, b);
  };
  // Every bucket before this one was looked at.
  let next = bucketOf(Date.now());
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<number> | undefined;
  let lastList = 0;
  let stopped = false;

  async function list(): Promise<void> {
    lastList = Date.now();
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^\d{1,15}$/.test(n)).map(Number);
    pending = [...new Set([...pending, ...names])].sort((x, y) => x - y);
  }

  async function sweepDue(now: number): Promise<number> {
    if (now - lastList >= RELIST_MS) await list();
    const due = bucketOf(now) - 1;
    for (; next <= due; next++) add(next);
    let removed = 0;
    while (pending.length > 0 && pending[0]! <= due && !stopped) removed += await sweepBucket(join(dir, String(pending.shift()!)), options, () => stopped);
    return removed;
  }

  const sweep = (now = Date.now()): Promise<number> => {
    sweeping ??= sweepDue(now).finally(() => (sweeping = undefined));
    return sweeping;
  };

  function tick(): void {
    timer = setTimeout(() => {
      sweep().catch((err: unknown) => options.warn(`wharf: expiry sweep failed: ${errorMessage(err)}`)).finally(() => {
        if (!stopped) tick();
      });
    }, TICK_MS);
    timer.unref();
  }

  return {
    async mark(ids, expiresAt) {
      if (ids.length === 0) return;
      // Never into a bucket the sweep has passed: an upload due already goes at the next tick.
      const b = Math.max(bucketOf(expiresAt), next);
      const bucket = join(dir, String(b));
      const write = async (): Promise<void> => {
        await mkdir(bucket, { recursive: true, mode: 0o700 });
        const name = ids.length === 1 ? ids[0]! : `${ids[0]!}+${ids.length}`;
        await writeFile(join(bucket, name), ids.length === 1 ? '' : `${ids.join('\n')}\n`, { mode: 0o600 });
      };
      // Once more if a node whose clock is ahead removed the bucket between the two.
      await write().catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return write();
      });
      add(b);
    },
    async start() {
      stopped = false;
      await list();
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await sweeping?.catch(() => 0);
    },
    sweep,
  };
}

/** Removes every upload of the mark file `path`, then the mark. */
async function sweepMark(path: string, options: ExpiryOptions): Promise<number> {
  const name = basename(path);
  const text = isUploadId(name) ? name : await readFile(path, 'utf8').catch(() => '');
  let removed = 0;
  for (const id of text.split('\n')) {
    if (!isUploadId(id)) continue;
    try {
      if (await options.remove(id)) removed++;
    } catch (err) {
      // Left for a later sweep (its mark and bucket stay, found again by the next listing).
      options.warn(`wharf: could not remove expired upload ${id}: ${errorMessage(err)}`);
      return removed;
    }
  }
  await unlink(path).catch(() => {});
  return removed;
}

/** Sweeps the bucket `path`: its marks SWEEP_WIDTH at a time, then the bucket itself if empty. */
async function sweepBucket(path: string, options: ExpiryOptions, stopped: () => boolean): Promise<number> {
  let removed = 0;
  try {
    await eachEntry(path, SWEEP_WIDTH, stopped, (e) => sweepMark(join(path, e.name), options).then((n) => void (removed += n)));
  } catch {
    return 0; // no such bucket, or another node removed it
  }
  // ENOTEMPTY (a mark left for later, or written meanwhile by a node whose clock is behind) and ENOENT are fine.
  await rmdir(path).catch(() => {});
  return removed;
}
