// The expiry sweep (lib/uploads/expiry.ts) over many uploads, against the sweep one would write
// first: a full scan of `f/` reading every upload's record and removing those past their deadline.
// Both remove through the same storage (`remove`: one rename, then the tree deleted), so the
// difference is how the due uploads are found. Two cases, each in a fresh data dir:
//
//   due   every upload is past its deadline: the whole sweep, its wall time and the event-loop delay
//         (perf_hooks.monitorEventLoopDelay, 1 ms resolution) while it runs; target p99 < 20 ms
//   idle  none is due: what one tick costs with that many uploads stored (the index looks at one
//         bucket by name; the scan reads every record)
//
//   node dist/bench/sweep.js [--quick] [--count=100000] [--cases=due,idle] [--data-dir=/somewhere]
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, opendir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { bucketOf, createExpiryIndex, EXPIRY_DIR } from '../lib/uploads/expiry.js';
import { createLocalStorage } from '../lib/uploads/local-storage.js';
import { lifeOfRecord } from '../lib/uploads/upload-meta.js';
import { RECORD_NAME } from '../lib/uploads/upload-record.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const count = Number(args.find((a) => a.startsWith('--count='))?.slice(8) ?? (quick ? 10_000 : 100_000));
const dataRoot = args.find((a) => a.startsWith('--data-dir='))?.slice(11) ?? tmpdir();
const cases = args.find((a) => a.startsWith('--cases='))?.slice(8).split(',') ?? ['due', 'idle'];

/** `n` committed uploads of one small file each, in the layout commits make, each with its mark. */
function populate(dataDir: string, n: number, expires: number): void {
  const files = join(dataDir, 'f');
  mkdirSync(files, { recursive: true });
  mkdirSync(join(dataDir, '.wharf-tmp'), { recursive: true });
  const bucket = join(dataDir, EXPIRY_DIR, String(bucketOf(expires)));
  mkdirSync(bucket, { recursive: true });
  const record = `${JSON.stringify({ v: 1, trust: 'app', via: 'site', expires })}\n`;
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    mkdirSync(join(files, id));
    writeFileSync(join(files, id, 'file.txt'), 'x'.repeat(100));
    writeFileSync(join(files, id, RECORD_NAME), record);
    writeFileSync(join(bucket, id), '');
  }
}

/** The first sweep one would write: every upload's record read, those past their deadline removed, 16 at a time. */
async function scanSweep(dataDir: string, remove: (id: string) => Promise<boolean>, now: number): Promise<number> {
  const files = join(dataDir, 'f');
  let removed = 0;
  const running = new Set<Promise<void>>();
  for await (const e of await opendir(files, { bufferSize: 64 })) {
    const work = (async () => {
      const life = lifeOfRecord(await readFile(join(files, e.name, RECORD_NAME), 'utf8').catch(() => undefined));
      if (life.expiresAt !== undefined && life.expiresAt <= now && (await remove(e.name))) removed++;
    })().finally(() => running.delete(work));
    running.add(work);
    if (running.size >= 16) await Promise.race(running);
  }
  await Promise.all(running);
  return removed;
}

interface Figures {
  ms: number;
  removed: number;
  p50: number;
  p99: number;
  max: number;
}

async function measure(kind: 'index' | 'scan', due: boolean): Promise<Figures> {
  const dataDir = await mkdtemp(join(dataRoot, 'wharf-sweep-'));
  try {
    const now = Date.now();
    // Due: expired a minute ago. Idle: expiring in a day.
    populate(dataDir, count, due ? now - 60_000 : now + 86_400_000);
    const storage = createLocalStorage(dataDir);
    const index = createExpiryIndex(dataDir, { remove: (id) => storage.remove(id), warn: (m) => console.error(m) });
    global.gc?.();
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const t0 = performance.now();
    const removed = kind === 'index' ? await index.sweep(now) : await scanSweep(dataDir, (id) => storage.remove(id), now);
    const ms = performance.now() - t0;
    h.disable();
    if (removed !== (due ? count : 0)) throw new Error(`${kind}: removed ${removed} of ${count}`);
    return { ms, removed, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
console.log(`sweep over ${count.toLocaleString('en')} uploads (one 100-byte file each), data dir under ${dataRoot}`);
console.log('case   sweep   time ms   uploads/s   loop delay p50 / p99 / max ms');
for (const due of [true, false].filter((d) => cases.includes(d ? 'due' : 'idle'))) {
  const rows: Array<[string, Figures]> = [];
  // Interleaved, the scan between two runs of the index, so drift shows.
  for (const kind of ['index', 'scan', 'index'] as const) {
    const f = await measure(kind, due);
    rows.push([kind, f]);
    const rate = due ? fmt(f.removed / (f.ms / 1000)) : '-';
    console.log(`${due ? 'due ' : 'idle'}   ${kind.padEnd(5)}   ${fmt(f.ms).padStart(7)}   ${rate.padStart(9)}   ${fmt(f.p50)} / ${fmt(f.p99)} / ${fmt(f.max)}`);
  }
  const index = Math.min(rows[0]![1].ms, rows[2]![1].ms);
  console.log(`${due ? 'due ' : 'idle'}   scan / index time: ${(rows[1]![1].ms / index).toFixed(2)}x`);
}
