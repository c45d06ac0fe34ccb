/**
 * Reads a multipart body's source (any `AsyncIterable<Buffer>`; a `Readable`, `IncomingMessage`
 * included, read its own cheaper way) into the parser one chunk at a time, with backpressure: a
 * chunk the parser cannot finish (its consumer is not ready) stops the reading until `more()`.
 */
import { Readable } from 'node:stream';
import { WharfError, errorMessage } from '../common/errors.js';

export interface SourceEvents {
  /** Takes one chunk (what the source yielded, unchecked); false while it holds on to it: then nothing more comes until `more()`. */
  feed(input: unknown): boolean;
  /** The source ended; every chunk it yielded was fed. */
  endOfInput(): void;
  /** The source failed or was closed early. */
  fail(err: WharfError): void;
}

export interface SourceReader {
  /** The parser is done with the chunk it held: the next one, or the source's end, comes when there is one. */
  more(): void;
  /** The parser, resumed, still cannot take more: stop reading (a `Readable` is paused). */
  hold(): void;
  /** Stop for good (the parse finished or failed): a `Readable` is left paused, an iterator is told to return. */
  detach(): void;
}

function noop(): void {}

/** What reads nothing: the parser's reader until it starts. */
export const IDLE: SourceReader = { more: noop, hold: noop, detach: noop };

export function readSource(src: AsyncIterable<Buffer>, events: SourceEvents): SourceReader {
  return src instanceof Readable ? readReadable(src, events) : readIterable(src, events);
}

export function unexpectedEnd(message: string, cause?: unknown): WharfError {
  return new WharfError('MULTIPART_UNEXPECTED_END', message, 400, cause === undefined ? undefined : { cause });
}

/** What a failure of the source (or the parse's abort signal) rejects the parse with. */
export function sourceError(err: unknown): WharfError {
  if (err instanceof WharfError) return err;
  return unexpectedEnd(`the request body failed: ${errorMessage(err)}`, err);
}

/**
 * A `Readable` is read through 'data' events and `pause()`: chunks arrive as they were received
 * (its async iterator may concatenate them) with no promise per chunk, and on an error it is left
 * paused rather than destroyed, so an HTTP server can still answer. Chunks that arrive while the
 * parser holds one (a 'data' event already on its way when it paused) wait in `pending`.
 */
function readReadable(src: Readable, events: SourceEvents): SourceReader {
  if (src.readableEnded) {
    events.endOfInput();
    return IDLE;
  }
  if (src.destroyed) {
    events.fail(unexpectedEnd('the request body was closed before it started'));
    return IDLE;
  }
  const pending: Buffer[] = [];
  let busy = false;
  let paused = false;
  let ended = false;
  let detached = false;
  const pause = (): void => {
    paused = true;
    src.pause();
  };
  const onData = (chunk: Buffer): void => {
    if (busy) {
      pending.push(chunk);
      return;
    }
    busy = !events.feed(chunk);
    if (busy && !detached) pause();
  };
  const onEnd = (): void => {
    ended = true;
    if (!busy) events.endOfInput();
  };
  const onError = (err: unknown): void => events.fail(sourceError(err));
  const onClose = (): void => {
    if (!ended) events.fail(unexpectedEnd('the request body was closed before its end'));
  };
  src.on('data', onData);
  src.on('end', onEnd);
  src.on('error', onError);
  src.on('close', onClose);
  // A 'data' listener leaves a stream its owner paused (to hold its bytes until now) paused.
  src.resume();
  return {
    more: () => {
      busy = false;
      for (let next = pending.shift(); next !== undefined; next = pending.shift()) {
        if (!events.feed(next)) {
          busy = true;
          if (!detached) pause();
          return;
        }
      }
      if (ended) events.endOfInput();
      else if (paused) {
        paused = false;
        src.resume();
      }
    },
    hold: pause,
    detach: () => {
      detached = true;
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      src.off('close', onClose);
      src.pause();
    },
  };
}

/** Any other async iterable is pulled one `next()` at a time, each when the parser has finished the chunk before. */
function readIterable(src: AsyncIterable<Buffer>, events: SourceEvents): SourceReader {
  let it: AsyncIterator<Buffer>;
  try {
    it = src[Symbol.asyncIterator]();
  } catch (err) {
    events.fail(sourceError(err));
    return IDLE;
  }
  let done = false;
  const onNext = (r: IteratorResult<Buffer>): void => {
    if (done) return;
    if (r.done === true) {
      done = true;
      events.endOfInput();
    } else if (events.feed(r.value)) {
      pull();
    }
  };
  const onError = (err: unknown): void => {
    if (!done) events.fail(sourceError(err));
  };
  const pull = (): void => {
    it.next().then(onNext, onError);
  };
  pull();
  return {
    more: () => {
      if (done) events.endOfInput();
      else pull();
    },
    hold: noop,
    detach: () => {
      if (done) return;
      done = true;
      try {
        Promise.resolve(it.return?.()).then(noop, noop);
      } catch {
        // A source that cannot even be told to stop has nothing left for us to release.
      }
    },
  };
}
