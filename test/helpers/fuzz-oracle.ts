// The differential oracle of the multipart fuzzer: busboy run on the same input, and the
// classification of every way the two outcomes can relate (see `classify`). test/helpers/fuzz-gen.ts makes
// the inputs and runs wharf on them.
import { createRequire } from 'node:module';
import type { MultipartLimits } from '../../lib/multipart/parser.js';
import { WharfError } from '../../lib/common/errors.js';
import { DEFAULT_FUZZ, makeCase, runWharf, type FuzzCase, type FuzzOptions, type WharfResult, type WharfPart } from './fuzz-gen.js';

const require = createRequire(import.meta.url);
// busboy is CommonJS; its `utils` are used only to explain disagreements (how busboy itself reads a header).
const busboy = require('busboy') as typeof import('busboy');
const busboyUtils = require('busboy/lib/utils.js') as {
  parseDisposition(str: string, decoder: (s: string, hint: number) => string | undefined): { type: string; params: Record<string, string> } | undefined;
  parseContentType(str: string): { type: string; subtype: string; params: Record<string, string> } | undefined;
  getDecoder(charset: string): (s: string, hint: number) => string | undefined;
  convertToUTF8(data: Buffer, charset: string, hint: number): string | undefined;
};

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

// ---------------------------------------------------------------------------------------------
// busboy

export interface BusboyPart {
  kind: 'file' | 'field';
  name: string | undefined;
  filename: string | undefined;
  mimeType: string;
  bytes: Buffer | null;
  value: string | null;
  truncated: boolean;
}

export interface BusboyResult {
  parts: BusboyPart[];
  error: Error | undefined;
  /** Limits busboy reported: `fileSize`, `fieldSize`, `parts`, `files`, `fields`. */
  limited: Set<string>;
  /** busboy never finished (it has such bugs): the case is checked for wharf's own guarantees only. */
  hung: boolean;
}

function upToClose(body: Buffer, boundary: string): Buffer {
  const close = Buffer.from(`--${boundary}--`, 'latin1');
  if (body.subarray(0, close.length).equals(close)) return body.subarray(0, close.length);
  const at = body.indexOf(Buffer.from(`\r\n--${boundary}--`, 'latin1'));
  return at === -1 ? body : body.subarray(0, at + 2 + close.length);
}

/**
 * busboy with limits translated to wharf's meaning: busboy reports `fileSize`/`fieldSize` when a part
 * *reaches* its limit and `parts` when the Nth part *ends*, wharf refuses a part *over* its limit and
 * the (N+1)th part when its headers are complete; so busboy gets +1 on those, the same on files/fields.
 */
export function runBusboy(c: FuzzCase, opts: FuzzOptions = DEFAULT_FUZZ): Promise<BusboyResult> {
  const limits = opts.limits;
  const result: BusboyResult = { parts: [], error: undefined, limited: new Set(), hung: false };
  return new Promise((resolve) => {
    let bb: ReturnType<typeof busboy>;
    try {
      bb = busboy({
        headers: { 'content-type': c.contentType },
        preservePath: true,
        defParamCharset: 'utf8',
        limits: { fileSize: limits.fileSize + 1, fieldSize: limits.fieldSize + 1, parts: limits.parts + 1, files: limits.files, fields: limits.fields, headerPairs: 2000 },
      });
    } catch (err) {
      result.error = err as Error;
      resolve(result);
      return;
    }
    let pendingFiles = 0;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (): void => {
      if (closed && pendingFiles === 0) {
        clearTimeout(timer);
        resolve(result);
      }
    };
    bb.on('file', (name, stream, info) => {
      const rec: BusboyPart = { kind: 'file', name, filename: info.filename, mimeType: info.mimeType, bytes: null, value: null, truncated: false };
      result.parts.push(rec);
      const chunks: Buffer[] = [];
      pendingFiles++;
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        rec.bytes = Buffer.concat(chunks);
        pendingFiles--;
        settle();
      };
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('limit', () => {
        rec.truncated = true;
        result.limited.add('fileSize');
      });
      stream.on('error', finish);
      stream.on('end', finish);
      stream.on('close', finish);
    });
    bb.on('field', (name, value, info) => {
      result.parts.push({ kind: 'field', name, filename: undefined, mimeType: info.mimeType, bytes: null, value, truncated: info.valueTruncated });
      if (info.valueTruncated) result.limited.add('fieldSize');
    });
    bb.on('partsLimit', () => result.limited.add('parts'));
    bb.on('filesLimit', () => result.limited.add('files'));
    bb.on('fieldsLimit', () => result.limited.add('fields'));
    bb.on('error', (err: Error) => {
      result.error ??= err;
    });
    bb.on('close', () => {
      closed = true;
      settle();
    });
    // Whole, and only up to the first close-delimiter: busboy 1.6 stops at the close-delimiter only
    // for later writes and goes on parsing parts from the rest of the one it is in (where it can also
    // stall for good, a file stream never ended); the epilogue is to be ignored (RFC 2046 §5.1.1).
    bb.end(upToClose(c.body, c.boundary));
    timer = setTimeout(() => {
      result.hung = true;
      resolve(result);
    }, Math.min(opts.timeoutMs, 2000));
  });
}

