// Uploads in S3 (docs/protocol.md §8) against a real S3 server, Ceph's radosgw (test/helpers/radosgw.ts):
// the manifest makes an upload id appear whole, nothing of a failed upload stays (no object, no
// unfinished multipart upload), expiry and the quota, presigned redirects, the refusals at start,
// the health route, the orphan sweep and the command's flags.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { WharfError, createFileServer, s3Storage, sweepS3Orphans, type FileServerOptions } from '../lib/index.js';
import { loadPresigner, loadSdk } from '../lib/uploads/s3-client.js';
import { s3Backend } from '../lib/cli/s3-flags.js';
import { UsageError } from '../lib/cli/flags.js';
import { KEY, MULTIPART, TAIL, get, partHead, send, serve, sha256, sleep, tempDir, upload } from './helpers/uploads.js';
import { settles } from './helpers/storages.js';
import { radosgw, radosgwSkip, type Radosgw } from './helpers/radosgw.js';
import { runWharf, startWharfProcess } from './helpers/command.js';
import { defer } from './helpers/defer.js';

const MiB = 1024 * 1024;

interface Ctx {
  after(fn: () => Promise<void>): void;
}

/** A fresh bucket and a server on it (options merged), with the client and the gateway to look behind it. */
async function s3Serve(t: Ctx, options: FileServerOptions = {}, storage: Partial<Parameters<typeof s3Storage>[0]> = {}) {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const client = rgw.client();
  const running = await serve(t, { storage: s3Storage({ client, bucket, ...storage }), ...options });
  return { ...running, rgw, bucket, client };
}

/** Every key under `prefix` in `bucket`. */
async function keysOf(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out.sort();
}

const unfinished = async (client: S3Client, bucket: string): Promise<number> =>
  ((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).length;

/** Nothing of an upload anywhere in the bucket (probe and ledger keys aside), and no unfinished multipart upload. */
async function bucketClean(client: S3Client, bucket: string): Promise<void> {
  await settles(async () => {
    assert.deepEqual((await keysOf(client, bucket)).filter((k) => k.startsWith('f/') || k.startsWith('m/')), []);
    assert.equal(await unfinished(client, bucket), 0, 'no unfinished multipart upload');
  }, 10_000);
}

const isWharf = (code: string) => (e: unknown): boolean => e instanceof WharfError && e.code === code;

test('S3: files at f/<id>/<name>, a manifest at m/<id>; GET, HEAD, ranges, 304; DELETE removes every object', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket, dataDir } = await s3Serve(t, {}, { partSize: 5 * MiB });
  const big = randomBytes(11 * MiB + 17); // three parts
  const small = Buffer.from('hello from s3');
  const res = await upload(url, [{ filename: 'big.bin', data: big }, { filename: 'résumé 100%.txt', data: small }]);
  assert.equal(res.status, 200, res.body.toString());
  const [bigPath, smallPath] = res.json.files as string[];
  const id = bigPath!.split('/')[2]!;
  assert.deepEqual(await keysOf(client, bucket, `f/${id}/`), [`f/${id}/big.bin`]);
  assert.deepEqual(await keysOf(client, bucket, `m/${id}`), [`m/${id}`]);
  assert.deepEqual(await readdir(dataDir), [], 'the data dir holds nothing of uploads');

  const whole = await get(url, bigPath!);
  assert.equal(whole.status, 200);
  assert.equal(sha256(whole.body), sha256(big));
  assert.equal(whole.headers['content-type'], 'application/octet-stream');
  assert.equal((await get(url, smallPath!)).body.toString(), small.toString());
  const head = await send(url, 'HEAD', bigPath!);
  assert.equal(head.headers['content-length'], String(big.length));
  const etag = String(head.headers.etag);
  assert.equal((await get(url, bigPath!, { 'If-None-Match': etag })).status, 304);
  assert.equal((await get(url, bigPath!, { 'If-Modified-Since': String(head.headers['last-modified']) })).status, 304);
  const range = await get(url, bigPath!, { Range: `bytes=${5 * MiB - 3}-${5 * MiB + 2}` });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, big.subarray(5 * MiB - 3, 5 * MiB + 3), 'a range across two parts');
  assert.equal((await get(url, bigPath!, { Range: 'bytes=-5' })).body.toString('hex'), big.subarray(-5).toString('hex'));
  assert.equal((await get(url, bigPath!, { Range: `bytes=${big.length}-` })).status, 416);
  assert.equal((await get(url, bigPath!, { Range: 'bytes=0-9', 'If-Range': etag })).status, 206, 'If-Range with the current ETag');
  assert.equal((await get(url, bigPath!, { Range: 'bytes=0-9', 'If-Range': '"stale"' })).body.length, big.length, 'a stale If-Range: the whole file');
  assert.equal((await get(url, bigPath!, { 'If-Match': '"stale"' })).status, 412);
  assert.equal((await send(url, 'HEAD', bigPath!)).headers.etag, etag, 'the same ETag on every request (from the manifest)');
  assert.equal((await get(url, `/_f/${id}/other.bin`)).status, 404);
  assert.equal((await get(url, `/_f/${randomUUID()}/big.bin`)).status, 404);

  const del = await send(url, 'DELETE', bigPath!, undefined, { Authorization: KEY });
  assert.equal(del.status, 200);
  assert.equal((await get(url, bigPath!)).status, 404);
  assert.deepEqual(await keysOf(client, bucket, `f/${id}/`), []);
  assert.deepEqual(await keysOf(client, bucket, `m/${id}`), []);
  assert.equal((await send(url, 'DELETE', bigPath!, undefined, { Authorization: KEY })).status, 404);
});

