// The S3 calls the adapter makes, through the host app's own `S3Client` (`@aws-sdk/client-s3` v3, an
// optional peer dependency: wharf has no runtime dependency). The SDK is loaded by dynamic import,
// only by code that uses S3, and typed here by the few fields used: any v3 client will do, and a
// program without the SDK still loads and type-checks wharf.
import type { Readable } from 'node:stream';
import { WharfError, errorMessage } from '../common/errors.js';
import { isMissing, s3Error, statusOf } from './s3-errors.js';

/** `getText`'s answer when the object is still the one of the ETag given. */
export const NOT_MODIFIED = Symbol('not modified');

/** The one call of an `S3Client` used here (`client.send(command, { abortSignal })`). */
export interface S3ClientLike {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  send(command: any, options?: any): Promise<any>;
}

/** A v3 command class: `new PutObjectCommand(input)`. */
type CommandClass = new (input: Record<string, unknown>) => unknown;

/** The command classes of `@aws-sdk/client-s3` used by the adapter. */
export interface S3Sdk {
  HeadBucketCommand: CommandClass;
  PutObjectCommand: CommandClass;
  GetObjectCommand: CommandClass;
  HeadObjectCommand: CommandClass;
  DeleteObjectCommand: CommandClass;
  DeleteObjectsCommand: CommandClass;
  ListObjectsV2Command: CommandClass;
  CreateMultipartUploadCommand: CommandClass;
  UploadPartCommand: CommandClass;
  CompleteMultipartUploadCommand: CommandClass;
  AbortMultipartUploadCommand: CommandClass;
  ListMultipartUploadsCommand: CommandClass;
}

/** `getSignedUrl` of `@aws-sdk/s3-request-presigner`. */
export type Presign = (client: S3ClientLike, command: unknown, options: { expiresIn: number }) => Promise<string>;

/** The module names, in variables so that the compiler does not resolve them: they need not be installed. */
export const SDK_MODULE = '@aws-sdk/client-s3';
export const PRESIGNER_MODULE = '@aws-sdk/s3-request-presigner';

const COMMANDS: ReadonlyArray<keyof S3Sdk> = [
  'HeadBucketCommand', 'PutObjectCommand', 'GetObjectCommand', 'HeadObjectCommand', 'DeleteObjectCommand', 'DeleteObjectsCommand', 'ListObjectsV2Command',
  'CreateMultipartUploadCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand', 'AbortMultipartUploadCommand', 'ListMultipartUploadsCommand',
];

/** The one-line error of a module that is not installed, naming what to install. */
export function missingModule(name: string, err: unknown, why: string): WharfError {
  const missing = (err as NodeJS.ErrnoException | null)?.code === 'ERR_MODULE_NOT_FOUND';
  return new WharfError('INVALID_OPTION', `${why} needs the ${name} package: npm install ${name}${missing ? '' : ` (${errorMessage(err)})`}`, 500, { cause: err });
}

/** `import('@aws-sdk/client-s3')`, or the error naming what to install. */
export async function loadSdk(from: string = SDK_MODULE): Promise<S3Sdk & Record<string, unknown>> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(from) as Record<string, unknown>;
  } catch (err) {
    throw missingModule(SDK_MODULE, err, 'S3 storage');
  }
  for (const c of COMMANDS) if (typeof mod[c] !== 'function') throw missingModule(SDK_MODULE, new Error(`no ${c} export`), 'S3 storage');
  return mod as unknown as S3Sdk & Record<string, unknown>;
}

/** `getSignedUrl` of `@aws-sdk/s3-request-presigner`, or the error naming what to install. */
export async function loadPresigner(from: string = PRESIGNER_MODULE): Promise<Presign> {
  try {
    const mod = await import(from) as { getSignedUrl?: unknown };
    if (typeof mod.getSignedUrl !== 'function') throw new Error('no getSignedUrl export');
    return mod.getSignedUrl as Presign;
  } catch (err) {
    throw missingModule(PRESIGNER_MODULE, err, 'presigned downloads (presign)');
  }
}

/** One object of a listing. */
export interface Listed {
  key: string;
  size: number;
  lastModified: number;
}

/** One page of a listing: objects, "directories" (with a delimiter), and where the next page starts. */
export interface ListPage {
  objects: Listed[];
  prefixes: string[];
  next: string | undefined;
}

