// `node dist/bench/multipart.js [--quick] [--runs=N] [--wall] [--also=LABEL=PATH/lib/index.js]`: wharf's multipart parser against
// busboy, @fastify/busboy, formidable's MultipartParser and @remix-run/multipart-parser, plus a
// floor (one `Buffer.indexOf` pass for the delimiter over each chunk, no parsing), on the same
// in-memory bodies cut into the same chunks. Every contender first gets the same JIT warm-up; runs
// are interleaved (every parser once per round, in a rotating order) and each figure is the median
// of the rounds, in MiB of body per second of CPU time (or of wall-clock time with `--wall`). The
// part bytes each contender saw are compared: a parser that disagrees fails the run.
//
// How each one is fed and read, each through its own cheapest honest API:
// - wharf: `parseMultipart(asyncGeneratorOfChunks)`; file bodies read through 'data' events,
//   fields through `part.text()` (a "fields as streams" row reads them through `body` too).
// - busboy, @fastify/busboy: `write()` of every chunk (awaiting 'drain' if asked); files counted
//   through 'data' events on their streams, fields as the strings they emit.
// - formidable: its MultipartParser (a Transform) fed the same way; part data counted from its
//   'partData' events (it builds no strings or streams at that level).
// - @remix-run/multipart-parser: it cannot take a Node async iterable of Buffers directly
//   (`parseMultipart` wants a sync iterable, `parseMultipartStream` a Readable it converts to a web
//   stream), so its `MultipartParser` core is given each chunk with `write()`; it yields a part only
//   once its whole content has arrived (it keeps every chunk of a part in memory; no streaming).
//   It parses a part's headers only when asked, so each part's name and filename are asked for,
//   and a field's text.
// `--also=LABEL=PATH` adds another build of wharf (its `lib/index.js`, e.g. a previous commit's
// `dist/`) as a row of the same run, read the same way as wharf: a refactoring's cost in one run.
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Readable, Writable } from 'node:stream';
import busboy from 'busboy';
import { Busboy as FastBusboy } from '@fastify/busboy';
import * as formidableModule from 'formidable';
import { MultipartParser as RemixParser } from '@remix-run/multipart-parser';
import { parseMultipart } from '../lib/multipart/parser.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runsArg = args.find((a) => a.startsWith('--runs='));
const RUNS = runsArg ? Math.max(1, Number(runsArg.slice(7))) : quick ? 3 : 7;
const WARMUP = 2;
// Time is the process's CPU time (user + system, all threads) by default: on a shared machine it
// measures what a parser costs rather than how long it waited for a core; on an idle machine it
// equals wall-clock time. `--wall` uses wall-clock time.
const wall = args.includes('--wall');
// `--only=wharf,busboy` and `--cases=0,3` narrow a run down while working on one thing.
const onlyArg = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const casesArg = args.find((a) => a.startsWith('--cases='))?.slice(8).split(',').map(Number);
const BOUNDARY = '----WebKitFormBoundaryAbC123xYz456QrSt'; // what Chrome and Safari send, 38 characters
const CONTENT_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
const DELIMITER = Buffer.from(`\r\n--${BOUNDARY}`);

v8.setFlagsFromString('--expose-gc');
const gc = (globalThis.gc ?? vm.runInNewContext('gc')) as () => void;

// ---- bodies ------------------------------------------------------------------------------------

interface Case {
  name: string;
  kind: 'file' | 'fields' | 'files' | 'dashes' | 'prefixes';
  body: () => Buffer;
  chunk: number;
}

