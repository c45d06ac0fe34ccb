import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WharfError } from '../lib/common/errors.js';
import { createSlowness } from '../lib/static/sync-io.js';
import { createLocalStorage, storageError, TEMP_DIR, type StagedFile, type Staging } from '../lib/uploads/local-storage.js';
import { RECORD_NAME, recordFor } from '../lib/uploads/upload-record.js';
import { createNodeArea } from '../lib/uploads/lease.js';
import { layout, staged, tree } from './helpers/uploads.js';
import { eventually } from './helpers/eventually.js';
import { tempDir } from './helpers/temp-dir.js';
import { defer } from './helpers/defer.js';

// Every test of the write path runs twice: as this machine runs it (small writes on the event loop
// while they are cheap) and with the slow path forced (every write a batch through the thread
// pool), which is what a throttled or network disk gets and which no test here would reach by chance.
const SYNC_IO = ['auto', 'off'] as const;
const RECORD = recordFor('key');

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const fds = (): number => readdirSync('/proc/self/fd').length;

/** `data` in slices of `chunk`, the way a socket hands them over. */
function* chunked(data: Buffer, chunk = 64 * 1024): Generator<Buffer> {
  for (let at = 0; at < data.length; at += chunk) yield data.subarray(at, at + chunk);
}

/** A staged file whose `drained()` resolves at its next drain (or once it has failed). */
function fileOf(staging: Staging, id: string, rel: string): StagedFile & { drained(): Promise<unknown> } {
  let wake = (): void => {};
  const file = staging.file(id, rel, () => wake());
  const drained = (): Promise<unknown> => Promise.race([new Promise<void>((resolve) => (wake = resolve)), file.done.catch(() => {})]);
  return Object.assign(file, { drained });
}

/** Writes `chunks` the way the parser does (waiting whenever `write` says so), ends the file and resolves with its size. */
async function stream(staging: Staging, id: string, rel: string, chunks: Iterable<Buffer>): Promise<number> {
  const file = fileOf(staging, id, rel);
  for (const chunk of chunks) if (!file.write(chunk)) await file.drained();
  file.end();
  return file.done;
}

test('storage: start() creates the layout and its node\'s area, and sweeps only what dead nodes left', async (t) => {
  const dataDir = await tempDir(t);
  const temp = join(dataDir, TEMP_DIR);
  await mkdir(temp, { recursive: true });
  const live = createLocalStorage(dataDir, { writeBatch: 16 * 1024, syncWriteBelow: 0, nodeId: 'live' });
  await live.start();
  defer(t, () => live.close());
  const [area] = await readdir(temp);
  assert.match(area!, /^live\.[0-9a-f]{8}$/);
  const lease = JSON.parse(await readFile(join(temp, area!, 'lease'), 'utf8'));
  assert.deepEqual([lease.node, lease.pid, lease.interval], ['live', process.pid, 10_000]);
  const staging = live.stage();
  const w = fileOf(staging, randomUUID(), 'keep.txt');
  // A batch on its way, and a socket read more behind it: the file pushes back until the batch is on disk.
  assert.equal(w.write(randomBytes(20_000)), true);
  assert.equal(w.write(randomBytes(64 * 1024)), false);
  await w.drained(); // the staging directory exists
  assert.deepEqual(await staged(dataDir), [`${area}/1/`, `${area}/1/keep.txt`]);
  // Leftovers of dead nodes, each last alive an hour ago: junk, a crashed older wharf's staging
  // (no lease), a node's area with its lease. And a node alive elsewhere, its lease fresh though
  // its area's own mtime is old, and one whose lease says it renews every 20 minutes.
  const hourAgo = new Date(Date.now() - 3600_000);
  await writeFile(join(temp, 'junk'), 'x');
  await mkdir(join(temp, '999999999.0badcafe.1', randomUUID()), { recursive: true });
  await mkdir(join(temp, 'dead.deadbeef', '3'), { recursive: true });
  await writeFile(join(temp, 'dead.deadbeef', 'lease'), JSON.stringify({ node: 'dead', interval: 10_000 }));
  await mkdir(join(temp, 'elsewhere.0badcafe', '1'), { recursive: true });
  await writeFile(join(temp, 'elsewhere.0badcafe', 'lease'), '{}');
  await mkdir(join(temp, 'slow.0badcafe', '1'), { recursive: true });
  await writeFile(join(temp, 'slow.0badcafe', 'lease'), JSON.stringify({ interval: 1_200_000 }));
  for (const p of ['junk', '999999999.0badcafe.1', 'dead.deadbeef/lease', 'dead.deadbeef', 'elsewhere.0badcafe', 'slow.0badcafe/lease', 'slow.0badcafe']) await utimes(join(temp, p), hourAgo, hourAgo);
  const other = createLocalStorage(dataDir, { nodeId: 'other' });
  await other.start();
  const left = await readdir(temp);
  assert.deepEqual(left.filter((n) => !n.startsWith('other.')).sort(), [area, 'elsewhere.0badcafe', 'slow.0badcafe'].sort(), 'live areas are kept');
  assert.ok((await stat(join(dataDir, 'f'))).isDirectory());
  w.end();
  assert.equal(await w.done, 20_000 + 64 * 1024);
  await staging.commit(RECORD);
  assert.equal((await tree(join(dataDir, 'f'))).filter((p) => p.endsWith('keep.txt')).length, 1, 'a live node kept its staging');
  // A clean close removes the node's own area, and only it.
  await other.close();
  assert.deepEqual((await readdir(temp)).sort(), [area, 'elsewhere.0badcafe', 'slow.0badcafe'].sort());
});

