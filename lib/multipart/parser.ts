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
import { Readable } from 'node:stream';
import { WharfError } from '../common/errors.js';
import { resolveLimits, type Limits } from '../common/limits.js';

export type MultipartLimits = Pick<Limits, 'fileSize' | 'files' | 'fields' | 'parts' | 'fieldSize' | 'headerSize'>;

export interface Part {
  /** The `name` parameter of `Content-Disposition: form-data`. */
  name: string;
  /** `filename*` (RFC 5987) when present, else `filename`; `undefined` for a field. May be `''`. */
  filename: string | undefined;
  /** The part's `Content-Type`; `text/plain` for fields and `application/octet-stream` for files when absent. */
  contentType: string;
  /** The part's headers, names lower-cased. */
  headers: Record<string, string>;
  /** The part's bytes, with backpressure: while it is not read, the parser reads no input. */
  body: Readable;
  /**
   * The part's bytes as UTF-8 text, read whole: meant for fields, which `fieldSize` bounds (a file
   * is bounded only by `fileSize`). Called before `body` is touched, it takes the bytes straight
   * from the parser without building a stream; `body` is then an empty stream.
   */
  text(): Promise<string>;
}

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
}

/**
 * Where `sinkPart` delivers a part's bytes: synchronously, as zero-copy slices of the source's
 * chunks (keep them, never change them). None of its methods may throw.
 */
