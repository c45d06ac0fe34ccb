// The start scan of the committed uploads, run in the background once per start when a quota or an
// upload TTL is set (docs/protocol.md §1, "Expiry, once and the quota"): the quota's starting total,
// and an expiry mark for each upload the TTL reaches that has none (stored before the TTL was set,
// or before it was lowered). One directory entry at a time through `opendir`, a few uploads at once
// through the thread pool: the event loop is never held by it, however many uploads there are.
import type { Dirent } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { isUploadId } from './filenames.js';
import { RECORD_NAME } from './upload-record.js';

// Uploads looked at together.
const CENSUS_WIDTH = 8;

/** Calls `visit` for each upload id in `filesDir`, CENSUS_WIDTH at a time, until `stopped()` says so. */
export function censusUploads(filesDir: string, visit: (id: string) => Promise<void>, stopped: () => boolean): Promise<void> {
  return eachEntry(filesDir, CENSUS_WIDTH, stopped, (e) => (e.isDirectory() && isUploadId(e.name) ? visit(e.name) : undefined));
}

/**
 * Runs `work` for each entry of the directory `path`, read a few entries at a time (`opendir`: never
 * the whole listing in memory), at most `width` at once, until `stopped()` says so; resolves when
 * all have settled. `work` returns undefined for an entry it skips.
 */
export async function eachEntry(path: string, width: number, stopped: () => boolean, work: (e: Dirent) => Promise<void> | undefined): Promise<void> {
  const dir = await opendir(path, { bufferSize: 64 });
  const running = new Set<Promise<void>>();
  try {
    for await (const entry of dir) {
      if (stopped()) break;
      const job = work(entry);
      if (job === undefined) continue;
      const tracked = job.finally(() => running.delete(tracked));
      running.add(tracked);
      if (running.size >= width) await Promise.race(running).catch(() => {});
    }
  } finally {
    await Promise.allSettled(running);
  }
}

/**
 * Bytes of the files under `dir` (an upload, or one on its way out), its record at the top left
 * out; 0 when it is gone. Symlinks count as themselves, never followed.
 */
export async function treeSize(dir: string, top = true): Promise<number> {
  let total = 0;
  let entries: Dirent[];
  try {
    const d = await opendir(dir, { bufferSize: 64 });
    entries = [];
    for await (const e of d) entries.push(e);
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) total += await treeSize(path, false);
    else if (!(top && e.name === RECORD_NAME)) total += await lstat(path).then((s) => s.size, () => 0);
  }
  return total;
}
