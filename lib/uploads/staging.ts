// One request's files on their way into the local layout (`Storage.stage`): each upload id in a
// temp directory of its own under `.wharf-tmp`, published by one rename to `f/<id>` on commit.
import { constants, linkSync, renameSync } from 'node:fs';
import { chmod, copyFile, link, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { WharfError } from '../common/errors.js';
import { mkdirExistingSync, writeFileSync } from './disk.js';
import { FileWriter, type WriteMemory } from './file-writer.js';
import type { StorageModes } from './local-storage.js';
import { createRoot, type Root } from './root.js';
import type { StagedFile, Staging } from './storage.js';
import { RECORD_NAME, serializeRecord, type UploadRecord } from './upload-record.js';

// Upload ids published (or records written) per turn of the event loop on commit.
const RENAME_SLICE = 64;

function noop(): void {}

const aborted = (): WharfError => new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class LocalStaging implements Staging {
  // Each upload id is staged in a temp directory of its own, renamed to f/<id> on commit: two
  // inodes per file of a plain upload (its directory and itself), the least the layout allows, and
  // a link to the request's record.
  private readonly roots = new Map<string, Root>();
  private readonly writers = new Set<StagedFile>();
  private readonly copies = new Set<Promise<unknown>>();
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private aborting: Promise<void> | undefined;
  // A file that failed may have left a partial copy under its id: such a staging can only be aborted.
  private broken = false;

  constructor(
    private readonly tempName: () => string,
    private readonly filesDir: string,
    private readonly memory: WriteMemory,
    private readonly modes: StorageModes,
  ) {}

  file(id: string, rel: string, drain: () => void): StagedFile {
    const root = this.rootOf(id);
    const writer = new FileWriter(pathOf(root, rel), dirOf(root, rel), root, this.memory, drain);
    this.writers.add(writer);
    writer.done.then(
      () => this.writers.delete(writer),
      () => {
        this.writers.delete(writer);
        this.broken = true;
      },
    );
    return writer;
  }

  put(id: string, rel: string, chunks: Buffer[]): Promise<number> {
    let size = 0;
    for (const c of chunks) size += c.length;
    if (size <= this.memory.syncBelow && !this.memory.slowness.slow) {
      const t0 = performance.now();
      try {
        const root = this.rootOf(id);
        if (root.dirSync(dirOf(root, rel))) {
          writeFileSync(pathOf(root, rel), chunks, size, this.modes.file);
          return Promise.resolve(size);
        }
      } catch (err) {
        this.broken = true;
        return Promise.reject(err);
      } finally {
        this.memory.slowness.timed(t0);
      }
    }
    // A directory of it is being made through the thread pool, or the file is big: a writer,
    // whose backpressure means nothing here (the bytes are all in memory already).
    let writer: StagedFile;
    try {
      writer = this.file(id, rel, noop);
    } catch (err) {
      return Promise.reject(err); // an aborted staging: a rejection, as on the path above
    }
    for (const c of chunks) writer.write(c);
    writer.end();
    return writer.done;
  }

  async copy(id: string, rel: string, from: string): Promise<number> {
    const root = this.rootOf(id);
    const path = pathOf(root, rel);
    const work = root.dir(dirname(path))
      .then(() => copyFile(from, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE))
      // copyFile gives the copy its source's mode: the upload's own instead.
      .then(() => chmod(path, this.modes.file))
      .then(() => stat(path));
    this.copies.add(work);
    try {
      return (await work).size;
    } catch (err) {
      this.broken = true;
      throw err;
    } finally {
      this.copies.delete(work);
    }
  }

  async commit(record: UploadRecord): Promise<void> {
    if (this.state !== 'open') throw aborted();
    if (this.writers.size > 0 || this.copies.size > 0 || this.broken) throw new WharfError('INTERNAL', 'commit with a file unfinished or failed', 500);
    this.state = 'committing';
    // Every record first, so that no id is published without one.
    try {
      await writeRecords([...this.roots.values()], Buffer.from(serializeRecord(record)), this.memory);
    } catch (err) {
      this.state = 'aborted';
      await this.removeAll();
      throw err;
    }
    await this.publish();
    this.state = 'committed';
  }

  abort(): Promise<void> {
    if (this.state === 'committed') return Promise.resolve();
    this.state = 'aborted';
    return (this.aborting ??= (async () => {
      const closing = [...this.writers].map((w) => w.done.catch(noop));
      const why = aborted();
      for (const w of this.writers) w.destroy(why);
      await Promise.all(closing);
      await Promise.allSettled(this.copies);
      // Every mkdir must have landed before the tree is removed, or a late one could resurrect it.
      await Promise.all([...this.roots.values()].map((root) => root.settled()));
      await this.removeAll();
    })());
  }

  /**
   * Renames every staged id to `f/<id>`; on failure removes those published and every staged byte.
   * Renames are the cheapest metadata syscall there is, cheaper than a thread-pool round trip:
   * done on this thread, a slice at a time, so a 1,000-file request holds the loop for no more
   * than a slice.
   */
  private async publish(): Promise<void> {
    const { filesDir } = this;
    const published: string[] = [];
    try {
      for (const [id, root] of this.roots) {
        try {
          renameSync(root.path, join(filesDir, id));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          mkdirExistingSync(filesDir, this.modes.dir);
          renameSync(root.path, join(filesDir, id));
        }
        published.push(id);
        if (published.length % RENAME_SLICE === 0) await nextTurn();
      }
    } catch (err) {
      this.state = 'aborted';
      await Promise.all(published.map((id) => rm(join(filesDir, id), { recursive: true, force: true })));
      await this.removeAll();
      throw err;
    }
  }

  private rootOf(id: string): Root {
    if (this.state !== 'open') throw aborted();
    let root = this.roots.get(id);
    if (root === undefined) {
      root = createRoot(this.tempName(), this.modes);
      this.roots.set(id, root);
    }
    return root;
  }

  private removeAll(): Promise<unknown> {
    return Promise.all([...this.roots.values()].map((root) => rm(root.path, { recursive: true, force: true })));
  }
}

// `rel` is a checked relative path: joining needs no normalising.
const pathOf = (root: Root, rel: string): string => `${root.path}${sep}${rel}`;
const dirOf = (root: Root, rel: string): string => {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? root.path : pathOf(root, rel.slice(0, slash));
};

/**
 * Writes `text` as the record of each staged root. The first root gets the file; the others a hard
 * link to it: one syscall and no inode each, where a file of its own costs three and an inode (1,000
 * files of one request, each its own id, cost 40% more CPU with a file per record; bench/uploads on
 * tmpfs). The ids of one request share one uploader, so one record; a record is never changed in
 * place. Where the file system has no hard links (or a file would have too many), a file each.
 * On the event loop, a slice at a time, as the small files of `put` are (cheaper than the
 * thread-pool round trips that would carry them); through the thread pool once this storage
 * proved slow.
 */
async function writeRecords(roots: Root[], text: Buffer, memory: WriteMemory): Promise<void> {
  const recordOf = (root: Root): string => `${root.path}${sep}${RECORD_NAME}`;
  // Every root of one staging is made with the same modes.
  const mode = roots[0]?.modes.file;
  let first: string | undefined;
  for (let i = 0; i < roots.length; i++) {
    const path = recordOf(roots[i]!);
    if (memory.slowness.slow) {
      const rest = roots.slice(i).map(recordOf);
      if (first === undefined) await writeFile((first = rest.shift()!), text, { flag: 'wx', mode });
      const from = first;
      await Promise.all(rest.map((to) => link(from, to).catch(() => writeFile(to, text, { flag: 'wx', mode }))));
      return;
    }
    if (i > 0 && i % RENAME_SLICE === 0) await nextTurn();
    const t0 = performance.now();
    try {
      if (first !== undefined && linkOrFalse(first, path)) continue;
      writeFileSync(path, [text], text.length, mode!);
      first = path;
    } finally {
      memory.slowness.timed(t0);
    }
  }
}

/** `link(from, to)`; false where that cannot be done (no hard links there, too many links): write a file instead. */
function linkOrFalse(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw err;
    return false;
  }
}
