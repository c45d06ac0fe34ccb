// Shared helpers of the reliability tests (load, faults, security) and of `npm run stress`: a wharf
// server in a child process (test/helpers/load-server.ts) with its descriptors and RSS read from /proc,
// HTTP over real sockets (through node:http, or raw bytes), seeded upload contents that can be
// checked byte for byte without keeping them, and the load driver.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { Agent, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { FileServerOptions } from '../../lib/http/server.js';
import { drainOrClose } from './raw-http.js';

// ---------------------------------------------------------------------------------------------
// A server in a child process

/** Event-loop delay percentiles, in ms. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

/** `process.memoryUsage()` of the child after a full GC. */
export interface Memory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface Child {
  port: number;
  pid: number;
  url: string;
  /** Open descriptors of the server process (`/proc/<pid>/fd`). */
  fds(): Promise<number>;
  /** What those descriptors point at (`socket:[…]`, paths), for a failure message. */
  fdTargets(): Promise<string[]>;
  /** RSS and heap after a full GC in the child. */
  memory(): Promise<Memory>;
  /** The child's event-loop delay since the last call (ms). */
  loopDelay(): Promise<LoopDelay>;
  /** Closes the server (`close()`) and waits for the process to exit. */
  stop(): Promise<void>;
  /** Everything the child wrote to stderr. */
  stderr(): string;
  exited: boolean;
}

/**
 * Starts `createFileServer(options)` in a child process. `fdLimit` lowers its descriptor limit
 * (`ulimit -n`, soft and hard) before node starts, as an operator's would be.
 */
export async function startChild(options: FileServerOptions, opts: { fdLimit?: number; redisUrl?: string } = {}): Promise<Child> {
  const script = fileURLToPath(new URL('./load-server.js', import.meta.url));
  const args = ['--expose-gc', script, JSON.stringify(options)];
  const stdio: ['ignore', 'pipe', 'pipe', 'ipc'] = ['ignore', 'pipe', 'pipe', 'ipc'];
  const env = opts.redisUrl === undefined ? process.env : { ...process.env, WHARF_TEST_REDIS_URL: opts.redisUrl };
  const proc: ChildProcess = opts.fdLimit === undefined
    ? spawn(process.execPath, args, { stdio, env })
    : spawn('sh', ['-c', `ulimit -n ${opts.fdLimit} && exec "$0" "$@"`, process.execPath, ...args], { stdio, env });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => proc.once('exit', () => {
    exited = true;
    resolve();
  }));
  const first = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server child did not start in 30 s; stderr: ${stderr}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)) as { port: number; pid: number });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server child exited (${code}) before listening; stderr: ${stderr}`));
    });
  });
  let nextId = 0;
  const ask = <T>(cmd: string): Promise<T> => new Promise((resolve, reject) => {
    const id = ++nextId;
    const onMessage = (m: { id: number; value: T }): void => {
      if (m.id !== id) return;
      proc.off('message', onMessage);
      resolve(m.value);
    };
    proc.on('message', onMessage);
    proc.send({ id, cmd }, (err) => {
      if (err) reject(err);
    });
  });
  const child: Child = {
    port: first.port,
    pid: first.pid,
    url: `http://127.0.0.1:${first.port}`,
    fds: async () => (await readdir(`/proc/${first.pid}/fd`)).length,
    fdTargets: () => fdTargets(first.pid),
    memory: () => ask<Memory>('memory'),
    loopDelay: () => ask<LoopDelay>('loop'),
    async stop() {
      if (exited) return;
      const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      try {
        if (proc.connected) await Promise.race([ask('close'), exit]);
        await exit;
      } finally {
        clearTimeout(killer);
      }
    },
    stderr: () => stderr,
    get exited() {
      return exited;
    },
  };
  return child;
}

