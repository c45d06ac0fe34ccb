// POST/GET/DELETE {base}_f/ over real HTTP through createFileServer (docs/protocol.md §1, §4).
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:net';
import { RECORD_NAME } from '../lib/uploads/upload-record.js';
import { EMPTY, KEY, MULTIPART, TAIL, form, get, openFds, partHead, settledFds, pieces, repeat, send, serve, settledTree, sha256, sleep, staged, layout, tempDir, tree, upload, type FormPart } from './helpers/uploads.js';
import { rawPost } from './helpers/raw-http.js';
import { defer } from './helpers/defer.js';
import { serveOn, settles, storageTest } from './helpers/storages.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** `{base}_f/<id>/<name>` → [id, name]. */
function split(path: string, base = '/'): [string, string] {
  assert.ok(path.startsWith(`${base}_f/`), path);
  const rest = path.slice(base.length + 3);
  const slash = rest.indexOf('/');
  return [rest.slice(0, slash), rest.slice(slash + 1)];
}

storageTest('POST _f/: each file under a fresh id, answered in order, and every path GETs the file back', async (t, storage) => {
  const { url, dataDir } = await serveOn(storage, t);
  const names = ['plain.txt', 'with space.txt', 'hash#tag.txt', 'what?.txt', '100%.txt', 'résumé 日本語 🚀.txt', 'a+b&c=d;e,f.txt', '.env'];
  const datas = names.map((_, i) => randomBytes(1000 + i * 3000));
  const before = openFds();
  const res = await upload(url, names.map((filename, i) => ({ filename, data: datas[i]! })));
  assert.equal(res.status, 200, res.body.toString());
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.equal(res.json.files.length, names.length);
  const ids = new Set<string>();
  for (const [i, path] of (res.json.files as string[]).entries()) {
    const [id, shown] = split(path);
    assert.match(id, UUID);
    ids.add(id);
    assert.equal(shown, names[i]!.replace(/[%#?]/g, encodeURIComponent), 'the name as stored, as Wave returns it; only %, # and ? escaped');
    if (storage === 'disk') assert.equal(sha256(await readFile(join(dataDir, 'f', id, names[i]!))), sha256(datas[i]!), 'the layout is <dataDir>/f/<id>/<name>');
    // Requested as a browser requests the returned path, and fully percent-encoded.
    for (const p of [path, `/_f/${id}/${encodeURIComponent(names[i]!)}`]) {
      const back = await get(url, p);
      assert.equal(back.status, 200, p);
      assert.equal(sha256(back.body), sha256(datas[i]!), p);
    }
  }
  assert.equal(ids.size, names.length, 'a fresh id per file');
  const head = await send(url, 'HEAD', res.json.files[1]);
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(datas[1]!.length));
  const dl = await get(url, `${res.json.files[5]}?download`);
  assert.equal(dl.status, 200);
  assert.match(String(dl.headers['content-disposition']), /^attachment;.*filename\*=UTF-8''r%C3%A9sum%C3%A9/);
  if (storage === 's3') return;
  assert.deepEqual(await staged(dataDir), [], 'no temp file left');
  assert.equal(await settledFds(before), before, 'no descriptor leaked');
});

test('POST _f/: under a base URL, the answer carries it', async (t) => {
  const { url } = await serve(t, { baseUrl: '/app/' });
  const res = await upload(url, [{ filename: 'x.txt', data: 'x' }], {}, '/app/');
  assert.equal(res.status, 200);
  const [id] = split(res.json.files[0], '/app/');
  assert.match(id, UUID);
  assert.equal((await get(url, res.json.files[0])).body.toString(), 'x');
});

test('POST _f/: fields and file inputs with other names are read and dropped; only "files" parts are stored', async (t) => {
  const { url, dataDir } = await serve(t);
  const res = await upload(url, [
    { name: 'note', data: 'a field' },
    { name: 'files', filename: 'kept.txt', data: 'kept' },
    { name: 'avatar', filename: 'other.png', data: randomBytes(5000) },
    { name: 'files', filename: 'also.txt', data: 'also' },
    { name: 'files', data: 'a field named files, no filename' },
  ]);
  assert.equal(res.status, 200, res.body.toString());
  assert.deepEqual(res.json.files.map((p: string) => split(p)[1]), ['kept.txt', 'also.txt']);
  const stored = (await tree(join(dataDir, 'f'))).filter((p) => !p.endsWith('/'));
  assert.equal(stored.filter((p) => !p.endsWith(`/${RECORD_NAME}`)).length, 2);
  assert.equal(stored.filter((p) => p.endsWith(`/${RECORD_NAME}`)).length, 2, 'each upload id with its record');
});

storageTest('POST _f/: filename* (RFC 5987) wins over filename; raw UTF-8 filename is accepted; names are stored NFC', async (t, storage) => {
  const { url } = await serveOn(storage, t);
  const res = await upload(url, [
    { filename: 'fallback.txt', filenameStar: "UTF-8''r%C3%A9sum%C3%A9%20%231.txt", data: 'star' },
    { filename: 'naïve café.txt', data: 'raw utf-8' },
    { filename: 'cafe\u0301.txt', data: 'nfd' },
  ]);
  assert.equal(res.status, 200, res.body.toString());
  const names = res.json.files.map((p: string) => split(p)[1]);
  assert.deepEqual(names, ['résumé %231.txt', 'naïve café.txt', 'caf\u00e9.txt']);
  assert.equal((await get(url, res.json.files[0])).body.toString(), 'star');
  assert.equal((await get(url, res.json.files[2])).body.toString(), 'nfd');
});

storageTest('POST _f/ directory upload: relative paths kept under one id', async (t, storage) => {
  const { url, dataDir } = await serveOn(storage, t);
  const files: Array<[string, Buffer]> = [
    ['index.html', Buffer.from('<script src="js/app.js"></script>')],
    ['js/app.js', Buffer.from('console.log(1)')],
    ['js/lib/deep er/x #1.js', randomBytes(70_000)],
    ['css/a.css', Buffer.from('')],
  ];
  for (const flag of ['True', 'true', ' TRUE ']) {
    const res = await upload(url, files.map(([filename, data]) => ({ filename, data })), { 'Wave-Directory-Upload': flag });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.json.files.length, 1);
    const [prefix, id] = [res.json.files[0].slice(0, 4), res.json.files[0].slice(4)];
    assert.equal(prefix, '/_f/');
    assert.match(id, UUID);
    for (const [rel, data] of files) {
      const back = await get(url, `/_f/${id}/${rel.split('/').map(encodeURIComponent).join('/')}`);
      assert.equal(back.status, 200, rel);
      assert.equal(sha256(back.body), sha256(data), rel);
    }
    if (storage === 's3') continue;
    assert.deepEqual(await tree(join(dataDir, 'f', id)), [RECORD_NAME, 'css/', 'css/a.css', 'index.html', 'js/', 'js/app.js', 'js/lib/', 'js/lib/deep er/', 'js/lib/deep er/x #1.js']);
    assert.deepEqual(JSON.parse(await readFile(join(dataDir, 'f', id, RECORD_NAME), 'utf8')), { v: 1, trust: 'user', via: 'anonymous' }, 'an anonymous upload: an end user\'s');
  }
});

storageTest('POST _f/ directory upload: bad segments, clashing paths and an empty upload are 400 with nothing stored', async (t, storage) => {
  const { url, stored } = await serveOn(storage, t);
  const dir = { 'Wave-Directory-Upload': 'True' };
  const cases: Array<[FormPart[], string, RegExp]> = [
    [[{ filename: 'ok.txt', data: 'x' }, { filename: 'a/../b.txt', data: 'x' }], 'BAD_FILENAME', /part 2: filename "a\/\.\.\/b\.txt" has a "\.\." segment/],
    [[{ filename: 'a//b.txt', data: 'x' }], 'BAD_FILENAME', /empty path segment/],
    [[{ filename: '/abs/b.txt', data: 'x' }], 'BAD_FILENAME', /absolute/],
    [[{ filename: 'a/b.txt', data: 'x' }, { filename: 'a/b.txt', data: 'y' }], 'DUPLICATE_FILENAME', /part 2/],
    [[{ filename: 'a', data: 'x' }, { filename: 'a/b.txt', data: 'y' }], 'DUPLICATE_FILENAME', /part 2/],
    [[{ filename: 'a/b.txt', data: 'x' }, { filename: 'a', data: 'y' }], 'DUPLICATE_FILENAME', /part 2/],
    [[{ name: 'note', data: 'only a field' }], 'NO_FILES', /directory upload has no files/],
  ];
  for (const [parts, code, message] of cases) {
    const res = await upload(url, parts, dir);
    assert.equal(res.status, 400, JSON.stringify(parts));
    assert.equal(res.json.error, code);
    assert.match(res.json.message, message);
    assert.deepEqual(await stored(), [], 'nothing stored');
  }
  // Without the header (or with another value) a path is refused as in any plain upload.
  for (const headers of [{}, { 'Wave-Directory-Upload': 'False' }]) {
    const res = await upload(url, [{ filename: 'a/b.txt', data: 'x' }], headers);
    assert.equal(res.status, 400);
    assert.match(res.json.message, /contains "\/"/);
  }
});

storageTest('POST _f/: refused names are 400 naming the part, and nothing of the request is stored', async (t, storage) => {
  const { url, stored } = await serveOn(storage, t);
  const good: FormPart = { filename: 'good.txt', data: randomBytes(200_000) };
  const bad: Array<[FormPart, RegExp]> = [
    [{ filename: '../x', data: 'x' }, /contains "\/"/],
    [{ filename: 'a/b', data: 'x' }, /contains "\/"/],
    [{ filename: '/etc/passwd', data: 'x' }, /absolute/],
    [{ filename: 'C:x', data: 'x' }, /absolute/],
    [{ filename: '\\\\server\\share', data: 'x' }, /absolute/],
    [{ filename: 'a\\b.txt', data: 'x' }, /backslash/],
    [{ filename: '..', data: 'x' }, /"\.\." segment/],
    [{ filename: '.', data: 'x' }, /"\." segment/],
    [{ filename: '', data: 'x' }, /is empty/],
    [{ filenameStar: "UTF-8''a%00b", data: 'x' }, /control character/],
    [{ filenameStar: "UTF-8''tab%09.txt", data: 'x' }, /control character/],
    [{ filename: 'x'.repeat(256), data: 'x' }, /longer than 255 bytes/],
    [{ filename: 'NUL.txt', data: 'x' }, /device name/],
  ];
  for (const [part, why] of bad) {
    const res = await upload(url, [good, good, part, good]);
    assert.equal(res.status, 400, `${JSON.stringify(part.filename ?? part.filenameStar)}: ${res.body}`);
    assert.equal(res.json.error, 'BAD_FILENAME');
    assert.match(res.json.message, /^part 3: filename/);
    assert.match(res.json.message, why);
    assert.deepEqual(await stored(), [], `nothing stored for ${JSON.stringify(part)}`);
  }
});

storageTest('POST _f/: no file at all, a body that is not multipart, a malformed body: precise 4xx, nothing stored', async (t, storage) => {
  const { url, stored } = await serveOn(storage, t);
  let res = await upload(url, [{ name: 'note', data: 'x' }]);
  assert.equal(res.status, 400);
  assert.equal(res.json.error, 'NO_FILES');
  res = await send(url, 'POST', '/_f/', Buffer.from('{}'), { 'Content-Type': 'application/json' });
  assert.equal(res.status, 415);
  assert.equal(res.json.error, 'UNSUPPORTED_MEDIA_TYPE');
  res = await send(url, 'POST', '/_f/', Buffer.concat([partHead({ filename: 'cut.txt' }, true), randomBytes(100_000)]), { 'Content-Type': MULTIPART });
  assert.equal(res.status, 400);
  assert.equal(res.json.error, 'MULTIPART_UNEXPECTED_END');
  res = await send(url, 'POST', '/_f/', form([{ filename: 'x' }]), { 'Content-Type': 'multipart/form-data' });
  assert.equal(res.status, 400);
  assert.equal(res.json.error, 'MULTIPART_NO_BOUNDARY');
  assert.deepEqual(await stored(), []);
});

// Both write paths: with every write through the thread pool (a slow disk), files are still being
// written when a limit stops the upload, and the limit must still be what the client is told.
for (const syncIo of ['auto', 'off'] as const) {
  test(`POST _f/ (syncIo ${syncIo}): each limit is a 413 with nothing stored; a limit hit mid-body answers at once and closes the connection`, async (t) => {
    const { port, dataDir } = await serve(t, {
      syncIo,
      limits: { fileSize: 1024 * 1024, files: 3, requestSize: 2 * 1024 * 1024, fields: 2, fieldSize: 1000, headerSize: 2048 },
    });
    const few = await serve(t, { syncIo, limits: { parts: 3 } });
    const big = randomBytes(64 * 1024);
    const headers = { 'Content-Type': MULTIPART, 'Transfer-Encoding': 'chunked' };
    const chunked = function* (body: Iterable<Buffer>): Generator<Buffer> {
      for (const b of body) yield Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
      yield Buffer.from('0\r\n\r\n');
    };
    const file = (i: number): Buffer[] => [partHead({ filename: `f${i}.bin` }, i === 0), Buffer.from('x')];
    const cases: Array<[string, number, () => Iterable<Buffer>]> = [
      // 64 MiB in one file: refused once 1 MiB has passed, long before the client is done.
      ['LIMIT_FILE_SIZE', port, () => pieces(partHead({ filename: 'big.bin' }, true), repeat(big, 1024), TAIL)],
      ['LIMIT_FILES', port, () => pieces(...[0, 1, 2, 3].flatMap(file), TAIL)],
      // Three files just under 1 MiB each: over the 2 MiB request limit in the third.
      ['LIMIT_REQUEST_SIZE', port, () => pieces(...[0, 1, 2].flatMap((i) => [partHead({ filename: `f${i}.bin` }, i === 0), ...repeat(big, 15)]), TAIL)],
      ['LIMIT_FIELDS', port, () => pieces(...[0, 1, 2].map((i) => partHead({ name: `n${i}` }, i === 0)), TAIL)],
      ['LIMIT_FIELD_SIZE', port, () => pieces(partHead({ name: 'note' }, true), Buffer.alloc(2000, 'a'), TAIL)],
      ['MULTIPART_HEADER_TOO_LARGE', port, () => pieces(partHead({ filename: 'x'.repeat(3000) }, true), TAIL)],
      ['LIMIT_PARTS', few.port, () => pieces(...[0, 1, 2, 3].flatMap(file), TAIL)],
    ];
    for (const [code, to, body] of cases) {
      const res = await rawPost(to, '/_f/', headers, chunked(body()));
      assert.equal(res.status, 413, `${code}: ${res.body}`);
      assert.equal(JSON.parse(res.body).error, code);
      if (code === 'LIMIT_FILE_SIZE' || code === 'LIMIT_REQUEST_SIZE') {
        assert.equal(res.headers['connection'], 'close', code);
      }
      // A body cut short is not drained: the connection closes. A small body that arrived whole may keep it.
      assert.equal(res.closed, res.headers['connection'] === 'close', `${code}: closed ${res.closed}, connection ${res.headers['connection']}`);
      assert.deepEqual(await settledTree(dataDir), EMPTY, `${code}: nothing stored`);
      assert.deepEqual(await settledTree(few.dataDir), EMPTY, `${code}: nothing stored`);
    }
    // The file-size limit is hit well before the 64 MiB body is over: the client could not send it all.
    const cut = await rawPost(port, '/_f/', headers, chunked(cases[0]![2]()));
    assert.ok(cut.sent < 32 * 1024 * 1024, `sent ${cut.sent} bytes of 64 MiB before the answer`);
  });
}

test('POST _f/: a Content-Length over requestSize is refused before the body, also with Expect: 100-continue', async (t) => {
  const { port, dataDir } = await serve(t, { limits: { requestSize: 1000 } });
  for (const extra of [{}, { Expect: '100-continue' }]) {
    const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': 5000, ...extra }, repeat(Buffer.alloc(1000), 5), { stall: 0 });
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.body).error, 'LIMIT_REQUEST_SIZE');
    assert.equal(res.sent, 0);
  }
  assert.deepEqual(await layout(dataDir), EMPTY);
});

