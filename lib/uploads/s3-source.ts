// The read side of S3 storage (`Storage.source`): a file is served only when its upload's manifest
// (s3-manifest.ts) lists it. `stat` answers from the manifest alone (so ETag, Last-Modified and 304
// cost one small GET, never the object); `open` streams a ranged GetObject with backpressure, or,
// for a large download with `presign` on, hands the engine a short-lived presigned URL to redirect
// to. Every request asks S3 for the manifest (a manifest read before, with `If-None-Match`: a 304
// without its body), so a DELETE through any node is a 404 through every node at once.
import { Readable } from 'node:stream';
import { WharfError } from '../common/errors.js';
import type { FileInfo, FileSource, OpenFile } from '../static/engine.js';
import { isUploadId } from './filenames.js';
import { NOT_MODIFIED, type S3Io } from './s3-client.js';
import { s3Error } from './s3-errors.js';
import { MAX_MANIFEST_BYTES, inoOf, parseManifest, type Manifest, type ManifestFile, type S3Keys } from './s3-manifest.js';
import { lifeOfRecord, type UploadLife } from './upload-meta.js';
import { ownerOf, trustOf } from './upload-record.js';
import { servable } from './upload-source.js';

/** A presigned GET of `key` answering with these headers. */
export type Locate = (key: string, headers: { type: string; disposition: string | undefined }) => Promise<string>;

export interface S3SourceConfig {
  io: S3Io;
  keys: S3Keys;
  /** A `once` upload was downloaded whole: the caller removes it. */
  onceDone(id: string): void;
  /** Presigned redirects for files of at least `above` bytes. */
  presign?: { above: number; locate: Locate } | undefined;
}

/** An upload as readers see it. */
export interface Visible {
  manifest: Manifest;
  life: UploadLife;
  owner: string | undefined;
  untrusted: boolean;
}

export interface S3Source {
  readonly source: FileSource;
  /** Upload `id`'s manifest, whatever its life says; null when it has none (or one that is not a manifest). */
  manifest(id: string): Promise<Manifest | null>;
  /** Upload `id` as readers see it; null when it has no manifest, or it expired, or it was downloaded `once`. */
  visible(id: string): Promise<Visible | null>;
  /** Upload `id` is being removed: a `once` download's mark can go. */
  forget(id: string): void;
}

/** Bytes of a small answer read in one GetObject (the engine's `read`). */
const SMALL_READ = 64 * 1024;

export function createS3Source(config: S3SourceConfig): S3Source {
  const { io, keys } = config;
  // `once` uploads downloaded whole by this node and not yet removed: gone for readers here.
  const consumed = new Set<string>();

  const known = createManifestCache();

  /**
   * Upload `id`'s manifest, asked of S3 on every call: a manifest known here is asked for with
   * `If-None-Match`, and S3's 304 (no body) means it is still there, the same. So a removal through
   * any node is seen at once, and a directory upload's large manifest is not sent for each file.
   */
  async function manifest(id: string): Promise<Manifest | null> {
    if (!isUploadId(id)) return null;
    const hit = known.get(id);
    const got = await io.getText(keys.manifest(id), MAX_MANIFEST_BYTES, hit?.etag);
    if (got === NOT_MODIFIED && hit !== undefined) return hit.manifest;
    if (typeof got !== 'object') {
      known.forget(id);
      return null;
    }
    const parsed = parseManifest(got.text);
    if (parsed !== null && got.etag !== '') known.remember(id, got.etag, parsed);
    return parsed;
  }

  async function visible(id: string): Promise<Visible | null> {
    if (consumed.has(id)) return null;
    const m = await manifest(id);
    if (m === null) return null;
    return visibleOf(m);
  }

  function visibleOf(manifest: Manifest): Visible | null {
    const life = lifeOfRecord(manifest.text);
    if (life.expiresAt !== undefined && life.expiresAt <= Date.now()) return null;
    return { manifest, life, owner: ownerOf(manifest.text), untrusted: trustOf(manifest.text, 'user') !== 'app' };
  }

  /** The upload and file `rel` names, when both are there for readers. */
  async function find(rel: string): Promise<{ id: string; v: Visible; file: ManifestFile; path: string } | null> {
    if (!servable(rel)) return null;
    const slash = rel.indexOf('/');
    if (slash < 0) return null;
    const id = rel.slice(0, slash);
    const path = rel.slice(slash + 1);
    const v = await visible(id);
    const file = v?.manifest.files.get(path);
    return v && file ? { id, v, file, path } : null;
  }

  const source: FileSource = {
    async stat(rel) {
      const found = await find(rel);
      return found && infoOf(found.file);
    },
    async open(rel) {
      const found = await find(rel);
      if (found === null) return null;
      const { id, v, file } = found;
      const key = keys.file(id, found.path);
      const opened: OpenFile = {
        ...infoOf(file),
        stream: (start, end) => new ObjectStream(io, key, start, end, file.etag),
        read: (start, end) => readRange(io, key, start, end, file.etag),
        close: () => Promise.resolve(),
      };
      if (v.untrusted) opened.untrusted = true;
      if (v.life.expiresAt !== undefined) opened.expiresAt = v.life.expiresAt;
      if (v.life.once) {
        opened.onComplete = () => {
          if (consumed.has(id)) return;
          consumed.add(id);
          config.onceDone(id);
        };
      } else if (config.presign !== undefined && file.size >= config.presign.above) {
        const locate = config.presign.locate;
        opened.location = (headers) => locate(key, headers);
      }
      return opened;
    },
  };
  return { source, manifest, visible, forget: (id) => void consumed.delete(id) };
}

