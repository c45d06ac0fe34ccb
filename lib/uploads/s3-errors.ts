// What an S3 failure means to wharf's clients (docs/protocol.md §8): a missing object is a 404; a
// store that throttles, fails or cannot be reached is a 503 `STORAGE_UNAVAILABLE` with `Retry-After`
// (the SDK has already retried it with back-off, by its own retry strategy); a store that refuses
// wharf is the server's fault, 500 `STORAGE_DENIED`. Nothing of the store's answer but its error
// name reaches the message: no key, no bucket policy text, no credentials.
import { WharfError } from '../common/errors.js';

/** Seconds a client is told to wait before trying again after a 503 of the store. */
export const RETRY_AFTER = 2;

/** What the SDK (v3) puts on the errors it throws: the error's name, `$metadata`, and Node's own `code` for a network failure. */
interface SdkErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

const shape = (err: unknown): SdkErrorShape => (err !== null && typeof err === 'object' ? (err as SdkErrorShape) : {});

/** The HTTP status S3 answered with; undefined when it never answered (a network failure). */
export const statusOf = (err: unknown): number | undefined => shape(err).$metadata?.httpStatusCode;

/** The error's name as S3 or the SDK gave it (`NoSuchKey`, `SlowDown`, `ECONNREFUSED`…). */
export function nameOf(err: unknown): string {
  const e = shape(err);
  const name = e.Code ?? (e.name !== undefined && e.name !== 'Error' ? e.name : undefined) ?? e.code;
  return name ?? 'Error';
}

/** A missing key (or bucket, in a listing): `NoSuchKey`, or a bodiless 404 (HEAD). */
export function isMissing(err: unknown): boolean {
  const name = nameOf(err);
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload' || (statusOf(err) === 404 && name !== 'NoSuchBucket');
}

const DENIED = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AllAccessDisabled', 'AccountProblem']);

/** Refused by the store: wrong or insufficient credentials. */
export function isDenied(err: unknown): boolean {
  return DENIED.has(nameOf(err)) || statusOf(err) === 403;
}

/** The store is away or overloaded (throttled, 5xx, timeout, connection refused or cut): try again later. */
export function isUnavailable(err: unknown): boolean {
  const status = statusOf(err);
  if (status !== undefined && status >= 500) return true;
  if (status === 429 || status === 408) return true;
  const name = nameOf(err);
  if (name === 'SlowDown' || name === 'Throttling' || name === 'ThrottlingException' || name === 'RequestTimeout' || name === 'TimeoutError') return true;
  // No answer at all: the network (Node's errno codes, or the SDK's own names for them).
  return status === undefined && name !== 'AbortError' && !(err instanceof WharfError);
}

/**
 * The `WharfError` of an S3 failure, `what` naming what was being done ("reading an upload"). A
 * `WharfError` is returned as it is.
 */
export function s3Error(err: unknown, what: string): WharfError {
  if (err instanceof WharfError) return err;
  const name = nameOf(err);
  if (isMissing(err)) return new WharfError('NOT_FOUND', 'no such uploaded file', 404, { cause: err });
  if (name === 'NoSuchBucket') return new WharfError('STORAGE_UNAVAILABLE', `the S3 bucket is gone (${what}: NoSuchBucket)`, 503, { cause: err, retryAfter: RETRY_AFTER });
  if (isDenied(err)) return new WharfError('STORAGE_DENIED', `the S3 store refused the server (${what}: ${name})`, 500, { cause: err });
  if (isUnavailable(err)) return new WharfError('STORAGE_UNAVAILABLE', `the S3 store is unavailable (${what}: ${name}); try again`, 503, { cause: err, retryAfter: RETRY_AFTER });
  return new WharfError('STORAGE_ERROR', `S3 error (${what}: ${name})`, 500, { cause: err });
}

/**
 * The one-line reason the store cannot be used at start: a missing bucket, refused credentials,
 * an endpoint that does not answer. `bucket` is named: it is configuration, not a secret.
 */
export function startError(err: unknown, bucket: string): WharfError {
  const name = nameOf(err);
  const status = statusOf(err);
  // HEAD answers have no body: a missing bucket is a bare 404 (`NotFound`) there.
  if (name === 'NoSuchBucket' || status === 404) {
    return new WharfError('STORAGE_DENIED', `S3 bucket ${JSON.stringify(bucket)} does not exist (${name}): create it, or fix --s3-bucket/--s3-endpoint`, 500, { cause: err });
  }
  if (isDenied(err)) {
    return new WharfError('STORAGE_DENIED', `S3 bucket ${JSON.stringify(bucket)} is not writable with these credentials: access denied (${name})`, 500, { cause: err });
  }
  if (isUnavailable(err)) {
    return new WharfError('STORAGE_UNAVAILABLE', `S3 store for bucket ${JSON.stringify(bucket)} is unreachable (${name})`, 503, { cause: err, retryAfter: RETRY_AFTER });
  }
  return new WharfError('STORAGE_ERROR', `S3 bucket ${JSON.stringify(bucket)} cannot be used (${name})`, 500, { cause: err });
}
