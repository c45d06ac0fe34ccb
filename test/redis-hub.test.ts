// The Redis hub (lib/image-streams/redis-hub.ts) with real parts: a `redis-server` started here, and
// wharf nodes as separate processes (test/helpers/load-server.ts), each with node-redis clients of
// its own, as host apps would run them behind a load balancer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { WharfError } from '../lib/common/errors.js';
import { redisHub } from '../lib/image-streams/redis-hub.js';
import type { Limits } from '../lib/common/limits.js';
import { view, type Viewer } from './helpers/mixed-replace.js';
import { startChild, settledFds, type Child } from './helpers/load-gen.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { AUTH, eventually, frame, post, request } from './helpers/streams.js';
import { KEY } from './helpers/streams.js';
import { tempDir } from './helpers/temp-dir.js';
import { form, MULTIPART } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

type T = Parameters<NonNullable<Parameters<typeof test>[0]>>[0];

async function redis(t: T): Promise<RedisServer> {
  const r = await startRedis();
  defer(t, () => r.stop());
  return r;
}

/** `count` wharf nodes sharing `r`, each with a data dir of its own. */
async function nodes(t: T, r: RedisServer, count: number, limits: Partial<Limits> = {}): Promise<Child[]> {
  const out: Child[] = [];
  for (let i = 0; i < count; i++) {
    const dataDir = await tempDir(t, 'wharf-redis-node-');
    const child = await startChild({ dataDir, accessKeys: { [KEY.id]: KEY.secret }, limits }, { redisUrl: r.url });
    defer(t, () => child.stop());
    out.push(child);
  }
  return out;
}

async function watch(t: T, url: string): Promise<Viewer> {
  const v = await view(url);
  defer(t, () => v.close());
  return v;
}

/** The frame numbers a viewer has received, in order (`frame(seq, …)` starts with `seq`). */
const seqs = (v: Viewer): number[] => v.reader.frames.map((p) => p.body.readUInt32BE(0));

test('three nodes on one Redis: every frame reaches every viewer in order, the latest at once, unlink ends them all', { timeout: 180_000 }, async (t) => {
  const r = await redis(t);
  const [a, b, c] = await nodes(t, r, 3);
  const url = (n: Child): string => `${n.url}/_m/cam`;
  assert.equal((await post(a!.url, 'cam', 'image/jpeg', frame(0, 5000))).status, 200);
  const viewers = [await watch(t, url(a!)), await watch(t, url(b!)), await watch(t, url(b!)), await watch(t, url(c!))];
  for (const v of viewers) assert.equal(v.status, 200);
  // Each node subscribes once per stream, however many viewers it has.
  assert.deepEqual(await r.command(['PUBSUB', 'NUMSUB', 'wharf:m:cam']), ['wharf:m:cam', 3]);

  const sizes = [1, 70_000, 300, 250_000, 12];
  for (let i = 1; i <= 60; i++) {
    // Most from A, some from B and C: one order for every viewer whichever node took the frame.
    const from = i % 10 === 3 ? b! : i % 10 === 7 ? c! : a!;
    const type = i % 2 ? 'image/jpeg' : 'image/png';
    assert.equal((await post(from.url, 'cam', type, frame(i, sizes[i % sizes.length]! + 4))).status, 200);
    // A viewer that falls behind skips to the newest frame (by design): on a loaded machine these
    // readers can, so each frame is taken by all before the next, and "every frame" is what is tested.
    for (const v of viewers) await v.until((rd) => rd.frames.length > i, `frame ${i}`);
  }
  const all = Array.from({ length: 61 }, (_, i) => i);
  for (const v of viewers) {
    await v.until((rd) => rd.frames.length === 61, 'all 61 frames');
    assert.deepEqual(seqs(v), all);
    const last = v.reader.frames.at(-1)!;
    assert.equal(last.headers['content-type'], 'image/png');
    assert.ok(last.body.equals(frame(60, 1 + 4)), 'byte-exact');
    assert.ok(v.reader.frames[3]!.body.equals(frame(3, 250_000 + 4)), 'byte-exact');
  }
  // A viewer joining on C gets the latest frame at once.
  const late = await watch(t, url(c!));
  await late.until((rd) => rd.frames.length === 1, 'the latest frame');
  assert.deepEqual(seqs(late), [60]);
  // HEAD through a node that has no viewer asks Redis.
  const d = await startChild({ dataDir: await tempDir(t), accessKeys: { [KEY.id]: KEY.secret } }, { redisUrl: r.url });
  defer(t, () => d.stop());
  assert.equal((await request(url(d), { method: 'HEAD' })).status, 200);
  assert.equal((await request(`${d.url}/_m/nope`, { method: 'HEAD' })).status, 404);

  // Unlink through B: every viewer on every node gets the closing boundary.
  const del = await request(url(b!), { method: 'DELETE', headers: { Authorization: AUTH } });
  assert.deepEqual([del.status, del.json], [200, { ended: true }]);
  for (const v of [...viewers, late]) {
    assert.deepEqual(await v.ended, { complete: true });
    assert.equal(v.reader.closed, true);
  }
  for (const n of [a!, b!, c!]) assert.equal((await request(url(n))).status, 404);
  const again = await request(url(c!), { method: 'DELETE', headers: { Authorization: AUTH } });
  assert.deepEqual(again.json, { ended: false });
  await eventually(async () => ((await r.command(['PUBSUB', 'NUMSUB', 'wharf:m:cam'])) as unknown[])[1] === 0, 'every node unsubscribed');
});

