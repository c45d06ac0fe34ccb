import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import test from 'node:test';
import { connect, WharfError, type Site } from '../lib/client/index.js';
import { createFileServer } from '../lib/http/server.js';
import { KEY, UUID, eventually, fetchRaw, filesUnder, sha256, sha256File, startWharf, tempDir } from './helpers/client.js';
import { layout } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

const isWharfError = (code: string, status?: number) => (err: unknown): boolean => {
  assert.ok(err instanceof WharfError, `expected a WharfError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (status !== undefined) assert.equal(err.status, status);
  return true;
};


/** Every file under the data dir but the running node's lease: what uploads left. */
const storedFiles = async (dataDir: string): Promise<string[]> => (await layout(dataDir)).filter((p) => !p.endsWith('/'));

test('upload, download and unload over HTTP: bytes equal, names kept, layout as the protocol says', async (t) => {
  const { url, dataDir } = await startWharf(t);
  const dir = await tempDir(t);
  const names = ['notes.txt', 'résumé 📄.txt', 'it\'s "quoted" 100%.bin', 'big.bin'];
  const contents = [Buffer.from('hello wharf\n'), Buffer.from('ünïcödé'), randomBytes(1000), randomBytes(3 * 1024 * 1024 + 7)];
  for (const [i, name] of names.entries()) await writeFile(join(dir, name), contents[i]!);
  const site = connect(url, KEY);
  defer(t, () => site.close());

  const paths = await site.upload(names.map((n) => join(dir, n)));
  assert.equal(paths.length, names.length);
  for (const [i, p] of paths.entries()) {
    assert.match(p, new RegExp(`^/_f/${UUID}/`));
    assert.equal(p.slice(p.lastIndexOf('/') + 1), names[i]!.replace(/[%#?]/g, encodeURIComponent), 'the name as stored; only %, # and ? escaped');
    const got = await fetchRaw(url + p);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), sha256(contents[i]!), names[i]);
    // The disk layout is part of the contract: <dataDir>/f/<id>/<filename>.
    const id = p.split('/')[2]!;
    assert.equal(await sha256File(join(dataDir, 'f', id, names[i]!)), sha256(contents[i]!));
  }
  // Each file its own id, in the order sent.
  assert.equal(new Set(paths.map((p) => p.split('/')[2])).size, names.length);

  const into = await tempDir(t);
  for (const [i, p] of paths.entries()) {
    const written = await site.download(p, into);
    assert.equal(written, join(into, names[i]!), 'a directory target keeps the file name');
    assert.equal(await sha256File(written), sha256(contents[i]!));
  }
  const explicit = join(into, 'renamed.bin');
  assert.equal(await site.download(paths[3]!, explicit), explicit);
  assert.equal(await sha256File(explicit), sha256(contents[3]!));
  assert.deepEqual((await readdir(into)).sort(), [...names, 'renamed.bin'].sort(), 'no temp file left behind');

  await site.unload(paths[0]!);
  assert.equal((await fetchRaw(url + paths[0]!)).status, 404);
  assert.equal((await fetchRaw(url + paths[1]!)).status, 200, 'other uploads stay');
  await assert.rejects(site.unload(paths[0]!), isWharfError('NOT_FOUND', 404));
});

test('download and unload take the path as returned, fully percent-encoded, or hand-built; the request line is encoded once', async (t) => {
  const dir = await tempDir(t);
  const files = createFileServer({ dataDir: join(dir, 'data'), accessKeys: { [KEY.accessKeyId]: KEY.accessKeySecret }, warn: () => {} });
  const lines: string[] = [];
  const server = http.createServer((req, res) => {
    lines.push(`${req.method} ${req.url}`);
    files.handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, async () => {
    await files.close();
    await new Promise((resolve) => server.close(resolve));
  });
  const site = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`, KEY);
  defer(t, () => site.close());
  // No sub-delims in these names: what goes on the wire is then exactly encodeURIComponent(name).
  const names = ['ünïcødé 名前 €.txt', '100% #1 ?.txt', '%2e%2e%2f', '100% sure.txt'];
  for (const n of names) await writeFile(join(dir, n), `bytes of ${n}`);
  const paths = await site.upload(names.map((n) => join(dir, n)));
  const into = join(dir, 'into');
  await mkdir(into);
  for (const [i, name] of names.entries()) {
    const id = paths[i]!.split('/')[2]!;
    const wire = `/_f/${id}/${encodeURIComponent(name)}`;
    const forms = [paths[i]!, wire];
    // By hand, with a `%` that starts no escape (a raw `#` or `?` would start a fragment or query
    // as in any URL, and a name that reads as escapes, `%2e%2e%2f`, reads as what it escapes).
    if (/%(?![0-9A-Fa-f]{2})/.test(name) && !/[#?]/.test(name)) forms.push(`/_f/${id}/${name}`);
    for (const form of forms) {
      lines.length = 0;
      assert.equal(await site.download(form, into), join(into, name), `${form}: saved under its real name`);
      assert.equal(await readFile(join(into, name), 'utf8'), `bytes of ${name}`);
      assert.deepEqual(lines, [`GET ${wire}`], `${form}: encoded once on the request line`);
    }
  }
  lines.length = 0;
  await site.unload(paths[0]!);
  await site.unload(`/_f/${paths[1]!.split('/')[2]}/${encodeURIComponent(names[1]!)}`);
  await site.unload(paths[3]!.replace('%25', '%'));
  assert.deepEqual(lines, [0, 1, 3].map((i) => `DELETE /_f/${paths[i]!.split('/')[2]}/${encodeURIComponent(names[i]!)}`));
  await assert.rejects(site.download(paths[0]!, into), isWharfError('NOT_FOUND', 404));
});

test('uploadDir: one id, structure kept, symlinked files sent and symlinked directories not entered', async (t) => {
  const { url } = await startWharf(t);
  const root = await tempDir(t);
  const tree = join(root, 'site');
  await mkdir(join(tree, 'a', 'b'), { recursive: true });
  await mkdir(join(tree, 'empty'));
  const files: Record<string, Buffer> = {
    'index.html': Buffer.from('<h1>hi</h1>'),
    'a/app.js': Buffer.from('console.log(1)'),
    'a/b/data.bin': randomBytes(200_000),
    'ünï/ço dé.txt': Buffer.from('x'),
  };
  for (const [rel, data] of Object.entries(files)) {
    await mkdir(join(tree, rel, '..'), { recursive: true });
    await writeFile(join(tree, rel), data);
  }
  await writeFile(join(root, 'outside.txt'), 'linked');
  await symlink(join(root, 'outside.txt'), join(tree, 'link.txt'));
  await symlink(join(tree, 'a'), join(tree, 'loop'));

  const site = connect(url, KEY);
  const progress: number[] = [];
  const [path, ...rest] = await site.uploadDir(tree, { onProgress: (p) => progress.push(p.loaded) });
  assert.equal(rest.length, 0);
  assert.match(path!, new RegExp(`^/_f/${UUID}$`));
  for (const [rel, data] of Object.entries({ ...files, 'link.txt': Buffer.from('linked') })) {
    const got = await fetchRaw(`${url}${path}/${rel.split('/').map(encodeURIComponent).join('/')}`);
    assert.equal(got.status, 200, rel);
    assert.equal(sha256(got.body), sha256(data), rel);
  }
  assert.equal((await fetchRaw(`${url}${path}/loop/app.js`)).status, 404, 'a symlinked directory is not entered');
  assert.equal(progress.at(-1), Object.values(files).reduce((n, b) => n + b.length, 0) + 'linked'.length);

  await assert.rejects(site.uploadDir(join(tree, 'empty')), isWharfError('NO_FILES', 400));
  await assert.rejects(site.uploadDir(join(root, 'nope')), isWharfError('NOT_FOUND', 404));
});

test('uplink and unlink: the viewer path, the frame on the wire, the end of the stream', async (t) => {
  const { url } = await startWharf(t);
  const site = connect(url, KEY);
  const frame = randomBytes(5000);
  const path = await site.uplink('cam 1/live.png', 'image/png', frame);
  assert.equal(path, '/_m/cam%201/live.png');

  const viewer = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url + path, resolve).on('error', reject));
  assert.equal(viewer.statusCode, 200);
  assert.match(String(viewer.headers['content-type']), /^multipart\/x-mixed-replace; boundary=/);
  const chunks: Buffer[] = [];
  const ended = new Promise<void>((resolve) => viewer.on('end', resolve));
  viewer.on('data', (c: Buffer) => chunks.push(c));
  const second = randomBytes(3000);
  assert.ok(await eventually(async () => Buffer.concat(chunks).includes(frame)), 'the latest frame reaches a new viewer');
  await site.uplink('cam 1/live.png', 'image/png', second);
  assert.ok(await eventually(async () => Buffer.concat(chunks).includes(second)));
  await site.unlink('cam 1/live.png');
  await ended;
  assert.match(Buffer.concat(chunks).toString('latin1'), /--\r?\n?$|--\s*$/, 'the stream ends with the closing delimiter');

  // Unlinking again is fine, as on Wave (whose client raises on anything but 200).
  assert.equal(await site.unlink('cam 1/live.png'), undefined);
  assert.equal(await site.unlink('never published'), undefined);
  await assert.rejects(site.uplink('', 'image/png', frame), isWharfError('INVALID_STREAM_NAME', 400));
  await assert.rejects(site.unlink('\ud800'), isWharfError('INVALID_STREAM_NAME', 400));
  await assert.rejects(site.uplink('x', 'image/png', new Uint8Array(0)), (e: unknown) => e instanceof WharfError && e.status === 400);
});

