// The orphan sweep (docs/protocol.md §8): what a node that crashed mid-upload left in the bucket —
// objects under `<prefix>f/<id>/` with no manifest, and unfinished multipart uploads — is invisible
// to readers already; this removes it once older than the grace period (so never an upload still
// arriving on a live node, as long as the grace is longer than the longest upload). Bounded work per
// tick: one page (at most 1,000 keys) of the files' listing, continued at the next tick, and one page
// of the unfinished uploads; an existence check per upload id seen on the page. The bucket's own
// lifecycle rule (`AbortIncompleteMultipartUpload`) is the belt to these braces.
import { errorMessage } from '../common/errors.js';
import { createS3Io, type S3ClientLike, type S3Io } from './s3-client.js';
import { s3Keys, type S3Keys } from './s3-manifest.js';

const TICK_MS = 60_000;

export interface OrphanSweep {
  /** Starts the ticks (unref'ed timers). */
  start(): void;
  /** Stops them and waits for a pass under way. */
  stop(): Promise<void>;
  /** One bounded pass: a page of files, a page of unfinished uploads; resolves with what it removed. */
  pass(now?: number): Promise<SweepResult>;
}

export interface SweepResult {
  /** Objects deleted (their upload had no manifest). */
  objects: number;
  /** Unfinished multipart uploads aborted. */
  uploads: number;
  /** True when the listing came back to its start: every key was looked at once since then. */
  wrapped: boolean;
}

export function createOrphanSweep(io: S3Io, keys: S3Keys, options: { grace: number; warn: (message: string) => void }): OrphanSweep {
  let token: string | undefined;
  let marker: { key: string; uploadId: string } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = true;

  async function pass(now = Date.now()): Promise<SweepResult> {
    const old = now - options.grace;
    const page = await io.list(keys.filesRoot, { token, max: 1000 });
    token = page.next;
    const byId = new Map<string, string[]>();
    for (const o of page.objects) {
      const id = keys.idOf(o.key);
      if (id === undefined || o.lastModified > old) continue;
      const list = byId.get(id) ?? [];
      list.push(o.key);
      byId.set(id, list);
    }
    let objects = 0;
    for (const [id, orphaned] of byId) {
      // A manifest makes them an upload's: never touched.
      if ((await io.list(keys.manifest(id), { max: 1 })).objects.some((o) => o.key === keys.manifest(id))) continue;
      await io.delMany(orphaned);
      objects += orphaned.length;
    }
    const unfinished = await io.listMultipart(keys.filesRoot, marker);
    marker = unfinished.next;
    let uploads = 0;
    for (const u of unfinished.uploads) {
      if (u.initiated > old) continue;
      await io.abortMultipart(u.key, u.uploadId);
      uploads++;
    }
    return { objects, uploads, wrapped: token === undefined && marker === undefined };
  }

  function tick(): void {
    timer = setTimeout(() => {
      running = pass().catch((err: unknown) => options.warn(`wharf: the S3 orphan sweep failed: ${errorMessage(err)}`)).finally(() => {
        running = undefined;
        if (!stopped) tick();
      });
    }, TICK_MS);
    timer.unref();
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    pass,
  };
}

/** Options of `sweepS3Orphans`: the store's, as given to `s3Storage`, and the grace period. */
export interface SweepS3OrphansOptions {
  client: S3ClientLike;
  bucket: string;
  prefix?: string;
  /** ms: only what is older is removed. Default 24 h, as the storage's own sweep. */
  orphanGrace?: number;
}

/**
 * Runs the orphan sweep over the whole bucket prefix now, page after page (for an operator, or a
 * cron job, after a crash): resolves with what it removed.
 */
export async function sweepS3Orphans(options: SweepS3OrphansOptions): Promise<{ objects: number; uploads: number }> {
  const prefix = options.prefix === undefined || options.prefix === '' || options.prefix.endsWith('/') ? options.prefix ?? '' : `${options.prefix}/`;
  const sweep = createOrphanSweep(createS3Io(options.client, options.bucket), s3Keys(prefix), { grace: options.orphanGrace ?? 24 * 3_600_000, warn: () => {} });
  const total = { objects: 0, uploads: 0 };
  for (;;) {
    const r = await sweep.pass();
    total.objects += r.objects;
    total.uploads += r.uploads;
    if (r.wrapped) return total;
  }
}
