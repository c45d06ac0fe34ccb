// Shared by the client and command tests: temp dirs, a wharf server on 127.0.0.1:0, small HTTP helpers.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createFileServer, type FileServer, type FileServerOptions } from '../../lib/http/server.js';
import { tempDir } from './temp-dir.js';
import { APP_CLIENT_KEY } from './keys.js';
import { defer } from './defer.js';

export { tempDir };

export const KEY = APP_CLIENT_KEY;
export const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

export interface Running {
  files: FileServer;
  url: string;
  dataDir: string;
  /** TCP connections the server accepted so far. */
  connections(): number;
}

/**
 * A wharf server on 127.0.0.1:0. `middleware` runs it through `handle()` in a plain `node:http`
 * server, so the test can count connections.
 */
export async function startWharf(t: TestContext, options: FileServerOptions = {}, middleware = false): Promise<Running> {
  const dataDir = options.dataDir ?? join(await tempDir(t, 'wharf-data-'), 'data');
  const files = createFileServer({ accessKeys: { [KEY.accessKeyId]: KEY.accessKeySecret }, warn: () => {}, ...options, dataDir });
  let count = 0;
  if (!middleware) {
    const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
    defer(t, () => files.close());
    return { files, url, dataDir, connections: () => Number.NaN };
  }
  const server = http.createServer((req, res) => files.handle(req, res));
  server.on('connection', () => { count++; });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(t, async () => {
    await files.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as { port: number };
  return { files, url: `http://127.0.0.1:${port}`, dataDir, connections: () => count };
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One plain request, no keep-alive, body read whole. */
export function fetchRaw(url: string, init: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

export const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');
export const sha256File = async (path: string): Promise<string> => sha256(await readFile(path));

/** Every regular file under `dir`, relative; `[]` when `dir` does not exist. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) if (e.isFile()) out.push(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length + 1));
  return out.sort();
}

/** Polls `check` until it is true or `ms` have passed; resolves with its last answer. */
export async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