test('storage: two nodes sweeping one stale area at once: one takes it, the other finds it gone, nothing is left', async (t) => {
  const dataDir = await tempDir(t);
  const temp = join(dataDir, TEMP_DIR);
  const modes = { dir: 0o700, file: 0o600 };
  const [a, b] = ['a', 'b'].map((nodeId) => createNodeArea(temp, { nodeId, interval: 10_000, modes }));
  await Promise.all([a!.renew(), b!.renew()]);
  for (let round = 0; round < 20; round++) {
    const dead = join(temp, `dead${round}.deadbeef`);
    await mkdir(join(dead, '1', 'deep'), { recursive: true });
    await writeFile(join(dead, '1', 'deep', 'partial.bin'), randomBytes(1000));
    await writeFile(join(dead, 'lease'), JSON.stringify({ interval: 10 }));
    const old = new Date(Date.now() - 3600_000);
    await utimes(join(dead, 'lease'), old, old);
    await utimes(dead, old, old);
    const [byA, byB] = await Promise.all([a!.sweep(), b!.sweep()]);
    assert.deepEqual([...byA, ...byB], [`dead${round}.deadbeef`], 'swept once');
  }
  assert.deepEqual(await staged(dataDir), [], 'no grave left in either area');
  await Promise.all([a!.close(), b!.close()]);
  assert.deepEqual(await readdir(temp), []);
  await assert.rejects(a!.renew(), (e: unknown) => e instanceof WharfError && e.code === 'SHUTTING_DOWN', 'a closed area is not made again');
  assert.deepEqual(await readdir(temp), []);
});

test('storage: start() rejects a data dir whose f/ or temp area cannot be written', async (t) => {
  for (const name of ['f', TEMP_DIR]) {
    const dataDir = await tempDir(t);
    await writeFile(join(dataDir, name), 'a file where a directory should be');
    const storage = createLocalStorage(dataDir);
    await assert.rejects(storage.start(), (e: unknown) => ['EEXIST', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? ''), name);
    await assert.rejects(storage.probe(), name);
    await storage.close();
  }
});

