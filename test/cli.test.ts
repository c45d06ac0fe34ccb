import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { delimiter, join } from 'node:path';
import test from 'node:test';
import { DEFAULT_LIMITS } from '../lib/common/limits.js';
import { RECORD_NAME } from '../lib/uploads/upload-record.js';
import { eventually, fetchRaw, filesUnder, sha256, sha256File, tempDir, UUID } from './helpers/client.js';
import { runWharf, spawnWharf, startWharfProcess } from './helpers/command.js';
import { defer } from './helpers/defer.js';

const ID = 'cli-app';
const SECRET = 'cli-secret-Zx81';
const auth = (id: string, secret: string): string => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

test('--help lists every flag and its variable; --version prints package.json\'s', async (t) => {
  const help = await runWharf(t, ['--help']);
  assert.equal(help.code, 0);
  for (const flag of ['--listen', '--data-dir', '--public-dir', '--private-dir', '--access-key-id', '--access-key-secret', '--base-url', '--anonymous-uploads', '--group-readable', '--log', '--server', '--dir']) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  for (const key of Object.keys(DEFAULT_LIMITS)) {
    assert.ok(help.stdout.includes(`--limit-${kebab(key)}`), key);
    assert.ok(help.stdout.includes(`WHARF_LIMIT_${kebab(key).replace(/-/g, '_').toUpperCase()}`), key);
  }
  assert.deepEqual(await runWharf(t, ['help']), help);
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const args of [['--version'], ['version']]) {
    const v = await runWharf(t, args);
    assert.equal(v.code, 0);
    assert.equal(v.stdout, `${pkg.version}\n`);
  }
  for (const sub of ['upload', 'download', 'unload']) {
    const r = await runWharf(t, [sub, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^Usage: wharf ${sub}`));
    assert.match(r.stdout, /--server URL/);
  }
});

test('refuses to start, exit 2 with a one-line reason: bad flags and values', async (t) => {
  const dir = await tempDir(t);
  const cases: Array<[string[], RegExp, Record<string, string>?]> = [
    [['--bogus'], /unknown flag --bogus/],
    [['-x'], /unknown flag -x/],
    [['--listen'], /--listen needs a value/],
    [['--listen', 'nonsense'], /--listen: expected HOST:PORT/],
    [['--listen', '127.0.0.1:99999'], /bad port/],
    [['--limit-file-size', '12XB'], /--limit-file-size: not a size/],
    [['--limit-upload-idle-timeout', 'soon'], /--limit-upload-idle-timeout: not a duration/],
    [['--limit-files', '1.5'], /--limit-files: not a whole number/],
    [['--log', 'xml'], /--log: expected one of text, json, off/],
    [['--data-dir', dir, '--data-dir', dir], /--data-dir given twice/],
    [['--access-key-id', 'only-id'], /--access-key-id is set, but no secret/],
    [['--public-dir', 'no-at-sign'], /not URL@PATH/],
    [['serve', 'extra'], /unexpected argument "extra"/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /WHARF_LIMIT_FILES: not a whole number/, { WHARF_LIMIT_FILES: 'many' }],
    [[], /WHARF_ANONYMOUS_UPLOADS: not a boolean/, { WHARF_ANONYMOUS_UPLOADS: 'maybe' }],
  ];
  await Promise.all(cases.map(async ([args, message, env]) => {
    // Run in a temp dir on port 0, so a case that wrongly started would still harm nothing.
    const r = await runWharf(t, args, { WHARF_LISTEN: '127.0.0.1:0', ...env }, dir);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /^wharf: [^\n]+\n$/, 'one line');
    assert.equal(r.stdout, '');
  }));
});

test('refuses to start with Wave\'s default keys on a non-loopback address, and on an unwritable data dir', async (t) => {
  const dir = await tempDir(t);
  for (const listen of ['0.0.0.0:0', ':0', '[::]:0']) {
    const r = await runWharf(t, ['--listen', listen, '--data-dir', join(dir, 'data')]);
    assert.equal(r.code, 2, listen);
    assert.match(r.stderr, /^wharf: refusing to listen on .* with Wave's default access keys[^\n]*--access-key-id[^\n]*\n$/);
  }
  const explicitDefaults = await runWharf(t, ['--listen', '0.0.0.0:0', '--access-key-id', 'access_key_id', '--access-key-secret', 'access_key_secret', '--data-dir', join(dir, 'data')]);
  assert.equal(explicitDefaults.code, 2);

  // A path under a regular file can never be created, whoever we run as (root ignores mode bits).
  await writeFile(join(dir, 'a-file'), 'x');
  const under = join(dir, 'a-file', 'data');
  const r = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', under]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `wharf: data dir ${under} is not writable: a part of the path is a file, not a directory (ENOTDIR)\n`);
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'read-only');
    await mkdir(ro, { mode: 0o500 });
    defer(t, () => chmod(ro, 0o700));
    const denied = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', ro]);
    assert.equal(denied.code, 2);
    assert.match(denied.stderr, /is not writable: permission denied \(EACCES\)/);
  }
  assert.deepEqual((await readdir(dir)).filter((n) => !n.startsWith('data-')), ['a-file'], 'no probe file left behind');

  // The data dir writable, but its uploads dir or temp area not (here: a file in its place, which
  // stops root too): refused the same way, before listening.
  for (const [name, what] of [['f', 'uploads dir'], ['.wharf-tmp', 'temp area']] as const) {
    const data = join(dir, `data-${name}`);
    await mkdir(data);
    await writeFile(join(data, name), 'x');
    const refused = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', data]);
    assert.equal(refused.code, 2, name);
    assert.equal(refused.stderr, `wharf: ${what} ${join(data, name)} is not writable: a part of the path is a file, not a directory (ENOTDIR)\n`);
    assert.deepEqual(await readdir(data), [name], 'no probe file left behind');
  }
  const badId = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--node-id', '../x']);
  assert.equal(badId.code, 2);
  assert.match(badId.stderr, /^wharf: --node-id: expected 1-64 letters/);
});

test('serve with flags: mappings, keys, limits, a JSON line per request, no secret in any output, SIGTERM exits 0', async (t) => {
  const dir = await tempDir(t);
  const pub = join(dir, 'public');
  await mkdir(pub);
  await writeFile(join(pub, 'hello.txt'), 'hello');
  await mkdir(join(dir, 'models'));
  await writeFile(join(dir, 'models', 'm.bin'), 'weights');
  const dataDir = join(dir, 'data');
  // Started under umask 0 (the child inherits it): the data dir it makes is owner-only all the same.
  const umask = process.umask(0);
  const starting = startWharfProcess(t, [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir,
    '--public-dir', `/pub/@${pub}`, '--private-dir', `/models/@${join(dir, 'models')}`, '--public-dir', `/later/@${join(dir, 'not-yet')}`,
    '--access-key-id', ID, '--limit-file-size', '1KiB', '--log', 'json',
  ], { WHARF_ACCESS_KEY_SECRET: SECRET, WHARF_NODE_ID: 'web-1' });
  process.umask(umask);
  const server = await starting;
  const { url } = server;
  const areas = await readdir(join(dataDir, '.wharf-tmp'));
  assert.equal(areas.length, 1);
  assert.match(areas[0]!, /^web-1\.[0-9a-f]{8}$/, 'the staging area is named for the node');
  for (const d of [dataDir, join(dataDir, 'f'), join(dataDir, '.wharf-tmp'), join(dataDir, '.wharf-tmp', areas[0]!)]) assert.equal((await stat(d)).mode & 0o777, 0o700, d);
  const startup = server.lines();
  assert.equal(startup.find((l) => l.event === 'listening')?.node, 'web-1');
  assert.deepEqual(startup.filter((l) => l.event === 'serving').map((l) => [l.kind, l.url, l.path ?? null]), [
    ['uploads', `${url}/_f/`, join(dataDir, 'f')],
    ['streams', `${url}/_m/`, null],
    ['public', `${url}/pub/`, pub],
    ['public', `${url}/later/`, join(dir, 'not-yet')],
    ['private', `${url}/models/`, join(dir, 'models')],
  ]);
  assert.ok(startup.some((l) => l.event === 'warning' && String(l.message).includes(join(dir, 'not-yet'))), 'a warning for a mapped dir that does not exist yet');
  assert.ok(await eventually(async () => /^wharf: warning: .*not-yet/m.test(server.stderr())), 'and on stderr');

  assert.equal((await fetchRaw(`${url}/pub/hello.txt`)).body.toString(), 'hello');
  assert.equal((await fetchRaw(`${url}/models/m.bin`)).status, 401);
  const withKey = await fetchRaw(`${url}/models/m.bin?token=query-secret`, { headers: { authorization: auth(ID, SECRET) } });
  assert.equal(withKey.body.toString(), 'weights');
  // --limit-file-size 1KiB applies.
  const boundary = 'b0undary';
  const big = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n`),
    randomBytes(2048),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const refused = await fetchRaw(`${url}/_f/`, { method: 'POST', body: big, headers: { authorization: auth(ID, SECRET), 'content-type': `multipart/form-data; boundary=${boundary}` } });
  assert.equal(refused.status, 413);
  assert.equal(JSON.parse(refused.body.toString()).error, 'LIMIT_FILE_SIZE');

  assert.ok(await eventually(async () => server.lines().filter((l) => l.method).length >= 4));
  const requests = server.lines().filter((l) => l.method);
  assert.deepEqual(requests.map((l) => [l.method, l.path, l.status]), [
    ['GET', '/pub/hello.txt', 200],
    ['GET', '/models/m.bin', 401],
    ['GET', '/models/m.bin', 200],
    ['POST', '/_f/', 413],
  ]);
  for (const l of requests) {
    assert.equal(l.node, 'web-1');
    assert.equal(typeof l.bytes, 'number');
    assert.ok((l.bytes as number) > 0);
    assert.equal(typeof l.ms, 'number');
  }

  server.proc.kill('SIGTERM');
  const done = await server.exited;
  assert.equal(done.code, 0);
  assert.deepEqual(await readdir(join(dataDir, '.wharf-tmp')), [], 'a clean close removes the node\'s staging area');
  const everything = done.stdout + done.stderr;
  for (const secret of [SECRET, auth(ID, SECRET), 'query-secret', Buffer.from(`${ID}:${SECRET}`).toString('base64')]) {
    assert.ok(!everything.includes(secret), `output must not contain ${secret}`);
  }
  assert.ok(server.lines().some((l) => l.event === 'closing' && l.signal === 'SIGTERM'));
});

test('serve from environment variables; a flag beats its variable; lists split on the path delimiter', async (t) => {
  const dir = await tempDir(t);
  for (const name of ['a', 'b']) {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'x.txt'), name);
  }
  const dataDir = join(dir, 'data');
  const umask = process.umask(0);
  const starting = startWharfProcess(t, ['--data-dir', dataDir], {
    WHARF_LISTEN: '127.0.0.1:0',
    WHARF_DATA_DIR: join(dir, 'ignored'),
    WHARF_PUBLIC_DIR: [`/a/@${join(dir, 'a')}`, `/b/@${join(dir, 'b')}`].join(delimiter),
    WHARF_BASE_URL: '/app/',
    WHARF_ACCESS_KEY_ID: ID,
    WHARF_ACCESS_KEY_SECRET: SECRET,
    WHARF_ANONYMOUS_UPLOADS: 'true',
    WHARF_LIMIT_FILES: '1',
    WHARF_LOG: 'off',
    WHARF_GROUP_READABLE: 'true',
  });
  process.umask(umask);
  const server = await starting;
  const { url } = server;
  assert.equal((await fetchRaw(`${url}/a/x.txt`)).body.toString(), 'a');
  assert.equal((await fetchRaw(`${url}/b/x.txt`)).body.toString(), 'b');
  const form = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) =>
    `--B\r\nContent-Disposition: form-data; name="files"; filename="f${i}.txt"\r\n\r\nx\r\n`).join('') + '--B--\r\n');
  // Anonymous uploads on, under the base URL; WHARF_LIMIT_FILES=1 applies.
  const one = await fetchRaw(`${url}/app/_f/`, { method: 'POST', body: form(1), headers: { 'content-type': 'multipart/form-data; boundary=B' } });
  assert.equal(one.status, 200, one.body.toString());
  const [path] = JSON.parse(one.body.toString()).files as string[];
  assert.match(path!, new RegExp(`^/app/_f/${UUID}/f0\\.txt$`));
  const two = await fetchRaw(`${url}/app/_f/`, { method: 'POST', body: form(2), headers: { 'content-type': 'multipart/form-data; boundary=B' } });
  assert.equal(two.status, 413);
  assert.deepEqual(await filesUnder(join(dir, 'ignored')), [], 'the flag beat WHARF_DATA_DIR');
  assert.equal((await filesUnder(join(dataDir, 'f'))).filter((p) => !p.endsWith(RECORD_NAME)).length, 1);
  // WHARF_GROUP_READABLE=true: the group may read (under umask 0), others nothing.
  assert.equal((await stat(dataDir)).mode & 0o777, 0o750);
  assert.equal((await stat(join(dataDir, 'f', path!.split('/')[3]!))).mode & 0o777, 0o750);
  assert.equal((await stat(join(dataDir, 'f', path!.split('/')[3]!, 'f0.txt'))).mode & 0o777, 0o640);

  server.proc.kill('SIGINT');
  const done = await server.exited;
  assert.equal(done.code, 0);
  assert.equal(server.lines().filter((l) => l.method).length, 0, 'WHARF_LOG=off: no request lines');
});

