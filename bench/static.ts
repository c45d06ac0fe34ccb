// bench/static: wharf's static engine against nginx, H2O Wave's own Go server (bench/wave.ts),
// serve-static (send), sirv, @fastify/static, a bare node:http + fs.createReadStream handler (the
// Node floor for streaming) and node:http answering from memory (`memory`: the Node floor of any
// answer), on the same files, interleaved. nginx and Wave are left out, with a note, when absent.
//
//   node dist/bench/static.js [--quick] [--only=<case name part, e.g. 304>[,<another>…]]
//                             [--servers=wharf,nginx,wave,bare,…] [--also=LABEL=PATH/lib/index.js] [--cycles=N]
//
// `--also` runs another build of wharf (e.g. a previous commit's, built elsewhere) as one more
// server of the same run, so a change is measured before and after under the same load.
//
// The `upload:` cases are wharf's alone: the same 1 KiB file served from `{base}_f/<id>/`, once as
// the app's own upload (`files.site.upload`) and once as an end user's (an anonymous POST), since
// uploads are answered by who uploaded them (docs/protocol.md §4).
//
// Every server runs in a child process of its own (pinned to CPU 0 with taskset when there are two
// or more CPUs); the load generator is wrk when installed (pinned to CPU 1), else autocannon, also in
// a separate process. Each cycle runs every case against every server once; the table shows the
// median over cycles and wharf's ratio to each peer.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, lstatSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { nginxAvailable, startNginxStatic } from './nginx-static.js';
import { startWave, waveAvailable, WAVE_PUBLIC_PREFIX, WAVE_SKIPPED } from './wave.js';

const alsoArg = process.argv.find((a) => a.startsWith('--also='))?.slice('--also='.length);
const also = alsoArg === undefined ? undefined : { label: alsoArg.slice(0, alsoArg.indexOf('=')), path: resolve(alsoArg.slice(alsoArg.indexOf('=') + 1)) };
const pickServers = process.argv.find((a) => a.startsWith('--servers='))?.slice('--servers='.length).split(',');
/** One of the peers below, or the label of the build given with `--also` (which runs where wharf does). */
type ServerKind = string;
const SERVERS: ServerKind[] = ['wharf', ...(also ? [also.label] : []), ...(nginxAvailable() ? ['nginx'] : []), ...(waveAvailable() ? ['wave'] : []),
  'serve-static', 'sirv', 'fastify', 'bare', 'memory']
  .filter((k) => pickServers === undefined || pickServers.includes(k));
/** Servers not written in Node: started as they are, not through `--serve`. */
const NATIVE = new Set<ServerKind>(['nginx', 'wave']);
/** The floors: what node:http allows, not peers. */
const FLOORS = new Set<ServerKind>(['bare', 'memory']);
/** Where a server serves the bench's directory. */
const prefixOf = (kind: ServerKind): string => (kind === 'wave' ? WAVE_PUBLIC_PREFIX.slice(0, -1) : '');
/** Every build of wharf in this run: the upload cases are theirs alone. */
const WHARFS = SERVERS.filter((s) => s === 'wharf' || s === also?.label);
/** The bare floor's constant validator: it answers any If-None-Match with 304. */
const FLOOR_ETAG = '"floor"';

// ---------------------------------------------------------------------------------------------
// Server mode: `--serve <kind> <dir>` prints `PORT <n>` (wharf first prints `UPLOADS <json>`, the
// paths of its two uploads of 1k.bin) and serves until killed.

/** Where wharf serves its two uploads of 1k.bin, for the `upload:` cases. */
interface UploadPaths {
  app: string;
  user: string;
}

