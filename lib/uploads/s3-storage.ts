// Uploads in any S3-compatible store (docs/protocol.md §8): `createFileServer({ storage:
// s3Storage({ client, bucket, prefix }) })`, with the host app's own `S3Client`. Files go straight
// to their final keys (s3-staging.ts); an upload id exists for readers once its manifest, written
// last, does (s3-manifest.ts); reads are served from the manifest and ranged GETs (s3-source.ts);
// removal deletes the manifest first (gone for readers on every node at once), then the objects;
// what a crashed node left (objects without a manifest, unfinished multipart uploads) is invisible,
// and removed by the orphan sweep (s3-sweep.ts) once older than `orphanGrace`.
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { WharfError } from '../common/errors.js';
import { createS3Io, loadPresigner, type S3ClientLike, type S3Io } from './s3-client.js';
import { s3Error, startError } from './s3-errors.js';
import { s3Keys, type S3Keys } from './s3-manifest.js';
import { createS3Lifecycle } from './s3-lifecycle.js';
import { createS3Source, type Locate } from './s3-source.js';
import { S3Staging } from './s3-staging.js';
import { createOrphanSweep } from './s3-sweep.js';
import type { Storage, StorageContext, StorageFactory } from './storage.js';

export type { S3ClientLike } from './s3-client.js';

/** Presigned downloads: a `GET` of a file of at least `redirectAbove` bytes is answered `302` to S3. */
export interface S3PresignOptions {
  /** Files of at least this many bytes are redirected; smaller ones are proxied. */
  redirectAbove: number;
  /** Seconds the URL is valid. Default 300; at most 7 days (S3's own limit). */
  expiresIn?: number;
}

/** Options of `s3Storage`. Invalid values throw `INVALID_OPTION` at once. */
export interface S3StorageOptions {
  /** The host app's `S3Client` (`@aws-sdk/client-s3` v3). Not closed by wharf. */
  client: S3ClientLike;
  /** The bucket; it must exist, and the client's credentials must be able to read, write, list and delete in it. */
  bucket: string;
  /**
   * Where in the bucket wharf keeps its keys: `'wharf/'` puts files at `wharf/f/<id>/<name>`. Several
   * servers with different prefixes share a bucket without seeing each other. Default `''`.
   */
  prefix?: string;
  /**
   * Bytes of one part of a multipart upload. Files smaller than one part are a single PutObject. At
   * least 5 MiB (S3's minimum); raised so that `limits.fileSize` fits in S3's 10,000 parts. Default 5 MiB,
   * as the SDK's own `Upload`.
   */
  partSize?: number;
  /**
   * Parts of one file on their way to S3 at once, while the next one fills: a file holds at most
   * `partsInFlight + 1` parts in memory (25 MiB by default), and the socket is not read while it
   * does (backpressure). 1 to 16. Default 4, as the SDK's own `Upload` (4 parts of 5 MiB): one part
   * in flight left the upload waiting on each part's round trip (1.25–1.6× the time of `Upload` on
   * radosgw), two 8 MiB parts 1.1–1.3×; four of 5 MiB hold as much memory as three of 8 MiB did.
   */
  partsInFlight?: number;
  /**
   * Answer large downloads with a redirect to a short-lived presigned URL instead of proxying the
   * bytes (needs `@aws-sdk/s3-request-presigner`). Off by default: see docs/protocol.md §8 for
   * what a redirect gives up (auth, Content-Disposition, CORS).
   */
  presign?: S3PresignOptions;
  /**
   * ms after which objects without a manifest and unfinished multipart uploads (a crashed node's)
   * are removed by the orphan sweep. Keep it above your longest upload. Default 24 h.
   */
  orphanGrace?: number;
}

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 5 * 1024 * MiB;
export const DEFAULT_PART_SIZE = 5 * MiB;
const DEFAULT_PARTS_IN_FLIGHT = 4;
const MAX_PARTS = 10_000;
const DEFAULT_ORPHAN_GRACE = 24 * 3_600_000;
const MAX_PRESIGN_SECONDS = 7 * 86_400;

const invalid = (message: string): WharfError => new WharfError('INVALID_OPTION', `s3Storage: ${message}`);

