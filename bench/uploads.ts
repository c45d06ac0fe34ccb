// Uploads over loopback into a data dir: wharf against H2O Wave's own Go server (when
// ../shared/peers/wave/run exists), node:http + busboy + fs.createWriteStream, formidable and
// multer (Express), plus `discard` (node:http dropping the body: Node's own floor, in speed and in
// peak RSS) and `floor` (no parsing, only the syscalls wharf's atomic layout needs). The servers
// are in bench/upload-servers.ts and bench/wave.ts, where they store in bench/upload-disk.ts.
//
//   node dist/bench/uploads.js [--quick] [--runs=N] [--only=wharf,wave,busboy] [--scenarios=big,small,concurrent]
//                              [--alone] [--data-dir=/somewhere] [--also=LABEL=PATH/lib/index.js] [--json=FILE]
//
// Scenarios: one big file (MiB/s), 1,000 files of 10 KiB in one request (files/s), 64 concurrent
// 1 MiB uploads (req/s). Each server is a process of its own (pinned to CPU 1 with taskset when
// there is one, this client to CPU 0), fresh for each scenario, storing into a fresh file system of
// its own (upload-disk.ts) from which what each run stored is removed right after it: every server's
// files handled the same way. Servers take turns run by run, in a rotating order; median of the
// runs after unmeasured warm-up runs, in a session whose autogroup has the bench's nice when it
// leads its session (priority.ts). Beside each rate: the server's CPU seconds (user + system,
// /proc) per GiB of file bytes stored, its peak RSS (VmHWM) in the scenario, and the spread of the
// runs. `--alone`: afterwards each scenario again for each server alone — a fresh server process
// and file system, no other server alive — its runs back to back.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sessionPriority } from './priority.js';
import { createDisks, type Disk, type Disks } from './upload-disk.js';
import { serve, type ScenarioKey } from './upload-servers.js';
import { startWave, waveAvailable, WAVE_SKIPPED } from './wave.js';

const SELF = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const arg = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const only = arg('only')?.split(',');
const pick = arg('scenarios')?.split(',');
const alsoArg = arg('also');
const also = alsoArg === undefined ? undefined : { label: alsoArg.slice(0, alsoArg.indexOf('=')), path: resolve(alsoArg.slice(alsoArg.indexOf('=') + 1)) };

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** A kind not listed here is the label of the build given with `--also`. */
const KINDS = ['wharf', 'wave', 'busboy', 'formidable', 'multer', 'discard', 'floor'];

// ---- client ----------------------------------------------------------------------------------

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

/** Pieces smaller than this are copied together into buffers of about this size. */
const COALESCE = 256 * KiB;