// ---------------------------------------------------------------------------------------------
// Classification

/**
 * The outcome categories. `ok: false` fails the test.
 *
 * Agreement
 * - `same`: both parsers return the same parts (name, filename, bytes; field values compared as busboy
 *   decodes them).
 * - `both-reject:<code>`: busboy errors (unexpected end, malformed header) and wharf rejects with a
 *   typed error; every part wharf finished before is one busboy returned too.
 * - `both-limit:<code>`: wharf refuses with LIMIT_* (413) and busboy reports that same limit.
 * - `aborted`: the consumer stopped early (`break`); only the no-crash/no-hang/memory checks apply.
 *
 * wharf strict, busboy lenient (wharf rejects, busboy returns parts); each requires evidence in the input:
 * - `strict:malformed-delimiter`: a delimiter followed by junk; RFC 2046 forbids it, busboy silently
 *   drops the bytes up to the next delimiter.
 * - `strict:folded-header`: an obs-fold header line (RFC 9112 §5.2), which busboy unfolds.
 * - `strict:delimiter-in-headers`: a header line that begins with the dash-boundary: a delimiter
 *   where RFC 2046 forbids one (inside a part); busboy takes it as the end of the part.
 * - `strict:malformed-header-line`: a header line without a colon, with a control character or a
 *   bare LF. busboy errors on it too, except when a delimiter follows inside the header block: it
 *   searches for delimiters everywhere, headers included, and takes one there as the part's end.
 * - `strict:repeated-header`: a second Content-Disposition/Content-Type; busboy takes the first.
 * - `strict:disposition-grammar`: a Content-Disposition wharf cannot parse unambiguously (a repeated
 *   parameter, a backslash escape, a quote in a token); busboy takes the first/unescapes/skips the part.
 * - `strict:no-disposition`: a part without `Content-Disposition: form-data`; busboy skips it silently.
 * - `strict:no-name`: a part without a name; busboy returns it with `name` undefined.
 * - `strict:header-too-large`: a header block over `headerSize`; busboy's cap is a fixed 16 KiB.
 * - `strict:bad-filename-star`: an undecodable `filename*` with no `filename`; busboy skips the part.
 * - `strict:limit-<limit>`: wharf refuses a count/size over its limit where busboy counted otherwise:
 *   evidence is a part busboy drops or classifies differently (`filename=""`, a nameless
 *   octet-stream part, a disposition it cannot parse, a padded delimiter, a headers-only part).
 *
 * Both return parts, different ones; each requires evidence in the input:
 * - `differ:transport-padding`: a delimiter followed by spaces/tabs before its CRLF, which RFC 2046
 *   §5.1.1 allows; wharf reads that part, busboy drops it.
 * - `differ:headers-only-part`: a dash-boundary right after a header block's blank line. RFC 2046's
 *   `body-part := MIME-part-headers [CRLF *OCTET]` makes that the end of a part with no body (the
 *   blank line's CRLF is the delimiter's); wharf reads it so, busboy reads it as body bytes. What
 *   follows is then read differently by the two (either may see an error the other does not).
 * - `differ:delimiter-opens-headers`: a delimiter line followed at once by another dash-boundary
 *   (`--B CRLF --B`). The CRLF ends the first delimiter line, so the second `--B` starts a header
 *   block, where it is no header (wharf refuses it, or runs out of input in it); busboy, which
 *   searches for `CRLF --B` everywhere, uses that CRLF twice and reads an empty part.
 * - `differ:busboy-skips-disposition`: a Content-Disposition busboy cannot parse (an unquoted value
 *   that is not a token, `filename*` in a charset it rejects, …) but wharf can; busboy drops the part.
 * - `differ:empty-filename`: `filename=""`; busboy drops the empty filename and makes the part a field.
 * - `differ:quoted-escapes`: `%22`/`%0D`/`%0A` in a quoted name (HTML's escapes, decoded by wharf) or
 *   a backslash (kept by wharf, as Windows paths need; busboy unescapes).
 * - `differ:filename-star-fallback`: a `filename*` that is not valid RFC 8187 UTF-8; wharf falls back
 *   to `filename` (RFC 6266 §4.3: use the one understood), busboy decodes it lossily (U+FFFD).
 * - `differ:octet-stream-field`: a part without filename but `Content-Type: application/octet-stream`;
 *   busboy makes it a file with no name (and applies fileSize), wharf a field (fieldSize).
 *
 * Failures: `unexplained:…`, `untyped-error`, `hang`, `memory:…`, and `consumer-dependent`: the
 * outcome changed with how the consumer read the parts (every case that does not stream every body
 * is run a second time streaming every body; both runs must end alike).
 */