/** Checks `options`; the prefix as used (`''` or ending in `/`). */
function checkOptions(o: S3StorageOptions): string {
  if (o === null || typeof o !== 'object') throw invalid('options must be an object');
  if (o.client === null || typeof o.client !== 'object' || typeof (o.client as { send?: unknown }).send !== 'function') throw invalid('client: expected an S3Client of @aws-sdk/client-s3');
  if (typeof o.bucket !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$/.test(o.bucket)) throw invalid('bucket: expected a bucket name');
  const prefix = o.prefix ?? '';
  if (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.includes('//') || /[\0-\x1f\x7f\\]/.test(prefix) || prefix.length > 512) {
    throw invalid('prefix: expected a key prefix such as "wharf/" (no leading slash, no empty segment, no control character)');
  }
  if (o.partSize !== undefined && (!Number.isSafeInteger(o.partSize) || o.partSize < MIN_PART_SIZE || o.partSize > MAX_PART_SIZE)) throw invalid(`partSize: expected bytes from ${MIN_PART_SIZE} (5 MiB) to 5 GiB`);
  if (o.partsInFlight !== undefined && (!Number.isSafeInteger(o.partsInFlight) || o.partsInFlight < 1 || o.partsInFlight > 16)) throw invalid('partsInFlight: expected 1 to 16');
  if (o.orphanGrace !== undefined && (!Number.isSafeInteger(o.orphanGrace) || o.orphanGrace < 1000)) throw invalid('orphanGrace: expected ms, at least 1000');
  if (o.presign !== undefined) {
    const p = o.presign;
    if (p === null || typeof p !== 'object' || !Number.isSafeInteger(p.redirectAbove) || p.redirectAbove < 0) throw invalid('presign.redirectAbove: expected a number of bytes');
    if (p.expiresIn !== undefined && (!Number.isSafeInteger(p.expiresIn) || p.expiresIn < 1 || p.expiresIn > MAX_PRESIGN_SECONDS)) throw invalid(`presign.expiresIn: expected seconds from 1 to ${MAX_PRESIGN_SECONDS}`);
  }
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/**
 * Uploads kept in an S3 bucket instead of the data dir: `createFileServer({ storage: s3Storage({
 * client, bucket, prefix }) })`. Needs `@aws-sdk/client-s3` (an optional peer dependency).
 */
export function s3Storage(options: S3StorageOptions): StorageFactory {
  const prefix = checkOptions(options);
  return (context) => createS3Storage(options, prefix, context);
}

function createS3Storage(options: S3StorageOptions, prefix: string, context: StorageContext): Storage {
  const { warn, nodeId, limits } = context;
  const io = createS3Io(options.client, options.bucket);
  const keys = s3Keys(prefix);
  const partSize = Math.min(MAX_PART_SIZE, Math.max(options.partSize ?? DEFAULT_PART_SIZE, Math.ceil(limits.fileSize / MAX_PARTS)));
  const removeLater = (id: string): void => {
    remove(id).catch((err: unknown) => warn(`wharf: could not remove a downloaded once-only upload ${id}: ${String(err)}`));
  };
  const { source, visible, forget, manifest } = createS3Source({ io, keys, onceDone: removeLater, presign: presignOf(io, options.presign) });
  const lifecycle = createS3Lifecycle(io, keys, { uploadTtl: limits.uploadTtl, storeSize: limits.storeSize }, { remove: (id) => remove(id), warn, nodeId });
  const sweep = createOrphanSweep(io, keys, { grace: options.orphanGrace ?? DEFAULT_ORPHAN_GRACE, warn });
  const probeKey = `${keys.probeRoot}${nodeId}.${randomBytes(4).toString('hex')}`;

  async function remove(id: string): Promise<boolean> {
    // Expired or downloaded `once`, it is gone for readers but still to be removed.
    const m = await manifest(id);
    if (m === null) return false;
    // The manifest first: from that moment the upload is gone for readers, on every node.
    await io.del(keys.manifest(id));
    forget(id);
    lifecycle.freeing(id, m.bytes);
    await io.delMany([...m.files.keys()].map((rel) => keys.file(id, rel)));
    return true;
  }

  return {
    source,
    quota: lifecycle.quota,
    remove,
    owner: async (id) => (await visible(id))?.owner,
    life: async (id) => (await visible(id))?.life ?? null,
    async start() {
      await io.sdk();
      try {
        await io.headBucket();
        // Read-only credentials pass HEAD: a write proves what uploads need.
        await io.put(probeKey, 'probe');
        await io.del(probeKey);
      } catch (err) {
        throw startError((err as { cause?: unknown }).cause ?? err, options.bucket);
      }
      await lifecycle.start();
      sweep.start();
    },
    async probe() {
      await io.put(probeKey, 'probe');
      await io.del(probeKey);
    },
    async close() {
      await sweep.stop();
      await lifecycle.stop();
    },
    stage: () => lifecycle.stage(new S3Staging({ io, keys, parts: { size: partSize, inFlight: options.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT }, warn })),
    copyOut: (id, rel, to) => copyOut(io, keys, visible, id, rel, to),
  };
}

/** Downloads `<id>/<rel>` to `to`, through a temp file next to it then a rename. */
async function copyOut(io: S3Io, keys: S3Keys, visible: ReturnType<typeof createS3Source>['visible'], id: string, rel: string, to: string): Promise<number> {
  const file = (await visible(id))?.manifest.files.get(rel);
  if (file === undefined) throw new WharfError('NOT_FOUND', 'no such uploaded file', 404);
  const temp = join(dirname(to), `.wharf-${randomBytes(6).toString('hex')}.tmp`);
  // Opened first: a target that cannot be written fails before S3 is asked for a byte.
  const handle = await open(temp, 'wx');
  try {
    const out = handle.createWriteStream();
    if (file.size === 0) await new Promise<void>((resolve, reject) => out.once('error', reject).end(() => resolve()));
    else {
      const body = await io.getRange(keys.file(id, rel), 0, file.size - 1, file.etag, new AbortController().signal).catch((err: unknown) => {
        out.destroy();
        throw err;
      });
      await pipeline(body, out).catch((err: unknown) => {
        throw (err as NodeJS.ErrnoException).syscall !== undefined ? err : s3Error(err, 'downloading an upload');
      });
    }
    await rename(temp, to);
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw err;
  }
  return file.size;
}

/** The presigned redirect of `options`, the presigner loaded on first use. */
function presignOf(io: S3Io, options: S3PresignOptions | undefined): { above: number; locate: Locate } | undefined {
  if (options === undefined) return undefined;
  const expiresIn = options.expiresIn ?? 300;
  let presigner: ReturnType<typeof loadPresigner> | undefined;
  const locate: Locate = async (key, headers) => {
    const sign = await (presigner ??= loadPresigner());
    const { GetObjectCommand } = await io.sdk();
    const input: Record<string, unknown> = { Bucket: io.bucket, Key: key, ResponseContentType: headers.type };
    if (headers.disposition !== undefined) input.ResponseContentDisposition = headers.disposition;
    return sign(io.client, new GetObjectCommand(input), { expiresIn });
  };
  return { above: options.redirectAbove, locate };
}
