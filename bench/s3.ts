// Uploads and downloads through wharf into an S3 store — Ceph's radosgw on a throw-away one-OSD
// cluster (test/helpers/radosgw-cluster.ts), objects in RAM — against the floor: the AWS SDK's own
// `Upload` (@aws-sdk/lib-storage, its defaults: 5 MiB parts, 4 at once) and `GetObject` straight to
// radosgw, and against a peer, `proxy`: node:http + busboy into that `Upload`, `GetObject` piped to
// the answer (what multer-s3 does), all in the same run, taking turns. wharf runs `createFileServer({
// storage: s3Storage(…) })`. Each contender is a child process of its own pinned to CPU 1 with
// `taskset` when there is one (the load generator to CPU 0; Ceph's daemons are started before that
// pinning, so they float), fresh per scenario so that its peak RSS (VmHWM) belongs to that scenario.
// The floor generates its bytes itself: it has no HTTP side.
//
//   node dist/bench/s3.js [--quick] [--runs=N]
//
// Scenarios: one big file up then down (64 MiB and 512 MiB: peak RSS must not grow with the size),
// and 64 concurrent 1 MiB uploads. Times are medians of the runs; CPU is the contender's user+system
// time per GiB moved, over all runs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CEPH_INSTALL, radosgwAvailable, startRadosgw } from '../test/helpers/radosgw-cluster.js';

const SELF = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runsArg = Number(args.find((a) => a.startsWith('--runs='))?.slice(7));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const KEY = { id: 'bench', secret: 'bench-secret-s3' };
const AUTH = `Basic ${Buffer.from(`${KEY.id}:${KEY.secret}`).toString('base64')}`;
// Every file is this MiB, repeated: nothing big is ever held by the load generator or the floor.
const BLOCK = randomBytes(MiB);

/** What a child needs to reach the store. */
interface Store {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

function clientOf(s: Store): S3Client {
  return new S3Client({
    endpoint: s.endpoint,
    region: s.region,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

// ---- children ----------------------------------------------------------------------------------

async function serveWharf(store: Store, dataDir: string): Promise<void> {
  const { createFileServer, s3Storage } = await import('../lib/index.js');
  const files = createFileServer({
    dataDir,
    storage: s3Storage({ client: clientOf(store), bucket: store.bucket, prefix: 'wharf/' }),
    accessKeys: { [KEY.id]: KEY.secret },
    warn: (m) => process.stderr.write(`${m}\n`),
  });
  const { port } = await files.listen({ host: '127.0.0.1', port: 0 });
  process.send!({ port });
}

/**
 * The peer: what one writes by hand (multer-s3 does this): node:http, busboy streaming each file
 * into the SDK's `Upload`, and `GetObject` piped to the answer. No atomicity, no limits, no checks:
 * the HTTP side of the job, done the plain way. Same paths as wharf's (`/_f/<id>/<name>`).
 */
async function serveProxy(store: Store): Promise<void> {
  const { default: busboy } = await import('busboy');
  const s3 = clientOf(store);
  const Bucket = store.bucket;
  const keys = new Map<string, string>();
  const fail = (res: ServerResponse, err: unknown): void => {
    if (!res.headersSent) res.writeHead(500).end(String(err));
    else res.destroy();
  };
  const srv = createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? '/');
    if (req.method === 'POST') {
      const bb = busboy({ headers: req.headers });
      const stored: Array<Promise<string>> = [];
      bb.on('file', (_field, stream, info) => {
        const id = randomUUID();
        const key = `proxy/${id}/${info.filename}`;
        keys.set(id, key);
        stored.push(new Upload({ client: s3, params: { Bucket, Key: key, Body: stream } }).done().then(() => `/_f/${id}/${info.filename}`));
      });
      bb.on('close', () => void Promise.all(stored).then((files) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ files })), (err) => fail(res, err)));
      bb.on('error', (err) => fail(res, err));
      req.pipe(bb);
      return;
    }
    const key = `proxy/${path.slice('/_f/'.length)}`;
    if (req.method === 'DELETE') {
      const id = path.split('/')[2]!;
      s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: [{ Key: keys.get(id)! }] } })).then(() => res.writeHead(200).end(), (err) => fail(res, err));
      keys.delete(id);
      return;
    }
    s3.send(new GetObjectCommand({ Bucket, Key: key })).then((out) => {
      res.writeHead(200, { 'Content-Length': String(out.ContentLength), 'Content-Type': out.ContentType ?? 'application/octet-stream' });
      (out.Body as Readable).on('error', (err) => fail(res, err)).pipe(res);
    }, (err) => fail(res, err));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  process.send!({ port: (srv.address() as { port: number }).port });
}

/** A command of the parent to the floor child, and its answer. */
type FloorOp = { op: 'upload'; key: string; mib: number } | { op: 'download'; key: string } | { op: 'put'; keys: string[] } | { op: 'delete'; keys: string[] };