test('storage: a node renews its lease while it runs, and sweeps an area whose lease went stale', async (t) => {
  const dataDir = await tempDir(t);
  const temp = join(dataDir, TEMP_DIR);
  const warnings: string[] = [];
  const a = createLocalStorage(dataDir, { nodeId: 'a', leaseInterval: 200, warn: (m) => warnings.push(m) });
  await a.start();
  defer(t, () => a.close());
  // b: another process that stages a file and is then killed, its lease no longer renewed.
  const child = spawn(process.execPath, [fileURLToPath(new URL('./helpers/lease-child.js', import.meta.url)), dataDir, 'b', '200'], { stdio: ['ignore', 'pipe', 'inherit'] });
  defer(t, () => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await eventually(() => out.includes('STAGED'), 'b staged its file');
  const areaOf = async (node: string): Promise<string | undefined> => (await readdir(temp)).find((n) => n.startsWith(`${node}.`));
  const areaB = (await areaOf('b'))!;
  const leaseB = join(temp, areaB, 'lease');
  const first = (await stat(leaseB)).mtimeMs;
  await eventually(async () => (await stat(leaseB)).mtimeMs > first, 'b renews its lease');
  assert.ok((await staged(dataDir)).some((p) => p.startsWith(`${areaB}/`) && p.endsWith('partial.bin')));
  // Alive, b is never swept: over 6 intervals and more, its area stays.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await areaOf('b'), areaB, 'a live node keeps its area');
  child.kill('SIGKILL');
  await once(child, 'exit');
  await eventually(async () => (await areaOf('b')) === undefined, "a sweeps b's area once its lease is stale (6 intervals)");
  assert.ok((await areaOf('a')) !== undefined, 'a keeps its own');
  // Its own area removed under it (an operator; a node that took it for dead): made again at the next renewal, said once.
  await rm(join(temp, (await areaOf('a'))!), { recursive: true, maxRetries: 5 }); // a renewal may land midway
  await eventually(async () => (await areaOf('a')) !== undefined, "a's area and lease are made again");
  assert.equal(warnings.filter((w) => /had been removed/.test(w)).length, 1, warnings.join('\n'));
});

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): files stream in in batches, stay invisible until commit, then appear whole`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo, writeBatch: 64 * 1024 });
    await storage.start();
    const before = fds();
    const big = randomBytes(3 * 1024 * 1024 + 123);
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const staging = storage.stage();
    const sizes = [
      await stream(staging, a, 'big.bin', chunked(big, 10_000)),
      await stream(staging, b, 'empty', []),
      await stream(staging, c, 'deep/er/small.txt', [Buffer.from('hello '), Buffer.from('world')]),
    ];
    assert.deepEqual(sizes, [big.length, 0, 11]);
    assert.deepEqual(await readdir(join(dataDir, 'f')), [], 'nothing visible before commit');
    assert.equal(await storage.source.stat(`${a}/big.bin`), null);
    await staging.commit(RECORD);
    assert.equal(sha(await readFile(join(dataDir, 'f', a, 'big.bin'))), sha(big));
    assert.equal((await readFile(join(dataDir, 'f', b, 'empty'))).length, 0);
    assert.equal(await readFile(join(dataDir, 'f', c, 'deep/er/small.txt'), 'utf8'), 'hello world');
    assert.deepEqual(await staged(dataDir), [], 'the staging area is gone');
    const info = await storage.source.stat(`${a}/big.bin`);
    assert.equal(info?.size, big.length);
    const open = await storage.source.open(`${c}/deep/er/small.txt`);
    assert.ok(open);
    const chunks: Buffer[] = [];
    for await (const chunk of open.stream(6, 10)) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'world');
    assert.equal(fds(), before, 'no descriptor left open');
    await assert.rejects(staging.commit(RECORD), (e: unknown) => e instanceof WharfError, 'a staging commits once');
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): the read side refuses anything that is not under an upload id`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo });
    await storage.start();
    await mkdir(join(dataDir, 'f', 'not-an-id'), { recursive: true });
    await writeFile(join(dataDir, 'f', 'not-an-id', 'x'), 'x');
    await writeFile(join(dataDir, 'f', 'top'), 'x');
    assert.equal(await storage.source.stat('not-an-id/x'), null);
    assert.equal(await storage.source.open('not-an-id/x'), null);
    assert.equal(await storage.source.stat('top'), null);
    const id = randomUUID();
    await mkdir(join(dataDir, 'f', id));
    await writeFile(join(dataDir, 'f', id, '.hidden'), 'dotfiles are ordinary uploads');
    assert.equal((await storage.source.stat(`${id}/.hidden`))?.size, 29);
    assert.equal(await storage.source.stat(id), null, 'an upload directory is not a file');
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): abort removes every staged byte, also while a batch is on its way to disk`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo, writeBatch: 16 * 1024 });
    await storage.start();
    const before = fds();
    const staging = storage.stage();
    await stream(staging, randomUUID(), 'done.bin', chunked(randomBytes(100_000)));
    const busy = staging.file(randomUUID(), 'busy.bin', () => {});
    busy.write(randomBytes(40_000)); // past a batch: a writev is in flight now
    await staging.abort();
    await assert.rejects(busy.done, (e: unknown) => e instanceof WharfError && e.code === 'SHUTTING_DOWN');
    assert.equal(busy.write(Buffer.from('late')), true, 'a destroyed file ignores writes');
    busy.end();
    busy.destroy(new Error('again'));
    assert.deepEqual(await staged(dataDir), []);
    assert.deepEqual(await readdir(join(dataDir, 'f')), []);
    assert.equal(fds(), before);
    await staging.abort(); // idempotent
    assert.throws(() => staging.file(randomUUID(), 'late', () => {}), (e: unknown) => e instanceof WharfError && e.code === 'SHUTTING_DOWN');
    await assert.rejects(staging.copy(randomUUID(), 'late', '/etc/hostname'), (e: unknown) => e instanceof WharfError);
    await assert.rejects(staging.commit(RECORD), (e: unknown) => e instanceof WharfError && e.code === 'SHUTTING_DOWN');
    // A staging that never wrote a byte creates nothing at all.
    const idle = storage.stage();
    await idle.abort();
    assert.deepEqual(await staged(dataDir), []);
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): a commit that fails half-way publishes nothing`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo });
    await storage.start();
    const [ok, taken] = [randomUUID(), randomUUID()];
    await mkdir(join(dataDir, 'f', taken));
    await writeFile(join(dataDir, 'f', taken, 'someone-else'), 'x'); // a non-empty directory: rename fails ENOTEMPTY
    const staging = storage.stage();
    await stream(staging, ok, 'a.txt', [Buffer.from('a')]);
    await stream(staging, taken, 'b.txt', [Buffer.from('b')]);
    await assert.rejects(staging.commit(RECORD), (e: unknown) => ['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? ''));
    assert.deepEqual(await tree(join(dataDir, 'f')), [`${taken}/`, `${taken}/someone-else`]);
    assert.deepEqual(await staged(dataDir), []);
    await staging.abort(); // after a failed commit: nothing left to do
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): a commit waits for nothing but refuses files still being written`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo });
    await storage.start();
    const staging = storage.stage();
    const w = staging.file(randomUUID(), 'open.txt', () => {});
    w.write(Buffer.from('x'));
    await assert.rejects(staging.commit(RECORD), (e: unknown) => e instanceof WharfError && e.code === 'INTERNAL');
    await staging.abort();
    assert.deepEqual(await staged(dataDir), []);
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): copy in, copy out (via a temp file next to the target), remove`, async (t) => {
    const dataDir = await tempDir(t);
    const work = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo });
    await storage.start();
    const data = randomBytes(200_000);
    await writeFile(join(work, 'src.bin'), data);
    const id = randomUUID();
    const staging = storage.stage();
    assert.equal(await staging.copy(id, 'dir/copy.bin', join(work, 'src.bin')), data.length);
    await staging.commit(RECORD);
    const failing = storage.stage();
    await assert.rejects(failing.copy(randomUUID(), 'x', join(work, 'missing')), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
    await assert.rejects(failing.commit(RECORD), (e: unknown) => e instanceof WharfError && e.code === 'INTERNAL', 'a failed file can only be aborted');
    await failing.abort();
    assert.equal(sha(await readFile(join(dataDir, 'f', id, 'dir/copy.bin'))), sha(data));

    assert.equal(await storage.copyOut(id, 'dir/copy.bin', join(work, 'out.bin')), data.length);
    assert.equal(sha(await readFile(join(work, 'out.bin'))), sha(data));
    await writeFile(join(work, 'old.bin'), 'replaced atomically');
    await storage.copyOut(id, 'dir/copy.bin', join(work, 'old.bin'));
    assert.equal(sha(await readFile(join(work, 'old.bin'))), sha(data));
    await assert.rejects(storage.copyOut(id, 'nope', join(work, 'x')), (e: unknown) => e instanceof WharfError && e.status === 404);
    await assert.rejects(storage.copyOut(id, 'dir/copy.bin', join(work, 'no-such-dir', 'x')), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
    assert.deepEqual((await readdir(work)).sort(), ['old.bin', 'out.bin', 'src.bin'], 'no temp file left next to a target');

    assert.equal(await storage.remove('not-an-id'), false);
    assert.equal(await storage.remove(randomUUID()), false);
    assert.equal(await storage.remove(id), true);
    assert.equal(await storage.remove(id), false);
    assert.deepEqual(await readdir(join(dataDir, 'f')), []);
    assert.deepEqual(await staged(dataDir), []);
  });
}

