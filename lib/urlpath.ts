// URL path ↔ relative file path, safely. Every file path the server touches goes through
// `toRelPath` exactly once: it decodes once and rejects anything that could name a file outside
// the root before any file system call is made (the real-path check in the source is the second wall).
import { WharfError } from './errors.js';
import { encodeSegment } from './urlnames.js';

const badPath = (why: string): WharfError => new WharfError('BAD_PATH', `bad path: ${why}`, 400);
const notFound = (): WharfError => new WharfError('NOT_FOUND', 'file not found', 404);

/**
 * Turns the still percent-encoded remainder of a URL path into a relative file path (`a/b.txt`).
 *
 * - 400 `BAD_PATH`: malformed percent-encoding (including overlong UTF-8 such as `%c0%ae`, which
 *   `decodeURIComponent` refuses), an encoded separator (`%2F`, `%5C`), a backslash, NUL or any
 *   other control character. None of these ever appears in an honest URL to a file.
 * - 404 `NOT_FOUND`: an empty, `.` or `..` segment (so also a leading `/`, which would make the
 *   path absolute, and a trailing `/`, which names a directory). Decoding happens once, so a
 *   double-encoded `%252e%252e` becomes the literal name `%2e%2e`, which is just a file name.
 */
export function toRelPath(raw: string): string {
  let path = raw;
  if (raw.includes('%')) {
    if (/%(?:2f|5c)/i.test(raw)) throw badPath('encoded separator');
    try {
      path = decodeURIComponent(raw);
    } catch {
      throw badPath('malformed percent-encoding');
    }
  }
  let segStart = 0;
  for (let i = 0; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 47;
    if (c < 32 || c === 127) throw badPath('control character');
    if (c === 92) throw badPath('backslash');
    if (c !== 47) continue;
    const len = i - segStart;
    // '' | '.' | '..'
    if (len === 0 || (path.charCodeAt(segStart) === 46 && (len === 1 || (len === 2 && path.charCodeAt(segStart + 1) === 46)))) {
      throw notFound();
    }
    segStart = i + 1;
  }
  return path;
}

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