/** An unfinished multipart upload. */
export interface Unfinished {
  key: string;
  uploadId: string;
  initiated: number;
}

/** The calls the adapter makes on one bucket, each failure mapped to a `WharfError` (s3-errors.ts). */
export interface S3Io {
  readonly client: S3ClientLike;
  readonly bucket: string;
  /** The SDK, loaded. */
  sdk(): Promise<S3Sdk>;
  headBucket(): Promise<void>;
  put(key: string, body: Buffer | string, contentType?: string): Promise<string>;
  /**
   * The object's text (at most `maxBytes`) and ETag; undefined when there is none; `NOT_MODIFIED`
   * when its ETag is still `ifNoneMatch` (S3's 304: no body sent).
   */
  getText(key: string, maxBytes: number, ifNoneMatch?: string): Promise<{ text: string; etag: string } | undefined | typeof NOT_MODIFIED>;
  /** Bytes `start`..`end` of `key` as a stream (it must be the object of ETag `etag`). */
  getRange(key: string, start: number, end: number, etag: string, signal: AbortSignal): Promise<Readable>;
  /** The object's ETag. */
  headEtag(key: string): Promise<string>;
  del(key: string): Promise<void>;
  /** Deletes `keys`, 1,000 per request. */
  delMany(keys: string[]): Promise<void>;
  list(prefix: string, options?: { delimiter?: string; token?: string | undefined; max?: number }): Promise<ListPage>;
  createMultipart(key: string, contentType: string): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<string>;
  completeMultipart(key: string, uploadId: string, parts: Array<{ ETag: string; PartNumber: number }>): Promise<string>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
  listMultipart(prefix: string, marker?: { key: string; uploadId: string }): Promise<{ uploads: Unfinished[]; next: { key: string; uploadId: string } | undefined }>;
}

const DELETE_BATCH = 1000;

