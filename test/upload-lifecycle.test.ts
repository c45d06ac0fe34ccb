// Uploads that expire and `once` uploads (docs/protocol.md §1, "Expiry, once and the quota"): the
// deadline on the wire and in the record, the sweep (restarts, two nodes on one data dir), and the
// first complete download removing a `once` upload while downloads already under way finish.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import test from 'node:test';
import { connect, WharfError } from '../lib/client/index.js';
import type { UploadEvent } from '../lib/uploads/route.js';
import { createExpiryIndex } from '../lib/uploads/expiry.js';
import { createLocalStorage } from '../lib/uploads/local-storage.js';
import { resolveLimits } from '../lib/common/limits.js';
import { createStatic } from '../lib/static/engine.js';
import { LIMIT_FLAGS } from '../lib/cli/flag-specs.js';
import { APP_AUTH, APP_CLIENT_KEY, APP_KEY } from './helpers/keys.js';
import { eventually } from './helpers/eventually.js';
import { rawConnect } from './helpers/raw-http.js';
import { get, send, serve, sha256, sleep, tempDir, upload, type Running } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

const keyed = { accessKeys: { [APP_KEY.id]: APP_KEY.secret } };

/** Uploads `data` as `name` with `headers`; resolves with its URL path. */
async function put(r: Running, name: string, data: Buffer | string, headers: Record<string, string> = {}): Promise<string> {
  const a = await upload(r.url, [{ filename: name, data }], { authorization: APP_AUTH, ...headers });
  assert.equal(a.status, 200, a.body.toString());
  return (a.json as { files: string[] }).files[0]!;
}

const idOf = (path: string): string => path.split('/')[2]!;
const uploadDir = (r: Running, path: string): string => join(r.dataDir, 'f', idOf(path));

test('limits: uploadTtl is a deadline, not a timer (never held to MAX_TIMER); both new limits have flags', () => {
  const ninety = 90 * 86_400_000;
  assert.equal(resolveLimits({ uploadTtl: ninety }).uploadTtl, ninety);
  assert.equal(resolveLimits({}).uploadTtl, 0);
  assert.equal(resolveLimits({}).storeSize, 0);
  const ttl = LIMIT_FLAGS.find((f) => f.name === 'limit-upload-ttl');
  const size = LIMIT_FLAGS.find((f) => f.name === 'limit-store-size');
  assert.equal(ttl?.kind, 'duration');
  assert.equal(ttl?.defaultText, 'off');
  assert.equal(size?.kind, 'size');
  assert.equal(size?.defaultText, 'off');
});

test('expiresIn 1 s: served with Expires before, 404 after (memory cache too), its directory gone from disk', async (t) => {
  const events: UploadEvent[] = [];
  const r = await serve(t, { ...keyed, cacheControl: 'public, max-age=86400', onUpload: (e) => void events.push(e) });
  const before = Date.now();
  const path = await put(r, 'short.txt', 'short-lived', { 'Wharf-Expires-In': '1' });
  const keep = await put(r, 'keep.txt', 'kept');
  // Twice: the second from the memory cache.
  for (let i = 0; i < 2; i++) {
    const a = await get(r.url, path);
    assert.equal(a.status, 200);
    assert.equal(a.body.toString(), 'short-lived');
    const expires = Date.parse(String(a.headers.expires));
    assert.ok(expires >= before && expires <= Date.now() + 1000, `Expires ${a.headers.expires}`);
    // No cache may keep it fresh past its deadline: max-age held to the seconds left.
    const maxAge = Number(/max-age=(\d+)/.exec(String(a.headers['cache-control']))?.[1]);
    assert.ok(maxAge <= 1, String(a.headers['cache-control']));
  }
  const headAnswer = await send(r.url, 'HEAD', path);
  assert.ok(headAnswer.headers.expires !== undefined);
  // A 304 carries the Expires and the held max-age a 200 would.
  const revalidated = await get(r.url, path, { 'if-none-match': String(headAnswer.headers.etag) });
  assert.equal(revalidated.status, 304);
  assert.equal(revalidated.headers.expires, headAnswer.headers.expires);
  assert.ok(Number(/max-age=(\d+)/.exec(String(revalidated.headers['cache-control']))?.[1]) <= 1);
  const plain = await get(r.url, keep);
  assert.equal(plain.headers.expires, undefined);
  assert.equal(plain.headers['cache-control'], 'public, max-age=86400');
  // The app sees the deadline: in its onUpload event, and through files.site.
  await eventually(() => events.length === 2, 'onUpload events');
  const ev = events.find((e) => e.files[0]!.filename === 'short.txt')!;
  assert.ok(ev.expiresAt instanceof Date);
  assert.equal(events.find((e) => e.files[0]!.filename === 'keep.txt')!.expiresAt, undefined);
  const info = await r.files.site.uploadInfo(path);
  assert.equal(info.expiresAt?.getTime(), ev.expiresAt.getTime());
  assert.equal(info.once, false);
  assert.equal((await r.files.site.uploadInfo(keep)).expiresAt, undefined);

  await eventually(async () => (await get(r.url, path)).status === 404, 'a 404 once expired');
  assert.equal((await send(r.url, 'HEAD', path)).status, 404);
  await assert.rejects(r.files.site.uploadInfo(path), (e: WharfError) => e.code === 'NOT_FOUND');
  // The sweep frees the disk within a bucket (5 s) and a tick.
  await eventually(() => !existsSync(uploadDir(r, path)), 'its directory removed', 15_000);
  assert.equal((await get(r.url, keep)).status, 200);
  assert.ok(existsSync(uploadDir(r, keep)));
  assert.deepEqual(r.warnings, []);
});

