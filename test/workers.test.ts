// `wharf serve --workers N` and `--redis-url` through the real command (child processes): the
// workers share the port and the data dir, image streams cross workers through the primary (or
// Redis), a killed worker is replaced, and a missing `redis` package is one line and exit 2.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { view, type Viewer } from './helpers/mixed-replace.js';
import { eventually, frame, request } from './helpers/streams.js';
import { startWharfProcess, type Child } from './helpers/command.js';
import { freePort } from './helpers/free-port.js';
import { startRedis } from './helpers/redis-server.js';
import { tempDir } from './helpers/temp-dir.js';
import { DEFAULT_AUTH } from './helpers/keys.js';
import { form, MULTIPART, sha256 } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

type T = Parameters<NonNullable<Parameters<typeof test>[0]>>[0];

/** The workers of a primary, from /proc. */
async function workersOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** Which workers answered requests for `path` (the request log names the node, one JSON line per request). */
function servedBy(child: Child & { lines(): Array<Record<string, unknown>> }, path: string): Set<unknown> {
  return new Set(child.lines().filter((l) => l.path === path).map((l) => l.node));
}

const post = (url: string, name: string, type: string, data: Buffer): ReturnType<typeof request> =>
  request(`${url}/_m/${name}`, { method: 'POST', headers: { Authorization: DEFAULT_AUTH, 'Content-Type': type, 'Content-Length': data.length }, body: data });

async function watchers(t: T, url: string, count: number): Promise<Viewer[]> {
  const out: Viewer[] = [];
  for (let i = 0; i < count; i++) {
    // A connection each: the cluster spreads connections over the workers.
    const v = await view(url);
    defer(t, () => v.close());
    assert.equal(v.status, 200);
    out.push(v);
  }
  return out;
}

/**
 * A download that may fail: a connection the primary handed to a worker at the moment it was killed
 * is lost with it (Node's cluster does not hand it to another worker), so a client right after a
 * kill gives up after a while and tries again, as a real one would.
 */
