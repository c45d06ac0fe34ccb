// The storages a behaviour test runs against: the local data dir and S3 (a fresh bucket of the real
// radosgw, test/helpers/radosgw.ts). `storageTest` declares one test per storage, named after it;
// `stored()` says what the storage holds of uploads (committed or on the way), so "nothing stored"
// is one assertion for both.
import test from 'node:test';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { s3Storage, type FileServerOptions } from '../../lib/index.js';
import { radosgw, radosgwSkip } from './radosgw.js';
import { EMPTY, layout, serve, type Running } from './uploads.js';

export type StorageName = 'disk' | 's3';

export interface StoredRunning extends Running {
  storage: StorageName;
  /** What is stored of uploads, staged bytes and unfinished multipart uploads included: [] when nothing. */
  stored(): Promise<string[]>;
}

interface Ctx {
  after(fn: () => Promise<void>): void;
}

/** A listening server (anonymous uploads on, as `serve`) keeping uploads in `storage`. */
export async function serveOn(storage: StorageName, t: Ctx, options: FileServerOptions = {}): Promise<StoredRunning> {
  if (storage === 'disk') {
    const running = await serve(t, options);
    return { ...running, storage, stored: async () => (await layout(running.dataDir)).filter((p) => !EMPTY.includes(p)) };
  }
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const client = rgw.client();
  const running = await serve(t, { storage: s3Storage({ client, bucket }), ...options });
  async function stored(): Promise<string[]> {
    const keys = ((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).map((o) => o.Key!);
    const unfinished = ((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => `unfinished:${u.Key!}`);
    // The quota's ledgers and the probe are the server's, not an upload's.
    return [...keys.filter((k) => k.startsWith('f/') || k.startsWith('m/') || k.startsWith('x/')), ...unfinished].sort();
  }
  return { ...running, storage, stored };
}

/**
 * `test(\`${title} [disk]\`)` and `test(\`${title} [s3]\`)`. Without radosgw installed the S3 one
 * skips, saying why, except under CI (`CI=true`), where it fails: CI installs it (radosgwSkip).
 */
export function storageTest(title: string, fn: (t: test.TestContext, storage: StorageName) => Promise<void>, options: test.TestOptions = {}): void {
  for (const storage of ['disk', 's3'] as const) {
    test(`${title} [${storage}]`, storage === 's3' ? { ...options, skip: radosgwSkip() } : options, (t) => fn(t, storage));
  }
}

/** Resolves once `assertion` stops throwing; after `ms`, rejects with its last failure (which says what differs). */
export async function settles(assertion: () => Promise<void>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await assertion();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
