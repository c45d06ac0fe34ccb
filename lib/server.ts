// createFileServer: options, the one route table (with each route's auth), and the lifecycle
// (listen / handle / close). Everything a route does lives in its own module.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { resolve } from 'node:path';
import { createKeyCheck, isLoopback } from './auth.js';
import { WharfError, sendError } from './errors.js';
import { closeAfterAnswer } from './linger.js';
import { resolveLimits, type Limits } from './limits.js';
import { missingDirWarnings, parseMappings } from './mappings.js';
import type { Site } from './site.js';
import { createDirectorySource, createStatic } from './static.js';
import { createStreams, type StreamStats } from './streams.js';
import { createUploads, type UploadEvent } from './uploads.js';
import { canonicalPrefix } from './urlpath.js';

/** A directory mapping: files under `path` are served at `url`. Wave writes it as `URL@PATH`. */
export interface DirMapping {
  url: string;
  path: string;
}

/**
 * Options of `createFileServer`. Invalid values throw `WharfError` `INVALID_OPTION` at once.
 *
 * Who may do what (PROTOCOL §4), per route:
 * - `POST {base}_f/` (upload): a valid access key, or `authorize(req)` true, or `anonymousUploads`.
 * - `GET/HEAD {base}_f/…`, `GET/HEAD {base}_m/…`: anyone, unless `authorize` is set; then it must
 *   return true, or the request must carry a valid access key.
 * - `DELETE {base}_f/…`, `POST/DELETE {base}_m/…`: a valid access key, always.
 * - public mappings: anyone. Private mappings: a valid access key or `authorize(req)` true.
 * A request that is refused gets 401 with `WWW-Authenticate: Basic realm="wharf"` — whether it
 * carried no credentials, wrong ones, or the hook said no: a valid key would always be let in —
 * except a browser page's own requests (`Sec-Fetch-Mode` other than `navigate`), which get the 401
 * without the challenge, so the browser does not pop up a login dialog for app keys. A
 * hook that throws gets 500 `AUTHORIZE_FAILED` (the error goes to `warn`, never to the client).
 *
 * Timeouts: standalone (`listen`), the server waits `limits.headersTimeout` for request headers and
 * never limits a whole request (a slow but live upload is not killed; upload and frame bodies have
 * their own idle timeout, `limits.uploadIdleTimeout`); idle keep-alive connections close after 5 s.
 * In middleware mode (`handle`) the host server's timeouts apply, and it answers `Expect:
 * 100-continue` itself (Node sends `100 Continue` before wharf sees the request), so a too-large
 * body is refused only after the client started sending it.
 */
export interface FileServerOptions {
  /** Where uploads live (`<dataDir>/f/<id>/<name>`). Default `./data`, resolved against the working directory. */
  dataDir?: string;
  /** URL prefix of `_f/` and `_m/`. Default `/`. Mapping URLs are absolute, not under it. */
  baseUrl?: string;
  /**
   * Mappings served to anyone: `'/datasets/@/srv/data'` or `{ url, path }`. `/datasets` and
   * `/datasets/` are the same URL; a relative path is resolved against the working directory; the
   * longest matching URL wins; `{base}_f/` and `{base}_m/` always go to uploads and streams. A
   * directory that does not exist yet is a warning and answers 404 until it appears.
   */
  publicDirs?: Array<string | DirMapping>;
  /** Mappings served only to a valid access key or `authorize(req)`; closed when neither is configured. */
  privateDirs?: Array<string | DirMapping>;
  /** Access keys for app calls, `{ [id]: secret }`. Default Wave's `{ access_key_id: 'access_key_secret' }`, accepted only on loopback. */
  accessKeys?: Record<string, string>;
  /** The host app's check for browser requests (its session, say). */
  authorize?: (req: IncomingMessage) => boolean | Promise<boolean>;
  /** Let anyone upload. Default false. */
  anonymousUploads?: boolean;
  /** Serve dotfiles from mappings. Default false. */
  dotfiles?: boolean;
  /**
   * What other accounts on the machine may see of uploads (docs/protocol.md §4). By default
   * everything wharf creates for uploads — the data dir and its parents when missing, `f/`, the
   * temp area, each upload's directories and files — is owner-only, 0700 and 0600, whatever the
   * umask (as Wave makes its upload directories). True makes them 0750 and 0640: the data dir's
   * group may read uploads (a web server serving the data dir, say), others still nothing; a
   * umask can only take bits away. A directory that was already there keeps its mode (an open
   * data dir shows others only the names `f` and `.wharf-tmp`); when `f/` lets others in (an
   * older wharf made it 0755), `warn` says so and what to run. Uploads made before keep their
   * modes. Default false.
   */
  groupReadable?: boolean;
  /** `Cache-Control` for served files. Default `public, max-age=0, must-revalidate`. */
  cacheControl?: string;
  limits?: Partial<Limits>;
  /** Called after an upload is committed. */
  onUpload?: (event: UploadEvent) => void | Promise<void>;
  /** Where warnings go (a mapped directory that does not exist yet…). Default `console.warn`. */
  warn?: (message: string) => void;
}

