// The answer for one file: conditionals (RFC 9110 §13), ranges (§14), the headers, the end-user
// (untrusted) view of a file, and the body from memory or from an open file.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import { WharfError, fromFsError } from '../common/errors.js';
import { contentTypeFor } from '../common/mime.js';
import { sendError } from '../http/answer.js';
import { UNTRUSTED_CSP, untrustedView } from '../uploads/upload-record.js';
import { attachment } from './disposition.js';
import type { FileInfo, OpenFile } from './engine.js';
import { pumpFile, type PumpedFile } from './file-pump.js';

/** Answers up to this many bytes from a file not in memory are read in one go instead of streamed. */
const SMALL_READ = 64 * 1024;

/** A file as answered: validators and type computed once, body kept when small. */
export interface Representation {
  size: number;
  mtimeMs: number;
  ino: number;
  etag: string;
  lastModified: string;
  /** The Content-Type sent. */
  type: string;
  /** See `OpenFile.untrusted`. */
  untrusted: boolean;
  /** The Content-Disposition sent when the URL asks for none (`?download`), if any. */
  disposition: string | undefined;
  /** The whole file, or null for a file too big to keep (its validators still answer 304s cheaply). */
  data: Buffer | null;
  /** See `OpenFile.expiresAt`. */
  expiresAt: number | undefined;
}

/** The representation of the file `rel` of `info`, with `data` its bytes if they are kept. */
export function representationOf(info: FileInfo, rel: string, data: Buffer | null, untrusted: boolean, expiresAt?: number): Representation {
  let type = contentTypeFor(rel);
  let disposition: string | undefined;
  if (untrusted) {
    const view = untrustedView(type);
    type = view.type;
    if (view.attachment) disposition = attachment(basename(rel));
  }
  return {
    size: info.size,
    mtimeMs: info.mtimeMs,
    ino: info.ino,
    etag: etagOf(info, untrusted),
    lastModified: new Date(info.mtimeMs).toUTCString(),
    type,
    untrusted,
    disposition,
    data,
    expiresAt,
  };
}

/**
 * Writes the answer for `e`, its body from `e.data` or from `file` (which this then owns).
 * `cacheControl` is the one this answer carries (public or private); `stallMs`, see `watchStall`.
 */
export function answer(req: IncomingMessage, res: ServerResponse, e: Representation, rel: string, file: OpenFile | null, cacheControl: string, stallMs: number): void {
  const h = req.headers;
  const cond = isConditional(h) ? precondition(h, e.etag, e.mtimeMs) : 0;
  if (cond !== 0) {
    void file?.close();
    answerPrecondition(res, e, cond, cacheControl);
    return;
  }
  let start = 0;
  let end = e.size - 1;
  let status = 200;
  const span = spanOf(req, e);
  if (span === UNSATISFIABLE) {
    void file?.close();
    sendError(res, new WharfError('RANGE_NOT_SATISFIABLE', 'range not satisfiable', 416), { 'Content-Range': `bytes */${e.size}` });
    return;
  }
  if (span !== null) {
    [start, end] = span;
    status = 206;
  }
  const headers = headersOf(req, e, rel, cacheControl, start, end, status);
  if (req.method === 'HEAD' || end < start) {
    // An empty file's whole body is no bytes: its GET is a complete download all the same.
    if (req.method !== 'HEAD' && status === 200 && file?.onComplete) res.once('finish', file.onComplete);
    void file?.close();
    res.writeHead(status, headers);
    res.end();
    return;
  }
  if (file === null) {
    res.writeHead(status, headers);
    res.end(start === 0 && end === e.size - 1 ? e.data : e.data!.subarray(start, end + 1));
    return;
  }
  sendFile(req, res, file, status, headers, start, end, stallMs);
}

/**
 * Answers a GET of `file` (which has a `location`) with a 302 to that URL, carrying the type and
 * disposition this answer would have had; a 304 or 412 is answered here, as by `answer`.
 */
export async function redirect(req: IncomingMessage, res: ServerResponse, e: Representation, rel: string, file: OpenFile, cacheControl: string): Promise<void> {
  const h = req.headers;
  const cond = isConditional(h) ? precondition(h, e.etag, e.mtimeMs) : 0;
  if (cond !== 0) {
    void file.close();
    answerPrecondition(res, e, cond, cacheControl);
    return;
  }
  const name = downloadName(req.url ?? '', rel);
  let url: string;
  try {
    url = await file.location!({ type: e.type, disposition: name !== undefined ? attachment(name) : e.disposition });
  } finally {
    void file.close();
  }
  // The URL is short-lived and signed for this file: no cache may keep the redirect.
  res.writeHead(302, { Location: url, 'Cache-Control': 'no-store', 'Content-Length': '0', 'X-Content-Type-Options': 'nosniff' });
  res.end();
}

/** The 304 or 412 that `precondition` decided. */
function answerPrecondition(res: ServerResponse, e: Representation, cond: number, cacheControl: string): void {
  if (cond === 304) {
    // §15.4.5: the validators, Cache-Control and Expires a 200 would have carried.
    const headers = ['ETag', e.etag, 'Last-Modified', e.lastModified];
    pushFreshness(headers, e, cacheControl);
    res.writeHead(304, headers);
    res.end();
    return;
  }
  sendError(res, new WharfError('PRECONDITION_FAILED', 'precondition failed', 412), { ETag: e.etag });
}

