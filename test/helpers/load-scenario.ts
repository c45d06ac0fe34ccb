// The load scenario of test/load.test.ts (10 s) and `npm run stress` (60 s): a wharf server in a
// child process with a data directory and a public mapping, a warm-up, the baseline (descriptors,
// RSS after GC), the load, and everything checked after it.
//
// Memory. A fresh node process grows its RSS by some 70–80 MiB in its first seconds of heavy load
// and keeps it: V8 keeps the heap pages it grew (heapTotal 10 → 40 MiB while heapUsed stays near
// 6 MiB) and glibc keeps freed arenas. That is not a leak and it does not come back, so the RSS
// baseline is taken after a warm-up load (WARMUP_SECONDS of the same mix): "near the baseline" is
// within RSS_SLACK (64 MiB) of it after a full GC — a leak of even a few hundred bytes per request
// would pass that over a run's requests and their megabytes. The JavaScript side is held tighter:
// heapUsed + external after GC within JS_SLACK (16 MiB) of the cold start, which the static
// engine's memory cache (limits.cacheSize, 32 MiB of small files) could fill only if the run
// re-read the same small files, which it mostly does not.
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { basicAuth } from '../../lib/http/access-keys.js';
import type { SyncIo } from '../../lib/static/sync-io.js';
import { RECORD_NAME } from '../../lib/uploads/upload-record.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { eventually, formatReport, patternBytes, rssOf, runLoad, send, settledFds, startChild, type LoopDelay, type LoadReport, type Memory } from './load-gen.js';
import { APP_KEY } from './keys.js';
import { staged } from './uploads.js';

export const RSS_SLACK = 64 * 1024 * 1024;
export const JS_SLACK = 16 * 1024 * 1024;
export const WARMUP_SECONDS = 3;

export interface ScenarioResult {
  report: LoadReport;
  fdsBefore: number;
  fdsAfter: number;
  /** Descriptors open after the run that were not before. */
  fdDiff: string;
  /** After start-up, after the warm-up, and after the run, all after a full GC; and the peak. */
  memCold: Memory;
  memWarm: Memory;
  memAfter: Memory;
  rssPeak: number;
  warmup: LoadReport;
  /** Event-loop delay during the run: the server's, and the test process's (the clients'). */
  serverLoop: LoopDelay;
  clientLoop: LoopDelay;
  tempLeft: string[];
  diskProblems: string[];
  serverErrors: string;
  summary: string;
}

const KEY = APP_KEY;

