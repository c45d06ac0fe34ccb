// createFileServer: options, the route table, middleware mode (node:http and Express 5), early
// refusals before 100-continue, timeouts and close().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, Agent, type Server } from 'node:http';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import express from 'express';
import { createFileServer, type FileServer, type FileServerOptions } from '../lib/http/server.js';
import { WharfError } from '../lib/common/errors.js';
import { DEFAULT_KEY, eventually, fdsOn, request } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { rawExchange } from './helpers/raw-http.js';

const listenOn = (server: Server): Promise<string> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
const stop = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

let tmp: string;
let cleanup: () => Promise<void>;
const id = randomUUID();
before(async () => {
  ({ dir: tmp, cleanup } = await makeTempDir());
  for (const d of ['pub', 'a', join('a', 'b'), 'my data', join('data', 'f', id)]) await mkdir(join(tmp, d), { recursive: true });
  await writeFile(join(tmp, 'pub', 'ok.txt'), 'pub ok');
  await writeFile(join(tmp, 'a', 'x.txt'), 'from a');
  await writeFile(join(tmp, 'a', 'b', 'x.txt'), 'from a/b');
  await writeFile(join(tmp, 'my data', 'x.txt'), 'spaced');
  await writeFile(join(tmp, 'data', 'f', id, 'ok.txt'), 'upload ok');
  await writeFile(join(tmp, 'plainfile'), 'not a dir');
});
after(() => cleanup());

const quiet = (o: FileServerOptions): FileServerOptions => ({ warn: () => {}, ...o });

