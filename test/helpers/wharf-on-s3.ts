// The `wharf` command keeping its uploads in a radosgw bucket (test/helpers/radosgw.ts), as an
// operator runs it: the --s3-* flags, the store's keys in the standard AWS variables. For the tests
// that kill, cut or compare whole processes (s3-faults, s3-cluster); also what they look at in the
// bucket, and the descriptors of such a process.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { request, type OutgoingHttpHeaders } from 'node:http';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startWharfProcess } from './command.js';
import { APP_AUTH, APP_KEY } from './keys.js';
import type { Radosgw } from './radosgw.js';
import { tempDir } from './temp-dir.js';

interface TestContext {
  after(fn: () => Promise<void>): void;
}

/** Where the tests' wharf processes keep their keys in the bucket. */
export const S3_PREFIX = 'w/';
export const AUTH = APP_AUTH;

export type WharfOnS3 = Awaited<ReturnType<typeof startWharfProcess>> & { pid: number };

/** `wharf serve` on `bucket` of `rgw`, with the app's key; killed and waited for when `t` ends. */
export async function startWharfOnS3(t: TestContext, rgw: Radosgw, bucket: string, args: string[] = []): Promise<WharfOnS3> {
  const dir = await tempDir(t, 'wharf-s3-cmd-');
  const child = await startWharfProcess(t as Parameters<typeof startWharfProcess>[0], [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--log', 'json', '--access-key-id', APP_KEY.id,
    '--s3-bucket', bucket, '--s3-endpoint', rgw.endpoint, '--s3-region', rgw.region, '--s3-prefix', S3_PREFIX, '--s3-force-path-style',
    ...args,
  ], {
    WHARF_ACCESS_KEY_SECRET: APP_KEY.secret,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
    // No instance metadata lookups when the variables are somehow not enough: fail at once.
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  return { ...child, pid: child.proc.pid! };
}

/** Every key under `prefix` (all pages), and the keys of its unfinished multipart uploads. */
export async function bucketState(s3: S3Client, bucket: string, prefix = S3_PREFIX): Promise<{ objects: string[]; unfinished: string[] }> {
  const objects: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
    for (const o of page.Contents ?? []) objects.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  const unfinished: string[] = [];
  let marker: { KeyMarker: string; UploadIdMarker: string } | undefined;
  do {
    const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, ...marker }));
    for (const u of page.Uploads ?? []) unfinished.push(u.Key!);
    marker = page.IsTruncated ? { KeyMarker: page.NextKeyMarker!, UploadIdMarker: page.NextUploadIdMarker! } : undefined;
  } while (marker !== undefined);
  return { objects: objects.sort(), unfinished: unfinished.sort() };
}

/**
 * The descriptors of process `pid`: its TCP connections to `port` (the gateway: the SDK's pool,
 * idle ones included) counted apart from everything else (files, pipes, listeners, clients'
 * connections), which is listed. `unread`: those of the connections to the gateway with bytes
 * received that nobody has read (a response body left paused: an idle pooled connection has none).
 */
export async function descriptors(pid: number, port: number): Promise<{ other: string[]; gateway: number; unread: number }> {
  // socket inode → bytes waiting in its receive queue, for the connections to `port`
  const toPort = new Map<string, number>();
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const remote = f[2]?.split(':')[1];
      if (remote !== undefined && parseInt(remote, 16) === port) toPort.set(f[9]!, parseInt(f[4]?.split(':')[1] ?? '0', 16));
    }
  }
  const other: string[] = [];
  let gateway = 0;
  let unread = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
    if (target === undefined) continue;
    const queued = toPort.get(/^socket:\[(\d+)\]$/.exec(target)?.[1] ?? '');
    if (queued === undefined) other.push(target);
    else {
      gateway++;
      if (queued > 0) unread++;
    }
  }
  return { other: other.sort(), gateway, unread };
}

/** An upload sent a piece at a time by the test, its answer read whenever it comes (a refusal mid-body). */
export interface OpenUpload {
  /** Writes `chunk`; resolves once the socket took it (backpressure: the server reads only as fast as S3 takes parts). */
  write(chunk: Buffer): Promise<void>;
  end(): void;
  /** Cuts the connection, as a client that goes away. */
  destroy(): void;
  answer: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: { error?: string; message?: string; files?: string[] } }>;
}

export function openUpload(url: string, path: string, headers: OutgoingHttpHeaders): OpenUpload {
  const u = new URL(url);
  const req = request({ host: u.hostname, port: u.port, path, method: 'POST', headers: { Authorization: AUTH, ...headers }, agent: false });
  const answer = new Promise<Awaited<OpenUpload['answer']>>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} });
      });
    });
    req.on('error', reject);
  });
  answer.catch(() => {});
  return {
    write: (chunk) => new Promise((resolve, reject) => {
      if (req.destroyed) return reject(new Error('the upload connection is closed'));
      req.write(chunk, (err) => (err ? reject(err) : resolve()));
    }),
    end: () => req.end(),
    destroy: () => req.destroy(),
    answer,
  };
}
