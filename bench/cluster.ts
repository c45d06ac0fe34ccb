// bench/cluster: many wharf processes as one service (issue 18), in one run, as ratios.
//
//   node dist/bench/cluster.js [--quick] [--seconds=8]
//
// 1. `wharf serve --workers 2` against `--workers 1` (the real command, both on this machine):
//    1 KiB static files, req/s through wrk (autocannon without it; 64 connections), and 64 concurrent 1 MiB uploads.
//    The load generator runs on the same cores as the workers: on a 2-core machine it takes a share.
// 2. Image streams: 100 viewers spread over 3 nodes sharing one redis-server (each node a process of
//    its own, `redisHub`) against 100 viewers of one node (in-process hub). 50 KiB frames at 30 fps
//    published to the first node; shown latency p50/p99 (bench/stream-meter.ts), frames lost, CPU of
//    each node and of Redis.
// 3. The ceiling: 50 KiB frames published ever faster through one Redis (publisher node A, 10 viewers
//    on node B) until the rate published falls short of the rate asked or latency climbs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startChild, type Child } from '../test/helpers/load-gen.js';
import { startRedis, type RedisServer } from '../test/helpers/redis-server.js';
import { makeFrame, Meter, openViewer, pct, stamp } from './stream-meter.js';

const quick = process.argv.includes('--quick');
const seconds = Number(process.argv.find((a) => a.startsWith('--seconds='))?.slice(10) ?? (quick ? 3 : 8));
const KEY = { id: 'bench', secret: 'bench-secret' };
const AUTH = 'Basic ' + Buffer.from(`${KEY.id}:${KEY.secret}`).toString('base64');
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padStart(w[i]!)).join('  ')).join('\n');
}

// ---------------------------------------------------------------------------------------------
// 1. --workers 2 against 1

interface Command { proc: ChildProcess; url: string; stop(): Promise<void> }

async function startCommand(workers: number, dataDir: string, pub: string): Promise<Command> {
  const bin = fileURLToPath(new URL('../../bin/wharf.js', import.meta.url));
  const proc = spawn(process.execPath, [bin, '--workers', String(workers), '--listen', '127.0.0.1:0', '--data-dir', dataDir,
    '--public-dir', `/pub@${pub}`, '--access-key-id', KEY.id, '--access-key-secret', KEY.secret, '--log', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`wharf exited (${code})`)));
  });
  return {
    proc,
    url,
    stop: () => new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
    }),
  };
}

const haveWrk = spawnSync('wrk', ['--version']).error === undefined;

/**
 * 1 KiB static req/s with 64 connections. wrk when installed: one C thread takes far less of the two
 * cores than autocannon's Node process, which left two workers less CPU than one had had.
 */
function staticReqPerSec(url: string, secs: number): number {
  if (haveWrk) {
    const r = spawnSync('wrk', ['-t1', '-c64', `-d${secs}s`, url], { encoding: 'utf8' });
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout ?? '');
    if (!rps) throw new Error(`cannot parse wrk output:\n${r.stdout}\n${r.stderr}`);
    if (/Non-2xx or 3xx responses/.test(r.stdout)) throw new Error(`static load: non-2xx answers\n${r.stdout}`);
    return Number(rps[1]);
  }
  const cli = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));
  const r = spawnSync(process.execPath, [cli, '-c', '64', '-d', String(secs), '--json', url], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const j = JSON.parse(r.stdout) as { requests: { average: number }; non2xx: number; errors: number };
  if (j.non2xx || j.errors) throw new Error(`static load: ${j.non2xx} non-2xx, ${j.errors} errors`);
  return j.requests.average;
}

const BOUNDARY = 'bench-cluster-boundary';
function uploadBody(): Buffer {
  const data = Buffer.alloc(1 << 20, 0x5a);
  return Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="one.bin"\r\n\r\n`), data, Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]);
}

function uploadOnce(url: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/_f/`, { method: 'POST', agent: false, headers: { Authorization: AUTH, 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`, 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`upload: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Uploads/s with 64 in flight at all times, for `secs`. */
async function uploadsPerSec(url: string, secs: number): Promise<number> {
  const body = uploadBody();
  const end = performance.now() + secs * 1000;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() < end) {
      await uploadOnce(url, body);
      done++;
    }
  }));
  return done / ((performance.now() - t0) / 1000);
}

