// The static engine over real HTTP: headers, types, conditionals, ranges, downloads, the memory
// cache's freshness and bounds, dotfiles, directories, fs errors and descriptor hygiene.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { mkdir, rename, rm, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createFileServer, type FileServer } from '../lib/http/server.js';
import { createDirectorySource, createStatic, directorySeams, type FileSource, type OpenFile } from '../lib/static/engine.js';
import { resolveLimits } from '../lib/common/limits.js';
import { contentTypeFor } from '../lib/common/mime.js';
import { attachment } from '../lib/static/disposition.js';
import { eventually, fdsOn, request } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { rawGet } from './helpers/raw-http.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('static engine over HTTP', () => {
  let files: FileServer;
  let url: string;
  let port: number;
  let root: string;
  let cleanup: () => Promise<void>;
  const big = randomBytes(1024 * 1024 + 17); // streamed (over cacheFileSize)
  const bigAlias = randomBytes(100_000);
  const warnings: string[] = [];

  before(async () => {
    ({ dir: root, cleanup } = await makeTempDir());
    await mkdir(join(root, 'pub', 'sub'), { recursive: true });
    await mkdir(join(root, 'pub', 'sub', '.git'), { recursive: true });
    await writeFile(join(root, 'pub', 'hello.txt'), 'hello, world\n');
    await writeFile(join(root, 'pub', 'digits.txt'), '0123456789abcdefghij');
    await writeFile(join(root, 'pub', 'big.bin'), big);
    await writeFile(join(root, 'pub', 'sub', 'big2.bin'), bigAlias);
    await symlink(join('sub', 'big2.bin'), join(root, 'pub', 'alias-big.bin'));
    await writeFile(join(root, 'pub', 'empty.txt'), '');
    await writeFile(join(root, 'pub', '.env'), 'SECRET=1');
    await writeFile(join(root, 'pub', '.secret'), 'hidden');
    await symlink('.secret', join(root, 'pub', 'visible'));
    await symlink('hello.txt', join(root, 'pub', 'alias.txt'));
    await symlink('sub', join(root, 'pub', 'linkdir'));
    await writeFile(join(root, 'pub', 'sub', '.git', 'config'), 'x');
    await writeFile(join(root, 'pub', 'sub', 'ünï cödé.txt'), 'unicode');
    files = createFileServer({
      dataDir: join(root, 'data'),
      publicDirs: [{ url: '/pub/', path: join(root, 'pub') }, `/later@${join(root, 'later')}`],
      warn: (m) => warnings.push(m),
    });
    ({ url, port } = await files.listen({ port: 0 }));
  });
  after(async () => {
    await files.close();
    await cleanup();
  });

  test('GET: body, type, validators and safety headers', async () => {
    const r = await request(url, '/pub/hello.txt');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'hello, world\n');
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(r.headers['content-length'], '13');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['accept-ranges'], 'bytes');
    assert.equal(r.headers['cache-control'], 'public, max-age=0, must-revalidate');
    assert.match(r.headers.etag ?? '', /^"[0-9a-z]+-[0-9a-z]+-[0-9a-z]+"$/);
    assert.ok(!Number.isNaN(Date.parse(r.headers['last-modified'] ?? '')));
    // the second answer comes from the cache and must be the same
    const again = await request(url, '/pub/hello.txt');
    assert.equal(again.text, r.text);
    assert.equal(again.headers.etag, r.headers.etag);
  });

  test('GET of a streamed file returns every byte', async () => {
    const r = await request(url, '/pub/big.bin');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(big.length));
    assert.equal(r.headers['content-type'], 'application/octet-stream');
    assert.equal(sha(r.body), sha(big));
  });

  test('symlinks that stay inside the root are followed, first time and from the cache', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(url, '/pub/alias.txt')).text, 'hello, world\n');
      assert.equal((await request(url, `/pub/linkdir/${encodeURIComponent('ünï cödé.txt')}`)).text, 'unicode');
      const big = await request(url, '/pub/alias-big.bin', { headers: { range: 'bytes=0-3' } });
      assert.equal(big.status, 206);
      assert.deepEqual(big.body, bigAlias.subarray(0, 4));
    }
  });

  test('percent-encoded UTF-8 names are served', async () => {
    const r = await request(url, `/pub/sub/${encodeURIComponent('ünï cödé.txt')}`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'unicode');
  });

  test('HEAD: the same headers, no body', async () => {
    for (const path of ['/pub/hello.txt', '/pub/big.bin']) {
      const g = await request(url, path);
      const h = await request(url, path, { method: 'HEAD' });
      assert.equal(h.status, 200);
      assert.equal(h.body.length, 0);
      for (const k of ['content-type', 'content-length', 'etag', 'last-modified']) assert.equal(h.headers[k], g.headers[k], k);
    }
  });

  test('Content-Type table', () => {
    const cases: Array<[string, string]> = [
      ['a.pdf', 'application/pdf'], ['A.PDF', 'application/pdf'], ['x.png', 'image/png'], ['x.jpg', 'image/jpeg'],
      ['x.svg', 'image/svg+xml'], ['x.json', 'application/json; charset=utf-8'], ['x.js', 'text/javascript; charset=utf-8'],
      ['x.mjs', 'text/javascript; charset=utf-8'], ['x.css', 'text/css; charset=utf-8'], ['x.html', 'text/html; charset=utf-8'],
      ['x.csv', 'text/csv; charset=utf-8'], ['x.md', 'text/markdown; charset=utf-8'], ['x.txt', 'text/plain; charset=utf-8'],
      ['x.wasm', 'application/wasm'], ['x.zip', 'application/zip'], ['x.woff2', 'font/woff2'], ['x.mp4', 'video/mp4'],
      ['x.webp', 'image/webp'], ['noext', 'application/octet-stream'], ['x.unknownext', 'application/octet-stream'],
      ['dir.d/file', 'application/octet-stream'], ['x.toString', 'application/octet-stream'], ['x.__proto__', 'application/octet-stream'],
    ];
    for (const [name, type] of cases) assert.equal(contentTypeFor(name), type, name);
  });

  test('the Content-Type reaches the wire', async () => {
    await writeFile(join(root, 'pub', 'doc.pdf'), '%PDF-1.4');
    const r = await request(url, '/pub/doc.pdf');
    assert.equal(r.headers['content-type'], 'application/pdf');
  });

  for (const path of ['/pub/hello.txt', '/pub/big.bin']) {
    test(`conditionals, RFC 9110 §13.2.2 order (${path})`, async () => {
      const first = await request(url, path);
      const etag = first.headers.etag!;
      const lm = first.headers['last-modified']!;
      const future = new Date(Date.now() + 86_400_000).toUTCString();
      const past = new Date(Date.parse(lm) - 86_400_000).toUTCString();
      const cases: Array<[Record<string, string>, number]> = [
        [{ 'if-none-match': etag }, 304],
        [{ 'if-none-match': `W/${etag}` }, 304], // weak comparison
        [{ 'if-none-match': `"nope", ${etag}` }, 304],
        [{ 'if-none-match': '*' }, 304],
        [{ 'if-none-match': '"nope"' }, 200],
        [{ 'if-modified-since': lm }, 304],
        [{ 'if-modified-since': future }, 304],
        [{ 'if-modified-since': past }, 200],
        [{ 'if-modified-since': 'not a date' }, 200],
        [{ 'if-none-match': '"nope"', 'if-modified-since': future }, 200], // If-None-Match wins
        [{ 'if-match': '"nope"' }, 412],
        [{ 'if-match': `W/${etag}` }, 412], // If-Match compares strongly
        [{ 'if-match': etag }, 200],
        [{ 'if-match': '*' }, 200],
        [{ 'if-unmodified-since': past }, 412],
        [{ 'if-unmodified-since': lm }, 200],
        [{ 'if-unmodified-since': 'garbage' }, 200],
        [{ 'if-match': etag, 'if-unmodified-since': past }, 200], // If-Match present: IUS ignored
      ];
      for (const [headers, status] of cases) {
        const r = await request(url, path, { headers });
        assert.equal(r.status, status, JSON.stringify(headers));
        if (status === 304) {
          assert.equal(r.body.length, 0);
          assert.equal(r.headers.etag, etag);
          assert.equal(r.headers['last-modified'], lm);
          assert.equal(r.headers['cache-control'], 'public, max-age=0, must-revalidate');
        }
        if (status === 412) assert.equal(JSON.parse(r.text).error, 'PRECONDITION_FAILED');
      }
      const head = await request(url, path, { method: 'HEAD', headers: { 'if-none-match': etag } });
      assert.equal(head.status, 304);
    });
  }

  test('single ranges: 206, 416 and the cases answered with the whole file', async () => {
    const whole = '0123456789abcdefghij';
    const cases: Array<[string, number, string | null, string | null]> = [
      ['bytes=0-9', 206, '0123456789', 'bytes 0-9/20'],
      ['bytes=10-', 206, 'abcdefghij', 'bytes 10-19/20'],
      ['bytes=-5', 206, 'fghij', 'bytes 15-19/20'],
      ['bytes=-500', 206, whole, 'bytes 0-19/20'],
      ['bytes=5-1000000', 206, '56789abcdefghij', 'bytes 5-19/20'],
      ['bytes = 3 - 4', 206, '34', 'bytes 3-4/20'],
      ['BYTES=19-19', 206, 'j', 'bytes 19-19/20'],
      ['bytes=0-99999999999999999999999', 206, whole, 'bytes 0-19/20'],
      ['bytes=20-', 416, null, 'bytes */20'],
      ['bytes=99999999999999999999-', 416, null, 'bytes */20'],
      ['bytes=-0', 416, null, 'bytes */20'],
      ['bytes=0-1,3-4', 200, whole, null], // several ranges: the whole file (documented)
      ['bytes=5-2', 200, whole, null], // invalid: ignored (§14.2)
      ['bytes=abc', 200, whole, null],
      ['bytes=-', 200, whole, null],
      ['items=0-1', 200, whole, null],
      ['0-1', 200, whole, null],
    ];
    for (const [range, status, body, contentRange] of cases) {
      const r = await request(url, '/pub/digits.txt', { headers: { range } });
      assert.equal(r.status, status, range);
      if (body !== null) assert.equal(r.text, body, range);
      assert.equal(r.headers['content-range'], contentRange ?? undefined, range);
      if (status === 416) assert.equal(JSON.parse(r.text).error, 'RANGE_NOT_SATISFIABLE');
    }
  });

  test('ranges of a streamed file', async () => {
    const r = await request(url, '/pub/big.bin', { headers: { range: 'bytes=1000-300000' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-length'], String(300000 - 1000 + 1));
    assert.equal(sha(r.body), sha(big.subarray(1000, 300001)));
    const tail = await request(url, '/pub/big.bin', { headers: { range: 'bytes=-7' } });
    assert.deepEqual(tail.body, big.subarray(big.length - 7));
    const bad = await request(url, '/pub/big.bin', { headers: { range: `bytes=${big.length}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers['content-range'], `bytes */${big.length}`);
  });

  test('Range is ignored on HEAD and on an empty file', async () => {
    const h = await request(url, '/pub/digits.txt', { method: 'HEAD', headers: { range: 'bytes=0-1' } });
    assert.equal(h.status, 200);
    assert.equal(h.headers['content-length'], '20');
    const e = await request(url, '/pub/empty.txt', { headers: { range: 'bytes=0-1' } });
    assert.equal(e.status, 200);
    assert.equal(e.body.length, 0);
    assert.equal(e.headers['content-length'], '0');
  });

  test('If-Range: the range only while the representation is unchanged', async () => {
    const { headers } = await request(url, '/pub/digits.txt');
    const cases: Array<[string, number]> = [
      [headers.etag!, 206],
      ['"other"', 200],
      [`W/${headers.etag!}`, 200], // weak never matches (§13.1.5 needs a strong comparison)
      [headers['last-modified']!, 206],
      [new Date(Date.parse(headers['last-modified']!) - 60_000).toUTCString(), 200],
      ['not a date', 200],
    ];
    for (const [ifRange, status] of cases) {
      const r = await request(url, '/pub/digits.txt', { headers: { range: 'bytes=0-0', 'if-range': ifRange } });
      assert.equal(r.status, status, ifRange);
      assert.equal(r.text, status === 206 ? '0' : '0123456789abcdefghij');
    }
  });

  test('?download and ?download=name: RFC 6266 Content-Disposition', async () => {
    const plain = await request(url, '/pub/hello.txt?download');
    assert.equal(plain.headers['content-disposition'], 'attachment; filename="hello.txt"');
    assert.equal(plain.text, 'hello, world\n');
    const empty = await request(url, '/pub/hello.txt?x=1&download=');
    assert.equal(empty.headers['content-disposition'], 'attachment; filename="hello.txt"');
    const named = await request(url, `/pub/hello.txt?download=${encodeURIComponent('résumé €.txt')}`);
    assert.equal(named.headers['content-disposition'], `attachment; filename="r_sum_ _.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.txt`);
    const evil = await request(url, `/pub/hello.txt?download=${encodeURIComponent('a"b\r\nSet-Cookie: x=1\\..%2F.txt')}`);
    const cd = evil.headers['content-disposition']!;
    assert.equal(evil.headers['set-cookie'], undefined);
    assert.doesNotMatch(cd, /[\r\n]/);
    assert.match(cd, /^attachment; filename="a_b__Set-Cookie: x=1_.._2F.txt"; filename\*=UTF-8''/);
    const noParam = await request(url, '/pub/hello.txt?downloaded=1');
    assert.equal(noParam.headers['content-disposition'], undefined);
    assert.equal(attachment(''), 'attachment; filename="download"');
  });

  test('a file rewritten on disk is served fresh on the very next request', async () => {
    const p = join(root, 'pub', 'fresh.txt');
    await writeFile(p, 'version 1');
    assert.equal((await request(url, '/pub/fresh.txt')).text, 'version 1');
    assert.equal((await request(url, '/pub/fresh.txt')).text, 'version 1'); // now cached
    await writeFile(p, 'version 2 is longer');
    assert.equal((await request(url, '/pub/fresh.txt')).text, 'version 2 is longer');
    await writeFile(p, 'VERSION 2 IS LONGER'); // same size, same inode: the mtime tells
    const t = new Date(Date.now() + 5000);
    await utimes(p, t, t);
    assert.equal((await request(url, '/pub/fresh.txt')).text, 'VERSION 2 IS LONGER');
    await writeFile(`${p}.new`, 'replaced by rename');
    await rename(`${p}.new`, p);
    assert.equal((await request(url, '/pub/fresh.txt')).text, 'replaced by rename');
    await rm(p);
    assert.equal((await request(url, '/pub/fresh.txt')).status, 404);
  });

  test('a big file whose validators are cached still answers fresh after a rewrite', async () => {
    const p = join(root, 'pub', 'bigfresh.bin');
    await writeFile(p, Buffer.alloc(200_000, 1));
    const a = await request(url, '/pub/bigfresh.bin');
    const cond = await request(url, '/pub/bigfresh.bin', { headers: { 'if-none-match': a.headers.etag! } });
    assert.equal(cond.status, 304);
    await writeFile(p, Buffer.alloc(200_001, 2));
    const b = await request(url, '/pub/bigfresh.bin', { headers: { 'if-none-match': a.headers.etag! } });
    assert.equal(b.status, 200);
    assert.equal(b.body.length, 200_001);
    assert.notEqual(b.headers.etag, a.headers.etag);
    const miss = await request(url, '/pub/bigfresh.bin', { headers: { 'if-none-match': '"stale"' } });
    assert.equal(miss.status, 200);
    assert.equal(miss.body.length, 200_001);
    const head = await request(url, '/pub/bigfresh.bin', { method: 'HEAD' });
    assert.equal(head.headers['content-length'], '200001');
    await rm(p);
    assert.equal((await request(url, '/pub/bigfresh.bin', { method: 'HEAD' })).status, 404);
  });

  test('a hot file over 64 KiB is answered from memory from its second read, and never stale', async () => {
    const p = join(root, 'pub', 'hot.bin');
    const size = 300_000;
    await writeFile(p, Buffer.alloc(size, 1));
    let opens = 0;
    directorySeams.beforeOpen = (path) => {
      if (path.endsWith('hot.bin')) opens++;
    };
    try {
      for (let i = 0; i < 4; i++) assert.ok((await request(url, '/pub/hot.bin')).body.equals(Buffer.alloc(size, 1)));
      assert.equal(opens, 2, 'opened for its first answer and, hot, to be kept; then answered from memory');
      const range = await request(url, '/pub/hot.bin', { headers: { range: 'bytes=1000-1999' } });
      assert.equal(range.status, 206);
      assert.ok(range.body.equals(Buffer.alloc(1000, 1)));
      assert.equal(opens, 2, 'a Range of it too');
      // Rewritten in place: the same size and inode, only the mtime tells.
      await writeFile(p, Buffer.alloc(size, 2));
      const later = new Date(Date.now() + 5000);
      await utimes(p, later, later);
      assert.ok((await request(url, '/pub/hot.bin')).body.equals(Buffer.alloc(size, 2)));
      await writeFile(`${p}.new`, Buffer.alloc(size, 3));
      await utimes(`${p}.new`, later, later);
      await rename(`${p}.new`, p);
      assert.ok((await request(url, '/pub/hot.bin')).body.equals(Buffer.alloc(size, 3)), 'renamed over, same size and mtime: a new inode');
      await rm(p);
      assert.equal((await request(url, '/pub/hot.bin')).status, 404);
    } finally {
      directorySeams.beforeOpen = undefined;
    }
  });

  test('directories, the mapping root, dotfiles: 404', async () => {
    for (const path of ['/pub/sub', '/pub/sub/', '/pub/', '/pub', '/pub/.env', '/pub/sub/.git/config', '/pub/visible', '/pub/nope.txt', '/pub/hello.txt/x']) {
      const r = await request(url, path);
      assert.equal(r.status, 404, path);
      assert.equal(JSON.parse(r.text).error, 'NOT_FOUND', path);
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    }
  });

  test('malformed percent-encoding: 400 BAD_PATH', async () => {
    const r = await rawGet(port, '/pub/%zz');
    assert.equal(r.status, 400);
    assert.match(r.text, /BAD_PATH/);
  });

  test('a FIFO in the root is refused without hanging', async () => {
    execFileSync('mkfifo', [join(root, 'pub', 'pipe')]);
    assert.equal((await request(url, '/pub/pipe')).status, 404);
    assert.equal((await request(url, '/pub/pipe', { method: 'HEAD' })).status, 404);
  });

  test('a mapped directory that does not exist yet: warned, 404, then served once it appears', async () => {
    assert.ok(warnings.some((w) => w.includes(join(root, 'later')) && w.includes('/later/')), warnings.join('\n'));
    assert.equal((await request(url, '/later/x.txt')).status, 404);
    await mkdir(join(root, 'later'));
    await writeFile(join(root, 'later', 'x.txt'), 'arrived');
    const r = await request(url, '/later/x.txt');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'arrived');
  });

  test('a client that disconnects mid-download: the file descriptor is closed', async () => {
    const p = join(root, 'pub', 'huge.bin');
    await writeFile(p, Buffer.alloc(0));
    await truncate(p, 64 * 1024 * 1024);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/pub/huge.bin', agent: false }, (res) => {
        res.once('data', async () => {
          try {
            assert.equal(await fdsOn(p), 1, 'the file is open while it is sent');
            res.destroy();
            req.destroy();
            resolve();
          } catch (err) {
            reject(err);
          }
        });
      });
      req.on('error', () => {});
      req.end();
    });
    await eventually(async () => (await fdsOn(p)) === 0, 'the descriptor of huge.bin is closed');
  });

  test('a client that pipelines two downloads and leaves: both descriptors are closed', async () => {
    // The second answer waits behind the first with its file open; when the connection dies, its
    // response never emits 'close' (only its request does).
    const p = join(root, 'pub', 'huge2.bin');
    await writeFile(p, Buffer.alloc(0));
    await truncate(p, 64 * 1024 * 1024);
    const sock = connect(port, '127.0.0.1');
    sock.on('error', () => {});
    const get = 'GET /pub/huge2.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    sock.write(get + get);
    await new Promise<void>((resolve) => sock.once('data', () => resolve()));
    sock.pause();
    await eventually(async () => (await fdsOn(p)) === 2, 'both answers have their file open');
    sock.destroy();
    await eventually(async () => (await fdsOn(p)) === 0, 'both descriptors of huge2.bin are closed');
  });

  test('custom Cache-Control', async () => {
    const other = createFileServer({ dataDir: join(root, 'data2'), publicDirs: [`/p/@${join(root, 'pub')}`], cacheControl: 'public, max-age=60', warn: () => {} });
    const a = await other.listen({ port: 0 });
    try {
      const r = await request(a.url, '/p/hello.txt');
      assert.equal(r.headers['cache-control'], 'public, max-age=60');
    } finally {
      await other.close();
    }
  });

  test('custom private Cache-Control: a private mapping\'s 200 and 304 carry it, a public one\'s do not', async () => {
    const other = createFileServer({
      dataDir: join(root, 'data3'),
      publicDirs: [`/p/@${join(root, 'pub')}`],
      privateDirs: [`/q/@${join(root, 'pub')}`],
      privateCacheControl: 'no-store',
      accessKeys: { app: 'app-secret' },
      warn: () => {},
    });
    const a = await other.listen({ port: 0 });
    try {
      const authorization = `Basic ${Buffer.from('app:app-secret').toString('base64')}`;
      const r = await request(a.url, '/q/hello.txt', { headers: { authorization } });
      assert.equal(r.headers['cache-control'], 'no-store');
      const again = await request(a.url, '/q/hello.txt', { headers: { authorization, 'if-none-match': String(r.headers.etag) } });
      assert.equal(again.status, 304);
      assert.equal(again.headers['cache-control'], 'no-store');
      assert.equal((await request(a.url, '/p/hello.txt')).headers['cache-control'], 'public, max-age=0, must-revalidate');
    } finally {
      await other.close();
    }
  });
});

