// The multipart fuzzer: seeded generation of valid multipart/form-data bodies, seeded mutations of
// them, seeded chunking, and wharf's `parseMultipart` run on them with seeded consumers. The
// differential check against busboy is test/helpers/fuzz-oracle.ts. Shared by test/fuzz.test.ts (10,000
// cases in `npm test`) and test/stress/run.ts (1,000,000 cases).
//
// Every case is a pure function of its seed: `runCase(seed)` twice gives the same input, the same
// chunks and the same consumer behaviour, so a failing seed printed by a run is its reproduction.
//
// What one case checks (all of them, on every input):
// - outcome: wharf yields the same parts as busboy, or rejects with a typed `WharfError`; where the
//   two disagree, the disagreement must be one of the categories documented in fuzz-oracle.ts AND the input must
//   show the cause (a folded header line, a transport-padded delimiter, …) — otherwise `unexplained`.
// - no out-of-band failure: the caller installs `unhandledRejection`/`uncaughtException` listeners.
// - no hang: each parse runs under a per-case timeout.
// - bounded memory: no part body grows past `fileSize`/`fieldSize`, no part's headers past
//   `headerSize`, no count past `parts`/`files`/`fields`, and a header block that never ends (a
//   huge junk line streamed in) is refused after reading at most `headerSize` of it, plus one chunk.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { collectPart, parseMultipart, sinkPart, type MultipartLimits, type Part } from '../../lib/multipart/parser.js';
import { createLocalStorage, type Storage } from '../../lib/uploads/local-storage.js';
import { recordFor } from '../../lib/uploads/upload-record.js';

/** Small limits, so generated bodies cross every one of them often. */
export const FUZZ_LIMITS: MultipartLimits = Object.freeze({
  fileSize: 16 * 1024,
  fieldSize: 2 * 1024,
  headerSize: 1024,
  parts: 12,
  files: 8,
  fields: 8,
});

export interface FuzzOptions {
  limits: MultipartLimits;
  /** Largest generated part body (before mutations). */
  maxBody: number;
  /** Size of the never-ending header line streamed into some cases. */
  hugeHeader: number;
  /** Bodies up to this size may be fed 1–3 bytes at a time; larger ones 4–16 (time). */
  byteByByteMax: number;
  /** A parse that takes longer than this is a hang. */
  timeoutMs: number;
}

/** What `npm test` runs: sizes that keep 10,000 cases within half a minute on a busy box. */
export const DEFAULT_FUZZ: FuzzOptions = Object.freeze({
  limits: FUZZ_LIMITS,
  maxBody: 20 * 1024,
  hugeHeader: 64 * 1024,
  byteByByteMax: 2048,
  timeoutMs: 10_000,
});

/** The long run: bigger bodies and endless headers. */
export const STRESS_FUZZ: FuzzOptions = Object.freeze({
  limits: FUZZ_LIMITS,
  maxBody: 40 * 1024,
  hugeHeader: 256 * 1024,
  byteByByteMax: 4096,
  timeoutMs: 10_000,
});

// ---------------------------------------------------------------------------------------------
// Seeded randomness

export type Rng = () => number;

