// A real S3 server for the tests: Ceph's RADOS Gateway on a throw-away cluster
// (test/helpers/radosgw-cluster.ts). Starting Ceph takes seconds, so a test FILE shares one
// cluster: started by the first `radosgw()`, stopped by node:test's top-level `after` when the file's
// tests are done. Tests stay apart by bucket: `bucket(t)` is a fresh one, emptied and removed after.
//
// Without the Ceph packages the tests that need them skip locally, saying why, and fail under CI
// (CI=true), where .ci/run installs them:
//
//   test('…', { skip: radosgwSkip() }, async (t) => { const rgw = await radosgw(); … });
import { after } from 'node:test';
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { defer } from './defer.js';
import { CEPH_INSTALL, radosgwAvailable, startRadosgw, type RadosgwCluster } from './radosgw-cluster.js';

export { radosgwAvailable } from './radosgw-cluster.js';

interface TestContext {
  after(fn: () => Promise<void>): void;
}

export interface Radosgw {
  /** `http://127.0.0.1:<port>`, path-style. */
  endpoint: string;
  /** 'us-east-1' (any region does: radosgw ignores it). */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * A new client: `forcePathStyle`, `requestChecksumCalculation: 'WHEN_REQUIRED'` (this radosgw
   * refuses aws-chunked stream uploads), these keys. Destroyed when the file's cluster stops.
   */
  client(): S3Client;
  /** A fresh bucket with a unique name, emptied (objects and unfinished multipart uploads) and removed when `t` ends. */
  bucket(t: TestContext): Promise<string>;
  /** Stops only radosgw, the S3 endpoint (the cluster stays): for "S3 unreachable" tests. */
  stopGateway(): Promise<void>;
  /** Starts it again on the same port; resolves once it answers. */
  startGateway(): Promise<void>;
}

let cluster: Promise<RadosgwCluster> | undefined;

// Registered while the module loads, so it hangs off the file's root (an `after` called inside a
// test would run when that test ends).
after(async () => {
  const c = await cluster?.catch(() => undefined);
  cluster = undefined;
  await c?.stop();
});

/** The test file's cluster: started on the first call, the same one after. */
export async function radosgw(): Promise<Radosgw> {
  cluster ??= startRadosgw();
  const c = await cluster;
  let admin: S3Client | undefined;
  return {
    endpoint: c.endpoint,
    region: c.region,
    accessKeyId: c.accessKeyId,
    secretAccessKey: c.secretAccessKey,
    client: () => c.client(),
    async bucket(t) {
      admin ??= c.client();
      const s3 = admin;
      const name = `wharf-${randomBytes(6).toString('hex')}`;
      await s3.send(new CreateBucketCommand({ Bucket: name }));
      defer(t, async () => {
        // A test that failed with the gateway stopped must not leave the bucket behind.
        if (!c.gatewayRunning()) await c.startGateway();
        await removeBucket(s3, name);
      });
      return name;
    },
    stopGateway: () => c.stopGateway(),
    startGateway: () => c.startGateway(),
  };
}

/**
 * Why the S3 tests skip here (`{ skip: radosgwSkip() }`), or false when they run: they never skip
 * under CI, where `radosgw()` then fails saying what to install.
 */
export function radosgwSkip(): string | false {
  if (radosgwAvailable() || process.env.CI === 'true') return false;
  return `radosgw is not installed: ${CEPH_INSTALL}`;
}

/** Aborts every unfinished multipart upload, deletes every object, then the bucket. */
export async function removeBucket(s3: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const l = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    for (const u of l.Uploads ?? []) await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
    if (!l.IsTruncated) break;
  }
  for (;;) {
    const l = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (l.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length > 0) await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    if (!l.IsTruncated) break;
  }
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
}