test('S3: a directory upload keeps its tree; index pages; manifests revalidated, not sent again; once-only uploads go after their download', { skip: radosgwSkip() }, async (t) => {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const client = rgw.client();
  // The real client, its manifest reads counted: each asked with If-None-Match once known, and S3's 304s.
  const seen = { conditional: 0, notModified: 0 };
  const counting = {
    send(command: { input: { Key?: string; IfNoneMatch?: string } }, options?: unknown) {
      const manifestRead = command.constructor.name === 'GetObjectCommand' && command.input.Key?.startsWith('m/') === true;
      if (manifestRead && command.input.IfNoneMatch !== undefined) seen.conditional++;
      return client.send(command as never, options as never).catch((err: { $metadata?: { httpStatusCode?: number } }) => {
        if (manifestRead && err.$metadata?.httpStatusCode === 304) seen.notModified++;
        throw err;
      });
    },
  };
  const { url } = await serve(t, { storage: s3Storage({ client: counting, bucket }) });
  const res = await upload(url, [
    { filename: 'index.html', data: '<h1>home</h1>' },
    { filename: 'js/app.js', data: 'console.log(1)' },
    { filename: 'js/lib/x.css', data: 'b{}' },
  ], { 'Wave-Directory-Upload': 'True', Authorization: KEY });
  assert.equal(res.status, 200, res.body.toString());
  const [dir] = res.json.files as string[];
  const id = dir!.split('/')[2]!;
  assert.deepEqual(await keysOf(client, bucket, `f/${id}/`), [`f/${id}/index.html`, `f/${id}/js/app.js`, `f/${id}/js/lib/x.css`]);
  assert.equal((await get(url, `${dir}/js/lib/x.css`)).body.toString(), 'b{}');
  assert.equal((await get(url, `${dir}/`)).body.toString(), '<h1>home</h1>', 'the index page');
  assert.equal((await get(url, `${dir}/js`)).status, 404, 'no listing, no index there');
  assert.ok(seen.conditional >= 3 && seen.notModified === seen.conditional, `manifest reads: ${JSON.stringify(seen)}`);
  const other = await serve(t, { storage: s3Storage({ client: rgw.client(), bucket }) });
  assert.equal((await send(other.url, 'DELETE', dir!, undefined, { Authorization: KEY })).status, 200);
  assert.equal((await get(url, `${dir}/js/app.js`)).status, 404, 'removed through another node: gone here at once');

  const once = await upload(url, [{ filename: 'secret.txt', data: 'read me once' }], { 'Wharf-Once': '1' });
  const path = once.json.files[0] as string;
  assert.equal((await get(url, path, { Range: 'bytes=0-3' })).status, 206, 'a range does not count');
  assert.equal((await get(url, path)).body.toString(), 'read me once');
  await settles(async () => assert.equal((await get(url, path)).status, 404));
  await settles(async () => assert.deepEqual(await keysOf(client, bucket, `f/${path.split('/')[2]}/`), []));
});

