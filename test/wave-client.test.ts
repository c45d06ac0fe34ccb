// Wave's own Python client against wharf, reproduced on the wire (test/helpers/wave-client.ts): what it
// sends for the paths wharf returns, and the names it saves downloads under.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, sha256, tempDir } from './helpers/uploads.js';
import { httpxTarget, pyBasename, waveSite } from './helpers/wave-client.js';

test('the httpx reproduction: request targets as httpx/_urlparse.py builds them', () => {
  const cases: Array<[string, string]> = [
    ['http://h:1/_f/id/ünïcødé 名前 €.txt', '/_f/id/%C3%BCn%C3%AFc%C3%B8d%C3%A9%20%E5%90%8D%E5%89%8D%20%E2%82%AC.txt'],
    ['http://h:1/_f/id/100%25 %231 %3F.txt', '/_f/id/100%25%20%231%20%3F.txt'],
    // `%` is in PATH_SAFE: a `%` that starts no escape goes out raw.
    ['http://h:1/_f/id/100% sure.txt', '/_f/id/100%%20sure.txt'],
    ['http://h:1/_f/id/a+b;c=d&e,f!$\'()*:@.txt', '/_f/id/a+b;c=d&e,f!$\'()*:@.txt'],
    ['http://h:1/_f/id/"q" <a> `b` {c} [d] |e| ^f^.txt', '/_f/id/%22q%22%20%3Ca%3E%20%60b%60%20%7Bc%7D%20[d]%20|e|%20^f^.txt'],
    ['http://h:1/_f/id/hash #1.txt', '/_f/id/hash%20'],
    ['http://h:1/_f/id/what?.txt', '/_f/id/what?.txt'],
    ['http://h:1/_f/id/x?download=a b#frag', '/_f/id/x?download=a%20b'],
    ['http://h:1/a/./b/../c', '/a/c'],
  ];
  for (const [url, target] of cases) assert.equal(httpxTarget(url), target, url);
  assert.equal(pyBasename('/_f/id/ünïcødé 名前 €.txt'), 'ünïcødé 名前 €.txt');
  assert.equal(pyBasename('/_f/id'), 'id');
});

test("Wave's client: upload, then download into a directory, saves each file under the name it was uploaded with", async (t) => {
  const { url } = await serve(t);
  const wave = waveSite(url);
  const into = join(await tempDir(t), 'into');
  await mkdir(into);
  const names = ['ünïcødé 名前 €.txt', 'pixels ü.bin', 'a+b;c=d&e,f.txt', "it's (1) [x] ~!$@:.txt", 'quote "x" <y> `z` {w} |v| ^u^.txt', '🚀.bin', 'plain.txt'];
  const datas = names.map((_, i) => randomBytes(100 + i * 1000));
  const paths = await wave.upload(names.map((name, i) => ({ name, data: datas[i]! })));
  for (const [i, name] of names.entries()) {
    assert.equal(pyBasename(paths[i]!), name, 'the returned path ends in the name, as Wave returns it');
    const saved = await wave.download(paths[i]!, into);
    assert.equal(saved, join(into, name), 'saved under the uploaded name');
    assert.equal(sha256(await readFile(saved)), sha256(datas[i]!), name);
  }
  assert.deepEqual((await readdir(into)).sort(), [...names].sort());
});

test("Wave's client: names with %, # or ? come back whole; it saves them under the escaped segment, as its basename rule reads the URL", async (t) => {
  // On Wave itself these fail: it returns `#` and `?` raw (httpx cuts the URL there) and a raw `%`
  // is a malformed escape (400). wharf escapes exactly these three, so the bytes always come back.
  const { url } = await serve(t);
  const wave = waveSite(url);
  const into = join(await tempDir(t), 'into');
  await mkdir(into);
  const names = ['100% done.txt', 'hash #1.txt', 'what?.txt', '%2e%2e%2f', '%25'];
  const datas = names.map((n) => Buffer.from(`bytes of ${n}`));
  const paths = await wave.upload(names.map((name, i) => ({ name, data: datas[i]! })));
  for (const [i, name] of names.entries()) {
    const segment = name.replace(/[%#?]/g, encodeURIComponent);
    assert.equal(pyBasename(paths[i]!), segment);
    const saved = await wave.download(paths[i]!, into);
    assert.equal(saved, join(into, segment));
    assert.equal((await readFile(saved)).toString(), `bytes of ${name}`, `${name}: its own file, not another`);
  }
});

test("Wave's client: unload with the returned path removes the upload; a second unload raises, as on Wave", async (t) => {
  const { url } = await serve(t);
  const wave = waveSite(url);
  const into = await tempDir(t);
  const paths = await wave.upload([{ name: 'ünïcødé 名前 €.txt', data: Buffer.from('a') }, { name: '100% #1 ?.txt', data: Buffer.from('b') }]);
  for (const p of paths) {
    await wave.unload(p);
    await assert.rejects(wave.download(p, into), /Download failed \(code=404\)/);
    await assert.rejects(wave.unload(p), /Unload failed \(code=404\)/);
  }
  assert.deepEqual(wave.sent.filter((l) => l.startsWith('DELETE')).length, 4);
});

test("Wave's client: unlink twice, or after wharf's idle timeout ended the stream, does not raise", async (t) => {
  const { url, files } = await serve(t, { limits: { streamIdleTimeout: 100 } });
  const wave = waveSite(url);
  const frame = randomBytes(200);
  assert.equal(await wave.uplink('cam 1/live.png', 'image/png', frame), '/_m/cam 1/live.png');
  await wave.unlink('cam 1/live.png');
  await wave.unlink('cam 1/live.png');
  await wave.unlink('never/published');
  await wave.uplink('idle', 'image/png', frame);
  const until = Date.now() + 10_000;
  while (files.streamStats().length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(files.streamStats(), [], 'the idle stream ended itself');
  await wave.unlink('idle');
  assert.deepEqual(wave.sent.filter((l) => l.startsWith('DELETE')), ['DELETE /_m/cam%201/live.png', 'DELETE /_m/cam%201/live.png', 'DELETE /_m/never/published', 'DELETE /_m/idle']);
});
