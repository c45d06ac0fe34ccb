import test from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { view, stalledViewer } from './helpers/mixed-replace.js';
import { eventually, frame, start } from './helpers/streams.js';
import { defer } from './helpers/defer.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;

test('a viewer that stops reading holds at most one pending frame and is dropped after the stall timeout', async (t) => {
  const s = await start(t, { frameSize: 2 * MiB, viewerStallTimeout: 1500 });
  await s.site.uplink('big', 'image/jpeg', frame(0, MiB));
  const stalled = await stalledViewer(`${s.url}/_m/big`);
  defer(t, () => stalled.destroy());
  const fast = await view(`${s.url}/_m/big`, { keep: 1 });
  defer(t, () => fast.close());
  await eventually(() => s.stats()[0]?.viewers === 2, 'two viewers');

  gc();
  const before = process.memoryUsage();
  let maxRss = before.rss;
  let maxPending = 0;
  let maxQueued = 0;
  const data = frame(1, MiB);
  for (let i = 1; i <= 200; i++) {
    data.writeUInt32BE(i, 0);
    await s.site.uplink('big', 'image/jpeg', data);
    // Let the sockets move; the fast viewer keeps up whenever it is given a turn.
    await new Promise((r) => setImmediate(r));
    const st = s.stats()[0]!;
    maxPending = Math.max(maxPending, st.framesPending);
    maxQueued = Math.max(maxQueued, st.bytesQueued);
    if (i % 20 === 0) {
      gc();
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
    }
  }
  gc();
  const after = process.memoryUsage();
  const st = s.stats()[0]!;
  // Two viewers: at most one pending frame each, and never more than a few frames of socket buffer.
  assert.ok(maxPending <= 2, `pending frames ${maxPending}`);
  assert.ok(maxQueued <= 6 * MiB, `bytes queued ${maxQueued}`);
  assert.ok(st.framesSkipped > 0, 'the stalled viewer skipped frames');
  // 200 MiB went through; a per-viewer queue would have kept most of it for the stalled viewer.
  assert.ok(after.arrayBuffers - before.arrayBuffers < 16 * MiB, `arrayBuffers grew ${(after.arrayBuffers - before.arrayBuffers) / MiB} MiB`);
  assert.ok(maxRss - before.rss < 96 * MiB, `RSS grew ${(maxRss - before.rss) / MiB} MiB`);

  // The fast viewer saw the last frame; the stalled one is cut after the stall timeout.
  await fast.until((r) => r.frames.at(-1)?.body.readUInt32BE(0) === 200, 'last frame');
  await eventually(() => s.stats()[0]!.viewers === 1, 'stalled viewer dropped', 5000);
  assert.equal(s.stats()[0]!.framesPending, 0);
  // Its connection was cut: once it reads again it finds the end of a truncated response.
  const gone = new Promise((resolve) => stalled.once('close', resolve));
  stalled.resume();
  await gone;
});
