// The options of `createFileServer`: what each means (the doc comments are the reference), and
// `checkOptions`, which fails fast on anything it does not know or cannot use.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { MAX_TIMER, type Limits } from '../common/limits.js';
import { isNodeId } from '../common/node-id.js';
import type { Site } from '../common/site-api.js';
import type { HubFactory } from '../image-streams/hub.js';
import type { InProcessSite } from '../uploads/in-process-site.js';
import type { StorageFactory } from '../uploads/storage.js';
import type { StreamStats } from '../image-streams/relay.js';
import type { SyncIo } from '../static/sync-io.js';
import type { UploadEvent } from '../uploads/route.js';
import { parseAccept, type UploadFilter } from '../uploads/upload-filter.js';
import type { Authorize } from './authorize.js';
import { checkCors, type CorsOptions } from './cors.js';

/** A directory mapping: files under `path` are served at `url`. Wave writes it as `URL@PATH`. */
export interface DirMapping {
  url: string;
  path: string;
}

/**
 * Options of `createFileServer`. Invalid values throw `WharfError` `INVALID_OPTION` at once.
 *
 * Who may do what (docs/protocol.md §4), per route (`authorize` is told what is asked: `AccessRequest`):
 * - `POST {base}_f/` (upload): a valid access key, or `anonymousUploads`, or `authorize` lets it in.
 * - `GET/HEAD {base}_f/…`, `GET/HEAD {base}_m/…`: anyone, unless `authorize` is set; then it must
 *   let the request in, or the request must carry a valid access key.
 * - `DELETE {base}_f/…`, `POST/DELETE {base}_m/…`: a valid access key, or an `authorize` that
 *   declares its second parameter (`(req, access) => …`) and lets it in; a one-parameter hook is
 *   never asked about these. A delete is told the upload's recorded `owner`.
 * - public mappings: anyone. Private mappings: a valid access key or `authorize` lets it in.
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
  /**
   * Where uploads live instead of `dataDir`: `s3Storage({ client, bucket, prefix })` keeps them in an
   * S3-compatible store (docs/protocol.md §8), with every promise uploads make on disk (atomic per
   * id, streamed, limits, expiry, the quota, several nodes). Called once, by `createFileServer`, with
   * what the storage needs to know (limits, node id, `warn`). Default: the local layout under `dataDir`.
   */
  storage?: StorageFactory;
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
  /**
   * The host app's check for browser requests (its session, say), told what is asked (`access`):
   * true, false, or `{ identity }` — let in as that end user, whose uploads are recorded as theirs
   * (`UploadEvent.owner`; a later delete's `access.owner`). See `Authorize` for which actions a
   * one-parameter hook is asked about.
   */
  authorize?: Authorize;
  /**
   * Which files an upload may hold: MIME patterns and extensions, `['image/*', '.pdf']`. A file must
   * have a name whose type (or extension) is listed, a declared type that is the same (or
   * `application/octet-stream`), and first bytes that agree with its name (the built-in sniffer
   * knows PNG, JPEG, GIF, WebP, BMP, ICO, TIFF, PDF, zip and the Office/OpenDocument types in it,
   * gzip, tar, 7z, bzip2, xz, zstd, wasm and the old Office files; a type it has no signature for
   * must not be HTML, XML or one of those). Else the whole request is refused with 415
   * `UPLOAD_TYPE_REFUSED` and nothing of it is stored. Default: any file. Checked before `filter`.
   */
  accept?: string[];
  /**
   * The host app's per-file check, before any byte of the file is stored: see `UploadFilter`. A
   * refusal refuses the whole request (422 `UPLOAD_REFUSED` with the reason), nothing stored.
   */
  filter?: UploadFilter;
  /**
   * Pages on other origins that may call wharf from a browser (docs/protocol.md §4, "Pages on other
   * origins"): `{ origins: ['http://localhost:5173'], credentials?, maxAge? }`. Off by default: no
   * answer carries `Access-Control-Allow-Origin`, and a preflight is 405. When set, every route
   * answers its preflight with the methods and headers it takes, every answer carries `Vary:
   * Origin`, and a request that changes something (`POST`, `DELETE`) from an origin not allowed is
   * refused with 403 `CORS_ORIGIN_REFUSED` before a byte of its body is read. Reads from such an
   * origin are answered, without the headers that would let its page see them.
   */
  cors?: CorsOptions;
  /** Let anyone upload. Default false. */
  anonymousUploads?: boolean;
  /**
   * Directory URLs serve the directory's `index.html`, as Wave's server does (docs/protocol.md §3,
   * "Index pages"): `{base}_f/<id>/` of a directory upload and a mapping's `/docs/` or `/docs/guide/`;
   * without the trailing slash, a 301 to the URL with it (relative `Location`, query kept). Never a
   * listing: no `index.html`, 404. Default true; false makes every directory URL a 404.
   */
  indexPages?: boolean;
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
  /**
   * This process's name among the nodes that share the data dir (docs/protocol.md §7): its staging
   * area is `<dataDir>/.wharf-tmp/<nodeId>.<random>/`. 1–64 letters, digits, `.`, `_` or `-`,
   * starting with a letter or digit. Default `<hostname>-<pid>`.
   */
  nodeId?: string;
  /**
   * ms between two rewrites of this node's staging lease. Another node's staging is swept once its
   * lease has not been rewritten for 6 intervals (its node is gone: killed, or its machine down),
   * so keep it well above the longest pause a live node may take. 50 ms .. 2^31-1. Default 10 s.
   */
  leaseInterval?: number;
  limits?: Partial<Limits>;
  /** Called after an upload is committed. */
  onUpload?: (event: UploadEvent) => void | Promise<void>;
  /** Where warnings go (a mapped directory that does not exist yet…). Default `console.warn`. */
  warn?: (message: string) => void;
  /**
   * Carries image-stream frames between processes: `redisHub({ publisher, subscriber })` for several
   * nodes sharing one Redis. Default: in-process (one node). Closed with the server.
   */
  hub?: HubFactory;
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
   * `next()` included (RFC 9112 §9.6). A plain function (no `this`), so `app.use(files.handle)` works.
   * Under a mount path (`app.use('/files', files.handle)`) the URLs it hands out (upload answers,
   * `onUpload`) are under it, read from `req.baseUrl` (Express) or `req.originalUrl` (Connect); set
   * `baseUrl` to the mount path (`'/files/'`) and `files.site` hands out the same URLs.
   */
  handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /**
   * Stops accepting (new requests get 503), aborts in-flight uploads, ends image streams, lets
   * in-flight downloads finish for up to `limits.closeGrace` ms and then cuts them off (the client
   * sees a truncated body, the file is closed), closes idle keep-alive connections, and resolves.
   */
  close(): Promise<void>;
  /** Wave's `q.site`, in-process (no HTTP), with `uploadInfo` (an upload's deadline and `once`). */
  site: Site & Pick<InProcessSite, 'uploadInfo'>;
  /** Image stream statistics for the host app. */
  streamStats(): StreamStats[];
  /**
   * The URL path prefixes this server answers, decoded, each ending in `/`: `{base}_f/`,
   * `{base}_m/` and every mapping's. For framework plugins that register routes (lib/plugins/).
   */
  readonly prefixes: readonly string[];
}