/** The `S3Io` of `bucket` through `client`; the SDK is loaded on first use (its failure is each call's). */
export function createS3Io(client: S3ClientLike, bucket: string, load: () => Promise<S3Sdk> = loadSdk): S3Io {
  let loading: Promise<S3Sdk> | undefined;
  const sdk = (): Promise<S3Sdk> => {
    loading ??= load().catch((err: unknown) => {
      loading = undefined;
      throw err;
    });
    return loading;
  };
  /** Sends the command `name` with `input` (the bucket added); failures mapped, `what` naming the work. */
  async function send<T>(name: keyof S3Sdk, input: Record<string, unknown>, what: string, signal?: AbortSignal): Promise<T> {
    const Command = (await sdk())[name];
    try {
      return await client.send(new Command({ Bucket: bucket, ...input }), signal === undefined ? undefined : { abortSignal: signal }) as T;
    } catch (err) {
      throw s3Error(err, what);
    }
  }

  return {
    client,
    bucket,
    sdk,
    async headBucket() {
      const Command = (await sdk()).HeadBucketCommand;
      // Raw: start() words its own refusal (startError).
      await client.send(new Command({ Bucket: bucket }));
    },
    async put(key, body, contentType) {
      const out = await send<{ ETag?: string }>('PutObjectCommand', { Key: key, Body: body, ContentLength: Buffer.byteLength(body), ...(contentType ? { ContentType: contentType } : {}) }, 'storing a file');
      return out.ETag ?? '';
    },
    async getText(key, maxBytes, ifNoneMatch) {
      let out: { Body?: Readable; ETag?: string };
      try {
        out = await send('GetObjectCommand', { Key: key, ...(ifNoneMatch ? { IfNoneMatch: ifNoneMatch } : {}) }, 'reading an upload');
      } catch (err) {
        if ((err as WharfError).code === 'NOT_FOUND') return undefined;
        if (statusOf((err as WharfError).cause) === 304) return NOT_MODIFIED;
        throw err;
      }
      const chunks: Buffer[] = [];
      let n = 0;
      try {
        for await (const c of out.Body as AsyncIterable<Buffer>) {
          n += c.length;
          if (n > maxBytes) throw new WharfError('STORAGE_ERROR', `S3 object ${key} is larger than ${maxBytes} bytes: not one wharf wrote`, 500);
          chunks.push(c);
        }
      } catch (err) {
        (out.Body as Readable | undefined)?.destroy?.();
        throw s3Error(err, 'reading an upload');
      }
      return { text: Buffer.concat(chunks).toString('utf8'), etag: out.ETag ?? '' };
    },
    async getRange(key, start, end, etag, signal) {
      const out = await send<{ Body?: Readable }>('GetObjectCommand', { Key: key, Range: `bytes=${start}-${end}`, ...(etag === '' ? {} : { IfMatch: etag }) }, 'reading an upload', signal);
      return out.Body as Readable;
    },
    async headEtag(key) {
      return (await send<{ ETag?: string }>('HeadObjectCommand', { Key: key }, 'storing a file')).ETag ?? '';
    },
    async del(key) {
      await send('DeleteObjectCommand', { Key: key }, 'removing an upload');
    },
    async delMany(keys) {
      for (let i = 0; i < keys.length; i += DELETE_BATCH) {
        const batch = keys.slice(i, i + DELETE_BATCH);
        const out = await send<{ Errors?: Array<{ Key?: string; Code?: string }> }>('DeleteObjectsCommand', { Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }, 'removing an upload');
        const failed = (out.Errors ?? []).filter((e) => !isMissing({ name: e.Code }));
        if (failed.length > 0) throw s3Error({ name: failed[0]!.Code ?? 'DeleteObjects' }, 'removing an upload');
      }
    },
    async list(prefix, options = {}) {
      const out = await send<{ Contents?: Array<{ Key?: string; Size?: number; LastModified?: Date }>; CommonPrefixes?: Array<{ Prefix?: string }>; IsTruncated?: boolean; NextContinuationToken?: string }>('ListObjectsV2Command', {
        Prefix: prefix,
        ...(options.delimiter ? { Delimiter: options.delimiter } : {}),
        ...(options.token ? { ContinuationToken: options.token } : {}),
        ...(options.max ? { MaxKeys: options.max } : {}),
      }, 'listing uploads');
      return {
        objects: (out.Contents ?? []).map((o) => ({ key: o.Key ?? '', size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 })),
        prefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix ?? ''),
        next: out.IsTruncated ? out.NextContinuationToken : undefined,
      };
    },
    async createMultipart(key, contentType) {
      const out = await send<{ UploadId?: string }>('CreateMultipartUploadCommand', { Key: key, ContentType: contentType }, 'storing a file');
      if (!out.UploadId) throw new WharfError('STORAGE_ERROR', 'S3 error (storing a file: no UploadId)', 500);
      return out.UploadId;
    },
    async uploadPart(key, uploadId, partNumber, body) {
      const out = await send<{ ETag?: string }>('UploadPartCommand', { Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }, 'storing a file');
      return out.ETag ?? '';
    },
    async completeMultipart(key, uploadId, parts) {
      const out = await send<{ ETag?: string }>('CompleteMultipartUploadCommand', { Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }, 'storing a file');
      // Some stores (Ceph's radosgw) leave the ETag out of this answer: asked for, then.
      return out.ETag || (await this.headEtag(key));
    },
    async abortMultipart(key, uploadId) {
      try {
        await send('AbortMultipartUploadCommand', { Key: key, UploadId: uploadId }, 'aborting an upload');
      } catch (err) {
        if ((err as WharfError).code !== 'NOT_FOUND') throw err;
      }
    },
    async listMultipart(prefix, marker) {
      const out = await send<{ Uploads?: Array<{ Key?: string; UploadId?: string; Initiated?: Date }>; IsTruncated?: boolean; NextKeyMarker?: string; NextUploadIdMarker?: string }>('ListMultipartUploadsCommand', {
        Prefix: prefix,
        ...(marker ? { KeyMarker: marker.key, UploadIdMarker: marker.uploadId } : {}),
      }, 'listing unfinished uploads');
      return {
        uploads: (out.Uploads ?? []).map((u) => ({ key: u.Key ?? '', uploadId: u.UploadId ?? '', initiated: u.Initiated?.getTime() ?? 0 })),
        next: out.IsTruncated && out.NextKeyMarker ? { key: out.NextKeyMarker, uploadId: out.NextUploadIdMarker ?? '' } : undefined,
      };
    },
  };
}
