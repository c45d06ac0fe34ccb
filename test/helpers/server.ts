// Shared helpers of the server, static and auth tests: temp dirs, raw HTTP over real sockets.
import { createServer, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { readdir, readlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FileSource, StaticEngine } from '../../lib/static/engine.js';
import { defer } from './defer.js';
import { DEFAULT_AUTH } from './keys.js';

/** Wave's default key, valid on loopback. */
export const DEFAULT_KEY = DEFAULT_AUTH;

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One request with the path sent exactly as given (no normalisation), body read whole. */
export function request(
  base: string,
  path: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The status of a request, without waiting for (or reading) the body: for endless streams and stubs. */
export function statusOf(base: string, path: string, options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer } = {}): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.destroy();
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** How many of this process's descriptors point at `path` (Linux /proc). */
export async function fdsOn(path: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    try {
      if ((await readlink(`/proc/self/fd/${fd}`)) === path) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

export { eventually } from './eventually.js';

/**
 * A plain node:http server on a free port answering `/x/<rel>` with `engine` from `source` (the
 * static engine alone, no routes in front); stopped by `t`'s cleanups.
 */
export async function serveEngine(t: Parameters<typeof defer>[0], engine: StaticEngine, source: FileSource): Promise<string> {
  const server = createServer((req, res) => void engine.respond(req, res, source, (req.url ?? '').slice(3).split('?')[0]!));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  defer(t, () => new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections(); // a download a failed test left running must not hold the close
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