async function fdTargets(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    try {
      out.push(`${fd} -> ${await readlink(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/**
 * The child's descriptor count once it holds still (two reads 100 ms apart agree): connections a
 * client just closed are still being closed by the server for a moment.
 */
export async function settledFds(child: Child): Promise<number> {
  let count = await child.fds();
  for (let prev = -1; prev !== count;) {
    prev = count;
    await sleep(100);
    count = await child.fds();
  }
  return count;
}

/** Resident set size of any process, from /proc. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

export { eventually } from './eventually.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Checkable contents: byte i of a file with offset o is PATTERN[(o + i) % PATTERN.length]

export const PATTERN = (() => {
  let a = 0x9e3779b9;
  const b = Buffer.allocUnsafe(1 << 20);
  for (let i = 0; i < b.length; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    b.writeUInt32LE((t ^ (t >>> 14)) >>> 0, i);
  }
  return b;
})();

/** Bytes `start`..`end-1` of the file at `offset`. */
export function patternBytes(offset: number, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  let p = (offset + start) % PATTERN.length;
  for (let i = 0; i < out.length;) {
    const n = Math.min(out.length - i, PATTERN.length - p);
    PATTERN.copy(out, i, p, p + n);
    i += n;
    p = 0;
  }
  return out;
}

/** Does `chunk` equal bytes `pos`.. of the file at `offset`? */
export function matchesPattern(chunk: Buffer, offset: number, pos: number): boolean {
  let p = (offset + pos) % PATTERN.length;
  for (let i = 0; i < chunk.length;) {
    const n = Math.min(chunk.length - i, PATTERN.length - p);
    if (PATTERN.compare(chunk, i, i + n, p, p + n) !== 0) return false;
    i += n;
    p = 0;
  }
  return true;
}

/** The file at `offset` of `size` bytes, in slices of PATTERN (nothing allocated). */
export function* patternChunks(offset: number, size: number, chunk = 64 * 1024): Generator<Buffer> {
  let p = offset % PATTERN.length;
  for (let left = size; left > 0;) {
    const n = Math.min(left, chunk, PATTERN.length - p);
    yield PATTERN.subarray(p, p + n);
    left -= n;
    p = (p + n) % PATTERN.length;
  }
}

// ---------------------------------------------------------------------------------------------
// multipart/form-data bodies

export interface FormFile {
  name?: string;
  filename: string;
  type?: string;
  /** The file's bytes, or a pattern file. */
  data?: Buffer;
  size?: number;
  offset?: number;
}

/** A streamed multipart body with its exact length (so it goes out with Content-Length). */
export function formBody(files: FormFile[], boundary = `----wharfload${Math.random().toString(16).slice(2)}`): { contentType: string; length: number; chunks: () => Generator<Buffer> } {
  const heads = files.map((f) =>
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${f.name ?? 'files'}"; filename="${f.filename}"\r\nContent-Type: ${f.type ?? 'application/octet-stream'}\r\n\r\n`, 'utf8'));
  const close = Buffer.from(`--${boundary}--\r\n`);
  const crlf = Buffer.from('\r\n');
  const sizeOf = (f: FormFile): number => f.data?.length ?? f.size ?? 0;
  const length = heads.reduce((s, h, i) => s + h.length + sizeOf(files[i]!) + 2, 0) + close.length;
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    length,
    *chunks() {
      for (let i = 0; i < files.length; i++) {
        const f = files[i]!;
        yield heads[i]!;
        if (f.data) yield f.data;
        else yield* patternChunks(f.offset ?? 0, f.size ?? 0);
        yield crlf;
      }
      yield close;
    },
  };
}

export function formBuffer(files: FormFile[], boundary?: string): { contentType: string; body: Buffer } {
  const f = formBody(files, boundary);
  return { contentType: f.contentType, body: Buffer.concat([...f.chunks()]) };
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The JSON error code of an error answer. */
  code: string | undefined;
}

export interface RequestOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  /** A Buffer, or chunks written with backpressure. */
  body?: Buffer | Iterable<Buffer>;
  agent?: Agent | false;
  /** Called on every chunk of the response body instead of collecting it (the answer's body is then empty). */
  onData?: (chunk: Buffer) => void;
  timeoutMs?: number;
}