test('the read side: an upload past its deadline is 404 at once, from the memory cache too, with no sweep at all', async (t) => {
  const dataDir = await tempDir(t);
  await mkdir(join(dataDir, 'f'));
  await mkdir(join(dataDir, '.wharf-tmp'));
  // Storage never started: no sweep runs, so only the read side can answer 404.
  const storage = createLocalStorage(dataDir);
  const id = randomUUID();
  const staging = storage.stage();
  await staging.put(id, 'a.txt', [Buffer.from('soon gone')]);
  const deadline = Date.now() + 400;
  await staging.commit({ v: 1, trust: 'app', via: 'site', expires: deadline });
  const statics = createStatic({ limits: resolveLimits() });
  const server = http.createServer((req, res) => void statics.respond(req, res, storage.source, decodeURIComponent(req.url!.slice(1))));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  defer(t, () => new Promise((ok) => server.close(ok)));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  for (let i = 0; i < 2; i++) assert.equal((await get(url, `/${id}/a.txt`)).body.toString(), 'soon gone');
  assert.equal((await send(url, 'HEAD', `/${id}/a.txt`)).status, 200);
  await sleep(deadline - Date.now() + 50);
  assert.equal((await get(url, `/${id}/a.txt`)).status, 404);
  assert.equal((await send(url, 'HEAD', `/${id}/a.txt`)).status, 404);
  assert.equal(await storage.life?.(id), null);
  assert.ok(existsSync(join(dataDir, 'f', id)), 'still on disk: the 404 came from the deadline');
});

test('a bad Wharf-Expires-In or Wharf-Once is 400 BAD_EXPIRY, and nothing is stored', async (t) => {
  const r = await serve(t, keyed);
  for (const headers of [{ 'Wharf-Expires-In': 'soon' }, { 'Wharf-Expires-In': '0' }, { 'Wharf-Expires-In': '-5' }, { 'Wharf-Once': 'maybe' }]) {
    const a = await upload(r.url, [{ filename: 'a.txt', data: 'a' }], { authorization: APP_AUTH, ...headers });
    assert.equal(a.status, 400, JSON.stringify(headers));
    assert.equal(a.json.error, 'BAD_EXPIRY');
  }
  assert.deepEqual(await readdir(join(r.dataDir, 'f')), []);
});

test('server-wide uploadTtl: the default deadline and the cap of a longer expiresIn; the deadline survives a restart', async (t) => {
  const dataDir = await tempDir(t);
  const first = await serve(t, { ...keyed, limits: { uploadTtl: 2000 } }, dataDir);
  const t0 = Date.now();
  const byDefault = await put(first, 'default.txt', 'd');
  const capped = await put(first, 'capped.txt', 'c', { 'Wharf-Expires-In': '3600' });
  const shorter = await put(first, 'shorter.txt', 's', { 'Wharf-Expires-In': '1' });
  const deadline = async (p: string): Promise<number> => (await first.files.site.uploadInfo(p)).expiresAt!.getTime();
  const d1 = await deadline(byDefault);
  assert.ok(d1 >= t0 + 2000 && d1 <= Date.now() + 2000);
  assert.ok((await deadline(capped)) <= Date.now() + 2000, 'held to the TTL');
  assert.ok((await deadline(shorter)) <= Date.now() + 1000, 'a shorter one is kept');
  await first.files.close();

  // A new server on the same data dir, without the TTL: the deadlines are the uploads' own.
  const second = await serve(t, keyed, dataDir);
  assert.equal((await second.files.site.uploadInfo(byDefault)).expiresAt?.getTime(), d1);
  assert.equal((await get(second.url, byDefault)).status, 200);
  await eventually(async () => (await get(second.url, byDefault)).status === 404, 'gone after the restart', 10_000);
  for (const p of [byDefault, capped, shorter]) await eventually(() => !existsSync(uploadDir(second, p)), `${p} removed by the second server`, 15_000);
  assert.deepEqual(second.warnings, []);
});