test('the idle timeout on any node ends the stream for viewers on every node', { timeout: 180_000 }, async (t) => {
  const r = await redis(t);
  const [a, b, c] = await nodes(t, r, 3, { streamIdleTimeout: 1500 });
  assert.equal((await post(a!.url, 'idle', 'image/jpeg', frame(1, 100))).status, 200);
  const viewers = [await watch(t, `${b!.url}/_m/idle`), await watch(t, `${c!.url}/_m/idle`)];
  assert.equal((await post(a!.url, 'idle', 'image/jpeg', frame(2, 100))).status, 200);
  for (const v of viewers) {
    assert.deepEqual(await v.ended, { complete: true });
    assert.equal(v.reader.closed, true);
    assert.deepEqual(seqs(v), [1, 2]);
  }
  for (const n of [a!, b!, c!]) assert.equal((await request(`${n.url}/_m/idle`)).status, 404);
  // The stream no longer counts against the (global) stream limit either.
  assert.equal(await r.command(['EXISTS', 'wharf:m-latest:idle']), 0);
});

test('Redis restarted during a stream: 503 HUB_UNAVAILABLE meanwhile, uploads work, viewers stay and resume', { timeout: 180_000 }, async (t) => {
  const r = await redis(t);
  const [a, b] = await nodes(t, r, 2);
  // The baseline, with both nodes connected to Redis and nothing else open.
  const before = await Promise.all([settledFds(a!), settledFds(b!)]);
  assert.equal((await post(a!.url, 'cam', 'image/jpeg', frame(1, 2000))).status, 200);
  const viewers = [await watch(t, `${a!.url}/_m/cam`), await watch(t, `${b!.url}/_m/cam`)];

  const health = async (url: string): Promise<{ status: number; hub: unknown }> => {
    const res = await request(`${url}/_wharf/health`);
    return { status: res.status, hub: JSON.parse(res.body.toString()).checks?.hub };
  };
  assert.deepEqual(await health(a!.url), { status: 200, hub: 'ok' });

  await r.kill();
  // The load balancer's readiness check says which part is down (its answer is reused for 1 s).
  await eventually(async () => (await health(a!.url)).status === 503, 'health 503 while Redis is down', 10_000);
  assert.equal((await health(b!.url)).hub, 'unreachable');
  const down = await post(a!.url, 'cam', 'image/jpeg', frame(2, 2000));
  assert.equal(down.status, 503);
  assert.equal(down.json?.error, 'HUB_UNAVAILABLE');
  assert.match(String(down.json?.message), /image streams are unavailable/);
  // A viewer arriving now is told so too, and nothing else breaks.
  const refused = await request(`${b!.url}/_m/other`);
  assert.equal(refused.status, 503);
  const up = await request(`${b!.url}/_f/`, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': MULTIPART }, body: form([{ name: 'files', filename: 'x.txt', data: Buffer.from('still here') }]) });
  assert.equal(up.status, 200, up.body.toString());
  const [path] = JSON.parse(up.body.toString()).files as string[];
  assert.equal((await request(`${b!.url}${path}`, { headers: { Authorization: AUTH } })).body.toString(), 'still here');
  for (const v of viewers) assert.equal(v.reader.closed, false);

  await r.start();
  // The nodes reconnect by themselves; publishing works again.
  await eventually(async () => (await post(a!.url, 'cam', 'image/jpeg', frame(3, 2000))).status === 200, 'a publish after the restart', 15_000);
  // Each node reconnects on its own schedule: b may still be reconnecting when a already publishes.
  await eventually(async () => (await post(b!.url, 'cam', 'image/png', frame(4, 2000))).status === 200, "a publish through b after the restart", 15_000);
  await eventually(async () => (await health(b!.url)).status === 200, 'health 200 again', 10_000);
  for (const v of viewers) {
    await v.until((rd) => seqs2(rd).includes(4), 'frame 4 after the restart');
    const got = seqs(v);
    assert.equal(got[0], 1);
    assert.ok(!got.includes(2), 'the refused frame was never shown');
    assert.ok(got.indexOf(3) < got.indexOf(4), 'in order');
    assert.equal(v.reader.closed, false);
  }
  for (const v of viewers) v.close();
  assert.ok(!a!.exited && !b!.exited, 'no node crashed');
  // Back to the baseline: no socket or file left open by the outage (Redis clients reconnected in place).
  await eventually(async () => (await settledFds(a!)) <= before[0]! && (await settledFds(b!)) <= before[1]!, `descriptors back to ${before.join(', ')}`, 10_000)
    .catch(async (err: Error) => { throw new Error(`${err.message}: ${(await a!.fdTargets()).join(' ')}`); });
});

const seqs2 = (rd: Viewer['reader']): number[] => rd.frames.map((p) => p.body.readUInt32BE(0));

test('a node whose subscriber Redis dropped for falling behind recovers by itself; its viewers skip to the latest', { timeout: 180_000 }, async (t) => {
  const r = await redis(t);
  const [a, b] = await nodes(t, r, 2);
  await r.command(['CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 64kb 32kb 1']);
  assert.equal((await post(a!.url, 'big', 'image/jpeg', frame(1, 100))).status, 200);
  const v = await watch(t, `${b!.url}/_m/big`);
  await v.until((rd) => rd.frames.length === 1, 'the first frame');
  const subscribers = async (): Promise<number> => String(await r.command(['CLIENT', 'LIST', 'TYPE', 'pubsub'])).split('\n').filter((l) => l.includes('sub=')).length;
  assert.equal(await subscribers(), 1);
  // B stops reading (a node stalled by its own load): once the kernel's socket buffers are full,
  // Redis's buffer for B passes 64 KiB and Redis drops it.
  process.kill(b!.pid, 'SIGSTOP');
  // Frames well under the limit: a node that keeps up gets every one.
  let last = 1;
  try {
    while ((await subscribers()) > 0) {
      assert.ok(last < 2000, 'Redis never dropped the stalled subscriber');
      for (let i = 0; i < 20; i++) assert.equal((await post(a!.url, 'big', 'image/jpeg', frame(++last, 30_000))).status, 200);
    }
  } finally {
    process.kill(b!.pid, 'SIGCONT');
  }
  // B reconnects, subscribes again and replays the latest frame to its viewer.
  await v.until((rd) => seqs2(rd).includes(last), 'the latest frame after the drop');
  assert.equal(v.reader.closed, false);
  assert.equal((await post(a!.url, 'big', 'image/jpeg', frame(last + 1, 100))).status, 200);
  await v.until((rd) => seqs2(rd).at(-1) === last + 1, 'frames flow again');
  const got = seqs(v);
  assert.deepEqual([...got].sort((x, y) => x - y), got, 'in order, skipping what was dropped');
  assert.equal(await r.command(['PUBSUB', 'NUMSUB', 'wharf:m:big']).then((x) => (x as unknown[])[1]), 1);
});

test('redisHub in-process: limits.streams is global across nodes, and bad clients fail fast', { timeout: 180_000 }, async (t) => {
  const r = await redis(t);
  const { createFileServer } = await import('../lib/http/server.js');
  const clients = await Promise.all([0, 1, 2, 3].map(async () => {
    const c = createClient({ url: r.url });
    c.on('error', () => {});
    await c.connect();
    defer(t, () => c.destroy());
    return c;
  }));
  const servers = [0, 1].map((i) => createFileServer({
    dataDir: `/tmp/wharf-unused-${process.pid}-${i}`,
    accessKeys: { [KEY.id]: KEY.secret },
    limits: { streams: 2 },
    hub: redisHub({ publisher: clients[2 * i]!, subscriber: clients[2 * i + 1]! }),
  }));
  defer(t, () => Promise.all(servers.map((s) => s.close())));
  const [x, y] = servers;
  await x!.site.uplink('one', 'image/png', Buffer.from('1'));
  await y!.site.uplink('two', 'image/png', Buffer.from('2'));
  await assert.rejects(y!.site.uplink('three', 'image/png', Buffer.from('3')), (e) => e instanceof WharfError && e.code === 'TOO_MANY_STREAMS');
  await x!.site.unlink('one');
  await y!.site.uplink('three', 'image/png', Buffer.from('3'));

  assert.throws(() => redisHub({ publisher: clients[0]!, subscriber: clients[0]! }), /client of its own/);
  assert.throws(() => redisHub({ publisher: {} as never, subscriber: clients[1]! }), (e) => e instanceof WharfError && e.code === 'INVALID_OPTION');
  assert.throws(() => redisHub({ publisher: clients[0]!, subscriber: clients[1]!, timeout: 0 }), /timeout/);
});