test('storage: write failures are storage errors with the right status', () => {
  const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code, syscall: 'write' });
  const cases: Array<[string, string, number]> = [
    ['ENOSPC', 'STORAGE_FULL', 507],
    ['EDQUOT', 'STORAGE_FULL', 507],
    ['EROFS', 'READ_ONLY', 503],
    ['EMFILE', 'BUSY', 503],
    ['EACCES', 'STORAGE_DENIED', 500],
    ['EPERM', 'STORAGE_DENIED', 500],
    ['EEXIST', 'DUPLICATE_FILENAME', 400],
    ['ENOTDIR', 'DUPLICATE_FILENAME', 400],
    ['ENAMETOOLONG', 'BAD_FILENAME', 400],
    ['EIO', 'STORAGE_ERROR', 500],
  ];
  for (const [code, want, status] of cases) {
    const e = storageError(errno(code));
    assert.equal(e.code, want, code);
    assert.equal(e.status, status, code);
  }
  const own = new WharfError('INTERNAL', 'y', 418);
  assert.equal(storageError(own), own);
  assert.equal(storageError(new Error('no code')).code, 'STORAGE_ERROR');
});

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): a disk that fills up mid-file fails the write, and abort leaves nothing`, { skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : false }, async (t) => {
    const dataDir = join(await tempDir(t), 'mnt');
    await mkdir(dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dataDir]);
    try {
      const storage = createLocalStorage(dataDir, { syncIo, writeBatch: 512 * 1024 });
      await storage.start();
      const staging = storage.stage();
      await assert.rejects(stream(staging, randomUUID(), 'too-big.bin', chunked(randomBytes(3 * 1024 * 1024))), (e: unknown) => storageError(e).status === 507);
      await staging.abort();
      assert.deepEqual(await layout(dataDir), [`${TEMP_DIR}/`, 'f/']);
    } finally {
      execFileSync('umount', ['-l', dataDir]);
    }
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): its own directories removed while running come back; a data dir that is gone is not made again`, async (t) => {
    const parent = await tempDir(t);
    const dataDir = join(parent, 'data');
    await mkdir(dataDir);
    const storage = createLocalStorage(dataDir, { syncIo, writeBatch: 16 * 1024 });
    await storage.start();
    await rm(join(dataDir, TEMP_DIR), { recursive: true });
    await rm(join(dataDir, 'f'), { recursive: true });
    // A small file (written on the loop) and a big one (through the thread pool), each in its own staging.
    for (const size of [100, 100_000]) {
      const staging = storage.stage();
      const id = randomUUID();
      assert.equal(await stream(staging, id, 'back.bin', chunked(randomBytes(size))), size);
      await staging.commit(RECORD);
      assert.equal((await stat(join(dataDir, 'f', id, 'back.bin'))).size, size);
      await rm(join(dataDir, TEMP_DIR), { recursive: true });
      await rm(join(dataDir, 'f'), { recursive: true });
    }
    await rm(dataDir, { recursive: true });
    for (const size of [100, 100_000]) {
      const staging = storage.stage();
      await assert.rejects(stream(staging, randomUUID(), 'lost.bin', chunked(randomBytes(size))), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
      await staging.abort();
    }
    assert.deepEqual(await readdir(parent), [], 'the data dir was not made again');
  });
}

