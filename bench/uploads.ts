// Uploads over loopback into a data dir: wharf against node:http + busboy + fs.createWriteStream,
// formidable and multer (Express), plus a server that parses nothing and drops the body (the
// ceiling) and `floor`: no parsing, only the syscalls wharf's layout needs (the most any server
// storing that layout could reach). Each server runs in a child process of its own (pinned to CPU 1 with `taskset` when
// there is one, the client pinned to CPU 0), one fresh process per scenario, so each peak RSS
// (VmHWM) belongs to one scenario. Bodies are generated on the fly, never held whole.
//
//   node dist/bench/uploads.js [--quick] [--only=wharf,busboy] [--scenarios=big,small,concurrent] [--data-dir=/somewhere]
//                              [--also=LABEL=PATH/lib/index.js]   (another build of wharf, e.g. a previous commit's)
//
// Scenarios: one big file (MiB/s), 1,000 files of 10 KiB in one request (files/s), 64 concurrent
// 1 MiB uploads (req/s). Figures are medians of the runs; "CPU" is the server's user+system time
// per run, a steadier yardstick than throughput on a busy machine. Small files are kept until the
// end: on ext4, creating an inode gets slower the more inodes were deleted in the last seconds
// (`recently_deleted`), so deleting between runs would measure the cleanup, not the servers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, createWriteStream, mkdirSync, openSync, readFileSync, renameSync, writevSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const dataRoot = args.find((a) => a.startsWith('--data-dir='))?.slice(11) ?? tmpdir();
const pick = args.find((a) => a.startsWith('--scenarios='))?.slice(12).split(',');
const alsoArg = args.find((a) => a.startsWith('--also='))?.slice(7);
const also = alsoArg === undefined ? undefined : { label: alsoArg.slice(0, alsoArg.indexOf('=')), path: resolve(alsoArg.slice(alsoArg.indexOf('=') + 1)) };

const KiB = 1024;
const MiB = 1024 * KiB;

// A kind not listed here is the label of the build given with `--also`.
type Kind = string;
const KINDS: Kind[] = ['wharf', 'busboy', 'formidable', 'multer', 'discard', 'floor'];
// Rows that are no peer: left out of the peak RSS summary.
const NOT_PEERS: Kind[] = ['discard', 'floor'];
type ScenarioKey = 'big' | 'small' | 'concurrent';

// ---- servers (child mode) --------------------------------------------------------------------