test('SIGTERM during an upload: the server exits 0 and nothing partial is left', async (t) => {
  const dir = await tempDir(t);
  const dataDir = join(dir, 'data');
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--access-key-id', ID, '--access-key-secret', SECRET]);
  const size = 64 * 1024 * 1024;
  const head = Buffer.from('--B\r\nContent-Disposition: form-data; name="files"; filename="partial.bin"\r\n\r\n');
  const tail = Buffer.from('\r\n--B--\r\n');
  const req = http.request(`${server.url}/_f/`, {
    method: 'POST',
    headers: { authorization: auth(ID, SECRET), 'content-type': 'multipart/form-data; boundary=B', 'content-length': head.length + size + tail.length },
  });
  const answer = new Promise<number | string>((resolve) => {
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  req.write(head);
  // Send 4 MiB of the 64, then stop: an upload in flight, some of it already on the server's disk.
  const chunk = randomBytes(1024 * 1024);
  for (let i = 0; i < 4; i++) req.write(chunk);
  assert.ok(await eventually(async () => (await filesUnder(dataDir)).length > 0), 'the upload reached the disk');

  server.proc.kill('SIGTERM');
  const done = await server.exited;
  assert.equal(done.code, 0, done.stderr);
  const status = await answer;
  assert.ok(status === 503 || typeof status === 'string', `the upload did not succeed: ${status}`);
  req.destroy();
  assert.deepEqual(await filesUnder(dataDir), [], 'no partial file, no temp file');
});

test('upload, download and unload subcommands end to end; exit codes 0, 1 and 2; quiet output off a terminal', async (t) => {
  const dir = await tempDir(t);
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--access-key-id', ID, '--access-key-secret', SECRET]);
  const env = { WHARF_SERVER: server.url, WHARF_ACCESS_KEY_ID: ID, WHARF_ACCESS_KEY_SECRET: SECRET };
  const a = randomBytes(300_000);
  await writeFile(join(dir, 'a.bin'), a);
  await writeFile(join(dir, 'b c.txt'), 'bee');
  await writeFile(join(dir, '100% #1.txt'), 'percent');
  await mkdir(join(dir, 'tree', 'sub'), { recursive: true });
  await writeFile(join(dir, 'tree', 'sub', 'deep.txt'), 'deep');

  const up = await runWharf(t, ['upload', join(dir, 'a.bin'), join(dir, 'b c.txt'), join(dir, '100% #1.txt')], env);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(up.stderr, '', 'no progress bar off a terminal');
  const paths = up.stdout.trim().split('\n');
  assert.equal(paths.length, 3);
  assert.match(paths[0]!, new RegExp(`^/_f/${UUID}/a\\.bin$`));
  assert.match(paths[1]!, new RegExp(`^/_f/${UUID}/b c\\.txt$`), 'the name as stored, as Wave prints it');
  assert.match(paths[2]!, new RegExp(`^/_f/${UUID}/100%25 %231\\.txt$`), 'only %, # and ? escaped');
  assert.equal(sha256((await fetchRaw(server.url + paths[0]!)).body), sha256(a));

  const upDir = await runWharf(t, ['upload', '--dir', join(dir, 'tree')], env);
  assert.equal(upDir.code, 0, upDir.stderr);
  assert.match(upDir.stdout, new RegExp(`^/_f/${UUID}\n$`));
  assert.equal((await fetchRaw(`${server.url}${upDir.stdout.trim()}/sub/deep.txt`)).body.toString(), 'deep');

  const into = join(dir, 'into');
  await mkdir(into);
  const down = await runWharf(t, ['download', paths[0]!, into], env);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(down.stdout, `${join(into, 'a.bin')}\n`);
  assert.equal(await sha256File(join(into, 'a.bin')), sha256(a));
  // DEST defaults to the working directory; the full URL works as well as the path; flags beat env.
  const here = await runWharf(t, ['download', `${server.url}${paths[1]!}`, '--server', server.url], { ...env, WHARF_SERVER: 'http://127.0.0.1:1' }, into);
  assert.equal(here.code, 0, here.stderr);
  assert.equal(await readFile(join(into, 'b c.txt'), 'utf8'), 'bee');
  // The fully percent-encoded form works as well as the returned one, and saves under the real name.
  const encoded = paths[2]!.replace(/[^/]+$/, encodeURIComponent('100% #1.txt'));
  const pct = await runWharf(t, ['download', encoded, into], env);
  assert.equal(pct.code, 0, pct.stderr);
  assert.equal(pct.stdout, `${join(into, '100% #1.txt')}\n`);
  assert.equal(await readFile(join(into, '100% #1.txt'), 'utf8'), 'percent');
  assert.equal((await runWharf(t, ['unload', paths[2]!], env)).code, 0);
  assert.equal((await fetchRaw(server.url + encoded)).status, 404);

  const un = await runWharf(t, ['unload', paths[0]!], env);
  assert.equal(un.code, 0, un.stderr);
  assert.equal(un.stdout, '');
  assert.equal((await fetchRaw(server.url + paths[0]!)).status, 404);

  const again = await runWharf(t, ['unload', paths[0]!], env);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^wharf: unload failed: .*\(NOT_FOUND, HTTP 404\)\n$/);
  const wrongKey = await runWharf(t, ['upload', join(dir, 'a.bin')], { ...env, WHARF_ACCESS_KEY_SECRET: 'nope' });
  assert.equal(wrongKey.code, 1);
  assert.match(wrongKey.stderr, /UNAUTHORIZED, HTTP 401/);
  const missing = await runWharf(t, ['upload', join(dir, 'missing.bin')], env);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `wharf: no such file: ${join(dir, 'missing.bin')}\n`);
  const down404 = await runWharf(t, ['download', paths[0]!, into], env);
  assert.equal(down404.code, 1);
  const unreachable = await runWharf(t, ['unload', paths[1]!], { ...env, WHARF_SERVER: 'http://127.0.0.1:1' });
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /cannot reach the server at http:\/\/127\.0\.0\.1:1 — is it running\?/);

  for (const [args, message] of [
    [['upload'], /upload: name at least one FILE/],
    [['download'], /download: expected URL \[DEST\]/],
    [['download', 'a', 'b', 'c'], /download: expected URL \[DEST\]/],
    [['unload'], /unload: expected one URL/],
    [['upload', 'x', '--server', 'ftp://x'], /--server: only http: and https:/],
    [['upload', 'x', '--access-key-id', 'only'], /--access-key-id is set, but no secret/],
    [['download', 'x', '--dir'], /unknown flag --dir/],
  ] as Array<[string[], RegExp]>) {
    const r = await runWharf(t, args, { WHARF_SERVER: server.url });
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, message);
  }
  server.proc.kill('SIGTERM');
  assert.equal((await server.exited).code, 0);
});

test('SIGINT during a transfer aborts it: exit 130, nothing half-written', async (t) => {
  const dir = await tempDir(t);
  // A server that sends half a body and then stalls, so the download is surely in flight.
  const stalled = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': 1024 * 1024 });
    res.write(Buffer.alloc(512 * 1024));
  });
  await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { stalled.closeAllConnections(); stalled.close(resolve); }));
  const url = `http://127.0.0.1:${(stalled.address() as { port: number }).port}`;
  const into = join(dir, 'into');
  await mkdir(into);
  const child = spawnWharf(t, ['download', '/slow.bin', into, '--server', url]);
  assert.ok(await eventually(async () => (await readdir(into)).length > 0), 'the temp file appears');
  child.proc.kill('SIGINT');
  const done = await child.exited;
  assert.equal(done.code, 130);
  assert.equal(done.stderr, 'wharf: interrupted\n');
  assert.deepEqual(await readdir(into), []);
});
