// Image streams, `{base}_m/<name>` (docs/protocol.md §2): frames are published by POST (Wave's one-part
// multipart form, or a raw body) and relayed to every GET as `multipart/x-mixed-replace`.
//
// Fan-out cost per frame and viewer: two or three `res.write`s of Buffers that already exist. The
// frame's bytes are one Buffer shared by every viewer. The bytes that follow each frame (delimiter and
// the next part's header block) contain the response's own boundary — random per response, so one
// publisher cannot predict it and embed it in a frame — so they cannot be shared between viewers;
// each viewer builds them once when it subscribes and again only when the frame type changes, never
// per frame. A viewer whose socket has not drained keeps one pending frame, replaced by the newest,
// and is dropped after `limits.viewerStallTimeout`: memory per stream is the latest frame plus what
// each stalled viewer's socket is still sending, never a queue. (The kernel's own socket buffers
// still hold what they accepted: a slow but live viewer lags by up to their size before it skips.)
//
// Answers: POST 200 with an empty body (Wave's client checks the status only); DELETE 200
// `{"ended": true}`, or `{"ended": false}` when there was no such stream (never published, ended
// already, ended by the idle timeout or a restart): Wave answers 200 there too, and its `unlink()`
// raises on anything else (docs/protocol.md §2). 400 `INVALID_STREAM_NAME`, `INVALID_CONTENT_TYPE`,
// `EMPTY_FRAME`; 404 `NOT_FOUND` (GET/HEAD of no such stream); 408 `BODY_TIMEOUT`;
// 413 `LIMIT_FRAME_SIZE`; 503 `TOO_MANY_STREAMS` / `TOO_MANY_VIEWERS` (a server-wide capacity, not a
// per-client rate, hence 503 and not 429) and `SHUTTING_DOWN`. A timeout limit of 0 means never.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { sendError, sendJson } from '../http/answer.js';
import { closeAfterAnswer } from '../http/close-after-answer.js';
import { MAX_TIMER, type Limits } from '../common/limits.js';
import { parseMultipart } from '../multipart/parser.js';
import type { Site } from '../common/site-api.js';
import { createLocalHub } from './hub.js';
import type { Frame, Hub, Subscriber } from './hub.js';
import { MALFORMED } from '../http/request-path.js';

export interface StreamStats {
  name: string;
  viewers: number;
  framesPublished: number;
  framesSkipped: number;
  /** Viewers holding a frame their socket has not taken yet (each holds at most one). */
  framesPending: number;
  /** Bytes written to this stream's viewers that their sockets have not taken yet (frames are shared, so this bounds, not sums, the memory). */
  bytesQueued: number;
}

export interface StreamsConfig {
  /** Normalised base URL, always starting and ending with `/`. */
  base: string;
  limits: Limits;
  /** The fan-out behind the HTTP layer. Default: in-process. */
  hub?: Hub;
}

/** `name` is the stream's name as routing decoded it and `streamName` checked it. */
export interface Streams {
  /** `POST {base}_m/<name>`. */
  publish(req: IncomingMessage, res: ServerResponse, name: string): Promise<void>;
  /** `GET {base}_m/<name>`. */
  view(req: IncomingMessage, res: ServerResponse, name: string): Promise<void>;
  /** `DELETE {base}_m/<name>`. */
  end(req: IncomingMessage, res: ServerResponse, name: string): Promise<void>;
  site: Pick<Site, 'uplink' | 'unlink'>;
  stats(): StreamStats[];
  /** Ends every stream (viewers get the closing delimiter). */
  close(): Promise<void>;
}

/** Longest stream name, in UTF-8 bytes once decoded. */
export const MAX_STREAM_NAME = 256;
const MAX_TYPE = 256;

// RFC 9110 §8.3.1 media type: token "/" token *( OWS ";" OWS parameter ), parameter values a token
// or a quoted-string. No CR or LF can get through, so the type is safe to echo in a part's headers.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\\\x00-\\x1f\\x7f]|\\\\[\\t\\x20-\\x7e])*"))*$`);
// C0, DEL and C1 controls, and the backslash some clients treat as a separator.
const BAD_NAME_CHAR = /[\x00-\x1f\x7f-\x9f\\]/;

interface Viewer extends Subscriber {
  readonly name: string;
  readonly res: ServerResponse;
  /** `Date.now()` when a write was last refused by a full socket; 0 once drained. */
  busySince: number;
  pending: Frame | undefined;
}

