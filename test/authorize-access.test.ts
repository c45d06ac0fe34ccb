// authorize(req, access): what it is told for each route, identities recorded as an upload's owner,
// end users deleting their own uploads only, and one-parameter hooks keeping their old reach.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { AccessRequest, UploadEvent } from '../lib/index.js';
import { eventually } from './helpers/eventually.js';
import { KEY, MULTIPART, form, get, send, serve, tempDir, upload } from './helpers/uploads.js';

/** A session hook: the `X-User` header names the user; everyone may read; only the owner may delete. */
function sessions(seen: AccessRequest[]) {
  return (req: IncomingMessage, access: AccessRequest) => {
    seen.push(access);
    const user = req.headers['x-user'];
    if (typeof user !== 'string') return false;
    if (access.action === 'delete') return access.owner === user || 'forbidden';
    if (access.action === 'publish' || access.action === 'unpublish') return user === 'admin';
    return { identity: user };
  };
}

test('user A uploads; B may not delete it (403), A may; the owner is in the record and onUpload', async (t) => {
  const seen: AccessRequest[] = [];
  const events: UploadEvent[] = [];
  const s = await serve(t, { anonymousUploads: false, authorize: sessions(seen), onUpload: (e) => void events.push(e) });
  const up = await upload(s.url, [{ filename: 'a.txt', data: 'alpha' }], { 'X-User': 'alice' });
  assert.equal(up.status, 200, up.body.toString());
  const path = up.json.files[0] as string;
  const id = path.split('/')[2]!;
  assert.deepEqual(seen[0], { action: 'upload' });
  const record = JSON.parse(await readFile(join(s.dataDir, 'f', id, '.wharf-upload.json'), 'utf8'));
  assert.deepEqual(record, { v: 1, trust: 'user', via: 'authorize', owner: 'alice' });
  await eventually(() => events.length === 1, 'onUpload called');
  assert.equal(events[0]!.owner, 'alice');

  const read = await get(s.url, path, { 'X-User': 'bob' });
  assert.equal(read.body.toString(), 'alpha');
  assert.deepEqual(seen.at(-1), { action: 'read', id, path: 'a.txt' });

  const byBob = await send(s.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'bob' });
  assert.equal(byBob.status, 403);
  assert.equal(byBob.json.error, 'FORBIDDEN');
  assert.deepEqual(seen.at(-1), { action: 'delete', id, owner: 'alice' });
  assert.equal((await get(s.url, path, { 'X-User': 'alice' })).status, 200, 'still there');

  const byAlice = await send(s.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'alice' });
  assert.equal(byAlice.status, 200);
  assert.equal((await get(s.url, path, { 'X-User': 'alice' })).status, 404);
});

test('the owner survives a restart: a new server on the same data dir still refuses B and lets A delete', async (t) => {
  const dataDir = await tempDir(t);
  const first = await serve(t, { anonymousUploads: false, authorize: sessions([]) }, dataDir);
  const up = await upload(first.url, [{ filename: 'a.txt', data: 'x' }], { 'X-User': 'alice' });
  const id = (up.json.files[0] as string).split('/')[2]!;
  await first.files.close();
  const second = await serve(t, { anonymousUploads: false, authorize: sessions([]) }, dataDir);
  assert.equal((await send(second.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'bob' })).status, 403);
  assert.equal((await send(second.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'alice' })).status, 200);
});

test('an app upload (access key) has no owner: a user delete is told owner undefined; the key deletes anything', async (t) => {
  const seen: AccessRequest[] = [];
  const s = await serve(t, { anonymousUploads: false, authorize: sessions(seen) });
  const up = await upload(s.url, [{ filename: 'a.txt', data: 'x' }], { Authorization: KEY });
  const id = (up.json.files[0] as string).split('/')[2]!;
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'alice' })).status, 403);
  assert.deepEqual(seen.at(-1), { action: 'delete', id, owner: undefined });
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`)).status, 401, 'no session: unauthenticated');
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`, undefined, { Authorization: KEY })).status, 200);
});

