// The command's errors in its user's words, through the real `wharf` process; the request log's
// 499 and body byte counts; `--accept` end to end.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import test from 'node:test';
import { eventually, fetchRaw, tempDir } from './helpers/client.js';
import { runWharf, spawnWharf, startWharfProcess } from './helpers/command.js';
import { defer } from './helpers/defer.js';

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);

test('local paths: a missing file, a directory without --dir, --dir on a file — each named as typed', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.txt'), 'a');
  await mkdir(join(dir, 'photos'));
  // No server is needed: nothing is sent. The cwd is the temp dir, so paths are as a user types them.
  const cases: Array<[string[], string]> = [
    [['upload', 'missing.txt'], 'wharf: no such file: missing.txt\n'],
    [['upload', 'a.txt', 'nope/b.txt'], 'wharf: no such file: nope/b.txt\n'],
    [['upload', 'photos'], 'wharf: photos is a directory: use --dir to upload a directory\n'],
    [['upload', '--dir', 'a.txt'], 'wharf: --dir: a.txt is not a directory\n'],
  ];
  for (const [args, stderr] of cases) {
    const r = await runWharf(t, [...args, '--server', 'http://127.0.0.1:1'], {}, dir);
    assert.equal(r.stderr, stderr, args.join(' '));
    assert.equal(r.code, 1);
  }
});

test('an unknown command is named, with the ones there are (exit 2)', async (t) => {
  const r = await runWharf(t, ['uplaod', 'x.txt']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'wharf: unknown command "uplaod" (serve, upload, download, unload; see wharf --help)\n');
});

test('a key half given is said with the name the user used: the variable, or the flag', async (t) => {
  const env = await runWharf(t, ['upload', 'x.txt'], { WHARF_ACCESS_KEY_SECRET: 's3cret' });
  assert.equal(env.code, 2);
  assert.equal(env.stderr, 'wharf: WHARF_ACCESS_KEY_SECRET is set, but no access key id: give --access-key-id (or set WHARF_ACCESS_KEY_ID) too\n');
  const flag = await runWharf(t, ['upload', 'x.txt', '--access-key-id', 'app']);
  assert.match(flag.stderr, /^wharf: --access-key-id is set, but no secret/);
  const serving = await runWharf(t, ['serve', '--listen', '127.0.0.1:0'], { WHARF_ACCESS_KEY_ID: 'app' });
  assert.equal(serving.code, 2);
  assert.match(serving.stderr, /^wharf: WHARF_ACCESS_KEY_ID is set, but no secret/);
  assert.ok(!serving.stderr.includes('--access-key-id is'), 'never a flag the user did not type');
});

test('a server that is not running: "cannot reach the server at <url> — is it running?"', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.txt'), 'a');
  // A port that was just free: nothing listens on it.
  const probe = http.createServer();
  await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise((ok) => probe.close(ok));
  for (const args of [['upload', join(dir, 'a.txt')], ['download', '/_f/x/a.txt', dir], ['unload', '/_f/x']]) {
    const r = await runWharf(t, [...args, '--server', url]);
    assert.equal(r.stderr, `wharf: cannot reach the server at ${url} — is it running?\n`, args[0]);
    assert.equal(r.code, 1);
  }
});

