// The one watcher of a request body being read: byte count against a limit, idle timeout, the
// client going away. Uploads and image-stream frames alike, with one timeout code.
import type { IncomingMessage } from 'node:http';
import { WharfError } from '../common/errors.js';
import { MAX_TIMER } from '../common/limits.js';

/**
 * What a body's reader (the multipart parser, a frame's collector) cannot know about the request
 * body it reads: the byte count against a limit, the idle timeout (time spent waiting for the
 * client, never time the disk makes us wait), and the client going away. `fail()` stops the read
 * through `signal` without destroying the socket, so an answer can still be sent.
 */
export interface BodyWatch {
  /** Aborted, with the `WharfError` as reason, when reading stops early. */
  readonly signal: AbortSignal;
  /** Why reading stopped early, if it did. */
  readonly error: WharfError | undefined;
  /** True once the whole body was received, even if reading failed after that. */
  readonly complete: boolean;
  fail(err: WharfError): void;
}

export const requestTooLarge = (max: number): WharfError => new WharfError('LIMIT_REQUEST_SIZE', `the upload is larger than ${max} bytes`, 413);
const clientGone = (cause?: Error): WharfError =>
  new WharfError('CLIENT_ABORTED', 'the client went away before the body ended', 400, cause === undefined ? undefined : { cause });

/**
 * Watches `req`'s body from now on: more than `maxBytes` fails it with `tooLarge(maxBytes)` (by
 * default 413 `LIMIT_REQUEST_SIZE`), nothing received for `idleMs` (0: never) with 408
 * `BODY_TIMEOUT`. The request is left paused: its reader resumes it when it starts listening.
 */
export function watchBody(req: IncomingMessage, maxBytes: number, idleMs: number, tooLarge: (max: number) => WharfError = requestTooLarge): BodyWatch {
  const controller = new AbortController();
  let received = 0;
  let ended = false;
  let error: WharfError | undefined;
  let lastProgress = Date.now();
  let timer: NodeJS.Timeout | undefined;

  // Listening before the reader does, this sees each chunk first: one over the limit never reaches it.
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > maxBytes) return fail(tooLarge(maxBytes));
    lastProgress = Date.now();
  };
  // Reading resumes after the disk made us wait: the client's clock starts again.
  const onResume = (): void => {
    lastProgress = Date.now();
  };
  const onEnd = (): void => {
    ended = true;
    stop();
  };
  const onClose = (): void => {
    if (!ended) fail(clientGone());
  };
  const onError = (err: Error): void => fail(clientGone(err));
  const stop = (): void => {
    if (timer) clearTimeout(timer);
    req.off('data', onData);
    req.off('resume', onResume);
    req.off('end', onEnd);
    req.off('close', onClose);
  };
  function fail(err: WharfError): void {
    if (error || ended) return;
    error = err;
    stop();
    req.pause();
    controller.abort(err);
  }
  // Fires at most once per idle period; while the request is paused (the disk is the slow side, or
  // the reader has not started) the client is not idle.
  const check = (): void => {
    const quiet = Date.now() - lastProgress;
    if (req.isPaused() || quiet < idleMs) {
      timer = setTimeout(check, Math.min(req.isPaused() ? idleMs : idleMs - quiet, MAX_TIMER)).unref();
      return;
    }
    fail(new WharfError('BODY_TIMEOUT', `no body data received for ${idleMs} ms`, 408));
  };

  // Paused, so that no byte flows before the reader listens (it resumes the request when it does).
  req.pause();
  req.on('data', onData);
  req.on('resume', onResume);
  req.on('end', onEnd);
  req.on('close', onClose);
  req.on('error', onError);
  if (idleMs > 0) timer = setTimeout(check, Math.min(idleMs, MAX_TIMER)).unref();

  return {
    signal: controller.signal,
    get error() {
      return error;
    },
    get complete() {
      return ended;
    },
    fail,
  };
}
