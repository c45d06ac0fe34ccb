// The storage's file writer alone in a process, for the one case a test cannot watch from inside:
// a writer that starves the event loop also starves the test's own timers. Run as
// `node storage-child.js <dataDir>`; prints `DONE <bytes>` and exits 0 once every file is stored.
//
// The case (issue 16): writes judged slow (every byte goes through the thread pool in batches), a
// write budget far smaller than what the files hold together, and a file whose batch lands with
// nothing more held while another file's bytes keep the budget full. A writer that starts a batch
// with nothing to write lands it in a microtask, starts another, and never lets a timer or an I/O
// callback run again.
import { randomUUID } from 'node:crypto';
import { createLocalStorage } from '../../lib/uploads/local-storage.js';
import { recordFor } from '../../lib/uploads/upload-record.js';

const dataDir = process.argv[2]!;
const storage = createLocalStorage(dataDir, {
  writeBatch: 16 * 1024,
  writeBuffer: 16 * 1024,
  syncWriteBelow: 0,
  syncIo: 'off',
});
await storage.start();
const staging = storage.stage();
const chunk = Buffer.alloc(16 * 1024, 1);
const drained = (): { wait: Promise<void>; wake: () => void } => {
  let wake = (): void => {};
  const wait = new Promise<void>((resolve) => (wake = resolve));
  return { wait, wake };
};
// A: one batch of 16 KiB, then nothing more held.
const a = staging.file(randomUUID(), 'a.bin', () => {});
a.write(chunk);
// B: a batch on its way and 64 KiB held behind it: the budget stays full until B's batch lands.
let bDrain = drained();
const b = staging.file(randomUUID(), 'b.bin', () => bDrain.wake());
b.write(chunk);
for (let i = 0; i < 4; i++) b.write(chunk);
await bDrain.wait;
bDrain = drained();
a.end();
b.end();
const sizes = await Promise.all([a.done, b.done]);
await staging.commit(recordFor('site'));
process.stdout.write(`DONE ${sizes[0]! + sizes[1]!}\n`);
