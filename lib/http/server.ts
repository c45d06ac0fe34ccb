// createFileServer: options, the one route table (with each route's auth), and the lifecycle
// (listen / handle / close). Everything a route does lives in its own module.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { resolve, sep } from 'node:path';
import { createKeyCheck, isLoopback } from './access-keys.js';
import { WharfError } from '../common/errors.js';
import { sendError } from './answer.js';
import { afterLastAnswer, closeAfterAnswer } from './close-after-answer.js';
import { resolveLimits, type Limits } from '../common/limits.js';
import { missingDirWarnings, parseMappings } from '../static/mappings.js';
import type { Site } from '../common/site-api.js';
import type { SyncIo } from '../static/sync-io.js';
import { createLocalStorage } from '../uploads/local-storage.js';
import { createDirectorySource, createStatic } from '../static/engine.js';
import { createStreams, streamName, type StreamStats } from '../image-streams/relay.js';
import type { UploadVia } from '../uploads/upload-record.js';
import { createUploads, type UploadEvent } from '../uploads/route.js';
import { canonicalPrefix, decodePath, filePath, routePrefix, treePath, type PathRule } from './request-path.js';

/** A directory mapping: files under `path` are served at `url`. Wave writes it as `URL@PATH`. */
export interface DirMapping {
  url: string;
  path: string;
}

/**
 * Options of `createFileServer`. Invalid values throw `WharfError` `INVALID_OPTION` at once.
 *
 * Who may do what (docs/protocol.md §4), per route:
 * - `POST {base}_f/` (upload): a valid access key, or `authorize(req)` true, or `anonymousUploads`.
 * - `GET/HEAD {base}_f/…`, `GET/HEAD {base}_m/…`: anyone, unless `authorize` is set; then it must
 *   return true, or the request must carry a valid access key.
 * - `DELETE {base}_f/…`, `POST/DELETE {base}_m/…`: a valid access key, always.
 * - public mappings: anyone. Private mappings: a valid access key or `authorize(req)` true.
 *
 * Who uploaded decides how an upload is served (docs/protocol.md §4, lib/uploads/upload-record.ts): an upload made
 * with an access key (or through `files.site`) is the app's own and is served as it is; one let in
 * by `authorize` or `anonymousUploads` is an end user's, and never runs script on this origin —
 * every file of it has `Content-Security-Policy: sandbox`, and HTML, XML, SVG and JavaScript are
 * attachments (`application/octet-stream`, SVG keeping its type for `<img>`). An upload request
 * with a valid key is the app's even when `anonymousUploads` would have let it in.
 *
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
   * longest matching URL wins, compared with the request's path decoded once (so `/d%61tasets/x`
   * is `/datasets/x`, and a mapping nested in another is reached only by its own rules, however
   * its URL is spelled); `{base}_f/` and `{base}_m/` always go to uploads and streams. A
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
  /** `Cache-Control` for files anyone may read (public mappings; uploads without `authorize`). Default `public, max-age=0, must-revalidate`. */
  cacheControl?: string;
  /**
   * Whether small file-system calls (a stat of a cached file, a page-cache write of 64 KiB) may be
   * made synchronously on the event loop, where they cost less than a thread-pool round trip.
   * `'auto'` (default): yes, while they prove cheap; when they turn slow they go through the thread
   * pool for a back-off that grows while they stay slow. `'off'`: never — for a data dir or mapping
   * on storage known to block (NFS, EFS, CephFS, FUSE), where a single call can hold every client.
   */
  syncIo?: SyncIo;
  /**
   * `Cache-Control` for files that need authorization: private mappings, and uploads when
   * `authorize` is set (304s too). Default `private, max-age=0, must-revalidate`. It must say
   * `private` or `no-store`, and neither `public` nor `s-maxage`: a shared cache must never keep
   * an answer given to one user for the next (RFC 9111 §5.2.2.7).
   */
  privateCacheControl?: string;
  /**
   * Serve uploads that have no record of who made them (files copied straight into
   * `<dataDir>/f/<id>/`, as Wave's client does when it shares the server's disk; uploads stored
   * before wharf kept records) as the app's own. Default false: they are served as end users'
   * uploads, since who made them cannot be known.
   */
  trustUnrecordedUploads?: boolean;
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
   * 404s; once wharf has answered a connection with `Connection: close`, nothing more from it runs,
   * `next()` included (RFC 9112 §9.6). A plain function (no `this`), so `app.use(files.handle)` works. Mount it at the root:
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