/**
 * Answers a GET for bytes `start`..`end` (`span`, from `spanOf`) of `e` with a 206 from `block`,
 * bytes of the file from `blockStart` on that hold them. The caller checked that the request has no
 * precondition (`isConditional`) to answer first.
 */
export function answerFromBlock(req: IncomingMessage, res: ServerResponse, e: Representation, rel: string, span: Span, block: Buffer, blockStart: number, cacheControl: string): void {
  const [start, end] = span;
  res.writeHead(206, headersOf(req, e, rel, cacheControl, start, end, 206));
  res.end(block.subarray(start - blockStart, end + 1 - blockStart));
}

/** Does the request carry a precondition (RFC 9110 §13.1) besides `If-Range`? */
export const isConditional = (h: IncomingHttpHeaders): boolean =>
  h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined || h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined;

/** The range to answer: null for the whole file (no Range, or one that does not apply). */
export function spanOf(req: IncomingMessage, e: Representation): Span | typeof UNSATISFIABLE | null {
  const range = req.method === 'GET' ? req.headers.range : undefined; // §14.2: Range is defined for GET only
  if (range === undefined) return null;
  const ifRange = req.headers['if-range'] as string | undefined;
  if (ifRange !== undefined && !ifRangeHolds(ifRange, e.etag, e.mtimeMs)) return null;
  return parseRange(range, e.size);
}

/** The headers of a 200 or 206 for bytes `start`..`end` of `e`, as a flat list (cheapest for writeHead). */
function headersOf(req: IncomingMessage, e: Representation, rel: string, cacheControl: string, start: number, end: number, status: number): string[] {
  const headers = [
    'Content-Type', e.type,
    'Content-Length', String(end - start + 1),
    'ETag', e.etag,
    'Last-Modified', e.lastModified,
    'Accept-Ranges', 'bytes',
    'X-Content-Type-Options', 'nosniff',
  ];
  pushFreshness(headers, e, cacheControl);
  if (status === 206) headers.push('Content-Range', `bytes ${start}-${end}/${e.size}`);
  const name = downloadName(req.url ?? '', rel);
  if (name !== undefined) headers.push('Content-Disposition', attachment(name));
  else if (e.disposition !== undefined) headers.push('Content-Disposition', e.disposition);
  if (e.untrusted) headers.push('Content-Security-Policy', UNTRUSTED_CSP);
  return headers;
}

/**
 * `Cache-Control`, and for a file with a deadline `Expires` too, with every `max-age`/`s-maxage`
 * held to the seconds left: no cache may keep an expired upload fresh (RFC 9111 §5.2.2.1: max-age
 * wins over Expires, so capping it is what counts).
 */
function pushFreshness(headers: string[], e: Representation, cacheControl: string): void {
  if (e.expiresAt === undefined) {
    headers.push('Cache-Control', cacheControl);
    return;
  }
  const left = Math.max(0, Math.floor((e.expiresAt - Date.now()) / 1000));
  const capped = cacheControl.replace(/\b(max-age|s-maxage)\s*=\s*"?(\d+)"?/gi, (_m, k: string, n: string) => `${k}=${Math.min(Number(n), left)}`);
  headers.push('Cache-Control', capped, 'Expires', new Date(e.expiresAt).toUTCString());
}

/** Sends bytes `start`..`end` of `file` (which this owns) with `status` and `headers`. */
function sendFile(req: IncomingMessage, res: ServerResponse, file: OpenFile, status: number, headers: string[], start: number, end: number, stallMs: number): void {
  if (res.destroyed) {
    // The client left while the file was being opened: nobody would ever drain the stream.
    void file.close();
    return;
  }
  const want = end - start + 1;
  const complete = file.onComplete;
  // Only the whole file, written out to its end, is a complete download (`once`).
  if (complete !== undefined && status === 200) res.once('finish', complete);
  if (want <= SMALL_READ && file.read) {
    // A small answer (a Range, say) in one read: no stream machinery, and the headers wait for
    // the bytes, so a failed read can still be answered properly.
    file.read(start, end).then(
      (buf) => {
        if (buf.length !== want) {
          sendError(res, new WharfError('FILE_CHANGED', 'the file changed while it was read; try again', 503));
          return;
        }
        res.writeHead(status, headers);
        res.end(buf);
      },
      (err: unknown) => sendError(res, fromFsError(err)),
    );
    return;
  }
  res.writeHead(status, headers);
  watchStall(res, stallMs);
  if (file.readAt !== undefined) {
    pumpFile(req, res, file as PumpedFile, start, end);
    return;
  }
  const body = file.stream(start, end);
  // pipe() rather than pipeline(): measurably cheaper per response (no AbortController/eos
  // bookkeeping), with the two teardown paths pipeline would give wired by hand.
  body.once('end', () => {
    // A file truncated while it was being sent ends the stream early: cut the connection (this
    // runs before pipe() ends the response) so the client sees the short body as a failure.
    const sent = (body as { bytesRead?: number }).bytesRead;
    if (sent !== undefined && sent !== want) res.destroy();
  });
  body.once('error', () => res.destroy());
  // Client gone: the stream closes its descriptor. A response queued behind another on the same
  // connection (pipelining) never emits 'close' when the connection dies; its request does.
  const stop = (): void => {
    body.destroy();
  };
  res.once('close', stop);
  req.once('close', stop);
  body.pipe(res);
}