async function serveFloor(store: Store): Promise<void> {
  const s3 = clientOf(store);
  const Bucket = store.bucket;
  const run = async (m: FloorOp): Promise<number> => {
    if (m.op === 'upload') {
      await new Upload({ client: s3, params: { Bucket, Key: m.key, Body: Readable.from(blocks(m.mib)) } }).done();
      return m.mib * MiB;
    }
    if (m.op === 'download') {
      const out = await s3.send(new GetObjectCommand({ Bucket, Key: m.key }));
      let n = 0;
      for await (const c of out.Body as Readable) n += (c as Buffer).length;
      return n;
    }
    if (m.op === 'put') {
      await Promise.all(m.keys.map((Key) => s3.send(new PutObjectCommand({ Bucket, Key, Body: BLOCK, ContentLength: MiB }))));
      return m.keys.length * MiB;
    }
    await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: m.keys.map((Key) => ({ Key })), Quiet: true } }));
    return 0;
  };
  process.on('message', (m: FloorOp & { seq: number }) => {
    run(m).then((bytes) => process.send!({ seq: m.seq, bytes }), (err: Error) => process.send!({ seq: m.seq, error: err.message }));
  });
  process.send!({ ready: true });
}

function* blocks(mib: number): Generator<Buffer> {
  for (let i = 0; i < mib; i++) yield BLOCK;
}

// ---- the load generator (parent) ---------------------------------------------------------------

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

interface Child {
  proc: ChildProcess;
  /** The HTTP server's port (wharf, the proxy); 0 for the floor. */
  port: number;
  ask(op: FloorOp): Promise<number>;
}

/** The wharf child's data dir (S3 keeps its uploads: it stays empty), removed at the end. */
let dataDir = '';

type Kind = 'wharf' | 'proxy' | 'floor';

async function startChild(kind: Kind, store: Store): Promise<Child> {
  const cmd = hasTaskset ? 'taskset' : process.execPath;
  const argv = [...(hasTaskset ? ['-c', '1', process.execPath] : []), SELF, '--serve', kind, JSON.stringify(store), dataDir];
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const first = await new Promise<{ port?: number }>((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('exit', (code) => reject(new Error(`${kind} child exited (${code}) before it was ready`)));
  });
  let seq = 0;
  const waiting = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  proc.on('message', (m: { seq?: number; bytes?: number; error?: string }) => {
    const w = m.seq === undefined ? undefined : waiting.get(m.seq);
    if (!w) return;
    waiting.delete(m.seq!);
    if (m.error !== undefined) w.reject(new Error(`floor: ${m.error}`));
    else w.resolve(m.bytes ?? 0);
  });
  return {
    proc,
    port: first.port ?? 0,
    ask: (op) => new Promise((resolve, reject) => {
      waiting.set(++seq, { resolve, reject });
      proc.send({ ...op, seq });
    }),
  };
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = once(c.proc, 'exit');
  c.proc.kill('SIGKILL');
  await exited;
}

const BOUNDARY = '----wharf-bench-s3';

/** POSTs one file of `mib` MiB of BLOCK to an HTTP contender; resolves with its path. */
function httpUpload(port: number, name: string, mib: number): Promise<string> {
  const head = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/_f/', method: 'POST', agent: false,
      headers: { Authorization: AUTH, 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`, 'Content-Length': head.length + mib * MiB + tail.length },
    }, (res: IncomingMessage) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => (res.statusCode === 200 ? resolve((JSON.parse(text) as { files: string[] }).files[0]!) : reject(new Error(`upload: HTTP ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    void (async () => {
      for (const piece of [head, ...blocks(mib), tail]) if (!req.write(piece)) await once(req, 'drain');
      req.end();
    })().catch(reject);
  });
}

/** GETs `path` from an HTTP contender; resolves with the bytes (and their sha256 when `hash`). */
function httpDownload(port: number, path: string, hash = false): Promise<{ bytes: number; sha?: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const h = hash ? createHash('sha256') : undefined;
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        h?.update(c);
      });
      res.on('error', reject);
      res.on('end', () => (res.statusCode === 200 && res.complete ? resolve(h ? { bytes, sha: h.digest('hex') } : { bytes }) : reject(new Error(`download: HTTP ${res.statusCode}`))));
    }).on('error', reject).end();
  });
}

function httpDelete(port: number, path: string): Promise<void> {
  const id = path.split('/')[2];
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: `/_f/${id}`, method: 'DELETE', headers: { Authorization: AUTH }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`delete: HTTP ${res.statusCode}`))));
    }).on('error', reject).end();
  });
}

function procStats(pid: number): { hwm: number; cpu: number } {
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { hwm, cpu: (Number(fields[11]) + Number(fields[12])) / 100 };
}

