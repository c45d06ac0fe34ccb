// Faults of uploads kept in S3 (issue 22), against a real store: Ceph's radosgw (test/helpers/radosgw.ts)
// and the `wharf` command with its --s3-* flags in a child process of its own (its descriptors its
// own). An upload cut by its client, one crossing a limit, one whose server is killed -9: nothing
// visible, no unfinished multipart upload left behind (a killed node's leftovers removed by the
// documented paths: the orphan sweep, the bucket's lifecycle rule). radosgw stopped during an upload
// and during a download: a clear 503, no crash, descriptors back where they were, and everything
// works again once it is back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { PutBucketLifecycleConfigurationCommand } from '@aws-sdk/client-s3';
import { sweepS3Orphans } from '../lib/index.js';
import { defer } from './helpers/defer.js';
import { eventually } from './helpers/eventually.js';
import { radosgw, radosgwSkip, type Radosgw } from './helpers/radosgw.js';
import { AUTH, S3_PREFIX, bucketState, descriptors, openUpload, startWharfOnS3, type OpenUpload, type WharfOnS3 } from './helpers/wharf-on-s3.js';

const skip = radosgwSkip();
const MiB = 1024 * 1024;
const BOUNDARY = '----wharf-s3-faults-Qm9v';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;
// Every file's bytes: this MiB, repeated.
const BLOCK = randomBytes(MiB);

