/**
 * `wharf/client`: Wave's `q.site` over HTTP, for an app in another process. It speaks Wave's wire
 * protocol, so it works against wharf and against a real Wave server (`waved`) alike.
 *
 * Bodies stream both ways: an upload's multipart body is produced from file streams as the socket
 * drains (its length computed up front), a download is written to a temp file next to the target
 * and renamed into place once its byte count matches, resuming with `Range` + `If-Range` after a
 * dropped connection.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { basename, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WharfError, fromFsError, type WharfErrorCode } from '../common/errors.js';
import { bufferForm, fileForm, type FormFile } from './form-data.js';
import { MAX_TIMER } from '../common/limits.js';
import { contentTypeFor } from '../common/mime.js';
import type { Progress, Site, TransferOptions } from '../common/site-api.js';
import { decodeName, requestPath } from '../common/upload-names.js';

export { WharfError } from '../common/errors.js';
export type { WharfErrorCode } from '../common/errors.js';
export type { Site, Progress, TransferOptions } from '../common/site-api.js';

export interface ConnectOptions {
  /** Default Wave's `access_key_id` (or the user part of `url`). */
  accessKeyId?: string;
  /** Default Wave's `access_key_secret` (or the password part of `url`). */
  accessKeySecret?: string;
  /** The server's base URL path. Default `/` (or the path of `url`). */
  baseUrl?: string;
  /** Times a download is resumed after a dropped connection or a 502/503/504. Default 4. */
  retries?: number;
  /** ms before the first retry; it doubles on each further one. Default 250. */
  retryDelay?: number;
}

/** The HTTP `Site`, plus what only a network client has. */
export interface ClientSite extends Site {
  /** The server origin, `http://host:port`. */
  readonly origin: string;
  /** The base URL path, starting and ending with `/`. */
  readonly base: string;
  /** Closes idle keep-alive sockets. Optional: idle sockets never keep the process alive. */
  close(): void;
}

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

const NETWORK_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Requests that failed before any answer on a keep-alive socket the agent reused. */
const failedOnReusedSocket = new WeakSet<object>();

/** ms a streamed upload waits for `100 Continue` before it sends its body anyway. */
const CONTINUE_TIMEOUT = 1000;

/** Error answers are short JSON; anything longer is not worth holding. */
const MAX_ANSWER = 1024 * 1024;

type Body = Buffer | (() => AsyncIterable<Buffer>);

interface Exchange {
  req: http.ClientRequest;
  res: http.IncomingMessage;
}

function abortError(signal: AbortSignal): WharfError {
  // 499, nginx's "client closed request", as the in-process site says.
  return new WharfError('ABORTED', 'the transfer was aborted', 499, { cause: signal.reason });
}

function networkError(err: unknown, what: string): WharfError {
  if (err instanceof WharfError) return err;
  const e = err as NodeJS.ErrnoException;
  return new WharfError('NETWORK', `${what}: ${e.code ? `${e.code} ` : ''}${e.message}`, 0, { cause: err });
}

/** Transient failures worth a retry: the connection broke, or a gateway or the server said "later". */
function isTransient(err: unknown): boolean {
  if (!(err instanceof WharfError)) return false;
  return err.code === 'NETWORK' || err.status === 502 || err.status === 503 || err.status === 504;
}