function codeOf(headers: IncomingHttpHeaders, body: Buffer): string | undefined {
  if (!String(headers['content-type'] ?? '').startsWith('application/json')) return undefined;
  try {
    return (JSON.parse(body.toString('utf8')) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

/**
 * One request; resolves when the whole answer has arrived. An answer that comes while the body is
 * still being sent (a refusal) is waited for, and the failed rest of the upload is then ignored.
 */
export function send(url: string, path: string, o: RequestOptions = {}): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: o.method ?? 'GET', headers: o.headers ?? {}, agent: o.agent ?? false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      // An error answer is collected whatever `onData` says, so it can be shown.
      const onData = (res.statusCode ?? 0) < 300 ? o.onData : undefined;
      res.on('data', (c: Buffer) => (onData ? onData(c) : chunks.push(c)));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`answer cut short (${res.statusCode} ${path})`)));
      res.on('end', () => {
        if (!res.complete) return reject(new Error(`answer cut short (${res.statusCode} ${path})`));
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, code: codeOf(res.headers, body) });
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (o.timeoutMs) {
      req.setTimeout(o.timeoutMs, () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms: ${o.method ?? 'GET'} ${path}`)));
    }
    const body = o.body;
    if (body === undefined || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    void (async () => {
      try {
        for (const chunk of body) {
          if (answered || req.destroyed) return;
          if (!req.write(chunk)) await drainOrClose(req);
        }
        req.end();
      } catch {
        // the server refused and closed; its answer (or the error) settles the promise
      }
    })();
  });
}

// ---------------------------------------------------------------------------------------------
// The load driver

export interface LoadOptions {
  url: string;
  seconds: number;
  clients: number;
  /** `Authorization` header for uploads, deletes and frames. */
  auth: string;
  /** Files of a public mapping, by URL path, with their pattern offset. */
  staticFiles: Array<{ path: string; offset: number; size: number }>;
  /** Image streams viewers open (a publisher keeps each alive). */
  streams: string[];
  minUpload: number;
  maxUpload: number;
  /** Uploads kept at most; beyond it the oldest unread ones are deleted. */
  poolMax: number;
  /** Called with every failure as it happens (the report keeps the first ones). */
  onFailure?: (what: string) => void;
  /** Uploads of an earlier run to read and delete too (the report's `uploads` continues it). */
  uploads?: Upload[];
}

export interface OpStats {
  count: number;
  p50: number;
  p99: number;
  max: number;
  bytes: number;
}

export interface Upload {
  id: string;
  url: string;
  filename: string;
  size: number;
  offset: number;
  readers: number;
}

export interface LoadReport {
  seconds: number;
  requests: number;
  failed: number;
  failures: string[];
  rps: number;
  p50: number;
  p99: number;
  ops: Record<string, OpStats>;
  /** Uploads still stored when the run ended: exactly what the data directory must hold. */
  uploads: Upload[];
  uploadedBytes: number;
  downloadedBytes: number;
  concurrentMax: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A size between `min` and `max`, uniform in log scale: many small uploads, some large. */
function logUniform(min: number, max: number): number {
  return Math.round(Math.exp(Math.log(min) + Math.random() * (Math.log(max) - Math.log(min))));
}

/**
 * `clients` concurrent clients, each on its own keep-alive connection, each in a loop of: upload a
 * file (multipart, minUpload..maxUpload), download an upload or a mapped file whole (checked byte
 * for byte), fetch a random range of one (checked), watch an image stream for a while, or delete
 * an old upload (and check it is gone). A publisher posts frames to every stream meanwhile. Every
 * answer is checked; anything unexpected is a failure.
 */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const latencies = new Map<string, number[]>();
  const bytesOf = new Map<string, number>();
  const failures: string[] = [];
  let failed = 0;
  let uploadedBytes = 0;
  let downloadedBytes = 0;
  let inflight = 0;
  let concurrentMax = 0;
  const pool: Upload[] = [...(o.uploads ?? [])];
  const deadline = Date.now() + o.seconds * 1000;
  let seq = 0;

  const fail = (what: string): void => {
    failed++;
    if (failures.length < 20) failures.push(what);
    o.onFailure?.(what);
  };
  const record = (op: string, ms: number, bytes = 0): void => {
    let l = latencies.get(op);
    if (!l) latencies.set(op, (l = []));
    l.push(ms);
    bytesOf.set(op, (bytesOf.get(op) ?? 0) + bytes);
  };
  const timed = async (op: string, fn: () => Promise<number | void>): Promise<void> => {
    inflight++;
    concurrentMax = Math.max(concurrentMax, inflight);
    const t = performance.now();
    try {
      const bytes = await fn();
      record(op, performance.now() - t, bytes ?? 0);
    } catch (err) {
      fail(`${op}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      inflight--;
    }
  };
  const expect = (cond: boolean, what: string): void => {
    if (!cond) throw new Error(what);
  };

  const pickUpload = (): Upload | undefined => {
    if (pool.length === 0) return undefined;
    const u = pool[Math.floor(Math.random() * pool.length)]!;
    u.readers++;
    return u;
  };
  const release = (u: Upload): void => {
    u.readers--;
  };

  /** GETs `path`, checking every byte against the pattern file at `offset` from `start`. */
  const fetchChecked = async (agent: Agent, path: string, offset: number, start: number, end: number, range: boolean): Promise<number> => {
    let pos = start;
    let bad = false;
    const a = await send(o.url, path, {
      agent,
      headers: range ? { Range: `bytes=${start}-${end - 1}` } : {},
      onData: (chunk) => {
        if (!bad && !matchesPattern(chunk, offset, pos)) bad = true;
        pos += chunk.length;
      },
    });
    expect(a.status === (range ? 206 : 200), `GET ${path}${range ? ` bytes=${start}-${end - 1}` : ''}: status ${a.status} ${a.body.toString('utf8').slice(0, 120)}`);
    expect(!bad, `GET ${path}: bytes differ from what was uploaded`);
    expect(pos === end, `GET ${path}: ${pos - start} bytes, expected ${end - start}`);
    if (range) expect(a.headers['content-range'] === `bytes ${start}-${end - 1}/${pathSize(path)}`, `GET ${path}: Content-Range ${a.headers['content-range']}`);
    downloadedBytes += end - start;
    return end - start;
  };
  const sizes = new Map<string, number>();
  const pathSize = (path: string): number => sizes.get(path) ?? -1;
  for (const f of o.staticFiles) sizes.set(f.path, f.size);
  for (const u of pool) sizes.set(u.url, u.size);

  const ops = {
    async upload(agent: Agent): Promise<void> {
      await timed('upload', async () => {
        const size = logUniform(o.minUpload, o.maxUpload);
        const offset = Math.floor(Math.random() * PATTERN.length);
        const filename = `load-${++seq}.bin`;
        const form = formBody([{ filename, size, offset }]);
        const a = await send(o.url, '/_f/', {
          method: 'POST',
          agent,
          headers: { 'Content-Type': form.contentType, 'Content-Length': form.length, Authorization: o.auth },
          body: form.chunks(),
        });
        expect(a.status === 200, `POST /_f/ (${size} bytes): status ${a.status} ${a.body.toString('utf8').slice(0, 160)}`);
        const files = (JSON.parse(a.body.toString('utf8')) as { files: string[] }).files;
        expect(files.length === 1 && files[0]!.endsWith(`/${filename}`), `POST /_f/: answer ${a.body.toString('utf8')}`);
        const url = files[0]!;
        const id = url.split('/')[2]!;
        pool.push({ id, url, filename, size, offset, readers: 0 });
        sizes.set(url, size);
        uploadedBytes += size;
        return size;
      });
    },
    async download(agent: Agent): Promise<void> {
      if (Math.random() < 0.4 || pool.length === 0) {
        const f = o.staticFiles[Math.floor(Math.random() * o.staticFiles.length)]!;
        await timed('download-static', () => fetchChecked(agent, f.path, f.offset, 0, f.size, false));
        return;
      }
      const u = pickUpload()!;
      try {
        await timed('download', () => fetchChecked(agent, u.url, u.offset, 0, u.size, false));
      } finally {
        release(u);
      }
    },
    async range(agent: Agent): Promise<void> {
      const u = Math.random() < 0.3 || pool.length === 0 ? undefined : pickUpload();
      const f = u ?? o.staticFiles[Math.floor(Math.random() * o.staticFiles.length)]!;
      const path = u ? u.url : (f as { path: string }).path;
      try {
        if (f.size === 0) return;
        const start = Math.floor(Math.random() * f.size);
        const end = Math.min(f.size, start + 1 + Math.floor(Math.random() * Math.min(f.size - start, 1 << 20)));
        await timed('range', () => fetchChecked(agent, path, f.offset, start, end, true));
      } finally {
        if (u) release(u);
      }
    },
    async view(agent: Agent): Promise<void> {
      const name = o.streams[Math.floor(Math.random() * o.streams.length)]!;
      const hold = 100 + Math.random() * 700;
      await timed('view', () => new Promise<number>((resolve, reject) => {
        const u = new URL(o.url);
        let got = 0;
        const req = httpRequest({ host: u.hostname, port: u.port, path: `/_m/${name}`, agent }, (res) => {
          if (res.statusCode !== 200 || !String(res.headers['content-type']).startsWith('multipart/x-mixed-replace; boundary=')) {
            res.resume();
            reject(new Error(`GET /_m/${name}: status ${res.statusCode} ${res.headers['content-type']}`));
            return;
          }
          const boundary = String(res.headers['content-type']).split('boundary=')[1]!;
          let head = Buffer.alloc(0);
          res.on('data', (c: Buffer) => {
            if (got === 0) {
              head = Buffer.concat([head, c]);
              if (head.length < boundary.length + 40) return;
              if (!head.toString('latin1').startsWith(`--${boundary}\r\nContent-Type: image/jpeg\r\n\r\n`)) {
                req.destroy();
                reject(new Error(`GET /_m/${name}: does not start with a frame: ${JSON.stringify(head.subarray(0, 80).toString('latin1'))}`));
                return;
              }
              // Time to the first frame is this request's latency; the viewer then watches a while.
              resolve(head.length);
              setTimeout(() => req.destroy(), hold);
            }
            got += c.length;
          });
          res.on('error', () => {});
        });
        req.on('error', (err) => {
          if (got === 0) reject(err);
        });
        req.end();
      }));
    },
    async remove(agent: Agent): Promise<void> {
      const i = pool.findIndex((u) => u.readers === 0);
      if (i < 0) return;
      const [u] = pool.splice(i, 1);
      await timed('delete', async () => {
        const a = await send(o.url, `/_f/${u!.id}`, { method: 'DELETE', agent, headers: { Authorization: o.auth } });
        expect(a.status === 200, `DELETE /_f/${u!.id}: status ${a.status}`);
        const gone = await send(o.url, u!.url, { agent });
        expect(gone.status === 404, `GET ${u!.url} after DELETE: status ${gone.status}`);
      });
    },
  };

  async function client(): Promise<void> {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      while (Date.now() < deadline) {
        const x = Math.random();
        if (pool.length > o.poolMax && x < 0.3) await ops.remove(agent);
        else if (x < 0.3) await ops.upload(agent);
        else if (x < 0.58) await ops.download(agent);
        else if (x < 0.85) await ops.range(agent);
        else await ops.view(agent);
      }
    } finally {
      agent.destroy();
    }
  }

  async function publisher(): Promise<void> {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let n = 0;
      while (Date.now() < deadline) {
        const name = o.streams[n++ % o.streams.length]!;
        const size = 4096 + Math.floor(Math.random() * 28 * 1024);
        const offset = Math.floor(Math.random() * PATTERN.length);
        await timed('publish', async () => {
          const a = await send(o.url, `/_m/${name}`, { method: 'POST', agent, headers: { 'Content-Type': 'image/jpeg', Authorization: o.auth }, body: patternBytes(offset, 0, size) });
          expect(a.status === 200, `POST /_m/${name}: status ${a.status}`);
          return size;
        });
        await sleep(20);
      }
    } finally {
      agent.destroy();
    }
  }

  const started = performance.now();
  await Promise.all([...Array.from({ length: o.clients }, () => client()), publisher()]);
  const seconds = (performance.now() - started) / 1000;

  const ops2: Record<string, OpStats> = {};
  const all: number[] = [];
  for (const [op, l] of latencies) {
    l.sort((a, b) => a - b);
    all.push(...l);
    ops2[op] = { count: l.length, p50: percentile(l, 50), p99: percentile(l, 99), max: l[l.length - 1] ?? 0, bytes: bytesOf.get(op) ?? 0 };
  }
  all.sort((a, b) => a - b);
  return {
    seconds,
    requests: all.length + failed,
    failed,
    failures,
    rps: all.length / seconds,
    p50: percentile(all, 50),
    p99: percentile(all, 99),
    ops: ops2,
    uploads: pool,
    uploadedBytes,
    downloadedBytes,
    concurrentMax,
  };
}

/** The load report as a few lines for people. */
export function formatReport(r: LoadReport): string {
  const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
  const lines = [
    `${r.requests} requests in ${r.seconds.toFixed(1)} s: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ${r.failed} failed; up to ${r.concurrentMax} in flight`,
    `uploaded ${mib(r.uploadedBytes)}, downloaded ${mib(r.downloadedBytes)}`,
  ];
  for (const [op, s] of Object.entries(r.ops).sort()) {
    lines.push(`  ${op.padEnd(16)} ${String(s.count).padStart(7)}  p50 ${s.p50.toFixed(1).padStart(8)} ms  p99 ${s.p99.toFixed(1).padStart(8)} ms  max ${s.max.toFixed(0).padStart(6)} ms  ${mib(s.bytes)}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Raw connections