function head(name: string, filename?: string): string {
  return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? '' : `; filename="${filename}"\r\nContent-Type: application/octet-stream`}\r\n\r\n`;
}

function filesBody(files: Buffer[]): Buffer {
  const out: Buffer[] = [];
  files.forEach((data, i) => out.push(Buffer.from(head('files', `file${i}.bin`)), data, Buffer.from('\r\n')));
  out.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(out);
}

function fieldsBody(count: number): Buffer {
  let s = '';
  for (let i = 0; i < count; i++) s += `${head(`field${i}`)}value of field number ${i}, some text\r\n`;
  return Buffer.from(`${s}--${BOUNDARY}--\r\n`);
}

/** The issue's worst case: `\r\n--` over and over, each followed by 0 to 7 random bytes. */
function dashFragments(size: number): Buffer {
  const out = Buffer.alloc(size);
  let p = 0;
  let seed = 54321;
  while (p < size) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    for (let k = 0; k < 4 && p < size; k++) out[p++] = DELIMITER[k]!;
    for (let k = (seed >>> 8) & 7; k > 0 && p < size; k--) out[p++] = (seed >>> (k + 10)) & 0xff;
  }
  return out;
}

/**
 * A harder one: random prefixes of the whole delimiter (`\r\n--`, `\r\n----WebKitForm`, … up to
 * all but its last byte), each followed by one other byte. A skip search gets its shortest skips here.
 */
function delimiterPrefixes(size: number): Buffer {
  const out = Buffer.alloc(size);
  let p = 0;
  let seed = 12345;
  while (p < size) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const n = Math.min(1 + ((seed >>> 8) % (DELIMITER.length - 1)), size - p);
    DELIMITER.copy(out, p, 0, n);
    p += n;
    if (p < size) out[p++] = 0x61 + (seed & 15);
  }
  return out;
}

/** Builds each body when its case runs (the three big-file cases share one). */
function cases(): Case[] {
  const big = quick ? 16 * MiB : 256 * MiB;
  let file: Buffer | undefined;
  const bigFile = (): Buffer => (file ??= filesBody([randomBytes(big)]));
  const label = (n: number): string => (n >= MiB ? `${n / MiB} MiB` : `${n / KiB} KiB`);
  const fieldCount = quick ? 1000 : 10000;
  const fileCount = quick ? 10 : 100;
  const frag = quick ? 8 * MiB : 64 * MiB;
  return [
    ...[16 * KiB, 64 * KiB, MiB].map((chunk) => ({ name: `1 file of ${label(big)}, ${label(chunk)} chunks`, kind: 'file' as const, body: bigFile, chunk })),
    { name: `${fieldCount} small fields, 64 KiB chunks`, kind: 'fields', body: () => fieldsBody(fieldCount), chunk: 64 * KiB },
    { name: `${fileCount} files of 1 MiB, 64 KiB chunks`, kind: 'files', body: () => filesBody(Array.from({ length: fileCount }, () => randomBytes(MiB))), chunk: 64 * KiB },
    { name: `1 file of ${label(frag)} of \\r\\n-- fragments, 64 KiB chunks`, kind: 'dashes', body: () => filesBody([dashFragments(frag)]), chunk: 64 * KiB },
    { name: `1 file of ${label(frag)} of delimiter prefixes, 64 KiB chunks`, kind: 'prefixes', body: () => filesBody([delimiterPrefixes(frag)]), chunk: 64 * KiB },
  ];
}

function split(body: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, Math.min(body.length, i + size)));
  return out;
}

// ---- the contenders: each returns the part bytes it saw (checked against the others) ----------

async function* chunksOf(chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const c of chunks) yield c;
}

function drain(body: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    body.on('data', (c: Buffer) => {
      n += c.length;
    });
    body.once('end', () => resolve(n));
    body.once('error', reject);
  });
}

const LIMITS = { fileSize: 1 << 30, files: 1 << 20, fields: 1 << 20, parts: 1 << 20 };

async function wharfWith(parse: typeof parseMultipart, chunks: Buffer[]): Promise<number> {
  let n = 0;
  for await (const part of parse(chunksOf(chunks), { contentType: CONTENT_TYPE, limits: LIMITS })) {
    n += part.filename === undefined ? Buffer.byteLength(await part.text()) : await drain(part.body);
  }
  return n;
}
const wharf = (chunks: Buffer[]): Promise<number> => wharfWith(parseMultipart, chunks);

const alsoArg = args.find((a) => a.startsWith('--also='))?.slice(7);
const also = alsoArg === undefined ? undefined : { label: alsoArg.slice(0, alsoArg.indexOf('=')), path: resolve(alsoArg.slice(alsoArg.indexOf('=') + 1)) };
const alsoParse = also === undefined ? undefined : ((await import(pathToFileURL(also.path).href)) as { parseMultipart: typeof parseMultipart }).parseMultipart;

async function streamsWith(parse: typeof parseMultipart, chunks: Buffer[]): Promise<number> {
  let n = 0;
  for await (const part of parse(chunksOf(chunks), { contentType: CONTENT_TYPE, limits: LIMITS })) n += await drain(part.body);
  return n;
}
const wharfStreams = (chunks: Buffer[]): Promise<number> => streamsWith(parseMultipart, chunks);

/** Writes every chunk, honouring `write()`'s backpressure, then ends. */
function feed(w: Writable, chunks: Buffer[]): void {
  let i = 0;
  const go = (): void => {
    while (i < chunks.length) {
      if (!w.write(chunks[i++])) {
        w.once('drain', go);
        return;
      }
    }
    w.end();
  };
  go();
}

function viaBusboy(chunks: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const bb = busboy({ headers: { 'content-type': CONTENT_TYPE }, limits: { fields: Infinity, parts: Infinity } });
    let n = 0;
    bb.on('field', (_name, value) => (n += Buffer.byteLength(value)));
    bb.on('file', (_name, stream) => stream.on('data', (c: Buffer) => (n += c.length)));
    bb.on('close', () => resolve(n));
    bb.on('error', reject);
    feed(bb, chunks);
  });
}

function viaFastify(chunks: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const bb = new FastBusboy({ headers: { 'content-type': CONTENT_TYPE }, limits: { fields: Infinity, parts: Infinity } });
    let n = 0;
    bb.on('field', (_name: string, value: string) => (n += Buffer.byteLength(value)));
    bb.on('file', (_name: string, stream: Readable) => stream.on('data', (c: Buffer) => (n += c.length)));
    bb.on('finish', () => resolve(n));
    bb.on('error', reject);
    feed(bb, chunks);
  });
}

interface FormidableEvent {
  name: string;
  start?: number;
  end?: number;
}
const FormidableParser = (formidableModule as unknown as { MultipartParser: new () => Writable & { initWithBoundary(b: string): void } }).MultipartParser;

function viaFormidable(chunks: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const parser = new FormidableParser();
    parser.initWithBoundary(BOUNDARY);
    let n = 0;
    parser.on('data', (e: FormidableEvent) => {
      if (e.name === 'partData') n += e.end! - e.start!;
    });
    parser.on('end', () => resolve(n));
    parser.on('error', reject);
    feed(parser, chunks);
  });
}

async function viaRemix(chunks: Buffer[]): Promise<number> {
  const parser = new RemixParser(BOUNDARY, { maxFileSize: Infinity, maxTotalSize: Infinity, maxParts: Infinity, maxHeaderSize: 16 * KiB });
  let n = 0;
  for await (const chunk of chunksOf(chunks)) {
    for (const part of parser.write(chunk)) {
      // Its headers are parsed only when asked for: ask, as every other contender parses them.
      if (part.name === undefined) throw new Error('a part without a name');
      n += part.filename === undefined ? Buffer.byteLength(part.text) : part.size;
    }
  }
  parser.finish();
  return n;
}

/** The floor: every delimiter found with one native `indexOf` pass per chunk; no parsing at all. */
function indexOfFloor(chunks: Buffer[]): Promise<number> {
  let found = 0;
  for (const c of chunks) {
    for (let p = c.indexOf(DELIMITER); p !== -1; p = c.indexOf(DELIMITER, p + DELIMITER.length)) found++;
  }
  return Promise.resolve(found);
}

interface Contender {
  name: string;
  run: (chunks: Buffer[]) => Promise<number>;
  fieldsOnly?: boolean;
  floor?: boolean;
  /** Another build of wharf (`--also`): compared with wharf, not counted as a peer. */
  build?: boolean;
}

const CONTENDERS: Contender[] = [
  { name: 'wharf', run: wharf },
  ...(also && alsoParse ? [{ name: also.label, run: (chunks: Buffer[]) => wharfWith(alsoParse, chunks), build: true }] : []),
  { name: 'wharf (fields as streams)', run: wharfStreams, fieldsOnly: true },
  // The other build reads fields as streams too: a run that warmed only one build's stream path
  // would compare a parser whose call sites have seen streams with one whose have not.
  ...(also && alsoParse ? [{ name: `${also.label} (fields as streams)`, run: (chunks: Buffer[]) => streamsWith(alsoParse, chunks), fieldsOnly: true, build: true }] : []),
  { name: 'busboy', run: viaBusboy },
  { name: '@fastify/busboy', run: viaFastify },
  { name: 'formidable', run: viaFormidable },
  { name: '@remix-run/multipart-parser', run: viaRemix },
  { name: 'Buffer.indexOf floor', run: indexOfFloor, floor: true },
];
const PEERS = CONTENDERS.filter((c) => !c.floor && !c.build && !c.name.startsWith('wharf'));

// ---- measuring ---------------------------------------------------------------------------------

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function measure(c: Case): Promise<Map<string, number>> {
  const body = c.body();
  const chunks = split(body, c.chunk);
  const isFields = c.kind === 'fields';
  const who = CONTENDERS.filter((x) => (!x.fieldsOnly || isFields) && (onlyArg === undefined || onlyArg.some((o) => x.name.includes(o))));
  const speeds = new Map<string, number[]>(who.map((x) => [x.name, []]));
  const bytes = new Map<string, number>();
  // One full GC before a case, none between runs: a forced GC shrinks V8's young generation, so
  // the next run pays for many more (parallel, and on a busy machine very slow) scavenges than a
  // parser in a long-running server does. Each run's own garbage stays its cost. A GC also drops
  // optimized code whose hidden classes died with the last case's objects: warm up again after it.
  gc();
  await warmUp(who, quick ? 3 : 10);
  for (let round = 0; round < RUNS + WARMUP; round++) {
    for (let k = 0; k < who.length; k++) {
      const x = who[(k + round) % who.length]!;
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const n = await x.run(chunks);
      const cpu = process.cpuUsage(c0);
      const seconds = wall ? Number(process.hrtime.bigint() - t0) / 1e9 : (cpu.user + cpu.system) / 1e6;
      // The first rounds warm every contender up (JIT) and are not counted.
      if (round >= WARMUP) speeds.get(x.name)!.push(body.length / MiB / seconds);
      if (!x.floor) bytes.set(x.name, n);
    }
  }
  const counts = new Set(bytes.values());
  if (counts.size !== 1) throw new Error(`${c.name}: the parsers disagree on the part bytes: ${JSON.stringify([...bytes])}`);
  return new Map([...speeds].map(([k, v]) => [k, median(v)]));
}

/**
 * Every contender parses a small mixed body (fields, files, delimiter fragments; three chunk
 * sizes) many times before a case is timed, so that the code it runs once per part is compiled
 * too, not only the code it runs once per chunk: a case with few parts would otherwise be timed
 * while the JIT is still at work on it (on its own threads, so it shows in CPU time).
 */
let warmUpBody: Buffer | undefined;

async function warmUp(who: Contender[], rounds: number): Promise<void> {
  warmUpBody ??= Buffer.concat([
    fieldsBody(300).subarray(0, -(BOUNDARY.length + 6)),
    filesBody([...Array.from({ length: 20 }, () => randomBytes(64 * KiB)), dashFragments(256 * KiB), delimiterPrefixes(256 * KiB)]),
  ]);
  for (const chunk of [16 * KiB, 64 * KiB, MiB]) {
    const chunks = split(warmUpBody, chunk);
    for (let r = 0; r < rounds; r++) for (const x of who) await x.run(chunks);
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  console.log(
    `multipart parsers, MiB of body per ${wall ? 'wall-clock' : 'CPU'} second (median of ${RUNS} interleaved runs after ${WARMUP} warm-up rounds${quick ? '; --quick: small bodies, few runs, a smoke test whose figures mean little' : ''})`,
  );
  console.log(`Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  await warmUp(CONTENDERS, quick ? 10 : 30);
  const all = cases().filter((_, i) => casesArg === undefined || casesArg.includes(i));
  const results: [Case, Map<string, number>][] = [];
  for (const c of all) {
    const r = await measure(c);
    results.push([c, r]);
    const line = [...r].map(([k, v]) => `${k} ${fmt(v)}`).join(' | ');
    console.log(`  ${c.name}: ${line}`);
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);

  const names = CONTENDERS.map((c) => c.name);
  const width = Math.max(...all.map((c) => c.name.length));
  const col = (s: string, w: number): string => s.padStart(w);
  const widths = names.map((n) => Math.max(n.length, 8));
  console.log(`${'case'.padEnd(width)}  ${names.map((n, i) => col(n, widths[i]!)).join('  ')}`);
  for (const [c, r] of results) console.log(`${c.name.padEnd(width)}  ${names.map((n, i) => col(r.has(n) ? fmt(r.get(n)!) : '-', widths[i]!)).join('  ')}`);
  console.log(`\nwharf's speed as a multiple of each (above 1: wharf is faster)`);
  const others = names.filter((n) => n !== 'wharf' && !n.startsWith('wharf ('));
  const owidths = others.map((n) => Math.max(n.length, 6));
  console.log(`${'case'.padEnd(width)}  ${others.map((n, i) => col(n, owidths[i]!)).join('  ')}`);
  // A build's "(fields as streams)" row is set against wharf's own, like against like.
  const mine = (n: string): string => (also !== undefined && n === `${also.label} (fields as streams)` ? 'wharf (fields as streams)' : 'wharf');
  for (const [c, r] of results) {
    const ratio = (n: string): string => `${(r.get(mine(n))! / r.get(n)!).toFixed(2)}x`;
    console.log(`${c.name.padEnd(width)}  ${others.map((n, i) => col(r.has(n) ? ratio(n) : '-', owidths[i]!)).join('  ')}`);
  }

  // The issue's targets, checked on this run's figures.
  const check = (ok: boolean, what: string): string => `${ok ? 'met    ' : 'MISSED '} ${what}`;
  console.log('\ntargets');
  for (const [c, r] of results) {
    const best = Math.max(...PEERS.map((p) => r.get(p.name)!));
    console.log(`  ${check(r.get('wharf')! >= best, `${c.name}: wharf ${fmt(r.get('wharf')!)} >= fastest peer ${fmt(best)}`)}`);
  }
  const fields = results.find(([c]) => c.kind === 'fields')?.[1];
  if (fields) console.log(`  ${check(fields.get('wharf')! >= 2 * fields.get('busboy')!, `fields: wharf ${fmt(fields.get('wharf')!)} >= 2x busboy ${fmt(fields.get('busboy')!)}`)}`);
  const large = results.find(([c]) => c.kind === 'file' && c.chunk === 64 * KiB)?.[1].get('wharf');
  for (const [c, r] of results.filter(([c]) => c.kind === 'dashes' || c.kind === 'prefixes')) {
    if (large === undefined) break;
    const w = r.get('wharf')!;
    const what = `${c.kind === 'dashes' ? '\\r\\n-- fragments' : 'delimiter prefixes (beyond the issue)'}: wharf ${fmt(w)} >= 70% of its large-file speed ${fmt(large)} (${((100 * w) / large).toFixed(0)}%)`;
    console.log(`  ${check(w >= 0.7 * large, what)}`);
  }
}

await main();