function httpError(status: number, body: Buffer): WharfError {
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

/** `{base}_m/<name>`, each segment of the name percent-encoded, its slashes kept (`foo/bar qux.png`). */
function streamPath(base: string, name: unknown): string {
  const bad = (why: string): WharfError => new WharfError('INVALID_STREAM_NAME', `invalid stream name: ${why}`, 400);
  if (typeof name !== 'string' || name === '') throw bad('empty');
  try {
    return `${base}_m/${name.split('/').map(encodeURIComponent).join('/')}`;
  } catch {
    throw bad('not valid Unicode (a lone surrogate)');
  }
}

function normaliseBase(base: string): string {
  let b = base.trim();
  if (!b.startsWith('/')) b = `/${b}`;
  if (!b.endsWith('/')) b += '/';
  return b;
}

/** The file name a URL ends in, decoded once (the upload's real name); refused when it could not be a safe local name. */
function urlFileName(url: URL): string {
  const name = decodeName(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
  if (name === '' || name === '.' || name === '..' || /[/\\\x00]/.test(name)) {
    throw new WharfError('BAD_NAME', `${url.pathname} does not end in a file name; give a file path to download to`, 400);
  }
  return name;
}

/** Size of a local file to upload; errors worded as the in-process `files.site` words them. */
async function localFileSize(path: string): Promise<number> {
  const st = await stat(path).catch((err: unknown) => {
    throw fromFsError(err, `local file ${JSON.stringify(path)}`);
  });
  if (!st.isFile()) throw new WharfError('NOT_A_FILE', `${JSON.stringify(path)} is not a regular file`, 400);
  return st.size;
}

/**
 * Every regular file under `root`, relative with `/`, sorted. Like Wave's `os.walk`: a symlink to a
 * file is sent, a symlink to a directory is not entered (no cycles).
 */
async function walk(root: string, rel = ''): Promise<FormFile[]> {
  const out: FormFile[] = [];
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    const full = join(root, r);
    if (e.isDirectory()) out.push(...await walk(root, r));
    else if (e.isFile()) out.push({ path: full, filename: r, size: (await stat(full)).size, contentType: contentTypeFor(r) });
    else if (e.isSymbolicLink()) {
      const st = await stat(full).catch(() => null);
      if (st?.isFile()) out.push({ path: full, filename: r, size: st.size, contentType: contentTypeFor(r) });
    }
  }
  return out;
}

/** Wraps `onProgress` so it never goes backwards (a retry re-sends bytes already counted). */
function progressOf(options: TransferOptions | undefined): (loaded: number, total: number | undefined) => void {
  const cb = options?.onProgress;
  let last = -1;
  return (loaded, total) => {
    if (!cb || loaded <= last) return;
    last = loaded;
    cb({ loaded, total } satisfies Progress);
  };
}

/**
 * Connects to a wharf (or Wave) server at `url` (`http://host:port`, optionally with the base path).
 * Nothing is sent until the first call. Calls share keep-alive sockets, so a publishing loop of
 * `uplink` calls reuses one connection.
 */
export function connect(url: string, options: ConnectOptions = {}): ClientSite {
  let server: URL;
  try {
    server = new URL(url);
  } catch {
    throw new WharfError('INVALID_OPTION', `not a URL: ${JSON.stringify(url)}`);
  }
  if (server.protocol !== 'http:' && server.protocol !== 'https:') {
    throw new WharfError('INVALID_OPTION', `only http: and https: URLs are supported, got ${server.protocol}`);
  }
  const id = options.accessKeyId ?? (server.username ? decodeURIComponent(server.username) : 'access_key_id');
  const secret = options.accessKeySecret ?? (server.password ? decodeURIComponent(server.password) : 'access_key_secret');
  const authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const origin = server.origin;
  const base = normaliseBase(options.baseUrl ?? server.pathname);
  const retries = options.retries ?? 4;
  const retryDelay = options.retryDelay ?? 250;
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

  // Where this server's upload URLs live, as `target` spells them.
  const uploads = target(`${base}_f/`);

  /**
   * A URL that `upload` returned, or its fully percent-encoded form (docs/protocol.md §1). The URL
   * parser already escapes spaces and non-ASCII and keeps `%25`; an upload URL of this server is
   * also read once more by the rule the server reads it by, so a stray `%` in a hand-built one goes
   * out as `%25` instead of a malformed escape. Other URLs are sent as any HTTP client sends them.
   */
  function uploadTarget(url: string): URL {
    const u = target(url);
    if (u.origin === uploads.origin && u.pathname.startsWith(uploads.pathname)) u.pathname = requestPath(u.pathname);
    return u;
  }

  function sendOnce(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Exchange> {
    return new Promise((resolvePromise, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const what = `${method} ${to.pathname}`;
      const all: http.OutgoingHttpHeaders = { ...headers };
      // Credentials go to the server we were connected to, never to another origin a URL points at.
      if (to.origin === origin) all.authorization = authorization;
      const mod = to.protocol === 'https:' ? https : http;
      const req = mod.request(to, { method, headers: all, agent: agents[to.protocol as 'http:' | 'https:'] });
      let answered = false;
      // pipeline() aborts `req` when the body fails, so `req` reports a hang-up; this keeps the real cause.
      let bodyError: unknown;
      let bodyStarted = false;
      const onAbort = (): void => { req.destroy(abortError(signal!)); };
      const cleanup = (): void => signal?.removeEventListener('abort', onAbort);
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('response', (res) => {
        answered = true;
        res.once('close', cleanup);
        resolvePromise({ req, res });
      });
      // After the answer, a broken socket is reported by the response stream; keep absorbing here.
      req.on('error', (err) => {
        if (answered) return;
        answered = true;
        cleanup();
        const e = signal?.aborted ? abortError(signal) : networkError(bodyError ?? err, what);
        // A server that refuses an upload halfway (a file over its size limit) and closes at once can
        // lose its answer in the reset; say what probably happened.
        if (bodyStarted && !bodyError && !signal?.aborted) e.message += ' (the server closed the connection while the upload was sent: it may have refused it, e.g. over a size limit)';
        if (req.reusedSocket) failedOnReusedSocket.add(e);
        reject(e);
      });
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
          if (bodyStarted || answered) return;
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

  /** Reads a short answer whole; then drops the socket if our body was cut short by an early answer. */
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

  /** A request whose answer must be 2xx; resolves with the answer's body. */
  async function call(method: string, to: URL, headers: http.OutgoingHttpHeaders, body: Body | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    const ex = await send(method, to, headers, body, signal);
    const answer = await readAnswer(ex, signal);
    const status = ex.res.statusCode ?? 0;
    if (status < 200 || status > 299) throw httpError(status, answer);
    return answer;
  }

  async function postFiles(files: FormFile[], headers: http.OutgoingHttpHeaders, options: TransferOptions | undefined): Promise<string[]> {
    const form = fileForm(files);
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const progress = progressOf(options);
    progress(0, total);
    let loaded = 0;
    const answer = await call('POST', target(`${base}_f/`), {
      ...headers,
      'content-type': form.contentType,
      'content-length': form.length,
      expect: '100-continue',
    }, () => {
      loaded = 0;
      return form.chunks((n) => { loaded += n; progress(loaded, total); });
    }, options?.signal);
    let paths: unknown;
    try {
      paths = (JSON.parse(answer.toString('utf8')) as { files?: unknown }).files;
    } catch { /* checked below */ }
    if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) {
      throw new WharfError('BAD_RESPONSE', 'the upload answer has no "files" list', 0);
    }
    progress(total, total);
    return paths as string[];
  }

  async function download(url: string, fileOrDir: string, options?: TransferOptions): Promise<string> {
    const from = uploadTarget(url);
    const signal = options?.signal;
    const isDir = await stat(fileOrDir).then((s) => s.isDirectory(), () => false);
    const dest = isDir ? join(fileOrDir, urlFileName(from)) : fileOrDir;
    // Next to the target so the final rename stays on one file system; hidden, so nothing picks it up.
    const tmp = join(dirname(dest), `.${basename(dest).slice(0, 180)}.${randomBytes(6).toString('hex')}.wharf-part`);
    const progress = progressOf(options);
    const fh = await open(tmp, 'wx').catch((err: NodeJS.ErrnoException) => {
      throw new WharfError(err.code === 'ENOENT' || err.code === 'ENOTDIR' ? 'NOT_FOUND' : 'FORBIDDEN',
        `cannot write next to ${dest}: ${err.code ?? err.message}`, err.code === 'ENOENT' || err.code === 'ENOTDIR' ? 404 : 403, { cause: err });
    });
    let open_ = true;
    const got = { bytes: 0, total: undefined as number | undefined, validator: undefined as string | undefined };

    /** Writes `buffers` at the end of what is on disk, however many calls that takes. */
    async function writeAt(buffers: Buffer[]): Promise<void> {
      let list = buffers;
      while (list.length > 0) {
        const { bytesWritten } = await fh.writev(list, got.bytes);
        if (bytesWritten === 0) throw Object.assign(new Error('the disk took no bytes'), { code: 'EIO', syscall: 'writev' });
        got.bytes += bytesWritten;
        progress(got.bytes, got.total);
        let skip = bytesWritten;
        while (list.length > 0 && skip >= list[0]!.length) {
          skip -= list[0]!.length;
          list = list.slice(1);
        }
        if (skip > 0) list = [list[0]!.subarray(skip), ...list.slice(1)];
      }
    }

    async function attempt(): Promise<void> {
      const headers: http.OutgoingHttpHeaders = { 'accept-encoding': 'identity' };
      if (got.bytes > 0 && got.validator) {
        headers.range = `bytes=${got.bytes}-`;
        // RFC 9110 §13.1.5: the rest of the bytes only if the file is still the one we started on.
        headers['if-range'] = got.validator;
      } else if (got.bytes > 0) {
        got.bytes = 0;
        await fh.truncate(0);
      }
      const ex = await send('GET', from, headers, undefined, signal);
      const { res } = ex;
      if (res.statusCode === 206 && got.bytes > 0) {
        const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers['content-range'] ?? '');
        if (!m || Number(m[1]) !== got.bytes || (got.total !== undefined && Number(m[2]) !== got.total)) {
          ex.req.destroy();
          throw new WharfError('BAD_RESPONSE', `the server resumed ${from.pathname} at the wrong place (${res.headers['content-range'] ?? 'no Content-Range'})`, 0);
        }
        got.total = Number(m[2]);
      } else if (res.statusCode === 200) {
        if (got.bytes > 0) {
          got.bytes = 0;
          await fh.truncate(0);
        }
        const length = res.headers['content-length'];
        got.total = length === undefined ? undefined : Number(length);
        const etag = res.headers.etag;
        // A weak ETag may not be used in If-Range; Last-Modified may.
        got.validator = etag && !etag.startsWith('W/') ? etag : res.headers['last-modified'];
      } else {
        throw httpError(res.statusCode ?? 0, await readAnswer(ex, signal));
      }
      progress(got.bytes, got.total);
      // Chunks that arrive while a write is in flight are written together in one writev.
      let writing: Promise<void> = Promise.resolve();
      let diskError: unknown;
      const sink = new Writable({
        highWaterMark: 1024 * 1024,
        writev(entries, done) {
          writing = writeAt(entries.map((e) => e.chunk as Buffer)).then(() => done(), (err: unknown) => {
            diskError = err;
            done(err as Error);
          });
        },
      });
      try {
        await pipeline(res, sink);
      } catch (err) {
        ex.req.destroy();
        // The next attempt starts where the bytes on disk end: let the write in flight land first.
        await writing.catch(() => {});
        if (signal?.aborted) throw abortError(signal);
        if (diskError) throw fromFsError(diskError, 'download target');
        throw networkError(err, `GET ${from.pathname}`);
      }
      if (got.total !== undefined && got.bytes !== got.total) {
        throw new WharfError('NETWORK', `GET ${from.pathname}: the body ended after ${got.bytes} of ${got.total} bytes`, 0);
      }
    }

    try {
      for (let n = 0; ; n++) {
        try {
          await attempt();
          break;
        } catch (err) {
          if (signal?.aborted) throw abortError(signal);
          if (n >= retries || !isTransient(err)) throw err;
          await sleep(Math.min(retryDelay * 2 ** n, MAX_TIMER), undefined, signal ? { signal } : {}).catch(() => { throw abortError(signal!); });
        }
      }
      await fh.sync();
      open_ = false;
      await fh.close();
      await rename(tmp, dest);
      return dest;
    } catch (err) {
      if (open_) await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  return {
    origin,
    base,
    close() {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },

    async upload(paths, options) {
      if (paths.length === 0) throw new WharfError('NO_FILES', 'no files to upload', 400);
      const files: FormFile[] = [];
      for (const p of paths) files.push({ path: p, filename: basename(p), size: await localFileSize(p), contentType: contentTypeFor(basename(p)) });
      return postFiles(files, {}, options);
    },

    async uploadDir(dir, options) {
      const files = await walk(dir).catch((err: unknown) => {
        throw fromFsError(err, 'directory');
      });
      if (files.length === 0) throw new WharfError('NO_FILES', 'the directory has no files', 400);
      return postFiles(files, { 'wave-directory-upload': 'True' }, options);
    },

    download,

    async unload(url, options) {
      await call('DELETE', uploadTarget(url), {}, undefined, options?.signal);
    },

    async uplink(name, contentType, data, options) {
      const path = streamPath(base, name);
      // Wave's client sends the frame as a form: field `f`, filename `f`, the frame's type.
      const form = bufferForm('f', 'f', contentType, data);
      await call('POST', target(path), { 'content-type': form.contentType, 'content-length': form.body.length }, form.body, options?.signal);
      return path;
    },

    async unlink(name, options) {
      // A stream that is gone already answers 200 too (docs/protocol.md §2): unlinking twice is fine.
      await call('DELETE', target(streamPath(base, name)), {}, undefined, options?.signal);
    },
  };
}
