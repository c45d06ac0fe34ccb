// Two wharf processes on one S3 bucket (issue 22: "several nodes"), each the real command with its
// --s3-* flags, against a real store (radosgw, test/helpers/radosgw.ts): what one stores the other
// serves, byte for byte and with the same validators; what one removes — DELETE, a `once` download,
// a deadline — is gone through both, at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { eventually } from './helpers/eventually.js';
import { radosgw, radosgwSkip } from './helpers/radosgw.js';
import { AUTH, bucketState, openUpload, startWharfOnS3, S3_PREFIX, type WharfOnS3 } from './helpers/wharf-on-s3.js';

const skip = radosgwSkip();
const BOUNDARY = '----wharf-s3-cluster-Zx1';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function call(node: WharfOnS3, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    request(`${node.url}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
}

/** Uploads `files` through `node` in one request; resolves with the answer's paths. */
async function upload(node: WharfOnS3, files: Array<{ name: string; data: Buffer }>, headers: Record<string, string> = {}): Promise<string[]> {
  const pieces: Buffer[] = [];
  files.forEach((f, i) => pieces.push(Buffer.from(`${i ? '\r\n' : ''}--${BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="${f.name}"\r\n\r\n`), f.data));
  pieces.push(Buffer.from(`\r\n--${BOUNDARY}--\r\n`));
  const body = Buffer.concat(pieces);
  const up = openUpload(node.url, '/_f/', { 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`, 'Content-Length': body.length, ...headers });
  await up.write(body);
  up.end();
  const a = await up.answer;
  assert.equal(a.status, 200, JSON.stringify(a.json));
  return a.json.files!;
}

async function twoNodes(t: Parameters<typeof startWharfOnS3>[0]): Promise<{ a: WharfOnS3; b: WharfOnS3; bucket: string; rgw: Awaited<ReturnType<typeof radosgw>> }> {
  const rgw = await radosgw();
  const bucket = await rgw.bucket(t);
  const [a, b] = await Promise.all([startWharfOnS3(t, rgw, bucket), startWharfOnS3(t, rgw, bucket)]);
  return { a, b, bucket, rgw };
}

test('s3 cluster: an upload through one node downloads through the other, the same bytes and validators, ranges and 304s too', { skip }, async (t) => {
  const { a, b } = await twoNodes(t);
  // Over one part (5 MiB): a multipart upload on one node, ranged reads on the other.
  const big = randomBytes(9 * 1024 * 1024 + 17);
  const [path] = await upload(a, [{ name: 'big.bin', data: big }]);
  const fromB = await call(b, path!);
  assert.equal(fromB.status, 200);
  assert.ok(fromB.body.equals(big), 'the same bytes');
  const fromA = await call(a, path!, 'HEAD');
  assert.equal(fromA.headers.etag, fromB.headers.etag);
  assert.equal(fromA.headers['last-modified'], fromB.headers['last-modified']);
  assert.equal(fromA.headers['content-length'], String(big.length));

  const range = await call(b, path!, 'GET', { Range: 'bytes=8388600-8388615' });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, big.subarray(8388600, 8388616));
  assert.equal((await call(b, path!, 'GET', { 'If-None-Match': String(fromA.headers.etag) })).status, 304);

  // A directory upload through the other node keeps its tree on the first.
  const tree = [{ name: 'd/one.txt', data: Buffer.from('one') }, { name: 'd/sub/two.txt', data: Buffer.from('two') }];
  const [dir] = await upload(b, tree, { 'Wave-Directory-Upload': 'True' });
  for (const f of tree) assert.deepEqual((await call(a, `${dir}/${f.name}`)).body, f.data);
});

test('s3 cluster: a DELETE through one node is a 404 through both; the second DELETE is a 404', { skip }, async (t) => {
  const { a, b, bucket, rgw } = await twoNodes(t);
  const paths = await upload(a, [{ name: 'x.txt', data: Buffer.from('x') }, { name: 'y.txt', data: Buffer.from('y') }]);
  for (const p of paths) assert.equal((await call(b, p)).status, 200);

  const id = paths[0]!.split('/')[2]!;
  const del = await call(b, `/_f/${id}`, 'DELETE', { Authorization: AUTH });
  assert.equal(del.status, 200);
  assert.deepEqual(JSON.parse(del.body.toString()), { removed: `/_f/${id}` });
  for (const node of [a, b]) {
    const got = await call(node, paths[0]!);
    assert.equal(got.status, 404);
    assert.equal(JSON.parse(got.body.toString()).error, 'NOT_FOUND');
    assert.equal((await call(node, paths[0]!, 'HEAD')).status, 404);
  }
  assert.equal((await call(a, `/_f/${id}`, 'DELETE', { Authorization: AUTH })).status, 404);
  // The other upload of the request is untouched, and nothing of the deleted one is left in the bucket.
  assert.deepEqual((await call(a, paths[1]!)).body.toString(), 'y');
  assert.deepEqual((await bucketState(rgw.client(), bucket)).objects.filter((k) => k.includes(id)), []);
});

test('s3 cluster: a once-only upload downloaded through one node is gone through the other; a deadline is kept by both', { skip }, async (t) => {
  const { a, b } = await twoNodes(t);
  const [once] = await upload(a, [{ name: 'once.txt', data: Buffer.from('only once') }], { 'Wharf-Once': '1' });
  assert.equal((await call(b, once!)).body.toString(), 'only once');
  await eventually(async () => (await call(a, once!)).status === 404, 'the once-only upload gone through the other node');
  assert.equal((await call(b, once!)).status, 404);

  const [soon] = await upload(b, [{ name: 'soon.txt', data: Buffer.from('soon gone') }], { 'Wharf-Expires-In': '2' });
  const fresh = await call(a, soon!);
  assert.equal(fresh.status, 200);
  assert.ok(fresh.headers.expires, 'Expires from the deadline stored with the upload');
  await eventually(async () => (await call(a, soon!)).status === 404 && (await call(b, soon!)).status === 404, 'the expired upload absent through both', 10_000);
});

test(`s3 cluster: the nodes keep everything under their prefix (${S3_PREFIX})`, { skip }, async (t) => {
  const { a, bucket, rgw } = await twoNodes(t);
  const [p] = await upload(a, [{ name: 'k.txt', data: Buffer.from('k') }]);
  const id = p!.split('/')[2]!;
  const { objects } = await bucketState(rgw.client(), bucket, '');
  assert.ok(objects.includes(`${S3_PREFIX}f/${id}/k.txt`) && objects.includes(`${S3_PREFIX}m/${id}`), JSON.stringify(objects));
  assert.deepEqual(objects.filter((k) => !k.startsWith(S3_PREFIX)), []);
});
