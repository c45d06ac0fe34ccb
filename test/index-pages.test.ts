// Index pages: a directory's URL with its slash serves its index.html, without it redirects there
// (as Wave's server), for directory uploads and mappings; never a listing, never a redirect off-site.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFileServer, WharfError } from '../lib/index.js';
import { startWharfProcess } from './helpers/command.js';
import { rawGet } from './helpers/raw-http.js';
import { form, get, send, serve, tempDir } from './helpers/uploads.js';
import { serveOn, storageTest } from './helpers/storages.js';

/** A site: index pages at the top and in guide/, a directory without one, a dot-directory with one. */
async function site(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await tempDir(t);
  const files: Record<string, string> = {
    'index.html': '<!doctype html><title>top</title><a href="guide/">guide</a>',
    'guide/index.html': '<!doctype html><title>guide</title>',
    'guide/a.txt': 'a',
    'bare/x.txt': 'x',
    '.hidden/index.html': 'hidden',
    'evil.example/index.html': 'a directory named like a host',
    'http:/index.html': 'a directory named like a scheme',
  };
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

const location = (a: { headers: Record<string, unknown> }): string => String(a.headers.location);

storageTest('a directory upload: <id> redirects to <id>/, which serves its index.html; so does a directory in it', async (t, storage) => {
  const { url, files } = await serveOn(storage, t);
  const [tree] = await files.site.uploadDir(await site(t));
  const id = tree!.slice('/_f/'.length);

  const bare = await get(url, tree!);
  assert.equal(bare.status, 301);
  assert.equal(location(bare), `./${id}/`);
  assert.equal(bare.headers['content-length'], '0');
  assert.equal(location(await get(url, `${tree}?x=1&y=%20z`)), `./${id}/?x=1&y=%20z`, 'the query string is kept');
  assert.equal(location(await send(url, 'HEAD', tree!)), `./${id}/`);

  const top = await get(url, `${tree}/`);
  assert.equal(top.status, 200);
  assert.match(top.body.toString(), /<title>top<\/title>/);
  assert.match(String(top.headers['content-type']), /^text\/html/);
  assert.equal((await send(url, 'HEAD', `${tree}/`)).status, 200);
  assert.equal(location(await get(url, `${tree}/guide`)), './guide/');
  assert.match((await get(url, `${tree}/guide/`)).body.toString(), /<title>guide<\/title>/);

  // Followed as a browser does: the page's URL ends in a slash, so its relative links stay inside.
  const followed = await fetch(`${url}${tree}`);
  assert.equal(followed.url, `${url}${tree}/`);
  assert.match(await followed.text(), /<title>top<\/title>/);

  // No listings: a directory without index.html is a 404 with or without its slash.
  for (const p of [`${tree}/bare`, `${tree}/bare/`, `${tree}/none`, `${tree}/none/`]) assert.equal((await get(url, p)).status, 404, p);
  // A plain upload's id is a directory without index.html too.
  const plain = await files.site.upload([join(await site(t), 'guide', 'a.txt')]);
  const plainId = plain[0]!.slice(0, plain[0]!.lastIndexOf('/'));
  assert.equal((await get(url, plainId)).status, 404);
  assert.equal((await get(url, `${plainId}/`)).status, 404);
});

storageTest("an end user's directory upload: its index page keeps the end user's rules (sandboxed, saved, never rendered)", async (t, storage) => {
  const { url } = await serveOn(storage, t);
  const up = await send(url, 'POST', '/_f/', form([{ filename: 'index.html', contentType: 'text/html', data: '<script>alert(1)</script>' }]), {
    'Content-Type': 'multipart/form-data; boundary=----wharf-test-boundary-7MA4YWxkTrZu0gW', 'Wave-Directory-Upload': 'True',
  });
  assert.equal(up.status, 200);
  const [tree] = up.json.files as string[];
  assert.equal((await get(url, tree!)).status, 301);
  const page = await get(url, `${tree}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'application/octet-stream');
  assert.match(String(page.headers['content-disposition']), /^attachment/);
  assert.match(String(page.headers['content-security-policy']), /sandbox/);
});

test('a mapping: its own URL and its directories redirect to their slash and serve index.html; dot-directories stay hidden', async (t) => {
  const dir = await site(t);
  const { url, port } = await serve(t, { publicDirs: [`/docs/@${dir}`] });
  assert.equal(location(await get(url, '/docs')), './docs/');
  assert.equal(location(await get(url, '/d%6Fcs?v=2')), './docs/?v=2', 'the segment as routing decoded it');
  assert.match((await get(url, '/docs/')).body.toString(), /<title>top<\/title>/);
  assert.equal(location(await get(url, '/docs/guide')), './guide/');
  assert.match((await get(url, '/docs/guide/')).body.toString(), /<title>guide<\/title>/);
  assert.equal((await get(url, '/docs/guide/a.txt')).body.toString(), 'a');
  // Raw: a URL parser would resolve the %2e%2e before sending it.
  for (const p of ['/docs/.hidden', '/docs/.hidden/', '/docs/bare', '/docs/bare/', '/docs/%2e%2e/', '/docs/guide/%2E/', '/docs/guide/a.txt/']) {
    assert.equal((await rawGet(port, p)).status, 404, p);
  }
  assert.equal((await get(url, '/docs/guide%2F')).status, 400, 'an encoded slash is no directory');
});

test('a private mapping: its index pages and redirects only after authorization', async (t) => {
  const dir = await site(t);
  const { url } = await serve(t, { privateDirs: [`/priv/@${dir}`], accessKeys: { app: 'app-secret' } });
  for (const p of ['/priv', '/priv/', '/priv/guide', '/priv/guide/']) assert.equal((await get(url, p)).status, 401, p);
  const auth = { Authorization: `Basic ${Buffer.from('app:app-secret').toString('base64')}` };
  const redirect = await get(url, '/priv/guide', auth);
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers['cache-control'], 'private, no-cache');
  assert.equal((await get(url, '/priv/guide/', auth)).status, 200);
});

test('no open redirect: whatever the path, a Location stays on this server', async (t) => {
  const dir = await site(t);
  const { url, port } = await serve(t, { publicDirs: [`/@${dir}`] });
  const paths = ['//evil.example', '//evil.example/', '///evil.example', '/%2F%2Fevil.example', '/%2fevil.example', '/\\evil.example', '/%5Cevil.example',
    '/evil.example', '/http:', '/http:?next=//evil.example', '//evil.example/%2e%2e', '/./evil.example', '/%09/evil.example'];
  const seen: Array<[string, number, string | undefined]> = [];
  for (const p of paths) {
    const got = await rawGet(port, p);
    const loc = /\r\nLocation: ([^\r]*)/i.exec(got.text)?.[1];
    seen.push([p, got.status, loc]);
    if (loc !== undefined) {
      assert.ok(loc.startsWith('./'), `${p}: ${loc}`);
      assert.equal(new URL(loc, `${url}${p}`).origin, url, `${p} -> ${loc}`);
    }
  }
  // Only the two real directories redirect; everything else is refused.
  assert.deepEqual(seen.filter(([, s]) => s === 301).map(([p, , l]) => [p, l]), [
    ['/evil.example', './evil.example/'], ['/http:', './http:/'], ['/http:?next=//evil.example', './http:/?next=//evil.example'],
  ]);
  for (const [p, s] of seen) if (s !== 301) assert.ok(s === 400 || s === 404, `${p}: ${s}`);
  assert.equal(new URL('./http:/?next=//evil.example', `${url}/http:`).href, `${url}/http:/?next=//evil.example`);
});

test('indexPages: false: every directory URL is a 404; the option is checked', async (t) => {
  const dir = await site(t);
  const { url, files } = await serve(t, { publicDirs: [`/docs/@${dir}`], indexPages: false });
  const [tree] = await files.site.uploadDir(dir);
  for (const p of ['/docs', '/docs/', '/docs/guide', '/docs/guide/', tree!, `${tree}/`]) assert.equal((await get(url, p)).status, 404, p);
  assert.equal((await get(url, `${tree}/index.html`)).status, 200);
  const cli = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', await tempDir(t), '--log', 'json', '--public-dir', `/docs/@${dir}`, '--no-index-pages']);
  assert.equal((await get(cli.url, '/docs/')).status, 404);
  assert.equal((await get(cli.url, '/docs/guide/a.txt')).status, 200);
  cli.proc.kill('SIGTERM');
  await cli.exited;
  assert.throws(() => createFileServer({ indexPages: 'yes' as never }), (e: unknown) => e instanceof WharfError && /indexPages: expected true or false/.test(e.message));
});