export interface Verdict {
  category: string;
  ok: boolean;
  detail: string;
}

const LIMIT_OF: Record<string, string> = {
  LIMIT_FILE_SIZE: 'fileSize',
  LIMIT_FIELD_SIZE: 'fieldSize',
  LIMIT_PARTS: 'parts',
  LIMIT_FILES: 'files',
  LIMIT_FIELDS: 'fields',
};

const utf8Decoder = busboyUtils.getDecoder('utf8');

interface Block {
  lines: string[];
  /** Its bytes up to the blank line (or the end of the input). */
  bytes: number;
  /** Transport padding between the delimiter and its CRLF. */
  padding: number;
}

/**
 * The header blocks of `body` as a naive reader sees them: after every `--boundary` line (with or
 * without padding), up to the first blank line. Evidence only: it finds blocks a real parser would
 * never reach, which is fine for "the input contains X".
 */
function headerBlocks(body: Buffer, boundary: string): Block[] {
  const data = Buffer.concat([CRLF, body]);
  const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const blocks: Block[] = [];
  for (let i = data.indexOf(d); i !== -1; i = data.indexOf(d, i + 1)) {
    let j = i + d.length;
    while (data[j] === 32 || data[j] === 9) j++;
    const padding = j - i - d.length;
    if (data[j] !== 13 || data[j + 1] !== 10) continue;
    const start = j + 2;
    if (data[start] === 13 && data[start + 1] === 10) {
      blocks.push({ lines: [], bytes: 0, padding });
      continue;
    }
    const end = data.indexOf(CRLFCRLF, start);
    const raw = data.subarray(start, end === -1 ? data.length : end);
    blocks.push({ lines: raw.toString('latin1').split('\r\n'), bytes: raw.length, padding });
  }
  return blocks;
}

function paddedDelimiter(body: Buffer, boundary: string): boolean {
  const data = Buffer.concat([CRLF, body]);
  const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
  for (let i = data.indexOf(d); i !== -1; i = data.indexOf(d, i + 1)) {
    const k = i + d.length;
    if (data[k] === 32 || data[k] === 9) return true;
  }
  return false;
}

