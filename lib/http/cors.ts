// CORS (docs/protocol.md §4, "Pages on other origins"): which pages on other origins may call
// wharf's routes from a browser, the preflight of each route answered from the route table, and the
// refusal of a state-changing request from an origin not allowed, made before its body is read.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { refuse } from './refuse.js';
import type { Route } from './routes.js';

/** The `cors` option of `createFileServer`: off when absent. */
export interface CorsOptions {
  /**
   * The origins whose pages may call wharf: exact origins as a browser sends them,
   * `scheme://host[:port]` (`http://localhost:5173`, `https://app.example.com`) — no path, no
   * wildcard, no `null` — or a function deciding for each `Origin` header (it gets the header as
   * sent and must not throw).
   */
  origins: readonly string[] | ((origin: string) => boolean);
  /**
   * Let those pages send cookies and HTTP credentials (`fetch(…, { credentials: 'include' })`), as
   * a host app's session through `authorize` needs. Default false. An `Authorization` header the
   * page sets itself (an access key) needs no credentials mode and works either way.
   */
  credentials?: boolean;
  /** How long (seconds) a browser may keep a preflight's answer. Default 600; at most 86400. */
  maxAge?: number;
}

/** Headers a cross-origin page may read from wharf's answers (beyond the CORS-safelisted ones). */
const EXPOSE = 'Content-Length, Content-Range, Content-Disposition, Accept-Ranges, ETag, Last-Modified, Location, Allow, WWW-Authenticate, Retry-After';
const DEFAULT_MAX_AGE = 600;
const MAX_MAX_AGE = 86_400;
/** Methods that change nothing: a page on an origin not allowed still gets them, only unreadable to it. */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

const invalid = (message: string): WharfError => new WharfError('INVALID_OPTION', `cors: ${message}`);

/**
 * Checks the `cors` option. Origins are exact: a browser's `Origin` is compared as a string, so a
 * trailing `/`, a path, a default port or capitals would never match and are refused here, with the
 * form that would. `*` is refused too: it would let any page on the web use the upload routes with a
 * key it holds, and every read from any site; a function that returns true is the explicit way.
 */
export function checkCors(o: unknown): void {
  if (o === undefined) return;
  if (o === null || typeof o !== 'object') throw invalid('expected { origins, credentials?, maxAge? }');
  const c = o as Record<string, unknown>;
  for (const k of Object.keys(c)) if (k !== 'origins' && k !== 'credentials' && k !== 'maxAge') throw invalid(`unknown field "${k}"`);
  if (c.credentials !== undefined && typeof c.credentials !== 'boolean') throw invalid('credentials: expected true or false');
  if (c.maxAge !== undefined && (!Number.isInteger(c.maxAge) || (c.maxAge as number) < 0 || (c.maxAge as number) > MAX_MAX_AGE)) {
    throw invalid(`maxAge: expected whole seconds, 0..${MAX_MAX_AGE}`);
  }
  if (typeof c.origins === 'function') return;
  if (!Array.isArray(c.origins) || c.origins.length === 0) throw invalid('origins: expected a non-empty list of origins or a function');
  for (const origin of c.origins as unknown[]) checkOrigin(origin);
}

function checkOrigin(origin: unknown): void {
  if (typeof origin !== 'string') throw invalid('origins: each must be a string such as "http://localhost:5173"');
  if (origin.includes('*')) throw invalid(`origins: "${origin}": no wildcards; list each origin, or pass a function`);
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw invalid(`origins: "${origin}" is not an origin such as "https://app.example.com"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`origins: "${origin}": only http and https pages have an origin`);
  if (url.origin !== origin) throw invalid(`origins: "${origin}" is not as a browser sends it: write "${url.origin}"`);
}

/** Applies CORS to one request on a wharf route: true when it has been answered (a preflight, a refusal). */
export type CorsCheck = (req: IncomingMessage, res: ServerResponse, route: Route) => boolean;

export function createCors(o: CorsOptions): CorsCheck {
  const list = typeof o.origins === 'function' ? undefined : new Set(o.origins);
  const test = typeof o.origins === 'function' ? o.origins : undefined;
  const allowed = (origin: string): boolean => (list !== undefined ? list.has(origin) : test!(origin) === true);
  const maxAge = String(o.maxAge ?? DEFAULT_MAX_AGE);
  const credentials = o.credentials === true;

  return (req, res, route) => {
    // Every answer of a CORS server depends on Origin, refusals and 304s too: a cache must not hand
    // one origin's answer (with or without Access-Control-Allow-Origin) to another.
    res.setHeader('Vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined || sameOrigin(req, origin)) return false;
    const method = req.method ?? '';
    if (!allowed(origin)) {
      if (SAFE.has(method) && !isPreflight(req)) return false; // served, but unreadable by that page
      refuse(req, res, new WharfError('CORS_ORIGIN_REFUSED', `pages on ${origin.slice(0, 200)} may not call this server (see the cors option)`, 403));
      return true;
    }
    res.setHeader('Access-Control-Allow-Origin', origin);
    if (credentials) res.setHeader('Access-Control-Allow-Credentials', 'true');
    if (!isPreflight(req)) {
      res.setHeader('Access-Control-Expose-Headers', EXPOSE);
      return false;
    }
    // Any text may stand in this header (`constructor`…): only the route's own methods count.
    const name = String(req.headers['access-control-request-method']);
    const asked = Object.hasOwn(route.methods, name) ? route.methods[name] : undefined;
    if (asked === undefined) {
      refuse(req, res, new WharfError('METHOD_NOT_ALLOWED', `${name.slice(0, 20)} is not allowed here`, 405), { Allow: route.allow });
      return true;
    }
    res.writeHead(204, {
      Vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      'Access-Control-Allow-Methods': route.allow,
      'Access-Control-Allow-Headers': asked.headers.join(', '),
      'Access-Control-Max-Age': maxAge,
      'Cache-Control': 'no-store',
    });
    res.end();
    return true;
  };
}

/** A preflight: an `OPTIONS` naming the method the page means to send. */
const isPreflight = (req: IncomingMessage): boolean => req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;

/**
 * A page of this very server (browsers send `Origin` on its own POSTs too): the browser says so in
 * `Sec-Fetch-Site`, or, for one that does not send it, the origin names the `Host` asked for.
 */
function sameOrigin(req: IncomingMessage, origin: string): boolean {
  if (req.headers['sec-fetch-site'] === 'same-origin') return true;
  const host = req.headers.host;
  if (host === undefined) return false;
  const at = origin.indexOf('://');
  return at > 0 && origin.slice(at + 3) === host.toLowerCase();
}