async function served(url: string): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), 5000); });
  try {
    return await Promise.race([request(url).then((a) => a.status === 200, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Uploads `data` and returns its path. */
async function upload(url: string, data: Buffer): Promise<string> {
  const up = await request(`${url}/_f/`, { method: 'POST', headers: { Authorization: DEFAULT_AUTH, 'Content-Type': MULTIPART }, body: form([{ name: 'files', filename: 'blob.bin', data }]) });
  assert.equal(up.status, 200, up.body.toString());
  return (JSON.parse(up.body.toString()) as { files: string[] }).files[0]!;
}

/** A stream published through the cluster reaches viewers on every worker, in order, and unlink ends them. */
async function streamAcross(t: T, child: Child & { url: string; lines(): Array<Record<string, unknown>> }, name: string, viewersUrl = child.url): Promise<void> {
  assert.equal((await post(child.url, name, 'image/jpeg', frame(0, 1000))).status, 200);
  const viewers = await watchers(t, `${viewersUrl}/_m/${name}`, 6);
  for (let i = 1; i <= 30; i++) assert.equal((await post(child.url, name, i % 2 ? 'image/png' : 'image/jpeg', frame(i, 200 + i * 3000))).status, 200);
  for (const v of viewers) {
    await v.until((r) => r.frames.length === 31, 'every frame');
    assert.deepEqual(v.reader.frames.map((p) => p.body.readUInt32BE(0)), Array.from({ length: 31 }, (_, i) => i));
    assert.ok(v.reader.frames[30]!.body.equals(frame(30, 200 + 30 * 3000)));
  }
  const del = await request(`${child.url}/_m/${name}`, { method: 'DELETE', headers: { Authorization: DEFAULT_AUTH } });
  assert.deepEqual(del.json, { ended: true });
  for (const v of viewers) {
    assert.deepEqual(await v.ended, { complete: true });
    assert.equal(v.reader.closed, true);
  }
}

test('--workers 2: uploads and downloads on both workers, streams across them, a killed worker replaced', { timeout: 180_000 }, async (t) => {
  const dataDir = await tempDir(t);
  // One id for all: each worker is told apart by its number (`w-w1`, `w-w2`, …).
  const child = await startWharfProcess(t, ['--workers', '2', '--node-id', 'w', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log', 'json']);
  assert.equal(child.lines().find((l) => l.event === 'listening')?.workers, 2);
  const primaryPid = child.proc.pid!;
  const first = await workersOf(primaryPid);
  assert.equal(first.length, 2);

  const data = Buffer.alloc(300_000, 7);
  data.write('workers', 1000);
  const path = await upload(child.url, data);
  for (let i = 0; i < 16; i++) {
    const got = await request(`${child.url}${path}`);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), sha256(data));
  }
  await eventually(() => servedBy(child, path).size === 2, 'downloads served by both workers');
  await streamAcross(t, child, 'cam');
  await eventually(() => servedBy(child, '/_m/cam').size === 2, 'viewers on both workers');

  // A worker killed: replaced (worker 3 of the log), and the service goes on on both.
  process.kill(first[0]!, 'SIGKILL');
  await eventually(async () => (await served(`${child.url}${path}`)) && servedBy(child, path).has('w-w3'), 'the new worker serving', 30_000);
  assert.match(child.stderr(), new RegExp(`worker ${first[0]} exited \\(SIGKILL\\); starting another`));
  assert.ok(!(await workersOf(primaryPid)).includes(first[0]!));
  for (let i = 0; i < 8; i++) assert.equal(sha256((await request(`${child.url}${path}`)).body), sha256(data));
  await streamAcross(t, child, 'cam2');
  await eventually(() => servedBy(child, '/_m/cam2').size === 2, 'viewers on both workers');

  // Workers that die young are restarted later and later: a crash loop does not spin.
  const [again] = await workersOf(primaryPid);
  process.kill(again!, 'SIGKILL');
  await eventually(() => /starting another in 500 ms/.test(child.stderr()), 'a longer back-off after a second young death');
  await eventually(async () => (await served(`${child.url}${path}`)) && servedBy(child, path).has('w-w4'), 'worker 4 serving', 30_000);

  process.kill(primaryPid, 'SIGTERM');
  const result = await child.exited;
  assert.equal(result.code, 0, result.stderr);
  assert.ok(child.lines().some((l) => l.event === 'closing' && l.workers !== undefined));
  for (const pid of await workersOf(primaryPid).catch(() => [])) assert.fail(`worker ${pid} left running`);
});

test('--redis-url: streams shared by a --workers 2 node and a single-process node on one Redis', { timeout: 180_000 }, async (t) => {
  const redis = await startRedis();
  defer(t, () => redis.stop());
  const dataDir = await tempDir(t);
  const env = { WHARF_REDIS_URL: redis.url };
  const cluster = await startWharfProcess(t, ['--workers', '2', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log', 'json'], env);
  const single = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log', 'json'], env);
  assert.equal(cluster.lines().find((l) => l.kind === 'streams')?.hub, 'redis');
  await streamAcross(t, cluster, 'cam', single.url);
  await streamAcross(t, single, 'cam2', cluster.url);
  for (const c of [cluster, single]) {
    c.proc.kill('SIGTERM');
    assert.equal((await c.exited).code, 0);
  }
});

test('--redis-url without the redis package installed: one line saying what to install, exit 2', { timeout: 180_000 }, async (t) => {
  // The compiled library alone, where no node_modules can be found: `import('redis')` really fails.
  const dir = await tempDir(t);
  const lib = fileURLToPath(new URL('../lib', import.meta.url));
  await cp(lib, join(dir, 'dist', 'lib'), { recursive: true });
  await cp(fileURLToPath(new URL('../../bin', import.meta.url)), join(dir, 'bin'), { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', version: '0.0.0' }));
  for (const args of [[], ['--workers', '2']]) {
    const proc = spawn(process.execPath, [join(dir, 'bin/wharf.js'), '--redis-url', 'redis://127.0.0.1:1', '--data-dir', join(dir, 'data'), ...args], { env: { PATH: process.env.PATH ?? '' } });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await new Promise((resolve) => proc.on('close', resolve));
    assert.equal(code, 2, err);
    assert.equal(err.trim().split('\n').length, 1, err);
    assert.match(err, /^wharf: --redis-url needs the redis package .*npm install redis$/m);
  }
});

test('--workers and --redis-url refuse what they cannot use', { timeout: 180_000 }, async (t) => {
  const { runWharf } = await import('./helpers/command.js');
  for (const [args, message] of [
    [['--workers', '0'], /--workers: expected a number from 1 to 1024 or auto/],
    [['--workers', 'two'], /--workers: expected/],
    [['--redis-url', 'http://localhost:6379'], /--redis-url: expected a redis:\/\/ or rediss:\/\/ URL/],
    [['--redis-url', 'not a url'], /--redis-url: expected redis:\/\//],
  ] as const) {
    const r = await runWharf(t, [...args, '--data-dir', await tempDir(t)]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  }
});

test('--workers 2: the primary\'s answers reach the workers: stream limits, HEAD, an unlink of nothing', { timeout: 180_000 }, async (t) => {
  const child = await startWharfProcess(t, ['--workers', '2', '--listen', '127.0.0.1:0', '--data-dir', await tempDir(t), '--log', 'json',
    '--limit-streams', '1', '--limit-viewers-per-stream', '1']);
  assert.equal((await post(child.url, 'a', 'image/png', frame(1, 100))).status, 200);
  const second = await post(child.url, 'b', 'image/png', frame(1, 100));
  assert.deepEqual([second.status, second.json?.error], [503, 'TOO_MANY_STREAMS']);
  // HEAD and DELETE through both workers (a connection each: round robin).
  for (let i = 0; i < 2; i++) {
    assert.equal((await request(`${child.url}/_m/a`, { method: 'HEAD' })).status, 200);
    assert.equal((await request(`${child.url}/_m/b`, { method: 'HEAD' })).status, 404);
    assert.equal((await request(`${child.url}/_m/b`)).status, 404);
    assert.deepEqual((await request(`${child.url}/_m/b`, { method: 'DELETE', headers: { Authorization: DEFAULT_AUTH } })).json, { ended: false });
  }
  // One viewer per stream on each worker.
  const answers = [];
  for (let i = 0; i < 4; i++) {
    const v = await view(`${child.url}/_m/a`);
    defer(t, () => v.close());
    answers.push(v.status);
  }
  assert.ok(answers.filter((s) => s === 200).length >= 1 && answers.filter((s) => s === 200).length <= 2, String(answers));
  assert.ok(answers.includes(503), String(answers));
  child.proc.kill('SIGTERM');
  assert.equal((await child.exited).code, 0);
});

test('--redis-url to a Redis that is not up yet: a warning without the password, 503 until it is, then streams work', { timeout: 180_000 }, async (t) => {
  const port = await freePort();
  const child = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', await tempDir(t), '--log', 'json',
    '--redis-url', `redis://default:s3cret-pw@127.0.0.1:${port}`]);
  const warning = child.lines().find((l) => l.event === 'warning');
  assert.match(String(warning?.message), /^Redis at redis:\/\/default:\*\*\*@127\.0\.0\.1:\d+\/? is unreachable .*503 until it is back$/);
  assert.ok(!child.stderr().includes('s3cret-pw') && !child.stdout().includes('s3cret-pw'), 'the password is never logged');
  const down = await post(child.url, 'cam', 'image/png', frame(1, 100));
  assert.deepEqual([down.status, down.json?.error], [503, 'HUB_UNAVAILABLE']);
  assert.equal((await upload(child.url, Buffer.from('no redis needed'))).startsWith('/_f/'), true);
  const redis = await startRedis(port, 's3cret-pw');
  defer(t, () => redis.stop());
  await eventually(async () => (await post(child.url, 'cam', 'image/png', frame(2, 100))).status === 200, 'a publish once Redis is up', 15_000);
  await eventually(() => /Redis at .* is back/.test(child.stderr()), 'the warning that Redis is back');
  child.proc.kill('SIGTERM');
  assert.equal((await child.exited).code, 0);
});
