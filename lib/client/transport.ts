/**
 * The client's request transport: one request to the server (credentials, `100 Continue` for a
 * streamed body, a retry on a keep-alive socket the server had closed), answers read whole, retries
 * with back-off for what is worth retrying, and every failure mapped to a `WharfError`.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { abortError, throwIfAborted } from '../common/abort.js';
import { WharfError, type WharfErrorCode } from '../common/errors.js';
import { MAX_TIMER } from '../common/limits.js';

/*
 * Errors without an HTTP answer have status 0: NETWORK (the connection failed or broke),
 * BAD_RESPONSE (the server said something that is not the protocol), FILE_CHANGED (a local file
 * shrank while it was sent). ABORTED (the caller's signal) is 499. Local problems are worded and
 * coded as the in-process site words them: NOT_FOUND (404), NOT_A_FILE and NO_FILES (400).
 */

const STATUS_CODES: Record<number, WharfErrorCode> = {
  400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED',
  413: 'TOO_LARGE', 416: 'RANGE_NOT_SATISFIABLE', 500: 'INTERNAL', 502: 'BAD_GATEWAY', 503: 'UNAVAILABLE',
  504: 'GATEWAY_TIMEOUT', 507: 'STORAGE_FULL',
};

/** Requests that failed before any answer on a keep-alive socket the agent reused. */
const failedOnReusedSocket = new WeakSet<object>();

/** ms a streamed upload waits for `100 Continue` before it sends its body anyway. */
const CONTINUE_TIMEOUT = 1000;

/** Error answers are short JSON; anything longer is not worth holding. */
const MAX_ANSWER = 1024 * 1024;

/** A request body: bytes in memory, or a stream made afresh for each attempt. */
export type Body = Buffer | (() => AsyncIterable<Buffer>);

export interface Exchange {
  req: http.ClientRequest;
  res: http.IncomingMessage;
}

export function networkError(err: unknown, what: string): WharfError {
  if (err instanceof WharfError) return err;
  const e = err as NodeJS.ErrnoException;
  return new WharfError('NETWORK', `${what}: ${e.code ? `${e.code} ` : ''}${e.message}`, 0, { cause: err });
}

/** Transient failures worth a retry: the connection broke, or a gateway or the server said "later". */
function isTransient(err: unknown): boolean {
  if (!(err instanceof WharfError)) return false;
  return err.code === 'NETWORK' || err.status === 502 || err.status === 503 || err.status === 504;
}

export function httpError(status: number, body: Buffer): WharfError {
  let code: WharfErrorCode = STATUS_CODES[status] ?? `HTTP_${status}`;
  let message = body.toString('utf8').trim().slice(0, 500) || http.STATUS_CODES[status] || `HTTP ${status}`;
  try {
    // wharf answers `{"error","message"}`; Wave answers plain text, kept as the message.
    const json: unknown = JSON.parse(message);
    if (json && typeof json === 'object') {
      const { error, message: m } = json as { error?: unknown; message?: unknown };
      // A code this client does not know (a newer server's) is passed on as the server sent it.
      if (typeof error === 'string' && error) code = error as WharfErrorCode;
      if (typeof m === 'string' && m) message = m;
    }
  } catch { /* not JSON */ }
  return new WharfError(code, message, status);
}

export interface TransportOptions {
  /** `http://host:port`: where credentials may go. */
  origin: string;
  /** The `Authorization` value sent to `origin`. */
  authorization: string;
  /** Times `retrying` runs an attempt again after a transient failure. */
  retries: number;
  /** ms before the first retry; it doubles on each further one. */
  retryDelay: number;
}