test('S3: a reader polling while a multi-file upload arrives never sees a part of it', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket } = await s3Serve(t);
  const names = Array.from({ length: 12 }, (_, i) => `d/f${i}.bin`);
  const datas = names.map(() => randomBytes(40_000));
  const sock = connect(Number(new URL(url).port), '127.0.0.1');
  await new Promise((resolve) => sock.once('connect', resolve));
  const answer = new Promise<string>((resolve) => {
    let text = '';
    sock.on('data', (c) => (text += c.toString()));
    sock.on('end', () => resolve(text));
    sock.on('close', () => resolve(text));
  });
  const bodies = names.map((filename, i) => Buffer.concat([partHead({ filename, data: datas[i]! }, i === 0), datas[i]!]));
  const length = bodies.reduce((n, b) => n + b.length, 0) + TAIL.length;
  sock.write(`POST /_f/ HTTP/1.1\r\nHost: x\r\nContent-Type: ${MULTIPART}\r\nWave-Directory-Upload: True\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`);
  let seen = 0;
  for (const body of bodies) {
    sock.write(body);
    await sleep(30);
    // Whatever object already landed is not served.
    for (const key of await keysOf(client, bucket, 'f/')) {
      const [, id, ...rest] = key.split('/');
      const r = await get(url, `/_f/${id}/${rest.map(encodeURIComponent).join('/')}`);
      assert.equal(r.status, 404, `${key} is visible before the upload's answer`);
      seen++;
    }
  }
  sock.write(TAIL);
  const text = await answer;
  assert.match(text, /^HTTP\/1.1 200/, text);
  assert.ok(seen > 0, 'objects were looked at while the upload arrived');
  const dir = (JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { files: string[] }).files[0]!;
  for (const [i, n] of names.entries()) assert.equal(sha256((await get(url, `${dir}/${n}`)).body), sha256(datas[i]!));
});

test('S3: abort mid-upload, a limit crossed, a bad name, a refused file: nothing stored, no unfinished multipart upload', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket } = await s3Serve(t, { limits: { fileSize: 12 * MiB } }, { partSize: 5 * MiB, partsInFlight: 1 });
  const sendRaw = async (parts: Buffer[], declared: number, cut: boolean): Promise<string> => {
    const sock = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise((resolve) => sock.once('connect', resolve));
    let text = '';
    sock.on('data', (c) => (text += c.toString()));
    sock.on('error', () => {});
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.write(`POST /_f/ HTTP/1.1\r\nHost: x\r\nContent-Type: ${MULTIPART}\r\nContent-Length: ${declared}\r\n\r\n`);
    for (const p of parts) {
      if (sock.destroyed) break;
      sock.write(p);
      await sleep(5);
    }
    if (cut) {
      // Wait until a part landed (a multipart upload exists), then go away.
      await settles(async () => assert.ok((await unfinished(client, bucket)) > 0), 10_000);
      sock.destroy();
    }
    await closed;
    return text;
  };
  const chunk = randomBytes(MiB);
  // The client goes away mid-file, a multipart upload under way.
  await sendRaw([partHead({ filename: 'cut.bin' }, true), ...Array.from({ length: 7 }, () => chunk)], 50 * MiB, true);
  await bucketClean(client, bucket);
  // A file over limits.fileSize: 413 mid-body.
  const over = await sendRaw([partHead({ filename: 'over.bin' }, true), ...Array.from({ length: 14 }, () => chunk), TAIL], 14 * MiB + 300, false);
  assert.match(over, /^HTTP\/1.1 413/);
  await bucketClean(client, bucket);
  // A good file (multipart), then a bad name: 400, the good one gone too.
  const bad = await upload(url, [{ filename: 'good.bin', data: randomBytes(6 * MiB) }, { filename: '../evil', data: 'x' }]);
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error, 'BAD_FILENAME');
  await bucketClean(client, bucket);
});