/** The bytes of the staged file `name` (the one `.bin` file when not given) under `dataDir`'s temp area, or null while there is none. */
async function stagedBytes(dataDir: string, name = '.bin'): Promise<Buffer | null> {
  const files = (await tree(join(dataDir, TEMP_DIR))).filter((p) => p.endsWith(name));
  return files.length === 0 ? null : readFile(join(dataDir, TEMP_DIR, files[0]!));
}

test('storage: a file\'s first syncWriteBelow bytes go down in batches on the event loop, each on disk when the write completing it is acknowledged; the rest through the thread pool', async (t) => {
  const dataDir = await tempDir(t);
  const storage = createLocalStorage(dataDir, { syncWriteBelow: 256 * 1024, writeBatch: 128 * 1024 });
  await storage.start();
  const data = randomBytes(512 * 1024);
  const staging = storage.stage();
  const w = staging.file(randomUUID(), 'a.bin', () => {});
  const write = (from: number, to: number): void => assert.equal(w.write(data.subarray(from, to)), true);
  // Slices are gathered into a batch: nothing is written for them yet, not even a whole socket read.
  write(0, 1000);
  assert.equal(await stagedBytes(dataDir), null);
  write(1000, 64 * 1024);
  assert.equal(await stagedBytes(dataDir), null, 'one socket read is less than a batch');
  write(64 * 1024, 128 * 1024);
  assert.equal(sha((await stagedBytes(dataDir))!), sha(data.subarray(0, 128 * 1024)), 'the first batch went down at once, in write()');
  write(128 * 1024, 256 * 1024);
  assert.equal((await stagedBytes(dataDir))!.length, 256 * 1024);
  // Past syncWriteBelow bytes are gathered into batches written through the thread pool: less than one waits.
  write(256 * 1024, 320 * 1024);
  assert.equal((await stagedBytes(dataDir))!.length, 256 * 1024);
  write(320 * 1024, 512 * 1024);
  w.end();
  assert.equal(await w.done, 512 * 1024);
  assert.equal(sha((await stagedBytes(dataDir))!), sha(data));
  await staging.commit(RECORD);
});