test('POST _f/: a body that stops arriving is a 408 after uploadIdleTimeout, with nothing stored', async (t) => {
  const { port, dataDir } = await serve(t, { limits: { uploadIdleTimeout: 300 } });
  const body = form([{ filename: 'slow.bin', data: randomBytes(50_000) }]);
  const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': body.length }, [body.subarray(0, 20_000), body.subarray(20_000)], { stall: 20_000 });
  assert.equal(res.status, 408);
  assert.equal(JSON.parse(res.body).error, 'BODY_TIMEOUT');
  assert.ok(res.closed);
  assert.deepEqual(await settledTree(dataDir), EMPTY);
});

test('POST _f/: a slow but live upload is not cut off, and nothing of it is visible before it is whole', async (t) => {
  const { port, url, dataDir } = await serve(t, { limits: { uploadIdleTimeout: 300 } });
  const data = randomBytes(3 * 1024 * 1024);
  const body = form([{ filename: 'slow.bin', data }]);
  const visible: string[][] = [];
  const slices = async function* (): AsyncGenerator<Buffer> {
    // 10 slices, 150 ms apart: 1.5 s in all, five times the idle timeout, never idle for as long as it.
    // What is visible is looked at before each later slice, so nothing runs once the last is sent.
    for (let i = 0; i < 10; i++) {
      if (i > 0) {
        await sleep(150);
        visible.push(await tree(join(dataDir, 'f')));
      }
      yield body.subarray((i * body.length) / 10, ((i + 1) * body.length) / 10);
    }
  };
  const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': body.length }, slices());
  assert.equal(res.status, 200, res.body);
  assert.equal(visible.length, 9);
  assert.ok(visible.every((v) => v.length === 0), 'no f/<id> while the upload is in flight');
  assert.equal(sha256((await get(url, JSON.parse(res.body).files[0])).body), sha256(data));
});