test('100 uplinks reuse one or two keep-alive connections', async (t) => {
  const { url, connections } = await startWharf(t, {}, true);
  const site = connect(url, KEY);
  defer(t, () => site.close());
  for (let i = 0; i < 100; i++) await site.uplink('loop', 'image/jpeg', Buffer.from(`frame ${i}`));
  await site.unlink('loop');
  const n = connections();
  assert.ok(n >= 1 && n <= 2, `${n} connections for 101 calls`);
});

test('errors are typed: the HTTP status and the server\'s JSON code and message', async (t) => {
  const { url, dataDir } = await startWharf(t, { limits: { fileSize: 1000, requestSize: 64 * 1024 } });
  const dir = await tempDir(t);
  await writeFile(join(dir, 'small.txt'), 'x');
  await writeFile(join(dir, 'large.bin'), randomBytes(2000));
  await writeFile(join(dir, 'huge.bin'), randomBytes(4 * 1024 * 1024));

  const wrong = connect(url, { accessKeyId: KEY.accessKeyId, accessKeySecret: 'wrong' });
  await assert.rejects(wrong.upload([join(dir, 'small.txt')]), (err: unknown) => {
    isWharfError('UNAUTHORIZED', 401)(err);
    assert.match((err as Error).message, /access key/);
    return true;
  });
  await assert.rejects(wrong.uplink('s', 'image/png', Buffer.from('x')), isWharfError('UNAUTHORIZED', 401));

  const site = connect(url, KEY);
  await assert.rejects(site.upload([join(dir, 'small.txt'), join(dir, 'large.bin')]), isWharfError('LIMIT_FILE_SIZE', 413));
  // Content-Length over requestSize: refused before the body is read, and still reported as a 413.
  await assert.rejects(site.upload([join(dir, 'huge.bin')]), isWharfError('LIMIT_REQUEST_SIZE', 413));
  assert.deepEqual(await filesUnder(join(dataDir, 'f')), [], 'nothing of a refused upload is stored');
  // The client still works on the same server afterwards.
  const [ok] = await site.upload([join(dir, 'small.txt')]);
  assert.equal((await fetchRaw(url + ok!)).body.toString(), 'x');

  await assert.rejects(site.download('/_f/00000000-0000-4000-8000-000000000000/x.txt', dir), isWharfError('NOT_FOUND', 404));
  assert.deepEqual((await readdir(dir)).sort(), ['huge.bin', 'large.bin', 'small.txt'], 'a failed download leaves nothing');
  await assert.rejects(site.upload([]), isWharfError('NO_FILES', 400));
  await assert.rejects(site.upload([join(dir, 'missing.txt')]), isWharfError('NOT_FOUND', 404));
  await assert.rejects(site.upload([dir]), isWharfError('NOT_A_FILE', 400));
  await assert.rejects(site.download(ok!, join(dir, 'no', 'such', 'dir', 'x')), isWharfError('NOT_FOUND', 404));
  await assert.rejects(site.download('/', dir), isWharfError('BAD_NAME', 400));
  await assert.rejects(site.download('ftp://example.com/x', dir), isWharfError('INVALID_OPTION'));
  assert.throws(() => connect('not a url'), isWharfError('INVALID_OPTION'));
  assert.throws(() => connect('ftp://127.0.0.1/'), isWharfError('INVALID_OPTION'));

  const refused = connect('http://127.0.0.1:1', { ...KEY, retries: 1, retryDelay: 1 });
  await assert.rejects(refused.unload('/_f/x'), isWharfError('NETWORK', 0));
  await assert.rejects(refused.download('/_f/x/y.txt', dir), isWharfError('NETWORK', 0));
});