export interface ListenOptions {
  port?: number;
  host?: string;
}

export interface BoundAddress {
  host: string;
  port: number;
  /** `http://host:port` */
  url: string;
}

export interface FileServer {
  /** Standalone: binds (default `127.0.0.1:10101`) and resolves with the bound address. */
  listen(options?: ListenOptions): Promise<BoundAddress>;
  /**
   * Middleware for `node:http`, Express, Connect: calls `next()` for URLs that are not wharf's, else
   * 404s. A plain function (no `this`), so `app.use(files.handle)` works. Mount it at the root:
   * under a mount path Express strips the prefix from `req.url`, and the upload URLs wharf hands
   * out (`{base}_f/…`) would no longer match what the browser requests.
   */
  handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /**
   * Stops accepting (new requests get 503), aborts in-flight uploads, ends image streams, lets
   * in-flight downloads finish for up to `limits.closeGrace` ms and then cuts them off (the client
   * sees a truncated body, the file is closed), closes idle keep-alive connections, and resolves.
   */
  close(): Promise<void>;
  /** Wave's `q.site`, in-process (no HTTP). */
  site: Site;
  /** Image stream statistics for the host app. */
  streamStats(): StreamStats[];
}

export const DEFAULT_PORT = 10101;
export const DEFAULT_HOST = '127.0.0.1';
/** Room for multipart framing around one image-stream frame when refusing early by `Content-Length`. */
const FRAME_FRAMING = 64 * 1024;
const KEEP_ALIVE_TIMEOUT = 5_000;

/** A connection, with the response it carries now (see `track`). */
const CURRENT = Symbol('wharf.response');
type TrackedSocket = Socket & { [CURRENT]?: ServerResponse };

/** Who may use a route (see FileServerOptions). */
type Access = 'open' | 'upload' | 'read' | 'private' | 'key';

interface Method {
  access: Access;
  /** Largest `Content-Length` accepted before any body byte is read, and the 413's error code. */
  maxBody?: { bytes: number; code: 'LIMIT_REQUEST_SIZE' | 'LIMIT_FRAME_SIZE' };
  /** Needs upload storage started. */
  storage?: boolean;
  /** Undefined when the answer was given synchronously (a cached file, a 304): no promise to wait on. */
  run(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void> | undefined;
}

interface Route {
  prefix: string;
  /** Matches only the prefix itself (`{base}_f/`), not what is under it. */
  exact?: boolean;
  methods: Record<string, Method>;
  allow: string;
}

const KNOWN_OPTIONS = new Set([
  'dataDir', 'baseUrl', 'publicDirs', 'privateDirs', 'accessKeys', 'authorize', 'anonymousUploads',
  'dotfiles', 'groupReadable', 'cacheControl', 'limits', 'onUpload', 'warn',
]);

const invalid = (message: string): WharfError => new WharfError('INVALID_OPTION', message);

function checkOptions(o: FileServerOptions): void {
  if (o === null || typeof o !== 'object') throw invalid('options must be an object');
  for (const k of Object.keys(o)) if (!KNOWN_OPTIONS.has(k)) throw invalid(`unknown option "${k}"`);
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) throw invalid('dataDir: expected a non-empty path');
  if (o.baseUrl !== undefined && typeof o.baseUrl !== 'string') throw invalid('baseUrl: expected a string such as "/"');
  for (const f of ['authorize', 'onUpload', 'warn'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'function') throw invalid(`${f}: expected a function`);
  }
  for (const f of ['anonymousUploads', 'dotfiles', 'groupReadable'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'boolean') throw invalid(`${f}: expected true or false`);
  }
  if (o.cacheControl !== undefined && (typeof o.cacheControl !== 'string' || /[\r\n\0]/.test(o.cacheControl))) {
    throw invalid('cacheControl: expected a header value on one line');
  }
  if (o.accessKeys !== undefined) {
    if (o.accessKeys === null || typeof o.accessKeys !== 'object' || Array.isArray(o.accessKeys)) throw invalid('accessKeys: expected { [id]: secret }');
    for (const [id, secret] of Object.entries(o.accessKeys)) {
      if (id === '' || id.includes(':')) throw invalid('accessKeys: an id must be non-empty and contain no ":"');
      if (typeof secret !== 'string' || secret === '') throw invalid(`accessKeys: the secret of "${id}" must be a non-empty string`);
    }
  }
}