test('S3: files refused by accept leave nothing; untrusted uploads are served as on disk', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket } = await s3Serve(t, { accept: ['image/*', '.html'] });
  const refused = await upload(url, [{ filename: 'a.html', data: '<p>ok</p>' }, { filename: 'b.exe', data: 'MZ' }]);
  assert.equal(refused.status, 415);
  await bucketClean(client, bucket);
  const res = await upload(url, [{ filename: 'page.html', data: '<script>alert(1)</script>' }]);
  const page = await get(url, res.json.files[0]);
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'application/octet-stream');
  assert.match(String(page.headers['content-disposition']), /^attachment/);
  assert.equal(page.headers['content-security-policy'], 'sandbox');
  // The record's name is never an upload's file, nor served; paths outside an id are nobody's.
  const id = (res.json.files[0] as string).split('/')[2]!;
  assert.equal((await upload(url, [{ filename: '.wharf-upload.json', data: '{"v":1,"trust":"app"}' }])).json.error, 'BAD_FILENAME');
  for (const p of [`/_f/${id}/.wharf-upload.json`, `/_f/${id}/../m/${id}`, `/_f/${id}/%2e%2e/x`, `/_f/../m/${id}`, '/_f/m', `/_f/${id}`]) {
    assert.ok([400, 404].includes((await get(url, p)).status), p);
  }
  assert.deepEqual((await keysOf(client, bucket)).filter((k) => k.startsWith('f/') || k.startsWith('m/')), [`f/${id}/page.html`, `m/${id}`]);
  const app = await upload(url, [{ filename: 'app.html', data: '<p>app</p>' }], { Authorization: KEY });
  const own = await get(url, app.json.files[0]);
  assert.match(String(own.headers['content-type']), /^text\/html/);
  assert.equal(own.headers['content-security-policy'], undefined, "the app's own upload as it is");
});

test('S3: the in-process site: upload, uploadDir, download, uploadInfo, unload', { skip: radosgwSkip() }, async (t) => {
  const { files, url, client, bucket } = await s3Serve(t, {}, { partSize: 5 * MiB });
  const work = await tempDir(t);
  const big = randomBytes(6 * MiB);
  await writeFile(join(work, 'big.bin'), big);
  await writeFile(join(work, 'small.txt'), 'small');
  const paths = await files.site.upload([join(work, 'big.bin'), join(work, 'small.txt')], { expiresIn: 3_600_000 });
  assert.equal(sha256((await get(url, paths[0]!)).body), sha256(big));
  const info = await files.site.uploadInfo(paths[0]!);
  assert.equal(info.once, false);
  assert.ok(info.expiresAt instanceof Date && info.expiresAt.getTime() > Date.now());
  const to = await files.site.download(paths[0]!, work + '/');
  assert.equal(sha256(await readFile(to)), sha256(big));
  await assert.rejects(files.site.download(`/_f/${randomUUID()}/x.bin`, work), isWharf('NOT_FOUND'));
  const [dir] = await files.site.uploadDir(work);
  assert.equal((await get(url, `${dir}/small.txt`)).body.toString(), 'small');
  for (const p of [paths[0]!, paths[1]!, dir!]) await files.site.unload(p);
  await assert.rejects(files.site.unload(paths[0]!), isWharf('NOT_FOUND'));
  await assert.rejects(files.site.uploadInfo(paths[0]!), isWharf('NOT_FOUND'));
  await bucketClean(client, bucket);
});