/** Times `work` and the CPU it cost `child`. */
async function measured(child: Child, work: () => Promise<unknown>): Promise<{ s: number; cpu: number }> {
  const cpu0 = procStats(child.proc.pid!).cpu;
  const t0 = performance.now();
  await work();
  return { s: (performance.now() - t0) / 1000, cpu: procStats(child.proc.pid!).cpu - cpu0 };
}

interface Row {
  scenario: string;
  who: Kind;
  /** Median seconds of one run. */
  s: number;
  /** What one run moves, in bytes. */
  bytes: number;
  /** The contender's CPU seconds per GiB moved. */
  cpuPerGiB: number;
  hwm: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Accumulates runs of one operation of one contender. */
class Tally {
  times: number[] = [];
  cpu = 0;
  bytes = 0;
  add(m: { s: number; cpu: number }, bytes: number): void {
    this.times.push(m.s);
    this.cpu += m.cpu;
    this.bytes += bytes;
  }
  row(scenario: string, who: Kind, hwm: number): Row {
    return { scenario, who, s: median(this.times), bytes: this.bytes / this.times.length, cpuPerGiB: this.cpu / (this.bytes / GiB), hwm };
  }
}

/** One contender, as the scenarios drive it: a stored file is a handle (a path, or the floor's key). */
interface Side {
  kind: Kind;
  child: Child;
  upload(name: string, mib: number): Promise<string>;
  download(handle: string): Promise<number>;
  remove(handles: string[]): Promise<void>;
  /** `names.length` files of 1 MiB at once. */
  uploadMany(names: string[]): Promise<string[]>;
}

async function startSides(store: Store): Promise<Side[]> {
  const sides: Side[] = [];
  for (const kind of ['wharf', 'proxy'] as const) {
    const child = await startChild(kind, store);
    const upload = (name: string, mib: number): Promise<string> => httpUpload(child.port, name, mib);
    sides.push({
      kind, child, upload,
      download: async (path) => (await httpDownload(child.port, path)).bytes,
      remove: async (paths) => void (await Promise.all(paths.map((p) => httpDelete(child.port, p)))),
      uploadMany: (names) => Promise.all(names.map((n) => upload(n, 1))),
    });
  }
  const floor = await startChild('floor', store);
  let seq = 0;
  sides.push({
    kind: 'floor', child: floor,
    upload: async (name, mib) => {
      const key = `floor/${++seq}/${name}`;
      await floor.ask({ op: 'upload', key, mib });
      return key;
    },
    download: (key) => floor.ask({ op: 'download', key }),
    remove: async (keys) => void (await floor.ask({ op: 'delete', keys })),
    uploadMany: async (names) => {
      const keys = names.map((n) => `floor/${++seq}/${n}`);
      await floor.ask({ op: 'put', keys });
      return keys;
    },
  });
  return sides;
}

/** Each contender's steps of one run, in an order that turns run by run (a burst of load elsewhere hits them all alike). */
function turns<T>(items: T[], run: number): T[] {
  const k = ((run % items.length) + items.length) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** One big file up then down, the contenders taking turns; fresh processes. */
async function bigFile(store: Store, mib: number, runs: number): Promise<Row[]> {
  const sides = await startSides(store);
  try {
    // Warm-up, unmeasured (the JIT, the first connections), and a check of the bytes each serves.
    const want = createHash('sha256').update(Buffer.concat([...blocks(16)])).digest('hex');
    for (const side of sides) {
      const h = await side.upload('warm.bin', 16);
      const got = side.kind === 'floor' ? undefined : (await httpDownload(side.child.port, h, true)).sha;
      if (got !== undefined && got !== want) throw new Error(`${side.kind} served other bytes than were uploaded`);
      await side.remove([h]);
    }
    const up = sides.map(() => new Tally());
    const down = sides.map(() => new Tally());
    const bytes = mib * MiB;
    for (let i = 0; i < runs; i++) {
      const handles: string[] = [];
      for (const k of turns([0, 1, 2], i)) up[k]!.add(await measured(sides[k]!.child, async () => (handles[k] = await sides[k]!.upload('big.bin', mib))), bytes);
      for (const k of turns([0, 1, 2], i)) {
        down[k]!.add(await measured(sides[k]!.child, async () => {
          if ((await sides[k]!.download(handles[k]!)) !== bytes) throw new Error(`${sides[k]!.kind}: a short download`);
        }), bytes);
      }
      for (const [k, side] of sides.entries()) await side.remove([handles[k]!]);
    }
    return [
      ...sides.map((side, k) => up[k]!.row(`${mib} MiB upload`, side.kind, procStats(side.child.proc.pid!).hwm)),
      ...sides.map((side, k) => down[k]!.row(`${mib} MiB download`, side.kind, procStats(side.child.proc.pid!).hwm)),
    ];
  } finally {
    for (const side of sides) await stopChild(side.child);
  }
}

/** `n` concurrent 1 MiB uploads, the contenders taking turns (after one unmeasured run each); fresh processes. */
async function concurrent(store: Store, n: number, runs: number): Promise<Row[]> {
  const sides = await startSides(store);
  try {
    const tallies = sides.map(() => new Tally());
    const names = Array.from({ length: n }, (_, i) => `c-${i}.bin`);
    for (let i = -1; i < runs; i++) {
      for (const k of turns([0, 1, 2], i)) {
        let handles: string[] = [];
        const m = await measured(sides[k]!.child, async () => (handles = await sides[k]!.uploadMany(names)));
        if (i >= 0) tallies[k]!.add(m, n * MiB);
        await sides[k]!.remove(handles);
      }
    }
    return sides.map((side, k) => tallies[k]!.row(`${n} concurrent 1 MiB uploads`, side.kind, procStats(side.child.proc.pid!).hwm));
  } finally {
    for (const side of sides) await stopChild(side.child);
  }
}

function report(rows: Row[]): void {
  const pad = (s: string, n: number): string => s.padStart(n);
  console.log('');
  console.log(`${'scenario'.padEnd(30)}${'path'.padEnd(7)}${pad('median', 9)}${pad('MiB/s', 9)}${pad('time vs floor', 15)}${pad('CPU s/GiB', 11)}${pad('CPU vs floor', 14)}${pad('peak RSS', 10)}`);
  for (const r of rows) {
    const floor = rows.find((x) => x.scenario === r.scenario && x.who === 'floor')!;
    console.log(`${r.scenario.padEnd(30)}${r.who.padEnd(7)}${pad(`${r.s.toFixed(2)} s`, 9)}${pad((r.bytes / MiB / r.s).toFixed(0), 9)}` +
      `${pad(`${(r.s / floor.s).toFixed(2)}x`, 15)}${pad(r.cpuPerGiB.toFixed(2), 11)}${pad(`${(r.cpuPerGiB / floor.cpuPerGiB).toFixed(2)}x`, 14)}${pad(`${(r.hwm / MiB).toFixed(0)} MiB`, 10)}`);
  }
  console.log('');
  for (const who of ['wharf', 'proxy'] as const) {
    const peaks = rows.filter((r) => r.who === who && r.scenario.endsWith('upload')).map((r) => `${r.scenario.replace(' upload', '')} ${(r.hwm / MiB).toFixed(0)} MiB`);
    console.log(`${who}'s peak RSS by file size (a process per size, for its upload and download): ${peaks.join(', ')}`);
  }
}

async function main(): Promise<void> {
  if (!radosgwAvailable()) {
    console.log(`bench/s3: skipped, radosgw is not installed (${CEPH_INSTALL})`);
    return;
  }
  // Tails of deleted objects freed after 5 s: each run stores and deletes up to 1 GiB in the OSD's RAM.
  const cluster = await startRadosgw({ gcSeconds: 5 });
  dataDir = await mkdtemp(join(tmpdir(), 'wharf-bench-s3-'));
  try {
    // Pinned after the cluster started: Ceph's daemons would inherit CPU 0 alone.
    if (hasTaskset) spawnSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
    const s3 = cluster.client();
    const bucket = 'wharf-bench';
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const store: Store = { endpoint: cluster.endpoint, region: cluster.region, accessKeyId: cluster.accessKeyId, secretAccessKey: cluster.secretAccessKey, bucket };
    const runs = Number.isSafeInteger(runsArg) && runsArg > 0 ? runsArg : quick ? 1 : 5;
    const sizes = quick ? [16, 64] : [64, 512];
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`wharf (s3Storage with its defaults), proxy (busboy into the SDK's Upload) and the floor (the SDK's Upload: 5 MiB parts, ` +
      `4 at once; GetObject) into radosgw (memstore) over loopback; ${runs === 1 ? '1 run' : `median of ${runs} runs`}, taking turns; ` +
      `${hasTaskset ? 'contenders pinned to CPU 1, the load generator to CPU 0, Ceph unpinned' : 'nothing pinned (no taskset)'}; load average before: ${load}`);
    const rows: Row[] = [];
    for (const mib of sizes) rows.push(...await bigFile(store, mib, runs));
    rows.push(...await concurrent(store, quick ? 16 : 64, runs));
    report(rows);
  } finally {
    await cluster.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (args[0] === '--serve') {
  const store = JSON.parse(args[2]!) as Store;
  const kind = args[1] as Kind;
  await (kind === 'wharf' ? serveWharf(store, args[3]!) : kind === 'proxy' ? serveProxy(store) : serveFloor(store));
} else {
  await main();
}