describe('options fail fast', () => {
  const bad: Array<[string, () => FileServerOptions, RegExp]> = [
    ['a mapping without @', () => ({ publicDirs: ['/datasets/'] }), /URL@PATH/],
    ['an empty URL', () => ({ publicDirs: ['@/srv'] }), /empty URL/],
    ['an empty path', () => ({ publicDirs: ['/d/@'] }), /empty path/],
    ['an object mapping without path', () => ({ privateDirs: [{ url: '/d/' } as never] }), /empty path/],
    ['a mapping that is neither string nor object', () => ({ publicDirs: [42 as never] }), /URL@PATH/],
    ['publicDirs not an array', () => ({ publicDirs: '/d/@/srv' as never }), /array/],
    ['two mappings on one URL', () => ({ publicDirs: [`/d/@${tmp}`], privateDirs: [`/d@${tmp}/pub`] }), /two mappings on one URL: \/d\//],
    ['a mapping under _f/', () => ({ publicDirs: [`/_f/x/@${tmp}`] }), /_f\//],
    ['a mapping on _m/', () => ({ publicDirs: [`/_m@${tmp}`] }), /_m\//],
    ['a mapping under {base}_m/', () => ({ baseUrl: '/wave', publicDirs: [`/wave/_m/@${tmp}`] }), /\/wave\/_m\//],
    ['a URL with ..', () => ({ publicDirs: [`/a/../b/@${tmp}`] }), /"\.\."/],
    ['a URL with ?', () => ({ publicDirs: [`/a?b/@${tmp}`] }), /may not contain/],
    ['an unknown option', () => ({ publicDir: ['/a/@/b'] } as never), /unknown option "publicDir"/],
    ['an unknown limit', () => ({ limits: { fileSise: 1 } as never }), /fileSise/],
    ['a negative limit', () => ({ limits: { cacheSize: -1 } }), /cacheSize/],
    ['authorize not a function', () => ({ authorize: true as never }), /authorize/],
    ['anonymousUploads not a boolean', () => ({ anonymousUploads: 'yes' as never }), /anonymousUploads/],
    ['an access key id with a colon', () => ({ accessKeys: { 'a:b': 'x' } }), /":"/],
    ['an empty secret', () => ({ accessKeys: { a: '' } }), /secret/],
    ['accessKeys not an object', () => ({ accessKeys: 'a:b' as never }), /accessKeys/],
    ['an empty dataDir', () => ({ dataDir: '' }), /dataDir/],
    ['a baseUrl that is not a string', () => ({ baseUrl: 5 as never }), /baseUrl/],
    ['a cacheControl with a newline', () => ({ cacheControl: 'public\r\nX: y' }), /cacheControl/],
    ['a privateCacheControl with a newline', () => ({ privateCacheControl: 'private\nX: y' }), /privateCacheControl: expected a header value/],
    ['a privateCacheControl that is not a string', () => ({ privateCacheControl: 1 as never }), /privateCacheControl: expected a header value/],
    ['a privateCacheControl that says public', () => ({ privateCacheControl: 'private, public' }), /neither "public" nor "s-maxage"/],
    ['a privateCacheControl with s-maxage', () => ({ privateCacheControl: 'private, s-maxage=60' }), /neither "public" nor "s-maxage"/],
    ['a privateCacheControl saying neither private nor no-store', () => ({ privateCacheControl: 'max-age=60' }), /must say "private" or "no-store"/],
    ['trustUnrecordedUploads not a boolean', () => ({ trustUnrecordedUploads: 1 as never }), /trustUnrecordedUploads/],
  ];
  for (const [what, opts, message] of bad) {
    test(what, () => {
      assert.throws(() => createFileServer(quiet({ dataDir: join(tmp, 'data'), ...opts() })), (e: unknown) => {
        assert.ok(e instanceof WharfError, String(e));
        assert.equal(e.code, 'INVALID_OPTION');
        assert.match(e.message, message);
        return true;
      });
    });
  }
  test('options that are not an object', () => {
    assert.throws(() => createFileServer(null as never), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION');
  });
});

describe('routes', () => {
  let files: FileServer;
  let url: string;
  const warnings: string[] = [];
  before(async () => {
    files = createFileServer({
      dataDir: join(tmp, 'data'),
      publicDirs: [
        `/pub@${relative(process.cwd(), join(tmp, 'pub'))}`, // relative path, URL without trailing slash
        `/a/@${join(tmp, 'a')}`,
        { url: 'a/b', path: join(tmp, 'a', 'b') }, // nested, no leading slash: longest prefix wins
        `/my data/@${join(tmp, 'my data')}`,
        `/missing/@${join(tmp, 'nothing-here')}`,
        `/notadir/@${join(tmp, 'plainfile')}`,
        `/@${join(tmp, 'pub')}`, // the site root does not shadow _f/ or _m/
      ],
      warn: (m) => warnings.push(m),
    });
    ({ url } = await files.listen({ port: 0 }));
  });
  after(() => files.close());

  test('mappings: normalised URLs, relative paths, longest prefix, encoded names', async () => {
    assert.equal((await request(url, '/pub/ok.txt')).text, 'pub ok');
    assert.equal((await request(url, '/a/x.txt')).text, 'from a');
    assert.equal((await request(url, '/a/b/x.txt')).text, 'from a/b');
    assert.equal((await request(url, '/my%20data/x.txt')).text, 'spaced');
    assert.equal((await request(url, '/ok.txt')).text, 'pub ok');
    assert.equal((await request(url, `/_f/${id}/ok.txt`)).text, 'upload ok');
  });

  test('missing or non-directory mapped paths are warned about, loudly', () => {
    assert.ok(warnings.some((w) => /WARNING/.test(w) && w.includes('nothing-here') && w.includes('/missing/')), warnings.join('\n'));
    assert.ok(warnings.some((w) => w.includes('plainfile') && /not a directory/.test(w)), warnings.join('\n'));
  });

  test('unknown method on a known route: 405 with Allow', async () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', '/pub/ok.txt', 'GET, HEAD'],
      ['POST', '/a/x.txt', 'GET, HEAD'],
      ['PATCH', `/_f/${id}/ok.txt`, 'GET, HEAD, DELETE'],
      ['POST', `/_f/${id}/ok.txt`, 'GET, HEAD, DELETE'],
      ['GET', '/_f/', 'POST'],
      ['DELETE', '/_f', 'POST'],
      ['PUT', '/_m/cam', 'GET, HEAD, POST, DELETE'],
      ['OPTIONS', '/pub/ok.txt', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await request(url, path, { method });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.allow, allow, `${method} ${path}`);
      assert.equal(JSON.parse(r.text).error, 'METHOD_NOT_ALLOWED');
    }
  });

  test('a wharf route whose handler fails answers JSON and never hangs', async () => {
    const r = await request(url, `/_f/${randomUUID()}`, { method: 'DELETE', headers: { Authorization: DEFAULT_KEY } });
    assert.ok(r.status >= 400, String(r.status));
    assert.equal(typeof JSON.parse(r.text).error, 'string');
  });

  test('site and streamStats are there', () => {
    for (const f of ['upload', 'uploadDir', 'download', 'unload', 'uplink', 'unlink'] as const) assert.equal(typeof files.site[f], 'function', f);
    assert.ok(Array.isArray(files.streamStats()));
  });

  test('listen() twice is refused; a taken port is a clear error', async () => {
    await assert.rejects(files.listen({ port: 0 }), (e: unknown) => e instanceof WharfError && e.code === 'ALREADY_LISTENING');
    const other = createFileServer(quiet({ dataDir: join(tmp, 'data') }));
    await assert.rejects(other.listen({ port: Number(new URL(url).port) }), (e: unknown) => e instanceof WharfError && e.code === 'LISTEN_FAILED' && /EADDRINUSE/.test(e.message));
    await assert.rejects(other.listen({ port: 70000 }), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION');
    await other.close();
    await assert.rejects(other.listen({ port: 0 }), (e: unknown) => e instanceof WharfError && e.code === 'CLOSED');
  });
});

describe('standalone: no mapping at /', () => {
  test('a URL that is not wharf\'s: 404 JSON; baseUrl moves _f/ and _m/', async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), baseUrl: 'wave' }));
    const { url } = await files.listen({ port: 0 });
    try {
      const r = await request(url, '/elsewhere');
      assert.equal(r.status, 404);
      assert.equal(JSON.parse(r.text).error, 'NOT_FOUND');
      assert.equal((await request(url, `/_f/${id}/ok.txt`)).status, 404);
      assert.equal((await request(url, `/wave/_f/${id}/ok.txt`)).text, 'upload ok');
      assert.equal((await request(url, '/wave/_m/x', { method: 'PUT' })).headers.allow, 'GET, HEAD, POST, DELETE');
    } finally {
      await files.close();
    }
  });
});

