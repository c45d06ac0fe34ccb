// The disk quota, `limits.storeSize` (docs/protocol.md §1, "Expiry, once and the quota"): bytes the
// data dir's uploads take, kept as a running total, and bytes held by uploads on their way in.
//
// One node: the total is the start scan's sum (census.ts), plus what this process committed, less
// what it removed. Several nodes on one data dir: each writes its own net change since it started
// to a small ledger file, `<dataDir>/.wharf-usage/<pid>.<instance>` (at most once per
// LEDGER_WRITE_MS), and reads the others' every LEDGER_READ_MS; a node counts another's change
// since its own scan began. So a node's view lags the others by ~LEDGER_WRITE_MS + LEDGER_READ_MS,
// and its scan may be off by what other nodes added or removed while it ran. A live node rewrites
// its ledger every LEDGER_BEAT_MS even when idle; one untouched for LEDGER_DEAD_MS is a node gone,
// removed by whoever reads it then (readers keep counting the last value they read from it).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WharfError } from '../common/errors.js';

/**
 * Where the nodes' ledgers are kept: files in `<dataDir>/.wharf-usage/` (here), or keys
 * `<prefix>u/<node>` in an S3 bucket (s3-lifecycle.ts), read and written the same way.
 */
export interface LedgerStore {
  /** Makes the place for them, if need be. */
  prepare(): Promise<void>;
  write(name: string, text: string): Promise<void>;
  /** Every ledger, with when it was last written (ms). */
  entries(): Promise<Array<{ name: string; mtimeMs: number }>>;
  /** The ledger's text; '' when it cannot be read. */
  read(name: string): Promise<string>;
  remove(name: string): Promise<void>;
}

/** The ledgers on disk: `<dataDir>/.wharf-usage/<name>`. */
export function diskLedgers(dataDir: string): LedgerStore {
  const dir = join(dataDir, USAGE_DIR);
  return {
    prepare: () => mkdir(dir, { recursive: true, mode: 0o700 }).then(() => {}),
    write: (name, text) => writeFile(join(dir, name), text),
    async entries() {
      const names = await readdir(dir).catch(() => [] as string[]);
      const stats = await Promise.all(names.map((name) => stat(join(dir, name)).then((st) => ({ name, mtimeMs: st.mtimeMs }), () => null)));
      return stats.filter((e) => e !== null);
    },
    read: (name) => readFile(join(dir, name), 'utf8').catch(() => ''),
    remove: (name) => rm(join(dir, name), { force: true }),
  };
}

export const USAGE_DIR = '.wharf-usage';
const LEDGER_WRITE_MS = 1_000;
const LEDGER_READ_MS = 2_000;
const LEDGER_BEAT_MS = 10 * 60_000;
const LEDGER_DEAD_MS = 60 * 60_000;

export const storeFull = (limit: number): WharfError =>
  new WharfError('STORE_FULL', `the upload would take the server's uploads over their quota of ${limit} bytes`, 507);

/** Bytes held for one upload on its way in: released when it is committed or given up. */
export interface QuotaHold {
  /** Holds `n` more bytes; false, holding nothing, when that would go over the quota. */
  more(n: number): boolean;
  release(): void;
}