storageTest('POST _f/: a client that sends half of a 20 MiB body and goes away leaves nothing, and the next upload works', async (t, storage) => {
  const { port, url, stored } = await serveOn(storage, t);
  const before = openFds();
  const mib = randomBytes(1024 * 1024);
  const length = 20 * 1024 * 1024 + 1000;
  const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': length },
    pieces(partHead({ filename: 'half.bin' }, true), repeat(mib, 20), TAIL), { destroyAfter: 10 * 1024 * 1024 });
  assert.equal(res.status, 0);
  await settles(async () => assert.deepEqual(await stored(), [], 'no temp file, no f/<id>, no unfinished multipart upload'));
  const next = await upload(url, [{ filename: 'next.txt', data: 'next' }]);
  assert.equal(next.status, 200);
  assert.equal((await get(url, next.json.files[0])).body.toString(), 'next');
  // With S3, the SDK keeps connections to the store open for the next request: not descriptors of the upload.
  if (storage === 'disk') assert.equal(await settledFds(before), before);
});

test('POST _f/: 50 concurrent uploads of distinct files all arrive intact', async (t) => {
  const { url } = await serve(t);
  const datas = Array.from({ length: 50 }, (_, i) => randomBytes(30_000 + i * 7919));
  const answers = await Promise.all(datas.map((data, i) => upload(url, [{ filename: `c${i}.bin`, data }])));
  const ids = new Set<string>();
  for (const [i, res] of answers.entries()) {
    assert.equal(res.status, 200);
    ids.add(split(res.json.files[0])[0]);
    assert.equal(sha256((await get(url, res.json.files[0])).body), sha256(datas[i]!), `upload ${i}`);
  }
  assert.equal(ids.size, 50);
});

