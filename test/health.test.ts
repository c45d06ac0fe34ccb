// The health route, `{base}_wharf/health`: open to load balancers, probing storage for real (at
// most once a second), asking the hub when it has a `health` check.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import { WharfError } from '../lib/common/errors.js';
import { createFileServer } from '../lib/index.js';
import { createHealth, HEALTH_CACHE_MS, type HealthParts } from '../lib/http/health.js';
import { createLocalStorage } from '../lib/uploads/local-storage.js';
import { get, send, serve, tempDir } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

test('health: open to anyone under the base URL, whatever authorize says; nothing else there', async (t) => {
  const { url } = await serve(t, { baseUrl: '/app/', authorize: () => false, anonymousUploads: false });
  const ok = await get(url, '/app/_wharf/health');
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json, { ok: true, checks: { storage: 'ok', hub: 'ok' } });
  assert.equal(ok.headers['cache-control'], 'no-store');
  assert.equal((await get(url, '/app/_f/x')).status, 401, 'the rest still needs authorization');
  assert.equal((await get(url, '/_wharf/health')).status, 404, 'only under the base URL');
  assert.equal((await get(url, '/app/_wharf/health/more')).status, 404);
  assert.equal((await get(url, '/app/_wharf/')).status, 404);
  assert.equal((await get(url, '/app/_wharf/healt')).status, 404, 'not a prefix cut short');
  assert.equal((await send(url, 'DELETE', '/app/_wharf/health')).status, 405);
});

test('health: in middleware mode the first probe starts storage', async (t) => {
  const dataDir = join(await tempDir(t), 'data');
  const files = createFileServer({ dataDir, warn: () => {} });
  const srv = createServer((req, res) => files.handle(req, res, () => {
    res.statusCode = 418;
    res.end();
  }));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  defer(t, async () => {
    await files.close();
    await new Promise((resolve) => srv.close(resolve));
  });
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  assert.equal((await get(url, '/elsewhere')).status, 418);
  await assert.rejects(stat(join(dataDir, 'f')), 'not started yet');
  assert.equal((await get(url, '/_wharf/health')).status, 200);
  assert.ok((await stat(join(dataDir, 'f'))).isDirectory());
});

test('health: nodeId and leaseInterval are checked at creation', () => {
  for (const nodeId of ['', '../x', '.hidden', 'a b', 'x'.repeat(65), 7]) {
    assert.throws(() => createFileServer({ nodeId: nodeId as string }), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION', String(nodeId));
  }
  for (const leaseInterval of [0, 49, 1.5, 2 ** 31, Number.NaN]) {
    assert.throws(() => createFileServer({ leaseInterval }), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION', String(leaseInterval));
  }
  createFileServer({ nodeId: 'web-1.eu_west', leaseInterval: 50 });
});

test('health: a hub with a health check is asked, at most once a second; false, a rejection or silence is 503', async (t) => {
  const dataDir = await tempDir(t);
  const storage = createLocalStorage(dataDir);
  await storage.start();
  defer(t, () => storage.close());
  let asked = 0;
  let answer: () => Promise<boolean> = async () => true;
  const hub: NonNullable<HealthParts['hub']> = {
    health: () => {
      asked++;
      return answer();
    },
  };
  const health = createHealth({ storage: () => storage.probe(), hub });
  const srv = createServer((req, res) => void health.respond(req, res));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => srv.close(resolve)));
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;

  const polls = await Promise.all([1, 2, 3].map(() => get(url, '/')));
  assert.deepEqual(polls.map((p) => p.status), [200, 200, 200]);
  assert.equal(asked, 1, 'polls within a second share one probe');
  const wait = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, HEALTH_CACHE_MS + 50));
  const cases: Array<[() => Promise<boolean>, string]> = [
    [async () => false, 'unreachable'],
    [() => Promise.reject(new Error('ECONNREFUSED')), 'unreachable'],
    [() => new Promise(() => {}), 'timeout'],
  ];
  for (const [how, why] of cases) {
    answer = how;
    await wait();
    const down = await get(url, '/');
    assert.equal(down.status, 503, why);
    assert.deepEqual(down.json, { ok: false, checks: { storage: 'ok', hub: why }, error: 'NOT_READY', message: `not ready: hub (${why})` });
  }
  answer = async () => true;
  await wait();
  assert.equal((await get(url, '/')).status, 200);
});