test('storage: once the files being written hold writeBuffer bytes together, the one taking a chunk writes what it holds, on the event loop too', async (t) => {
  const dataDir = await tempDir(t);
  const storage = createLocalStorage(dataDir, { syncWriteBelow: 1024 * 1024, writeBatch: 1024 * 1024, writeBuffer: 96 * 1024 });
  await storage.start();
  const data = randomBytes(256 * 1024);
  const staging = storage.stage();
  const a = staging.file(randomUUID(), 'a.bin', () => {});
  const b = staging.file(randomUUID(), 'b.bin', () => {});
  assert.equal(a.write(data.subarray(0, 64 * 1024)), true);
  assert.equal(await stagedBytes(dataDir, 'a.bin'), null, 'under the budget: gathered');
  // 128 KiB held together: b, taking the chunk that passes the budget, writes its 64 KiB now.
  assert.equal(b.write(data.subarray(0, 64 * 1024)), true);
  assert.equal((await stagedBytes(dataDir, 'b.bin'))!.length, 64 * 1024);
  assert.equal(await stagedBytes(dataDir, 'a.bin'), null, 'a file not taking a chunk keeps what it holds');
  assert.equal(a.write(data.subarray(64 * 1024, 65 * 1024)), true);
  assert.equal(await stagedBytes(dataDir, 'a.bin'), null, 'back under the budget: gathered again');
  assert.equal(a.write(data.subarray(65 * 1024, 128 * 1024)), true);
  assert.equal(sha((await stagedBytes(dataDir, 'a.bin'))!), sha(data.subarray(0, 128 * 1024)));
  a.end();
  b.end();
  assert.equal(await a.done, 128 * 1024);
  assert.equal(await b.done, 64 * 1024);
  await staging.commit(RECORD);
});

test('slowness: a throttled disk turns writes asynchronous; they are tried again after a back-off that grows while they stay slow', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const slowness = createSlowness();
  const slowCalls = (n: number): void => {
    for (let i = 0; i < n; i++) slowness.timed(performance.now() - 5);
  };
  // Twenty writes of 5 ms each: a disk the kernel throttles.
  slowCalls(19);
  assert.equal(slowness.slow, false, 'a few slow calls are a busy machine, not slow storage');
  slowCalls(10);
  assert.equal(slowness.slow, true);
  for (let i = 0; i < 1000; i++) slowness.timed(performance.now());
  assert.equal(slowness.slow, true, 'fast calls while slow do not count: none should be made');
  t.mock.timers.tick(9_999);
  assert.equal(slowness.slow, true);
  t.mock.timers.tick(1);
  assert.equal(slowness.slow, false, 'after 10 s the loop is tried again');
  // Still slow: four slow calls trip it again, now for twice as long.
  slowCalls(4);
  assert.equal(slowness.slow, true);
  t.mock.timers.tick(10_000);
  assert.equal(slowness.slow, true, 'a second trip right after the first backs off longer');
  t.mock.timers.tick(10_000);
  assert.equal(slowness.slow, false);
  // Recovered: fast calls bring the count down, and a later busy spell starts from 10 s again.
  for (let i = 0; i < 200; i++) slowness.timed(performance.now());
  slowCalls(3);
  assert.equal(slowness.slow, false, 'recovered storage is not tripped by a few slow calls');
  t.mock.timers.tick(60_000);
  slowCalls(40);
  assert.equal(slowness.slow, true);
  t.mock.timers.tick(10_000);
  assert.equal(slowness.slow, false, 'a trip long after the last starts from the first back-off');
});