export const DEFAULT_PORT = 10101;
/** Shortest `leaseInterval`: a shorter one would rewrite the lease more often than a disk should be asked to. */
export const MIN_LEASE_INTERVAL = 50;
export const DEFAULT_HOST = '127.0.0.1';

const KNOWN_OPTIONS = new Set([
  'dataDir', 'storage', 'baseUrl', 'publicDirs', 'privateDirs', 'accessKeys', 'authorize', 'anonymousUploads', 'accept', 'filter', 'cors',
  'dotfiles', 'indexPages', 'groupReadable', 'cacheControl', 'privateCacheControl', 'trustUnrecordedUploads', 'syncIo', 'nodeId', 'leaseInterval', 'limits', 'onUpload', 'warn', 'hub',
]);

export const invalid = (message: string): WharfError => new WharfError('INVALID_OPTION', message);

export function checkOptions(o: FileServerOptions): void {
  if (o === null || typeof o !== 'object') throw invalid('options must be an object');
  for (const k of Object.keys(o)) if (!KNOWN_OPTIONS.has(k)) throw invalid(`unknown option "${k}"`);
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) throw invalid('dataDir: expected a non-empty path');
  if (o.baseUrl !== undefined && typeof o.baseUrl !== 'string') throw invalid('baseUrl: expected a string such as "/"');
  if (o.accept !== undefined) parseAccept(o.accept);
  for (const f of ['authorize', 'onUpload', 'warn', 'filter', 'hub', 'storage'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'function') throw invalid(`${f}: expected a function`);
  }
  for (const f of ['anonymousUploads', 'dotfiles', 'indexPages', 'trustUnrecordedUploads', 'groupReadable'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'boolean') throw invalid(`${f}: expected true or false`);
  }
  if (o.nodeId !== undefined && !isNodeId(o.nodeId)) throw invalid('nodeId: expected 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');
  if (o.leaseInterval !== undefined && (!Number.isSafeInteger(o.leaseInterval) || o.leaseInterval < MIN_LEASE_INTERVAL || o.leaseInterval > MAX_TIMER)) {
    throw invalid(`leaseInterval: expected ms from ${MIN_LEASE_INTERVAL} to ${MAX_TIMER}`);
  }
  checkCors(o.cors);
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