async function workersCase(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'wharf-bench-cluster-'));
  try {
    const pub = join(root, 'pub');
    await mkdir(pub);
    await writeFile(join(pub, 'one-k.txt'), Buffer.alloc(1024, 0x61));
    const rows: string[][] = [];
    const measured: Record<number, { rps: number; ups: number }> = {};
    for (const workers of [1, 2]) {
      const dataDir = join(root, `data-${workers}`);
      const c = await startCommand(workers, dataDir, pub);
      try {
        staticReqPerSec(`${c.url}/pub/one-k.txt`, 1); // warm-up
        const rps = staticReqPerSec(`${c.url}/pub/one-k.txt`, seconds);
        await uploadsPerSec(c.url, 1);
        const ups = await uploadsPerSec(c.url, seconds);
        measured[workers] = { rps, ups };
        rows.push([String(workers), rps.toFixed(0), ups.toFixed(1)]);
      } finally {
        await c.stop();
        await rm(dataDir, { recursive: true, force: true });
      }
    }
    console.log(table(['workers', '1 KiB static req/s', '1 MiB uploads/s = MiB/s (64 in flight)'], rows));
    console.log(`--workers 2 / 1: static ${(measured[2]!.rps / measured[1]!.rps).toFixed(2)}x, uploads ${(measured[2]!.ups / measured[1]!.ups).toFixed(2)}x (target >= 1.6x)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Image streams through Redis

const pubAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function publish(url: string, name: string, frame: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/_m/${name}`, { method: 'POST', agent: pubAgent, headers: { Authorization: AUTH, 'Content-Type': 'image/jpeg', 'Content-Length': frame.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(frame);
  });
}

interface StreamRow { label: string; fps: number; lost: number; shownP50: number; shownP99: number; nodeCpu: number[]; redisCpu: number | undefined }

/**
 * Publishes to `nodes[0]` at `fps` for `secs` (after a second unmeasured) while `viewers` viewers
 * spread over `nodes` watch. Frames are fresh Buffers each (a frame is shared by every viewer and
 * may still be on its way when the next is published).
 */
async function streamRun(label: string, publishTo: Child, viewOn: Child[], redis: RedisServer | undefined, viewers: number, fps: number, secs: number): Promise<StreamRow> {
  const nodes = [publishTo, ...viewOn.filter((n) => n !== publishTo)];
  const name = `bench-${label.replace(/\W/g, '-')}`;
  let seq = 0;
  let from = Number.MAX_SAFE_INTEGER;
  const base = makeFrame();
  const next = (): Buffer => stamp(Buffer.from(base), seq++);
  if ((await publish(nodes[0]!.url, name, next())) !== 200) throw new Error('first publish failed');
  const meters = Array.from({ length: viewers }, () => new Meter(() => from));
  const sockets: net.Socket[] = [];
  for (let i = 0; i < viewers; i++) sockets.push(await openViewer(viewOn[i % viewOn.length]!.port, `/_m/${name}`, meters[i]!));
  const pace = async (s: number): Promise<{ last: number; elapsed: number }> => {
    const t0 = performance.now();
    let due = t0;
    const inFlight = new Set<Promise<number>>();
    while (performance.now() - t0 < s * 1000) {
      const p = publish(nodes[0]!.url, name, next());
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      // At high rates several frames are in flight; never more than 16 (the agent's sockets).
      if (inFlight.size >= 16) await Promise.race(inFlight);
      due += 1000 / fps;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      else if (wait < -50) due = performance.now(); // fell behind: no burst to catch up
    }
    await Promise.all(inFlight);
    return { last: seq - 1, elapsed: (performance.now() - t0) / 1000 };
  };
  await pace(1);
  await sleep(200);
  from = seq;
  const pids = nodes.map((n) => n.pid);
  const cpu0 = pids.map(cpuSeconds);
  const redis0 = redis ? cpuSeconds(redis.pid()) : 0;
  const { last, elapsed } = await pace(secs);
  const nodeCpu = pids.map((p, i) => (cpuSeconds(p) - cpu0[i]!) / elapsed * 100);
  const redisCpu = redis ? (cpuSeconds(redis.pid()) - redis0) / elapsed * 100 : undefined;
  const settle = performance.now();
  while (meters.some((m) => m.lastSeq < last) && performance.now() - settle < 3000) await sleep(20);
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => {
    const req = http.request(`${nodes[0]!.url}/_m/${name}`, { method: 'DELETE', agent: pubAgent, headers: { Authorization: AUTH } }, (res) => { res.resume(); res.on('end', resolve); });
    req.end();
  });
  const shown = meters.flatMap((m) => m.shown).sort((a, b) => a - b);
  return {
    label,
    fps: (last - from + 1) / elapsed,
    lost: meters.reduce((n, m) => n + m.lost + Math.max(0, last - Math.max(m.lastSeq, from - 1)), 0),
    shownP50: pct(shown, 50),
    shownP99: pct(shown, 99),
    nodeCpu,
    redisCpu,
  };
}

