/**
 * The parameter grammar of the headers a multipart body is described with: the request's
 * `Content-Type` (its `boundary`, RFC 2046 §5.1.1) and a part's `Content-Disposition` (`name`,
 * `filename`, and RFC 5987's `filename*` ext-value). Strings in, strings out; no state of a parse.
 */
import { WharfError } from '../common/errors.js';
import { HTAB, SP, TCHAR } from './bytes.js';

// RFC 2046 §5.1.1 bchars (space is allowed, but not as the last character).
const BCHARS = new Uint8Array(128);
for (const c of "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ") BCHARS[c.charCodeAt(0)] = 1;

function noBoundary(why: string): WharfError {
  return new WharfError('MULTIPART_NO_BOUNDARY', why, 400);
}

/** The boundary of a `multipart/form-data` Content-Type, validated against RFC 2046 §5.1.1. */
export function boundaryOf(contentType: string | undefined): string {
  if (contentType === undefined) throw noBoundary('the request has no Content-Type');
  let semi = contentType.indexOf(';');
  if (semi === -1) semi = contentType.length;
  if (!isValue(contentType, 0, semi, 'multipart/form-data')) throw noBoundary('the request is not multipart/form-data');
  let boundary: string | undefined;
  for (let i = semi; ; ) {
    i = nextParameter(contentType, i);
    if (i === END) break;
    if (i < 0) throw noBoundary('the Content-Type parameters cannot be parsed');
    if (isParameter(contentType, 'boundary')) {
      if (boundary !== undefined) throw noBoundary('the Content-Type has two boundaries');
      boundary = contentType.slice(param.valueStart, param.valueEnd);
    }
  }
  if (boundary === undefined) throw noBoundary('the Content-Type has no boundary');
  if (boundary.length < 1 || boundary.length > 70 || boundary.endsWith(' ')) throw noBoundary('the boundary is not 1 to 70 characters');
  for (let i = 0; i < boundary.length; i++) {
    const c = boundary.charCodeAt(i);
    if (c >= 128 || BCHARS[c] !== 1) throw noBoundary('the boundary holds a character RFC 2046 does not allow');
  }
  return boundary;
}

function skipOws(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== SP && c !== HTAB) break;
    i++;
  }
  return i;
}

/** Whether `s[from, to)`, spaces around it aside, is `lower` in any case. */
function isValue(s: string, from: number, to: number, lower: string): boolean {
  from = skipOws(s, from);
  while (to > from && (s.charCodeAt(to - 1) === SP || s.charCodeAt(to - 1) === HTAB)) to--;
  return to - from === lower.length && sameLower(s, from, lower);
}

