// bench/streams: wharf's image streams against H2O Wave's own Go server (bench/wave.ts, when
// ../shared/peers/wave/run exists), a relay built the way Wave's server does it
// (bench/streams-baseline.ts: a 256-frame queue per viewer), in the same run, and against a floor
// (the same file: each frame framed once, one socket write per viewer, no backpressure) that shows
// what the machine allows.
//
//   node dist/bench/streams.js [--quick] [--viewers=1,10,100,500] [--seconds=10] [--no-stall]
//                              [--servers=wharf,wave,baseline,floor] [--harness=raw|http] [--also=LABEL=PATH/lib/index.js]
//
// Wave is published to as its client does (a multipart form of one part), and sends a viewer
// nothing, not even its status line, until ~4 KiB of frames are buffered for it (Go's buffered
// response writer): a frame arrives whole (its 50 KiB overflow the buffer), but the delimiter after
// it waits in the buffer for the next frame, so a Wave frame is *shown* a frame later (~33 ms at 30
// fps). Its CPU and peak RSS are read from /proc (the peak reset per case through clear_refs); its
// stalled-viewer row has no retained-buffers figure (no GC to ask).
//
// Each server runs in a child process of its own (pinned to CPU 0 with taskset when there are two or
// more CPUs), so CPU time and RSS are the server's alone. 50 KiB frames are published at 30 fps over
// HTTP; this process (pinned to CPU 1) runs every viewer on loopback. Each frame carries its
// sequence number and publish time, so a viewer knows what it lost and how late each frame came.
// The publisher is a third process (on CPU 0 with the servers), so the viewers cannot slow its pace.
// Viewers read raw sockets and de-chunk the body themselves (`--harness=http`: through node:http's
// client, whose per-byte copies made the viewers' process the bottleneck). Each case runs 1 s of the
// same load unmeasured first, so that no process is measured while its code is still being compiled.
//   recv:  the frame's last byte has arrived.
//   shown: the header block after the frame has arrived too — when a browser (Chromium) displays it.
// `--dump=PREFIX` writes each viewer's (sequence, recv latency) pairs to PREFIX-<server>-<viewers>.json.
// Then a stalled-viewer case: one viewer that never reads while 300 frames are published as fast as
// the server takes them; the memory the server keeps for it is measured after a GC.
import { fork, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { FRAME, makeFrame, Meter, now, openViewer, pct, stamp } from './stream-meter.js';
import { sessionPriority } from './priority.js';
import { startWave, waveAvailable, WAVE_SKIPPED } from './wave.js';

const FPS = 30;
const KEY = { id: 'bench', secret: 'bench-secret' };
const AUTH = 'Basic ' + Buffer.from(`${KEY.id}:${KEY.secret}`).toString('base64');
const SERVERS = ['wharf', 'wave', 'baseline', 'floor'] as const;
/** The floor only when asked for (`--servers=…,floor`): the default run stays within three minutes. */
const DEFAULT_SERVERS = ['wharf', 'wave', 'baseline'];
/** 'wharf', 'wave', 'baseline', 'floor', or the label of another build of wharf given with `--also`. */
type Kind = string;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Server mode: `--serve <kind>` listens on 127.0.0.1:0, reports its port over IPC, and answers
// `usage` / `gc` messages with its CPU time and memory.

interface Usage {
  cpu: NodeJS.CpuUsage;
  rss: number;
  peakRss: number;
  arrayBuffers: number;
  heapUsed: number;
}

async function serve(kind: Kind, serverModule: string | undefined): Promise<void> {
  let port: number;
  if (kind !== 'baseline' && kind !== 'floor') {
    const { createFileServer } = (await import(serverModule ?? '../lib/index.js')) as typeof import('../lib/index.js');
    const dataDir = await mkdtemp(join(tmpdir(), 'wharf-bench-streams-'));
    const files = createFileServer({ dataDir, accessKeys: { [KEY.id]: KEY.secret }, warn: () => {} });
    port = (await files.listen({ port: 0, host: '127.0.0.1' })).port;
    process.once('disconnect', () => void rm(dataDir, { recursive: true, force: true }).finally(() => process.exit(0)));
  } else {
    const { createBaselineRelay, createFloorRelay } = await import('./streams-baseline.js');
    const server = http.createServer(kind === 'floor' ? createFloorRelay() : createBaselineRelay());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
    process.once('disconnect', () => process.exit(0));
  }
  let peakRss = 0;
  setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50).unref();
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', async (m: { id: number; cmd: 'usage' | 'gc' }) => {
    if (m.cmd === 'gc') {
      // V8 frees ArrayBuffers' memory on a background sweeper after the GC: a second GC a moment
      // later finds it done, so that what is counted is what is still referenced.
      gc?.();
      await new Promise((r) => setTimeout(r, 100));
      gc?.();
    }
    const mem = process.memoryUsage();
    peakRss = Math.max(peakRss, mem.rss);
    const usage: Usage = { cpu: process.cpuUsage(), rss: mem.rss, peakRss, arrayBuffers: mem.arrayBuffers, heapUsed: mem.heapUsed };
    peakRss = mem.rss;
    process.send!({ id: m.id, usage });
  });
  process.send!({ port });
}

