// CORS on the wire: the option's checks, each route's preflight from the route table, the headers a
// page may read, `Vary: Origin` on every answer, and an origin not allowed refused before its body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFileServer, WharfError, type FileServerOptions } from '../lib/index.js';
import { APP_AUTH } from './helpers/keys.js';
import { runWharf, startWharfProcess } from './helpers/command.js';
import { rawPost } from './helpers/raw-http.js';
import { form, get, MULTIPART, repeat, send, serve, layout, staged, tempDir, upload } from './helpers/uploads.js';

const PAGE = 'http://localhost:5173';
const OTHER = 'https://evil.example';
const CORS = { cors: { origins: [PAGE] } } satisfies FileServerOptions;

const preflight = (url: string, path: string, method: string, origin = PAGE, headers = 'authorization') =>
  send(url, 'OPTIONS', path, undefined, { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers });

test('cors option: exact origins only, fields checked at creation', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{}, /origins: expected a non-empty list/],
    [{ origins: [] }, /origins: expected a non-empty list/],
    [{ origins: ['*'] }, /no wildcards/],
    [{ origins: ['https://*.example.com'] }, /no wildcards/],
    [{ origins: ['http://localhost:5173/'] }, /write "http:\/\/localhost:5173"/],
    [{ origins: ['https://App.example.com:443'] }, /write "https:\/\/app\.example\.com"/],
    [{ origins: ['https://app.example.com/path'] }, /write "https:\/\/app\.example\.com"/],
    [{ origins: ['localhost:5173'] }, /only http and https/],
    [{ origins: ['null'] }, /is not an origin/],
    [{ origins: [5173] }, /each must be a string/],
    [{ origins: [PAGE], credentials: 'yes' }, /credentials: expected true or false/],
    [{ origins: [PAGE], maxAge: -1 }, /maxAge/],
    [{ origins: [PAGE], maxAge: 1.5 }, /maxAge/],
    [{ origins: [PAGE], maxAge: 86_401 }, /maxAge/],
    [{ origins: [PAGE], allowAll: true }, /unknown field "allowAll"/],
    ['http://localhost:5173', /expected \{ origins/],
  ];
  for (const [cors, message] of bad) {
    assert.throws(() => createFileServer({ cors: cors as never }), (err: unknown) => err instanceof WharfError && err.code === 'INVALID_OPTION' && message.test(err.message), JSON.stringify(cors));
  }
  for (const cors of [{ origins: [PAGE, 'https://app.example.com', 'http://[::1]:8080'] }, { origins: () => true, credentials: true, maxAge: 0 }]) {
    assert.doesNotThrow(() => createFileServer({ cors }));
  }
});

test('preflight: each route answers with its own methods and the headers those take', async (t) => {
  const pub = await tempDir(t);
  const { url } = await serve(t, { ...CORS, publicDirs: [`/pub/@${pub}`] });
  const cases: Array<[string, string, string, string[]]> = [
    ['/_f/', 'POST', 'POST', ['Authorization', 'Content-Type', 'Wave-Directory-Upload', 'Wharf-Expires-In', 'Wharf-Once']],
    ['/_f/0b4bd0b6-4f7e-4a53-9d1b-2a2cf2a5f0f0/a.txt', 'GET', 'GET, HEAD, DELETE', ['Authorization', 'Range', 'If-Range', 'If-None-Match', 'If-Modified-Since']],
    ['/_f/0b4bd0b6-4f7e-4a53-9d1b-2a2cf2a5f0f0/a.txt', 'DELETE', 'GET, HEAD, DELETE', ['Authorization']],
    ['/_m/camera/1', 'POST', 'GET, HEAD, POST, DELETE', ['Authorization', 'Content-Type']],
    ['/_m/camera/1', 'GET', 'GET, HEAD, POST, DELETE', ['Authorization']],
    ['/pub/a.txt', 'GET', 'GET, HEAD', ['Authorization', 'Range', 'If-Range', 'If-None-Match', 'If-Modified-Since']],
  ];
  for (const [path, method, methods, headers] of cases) {
    const res = await preflight(url, path, method);
    assert.equal(res.status, 204, `${method} ${path}`);
    assert.equal(res.headers['access-control-allow-origin'], PAGE);
    assert.equal(res.headers['access-control-allow-methods'], methods, `${method} ${path}`);
    assert.deepEqual(String(res.headers['access-control-allow-headers']).split(', '), headers, `${method} ${path}`);
    assert.equal(res.headers['access-control-max-age'], '600');
    assert.equal(res.headers['access-control-allow-credentials'], undefined, 'no credentials unless asked for');
    assert.match(String(res.headers.vary), /^Origin, Access-Control-Request-Method, Access-Control-Request-Headers$/);
    assert.equal(res.body.length, 0);
  }
  // A method the route does not take: 405 with what it takes; an origin not allowed: 403.
  for (const method of ['PUT', 'constructor', '__proto__', 'toString']) {
    const wrong = await preflight(url, '/_f/', method);
    assert.equal(wrong.status, 405, method);
    assert.equal(wrong.headers.allow, 'POST');
    assert.equal(wrong.json.error, 'METHOD_NOT_ALLOWED');
  }
  const other = await preflight(url, '/_f/', 'POST', OTHER);
  assert.equal(other.status, 403);
  assert.equal(other.json.error, 'CORS_ORIGIN_REFUSED');
  assert.equal(other.headers['access-control-allow-origin'], undefined);
  assert.equal(other.headers.vary, 'Origin');
});