export function createStreams(config: StreamsConfig): Streams {
  const { base, limits } = config;
  const hub = config.hub ?? createLocalHub(limits);
  const viewers = new Set<Viewer>();
  let sweeper: NodeJS.Timeout | undefined;

  function track(v: Viewer): void {
    viewers.add(v);
    if (sweeper || limits.viewerStallTimeout === 0) return;
    // One sweep for all viewers instead of a timer per viewer armed on every frame: a stall is
    // noticed between 1 and 1.25 stall timeouts after the socket stopped taking bytes.
    const every = Math.max(10, Math.min(1000, Math.floor(limits.viewerStallTimeout / 4)));
    sweeper = setInterval(sweep, every);
    sweeper.unref();
  }

  function untrack(v: Viewer): void {
    viewers.delete(v);
    if (viewers.size === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }

  function sweep(): void {
    const now = Date.now();
    for (const v of viewers) {
      if (v.busySince !== 0 && now - v.busySince >= limits.viewerStallTimeout) v.res.destroy();
    }
  }

  async function publish(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    try {
      const frame = await readFrame(req, limits);
      await hub.publish(name, frame);
      res.writeHead(200, { 'Content-Length': 0, 'Cache-Control': 'no-store' }).end();
    } catch (err) {
      fail(req, res, err);
    }
  }

  async function view(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    try {
      const boundary = randomBytes(16).toString('hex');
      if (req.method === 'HEAD') {
        if (!hub.has(name)) throw noSuchStream();
        res.writeHead(200, viewHeaders(boundary)).end();
        return;
      }
      // Gone while an async `authorize` ran: its 'close' has fired already and would never unsubscribe.
      if (res.closed || req.socket.destroyed) return;
      const v = createViewer(name, res, boundary);
      const subscription = hub.subscribe(name, v);
      if (!subscription) throw noSuchStream();
      track(v);
      res.once('close', () => {
        subscription.unsubscribe();
        v.pending = undefined;
        untrack(v);
      });
      res.writeHead(200, viewHeaders(boundary));
      v.start(subscription.latest);
    } catch (err) {
      sendError(res, err);
    }
  }

  async function end(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    try {
      sendJson(res, 200, { ended: await hub.end(name) });
    } catch (err) {
      fail(req, res, err);
    }
  }

  const site: Streams['site'] = {
    async uplink(name, contentType, data, options) {
      options?.signal?.throwIfAborted();
      const path = streamPath(base, checkStreamName(name));
      const type = checkFrameType(contentType);
      if (data.byteLength > limits.frameSize) throw frameTooLarge(limits.frameSize);
      if (data.byteLength === 0) throw emptyFrame();
      // A copy: the caller may reuse its buffer while sockets are still sending this frame.
      await hub.publish(name, { type, data: Buffer.from(data) });
      return path;
    },
    async unlink(name, options) {
      options?.signal?.throwIfAborted();
      // Like DELETE: a stream that is already gone is not an error (docs/protocol.md §2).
      await hub.end(checkStreamName(name));
    },
  };

  function stats(): StreamStats[] {
    const perStream = new Map<string, { pending: number; queued: number }>();
    for (const v of viewers) {
      if (v.res.writableEnded) continue; // its stream ended; a new one may have the same name
      const s = perStream.get(v.name) ?? { pending: 0, queued: 0 };
      if (v.pending) s.pending++;
      s.queued += v.res.writableLength;
      perStream.set(v.name, s);
    }
    return hub.stats().map((s) => ({
      ...s,
      framesPending: perStream.get(s.name)?.pending ?? 0,
      bytesQueued: perStream.get(s.name)?.queued ?? 0,
    }));
  }

  async function close(): Promise<void> {
    hub.close();
    const open = [...viewers];
    if (open.length > 0) {
      // Give each viewer the stall timeout to take its closing delimiter, then cut what is left.
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(limits.viewerStallTimeout || 1000, MAX_TIMER));
      });
      await Promise.race([Promise.all(open.map(closed)), grace]);
      clearTimeout(timer);
      for (const v of viewers) v.res.destroy();
    }
    if (sweeper) clearInterval(sweeper);
    sweeper = undefined;
  }

  return { publish, view, end, site, stats, close };
}

function viewHeaders(boundary: string): OutgoingHttpHeaders {
  return {
    'Content-Type': `multipart/x-mixed-replace; boundary=${boundary}`,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    // nginx buffers proxied responses by default, which would hold frames back.
    'X-Accel-Buffering': 'no',
  };
}