storageTest('DELETE _f/<id>: needs a key, removes the whole upload, 404 when absent, never touches anything else', async (t, storage) => {
  const { url, dataDir } = await serveOn(storage, t);
  const dirUpload = await upload(url, [{ filename: 'a/b.txt', data: 'b' }, { filename: 'c.txt', data: 'c' }], { 'Wave-Directory-Upload': 'True' });
  const plain = await upload(url, [{ filename: 'keep.txt', data: 'keep' }]);
  const id = dirUpload.json.files[0].slice(4);
  let res = await send(url, 'DELETE', `/_f/${id}`);
  assert.equal(res.status, 401);
  res = await send(url, 'DELETE', `/_f/${id}/a/b.txt`, undefined, { Authorization: KEY });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { removed: `/_f/${id}` });
  assert.equal((await get(url, `/_f/${id}/c.txt`)).status, 404, 'the whole upload went');
  res = await send(url, 'DELETE', `/_f/${id}`, undefined, { Authorization: KEY });
  assert.equal(res.status, 404);
  assert.equal(res.json.error, 'NOT_FOUND');
  if (storage === 'disk') {
    await mkdir(join(dataDir, 'f', 'not-an-id'));
    await writeFile(join(dataDir, 'f', 'not-an-id', 'x'), 'x');
  }
  for (const bad of ['not-an-id', '..', '%2e%2e', id.toUpperCase(), '.wharf-tmp']) {
    res = await send(url, 'DELETE', `/_f/${bad}`, undefined, { Authorization: KEY });
    assert.equal(res.status, 404, bad);
  }
  // DELETE paths follow the rules of file paths (lib/http/request-path.ts): what no honest URL holds is 400.
  // (Dot segments, which this client resolves before sending, are in the security table.)
  const keep = (plain.json.files[0] as string).split('/')[2]!;
  for (const bad of [`..%2F..%2F${keep}`, `${keep}%2F`, `${keep.slice(0, -1)}%${keep.slice(-1)}`, `${keep}/a%5Cb`, `${keep}/a%00b`]) {
    res = await send(url, 'DELETE', `/_f/${bad}`, undefined, { Authorization: KEY });
    assert.equal(res.status, 400, bad);
    assert.equal(res.json.error, 'BAD_PATH', bad);
  }
  assert.equal((await get(url, plain.json.files[0])).body.toString(), 'keep');
  if (storage === 's3') return;
  assert.ok((await tree(join(dataDir, 'f'))).includes('not-an-id/x'));
  assert.deepEqual(await staged(dataDir), []);
});