// ---------------------------------------------------------------------------------------------
// Validators and conditionals (RFC 9110 §8.8, §13)

/**
 * Strong: changes whenever size, mtime (µs) or inode do, i.e. whenever the bytes are rewritten, and
 * between an untrusted file's answer and a trusted one's. Their headers differ, and a 304 carries
 * none of them (RFC 9110 §15.4.5): a browser holding a copy served before wharf protected end
 * users' uploads must get the protected answer, not a 304 that revives its unprotected copy.
 */
function etagOf(info: FileInfo, untrusted: boolean): string {
  return `"${untrusted ? 'u' : ''}${info.ino.toString(36)}-${info.size.toString(36)}-${Math.round(info.mtimeMs * 1000).toString(36)}"`;
}

const opaque = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** Does the `If-Match`/`If-None-Match` list `header` match `etag` (`*` matches any)? */
function tagListMatches(header: string, etag: string, weak: boolean): boolean {
  if (header === etag) return true;
  const want = weak ? opaque(etag) : etag;
  for (const raw of header.split(',')) {
    const tag = raw.trim();
    if (tag === '*') return true;
    if (weak ? opaque(tag) === want : tag === want) return true;
  }
  return false;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** 0 to go on, else 304 or 412, in the order of RFC 9110 §13.2.2. */
export function precondition(h: IncomingHttpHeaders, etag: string, mtimeMs: number): number {
  const ifMatch = h['if-match'];
  if (ifMatch !== undefined) {
    if (!tagListMatches(ifMatch, etag, false)) return 412;
  } else {
    const ius = h['if-unmodified-since'];
    if (ius !== undefined) {
      const t = Date.parse(ius);
      if (!Number.isNaN(t) && seconds(mtimeMs) > seconds(t)) return 412;
    }
  }
  const inm = h['if-none-match'];
  if (inm !== undefined) return tagListMatches(inm, etag, true) ? 304 : 0;
  const ims = h['if-modified-since'];
  if (ims !== undefined) {
    const t = Date.parse(ims);
    if (!Number.isNaN(t) && seconds(mtimeMs) <= seconds(t)) return 304;
  }
  return 0;
}

export type Span = readonly [start: number, end: number];
export const UNSATISFIABLE = 'unsatisfiable';

/**
 * One `Range: bytes=a-b` (RFC 9110 §14.1.2). `null` means "answer 200 with the whole file": no or
 * an unparsable Range, another unit, several ranges (allowed by §14.2; multipart/byteranges is not
 * worth its weight here), or an empty file (nothing a range could select).
 */
function parseRange(header: string, size: number): Span | typeof UNSATISFIABLE | null {
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes' || size === 0) return null;
  const m = /^\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.slice(eq + 1));
  if (!m) return null;
  const [, first = '', last = ''] = m;
  if (first === '') {
    if (last === '') return null;
    const n = Number(last);
    return n === 0 ? UNSATISFIABLE : [Math.max(0, size - n), size - 1];
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (last !== '' && end < start) return null; // invalid, so ignored (§14.1.1)
  if (start >= size) return UNSATISFIABLE;
  return [start, Math.min(end, size - 1)];
}

/** `If-Range` (§13.1.5): the range applies only if the representation is still the one the client has. */
function ifRangeHolds(value: string, etag: string, mtimeMs: number): boolean {
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag; // strong comparison
  const t = Date.parse(value);
  return !Number.isNaN(t) && seconds(t) === seconds(mtimeMs);
}

/** `?download` → the file's own name, `?download=name` → that name; undefined when absent. */
function downloadName(url: string, rel: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0 || !url.includes('download', q)) return undefined;
  const value = new URLSearchParams(url.slice(q + 1)).get('download');
  if (value === null) return undefined;
  return value || basename(rel);
}

/**
 * Cuts the connection of a download whose client has taken nothing for `ms` (checked every `ms`, so
 * after `ms` to `2 ms`): a client that never reads would otherwise keep its socket and the file's
 * descriptor for as long as it stays connected. Progress is the socket's `bytesWritten`, which stops
 * growing once the kernel's buffers are full and the stream is held back. A response still queued
 * behind another on its connection has no socket yet: the one ahead of it is watched.
 */
function watchStall(res: ServerResponse, ms: number): void {
  const socket = res.socket;
  if (ms <= 0 || socket === null) return;
  let last = socket.bytesWritten;
  const timer = setInterval(() => {
    const now = socket.bytesWritten;
    if (now === last) res.destroy();
    last = now;
  }, ms).unref();
  res.once('close', () => clearInterval(timer));
}