/**
 * One GET of a stream. Browsers show a part of `multipart/x-mixed-replace` only once the next part's
 * header block has arrived (Chromium), so every frame is followed at once by the delimiter and the
 * header block of the part that the next frame will fill (no `Content-Length`: its size is unknown).
 *
 * A frame and the header block after it go out as one HTTP chunk framed here (RFC 9112 §7.1), from
 * Buffers only: the size line (shared by every viewer of the frame), the frame, and this viewer's
 * header block with the chunk's CRLF — three socket writes and one writev. Left to node:http, each
 * `res.write` is a chunk of its own with its size line as a string: eight socket writes per viewer
 * and frame, and a string conversion in each writev. Without chunked encoding (an HTTP/1.0 viewer)
 * the bytes go as they are.
 */
function createViewer(name: string, res: ServerResponse, boundary: string): Viewer & { start(first: Frame): void } {
  let type = '';
  let header = EMPTY;
  let tail = EMPTY;
  let chunked = false;
  let done = false;

  const announce = (t: string): void => {
    type = t;
    header = Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${t}\r\n\r\n`, 'latin1');
    tail = chunked ? Buffer.concat([header, CRLF]) : header;
  };

  /**
   * `head`, `data` and the header block as one chunk, handed to the kernel now: corked by hand, the
   * writes are one writev at `uncork()`. (Left to node:http they would wait for a nextTick per viewer,
   * and the publisher's 200, written in the meantime, would go out before every viewer's frame.)
   * Returns what the last write returned.
   */
  const put = (head: Buffer, data: Buffer): boolean => {
    res.cork();
    if (chunked) res.write(sizeLine(head.length + data.length + header.length));
    if (head.length > 0) res.write(head);
    if (data.length > 0) res.write(data);
    const ok = res.write(tail);
    res.uncork();
    return ok;
  };

  const send = (frame: Frame): void => {
    if (frame.type !== type) {
      // The announced part has another type: close it empty and open one of this frame's type.
      announce(frame.type);
      put(EMPTY, EMPTY);
    }
    if (!put(EMPTY, frame.data)) v.busySince = Date.now();
  };

  const v = {
    name,
    res,
    busySince: 0,
    pending: undefined as Frame | undefined,

    /** Right after `writeHead`, before anything else is written. */
    start(first: Frame): void {
      chunked = res.chunkedEncoding;
      res.chunkedEncoding = false;
      announce(first.type);
      // The body opens with the dash-boundary itself, without a preamble (RFC 2046 §5.1.1).
      if (!put(header.subarray(2), first.data)) v.busySince = Date.now();
    },

    deliver(frame: Frame): boolean {
      if (done) return true;
      if (v.busySince === 0) {
        send(frame);
        return true;
      }
      const fresh = v.pending === undefined;
      v.pending = frame;
      return fresh;
    },

    end(): void {
      if (done) return;
      done = true;
      v.pending = undefined;
      // The close-delimiter ends the announced part, which stays empty; then the last chunk.
      const close = `\r\n--${boundary}--\r\n`;
      res.end(chunked ? `${close.length.toString(16)}\r\n${close}\r\n0\r\n\r\n` : close, 'latin1');
      if (res.writableNeedDrain && v.busySince === 0) v.busySince = Date.now();
    },
  };

  res.on('drain', () => {
    v.busySince = 0;
    const next = v.pending;
    if (next === undefined || done) return;
    v.pending = undefined;
    send(next);
  });
  res.once('close', () => {
    done = true;
  });
  return v;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * A chunk's size line. In one fan-out every viewer's chunk has the same size (the frame plus a header
 * block of the same length: boundaries all have 32 characters), so the line is built once per frame.
 */
let lastSize = { size: -1, line: EMPTY };
function sizeLine(size: number): Buffer {
  if (lastSize.size !== size) lastSize = { size, line: Buffer.from(`${size.toString(16)}\r\n`, 'latin1') };
  return lastSize.line;
}

function closed(v: Viewer): Promise<void> {
  return v.res.closed ? Promise.resolve() : new Promise((resolve) => v.res.once('close', resolve));
}

/** Answers an error on a request whose body may be unread: closing the connection is then the only way to stop the upload. */
function fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const h = req.headers;
  const bodyless = h['transfer-encoding'] === undefined && (h['content-length'] ?? '0') === '0';
  if (!req.complete && !bodyless) closeAfterAnswer(req, res);
  sendError(res, err);
}

/** `{base}_m/<name>`, each segment percent-encoded. */
function streamPath(base: string, name: string): string {
  return `${base}_m/${name.split('/').map(encodeURIComponent).join('/')}`;
}

/**
 * The route rule of `{base}_m/<name>` (urlpath.ts `PathRule`): the name is the rest of the path as
 * routing decoded it, where an encoded slash (`%2F`, as Wave's client sends a name's `/`) is a
 * slash like any other. Malformed escapes and everything `checkStreamName` refuses are 400
 * `INVALID_STREAM_NAME`.
 */
export function streamName(rest: string, flags: number): string {
  if (flags & MALFORMED) throw badName('bad percent-encoding');
  // More characters than bytes allowed: refused before measuring its UTF-8.
  if (rest.length > MAX_STREAM_NAME) throw badName(`longer than ${MAX_STREAM_NAME} bytes`);
  return checkStreamName(rest);
}

function checkStreamName(name: string): string {
  if (typeof name !== 'string' || name === '') throw badName('empty');
  if (Buffer.byteLength(name) > MAX_STREAM_NAME) throw badName(`longer than ${MAX_STREAM_NAME} bytes`);
  if (BAD_NAME_CHAR.test(name)) throw badName('control character or backslash');
  try {
    encodeURIComponent(name);
  } catch {
    throw badName('not valid Unicode (a lone surrogate)');
  }
  for (const segment of name.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw badName('empty, "." or ".." segment');
  }
  return name;
}

function checkFrameType(type: string | undefined): string {
  if (!type) throw new WharfError('INVALID_CONTENT_TYPE', 'a frame needs a Content-Type such as image/jpeg', 400);
  if (type.length > MAX_TYPE || !MEDIA_TYPE.test(type)) {
    throw new WharfError('INVALID_CONTENT_TYPE', 'the frame\'s Content-Type is not a media type (type/subtype)', 400);
  }
  return type;
}

/** Wave's client posts `multipart/form-data` with one part; anything else is the frame itself. */
async function readFrame(req: IncomingMessage, limits: Limits): Promise<Frame> {
  const header = req.headers['content-type'];
  const essence = header?.split(';', 1)[0]?.trim().toLowerCase();
  if (essence === 'multipart/form-data') return readFormFrame(req, header as string, limits);
  const type = checkFrameType(header);
  const data = await collect(bodyOf(req, limits.frameSize, limits), limits.frameSize);
  return { type, data };
}

async function readFormFrame(req: IncomingMessage, contentType: string, limits: Limits): Promise<Frame> {
  // Room for the delimiters and one part's header block around the frame.
  const cap = limits.frameSize + limits.headerSize + 1024;
  const parts = parseMultipart(bodyOf(req, cap, limits), {
    contentType,
    limits: { parts: 1, files: 1, fields: 1, fileSize: cap, fieldSize: cap, headerSize: limits.headerSize },
  });
  let frame: Frame | undefined;
  for await (const part of parts) {
    // The parser defaults a missing type; a frame's type must be the sender's.
    const type = checkFrameType(part.headers['content-type']);
    frame = { type, data: await collect(part.body, limits.frameSize) };
  }
  if (!frame) throw emptyFrame();
  return frame;
}

/**
 * The request body with a byte cap and an idle timeout. `destroyOnReturn: false`: stopping early
 * (413) must not destroy the socket before the answer is written.
 */
async function* bodyOf(req: IncomingMessage, cap: number, limits: Limits): AsyncGenerator<Buffer> {
  const idleMs = limits.uploadIdleTimeout;
  const it = req.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<never>((_, reject) => {
    if (idleMs === 0) return;
    timer = setTimeout(() => reject(new WharfError('BODY_TIMEOUT', `no byte of the frame arrived for ${idleMs} ms`, 408)), Math.min(idleMs, MAX_TIMER));
    timer.unref();
  });
  idle.catch(() => {});
  let seen = 0;
  try {
    for (;;) {
      const step = timer ? await Promise.race([it.next(), idle]) : await it.next();
      if (step.done) return;
      timer?.refresh();
      seen += step.value.length;
      if (seen > cap) throw frameTooLarge(limits.frameSize);
      yield step.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

async function collect(source: AsyncIterable<Buffer>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > max) throw frameTooLarge(max);
    chunks.push(chunk);
  }
  if (total === 0) throw emptyFrame();
  return Buffer.concat(chunks, total);
}

function badName(why: string): WharfError {
  return new WharfError('INVALID_STREAM_NAME', `invalid stream name: ${why}`, 400);
}

function noSuchStream(): WharfError {
  return new WharfError('NOT_FOUND', 'no such stream', 404);
}

function frameTooLarge(max: number): WharfError {
  return new WharfError('LIMIT_FRAME_SIZE', `frame larger than ${max} bytes`, 413);
}

function emptyFrame(): WharfError {
  return new WharfError('EMPTY_FRAME', 'the frame is empty', 400);
}