export interface Transport {
  readonly origin: string;
  /** `pathOrUrl` resolved against the origin; only http: and https: URLs. */
  target(pathOrUrl: string): URL;
  /** One request; resolves once the answer's head is in. */
  send(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Exchange>;
  /** Reads a short answer whole; then drops the socket if our body was cut short by an early answer. */
  readAnswer(ex: Exchange, signal: AbortSignal | undefined): Promise<Buffer>;
  /** A request whose answer must be 2xx; resolves with the answer's body. */
  call(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Buffer>;
  /** Runs `attempt` until it succeeds, retrying transient failures with back-off. */
  retrying(attempt: () => Promise<void>, signal: AbortSignal | undefined): Promise<void>;
  /** Closes idle keep-alive sockets. */
  close(): void;
}

/** Sends `body` (if any) and ends `req`; returns whether a streamed body has started and why it failed. */
function writeBody(req: http.ClientRequest, body: Body | undefined, isAnswered: () => boolean): { started(): boolean; error(): unknown } {
  let bodyError: unknown;
  let bodyStarted = false;
  const state = { started: () => bodyStarted, error: () => bodyError };
  if (body === undefined) req.end();
  else if (Buffer.isBuffer(body)) req.end(body);
  else {
    const source = async function* (): AsyncGenerator<Buffer> {
      try {
        yield* body();
      } catch (err) {
        bodyError = err;
        throw err;
      }
    };
    // A streamed body waits for `100 Continue` (RFC 9110 §10.1.1): a server that refuses the
    // upload from its headers (too large, no key) answers before a byte of it is sent, instead
    // of cutting a connection we are still writing to, which can lose its answer. Servers that
    // ignore `Expect` get the body after a second, as curl does.
    const start = (): void => {
      if (bodyStarted || isAnswered()) return;
      bodyStarted = true;
      clearTimeout(timer);
      pipeline(Readable.from(source()), req).catch(() => {});
    };
    const timer = setTimeout(start, CONTINUE_TIMEOUT);
    req.once('continue', start);
    req.once('response', () => clearTimeout(timer));
    req.once('close', () => clearTimeout(timer));
    req.flushHeaders();
  }
  return state;
}

export function createTransport({ origin, authorization, retries, retryDelay }: TransportOptions): Transport {
  const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

  function target(pathOrUrl: string): URL {
    let u: URL;
    try {
      u = new URL(pathOrUrl, origin);
    } catch {
      throw new WharfError('INVALID_OPTION', `not a URL or path: ${JSON.stringify(pathOrUrl)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WharfError('INVALID_OPTION', `only http: and https: URLs are supported, got ${u.protocol}`);
    return u;
  }

  function sendOnce(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Exchange> {
    return new Promise((resolvePromise, reject) => {
      // A throw here rejects the promise before anything is sent.
      throwIfAborted(signal);
      const what = `${method} ${to.pathname}`;
      const all: http.OutgoingHttpHeaders = { ...headers };
      // Credentials go to the server we were connected to, never to another origin a URL points at.
      if (to.origin === origin) all.authorization = authorization;
      const mod = to.protocol === 'https:' ? https : http;
      const req = mod.request(to, { method, headers: all, agent: agents[to.protocol === 'https:' ? 'https:' : 'http:'] });
      let answered = false;
      const onAbort = (): void => { if (signal) req.destroy(abortError(signal)); };
      const cleanup = (): void => signal?.removeEventListener('abort', onAbort);
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('response', (res) => {
        answered = true;
        res.once('close', cleanup);
        resolvePromise({ req, res });
      });
      // pipeline() aborts `req` when the body fails, so `req` reports a hang-up; `sent` keeps the real cause.
      const sent = writeBody(req, body, () => answered);
      // After the answer, a broken socket is reported by the response stream; keep absorbing here.
      req.on('error', (err) => {
        if (answered) return;
        answered = true;
        cleanup();
        const e = signal?.aborted ? abortError(signal) : networkError(sent.error() ?? err, what);
        // A server that refuses an upload halfway (a file over its size limit) and closes at once can
        // lose its answer in the reset; say what probably happened.
        if (sent.started() && !sent.error() && !signal?.aborted) e.message += ' (the server closed the connection while the upload was sent: it may have refused it, e.g. over a size limit)';
        if (req.reusedSocket) failedOnReusedSocket.add(e);
        reject(e);
      });
    });
  }

  /** One request; retried once when a reused keep-alive socket turns out to have been closed by the server. */
  async function send(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Exchange> {
    try {
      return await sendOnce(method, to, headers, body, signal);
    } catch (err) {
      const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
      if (failedOnReusedSocket.has(err as object) && (cause?.code === 'ECONNRESET' || cause?.code === 'EPIPE')) {
        return sendOnce(method, to, headers, body, signal);
      }
      throw err;
    }
  }

  async function readAnswer({ req, res }: Exchange, signal: AbortSignal | undefined): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        n += chunk.length;
        if (n > MAX_ANSWER) throw new WharfError('BAD_RESPONSE', `the answer to ${req.method} ${req.path} is over ${MAX_ANSWER} bytes`, 0);
        chunks.push(chunk);
      }
    } catch (err) {
      req.destroy();
      if (signal?.aborted) throw abortError(signal);
      throw networkError(err, `${req.method} ${req.path}`);
    }
    if (!req.writableFinished) req.destroy();
    return Buffer.concat(chunks);
  }

  async function call(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    const ex = await send(method, to, headers, body, signal);
    const answer = await readAnswer(ex, signal);
    const status = ex.res.statusCode ?? 0;
    if (status < 200 || status > 299) throw httpError(status, answer);
    return answer;
  }

  async function retrying(attempt: () => Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    for (let n = 0; ; n++) {
      try {
        await attempt();
        return;
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        if (n >= retries || !isTransient(err)) throw err;
        // Only an abort ends the sleep early.
        await sleep(Math.min(retryDelay * 2 ** n, MAX_TIMER), undefined, signal ? { signal } : {}).catch(() => { throw abortError(signal!); });
      }
    }
  }

  return {
    origin,
    target,
    send,
    readAnswer,
    call,
    retrying,
    close() {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}