/** Pipelined requests one connection may have waiting for their turn (see `admit`); past it, the connection is cut. */
const MAX_WAITING = 32;

/** A connection, with the response it carries now (see `track`). */
const CURRENT = Symbol('wharf.response');
/** How many requests of a connection wait for their turn (see `awaitTurn`). */
const WAITING = Symbol('wharf.waiting');
/** How many unsafe requests of a connection are not answered yet (see `admit`). */
const UNSAFE = Symbol('wharf.unsafe');
type TrackedSocket = Socket & { [CURRENT]?: ServerResponse; [WAITING]?: number; [UNSAFE]?: number };

/** Who may use a route (see FileServerOptions). */
type Access = 'open' | 'upload' | 'read' | 'private' | 'key';

interface Method {
  access: Access;
  /**
   * How the rest of the path (what follows the route's prefix, decoded once by routing) is checked:
   * what the rule returns is what `run` gets. Absent on an exact route, which has no rest.
   */
  path?: PathRule;
  /** Largest `Content-Length` accepted before any body byte is read, and the 413's error code. */
  maxBody?: { bytes: number; code: 'LIMIT_REQUEST_SIZE' | 'LIMIT_FRAME_SIZE' };
  /** Needs upload storage started. */
  storage?: boolean;
  /**
   * Undefined when the answer was given synchronously (a cached file, a 304): no promise to wait on.
   * `via`: what let the request in.
   */
  run(req: IncomingMessage, res: ServerResponse, rest: string, via: Via): Promise<void> | undefined;
}

/** What let a request in: nothing was needed (`open`), an access key, the `authorize` hook, or `anonymousUploads`. */
type Via = 'open' | 'key' | 'authorize' | 'anonymous';

/** Who made an upload let in `via` (an upload route is never open: that would be an end user). */
const uploaderOf = (via: Via): UploadVia => (via === 'open' ? 'anonymous' : via);

interface Route {
  /** Decoded (`/my data/`, not `/my%20data/`): routing compares decoded paths. */
  prefix: string;
  /** Matches only the prefix itself (`{base}_f/`), not what is under it. */
  exact?: boolean;
  methods: Record<string, Method>;
  allow: string;
}