// `| 0x20` lower-cases ASCII letters and changes none of the other token characters into one.
function sameLower(s: string, from: number, lower: string): boolean {
  if (s.startsWith(lower, from)) return true;
  for (let k = 0; k < lower.length; k++) if ((s.charCodeAt(from + k) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** Where the parameter `nextParameter` read last lies in its string (no allocation per parameter). */
const param = { nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0, quoted: false };
const END = -2;

function isParameter(s: string, lower: string): boolean {
  return param.nameEnd - param.nameStart === lower.length && sameLower(s, param.nameStart, lower);
}

/**
 * Reads the `;`-separated `name=value` parameter of `s` at `i` into `param`: the index after it,
 * `END` when there is none left, -1 when the list is malformed. One pass, no backtracking. A
 * quoted value runs to the next `"`: the HTML spec escapes `"` in form-data names as `%22` and
 * never uses backslash escapes, so a backslash is an ordinary character (Windows paths).
 */
function nextParameter(s: string, i: number): number {
  const n = s.length;
  for (;;) {
    i = skipOws(s, i);
    if (i >= n) return END;
    if (s.charCodeAt(i) !== 59 /* ; */) return -1;
    i = skipOws(s, i + 1);
    if (i >= n) return END;
    if (s.charCodeAt(i) !== 59) break;
  }
  let j = i;
  while (j < n && TCHAR[s.charCodeAt(j)] === 1) j++;
  if (j === i) return -1;
  param.nameStart = i;
  param.nameEnd = j;
  i = skipOws(s, j);
  if (s.charCodeAt(i) !== 61 /* = */) return -1;
  i = skipOws(s, i + 1);
  if (s.charCodeAt(i) === 34 /* " */) {
    const close = s.indexOf('"', i + 1);
    if (close === -1) return -1;
    param.valueStart = i + 1;
    param.valueEnd = close;
    param.quoted = true;
    return close + 1;
  }
  for (j = i; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c === 59 || c === SP || c === HTAB) break;
    if (c === 34) return -1;
  }
  param.valueStart = i;
  param.valueEnd = j;
  param.quoted = false;
  return j;
}

/** What `formDataOf` read last (one record for all: no allocation per part). */
export const disposition = {
  formData: false,
  /** `''` when there is none. */
  name: '',
  filename: undefined as string | undefined,
  filenameStar: undefined as string | undefined,
};

/**
 * A part's `Content-Disposition` as RFC 7578 wants it, `form-data` with a non-empty `name`: null
 * when it is, with `disposition.name` and `disposition.filename` (`filename*` when it decodes)
 * holding what it says; else the error that rejects the parse.
 */
export function formDataOf(cd: string): WharfError | null {
  if (!parseDisposition(cd)) return new WharfError('MULTIPART_MALFORMED_HEADER', 'malformed part header: the Content-Disposition cannot be parsed', 400);
  if (!disposition.formData) return new WharfError('MULTIPART_NO_DISPOSITION', 'a part\'s Content-Disposition is not "form-data"', 400);
  if (disposition.filenameStar !== undefined) {
    const decoded = decodeExtValue(disposition.filenameStar);
    if (decoded !== undefined) disposition.filename = decoded;
    else if (disposition.filename === undefined) return new WharfError('MULTIPART_MALFORMED_HEADER', 'malformed part header: filename* cannot be decoded', 400);
  }
  if (disposition.name === '') return new WharfError('MULTIPART_NO_NAME', 'a part has no name', 400);
  return null;
}

/**
 * `form-data; name="…"; filename="…"; filename*=…` into `disposition`; false when invalid. A
 * repeated `name`, `filename` or `filename*` is ambiguous and makes it invalid; other parameters
 * are skipped.
 */
function parseDisposition(s: string): boolean {
  let semi = s.indexOf(';');
  if (semi === -1) semi = s.length;
  let name: string | undefined;
  let filename: string | undefined;
  let filenameStar: string | undefined;
  for (let i = semi; ; ) {
    i = nextParameter(s, i);
    if (i === END) break;
    if (i < 0) return false;
    const len = param.nameEnd - param.nameStart;
    if (len === 4 && isParameter(s, 'name')) {
      if (name !== undefined) return false;
      name = paramValue(s);
    } else if (len === 8 && isParameter(s, 'filename')) {
      if (filename !== undefined) return false;
      filename = paramValue(s);
    } else if (len === 9 && isParameter(s, 'filename*')) {
      if (filenameStar !== undefined) return false;
      filenameStar = s.slice(param.valueStart, param.valueEnd);
    }
  }
  disposition.formData = isValue(s, 0, semi, 'form-data');
  disposition.name = name ?? '';
  disposition.filename = filename;
  disposition.filenameStar = filenameStar;
  return true;
}

function paramValue(s: string): string {
  const v = s.slice(param.valueStart, param.valueEnd);
  return param.quoted ? unescapeFormData(v) : v;
}

/** The HTML spec's multipart/form-data escapes in quoted names: `%22` `"`, `%0D` CR, `%0A` LF. */
function unescapeFormData(s: string): string {
  let i = s.indexOf('%');
  if (i === -1) return s;
  let out = '';
  let from = 0;
  while (i !== -1) {
    const esc = s.slice(i, i + 3);
    const c = esc === '%22' ? '"' : esc === '%0D' ? '\r' : esc === '%0A' ? '\n' : undefined;
    if (c === undefined) {
      i = s.indexOf('%', i + 1);
      continue;
    }
    out += s.slice(from, i) + c;
    from = i + 3;
    i = s.indexOf('%', from);
  }
  return out + s.slice(from);
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 32;
  return c >= 97 && c <= 102 ? c - 87 : -1;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** RFC 5987 `ext-value`: `charset'[language]'pct-encoded`, UTF-8 or ISO-8859-1; undefined when invalid. */
function decodeExtValue(v: string): string | undefined {
  const a = v.indexOf("'");
  const b = a === -1 ? -1 : v.indexOf("'", a + 1);
  if (b === -1) return undefined;
  const charset = v.slice(0, a).toLowerCase();
  if (charset !== 'utf-8' && charset !== 'iso-8859-1') return undefined;
  const bytes = Buffer.allocUnsafe(v.length - b - 1);
  let n = 0;
  for (let i = b + 1; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 37 /* % */) {
      const hi = hexValue(v.charCodeAt(i + 1));
      const lo = hexValue(v.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      bytes[n++] = (hi << 4) | lo;
      i += 2;
    } else if (c > 32 && c < 127) {
      bytes[n++] = c;
    } else {
      return undefined;
    }
  }
  if (charset === 'iso-8859-1') return bytes.toString('latin1', 0, n);
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    return undefined;
  }
}