test('storage (syncIo off): every write goes through the thread pool, in batches', async (t) => {
  const dataDir = await tempDir(t);
  const storage = createLocalStorage(dataDir, { writeBatch: 1024 * 1024, syncIo: 'off' });
  await storage.start();
  const data = randomBytes(200 * 1024);
  const staging = storage.stage();
  const w = staging.file(randomUUID(), 'a.bin', () => {});
  w.write(data);
  assert.equal(await stagedBytes(dataDir), null, 'held for a batch, not written on the loop');
  w.end();
  assert.equal(await w.done, data.length);
  const id = randomUUID();
  assert.equal(await staging.put(id, 'b.bin', [Buffer.from('small')]), 5);
  await staging.commit(RECORD);
  assert.equal(sha(await readFile(join(dataDir, 'f', id, 'b.bin'))), sha(Buffer.from('small')));
  assert.equal((await tree(join(dataDir, 'f'))).filter((p) => !p.endsWith('/') && !p.endsWith(RECORD_NAME)).length, 2);
});

test('storage: a file whose batch lands with nothing more held, while others fill the write budget, does not starve the event loop', async (t) => {
  // The writer in a process of its own (test/helpers/storage-child.ts): starving the event loop would also
  // starve this test's timers, so only a parent can see it and kill it.
  const dataDir = await tempDir(t);
  const child = spawn(process.execPath, [fileURLToPath(new URL('./helpers/storage-child.js', import.meta.url)), dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(killer);
  assert.equal(signal, null, 'the writer hung (the event loop starved) and was killed after 20 s');
  assert.equal(code, 0);
  assert.equal(out.trim(), `DONE ${16 * 1024 + 5 * 16 * 1024}`);
  assert.equal((await tree(join(dataDir, 'f'))).filter((p) => !p.endsWith('/') && !p.endsWith(RECORD_NAME)).length, 2);
});

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): put stages a whole small file on the loop, a big one or one whose directory is on its way through a writer`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo, syncWriteBelow: 1024 });
    await storage.start();
    const staging = storage.stage();
    const small = randomUUID();
    const big = randomUUID();
    const dir = randomUUID();
    const bigData = randomBytes(5000);
    assert.equal(await staging.put(small, 'a.txt', [Buffer.from('he'), Buffer.from('llo')]), 5);
    assert.equal(await staging.put(big, 'b.bin', [bigData.subarray(0, 100), bigData.subarray(100)]), 5000);
    // A streamed file makes `d/` through the thread pool; a put into it meanwhile waits for that mkdir.
    const w = staging.file(dir, 'd/streamed.bin', () => {});
    w.write(randomBytes(2000));
    const queued = staging.put(dir, 'd/put.txt', [Buffer.from('x')]);
    w.end();
    assert.equal(await queued, 1);
    assert.equal(await w.done, 2000);
    assert.deepEqual(await tree(join(dataDir, 'f')), []);
    await staging.commit(RECORD);
    assert.equal(await readFile(join(dataDir, 'f', small, 'a.txt'), 'utf8'), 'hello');
    assert.equal(sha(await readFile(join(dataDir, 'f', big, 'b.bin'))), sha(bigData));
    assert.equal(await readFile(join(dataDir, 'f', dir, 'd', 'put.txt'), 'utf8'), 'x');
    assert.deepEqual(await staged(dataDir), []);
  });
}

for (const syncIo of SYNC_IO) {
  test(`storage (syncIo ${syncIo}): a put that fails leaves a staging that only aborts, and abort removes everything`, async (t) => {
    const dataDir = await tempDir(t);
    const storage = createLocalStorage(dataDir, { syncIo });
    await storage.start();
    const staging = storage.stage();
    const id = randomUUID();
    await staging.put(id, 'same.txt', [Buffer.from('one')]);
    await assert.rejects(staging.put(id, 'same.txt', [Buffer.from('two')]), (err: NodeJS.ErrnoException) => storageError(err).code === 'DUPLICATE_FILENAME');
    await assert.rejects(staging.commit(RECORD), (err: WharfError) => err.code === 'INTERNAL');
    await staging.abort();
    assert.deepEqual(await staged(dataDir), []);
    assert.deepEqual(await tree(join(dataDir, 'f')), []);
    // After abort a put is refused, as a rejection.
    const late = staging.put(randomUUID(), 'late.txt', [Buffer.from('x')]);
    await assert.rejects(late, (err: WharfError) => err.code === 'SHUTTING_DOWN');
    assert.deepEqual(await staged(dataDir), []);
  });
}

test("storage: each id's record says whose it is; the read side never serves a record, marks an end user's files, reads a record once", async (t) => {
  const dataDir = await tempDir(t);
  const storage = createLocalStorage(dataDir);
  await storage.start();
  const ids = { app: randomUUID(), user: randomUUID() };
  for (const [who, via] of [['app', 'key'], ['user', 'anonymous']] as const) {
    const staging = storage.stage();
    await staging.put(ids[who], 'page.html', [Buffer.from('<p>hi</p>')]);
    await staging.commit(recordFor(via));
  }
  assert.deepEqual(JSON.parse(await readFile(join(dataDir, 'f', ids.user, RECORD_NAME), 'utf8')), { v: 1, trust: 'user', via: 'anonymous' });
  // The ids of one request share one record: the first id's file, hard links in the others.
  const many = [randomUUID(), randomUUID(), randomUUID()];
  const staging = storage.stage();
  for (const id of many) await staging.put(id, 'a.txt', [Buffer.from(id)]);
  await staging.commit(recordFor('authorize'));
  const inodes = await Promise.all(many.map((id) => stat(join(dataDir, 'f', id, RECORD_NAME))));
  assert.deepEqual(inodes.map((st) => st.nlink), [3, 3, 3]);
  assert.equal(new Set(inodes.map((st) => st.ino)).size, 1);
  assert.deepEqual(JSON.parse(await readFile(join(dataDir, 'f', many[2]!, RECORD_NAME), 'utf8')), recordFor('authorize'));
  const untrusted = async (id: string): Promise<boolean | undefined> => {
    const file = await storage.source.open(`${id}/page.html`);
    assert.ok(file);
    await file.close();
    return file.untrusted;
  };
  assert.equal(await untrusted(ids.app), undefined);
  assert.equal(await untrusted(ids.user), true);
  for (const name of [RECORD_NAME, RECORD_NAME.toUpperCase(), `${RECORD_NAME}.`, `${RECORD_NAME} `, `${RECORD_NAME}/x`]) {
    assert.equal(await storage.source.stat(`${ids.app}/${name}`), null, name);
    assert.equal(await storage.source.open(`${ids.app}/${name}`), null, name);
  }
  await assert.rejects(storage.copyOut(ids.app, RECORD_NAME, join(dataDir, 'out')), (e: unknown) => e instanceof WharfError && e.code === 'NOT_FOUND');
  // Read once: the record changing afterwards (it never does) is not seen.
  await writeFile(join(dataDir, 'f', ids.user, RECORD_NAME), JSON.stringify(recordFor('key')));
  assert.equal(await untrusted(ids.user), true, 'remembered');

  // Copied into the layout: no record, a record too large to be one, a record that cannot be read.
  const copied = async (record?: string | 'dir'): Promise<string> => {
    const id = randomUUID();
    await mkdir(join(dataDir, 'f', id));
    await writeFile(join(dataDir, 'f', id, 'page.html'), 'x');
    if (record === 'dir') await mkdir(join(dataDir, 'f', id, RECORD_NAME));
    else if (record !== undefined) await writeFile(join(dataDir, 'f', id, RECORD_NAME), record);
    return id;
  };
  assert.equal(await untrusted(await copied()), true, 'no record: an end user\'s');
  assert.equal(await untrusted(await copied(`{"v":1,"trust":"app","pad":"${'x'.repeat(20_000)}"}`)), true, 'too large to be a record');
  const unreadable = await copied('dir');
  assert.equal(await untrusted(unreadable), true, 'unreadable: an end user\'s');
  await rm(join(dataDir, 'f', unreadable, RECORD_NAME), { recursive: true });
  await writeFile(join(dataDir, 'f', unreadable, RECORD_NAME), JSON.stringify(recordFor('site')));
  assert.equal(await untrusted(unreadable), undefined, 'an unreadable record is not remembered: read again, now the app\'s');
  assert.equal(await storage.source.open(`${randomUUID()}/page.html`), null);

  const trusting = createLocalStorage(dataDir, { unrecorded: 'app' });
  const file = await trusting.source.open(`${await copied()}/page.html`);
  await file!.close();
  assert.equal(file!.untrusted, undefined, 'unrecorded: "app" serves a copied-in upload as the app\'s');
});