async function serve(kind: Kind, dataDir: string, scenario: ScenarioKey, wharfAt?: string): Promise<void> {
  const json = (res: ServerResponse, status: number, value: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  let port: number;
  if (kind === 'wharf' || wharfAt !== undefined) {
    const { createFileServer } = (await import(wharfAt === undefined ? '../lib/index.js' : pathToFileURL(wharfAt).href)) as typeof import('../lib/index.js');
    const files = createFileServer({ dataDir, anonymousUploads: true, warn: () => {} });
    port = (await files.listen({ port: 0 })).port;
  } else if (kind === 'busboy') {
    const { default: busboy } = await import('busboy');
    const srv = createServer((req, res) => {
      const bb = busboy({ headers: req.headers, limits: { files: 100_000 } });
      const names: string[] = [];
      let writing = 0;
      let parsed = false;
      const done = (): void => {
        if (parsed && writing === 0) json(res, 200, { files: names });
      };
      bb.on('file', (_name, stream, info) => {
        const id = randomUUID();
        names.push(`${id}/${info.filename}`);
        writing++;
        const out = createWriteStream(join(dataDir, id));
        stream.pipe(out);
        out.on('close', () => {
          writing--;
          done();
        });
      });
      bb.on('close', () => {
        parsed = true;
        done();
      });
      bb.on('error', (err: Error) => json(res, 400, { error: err.message }));
      req.pipe(bb);
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
  } else if (kind === 'formidable') {
    const { default: formidable } = await import('formidable');
    const srv = createServer((req, res) => {
      const form = formidable({ uploadDir: dataDir, maxFileSize: 2 ** 40, maxTotalFileSize: 2 ** 40, maxFiles: 100_000, allowEmptyFiles: true, minFileSize: 0 });
      form.parse(req).then(
        ([, files]) => json(res, 200, { files: (files['files'] ?? []).map((f) => f.newFilename) }),
        (err: Error) => json(res, 400, { error: err.message }),
      );
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
  } else if (kind === 'multer') {
    const { default: express } = await import('express');
    const { default: multer } = await import('multer');
    const upload = multer({
      storage: multer.diskStorage({ destination: dataDir, filename: (_req, _file, cb) => cb(null, randomUUID()) }),
      limits: { files: 100_000 },
    });
    const app = express();
    app.post('/_f/', upload.array('files', 100_000), (req, res) => {
      res.json({ files: ((req as unknown as { files: Array<{ filename: string }> }).files ?? []).map((f) => f.filename) });
    });
    const srv = app.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
  } else if (kind === 'floor') {
    // The least any server can do to store a scenario in wharf's layout (docs/protocol.md §1,
    // atomic). Small files: the body is read unparsed, its parts only counted by their delimiters, then each part
    // costs the layout's syscalls, on the event loop with no stream or promise: mkdir a temp
    // directory, open, one 10 KiB writev, close, rename the directory to f/<id>. No check, no
    // cleanup: what is left is the file system's price for two inodes and a rename per file. That
    // price swings with the disk's state (ext4 skips inodes deleted in the last seconds when it
    // allocates one, and anyone's deletes make that scan longer): read it against the same run only.
    const temp = join(dataDir, '.wharf-tmp');
    const files = join(dataDir, 'f');
    mkdirSync(temp, { recursive: true });
    mkdirSync(files, { recursive: true });
    const data = Buffer.alloc(10 * KiB, 1);
    let seq = 0;
    // One streamed file (the other scenarios): the raw body, never parsed, goes to a staged file as
    // it arrives, one writev per socket read on the event loop (wharf's own way for a file's first
    // MiB), then close and rename the staged directory to f/<id>.
    const streamed = (req: IncomingMessage, res: ServerResponse): void => {
      const dir = join(temp, String(++seq));
      mkdirSync(dir);
      const fd = openSync(join(dir, 'body.bin'), 'wx');
      req.on('data', (chunk: Buffer) => writevSync(fd, [chunk]));
      req.on('end', () => {
        closeSync(fd);
        const id = randomUUID();
        renameSync(dir, join(files, id));
        json(res, 200, { files: [`${id}/body.bin`] });
      });
    };
    const srv = createServer(scenario !== 'small' ? streamed : (req, res) => {
      const delimiter = Buffer.from(`\r\n--${/boundary=(\S+)/.exec(req.headers['content-type'] ?? '')?.[1] ?? ''}`);
      let carry = Buffer.alloc(2);
      carry.write('\r\n');
      let parts = -1; // the closing delimiter is no part
      req.on('data', (chunk: Buffer) => {
        const text = Buffer.concat([carry, chunk]);
        for (let at = text.indexOf(delimiter); at >= 0; at = text.indexOf(delimiter, at + delimiter.length)) parts++;
        carry = text.subarray(Math.max(0, text.length - delimiter.length + 1));
      });
      req.on('end', () => {
        const names: string[] = [];
        for (let i = 0; i < parts; i++) {
          const dir = join(temp, String(++seq));
          mkdirSync(dir);
          const fd = openSync(join(dir, `f${i}.bin`), 'wx');
          writevSync(fd, [data]);
          closeSync(fd);
          const id = randomUUID();
          renameSync(dir, join(files, id));
          names.push(`${id}/f${i}.bin`);
        }
        json(res, 200, { files: names });
      });
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
  } else {
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => json(res, 200, { files: [] }));
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
  }
  process.stdout.write(`PORT ${port}\n`);
}

// ---- client (parent mode) --------------------------------------------------------------------

const BOUNDARY = '----wharfbench' + randomBytes(8).toString('hex');
const head = (name: string): Buffer =>
  Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
const TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
const CRLF = Buffer.from('\r\n');

/** A body as a list of buffers to write in order (shared buffers repeat, so nothing big is held). */
interface Body {
  pieces: Buffer[];
  length: number;
}

function bodyOf(files: Array<{ name: string; data: Buffer[] }>): Body {
  const pieces: Buffer[] = [];
  files.forEach((f, i) => {
    if (i > 0) pieces.push(CRLF);
    pieces.push(head(f.name), ...f.data);
  });
  pieces.push(TAIL);
  return { pieces, length: pieces.reduce((n, p) => n + p.length, 0) };
}

function post(port: number, body: Body): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({
      // A connection per upload, as browsers uploading at once have: no keep-alive reuse racing a server's close.
      host: '127.0.0.1', port, path: '/_f/', method: 'POST', agent: false,
      headers: { 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`, 'Content-Length': body.length },
    }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`))));
    });
    req.on('error', reject);
    void (async () => {
      for (const piece of body.pieces) if (!req.write(piece)) await once(req, 'drain');
      req.end();
    })().catch(reject);
  });
}

