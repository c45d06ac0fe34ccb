// The tests' one way to make a temp dir: under the OS temp dir, named for what made it, removed after.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defer } from './defer.js';

/** A fresh temp dir that `t` removes when it ends. */
export async function tempDir(t: { after(fn: () => Promise<void>): void }, prefix = 'wharf-test-'): Promise<string> {
  const { dir, cleanup } = await makeTempDir(prefix);
  defer(t, cleanup);
  return dir;
}

/** A fresh temp dir and its removal, for a `before`/`after` pair that outlives one test. */
export async function makeTempDir(prefix = 'wharf-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
