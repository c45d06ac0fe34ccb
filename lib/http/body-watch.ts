// The one watcher of a request body being read: byte count against a limit, idle timeout, the
// client going away. Uploads and image-stream frames alike, with one timeout code.
import type { IncomingMessage } from 'node:http';
import { WharfError } from '../common/errors.js';
import { MAX_TIMER } from '../common/limits.js';

/**
 * What a body's reader (the multipart parser, a frame's collector) cannot know about the request
 * body it reads: the byte count against a limit, the idle timeout (time spent waiting for the
 * client, never time the disk makes us wait), and the client going away. `fail()` stops the read
 * through `whenFailed` without destroying the socket, so an answer can still be sent.
 */
export interface BodyWatch {
  /**
   * Calls `listener` once if reading stops early, at once if it has already: the body's one reader
   * (the multipart parser as its `stopper`, a frame's collector) stops there. Not an `AbortSignal`:
   * one per request made V8 run a full mark-compact every 2,000-3,000 image-stream frames.
   */
  whenFailed(listener: (err: WharfError) => void): void;
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
  return new Watcher(req, maxBytes, idleMs, tooLarge);
}

// A class, not a closure over `let`s returning an object of getters: with that shape, made once per
// request, a server publishing 50 KiB image-stream frames ran 30 full mark-compacts in 20,000
// frames (`--trace-gc`), and 1 with this class.
class Watcher implements BodyWatch {
  private readonly req: IncomingMessage;
  private readonly maxBytes: number;
  private readonly idleMs: number;
  private readonly tooLarge: (max: number) => WharfError;
  private failed: ((err: WharfError) => void) | undefined = undefined;
  private received = 0;
  private ended = false;
  private failure: WharfError | undefined = undefined;
  private lastProgress = Date.now();
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(req: IncomingMessage, maxBytes: number, idleMs: number, tooLarge: (max: number) => WharfError) {
    this.req = req;
    this.maxBytes = maxBytes;
    this.idleMs = idleMs;
    this.tooLarge = tooLarge;
    // Paused, so that no byte flows before the reader listens (it resumes the request when it does).
    req.pause();
    req.on('data', this.onData);
    req.on('resume', this.onResume);
    req.on('end', this.onEnd);
    req.on('close', this.onClose);
    req.on('error', this.onError);
    if (idleMs > 0) this.timer = setTimeout(this.check, Math.min(idleMs, MAX_TIMER)).unref();
  }

  get error(): WharfError | undefined {
    return this.failure;
  }

  get complete(): boolean {
    return this.ended;
  }

  whenFailed(listener: (err: WharfError) => void): void {
    if (this.failure !== undefined) listener(this.failure);
    else this.failed = listener;
  }

  fail(err: WharfError): void {
    if (this.failure !== undefined || this.ended) return;
    this.failure = err;
    this.stop();
    this.req.pause();
    this.failed?.(err);
  }

  // Listening before the reader does, this sees each chunk first: one over the limit never reaches it.
  private readonly onData = (chunk: Buffer): void => {
    this.received += chunk.length;
    if (this.received > this.maxBytes) return this.fail(this.tooLarge(this.maxBytes));
    this.lastProgress = Date.now();
  };

  // Reading resumes after the disk made us wait: the client's clock starts again.
  private readonly onResume = (): void => {
    this.lastProgress = Date.now();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.stop();
  };

  private readonly onClose = (): void => {
    if (!this.ended) this.fail(clientGone());
  };

  private readonly onError = (err: Error): void => this.fail(clientGone(err));

  // Fires at most once per idle period; while the request is paused (the disk is the slow side, or
  // the reader has not started) the client is not idle.
  private readonly check = (): void => {
    const req = this.req;
    const idleMs = this.idleMs;
    const quiet = Date.now() - this.lastProgress;
    if (req.isPaused() || quiet < idleMs) {
      this.timer = setTimeout(this.check, Math.min(req.isPaused() ? idleMs : idleMs - quiet, MAX_TIMER)).unref();
      return;
    }
    this.fail(new WharfError('BODY_TIMEOUT', `no body data received for ${idleMs} ms`, 408));
  };

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    const req = this.req;
    req.off('data', this.onData);
    req.off('resume', this.onResume);
    req.off('end', this.onEnd);
    req.off('close', this.onClose);
  }
}