export interface Quota {
  /** The quota in bytes; 0: none (every hold succeeds, nothing is counted). */
  readonly limit: number;
  /** Bytes the uploads take, as this node knows it (see the module comment). */
  used(): number;
  /** Would `n` more bytes fit now (always, without a quota)? Holds nothing. */
  fits(n: number): boolean;
  /** A hold of `n` bytes up front (a known size); throws 507 STORE_FULL when they do not fit. */
  hold(n: number): QuotaHold;
  /**
   * The hold of an upload request: its `Content-Length` up front (507 STORE_FULL before a byte of the
   * body is read when it does not fit), else each chunk as it arrives, `fail` called with 507 the
   * moment one does not fit.
   */
  holdRequest(req: IncomingMessage, fail: (err: WharfError) => void): QuotaHold;
  /** Bytes committed (`n` > 0) or removed (`n` < 0) by this node. */
  change(n: number): void;
  /** The start scan found `n` more bytes. */
  scanned(n: number): void;
  /** Snapshots the other nodes' ledgers (before the scan) and starts writing and reading ledgers. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The quota of `limit` bytes, its ledgers in the data dir `where` or in the store it is. */
export function createQuota(where: string | LedgerStore, limit: number, warn: (message: string) => void): Quota {
  const ledgers = createLedgers(typeof where === 'string' ? diskLedgers(where) : where, warn);
  let baseline = 0;
  let mine = 0;
  let held = 0;

  const used = (): number => baseline + mine + ledgers.others();
  const fits = (n: number): boolean => limit === 0 || used() + held + n <= limit;

  function hold(n: number): QuotaHold {
    let mineHeld = 0;
    const h: QuotaHold = {
      more(k) {
        if (limit === 0) return true;
        if (!fits(k)) return false;
        held += k;
        mineHeld += k;
        return true;
      },
      release() {
        held -= mineHeld;
        mineHeld = 0;
      },
    };
    if (!h.more(n)) throw storeFull(limit);
    return h;
  }

  function holdRequest(req: IncomingMessage, fail: (err: WharfError) => void): QuotaHold {
    const length = Number(req.headers['content-length']);
    if (req.headers['content-length'] !== undefined && Number.isSafeInteger(length) && length >= 0) return hold(length);
    const h = hold(0);
    if (limit === 0) return h;
    const onData = (chunk: Buffer): void => {
      if (h.more(chunk.length)) return;
      req.off('data', onData);
      fail(storeFull(limit));
    };
    req.on('data', onData);
    return {
      more: h.more,
      release() {
        req.off('data', onData);
        h.release();
      },
    };
  }

  return {
    limit,
    used,
    fits,
    hold,
    holdRequest,
    change(n) {
      if (limit === 0) return;
      mine += n;
      ledgers.write(mine);
    },
    scanned(n) {
      baseline += n;
    },
    start: () => (limit === 0 ? Promise.resolve() : ledgers.start()),
    stop: () => (limit === 0 ? Promise.resolve() : ledgers.stop(mine)),
  };
}

interface Ledgers {
  /** The other nodes' net change since this node's scan began, as last read. */
  others(): number;
  /** Writes this node's net change `value` (at most once per LEDGER_WRITE_MS). */
  write(value: number): void;
  /** Snapshots the other nodes' ledgers and starts reading them. */
  start(): Promise<void>;
  /** Stops, writing `value` as this node's last word. */
  stop(value: number): Promise<void>;
}

/** The ledgers of the nodes sharing the data dir (or bucket), in `store` (see the module comment). */
function createLedgers(store: LedgerStore, warn: (message: string) => void): Ledgers {
  const own = `${process.pid}.${randomBytes(4).toString('hex')}`;
  // Other nodes: their ledger's value when this node's scan began, and the last one read.
  const snapshot = new Map<string, number>();
  const seen = new Map<string, number>();
  let others = 0;
  let value = 0;
  let writeTimer: NodeJS.Timeout | undefined;
  let readTimer: NodeJS.Timeout | undefined;
  let beatTimer: NodeJS.Timeout | undefined;
  // Until start(): stop() has nothing to write.
  let stopped = true;
  let writing: Promise<unknown> = Promise.resolve();

  const writeLedger = (): Promise<unknown> =>
    (writing = store.write(own, `${value}\n`).catch((err: unknown) => warn(`wharf: could not write the quota ledger: ${String(err)}`)));

  async function readLedgers(first: boolean): Promise<void> {
    const entries = await store.entries().catch(() => []);
    const now = Date.now();
    await Promise.all(entries.filter((e) => e.name !== own).map(async ({ name, mtimeMs }) => {
      const v = await readLedger(store, name, mtimeMs, now);
      if (v === undefined) return;
      if (first) snapshot.set(name, v);
      seen.set(name, v);
    }));
    // A ledger gone (its node long gone) keeps counting with the last value read.
    let sum = 0;
    for (const [name, v] of seen) sum += v - (snapshot.get(name) ?? 0);
    others = sum;
  }

  function scheduleRead(): void {
    if (stopped) return;
    readTimer = setTimeout(() => {
      readLedgers(false).finally(scheduleRead).catch(() => {});
    }, LEDGER_READ_MS);
    readTimer.unref();
  }

  return {
    others: () => others,
    write(v) {
      value = v;
      if (writeTimer !== undefined || stopped) return;
      writeTimer = setTimeout(() => {
        writeTimer = undefined;
        void writeLedger();
      }, LEDGER_WRITE_MS);
      writeTimer.unref();
    },
    async start() {
      stopped = false;
      await store.prepare();
      await readLedgers(true);
      await writeLedger();
      scheduleRead();
      beatTimer = setInterval(() => void writeLedger(), LEDGER_BEAT_MS).unref();
    },
    async stop(v) {
      if (stopped) return;
      stopped = true;
      clearTimeout(writeTimer);
      clearTimeout(readTimer);
      clearInterval(beatTimer);
      await writing;
      // The last word, for the nodes still reading it (they count it until it is removed as dead).
      value = v;
      await writeLedger();
    },
  };
}

/** The value of another node's ledger `name` (undefined: none); one untouched for LEDGER_DEAD_MS is removed. */
async function readLedger(store: LedgerStore, name: string, mtimeMs: number, now: number): Promise<number | undefined> {
  const text = await store.read(name);
  if (now - mtimeMs > LEDGER_DEAD_MS) await store.remove(name).catch(() => {});
  const value = Number(text.trim());
  return text !== '' && Number.isSafeInteger(value) ? value : undefined;
}