test('streams and private mappings: publish, unpublish, view and read-mapping are asked with their names', async (t) => {
  const seen: AccessRequest[] = [];
  const root = await tempDir(t, 'wharf-map-');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(root, 'r.txt'), 'report');
  const s = await serve(t, { anonymousUploads: false, authorize: sessions(seen), privateDirs: [`/reports/@${root}`] });
  const frame = form([{ name: 'f', filename: 'f.png', contentType: 'image/png', data: Buffer.from([0x89, 0x50, 0x4e, 0x47]) }]);
  assert.equal((await send(s.url, 'POST', '/_m/cam', frame, { 'Content-Type': MULTIPART, 'X-User': 'bob' })).status, 401);
  assert.deepEqual(seen.at(-1), { action: 'publish', stream: 'cam' });
  const published = await send(s.url, 'POST', '/_m/cam', frame, { 'Content-Type': MULTIPART, 'X-User': 'admin' });
  assert.ok(published.status < 300, published.body.toString());
  assert.equal((await send(s.url, 'DELETE', '/_m/cam', undefined, { 'X-User': 'admin' })).status < 300, true);
  assert.deepEqual(seen.at(-1), { action: 'unpublish', stream: 'cam' });
  const mapped = await get(s.url, '/reports/r.txt', { 'X-User': 'bob' });
  assert.equal(mapped.body.toString(), 'report');
  assert.deepEqual(seen.at(-1), { action: 'read-mapping', path: '/reports/r.txt' });
  await get(s.url, '/_m/none', { 'X-User': 'bob' }).catch(() => undefined);
  assert.ok(seen.some((a) => a.action === 'view' && a.stream === 'none'));
});

test('a one-parameter hook keeps its old reach: asked about uploads, never about deletes (key only)', async (t) => {
  let asked = 0;
  const s = await serve(t, { anonymousUploads: false, authorize: (_req: IncomingMessage) => (asked++, true) });
  const up = await upload(s.url, [{ filename: 'a.txt', data: 'x' }]);
  assert.equal(up.status, 200);
  const id = (up.json.files[0] as string).split('/')[2]!;
  const before = asked;
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`)).status, 401);
  assert.equal(asked, before, 'not asked about a delete');
});

test('an invalid identity is the hook\'s bug: 500 AUTHORIZE_FAILED, said through warn, nothing stored', async (t) => {
  const s = await serve(t, { anonymousUploads: false, authorize: () => ({ identity: '' }) });
  const up = await upload(s.url, [{ filename: 'a.txt', data: 'x' }]);
  assert.equal(up.status, 500);
  assert.equal(up.json.error, 'AUTHORIZE_FAILED');
  assert.ok(s.warnings.some((w) => /invalid identity/.test(w)), s.warnings.join('\n'));
});

test('an async hook: identities and \'forbidden\' through promises work as answered at once', async (t) => {
  const seen: AccessRequest[] = [];
  const sync = sessions(seen);
  const s = await serve(t, { anonymousUploads: false, authorize: async (req, access) => sync(req, access) });
  const up = await upload(s.url, [{ filename: 'a.txt', data: 'x' }], { 'X-User': 'carol' });
  assert.equal(up.status, 200);
  const id = (up.json.files[0] as string).split('/')[2]!;
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'dave' })).status, 403);
  assert.equal((await send(s.url, 'DELETE', `/_f/${id}`, undefined, { 'X-User': 'carol' })).status, 200);
  const rejecting = await serve(t, { anonymousUploads: false, authorize: async () => Promise.reject(new Error('session store down')) });
  const failed = await upload(rejecting.url, [{ filename: 'a.txt', data: 'x' }]);
  assert.deepEqual([failed.status, failed.json.error], [500, 'AUTHORIZE_FAILED']);
  assert.ok(rejecting.warnings.some((w) => w.includes('session store down')));
});