test('S3: expiry removes the objects, the quota counts from manifests (across a restart)', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket, rgw } = await s3Serve(t, { limits: { storeSize: 10_000 } });
  const soon = await upload(url, [{ filename: 'soon.txt', data: 'x'.repeat(100) }], { 'Wharf-Expires-In': '1' });
  assert.equal(soon.status, 200);
  const id = (soon.json.files[0] as string).split('/')[2]!;
  assert.ok((await keysOf(client, bucket, 'x/')).some((k) => k.endsWith(`/${id}`)), 'a mark in the expiry index');
  await settles(async () => assert.equal((await get(url, soon.json.files[0])).status, 404), 5_000);
  await settles(async () => assert.deepEqual(await keysOf(client, bucket, `f/${id}/`), []), 20_000);

  const first = await upload(url, [{ filename: 'a.bin', data: randomBytes(6000) }]);
  assert.equal(first.status, 200);
  const full = await upload(url, [{ filename: 'b.bin', data: randomBytes(6000) }]);
  assert.equal(full.status, 507);
  assert.equal(full.json.error, 'STORE_FULL');
  // Another node on the same bucket counts what the manifests hold.
  const other = await serve(t, { storage: s3Storage({ client: rgw.client(), bucket }), limits: { storeSize: 10_000 } });
  await settles(async () => assert.equal((await upload(other.url, [{ filename: 'c.bin', data: randomBytes(6000) }])).status, 507), 10_000);
  assert.equal((await send(url, 'DELETE', first.json.files[0], undefined, { Authorization: KEY })).status, 200);
  assert.equal((await upload(url, [{ filename: 'd.bin', data: randomBytes(6000) }])).status, 200, 'room again');
});

test('S3: presign answers large GETs with a 302 to a short-lived URL carrying the type and disposition', { skip: radosgwSkip() }, async (t) => {
  const { url } = await s3Serve(t, {}, { presign: { redirectAbove: 1000, expiresIn: 60 } });
  const big = randomBytes(5000);
  const res = await upload(url, [{ filename: 'pic.png', data: big }, { filename: 'tiny.txt', data: 'tiny' }, { filename: 'x.html', data: '<b>x</b>' + ' '.repeat(2000) }]);
  const [png, tiny, html] = res.json.files as string[];
  const r = await get(url, png!);
  assert.equal(r.status, 302);
  assert.equal(r.headers['cache-control'], 'no-store');
  const location = String(r.headers.location);
  assert.match(location, /X-Amz-Expires=60/);
  const direct = await fetch(location);
  assert.equal(direct.status, 200);
  assert.equal(direct.headers.get('content-type'), 'image/png');
  assert.equal(sha256(Buffer.from(await direct.arrayBuffer())), sha256(big));
  assert.equal((await get(url, tiny!)).status, 200, 'small files are proxied');
  assert.equal((await send(url, 'HEAD', png!)).status, 200, 'HEAD is answered here');
  assert.equal((await get(url, png!, { 'If-None-Match': String((await send(url, 'HEAD', png!)).headers.etag) })).status, 304);
  const dl = await get(url, `${png}?download`);
  const named = await fetch(String(dl.headers.location));
  assert.match(String(named.headers.get('content-disposition')), /^attachment;.*pic\.png/);
  const active = await fetch(String((await get(url, html!)).headers.location));
  assert.equal(active.headers.get('content-type'), 'application/octet-stream', "an end user's HTML stays inert");
  assert.match(String(active.headers.get('content-disposition')), /^attachment/);
});