/** A dash-boundary right after a header block's blank line: the end of a part of headers only (RFC 2046 §5.1.1's `body-part := MIME-part-headers [CRLF *OCTET]`), which busboy reads as the first bytes of the body instead. */
function headersOnlyPart(body: Buffer, boundary: string): boolean {
  return body.includes(Buffer.from(`\r\n\r\n--${boundary}`, 'latin1'));
}

function junkAfterDelimiter(body: Buffer, boundary: string): boolean {
  const data = Buffer.concat([CRLF, body]);
  const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
  for (let i = data.indexOf(d); i !== -1; i = data.indexOf(d, i + 1)) {
    let k = i + d.length;
    if (k >= data.length) continue;
    if (data[k] === 45 && data[k + 1] === 45) continue;
    if (data[k] === 45 && k + 1 >= data.length) continue;
    while (data[k] === 32 || data[k] === 9) k++;
    if (k >= data.length) continue;
    if (data[k] === 13 && (data[k + 1] === 10 || k + 1 >= data.length)) continue;
    return true;
  }
  return false;
}

const headerLines = (b: Block, name: string): string[] =>
  // Only SP and HTAB are whitespace here (RFC 9110 OWS); String#trim would also eat NBSP and friends.
  b.lines.filter((l) => l.slice(0, l.indexOf(':')).toLowerCase() === name).map((l) => l.slice(l.indexOf(':') + 1).replace(/^[ \t]+|[ \t]+$/g, ''));

function dispositionOf(b: Block): string | undefined {
  return headerLines(b, 'content-disposition')[0];
}

/** How busboy reads a Content-Disposition value (raw latin1, as its header parser keeps it). */
function busboyDisposition(raw: string): { type: string; params: Record<string, string> } | undefined {
  return busboyUtils.parseDisposition(raw, utf8Decoder);
}

