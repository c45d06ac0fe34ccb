// Hot blocks of big files (memory-cache.ts, BLOCK_SIZE): a Range within one 64 KiB block of a file
// too big to keep whole, asked for again, is answered from memory — and never stale, never past
// its preconditions, never beyond its budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirectorySource, createStatic, type FileSource, type OpenFile } from '../lib/static/engine.js';
import { BLOCK_SIZE } from '../lib/static/memory-cache.js';
import { resolveLimits } from '../lib/common/limits.js';
import { defer } from './helpers/defer.js';
import { request, serveEngine } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';

const MiB = 1024 * 1024;

/** `dir` as a FileSource that counts opens and reads per file, and can make a read fail or come back short. */
function counting(dir: string): { source: FileSource; opens: Map<string, number>; reads: Map<string, number>; blockReads: number[]; fault: { read?: 'short' | 'EIO' } } {
  const inner = createDirectorySource(dir);
  const opens = new Map<string, number>();
  const reads = new Map<string, number>();
  const fault: { read?: 'short' | 'EIO' } = {};
  /** The start of each read of a whole block. */
  const blockReads: number[] = [];
  const count = (m: Map<string, number>, rel: string): void => void m.set(rel, (m.get(rel) ?? 0) + 1);
  const wrap = (rel: string, f: OpenFile | null | undefined): OpenFile | null | undefined => {
    if (f == null) return f;
    count(opens, rel);
    const read = f.read!.bind(f);
    return Object.assign(f, {
      read: async (start: number, end: number): Promise<Buffer> => {
        count(reads, rel);
        if (end - start + 1 === BLOCK_SIZE) blockReads.push(start);
        const buf = await read(start, end);
        if (fault.read === 'EIO') throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        return fault.read === 'short' ? buf.subarray(0, buf.length - 1) : buf;
      },
    });
  };
  const source: FileSource = {
    stat: (rel) => inner.stat(rel),
    statSync: (rel) => inner.statSync!(rel),
    open: async (rel) => wrap(rel, await inner.open(rel)) ?? null,
    openSync: (rel) => wrap(rel, inner.openSync!(rel)),
  };
  return { source, opens, reads, blockReads, fault };
}

async function setUp(t: Parameters<typeof defer>[0], limits = resolveLimits()) {
  const { dir, cleanup } = await makeTempDir();
  defer(t, cleanup);
  const data = randomBytes(3 * MiB);
  await writeFile(join(dir, 'big.bin'), data);
  const c = counting(dir);
  const url = await serveEngine(t, createStatic({ limits }), c.source);
  const range = (from: number, to: number, headers: Record<string, string> = {}) =>
    request(url, '/x/big.bin', { headers: { Range: `bytes=${from}-${to}`, ...headers } });
  return { dir, data, url, range, ...c };
}

