/**
 * A streaming `multipart/form-data` parser (RFC 7578 on RFC 2046 §5.1), written for one job: take a
 * request body in chunks of any size, split anywhere, and hand out its parts with their bytes as
 * zero-copy slices of the input, at the speed of a skip search and in bounded memory.
 *
 * Errors are `WharfError`s with these stable codes (status in brackets):
 * - `MULTIPART_NO_BOUNDARY` [400]: the Content-Type is not `multipart/form-data`, or its `boundary`
 *   is missing, repeated, or not 1–70 characters of RFC 2046's `bchars`.
 * - `MULTIPART_UNEXPECTED_END` [400]: the body (or its source) ended before the closing delimiter:
 *   in the preamble, in a delimiter line, in a header block or in a part's data.
 * - `MULTIPART_MALFORMED_DELIMITER` [400]: a delimiter followed by something other than `--`,
 *   transport padding and CRLF (RFC 2046 forbids the boundary at the start of any other line).
 * - `MULTIPART_MALFORMED_HEADER` [400]: a header line that is folded (starts with a space or tab),
 *   has no colon or an empty or invalid name, holds a control character or a bare CR/LF; a repeated
 *   `Content-Disposition`/`Content-Type`; a `Content-Disposition` that cannot be parsed or repeats a
 *   parameter; a `filename*` that cannot be decoded when there is no `filename` to fall back to.
 * - `MULTIPART_HEADER_TOO_LARGE` [413]: a part's delimiter padding plus header block over `headerSize`.
 * - `MULTIPART_NO_DISPOSITION` [400]: a part without `Content-Disposition: form-data`.
 * - `MULTIPART_NO_NAME` [400]: a part whose `name` parameter is missing or empty.
 * - `LIMIT_PARTS`, `LIMIT_FILES`, `LIMIT_FIELDS` [413]: raised when the headers of the first part
 *   over the count are complete; `LIMIT_FILE_SIZE`, `LIMIT_FIELD_SIZE` [413]: raised as soon as a
 *   part's data passes the limit, before the rest of it is read.
 * A failure of the source itself rejects with the source's error if it is a `WharfError`, else with
 * `MULTIPART_UNEXPECTED_END` carrying it as `cause`; a source yielding something other than bytes
 * rejects with `INTERNAL` [500]. `MULTIPART_ABORTED` only ever reaches a pending `text()` when its
 * consumer ended the iteration early.
 */
import { WharfError } from '../common/errors.js';
import { resolveLimits, type Limits } from '../common/limits.js';
import { boundaryOf } from './params.js';
import { FormPart, type Part, type PartHost } from './part.js';
import { Scanner, type ScanEvents } from './scanner.js';
import { IDLE, readSource, sourceError, unexpectedEnd, type SourceEvents, type SourceReader } from './source.js';

export { collectPart, heldHead, sinkPart, type Part, type PartSink } from './part.js';

export type MultipartLimits = Pick<Limits, 'fileSize' | 'files' | 'fields' | 'parts' | 'fieldSize' | 'headerSize'>;

export interface ParseOptions {
  /** The request's `Content-Type` header (`multipart/form-data; boundary=…`). */
  contentType: string | undefined;
  limits?: Partial<MultipartLimits>;
  /**
   * Stops the parse from outside (a request limit, a timeout, a shutdown): the iteration rejects
   * with the signal's `reason` when it is a `WharfError`, else with `MULTIPART_UNEXPECTED_END`
   * carrying it as `cause`, exactly as when the source fails.
   */
  signal?: AbortSignal;
  /**
   * What wharf's own routes pass instead of `signal`: their body watch (lib/http/body-watch.ts),
   * which stops the parse the same way. An `AbortController` per request made V8 run a full
   * mark-compact every 2,000-3,000 image-stream frames of 50 KiB (none without it).
   */
  stopper?: Stopper;
}

/** Calls its one listener at most once, at once if it has stopped already. */
export interface Stopper {
  whenFailed(listener: (reason: WharfError) => void): void;
}

/**
 * Parses `source` (any `AsyncIterable<Buffer>`; an `IncomingMessage` is one) into its parts, one
 * per `next()`. Nothing is read before the first `next()`.
 *
 * - A part's bytes go where its consumer first asks for them: `body`, a `Readable` of slices of the
 *   source's chunks (so a source must not reuse a Buffer it has yielded), or `text()`. Until the
 *   consumer has asked, and while a body's buffer is full, the parser reads no more of the source.
 * - Asking for the next part drops the bytes of a part nobody touched and resumes (drains) a body
 *   nobody started reading; a body being read (piped, iterated, paused by a pipe) keeps getting
 *   its bytes. Of several `next()` calls made at once, each moves past the part before it.
 * - On an error the iteration rejects, and a body still open is destroyed with the same error (a
 *   pending `text()` rejects with it), so a consumer piping it somewhere sees it; if the body has no
 *   `error` listener one is added first, so an unwatched body never crashes the process. The source
 *   is left as it is (a `Readable` is paused, never destroyed), so a server can still answer.
 * - `return()` (a `break` out of `for await`) stops parsing, destroys a body still open and rejects
 *   a pending `text()` with `MULTIPART_ABORTED`.
 * - The iteration ends once the closing delimiter was seen and the source has ended; the epilogue
 *   is read and dropped.
 *
 * Invalid `limits` throw `INVALID_OPTION` at once (a programming error); everything about the input,
 * the Content-Type included, rejects the iteration.
 */
