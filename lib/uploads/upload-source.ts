// The read side of local storage (`Storage.source`): committed uploads under `f/`, served by the
// static engine, each file marked `untrusted` unless its upload's record says it is the app's own.
import { constants } from 'node:fs';
import { open as openHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirectorySource, type FileSource, type OpenFile } from '../static/engine.js';
import type { SyncIo } from '../static/sync-io.js';
import { isUploadId } from './filenames.js';
import { MAX_RECORD_BYTES, RECORD_NAME, isRecordName, ownerOf, trustOf, type Trust } from './upload-record.js';

// Upload ids whose trust is remembered: an id's record never changes once it is committed, so the
// record is read once, when a file of the id is first opened (at most ~1.5 MiB for all of them).
// Right on every node sharing the data dir too: an id removed through another node is never
// committed again (ids are random UUIDs), and its files are 404 by their own open.
const TRUST_CACHE = 8192;

// O_NONBLOCK: a FIFO planted where a record should be must not park a thread-pool thread.
const RECORD_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

export interface UploadSource {
  readonly source: FileSource;
  /** Forgets what is remembered of upload `id` (it is being removed). */
  forget(id: string): void;
  /** The owner upload `id`'s record names (upload-record.ts); undefined when none (or no such upload). */
  owner(id: string): Promise<string | undefined>;
}

export function createUploadSource(filesDir: string, unrecorded: Trust, syncIo: SyncIo): UploadSource {
  // Created on first use: the directory may not exist before start().
  let dir: FileSource | undefined;
  const uploads = (): FileSource => (dir ??= createDirectorySource(filesDir, { dotfiles: true, syncIo }));
  const trusts = new Map<string, Trust>();
  /**
   * The trust of upload `id` from its record; never rejects. A record that cannot be read now (EMFILE,
   * EIO…) makes an end user's answer that is not remembered: the next open reads it again.
   */
  const readTrust = (id: string): Promise<Trust | undefined> =>
    readRecord(join(filesDir, id, RECORD_NAME)).then((text) => trustOf(text, unrecorded), () => undefined);
  const source: FileSource = {
    stat: async (rel) => (servable(rel) ? uploads().stat(rel) : null),
    async open(rel) {
      if (!servable(rel)) return null;
      const slash = rel.indexOf('/');
      const id = slash < 0 ? rel : rel.slice(0, slash);
      let trust = trusts.get(id);
      let file: OpenFile | null;
      if (trust === undefined) {
        // The record is read beside the file's own open, not after it.
        let read: Trust | undefined;
        [file, read] = await Promise.all([uploads().open(rel), readTrust(id)]);
        if (file === null) return null; // no such file: no id to remember (nor to fill the cache with)
        if (read !== undefined) {
          if (trusts.size >= TRUST_CACHE) trusts.delete(trusts.keys().next().value!);
          trusts.set(id, read);
        }
        trust = read ?? 'user';
      } else {
        file = await uploads().open(rel);
        if (file === null) return null;
      }
      if (trust !== 'app') file.untrusted = true;
      return file;
    },
  };
  const owner = async (id: string): Promise<string | undefined> =>
    (isUploadId(id) ? ownerOf(await readRecord(join(filesDir, id, RECORD_NAME))) : undefined);
  return { source, forget: (id) => void trusts.delete(id), owner };
}

/** Is `rel` a file of an upload that may be served: under an upload id, and not the id's record? */
function servable(rel: string): boolean {
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