storageTest('DELETE _f/<id>/<name>: the returned path as a browser sends it or fully percent-encoded; a stray % on the wire is 400 and deletes nothing', async (t, storage) => {
  const { url } = await serveOn(storage, t);
  const names = ['ünïcødé 名前 €.txt', '100% #1 ?.txt', '100% sure.txt'];
  const res = await upload(url, names.map((filename) => ({ filename, data: filename })));
  const paths = res.json.files as string[];
  // Hand-built with the `%` unescaped: `100%%20sure.txt` on the wire is malformed percent-encoding,
  // refused as on GET (the in-process site and the client take it literally: they are not the wire).
  const stray = await send(url, 'DELETE', paths[2]!.replace('%25', '%'), undefined, { Authorization: KEY });
  assert.equal(stray.status, 400);
  assert.equal(stray.json.error, 'BAD_PATH');
  assert.equal((await get(url, paths[2]!)).status, 200, 'nothing deleted');
  const forms = [
    paths[0]!, // node:http puts it on the wire as browsers do: spaces and non-ASCII escaped
    `${paths[1]!.slice(0, paths[1]!.lastIndexOf('/'))}/${encodeURIComponent(names[1]!)}`,
    paths[2]!,
  ];
  for (const [i, form] of forms.entries()) {
    const del = await send(url, 'DELETE', form, undefined, { Authorization: KEY });
    assert.equal(del.status, 200, form);
    assert.deepEqual(del.json, { removed: paths[i]!.slice(0, paths[i]!.lastIndexOf('/')) });
    assert.equal((await get(url, paths[i]!)).status, 404, `${form} is gone`);
  }
});

