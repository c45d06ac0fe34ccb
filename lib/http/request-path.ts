// URL paths, decoded once. Routing decodes a request's path here, once (`decodePath`), and matches
// routes on the result; each route's rule (`filePath`, `treePath`, the stream name rule) then checks
// what follows its prefix, already decoded. Nothing after routing decodes a path again, so no later
// step can read a path differently from the router (docs/protocol.md §3): a `%69nner` that missed
// a private mapping's prefix cannot turn into `inner` further down.
import { WharfError } from '../common/errors.js';
import { encodeSegment } from '../common/upload-names.js';

const badPath = (why: string): WharfError => new WharfError('BAD_PATH', `bad path: ${why}`, 400);
const notFound = (): WharfError => new WharfError('NOT_FOUND', 'file not found', 404);

/** A segment's escapes are malformed (`%zz`, a lone `%`, overlong UTF-8 such as `%c0%ae`): left undecoded. */
export const MALFORMED = 1;
/** A segment holds an encoded slash (`%2F`): one segment to the router, however it decodes. */
export const ENCODED_SLASH = 2;

/** A request path decoded once; see `decodePath`. */
export interface DecodedPath {
  /** Every segment decoded once, up to the first MALFORMED one; from there on the raw text. */
  path: string;
  /**
   * Length of the leading part of `path` made of whole segments that decoded cleanly (no MALFORMED,
   * no ENCODED_SLASH): a route's prefix must lie inside it, so an encoded slash never acts as the
   * separator of a prefix and a malformed escape never matches one.
   */
  clean: number;
  /** MALFORMED and ENCODED_SLASH, for the segments past `clean`. */
  flags: number;
}

/**
 * Decodes the path of a request target (no query string), segment by segment, exactly once. Called
 * for paths holding a `%` only: any other path is its own decoded form, all clean.
 *
 * Segments are split at the slashes as sent (RFC 3986 §2.2: an encoded `/` is data, not a
 * delimiter). Refusing is left to the route: the router needs the decoded path to know which route
 * the request is for, and a URL that is no route of wharf's must reach the host app untouched.
 */
export function decodePath(raw: string): DecodedPath {
  if (!/%2f/i.test(raw)) {
    try {
      const path = decodeURIComponent(raw);
      return { path, clean: path.length, flags: 0 };
    } catch {
      // some segment is malformed: find which, below
    }
  }
  let path = '';
  let clean = -1;
  let flags = 0;
  let from = 0;
  for (;;) {
    const slash = raw.indexOf('/', from);
    const segment = slash < 0 ? raw.slice(from) : raw.slice(from, slash);
    let decoded = segment;
    if (segment.includes('%')) {
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        if (clean < 0) clean = path.length;
        return { path: path + raw.slice(from), clean, flags: flags | MALFORMED };
      }
      if (decoded.includes('/')) {
        if (clean < 0) clean = path.length;
        flags |= ENCODED_SLASH;
      }
    }
    path += decoded;
    if (slash < 0) return { path, clean: clean < 0 ? path.length : clean, flags };
    path += '/';
    from = slash + 1;
  }
}

/** How a route checks the decoded rest of a path (what follows its prefix); returns what its handler gets. */
export type PathRule = (rest: string, flags: number) => string;

/**
 * The rule of files (uploads and mappings): `rest` must be a relative file path (`a/b.txt`).
 *
 * - 400 `BAD_PATH`: a malformed escape (including overlong UTF-8 such as `%c0%ae`, which
 *   `decodeURIComponent` refuses), an encoded separator (`%2F`, `%5C`), a backslash, NUL or any
 *   other control character. None of these ever appears in an honest URL to a file.
 * - 404 `NOT_FOUND`: an empty, `.` or `..` segment, however it was spelled (`%2e%2e` decodes to `..`
 *   before this looks), so also a leading `/` (which would make the path absolute) and a trailing
 *   `/` (a directory). The path was decoded once, so a double-encoded `%252e%252e` is the literal
 *   name `%2e%2e`, just a file name.
 */
export const filePath: PathRule = (rest, flags) => {
  if (flags !== 0) throw badPath(flags & MALFORMED ? 'malformed percent-encoding' : 'encoded separator');
  let segStart = 0;
  for (let i = 0; i <= rest.length; i++) {
    const c = i < rest.length ? rest.charCodeAt(i) : 47;
    if (c < 32 || c === 127) throw badPath('control character');
    if (c === 92) throw badPath('backslash');
    if (c !== 47) continue;
    const len = i - segStart;
    // '' | '.' | '..'
    if (len === 0 || (rest.charCodeAt(segStart) === 46 && (len === 1 || (len === 2 && rest.charCodeAt(segStart + 1) === 46)))) {
      throw notFound();
    }
    segStart = i + 1;
  }
  return rest;
};

/** `filePath`, or a directory: one trailing `/` is allowed (`DELETE {base}_f/<id>/` names the upload). */
export const treePath: PathRule = (rest, flags) =>
  filePath(rest.charCodeAt(rest.length - 1) === 47 ? rest.slice(0, -1) : rest, flags);

/** True when some segment of a relative path starts with `.` (a dotfile or dot-directory). */
export function hasDotSegment(rel: string): boolean {
  return rel.charCodeAt(0) === 46 || rel.includes('/.');
}

/**
 * A URL prefix given by a person (`/datasets`, `datasets/`, `/my data/`) in canonical form:
 * leading and trailing `/`, no empty, `.` or `..` segment, each segment percent-encoded once.
 * An already-encoded `%20` is decoded first, so `/my%20data/` and `/my data/` are the same.
 */
export function canonicalPrefix(url: string, what: string): string {
  if (/[?#\\\0]/.test(url)) throw new WharfError('INVALID_OPTION', `${what}: "${url}" may not contain ?, #, \\ or NUL`);
  const segments = url.split('/').filter((s) => s !== '');
  const out: string[] = [];
  for (const s of segments) {
    let decoded = s;
    try {
      decoded = decodeURIComponent(s);
    } catch {
      // a lone `%` is a literal percent sign
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/')) {
      throw new WharfError('INVALID_OPTION', `${what}: "${url}" has a "." or ".." segment`);
    }
    out.push(encodeSegment(decoded));
  }
  return out.length ? `/${out.join('/')}/` : '/';
}

/** The decoded form of a canonical prefix: what routing compares a decoded request path with. */
export function routePrefix(canonical: string): string {
  return decodeURIComponent(canonical);
}