async function serve(kind: ServerKind, dir: string, wharfAt?: string): Promise<number> {
  if (kind === 'wharf' || wharfAt !== undefined) {
    const { createFileServer } = (await import(wharfAt === undefined ? '../lib/index.js' : pathToFileURL(wharfAt).href)) as typeof import('../lib/index.js');
    const files = createFileServer({ dataDir: join(dir, `.wharf-data-${kind}`), publicDirs: [`/@${dir}`], anonymousUploads: true, warn: () => {} });
    const { port } = await files.listen({ port: 0 });
    const app = (await files.site.upload([join(dir, '1k.bin')]))[0]!;
    const user = await anonymousUpload(port, '1k.bin', readFileSync(join(dir, '1k.bin')));
    console.log(`UPLOADS ${JSON.stringify({ app, user } satisfies UploadPaths)}`);
    return port;
  }
  if (kind === 'fastify') {
    const { default: fastify } = await import('fastify');
    const { default: fastifyStatic } = await import('@fastify/static');
    const app = fastify({ logger: false });
    await app.register(fastifyStatic, { root: dir });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address();
    return typeof addr === 'object' && addr ? addr.port : 0;
  }
  let handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
  if (kind === 'serve-static') {
    const { default: serveStatic } = await import('serve-static');
    const mw = serveStatic(dir);
    handler = (req, res) => mw(req, res, () => { res.statusCode = 404; res.end(); });
  } else if (kind === 'sirv') {
    const { default: sirv } = await import('sirv');
    const mw = sirv(dir, { etag: true });
    handler = (req, res) => mw(req, res, () => { res.statusCode = 404; res.end(); });
  } else if (kind === 'memory') {
    handler = memoryHandler(dir);
  } else {
    // The floor: no checks at all (never do this outside a benchmark). A conditional request gets
    // a constant 304 carrying the validators RFC 9110 §15.4.5 asks for, with no file system call:
    // what any 304 costs in Node's HTTP layer alone; with `?lstat`, after one lstat of the file,
    // the least a server that revalidates on every request must do.
    const lastModified = new Date().toUTCString();
    handler = (req, res) => {
      if (req.headers['if-none-match'] !== undefined) {
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        if (q >= 0 && lstatSync(join(dir, url.slice(0, q)), { throwIfNoEntry: false }) === undefined) {
          res.statusCode = 404;
          res.end();
          return;
        }
        res.writeHead(304, ['ETag', FLOOR_ETAG, 'Last-Modified', lastModified, 'Cache-Control', 'public, max-age=0, must-revalidate']);
        res.end();
        return;
      }
      const s = createReadStream(join(dir, req.url ?? '/'));
      s.once('error', () => { res.statusCode = 404; res.end(); });
      s.once('open', () => s.pipe(res));
    };
  }
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as import('node:net').AddressInfo).port;
}

/**
 * The floor of any answer: node:http writing bytes it holds, read once at start (1k.bin, 1m.bin
 * and 100m.bin), no file system call, no check; one Range of the form `bytes=a-b` honoured.
 */
function memoryHandler(dir: string): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void {
  const files = new Map(['/1k.bin', '/1m.bin', '/100m.bin'].map((p) => [p, readFileSync(join(dir, p))]));
  return (req, res) => {
    const data = files.get(req.url ?? '');
    if (data === undefined) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (range === null) {
      res.writeHead(200, ['Content-Type', 'application/octet-stream', 'Content-Length', String(data.length)]);
      res.end(data);
      return;
    }
    const start = Number(range[1]);
    const end = Math.min(Number(range[2]), data.length - 1);
    res.writeHead(206, ['Content-Type', 'application/octet-stream', 'Content-Length', String(end - start + 1), 'Content-Range', `bytes ${start}-${end}/${data.length}`]);
    res.end(data.subarray(start, end + 1));
  };
}

