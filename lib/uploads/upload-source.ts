// The read side of local storage (`Storage.source`): committed uploads under `f/`, served by the
// static engine, each file marked `untrusted` unless its upload's record says it is the app's own,
// and absent once its upload expired (upload-meta.ts).
import { constants } from 'node:fs';
import { open as openHandle, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirectorySource, type FileSource, type OpenFile } from '../static/engine.js';
import type { SyncIo } from '../static/sync-io.js';
import { isUploadId } from './filenames.js';
import { NO_LIFE, lifeOfRecord, type UploadLife } from './upload-meta.js';
import { MAX_RECORD_BYTES, RECORD_NAME, isRecordName, ownerOf, trustOf, type Trust } from './upload-record.js';

// Upload ids whose record is remembered: an id's record never changes once it is committed, so it
// is read once, when a file of the id is first opened or stat'ed (at most ~2 MiB for all of them).
// Right on every node sharing the data dir too: an id removed through another node is never
// committed again (ids are random UUIDs), and its files are 404 by their own open.
const TRUST_CACHE = 8192;

// O_NONBLOCK: a FIFO planted where a record should be must not park a thread-pool thread.
const RECORD_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** What the record of an upload id says: who made it, and its life (upload-meta.ts). */
interface Known {
  trust: Trust;
  life: UploadLife;
  /** Who made it, as `authorize` named them (upload-record.ts). */
  owner: string | undefined;
  /** A `once` upload downloaded whole by this process: gone for readers here, whatever the disk says. */
  consumed: boolean;
}

export interface UploadSource {
  readonly source: FileSource;
  /** Forgets what is remembered of upload `id` (it is being removed). */
  forget(id: string): void;
  /** The owner upload `id`'s record names (upload-record.ts); undefined when none (or no such upload). */
  owner(id: string): Promise<string | undefined>;
  /** The life of upload `id` from its record; null when there is no such upload, or it is gone for readers. */
  life(id: string): Promise<UploadLife | null>;
}

/**
 * The read side. `onceDone(id)` is called when a `once` upload was downloaded whole: the caller
 * removes it. An upload past its deadline is absent at once (404), before the sweep removes it.
 */
export function createUploadSource(filesDir: string, unrecorded: Trust, syncIo: SyncIo, onceDone: (id: string) => void = () => {}): UploadSource {
  // Created on first use: the directory may not exist before start().
  let dir: FileSource | undefined;
  const uploads = (): FileSource => (dir ??= createDirectorySource(filesDir, { dotfiles: true, syncIo }));
  const known = new Map<string, Known>();
  /**
   * What upload `id`'s record says, remembered; never rejects. A record that cannot be read now
   * (EMFILE, EIO…) makes an end user's answer with no life that is not remembered: the next use
   * reads it again.
   */
  const recall = async (id: string, there: Promise<boolean>): Promise<Known> => {
    const hit = known.get(id);
    if (hit !== undefined) return hit;
    const text = await readRecord(join(filesDir, id, RECORD_NAME)).then((t) => t ?? null, () => undefined);
    if (text === undefined) return { trust: 'user', life: NO_LIFE, owner: undefined, consumed: false };
    const k: Known = { trust: trustOf(text ?? undefined, unrecorded), life: lifeOfRecord(text ?? undefined), owner: ownerOf(text ?? undefined), consumed: false };
    // Only an upload that is there is remembered: requests for absent ids do not fill the cache.
    if (!(await there)) return k;
    if (known.size >= TRUST_CACHE) known.delete(known.keys().next().value!);
    known.set(id, k);
    return k;
  };
  /** What is known of upload `id` when it is there, else null. */
  const present = async (id: string): Promise<Known | null> => {
    if (!isUploadId(id)) return null;
    const there = stat(join(filesDir, id)).then((st) => st.isDirectory(), () => false);
    const [isThere, k] = await Promise.all([there, recall(id, there)]);
    return isThere ? k : null;
  };
  const idOf = (rel: string): string => {
    const slash = rel.indexOf('/');
    return slash < 0 ? rel : rel.slice(0, slash);
  };
  const consume = (id: string, k: Known): void => {
    if (k.consumed) return;
    k.consumed = true;
    onceDone(id);
  };
  const source: FileSource = {
    async stat(rel) {
      if (!servable(rel)) return null;
      // The record is read beside the file's own stat, not after it.
      const stating = uploads().stat(rel);
      const [info, k] = await Promise.all([stating, recall(idOf(rel), stating.then((i) => i !== null, () => false))]);
      return info === null || gone(k) ? null : info;
    },
    async open(rel) {
      if (!servable(rel)) return null;
      const id = idOf(rel);
      const opening = uploads().open(rel);
      const [file, k] = await Promise.all([opening, recall(id, opening.then((f) => f !== null, () => false))]);
      if (file === null) return null;
      if (gone(k)) {
        await file.close();
        return null;
      }
      if (k.trust !== 'app') file.untrusted = true;
      if (k.life.expiresAt !== undefined) file.expiresAt = k.life.expiresAt;
      if (k.life.once) file.onComplete = () => consume(id, k);
      return file;
    },
  };
  return {
    source,
    forget: (id) => void known.delete(id),
    async life(id) {
      const k = await present(id);
      return k === null || gone(k) ? null : k.life;
    },
    // The record is read once per id, as for trust and life: it never changes after the commit.
    owner: async (id) => (await present(id))?.owner,
  };
}

/** Is the upload `k` tells of gone for readers: past its deadline, or a `once` one downloaded? */
function gone(k: Known): boolean {
  return k.consumed || (k.life.expiresAt !== undefined && k.life.expiresAt <= Date.now());
}

/** Is `rel` a file of an upload that may be served: under an upload id, and not the id's record? */
export function servable(rel: string): boolean {
  const slash = rel.indexOf('/');
  if (!isUploadId(slash < 0 ? rel : rel.slice(0, slash))) return false;
  // Every spelling of the record's name starts with a dot: other names cost one comparison.
  if (slash < 0 || rel.charCodeAt(slash + 1) !== 46) return true;
  const next = rel.indexOf('/', slash + 1);
  return !isRecordName(next < 0 ? rel.slice(slash + 1) : rel.slice(slash + 1, next));
}

/** The text of the record at `path` (at most MAX_RECORD_BYTES, else ''); undefined when there is none. */
async function readRecord(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await openHandle(path, RECORD_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(MAX_RECORD_BYTES + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return bytesRead > MAX_RECORD_BYTES ? '' : buf.toString('utf8', 0, bytesRead);
  } finally {
    await handle.close();
  }
}