/** A Content-Disposition that busboy parses, that wharf refuses: for the reasons wharf documents. */
function wharfOnlyRefusal(raw: string): boolean {
  const params = [...raw.matchAll(/;\s*([^\s=;]+)\s*=/g)].map((m) => m[1]!.toLowerCase());
  if (new Set(params).size !== params.length) return true; // a repeated parameter
  if (raw.includes('\\')) return true; // a backslash escape busboy honours and wharf does not
  if (/=[^";]*"/.test(raw) || /"[^"]*"[^;\s]/.test(raw)) return true; // a quote inside a token or after a quoted string
  return false;
}

function explainStrict(c: FuzzCase, limits: MultipartLimits, code: string, message: string): string | undefined {
  const blocks = (): Block[] => headerBlocks(c.body, c.boundary);
  switch (code) {
    case 'MULTIPART_MALFORMED_DELIMITER':
      return junkAfterDelimiter(c.body, c.boundary) ? 'strict:malformed-delimiter' : undefined;
    case 'MULTIPART_HEADER_TOO_LARGE':
      // wharf counts a delimiter's padding, the header lines with their CRLFs and the blank line.
      return blocks().some((b) => b.padding + b.bytes + 4 > limits.headerSize) ? 'strict:header-too-large' : undefined;
    case 'MULTIPART_NO_DISPOSITION':
      return blocks().some((b) => {
        const cd = dispositionOf(b);
        return cd === undefined || busboyDisposition(cd)?.type !== 'form-data';
      })
        ? 'strict:no-disposition'
        : undefined;
    case 'MULTIPART_NO_NAME':
      return blocks().some((b) => {
        const cd = dispositionOf(b);
        return cd !== undefined && !busboyDisposition(cd)?.params.name;
      })
        ? 'strict:no-name'
        : undefined;
    case 'MULTIPART_MALFORMED_HEADER':
      if (blocks().some((b) => b.lines.some((l) => l.startsWith(`--${c.boundary}`)))) return 'strict:delimiter-in-headers';
      if (message.includes('space or tab')) return blocks().some((b) => b.lines.some((l) => l.startsWith(' ') || l.startsWith('\t'))) ? 'strict:folded-header' : undefined;
      if (message.includes('repeated')) return blocks().some((b) => headerLines(b, 'content-disposition').length > 1 || headerLines(b, 'content-type').length > 1) ? 'strict:repeated-header' : undefined;
      if (message.includes('filename*')) return blocks().some((b) => /filename\*/i.test(dispositionOf(b) ?? '')) ? 'strict:bad-filename-star' : undefined;
      if (message.includes('no name and colon') || message.includes('control character') || message.includes('bare LF')) {
        // busboy errors on these too, unless a delimiter follows inside the header block: it searches
        // for delimiters everywhere and takes that as the end of the part.
        return blocks().some((b) => b.lines.some((l) => l !== '' && (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/.test(l) || /[\x00-\x08\x0a-\x1f\x7f]/.test(l))))
          ? 'strict:malformed-header-line'
          : undefined;
      }
      if (message.includes('cannot be parsed')) {
        return blocks().some((b) => {
          const cd = dispositionOf(b);
          return cd !== undefined && (busboyDisposition(cd) === undefined || wharfOnlyRefusal(cd));
        })
          ? 'strict:disposition-grammar'
          : undefined;
      }
      return undefined;
    default: {
      const limit = LIMIT_OF[code];
      if (limit === undefined) return undefined;
      // busboy counted or sized that part otherwise: it dropped it, or took a field for a file.
      return countedOtherwise(c) ? `strict:limit-${limit}` : undefined;
    }
  }
}

/** A header block busboy classifies otherwise than wharf: `filename=""` (a field to busboy), a nameless octet-stream (a file to busboy), a disposition it cannot parse (dropped). */
function countedOtherwise(c: FuzzCase): boolean {
  if (structural(c) !== undefined) return true;
  return headerBlocks(c.body, c.boundary).some((b) => {
    const cd = dispositionOf(b);
    if (cd === undefined) return false;
    const parsed = busboyDisposition(cd);
    if (parsed === undefined) return true;
    if (parsed.params.filename === '' && parsed.params['filename*'] === undefined) return true;
    return parsed.params.filename === undefined && headerLines(b, 'content-type').some((t) => /^application\/octet-stream/i.test(t));
  });
}

function codeOf(err: unknown): string | undefined {
  return err instanceof WharfError ? err.code : undefined;
}

/** Does an RFC 8187 ext-value decode as strict UTF-8/ISO-8859-1 (what wharf requires before it prefers it to `filename`)? */
function strictExtValue(v: string): boolean {
  const m = /^(utf-8|iso-8859-1)'[^']*'((?:%[0-9a-f]{2}|[!#$&+.^_`|~0-9a-z-])*)$/i.exec(v);
  if (!m) return false;
  if (m[1]!.toLowerCase() === 'iso-8859-1') return true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(m[2]!.replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1'));
    return true;
  } catch {
    return false;
  }
}

/** Does wharf's finished part `wp` carry what busboy's part `bp` carries? */
function samePart(wp: WharfPart, bp: BusboyPart): boolean {
  if (wp.name !== bp.name) return false;
  if (wp.filename !== bp.filename) return false;
  if (wp.how === 'skip') return true;
  if (bp.kind === 'file') {
    if (wp.bytes !== null) return wp.bytes.equals(bp.bytes ?? Buffer.alloc(0));
    return wp.text === (bp.bytes ?? Buffer.alloc(0)).toString('utf8');
  }
  // busboy decodes a field with its part's charset (utf-8 unless the part says otherwise).
  const type = wp.headers['content-type'];
  const charset = (type === undefined ? undefined : busboyUtils.parseContentType(type)?.params.charset?.toLowerCase()) ?? 'utf8';
  const bytes = wp.bytes ?? Buffer.from(wp.text ?? '', 'utf8');
  if (wp.text !== null && charset !== 'utf8' && charset !== 'utf-8') return true; // text() decodes as UTF-8 by contract
  return busboyUtils.convertToUTF8(bytes, charset, 0) === bp.value;
}