test('POST _f/: an upload in flight when the server closes is aborted, its bytes removed', async (t) => {
  const { files, port, dataDir } = await serve(t);
  const mib = randomBytes(1024 * 1024);
  const answer = rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': 10 * 1024 * 1024 + 500 },
    pieces(partHead({ filename: 'cut.bin' }, true), repeat(mib, 10), TAIL), { stall: 3 * 1024 * 1024 });
  while ((await staged(dataDir)).length === 0) await new Promise((r) => setTimeout(r, 10));
  await files.close();
  const res = await answer;
  assert.equal(res.status, 503);
  assert.equal(JSON.parse(res.body).error, 'SHUTTING_DOWN');
  assert.deepEqual(await tree(dataDir), EMPTY, "closed: the node's own staging area is gone too");
});

test('start: what a dead node left in the temp area is swept before the first upload; a live node\'s area is kept', async (t) => {
  const dataDir = await tempDir(t);
  const temp = join(dataDir, '.wharf-tmp');
  // A crashed run of an older wharf (no lease: its own mtime says when it was last alive), and a
  // node whose lease was last rewritten an hour ago: both dead.
  await mkdir(join(temp, '999999999.deadbeef.1'), { recursive: true });
  await writeFile(join(temp, '999999999.deadbeef.1', 'partial.bin'), randomBytes(1000));
  await mkdir(join(temp, 'gone.0badcafe', '1'), { recursive: true });
  await writeFile(join(temp, 'gone.0badcafe', '1', 'partial.bin'), randomBytes(1000));
  await writeFile(join(temp, 'gone.0badcafe', 'lease'), '{}');
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const p of ['999999999.deadbeef.1', 'gone.0badcafe/lease', 'gone.0badcafe']) await utimes(join(temp, p), hourAgo, hourAgo);
  // A node alive elsewhere, its lease fresh (its area's own mtime old: the lease is what counts).
  await mkdir(join(temp, 'alive.feedf00d', '1'), { recursive: true });
  await writeFile(join(temp, 'alive.feedf00d', '1', 'in-flight.bin'), randomBytes(1000));
  await writeFile(join(temp, 'alive.feedf00d', 'lease'), '{}');
  await utimes(join(temp, 'alive.feedf00d'), hourAgo, hourAgo);
  const { url } = await serve(t, {}, dataDir);
  const res = await upload(url, [{ filename: 'x.txt', data: 'x' }]);
  assert.equal(res.status, 200);
  assert.deepEqual(await staged(dataDir), ['alive.feedf00d/1/', 'alive.feedf00d/1/in-flight.bin']);
});

test('POST _f/: an idle timeout of a month keeps an idle upload waiting quietly (no timer re-armed every millisecond)', async (t) => {
  const month = 30 * 24 * 3600 * 1000;
  const { port } = await serve(t, { limits: { uploadIdleTimeout: month } });
  let overflows = 0;
  const onWarning = (w: Error): void => {
    if (w.name === 'TimeoutOverflowWarning') overflows++;
  };
  process.on('warning', onWarning);
  defer(t, () => process.off('warning', onWarning));
  const socket = connect(port, '127.0.0.1');
  defer(t, () => socket.destroy());
  socket.write(`POST /_f/ HTTP/1.1\r\nHost: x\r\nContent-Type: ${MULTIPART}\r\nContent-Length: 100000\r\n\r\n`);
  socket.write(partHead({ filename: 'idle.bin' }, true));
  await sleep(500);
  assert.equal(overflows, 0, 'a timer past 2^31-1 ms fires after 1 ms, with a warning each time');
  assert.equal(socket.destroyed, false, 'the upload still waits for its body');
});