test('progress is monotonic and ends at the total, for upload and download', async (t) => {
  const { url } = await startWharf(t);
  const dir = await tempDir(t);
  const a = randomBytes(2 * 1024 * 1024);
  const b = randomBytes(123_457);
  await writeFile(join(dir, 'a.bin'), a);
  await writeFile(join(dir, 'b.bin'), b);
  await writeFile(join(dir, 'empty.txt'), '');
  const site = connect(url, KEY);

  const check = (events: Array<{ loaded: number; total: number | undefined }>, total: number): void => {
    assert.ok(events.length >= 2, 'more than one event');
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.loaded > events[i - 1]!.loaded, 'strictly increasing');
    for (const e of events) assert.equal(e.total, total);
    assert.deepEqual(events.at(-1), { loaded: total, total });
  };
  const up: Array<{ loaded: number; total: number | undefined }> = [];
  const paths = await site.upload([join(dir, 'a.bin'), join(dir, 'empty.txt'), join(dir, 'b.bin')], { onProgress: (p) => up.push(p) });
  check(up, a.length + b.length);
  const down: Array<{ loaded: number; total: number | undefined }> = [];
  await site.download(paths[0]!, join(dir, 'copy.bin'), { onProgress: (p) => down.push(p) });
  check(down, a.length);

  const empty: Array<{ loaded: number; total: number | undefined }> = [];
  await site.upload([join(dir, 'empty.txt')], { onProgress: (p) => empty.push(p) });
  assert.deepEqual(empty, [{ loaded: 0, total: 0 }]);
});