describe('static engine: cache bounds and errors', () => {
  /** A plain node:http server that serves `source` with `engine` at `/x/…`. */
  async function serveWith(engine: ReturnType<typeof createStatic>, source: FileSource): Promise<{ url: string; server: Server }> {
    const server = createServer((req, res) => void engine.respond(req, res, source, (req.url ?? '').slice(3).split('?')[0]!));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
  }
  const stop = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

  test('a small LRU stays correct while it evicts, and no cache at all works too', async () => {
    const { dir, cleanup } = await makeTempDir();
    try {
      const bodies: string[] = [];
      for (let i = 0; i < 12; i++) {
        bodies.push(`${i}:`.padEnd(900, String.fromCharCode(97 + i)));
        await writeFile(join(dir, `f${i}.txt`), bodies[i]!);
      }
      await writeFile(join(dir, 'toobig.txt'), 'z'.repeat(5000));
      for (const limits of [resolveLimits({ cacheFileSize: 1024, cacheSize: 3000 }), resolveLimits({ cacheFileSize: 0 }), resolveLimits({ cacheFileSize: 4096, cacheSize: 100 })]) {
        const { url, server } = await serveWith(createStatic({ limits }), createDirectorySource(dir));
        try {
          for (let round = 0; round < 3; round++) {
            for (let i = 0; i < 12; i++) assert.equal((await request(url, `/x/f${i}.txt`)).text, bodies[i]);
            assert.equal((await request(url, '/x/toobig.txt')).text.length, 5000);
          }
          await writeFile(join(dir, 'f0.txt'), 'changed');
          assert.equal((await request(url, '/x/f0.txt')).text, 'changed');
          await writeFile(join(dir, 'f0.txt'), bodies[0]!);
        } finally {
          await stop(server);
        }
      }
    } finally {
      await cleanup();
    }
  });

  test('a file asked for again and again stays in memory while others come and go', async () => {
    const { dir, cleanup } = await makeTempDir();
    try {
      for (let i = 0; i < 12; i++) await writeFile(join(dir, `f${i}.txt`), `${i}`.padEnd(500, 'x'));
      await writeFile(join(dir, 'hot.txt'), 'hot'.padEnd(500, 'h'));
      const inner = createDirectorySource(dir);
      const opens = new Map<string, number>();
      const counted = (rel: string): void => void opens.set(rel, (opens.get(rel) ?? 0) + 1);
      const source: FileSource = {
        stat: (rel) => inner.stat(rel),
        open: (rel) => (counted(rel), inner.open(rel)),
        openSync: (rel) => (counted(rel), inner.openSync!(rel)),
        statSync: (rel) => inner.statSync!(rel),
      };
      // room for about four entries
      const { url, server } = await serveWith(createStatic({ limits: resolveLimits({ cacheFileSize: 1024, cacheSize: 3200 }) }), source);
      try {
        for (let i = 0; i < 48; i++) {
          assert.equal((await request(url, '/x/hot.txt')).text.slice(0, 3), 'hot');
          assert.equal((await request(url, `/x/f${i % 12}.txt`)).text.length, 500);
        }
      } finally {
        await stop(server);
      }
      assert.equal(opens.get('hot.txt'), 1, 'read from disk once');
      assert.equal(opens.get('f0.txt'), 4, 'the others are evicted and read again');
    } finally {
      await cleanup();
    }
  });

  test('fs errors map to statuses with a JSON reason; none leaves the response hanging', async () => {
    const fail = (code: string): never => {
      throw Object.assign(new Error(`${code}: /secret/path`), { code });
    };
    const cases: Array<[string, number, string]> = [['EACCES', 403, 'FORBIDDEN'], ['EMFILE', 503, 'BUSY'], ['EIO', 500, 'INTERNAL'], ['ENOENT', 404, 'NOT_FOUND']];
    for (const [code, status, error] of cases) {
      const source: FileSource = { stat: async () => fail(code), open: async () => fail(code) };
      const { url, server } = await serveWith(createStatic({ limits: resolveLimits() }), source);
      try {
        const r = await request(url, '/x/a.txt');
        assert.equal(r.status, status, code);
        assert.equal(JSON.parse(r.text).error, error);
        assert.doesNotMatch(r.text, /secret/, 'no path in the message');
      } finally {
        await stop(server);
      }
    }
  });

  test('a stat that fails on the cached path is answered too', async () => {
    let broken = false;
    const { dir, cleanup } = await makeTempDir();
    await writeFile(join(dir, 'a.txt'), 'ok');
    const real = createDirectorySource(dir);
    const source: FileSource = {
      stat: async (rel) => (broken ? Promise.reject(Object.assign(new Error('x'), { code: 'EACCES' })) : real.stat(rel)),
      open: (rel) => real.open(rel),
    };
    const { url, server } = await serveWith(createStatic({ limits: resolveLimits() }), source);
    try {
      assert.equal((await request(url, '/x/a.txt')).text, 'ok');
      broken = true;
      assert.equal((await request(url, '/x/a.txt')).status, 403);
      assert.equal(await real.stat('nothing'), null);
    } finally {
      await stop(server);
      await cleanup();
    }
  });

  test('a client that leaves while the file is being opened: the file is closed, never streamed', async () => {
    let left!: () => void;
    const clientLeft = new Promise<void>((r) => { left = r; });
    let closed = false;
    let streamed = false;
    const info = { size: 1 << 20, mtimeMs: 1_700_000_000_000, ino: 9 };
    const source: FileSource = {
      stat: async () => info,
      open: async (): Promise<OpenFile> => {
        await clientLeft;
        return { ...info, stream: () => { streamed = true; return Readable.from([]); }, close: async () => { closed = true; } };
      },
    };
    const engine = createStatic({ limits: resolveLimits() });
    const server = createServer((req, res) => {
      res.once('close', () => left());
      void engine.respond(req, res, source, 'f.bin');
    });
    const url = await new Promise<string>((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
    try {
      const req = httpRequest(`${url}/x/f.bin`, { agent: false });
      req.on('error', () => {});
      req.end();
      req.on('socket', (sock) => sock.on('connect', () => setImmediate(() => req.destroy())));
      await eventually(() => closed, 'the opened file is closed');
      assert.equal(streamed, false);
    } finally {
      await stop(server);
    }
  });

  test('a client that stops reading a 100 MiB download: backpressure holds, memory stays bounded', async () => {
    const { dir, cleanup } = await makeTempDir();
    const path = join(dir, 'big.bin');
    await writeFile(path, Buffer.alloc(0));
    await truncate(path, 100 * 1024 * 1024);
    let serverRes: import('node:http').ServerResponse | undefined;
    const engine = createStatic({ limits: resolveLimits() });
    const source = createDirectorySource(dir);
    const server = createServer((req, res) => {
      serverRes = res;
      void engine.respond(req, res, source, 'big.bin');
    });
    const url = await new Promise<string>((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
    const before = process.memoryUsage().arrayBuffers;
    let req: ReturnType<typeof httpRequest> | undefined;
    try {
      await new Promise<void>((resolve) => {
        req = httpRequest(`${url}/x`, { agent: false }, (res) => {
          res.once('data', () => { res.pause(); resolve(); });
        });
        req.on('error', () => {});
        req.end();
      });
      // the kernel's socket buffers fill, then Node's own queue stops growing
      await eventually(() => (serverRes?.socket?.writableLength ?? 0) > 0, 'backpressure reaches the server');
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(serverRes!.socket!.writableLength <= 2 * 512 * 1024, `queued ${serverRes!.socket!.writableLength}`);
      const grown = process.memoryUsage().arrayBuffers - before;
      assert.ok(grown < 16 * 1024 * 1024, `buffers grew by ${grown} bytes for one stalled 100 MiB download`);
    } finally {
      req?.destroy();
      await stop(server);
      await cleanup();
    }
  });

  test('a small read that fails or comes up short is answered with JSON, not cut', async () => {
    const info = { size: 1 << 20, mtimeMs: 1_700_000_000_000, ino: 11 };
    for (const [read, status, error] of [
      [async () => { throw Object.assign(new Error('EIO'), { code: 'EIO' }); }, 500, 'INTERNAL'],
      [async () => Buffer.alloc(3), 503, 'FILE_CHANGED'],
    ] as const) {
      const source: FileSource = {
        stat: async () => info,
        open: async (): Promise<OpenFile> => ({ ...info, stream: () => Readable.from([]), read, close: async () => {} }),
      };
      const { url, server } = await serveWith(createStatic({ limits: resolveLimits() }), source);
      try {
        const r = await request(url, '/x/f.bin', { headers: { range: 'bytes=0-9' } });
        assert.equal(r.status, status);
        assert.equal(JSON.parse(r.text).error, error);
      } finally {
        await stop(server);
      }
    }
  });

  /** A source of one big "file" whose stream misbehaves as `make` says. */
  function oddSource(size: number, make: () => Readable): FileSource {
    const info = { size, mtimeMs: 1_700_000_000_000, ino: 7 };
    return {
      stat: async () => info,
      open: async (): Promise<OpenFile> => ({ ...info, stream: make, close: async () => {} }),
    };
  }

  for (const [what, make] of [
    ['a stream that errors mid-way', () => {
      let n = 0;
      return new Readable({
        read() {
          if (n++ < 3) this.push(Buffer.alloc(65536, 1));
          else this.destroy(new Error('EIO'));
        },
      });
    }],
    ['a file truncated while it is sent', () => Object.assign(Readable.from([Buffer.alloc(65536, 1)]), { bytesRead: 65536 })],
  ] as const) {
    test(`${what}: the client sees a cut connection, not a complete-looking body`, async () => {
      const { url, server } = await serveWith(createStatic({ limits: resolveLimits() }), oddSource(1 << 20, make));
      try {
        const outcome = await new Promise<string>((resolve) => {
          const req = httpRequest(`${url}/x/f.bin`, { agent: false }, (res) => {
            let got = 0;
            res.on('data', (c: Buffer) => { got += c.length; });
            res.on('end', () => resolve(`complete ${got}`));
            res.on('error', () => resolve('cut'));
            res.on('aborted', () => resolve('cut'));
          });
          req.on('error', () => resolve('cut'));
          req.end();
        });
        assert.equal(outcome, 'cut');
      } finally {
        await stop(server);
      }
    });
  }
});