describe('middleware mode', () => {
  test('plain node:http: next() for foreign URLs, 404 without next, wharf routes answered', async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), publicDirs: [`/pub/@${join(tmp, 'pub')}`] }));
    const server = createServer((req, res) => {
      if (req.url?.startsWith('/bare/')) {
        req.url = req.url.slice(5);
        files.handle(req, res);
        return;
      }
      files.handle(req, res, () => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('host app'));
    });
    const url = await listenOn(server);
    try {
      assert.equal((await request(url, '/pub/ok.txt')).text, 'pub ok');
      assert.equal((await request(url, `/_f/${id}/ok.txt`)).text, 'upload ok');
      assert.equal((await request(url, '/anything')).text, 'host app');
      assert.equal((await request(url, '/_fx/y')).text, 'host app');
      // Routing decodes before it matches: a host URL with an escape wharf could not decode, or an
      // encoded slash where a prefix needs a separator, is the host's, untouched; an escaped
      // spelling of wharf's own URL is wharf's (RFC 3986 §6.2.2.2).
      for (const path of ['/api/%zz', '/pub%2Fok.txt', '/%zz/pub/ok.txt']) assert.equal((await request(url, path)).text, 'host app', path);
      assert.equal((await request(url, '/%70ub/ok.txt')).text, 'pub ok');
      const bare = await request(url, '/bare/nothing');
      assert.equal(bare.status, 404);
      assert.equal(JSON.parse(bare.text).error, 'NOT_FOUND');
      assert.equal((await request(url, '/bare/pub/ok.txt')).text, 'pub ok');
      // after close(): wharf's routes are refused, the host's still work
      await files.close();
      const r = await request(url, '/pub/ok.txt');
      assert.equal(r.status, 503);
      assert.equal(JSON.parse(r.text).error, 'SHUTTING_DOWN');
      assert.equal((await request(url, '/anything')).text, 'host app');
    } finally {
      await files.close();
      await stop(server);
    }
  });

  test('a request whose async authorize() resolves after close() began gets 503', async () => {
    let allow!: (ok: boolean) => void;
    let asked!: () => void;
    const wasAsked = new Promise<void>((r) => { asked = r; });
    const files = createFileServer(quiet({
      dataDir: join(tmp, 'data'),
      privateDirs: [`/priv/@${join(tmp, 'pub')}`],
      authorize: () => { asked(); return new Promise<boolean>((r) => { allow = r; }); },
    }));
    const server = createServer((req, res) => files.handle(req, res));
    const url = await listenOn(server);
    try {
      const reply = request(url, '/priv/ok.txt');
      await wasAsked;
      const closing = files.close();
      allow(true);
      const r = await reply;
      assert.equal(r.status, 503);
      assert.equal(JSON.parse(r.text).error, 'SHUTTING_DOWN');
      await closing;
    } finally {
      await stop(server);
    }
  });

  test('upload storage that cannot start: _f/ answers 500 JSON (retrying each time), mappings still serve, listen() rejects', async () => {
    const warnings: string[] = [];
    const files = createFileServer({ dataDir: join(tmp, 'plainfile'), publicDirs: [`/pub/@${join(tmp, 'pub')}`], warn: (m) => warnings.push(m) });
    const server = createServer((req, res) => files.handle(req, res));
    const url = await listenOn(server);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await request(url, `/_f/${id}/ok.txt`);
        assert.equal(r.status, 500);
        assert.equal(typeof JSON.parse(r.text).error, 'string');
      }
      assert.ok(warnings.length >= 1, 'the failure is logged');
      assert.equal((await request(url, '/pub/ok.txt')).text, 'pub ok');
      await assert.rejects(files.listen({ port: 0 }));
    } finally {
      await files.close();
      await stop(server);
    }
  });

  test('Express 5: app.use(files.handle) next to the app\'s own routes', async () => {
    const files = createFileServer(quiet({
      dataDir: join(tmp, 'data'),
      publicDirs: [`/pub/@${join(tmp, 'pub')}`],
      privateDirs: [`/priv/@${join(tmp, 'a')}`],
      authorize: (req) => req.headers.cookie === 'sid=1',
    }));
    const app = express();
    let nextReached = 0;
    app.get('/hello', (_req, res) => { res.send('express route'); });
    app.use(files.handle);
    app.use((_req, res) => {
      nextReached++;
      res.status(404).json({ error: 'APP_NOT_FOUND' });
    });
    const server = createServer(app);
    const url = await listenOn(server);
    try {
      assert.equal((await request(url, '/hello')).text, 'express route');
      assert.equal((await request(url, '/pub/ok.txt')).text, 'pub ok');
      const range = await request(url, '/pub/ok.txt', { headers: { range: 'bytes=0-2' } });
      assert.equal(range.status, 206);
      assert.equal(range.text, 'pub');
      assert.equal((await request(url, '/priv/x.txt')).status, 401);
      assert.equal((await request(url, '/priv/x.txt', { headers: { cookie: 'sid=1' } })).text, 'from a');
      assert.equal((await request(url, `/_f/${id}/ok.txt`, { headers: { cookie: 'sid=1' } })).text, 'upload ok');
      assert.equal((await request(url, `/_f/${id}/ok.txt`)).status, 401);
      const foreign = await request(url, '/not-wharf');
      assert.equal(foreign.status, 404);
      assert.equal(JSON.parse(foreign.text).error, 'APP_NOT_FOUND');
      assert.equal(nextReached, 1);
    } finally {
      await files.close();
      await stop(server);
    }
  });
});

