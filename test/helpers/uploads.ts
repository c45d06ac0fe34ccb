// Shared by the uploads tests: a server in a temp dir, multipart bodies, a raw HTTP client that
// keeps reading while it sends (to see a 413 arrive mid-body and the connection close), and a view
// of everything under the data dir.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createFileServer, type FileServer, type FileServerOptions } from '../../lib/index.js';

import { tempDir } from './temp-dir.js';
import { DEFAULT_AUTH } from './keys.js';
import { defer } from './defer.js';

export { tempDir };

export const KEY = DEFAULT_AUTH;
export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const openFds = (): number => readdirSync('/proc/self/fd').length;
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface TestContext {
  after(fn: () => unknown): void;
}

export interface Running {
  files: FileServer;
  url: string;
  port: number;
  dataDir: string;
  warnings: string[];
}

/** A listening server with anonymous uploads on, in a fresh data dir; closed and removed after the test. */
export async function serve(t: TestContext, options: FileServerOptions = {}, dataDir?: string): Promise<Running> {
  const dir = dataDir ?? (await tempDir(t));
  const warnings: string[] = [];
  const files = createFileServer({ dataDir: dir, anonymousUploads: true, warn: (m) => warnings.push(m), ...options });
  const { url, port } = await files.listen({ port: 0 });
  defer(t, () => files.close());
  return { files, url, port, dataDir: dir, warnings };
}

export interface FormPart {
  name?: string;
  /** Raw `filename="…"` value (already escaped as the test wants it on the wire). */
  filename?: string;
  /** Raw `filename*=` value. */
  filenameStar?: string;
  contentType?: string;
  data?: string | Buffer;
}

export const BOUNDARY = '----wharf-test-boundary-7MA4YWxkTrZu0gW';

/** The head of one part (delimiter and headers), exactly as written. */
export function partHead(p: FormPart, first: boolean): Buffer {
  let disposition = `form-data; name="${p.name ?? 'files'}"`;
  if (p.filename !== undefined) disposition += `; filename="${p.filename}"`;
  if (p.filenameStar !== undefined) disposition += `; filename*=${p.filenameStar}`;
  const type = p.contentType ?? (p.filename !== undefined || p.filenameStar !== undefined ? 'application/octet-stream' : undefined);
  return Buffer.from(`${first ? '' : '\r\n'}--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n${type ? `Content-Type: ${type}\r\n` : ''}\r\n`);
}
export const TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

export function form(parts: FormPart[]): Buffer {
  const pieces: Buffer[] = [];
  parts.forEach((p, i) => pieces.push(partHead(p, i === 0), Buffer.from(p.data ?? '')));
  pieces.push(TAIL);
  return Buffer.concat(pieces);
}

export const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: any;
}

/** One request with node:http; `body` sent whole. */
export function send(url: string, method: string, path: string, body?: Buffer, headers: Record<string, string | number> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // No keep-alive: a test that counts descriptors must not find the client's idle sockets.
    const req = request(`${url}${path}`, { method, agent: false, headers: body ? { 'Content-Length': body.length, ...headers } : headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(text.toString());
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export const upload = (url: string, parts: FormPart[] | Buffer, headers: Record<string, string> = {}, base = '/'): Promise<Answer> =>
  send(url, 'POST', `${base}_f/`, Buffer.isBuffer(parts) ? parts : form(parts), { 'Content-Type': MULTIPART, ...headers });

export const get = (url: string, path: string, headers: Record<string, string> = {}): Promise<Answer> => send(url, 'GET', path, undefined, headers);

/** `count` chunks of `size` random bytes (one buffer, repeated: nothing big is held). */
export function* repeat(chunk: Buffer, count: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) yield chunk;
}

export function* pieces(...parts: Array<Buffer | Iterable<Buffer>>): Generator<Buffer> {
  for (const p of parts) {
    if (Buffer.isBuffer(p)) yield p;
    else yield* p;
  }
}

export const randomChunk = (size: number): Buffer => randomBytes(size);

/** Waits (a bounded while) for this process's descriptor count to come back down to `want`: sockets close asynchronously. */
export async function settledFds(want: number, ms = 3000): Promise<number> {
  const until = Date.now() + ms;
  let now = openFds();
  while (now > want && Date.now() < until) {
    await sleep(20);
    now = openFds();
  }
  return now;
}

/** Everything under `dir` as sorted relative paths (directories end in `/`). */
export async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    // A directory listed a moment ago may be gone by now (an upload committed or cleaned up while
    // we walk): it is not there, which is no error. The top one must exist.
    const entries = await readdir(join(dir, rel), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (rel !== '' && err.code === 'ENOENT') return [];
      throw err;
    });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(`${r}/`);
        await walk(r);
      } else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

/** The data dir holds the layout and nothing else: no upload, no temp byte. */
export const EMPTY = ['.wharf-tmp/', 'f/'];

/** A node's staging area itself (`<area>/`) or its lease, as a path under the temp area: there while the node runs, holding nothing staged. */
const areaOrLease = (rel: string): boolean => /^[^/]+\/(lease)?$/.test(rel);

/** `tree(dataDir)` without the running nodes' own areas and leases: what is stored and staged. */
export async function layout(dataDir: string): Promise<string[]> {
  return (await tree(dataDir)).filter((p) => !(p.startsWith('.wharf-tmp/') && areaOrLease(p.slice('.wharf-tmp/'.length))));
}

/** Everything staged in the temp area (paths from it), the nodes' areas and leases left out: [] when no byte is staged. */
export async function staged(dataDir: string): Promise<string[]> {
  return (await tree(join(dataDir, '.wharf-tmp'))).filter((p) => !areaOrLease(p));
}

/** Waits (a bounded while) for the data dir's `layout` to be back to `want`: cleanup after a client abort is asynchronous. */
export async function settledTree(dir: string, want: string[] = EMPTY, ms = 5000): Promise<string[]> {
  const until = Date.now() + ms;
  let now = await layout(dir);
  while (JSON.stringify(now) !== JSON.stringify(want) && Date.now() < until) {
    await sleep(20);
    now = await layout(dir);
  }
  return now;
}
