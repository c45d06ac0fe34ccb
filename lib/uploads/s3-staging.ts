// One request's files on their way into S3 (`Storage.stage`): every file written straight to its
// final key `<prefix>f/<id>/<path>`, invisible to readers until `commit` writes each id's manifest
// `<prefix>m/<id>` (s3-manifest.ts). S3 has no rename: publishing by a manifest written last costs
// one small PUT per id and no byte copied, where staging keys copied on commit would cost a
// server-side copy of every byte (and a second write of each object's bytes inside the store).
import { createReadStream } from 'node:fs';
import { WharfError } from '../common/errors.js';
import { contentTypeFor } from '../common/mime.js';
import type { S3Io } from './s3-client.js';
import { S3FileWriter, type PartPlan } from './s3-file-writer.js';
import { serializeManifest, type ManifestFile, type S3Keys } from './s3-manifest.js';
import type { StagedFile, Staging } from './storage.js';
import type { UploadRecord } from './upload-record.js';

/** What the files of one storage share. */
export interface S3StagingConfig {
  io: S3Io;
  keys: S3Keys;
  /** How files are cut into parts (each at least 5 MiB); files smaller than a part are one PutObject. */
  parts: PartPlan;
  warn: (message: string) => void;
}

// Manifests written at once on commit.
const COMMIT_WIDTH = 16;

const aborted = (): WharfError => new WharfError('SHUTTING_DOWN', 'upload was aborted', 503);
const noop = (): void => {};

export class S3Staging implements Staging {
  private readonly files = new Map<string, Map<string, ManifestFile>>();
  /** Every key a file of this staging was (or is being) written to: what `abort` deletes. */
  private readonly keys = new Set<string>();
  private readonly writing = new Set<Promise<unknown>>();
  private readonly writers = new Set<S3FileWriter>();
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private aborting: Promise<void> | undefined;
  private broken = false;

  constructor(private readonly config: S3StagingConfig) {}

  file(id: string, rel: string, drain: () => void): StagedFile {
    const key = this.claim(id, rel);
    const { io, parts, warn } = this.config;
    const writer = new S3FileWriter(io, key, rel, parts, drain, warn);
    this.writers.add(writer);
    this.track(writer.done, (size) => this.listed(id, rel, { size, etag: writer.etag, mtimeMs: writer.mtimeMs }), () => this.writers.delete(writer));
    return writer;
  }

  put(id: string, rel: string, chunks: Buffer[]): Promise<number> {
    let key: string;
    try {
      key = this.claim(id, rel);
    } catch (err) {
      return Promise.reject(err);
    }
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const work = this.config.io.put(key, body, contentTypeFor(rel));
    this.track(work, (etag) => this.listed(id, rel, { size: body.length, etag, mtimeMs: Date.now() }));
    return work.then(() => body.length);
  }

  /** Streams the local file `from` into `<id>/<rel>`, as an upload's body would be. */
  async copy(id: string, rel: string, from: string): Promise<number> {
    let resume = noop;
    const writer = this.file(id, rel, () => resume());
    const stream = createReadStream(from, { highWaterMark: 1024 * 1024 });
    // Settles before the end only when the file failed: then nothing more is read.
    let settled = false;
    const failed = writer.done.then(noop, noop).then(() => void (settled = true));
    try {
      for await (const chunk of stream) {
        if (settled) break;
        if (writer.write(chunk as Buffer)) continue;
        await Promise.race([new Promise<void>((resolve) => (resume = resolve)), failed]);
      }
      writer.end();
    } catch (err) {
      writer.destroy(err as Error);
    } finally {
      stream.destroy();
    }
    return writer.done;
  }

  async commit(record: UploadRecord): Promise<void> {
    if (this.state !== 'open') throw aborted();
    if (this.writing.size > 0 || this.broken) throw new WharfError('INTERNAL', 'commit with a file unfinished or failed', 500);
    this.state = 'committing';
    const { io, keys } = this.config;
    const now = Date.now();
    const ids = [...this.files.keys()];
    try {
      for (let i = 0; i < ids.length; i += COMMIT_WIDTH) {
        await Promise.all(ids.slice(i, i + COMMIT_WIDTH).map((id) => io.put(keys.manifest(id), serializeManifest(record, now, this.files.get(id)!), 'application/json')));
      }
    } catch (err) {
      this.state = 'aborted';
      // The manifests first: an id whose manifest landed is visible until it goes.
      await io.delMany(ids.map((id) => keys.manifest(id))).then(() => io.delMany([...this.keys])).catch((e: unknown) =>
        this.config.warn(`wharf: could not remove a failed commit's objects from S3 (${String(e)}): the orphan sweep removes them`));
      throw err;
    }
    this.state = 'committed';
  }

  abort(): Promise<void> {
    if (this.state === 'committed') return Promise.resolve();
    this.state = 'aborted';
    return (this.aborting ??= (async () => {
      const why = aborted();
      for (const w of this.writers) w.destroy(why);
      // Every write landed (or failed) before its key is deleted, or a late one would leave it behind.
      await Promise.allSettled([...this.writing]);
      if (this.keys.size > 0) await this.config.io.delMany([...this.keys]);
    })());
  }

  /** The key of `<id>/<rel>`, remembered for `abort`. */
  private claim(id: string, rel: string): string {
    if (this.state !== 'open') throw aborted();
    const key = this.config.keys.file(id, rel);
    if (this.keys.has(key)) throw new WharfError('DUPLICATE_FILENAME', 'two files of the upload have the same name', 400);
    this.keys.add(key);
    if (!this.files.has(id)) this.files.set(id, new Map());
    return key;
  }

  private listed(id: string, rel: string, file: ManifestFile): void {
    this.files.get(id)!.set(rel, file);
  }

  /**
   * Follows `work` until it settles: `landed` with its result, or the staging broken. Its handlers
   * are the first on it, so they have run before any caller awaiting it goes on to `commit`.
   */
  private track<T>(work: Promise<T>, landed: (value: T) => void, settled: () => void = noop): void {
    this.writing.add(work);
    work.then((value) => {
      this.writing.delete(work);
      settled();
      landed(value);
    }, () => {
      this.writing.delete(work);
      settled();
      this.broken = true;
    });
  }
}
