// The framework plugins with the real frameworks on free ports: Fastify (its hooks run for wharf's
// routes), Koa, Hono on @hono/node-server, and Express mounted under a path.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { Agent, createServer, get as httpGet, type IncomingMessage, type Server } from 'node:http';
import { test, type TestContext } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { Hono } from 'hono';
import { serve as honoServe } from '@hono/node-server';
import { createFileServer, type FileServer, type FileServerOptions } from '../lib/index.js';
import { wharfFastify } from '../lib/plugins/fastify.js';
import { wharfHono } from '../lib/plugins/hono.js';
import { wharfKoa } from '../lib/plugins/koa.js';
import { frame } from './helpers/streams.js';
import { view } from './helpers/mixed-replace.js';
import { EMPTY, KEY, get, send, settledTree, tempDir, upload } from './helpers/uploads.js';
import { connect } from '../lib/client/index.js';
import { defer } from './helpers/defer.js';

async function files(t: TestContext, options: FileServerOptions = {}): Promise<{ files: FileServer; dataDir: string }> {
  const dataDir = await tempDir(t);
  const f = createFileServer({ dataDir, warn: () => {}, ...options });
  defer(t, () => f.close());
  return { files: f, dataDir };
}

const urlOf = (server: Server): string => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function listen(t: TestContext, server: Server): Promise<string> {
  if (!server.listening) await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  defer(t, () => new Promise<void>((ok) => {
    server.closeAllConnections();
    server.close(() => ok());
  }));
  return urlOf(server);
}

/**
 * Upload, download, delete and a stream published and viewed, all through `url` with wharf under
 * `mount` (its answers' paths must be under it); the app's own route `/hello` still answers.
 */
async function exercise(url: string, mount = ''): Promise<void> {
  const up = await upload(url, [{ filename: 'a b.txt', contentType: 'text/plain', data: 'through the framework' }], { Authorization: KEY }, `${mount}/`);
  assert.equal(up.status, 200, up.body.toString());
  const path = up.json.files[0] as string;
  assert.ok(path.startsWith(`${mount}/_f/`), path);
  const back = await get(url, path);
  assert.equal(back.status, 200);
  assert.equal(back.body.toString(), 'through the framework');
  assert.equal((await send(url, 'HEAD', path)).status, 200);
  const id = path.split('/').at(-2)!;
  const removed = await send(url, 'DELETE', `${mount}/_f/${id}`, undefined, { Authorization: KEY });
  assert.equal(removed.status, 200);
  assert.deepEqual(removed.json, { removed: `${mount}/_f/${id}` });
  assert.equal((await get(url, path)).status, 404);

  const first = frame(1, 3000);
  const publish = (data: Buffer): ReturnType<typeof send> =>
    send(url, 'POST', `${mount}/_m/cam`, data, { Authorization: KEY, 'Content-Type': 'image/jpeg' });
  assert.equal((await publish(first)).status, 200);
  const v = await view(`${url}${mount}/_m/cam`);
  try {
    assert.equal(v.status, 200);
    const second = frame(2, 5000);
    assert.equal((await publish(second)).status, 200);
    await v.until((r) => r.parts.length >= 2, 'two frames');
    assert.ok(v.reader.parts[1]!.body.equals(second));
    assert.equal((await send(url, 'DELETE', `${mount}/_m/cam`, undefined, { Authorization: KEY })).status, 200);
    assert.equal((await v.ended).complete, true, 'the stream ended');
  } finally {
    v.close();
  }
  assert.equal((await get(url, '/hello')).body.toString(), 'app');
}

test('Fastify: wharf routes run the app\'s hooks; a preHandler refuses an upload before a byte is stored', async (t) => {
  const { files: f, dataDir } = await files(t);
  const logged: string[] = [];
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void logged.push(line) } } });
  defer(t, () => app.close());
  const seen: string[] = [];
  app.addHook('onRequest', async (req) => void seen.push(`${req.method} ${req.url}`));
  app.addHook('preHandler', async (req, reply) => {
    if (req.headers['x-banned'] === 'yes') await reply.code(429).send({ error: 'RATE_LIMITED' });
  });
  app.get('/hello', async () => 'app');
  app.post('/json', async (req) => req.body);
  await app.register(wharfFastify(f));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = urlOf(app.server);
  await exercise(url);
  assert.ok(seen.includes('POST /_f/') && seen.includes('GET /_m/cam'), seen.join(', '));
  assert.ok(logged.some((l) => l.includes('"url":"/_f/"')), 'Fastify\'s logger saw the upload');
  assert.ok(logged.some((l) => l.includes('"statusCode":200') && l.includes('request completed')), 'and its completion');

  const refused = await upload(url, [{ filename: 'x.bin', data: Buffer.alloc(256 * 1024, 1) }], { Authorization: KEY, 'X-Banned': 'yes' });
  assert.equal(refused.status, 429);
  assert.deepEqual(await settledTree(dataDir), EMPTY, 'nothing stored');
  // The app's own JSON route outside the plugin still parses bodies.
  const json = await send(url, 'POST', '/json', Buffer.from('{"a":1}'), { 'Content-Type': 'application/json' });
  assert.deepEqual(json.json, { a: 1 });
});