// ---------------------------------------------------------------------------------------------
// Publisher mode: `--publish` paces frames at FPS in a process of its own, so that the viewers'
// work in the driver cannot delay them; answers each `run` with the last sequence number sent.

function publisher(): void {
  const frame = makeFrame();
  process.on('message', async (m: { port: number; path: string; seconds: number; seq: number; form: boolean }) => {
    let seq = m.seq;
    const t0 = performance.now();
    const interval = 1000 / FPS;
    let due = t0;
    while (performance.now() - t0 < m.seconds * 1000) {
      await publish(m.port, m.path, stamp(frame, seq++), m.form);
      due += interval;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      else due = performance.now(); // fell behind: no burst to catch up
    }
    process.send!({ last: seq - 1, elapsed: (performance.now() - t0) / 1000 });
  });
  process.once('disconnect', () => process.exit(0));
  process.send!({ ready: true });
}

interface Publisher {
  run(port: number, path: string, seconds: number, seq: number, form: boolean): Promise<{ last: number; elapsed: number }>;
  stop(): void;
}

async function startPublisher(): Promise<Publisher> {
  const child = fork(fileURLToPath(import.meta.url), ['--publish'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // On the server's CPU: the servers use little of it, the viewers all of theirs.
  if (availableParallelism() >= 2) spawnSync('taskset', ['-cp', '0', String(child.pid)], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('message', resolve));
  return {
    run: (port, path, seconds, seq, form) => new Promise((resolve) => {
      child.once('message', resolve);
      child.send({ port, path, seconds, seq, form });
    }),
    stop: () => child.disconnect(),
  };
}

// ---------------------------------------------------------------------------------------------
// Driver side.

interface Server {
  kind: Kind;
  port: number;
  /** Frames go to it as Wave's client sends them, a multipart form of one part (Wave takes nothing else). */
  form: boolean;
  /** Opens a viewer; `early` for a server that sends nothing until it has a frame (see `openViewer`). */
  early: boolean;
  ask(cmd: 'usage' | 'gc'): Promise<Usage>;
  stop(): void | Promise<void>;
}

/** Wave as a server of this bench; its usage read from /proc, its peak RSS reset per ask (clear_refs). */
async function startWaveServer(): Promise<Server> {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-bench-streams-wave-'));
  const wave = await startWave({ dataDir, accessKey: KEY, cpu: 0 });
  const usage = (): Usage => {
    const status = readFileSync(`/proc/${wave.pid}/status`, 'utf8');
    const kB = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    const stat = readFileSync(`/proc/${wave.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime (fields 14 and 15) in clock ticks of 10 ms.
    const cpu = { user: Number(fields[11]) * 1e4, system: Number(fields[12]) * 1e4 };
    const u: Usage = { cpu, rss: kB('VmRSS'), peakRss: kB('VmHWM'), arrayBuffers: NaN, heapUsed: NaN };
    try {
      writeFileSync(`/proc/${wave.pid}/clear_refs`, '5'); // the peak from here on
    } catch {
      // Not ours to reset (not root): the peak is then the process's whole life's.
    }
    return u;
  };
  return {
    kind: 'wave',
    port: wave.port,
    form: true,
    early: true,
    ask: async () => usage(),
    stop: () => wave.stop().finally(() => rm(dataDir, { recursive: true, force: true })),
  };
}

async function startServer(kind: Kind, serverModule?: string): Promise<Server> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', kind, ...(serverModule ? [serverModule] : [])], { execArgv: [...process.execArgv, '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (availableParallelism() >= 2) spawnSync('taskset', ['-cp', '0', String(child.pid)], { stdio: 'ignore' });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code})`)));
  });
  let next = 0;
  const waiting = new Map<number, (u: Usage) => void>();
  child.on('message', (m: { id?: number; usage?: Usage }) => {
    if (m.id !== undefined && m.usage) waiting.get(m.id)?.(m.usage);
  });
  return {
    kind,
    port,
    form: false,
    early: false,
    ask: (cmd) => new Promise((resolve) => {
      const id = next++;
      waiting.set(id, (u) => (waiting.delete(id), resolve(u)));
      child.send({ id, cmd });
    }),
    stop: () => child.disconnect(),
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function send(port: number, method: string, path: string, body?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { Authorization: AUTH };
    if (body) Object.assign(headers, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length });
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const FORM_BOUNDARY = 'wharfbenchframe';
const FORM_HEAD = Buffer.from(`--${FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="f"\r\nContent-Type: image/jpeg\r\n\r\n`);
const FORM_TAIL = Buffer.from(`\r\n--${FORM_BOUNDARY}--\r\n`);

/** Publishes one frame: its raw body, or (`form`) a multipart form of one part, as Wave's client sends it. */
function publish(port: number, path: string, frame: Buffer, form: boolean): Promise<number> {
  if (!form) return send(port, 'POST', path, frame);
  return new Promise((resolve, reject) => {
    const headers = { Authorization: AUTH, 'Content-Type': `multipart/form-data; boundary=${FORM_BOUNDARY}`, 'Content-Length': FORM_HEAD.length + frame.length + FORM_TAIL.length };
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.write(FORM_HEAD);
    req.write(frame);
    req.end(FORM_TAIL);
  });
}

/** The same through node:http's client (`--harness=http`), to see what the viewers' own parsing costs. */
function openHttpViewer(port: number, path: string, meter: Meter): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET ${path}: ${res.statusCode}`));
      res.on('data', (c: Buffer) => meter.push(c));
      res.on('error', () => {});
      resolve(req);
    });
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


interface Row {
  server: Kind;
  viewers: number;
  published: number;
  fps: number;
  deliveredPerSec: number;
  expectedPerSec: number;
  lost: number;
  recvP50: number;
  recvP99: number;
  shownP50: number;
  shownP99: number;
  cpu: number;
  peakRss: number;
}

async function fanOut(server: Server, pub: Publisher, viewers: number, seconds: number, harness: 'raw' | 'http'): Promise<Row> {
  const path = `/_m/bench-${viewers}`;
  const frame = makeFrame();
  let seq = 0;
  let from = Number.MAX_SAFE_INTEGER; // warm-up frames do not count
  await publish(server.port, path, stamp(frame, seq++), server.form);
  const meters = Array.from({ length: viewers }, () => new Meter(() => from));
  const reqs: { destroy(): void }[] = [];
  const open = harness === 'http' ? openHttpViewer : (port: number, p: string, m: Meter) => openViewer(port, p, m, server.early);
  for (let i = 0; i < viewers; i += 50) {
    reqs.push(...(await Promise.all(meters.slice(i, i + 50).map((m) => open(server.port, path, m)))));
  }
  // Warm up until every viewer has a frame (the baseline and Wave send nothing until the next publish).
  const t0 = performance.now();
  while (meters.some((m) => m.lastSeq < 0)) {
    if (performance.now() - t0 > 20_000) throw new Error(`${server.kind}: ${meters.filter((m) => m.lastSeq < 0).length} of ${viewers} viewers got no frame in 20 s`);
    await publish(server.port, path, stamp(frame, seq++), server.form);
    await sleep(1000 / FPS);
  }
  // Then a second of the real load, unmeasured, so that neither server (nor the publisher and the
  // viewers) is measured while its code is still being compiled: without it the first ~5 frames
  // of a run took 5-10x the steady latency and alone made the p99 at 100-500 viewers.
  seq = (await pub.run(server.port, path, 1, seq, server.form)).last + 1;
  await sleep(200);
  from = seq;
  const before = await server.ask('usage');
  const { last, elapsed } = await pub.run(server.port, path, seconds, seq, server.form);
  const after = await server.ask('usage');
  const settle = performance.now();
  while (meters.some((m) => m.lastSeq < last) && performance.now() - settle < 3000) await sleep(20);
  for (const r of reqs) r.destroy();
  await send(server.port, 'DELETE', path);
  const published = last - from + 1;
  const recv = meters.flatMap((m) => m.recv).sort((a, b) => a - b);
  const shown = meters.flatMap((m) => m.shown).sort((a, b) => a - b);
  const dump = process.argv.find((a) => a.startsWith('--dump='))?.slice(7);
  if (dump) writeFileSync(`${dump}-${server.kind}-${viewers}.json`, JSON.stringify(meters.map((m) => ({ seqs: m.seqs, recv: m.recv }))));
  const cpuMicros = after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system;
  return {
    server: server.kind,
    viewers,
    published,
    fps: published / elapsed,
    deliveredPerSec: meters.reduce((n, m) => n + m.received, 0) / elapsed,
    expectedPerSec: (published * viewers) / elapsed,
    // Frames a viewer never got, counting the tail it had not received when the wait ended.
    lost: meters.reduce((n, m) => n + m.lost + Math.max(0, last - Math.max(m.lastSeq, from - 1)), 0),
    recvP50: pct(recv, 50),
    recvP99: pct(recv, 99),
    shownP50: pct(shown, 50),
    shownP99: pct(shown, 99),
    cpu: cpuMicros / 1e4 / elapsed,
    peakRss: after.peakRss / MiB,
  };
}

interface StallRow {
  server: Kind;
  published: number;
  retained: number;
  rssGrowth: number;
  rss: number;
}

/** One viewer that never reads while 300 frames are published back to back. */
async function stalled(server: Server): Promise<StallRow> {
  const path = '/_m/bench-stalled';
  const frame = makeFrame();
  let seq = 0;
  // The same work once without the stalled viewer, so that heap growth and JIT are not counted.
  for (let i = 0; i < 300; i++) await publish(server.port, path, stamp(frame, seq++), server.form);
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: server.port }, () => {
      s.pause();
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, () => resolve(s));
    });
    s.on('error', reject);
  });
  await sleep(100);
  const before = await server.ask('gc');
  for (let i = 0; i < 300; i++) await publish(server.port, path, stamp(frame, seq++), server.form);
  await sleep(200);
  const after = await server.ask('gc');
  socket.destroy();
  await send(server.port, 'DELETE', path);
  return {
    server: server.kind,
    published: 300,
    retained: (after.arrayBuffers - before.arrayBuffers) / MiB,
    rssGrowth: (after.rss - before.rss) / MiB,
    rss: after.rss / MiB,
  };
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i < 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const seconds = Number(arg('seconds') ?? (quick ? 2 : 10));
  const counts = arg('viewers')?.split(',').filter(Boolean).map(Number) ?? (quick ? [1, 10, 100] : [1, 10, 100, 500]);
  const noStall = process.argv.includes('--no-stall');
  const harness = arg('harness') === 'http' ? 'http' : 'raw';
  if (availableParallelism() >= 2) spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  console.log(`image streams: ${FRAME / 1024} KiB frames at ${FPS} fps for ${seconds} s per case, loopback; ` +
    `server in a child process; viewers read ${harness === 'http' ? "through node:http's client" : 'raw sockets'}; ${sessionPriority()}; load avg ${spawnSync('cat', ['/proc/loadavg']).stdout.toString().split(' ').slice(0, 3).join(' ')}`);
  const rows: Row[] = [];
  const stalls: StallRow[] = [];
  const kinds = arg('servers')?.split(',') ?? DEFAULT_SERVERS;
  if (kinds.includes('wave') && !waveAvailable()) console.log(WAVE_SKIPPED);
  const chosen = SERVERS.filter((k) => kinds.includes(k) && (k !== 'wave' || waveAvailable()));
  const servers = await Promise.all(chosen.map((k) => (k === 'wave' ? startWaveServer() : startServer(k))));
  // `--also=LABEL=PATH`: another build of wharf (PATH: its lib/index.js), e.g. a previous commit's.
  const also = arg('also');
  if (also) servers.splice(1, 0, await startServer(also.slice(0, also.indexOf('=')), pathToFileURL(resolve(also.slice(also.indexOf('=') + 1))).href));
  const pub = await startPublisher();
  try {
    // Interleaved, so that a change in the machine's load hits both servers alike.
    for (const n of counts) for (const server of servers) rows.push(await fanOut(server, pub, n, seconds, harness));
    // The floor keeps no bound on what a viewer has not read: it has no stalled-viewer case.
    if (!noStall) for (const server of servers) if (server.kind !== 'floor') stalls.push(await stalled(server));
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    pub.stop();
  }
  const ms = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(1));
  const order = servers.map((s) => s.kind);
  rows.sort((a, b) => a.viewers - b.viewers || order.indexOf(a.server) - order.indexOf(b.server));
  console.log('\n' + table(
    ['server', 'viewers', 'fps', 'delivered/s', 'expected/s', 'lost', 'recv p50 ms', 'recv p99 ms', 'shown p50 ms', 'shown p99 ms', 'CPU %', 'peak RSS MiB'],
    rows.map((r) => [r.server, String(r.viewers), r.fps.toFixed(1), r.deliveredPerSec.toFixed(0), r.expectedPerSec.toFixed(0), String(r.lost),
      ms(r.recvP50), ms(r.recvP99), ms(r.shownP50), ms(r.shownP99), r.cpu.toFixed(0), r.peakRss.toFixed(0)]),
  ));
  if (noStall) return agent.destroy();
  console.log('\nstalled viewer (never reads), 300 frames published back to back; memory after GC:');
  console.log(table(
    ['server', 'frames', 'retained buffers MiB', 'RSS growth MiB', 'RSS MiB'],
    stalls.map((s) => [s.server, String(s.published), Number.isNaN(s.retained) ? '-' : s.retained.toFixed(2), s.rssGrowth.toFixed(1), s.rss.toFixed(0)]),
  ));
  const w = stalls.find((s) => s.server === 'wharf');
  const wave = stalls.find((s) => s.server === 'wave');
  if (w && wave) console.log(`RSS growth for the stalled viewer: wharf ${w.rssGrowth.toFixed(1)} MiB vs Wave ${wave.rssGrowth.toFixed(1)} MiB`);
  const b = stalls.find((s) => s.server === 'baseline');
  if (w && b) console.log(`\nretained for the stalled viewer: wharf ${w.retained.toFixed(2)} MiB vs baseline ${b.retained.toFixed(2)} MiB` +
    ` (${(w.retained / b.retained).toFixed(3)}x); RSS growth ${w.rssGrowth.toFixed(1)} vs ${b.rssGrowth.toFixed(1)} MiB`);
  agent.destroy();
}

if (process.argv[2] === '--serve') await serve(process.argv[3]!, process.argv[4]);
else if (process.argv[2] === '--publish') publisher();
else await main();