export interface PartSink {
  /** Takes the next bytes; false when it holds enough: the parser then reads nothing more until the function `sinkPart` returned is called. */
  write(chunk: Buffer): boolean;
  /** The part ended; every byte was written. */
  end(): void;
  /** The part will not end: the parse failed or was abandoned (`err` says why). */
  destroy(err: Error): void;
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
  const parser = new Parser(source, options.contentType, limits, options.signal);
  const iterator: AsyncIterableIterator<Part> = {
    next: () => parser.next(),
    return: () => parser.abort(),
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

/**
 * For the upload layer: a file part's bytes gathered whole, as slices of the source's chunks, when
 * it ends within `max` bytes (no stream is built: most of the cost of a small file), or null once
 * it is bigger; then the parser waits until its consumer takes every byte from the first, through
 * `body` or `sinkPart`. Call it before touching `body` or `text()`.
 */
export function collectPart(part: Part, max: number): Promise<Buffer[] | null> {
  if (!(part instanceof FormPart)) return Promise.resolve(null);
  return part.collect(max);
}

/**
 * For the upload layer: the part's bytes handed to `sink` as they are parsed, with no `Readable`,
 * pipe or buffering in between (the sink's `write` is the backpressure). Returns the
 * function that lets the parser go on after `sink.write` returned false; call it later, never from
 * inside `write`. A part whose bytes already went elsewhere (`text()`, dropped) ends the sink at
 * once; a part of another parser, or whose `body` was asked for, is read from its `body`.
 */
export function sinkPart(part: Part, sink: PartSink): () => void {
  if (part instanceof FormPart && part.stream === null) return part.sinkTo(sink);
  const body = part.body;
  if (body.readableEnded) {
    sink.end();
    return noop;
  }
  body.on('data', (chunk: Buffer) => {
    if (!sink.write(chunk)) body.pause();
  });
  body.once('end', () => sink.end());
  body.once('error', (err) => sink.destroy(err));
  return () => body.resume();
}

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const DASH = 45;
const COLON = 58;

const enum State {
  Preamble,
  Delimiter,
  Headers,
  Body,
  Epilogue,
}

const enum After {
  Start,
  Dash,
  Padding,
  Cr,
}

// RFC 9110 §5.6.2 tchar.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

// RFC 2046 §5.1.1 bchars (space is allowed, but not as the last character).
const BCHARS = new Uint8Array(128);
for (const c of "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ") BCHARS[c.charCodeAt(0)] = 1;

const BODY_HIGH_WATER_MARK = 64 * 1024;

function noop(): void {}

interface Waiter {
  resolve: (r: IteratorResult<Part>) => void;
  reject: (err: unknown) => void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** How the consumer takes a part's bytes; the parser waits until it has chosen. */
const enum Use {
  Undecided,
  Stream,
  Text,
  /** Gathered whole while it stays under a size (see `collectPart`); past it, `Held`. */
  Collect,
  /** A collected part that outgrew its size: what it gathered waits for `body` or `sinkPart`. */
  Held,
  /** Handed to a `PartSink` (see `sinkPart`). */
  Sink,
  Drop,
}

/**
 * A part as handed out. Its bytes go where the consumer first asks for them: `body` (a stream,
 * created on first access) or `text()`; a part left untouched when the next one is asked for is
 * dropped without a stream ever being built, which is most of the cost of a small field.
 */
class FormPart implements Part {
  readonly name: string;
  readonly filename: string | undefined;
  readonly contentType: string;
  use = Use.Undecided;
  stream: PartBody | null = null;
  sink: PartSink | null = null;
  ended = false;
  failure: Error | null = null;
  // For `text()`: the first piece as a place in a chunk (most fields fit in one), any more as slices.
  textChunk: Buffer | null = null;
  textFrom = 0;
  textTo = 0;
  textMore: Buffer[] | null = null;
  textResult: Promise<string> | null = null;
  // `text()` or `collectPart()` waiting for the part's end (see `Parser#gather`).
  resolveEnd: (() => void) | null = null;
  rejectEnd: ((err: Error) => void) | null = null;
  collectMax = 0;
  private readonly parser: Parser;
  // The headers as read: the two every part has, then any others as name/value pairs. The record
  // is built on first access; most consumers never ask (and building it costs as much as parsing).
  private readonly disposition: string | null;
  private readonly type: string | undefined;
  private readonly others: string[] | null;
  private record: Record<string, string> | null = null;

  constructor(parser: Parser, name: string, filename: string | undefined, contentType: string, disposition: string | null, type: string | undefined, others: string[] | null) {
    this.parser = parser;
    this.name = name;
    this.filename = filename;
    this.contentType = contentType;
    this.disposition = disposition;
    this.type = type;
    this.others = others;
  }

  get headers(): Record<string, string> {
    if (this.record !== null) return this.record;
    const h = Object.create(null) as Record<string, string>;
    // null: it was exactly the form `browserDisposition` reads, so it is rebuilt byte for byte.
    h['content-disposition'] = this.disposition ?? `form-data; name="${this.name}"${this.filename === undefined ? '' : `; filename="${this.filename}"`}`;
    if (this.type !== undefined) h['content-type'] = this.type;
    const others = this.others;
    if (others !== null) {
      for (let i = 0; i < others.length; i += 2) {
        const name = others[i]!;
        const old = h[name];
        h[name] = old === undefined ? others[i + 1]! : `${old}, ${others[i + 1]!}`;
      }
    }
    return (this.record = h);
  }

  get body(): Readable {
    return this.stream ?? this.parser.openBody(this);
  }

  text(): Promise<string> {
    return (this.textResult ??= this.parser.readText(this));
  }

  collect(max: number): Promise<Buffer[] | null> {
    return this.parser.collect(this, max);
  }

  sinkTo(sink: PartSink): () => void {
    return this.parser.sinkTo(this, sink);
  }
}

/** A part's bytes as a stream. `_read` and `_destroy` are the parser's signals from the consumer. */
class PartBody extends Readable {
  private readonly parser: Parser;
  private readonly part: FormPart;

  constructor(parser: Parser, part: FormPart) {
    super({ highWaterMark: BODY_HIGH_WATER_MARK });
    this.parser = parser;
    this.part = part;
  }

  override _read(): void {
    this.parser.bodyRead(this.part);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.parser.bodyDestroyed(this.part);
    callback(err);
  }
}

/** Destroys `body` with `err`; an `error` listener is added first if there is none, so nobody watching is no crash. */
function destroyWith(body: Readable, err: Error | undefined): void {
  if (err !== undefined && body.listenerCount('error') === 0) body.on('error', noop);
  body.destroy(err);
}

/** What `text()` or `collectPart()` resolves with once the part has ended: null when a collected part outgrew its size. */
function gathered(part: FormPart): string | Buffer[] | null {
  return part.use === Use.Text ? textOf(part) : part.use === Use.Collect ? piecesOf(part) : null;
}

/** The bytes `Use.Collect` gathered, as slices of the source's chunks. */
function piecesOf(part: FormPart): Buffer[] {
  const first = part.textChunk;
  if (first === null) return [];
  part.textChunk = null;
  const pieces = [first.subarray(part.textFrom, part.textTo)];
  if (part.textMore !== null) pieces.push(...part.textMore);
  part.textMore = null;
  return pieces;
}

function textOf(part: FormPart): string {
  const first = part.textChunk;
  if (first === null) return '';
  part.textChunk = null;
  if (part.textMore === null) return utf8Slice(first, part.textFrom, part.textTo);
  const all = Buffer.concat([first.subarray(part.textFrom, part.textTo), ...part.textMore]);
  part.textMore = null;
  return all.toString('utf8');
}

async function streamText(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

class Parser {
  private readonly source: AsyncIterable<Buffer>;
  private readonly contentType: string | undefined;
  private readonly limits: Limits;

  // The delimiter `CRLF--boundary` and its Boyer–Moore–Horspool shift table.
  private delimiter: Buffer = Buffer.alloc(0);
  private readonly shift = new Uint8Array(256);

  private state = State.Preamble;
  private after = After.Start;
  // Bytes at the end of the previous chunk that are a prefix of the delimiter, not yet known to be
  // data; the first `virtual` of them are a CRLF that is never data (see `start` and `startPart`).
  private carry = 0;
  private virtual = 0;

  private headerBytes = 0;
  private line: Buffer | null = null;
  // The header block being read.
  private disposition: string | undefined = undefined;
  // Or what `browserDisposition` read of it.
  private fastName: string | undefined = undefined;
  private fastFilename: string | undefined = undefined;
  private type: string | undefined = undefined;
  private others: string[] | null = null;

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
  private pulled = false;
  private ready: FormPart | null = null;
  private delivered: FormPart | null = null;
  private readonly waiters: Waiter[] = [];

  private chunk: Buffer | null = null;
  private pos = 0;
  private readonly pending: Buffer[] = [];
  private running = false;
  private started = false;
  private inputDone = false;
  private stopped = false;
  private finished = false;
  private error: WharfError | null = null;
  private errorDelivered = false;

  private more: () => void = noop;
  private hold: () => void = noop;
  private detach: () => void = noop;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.fail(sourceError(this.signal!.reason));

  constructor(source: AsyncIterable<Buffer>, contentType: string | undefined, limits: Limits, signal: AbortSignal | undefined) {
    this.source = source;
    this.contentType = contentType;
    this.limits = limits;
    this.signal = signal;
  }

  next(): Promise<IteratorResult<Part>> {
    if (!this.started) this.start();
    const previous = this.delivered;
    if (previous !== null) {
      // Moving on drops what nobody started reading, or the parser could never reach the next part.
      if (previous.use === Use.Undecided || previous.use === Use.Held) {
        previous.use = Use.Drop;
        previous.textChunk = null;
        previous.textMore = null;
        this.wake(previous);
      } else if (previous.stream !== null && previous.stream.readableFlowing === null) {
        previous.stream.resume();
      }
    }
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
      if (part !== null) this.endWith(part, new WharfError('MULTIPART_ABORTED', 'the parts were abandoned before this one was read', 400), false);
    }
    this.flushWaiters();
    return Promise.resolve(DONE);
  }

  openBody(part: FormPart): Readable {
    const body = new PartBody(this, part);
    part.stream = body;
    if (part.failure !== null) destroyWith(body, part.failure);
    else if (part.use === Use.Held) {
      part.use = Use.Stream;
      for (const piece of piecesOf(part)) body.push(piece);
      if (part.ended) body.push(null);
    } else if (part.use === Use.Undecided && !part.ended) {
      // The parser goes on at the stream's first `_read`, when its consumer is ready: bytes pushed
      // before that would only queue up in it.
      part.use = Use.Stream;
    } else {
      // Its bytes went elsewhere (`text()`, or dropped when the next part was asked for).
      body.push(null);
    }
    return body;
  }

  readText(part: FormPart): Promise<string> {
    if (part.stream !== null || part.use === Use.Held) return streamText(part.body);
    return this.gather(part, Use.Text, '') as Promise<string>;
  }

  collect(part: FormPart, max: number): Promise<Buffer[] | null> {
    if (part.stream !== null || part.use === Use.Held) return Promise.resolve(null);
    part.collectMax = max;
    return this.gather(part, Use.Collect, []) as Promise<Buffer[] | null>;
  }

  sinkTo(part: FormPart, sink: PartSink): () => void {
    const resume = (): void => this.bodyRead(part);
    if (part.failure !== null) {
      sink.destroy(part.failure);
      return resume;
    }
    if (part.use === Use.Held) {
      // What was gathered goes out at once (it is in memory already); the last write says whether to go on.
      part.use = Use.Sink;
      part.sink = sink;
      let room = true;
      for (const piece of piecesOf(part)) room = sink.write(piece);
      if (part.ended) sink.end();
      else if (room) this.wake(part);
    } else if (part.use === Use.Undecided && !part.ended) {
      part.use = Use.Sink;
      part.sink = sink;
      this.wake(part);
    } else {
      sink.end();
    }
    return resume;
  }

  /**
   * The part's bytes taken whole as `use` says (`gathered`), once it has ended; `none` when they
   * already went elsewhere. Most parts end in the chunk at hand: then the answer is ready before
   * this returns.
   */
  private gather(part: FormPart, use: Use.Text | Use.Collect, none: string | Buffer[]): Promise<string | Buffer[] | null> {
    if (part.failure !== null) return Promise.reject(part.failure);
    if (part.use !== Use.Undecided || part.ended) return Promise.resolve(none);
    part.use = use;
    this.wake(part);
    if (part.failure !== null) return Promise.reject(part.failure);
    // Ended, or outgrew its size (a collected part, now held for `body` or `sinkPart`).
    if (part.ended || part.use !== use) return Promise.resolve(gathered(part));
    return new Promise((resolve, reject) => {
      part.resolveEnd = () => resolve(gathered(part));
      part.rejectEnd = reject;
    });
  }

  bodyRead(part: FormPart): void {
    if (part !== this.current) return;
    this.pulled = true;
    this.wake(part);
  }

  bodyDestroyed(part: FormPart): void {
    // Its consumer gave up on it: the rest of this part is read and dropped (limits still apply).
    if (part !== this.current || part.use !== Use.Stream) return;
    part.use = Use.Drop;
    this.wake(part);
  }

  private wake(part: FormPart): void {
    if (this.waitFor !== part) return;
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
    let boundary: string;
    try {
      boundary = boundaryOf(this.contentType);
    } catch (err) {
      this.fail(err as WharfError);
      return;
    }
    const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    const last = delimiter.length - 1;
    this.shift.fill(delimiter.length);
    for (let i = 0; i < last; i++) this.shift[delimiter[i]!] = last - i;
    this.delimiter = delimiter;
    // RFC 2046 §5.1.1: the first delimiter may start the body without a CRLF; pretend one came before it.
    this.carry = 2;
    this.virtual = 2;
    if (this.source instanceof Readable) this.attachReadable(this.source);
    else this.attachIterable(this.source);
  }

  /**
   * A `Readable` is read through 'data' events and `pause()`: chunks arrive as they were received
   * (its async iterator may concatenate them) with no promise per chunk, and on an error it is left
   * paused rather than destroyed, so an HTTP server can still answer.
   */
  private attachReadable(src: Readable): void {
    if (src.readableEnded) {
      this.inputDone = true;
      this.endOfInput();
      return;
    }
    if (src.destroyed) {
      this.fail(unexpectedEnd('the request body was closed before it started'));
      return;
    }
    let paused = false;
    const onData = (chunk: Buffer): void => {
      if (this.chunk !== null) {
        this.pending.push(chunk);
        return;
      }
      if (!this.feed(chunk) && !this.stopped) {
        paused = true;
        src.pause();
      }
    };
    const onEnd = (): void => {
      this.inputDone = true;
      if (this.chunk === null && this.pending.length === 0) this.endOfInput();
    };
    const onError = (err: unknown): void => this.fail(sourceError(err));
    const onClose = (): void => {
      if (!this.inputDone) this.fail(unexpectedEnd('the request body was closed before its end'));
    };
    this.more = () => {
      if (paused) {
        paused = false;
        src.resume();
      }
    };
    this.hold = () => {
      paused = true;
      src.pause();
    };
    this.detach = () => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      src.off('close', onClose);
      src.pause();
    };
    src.on('data', onData);
    src.on('end', onEnd);
    src.on('error', onError);
    src.on('close', onClose);
    // A 'data' listener leaves a stream its owner paused (to hold its bytes until now) paused.
    src.resume();
  }

  private attachIterable(src: AsyncIterable<Buffer>): void {
    let it: AsyncIterator<Buffer>;
    try {
      it = src[Symbol.asyncIterator]();
    } catch (err) {
      this.fail(sourceError(err));
      return;
    }
    const onNext = (r: IteratorResult<Buffer>): void => {
      if (this.stopped) return;
      if (r.done === true) {
        this.inputDone = true;
        this.endOfInput();
      } else if (this.feed(r.value)) {
        pull();
      }
    };
    const onError = (err: unknown): void => {
      if (!this.stopped) this.fail(sourceError(err));
    };
    const pull = (): void => {
      it.next().then(onNext, onError);
    };
    this.more = pull;
    this.detach = () => {
      if (this.inputDone) return;
      this.inputDone = true;
      try {
        Promise.resolve(it.return?.()).then(noop, noop);
      } catch {
        // A source that cannot even be told to stop has nothing left for us to release.
      }
    };
    pull();
  }

  /** Takes one chunk; false when the parser has to wait for a consumer before it can take the next. */
  private feed(input: unknown): boolean {
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
    while (this.run()) {
      const next = this.pending.shift();
      if (next !== undefined) {
        this.chunk = next;
        this.pos = 0;
        continue;
      }
      if (this.inputDone) this.endOfInput();
      else this.more();
      return;
    }
    if (!this.stopped) this.hold();
  }

  /** Parses the chunk at hand as far as the consumers allow; true once it is all consumed. */
  private run(): boolean {
    const chunk = this.chunk;
    if (chunk === null) return true;
    this.running = true;
    let pos = this.pos;
    const n = chunk.length;
    while (pos < n && !this.stopped && this.waitFor === null) {
      switch (this.state) {
        case State.Body:
        case State.Preamble:
          pos = this.scanBody(chunk, pos);
          break;
        case State.Delimiter:
          pos = this.scanDelimiter(chunk, pos);
          break;
        case State.Headers:
          pos = this.scanHeaders(chunk, pos);
          break;
        default:
          pos = n;
      }
    }
    this.pos = pos;
    this.running = false;
    if (this.stopped || this.waitFor !== null) return false;
    this.chunk = null;
    return true;
  }

  /**
   * Part data: what precedes the delimiter goes out as one slice of the chunk. A delimiter prefix at
   * the very end of the chunk is held back (as a count: its bytes are the delimiter's) until the
   * next chunk says whether it is one.
   */
  private scanBody(c: Buffer, pos: number): number {
    const part = this.current;
    if (part !== null && (part.use === Use.Undecided || part.use === Use.Held)) {
      this.waitFor = part;
      return pos;
    }
    const n = c.length;
    const d = this.delimiter;
    const dl = d.length;
    if (this.carry > 0) {
      const k = this.carry;
      const need = dl - k;
      const m = n - pos < need ? n - pos : need;
      let j = 0;
      while (j < m && c[pos + j] === d[k + j]) j++;
      if (j === m) {
        if (m === need) {
          this.carry = 0;
          this.virtual = 0;
          this.endPart();
          return pos + need;
        }
        this.carry = k + m;
        return n;
      }
      // Not a delimiter after all: the held bytes were data. The only CR in the delimiter is its
      // first byte, so no delimiter can start inside them.
      const from = this.virtual;
      this.carry = 0;
      this.virtual = 0;
      if (part !== null && k > from) this.data(Buffer.from(d.subarray(from, k)), 0, k - from);
      if (this.stopped) return n;
    }
    const at = indexOfDelimiter(c, pos, d, this.shift);
    if (at !== -1) {
      if (at > pos && part !== null) this.data(c, pos, at);
      if (this.stopped) return n;
      this.endPart();
      return at + dl;
    }
    // A delimiter prefix at the end starts with the last CR in the final dl-1 bytes, or is absent.
    let t = n - dl + 1;
    if (t < pos) t = pos;
    let s = n - 1;
    while (s >= t && c[s] !== CR) s--;
    let end = n;
    if (s >= t) {
      let j = 1;
      while (s + j < n && c[s + j] === d[j]) j++;
      if (s + j === n) end = s;
    }
    if (end > pos && part !== null) this.data(c, pos, end);
    this.carry = n - end;
    return n;
  }

  private data(c: Buffer, from: number, to: number): void {
    this.size += to - from;
    if (this.size > this.maxSize) {
      this.fail(
        this.isFile
          ? new WharfError('LIMIT_FILE_SIZE', `a file is larger than the limit of ${this.maxSize} bytes`, 413)
          : new WharfError('LIMIT_FIELD_SIZE', `a field is larger than the limit of ${this.maxSize} bytes`, 413),
      );
      return;
    }
    const part = this.current!;
    const use = part.use;
    if (use === Use.Sink) {
      this.pulled = false;
      if (!part.sink!.write(from === 0 && to === c.length ? c : c.subarray(from, to)) && !this.pulled && part.use === Use.Sink) this.waitFor = part;
    } else if (use === Use.Stream) {
      this.pulled = false;
      if (!part.stream!.push(from === 0 && to === c.length ? c : c.subarray(from, to)) && !this.pulled && part.use === Use.Stream) this.waitFor = part;
    } else if (use === Use.Text || use === Use.Collect || use === Use.Held) {
      if (use === Use.Collect && this.size > part.collectMax) {
        // Outgrown: what it gathered is held (with this slice) until its consumer says where it goes.
        part.use = Use.Held;
        this.waitFor = part;
        const resolve = part.resolveEnd;
        part.resolveEnd = null;
        part.rejectEnd = null;
        resolve?.();
      }
      if (part.textChunk === null) {
        part.textChunk = c;
        part.textFrom = from;
        part.textTo = to;
      } else {
        (part.textMore ??= []).push(c.subarray(from, to));
      }
    }
  }

  private endPart(): void {
    const part = this.current;
    if (part !== null) {
      this.current = null;
      part.ended = true;
      if (this.waitFor === part) this.waitFor = null;
      if (part.use === Use.Sink) part.sink!.end();
      else if (part.use === Use.Stream) part.stream!.push(null);
      else part.resolveEnd?.();
    }
    this.state = State.Delimiter;
    this.after = After.Start;
    this.headerBytes = 0;
  }

  /** What follows a delimiter: `--` (the close delimiter), or transport padding and CRLF. */
  private scanDelimiter(c: Buffer, pos: number): number {
    const n = c.length;
    while (pos < n) {
      const b = c[pos++]!;
      switch (this.after) {
        case After.Start:
          if (b === DASH) this.after = After.Dash;
          else if (b === CR) this.after = After.Cr;
          else if (b === SP || b === HTAB) this.after = After.Padding;
          else return this.malformedDelimiter(n);
          break;
        case After.Dash:
          if (b !== DASH) return this.malformedDelimiter(n);
          this.state = State.Epilogue;
          return pos;
        case After.Padding:
          if (b === CR) this.after = After.Cr;
          else if (b !== SP && b !== HTAB) return this.malformedDelimiter(n);
          else if (++this.headerBytes > this.limits.headerSize) return this.headerTooLarge(n);
          break;
        default:
          if (b !== LF) return this.malformedDelimiter(n);
          this.state = State.Headers;
          this.line = null;
          this.disposition = undefined;
          this.fastName = undefined;
          this.type = undefined;
          this.others = null;
          return pos;
      }
    }
    return pos;
  }

  private malformedDelimiter(n: number): number {
    this.fail(new WharfError('MULTIPART_MALFORMED_DELIMITER', 'a boundary delimiter is followed by something other than "--" or a line break', 400));
    return n;
  }

  private headerTooLarge(n: number): number {
    this.fail(new WharfError('MULTIPART_HEADER_TOO_LARGE', `a part's header block is larger than the limit of ${this.limits.headerSize} bytes`, 413));
    return n;
  }

  /**
   * Header lines, each checked as soon as its LF arrives. One pass over a line finds its LF and
   * any control character in it; a line split across chunks is copied (it is small) and checked
   * whole once complete.
   */
  private scanHeaders(c: Buffer, pos: number): number {
    const n = c.length;
    while (pos < n) {
      if (this.line === null && this.disposition === undefined && this.fastName === undefined) {
        const end = this.browserDisposition(c, pos);
        if (end > 0) {
          this.headerBytes += end - pos;
          if (this.headerBytes > this.limits.headerSize) return this.headerTooLarge(n);
          pos = end;
          continue;
        }
      }
      // No need to look further than the header block may reach.
      const budget = this.limits.headerSize - this.headerBytes;
      const stop = n - pos > budget ? pos + budget : n;
      let lf = pos;
      let controls = 0;
      for (; lf < stop; lf++) {
        const b = c[lf]!;
        if (b < SP || b === 127) {
          if (b === LF) break;
          if (b !== HTAB) controls++;
        }
      }
      if (lf === stop) {
        if (stop < n) return this.headerTooLarge(n);
        this.headerBytes += n - pos;
        this.line = this.line === null ? Buffer.from(c.subarray(pos)) : Buffer.concat([this.line, c.subarray(pos)]);
        return n;
      }
      this.headerBytes += lf + 1 - pos;
      if (this.headerBytes > this.limits.headerSize) return this.headerTooLarge(n);
      let buf = c;
      let from = pos;
      let to = lf;
      let checked = true;
      if (this.line !== null) {
        buf = Buffer.concat([this.line, c.subarray(pos, lf)]);
        this.line = null;
        from = 0;
        to = buf.length;
        checked = false;
      }
      pos = lf + 1;
      if (to === from || buf[to - 1] !== CR) return this.malformedHeader(n, 'a header line ends in a bare LF');
      to--;
      // The CR before the LF is the one control character a line may have.
      if (checked && controls > 1) return this.malformedHeader(n, 'a header line holds a control character');
      if (to === from) {
        this.startPart();
        return pos;
      }
      if (!this.headerLine(buf, from, to, checked)) return n;
    }
    return pos;
  }

  private malformedHeader(n: number, why: string): number {
    this.fail(new WharfError('MULTIPART_MALFORMED_HEADER', `malformed part header: ${why}`, 400));
    return n;
  }

  /**
   * One `name: value` line, `buf[from, to)` without its CRLF, `checked` when it is known to hold no
   * control character; false (after failing) when it is malformed.
   */
  private headerLine(buf: Buffer, from: number, to: number, checked: boolean): boolean {
    const first = buf[from]!;
    // RFC 9112 §5.2: obsolete line folding; RFC 7578 senders never fold.
    if (first === SP || first === HTAB) return this.badHeader('a header line starts with a space or tab');
    let i: number;
    let known = 0;
    // The two headers every part has are matched in place, without building their names.
    if (to - from > 19 && buf[from + 19] === COLON && equalsLower(buf, from, CONTENT_DISPOSITION)) {
      known = 1;
      i = from + 20;
    } else if (to - from > 12 && buf[from + 12] === COLON && equalsLower(buf, from, CONTENT_TYPE)) {
      known = 2;
      i = from + 13;
    } else {
      // RFC 2046 §5.1.1: the delimiter may not occur inside a part, header block included. `-` is a
      // token character, so `--boundary…` would pass as a header name here while a parser that
      // looks for the delimiter anywhere ends the part: two readers disagreeing on where a file
      // starts is how one gets smuggled past the other.
      const dash = this.delimiter.length - 2;
      if (to - from >= dash && buf.compare(this.delimiter, 2, this.delimiter.length, from, from + dash) === 0) {
        return this.badHeader('a header line starts with the boundary delimiter');
      }
      i = from;
      while (i < to && TCHAR[buf[i]!] === 1) i++;
      if (i === from || i === to || buf[i] !== COLON) return this.badHeader('a header line has no name and colon');
      i++;
    }
    const colon = i - 1;
    while (i < to && (buf[i] === SP || buf[i] === HTAB)) i++;
    let e = to;
    while (e > i && (buf[e - 1] === SP || buf[e - 1] === HTAB)) e--;
    if (!checked) {
      for (let k = from; k < to; k++) {
        const b = buf[k]!;
        if ((b < SP && b !== HTAB) || b === 127) return this.badHeader('a header line holds a control character');
      }
    }
    if (known === 1 && (this.disposition !== undefined || this.fastName !== undefined)) return this.badHeader('the Content-Disposition header is repeated');
    // Browsers send non-ASCII filenames as raw UTF-8 (HTML's multipart/form-data encoding).
    const value = utf8Slice(buf, i, e);
    if (known === 1) {
      this.disposition = value;
    } else if (known === 2) {
      if (this.type !== undefined) return this.badHeader('the Content-Type header is repeated');
      this.type = value;
    } else {
      (this.others ??= []).push(buf.toString('latin1', from, colon).toLowerCase(), value);
    }
    return true;
  }

  /**
   * The Content-Disposition line every browser (and curl, undici, Go, Python's requests) sends,
   * `Content-Disposition: form-data; name="…"` with an optional `; filename="…"`, the quoted values
   * printable ASCII without `%`: read in one pass over its bytes, where the general path scans the
   * line, builds the header's string and parses that — most of the cost of a small field. The index
   * after the line's LF, or -1 for anything else (other case or spacing, more parameters, escapes,
   * non-ASCII, a line the chunk cuts), which the general path then reads to the same result.
   */
  private browserDisposition(c: Buffer, pos: number): number {
    if (!startsWith(c, pos, BROWSER_DISPOSITION)) return -1;
    const nameStart = pos + BROWSER_DISPOSITION.length;
    const nameEnd = quotedEnd(c, nameStart);
    if (nameEnd <= nameStart) return -1;
    let end = nameEnd + 1;
    let filename: string | undefined;
    if (c[end] !== CR) {
      if (!startsWith(c, end, FILENAME)) return -1;
      const fnEnd = quotedEnd(c, end + FILENAME.length);
      if (fnEnd < 0) return -1;
      filename = latin1Slice(c, end + FILENAME.length, fnEnd);
      end = fnEnd + 1;
    }
    if (c[end] !== CR || c[end + 1] !== LF) return -1;
    this.fastName = latin1Slice(c, nameStart, nameEnd);
    this.fastFilename = filename;
    return end + 2;
  }

  private badHeader(why: string): false {
    this.malformedHeader(0, why);
    return false;
  }

  private startPart(): void {
    if (this.fastName !== undefined) {
      this.openPart(this.fastName, this.fastFilename, null);
      return;
    }
    const cd = this.disposition;
    if (cd === undefined) {
      this.fail(new WharfError('MULTIPART_NO_DISPOSITION', 'a part has no Content-Disposition header', 400));
      return;
    }
    if (!parseDisposition(cd)) {
      this.fail(new WharfError('MULTIPART_MALFORMED_HEADER', 'malformed part header: the Content-Disposition cannot be parsed', 400));
      return;
    }
    if (!disposition.formData) {
      this.fail(new WharfError('MULTIPART_NO_DISPOSITION', 'a part\'s Content-Disposition is not "form-data"', 400));
      return;
    }
    let filename = disposition.filename;
    if (disposition.filenameStar !== undefined) {
      const decoded = decodeExtValue(disposition.filenameStar);
      if (decoded !== undefined) filename = decoded;
      else if (filename === undefined) {
        this.fail(new WharfError('MULTIPART_MALFORMED_HEADER', 'malformed part header: filename* cannot be decoded', 400));
        return;
      }
    }
    const name = disposition.name;
    if (name === undefined || name === '') {
      this.fail(new WharfError('MULTIPART_NO_NAME', 'a part has no name', 400));
      return;
    }
    this.openPart(name, filename, cd);
  }

  /** The limits, then the part handed out (or kept ready for the next `next()`); `cd` null when read by `browserDisposition`. */
  private openPart(name: string, filename: string | undefined, cd: string | null): void {
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
    this.state = State.Body;
    // The blank line's CRLF may be the delimiter's own (RFC 2046: `body-part := headers [CRLF
    // *OCTET]`, a part may have no body at all): search from it, but it is never data.
    this.carry = 2;
    this.virtual = 2;
    const type = this.type || (isFile ? 'application/octet-stream' : 'text/plain');
    const part = new FormPart(this, name, filename, type, cd, this.type, this.others);
    this.current = part;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.delivered = part;
      // A next() already waiting behind this one has moved past this part before anyone saw it.
      if (this.waiters.length > 0) part.use = Use.Drop;
      waiter.resolve({ done: false, value: part });
    } else {
      this.ready = part;
      this.waitFor = part;
    }
  }

  private endOfInput(): void {
    if (this.stopped) return;
    if (this.state === State.Epilogue) {
      this.finished = true;
      this.signal?.removeEventListener('abort', this.onAbort);
      this.detach();
      this.flushWaiters();
      return;
    }
    const where =
      this.state === State.Body
        ? "in a part's data"
        : this.state === State.Headers
          ? "in a part's headers"
          : this.state === State.Delimiter
            ? 'in a delimiter line'
            : 'before the first boundary';
    this.fail(unexpectedEnd(`the body ended ${where}, without the closing boundary`));
  }

  private stop(): void {
    this.stopped = true;
    this.chunk = null;
    this.pending.length = 0;
    this.waitFor = null;
    this.signal?.removeEventListener('abort', this.onAbort);
    if (this.started) this.detach();
  }

  /** Ends a part the parser will not finish: its stream is destroyed, its text rejected. */
  private endWith(part: FormPart, err: Error, streamError: boolean): void {
    part.ended = true;
    part.failure = err;
    if (part.stream !== null) destroyWith(part.stream, streamError ? err : undefined);
    part.sink?.destroy(err);
    part.textChunk = null;
    part.textMore = null;
    part.rejectEnd?.(err);
  }

  private fail(err: WharfError): void {
    if (this.stopped) return;
    this.error = err;
    this.stop();
    const part = this.current;
    this.current = null;
    this.ready = null;
    if (part !== null) this.endWith(part, err, true);
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

// What `toString('utf8', from, to)` ends in after checking its arguments, called directly: a third
// of the cost of decoding a short header value. Undocumented but in every Node release (busboy and
// undici use its siblings); `toString` if it is ever gone.
const slicer = (Buffer.prototype as Buffer & { utf8Slice?: (from: number, to: number) => string }).utf8Slice;
const utf8Slice: (buf: Buffer, from: number, to: number) => string =
  typeof slicer === 'function' ? (buf, from, to) => slicer.call(buf, from, to) : (buf, from, to) => buf.toString('utf8', from, to);

const latin1er = (Buffer.prototype as Buffer & { latin1Slice?: (from: number, to: number) => string }).latin1Slice;
const latin1Slice: (buf: Buffer, from: number, to: number) => string =
  typeof latin1er === 'function' ? (buf, from, to) => latin1er.call(buf, from, to) : (buf, from, to) => buf.toString('latin1', from, to);

const BROWSER_DISPOSITION = Buffer.from('Content-Disposition: form-data; name="');
const FILENAME = Buffer.from('; filename="');

/** `buf` holds `bytes` at `from` (false where it ends first): a loop, as `Buffer#compare`'s argument checks cost more than these few bytes. */
function startsWith(buf: Buffer, from: number, bytes: Buffer): boolean {
  if (buf.length - from < bytes.length) return false;
  for (let k = 0; k < bytes.length; k++) if (buf[from + k] !== bytes[k]) return false;
  return true;
}

/** Where the quoted value from `from` closes (its `"`), or -1 at the chunk's end or at a byte `browserDisposition` leaves to the general path. */
function quotedEnd(buf: Buffer, from: number): number {
  for (let k = from; k < buf.length; k++) {
    const b = buf[k]!;
    if (b === 34 /* " */) return k;
    if (b < SP || b > 126 || b === 37 /* % */) return -1;
  }
  return -1;
}

const CONTENT_DISPOSITION = Buffer.from('content-disposition');
const CONTENT_TYPE = Buffer.from('content-type');

// `| 0x20` lower-cases letters and leaves `-` alone (`name` holds nothing else); it would also
// turn a CR into `-`, hence the second test.
function equalsLower(buf: Buffer, from: number, name: Buffer): boolean {
  for (let k = 0; k < name.length; k++) {
    const b = buf[from + k]!;
    if ((b | 0x20) !== name[k] || b <= SP) return false;
  }
  return true;
}

/**
 * The hot loop: where `d` starts in `c` at or after `from`, or -1. Boyer–Moore–Horspool over the
 * whole chunk (measured faster than `Buffer.indexOf`, on random data by half again, and on data
 * made of delimiter fragments). A function of its own, so that when a rare branch of its caller
 * deoptimizes, this loop keeps its optimized code.
 */
function indexOfDelimiter(c: Buffer, from: number, d: Buffer, shift: Uint8Array): number {
  const n = c.length;
  const last = d.length - 1;
  const end = d[last]!;
  let i = from + last;
  while (i < n) {
    const b = c[i]!;
    if (b === end) {
      let j = last - 1;
      let k = i - 1;
      while (j >= 0 && c[k] === d[j]) {
        j--;
        k--;
      }
      if (j < 0) return k + 1;
    }
    i += shift[b]!;
  }
  return -1;
}

function unexpectedEnd(message: string, cause?: unknown): WharfError {
  return new WharfError('MULTIPART_UNEXPECTED_END', message, 400, cause === undefined ? undefined : { cause });
}

function sourceError(err: unknown): WharfError {
  if (err instanceof WharfError) return err;
  return unexpectedEnd(`the request body failed: ${err instanceof Error ? err.message : String(err)}`, err);
}

function noBoundary(why: string): WharfError {
  return new WharfError('MULTIPART_NO_BOUNDARY', why, 400);
}

/** The boundary of a `multipart/form-data` Content-Type, validated against RFC 2046 §5.1.1. */
function boundaryOf(contentType: string | undefined): string {
  if (contentType === undefined) throw noBoundary('the request has no Content-Type');
  let semi = contentType.indexOf(';');
  if (semi === -1) semi = contentType.length;
  if (!isValue(contentType, 0, semi, 'multipart/form-data')) throw noBoundary('the request is not multipart/form-data');
  let boundary: string | undefined;
  for (let i = semi; ; ) {
    i = nextParameter(contentType, i);
    if (i === END) break;
    if (i < 0) throw noBoundary('the Content-Type parameters cannot be parsed');
    if (isParameter(contentType, 'boundary')) {
      if (boundary !== undefined) throw noBoundary('the Content-Type has two boundaries');
      boundary = contentType.slice(param.valueStart, param.valueEnd);
    }
  }
  if (boundary === undefined) throw noBoundary('the Content-Type has no boundary');
  if (boundary.length < 1 || boundary.length > 70 || boundary.endsWith(' ')) throw noBoundary('the boundary is not 1 to 70 characters');
  for (let i = 0; i < boundary.length; i++) {
    const c = boundary.charCodeAt(i);
    if (c >= 128 || BCHARS[c] !== 1) throw noBoundary('the boundary holds a character RFC 2046 does not allow');
  }
  return boundary;
}

function skipOws(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== SP && c !== HTAB) break;
    i++;
  }
  return i;
}

/** Whether `s[from, to)`, spaces around it aside, is `lower` in any case. */
function isValue(s: string, from: number, to: number, lower: string): boolean {
  from = skipOws(s, from);
  while (to > from && (s.charCodeAt(to - 1) === SP || s.charCodeAt(to - 1) === HTAB)) to--;
  return to - from === lower.length && sameLower(s, from, lower);
}

// `| 0x20` lower-cases ASCII letters and changes none of the other token characters into one.
function sameLower(s: string, from: number, lower: string): boolean {
  if (s.startsWith(lower, from)) return true;
  for (let k = 0; k < lower.length; k++) if ((s.charCodeAt(from + k) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** Where the parameter `nextParameter` read last lies in its string (no allocation per parameter). */
const param = { nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0, quoted: false };
const END = -2;

function isParameter(s: string, lower: string): boolean {
  return param.nameEnd - param.nameStart === lower.length && sameLower(s, param.nameStart, lower);
}

/**
 * Reads the `;`-separated `name=value` parameter of `s` at `i` into `param`: the index after it,
 * `END` when there is none left, -1 when the list is malformed. One pass, no backtracking. A
 * quoted value runs to the next `"`: the HTML spec escapes `"` in form-data names as `%22` and
 * never uses backslash escapes, so a backslash is an ordinary character (Windows paths).
 */
function nextParameter(s: string, i: number): number {
  const n = s.length;
  for (;;) {
    i = skipOws(s, i);
    if (i >= n) return END;
    if (s.charCodeAt(i) !== 59 /* ; */) return -1;
    i = skipOws(s, i + 1);
    if (i >= n) return END;
    if (s.charCodeAt(i) !== 59) break;
  }
  let j = i;
  while (j < n && TCHAR[s.charCodeAt(j)] === 1) j++;
  if (j === i) return -1;
  param.nameStart = i;
  param.nameEnd = j;
  i = skipOws(s, j);
  if (s.charCodeAt(i) !== 61 /* = */) return -1;
  i = skipOws(s, i + 1);
  if (s.charCodeAt(i) === 34 /* " */) {
    const close = s.indexOf('"', i + 1);
    if (close === -1) return -1;
    param.valueStart = i + 1;
    param.valueEnd = close;
    param.quoted = true;
    return close + 1;
  }
  for (j = i; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c === 59 || c === SP || c === HTAB) break;
    if (c === 34) return -1;
  }
  param.valueStart = i;
  param.valueEnd = j;
  param.quoted = false;
  return j;
}

/** What `parseDisposition` read last (one record for all: no allocation per part). */
const disposition = {
  formData: false,
  name: undefined as string | undefined,
  filename: undefined as string | undefined,
  filenameStar: undefined as string | undefined,
};

/**
 * `form-data; name="…"; filename="…"; filename*=…` into `disposition`; false when invalid. A
 * repeated `name`, `filename` or `filename*` is ambiguous and makes it invalid; other parameters
 * are skipped.
 */
function parseDisposition(s: string): boolean {
  let semi = s.indexOf(';');
  if (semi === -1) semi = s.length;
  let name: string | undefined;
  let filename: string | undefined;
  let filenameStar: string | undefined;
  for (let i = semi; ; ) {
    i = nextParameter(s, i);
    if (i === END) break;
    if (i < 0) return false;
    const len = param.nameEnd - param.nameStart;
    if (len === 4 && isParameter(s, 'name')) {
      if (name !== undefined) return false;
      name = paramValue(s);
    } else if (len === 8 && isParameter(s, 'filename')) {
      if (filename !== undefined) return false;
      filename = paramValue(s);
    } else if (len === 9 && isParameter(s, 'filename*')) {
      if (filenameStar !== undefined) return false;
      filenameStar = s.slice(param.valueStart, param.valueEnd);
    }
  }
  disposition.formData = isValue(s, 0, semi, 'form-data');
  disposition.name = name;
  disposition.filename = filename;
  disposition.filenameStar = filenameStar;
  return true;
}

function paramValue(s: string): string {
  const v = s.slice(param.valueStart, param.valueEnd);
  return param.quoted ? unescapeFormData(v) : v;
}

/** The HTML spec's multipart/form-data escapes in quoted names: `%22` `"`, `%0D` CR, `%0A` LF. */
function unescapeFormData(s: string): string {
  let i = s.indexOf('%');
  if (i === -1) return s;
  let out = '';
  let from = 0;
  while (i !== -1) {
    const esc = s.slice(i, i + 3);
    const c = esc === '%22' ? '"' : esc === '%0D' ? '\r' : esc === '%0A' ? '\n' : undefined;
    if (c === undefined) {
      i = s.indexOf('%', i + 1);
      continue;
    }
    out += s.slice(from, i) + c;
    from = i + 3;
    i = s.indexOf('%', from);
  }
  return out + s.slice(from);
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 32;
  return c >= 97 && c <= 102 ? c - 87 : -1;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** RFC 5987 `ext-value`: `charset'[language]'pct-encoded`, UTF-8 or ISO-8859-1; undefined when invalid. */
function decodeExtValue(v: string): string | undefined {
  const a = v.indexOf("'");
  const b = a === -1 ? -1 : v.indexOf("'", a + 1);
  if (b === -1) return undefined;
  const charset = v.slice(0, a).toLowerCase();
  if (charset !== 'utf-8' && charset !== 'iso-8859-1') return undefined;
  const bytes = Buffer.allocUnsafe(v.length - b - 1);
  let n = 0;
  for (let i = b + 1; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 37 /* % */) {
      const hi = hexValue(v.charCodeAt(i + 1));
      const lo = hexValue(v.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      bytes[n++] = (hi << 4) | lo;
      i += 2;
    } else if (c > 32 && c < 127) {
      bytes[n++] = c;
    } else {
      return undefined;
    }
  }
  if (charset === 'iso-8859-1') return bytes.toString('latin1', 0, n);
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    return undefined;
  }
}
