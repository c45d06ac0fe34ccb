// The route table, as data: every URL wharf answers, with each method's access rule, path rule and
// body limit, and the matching of a request target against it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WharfError } from '../common/errors.js';
import type { Limits } from '../common/limits.js';
import { streamName, type Streams } from '../image-streams/relay.js';
import { createDirectorySource, type StaticEngine } from '../static/engine.js';
import { createPages, pagePath } from '../static/index-pages.js';
import type { Mapping } from '../static/mappings.js';
import type { SyncIo } from '../static/sync-io.js';
import type { UploadVia } from '../uploads/upload-record.js';
import type { Uploads } from '../uploads/route.js';
import type { Health } from './health.js';
import type { AccessRequest } from './authorize.js';
import { decodePath, filePath, routePrefix, treePath, type PathRule } from './request-path.js';

/** Room for multipart framing around one image-stream frame when refusing early by `Content-Length`. */
const FRAME_FRAMING = 64 * 1024;

/**
 * Who may use a route (see FileServerOptions): `key` routes take a valid access key, or an
 * `authorize` hook that declares `access` (authorize.ts).
 */
export type Access = 'open' | 'upload' | 'read' | 'private' | 'key';

/** What let a request in: nothing was needed (`open`), an access key, the `authorize` hook, or `anonymousUploads`. */
export type Via = 'open' | 'key' | 'authorize' | 'anonymous';

/** What let a request in, and the identity `authorize` gave it (if it was asked and gave one). */
export interface Grant {
  via: Via;
  identity: string | undefined;
}

interface MethodBase {
  /**
   * The request headers this method reads beyond the CORS-safelisted ones: what a preflight for it
   * allows a page on another origin to send (lib/http/cors.ts).
   */
  headers: readonly string[];
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
   * A refusal decided from the request's headers alone (a quota the `Content-Length` would go over,
   * a malformed header), answered before any body byte is read and before `100 Continue`.
   */
  refuseEarly?(req: IncomingMessage): WharfError | undefined;
  /**
   * Undefined when the answer was given synchronously (a cached file, a 304): no promise to wait on.
   * `grant`: what let the request in.
   */
  run(req: IncomingMessage, res: ServerResponse, rest: string, grant: Grant): Promise<void> | undefined;
}

/** Anyone may use it, always: `authorize` is never asked. */
export interface OpenMethod extends MethodBase {
  access: 'open';
}

export interface GuardedMethod extends MethodBase {
  access: Exclude<Access, 'open'>;
  /** What `authorize` is asked, from the checked rest of the path (a delete reads the upload's owner first). */
  asks(rest: string): AccessRequest | Promise<AccessRequest>;
}

export type Method = OpenMethod | GuardedMethod;

export interface Route {
  /** Decoded (`/my data/`, not `/my%20data/`): routing compares decoded paths. */
  prefix: string;
  /** Matches only the prefix itself (`{base}_f/`), not what is under it. */
  exact?: boolean;
  methods: Record<string, Method>;
  allow: string;
}

// What each kind of method reads: an access key (or the host app's own Authorization), the
// conditionals and ranges of a download, the flag of a directory upload, a raw frame's type.
const READ = ['Authorization', 'Range', 'If-Range', 'If-None-Match', 'If-Modified-Since'];
const UPLOAD = ['Authorization', 'Content-Type', 'Wave-Directory-Upload', 'Wharf-Expires-In', 'Wharf-Once'];
const PUBLISH = ['Authorization', 'Content-Type'];
const KEYED = ['Authorization'];

/** Who made an upload let in `via` (an upload route is never open: that would be an end user). */
const uploaderOf = (via: Via): UploadVia => (via === 'open' ? 'anonymous' : via);

export interface RouteParts {
  base: string;
  dataDir: string;
  limits: Limits;
  mappings: Mapping[];
  uploads: Uploads;
  streams: Streams;
  statics: StaticEngine;
  health: Health;
  /** With an `authorize` hook, reading an upload needs authorization: its answers are private. */
  uploadsPrivate: boolean;
  dotfiles: boolean;
  syncIo: SyncIo;
  /** A directory's URL serves its `index.html` (lib/static/index-pages.ts). */
  indexPages: boolean;
}

/**
 * Routes match the decoded path, and each method's `path` rule checks what follows the prefix:
 * `filePath` (files: dot segments 404, encoded separators 400), `treePath` (the same, or the
 * upload itself with a trailing `/`), `streamName` (an encoded slash is a slash).
 */