const infoOf = (f: ManifestFile): FileInfo => ({ size: f.size, mtimeMs: f.mtimeMs, ino: inoOf(f.etag) });

/** Bytes `start`..`end` of `key` in one buffer (a small answer: the engine asks only up to SMALL_READ). */
async function readRange(io: S3Io, key: string, start: number, end: number, etag: string): Promise<Buffer> {
  if (end - start + 1 > SMALL_READ) throw new WharfError('INTERNAL', 'read of a large range', 500);
  const body = await io.getRange(key, start, end, etag, new AbortController().signal);
  const chunks: Buffer[] = [];
  try {
    for await (const c of body) chunks.push(c as Buffer);
  } catch (err) {
    throw s3Error(err, 'reading an upload');
  }
  return Buffer.concat(chunks);
}

/**
 * Bytes `start`..`end` of an object, as a stream that asks S3 for them when first read and passes
 * S3's backpressure on: the object's body is paused whenever this stream's reader is full.
 * `bytesRead` tells the engine a body cut short (it cuts the answer then).
 */
class ObjectStream extends Readable {
  bytesRead = 0;
  private body: Readable | undefined;
  private started = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly io: S3Io,
    private readonly key: string,
    private readonly start: number,
    private readonly end: number,
    private readonly etag: string,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  override _read(): void {
    if (this.body !== undefined) {
      this.body.resume();
      return;
    }
    if (this.started) return;
    this.started = true;
    this.io.getRange(this.key, this.start, this.end, this.etag, this.abort.signal).then((body) => this.attach(body), (err: unknown) => this.destroy(err as Error));
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.abort.abort();
    this.body?.destroy();
    callback(err);
  }

  private attach(body: Readable): void {
    if (this.destroyed) {
      body.destroy();
      return;
    }
    this.body = body;
    const want = this.end - this.start + 1;
    body.on('data', (c: Buffer) => {
      this.bytesRead += c.length;
      if (!this.push(c)) body.pause();
    });
    body.once('end', () => {
      if (this.bytesRead !== want) this.destroy(new WharfError('STORAGE_UNAVAILABLE', 'the S3 object was cut short', 503));
      else this.push(null);
    });
    body.once('error', (err: Error) => this.destroy(s3Error(err, 'reading an upload')));
    body.once('close', () => {
      if (!this.readableEnded && !this.destroyed && this.bytesRead !== want) this.destroy(new WharfError('STORAGE_UNAVAILABLE', 'the S3 store closed the download', 503));
    });
  }
}

/** Bytes of manifests remembered (their text's length), least recently used out first. */
const MANIFEST_CACHE_BYTES = 8 * 1024 * 1024;

interface ManifestCache {
  get(id: string): { etag: string; manifest: Manifest } | undefined;
  remember(id: string, etag: string, manifest: Manifest): void;
  forget(id: string): void;
}

/**
 * Manifests read lately, with their ETags: never answered from without asking S3 (see
 * `manifest`), only spared the transfer and the parse. A Map keeps insertion order: its first
 * entry is the least recently used.
 */
function createManifestCache(): ManifestCache {
  const entries = new Map<string, { etag: string; manifest: Manifest }>();
  let bytes = 0;
  const forget = (id: string): void => {
    const e = entries.get(id);
    if (e === undefined) return;
    entries.delete(id);
    bytes -= e.manifest.text.length;
  };
  return {
    get(id) {
      const e = entries.get(id);
      if (e !== undefined) {
        entries.delete(id);
        entries.set(id, e);
      }
      return e;
    },
    remember(id, etag, manifest) {
      forget(id);
      if (manifest.text.length > MANIFEST_CACHE_BYTES / 8) return;
      entries.set(id, { etag, manifest });
      bytes += manifest.text.length;
      for (const old of entries.keys()) {
        if (bytes <= MANIFEST_CACHE_BYTES) break;
        forget(old);
      }
    },
    forget,
  };
}
