// One worker of the stress fuzz run: runs seeds [from, to) and reports category counts, failures
// and out-of-band errors to test/stress/run.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { STRESS_FUZZ, describe } from '../helpers/fuzz-gen.js';
import { runCase } from '../helpers/fuzz-oracle.js';

const { from, to } = workerData as { from: number; to: number };
const outOfBand: string[] = [];
process.on('unhandledRejection', (err) => outOfBand.push(`unhandledRejection: ${String(err)}`));
process.on('uncaughtException', (err) => outOfBand.push(`uncaughtException: ${String(err)}`));

let counts: Record<string, number> = {};
let failures: Array<{ category: string; text: string }> = [];
for (let seed = from; seed < to; seed++) {
  const before = outOfBand.length;
  const v = await runCase(seed, STRESS_FUZZ);
  counts[v.category] = (counts[v.category] ?? 0) + 1;
  if (!v.ok) failures.push({ category: v.category, text: `${v.detail} — ${describe(v.case)}` });
  if (outOfBand.length > before) failures.push({ category: 'out-of-band', text: `${outOfBand.slice(before).join('; ')} — ${describe(v.case)}` });
  if ((seed - from + 1) % 1000 === 0 || seed === to - 1) {
    parentPort!.postMessage({ done: seed - from + 1, counts, failures });
    counts = {};
    failures = [];
  }
}