test('credentials and maxAge, and origins decided by a function', async (t) => {
  const seen: string[] = [];
  const { url } = await serve(t, { cors: { origins: (o) => { seen.push(o); return o.endsWith('.example.com'); }, credentials: true, maxAge: 7200 } });
  const ok = await preflight(url, '/_f/', 'POST', 'https://app.example.com');
  assert.equal(ok.status, 204);
  assert.equal(ok.headers['access-control-allow-credentials'], 'true');
  assert.equal(ok.headers['access-control-max-age'], '7200');
  assert.equal((await preflight(url, '/_f/', 'POST', 'https://example.org')).status, 403);
  assert.deepEqual(seen, ['https://app.example.com', 'https://example.org']);
});

test('answers: readable headers exposed to an allowed origin, Vary: Origin on every answer, cached and refused ones too', async (t) => {
  const { url } = await serve(t, CORS);
  const up = await upload(url, [{ filename: 'a.txt', data: 'hello cors' }], { Origin: PAGE });
  assert.equal(up.status, 200);
  assert.equal(up.headers['access-control-allow-origin'], PAGE);
  assert.equal(up.headers.vary, 'Origin');
  const path = up.json.files[0] as string;

  const ranged = await get(url, path, { Origin: PAGE, Range: 'bytes=0-4' });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers['access-control-allow-origin'], PAGE);
  const exposed = String(ranged.headers['access-control-expose-headers']).split(', ');
  for (const h of ['Content-Range', 'ETag', 'Content-Disposition', 'Content-Length', 'Accept-Ranges', 'Last-Modified']) assert.ok(exposed.includes(h), h);

  // From memory (second read), a 304, a read from an origin not allowed, a 404, an unrouted path, no Origin at all.
  const etag = String(ranged.headers.etag);
  const answers = [
    await get(url, path, { Origin: PAGE }),
    await get(url, path, { Origin: PAGE, 'If-None-Match': etag }),
    await get(url, path, { Origin: OTHER }),
    await get(url, '/_f/0b4bd0b6-4f7e-4a53-9d1b-2a2cf2a5f0f0/none', { Origin: PAGE }),
    await get(url, '/elsewhere', { Origin: PAGE }),
    await get(url, path),
  ];
  assert.deepEqual(answers.map((a) => a.status), [200, 304, 200, 404, 404, 200]);
  for (const a of answers) assert.equal(a.headers.vary, 'Origin');
  assert.deepEqual(answers.map((a) => a.headers['access-control-allow-origin']), [PAGE, PAGE, undefined, PAGE, undefined, undefined]);
  assert.equal(answers[2]!.body.toString(), 'hello cors', 'a read from another origin is served (an <img> needs no CORS), only unreadable to its page');
});

