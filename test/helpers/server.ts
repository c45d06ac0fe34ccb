// Shared helpers of the server, static and auth tests: temp dirs, raw HTTP over real sockets.
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { readdir, readlink } from 'node:fs/promises';
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

/**
 * Writes `head` (request line and headers, CRLF-terminated lines; a blank line is added) on a raw
 * socket and collects everything the server sends until it closes or `until` says enough.
 */
export function rawExchange(port: number, head: string, opts: { body?: Buffer | string; until?: (received: string) => boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const done = (): void => {
      sock.destroy();
      resolve(got);
    };
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (opts.until?.(got)) done();
    });
    sock.on('end', done);
    sock.on('close', () => resolve(got));
    sock.on('error', (err) => (got ? resolve(got) : reject(err)));
    sock.write(`${head}\r\n\r\n`);
    if (opts.body !== undefined) sock.write(opts.body);
  });
}

/** A raw GET with `Connection: close`: status and body, the path byte-for-byte as given. */
export async function rawGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const extra = Object.entries(headers).map(([k, v]) => `\r\n${k}: ${v}`).join('');
  const got = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close${extra}`);
  const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
  return { status: m ? Number(m[1]) : 0, text: got };
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
