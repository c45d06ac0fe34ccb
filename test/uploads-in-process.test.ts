// files.site.upload / uploadDir / download / unload (in-process, local copies) against the same
// uploads over HTTP, and the onUpload hook.
import test from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RECORD_NAME } from '../lib/uploads/upload-record.js';
import { WharfError } from '../lib/index.js';
import type { UploadEvent } from '../lib/index.js';
import { serveOn, storageTest } from './helpers/storages.js';
import { EMPTY, get, layout, openFds, serve, settledFds, sha256, staged, tempDir, tree, upload } from './helpers/uploads.js';

const isWharf = (code: string, status?: number) => (e: unknown): boolean =>
  e instanceof WharfError && e.code === code && (status === undefined || e.status === status);

/** `{base}_f/<id>/<rest>` → rest (still encoded): what must be equal between HTTP and site uploads. */
const shape = (path: string): string => path.replace(/^\/_f\/[0-9a-f-]{36}/, '/_f/<id>');

storageTest('site.upload: the same answer as an HTTP upload of the same files, copies stored whole', async (t, storage) => {
  const { files, url, dataDir } = await serveOn(storage, t);
  const work = await tempDir(t);
  const names = ['report.csv', 'with space #1?.txt', 'résumé 100%.pdf'];
  const datas = names.map((_, i) => randomBytes(10_000 * (i + 1)));
  for (const [i, n] of names.entries()) await writeFile(join(work, n), datas[i]!);
  const before = openFds();
  const progress: number[] = [];
  const paths = await files.site.upload(names.map((n) => join(work, n)), { onProgress: (p) => progress.push(p.loaded / p.total!) });
  const http = await upload(url, names.map((filename, i) => ({ filename, data: datas[i]! })));
  assert.deepEqual(paths.map(shape), http.json.files.map(shape));
  for (const [i, p] of paths.entries()) assert.equal(sha256((await get(url, p)).body), sha256(datas[i]!));
  assert.equal(progress.at(-1), 1);
  // With S3 nothing is staged on disk, and the SDK keeps its connections to the store open.
  if (storage === 's3') return;
  assert.deepEqual(await staged(dataDir), []);
  assert.equal(await settledFds(before), before);
});

test('site.uploadDir: the same tree as an HTTP directory upload; a symlinked file counts, a symlinked directory is not entered', async (t) => {
  const { files, url, dataDir } = await serve(t);
  const work = await tempDir(t);
  const src = join(work, 'site');
  await mkdir(join(src, 'js', 'lib'), { recursive: true });
  await mkdir(join(src, 'empty'));
  await writeFile(join(src, 'index.html'), '<h1>hi</h1>');
  await writeFile(join(src, 'js', 'app.js'), 'app()');
  await writeFile(join(src, 'js', 'lib', 'x y#.js'), randomBytes(50_000));
  await writeFile(join(work, 'outside.txt'), 'linked');
  await symlink(join(work, 'outside.txt'), join(src, 'link.txt'));
  await symlink(join(src, 'js'), join(src, 'loop'));
  const [path] = await files.site.uploadDir(src);
  assert.match(path!, /^\/_f\/[0-9a-f-]{36}$/);
  const siteTree = await tree(join(dataDir, 'f', path!.slice(4)));
  assert.deepEqual(siteTree, [RECORD_NAME, 'index.html', 'js/', 'js/app.js', 'js/lib/', 'js/lib/x y#.js', 'link.txt']);
  assert.deepEqual(JSON.parse(await readFile(join(dataDir, 'f', path!.slice(4), RECORD_NAME), 'utf8')), { v: 1, trust: 'app', via: 'site' });
  const rels = siteTree.filter((p) => !p.endsWith('/') && p !== RECORD_NAME);
  const http = await upload(url, await Promise.all(rels.map(async (filename) => ({ filename, data: await readFile(join(src, filename)) }))), { 'Wave-Directory-Upload': 'True' });
  assert.deepEqual(await tree(join(dataDir, 'f', http.json.files[0].slice(4))), siteTree);
  assert.equal((await get(url, `${path}/link.txt`)).body.toString(), 'linked');
  assert.equal((await get(url, `${path}/js/lib/x%20y%23.js`)).status, 200);
});