export function parseMultipart(source: AsyncIterable<Buffer>, options: ParseOptions): AsyncIterableIterator<Part> {
  const limits = resolveLimits(options.limits);
  const parser = new Parser(source, options.contentType, limits, options.signal, options.stopper);
  const iterator: AsyncIterableIterator<Part> = {
    next: () => parser.next(),
    return: () => parser.abort(),
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

interface Waiter {
  resolve: (r: IteratorResult<Part>) => void;
  reject: (err: unknown) => void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * One parse: the source's chunks go through the scanner, whose parts go to the consumers that
 * `next()` hands them to, counted against the limits. The parser waits on one part at a time
 * (`waitFor`), and goes on when that part's consumer can take bytes again (`wake`).
 */
class Parser implements ScanEvents, SourceEvents, PartHost {
  private readonly source: AsyncIterable<Buffer>;
  private readonly contentType: string | undefined;
  private readonly limits: Limits;
  private scanner: Scanner | null = null;
  private reader: SourceReader = IDLE;

  private parts = 0;
  private files = 0;
  private fields = 0;
  private size = 0;
  private maxSize = Infinity;
  private isFile = false;

  // The part whose bytes are being read (null in the preamble and between parts).
  private current: FormPart | null = null;
  // The part the parser waits on: not yet asked for, undecided, or with a full stream buffer.
  private waitFor: FormPart | null = null;
  private ready: FormPart | null = null;
  private delivered: FormPart | null = null;
  private readonly waiters: Waiter[] = [];

  // The chunk the scanner is in, while it waits on a part.
  private chunk: Buffer | null = null;
  private pos = 0;
  private running = false;
  private started = false;
  private stopped = false;
  private finished = false;
  private error: WharfError | null = null;
  private errorDelivered = false;

  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.fail(sourceError(this.signal?.reason));
  private readonly stopper: Stopper | undefined;

  constructor(source: AsyncIterable<Buffer>, contentType: string | undefined, limits: Limits, signal: AbortSignal | undefined, stopper: Stopper | undefined) {
    this.source = source;
    this.contentType = contentType;
    this.limits = limits;
    this.signal = signal;
    this.stopper = stopper;
  }

  next(): Promise<IteratorResult<Part>> {
    if (!this.started) this.start();
    const previous = this.delivered;
    // Moving on drops what nobody started reading, or the parser could never reach the next part.
    if (previous !== null && previous.leave()) this.wake(previous);
    // After the above: dropping the last part runs the parser, and what it runs into is this call's answer.
    if (this.error !== null && !this.errorDelivered) {
      this.errorDelivered = true;
      return Promise.reject(this.error);
    }
    const part = this.ready;
    if (part !== null) {
      // The parser keeps waiting on it (see `waitFor`) until its consumer chooses how to read it.
      this.ready = null;
      this.delivered = part;
      return Promise.resolve({ done: false, value: part });
    }
    if (this.stopped || this.finished) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  abort(): Promise<IteratorResult<Part>> {
    if (!this.stopped && !this.finished) {
      this.stop();
      const part = this.current;
      this.current = null;
      this.ready = null;
      if (part !== null) part.fail(new WharfError('MULTIPART_ABORTED', 'the parts were abandoned before this one was read', 400), false);
    }
    this.flushWaiters();
    return Promise.resolve(DONE);
  }

  /** `part`'s consumer can take bytes (again): if the parser waits on it, it goes on. */
  wake(part: FormPart): void {
    // A part still undecided (or held) keeps the parser waiting, whoever calls.
    if (this.waitFor !== part || part.undecided) return;
    this.waitFor = null;
    this.resume();
  }

  private start(): void {
    this.started = true;
    const signal = this.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.onAbort();
        return;
      }
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    // A stopper that has stopped already fails the parse at once; `fail` ignores a later call.
    this.stopper?.whenFailed((reason) => this.fail(reason));
    if (this.stopped) return;
    let boundary: string;
    try {
      boundary = boundaryOf(this.contentType);
    } catch (err) {
      this.fail(err as WharfError);
      return;
    }
    this.scanner = new Scanner(boundary, this.limits.headerSize, this);
    this.reader = readSource(this.source, this);
  }

  /** Takes one chunk; false when the parser has to wait for a consumer before it can take the next. */
  feed(input: unknown): boolean {
    if (this.stopped) return false;
    let chunk: Buffer;
    if (Buffer.isBuffer(input)) chunk = input;
    else if (input instanceof Uint8Array) chunk = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    else {
      this.fail(new WharfError('INTERNAL', 'the multipart source yielded something other than bytes', 500));
      return false;
    }
    this.chunk = chunk;
    this.pos = 0;
    return this.run();
  }

  /** Called when a consumer made room; continues the chunk at hand, then asks for more input. */
  private resume(): void {
    if (this.running || this.stopped || !this.started) return;
    if (this.run()) this.reader.more();
    else if (!this.stopped) this.reader.hold();
  }

  /** Scans the chunk at hand as far as the consumers allow; true once it is all consumed. */
  private run(): boolean {
    const chunk = this.chunk;
    const scanner = this.scanner;
    if (chunk === null || scanner === null) return true;
    this.running = true;
    let pos = this.pos;
    const n = chunk.length;
    while (pos < n && !this.stopped && this.waitFor === null) pos = scanner.step(chunk, pos);
    this.pos = pos;
    this.running = false;
    if (this.stopped || this.waitFor !== null) return false;
    this.chunk = null;
    return true;
  }

  /** The limits, then the part handed out (or kept ready for the next `next()`); `cd` null when read by `Scanner#browserDisposition`. */
  part(name: string, filename: string | undefined, cd: string | null, type: string | undefined, others: string[] | null): void {
    const limits = this.limits;
    if (++this.parts > limits.parts) {
      this.fail(new WharfError('LIMIT_PARTS', `more than ${limits.parts} parts`, 413));
      return;
    }
    const isFile = filename !== undefined;
    if (isFile ? ++this.files > limits.files : ++this.fields > limits.fields) {
      this.fail(
        isFile
          ? new WharfError('LIMIT_FILES', `more than ${limits.files} files`, 413)
          : new WharfError('LIMIT_FIELDS', `more than ${limits.fields} fields`, 413),
      );
      return;
    }
    this.isFile = isFile;
    this.maxSize = isFile ? limits.fileSize : limits.fieldSize;
    this.size = 0;
    const part = new FormPart(this, name, filename, type || (isFile ? 'application/octet-stream' : 'text/plain'), cd, type, others);
    this.current = part;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.delivered = part;
      // A next() already waiting behind this one has moved past this part before anyone saw it.
      if (this.waiters.length > 0) part.leave();
      waiter.resolve({ done: false, value: part });
    } else {
      this.ready = part;
    }
    // Its data waits until its consumer has chosen where it goes.
    if (part.undecided) this.waitFor = part;
  }

  data(c: Buffer, from: number, to: number): boolean {
    this.size += to - from;
    if (this.size > this.maxSize) {
      this.fail(
        this.isFile
          ? new WharfError('LIMIT_FILE_SIZE', `a file is larger than the limit of ${this.maxSize} bytes`, 413)
          : new WharfError('LIMIT_FIELD_SIZE', `a field is larger than the limit of ${this.maxSize} bytes`, 413),
      );
      return false;
    }
    const part = this.current;
    if (part !== null && !part.push(c, from, to, this.size)) this.waitFor = part;
    return true;
  }

  end(): void {
    const part = this.current;
    if (part === null) return;
    this.current = null;
    if (this.waitFor === part) this.waitFor = null;
    part.end();
  }

  /** The source ended: the parse is complete if the closing delimiter was read. */
  endOfInput(): void {
    if (this.stopped) return;
    const scanner = this.scanner;
    if (scanner !== null && scanner.complete) {
      this.finished = true;
      this.signal?.removeEventListener('abort', this.onAbort);
      this.reader.detach();
      this.flushWaiters();
      return;
    }
    this.fail(unexpectedEnd(`the body ended ${scanner?.where() ?? 'before the first boundary'}, without the closing boundary`));
  }

  private stop(): void {
    this.stopped = true;
    this.chunk = null;
    this.waitFor = null;
    this.signal?.removeEventListener('abort', this.onAbort);
    if (this.started) this.reader.detach();
  }

  fail(err: WharfError): void {
    if (this.stopped) return;
    this.error = err;
    this.stop();
    const part = this.current;
    this.current = null;
    this.ready = null;
    if (part !== null) part.fail(err, true);
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.errorDelivered = true;
      waiter.reject(err);
    }
    this.flushWaiters();
  }

  private flushWaiters(): void {
    for (const w of this.waiters.splice(0)) w.resolve(DONE);
  }
}