test('abort: mid-upload the request is cut and nothing is left on the server; mid-download nothing is left locally', async (t) => {
  const { url, dataDir } = await startWharf(t);
  const dir = await tempDir(t);
  const big = join(dir, 'big.bin');
  await writeFile(big, '');
  await truncate(big, 256 * 1024 * 1024); // sparse: cheap to make, real bytes on the wire
  const site = connect(url, KEY);

  const controller = new AbortController();
  let sent = 0;
  await assert.rejects(
    site.upload([big], {
      signal: controller.signal,
      onProgress: (p) => {
        sent = p.loaded;
        if (p.loaded >= 4 * 1024 * 1024) controller.abort();
      },
    }),
    isWharfError('ABORTED', 499),
  );
  assert.ok(sent < 256 * 1024 * 1024);
  assert.ok(await eventually(async () => (await storedFiles(dataDir)).length === 0), `left on the server: ${(await storedFiles(dataDir)).join(', ')}`);

  const pre = new AbortController();
  pre.abort();
  await assert.rejects(site.upload([join(dir, 'big.bin')], { signal: pre.signal }), isWharfError('ABORTED'));
  await assert.rejects(site.uplink('s', 'image/png', Buffer.from('x'), { signal: pre.signal }), isWharfError('ABORTED'));

  // A download of a 32 MiB upload, aborted after its first bytes.
  await truncate(big, 32 * 1024 * 1024);
  const [path] = await site.upload([big]);
  const into = await tempDir(t);
  const down = new AbortController();
  await assert.rejects(site.download(path!, into, { signal: down.signal, onProgress: (p) => { if (p.loaded > 0) down.abort(); } }), isWharfError('ABORTED'));
  assert.deepEqual(await readdir(into), [], 'neither the target nor a temp file');
});

