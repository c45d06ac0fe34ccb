// Uploads against a disk that fills up, a data dir the server may not write to, and a 1 GiB upload
// whose server (alone in a child process) must stay in constant memory.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WharfError } from '../lib/index.js';
import { EMPTY, MULTIPART, TAIL, form, get, partHead, pieces, repeat, serve, settledTree, tempDir, tree, upload } from './helpers/uploads.js';
import { rawPost } from './helpers/raw-http.js';
import { defer } from './helpers/defer.js';

const root = process.getuid?.() === 0;
if (!root) console.log('# uploads-disk: the tmpfs (ENOSPC) and read-only (EACCES) tests need root to mount a tmpfs and drop privileges; skipped');

test('ENOSPC: an upload that fills the disk is a 507, leaves nothing, and the next upload works', { skip: !root && 'needs root to mount a tmpfs' }, async (t) => {
  const dataDir = join(await tempDir(t), 'mnt');
  await mkdir(dataDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dataDir]);
  try {
    const { files, url, port } = await serve(t, {}, dataDir);
    const big = randomBytes(256 * 1024);
    const body = [partHead({ filename: 'a.bin' }, true), ...repeat(big, 2), partHead({ filename: 'b.bin' }, false), ...repeat(big, 6), TAIL];
    const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': body.reduce((n, b) => n + b.length, 0) }, body);
    assert.equal(res.status, 507, res.body);
    assert.equal(JSON.parse(res.body).error, 'STORAGE_FULL');
    assert.deepEqual(await settledTree(dataDir), EMPTY);
    // Many small files: the disk fills up in the middle of the request.
    const many = await upload(url, Array.from({ length: 40 }, (_, i) => ({ filename: `s${i}.bin`, data: randomBytes(40_000) })));
    assert.equal(many.status, 507, many.body.toString());
    assert.deepEqual(await settledTree(dataDir), EMPTY);
    const work = await tempDir(t);
    await writeFile(join(work, 'two-mib.bin'), randomBytes(2 * 1024 * 1024));
    await assert.rejects(files.site.upload([join(work, 'two-mib.bin')]), (e: unknown) => e instanceof WharfError && e.status === 507);
    assert.deepEqual(await settledTree(dataDir), EMPTY);
    const ok = await upload(url, [{ filename: 'small.txt', data: 'fits' }]);
    assert.equal(ok.status, 200);
    assert.equal((await get(url, ok.json.files[0])).body.toString(), 'fits');
    await files.close();
  } finally {
    execFileSync('umount', ['-l', dataDir]);
  }
});

test('EACCES: a data dir the server may not write to is a clear 500, with nothing left behind', { skip: !root && 'needs root to drop privileges' }, async (t) => {
  const dataDir = await tempDir(t);
  const { files, url } = await serve(t, {}, dataDir);
  assert.equal((await upload(url, [{ filename: 'warm.txt', data: 'x' }])).status, 200); // storage started as root
  const work = await tempDir(t);
  await writeFile(join(work, 'x.txt'), 'x');
  await chmod(dataDir, 0o755);
  await chmod(work, 0o755);
  await chmod(join(dataDir, '.wharf-tmp'), 0o555);
  const before = await tree(dataDir);
  // Root ignores permission bits: act as nobody (the effective uid of every thread) for the uploads.
  process.seteuid!(65534);
  let http;
  let site: unknown;
  try {
    http = await upload(url, [{ filename: 'a.txt', data: 'a' }, { filename: 'b.txt', data: randomBytes(100_000) }]);
    site = await files.site.upload([join(work, 'x.txt')]).catch((e: unknown) => e);
  } finally {
    process.seteuid!(0);
  }
  assert.equal(http.status, 500, http.body.toString());
  assert.equal(http.json.error, 'STORAGE_DENIED');
  assert.match(http.json.message, /may not write to its data directory \(EACCES\)/);
  assert.ok(site instanceof WharfError && site.code === 'STORAGE_DENIED', String(site));
  assert.deepEqual(await tree(dataDir), before, 'nothing new');
});

test('a 1 GiB upload: the server streams it to disk in constant memory (RSS growth under 64 MiB)', async (t) => {
  const dataDir = await tempDir(t);
  const child = spawn(process.execPath, [fileURLToPath(new URL('./helpers/uploads-child.js', import.meta.url)), dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  defer(t, () => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  while (!/PORT \d+/.test(out)) await once(child.stdout!, 'data');
  const port = Number(/PORT (\d+)/.exec(out)![1]);
  const status = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024;
  // Warm up (JIT, first directories), then take the baseline.
  assert.equal((await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': form([{ filename: 'w', data: 'w' }]).length }, [form([{ filename: 'w', data: 'w' }])])).status, 200);
  const baseline = status('VmRSS');
  // One block over and over, its length prime to any read size, so a chunk lost, doubled or moved
  // shows as a wrong size or a block out of place.
  const block = randomBytes(1024 * 1024 + 7);
  const count = 1024;
  const head = partHead({ filename: 'huge.bin' }, true);
  const res = await rawPost(port, '/_f/', { 'Content-Type': MULTIPART, 'Content-Length': head.length + count * block.length + TAIL.length },
    pieces(head, repeat(block, count), TAIL));
  assert.equal(res.status, 200, res.body);
  const growth = status('VmHWM') - baseline;
  assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${(growth / 1024 / 1024).toFixed(1)} MiB`);
  const [, , id, name] = JSON.parse(res.body).files[0].split('/');
  const file = await open(join(dataDir, 'f', id, name));
  try {
    assert.equal((await file.stat()).size, count * block.length);
    const back = Buffer.alloc(block.length);
    for (const k of [0, 1, 100, 511, 777, count - 1]) {
      await file.read(back, 0, block.length, k * block.length);
      assert.ok(back.equals(block), `block ${k} intact`);
    }
  } finally {
    await file.close();
  }
  console.log(`# 1 GiB upload: server RSS grew ${(growth / 1024 / 1024).toFixed(1)} MiB over a baseline of ${(baseline / 1024 / 1024).toFixed(1)} MiB`);
});