storageTest('site.download: into a directory (keeping the name) or to a file path, via a temp file next to it', async (t, storage) => {
  const { files } = await serveOn(storage, t);
  const work = await tempDir(t);
  const data = randomBytes(300_000);
  await writeFile(join(work, 'src name #1.bin'), data);
  const [path] = await files.site.upload([join(work, 'src name #1.bin')]);
  const out = join(work, 'out');
  await mkdir(out);
  const progress: number[] = [];
  assert.equal(await files.site.download(path!, out, { onProgress: (p) => progress.push(p.loaded) }), join(out, 'src name #1.bin'));
  assert.equal(sha256(await readFile(join(out, 'src name #1.bin'))), sha256(data));
  assert.deepEqual(progress, [data.length]);
  await writeFile(join(out, 'renamed.bin'), 'old contents');
  assert.equal(await files.site.download(`${path}?download`, join(out, 'renamed.bin')), join(out, 'renamed.bin'));
  assert.equal(sha256(await readFile(join(out, 'renamed.bin'))), sha256(data));
  assert.deepEqual((await readdir(out)).sort(), ['renamed.bin', 'src name #1.bin'], 'no temp file left');
  const [dirPath] = await files.site.uploadDir(out);
  assert.equal(await files.site.download(`${dirPath}/renamed.bin`, join(work, 'again.bin')), join(work, 'again.bin'));
  for (const bad of [
    `http://elsewhere.example${path}`,
    path!.replace(/[0-9a-f]{8}-/, '00000000-'),
    `${path}x`,
    dirPath!,
    `${dirPath}/../x`,
    '/_m/stream',
    'relative/_f/x',
  ]) {
    await assert.rejects(files.site.download(bad, out), isWharf('NOT_FOUND', 404), bad);
  }
  await assert.rejects(files.site.download(path!, join(work, 'no-such-dir', 'x')), isWharf('NOT_FOUND', 404));
  await assert.rejects(files.site.download(path!, out, { signal: AbortSignal.abort() }), isWharf('ABORTED'));
});

storageTest('site.download and site.unload take the path as returned, fully percent-encoded, or hand-built with a stray %', async (t, storage) => {
  const { files } = await serveOn(storage, t);
  const work = await tempDir(t);
  const out = join(work, 'out');
  await mkdir(out);
  const names = ['ünïcødé 名前 €.txt', '100% #1 ?.txt', '%2e%2e%2f', 'a+b;c.txt'];
  for (const n of names) await writeFile(join(work, n), `bytes of ${n}`);
  const paths = await files.site.upload(names.map((n) => join(work, n)));
  for (const [i, name] of names.entries()) {
    const [returned, id] = [paths[i]!, paths[i]!.split('/')[2]!];
    assert.equal(returned, `/_f/${id}/${name.replace(/[%#?]/g, encodeURIComponent)}`);
    const encoded = `/_f/${id}/${encodeURIComponent(name)}`;
    for (const form of [returned, encoded]) {
      await rm(join(out, name), { force: true });
      assert.equal(await files.site.download(form, out), join(out, name), `${form}: saved under its real name`);
      assert.equal(await readFile(join(out, name), 'utf8'), `bytes of ${name}`, form);
    }
  }
  // Written by hand from the name, with a `%` that is no escape: the name as written.
  await writeFile(join(work, '100% sure.txt'), 'sure');
  const [sure] = await files.site.upload([join(work, '100% sure.txt')]);
  assert.equal(await files.site.download(sure!.replace('%25', '%'), out), join(out, '100% sure.txt'));
  // Unload in either form.
  await files.site.unload(paths[0]!);
  await files.site.unload(`/_f/${paths[1]!.split('/')[2]}/${encodeURIComponent(names[1]!)}`);
  for (const p of paths.slice(0, 2)) await assert.rejects(files.site.download(p, out), isWharf('NOT_FOUND', 404), p);
});

storageTest('site.unload: the upload is gone for GET; unloading it again or a foreign URL is a 404 error', async (t, storage) => {
  const { files, url, stored } = await serveOn(storage, t);
  const work = await tempDir(t);
  await writeFile(join(work, 'a.txt'), 'a');
  const [path] = await files.site.upload([join(work, 'a.txt')]);
  assert.equal((await get(url, path!)).status, 200);
  await files.site.unload(path!);
  assert.equal((await get(url, path!)).status, 404);
  await assert.rejects(files.site.unload(path!), isWharf('NOT_FOUND', 404));
  await assert.rejects(files.site.unload('/elsewhere/x'), isWharf('NOT_FOUND', 404));
  await assert.rejects(files.site.unload(path!, { signal: AbortSignal.abort() }), isWharf('ABORTED'));
  const http = await upload(url, [{ filename: 'b.txt', data: 'b' }]);
  await files.site.unload(http.json.files[0]);
  assert.equal((await get(url, http.json.files[0])).status, 404, 'unload works on an HTTP upload');
  assert.deepEqual(await stored(), []);
});

