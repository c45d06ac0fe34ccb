// Pipelined requests (RFC 9112 §9.3.2, §9.6), over raw sockets: an unsafe request pipelined behind
// an answer still being given waits for its turn, and runs then; after an answer that announced
// close — decided at once or later (an async authorize hook) — nothing more runs, in standalone and
// middleware modes; a flood of waiting requests on one connection cuts it.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFileServer, type FileServer, type FileServerOptions } from '../lib/http/server.js';
import { formBuffer } from './helpers/load-gen.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { APP_AUTH } from './helpers/keys.js';
import { defer } from './helpers/defer.js';

const KEY = APP_AUTH;

interface Setup {
  files: FileServer;
  port: number;
  dataDir: string;
  upload(): Promise<string>;
}

async function setup(t: TestContext, options: FileServerOptions = {}, middleware?: (req: IncomingMessage) => void): Promise<Setup> {
  const { dir, cleanup } = await makeTempDir('wharf-pipelining-');
  defer(t, cleanup);
  await mkdir(join(dir, 'pub'));
  await writeFile(join(dir, 'pub', 'big.bin'), Buffer.alloc(32 << 20, 7));
  const dataDir = join(dir, 'data');
  const files = createFileServer({ dataDir, publicDirs: [`/pub/@${join(dir, 'pub')}`], accessKeys: { app: 'app-secret' }, warn: () => {}, ...options });
  defer(t, () => files.close());
  let port: number;
  if (middleware === undefined) {
    ({ port } = await files.listen({ port: 0 }));
  } else {
    await files.listen({ port: 0 }); // starts the storage; this test talks to the host server below
    const host = createServer((req, res) => files.handle(req, res, () => {
      middleware(req);
      res.end('host app');
    }));
    await new Promise<void>((ok) => host.listen(0, '127.0.0.1', ok));
    defer(t, () => new Promise<void>((ok) => { host.close(() => ok()); host.closeAllConnections(); }));
    port = (host.address() as AddressInfo).port;
  }
  const upload = async (): Promise<string> => {
    const form = formBuffer([{ filename: 'doc.txt', data: Buffer.from('doc') }]);
    const a = await exchange(port, [head('POST', '/_f/', { 'Content-Type': form.contentType, Authorization: KEY, 'Content-Length': String(form.body.length), Connection: 'close' }, form.body)]);
    return (JSON.parse(a.slice(a.indexOf('\r\n\r\n') + 4)) as { files: string[] }).files[0]!.split('/')[2]!;
  };
  return { files, port, dataDir, upload };
}

function head(method: string, path: string, headers: Record<string, string>, body?: Buffer): Buffer {
  const lines = Object.entries({ Host: 'x', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${lines}\r\n`, 'latin1'), body ?? Buffer.alloc(0)]);
}

/** Writes `requests` at once; reads until the server closes or ends (then waits `hold` ms more). */
function exchange(port: number, requests: Buffer[], opts: { hold?: number; read?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    if (opts.read !== false) sock.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    sock.on('error', () => {});
    sock.once('end', () => setTimeout(() => sock.destroy(), opts.hold ?? 0));
    sock.once('close', () => resolve(got));
    sock.write(Buffer.concat(requests));
  });
}

const statuses = (raw: string): number[] => [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const exists = (s: Setup, id: string): boolean => existsSync(join(s.dataDir, 'f', id));

test('a DELETE pipelined behind a download waits for it, then runs and is answered in order', async (t) => {
  const s = await setup(t);
  const id = await s.upload();
  const raw = await exchange(s.port, [
    head('GET', '/pub/big.bin', {}),
    head('DELETE', `/_f/${id}`, { Authorization: KEY }),
    head('GET', `/_f/${id}/doc.txt`, { Connection: 'close' }),
  ]);
  assert.deepEqual(statuses(raw), [200, 200, 404]);
  assert.ok(raw.includes(`{"removed":"/_f/${id}"}`));
  assert.equal(exists(s, id), false);
});

test('an async authorize hook that refuses: the DELETE pipelined behind it never runs', async (t) => {
  const s = await setup(t, { authorize: () => new Promise<boolean>((ok) => setTimeout(() => ok(false), 50)) });
  const id = await s.upload();
  const form = formBuffer([{ filename: 'a.txt', data: Buffer.from('a') }]);
  const raw = await exchange(s.port, [
    head('POST', '/_f/', { 'Content-Type': form.contentType, 'Content-Length': String(form.body.length) }, form.body),
    head('DELETE', `/_f/${id}`, { Authorization: KEY, Connection: 'close' }),
  ], { hold: 200 });
  assert.deepEqual(statuses(raw), [401]);
  assert.match(raw, /Connection: close/i);
  assert.equal(exists(s, id), true);
});

test('middleware mode: after a refusal that closes, neither wharf nor the host app runs what follows', async (t) => {
  const seen: string[] = [];
  const s = await setup(t, {}, (req) => seen.push(`${req.method} ${req.url}`));
  const id = await s.upload();
  const raw = await exchange(s.port, [
    head('PUT', `/_f/${id}/doc.txt`, { 'Content-Length': '1' }, Buffer.from('x')),
    head('DELETE', `/_f/${id}`, { Authorization: KEY }),
    head('POST', '/api/orders', { 'Content-Length': '2' }, Buffer.from('{}')),
    head('GET', '/api/status', { Connection: 'close' }),
  ], { hold: 200 });
  assert.deepEqual(statuses(raw), [405]);
  assert.equal(exists(s, id), true);
  assert.deepEqual(seen, []);
  // The host's own routes still work on a fresh connection.
  assert.deepEqual(statuses(await exchange(s.port, [head('GET', '/api/status', { Connection: 'close' })])), [200]);
  assert.deepEqual(seen, ['GET /api/status']);
});

test('more than 32 unsafe requests waiting on one connection: it is cut, and none of them ran', async (t) => {
  const s = await setup(t);
  const id = await s.upload();
  // A download the client never reads holds the connection; DELETEs pile up behind it.
  const deletes = Array.from({ length: 40 }, () => head('DELETE', `/_f/${id}`, { Authorization: KEY }));
  const t0 = Date.now();
  // Resolves when the server cuts the connection (this client never reads, so never ends it).
  await exchange(s.port, [head('GET', '/pub/big.bin', {}), ...deletes], { read: false });
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(exists(s, id), true);
});
