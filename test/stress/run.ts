// `npm run stress` (after `npm run build`): the long reliability runs of issue 8.
//   1. the multipart fuzzer, 1,000,000 cases (test/helpers/fuzz-gen.ts, STRESS_FUZZ sizes), one worker thread
//      per core, every case classified against busboy (test/helpers/fuzz-oracle.ts);
//   2. the load scenario for 60 s: 200 concurrent clients (test/helpers/load-scenario.ts).
// Prints the figures RELIABILITY.md quotes and exits 1 if anything failed.
//
//   node dist/test/stress/run.js [--fuzz-cases N] [--seed S] [--load-seconds S] [--clients N] [--only fuzz|load]
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { JS_SLACK, RSS_SLACK, runLoadScenario } from '../helpers/load-scenario.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const FUZZ_CASES = Number(arg('fuzz-cases', '1000000'));
const FIRST_SEED = Number(arg('seed', '1'));
const LOAD_SECONDS = Number(arg('load-seconds', '60'));
const CLIENTS = Number(arg('clients', '200'));
const ONLY = arg('only', '');

async function fuzz(): Promise<boolean> {
  const workers = Math.max(1, availableParallelism());
  const per = Math.ceil(FUZZ_CASES / workers);
  const counts = new Map<string, number>();
  const failures: Array<{ category: string; text: string }> = [];
  let done = 0;
  const started = Date.now();
  let lastPrint = 0;
  console.log(`fuzz: ${FUZZ_CASES} cases from seed ${FIRST_SEED} on ${workers} workers`);
  await Promise.all(Array.from({ length: workers }, (_, w) => new Promise<void>((resolve) => {
    const from = FIRST_SEED + w * per;
    const to = Math.min(FIRST_SEED + FUZZ_CASES, from + per);
    if (from >= to) return resolve();
    const worker = new Worker(new URL('./fuzz-worker.js', import.meta.url), { workerData: { from, to } });
    const seen = { n: 0 };
    worker.on('message', (m: { done: number; counts: Record<string, number>; failures: Array<{ category: string; text: string }> }) => {
      done += m.done - seen.n;
      seen.n = m.done;
      for (const [k, n] of Object.entries(m.counts)) counts.set(k, (counts.get(k) ?? 0) + n);
      failures.push(...m.failures);
      if (Date.now() - lastPrint > 30_000) {
        lastPrint = Date.now();
        const rate = done / ((Date.now() - started) / 1000);
        console.log(`  ${done} cases, ${failures.length} failures, ${rate.toFixed(0)} cases/s, ~${((FUZZ_CASES - done) / rate / 60).toFixed(0)} min left`);
      }
    });
    worker.on('error', (err) => {
      failures.push({ category: 'worker-crashed', text: `worker ${w}: ${err.stack ?? String(err)}` });
      resolve();
    });
    worker.on('exit', () => resolve());
  })));
  const seconds = (Date.now() - started) / 1000;
  const table = [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${String(n).padStart(9)}  ${(100 * n / Math.max(1, done)).toFixed(2).padStart(6)}%  ${k}`).join('\n');
  console.log(`fuzz: ${done} cases in ${seconds.toFixed(0)} s (${(done / seconds).toFixed(0)} cases/s)\n${table}`);
  const byCategory = new Map<string, string[]>();
  for (const f of failures) {
    const list = byCategory.get(f.category) ?? [];
    list.push(f.text);
    byCategory.set(f.category, list);
  }
  for (const [k, list] of byCategory) console.log(`FAILED ${k}: ${list.length}×, e.g.\n  ${list.slice(0, 25).join('\n  ')}`);
  return failures.length === 0 && done === FUZZ_CASES;
}

async function load(): Promise<boolean> {
  const root = await mkdtemp(join(tmpdir(), 'wharf-stress-'));
  try {
    const r = await runLoadScenario({ root, seconds: LOAD_SECONDS, clients: CLIENTS, log: (line) => console.log(line) });
    console.log(r.summary);
    const problems: string[] = [];
    if (r.report.failed > 0) problems.push(`${r.report.failed} failed requests: ${r.report.failures.slice(0, 5).join('; ')}`);
    if (r.fdsAfter !== r.fdsBefore) problems.push(`descriptors ${r.fdsBefore} → ${r.fdsAfter}: ${r.fdDiff}`);
    if (r.tempLeft.length > 0) problems.push(`temp files left: ${r.tempLeft.join(', ')}`);
    if (r.diskProblems.length > 0) problems.push(`disk: ${r.diskProblems.slice(0, 5).join('; ')}`);
    if (r.memAfter.rss - r.memWarm.rss >= RSS_SLACK) problems.push(`RSS ${r.memWarm.rss} → ${r.memAfter.rss}`);
    if (r.memAfter.heapUsed + r.memAfter.external - r.memCold.heapUsed - r.memCold.external >= JS_SLACK) problems.push('JS heap+external grew');
    if (r.serverErrors !== '') problems.push(`server warnings: ${r.serverErrors.slice(0, 500)}`);
    for (const p of problems) console.log(`FAILED load: ${p}`);
    return problems.length === 0;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

let ok = true;
if (ONLY === '' || ONLY === 'load') ok = (await load()) && ok;
if (ONLY === '' || ONLY === 'fuzz') ok = (await fuzz()) && ok;
console.log(ok ? 'stress: all passed' : 'stress: FAILED');
process.exit(ok ? 0 : 1);
