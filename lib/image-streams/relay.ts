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
// per-client rate, hence 503 and not 429), `SHUTTING_DOWN`, and `HUB_UNAVAILABLE` (a hub between
// processes that cannot reach Redis or the cluster's primary). A timeout limit of 0 means never.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { throwIfAborted } from '../common/abort.js';
import { WharfError } from '../common/errors.js';
import { streamPath } from '../common/stream-paths.js';
import { sendError, sendJson } from '../http/answer.js';
import { refuse } from '../http/refuse.js';
import { MAX_TIMER, type Limits } from '../common/limits.js';
import type { Site } from '../common/site-api.js';
import { createLocalHub } from './hub.js';
import type { Hub } from './hub.js';
import { MALFORMED } from '../http/request-path.js';
import { checkFrameType, emptyFrame, frameTooLarge, readFrame } from './frame-body.js';
import { createViewer, viewHeaders, type Viewer } from './viewer.js';

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
// C0, DEL and C1 controls, and the backslash some clients treat as a separator.
const BAD_NAME_CHAR = /[\x00-\x1f\x7f-\x9f\\]/;

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
      refuse(req, res, err);
    }
  }

  async function view(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    try {
      const boundary = randomBytes(16).toString('hex');
      if (req.method === 'HEAD') {
        if (!(await hub.has(name))) throw noSuchStream();
        res.writeHead(200, viewHeaders(boundary)).end();
        return;
      }
      // Gone while an async `authorize` ran: its 'close' has fired already and would never unsubscribe.
      if (res.closed || req.socket.destroyed) return;
      const v = createViewer(name, res, boundary);
      const subscription = await hub.subscribe(name, v);
      if (!subscription) throw noSuchStream();
      // Gone while the hub asked another process: the same, and the subscription is not needed.
      if (res.closed || req.socket.destroyed) {
        subscription.unsubscribe();
        return;
      }
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
      refuse(req, res, err);
    }
  }

  const site: Streams['site'] = {
    async uplink(name, contentType, data, options) {
      throwIfAborted(options?.signal);
      const path = streamPath(base, checkStreamName(name));
      const type = checkFrameType(contentType);
      if (data.byteLength > limits.frameSize) throw frameTooLarge(limits.frameSize);
      if (data.byteLength === 0) throw emptyFrame();
      // A copy: the caller may reuse its buffer while sockets are still sending this frame.
      await hub.publish(name, { type, data: Buffer.from(data) });
      return path;
    },
    async unlink(name, options) {
      throwIfAborted(options?.signal);
      // Like DELETE: a stream that is already gone is not an error (docs/protocol.md §2).
      await hub.end(checkStreamName(name));
    },
  };

  async function close(): Promise<void> {
    await hub.close();
    await endViewers(viewers, limits.viewerStallTimeout);
    if (sweeper) clearInterval(sweeper);
    sweeper = undefined;
  }

  return { publish, view, end, site, stats: () => statsOf(hub, viewers), close };
}

/** The hub's counts per stream, with what its viewers' sockets still hold. */
function statsOf(hub: Hub, viewers: ReadonlySet<Viewer>): StreamStats[] {
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

/** After the hub ended every stream: gives each viewer the stall timeout to take its closing delimiter, then cuts what is left. */
async function endViewers(viewers: ReadonlySet<Viewer>, stallMs: number): Promise<void> {
  const open = [...viewers];
  if (open.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.min(stallMs || 1000, MAX_TIMER));
  });
  await Promise.race([Promise.all(open.map(closed)), grace]);
  clearTimeout(timer);
  for (const v of viewers) v.res.destroy();
}

function closed(v: Viewer): Promise<void> {
  return v.res.closed ? Promise.resolve() : new Promise((resolve) => v.res.once('close', resolve));
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

function badName(why: string): WharfError {
  return new WharfError('INVALID_STREAM_NAME', `invalid stream name: ${why}`, 400);
}

function noSuchStream(): WharfError {
  return new WharfError('NOT_FOUND', 'no such stream', 404);
}