test('Fastify under a prefix: URLs handed out are under it', async (t) => {
  const { files: f } = await files(t);
  const app = Fastify();
  defer(t, () => app.close());
  app.get('/hello', async () => 'app');
  await app.register(wharfFastify(f), { prefix: '/files' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  await exercise(urlOf(app.server), '/files');
  const put = await send(urlOf(app.server), 'PUT', '/files/_f/x', Buffer.from('x'));
  assert.deepEqual([put.status, put.json.error, put.headers.allow], [405, 'METHOD_NOT_ALLOWED', 'GET, HEAD, DELETE'], 'wharf\'s answer, not Fastify\'s 404');
  assert.equal((await get(urlOf(app.server), '/_f/x/y')).status, 404, 'not at the root');
});

test('Koa: wharf answers its URLs, upstream middleware sees the finished answer, the rest goes on', async (t) => {
  const { files: f, dataDir } = await files(t);
  const app = new Koa();
  const statuses: number[] = [];
  app.use(async (ctx, next) => {
    if (ctx.get('x-banned') === 'yes') {
      ctx.status = 403;
      ctx.body = { error: 'BANNED' };
      return;
    }
    await next();
    if (!ctx.path.startsWith('/_')) return;
    statuses.push(ctx.res.statusCode);
    assert.equal(ctx.res.writableEnded, true, 'answered by the time next() resolves');
  });
  app.use(wharfKoa(f));
  app.use((ctx) => {
    if (ctx.path === '/hello') ctx.body = 'app';
  });
  const url = await listen(t, app.listen(0, '127.0.0.1'));
  await exercise(url);
  assert.ok(statuses.filter((s) => s === 200).length >= 5, statuses.join(','));
  const refused = await upload(url, [{ filename: 'x.bin', data: Buffer.alloc(256 * 1024, 1) }], { Authorization: KEY, 'X-Banned': 'yes' });
  assert.equal(refused.status, 403);
  assert.deepEqual(await settledTree(dataDir), EMPTY);
});

test('Hono on @hono/node-server: wharf answers on the Node response; other routes are Hono\'s', async (t) => {
  const { files: f } = await files(t);
  const app = new Hono();
  const seen: string[] = [];
  app.use(async (c, next) => {
    await next();
    seen.push(`${c.req.method} ${new URL(c.req.url).pathname}`);
  });
  app.use(wharfHono(f));
  app.get('/hello', (c) => c.text('app'));
  const server = honoServe({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
  await new Promise<void>((ok) => (server.listening ? ok() : server.once('listening', () => ok())));
  const url = await listen(t, server);
  // @hono/node-server must write nothing more after wharf's answer: no error logged for it, and the
  // connection kept alive for the next request.
  const errors: unknown[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void errors.push(args);
  defer(t, () => void (console.error = consoleError));
  let connections = 0;
  server.on('connection', () => void connections++);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  defer(t, () => agent.destroy());
  for (let i = 0; i < 3; i++) {
    const status = await new Promise<number>((ok, fail) => {
      httpGet(`${url}/_wharf/health`, { agent }, (res) => {
        res.resume();
        res.once('end', () => ok(res.statusCode ?? 0));
      }).once('error', fail);
    });
    assert.equal(status, 200);
  }
  assert.equal(connections, 1, 'one keep-alive connection for three answers');
  await exercise(url);
  assert.deepEqual(errors, [], 'nothing logged by @hono/node-server');
  console.error = consoleError;
  assert.ok(seen.includes('POST /_f/') && seen.includes('GET /hello'), seen.join(', '));
  const bare = wharfHono(f);
  await assert.rejects(() => bare({ env: {} }, async () => {}), /needs @hono\/node-server/);
});

test('Express mounted under /files: answers, onUpload and the client all use /files/ URLs', async (t) => {
  const paths: string[] = [];
  const { files: f } = await files(t, { onUpload: (e) => void paths.push(e.files[0]!.path) });
  const app = express();
  app.use('/files', f.handle);
  app.get('/hello', (_req, res) => void res.send('app'));
  const url = await listen(t, app.listen(0, '127.0.0.1'));
  await exercise(url, '/files');
  assert.ok(paths[0]?.startsWith('/files/_f/'), paths.join(','));
  // Wave's client, pointed at the mount: upload, download and unload go through the prefixed URLs.
  const dir = await tempDir(t);
  const { writeFile, readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await writeFile(join(dir, 'c.txt'), 'client');
  const site = connect(url, { baseUrl: '/files/' });
  defer(t, () => site.close());
  const [uploaded] = await site.upload([join(dir, 'c.txt')]);
  assert.ok(uploaded!.startsWith('/files/_f/'), uploaded);
  const to = await site.download(uploaded!, join(dir, 'back.txt'));
  assert.equal(await readFile(to, 'utf8'), 'client');
  await site.unload(uploaded!);
});

test('Express mounted under /files with baseUrl /files/: files.site and HTTP hand out the same URLs', async (t) => {
  const { files: f } = await files(t, { baseUrl: '/files/' });
  const app = express();
  app.use('/files', f.handle);
  app.get('/hello', (_req, res) => void res.send('app'));
  const url = await listen(t, app.listen(0, '127.0.0.1'));
  await exercise(url, '/files');
  const { writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const local = join(await tempDir(t), 'local.txt');
  await writeFile(local, 'in process');
  const [path] = await f.site.upload([local]);
  assert.ok(path!.startsWith('/files/_f/'), path);
  assert.equal((await get(url, path!)).body.toString(), 'in process');
});

test('Connect-style mounting (req.originalUrl, no req.baseUrl): URLs handed out are under the mount', async (t) => {
  const { files: f } = await files(t);
  // What Connect does for app.use('/files', fn): the mount path cut from req.url, kept in originalUrl.
  const server = createServer((req: IncomingMessage & { originalUrl?: string }, res) => {
    if (req.url === '/hello') return void res.end('app');
    if (!req.url!.startsWith('/files/')) return void res.writeHead(404).end();
    req.originalUrl = req.url!;
    req.url = req.url!.slice('/files'.length);
    f.handle(req, res, () => res.writeHead(404).end());
  });
  await exercise(await listen(t, server), '/files');
});