test('S3: a missing bucket and refused credentials are refused at start, in one line; a bad option at creation', { skip: radosgwSkip() }, async (t) => {
  const rgw = await radosgw();
  const missing = createFileServer({ storage: s3Storage({ client: rgw.client(), bucket: `nope-${Date.now()}` }), warn: () => {} });
  defer(t, () => missing.close());
  await assert.rejects(missing.listen({ port: 0 }), (e: unknown) => e instanceof WharfError && e.code === 'STORAGE_DENIED' && /does not exist/.test(e.message) && !e.message.includes('\n'));
  const bucket = await rgw.bucket(t);
  const wrong = new S3Client({ endpoint: rgw.endpoint, region: rgw.region, forcePathStyle: true, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: 'not-the-secret' }, requestChecksumCalculation: 'WHEN_REQUIRED' });
  defer(t, () => wrong.destroy());
  const denied = createFileServer({ storage: s3Storage({ client: wrong, bucket }), warn: () => {} });
  defer(t, () => denied.close());
  await assert.rejects(denied.listen({ port: 0 }), (e: unknown) => e instanceof WharfError && e.code === 'STORAGE_DENIED' && /not writable with these credentials/.test(e.message) && !e.message.includes('not-the-secret'));
  for (const bad of [{ bucket: '' }, { bucket: 'ok', prefix: '/x' }, { bucket: 'ok', partSize: MiB }, { bucket: 'ok', presign: { redirectAbove: -1 } }, { bucket: 'ok', orphanGrace: 5 }, { bucket: 'ok', partsInFlight: 0 }, { bucket: 'ok', client: {} }]) {
    assert.throws(() => s3Storage({ client: rgw.client(), ...bad } as Parameters<typeof s3Storage>[0]), isWharf('INVALID_OPTION'), JSON.stringify(bad));
  }
  assert.throws(() => createFileServer({ storage: 'nope' as never }), isWharf('INVALID_OPTION'));
});

test('S3: without the SDK, one line naming what to install', async () => {
  await assert.rejects(loadSdk('@aws-sdk/not-installed-here'), (e: unknown) => e instanceof WharfError && e.message === 'S3 storage needs the @aws-sdk/client-s3 package: npm install @aws-sdk/client-s3');
  await assert.rejects(loadPresigner('@aws-sdk/not-installed-here'), (e: unknown) => e instanceof WharfError && /npm install @aws-sdk\/s3-request-presigner$/.test(e.message));
  await assert.rejects(s3Backend({ bucket: 'b', endpoint: undefined, region: 'us-east-1', prefix: '', forcePathStyle: false }, '@aws-sdk/not-installed-here'),
    (e: unknown) => e instanceof UsageError && e.message === '--s3-bucket needs the @aws-sdk/client-s3 package: npm install @aws-sdk/client-s3');
  await assert.rejects(loadSdk('node:path'), (e: unknown) => e instanceof WharfError && /no HeadBucketCommand export/.test(e.message));
});

test('S3: the health route writes for real; the gateway away is 503 STORAGE_UNAVAILABLE with Retry-After, then back', { skip: radosgwSkip() }, async (t) => {
  const { url, rgw } = await s3Serve(t);
  const stored = await upload(url, [{ filename: 'x.txt', data: 'x' }]);
  assert.deepEqual((await get(url, '/_wharf/health')).json, { ok: true, checks: { storage: 'ok', hub: 'ok' } });
  await rgw.stopGateway();
  try {
    await sleep(1100); // past the health cache
    const h = await get(url, '/_wharf/health');
    assert.equal(h.status, 503);
    assert.equal(h.json.checks.storage, 'STORAGE_UNAVAILABLE');
    const up = await upload(url, [{ filename: 'y.txt', data: 'y' }]);
    assert.equal(up.status, 503);
    assert.equal(up.json.error, 'STORAGE_UNAVAILABLE');
    assert.ok(Number(up.headers['retry-after']) > 0);
    const down = await get(url, stored.json.files[0]);
    assert.equal(down.status, 503);
    assert.equal(down.json.error, 'STORAGE_UNAVAILABLE');
  } finally {
    await rgw.startGateway();
  }
  await sleep(1100);
  assert.equal((await get(url, '/_wharf/health')).status, 200);
  assert.equal((await upload(url, [{ filename: 'z.txt', data: 'z' }])).status, 200);
});

