// The route table, as data: every URL wharf answers, with each method's access rule, path rule and
// body limit, and the matching of a request target against it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WharfError } from '../common/errors.js';
import type { Limits } from '../common/limits.js';
import { streamName, type Streams } from '../image-streams/relay.js';
import { createDirectorySource, type StaticEngine } from '../static/engine.js';
import type { Mapping } from '../static/mappings.js';
import type { SyncIo } from '../static/sync-io.js';
import type { UploadVia } from '../uploads/upload-record.js';
import type { Uploads } from '../uploads/route.js';
import { decodePath, filePath, routePrefix, treePath, type PathRule } from './request-path.js';

/** Room for multipart framing around one image-stream frame when refusing early by `Content-Length`. */
const FRAME_FRAMING = 64 * 1024;

/** Who may use a route (see FileServerOptions). */
export type Access = 'open' | 'upload' | 'read' | 'private' | 'key';

/** What let a request in: nothing was needed (`open`), an access key, the `authorize` hook, or `anonymousUploads`. */
export type Via = 'open' | 'key' | 'authorize' | 'anonymous';

export interface Method {
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
   * A refusal decided from the request's headers alone (a quota the `Content-Length` would go over,
   * a malformed header), answered before any body byte is read and before `100 Continue`.
   */
  refuseEarly?(req: IncomingMessage): WharfError | undefined;
  /**
   * Undefined when the answer was given synchronously (a cached file, a 304): no promise to wait on.
   * `via`: what let the request in.
   */
  run(req: IncomingMessage, res: ServerResponse, rest: string, via: Via): Promise<void> | undefined;
}

export interface Route {
  /** Decoded (`/my data/`, not `/my%20data/`): routing compares decoded paths. */
  prefix: string;
  /** Matches only the prefix itself (`{base}_f/`), not what is under it. */
  exact?: boolean;
  methods: Record<string, Method>;
  allow: string;
}

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
  /** With an `authorize` hook, reading an upload needs authorization: its answers are private. */
  uploadsPrivate: boolean;
  dotfiles: boolean;
  syncIo: SyncIo;
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
  return [
    {
      prefix: `${own}_f/`,
      exact: true,
      methods: { POST: { access: 'upload', maxBody: { bytes: limits.requestSize, code: 'LIMIT_REQUEST_SIZE' }, storage: true, refuseEarly: (req) => uploads.refuseEarly(req), run: (req, res, _rest, via) => uploads.receive(req, res, uploaderOf(via)) } },
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
    ...p.mappings.map((m): Route => {
      // What another route serves is never served through this one, however reached (docs/protocol.md §3).
      const exclude = [p.dataDir, ...p.mappings.filter((o) => o !== m).map((o) => o.path)];
      const source = createDirectorySource(m.path, { dotfiles: p.dotfiles, syncIo: p.syncIo, exclude });
      const get: Method = { access: m.private ? 'private' : 'open', path: filePath, run: (req, res, rel) => statics.respond(req, res, source, rel, m.private) };
      return { prefix: routePrefix(m.prefix), methods: { GET: get, HEAD: get }, allow: 'GET, HEAD' };
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
      // `/datasets` is the mapping `/datasets/` itself (a directory: 404), `{base}_f` is `{base}_f/`.
      if (path.length === p.length - 1 && p.startsWith(path) && path.length <= clean) {
        router.rest = '';
        return route;
      }
    }
    return undefined;
  }

  return router;
}