/** An end user's upload: a multipart POST with no credentials; resolves with its path. */
function anonymousUpload(port: number, name: string, data: Buffer): Promise<string> {
  const boundary = 'benchboundary';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    data,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/_f/', method: 'POST', agent: false, headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': body.length } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve((JSON.parse(text) as { files: string[] }).files[0]!) : reject(new Error(`upload: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// Driver

interface Case {
  name: string;
  /** `{app}` and `{user}` stand for wharf's upload paths. */
  path: string;
  connections: number;
  /** 'req' reports requests/s, 'mib' MiB/s. */
  unit: 'req' | 'mib';
  status: number;
  headers: (etag: string) => Record<string, string>;
  servers: readonly ServerKind[];
}

const without = (...kinds: ServerKind[]): ServerKind[] => SERVERS.filter((s) => !kinds.includes(s));

const CASES: Case[] = [
  { name: '1 KiB file', path: '/1k.bin', connections: 64, unit: 'req', status: 200, headers: () => ({}), servers: SERVERS },
  { name: '1 MiB file', path: '/1m.bin', connections: 64, unit: 'mib', status: 200, headers: () => ({}), servers: SERVERS },
  { name: '100 MiB file', path: '/100m.bin', connections: 4, unit: 'mib', status: 200, headers: () => ({}), servers: SERVERS },
  { name: 'Range (1 KiB of 1 MiB)', path: '/1m.bin', connections: 64, unit: 'req', status: 206, headers: () => ({ Range: 'bytes=4096-5119' }), servers: without('bare') },
  // A file too big for the memory cache: one read per request (lib/static/open-file.ts).
  { name: 'Range (1 KiB of 100 MiB)', path: '/100m.bin', connections: 64, unit: 'req', status: 206, headers: () => ({ Range: 'bytes=4096-5119' }), servers: without('bare') },
  // The same a directory down: wharf revalidates with one lstat per level (lib/static/directory-source.ts).
  { name: 'Range, one directory down', path: '/sub/1m.bin', connections: 64, unit: 'req', status: 206, headers: () => ({ Range: 'bytes=4096-5119' }), servers: without('bare', 'memory') },
  { name: '304 revalidation (1 KiB)', path: '/1k.bin', connections: 64, unit: 'req', status: 304, headers: (etag) => ({ 'If-None-Match': etag }), servers: without('memory') },
  // The floor of a 304 that revalidates (one lstat per request, no other work): bare only.
  { name: '304 floor + one lstat', path: '/1k.bin?lstat', connections: 64, unit: 'req', status: 304, headers: (etag) => ({ 'If-None-Match': etag }), servers: SERVERS.filter((s) => s === 'bare') },
  { name: "upload: 1 KiB, the app's", path: '{app}', connections: 64, unit: 'req', status: 200, headers: () => ({}), servers: WHARFS },
  { name: "upload: 1 KiB, an end user's", path: '{user}', connections: 64, unit: 'req', status: 200, headers: () => ({}), servers: WHARFS },
  { name: "upload: 304 (1 KiB, an end user's)", path: '{user}', connections: 64, unit: 'req', status: 304, headers: (etag) => ({ 'If-None-Match': etag }), servers: WHARFS },
];

/** The issues' targets: wharf / peer ≥ ratio (issue 21: every row at or above Wave's, and near nginx). */
const TARGETS: Record<string, Array<[ServerKind, number]>> = {
  '1 KiB file': [['wave', 1], ['nginx', 0.7], ['serve-static', 2], ['sirv', 1]],
  '1 MiB file': [['wave', 1], ['serve-static', 1.2], ['bare', 1]],
  '100 MiB file': [['wave', 1], ['bare', 0.95]],
  'Range (1 KiB of 1 MiB)': [['wave', 1], ['nginx', 0.5], ['sirv', 1]],
  'Range (1 KiB of 100 MiB)': [['wave', 1]],
  'Range, one directory down': [['wave', 1]],
  '304 revalidation (1 KiB)': [['sirv', 1], ['serve-static', 2]],
};

const self = fileURLToPath(import.meta.url);
const cpus = availableParallelism();
const pin = cpus >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const haveWrk = spawnSync('wrk', ['--version']).error === undefined;

/** A server of the run: where it listens, its process (for its CPU time), how to stop it. */
interface Started {
  port: number;
  pid: number;
  /** Stops it and resolves once its process exited. */
  stop(): Promise<void>;
  uploads?: UploadPaths;
}

async function startServer(kind: ServerKind, dir: string): Promise<Started> {
  if (kind === 'nginx') return startNginxStatic(dir, pin ? 0 : undefined);
  if (kind === 'wave') {
    const wave = await startWave({ dataDir: join(dir, '.wave-data'), publicDir: dir, ...(pin ? { cpu: 0 } : {}) });
    return { port: wave.port, pid: wave.pid, stop: wave.stop };
  }
  const args = [self, '--serve', kind, dir, ...(kind === also?.label ? [also.path] : [])];
  const child = pin ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
    await gone;
  };
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      const u = /UPLOADS (\{.*\})/.exec(out);
      if (m) resolve({ port: Number(m[1]), pid: child.pid!, stop, ...(u ? { uploads: JSON.parse(u[1]!) as UploadPaths } : {}) });
    });
    child.once('exit', (code) => reject(new Error(`${kind} server exited ${code}`)));
  });
}

/** One request: status, ETag and body length, to check a server answers a case as it should. */
function probe(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; etag: string; length: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let length = 0;
      res.on('data', (c: Buffer) => { length += c.length; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, etag: String(res.headers.etag ?? ''), length }));
    });
    req.on('error', reject);
    req.end();
  });
}

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

interface Load {
  reqPerSec: number;
  bytesPerSec: number;
  requests: number;
  bad: number;
}

/** CPU time (user + system, every thread) a process has used so far, in µs; undefined off Linux. */
function cpuMicros(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * (1e6 / CLOCK_TICKS);
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function runLoad(url: string, connections: number, seconds: number, headers: Record<string, string>): Load {
  if (haveWrk) {
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
    const r = pin ? spawnSync('taskset', ['-c', '1', 'wrk', ...args], { encoding: 'utf8' }) : spawnSync('wrk', args, { encoding: 'utf8' });
    const out = r.stdout ?? '';
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
    const tps = /Transfer\/sec:\s+([\d.]+)(\w+)/.exec(out);
    const bad = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
    const total = /(\d+) requests in/.exec(out);
    if (!rps || !tps || !total) throw new Error(`cannot parse wrk output:\n${out}\n${r.stderr}`);
    return { reqPerSec: Number(rps[1]), bytesPerSec: Number(tps[1]) * (UNITS[tps[2]!] ?? 1), requests: Number(total[1]), bad: bad ? Number(bad[1]) : 0 };
  }
  const cli = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));
  const args = [cli, '-c', String(connections), '-d', String(seconds), '--json', ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]), url];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const j = JSON.parse(r.stdout) as { requests: { average: number; total: number }; throughput: { average: number }; non2xx: number; errors: number };
  return { reqPerSec: j.requests.average, bytesPerSec: j.throughput.average, requests: j.requests.total, bad: j.non2xx + j.errors };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

async function makeFiles(dir: string): Promise<void> {
  await writeFile(join(dir, '1k.bin'), randomBytes(1024));
  await writeFile(join(dir, '1m.bin'), randomBytes(1024 * 1024));
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', '1m.bin'), randomBytes(1024 * 1024));
  const out = createWriteStream(join(dir, '100m.bin'));
  const chunk = randomBytes(1024 * 1024);
  for (let i = 0; i < 100; i++) if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** What a run knows of its servers and cases, shared by the steps of `main`. */
interface Run {
  cases: Case[];
  servers: Map<ServerKind, Started>;
  /** Each server's ETag of each path (`kind|path`), learnt by `check`. */
  etags: Map<string, string>;
  /** `case|kind` left out, and what its cell says instead of a figure. */
  skip: Map<string, string>;
  /** `case|kind` → one figure per cycle, and the server's CPU µs per request. */
  results: Map<string, number[]>;
  cpuPerReq: Map<string, number[]>;
}

const pathOf = (run: Run, c: Case, kind: ServerKind): string =>
  prefixOf(kind) + c.path.replace(/\{(app|user)\}/, (_, k: 'app' | 'user') => run.servers.get(kind)?.uploads?.[k] ?? '/no-upload');
const etagOf = (run: Run, c: Case, kind: ServerKind): string => run.etags.get(`${kind}|${pathOf(run, c, kind)}`) ?? '';
const urlOf = (run: Run, c: Case, kind: ServerKind): string => `http://127.0.0.1:${run.servers.get(kind)!.port}${pathOf(run, c, kind)}`;

/** Checks every server answers every case as it should, and learns each one's ETag of each case's file. */
async function check(run: Run): Promise<void> {
  for (const c of run.cases) {
    for (const kind of c.servers) {
      const port = run.servers.get(kind)!.port;
      const key = `${kind}|${pathOf(run, c, kind)}`;
      if (!run.etags.has(key)) run.etags.set(key, kind === 'bare' ? FLOOR_ETAG : (await probe(port, pathOf(run, c, kind), {})).etag);
      const p = await probe(port, pathOf(run, c, kind), c.headers(etagOf(run, c, kind)));
      if (p.status === c.status) continue;
      // Wave (Go's http.FileServer) sends no ETag: there is no 304 by If-None-Match to measure.
      const why = c.status === 304 && etagOf(run, c, kind) === '' ? '(no ETag)' : `(answers ${p.status})`;
      console.log(`  ${kind} answers "${c.name}" with ${p.status}, not ${c.status}: left out ${why}`);
      run.skip.set(`${c.name}|${kind}`, why);
    }
  }
}

/** Every cycle runs every case against every server once, in an order rotated each cycle. */
function measure(run: Run, cycles: number, seconds: number): void {
  for (let cycle = 0; cycle < cycles; cycle++) {
    for (const c of run.cases) {
      // rotate the order each cycle so no server always runs right after the same neighbour
      const order = c.servers.map((_, i) => c.servers[(i + cycle) % c.servers.length]!);
      for (const kind of order) {
        const key = `${c.name}|${kind}`;
        if (run.skip.has(key)) continue;
        const pid = run.servers.get(kind)!.pid;
        const cpu0 = cpuMicros(pid);
        const load = runLoad(urlOf(run, c, kind), c.connections, seconds, c.headers(etagOf(run, c, kind)));
        const cpu1 = cpuMicros(pid);
        if (load.bad > 0) console.log(`  warning: ${kind} gave ${load.bad} unexpected responses on "${c.name}"`);
        const v = c.unit === 'req' ? load.reqPerSec : load.bytesPerSec / 1024 ** 2;
        run.results.set(key, [...(run.results.get(key) ?? []), v]);
        if (cpu0 !== undefined && cpu1 !== undefined && load.requests > 0) run.cpuPerReq.set(key, [...(run.cpuPerReq.get(key) ?? []), (cpu1 - cpu0) / load.requests]);
      }
    }
  }
}

const medianOf = (m: Map<string, number[]>, name: string, kind: ServerKind): number | undefined => {
  const xs = m.get(`${name}|${kind}`);
  return xs ? median(xs) : undefined;
};

/** The table of figures, wharf's ratio to each other server, and the targets met or missed. */
function report(run: Run): void {
  const fmt = (v: number | undefined, unit: string): string => (v === undefined ? 'n/a' : unit === 'req' ? `${Math.round(v).toLocaleString('en-US')} req/s` : `${v.toFixed(0)} MiB/s`);
  const rows: string[][] = [['case', ...SERVERS, ...SERVERS.filter((s) => s !== 'wharf').map((s) => `wharf/${s}`), 'targets']];
  for (const c of run.cases) {
    const value = (k: ServerKind): number | undefined => medianOf(run.results, c.name, k);
    const w = value('wharf');
    const ratios = SERVERS.filter((s) => s !== 'wharf').map((s) => {
      const v = value(s);
      return w !== undefined && v ? `${(w / v).toFixed(2)}x` : run.skip.get(`${c.name}|${s}`) ?? 'n/a';
    });
    const targets = (TARGETS[c.name] ?? []).filter(([peer]) => c.servers.includes(peer) && !run.skip.has(`${c.name}|${peer}`)).map(([peer, want]) => {
      const v = value(peer);
      const ok = w !== undefined && v !== undefined && w / v >= want;
      return `${ok ? 'met' : 'MISSED'} ≥${want}x ${peer}`;
    });
    rows.push([c.name, ...SERVERS.map((s) => run.skip.get(`${c.name}|${s}`) ?? fmt(value(s), c.unit)), ...ratios, targets.join(', ')]);
  }
  printTable(rows);
  // The 304 floors bound what any server can reach on that case: a constant 304 with no I/O, and
  // the same after one lstat (what revalidating on every request, as wharf must, costs at least).
  const floor = medianOf(run.results, '304 revalidation (1 KiB)', 'bare');
  const floorStat = medianOf(run.results, '304 floor + one lstat', 'bare');
  const ss = medianOf(run.results, '304 revalidation (1 KiB)', 'serve-static');
  const w304 = medianOf(run.results, '304 revalidation (1 KiB)', 'wharf');
  if (floor !== undefined && ss !== undefined && w304 !== undefined) {
    console.log(`\n304 floors (node:http answering a constant 304): no I/O ${(floor / ss).toFixed(2)}x serve-static, wharf at ${(100 * w304 / floor).toFixed(0)}% of it` +
      (floorStat === undefined ? '' : `; after one lstat ${(floorStat / ss).toFixed(2)}x serve-static, wharf at ${(100 * w304 / floorStat).toFixed(0)}% of it`));
  }
  if (run.cpuPerReq.size > 0) reportCpu(run);
}

/**
 * Throughput on a shared machine moves with everything else running; the CPU a server spends per
 * request moves much less, so it is the fairer comparison when the machine is busy.
 */
function reportCpu(run: Run): void {
  console.log('\nserver CPU per request (user + system, all threads; median; lower is better)');
  const cpuRows: string[][] = [['case', ...SERVERS, ...SERVERS.filter((s) => s !== 'wharf').map((s) => `${s}/wharf`)]];
  for (const c of run.cases) {
    const value = (k: ServerKind): number | undefined => medianOf(run.cpuPerReq, c.name, k);
    const w = value('wharf');
    cpuRows.push([
      c.name,
      ...SERVERS.map((s) => { const v = value(s); return v === undefined ? 'n/a' : `${v.toFixed(0)} µs`; }),
      ...SERVERS.filter((s) => s !== 'wharf').map((s) => { const v = value(s); return w !== undefined && v !== undefined ? `${(v / w).toFixed(2)}x` : 'n/a'; }),
    ]);
  }
  printTable(cpuRows);
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  // --only=<text>: run only the cases whose name contains it (e.g. --only=304), to iterate quickly.
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const cases = (only === undefined ? CASES : CASES.filter((c) => only.split(',').some((o) => c.name.includes(o)))).filter((c) => c.servers.length > 0);
  const cyclesArg = process.argv.find((a) => a.startsWith('--cycles='));
  const cycles = cyclesArg !== undefined ? Number(cyclesArg.slice('--cycles='.length)) : quick ? 1 : 3;
  const seconds = quick ? 1 : 3;
  const dir = await mkdtemp(join(tmpdir(), 'wharf-bench-static-'));
  const run: Run = { cases, servers: new Map(), etags: new Map(), skip: new Map(), results: new Map(), cpuPerReq: new Map() };
  try {
    await makeFiles(dir);
    for (const kind of SERVERS) run.servers.set(kind, await startServer(kind, dir));
    console.log(`bench/static: ${quick ? 'quick, ' : ''}${cycles} cycle(s) × ${seconds}s per run, load by ${haveWrk ? 'wrk -t1' : 'autocannon'}, ` +
      `${pin ? 'servers pinned to CPU 0, load generator to CPU 1' : 'no CPU pinning'}, ${cpus} CPUs, Node ${process.version}`);
    if (!waveAvailable()) console.log(WAVE_SKIPPED);
    if (!nginxAvailable()) console.log('nginx: skipped (/usr/sbin/nginx not found)');
    await check(run);
    // Warm-up: a short run of each case on each server, not counted.
    for (const c of cases) for (const kind of c.servers) runLoad(urlOf(run, c, kind), c.connections, 1, c.headers(etagOf(run, c, kind)));
    measure(run, cycles, seconds);
    report(run);
  } finally {
    for (const server of run.servers.values()) await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--serve') {
  serve(process.argv[3]!, process.argv[4]!, process.argv[5]).then(
    (port) => console.log(`PORT ${port}`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