test('an origin not allowed: uploads, deletes and frames refused with 403 before a byte of the body is read', async (t) => {
  const { url, port, dataDir } = await serve(t, CORS);
  const up = await upload(url, [{ filename: 'keep.txt', data: 'x' }]);
  const path = up.json.files[0] as string;
  // Only the head goes out: the refusal must come without the body, and the connection then close.
  const refused = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': 1_000_000, Origin: OTHER }, repeat(Buffer.alloc(1000), 1000), { stall: 0 });
  assert.equal(refused.status, 403);
  assert.equal(JSON.parse(refused.body).error, 'CORS_ORIGIN_REFUSED');
  assert.equal(refused.sent, 0);
  assert.equal(refused.closed, true);
  const expecting = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': 1000, Origin: OTHER, Expect: '100-continue' }, repeat(Buffer.alloc(1000), 1), { stall: 0 });
  assert.equal(expecting.status, 403, 'refused instead of 100 Continue');
  for (const [method, target] of [['DELETE', path], ['POST', '/_m/cam']] as const) {
    const res = await send(url, method, target, method === 'POST' ? Buffer.from('frame') : undefined, { Origin: OTHER, Authorization: APP_AUTH, 'Content-Type': 'image/png' });
    assert.equal(res.status, 403, `${method} ${target}`);
  }
  assert.equal((await get(url, path)).status, 200, 'the refused DELETE removed nothing');
  const files = (await layout(dataDir)).filter((p) => !p.endsWith('/') && !p.endsWith('.wharf-upload.json'));
  assert.deepEqual(files.map((p) => p.slice(p.lastIndexOf('/') + 1)), ['keep.txt'], 'nothing of the refused requests was stored');
  assert.deepEqual(await staged(dataDir), [], 'nor staged');
});

test("the server's own pages: Origin of its own Host, or Sec-Fetch-Site: same-origin, are not cross-origin", async (t) => {
  const { url, port } = await serve(t, CORS);
  const own = await upload(url, [{ filename: 'a.txt', data: 'a' }], { Origin: `http://127.0.0.1:${port}` });
  assert.equal(own.status, 200);
  assert.equal(own.headers['access-control-allow-origin'], undefined);
  const fetchMeta = await upload(url, [{ filename: 'b.txt', data: 'b' }], { Origin: 'http://wharf.internal', 'Sec-Fetch-Site': 'same-origin' });
  assert.equal(fetchMeta.status, 200);
  const cross = await upload(url, [{ filename: 'c.txt', data: 'c' }], { Origin: 'http://wharf.internal', 'Sec-Fetch-Site': 'cross-site' });
  assert.equal(cross.status, 403);
});

test('without the option: no CORS headers, no Vary, and a preflight is 405', async (t) => {
  const { url } = await serve(t);
  const res = await preflight(url, '/_f/', 'POST');
  assert.equal(res.status, 405);
  assert.equal(res.headers['access-control-allow-origin'], undefined);
  assert.equal(res.headers.vary, undefined);
  const up = await upload(url, form([{ filename: 'a.txt', data: 'a' }]), { Origin: OTHER });
  assert.equal(up.status, 200);
  assert.equal(up.headers.vary, undefined);
});

test('command: --cors-origin (repeatable, or WHARF_CORS_ORIGIN comma-separated) and --cors-credentials; a bad origin refuses to start', async (t) => {
  const data = await tempDir(t);
  await mkdir(join(data, 'pub'));
  await writeFile(join(data, 'pub', 'x.txt'), 'x');
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', join(data, 'd'), '--log', 'json', '--cors-origin', PAGE, '--cors-credentials'], { WHARF_CORS_ORIGIN: 'http://ignored.example' });
  const ok = await preflight(server.url, '/_f/', 'POST');
  assert.equal(ok.status, 204);
  assert.equal(ok.headers['access-control-allow-credentials'], 'true');
  server.proc.kill('SIGTERM');
  await server.exited;

  const fromEnv = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', join(data, 'e'), '--log', 'json'], { WHARF_CORS_ORIGIN: `${OTHER}, ${PAGE}` });
  assert.equal((await preflight(fromEnv.url, '/_f/', 'POST', PAGE)).status, 204);
  assert.equal((await preflight(fromEnv.url, '/_f/', 'POST', OTHER)).status, 204);
  assert.equal((await preflight(fromEnv.url, '/_f/', 'POST', 'http://localhost:1')).status, 403);
  fromEnv.proc.kill('SIGTERM');
  await fromEnv.exited;

  const bad = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', join(data, 'f'), '--cors-origin', 'http://localhost:5173/']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /cors: origins: "http:\/\/localhost:5173\/" is not as a browser sends it: write "http:\/\/localhost:5173"/);
  const lone = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', join(data, 'g'), '--cors-credentials']);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /--cors-credentials needs --cors-origin/);
});