const partHead = (name: string, first: boolean): Buffer =>
  Buffer.from(`${first ? '' : '\r\n'}--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
const TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

/** The sha256 of `mib` MiB of BLOCK. */
function digestOf(mib: number): string {
  const h = createHash('sha256');
  for (let i = 0; i < mib; i++) h.update(BLOCK);
  return h.digest('hex');
}

/** Uploads one file of `mib` MiB whole; resolves with its path. */
async function uploadWhole(wharf: WharfOnS3, name: string, mib: number): Promise<string> {
  const head = partHead(name, true);
  const up = openUpload(wharf.url, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': head.length + mib * MiB + TAIL.length });
  await up.write(head);
  for (let i = 0; i < mib; i++) await up.write(BLOCK);
  await up.write(TAIL);
  up.end();
  const a = await up.answer;
  assert.equal(a.status, 200, JSON.stringify(a.json));
  return a.json.files![0]!;
}

interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  sha: string;
  text: string;
}

/** GETs `path`, hashing the body; `text` holds an error answer's body. */
function get(wharf: WharfOnS3, path: string): Promise<Got> {
  return new Promise((resolve, reject) => {
    request(`${wharf.url}${path}`, { agent: false }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      let text = '';
      res.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
        if ((res.statusCode ?? 0) >= 300) text += c.toString();
      });
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, sha: h.digest('hex'), text }));
    }).on('error', reject).end();
  });
}

/** Sends `head` then MiBs of BLOCK until `until()` holds (checked after each MiB); fails past `max` MiB. */
async function sendUntil(up: OpenUpload, head: Buffer, until: () => Promise<boolean>, max: number): Promise<number> {
  await up.write(head);
  for (let i = 1; i <= max; i++) {
    await up.write(BLOCK);
    if (await until()) return i;
  }
  throw new Error(`still not so after ${max} MiB`);
}

/** The process's descriptors apart from its connections to the store, once they hold still. */
async function settledOther(wharf: WharfOnS3, rgw: Radosgw): Promise<string[]> {
  const port = Number(new URL(rgw.endpoint).port);
  let prev = (await descriptors(wharf.pid, port)).other;
  for (;;) {
    await new Promise((r) => setTimeout(r, 150));
    const now = (await descriptors(wharf.pid, port)).other;
    if (now.join() === prev.join()) return now;
    prev = now;
  }
}

/** Its descriptors come back to `baseline` (connections to the store apart: the SDK keeps a pool). */
async function descriptorsBack(wharf: WharfOnS3, rgw: Radosgw, baseline: string[]): Promise<void> {
  const port = Number(new URL(rgw.endpoint).port);
  await eventually(async () => (await descriptors(wharf.pid, port)).other.join() === baseline.join(), 'the descriptors back to where they were', 15_000)
    .catch(async (err: Error) => assert.deepEqual((await descriptors(wharf.pid, port)).other, baseline, err.message));
}

/** Nothing under the prefix but what `keep` allows, and no unfinished multipart upload. */
async function bucketClean(rgw: Radosgw, bucket: string, keep: (key: string) => boolean = () => false): Promise<void> {
  const s3 = rgw.client();
  let last = { objects: [] as string[], unfinished: [] as string[] };
  await eventually(async () => {
    last = await bucketState(s3, bucket);
    return last.objects.every(keep) && last.unfinished.length === 0;
  }, 'no object and no unfinished multipart upload left', 20_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
}

const unfinishedUnder = async (rgw: Radosgw, bucket: string): Promise<string[]> => (await bucketState(rgw.client(), bucket)).unfinished;

test('s3 faults: the client goes away mid-upload → nothing stored, its multipart upload aborted, descriptors back', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const wharf = await startWharfOnS3(t, rgw, bucket);
  const kept = await uploadWhole(wharf, 'kept.bin', 1);
  const baseline = await settledOther(wharf, rgw);

  const head = partHead('cut.bin', true);
  const up = openUpload(wharf.url, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': head.length + 64 * MiB + TAIL.length });
  // Mid-upload for S3 too: its multipart upload has begun (5 MiB parts).
  await sendUntil(up, head, async () => (await unfinishedUnder(rgw, bucket)).length > 0, 40);
  up.destroy();

  await bucketClean(rgw, bucket, (key) => key.startsWith(`${S3_PREFIX}f/${kept.split('/')[2]}/`) || key.startsWith(`${S3_PREFIX}m/`));
  const state = await bucketState(rgw.client(), bucket);
  assert.equal(state.objects.filter((k) => k.startsWith(`${S3_PREFIX}m/`)).length, 1, 'one manifest: the upload before');
  await descriptorsBack(wharf, rgw, baseline);
  assert.equal((await get(wharf, kept)).sha, digestOf(1));
});

test('s3 faults: a limit crossed mid-upload → 413 at once, nothing stored, no unfinished multipart upload', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const wharf = await startWharfOnS3(t, rgw, bucket, ['--limit-file-size', '20MiB']);
  await uploadWhole(wharf, 'warm.bin', 1);
  const baseline = await settledOther(wharf, rgw);
  const s3 = rgw.client();
  const before = await bucketState(s3, bucket);

  const head = partHead('big.bin', true);
  const up = openUpload(wharf.url, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': head.length + 64 * MiB + TAIL.length });
  let answered = false;
  void up.answer.then(() => (answered = true), () => (answered = true));
  // Past 20 MiB the answer comes while the body is still being sent; the rest is never read.
  const sent = await sendUntil(up, head, async () => answered, 64).catch(() => -1);
  const a = await up.answer;
  assert.equal(a.status, 413);
  assert.equal(a.json.error, 'LIMIT_FILE_SIZE');
  assert.ok(sent === -1 || sent < 64, `answered before the body ended (after ${sent} MiB)`);
  up.destroy();

  await bucketClean(rgw, bucket, (key) => before.objects.includes(key));
  assert.deepEqual(await bucketState(s3, bucket), before);
  await descriptorsBack(wharf, rgw, baseline);
});

test('s3 faults: the wharf process killed -9 mid-upload → nothing visible through another node; the lifecycle rule and the orphan sweep remove what it left', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const s3 = rgw.client();
  const first = await startWharfOnS3(t, rgw, bucket);

  // A directory upload: a small file (one PutObject, landed), then a big one (a multipart upload under way).
  const small = Buffer.from('small and complete');
  const head = Buffer.concat([partHead('dir/small.txt', true), small, partHead('dir/big.bin', false)]);
  const up = openUpload(first.url, '/_f/', { 'Content-Type': MULTIPART, 'Wave-Directory-Upload': 'True', 'Content-Length': head.length + 64 * MiB + TAIL.length });
  await sendUntil(up, head, async () => {
    const s = await bucketState(s3, bucket);
    return s.unfinished.length > 0 && s.objects.some((k) => k.endsWith('/dir/small.txt'));
  }, 40);
  first.proc.kill('SIGKILL');
  await first.exited;
  up.destroy();

  const left = await bucketState(s3, bucket);
  const id = left.unfinished[0]!.slice(`${S3_PREFIX}f/`.length).split('/')[0]!;
  assert.deepEqual(left.unfinished, [`${S3_PREFIX}f/${id}/dir/big.bin`]);
  assert.deepEqual(left.objects, [`${S3_PREFIX}f/${id}/dir/small.txt`], 'no manifest: the upload never existed for readers');

  // Another node of the same bucket sees nothing of it.
  const second = await startWharfOnS3(t, rgw, bucket);
  for (const path of [`/_f/${id}/dir/small.txt`, `/_f/${id}/dir/big.bin`]) {
    const g = await get(second, path);
    assert.equal(g.status, 404, path);
    assert.equal(JSON.parse(g.text).error, 'NOT_FOUND');
  }
  const live = await uploadWhole(second, 'live.bin', 1);

  // The bucket's own rule (docs/protocol.md §8) aborts the unfinished upload with no node's help
  // (this test cluster's lifecycle "day" is 5 s: test/helpers/radosgw-cluster.ts).
  await s3.send(new PutBucketLifecycleConfigurationCommand({
    Bucket: bucket,
    LifecycleConfiguration: { Rules: [{ ID: 'wharf-abort-unfinished', Status: 'Enabled', Filter: { Prefix: `${S3_PREFIX}f/` }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }] },
  }));
  await eventually(async () => (await unfinishedUnder(rgw, bucket)).length === 0, 'the lifecycle rule aborting the unfinished upload', 50_000);

  // The orphan sweep removes the objects with no manifest, and nothing of a live upload.
  const swept = await sweepS3Orphans({ client: s3, bucket, prefix: S3_PREFIX, orphanGrace: 1000 });
  assert.deepEqual(swept, { objects: 1, uploads: 0 });
  const after = await bucketState(s3, bucket);
  assert.deepEqual(after.objects.filter((k) => k.includes(id)), []);
  assert.deepEqual(after.unfinished, []);
  assert.equal((await get(second, live)).sha, digestOf(1));
});

test('s3 faults: radosgw stopped during an upload → 503 STORAGE_UNAVAILABLE with Retry-After, no crash, descriptors back; back → uploads work', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const s3 = rgw.client();
  const wharf = await startWharfOnS3(t, rgw, bucket);
  await uploadWhole(wharf, 'warm.bin', 1);
  const baseline = await settledOther(wharf, rgw);

  const head = partHead('big.bin', true);
  const up = openUpload(wharf.url, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': head.length + 64 * MiB + TAIL.length });
  await sendUntil(up, head, async () => (await unfinishedUnder(rgw, bucket)).length > 0, 40);
  await rgw.stopGateway();
  defer(t, () => rgw.startGateway());
  // The body goes on until the server refuses it.
  let answered = false;
  void up.answer.then(() => (answered = true), () => (answered = true));
  await (async () => {
    for (let i = 0; i < 48 && !answered; i++) await up.write(BLOCK);
  })().catch(() => {});
  const a = await up.answer;
  assert.equal(a.status, 503, JSON.stringify(a.json));
  assert.equal(a.json.error, 'STORAGE_UNAVAILABLE');
  assert.equal(a.headers['retry-after'], '2');
  up.destroy();

  // Alive, nothing of it held: its connections to the store gone with the store.
  const port = Number(new URL(rgw.endpoint).port);
  await eventually(async () => (await descriptors(wharf.pid, port)).gateway === 0, 'no connection to the stopped store');
  await descriptorsBack(wharf, rgw, baseline);
  const down = await get(wharf, '/_f/00000000-0000-4000-8000-000000000000/x.bin');
  assert.equal(down.status, 503);
  assert.equal(JSON.parse(down.text).error, 'STORAGE_UNAVAILABLE');

  await rgw.startGateway();
  const path = await uploadWhole(wharf, 'again.bin', 12);
  assert.equal((await get(wharf, path)).sha, digestOf(12));
  // Nothing of the failed upload is visible: one manifest each for the two that succeeded. Its
  // multipart upload could not be aborted while the store was away: the orphan sweep takes it.
  const state = await bucketState(s3, bucket);
  assert.equal(state.objects.filter((k) => k.startsWith(`${S3_PREFIX}m/`)).length, 2);
  assert.ok(state.unfinished.every((k) => k.endsWith('/big.bin')), JSON.stringify(state.unfinished));
  await new Promise((r) => setTimeout(r, 1100));
  await sweepS3Orphans({ client: s3, bucket, prefix: S3_PREFIX, orphanGrace: 1000 });
  assert.deepEqual((await bucketState(s3, bucket)).unfinished, []);
  assert.equal(wharf.proc.exitCode, null, 'still running');
});

test('s3 faults: radosgw stopped during a download → the download is cut, new requests 503 with Retry-After; back → served again', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const wharf = await startWharfOnS3(t, rgw, bucket);
  const size = 48;
  const path = await uploadWhole(wharf, 'big.bin', size);
  const baseline = await settledOther(wharf, rgw);

  // A download under way, its reader paused after the first bytes.
  const cut = await new Promise<{ status: number; received: number; complete: boolean }>((resolve, reject) => {
    request(`${wharf.url}${path}`, { agent: false }, (res) => {
      let received = 0;
      let stopped = false;
      res.on('data', (c: Buffer) => {
        received += c.length;
        if (received < MiB || stopped) return;
        stopped = true;
        res.pause();
        void rgw.stopGateway().then(() => setTimeout(() => res.resume(), 500), reject);
      });
      const done = (): void => resolve({ status: res.statusCode ?? 0, received, complete: res.complete });
      res.on('end', done);
      res.on('error', done);
      res.on('close', done);
    }).on('error', reject).end();
  });
  defer(t, () => rgw.startGateway());
  assert.equal(cut.status, 200);
  assert.equal(cut.complete, false, 'cut, not complete-looking');
  assert.ok(cut.received < size * MiB, `${cut.received} bytes of ${size * MiB}`);

  const down = await get(wharf, path);
  assert.equal(down.status, 503);
  assert.equal(JSON.parse(down.text).error, 'STORAGE_UNAVAILABLE');
  assert.equal(down.headers['retry-after'], '2');
  const port = Number(new URL(rgw.endpoint).port);
  await eventually(async () => (await descriptors(wharf.pid, port)).gateway === 0, 'no connection to the stopped store');
  await descriptorsBack(wharf, rgw, baseline);

  await rgw.startGateway();
  const back = await get(wharf, path);
  assert.equal(back.status, 200);
  assert.equal(back.sha, digestOf(size));
  assert.equal(wharf.proc.exitCode, null, 'still running');
});

test('s3 faults: the client goes away mid-download → wharf lets go of the object at once: no connection to the store left holding unread bytes', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const wharf = await startWharfOnS3(t, rgw, bucket);
  const path = await uploadWhole(wharf, 'big.bin', 32);
  const baseline = await settledOther(wharf, rgw);
  const port = Number(new URL(rgw.endpoint).port);

  // A reader that takes a little, then stops reading: the store's bytes back up into wharf's connection.
  const req = request(`${wharf.url}${path}`, { agent: false });
  await new Promise<void>((resolve, reject) => {
    req.on('response', (res) => res.once('data', () => {
      res.pause();
      resolve();
    }));
    req.on('error', reject).end();
  });
  await eventually(async () => (await descriptors(wharf.pid, port)).unread > 0, 'the download backed up into the connection to the store');
  req.destroy();
  await eventually(async () => (await descriptors(wharf.pid, port)).unread === 0, 'no connection to the store with bytes nobody reads');
  await descriptorsBack(wharf, rgw, baseline);
  assert.equal((await get(wharf, path)).sha, digestOf(32));
});

test('s3 faults: a HEAD and a ranged GET while radosgw is away are 503 too, never a partial answer', { skip }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const wharf = await startWharfOnS3(t, rgw, bucket);
  const path = await uploadWhole(wharf, 'one.bin', 1);
  await rgw.stopGateway();
  defer(t, () => rgw.startGateway());
  for (const [method, headers] of [['HEAD', {}], ['GET', { Range: 'bytes=10-19' }]] as const) {
    const status = await new Promise<number>((resolve, reject) => {
      request(`${wharf.url}${path}`, { method, headers: { Authorization: AUTH, ...headers }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject).end();
    });
    assert.equal(status, 503, method);
  }
  await rgw.startGateway();
  const ranged = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    request(`${wharf.url}${path}`, { headers: { Range: 'bytes=10-19' }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
  assert.equal(ranged.status, 206);
  assert.deepEqual(ranged.body, BLOCK.subarray(10, 20));
});
