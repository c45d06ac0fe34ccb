import test from 'node:test';
import assert from 'node:assert/strict';
import { resolveLimits, DEFAULT_LIMITS } from '../lib/limits.js';
import { WharfError } from '../lib/errors.js';

test('limits: defaults, overrides, and fail-fast on nonsense', () => {
  assert.deepEqual(resolveLimits(), { ...DEFAULT_LIMITS });
  assert.equal(resolveLimits({ files: 3 }).files, 3);
  assert.equal(resolveLimits({ files: 3 }).fileSize, DEFAULT_LIMITS.fileSize);
  assert.ok(DEFAULT_LIMITS.fileSize >= 2 * 1024 ** 3, 'a 2 GiB upload fits the defaults');
  for (const bad of [{ files: -1 }, { files: 1.5 }, { files: Number.NaN }, { nope: 1 }]) {
    assert.throws(() => resolveLimits(bad as never), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION');
  }
});