function bodyOf(files: Array<{ name: string; data: Buffer[] }>): Body {
  const raw: Buffer[] = [];
  files.forEach((f, i) => {
    if (i > 0) raw.push(CRLF);
    raw.push(head(f.name), ...f.data);
  });
  raw.push(TAIL);
  // A write per small piece (2,001 of them for 1,000 small files) would make this client, not the
  // server, what a run measures: small pieces go out in buffers of COALESCE bytes.
  const pieces: Buffer[] = [];
  let run: Buffer[] = [];
  let size = 0;
  const flush = (): void => {
    if (run.length) pieces.push(run.length === 1 ? run[0]! : Buffer.concat(run, size));
    run = [];
    size = 0;
  };
  for (const piece of raw) {
    if (piece.length >= COALESCE) {
      flush();
      pieces.push(piece);
      continue;
    }
    run.push(piece);
    size += piece.length;
    if (size >= COALESCE) flush();
  }
  flush();
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

// ---- servers ---------------------------------------------------------------------------------

interface Running {
  kind: string;
  port: number;
  pid: number;
  disk: Disk;
  stop(): Promise<void>;
}

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

async function startNode(kind: string, disk: Disk, scenario: ScenarioKey): Promise<Running> {
  const cmd = hasTaskset ? 'taskset' : process.execPath;
  const argv = [...(hasTaskset ? ['-c', '1', process.execPath] : []), SELF, '--serve', kind, disk.dir, scenario, ...(kind === also?.label ? [also.path] : [])];
  const child: ChildProcess = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${kind} server exited ${code}`)));
  });
  return { kind, port, pid: child.pid!, disk, stop: async () => void (child.kill('SIGKILL'), await exited) };
}

/** Wave spools a big part to a temp file first (Go's multipart): its TMPDIR is on its own disk, as everyone's temp files are. */
async function startWaveOn(disk: Disk): Promise<Running> {
  const tmp = join(disk.dir, 'tmp');
  mkdirSync(tmp);
  const before = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  try {
    const wave = await startWave({ dataDir: disk.dir, cpu: 1 });
    return { kind: 'wave', port: wave.port, pid: wave.pid, disk, stop: wave.stop };
  } finally {
    if (before === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = before;
  }
}

function procStats(pid: number): { hwm: number; cpu: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * KiB;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
  return { hwm, cpu: ticks / 100 };
}

// What servers keep there that is not an upload: the file system's own, and their own state.
const KEEP = new Set(['lost+found', '.wharf-tmp', '.wharf-usage', '.wharf-expiry']);
const EMPTY = new Set(['f', 'tmp']);

/** Removes what a run stored: everything but the servers' own state (f/ and Wave's tmp/ emptied). */
async function clear(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (KEEP.has(name)) continue;
    if (!EMPTY.has(name)) await rm(join(dir, name), { recursive: true, force: true });
    else for (const inner of await readdir(join(dir, name))) await rm(join(dir, name, inner), { recursive: true, force: true });
  }
}

// ---- scenarios -------------------------------------------------------------------------------

interface Scenario {
  key: ScenarioKey;
  name: string;
  unit: string;
  /** Unmeasured runs first: a server runs for days, so its JIT warm-up is not what is measured. */
  warmups: number;
  /** File bytes one run stores, and the most its server may hold on disk at once (Wave spools a big file before it copies it). */
  bytes: number;
  disk: number;
  /** One run; resolves with how many units it moved. */
  run(port: number): Promise<number>;
}

function scenarios(): Scenario[] {
  const bigSize = quick ? 64 * MiB : 512 * MiB;
  const smallCount = quick ? 200 : 1000;
  const concurrent = quick ? 16 : 64;
  const block = randomBytes(MiB);
  const big = bodyOf([{ name: 'big.bin', data: Array.from({ length: bigSize / MiB }, () => block) }]);
  const small = bodyOf(Array.from({ length: smallCount }, (_, i) => ({ name: `f${i}.bin`, data: [block.subarray(i, i + 10 * KiB)] })));
  const one = bodyOf([{ name: 'one.bin', data: [block] }]);
  return [
    { key: 'big', name: `1 file of ${bigSize / MiB} MiB`, unit: 'MiB/s', warmups: quick ? 1 : 2, bytes: bigSize, disk: 2 * bigSize, run: async (port) => (await post(port, big), bigSize / MiB) },
    {
      key: 'small', name: `${smallCount} files of 10 KiB, 1 request`, unit: 'files/s', warmups: quick ? 1 : 10, bytes: smallCount * 10 * KiB, disk: smallCount * 16 * KiB,
      run: async (port) => (await post(port, small), smallCount),
    },
    {
      key: 'concurrent', name: `${concurrent} concurrent 1 MiB uploads`, unit: 'req/s', warmups: quick ? 1 : 10, bytes: concurrent * MiB, disk: 2 * concurrent * MiB,
      run: async (port) => (await Promise.all(Array.from({ length: concurrent }, () => post(port, one))), concurrent),
    },
  ];
}

interface Row {
  scenario: string;
  key: ScenarioKey;
  unit: string;
  kind: string;
  rate: number;
  /** (max − min) / median of the runs. */
  spread: number;
  /** Server CPU seconds per GiB of file bytes stored. */
  cpuPerGiB: number;
  hwm: number;
  /** Every measured run's rate, in the order run. */
  runs: number[];
  /** The server's CPU time over the wall time of a run (median): under 1 when it waited (for the client, the disk, or the CPU). */
  busy: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs `scenario` against `servers`, taking turns run by run; one row per server. */
async function measure(scenario: Scenario, servers: Running[], runs: number): Promise<Row[]> {
  const busy = servers.map(() => [] as number[]);
  const attempt = async (s: Running): Promise<number> => {
    const c0 = procStats(s.pid).cpu;
    const t0 = performance.now();
    const units = await scenario.run(s.port).catch((err: Error) => {
      throw new Error(`${s.kind}: ${scenario.name}: ${err.message}`);
    });
    const wall = (performance.now() - t0) / 1000;
    const rate = units / wall;
    busy[servers.indexOf(s)]!.push((procStats(s.pid).cpu - c0) / wall);
    await clear(s.disk.dir);
    s.disk.settle();
    return rate;
  };
  for (let i = 0; i < scenario.warmups; i++) for (const s of servers) await attempt(s);
  for (const b of busy) b.length = 0;
  const cpu0 = servers.map((s) => procStats(s.pid).cpu);
  const rates = servers.map(() => [] as number[]);
  // A rotating order, so that a burst of load elsewhere on the machine hits them all alike.
  for (let i = 0; i < runs; i++) {
    for (let k = 0; k < servers.length; k++) {
      const at = (k + i) % servers.length;
      rates[at]!.push(await attempt(servers[at]!));
    }
  }
  return servers.map((s, k) => {
    const { hwm, cpu } = procStats(s.pid);
    const r = rates[k]!;
    const mid = median(r);
    return { scenario: scenario.name, key: scenario.key, unit: scenario.unit, kind: s.kind, rate: mid, spread: (Math.max(...r) - Math.min(...r)) / mid, cpuPerGiB: (cpu - cpu0[k]!) / ((runs * scenario.bytes) / GiB), hwm, runs: r, busy: median(busy[k]!) };
  });
}

/** Starts `kinds` (each on a fresh disk), measures `scenario` against them, and stops them. */
async function round(disks: Disks, scenario: Scenario, kinds: string[], runs: number, tag: string): Promise<Row[]> {
  const servers: Running[] = [];
  try {
    for (const kind of kinds) {
      const disk = await disks.make(`${tag}-${scenario.key}-${kind}`, scenario.disk);
      try {
        servers.push(kind === 'wave' ? await startWaveOn(disk) : await startNode(kind, disk, scenario.key));
      } catch (err) {
        await disk.dispose();
        throw err;
      }
    }
    return await measure(scenario, servers, runs);
  } finally {
    for (const s of servers) {
      await s.stop();
      await s.disk.dispose();
    }
  }
}

// ---- report ----------------------------------------------------------------------------------

/**
 * `a` against `b` in one scenario: the median of their per-round ratios (run i of one against run i
 * of the other, minutes apart at most), which a drift of the machine's speed over the rounds
 * cancels out of; the ratio of the medians would not.
 */
function ratioOf(a: Row, b: Row): number {
  return median(a.runs.map((x, i) => x / b.runs[i]!));
}

function table(rows: Row[]): string {
  const ratio = (r: Row, kind: string): string => {
    const ref = rows.find((x) => x.key === r.key && x.kind === kind);
    return ref ? `${ratioOf(r, ref).toFixed(2)}x` : '-';
  };
  const cells = rows.map((r) => [r.scenario, r.kind, `${r.rate.toFixed(0)} ${r.unit}`, `${(r.spread * 100).toFixed(0)}%`, ratio(r, 'wave'), ratio(r, 'busboy'),
    r.cpuPerGiB.toFixed(2), `${(r.hwm / MiB).toFixed(0)} MiB`]);
  const headRow = ['scenario', 'server', 'rate (median)', 'spread', 'vs Wave', 'vs busboy', 'CPU s/GiB', 'peak RSS'];
  const w = headRow.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => (i < 2 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
  return [line(headRow), ...cells.map(line)].join('\n');
}

/** The ratios this bench is read by: wharf's rate against each other row, its RSS against Wave's and Node's floor. */
function summary(rows: Row[]): string {
  const out: string[] = [];
  for (const key of new Set(rows.map((r) => r.key))) {
    const of = (kind: string): Row | undefined => rows.find((r) => r.key === key && r.kind === kind);
    const wharf = of('wharf');
    if (!wharf) continue;
    const others = rows.filter((r) => r.key === key && r.kind !== 'wharf');
    out.push(`${wharf.scenario}: wharf ÷ ${others.map((r) => `${r.kind} ${ratioOf(wharf, r).toFixed(2)}x`).join(', ')}`);
    const wave = of('wave');
    const discard = of('discard');
    if (key === 'concurrent') {
      out.push(`  peak RSS: wharf ${(wharf.hwm / MiB).toFixed(0)} MiB` +
        (wave ? `, ${(wharf.hwm / wave.hwm).toFixed(2)}x Wave's ${(wave.hwm / MiB).toFixed(0)} MiB` : '') +
        (discard ? `; Node's floor (node:http, body dropped) ${(discard.hwm / MiB).toFixed(0)} MiB${wave ? ` = ${(discard.hwm / wave.hwm).toFixed(2)}x Wave's` : ''}` : ''));
    }
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  if (hasTaskset) spawnSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const priority = sessionPriority();
  const runs = Number(arg('runs') ?? (quick ? 1 : 7));
  const kinds = KINDS.filter((k) => (!only || only.includes(k)) && (k !== 'wave' || waveAvailable()));
  if (also) kinds.splice(1, 0, also.label);
  const disks = await createDisks(arg('data-dir'));
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`uploads over loopback into ${disks.note}; ${runs === 1 ? '1 run' : `median of ${runs} runs`} each, servers taking turns run by run; ` +
    `servers ${hasTaskset ? 'pinned to CPU 1, client to CPU 0' : 'not pinned (no taskset)'}; ${priority}; load average before: ${load}`);
  if (!waveAvailable() && (!only || only.includes('wave'))) console.log(WAVE_SKIPPED);
  const chosen = scenarios().filter((s) => !pick || pick.includes(s.key));
  const together: Row[] = [];
  const alone: Row[] = [];
  try {
    for (const scenario of chosen) together.push(...(await round(disks, scenario, kinds, runs, 'together')));
    if (args.includes('--alone')) {
      for (const scenario of chosen) for (const kind of kinds) alone.push(...(await round(disks, scenario, [kind], runs, 'alone')));
    }
  } finally {
    await disks.close();
  }
  const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`\n${table(together)}\n\n${summary(together)}`);
  if (alone.length) console.log(`\neach server alone (a fresh process and file system, no other server alive):\n${table(alone)}\n\n${summary(alone)}`);
  if (args.includes('--verbose')) for (const r of [...together, ...alone]) console.log(`${r.scenario}, ${r.kind}: ${r.runs.map((x) => x.toFixed(0)).join(' ')} ${r.unit}; CPU/wall ${r.busy.toFixed(2)}`);
  console.log(`\nload average after: ${loadAfter}`);
  const json = arg('json');
  if (json) writeFileSync(json, JSON.stringify({ load: [load, loadAfter], together, alone }, null, 1));
}

if (args[0] === '--serve') {
  await serve(args[1]!, args[2]!, args[3] as ScenarioKey, args[4]);
} else {
  await main();
}