test('a TTL set later reaches the uploads stored before it (the start scan marks them)', async (t) => {
  const dataDir = await tempDir(t);
  const first = await serve(t, keyed, dataDir);
  const old = await put(first, 'old.txt', 'old');
  await first.files.close();
  await sleep(1100);
  const second = await serve(t, { ...keyed, limits: { uploadTtl: 1000 } }, dataDir);
  const fresh = await put(second, 'fresh.txt', 'fresh', { 'Wharf-Expires-In': '3600' });
  await eventually(() => !existsSync(uploadDir(second, old)), 'the old upload removed', 15_000);
  // The fresh one lives its TTL (1 s) too, not an hour.
  await eventually(() => !existsSync(uploadDir(second, fresh)), 'the fresh one removed at the TTL', 15_000);
  assert.deepEqual(second.warnings, []);
});

test('two nodes on one data dir sweeping at once: each expired upload removed once, nothing else touched', async (t) => {
  const dataDir = await tempDir(t);
  const a = await serve(t, keyed, dataDir);
  const b = await serve(t, keyed, dataDir);
  const expiring: string[] = [];
  const kept: string[] = [];
  for (let i = 0; i < 40; i++) expiring.push(await put(i % 2 ? a : b, `e${i}.txt`, `e${i}`, { 'Wharf-Expires-In': '1' }));
  for (let i = 0; i < 5; i++) kept.push(await put(i % 2 ? b : a, `k${i}.txt`, `k${i}`));
  // One request of three files: three ids under one mark.
  const three = await upload(a.url, [0, 1, 2].map((i) => ({ filename: `m${i}.txt`, data: `m${i}` })), { authorization: APP_AUTH, 'Wharf-Expires-In': '1' });
  expiring.push(...(three.json as { files: string[] }).files);
  assert.equal(expiring.length, 43);
  for (const p of expiring) await eventually(() => !existsSync(join(dataDir, 'f', idOf(p))), `${p} removed`, 15_000);
  for (const [i, p] of kept.entries()) assert.equal((await get(a.url, p)).body.toString(), `k${i}`);
  assert.deepEqual(a.warnings, []);
  assert.deepEqual(b.warnings, []);
  await eventually(async () => (await readdir(join(dataDir, '.wharf-expiry'))).length === 0, 'the index emptied', 10_000);

  // The race itself, sweep against sweep, over storage that really renames: 200 ids, each removed
  // once. The servers are closed (their sweeps would join in) and this storage is not started (nor is its own).
  await Promise.all([a.files.close(), b.files.close()]);
  const storage = createLocalStorage(dataDir);
  const ids: string[] = [];
  for (let i = 0; i < 200; i++) {
    const staging = storage.stage();
    const id = randomUUID();
    await staging.put(id, 'x.txt', [Buffer.from('x')]);
    await staging.commit({ v: 1, trust: 'app', via: 'site', expires: Date.now() - 10_000 });
    ids.push(id);
  }
  let removed = 0;
  const warnings: string[] = [];
  const nodes = [0, 1].map(() => createExpiryIndex(dataDir, {
    remove: async (id) => {
      const won = await storage.remove(id);
      if (won) removed++;
      return won;
    },
    warn: (m) => warnings.push(m),
  }));
  const counts = await Promise.all(nodes.map((n) => n.sweep(Date.now() + 10_000)));
  assert.equal(removed, 200);
  assert.equal(counts[0]! + counts[1]!, 200);
  assert.deepEqual(warnings, []);
  for (const id of ids) assert.ok(!existsSync(join(dataDir, 'f', id)));
  assert.deepEqual((await readdir(join(dataDir, 'f'))).sort(), kept.map(idOf).sort());
});

/** A GET whose body is read only when `go()` is called: resolves with its status at once. */
function slowGet(url: string): Promise<{ status: number; go(): Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      res.pause();
      resolve({
        status: res.statusCode ?? 0,
        go: () => new Promise((ok, fail) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => ok(Buffer.concat(chunks)));
          res.on('error', fail);
          res.resume();
        }),
      });
    }).on('error', reject);
  });
}