async function streamsCase(): Promise<void> {
  const redis = await startRedis();
  const dirs: string[] = [];
  const children: Child[] = [];
  const node = async (redisUrl?: string): Promise<Child> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'wharf-bench-node-'));
    dirs.push(dataDir);
    const c = await startChild({ dataDir, accessKeys: { [KEY.id]: KEY.secret } }, redisUrl ? { redisUrl } : {});
    children.push(c);
    return c;
  };
  try {
    const single = await node();
    const three = [await node(redis.url), await node(redis.url), await node(redis.url)];
    const rows: StreamRow[] = [];
    // Interleaved, twice: a change in the machine's load hits both alike.
    for (let round = 0; round < (quick ? 1 : 2); round++) {
      rows.push(await streamRun('1 node, in-process', single, [single], undefined, 100, 30, seconds));
      rows.push(await streamRun('3 nodes, Redis', three[0]!, three, redis, 100, 30, seconds));
    }
    const ms = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(1));
    console.log(table(['case (100 viewers, 50 KiB @ 30 fps)', 'fps', 'lost', 'shown p50 ms', 'shown p99 ms', 'CPU % per node', 'Redis CPU %'],
      rows.map((r) => [r.label, r.fps.toFixed(1), String(r.lost), ms(r.shownP50), ms(r.shownP99), r.nodeCpu.map((c) => c.toFixed(0)).join(' / '), r.redisCpu === undefined ? '-' : r.redisCpu.toFixed(1)])));
    // Round by round: each pair ran back to back, under the same load.
    for (let i = 0; i + 1 < rows.length; i += 2) {
      const [one, many] = [rows[i]!, rows[i + 1]!];
      console.log(`round ${i / 2 + 1}: 3 nodes through Redis / 1 node: shown p50 ${(many.shownP50 / one.shownP50).toFixed(2)}x, p99 ${(many.shownP99 / one.shownP99).toFixed(2)}x (target: p99 < 30 ms and <= 2x)`);
    }
    console.log('\nceiling: 50 KiB frames through one Redis, published to node A, 10 viewers on node B');
    const ceiling: StreamRow[] = [];
    for (const fps of quick ? [100, 400, 1600] : [100, 200, 400, 800, 1600, 3200]) {
      ceiling.push(await streamRun(`${fps} fps asked`, three[0]!, [three[1]!], redis, 10, fps, quick ? 2 : 3));
    }
    console.log(table(['rate asked', 'fps published', 'MiB/s into Redis', 'lost', 'shown p50 ms', 'shown p99 ms', 'CPU % A / B', 'Redis CPU %'],
      ceiling.map((r) => [r.label, r.fps.toFixed(0), (r.fps * 50 / 1024).toFixed(1), String(r.lost), ms(r.shownP50), ms(r.shownP99), r.nodeCpu.map((c) => c.toFixed(0)).join(' / '), (r.redisCpu ?? 0).toFixed(1)])));
  } finally {
    pubAgent.destroy();
    for (const c of children) await c.stop();
    await redis.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`cluster: ${seconds} s per case; load avg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; the load generators share the machine's cores with the servers`);
  console.log('\n--workers 2 against 1 (the command, static and uploads)');
  await workersCase();
  console.log('\nimage streams: 3 nodes through Redis against 1 node');
  await streamsCase();
}

await main();