test('a Range within one block, asked for a third time, is answered from memory: no open, no read', async (t) => {
  const { data, range, opens, reads } = await setUp(t);
  const from = 5 * BLOCK_SIZE + 100;
  for (let i = 0; i < 6; i++) {
    const r = await range(from, from + 1023);
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes ${from}-${from + 1023}/${data.length}`);
    assert.equal(r.headers['content-length'], '1024');
    assert.deepEqual(r.body, data.subarray(from, from + 1024));
  }
  // 1st: opened (validators cached, the block marked); 2nd: opened, the block read whole and kept;
  // 3rd to 6th: from memory.
  assert.equal(opens.get('big.bin'), 2);
  assert.equal(reads.get('big.bin'), 2);
  // Another range of the same block, and the block's last byte, come from memory too.
  assert.deepEqual((await range(5 * BLOCK_SIZE, 5 * BLOCK_SIZE + 9)).body, data.subarray(5 * BLOCK_SIZE, 5 * BLOCK_SIZE + 10));
  assert.deepEqual((await range(6 * BLOCK_SIZE - 1, 6 * BLOCK_SIZE - 1)).body, data.subarray(6 * BLOCK_SIZE - 1, 6 * BLOCK_SIZE));
  assert.equal(opens.get('big.bin'), 2);
});

test('a Range across two blocks, a whole GET and a HEAD are not served from blocks', async (t) => {
  const { data, url, range, opens } = await setUp(t);
  const from = 2 * BLOCK_SIZE - 10;
  for (let i = 0; i < 4; i++) assert.deepEqual((await range(from, from + 19)).body, data.subarray(from, from + 20));
  assert.equal(opens.get('big.bin'), 4, 'each one opened');
  for (let i = 0; i < 3; i++) assert.deepEqual((await range(0, 99)).body, data.subarray(0, 100));
  const whole = await request(url, '/x/big.bin');
  assert.equal(whole.status, 200);
  assert.equal(whole.body.length, data.length);
  assert.deepEqual(whole.body, data);
});

test('a hot block is never stale: a rewritten, truncated or removed file is answered as it is now', async (t) => {
  const { dir, data, range } = await setUp(t);
  for (let i = 0; i < 3; i++) assert.deepEqual((await range(100, 199)).body, data.subarray(100, 200));
  const next = randomBytes(data.length);
  await writeFile(join(dir, 'big.bin'), next);
  assert.deepEqual((await range(100, 199)).body, next.subarray(100, 200), 'rewritten: the new bytes');
  for (let i = 0; i < 3; i++) await range(100, 199);
  await truncate(join(dir, 'big.bin'), 50);
  const short = await range(100, 199);
  assert.equal(short.status, 416, 'truncated: the range is past its end');
  await rm(join(dir, 'big.bin'));
  assert.equal((await range(100, 199)).status, 404, 'removed');
});

test('preconditions are answered before a hot block: If-Match, If-Unmodified-Since, If-None-Match, If-Range', async (t) => {
  const { data, range } = await setUp(t);
  let etag = '';
  for (let i = 0; i < 3; i++) etag = (await range(0, 9)).headers.etag as string;
  assert.equal((await range(0, 9, { 'If-Match': '"other"' })).status, 412);
  assert.equal((await range(0, 9, { 'If-Unmodified-Since': new Date(0).toUTCString() })).status, 412);
  assert.equal((await range(0, 9, { 'If-None-Match': etag })).status, 304);
  const matching = await range(0, 9, { 'If-Match': etag });
  assert.equal(matching.status, 206);
  assert.deepEqual(matching.body, data.subarray(0, 10));
  const stale = await range(0, 9, { 'If-Range': '"stale"' });
  assert.equal(stale.status, 200, 'If-Range that does not match: the whole file');
  assert.equal(stale.body.length, data.length);
  const fresh = await range(0, 9, { 'If-Range': etag });
  assert.equal(fresh.status, 206);
  assert.deepEqual(fresh.body, data.subarray(0, 10));
});

test("a file's blocks get no more room than one cached file: the oldest goes first", async (t) => {
  // cacheFileSize 2 blocks: two blocks of the file are kept at a time.
  const { data, range, opens } = await setUp(t, resolveLimits({ cacheFileSize: 2 * BLOCK_SIZE }));
  const at = (b: number): number => b * BLOCK_SIZE + 7;
  const ask = async (b: number): Promise<void> => assert.deepEqual((await range(at(b), at(b) + 99)).body, data.subarray(at(b), at(b) + 100));
  for (const b of [0, 1, 2]) for (let i = 0; i < 2; i++) await ask(b);
  const afterWarm = opens.get('big.bin')!;
  await ask(1);
  await ask(2);
  assert.equal(opens.get('big.bin'), afterWarm, 'blocks 1 and 2 are in memory');
  await ask(0);
  assert.equal(opens.get('big.bin'), afterWarm + 1, 'block 0, the oldest, made room');
});

test('a read of a block that comes back short or fails is an error, never a wrong answer or a kept block', async (t) => {
  const { data, range, fault, opens } = await setUp(t);
  await range(0, 9);
  fault.read = 'short';
  const short = await range(0, 9);
  assert.equal(short.status, 503);
  assert.equal(JSON.parse(short.text).error, 'FILE_CHANGED');
  fault.read = 'EIO';
  const failed = await range(0, 9);
  assert.equal(failed.status, 500);
  assert.doesNotMatch(failed.text, /i\/o error/, 'no system message in the answer');
  delete fault.read;
  const before = opens.get('big.bin')!;
  for (let i = 0; i < 3; i++) assert.deepEqual((await range(0, 9)).body, data.subarray(0, 10));
  assert.equal(opens.get('big.bin'), before + 1, 'read and kept once the reads work again, then from memory');
});

test('a client reading at random never makes it read whole blocks: what was asked for once is soon forgotten', async (t) => {
  const { dir, url, blockReads } = await setUp(t);
  await writeFile(join(dir, 'huge.bin'), '');
  await truncate(join(dir, 'huge.bin'), 200 * BLOCK_SIZE);
  const ask = async (b: number): Promise<void> => {
    const r = await request(url, '/x/huge.bin', { headers: { Range: `bytes=${b * BLOCK_SIZE}-${b * BLOCK_SIZE + 511}` } });
    assert.equal(r.status, 206);
  };
  for (let b = 0; b < 200; b++) await ask(b);
  await ask(0);
  await ask(199);
  assert.deepEqual(blockReads, [199 * BLOCK_SIZE], 'block 0 was forgotten among 200; block 199, asked for twice, read whole');
});

test('with the memory cache off, every Range opens the file', async (t) => {
  const { data, range, opens } = await setUp(t, resolveLimits({ cacheFileSize: 0 }));
  for (let i = 0; i < 4; i++) assert.deepEqual((await range(0, 9)).body, data.subarray(0, 10));
  assert.equal(opens.get('big.bin'), 4);
});