export function routeTable(p: RouteParts): Route[] {
  const { limits, uploads, streams, statics, uploadsPrivate } = p;
  const uploadSource = uploads.source;
  const own = routePrefix(p.base);
  const upload: AccessRequest = { action: 'upload' };
  const read = (rel: string): AccessRequest => {
    const slash = rel.indexOf('/');
    return slash < 0 ? { action: 'read', id: rel, path: '' } : { action: 'read', id: rel.slice(0, slash), path: rel.slice(slash + 1) };
  };
  // With index pages a path may name a directory (`pagePath`), which `serve` answers by its index.
  const files = p.indexPages ? pagePath : filePath;
  const serve = p.indexPages ? createPages(statics) : statics.respond;
  const getUpload: Method = { access: 'read', headers: READ, path: files, storage: true, asks: read, run: (req, res, rel) => serve(req, res, uploadSource, rel, uploadsPrivate) };
  const view: Method = { access: 'read', headers: KEYED, path: streamName, asks: (stream) => ({ action: 'view', stream }), run: (req, res, name) => streams.view(req, res, name) };
  const health: Method = { access: 'open', headers: [], run: (req, res) => p.health.respond(req, res) };
  return [
    {
      prefix: `${own}_f/`,
      exact: true,
      methods: {
        POST: {
          access: 'upload', headers: UPLOAD, maxBody: { bytes: limits.requestSize, code: 'LIMIT_REQUEST_SIZE' }, storage: true, asks: () => upload,
          refuseEarly: (req) => uploads.refuseEarly(req),
          run: (req, res, _rest, grant) => uploads.receive(req, res, uploaderOf(grant.via), grant.identity),
        },
      },
      allow: 'POST',
    },
    {
      prefix: `${own}_f/`,
      methods: {
        GET: getUpload,
        HEAD: getUpload,
        DELETE: {
          access: 'key', headers: KEYED, path: treePath, storage: true,
          asks: async (rel) => {
            const id = rel.split('/', 1)[0]!;
            return { action: 'delete', id, owner: await uploads.owner(id) };
          },
          run: (req, res, rel) => uploads.remove(req, res, rel),
        },
      },
      allow: 'GET, HEAD, DELETE',
    },
    {
      // Readiness for load balancers: open to anyone (a balancer has no key), and says nothing
      // but ok or which check failed. `_wharf` is a name Wave's own `_x` routes will not take.
      prefix: `${own}_wharf/health`,
      exact: true,
      methods: { GET: health, HEAD: health },
      allow: 'GET, HEAD',
    },
    {
      prefix: `${own}_m/`,
      methods: {
        GET: view,
        HEAD: view,
        POST: {
          access: 'key', headers: PUBLISH, path: streamName, maxBody: { bytes: limits.frameSize + FRAME_FRAMING, code: 'LIMIT_FRAME_SIZE' },
          asks: (stream) => ({ action: 'publish', stream }), run: (req, res, name) => streams.publish(req, res, name),
        },
        DELETE: { access: 'key', headers: KEYED, path: streamName, asks: (stream) => ({ action: 'unpublish', stream }), run: (req, res, name) => streams.end(req, res, name) },
      },
      allow: 'GET, HEAD, POST, DELETE',
    },
    ...p.mappings.map((m): Route => {
      // What another route serves is never served through this one, however reached (docs/protocol.md §3).
      const exclude = [p.dataDir, ...p.mappings.filter((o) => o !== m).map((o) => o.path)];
      const source = createDirectorySource(m.path, { dotfiles: p.dotfiles, syncIo: p.syncIo, exclude });
      const prefix = routePrefix(m.prefix);
      const run: Method['run'] = (req, res, rel) => serve(req, res, source, rel, m.private);
      const get: Method = m.private
        ? { access: 'private', headers: READ, path: files, asks: (rel) => ({ action: 'read-mapping', path: prefix + rel }), run }
        : { access: 'open', headers: READ, path: files, run };
      return { prefix, methods: { GET: get, HEAD: get }, allow: 'GET, HEAD' };
    }),
  ];
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

/**
 * Matches request targets against a route table. What `route` found besides the route is left in
 * `rest` and `flags` (fields of one object, not an object per request).
 */
export interface Router {
  /**
   * The route of a request target, or undefined; `rest` is then what follows its prefix and
   * `flags` what decoding found there. The path is decoded here, once (docs/protocol.md §3):
   * matching the raw path against encoded prefixes let `/n/%69nner/x` miss a private mapping
   * `/n/inner/` and reach a public `/n/` that then decoded it to the private file.
   */
  route(url: string): Route | undefined;
  rest: string;
  flags: number;
}

export function createRouter(routes: readonly Route[]): Router {
  const router: Router = {
    rest: '',
    flags: 0,
    route(url) {
      const raw = pathOf(url);
      if (!raw.includes('%')) {
        router.flags = 0;
        return match(raw, raw.length);
      }
      const decoded = decodePath(raw);
      router.flags = decoded.flags;
      return match(decoded.path, decoded.clean);
    },
  };

  /** The first route whose prefix starts `path` within its first `clean` characters (see `DecodedPath`). */
  function match(path: string, clean: number): Route | undefined {
    for (const route of routes) {
      const p = route.prefix;
      if (path.startsWith(p)) {
        if ((route.exact && path.length !== p.length) || p.length > clean) continue;
        router.rest = path.slice(p.length);
        return route;
      }
      // `/datasets` is the mapping `/datasets/` itself (a directory: 404), `{base}_f` is `{base}_f/`
      // (a prefix without its slash: not a prefix cut short, such as `{base}_wharf/healt`).
      if (path.length === p.length - 1 && p.charCodeAt(path.length) === 47 && p.startsWith(path) && path.length <= clean) {
        router.rest = '';
        return route;
      }
    }
    return undefined;
  }

  return router;
}