const KNOWN_OPTIONS = new Set([
  'dataDir', 'baseUrl', 'publicDirs', 'privateDirs', 'accessKeys', 'authorize', 'anonymousUploads',
  'dotfiles', 'groupReadable', 'cacheControl', 'privateCacheControl', 'trustUnrecordedUploads', 'syncIo', 'limits', 'onUpload', 'warn',
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
  for (const f of ['anonymousUploads', 'dotfiles', 'trustUnrecordedUploads', 'groupReadable'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'boolean') throw invalid(`${f}: expected true or false`);
  }
  if (o.syncIo !== undefined && o.syncIo !== 'auto' && o.syncIo !== 'off') throw invalid('syncIo: expected "auto" or "off"');
  if (o.cacheControl !== undefined && (typeof o.cacheControl !== 'string' || /[\r\n\0]/.test(o.cacheControl))) {
    throw invalid('cacheControl: expected a header value on one line');
  }
  if (o.privateCacheControl !== undefined) {
    if (typeof o.privateCacheControl !== 'string' || /[\r\n\0]/.test(o.privateCacheControl)) throw invalid('privateCacheControl: expected a header value on one line');
    const directives = new Set(o.privateCacheControl.split(',').map((d) => d.split('=', 1)[0]!.trim().toLowerCase()));
    if ((!directives.has('private') && !directives.has('no-store')) || directives.has('public') || directives.has('s-maxage')) {
      throw invalid('privateCacheControl: must say "private" or "no-store", and neither "public" nor "s-maxage" (a shared cache would keep one user\'s answer for the next)');
    }
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
 * paths must reach routing exactly as sent (it decodes them once, and the routes refuse dot segments).
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
  // A mapping of the data dir, or of a directory in it, would serve uploads around their own rules
  // (authorize, end users' uploads never running script) and the staging area with them.
  for (const m of mappings) {
    if (m.path === dataDir || m.path.startsWith(dataDir + sep)) throw invalid(`mapping ${m.prefix} serves ${m.path}, which is the data dir or inside it: uploads are served at ${base}_f/ only`);
  }
  for (const w of missingDirWarnings(mappings)) warn(w);
  const keyCheck = createKeyCheck(options.accessKeys);
  const authorize = options.authorize;
  const anonymousUploads = options.anonymousUploads ?? false;

  const statics = createStatic({
    limits,
    ...(options.cacheControl === undefined ? {} : { cacheControl: options.cacheControl }),
    ...(options.privateCacheControl === undefined ? {} : { privateCacheControl: options.privateCacheControl }),
  });
  const syncIo = options.syncIo ?? 'auto';
  const storage = createLocalStorage(dataDir, {
    syncIo,
    unrecorded: options.trustUnrecordedUploads === true ? 'app' : 'user',
    groupReadable: options.groupReadable ?? false,
    warn,
  });
  const uploads = createUploads(options.onUpload === undefined
    ? { dataDir, base, limits, statics, warn, storage }
    : { dataDir, base, limits, statics, warn, storage, onUpload: options.onUpload });
  // With an `authorize` hook, reading an upload needs authorization: its answers are private.
  const uploadsPrivate = authorize !== undefined;
  const streams = createStreams({ base, limits });

  // ---- the route table: every URL wharf answers, and who may use it -------------------------
  // Routes match the decoded path, and each method's `path` rule checks what follows the prefix:
  // `filePath` (files: dot segments 404, encoded separators 400), `treePath` (the same, or the
  // upload itself with a trailing `/`), `streamName` (an encoded slash is a slash).
  const uploadSource = uploads.source;
  const own = routePrefix(base);
  const routes: Route[] = [
    {
      prefix: `${own}_f/`,
      exact: true,
      methods: { POST: { access: 'upload', maxBody: { bytes: limits.requestSize, code: 'LIMIT_REQUEST_SIZE' }, storage: true, run: (req, res, _rest, via) => uploads.receive(req, res, uploaderOf(via)) } },
      allow: 'POST',
    },
    {
      prefix: `${own}_f/`,
      methods: {
        GET: { access: 'read', path: filePath, storage: true, run: (req, res, rel) => statics.respond(req, res, uploadSource, rel, uploadsPrivate) },
        HEAD: { access: 'read', path: filePath, storage: true, run: (req, res, rel) => statics.respond(req, res, uploadSource, rel, uploadsPrivate) },
        DELETE: { access: 'key', path: treePath, storage: true, run: (req, res, rel) => uploads.remove(req, res, rel) },
      },
      allow: 'GET, HEAD, DELETE',
    },
    {
      prefix: `${own}_m/`,
      methods: {
        GET: { access: 'read', path: streamName, run: (req, res, name) => streams.view(req, res, name) },
        HEAD: { access: 'read', path: streamName, run: (req, res, name) => streams.view(req, res, name) },
        POST: { access: 'key', path: streamName, maxBody: { bytes: limits.frameSize + FRAME_FRAMING, code: 'LIMIT_FRAME_SIZE' }, run: (req, res, name) => streams.publish(req, res, name) },
        DELETE: { access: 'key', path: streamName, run: (req, res, name) => streams.end(req, res, name) },
      },
      allow: 'GET, HEAD, POST, DELETE',
    },
    ...mappings.map((m): Route => {
      // What another route serves is never served through this one, however reached (docs/protocol.md §3).
      const exclude = [dataDir, ...mappings.filter((o) => o !== m).map((o) => o.path)];
      const source = createDirectorySource(m.path, { dotfiles: options.dotfiles ?? false, syncIo, exclude });
      const get: Method = { access: m.private ? 'private' : 'open', path: filePath, run: (req, res, rel) => statics.respond(req, res, source, rel, m.private) };
      return { prefix: routePrefix(m.prefix), methods: { GET: get, HEAD: get }, allow: 'GET, HEAD' };
    }),
  ];

  // What `route` found besides the route (closure state, not an object per request).
  let matchedRest = '';
  let matchedFlags = 0;

  /**
   * The route of a request target, or undefined; `matchedRest` is then what follows its prefix and
   * `matchedFlags` what decoding found there. The path is decoded here, once (docs/protocol.md §3):
   * matching the raw path against encoded prefixes let `/n/%69nner/x` miss a private mapping
   * `/n/inner/` and reach a public `/n/` that then decoded it to the private file.
   */
  function route(url: string): Route | undefined {
    const raw = pathOf(url);
    if (!raw.includes('%')) {
      matchedFlags = 0;
      return match(raw, raw.length);
    }
    const decoded = decodePath(raw);
    matchedFlags = decoded.flags;
    return match(decoded.path, decoded.clean);
  }

  /** The first route whose prefix starts `path` within its first `clean` characters (see `DecodedPath`). */
  function match(path: string, clean: number): Route | undefined {
    for (const route of routes) {
      const p = route.prefix;
      if (path.startsWith(p)) {
        if ((route.exact && path.length !== p.length) || p.length > clean) continue;
        matchedRest = path.slice(p.length);
        return route;
      }
      // `/datasets` is the mapping `/datasets/` itself (a directory: 404), `{base}_f` is `{base}_f/`.
      if (path.length === p.length - 1 && p.startsWith(path) && path.length <= clean) {
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

  function refuse(req: IncomingMessage, res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
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

  function run(req: IncomingMessage, res: ServerResponse, method: Method, rest: string, expectContinue: boolean, via: Via): void {
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
      ready().then(() => method.run(req, res, rest, via)).catch((err: unknown) => fail(res, err));
      return;
    }
    method.run(req, res, rest, via)?.catch((err: unknown) => fail(res, err));
  }

  /**
   * May `req` run now, or must it wait for its turn (`awaitTurn`)? Pipelined requests (RFC 9112
   * §9.3.2) may be processed in parallel only if they are all safe: an unsafe request waits until
   * every answer ahead of it is given (Node hands `res` the connection then), and so does any
   * request behind an unsafe one not answered yet, so that a GET after a DELETE sees it done. A
   * request at the head of the line (`res.socket` set) always runs. Waiting is also what stops
   * what follows a close decided late — an `authorize` promise that says no, an upload refused
   * halfway through its body (§9.6): Node never hands the connection on after a last answer.
   */
  function admit(req: IncomingMessage, res: ServerResponse): boolean {
    const socket = req.socket as TrackedSocket;
    const ahead = socket[UNSAFE] ?? 0;
    if (req.method === 'GET' || req.method === 'HEAD') return ahead === 0 || res.socket !== null;
    socket[UNSAFE] = ahead + 1;
    res.once('close', () => { socket[UNSAFE] = (socket[UNSAFE] ?? 1) - 1; });
    return res.socket !== null;
  }

  /**
   * Calls `go` once `res` has the connection to itself: every answer pipelined ahead of it has been
   * given. Never, if one of those was the connection's last: Node then never hands `res` the
   * connection, and closing it aborts `req`. A connection with more than MAX_WAITING waiting
   * requests is cut: they produce no output, so Node's own pipelining backpressure (which pauses
   * reading while answers pile up unsent) would never stop a flood of them.
   */
  function awaitTurn(req: IncomingMessage, res: ServerResponse, go: () => void): void {
    const socket = req.socket as TrackedSocket;
    const waiting = (socket[WAITING] ?? 0) + 1;
    if (waiting > MAX_WAITING) {
      socket.destroy();
      return;
    }
    socket[WAITING] = waiting;
    const gone = (): void => {
      socket[WAITING] = (socket[WAITING] ?? 1) - 1;
      res.off('socket', turn);
    };
    const turn = (): void => {
      socket[WAITING] = (socket[WAITING] ?? 1) - 1;
      req.off('close', gone);
      go();
    };
    res.once('socket', turn);
    req.once('close', gone);
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, next: ((err?: unknown) => void) | undefined, expectContinue: boolean, admitted = false): void {
    // After an answer that announced close, nothing more from the connection is processed (RFC 9112
    // §9.6), not even handed to the host app: its body is dropped and it gets no answer, as the
    // connection closes once the answers before it are out.
    if (afterLastAnswer(req)) {
      req.resume();
      return;
    }
    const found = route(req.url ?? '');
    if (found === undefined) {
      if (next) return next();
      if (expectContinue) closeAfterAnswer(req, res);
      refuse(req, res, new WharfError('NOT_FOUND', 'no such route', 404));
      return;
    }
    if (!admitted && !admit(req, res)) {
      awaitTurn(req, res, () => dispatchOrFail(req, res, next, expectContinue, true));
      return;
    }
    const method = found.methods[req.method ?? ''];
    if (method === undefined) {
      refuse(req, res, new WharfError('METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, 405), { Allow: found.allow });
      return;
    }
    let rest = matchedRest;
    if (method.path !== undefined) {
      try {
        rest = method.path(rest, matchedFlags);
      } catch (err) {
        refuse(req, res, err);
        return;
      }
    }
    if (closing) {
      shuttingDown(req, res);
      return;
    }
    const access = method.access;
    if (access === 'open' || (access === 'read' && authorize === undefined)) {
      run(req, res, method, rest, expectContinue, 'open');
      return;
    }
    // The key is checked before `anonymousUploads`: an app's upload is the app's, wherever it comes in.
    if (keyCheck(req) === 'valid') {
      run(req, res, method, rest, expectContinue, 'key');
      return;
    }
    if (access === 'upload' && anonymousUploads) {
      run(req, res, method, rest, expectContinue, 'anonymous');
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
      run(req, res, method, rest, expectContinue, 'authorize');
      return;
    }
    if (verdict === false || typeof (verdict as Promise<boolean> | undefined)?.then !== 'function') {
      unauthorized(req, res);
      return;
    }
    verdict.then(
      (ok) => (ok === true ? run(req, res, method, rest, expectContinue, 'authorize') : unauthorized(req, res)),
      (err: unknown) => authorizeFailed(req, res, err),
    ).catch((err: unknown) => fail(res, err));
  }

  function authorizeFailed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    warn(`wharf: the authorize hook threw: ${err instanceof Error ? err.message : String(err)}`);
    refuse(req, res, new WharfError('AUTHORIZE_FAILED', 'authorization check failed', 500));
  }

  function dispatchOrFail(req: IncomingMessage, res: ServerResponse, next: ((err?: unknown) => void) | undefined, expectContinue: boolean, admitted = false): void {
    try {
      dispatch(req, res, next, expectContinue, admitted);
    } catch (err) {
      fail(res, err);
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void {
    dispatchOrFail(req, res, next, false);
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
    srv.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => dispatchOrFail(req, res, undefined, true));
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