describe('early refusals, before any body byte is read', () => {
  let files: FileServer;
  let url: string;
  let port: number;
  before(async () => {
    files = createFileServer(quiet({ dataDir: join(tmp, 'data'), limits: { requestSize: 1000, frameSize: 1000 } }));
    ({ url, port } = await files.listen({ port: 0 }));
  });
  after(() => files.close());

  const head = (path: string, headers: string[]): string => [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...headers].join('\r\n');
  const firstLine = (s: string): string => s.slice(0, s.indexOf('\r\n'));

  test('Content-Length over limits.requestSize on POST _f/: 413 and the connection closes', async () => {
    const r = await request(url, '/_f/', { method: 'POST', headers: { Authorization: DEFAULT_KEY, 'Content-Length': '5000', 'Content-Type': 'multipart/form-data; boundary=x' }, body: Buffer.alloc(5000) }).catch((e: Error) => e);
    if (r instanceof Error) assert.match(r.message, /EPIPE|ECONNRESET/); // the server may cut us off mid-body
    else {
      assert.equal(r.status, 413);
      assert.equal(JSON.parse(r.text).error, 'LIMIT_REQUEST_SIZE');
      assert.equal(r.headers.connection, 'close');
    }
  });

  test('Expect: 100-continue over the limit: 413 instead of 100 Continue', async () => {
    const got = await rawExchange(port, head('/_f/', [`Authorization: ${DEFAULT_KEY}`, 'Content-Type: multipart/form-data; boundary=x', 'Content-Length: 1001', 'Expect: 100-continue']));
    assert.equal(firstLine(got), 'HTTP/1.1 413 Payload Too Large');
    assert.match(got, /LIMIT_REQUEST_SIZE/);
    assert.doesNotMatch(got, /100 Continue/);
  });

  test('Expect: 100-continue without credentials: 401 instead of 100 Continue (auth comes first)', async () => {
    const got = await rawExchange(port, head('/_f/', ['Content-Type: multipart/form-data; boundary=x', 'Content-Length: 5000', 'Expect: 100-continue']));
    assert.equal(firstLine(got), 'HTTP/1.1 401 Unauthorized');
    assert.match(got, /WWW-Authenticate: Basic realm="wharf"/i);
  });

  test('Expect: 100-continue within the limit: 100 Continue, then the handler', async () => {
    const got = await rawExchange(port, head('/_f/', [`Authorization: ${DEFAULT_KEY}`, 'Content-Type: text/plain', 'Content-Length: 10', 'Expect: 100-continue']), {
      until: (s) => s.includes('\r\n\r\n'),
    });
    assert.equal(firstLine(got), 'HTTP/1.1 100 Continue');
  });

  test('Expect: 100-continue on a foreign URL or a wrong method: refused, no 100 Continue', async () => {
    const foreign = await rawExchange(port, head('/elsewhere', ['Content-Length: 10', 'Expect: 100-continue']));
    assert.equal(firstLine(foreign), 'HTTP/1.1 404 Not Found');
    const wrong = await rawExchange(port, head(`/_f/${id}/ok.txt`, ['Content-Length: 10', 'Expect: 100-continue']));
    assert.equal(firstLine(wrong), 'HTTP/1.1 405 Method Not Allowed');
  });

  test('POST _m/: frameSize plus framing allowance', async () => {
    const over = await rawExchange(port, head('/_m/cam', [`Authorization: ${DEFAULT_KEY}`, 'Content-Type: image/png', `Content-Length: ${1000 + 64 * 1024 + 1}`, 'Expect: 100-continue']));
    assert.equal(firstLine(over), 'HTTP/1.1 413 Payload Too Large');
    assert.match(over, /LIMIT_FRAME_SIZE/);
    const within = await rawExchange(port, head('/_m/cam', [`Authorization: ${DEFAULT_KEY}`, 'Content-Type: image/png', 'Content-Length: 2000', 'Expect: 100-continue']), {
      until: (s) => s.includes('\r\n\r\n'),
    });
    assert.equal(firstLine(within), 'HTTP/1.1 100 Continue');
  });
});