export async function runLoadScenario(o: { root: string; seconds: number; clients: number; syncIo?: SyncIo; log?: (line: string) => void }): Promise<ScenarioResult> {
  const dataDir = join(o.root, 'data');
  const pub = join(o.root, 'public');
  await mkdir(dataDir, { recursive: true });
  await mkdir(pub, { recursive: true });
  const staticFiles = [
    { name: 'small.bin', offset: 11, size: 10 * 1024 },
    { name: 'medium.bin', offset: 4099, size: 300 * 1024 },
    { name: 'large.bin', offset: 70_001, size: 4 * 1024 * 1024 },
  ];
  for (const f of staticFiles) await writeFile(join(pub, f.name), patternBytes(f.offset, 0, f.size));
  const child = await startChild({ dataDir, publicDirs: [`/pub/@${pub}`], accessKeys: { [KEY.id]: KEY.secret }, syncIo: o.syncIo ?? 'auto' });
  try {
    const auth = basicAuth(KEY.id, KEY.secret);
    const streams = ['cam-1', 'cam-2', 'cam-3'];
    // Warm-up: every route once, so what is allocated once (code, the streams) is in the baseline.
    for (const s of streams) {
      const a = await send(child.url, `/_m/${s}`, { method: 'POST', headers: { 'Content-Type': 'image/jpeg', Authorization: auth }, body: patternBytes(1, 0, 8192) });
      if (a.status !== 200) throw new Error(`warm-up publish: ${a.status}`);
    }
    for (const f of staticFiles) await send(child.url, `/pub/${f.name}`);
    const fdsBefore = await settledFds(child);
    const fdListBefore = new Set((await child.fdTargets()).map((l) => l.replace(/^\d+ -> /, '')));
    const memCold = await child.memory();
    let rssPeak = memCold.rss;
    const sampler = setInterval(() => {
      rssOf(child.pid).then((rss) => {
        rssPeak = Math.max(rssPeak, rss);
      }, () => {});
    }, 250);

    const load = {
      url: child.url,
      clients: o.clients,
      auth,
      staticFiles: staticFiles.map((f) => ({ path: `/pub/${f.name}`, offset: f.offset, size: f.size })),
      streams,
      minUpload: 1024,
      maxUpload: 10 * 1024 * 1024,
      poolMax: 100,
      onFailure: (what: string) => o.log?.(`FAILED ${what}`),
    };
    const warmup = await runLoad({ ...load, seconds: WARMUP_SECONDS });
    const memWarm = await child.memory();
    await child.loopDelay();
    const clientHistogram = monitorEventLoopDelay({ resolution: 10 });
    clientHistogram.enable();
    const main = await runLoad({ ...load, seconds: o.seconds, uploads: warmup.uploads });
    clientHistogram.disable();
    const serverLoop = await child.loopDelay();
    const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
    const clientLoop = { p50: ms(clientHistogram.percentile(50)), p99: ms(clientHistogram.percentile(99)), max: ms(clientHistogram.max) };
    clearInterval(sampler);
    // The run's failures include the warm-up's: no request may fail in either.
    const report: LoadReport = { ...main, failed: main.failed + warmup.failed, failures: [...warmup.failures, ...main.failures] };
    for (const s of streams) await send(child.url, `/_m/${s}`, { method: 'DELETE', headers: { Authorization: auth } });

    // Every client connection is closed by now (agents destroyed): the server's descriptors must
    // come back to what they were once it has seen the closes.
    let fdsAfter = await child.fds();
    await eventually(async () => (fdsAfter = await child.fds()) <= fdsBefore, 'server descriptors back to the baseline', 15_000).catch(() => {});
    const fdDiff = (await child.fdTargets()).filter((l) => !fdListBefore.has(l.replace(/^\d+ -> /, ''))).join('\n');
    let tempLeft: string[] = [];
    await eventually(async () => (tempLeft = await staged(dataDir)).length === 0, 'nothing staged', 10_000).catch(() => {});
    const diskProblems = await checkDisk(join(dataDir, 'f'), report);
    const memAfter = await child.memory();

    const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
    const js = (m: Memory): string => mib(m.heapUsed + m.external);
    const summary = [
      `load: ${o.clients} clients, ${o.seconds} s (after a ${WARMUP_SECONDS} s warm-up: ${warmup.requests} requests, ${warmup.failed} failed)`,
      formatReport(report),
      `server fds: ${fdsBefore} before, ${fdsAfter} after; temp files left ${tempLeft.length}; uploads on disk ${report.uploads.length}, problems ${diskProblems.length}`,
      `server RSS after GC: ${mib(memCold.rss)} cold, ${mib(memWarm.rss)} warmed up, ${mib(memAfter.rss)} after (peak ${mib(rssPeak)}); JS heap+external: ${js(memCold)} cold, ${js(memAfter)} after`,
      `event-loop delay during the run: server p50 ${serverLoop.p50} ms, p99 ${serverLoop.p99} ms, max ${serverLoop.max} ms; test process (the clients) p99 ${clientLoop.p99} ms, max ${clientLoop.max} ms`,
    ].join('\n');
    return { report, warmup, fdsBefore, fdsAfter, fdDiff, memCold, memWarm, memAfter, rssPeak, serverLoop, clientLoop, tempLeft, diskProblems, serverErrors: child.stderr(), summary };
  } finally {
    await child.stop();
  }
}

/** `f/` must hold exactly the uploads the run kept, each one file of its size: nothing partial, nothing lost. */
async function checkDisk(filesDir: string, report: LoadReport): Promise<string[]> {
  const problems: string[] = [];
  const want = new Map(report.uploads.map((u) => [u.id, u]));
  const ids = await readdir(filesDir);
  for (const id of ids) {
    const u = want.get(id);
    if (!u) {
      problems.push(`unexpected upload on disk: ${id}`);
      continue;
    }
    const all = await readdir(join(filesDir, id));
    if (!all.includes(RECORD_NAME)) problems.push(`${id}: no record`);
    const names = all.filter((n) => n !== RECORD_NAME);
    if (names.length !== 1 || names[0] !== u.filename) problems.push(`${id}: holds ${JSON.stringify(names)}, expected ${u.filename}`);
    else {
      const size = (await stat(join(filesDir, id, u.filename))).size;
      if (size !== u.size) problems.push(`${id}/${u.filename}: ${size} bytes, expected ${u.size}`);
    }
  }
  for (const id of want.keys()) if (!ids.includes(id)) problems.push(`upload lost: ${id}`);
  return problems;
}