test('a file that shrinks while it is uploaded fails the upload; nothing is stored', async (t) => {
  const { url, dataDir } = await startWharf(t);
  const dir = await tempDir(t);
  const file = join(dir, 'shrinks.bin');
  await writeFile(file, randomBytes(8 * 1024 * 1024));
  const site = connect(url, KEY);
  let cut = false;
  await assert.rejects(site.upload([file], {
    onProgress: (p) => {
      if (!cut && p.loaded > 0) {
        cut = true;
        void truncate(file, 1024);
      }
    },
  }), isWharfError('FILE_CHANGED'));
  assert.ok(await eventually(async () => (await storedFiles(dataDir)).length === 0));
});

/** A test server that serves `data` with an ETag, honours Range + If-Range, and cuts the first `cuts` responses halfway. */
async function flakyServer(t: test.TestContext, data: Buffer, opts: { cuts?: number; etag?: () => string | undefined; status?: number[] } = {}) {
  const seen: Array<{ range: string | undefined; ifRange: string | undefined; auth: string | undefined }> = [];
  let cuts = opts.cuts ?? 1;
  const statuses = [...(opts.status ?? [])];
  const server = http.createServer((req, res) => {
    seen.push({ range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, auth: req.headers.authorization });
    const forced = statuses.shift();
    if (forced) {
      res.writeHead(forced, { 'content-type': 'text/plain' }).end('try later');
      return;
    }
    const etag = opts.etag ? opts.etag() : '"v1"';
    const headers: http.OutgoingHttpHeaders = etag ? { etag } : {};
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && etag && req.headers['if-range'] === etag) {
      start = Number(m[1]);
      res.writeHead(206, { ...headers, 'content-length': data.length - start, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      res.writeHead(200, { ...headers, 'content-length': data.length });
    }
    const body = data.subarray(start);
    if (cuts > 0) {
      cuts--;
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}

test('download resumes with Range + If-Range after the connection drops, byte-identical', async (t) => {
  const data = randomBytes(4 * 1024 * 1024 + 3);
  const { url, seen } = await flakyServer(t, data, { cuts: 2 });
  const dir = await tempDir(t);
  const site = connect(url, { ...KEY, retryDelay: 5 });
  const progress: number[] = [];
  const written = await site.download('/files/model.bin', dir, { onProgress: (p) => progress.push(p.loaded) });
  assert.equal(written, join(dir, 'model.bin'));
  assert.equal(await sha256File(written), sha256(data));
  assert.equal(seen.length, 3);
  assert.equal(seen[0]!.range, undefined);
  for (const s of seen.slice(1)) {
    assert.match(s.range!, /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(s.range!)![0]) > 0, 'resumes where it stopped, not at 0');
    assert.equal(s.ifRange, '"v1"');
  }
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! > progress[i - 1]!);
  assert.equal(progress.at(-1), data.length);
  assert.deepEqual(await readdir(dir), ['model.bin']);
});

test('download restarts from 0 when the file changed (If-Range fails) or there is no validator', async (t) => {
  const data = randomBytes(1024 * 1024);
  let version = 0;
  const changed = await flakyServer(t, data, { etag: () => `"v${++version}"` });
  const dir = await tempDir(t);
  const a = await connect(changed.url, { retryDelay: 1 }).download('/x/a.bin', dir);
  assert.equal(await sha256File(a), sha256(data));
  assert.equal(changed.seen[1]!.ifRange, '"v1"');

  const none = await flakyServer(t, data, { etag: () => undefined });
  const b = await connect(none.url, { retryDelay: 1 }).download('/x/b.bin', dir);
  assert.equal(await sha256File(b), sha256(data));
  assert.equal(none.seen[1]!.range, undefined, 'without a validator a resume could splice two files: start over');
});

test('download retries 503 and gives up after the configured retries, leaving nothing', async (t) => {
  const data = randomBytes(64 * 1024);
  const busy = await flakyServer(t, data, { cuts: 0, status: [503, 503] });
  const dir = await tempDir(t);
  const ok = await connect(busy.url, { retryDelay: 1 }).download('/x/ok.bin', dir);
  assert.equal(await sha256File(ok), sha256(data));
  assert.equal(busy.seen.length, 3);

  const broken = await flakyServer(t, data, { cuts: 100 });
  await assert.rejects(connect(broken.url, { retries: 2, retryDelay: 1 }).download('/x/broken.bin', dir), isWharfError('NETWORK', 0));
  assert.equal(broken.seen.length, 3);
  const gone = await flakyServer(t, data, { cuts: 0, status: [404] });
  await assert.rejects(connect(gone.url, { retryDelay: 1 }).download('/x/gone.bin', dir), (err: unknown) => {
    isWharfError('NOT_FOUND', 404)(err);
    assert.equal((err as Error).message, 'try later', "a plain-text answer (Wave's) is the message");
    return true;
  });
  assert.equal(gone.seen.length, 1, 'a 404 is not retried');
  assert.deepEqual(await readdir(dir), ['ok.bin']);
});

test('credentials go only to the connected server, never to another origin a URL points at', async (t) => {
  const data = Buffer.from('elsewhere');
  const same = await flakyServer(t, data, { cuts: 0 });
  const other = await flakyServer(t, data, { cuts: 0 });
  const dir = await tempDir(t);
  const site = connect(same.url, KEY);
  await site.download('/a.txt', join(dir, 'a.txt'));
  await site.download(`${other.url}/b.txt`, join(dir, 'b.txt'));
  assert.equal(same.seen[0]!.auth, `Basic ${Buffer.from('app:app-secret').toString('base64')}`);
  assert.equal(other.seen[0]!.auth, undefined);
  // Wave's defaults when no keys are given; keys in the URL's user part are used too.
  await connect(same.url).download('/c.txt', join(dir, 'c.txt'));
  assert.equal(same.seen[1]!.auth, `Basic ${Buffer.from('access_key_id:access_key_secret').toString('base64')}`);
  await connect(same.url.replace('http://', 'http://u%40x:p%3As@')).download('/d.txt', join(dir, 'd.txt'));
  assert.equal(same.seen[2]!.auth, `Basic ${Buffer.from('u@x:p:s').toString('base64')}`);
});

test('a base URL, from the option or from the URL path', async (t) => {
  const { url } = await startWharf(t, { baseUrl: '/app/' });
  const dir = await tempDir(t);
  await writeFile(join(dir, 'x.txt'), 'based');
  for (const site of [connect(url, { ...KEY, baseUrl: 'app' }), connect(`${url}/app/`, KEY)]) {
    assert.equal(site.base, '/app/');
    const [p] = await site.upload([join(dir, 'x.txt')]);
    assert.match(p!, new RegExp(`^/app/_f/${UUID}/x\\.txt$`));
    assert.equal((await fetchRaw(url + p!)).body.toString(), 'based');
    assert.equal(await site.uplink('s', 'image/png', Buffer.from('f')), '/app/_m/s');
    await site.unlink('s');
  }
});

test('answers that are not the protocol are BAD_RESPONSE', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/_f/') req.resume().on('end', () => res.end('not json'));
    else if (req.url === '/big') res.end(Buffer.alloc(2 * 1024 * 1024));
    else if (req.url === '/range/x.bin') {
      if (req.headers.range) res.writeHead(206, { etag: '"e"', 'content-range': 'bytes 0-9/10', 'content-length': 10 }).end(Buffer.alloc(10));
      else {
        res.writeHead(200, { etag: '"e"', 'content-length': 10 });
        res.write(Buffer.alloc(5), () => res.destroy());
      }
    } else res.writeHead(500).end(JSON.stringify({ error: 'BOOM', message: 'it broke' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const dir = await tempDir(t);
  await writeFile(join(dir, 'x.txt'), 'x');
  const site = connect(url, { retryDelay: 1 });
  await assert.rejects(site.upload([join(dir, 'x.txt')]), isWharfError('BAD_RESPONSE', 0));
  await assert.rejects(site.unload('/big'), isWharfError('BAD_RESPONSE', 0));
  await assert.rejects(site.unload('/other'), (err: unknown) => isWharfError('BOOM', 500)(err) && (err as Error).message === 'it broke');
  await assert.rejects(site.download('/range/x.bin', dir), isWharfError('BAD_RESPONSE', 0));
  assert.deepEqual(await readdir(dir), ['x.txt']);
});

test('in-process files.site and the HTTP site give equal results on the same inputs', async (t) => {
  const { url, files } = await startWharf(t);
  const http_ = connect(url, KEY);
  const local: Site = files.site;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'sub'), { recursive: true });
  await writeFile(join(dir, 'a b.csv'), 'x,y\n1,2\n');
  await writeFile(join(dir, 'ü.bin'), randomBytes(70_000));
  await writeFile(join(tree, 'top.txt'), 'top');
  await writeFile(join(tree, 'sub', 'deep.txt'), 'deep');
  const shape = (p: string): string => p.replace(new RegExp(UUID, 'g'), '<id>');

  const inputs = [join(dir, 'a b.csv'), join(dir, 'ü.bin')];
  const [viaLocal, viaHttp] = [await local.upload(inputs), await http_.upload(inputs)];
  assert.deepEqual(viaLocal.map(shape), viaHttp.map(shape));
  for (let i = 0; i < inputs.length; i++) {
    assert.equal(sha256((await fetchRaw(url + viaLocal[i]!)).body), sha256((await fetchRaw(url + viaHttp[i]!)).body));
  }

  const [dirLocal, dirHttp] = [await local.uploadDir(tree), await http_.uploadDir(tree)];
  assert.deepEqual(dirLocal.map(shape), dirHttp.map(shape));
  for (const rel of ['top.txt', 'sub/deep.txt']) {
    assert.deepEqual((await fetchRaw(`${url}${dirLocal[0]}/${rel}`)).body, (await fetchRaw(`${url}${dirHttp[0]}/${rel}`)).body);
  }

  const [toLocal, toHttp] = [await tempDir(t), await tempDir(t)];
  const gotLocal = await local.download(viaHttp[1]!, toLocal);
  const gotHttp = await http_.download(viaLocal[1]!, toHttp);
  assert.equal(gotLocal, join(toLocal, 'ü.bin'));
  assert.equal(gotHttp, join(toHttp, 'ü.bin'));
  assert.equal(await sha256File(gotLocal), await sha256File(gotHttp));
  const fileLocal = await local.download(viaHttp[0]!, join(toLocal, 'named.csv'));
  const fileHttp = await http_.download(viaLocal[0]!, join(toHttp, 'named.csv'));
  assert.equal(fileLocal, join(toLocal, 'named.csv'));
  assert.equal(fileHttp, join(toHttp, 'named.csv'));
  assert.deepEqual(await readFile(fileLocal), await readFile(fileHttp));

  assert.equal(await local.uplink('same/name', 'image/png', Buffer.from('1')), await http_.uplink('same/name', 'image/png', Buffer.from('2')));
  await local.unlink('same/name');
  await http_.unlink('same/name');

  await local.unload(viaHttp[0]!);
  await http_.unload(viaLocal[0]!);
  for (const p of [viaHttp[0]!, viaLocal[0]!]) assert.equal((await fetchRaw(url + p)).status, 404);

  // The same failures, with the same codes.
  const codes = async (f: (s: typeof local) => Promise<unknown>): Promise<[string, string]> => {
    const code = async (s: typeof local): Promise<string> => f(s).then(() => 'ok', (e: unknown) => `${(e as WharfError).code}/${(e as WharfError).status}`);
    return [await code(local), await code(http_)];
  };
  for (const f of [
    (s: typeof local) => s.upload([]),
    (s: typeof local) => s.upload([join(dir, 'missing')]),
    (s: typeof local) => s.upload([tree]),
    (s: typeof local) => s.uploadDir(join(dir, 'missing')),
    (s: typeof local) => s.unload(viaLocal[0]!),
  ]) {
    const [a, b] = await codes(f);
    assert.equal(b, a);
  }
  // And the same non-failure: ending a stream that never was resolves on both.
  assert.deepEqual(await codes((s) => s.unlink('never-was')), ['ok', 'ok']);
});

test('the temp file of a download lives next to the target and is hidden', async (t) => {
  const data = randomBytes(512 * 1024);
  let seenTemp: string[] = [];
  const dir = await tempDir(t);
  const server = http.createServer(async (_req, res) => {
    res.writeHead(200, { 'content-length': data.length });
    res.write(data.subarray(0, 1000));
    // While the body is half sent, look at the target directory.
    await new Promise((r) => setTimeout(r, 50));
    seenTemp = await readdir(dir);
    res.end(data.subarray(1000));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const written = await connect(url).download('/m.bin', join(dir, 'model.bin'));
  assert.equal(seenTemp.length, 1);
  assert.match(seenTemp[0]!, /^\.model\.bin\.[0-9a-f]{12}\.wharf-part$/);
  assert.equal((await stat(written)).size, data.length);
  assert.deepEqual(await readdir(dir), ['model.bin']);
});

test('a streamed upload waits for 100 Continue: a refusal from the headers costs no body bytes; a server that ignores Expect still gets the body', async (t) => {
  let received = 0;
  let mode: 'refuse' | 'ignore' = 'refuse';
  const server = http.createServer();
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    assert.equal(req.headers.expect, '100-continue');
    req.on('data', (c: Buffer) => { received += c.length; });
    if (mode === 'refuse') {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ error: 'LIMIT_REQUEST_SIZE', message: 'too big' }));
      return;
    }
    // Never sends 100 Continue: the client must send the body anyway.
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ files: ['/_f/x/a.bin'] })));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.bin'), randomBytes(4 * 1024 * 1024));
  const site = connect(url, KEY);
  await assert.rejects(site.upload([join(dir, 'a.bin')]), isWharfError('LIMIT_REQUEST_SIZE', 413));
  assert.equal(received, 0);
  mode = 'ignore';
  assert.deepEqual(await site.upload([join(dir, 'a.bin')]), ['/_f/x/a.bin']);
  assert.ok(received > 4 * 1024 * 1024);
});

test('a connection cut while the upload is sent is a NETWORK error that says the server may have refused it', async (t) => {
  const server = http.createServer((req) => {
    req.once('data', () => req.socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.bin'), randomBytes(8 * 1024 * 1024));
  const site = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`, KEY);
  await assert.rejects(site.upload([join(dir, 'a.bin')]), (err: unknown) => {
    isWharfError('NETWORK', 0)(err);
    assert.match((err as Error).message, /may have refused it/);
    return true;
  });
});