test('once: HEAD, Range, 304 and an aborted download do not consume it; the first complete one does; one under way finishes byte-identical', async (t) => {
  const r = await serve(t, keyed);
  const data = randomBytes(8 * 1024 * 1024);
  const path = await put(r, 'once.bin', data, { 'Wharf-Once': '1' });
  assert.equal((await r.files.site.uploadInfo(path)).once, true);

  const head = await send(r.url, 'HEAD', path);
  assert.equal(head.status, 200);
  assert.equal(head.headers['cache-control'], 'no-store');
  const range = await get(r.url, path, { range: 'bytes=0-99' });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, data.subarray(0, 100));
  const whole = await get(r.url, path, { range: 'bytes=0-' });
  assert.equal(whole.status, 206, 'a Range for every byte is still a Range');
  assert.equal((await get(r.url, path, { 'if-none-match': String(head.headers.etag) })).status, 304);
  // A download cut short: the client goes away after a little of the body.
  const port = Number(new URL(r.url).port);
  const conn = await rawConnect(port);
  conn.sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await eventually(() => conn.received().length > 100_000, 'part of the body');
  conn.sock.destroy();
  await sleep(200);
  assert.ok(existsSync(uploadDir(r, path)), 'still there after HEAD, Range, 304 and an aborted download');

  // Two downloads under way; the first to finish removes it; the other still gets every byte.
  const one = await slowGet(r.url + path);
  const two = await slowGet(r.url + path);
  assert.equal(one.status, 200);
  assert.equal(two.status, 200);
  assert.equal(sha256(await one.go()), sha256(data));
  await eventually(() => !existsSync(uploadDir(r, path)), 'removed after the first complete download');
  assert.equal((await get(r.url, path)).status, 404);
  assert.equal(sha256(await two.go()), sha256(data));
  assert.deepEqual(r.warnings, []);
});

test('a download under way when its upload expires and is swept finishes byte-identical; new requests get 404', async (t) => {
  const r = await serve(t, keyed);
  const data = randomBytes(8 * 1024 * 1024);
  const path = await put(r, 'long.bin', data, { 'Wharf-Expires-In': '1' });
  const running = await slowGet(r.url + path);
  assert.equal(running.status, 200);
  await eventually(() => !existsSync(uploadDir(r, path)), 'swept from disk', 15_000);
  assert.equal((await get(r.url, path)).status, 404);
  assert.equal(sha256(await running.go()), sha256(data));
  assert.deepEqual(r.warnings, []);
});

test('once: a small file (answered in one read) and an empty one are consumed by their first GET too', async (t) => {
  const r = await serve(t, keyed);
  const small = await put(r, 'small.txt', 'tiny', { 'Wharf-Once': 'true' });
  const empty = await put(r, 'empty.txt', '', { 'Wharf-Once': '1' });
  assert.equal((await get(r.url, small)).body.toString(), 'tiny');
  assert.equal((await get(r.url, empty)).status, 200);
  await eventually(() => !existsSync(uploadDir(r, small)) && !existsSync(uploadDir(r, empty)), 'both removed');
  assert.equal((await get(r.url, small)).status, 404);
});

test('the client and files.site take expiresIn and once; bad values fail before anything is sent', async (t) => {
  const events: UploadEvent[] = [];
  const r = await serve(t, { ...keyed, onUpload: (e) => void events.push(e) });
  const dir = await tempDir(t);
  const file = join(dir, 'c.txt');
  await writeFile(file, 'client');
  const site = connect(r.url, APP_CLIENT_KEY);
  defer(t, () => site.close());
  const t0 = Date.now();
  const [viaClient] = await site.upload([file], { expiresIn: 1500, once: true });
  const [viaSite] = await r.files.site.upload([file], { expiresIn: 60_000 });
  const info = await r.files.site.uploadInfo(viaClient!);
  assert.equal(info.once, true);
  // Whole seconds on the wire, rounded up: 1.5 s asks for 2.
  assert.ok(info.expiresAt!.getTime() >= t0 + 2000 && info.expiresAt!.getTime() <= Date.now() + 2000);
  const siteInfo = await r.files.site.uploadInfo(viaSite!);
  assert.ok(siteInfo.expiresAt!.getTime() >= t0 + 60_000);
  await eventually(() => events.length === 2, 'two events');
  assert.equal(events.find((e) => e.files[0]!.path === viaClient)?.once, true);
  await assert.rejects(site.upload([file], { expiresIn: -1 }), (e: WharfError) => e.code === 'BAD_EXPIRY');
  await assert.rejects(r.files.site.upload([file], { expiresIn: Number.NaN }), (e: WharfError) => e.code === 'BAD_EXPIRY');
  // The client's `once` upload goes after the client downloads it.
  await site.download(viaClient!, join(dir, 'back.txt'));
  await eventually(async () => (await get(r.url, viaClient!)).status === 404, 'consumed by the client download');
});
