// A newcomer's first minute: the banner's upload lines work as printed, the server's root says what
// it is, and a data dir whose f/ or temp area cannot be written is refused at start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createFileServer } from '../lib/index.js';
import { runWharf, spawnWharf, startWharfProcess } from './helpers/command.js';
import { eventually } from './helpers/eventually.js';
import { get, send, serve, tempDir } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

const run = promisify(execFile);
const CLIENT = new URL('../lib/client/index.js', import.meta.url).href;

test('start banner with the default keys on loopback: its curl line and its client snippet upload, as printed', async (t) => {
  const dataDir = await tempDir(t);
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log', 'json', '--base-url', '/files']);
  const hint = server.lines().find((l) => l.event === 'try');
  assert.ok(hint, 'a "try" line');
  const curl = String(hint.curl);
  assert.equal(curl, `echo hello | curl -u access_key_id:access_key_secret -F 'files=@-;filename=hello.txt' ${server.url}/files/_f/`);
  const answer = JSON.parse((await run('sh', ['-c', `${curl} --silent --show-error --fail`])).stdout) as { files: string[] };
  assert.match(answer.files[0]!, /^\/files\/_f\/[0-9a-f-]{36}\/hello\.txt$/);
  assert.equal((await get(server.url, answer.files[0]!)).body.toString(), 'hello\n');

  // The snippet, run from an app's directory (it has a package.json), the package name pointed at this build.
  const app = await tempDir(t);
  await writeFile(join(app, 'package.json'), '{"name":"an-app"}');
  const snippet = String(hint.client);
  assert.match(snippet, /^import \{ connect \} from 'wharf-files\/client';\n/);
  await writeFile(join(app, 'try.mjs'), `${snippet.replace("'wharf-files/client'", `'${CLIENT}'`)}\nconsole.log(path);\n`);
  const uploaded = (await run(process.execPath, ['try.mjs'], { cwd: app })).stdout.trim();
  assert.match(uploaded, /^\/files\/_f\/[0-9a-f-]{36}\/package\.json$/);
  assert.equal((await get(server.url, uploaded)).body.toString(), '{"name":"an-app"}');
  server.proc.kill('SIGTERM');
  await server.exited;

  // On a terminal's text log: the same two, readable.
  const text = spawnWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log', 'text']);
  await eventually(() => text.stdout().includes('await site.upload'), 'the text banner');
  assert.match(text.stdout(), /\nTry it \(Wave's default keys work on loopback\):\n {2}echo hello \| curl -u access_key_id:access_key_secret -F 'files=@-;filename=hello\.txt' http:\/\/127\.0\.0\.1:\d+\/_f\/\nFrom another Node\.js app \(npm install wharf-files\):\n {2}import \{ connect \} from 'wharf-files\/client';\n {2}const site = connect\('http:\/\/127\.0\.0\.1:\d+'\);/);
  text.proc.kill('SIGTERM');
  await text.exited;
});

test('start banner with keys of its own: no upload lines, no secret', async (t) => {
  const server = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', await tempDir(t), '--log', 'json', '--access-key-id', 'me'], { WHARF_ACCESS_KEY_SECRET: 'very-secret-value' });
  assert.equal(server.lines().find((l) => l.event === 'try'), undefined);
  server.proc.kill('SIGTERM');
  const done = await server.exited;
  assert.ok(!(done.stdout + done.stderr).includes('very-secret-value'));
});

test('GET / with nothing mapped there: a short plain page saying what this is and where its docs are, nothing about the setup', async (t) => {
  const dataDir = await tempDir(t);
  const { url } = await serve(t, { dataDir, baseUrl: '/files/', accessKeys: { app: 'app-secret' } });
  for (const path of ['/', '/?from=bookmark']) {
    const page = await get(url, path);
    assert.equal(page.status, 200, path);
    assert.equal(page.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(String(page.headers['content-security-policy']), /^default-src 'none'; frame-ancestors 'none'; sandbox$/);
    const text = page.body.toString();
    assert.match(text, /This is a wharf file server/);
    assert.match(text, /Documentation: https:\/\/www\.npmjs\.com\/package\/wharf-files\n$/);
    assert.ok(text.length < 400, 'short');
    for (const secret of [dataDir, '/files/', '_f', 'app-secret', 'access_key']) assert.ok(!text.includes(secret), `nothing about the setup: ${secret}`);
  }
  const head = await send(url, 'HEAD', '/');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  const post = await send(url, 'POST', '/', Buffer.from('x'));
  assert.equal(post.status, 404);
  assert.equal(post.json.error, 'NOT_FOUND');
  assert.equal((await get(url, '/elsewhere')).status, 404);
});

test("GET / is not wharf's page when a mapping serves / or wharf is the host app's middleware", async (t) => {
  const site = await tempDir(t);
  await writeFile(join(site, 'index.html'), '<!doctype html><title>mine</title>');
  const { url } = await serve(t, { publicDirs: [`/@${site}`] });
  assert.match((await get(url, '/')).body.toString(), /<title>mine<\/title>/);
  const bare = await tempDir(t);
  const empty = await serve(t, { publicDirs: [`/@${bare}`] });
  assert.equal((await get(empty.url, '/')).status, 404, 'a mapping at / without index.html: no page of ours');

  const files = createFileServer({ dataDir: await tempDir(t) });
  const host = createServer((req, res) => files.handle(req, res, () => res.end('the host app')));
  await new Promise<void>((ok) => host.listen(0, '127.0.0.1', ok));
  defer(t, () => new Promise<void>((ok) => host.close(() => ok())));
  defer(t, () => files.close());
  const port = (host.address() as { port: number }).port;
  assert.equal((await get(`http://127.0.0.1:${port}`, '/')).body.toString(), 'the host app');
});

// A file where f/ or the temp area should be is cli.test.ts's; this is the mount that root cannot write either.
test('refused at start: a data dir whose f/ cannot be written', async (t) => {
  // A read-only f/: root ignores modes, so it gets a read-only mount there; anyone else a 0500 directory.
  const dataDir = await tempDir(t);
  const f = join(dataDir, 'f');
  await mkdir(f, { mode: 0o700 });
  const root = process.getuid?.() === 0;
  if (root) execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', f]);
  else await chmod(f, 0o500);
  try {
    const r = await runWharf(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`^wharf: uploads dir ${f} is not writable: (read-only file system \\(EROFS\\)|permission denied \\(EACCES\\))\\n$`));
  } finally {
    // Before the temp dir's removal (the hooks of `t.after` run after this).
    if (root) execFileSync('umount', ['-l', f]);
    else await chmod(f, 0o700);
  }
});
