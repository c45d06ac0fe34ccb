// An answer given before the request body is read to its end must reach the client (RFC 9112 §9.6),
// and the connection must still be closed, without the server draining the whole body.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileServer } from '../lib/index.js';
import { connect } from '../lib/client/index.js';
import { APP_CLIENT_KEY } from './helpers/keys.js';
import { defer } from './helpers/defer.js';

const KEY = APP_CLIENT_KEY;

test('a limit crossed mid-upload: every client gets the 413, not a connection reset', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-linger-'));
  defer(t, () => rm(dir, { recursive: true, force: true }));
  const files = createFileServer({ dataDir: join(dir, 'data'), accessKeys: { app: 'app-secret' }, limits: { fileSize: 1 << 20 } });
  const { url } = await files.listen({ port: 0 });
  defer(t, () => files.close());
  const big = join(dir, 'big.bin');
  await writeFile(big, Buffer.alloc(48 << 20, 7));
  const site = connect(url, KEY);
  const outcomes: string[] = [];
  for (let i = 0; i < 12; i++) {
    const err = await site.upload([big]).then(() => undefined, (e: { status: number; code: string }) => e);
    outcomes.push(err ? `${err.status} ${err.code}` : 'stored');
  }
  assert.deepEqual(outcomes, Array(12).fill('413 LIMIT_FILE_SIZE'));
});

test('an early refusal without Expect: the client still sending reads the 401, and the server cuts it off after a bounded drain', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-linger-'));
  defer(t, () => rm(dir, { recursive: true, force: true }));
  const files = createFileServer({ dataDir: join(dir, 'data'), accessKeys: { app: 'app-secret' } });
  const { port } = await files.listen({ port: 0 });
  defer(t, () => files.close());

  // A client announcing 1 GiB and writing without pause, never stopping by itself.
  const sock = tcpConnect(port, '127.0.0.1');
  await new Promise((ok) => sock.once('connect', ok));
  sock.write(`POST /_f/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: ${2 ** 30}\r\n\r\n`);
  let answer = '';
  sock.on('data', (d: Buffer) => { answer += d.toString('latin1'); });
  const chunk = Buffer.alloc(64 * 1024, 1);
  let sent = 0;
  let writing = true;
  const pump = (): void => {
    while (writing && !sock.destroyed && sock.write(chunk)) sent += chunk.length;
    if (writing && !sock.destroyed) sock.once('drain', pump);
  };
  sock.on('error', () => { writing = false; });
  pump();
  await new Promise((ok) => sock.once('close', ok));
  writing = false;
  assert.match(answer, /^HTTP\/1\.1 401 /);
  assert.match(answer, /Connection: close/i);
  assert.match(answer, /"error":"UNAUTHORIZED"/);
  assert.ok(sent < 2 ** 30, 'the server did not read the whole announced body');

  // The connection was closed for that client only: the server answers the next one.
  const status = await new Promise<number>((ok, bad) => {
    request({ port, path: '/_f/nope', method: 'GET' }, (res) => { res.resume(); ok(res.statusCode ?? 0); }).on('error', bad).end();
  });
  assert.equal(status, 404);
});

test('the staged close drains what the client still sends (up to its budget) and closes once the client is done', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-linger-'));
  defer(t, () => rm(dir, { recursive: true, force: true }));
  const files = createFileServer({ dataDir: join(dir, 'data'), accessKeys: { app: 'app-secret' } });
  const server = createServer((req, res) => files.handle(req, res));
  const read = new Promise<number>((ok) => server.once('connection', (socket) => socket.once('close', () => ok(socket.bytesRead))));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  defer(t, () => new Promise<void>((ok) => { server.close(() => ok()); server.closeAllConnections(); }));
  defer(t, () => files.close());
  const port = (server.address() as AddressInfo).port;

  // Refused at its headers (no key), then 6 MiB of body, then the client half-closes and waits.
  const head = Buffer.from(`POST /_f/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: ${6 << 20}\r\n\r\n`);
  const sock = tcpConnect(port, '127.0.0.1');
  let answer = '';
  sock.on('data', (d: Buffer) => { answer += d.toString('latin1'); });
  sock.on('error', () => {}); // a cut connection fails the assertions below, not the process
  const t0 = Date.now();
  sock.end(Buffer.concat([head, Buffer.alloc(6 << 20, 1)]));
  await new Promise((ok) => sock.once('close', ok));
  const took = Date.now() - t0;
  assert.match(answer, /^HTTP\/1\.1 401 /);
  assert.equal(await read, head.length + (6 << 20), 'the server read every byte the client sent');
  assert.ok(took < 1500, `closed once the client was done (${took} ms), not when the linger ran out`);
});