/** mulberry32: tiny, fast, good enough to pick mutations. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (r: Rng, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rng, xs: readonly T[] | string): T => xs[Math.floor(r() * xs.length)] as T;
const chance = (r: Rng, p: number): boolean => r() < p;

// 1 MiB of seeded noise: part bodies are slices of it (generating bytes one by one is the slow part).
const POOL = (() => {
  const r = rng(0x5eed);
  const b = Buffer.allocUnsafe(1 << 20);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(r() * 4294967296), i);
  return b;
})();

// ---------------------------------------------------------------------------------------------
// Valid bodies

const BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ";
const TCHAR = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const CRLF = Buffer.from('\r\n');

function makeBoundary(r: Rng): string {
  const kind = r();
  if (kind < 0.35) return `----WebKitFormBoundary${Array.from({ length: 16 }, () => pick(r, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')).join('')}`;
  if (kind < 0.45) return pick(r, ['-', 'a', '--', 'b', 'x-', "'", '0']);
  const len = kind < 0.55 ? 70 : int(r, 1, 40);
  let s = '';
  for (let i = 0; i < len; i++) s += pick(r, BCHARS);
  if (s.endsWith(' ')) s = `${s.slice(0, -1)}z`;
  return s;
}

const NAME_WORDS = ['files', 'file', 'f', 'a', 'field', 'x', 'upload[]', 'data', 'título', '名前', 'émoji 🎉', 'with space', 'semi;colon', 'eq=uals', "it's", 'a/b', 'C:x'];
const FILE_WORDS = ['a.txt', 'photo.png', 'report final.pdf', 'naïve.txt', 'e\u0301.txt', '日本語.csv', 'x', '.hidden', 'dir/sub/file.bin', 'semi;colon.txt', 'a=b', 'CON', '..', 'a\u2024\u2024b', 'ｆｕｌｌ／ｗｉｄｔｈ'];
const TEXT = 'The quick brown fox jumps over the lazy dog. 0123456789 äöü ß € 漢字 🎉\r\n\t-- -';

function makeName(r: Rng, words: readonly string[]): string {
  if (chance(r, 0.7)) return pick(r, words);
  let s = '';
  const n = int(r, 1, 24);
  for (let i = 0; i < n; i++) s += pick(r, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-+()[]{}!@#$&;,=~é漢🎉');
  return s;
}

/** RFC 8187 percent-encoding of UTF-8, the form `filename*` takes. */
function extValue(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) out += /[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

function bodyBytes(r: Rng, size: number, delimiter: Buffer): Buffer {
  if (size === 0) return Buffer.alloc(0);
  const style = r();
  let b: Buffer;
  if (style < 0.45) {
    const at = int(r, 0, POOL.length - size);
    b = Buffer.from(POOL.subarray(at, at + size));
  } else if (style < 0.75) {
    const t = Buffer.from(TEXT.repeat(Math.ceil(size / TEXT.length) + 1), 'utf8');
    const at = int(r, 0, t.length - size);
    b = Buffer.from(t.subarray(at, at + size));
  } else {
    // Delimiter-like data: CRLFs, dashes and prefixes of the delimiter, the search's worst case.
    const parts: Buffer[] = [];
    let n = 0;
    while (n < size) {
      const piece = pick(r, [CRLF, Buffer.from('--'), Buffer.from('-'), delimiter.subarray(0, int(r, 1, delimiter.length - 1)), delimiter.subarray(2), POOL.subarray(0, int(r, 1, 16))]);
      parts.push(piece);
      n += piece.length;
    }
    b = Buffer.concat(parts).subarray(0, size);
  }
  // A generated body must not contain its own delimiter (it would not be one part).
  let i = b.indexOf(delimiter);
  while (i !== -1) {
    b[i] = 0x58; // 'X': no CR, so no delimiter can start there any more
    i = b.indexOf(delimiter, i);
  }
  // Nor start with the dash-boundary: after a header block's blank line that is a delimiter (an
  // RFC 2046 body part of headers only), which wharf reads as one and busboy does not.
  if (b.subarray(0, delimiter.length - 2).equals(delimiter.subarray(2))) b[0] = 0x58;
  return b;
}

function bodySize(r: Rng, max: number, field: boolean): number {
  const x = r();
  if (field) return x < 0.9 ? int(r, 0, 200) : int(r, 0, Math.min(max, 3 * 1024));
  if (x < 0.35) return int(r, 0, 64);
  if (x < 0.75) return int(r, 64, 1024);
  if (x < 0.95) return int(r, 1024, Math.min(max, 8 * 1024));
  return int(r, 8 * 1024, max);
}

interface Generated {
  boundary: string;
  contentType: string;
  body: Buffer;
}

function quoteName(s: string): string {
  // What browsers do (HTML's multipart/form-data encoding): `"` → %22, CR → %0D, LF → %0A.
  return s.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function headerName(r: Rng, canonical: string): string {
  const x = r();
  return x < 0.7 ? canonical : x < 0.85 ? canonical.toLowerCase() : canonical.toUpperCase();
}

function generate(r: Rng, opts: FuzzOptions): Generated {
  const boundary = makeBoundary(r);
  const quoted = !TCHAR.test(boundary) || chance(r, 0.1);
  const contentType = `multipart/form-data; boundary=${quoted ? `"${boundary}"` : boundary}`;
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const out: Buffer[] = [];
  if (chance(r, 0.2)) {
    // A preamble (RFC 2046 §5.1.1: to be ignored), never containing the delimiter.
    let pre = bodyBytes(r, int(r, 0, 300), delimiter);
    const start = Buffer.from(`--${boundary}`, 'latin1');
    if (pre.subarray(0, start.length).equals(start)) pre = Buffer.concat([Buffer.from('x'), pre]);
    out.push(pre, CRLF);
  }
  const nParts = chance(r, 0.05) ? int(r, 9, 16) : chance(r, 0.04) ? 0 : int(r, 1, 6);
  for (let p = 0; p < nParts; p++) {
    out.push(Buffer.from(`--${boundary}\r\n`, 'latin1'));
    const isFile = chance(r, 0.6);
    const lines: string[] = [];
    let cd = `form-data; name="${quoteName(makeName(r, NAME_WORDS))}"`;
    if (isFile) {
      const fname = makeName(r, FILE_WORDS);
      const star = chance(r, 0.15);
      cd += `; filename="${quoteName(star ? fname.replace(/[^\x20-\x7e]/g, '_') : fname)}"`;
      if (star) cd += `; filename*=UTF-8''${extValue(fname)}`;
    }
    const extra = chance(r, 0.15) ? [`${headerName(r, 'X-Custom')}-${int(r, 0, 9)}: ${makeName(r, NAME_WORDS).replace(/[\r\n]/g, '')}`] : [];
    if (chance(r, 0.1)) extra.push('Content-Transfer-Encoding: binary');
    lines.push(`${headerName(r, 'Content-Disposition')}: ${cd}`);
    if (isFile ? chance(r, 0.7) : chance(r, 0.1)) {
      const type = isFile ? pick(r, ['application/octet-stream', 'image/png', 'text/plain; charset=utf-8', 'application/pdf', 'text/csv']) : 'text/plain; charset=utf-8';
      lines.push(`${headerName(r, 'Content-Type')}: ${type}`);
    }
    for (const e of extra) lines.splice(int(r, 0, lines.length), 0, e);
    out.push(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'));
    out.push(bodyBytes(r, bodySize(r, opts.maxBody, !isFile), delimiter));
    out.push(CRLF);
  }
  out.push(Buffer.from(`--${boundary}--`, 'latin1'));
  if (chance(r, 0.6)) out.push(CRLF);
  if (chance(r, 0.15)) out.push(bodyBytes(r, int(r, 0, 200), Buffer.from('\u0000never')));
  return { boundary, contentType, body: Buffer.concat(out) };
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** Offsets of every delimiter (`--boundary` at the start, or `\r\n--boundary`), pointing at its first dash. */
function delimiterOffsets(body: Buffer, boundary: string): number[] {
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const out: number[] = [];
  if (body.subarray(0, dash.length).equals(dash)) out.push(0);
  const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
  for (let i = body.indexOf(d); i !== -1; i = body.indexOf(d, i + 1)) out.push(i + 2);
  return out;
}

/** A position: near a delimiter half of the time (where parsers break), anywhere otherwise. */
function position(r: Rng, body: Buffer, boundary: string): number {
  if (body.length === 0) return 0;
  const ds = chance(r, 0.5) ? delimiterOffsets(body, boundary) : [];
  if (ds.length > 0) return Math.max(0, Math.min(body.length, pick(r, ds) + int(r, -4, boundary.length + 48)));
  return int(r, 0, body.length);
}

const splice = (b: Buffer, at: number, del: number, ins: Buffer): Buffer => Buffer.concat([b.subarray(0, at), ins, b.subarray(at + del)]);

/** Header-start positions: right after a delimiter line's CRLF. */
function headerStarts(body: Buffer, boundary: string): number[] {
  const out: number[] = [];
  for (const at of delimiterOffsets(body, boundary)) {
    const crlf = at + 2 + Buffer.byteLength(boundary, 'latin1');
    if (body[crlf] === 13 && body[crlf + 1] === 10) out.push(crlf + 2);
  }
  return out;
}

type Mutation = (r: Rng, b: Buffer, boundary: string, opts: FuzzOptions) => [Buffer, string];

const SPECIAL = [13, 10, 45, 34, 59, 58, 32, 9, 0, 0x5c, 0x25, 0x3d, 0xff, 0xc3];

const MUTATIONS: Array<[weight: number, Mutation]> = [
  [25, (r, b, bd) => {
    if (b.length === 0) return [b, 'flip(empty)'];
    const at = Math.min(b.length - 1, position(r, b, bd));
    const c = Buffer.from(b);
    const how = r();
    c[at] = how < 0.4 ? c[at]! ^ (1 << int(r, 0, 7)) : how < 0.7 ? pick(r, SPECIAL) : int(r, 0, 255);
    return [c, `flip@${at}`];
  }],
  [9, (r, b, bd) => {
    const at = position(r, b, bd);
    return [b.subarray(0, at), `cut@${at}`];
  }],
  [8, (r, b, bd) => {
    const at = position(r, b, bd);
    const n = int(r, 1, 64);
    return [splice(b, at, Math.min(n, b.length - at), Buffer.alloc(0)), `delete@${at}+${n}`];
  }],
  [10, (r, b, bd) => {
    const from = position(r, b, bd);
    const n = Math.min(int(r, 1, 256), b.length - from);
    const to = chance(r, 0.5) ? from + n : position(r, b, bd);
    return [splice(b, to, 0, Buffer.from(b.subarray(from, from + n))), `duplicate@${from}+${n}->${to}`];
  }],
  [15, (r, b, bd) => {
    const d = `\r\n--${bd}`;
    const frag = pick(r, [
      d, `${d}\r\n`, `--${bd}`, `${d}--`, `${d}--\r\n`, d.slice(0, int(r, 1, d.length - 1)), `${d}${pick(r, ['x', '-', '\r', ' \r\n', '\t\t\r\n', '-x'])}`,
      `${d}\r\nContent-Disposition: form-data; name="injected"\r\n\r\ninjected`,
      `${d}\r\nContent-Disposition: form-data; name="files"; filename="injected.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    ]);
    const at = position(r, b, bd);
    return [splice(b, at, 0, Buffer.from(frag, 'latin1')), `boundary@${at}:${JSON.stringify(frag.length > 24 ? `${frag.slice(0, 24)}…` : frag)}`];
  }],
  [5, (r, b, bd, o) => {
    const starts = headerStarts(b, bd);
    const at = starts.length > 0 ? pick(r, starts) : position(r, b, bd);
    const n = int(r, Math.floor(o.limits.headerSize / 2), o.limits.headerSize * 3);
    const line = chance(r, 0.7) ? `X-Pad: ${'p'.repeat(n)}\r\n` : `${'h'.repeat(n)}`;
    return [splice(b, at, 0, Buffer.from(line, 'latin1')), `hugeheader@${at}+${line.length}`];
  }],
  [15, (r, b, bd) => {
    const at = position(r, b, bd);
    const how = r();
    if (how < 0.5) {
      let noise = '';
      for (let k = int(r, 1, 4); k > 0; k--) noise += pick(r, ['\r', '\n', '\r\n', '\n\r']);
      return [splice(b, at, 0, Buffer.from(noise, 'latin1')), `crlf-noise@${at}`];
    }
    const i = b.indexOf(CRLF, at);
    if (i === -1) return [b, 'crlf-noise(none)'];
    if (how < 0.8) return [splice(b, i, 2, Buffer.from(pick(r, ['\n', '\r', '\r\r\n', '\n\n']), 'latin1')), `crlf-replace@${i}`];
    return [splice(b, i, 2, Buffer.alloc(0)), `crlf-drop@${i}`];
  }],
  [4, (r, b, bd) => {
    // RFC 2046 transport padding (spaces/tabs between a delimiter and its CRLF): valid.
    const ds = delimiterOffsets(b, bd);
    if (ds.length === 0) return [b, 'padding(none)'];
    const at = pick(r, ds) + 2 + Buffer.byteLength(bd, 'latin1');
    return [splice(b, at, 0, Buffer.from(pick(r, [' ', '\t', '  \t', ' '.repeat(int(r, 1, 40))]), 'latin1')), `padding@${at}`];
  }],
  [4, (r, b, bd) => {
    const starts = headerStarts(b, bd);
    if (starts.length === 0) return [b, 'header(none)'];
    const at = pick(r, starts);
    const end = b.indexOf(CRLF, at);
    if (end === -1) return [b, 'header(none)'];
    const how = r();
    const line = b.subarray(at, end + 2);
    if (how < 0.35) return [splice(b, end, 0, Buffer.from('\r\n\tfolded', 'latin1')), `fold@${end}`];
    if (how < 0.7) return [splice(b, at, 0, Buffer.from(line)), `repeat-header@${at}`];
    return [splice(b, at, end + 2 - at, Buffer.from(pick(r, ['Content-Type: text/plain\r\n', 'X: y\r\n', ': novalue\r\n', 'Content-Disposition: attachment; name="a"\r\n', 'Content-Disposition: form-data\r\n', 'Content-Disposition: form-data; name=""\r\n', 'Content-Disposition: form-data; name="a"; name="b"\r\n', 'Content-Disposition: form-data; name="a\\"b"\r\n', 'Content-Disposition: form-data; name=a@b\r\n', 'Content-Disposition: form-data; name="a"; filename=""\r\n', "Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''%E2%82\r\n"]), 'latin1')), `replace-header@${at}`];
  }],
  [3, (r, b, bd) => {
    // The dash-boundary at the start of a header line, glued to what follows: a delimiter where a
    // header is expected (RFC 2046 forbids it inside a part; a parser must not read it as a header).
    const starts = headerStarts(b, bd);
    if (starts.length === 0) return [b, 'glued(none)'];
    let at = pick(r, starts);
    if (chance(r, 0.5)) {
      const eol = b.indexOf(CRLF, at);
      if (eol !== -1) at = eol + 2;
    }
    const glue = pick(r, ['', '--', 'Content-Type: text/plain', 'X: y', ':', '--; x', '\r\n']);
    return [splice(b, at, 0, Buffer.from(`--${bd}${glue}${glue.endsWith('\r\n') ? '' : '\r\n'}`, 'latin1')), `glued-delimiter@${at}`];
  }],
];
const TOTAL_WEIGHT = MUTATIONS.reduce((s, [w]) => s + w, 0);

function mutate(r: Rng, b: Buffer, boundary: string, opts: FuzzOptions): [Buffer, string] {
  let x = r() * TOTAL_WEIGHT;
  for (const [w, m] of MUTATIONS) {
    if ((x -= w) < 0) return m(r, b, boundary, opts);
  }
  return MUTATIONS[0]![1](r, b, boundary, opts);
}

// ---------------------------------------------------------------------------------------------
// Chunking

function split(r: Rng, b: Buffer, boundary: string, opts: FuzzOptions): [Buffer[], string] {
  const x = r();
  const chunks: Buffer[] = [];
  let kind: string;
  if (x < 0.1 || b.length === 0) {
    chunks.push(b);
    kind = 'whole';
  } else if (x < 0.25) {
    // Byte by byte for small bodies; a few bytes at a time for larger ones (time budget).
    const n = b.length <= opts.byteByByteMax ? int(r, 1, 3) : int(r, 4, 16);
    for (let i = 0; i < b.length; i += n) chunks.push(b.subarray(i, i + n));
    kind = `fixed${n}`;
  } else if (x < 0.75) {
    const max = pick(r, [64, 4096, 65536]);
    for (let i = 0; i < b.length;) {
      const n = int(r, 1, max);
      chunks.push(b.subarray(i, i + n));
      i += n;
    }
    kind = `random${max}`;
  } else {
    // Cut right around every delimiter, where a parser has to carry a partial match over.
    const cuts = new Set<number>();
    for (const d of delimiterOffsets(b, boundary)) cuts.add(Math.max(0, d + int(r, -3, Buffer.byteLength(boundary, 'latin1') + 5)));
    let last = 0;
    for (const c of [...cuts].sort((p, q) => p - q)) {
      if (c > last && c < b.length) {
        chunks.push(b.subarray(last, c));
        last = c;
      }
    }
    chunks.push(b.subarray(last));
    kind = 'delimiters';
  }
  if (chance(r, 0.03)) chunks.splice(int(r, 0, chunks.length), 0, Buffer.alloc(0));
  return [chunks, kind];
}

// ---------------------------------------------------------------------------------------------
// One case

// 'sink': `sinkPart` with a sink that pushes back every other write; 'upload': the upload layer's
// way, `collectPart` up to 64 bytes, else the same sink; 'staged': `sinkPart` into a real staged file
// of a storage whose every write goes through the thread pool (the path of a slow disk, which no
// fast machine takes by itself) and whose write budget is always full, so every chunk is a batch
// of its own and batches land as often as they can. None waits for the part's end before asking
// for the next part.
type Consume = 'stream' | 'text' | 'skip' | 'paced' | 'sink' | 'upload' | 'staged';
const SINKS: readonly Consume[] = ['sink', 'upload', 'staged'];

export interface FuzzCase {
  seed: number;
  boundary: string;
  contentType: string;
  body: Buffer;
  chunks: Buffer[];
  mutations: string[];
  chunking: string;
  /** Offset in `body` of a header line that never ends (the streamed huge header), if any. */
  hugeAt: number | undefined;
  source: 'iterable' | 'readable';
  /** How each part's bytes are taken (cycled); 'skip' leaves a part untouched. */
  consume: Consume[];
  /** Stop iterating (`break`) after this many parts, if set. */
  breakAfter: number | undefined;
}

export function makeCase(seed: number, opts: FuzzOptions = DEFAULT_FUZZ): FuzzCase {
  const r = rng(seed);
  const g = generate(r, opts);
  let body = g.body;
  const mutations: string[] = [];
  const n = chance(r, 0.12) ? 0 : chance(r, 0.6) ? 1 : int(r, 2, 4);
  for (let i = 0; i < n; i++) {
    const [b, m] = mutate(r, body, g.boundary, opts);
    body = b;
    mutations.push(m);
  }
  let hugeAt: number | undefined;
  if (chance(r, 0.02)) {
    // A header line that never ends, streamed: the parser must give up after `headerSize` bytes of it.
    const starts = headerStarts(body, g.boundary);
    if (starts.length > 0) {
      hugeAt = pick(r, starts);
      body = splice(body, hugeAt, 0, Buffer.alloc(opts.hugeHeader, 0x68));
      mutations.push(`endless-header@${hugeAt}+${opts.hugeHeader}`);
    }
  }
  const [chunks, chunking] = split(r, body, g.boundary, opts);
  const cx = r();
  const consume: Consume[] =
    cx < 0.6 ? ['stream'] : cx < 0.7 ? ['text'] : cx < 0.74 ? ['skip'] : cx < 0.78 ? ['paced'] : cx < 0.82 ? ['sink'] : cx < 0.86 ? ['upload'] : cx < 0.9 ? ['staged'] : ['stream', 'skip', 'text', 'paced', 'sink', 'upload', 'staged'];
  return {
    seed,
    boundary: g.boundary,
    contentType: g.contentType,
    body,
    chunks,
    mutations,
    chunking,
    hugeAt,
    source: chance(r, 0.25) ? 'readable' : 'iterable',
    consume,
    breakAfter: chance(r, 0.03) ? int(r, 0, 3) : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Running the two parsers

export interface WharfPart {
  name: string;
  filename: string | undefined;
  contentType: string;
  headers: Record<string, string>;
  how: Consume;
  /** The bytes read (stream/paced), or the UTF-8 text (text); null when skipped. */
  bytes: Buffer | null;
  text: string | null;
  /** The error the body (or text()) failed with, if it did. */
  bodyError: unknown;
}

export interface WharfResult {
  parts: WharfPart[];
  error: unknown;
  /** Bytes the parser pulled from its source. */
  pulled: number;
  /** Largest chunk handed to the parser. */
  maxChunk: number;
  hung: boolean;
  aborted: boolean;
  violations: string[];
}

function sourceOf(c: FuzzCase): { src: AsyncIterable<Buffer>; pulled: () => number } {
  let pulled = 0;
  if (c.source === 'readable') {
    const chunks = c.chunks;
    let i = 0;
    // highWaterMark 1: the Readable itself holds at most one chunk ahead of the parser.
    const src = new Readable({
      highWaterMark: 1,
      read() {
        // Zero-length chunks are dropped by a byte-mode Readable anyway; skip them here.
        while (i < chunks.length && chunks[i]!.length === 0) i++;
        if (i >= chunks.length) {
          this.push(null);
          return;
        }
        const chunk = chunks[i++]!;
        pulled += chunk.length;
        this.push(chunk);
      },
    });
    return { src, pulled: () => pulled };
  }
  const chunks = c.chunks;
  const src: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: async () => {
          if (i >= chunks.length) return { done: true as const, value: undefined };
          const chunk = chunks[i++]!;
          pulled += chunk.length;
          return { done: false as const, value: chunk };
        },
      };
    },
  };
  return { src, pulled: () => pulled };
}

async function readPaced(body: Readable): Promise<Buffer> {
  // A slow consumer: one chunk per macrotask, so the parser's buffer fills and it must wait.
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return Buffer.concat(chunks);
}

/** A part's bytes through `sinkPart`, the sink saying "enough" every other write and asking for more a macrotask later. */
function sinkAll(part: Part): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let writes = 0;
    let resume = (): void => {};
    resume = sinkPart(part, {
      write(chunk) {
        chunks.push(chunk);
        if (++writes % 2 === 1) return true;
        setImmediate(() => resume());
        return false;
      },
      end: () => resolve(Buffer.concat(chunks)),
      destroy: reject,
    });
  });
}

// The storage of 'staged' parts: one per process, made at first use, removed at exit. Made
// synchronously: a part whose consumer has not chosen by the time the iteration moves on is skipped.
let staged: { storage: Storage; dataDir: string; started: Promise<void> } | undefined;
function stagedStorage(): { storage: Storage; dataDir: string; started: Promise<void> } {
  if (staged) return staged;
  const dataDir = mkdtempSync(join(tmpdir(), 'wharf-fuzz-'));
  process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
  const storage = createLocalStorage(dataDir, { syncIo: 'off', writeBatch: 16 * 1024, writeBuffer: 0 });
  return (staged = { storage, dataDir, started: storage.start() });
}

/** A part's bytes into a staged file (see 'staged'), committed, read back from disk and removed. */
async function stageAll(part: Part): Promise<Buffer> {
  const { storage, dataDir, started } = stagedStorage();
  const staging = storage.stage();
  const id = randomUUID();
  let resume = (): void => {};
  const file = staging.file(id, 'part.bin', () => resume());
  // The 2nd and 4th writes also wait a millisecond, as a socket's next read does: batches then
  // land while the part is still arriving, not only once it has ended.
  let writes = 0;
  resume = sinkPart(part, {
    write(chunk) {
      if (!file.write(chunk)) return false;
      if (++writes % 2 === 1 || writes > 4) return true;
      setTimeout(() => resume(), 1);
      return false;
    },
    end: () => file.end(),
    destroy: (err) => file.destroy(err),
  });
  await started;
  try {
    await file.done;
  } catch (err) {
    await staging.abort();
    throw err;
  }
  await staging.commit(recordFor('site'));
  const bytes = await readFile(join(dataDir, 'f', id, 'part.bin'));
  await storage.remove(id);
  return bytes;
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function headerBytes(h: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of Object.entries(h)) n += Buffer.byteLength(k, 'latin1') + Buffer.byteLength(v, 'utf8');
  return n;
}

export async function runWharf(c: FuzzCase, opts: FuzzOptions = DEFAULT_FUZZ): Promise<WharfResult> {
  const { src, pulled } = sourceOf(c);
  const limits = opts.limits;
  const maxChunk = c.chunks.reduce((m, b) => Math.max(m, b.length), 0);
  const result: WharfResult = { parts: [], error: undefined, pulled: 0, maxChunk, hung: false, aborted: false, violations: [] };
  const work = (async () => {
    const it = parseMultipart(src, { contentType: c.contentType, limits });
    // Sinks still taking their parts' bytes while the iteration has moved on.
    const sinking: Array<Promise<void>> = [];
    let files = 0;
    let fields = 0;
    try {
      for await (const part of it) {
        const how = c.consume[result.parts.length % c.consume.length]!;
        const rec: WharfPart = { name: part.name, filename: part.filename, contentType: part.contentType, headers: { ...part.headers }, how, bytes: null, text: null, bodyError: undefined };
        result.parts.push(rec);
        if (part.filename === undefined) fields++;
        else files++;
        if (headerBytes(part.headers) > limits.headerSize) result.violations.push(`part ${result.parts.length}: headers of ${headerBytes(part.headers)} bytes > headerSize`);
        if (result.parts.length > limits.parts || files > limits.files || fields > limits.fields) result.violations.push(`part ${result.parts.length}: count over the limits (${files} files, ${fields} fields)`);
        const max = part.filename === undefined ? limits.fieldSize : limits.fileSize;
        try {
          if (how === 'stream') rec.bytes = await readAll(part.body);
          else if (how === 'paced') rec.bytes = await readPaced(part.body);
          else if (how === 'text') rec.text = await (part as Part).text();
          else if (SINKS.includes(how)) {
            const whole = how === 'upload' ? await collectPart(part, 64) : null;
            if (whole !== null) rec.bytes = Buffer.concat(whole);
            else {
              const bytes = how === 'staged' ? stageAll(part) : sinkAll(part);
              bytes.catch(() => {});
              sinking.push(bytes.then((b) => void (rec.bytes = b), (err: unknown) => void (rec.bodyError = err)));
            }
          }
        } catch (err) {
          rec.bodyError = err;
        }
        // text() decodes UTF-8, each byte giving at most one UTF-16 unit: its length bounds the bytes from below.
        const size = rec.bytes?.length ?? rec.text?.length ?? 0;
        if (size > max) result.violations.push(`part ${result.parts.length}: ${size} bytes > its limit ${max}`);
        if (c.breakAfter !== undefined && result.parts.length >= c.breakAfter) {
          result.aborted = true;
          break;
        }
      }
    } catch (err) {
      result.error = err;
    }
    await Promise.all(sinking);
    result.parts.forEach((rec, i) => {
      const max = rec.filename === undefined ? limits.fieldSize : limits.fileSize;
      if (SINKS.includes(rec.how) && (rec.bytes?.length ?? 0) > max) result.violations.push(`part ${i + 1}: ${rec.bytes!.length} bytes > its limit ${max}`);
    });
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), opts.timeoutMs);
  });
  const won = await Promise.race([work.then(() => 'done' as const), timeout]);
  clearTimeout(timer);
  if (won === 'hung') result.hung = true;
  result.pulled = pulled();
  return result;
}

/** One line to reproduce a case: its seed and what was done to it. */
export function describe(c: FuzzCase): string {
  return `seed=${c.seed} boundary=${JSON.stringify(c.boundary)} size=${c.body.length} chunks=${c.chunks.length}(${c.chunking}) source=${c.source} consume=${c.consume.join('/')}${c.breakAfter === undefined ? '' : ` break=${c.breakAfter}`} mutations=[${c.mutations.join(', ')}]`;
}