/**
 * A delimiter line followed at once by the dash-boundary: `--B CRLF --B`. The CRLF ends the first
 * delimiter line, so the second `--B` begins a header block (and is no header); busboy, searching for
 * `CRLF --B` everywhere, takes that CRLF a second time and reads an empty part and a delimiter.
 */
function delimiterOpensHeaders(body: Buffer, boundary: string): boolean {
  const data = Buffer.concat([CRLF, body]);
  const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
  for (let i = data.indexOf(d); i !== -1; i = data.indexOf(d, i + 1)) {
    let k = i + d.length;
    while (data[k] === 32 || data[k] === 9) k++;
    if (data.subarray(k, k + d.length).equals(d)) return true;
  }
  return false;
}

/** Inputs the two parsers read differently by design, whatever else happens in them. */
function structural(c: FuzzCase): string | undefined {
  if (paddedDelimiter(c.body, c.boundary)) return 'differ:transport-padding';
  if (headersOnlyPart(c.body, c.boundary)) return 'differ:headers-only-part';
  if (delimiterOpensHeaders(c.body, c.boundary)) return 'differ:delimiter-opens-headers';
  return undefined;
}

function explainDiffer(c: FuzzCase, w: WharfResult, b: BusboyResult): string | undefined {
  const s = structural(c);
  if (s !== undefined) return s;
  for (const wp of w.parts) {
    const cd = wp.headers['content-disposition'] ?? '';
    const raw = Buffer.from(cd, 'utf8').toString('latin1');
    if (busboyDisposition(raw) === undefined) return 'differ:busboy-skips-disposition';
    if (wp.filename === '') return 'differ:empty-filename';
    if (/%22|%0d|%0a|\\/i.test(cd)) return 'differ:quoted-escapes';
    const star = /filename\*\s*=\s*([^;\s]*)/i.exec(cd)?.[1];
    if (star !== undefined && !strictExtValue(star)) return 'differ:filename-star-fallback';
    if (wp.filename === undefined && /application\/octet-stream/i.test(wp.headers['content-type'] ?? '')) return 'differ:octet-stream-field';
  }
  if (b.parts.some((p) => p.kind === 'file' && p.filename === undefined)) return 'differ:octet-stream-field';
  return undefined;
}

/** wharf's parts that finished cleanly must be busboy's first parts, in order. */
function prefixHolds(w: WharfResult, b: BusboyResult): boolean {
  const done = w.parts.filter((p) => p.bodyError === undefined);
  // An untouched last part may be the one the error cut short (busboy returns a field only at its end).
  if (done.length > 0 && done[done.length - 1]!.how === 'skip' && done[done.length - 1] === w.parts[w.parts.length - 1]) done.pop();
  return done.every((p, i) => b.parts[i] !== undefined && samePart(p, b.parts[i]!));
}

