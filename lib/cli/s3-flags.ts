/**
 * `--s3-bucket` and its companions: uploads kept in an S3-compatible store. The SDK
 * (`@aws-sdk/client-s3`, an optional peer dependency) is loaded only when asked for; credentials come
 * from the SDK's default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, the
 * instance's role…), never from a flag, so they never show in `ps` or in the log.
 */
import { WharfError } from '../common/errors.js';
import { loadSdk, SDK_MODULE, type S3ClientLike } from '../uploads/s3-client.js';
import { s3Storage } from '../uploads/s3-storage.js';
import type { StorageFactory } from '../uploads/storage.js';
import { UsageError, type FlagSpec, type Flags } from './flags.js';

export const S3_FLAGS: FlagSpec[] = [
  { name: 's3-bucket', kind: 'string', env: 'WHARF_S3_BUCKET', value: 'BUCKET', help: `keep uploads in this S3 bucket, not the data dir (needs: npm install ${SDK_MODULE}; credentials from the AWS variables or profile)`, defaultText: 'none: uploads on disk' },
  { name: 's3-endpoint', kind: 'string', env: 'WHARF_S3_ENDPOINT', value: 'URL', help: 'an S3-compatible endpoint (MinIO, Ceph, R2…)', defaultText: "AWS's" },
  { name: 's3-region', kind: 'string', env: 'WHARF_S3_REGION', value: 'REGION', help: 'the bucket\'s region', defaultText: 'AWS_REGION, else us-east-1' },
  { name: 's3-prefix', kind: 'string', env: 'WHARF_S3_PREFIX', value: 'PREFIX', help: 'key prefix of everything wharf stores in the bucket', defaultText: 'none' },
  { name: 's3-force-path-style', kind: 'boolean', env: 'WHARF_S3_FORCE_PATH_STYLE', help: 'address the bucket as ENDPOINT/BUCKET (most self-hosted stores need it)', defaultText: 'off' },
];

/** What the S3 flags say; undefined without `--s3-bucket` (and a usage error for a companion given without it). */
export interface S3Config {
  bucket: string;
  endpoint: string | undefined;
  region: string;
  prefix: string;
  forcePathStyle: boolean;
}

export function s3Config(flags: Flags, env: NodeJS.ProcessEnv): S3Config | undefined {
  const bucket = flags.str('s3-bucket');
  if (bucket === undefined) {
    for (const f of ['s3-endpoint', 's3-region', 's3-prefix']) {
      const given = flags.given(f);
      if (given !== undefined) throw new UsageError(`${given} needs --s3-bucket (or WHARF_S3_BUCKET)`);
    }
    if (flags.bool('s3-force-path-style')) throw new UsageError('--s3-force-path-style needs --s3-bucket (or WHARF_S3_BUCKET)');
    return undefined;
  }
  const endpoint = flags.str('s3-endpoint');
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) throw new UsageError(`--s3-endpoint: expected an http:// or https:// URL, got ${JSON.stringify(endpoint)}`);
  return {
    bucket,
    endpoint,
    region: flags.str('s3-region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    prefix: flags.str('s3-prefix') ?? '',
    forcePathStyle: flags.bool('s3-force-path-style'),
  };
}

/** The S3 client the command uses (destroyed when the server is closed). */
interface CommandS3Client extends S3ClientLike {
  destroy(): void;
}

/** The storage of `config` and its client: the SDK loaded now, or a usage error naming what to install. */
export async function s3Backend(config: S3Config, from = SDK_MODULE): Promise<{ storage: StorageFactory; client: CommandS3Client }> {
  let sdk: Awaited<ReturnType<typeof loadSdk>>;
  try {
    sdk = await loadSdk(from);
  } catch (err) {
    throw new UsageError(`--s3-bucket needs ${(err as WharfError).message.replace(/^S3 storage needs /, '')}`);
  }
  const S3Client = sdk.S3Client as new (options: Record<string, unknown>) => CommandS3Client;
  const client = new S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    forcePathStyle: config.forcePathStyle,
    // Checksums only where S3 requires them: no CRC of every part computed on this CPU, and bodies
    // every S3-compatible store accepts (some refuse the SDK's default aws-chunked uploads).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      // An endpoint that does not answer fails in seconds (a start refused, a 503) instead of hanging
      // on the system's TCP timeout; a socket idle for minutes is a store gone away.
      connectionTimeout: 10_000,
      requestTimeout: 300_000,
      // Uploads keep `partsInFlight` parts of each file on their way: room for many uploads at once
      // (the SDK's default is 50 sockets, and it warns on stderr when requests queue).
      httpAgent: { maxSockets: 512 },
      httpsAgent: { maxSockets: 512 },
    },
  });
  try {
    return { storage: s3Storage({ client, bucket: config.bucket, prefix: config.prefix }), client };
  } catch (err) {
    client.destroy();
    throw new UsageError((err as Error).message.replace(/^s3Storage: bucket/, '--s3-bucket').replace(/^s3Storage: prefix/, '--s3-prefix'));
  }
}

/** Where the banner says uploads go. */
export const s3Where = (config: S3Config): string => `s3://${config.bucket}/${config.prefix}`;
