// A test that starves its own event loop cannot time out: its timers never run. This watchdog runs
// in a worker thread, whose loop is its own: the main thread bumps a shared counter from a timer,
// and when the counter stands still for `ms` the worker says so on stderr and kills the process,
// so the test runner reports the file as failed at once instead of hanging CI.
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const WORKER = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const beats = new Int32Array(workerData.shared);
let last = Atomics.load(beats, 0);
let still = 0;
setInterval(() => {
  const now = Atomics.load(beats, 0);
  if (now !== last) { last = now; still = 0; return; }
  still += 100;
  if (still < workerData.ms) return;
  writeSync(2, '\\nloop-watchdog: the event loop of ' + workerData.what + ' ran no timer for ' + still + ' ms: starved; killing the process\\n');
  process.kill(process.pid, 'SIGKILL');
}, 100);
`;

/** Watches this process's event loop until the returned function is called. */
export function watchLoop(what: string, ms = 10_000): () => void {
  const shared = new SharedArrayBuffer(4);
  const beats = new Int32Array(shared);
  const beat = setInterval(() => Atomics.add(beats, 0, 1), 50);
  beat.unref();
  const worker = new Worker(WORKER, { eval: true, workerData: { shared, ms, what } });
  worker.unref();
  worker.on('error', (err) => writeSync(2, `loop-watchdog: ${String(err)}\n`));
  return () => {
    clearInterval(beat);
    void worker.terminate();
  };
}