interface Server {
  child: ChildProcess;
  port: number;
  dir: string;
}

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

async function startServer(kind: Kind, dir: string, scenario: ScenarioKey): Promise<Server> {
  const cmd = hasTaskset ? 'taskset' : process.execPath;
  const argv = [...(hasTaskset ? ['-c', '1', process.execPath] : []), SELF, '--serve', kind, dir, scenario, ...(kind === also?.label ? [also.path] : [])];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${kind} server exited ${code}`)));
  });
  return { child, port, dir };
}

function procStats(pid: number): { hwm: number; cpu: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * KiB;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
  return { hwm, cpu: ticks / 100 };
}

async function stopServer(s: Server): Promise<void> {
  const exited = once(s.child, 'exit');
  s.child.kill('SIGKILL');
  await exited;
}

async function clear(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name === 'f' || name === '.wharf-tmp') {
      for (const inner of await readdir(join(dir, name))) await rm(join(dir, name, inner), { recursive: true, force: true });
    } else await rm(join(dir, name), { recursive: true, force: true });
  }
}

interface Scenario {
  key: ScenarioKey;
  name: string;
  unit: string;
  /** Remove what each run stored right after it (big files); otherwise only at the very end. */
  clearEachRun: boolean;
  /** Unmeasured runs first: a server runs for days, so its JIT warm-up is not what is measured. */
  warmups: number;
  /** One measured run; resolves with how many units it moved. */
  run(port: number): Promise<number>;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  if (hasTaskset) spawnSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const runs = quick ? 1 : 7;
  const bigSize = quick ? 64 * MiB : 512 * MiB;
  const smallCount = quick ? 200 : 1000;
  const concurrent = quick ? 16 : 64;
  const block = randomBytes(MiB);
  const big = bodyOf([{ name: 'big.bin', data: Array.from({ length: bigSize / MiB }, () => block) }]);
  const small = bodyOf(Array.from({ length: smallCount }, (_, i) => ({ name: `f${i}.bin`, data: [block.subarray(i, i + 10 * KiB)] })));
  const one = bodyOf([{ name: 'one.bin', data: [block] }]);
  const scenarios: Scenario[] = [
    { key: 'big', name: `1 file of ${bigSize / MiB} MiB`, unit: 'MiB/s', clearEachRun: true, warmups: 1, run: async (port) => (await post(port, big), bigSize / MiB) },
    { key: 'small', name: `${smallCount} files of 10 KiB, 1 request`, unit: 'files/s', clearEachRun: false, warmups: quick ? 1 : 5, run: async (port) => (await post(port, small), smallCount) },
    {
      key: 'concurrent',
      name: `${concurrent} concurrent 1 MiB uploads`,
      unit: 'req/s',
      clearEachRun: false,
      warmups: quick ? 1 : 3,
      run: async (port) => (await Promise.all(Array.from({ length: concurrent }, () => post(port, one))), concurrent),
    },
  ];
  const kinds = KINDS.filter((k) => !only || only.includes(k));
  if (also) kinds.splice(1, 0, also.label);
  const root = await mkdtemp(join(dataRoot, 'wharf-bench-uploads-'));
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`uploads over loopback into ${dataRoot}, ${runs === 1 ? '1 run' : `median of ${runs} runs`} each, servers taking turns run by run; ` +
    `servers ${hasTaskset ? 'pinned to CPU 1, client to CPU 0' : 'not pinned (no taskset)'}; load average before: ${load}`);
  const rows: Array<{ scenario: string; unit: string; kind: Kind; rate: number; cpu: number; hwm: number }> = [];
  try {
    for (const [n, scenario] of scenarios.entries()) {
      if (pick && !pick.includes(scenario.key)) continue;
      const servers: Server[] = [];
      try {
        for (const kind of kinds) {
          const dir = join(root, `${n}-${kind}`);
          await mkdir(dir, { recursive: true });
          servers.push(await startServer(kind, dir, scenario.key));
        }
        const rates = servers.map(() => [] as number[]);
        for (let i = 0; i < scenario.warmups; i++) {
          for (const s of servers) {
            await scenario.run(s.port);
            if (scenario.clearEachRun) await clear(s.dir);
          }
        }
        const cpu0 = servers.map((s) => procStats(s.child.pid!).cpu);
        // Servers take turns, one run each, so a burst of load elsewhere on the machine hits them all alike.
        for (let i = 0; i < runs; i++) {
          for (let k = 0; k < servers.length; k++) {
            const at = (k + i) % servers.length;
            const s = servers[at]!;
            const t0 = performance.now();
            const units = await scenario.run(s.port).catch((err: Error) => {
              throw new Error(`${kinds[at]}: ${scenario.name}: ${err.message}`);
            });
            rates[at]!.push(units / ((performance.now() - t0) / 1000));
            if (scenario.clearEachRun) await clear(s.dir);
          }
        }
        servers.forEach((s, k) => {
          const { hwm, cpu } = procStats(s.child.pid!);
          rows.push({ scenario: scenario.name, unit: scenario.unit, kind: kinds[k]!, rate: median(rates[k]!), cpu: (cpu - cpu0[k]!) / runs, hwm });
        });
      } finally {
        for (const s of servers) await stopServer(s);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const pad = (s: string, n: number): string => s.padStart(n);
  console.log(`\n${'scenario'.padEnd(34)}${'server'.padEnd(12)}${pad('rate', 16)}${pad('vs busboy', 11)}${pad('CPU s/run', 11)}${pad('CPU vs busboy', 15)}${pad('peak RSS', 11)}`);
  for (const r of rows) {
    const ref = rows.find((x) => x.scenario === r.scenario && x.kind === 'busboy');
    const ratio = ref ? `${(r.rate / ref.rate).toFixed(2)}x` : '-';
    const cpu = ref ? `${(r.cpu / ref.cpu).toFixed(2)}x` : '-';
    console.log(`${r.scenario.padEnd(34)}${r.kind.padEnd(12)}${pad(`${r.rate.toFixed(0)} ${r.unit}`, 16)}${pad(ratio, 11)}${pad(r.cpu.toFixed(2), 11)}${pad(cpu, 15)}${pad(`${(r.hwm / MiB).toFixed(0)} MiB`, 11)}`);
  }
  const peak = (k: Kind): number => Math.max(...rows.filter((r) => r.kind === k).map((r) => r.hwm));
  console.log(`\npeak RSS over all scenarios: ${kinds.filter((k) => !NOT_PEERS.includes(k)).map((k) => `${k} ${(peak(k) / MiB).toFixed(0)} MiB`).join(', ')}`);
}

if (args[0] === '--serve') {
  await serve(args[1]!, args[2]!, args[3] as ScenarioKey, args[4]);
} else {
  await main();
}