describe('timeouts', () => {
  test('a client that never finishes its headers is disconnected (limits.headersTimeout)', { timeout: 20_000 }, async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), limits: { headersTimeout: 300 } }));
    const { port } = await files.listen({ port: 0 });
    try {
      // resolves only once the server closes the connection
      const got = await new Promise<string>((resolve) => {
        const sock = connect(port, '127.0.0.1');
        let text = '';
        sock.on('data', (d: Buffer) => { text += d.toString('latin1'); });
        sock.on('error', () => {});
        sock.on('close', () => resolve(text));
        sock.write('GET /pub/ok.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1');
      });
      assert.ok(got === '' || /^HTTP\/1\.1 408/.test(got), got);
    } finally {
      await files.close();
    }
  });
});

describe('close()', () => {
  let bigDir: string;
  let bigPath: string;
  before(async () => {
    bigDir = join(tmp, 'big');
    await mkdir(bigDir);
    bigPath = join(bigDir, '100m.bin');
    await writeFile(bigPath, Buffer.alloc(0));
    await truncate(bigPath, 100 * 1024 * 1024);
  });

  test('while a 100 MiB download is in flight and the client stalls: cut off after the grace, file closed', async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), publicDirs: [`/big/@${bigDir}`], limits: { closeGrace: 300 } }));
    const { port } = await files.listen({ port: 0 });
    let received = 0;
    const ended = new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/big/100m.bin', agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', (c: Buffer) => {
          received += c.length;
          res.pause(); // a stalled client: the server cannot finish within the grace
          resolve(files.close().then(() => 'closed'));
        });
        res.on('error', () => {});
      });
      req.on('error', () => {});
      req.end();
    });
    assert.equal(await ended, 'closed');
    assert.ok(received < 100 * 1024 * 1024);
    await eventually(async () => (await fdsOn(bigPath)) === 0, 'the 100 MiB file is closed');
    await assert.rejects(request(`http://127.0.0.1:${port}`, '/big/100m.bin'), /ECONNREFUSED/);
  });

  test('middleware mode, two pipelined downloads and a stalled client: close() cuts the connection after the grace, both files closed', async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), publicDirs: [`/big/@${bigDir}`], limits: { closeGrace: 300 } }));
    const host = createServer((req, res) => files.handle(req, res));
    const port = Number(new URL(await listenOn(host)).port);
    try {
      const sock = connect(port, '127.0.0.1');
      sock.on('error', () => {});
      const cut = new Promise<void>((resolve) => sock.once('close', () => resolve()));
      const get = 'GET /big/100m.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
      sock.write(get + get);
      await new Promise<void>((resolve) => sock.once('data', () => resolve()));
      sock.pause(); // stalled: neither answer can finish within the grace
      // both requests reached wharf: the first is being sent, the second waits behind it with its file open
      await eventually(async () => (await fdsOn(bigPath)) === 2, 'both files are open');
      const started = Date.now();
      await files.close();
      assert.ok(Date.now() - started >= 250, 'close() waited for the grace');
      sock.resume(); // read what was sent, then see the connection cut
      await cut;
      await eventually(async () => (await fdsOn(bigPath)) === 0, 'both files are closed');
    } finally {
      await stop(host);
    }
  });

  test('a 100 MiB download that keeps reading is allowed to finish; idle keep-alive connections are closed', async () => {
    const files = createFileServer(quiet({ dataDir: join(tmp, 'data'), publicDirs: [`/big/@${bigDir}`, `/pub/@${join(tmp, 'pub')}`] }));
    const { port } = await files.listen({ port: 0 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // an idle keep-alive connection, left open by the agent
    const idleClosed = new Promise<void>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/pub/ok.txt', agent }, (res) => {
        res.resume();
        res.on('end', () => undefined);
      });
      req.on('socket', (s) => s.once('close', () => resolve()));
      req.end();
    });
    let closePromise: Promise<void> | undefined;
    const received = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/big/100m.bin', agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          closePromise ??= files.close();
        });
        res.on('end', () => resolve(n));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(received, 100 * 1024 * 1024);
    await closePromise;
    await idleClosed;
    agent.destroy();
    assert.equal(await fdsOn(bigPath), 0);
    assert.equal(files.close(), closePromise, 'close() is idempotent');
  });
});