test('S3: the orphan sweep removes objects without a manifest and unfinished uploads older than the grace, nothing else', { skip: radosgwSkip() }, async (t) => {
  const { url, client, bucket } = await s3Serve(t, {}, { prefix: 'app/' });
  const kept = await upload(url, [{ filename: 'kept.txt', data: 'kept' }]);
  const orphan = randomUUID();
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: `app/f/${orphan}/left.bin`, Body: 'left by a crash' }));
  await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `app/f/${orphan}/big.bin` }));
  assert.deepEqual(await sweepS3Orphans({ client, bucket, prefix: 'app', orphanGrace: 3_600_000 }), { objects: 0, uploads: 0 }, 'younger than the grace');
  await sleep(2100);
  assert.deepEqual(await sweepS3Orphans({ client, bucket, prefix: 'app/', orphanGrace: 1000 }), { objects: 1, uploads: 1 });
  assert.deepEqual(await keysOf(client, bucket, `app/f/${orphan}/`), []);
  assert.equal(await unfinished(client, bucket), 0);
  assert.equal((await get(url, kept.json.files[0])).body.toString(), 'kept');
});

test('S3: the command with --s3-bucket and its companions (WHARF_S3_*), credentials from the AWS variables', { skip: radosgwSkip() }, async (t) => {
  const rgw: Radosgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const dataDir = await tempDir(t);
  const env = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, WHARF_S3_ENDPOINT: rgw.endpoint, WHARF_S3_FORCE_PATH_STYLE: '1' };
  const child = await startWharfProcess(t, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--s3-bucket', bucket, '--s3-prefix', 'cli', '--s3-region', rgw.region, '--log', 'json'], env);
  assert.ok(child.lines().some((l) => l.kind === 'uploads' && l.path === `s3://${bucket}/cli`));
  assert.ok(!child.stdout().includes(rgw.secretAccessKey), 'no secret in the log');
  const res = await upload(child.url, [{ filename: 'via-cli.txt', data: 'through the command' }], { Authorization: KEY });
  assert.equal(res.status, 200, res.body.toString());
  assert.equal((await get(child.url, res.json.files[0])).body.toString(), 'through the command');
  const client = rgw.client();
  assert.equal((await keysOf(client, bucket, 'cli/f/')).length, 1);
  assert.deepEqual(await readdir(dataDir), [], '--data-dir holds nothing of uploads');

  const missing = await runWharf(t, ['--listen', '127.0.0.1:0', '--s3-bucket', `nope-${Date.now()}`], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^wharf: S3 bucket "nope-\d+" does not exist \((NoSuchBucket|NotFound)\)/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  const badName = await runWharf(t, ['--listen', '127.0.0.1:0', '--s3-bucket', 'no such bucket!'], env);
  assert.equal(badName.code, 2);
  assert.match(badName.stderr, /--s3-bucket: expected a bucket name/);
  const badEndpoint = await runWharf(t, ['--s3-bucket', bucket, '--s3-endpoint', 'localhost:9000'], env);
  assert.equal(badEndpoint.code, 2);
  assert.match(badEndpoint.stderr, /--s3-endpoint: expected an http/);
  const lone = await runWharf(t, ['--s3-prefix', 'x'], {});
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /--s3-prefix needs --s3-bucket/);
});