/**
 * The path part of `req.url`, still percent-encoded. An absolute-form target (`http://host/p`, sent
 * to proxies) is cut to its path by hand: `new URL()` would resolve `..` and `%2e%2e` first, and
 * paths must reach the route table exactly as sent.
 */
function pathOf(url: string): string {
  let path = url;
  if (url.charCodeAt(0) !== 47) {
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(url);
    if (authority === null) return '';
    path = url.slice(authority[0].length);
  }
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** Does the request carry a body we have not read (so refusing it should also close the connection)? */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined;
}

export function createFileServer(options: FileServerOptions = {}): FileServer {
  checkOptions(options);
  const warn = options.warn ?? ((message: string) => console.warn(message));
  const limits = resolveLimits(options.limits);
  const base = canonicalPrefix(options.baseUrl ?? '/', 'baseUrl');
  const dataDir = resolve(options.dataDir ?? './data');
  const mappings = parseMappings(options.publicDirs, options.privateDirs, base);
  for (const w of missingDirWarnings(mappings)) warn(w);
  const keyCheck = createKeyCheck(options.accessKeys);
  const authorize = options.authorize;
  const anonymousUploads = options.anonymousUploads ?? false;

  const statics = createStatic(options.cacheControl === undefined ? { limits } : { limits, cacheControl: options.cacheControl });
  const groupReadable = options.groupReadable ?? false;
  const uploads = createUploads(options.onUpload === undefined
    ? { dataDir, base, limits, statics, warn, groupReadable }
    : { dataDir, base, limits, statics, warn, groupReadable, onUpload: options.onUpload });
  const streams = createStreams({ base, limits });

  // ---- the route table: every URL wharf answers, and who may use it -------------------------
  const uploadSource = uploads.source;
  const routes: Route[] = [
    {
      prefix: `${base}_f/`,
      exact: true,
      methods: { POST: { access: 'upload', maxBody: { bytes: limits.requestSize, code: 'LIMIT_REQUEST_SIZE' }, storage: true, run: (req, res) => uploads.receive(req, res) } },
      allow: 'POST',
    },
    {
      prefix: `${base}_f/`,
      methods: {
        GET: { access: 'read', storage: true, run: (req, res, rest) => statics.respond(req, res, uploadSource, rest) },
        HEAD: { access: 'read', storage: true, run: (req, res, rest) => statics.respond(req, res, uploadSource, rest) },
        DELETE: { access: 'key', storage: true, run: (req, res, rest) => uploads.remove(req, res, rest) },
      },
      allow: 'GET, HEAD, DELETE',
    },
    {
      prefix: `${base}_m/`,
      methods: {
        GET: { access: 'read', run: (req, res, rest) => streams.view(req, res, rest) },
        HEAD: { access: 'read', run: (req, res, rest) => streams.view(req, res, rest) },
        POST: { access: 'key', maxBody: { bytes: limits.frameSize + FRAME_FRAMING, code: 'LIMIT_FRAME_SIZE' }, run: (req, res, rest) => streams.publish(req, res, rest) },
        DELETE: { access: 'key', run: (req, res, rest) => streams.end(req, res, rest) },
      },
      allow: 'GET, HEAD, POST, DELETE',
    },
    ...mappings.map((m): Route => {
      const source = createDirectorySource(m.path, { dotfiles: options.dotfiles ?? false });
      const get: Method = { access: m.private ? 'private' : 'open', run: (req, res, rest) => statics.respond(req, res, source, rest) };
      return { prefix: m.prefix, methods: { GET: get, HEAD: get }, allow: 'GET, HEAD' };
    }),
  ];

  /** The route of `path`, or undefined; `matchedRest` is then what follows its prefix (no object per request). */
  let matchedRest = '';
  function match(path: string): Route | undefined {
    for (const route of routes) {
      const p = route.prefix;
      if (path.startsWith(p)) {
        if (route.exact && path.length !== p.length) continue;
        matchedRest = path.slice(p.length);
        return route;
      }
      // `/datasets` is the mapping `/datasets/` itself (a directory: 404), `{base}_f` is `{base}_f/`.
      if (path.length === p.length - 1 && p.startsWith(path)) {
        matchedRest = '';
        return route;
      }
    }
    return undefined;
  }

  // ---- lifecycle state ------------------------------------------------------------------------
  let started: Promise<void> | undefined;
  let storageReady = false;
  function ready(): Promise<void> {
    started ??= uploads.start().then(
      () => { storageReady = true; },
      (err: unknown) => { started = undefined; throw err; },
    );
    return started;
  }
  let server: Server | undefined;
  let closing = false;
  let closed: Promise<void> | undefined;

  // In-flight work, for close(), tracked per connection: the socket remembers the latest response
  // wharf gave it, and one 'close' listener per connection forgets the socket. A listener per
  // response cost a measurable share of a 304's CPU time. The latest response is enough: those
  // before it on the same connection (pipelining) are answered in order, so they are done when
  // it is, and cutting the connection cuts them all.
  const sockets = new Set<TrackedSocket>();

  function track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket as TrackedSocket;
    if (socket[CURRENT] === undefined) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    }
    socket[CURRENT] = res;
  }

  /** Connections whose latest wharf response is not finished. */
  function busy(): TrackedSocket[] {
    const out: TrackedSocket[] = [];
    for (const socket of sockets) if (socket[CURRENT]?.closed === false) out.push(socket);
    return out;
  }

  function fail(res: ServerResponse, err: unknown): void {
    if (!(err instanceof WharfError)) warn(`wharf: request failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    sendError(res, err);
  }

  function refuse(req: IncomingMessage, res: ServerResponse, err: WharfError, headers: Record<string, string> = {}): void {
    // The last answer on this connection: nobody will read the body, so nobody drains gigabytes of it.
    if (hasBody(req)) closeAfterAnswer(req, res);
    sendError(res, err, headers);
  }

  function shuttingDown(req: IncomingMessage, res: ServerResponse): void {
    res.shouldKeepAlive = false;
    closeAfterAnswer(req, res);
    refuse(req, res, new WharfError('SHUTTING_DOWN', 'the file server is shutting down', 503));
  }

  function unauthorized(req: IncomingMessage, res: ServerResponse): void {
    const err = new WharfError('UNAUTHORIZED', 'a valid access key or an authorized session is required', 401);
    // A browser meets a Basic challenge on a page's fetch, XHR or <img> with a credentials dialog
    // its user cannot fill in (wharf's keys are app keys), and the request hangs until it is
    // dismissed. Fetch Metadata (`Sec-Fetch-Mode`, sent by every current browser) tells those
    // requests apart: they get the plain 401; apps and page navigations get the challenge.
    const mode = req.headers['sec-fetch-mode'];
    refuse(req, res, err, mode === undefined || mode === 'navigate' ? { 'WWW-Authenticate': 'Basic realm="wharf"' } : {});
  }

  function run(req: IncomingMessage, res: ServerResponse, method: Method, rest: string, expectContinue: boolean): void {
    if (closing) {
      shuttingDown(req, res); // an async authorize() may have resolved after close() began
      return;
    }
    if (method.maxBody !== undefined) {
      const len = req.headers['content-length'];
      if (len !== undefined && Number(len) > method.maxBody.bytes) {
        refuse(req, res, new WharfError(method.maxBody.code, `request body of ${len} bytes is over the limit of ${method.maxBody.bytes}`, 413));
        return;
      }
    }
    if (expectContinue) res.writeContinue();
    track(req, res);
    if (method.storage && !storageReady) {
      ready().then(() => method.run(req, res, rest)).catch((err: unknown) => fail(res, err));
      return;
    }
    method.run(req, res, rest)?.catch((err: unknown) => fail(res, err));
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, next: ((err?: unknown) => void) | undefined, expectContinue: boolean): void {
    const route = match(pathOf(req.url ?? ''));
    if (route === undefined) {
      if (next) return next();
      if (expectContinue) res.shouldKeepAlive = false;
      refuse(req, res, new WharfError('NOT_FOUND', 'no such route', 404));
      return;
    }
    const rest = matchedRest;
    const method = route.methods[req.method ?? ''];
    if (method === undefined) {
      refuse(req, res, new WharfError('METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, 405), { Allow: route.allow });
      return;
    }
    if (closing) {
      shuttingDown(req, res);
      return;
    }
    const access = method.access;
    if (access === 'open' || (access === 'read' && authorize === undefined) || (access === 'upload' && anonymousUploads)) {
      run(req, res, method, rest, expectContinue);
      return;
    }
    if (keyCheck(req) === 'valid') {
      run(req, res, method, rest, expectContinue);
      return;
    }
    // Wrong or foreign credentials still fall through to the hook: a browser behind the host
    // app's own Basic auth sends an Authorization header that is not a wharf key.
    if (access === 'key' || authorize === undefined) {
      unauthorized(req, res);
      return;
    }
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = authorize(req);
    } catch (err) {
      authorizeFailed(req, res, err);
      return;
    }
    if (verdict === true) {
      run(req, res, method, rest, expectContinue);
      return;
    }
    if (verdict === false || typeof (verdict as Promise<boolean> | undefined)?.then !== 'function') {
      unauthorized(req, res);
      return;
    }
    verdict.then(
      (ok) => (ok === true ? run(req, res, method, rest, expectContinue) : unauthorized(req, res)),
      (err: unknown) => authorizeFailed(req, res, err),
    ).catch((err: unknown) => fail(res, err));
  }

  function authorizeFailed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    warn(`wharf: the authorize hook threw: ${err instanceof Error ? err.message : String(err)}`);
    refuse(req, res, new WharfError('AUTHORIZE_FAILED', 'authorization check failed', 500));
  }

  function handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void {
    try {
      dispatch(req, res, next, false);
    } catch (err) {
      fail(res, err);
    }
  }

  async function listen(opts: ListenOptions = {}): Promise<BoundAddress> {
    const host = opts.host ?? DEFAULT_HOST;
    const port = opts.port ?? DEFAULT_PORT;
    if (closing) throw new WharfError('CLOSED', 'this file server has been closed', 500);
    if (server) throw new WharfError('ALREADY_LISTENING', 'this file server is already listening', 500);
    if (keyCheck.defaults && !isLoopback(host)) {
      throw new WharfError('DEFAULT_KEYS_OFF_LOOPBACK',
        `refusing to listen on ${host} with Wave's well-known default access key; pass accessKeys (CLI: --access-key-id/--access-key-secret) or listen on 127.0.0.1`, 500);
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid(`port: expected 0..65535, got ${String(port)}`);
    await ready();
    const srv = createServer({
      requestTimeout: 0, // uploads and frames have their own idle timeout; a slow live upload is fine
      headersTimeout: limits.headersTimeout,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT,
      // Node checks header timeouts on this interval; its 30 s default would let slowloris connections linger.
      connectionsCheckingInterval: Math.max(250, Math.min(1000, limits.headersTimeout)),
    }, (req, res) => handle(req, res));
    // Answer `Expect: 100-continue` ourselves, so auth and size refusals go out instead of `100 Continue`.
    srv.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      try {
        dispatch(req, res, undefined, true);
      } catch (err) {
        fail(res, err);
      }
    });
    server = srv;
    try {
      await new Promise<void>((ok, bad) => {
        srv.once('error', bad);
        srv.listen(port, host, () => {
          srv.off('error', bad);
          ok();
        });
      });
    } catch (err) {
      server = undefined;
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
      throw new WharfError('LISTEN_FAILED', `cannot listen on ${host}:${port}: ${code}`, 500, { cause: err });
    }
    const addr = srv.address() as AddressInfo;
    const shown = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
    return { host: addr.address, port: addr.port, url: `http://${shown}:${addr.port}` };
  }

  function close(): Promise<void> {
    closed ??= (async () => {
      closing = true;
      const srv = server;
      const serverClosed = srv ? new Promise<void>((ok) => srv.close(() => ok())) : Promise.resolve();
      srv?.closeIdleConnections();
      for (const socket of busy()) if (!socket[CURRENT]!.headersSent) socket[CURRENT]!.shouldKeepAlive = false;
      await Promise.allSettled([uploads.close(), streams.close()]);
      const open = new Set(busy());
      if (open.size > 0) {
        await new Promise<void>((ok) => {
          const timer = setTimeout(ok, limits.closeGrace);
          for (const socket of open) {
            const done = (): void => {
              if (!open.delete(socket)) return;
              if (open.size > 0) return;
              clearTimeout(timer);
              setImmediate(ok);
            };
            socket[CURRENT]!.once('close', done);
            socket.once('close', done);
          }
        });
      }
      for (const socket of busy()) socket.destroy();
      srv?.closeAllConnections();
      await serverClosed;
    })();
    return closed;
  }

  return {
    listen,
    handle,
    close,
    site: { ...uploads.site, ...streams.site },
    streamStats: () => streams.stats(),
  };
}
