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
//
// The index is kept by a `MarkStore`: directories and files on disk (here), or keys
// `<prefix>x/<bucket>/<mark>` in an S3 bucket (s3-lifecycle.ts), with the same sweep.
import { mkdir, readdir, readFile, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

/** Where the index's marks are kept: each mark a name (and, for a request of several ids, a text) in a bucket. */
export interface MarkStore {
  /** The buckets there are (in any order); none when the index is not there yet. */
  buckets(): Promise<number[]>;
  /** Writes mark `name` holding `text` into bucket `b`. */
  write(b: number, name: string, text: string): Promise<void>;
  /** Runs `work` for each mark of bucket `b`, at most `width` at once, until `stopped()`; rejects when the bucket cannot be read. */
  each(b: number, width: number, stopped: () => boolean, work: (name: string) => Promise<void>): Promise<void>;
  /** The text of mark `name` of bucket `b` ('' when it cannot be read). */
  read(b: number, name: string): Promise<string>;
  /** Removes mark `name` of bucket `b`; one already gone is no error. */
  drop(b: number, name: string): Promise<void>;
  /** Removes bucket `b` if it is empty; never rejects. */
  dropBucket(b: number): Promise<void>;
}

/** The index on disk: `<dataDir>/.wharf-expiry/<bucket>/<mark>`. */
export function diskMarks(dataDir: string): MarkStore {
  const dir = join(dataDir, EXPIRY_DIR);
  const at = (b: number, name?: string): string => (name === undefined ? join(dir, String(b)) : join(dir, String(b), name));
  return {
    buckets: async () => (await readdir(dir).catch(() => [] as string[])).filter((n) => /^\d{1,15}$/.test(n)).map(Number),
    async write(b, name, text) {
      const write = async (): Promise<void> => {
        await mkdir(at(b), { recursive: true, mode: 0o700 });
        await writeFile(at(b, name), text, { mode: 0o600 });
      };
      // Once more if a node whose clock is ahead removed the bucket between the two.
      await write().catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return write();
      });
    },
    each: (b, width, stopped, work) => eachEntry(at(b), width, stopped, (e) => work(e.name)),
    read: (b, name) => readFile(at(b, name), 'utf8').catch(() => ''),
    drop: (b, name) => unlink(at(b, name)).catch(() => {}),
    // ENOTEMPTY (a mark left for later, or written meanwhile by a node whose clock is behind) and ENOENT are fine.
    dropBucket: (b) => rmdir(at(b)).catch(() => {}),
  };
}

export interface ExpiryOptions {
  /** Removes upload `id` whole; false when it was not there (another node won). */
  remove(id: string): Promise<boolean>;
  warn(message: string): void;
}

/** The expiry index of the data dir `where`, or of the marks it is. */
export function createExpiryIndex(where: string | MarkStore, options: ExpiryOptions): ExpiryIndex {
  const marks = typeof where === 'string' ? diskMarks(where) : where;
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
    const names = await marks.buckets();
    pending = [...new Set([...pending, ...names])].sort((x, y) => x - y);
  }

  async function sweepDue(now: number): Promise<number> {
    if (now - lastList >= RELIST_MS) await list();
    const due = bucketOf(now) - 1;
    for (; next <= due; next++) add(next);
    let removed = 0;
    while (pending.length > 0 && pending[0]! <= due && !stopped) removed += await sweepBucket(marks, pending.shift()!, options, () => stopped);
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
      await marks.write(b, ids.length === 1 ? ids[0]! : `${ids[0]!}+${ids.length}`, ids.length === 1 ? '' : `${ids.join('\n')}\n`);
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

/** Removes every upload of mark `name` of bucket `b`, then the mark. */
async function sweepMark(marks: MarkStore, b: number, name: string, options: ExpiryOptions): Promise<number> {
  const text = isUploadId(name) ? name : await marks.read(b, name);
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
  await marks.drop(b, name);
  return removed;
}

/** Sweeps bucket `b`: its marks SWEEP_WIDTH at a time, then the bucket itself if empty. */
async function sweepBucket(marks: MarkStore, b: number, options: ExpiryOptions, stopped: () => boolean): Promise<number> {
  let removed = 0;
  try {
    await marks.each(b, SWEEP_WIDTH, stopped, (name) => sweepMark(marks, b, name, options).then((n) => void (removed += n)));
  } catch {
    return 0; // no such bucket, or another node removed it
  }
  await marks.dropBucket(b);
  return removed;
}