test('site.*: the same refusals as HTTP, all-or-nothing', async (t) => {
  const { files, dataDir } = await serve(t, { limits: { fileSize: 1000, files: 2, requestSize: 1500 } });
  const work = await tempDir(t);
  await writeFile(join(work, 'ok.txt'), 'ok');
  await writeFile(join(work, 'back\\slash.txt'), 'x');
  await writeFile(join(work, 'nul.txt'), 'x');
  await writeFile(join(work, 'big.bin'), randomBytes(1001));
  await writeFile(join(work, 'half.bin'), randomBytes(800));
  await mkdir(join(work, 'empty'));
  await mkdir(join(work, 'bad'));
  await writeFile(join(work, 'bad', 'CON'), 'x');
  const ok = join(work, 'ok.txt');
  const cases: Array<[Promise<unknown>, string, number]> = [
    [files.site.upload([ok, join(work, 'back\\slash.txt')]), 'BAD_FILENAME', 400],
    [files.site.upload([ok, join(work, 'nul.txt')]), 'BAD_FILENAME', 400],
    [files.site.upload([ok, join(work, 'missing.txt')]), 'NOT_FOUND', 404],
    [files.site.upload([ok, join(work, 'empty')]), 'NOT_A_FILE', 400],
    [files.site.upload([]), 'NO_FILES', 400],
    [files.site.upload([ok, join(work, 'big.bin')]), 'LIMIT_FILE_SIZE', 413],
    [files.site.upload([ok, ok, ok]), 'LIMIT_FILES', 413],
    [files.site.upload([join(work, 'half.bin'), join(work, 'half.bin')]), 'LIMIT_REQUEST_SIZE', 413],
    [files.site.upload([ok], { signal: AbortSignal.abort() }), 'ABORTED', 499],
    [files.site.uploadDir(join(work, 'empty')), 'NO_FILES', 400],
    [files.site.uploadDir(join(work, 'missing')), 'NOT_FOUND', 404],
    [files.site.uploadDir(join(work, 'bad')), 'BAD_FILENAME', 400],
  ];
  for (const [i, [promise, code, status]] of cases.entries()) {
    await assert.rejects(promise, isWharf(code, status), `case ${i}: ${code}`);
  }
  assert.deepEqual(await layout(dataDir), EMPTY);
});

test('onUpload: one event per committed upload id, from HTTP and site alike; a failing hook changes nothing', async (t) => {
  const events: UploadEvent[] = [];
  let mode: 'ok' | 'throw' | 'reject' = 'ok';
  const { files, url, warnings } = await serve(t, {
    onUpload: (e) => {
      events.push(e);
      if (mode === 'throw') throw new Error('hook threw');
      if (mode === 'reject') return Promise.reject(new Error('hook rejected'));
      return undefined;
    },
  });
  const res = await upload(url, [{ filename: 'a.txt', data: 'aa', contentType: 'text/plain' }, { filename: 'b.bin', data: 'bbb' }]);
  assert.equal(res.status, 200);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events, [
    { id: res.json.files[0].split('/')[2], files: [{ path: res.json.files[0], filename: 'a.txt', size: 2, contentType: 'text/plain' }] },
    { id: res.json.files[1].split('/')[2], files: [{ path: res.json.files[1], filename: 'b.bin', size: 3, contentType: 'application/octet-stream' }] },
  ]);
  events.length = 0;
  const dir = await upload(url, [{ filename: 'd/x.txt', data: 'x' }, { filename: 'y.txt', data: 'yy' }], { 'Wave-Directory-Upload': 'True' });
  await new Promise((r) => setImmediate(r));
  assert.equal(events.length, 1);
  assert.deepEqual(events[0]!.files.map((f) => [f.filename, f.size, f.path]), [['d/x.txt', 1, `${dir.json.files[0]}/d/x.txt`], ['y.txt', 2, `${dir.json.files[0]}/y.txt`]]);
  events.length = 0;
  const work = await tempDir(t);
  await writeFile(join(work, 'page.html'), '<p>');
  const [sitePath] = await files.site.upload([join(work, 'page.html')]);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events.map((e) => e.files[0]), [{ path: sitePath, filename: 'page.html', size: 3, contentType: 'text/html; charset=utf-8' }]);
  for (const m of ['throw', 'reject'] as const) {
    mode = m;
    const failing = await upload(url, [{ filename: `${m}.txt`, data: m }]);
    assert.equal(failing.status, 200, 'the answer stands');
    assert.equal((await get(url, failing.json.files[0])).body.toString(), m, 'the upload stays committed');
  }
  await new Promise((r) => setImmediate(r));
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /onUpload hook failed.*hook threw/s);
  assert.match(warnings[1]!, /onUpload hook failed.*hook rejected/s);
});

test('site.*: after close() every call is refused and nothing is written', async (t) => {
  const { files, dataDir } = await serve(t);
  const work = await tempDir(t);
  await writeFile(join(work, 'a.txt'), 'a');
  const [path] = await files.site.upload([join(work, 'a.txt')]);
  await files.close();
  await assert.rejects(files.site.upload([join(work, 'a.txt')]), isWharf('SHUTTING_DOWN', 503));
  await assert.rejects(files.site.uploadDir(work), isWharf('SHUTTING_DOWN', 503));
  await assert.rejects(files.site.download(path!, work), isWharf('SHUTTING_DOWN', 503));
  assert.deepEqual((await tree(join(dataDir, 'f'))).length, 3, 'the first upload: its directory, file and record');
});
