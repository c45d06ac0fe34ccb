// Expiry and the quota for uploads in S3 (docs/protocol.md §8): the same index, sweep, ledgers and
// start scan as on disk (expiry.ts, quota.ts, lifecycle.ts), kept in the bucket:
//
//   <prefix>x/<bucket>/<mark>   the expiry index: a due bucket is one ListObjectsV2 of its prefix
//   <prefix>u/<node>            each node's quota ledger
//
// The start scan lists the manifests (`<prefix>m/`, one key per upload) a page at a time and reads
// each (8 at once): deadlines and bytes come from the manifests.
import { createLifecycleOf, type Lifecycle, type LifecycleOptions, type LifecycleStore } from './lifecycle.js';
import type { MarkStore } from './expiry.js';
import type { LedgerStore } from './quota.js';
import type { S3Io } from './s3-client.js';
import { MAX_MANIFEST_BYTES, parseManifest, type S3Keys } from './s3-manifest.js';

// Uploads the start scan reads at once.
const CENSUS_WIDTH = 8;
// A mark or ledger is a few bytes; anything larger is not one.
const SMALL_TEXT = 1024 * 1024;

export interface S3LifecycleParts {
  remove(id: string): Promise<boolean>;
  warn(message: string): void;
  nodeId: string;
}

export function createS3Lifecycle(io: S3Io, keys: S3Keys, options: LifecycleOptions, parts: S3LifecycleParts): Lifecycle {
  const store: LifecycleStore = {
    marks: s3Marks(io, keys.marksRoot),
    ledgers: s3Ledgers(io, keys.ledgersRoot),
    census: (visit, stopped) =>
      eachListed(io, keys.manifestsRoot, CENSUS_WIDTH, stopped, (key) => {
        const id = keys.idOf(key);
        return id === undefined ? undefined : visit(id);
      }),
    async inspect(id) {
      const got = await io.getText(keys.manifest(id), MAX_MANIFEST_BYTES);
      const manifest = typeof got === 'object' ? parseManifest(got.text) : null;
      return manifest && { bytes: manifest.bytes, record: manifest.text, born: manifest.committed };
    },
  };
  return createLifecycleOf(store, options, parts.remove, parts.warn);
}

/** Runs `work` for each key under `prefix`, listed a page at a time, at most `width` at once, until `stopped()`. */
async function eachListed(io: S3Io, prefix: string, width: number, stopped: () => boolean, work: (key: string) => Promise<void> | undefined): Promise<void> {
  const running = new Set<Promise<void>>();
  let token: string | undefined;
  try {
    do {
      const page = await io.list(prefix, { token });
      for (const o of page.objects) {
        if (stopped()) return;
        const job = work(o.key);
        if (job === undefined) continue;
        const tracked = job.catch(() => {}).finally(() => running.delete(tracked));
        running.add(tracked);
        if (running.size >= width) await Promise.race(running);
      }
      token = page.next;
    } while (token !== undefined && !stopped());
  } finally {
    await Promise.allSettled(running);
  }
}

/** The expiry index under `root`: `<root><bucket>/<mark>`. */
function s3Marks(io: S3Io, root: string): MarkStore {
  const at = (b: number, name = ''): string => `${root}${b}/${name}`;
  return {
    async buckets() {
      const out: number[] = [];
      let token: string | undefined;
      do {
        const page = await io.list(root, { delimiter: '/', token });
        for (const p of page.prefixes) {
          const name = p.slice(root.length, -1);
          if (/^\d{1,15}$/.test(name)) out.push(Number(name));
        }
        token = page.next;
      } while (token !== undefined);
      return out;
    },
    write: async (b, name, text) => void (await io.put(at(b, name), text)),
    each: (b, width, stopped, work) => eachListed(io, at(b), width, stopped, (key) => work(key.slice(at(b).length))),
    read: (b, name) => textOf(io, at(b, name)),
    drop: (b, name) => io.del(at(b, name)).catch(() => {}),
    // S3 has no directories: a bucket is gone with its last mark.
    dropBucket: () => Promise.resolve(),
  };
}

/** The quota's ledgers under `root`: `<root><name>`. */
function s3Ledgers(io: S3Io, root: string): LedgerStore {
  return {
    prepare: () => Promise.resolve(),
    write: async (name, text) => void (await io.put(`${root}${name}`, text)),
    async entries() {
      const out: Array<{ name: string; mtimeMs: number }> = [];
      let token: string | undefined;
      do {
        const page = await io.list(root, { token });
        for (const o of page.objects) out.push({ name: o.key.slice(root.length), mtimeMs: o.lastModified });
        token = page.next;
      } while (token !== undefined);
      return out;
    },
    read: (name) => textOf(io, `${root}${name}`),
    remove: (name) => io.del(`${root}${name}`),
  };
}

/** The text of a small object (a mark, a ledger); '' when it cannot be read. */
async function textOf(io: S3Io, key: string): Promise<string> {
  const got = await io.getText(key, SMALL_TEXT).catch(() => undefined);
  return typeof got === 'object' ? got.text : '';
}