test('size limits: the file over it by name, the limit in human units; --accept refuses a lying PNG', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'small.txt'), 'small');
  await writeFile(join(dir, 'big.bin'), Buffer.alloc(3000));
  await writeFile(join(dir, 'cat.png'), PNG);
  await writeFile(join(dir, 'evil.png'), '<!doctype html><script>alert(1)</script>');
  const server = await startWharfProcess(t, [
    '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log', 'json',
    '--limit-file-size', '2KiB', '--limit-request-size', '5KiB', '--accept', 'image/png', '--accept', '.bin',
  ]);
  const env = { WHARF_SERVER: server.url };
  const big = await runWharf(t, ['upload', join(dir, 'big.bin')], env);
  assert.equal(big.stderr, `wharf: upload refused: ${join(dir, 'big.bin')} (2.93 KiB) is larger than the server's limit of 2 KiB per file\n`);
  assert.equal(big.code, 1);
  const files = ['big.bin', 'big.bin', 'cat.png'].map((f) => join(dir, f));
  const many = await runWharf(t, ['upload', ...files], env);
  assert.match(many.stderr, /^wharf: upload refused: 3 files \(big\.bin, big\.bin, cat\.png\), 5\.93 KiB in all, is more than the server's limit of 5 KiB per upload\n$/);

  const cat = await runWharf(t, ['upload', join(dir, 'cat.png')], env);
  assert.equal(cat.code, 0, cat.stderr);
  const evil = await runWharf(t, ['upload', join(dir, 'evil.png')], env);
  assert.equal(evil.code, 1);
  assert.match(evil.stderr, /evil\.png.*not what its name says \(text\/html\) \(UPLOAD_TYPE_REFUSED, HTTP 415\)/);
  const txt = await runWharf(t, ['upload', join(dir, 'small.txt')], env);
  assert.match(txt.stderr, /not an accepted type \(image\/png, \.bin\)/);
  assert.deepEqual((await readdir(join(dir, 'data', 'f'))).length, 1, 'only cat.png stored');
  const bad = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data2'), '--accept', 'png']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^wharf: --accept: "png" is neither a type/);
  server.proc.kill('SIGTERM');
  await server.exited;
});

test('Ctrl+C during a transfer reads "interrupted" and exits 130', async (t) => {
  const dir = await tempDir(t);
  const stalled = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': 1024 * 1024 });
    res.write(Buffer.alloc(512 * 1024));
  });
  await new Promise<void>((ok) => stalled.listen(0, '127.0.0.1', ok));
  defer(t, () => new Promise((ok) => { stalled.closeAllConnections(); stalled.close(ok); }));
  const url = `http://127.0.0.1:${(stalled.address() as { port: number }).port}`;
  const child = spawnWharf(t, ['download', '/slow.bin', dir, '--server', url]);
  assert.ok(await eventually(async () => (await readdir(dir)).length > 0), 'the download is under way');
  child.proc.kill('SIGINT');
  const done = await child.exited;
  assert.equal(done.stderr, 'wharf: interrupted\n');
  assert.equal(done.code, 130);
  assert.deepEqual(await readdir(dir), []);
});

test('the request log: 499 for a download the client gave up on, and body bytes only', async (t) => {
  const dir = await tempDir(t);
  const pub = join(dir, 'pub');
  await mkdir(pub);
  await writeFile(join(pub, 'hello.txt'), 'hello');
  await writeFile(join(pub, 'big.bin'), Buffer.alloc(256 * 1024 * 1024));
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log', 'json', '--public-dir', `/pub/@${pub}`]);
  assert.equal((await fetchRaw(`${server.url}/pub/hello.txt`)).body.toString(), 'hello');
  await new Promise<void>((ok, bad) => {
    const req = http.get(`${server.url}/pub/big.bin`, { agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        ok();
      });
    });
    req.on('error', (err) => (req.destroyed ? undefined : bad(err)));
  });
  assert.ok(await eventually(async () => server.lines().filter((l) => l.method).length >= 2), 'two log lines');
  const [hello, big] = server.lines().filter((l) => l.method);
  assert.deepEqual([hello!.path, hello!.status, hello!.bytes], ['/pub/hello.txt', 200, 5], 'the body, not the headers');
  assert.equal(big!.path, '/pub/big.bin');
  assert.equal(big!.status, 499);
  assert.equal(big!.aborted, true);
  assert.equal(big!.answered, 200);
  assert.ok((big!.bytes as number) < 256 * 1024 * 1024);
  server.proc.kill('SIGTERM');
  await server.exited;
});
