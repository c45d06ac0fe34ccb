// The request body of an upload as the route watches it beside the multipart parser.
import type { IncomingMessage } from 'node:http';
import { WharfError } from '../common/errors.js';
import { requestTooLarge } from './upload-core.js';

/**
 * What the parser cannot know about the request body it reads: the byte count against
 * `limits.requestSize`, the idle timeout (time spent waiting for the client, never time the disk
 * makes us wait), and the client going away. `fail()` stops the parse through `signal` without
 * destroying the socket, so an answer can still be sent.
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

export function watchBody(req: IncomingMessage, maxBytes: number, idleMs: number): BodyWatch {
  const controller = new AbortController();
  let received = 0;
  let ended = false;
  let error: WharfError | undefined;
  let lastProgress = Date.now();
  let timer: NodeJS.Timeout | undefined;

  // Listening before the parser does, this sees each chunk first: one over the limit never reaches it.
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > maxBytes) return fail(requestTooLarge(maxBytes));
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
    if (!ended) fail(new WharfError('CLIENT_ABORTED', 'the client went away before the upload ended', 400));
  };
  const onError = (err: Error): void => fail(new WharfError('CLIENT_ABORTED', 'the client went away before the upload ended', 400, { cause: err }));
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
  // the parser has not started) the client is not idle.
  const check = (): void => {
    const quiet = Date.now() - lastProgress;
    if (req.isPaused() || quiet < idleMs) {
      timer = setTimeout(check, req.isPaused() ? idleMs : idleMs - quiet).unref();
      return;
    }
    fail(new WharfError('UPLOAD_TIMEOUT', `no upload data received for ${idleMs} ms`, 408));
  };

  // Paused, so that no byte flows before the parser listens (it resumes the request when it does).
  req.pause();
  req.on('data', onData);
  req.on('resume', onResume);
  req.on('end', onEnd);
  req.on('close', onClose);
  req.on('error', onError);
  if (idleMs > 0) timer = setTimeout(check, idleMs).unref();

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
