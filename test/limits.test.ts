import test from 'node:test';
import assert from 'node:assert/strict';
import { resolveLimits, DEFAULT_LIMITS, MAX_TIMER } from '../lib/common/limits.js';
import { WharfError } from '../lib/common/errors.js';

test('limits: defaults, overrides, and fail-fast on nonsense', () => {
  assert.deepEqual(resolveLimits(), { ...DEFAULT_LIMITS });
  assert.equal(resolveLimits({ files: 3 }).files, 3);
  assert.equal(resolveLimits({ files: 3 }).fileSize, DEFAULT_LIMITS.fileSize);
  assert.ok(DEFAULT_LIMITS.fileSize >= 2 * 1024 ** 3, 'a 2 GiB upload fits the defaults');
  for (const bad of [{ files: -1 }, { files: 1.5 }, { files: Number.NaN }, { nope: 1 }]) {
    assert.throws(() => resolveLimits(bad as never), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION');
  }
});

test('limits: a time limit past what a Node timer can wait is held to it (a longer one would fire after 1 ms, for ever)', () => {
  const month = 30 * 24 * 3600 * 1000;
  const r = resolveLimits({ uploadIdleTimeout: month, downloadStallTimeout: month, closeGrace: month, streamIdleTimeout: month, fileSize: 2 ** 40 });
  for (const key of ['uploadIdleTimeout', 'downloadStallTimeout', 'closeGrace', 'streamIdleTimeout'] as const) assert.equal(r[key], MAX_TIMER, key);
  assert.equal(r.fileSize, 2 ** 40, 'sizes are not times');
  assert.equal(resolveLimits({ uploadIdleTimeout: 0 }).uploadIdleTimeout, 0, '0 still means never');
});
