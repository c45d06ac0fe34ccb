// Shared by the image-stream tests: a file server on 127.0.0.1:0 (the public API) and small HTTP helpers.
import http from 'node:http';
import type { TestContext } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileServer } from '../../lib/http/server.js';
import type { StreamStats } from '../../lib/image-streams/relay.js';
import type { Limits } from '../../lib/common/limits.js';
import type { Site } from '../../lib/common/site-api.js';
import { APP_KEY } from './keys.js';
import { defer } from './defer.js';

export const KEY = APP_KEY;
export const AUTH = 'Basic ' + Buffer.from(`${KEY.id}:${KEY.secret}`).toString('base64');

export interface Running {
  url: string;
  site: Site;
  stats(): StreamStats[];
  close(): Promise<void>;
}

/** A file server on 127.0.0.1:0 with one access key, closed and its data dir removed after the test. */
export async function start(t: TestContext, limits: Partial<Limits> = {}): Promise<Running> {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-streams-'));
  const files = createFileServer({ dataDir, accessKeys: { [KEY.id]: KEY.secret }, limits });
  const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
  defer(t, async () => {
    await files.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return { url, site: files.site, stats: () => files.streamStats(), close: () => files.close() };
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: { error?: string; message?: string; ended?: boolean } | undefined;
}

/**
 * One request. The answer is taken as soon as it arrives: a server that refuses a body early closes
 * the connection, and the rest of the upload then fails, which is not the test's business.
 */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string | number>; body?: Buffer | Buffer[] | ((req: http.ClientRequest) => void) } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // Host and path given apart: a URL string would have its dot segments removed before sending.
    const { hostname, port } = new URL(url);
    const path = url.slice(url.indexOf('/', 'http://'.length));
    const req = http.request({ host: hostname, port, path, method: options.method ?? 'GET', headers: options.headers, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => {});
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        let json;
        if (body.length && String(res.headers['content-type']).startsWith('application/json')) json = JSON.parse(body.toString());
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
    });
    const { body } = options;
    if (typeof body === 'function') body(req);
    else if (Array.isArray(body)) {
      for (const b of body) req.write(b);
      req.end();
    } else req.end(body);
  });
}

/** Publishes a raw frame over HTTP with the access key. */
export function post(url: string, name: string, type: string | undefined, data: Buffer): Promise<Answer> {
  const headers: Record<string, string | number> = { Authorization: AUTH, 'Content-Length': data.length };
  if (type !== undefined) headers['Content-Type'] = type;
  return request(`${url}/_m/${name}`, { method: 'POST', headers, body: data });
}

/** Wave's client's form: multipart/form-data with one part, field `f`, filename `f`. */
export function waveForm(type: string | undefined, data: Buffer, boundary = 'wave' + Math.random().toString(16).slice(2)): { body: Buffer; contentType: string } {
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="f"\r\n` + (type ? `Content-Type: ${type}\r\n` : '') + '\r\n';
  return {
    body: Buffer.concat([Buffer.from(head), data, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

export function frame(seq: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, 4), seq & 0xff);
  for (let i = 4; i + 4 <= size; i += 4093) b.writeUInt32BE((seq * 2654435761 + i) >>> 0, i);
  b.writeUInt32BE(seq, 0);
  return b;
}

export { eventually } from './eventually.js';
