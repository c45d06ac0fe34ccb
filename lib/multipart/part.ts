/**
 * The parts the parser hands out, and the ways their bytes are taken: a `body` stream, `text()`,
 * and for the upload layer `collectPart` and `sinkPart`. A part's state says where its bytes go
 * (`PartState`); the parser only ever pushes bytes in, ends or fails it, and asks whether to wait.
 */
import { Readable } from 'node:stream';
import { utf8Slice } from './bytes.js';

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

/** What a part needs of its parser: to go on when the part it waits on can take bytes again. */
export interface PartHost {
  wake(part: FormPart): void;
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
 * For the upload layer: the first `max` bytes (or fewer, if that is all) of a part that `collectPart`
 * found bigger than its size, which it holds until its consumer takes them; they stay held. Empty
 * for any other part.
 */
export function heldHead(part: Part, max: number): Buffer {
  return part instanceof FormPart ? part.heldHead(max) : Buffer.alloc(0);
}

/**
 * For the upload layer: the part's bytes handed to `sink` as they are parsed, with no `Readable`,
 * pipe or buffering in between (the sink's `write` is the backpressure). Returns the
 * function that lets the parser go on after `sink.write` returned false; call it later, never from
 * inside `write`. A part whose bytes already went elsewhere (`text()`, dropped) ends the sink at
 * once; a part of another parser, or whose `body` was asked for, is read from its `body`.
 */
export function sinkPart(part: Part, sink: PartSink): () => void {
  if (part instanceof FormPart && !part.streamed) return part.sinkTo(sink);
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

const BODY_HIGH_WATER_MARK = 64 * 1024;

function noop(): void {}

const enum Kind {
  /** Handed out (or about to be); the parser waits until its consumer chooses. */
  Undecided,
  Stream,
  /** Handed to a `PartSink` (see `sinkPart`). */
  Sink,
  Text,
  /** Gathered whole while it stays under a size (see `collectPart`); past it, `Held`. */
  Collect,
  /** A collected part that outgrew its size: what it gathered waits for `body` or `sinkPart`. */
  Held,
  /** Read and dropped: nobody took it, or its stream was destroyed. */
  Drop,
  /** Every byte went where the part's state said. */
  Ended,
  Failed,
}

// Every state has the same two fields, `kind` and `value`, so that every state object has one
// hidden class and the `kind` checks on the hot path stay monomorphic: with a shape per variant
// (`body`, `sink`, `error`…) a parser that has seen streams, sinks and text parsed a form of 10,000
// small fields 5-10% slower.

interface Bare {
  readonly kind: Kind.Undecided | Kind.Text | Kind.Collect | Kind.Drop | Kind.Ended;
  readonly value: null;
}

interface Streaming {
  readonly kind: Kind.Stream;
  /** The part's `body`. */
  readonly value: PartBody;
}

interface Sinking {
  readonly kind: Kind.Sink;
  readonly value: PartSink;
}

/** A collected part that outgrew its size (rare: files only). */
interface Held {
  readonly kind: Kind.Held;
  /** Its data ended (in the chunk it outgrew its size in). */
  readonly value: boolean;
}

interface Failed {
  readonly kind: Kind.Failed;
  readonly value: Error;
}

/** Where a part's bytes go. `Text`, `Collect` and `Held` keep them on the part (see `FormPart#add`). */
type PartState = Bare | Streaming | Sinking | Held | Failed;

const UNDECIDED: Bare = { kind: Kind.Undecided, value: null };
const TEXT: Bare = { kind: Kind.Text, value: null };
const COLLECT: Bare = { kind: Kind.Collect, value: null };
const DROP: Bare = { kind: Kind.Drop, value: null };
const ENDED: Bare = { kind: Kind.Ended, value: null };
const HELD: Held = { kind: Kind.Held, value: false };
const HELD_ENDED: Held = { kind: Kind.Held, value: true };

/**
 * A part as handed out. Its bytes go where the consumer first asks for them: `body` (a stream,
 * created on first access) or `text()`; a part left untouched when the next one is asked for is
 * dropped without a stream ever being built, which is most of the cost of a small field.
 */
export class FormPart implements Part {
  readonly name: string;
  readonly filename: string | undefined;
  readonly contentType: string;
  private readonly host: PartHost;
  private state: PartState = UNDECIDED;
  // What `body` returned, whatever the state: once asked for, the part's bytes are read from it.
  private stream: PartBody | null = null;
  private textResult: Promise<string> | null = null;
  // Set when the consumer asked for more while the parser was handing it bytes (see `push`).
  private pulled = false;
  // What `Text`, `Collect` and `Held` gathered: the first piece as a place in a chunk (most fields
  // fit in one), any more as slices; `settle`/`reject` are set while `text()` or `collectPart()` waits.
  private first: Buffer | null = null;
  private from = 0;
  private to = 0;
  private more: Buffer[] | null = null;
  private max = 0;
  private settle: (() => void) | null = null;
  private reject: ((err: Error) => void) | null = null;
  // The headers as read: the two every part has, then any others as name/value pairs. The record
  // is built on first access; most consumers never ask (and building it costs as much as parsing).
  private readonly disposition: string | null;
  private readonly type: string | undefined;
  private readonly others: string[] | null;
  private record: Record<string, string> | null = null;

  constructor(host: PartHost, name: string, filename: string | undefined, contentType: string, disposition: string | null, type: string | undefined, others: string[] | null) {
    this.host = host;
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
    // null: it was exactly the form `Scanner#browserDisposition` reads, so it is rebuilt byte for byte.
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
    return this.stream ?? this.openBody();
  }

  text(): Promise<string> {
    return (this.textResult ??= this.readText());
  }

  /** Whether `body` was asked for: then its bytes are read from it. */
  get streamed(): boolean {
    return this.stream !== null;
  }

  /** Whether the parser has to wait for its consumer to say where its bytes go. */
  get undecided(): boolean {
    return this.state.kind === Kind.Undecided || this.state.kind === Kind.Held;
  }

  /** The first `max` bytes a held part gathered, copied; what is gathered stays. */
  heldHead(max: number): Buffer {
    const first = this.first;
    if (this.state.kind !== Kind.Held || first === null) return Buffer.alloc(0);
    const pieces = [first.subarray(this.from, Math.min(this.to, this.from + max))];
    let n = pieces[0]!.length;
    for (const piece of this.more ?? []) {
      if (n >= max) break;
      pieces.push(piece.subarray(0, max - n));
      n += pieces[pieces.length - 1]!.length;
    }
    return Buffer.concat(pieces, n);
  }

  collect(max: number): Promise<Buffer[] | null> {
    if (this.stream !== null || this.state.kind === Kind.Held) return Promise.resolve(null);
    this.max = max;
    return this.gather(COLLECT, []) as Promise<Buffer[] | null>;
  }

  sinkTo(sink: PartSink): () => void {
    const resume = (): void => this.read();
    const s = this.state;
    if (s.kind === Kind.Failed) {
      sink.destroy(s.value);
    } else if (s.kind === Kind.Held) {
      // What was gathered goes out at once (it is in memory already); the last write says whether to go on.
      this.state = s.value ? ENDED : { kind: Kind.Sink, value: sink };
      let room = true;
      for (const piece of this.pieces()) room = sink.write(piece);
      if (s.value) sink.end();
      else if (room) this.host.wake(this);
    } else if (s.kind === Kind.Undecided) {
      this.state = { kind: Kind.Sink, value: sink };
      this.host.wake(this);
    } else {
      sink.end();
    }
    return resume;
  }

  /**
   * Takes the part's next bytes, `c[from, to)`, `size` of them so far: false when the parser has to
   * wait for its consumer (a full stream or sink, a collected part that outgrew its size).
   */
  push(c: Buffer, from: number, to: number, size: number): boolean {
    const s = this.state;
    switch (s.kind) {
      case Kind.Sink:
        // A consumer asking for more from inside `write` (a stream's `_read`) means: go on.
        this.pulled = false;
        return s.value.write(from === 0 && to === c.length ? c : c.subarray(from, to)) || this.pulled || this.state !== s;
      case Kind.Stream:
        this.pulled = false;
        return s.value.push(from === 0 && to === c.length ? c : c.subarray(from, to)) || this.pulled || this.state !== s;
      case Kind.Text:
      case Kind.Held:
        this.add(c, from, to);
        return true;
      case Kind.Collect:
        this.add(c, from, to);
        return size <= this.max || this.outgrow();
      default:
        return true;
    }
  }

  /** The part's data ended at its delimiter. */
  end(): void {
    const s = this.state;
    if (s.kind === Kind.Held) {
      this.state = HELD_ENDED;
      return;
    }
    this.state = ENDED;
    if (s.kind === Kind.Sink) s.value.end();
    else if (s.kind === Kind.Stream) s.value.push(null);
    else if (s.kind === Kind.Text || s.kind === Kind.Collect) this.settle?.();
  }

  /** The part will not end: its stream is destroyed (with `err` when `streamError`), its text rejected. */
  fail(err: Error, streamError: boolean): void {
    const s = this.state;
    this.state = { kind: Kind.Failed, value: err };
    if (this.stream !== null) destroyWith(this.stream, streamError ? err : undefined);
    if (s.kind === Kind.Sink) s.value.destroy(err);
    else if (s.kind === Kind.Text || s.kind === Kind.Collect || s.kind === Kind.Held) this.reject?.(err);
  }

  /**
   * The next part was asked for: a part nobody started reading is dropped (true: the parser may go
   * on), or the parser could never reach the next part; a body nobody started reading is resumed.
   */
  leave(): boolean {
    if (this.undecided) {
      this.state = DROP;
      this.first = null;
      this.more = null;
      return true;
    }
    if (this.stream !== null && this.stream.readableFlowing === null) this.stream.resume();
    return false;
  }

  /** The consumer wants more bytes (a stream's `_read`, the function `sinkPart` returned). */
  read(): void {
    const kind = this.state.kind;
    if (kind === Kind.Ended || kind === Kind.Failed) return;
    this.pulled = true;
    this.host.wake(this);
  }

  /** Its stream was destroyed: the rest of the part is read and dropped (limits still apply). */
  bodyDestroyed(): void {
    if (this.state.kind !== Kind.Stream) return;
    this.state = DROP;
    this.host.wake(this);
  }

  /** Why the part failed, if it did: read through a call, as the state may have changed since it was last looked at. */
  private failure(): Error | null {
    const s = this.state;
    return s.kind === Kind.Failed ? s.value : null;
  }

  private openBody(): Readable {
    const body = new PartBody(this);
    this.stream = body;
    const s = this.state;
    if (s.kind === Kind.Failed) {
      destroyWith(body, s.value);
    } else if (s.kind === Kind.Held) {
      this.state = s.value ? ENDED : { kind: Kind.Stream, value: body };
      for (const piece of this.pieces()) body.push(piece);
      if (s.value) body.push(null);
    } else if (s.kind === Kind.Undecided) {
      // The parser goes on at the stream's first `_read`, when its consumer is ready: bytes pushed
      // before that would only queue up in it.
      this.state = { kind: Kind.Stream, value: body };
    } else {
      // Its bytes went elsewhere (`text()`, or dropped when the next part was asked for).
      body.push(null);
    }
    return body;
  }

  private readText(): Promise<string> {
    if (this.stream !== null || this.state.kind === Kind.Held) return streamText(this.body);
    return this.gather(TEXT, '') as Promise<string>;
  }

  /**
   * The part's bytes taken whole as `how` says, once it has ended; `none` when they already went
   * elsewhere. Most parts end in the chunk at hand: then the answer is ready before this returns.
   */
  private gather(how: Bare, none: string | Buffer[]): Promise<string | Buffer[] | null> {
    const s = this.state;
    if (s.kind === Kind.Failed) return Promise.reject(s.value);
    if (s.kind !== Kind.Undecided) return Promise.resolve(none);
    this.state = how;
    this.host.wake(this);
    const failure = this.failure();
    if (failure !== null) return Promise.reject(failure);
    // Ended, or outgrew its size (a collected part, now held for `body` or `sinkPart`).
    if (this.state !== how) return Promise.resolve(this.result(how));
    return new Promise((resolve, reject) => {
      this.settle = () => resolve(this.result(how));
      this.reject = reject;
    });
  }

  /** A collected part outgrew its size: what it gathered is held until its consumer says where it goes. */
  private outgrow(): false {
    this.state = HELD;
    const settle = this.settle;
    this.settle = null;
    this.reject = null;
    settle?.();
    return false;
  }

  private add(c: Buffer, from: number, to: number): void {
    if (this.first === null) {
      this.first = c;
      this.from = from;
      this.to = to;
    } else {
      (this.more ??= []).push(c.subarray(from, to));
    }
  }

  /** What `text()` or `collectPart()` resolves with: null when a collected part outgrew its size. */
  private result(how: Bare): string | Buffer[] | null {
    if (this.state.kind === Kind.Held) return null;
    return how === TEXT ? this.gatheredText() : this.pieces();
  }

  /** The gathered bytes as slices of the source's chunks. */
  private pieces(): Buffer[] {
    const first = this.first;
    if (first === null) return [];
    this.first = null;
    const pieces = [first.subarray(this.from, this.to)];
    if (this.more !== null) pieces.push(...this.more);
    this.more = null;
    return pieces;
  }

  private gatheredText(): string {
    const first = this.first;
    if (first === null) return '';
    this.first = null;
    if (this.more === null) return utf8Slice(first, this.from, this.to);
    const all = Buffer.concat([first.subarray(this.from, this.to), ...this.more]);
    this.more = null;
    return all.toString('utf8');
  }
}

/** A part's bytes as a stream. `_read` and `_destroy` are the part's signals from the consumer. */
class PartBody extends Readable {
  private readonly part: FormPart;

  constructor(part: FormPart) {
    super({ highWaterMark: BODY_HIGH_WATER_MARK });
    this.part = part;
  }

  override _read(): void {
    this.part.read();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.part.bodyDestroyed();
    callback(err);
  }
}

/** Destroys `body` with `err`; an `error` listener is added first if there is none, so nobody watching is no crash. */
function destroyWith(body: Readable, err: Error | undefined): void {
  if (err !== undefined && body.listenerCount('error') === 0) body.on('error', noop);
  body.destroy(err);
}

async function streamText(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