export function classify(c: FuzzCase, w: WharfResult, b: BusboyResult, opts: FuzzOptions = DEFAULT_FUZZ): Verdict {
  const fail = (category: string, detail: string): Verdict => ({ category, ok: false, detail });
  if (w.hung) return fail('hang', `no answer within ${opts.timeoutMs} ms`);
  if (w.violations.length > 0) return fail('memory', w.violations.join('; '));
  if (c.hugeAt !== undefined && w.error !== undefined) {
    // Past the endless header's start, the parser may read headerSize of it, plus the chunk it was
    // in, and the source may hold one more chunk ahead.
    const bound = c.hugeAt + opts.limits.headerSize + 3 * w.maxChunk + 256;
    if (w.pulled > bound) return fail('memory', `read ${w.pulled} bytes into an endless header line starting at ${c.hugeAt} (bound ${bound})`);
  }
  const errors = [w.error, ...w.parts.map((p) => p.bodyError)].filter((e) => e !== undefined);
  for (const e of errors) {
    if (!(e instanceof WharfError) || typeof e.code !== 'string' || !(e.status >= 400 && e.status < 500)) {
      return fail('untyped-error', `${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    }
  }
  if (w.aborted) return { category: 'aborted', ok: true, detail: '' };
  if (b.hung) return { category: 'busboy-hung', ok: true, detail: '' };
  // A body error without the iteration rejecting would be a silent loss.
  if (w.error === undefined && w.parts.some((p) => p.bodyError !== undefined)) return fail('unexplained:body-error-but-iteration-ok', String(w.parts.find((p) => p.bodyError)?.bodyError));

  if (w.error !== undefined) {
    const code = codeOf(w.error)!;
    const message = (w.error as Error).message;
    const limit = LIMIT_OF[code];
    if (limit !== undefined && b.limited.has(limit)) {
      return prefixHolds(w, b) || explainDiffer(c, w, b) !== undefined ? { category: `both-limit:${code}`, ok: true, detail: '' } : fail(`unexplained:limit-prefix:${code}`, 'parts before the limit differ');
    }
    if (b.error !== undefined) {
      if (prefixHolds(w, b)) return { category: `both-reject:${code}`, ok: true, detail: '' };
      const why = explainDiffer(c, w, b) ?? explainStrict(c, opts.limits, code, message);
      return why !== undefined ? { category: `both-reject:${code}`, ok: true, detail: why } : fail(`unexplained:reject-prefix:${code}`, `${message} / busboy: ${b.error.message}`);
    }
    const why = explainStrict(c, opts.limits, code, message) ?? structural(c);
    if (why !== undefined) return { category: why, ok: true, detail: message };
    return fail(`unexplained:strict:${code}`, `${message} (busboy returned ${b.parts.length} parts${b.limited.size ? `, limited ${[...b.limited].join(',')}` : ''})`);
  }

  // wharf returned parts.
  if (b.error !== undefined) {
    const why = explainDiffer(c, w, b);
    if (why !== undefined) return { category: why, ok: true, detail: `busboy: ${b.error.message}` };
    return fail('unexplained:lenient', `busboy: ${b.error.message}; wharf: ${w.parts.length} parts`);
  }
  const mustLimit = [...b.limited];
  const same = w.parts.length === b.parts.length && w.parts.every((p, i) => samePart(p, b.parts[i]!));
  if (same && mustLimit.length === 0) return { category: 'same', ok: true, detail: '' };
  const why = explainDiffer(c, w, b);
  if (why !== undefined) return { category: why, ok: true, detail: '' };
  if (mustLimit.length > 0) return fail('unexplained:limit-not-enforced', `busboy hit ${mustLimit.join(',')}, wharf returned ${w.parts.length} parts`);
  return fail('unexplained:differ', `wharf ${w.parts.length} parts, busboy ${b.parts.length}`);
}

/**
 * How parts are consumed must not change the outcome: the same error (or none) and the same part
 * names whether each body is streamed, read as text, read slowly or left untouched.
 */
function consumerIndependent(w: WharfResult, ref: WharfResult): string | undefined {
  const code = (r: WharfResult): string => (r.error === undefined ? 'ok' : codeOf(r.error) ?? 'untyped');
  if (code(w) !== code(ref)) return `outcome ${code(w)} when consumed as the case does, ${code(ref)} when every body is streamed`;
  const names = (r: WharfResult): string => JSON.stringify(r.parts.map((p) => p.name));
  if (names(w) !== names(ref)) return `parts ${names(w)} when consumed as the case does, ${names(ref)} when every body is streamed`;
  return undefined;
}

export async function runCase(seed: number, opts: FuzzOptions = DEFAULT_FUZZ): Promise<Verdict & { case: FuzzCase }> {
  const c = makeCase(seed, opts);
  const [w, b] = await Promise.all([runWharf(c, opts), runBusboy(c, opts)]);
  if (!w.aborted && !w.hung && c.consume.some((k) => k !== 'stream')) {
    const ref = await runWharf({ ...c, consume: ['stream'] }, opts);
    const why = ref.hung ? undefined : consumerIndependent(w, ref);
    if (why !== undefined) return { category: 'consumer-dependent', ok: false, detail: why, case: c };
  }
  return { ...classify(c, w, b, opts), case: c };
}

