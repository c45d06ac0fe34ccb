// lib/multipart/parser.ts: every rule and hostile case of issue 2, each body fed whole, split at every
// byte offset (small bodies), in 1-byte chunks and in seeded random chunks, through both kinds of
// source (an async generator and a Readable), read through `body` and through `text()`: the
// results must be identical, and equal to what the RFCs say.
import test from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { collectPart, parseMultipart, sinkPart, type Part, type PartSink, type MultipartLimits } from '../lib/multipart/parser.js';
import { indexOfDelimiter, shiftTable, TWO_SEARCHES } from '../lib/multipart/delimiter-search.js';
import { WharfError } from '../lib/common/errors.js';
import { sendError } from '../lib/http/answer.js';
import { DEFAULT_LIMITS } from '../lib/common/limits.js';
import { rng } from './helpers/fuzz-gen.js';
import { defer } from './helpers/defer.js';

const B = 'b0undary';
const CT = `multipart/form-data; boundary=${B}`;

interface Got {
  name: string;
  filename: string | undefined;
  contentType: string;
  headers: Record<string, string>;
  data: string; // latin1, so any byte compares exactly
}

type Outcome = { parts: Got[] } | { error: string; status: number; after: Got[] };

async function* generate(chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const c of chunks) yield c;
}

async function readStream(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

interface RunOptions {
  contentType?: string | undefined;
  limits?: Partial<MultipartLimits>;
  readable?: boolean;
  text?: boolean;
}

/** Parses `chunks` and reads every part; errors become `{ error: code }` (never thrown). */
async function run(chunks: Buffer[], o: RunOptions = {}): Promise<Outcome> {
  const source = o.readable ? Readable.from(chunks, { objectMode: false }) : generate(chunks);
  const got: Got[] = [];
  const contentType = 'contentType' in o ? o.contentType : CT;
  try {
    for await (const part of parseMultipart(source, { contentType, limits: o.limits ?? {} })) {
      // text() decodes UTF-8, so it is compared on parts whose bytes are text; the rest go through body.
      const data = o.text ? Buffer.from(await part.text(), 'utf8').toString('latin1') : await readStream(part.body);
      got.push({ name: part.name, filename: part.filename, contentType: part.contentType, headers: { ...part.headers }, data });
    }
  } catch (err) {
    assert.ok(err instanceof WharfError, `not a WharfError: ${String(err)}`);
    return { error: err.code, status: err.status, after: got };
  }
  return { parts: got };
}

/** Every chunking of `body` this suite feeds: whole, each 2-way split, 1-byte, and seeded random ones. */
function chunkings(body: Buffer, seed = 1): Buffer[][] {
  const out: Buffer[][] = [[body]];
  if (body.length <= 2048) for (let i = 1; i < body.length; i++) out.push([body.subarray(0, i), body.subarray(i)]);
  if (body.length <= 65536) out.push(Array.from({ length: body.length }, (_, i) => body.subarray(i, i + 1)));
  const rnd = rng(seed);
  for (let k = 0; k < 4; k++) {
    const chunks: Buffer[] = [];
    const max = k < 2 ? (body.length > 65536 ? 4096 : 8) : Math.max(8, body.length >> 2);
    for (let i = 0; i < body.length; ) {
      const n = 1 + Math.floor(rnd() * max);
      chunks.push(body.subarray(i, i + n));
      i += n;
    }
    out.push(chunks);
  }
  return out;
}

/** The outcome of `body` under every chunking, both sources and both ways of reading; all must agree. */
async function outcome(body: Buffer | string, o: RunOptions = {}): Promise<Outcome> {
  const buf = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const all = chunkings(buf);
  const first = await run(all[0]!, o);
  for (let i = 1; i < all.length; i++) {
    const alt = { ...o, readable: i % 2 === 1, text: o.text ?? false };
    const r = await run(all[i]!, alt);
    assert.deepEqual(r, first, `chunking #${i} (${all[i]!.map((c) => c.length).join(',')}) differs`);
  }
  return first;
}

async function parts(body: Buffer | string, o: RunOptions = {}): Promise<Got[]> {
  const r = await outcome(body, o);
  assert.ok('parts' in r, `expected parts, got ${JSON.stringify(r)}`);
  return r.parts;
}

async function fails(body: Buffer | string, code: string, o: RunOptions = {}): Promise<Outcome> {
  const r = await outcome(body, o);
  assert.ok('error' in r, `expected ${code}, got parts ${JSON.stringify(r).slice(0, 300)}`);
  assert.equal(r.error, code);
  assert.equal(r.status, code.startsWith('LIMIT_') || code === 'MULTIPART_HEADER_TOO_LARGE' ? 413 : 400);
  return r;
}

const field = (name: string, value: string, extra = ''): string =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n${extra}\r\n${value}\r\n`;
const file = (name: string, filename: string, value: string, type?: string): string =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\n${type ? `Content-Type: ${type}\r\n` : ''}\r\n${value}\r\n`;
const end = `--${B}--`;
const cd = (params: string): Record<string, string> => ({ 'content-disposition': `form-data; ${params}` });

test('a field and a file: names, filenames, default and given types, lower-cased headers', async () => {
  const got = await parts(field('a', 'hello') + file('f', 'x.txt', 'file body') + file('g', 'y.png', 'PNG', 'image/png') + end);
  assert.deepEqual(got, [
    { name: 'a', filename: undefined, contentType: 'text/plain', headers: cd('name="a"'), data: 'hello' },
    { name: 'f', filename: 'x.txt', contentType: 'application/octet-stream', headers: cd('name="f"; filename="x.txt"'), data: 'file body' },
    { name: 'g', filename: 'y.png', contentType: 'image/png', headers: { ...cd('name="g"; filename="y.png"'), 'content-type': 'image/png' }, data: 'PNG' },
  ]);
});

test('text() gives the same bytes as body, for fields and files', async () => {
  const body = Buffer.from(field('a', 'hëllo ✓') + file('f', 'x', 'data') + field('empty', '') + end, 'utf8');
  const viaBody = await parts(body);
  const viaText = await parts(body, { text: true });
  assert.deepEqual(viaText, viaBody);
  assert.equal(viaText[0]!.data, Buffer.from('hëllo ✓', 'utf8').toString('latin1'));
});

test('preamble and epilogue are ignored; the first delimiter may come with or without a CRLF before it', async () => {
  const expected = [{ name: 'a', filename: undefined, contentType: 'text/plain', headers: cd('name="a"'), data: 'v' }];
  assert.deepEqual(await parts(field('a', 'v') + end), expected);
  assert.deepEqual(await parts('\r\n' + field('a', 'v') + end), expected);
  assert.deepEqual(await parts(`This is the preamble.\r\n--${B.slice(0, -1)}x is not a delimiter\r\n` + field('a', 'v') + end + '\r\nThe epilogue, --b0undary-- and all.\r\n'), expected);
  assert.deepEqual(await parts(field('a', 'v') + end + '\r\n'), expected);
  assert.deepEqual(await parts(field('a', 'v') + end + 'garbage without a line break'), expected);
});

test('transport padding (spaces and tabs) after a delimiter and after the close delimiter', async () => {
  const got = await parts(`--${B} \t \r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--${B}\t\r\nContent-Disposition: form-data; name="b"\r\n\r\nw\r\n--${B}--  \t\r\n`);
  assert.deepEqual(
    got.map((p) => [p.name, p.data]),
    [
      ['a', 'v'],
      ['b', 'w'],
    ],
  );
});

test('partial delimiters and boundary-like runs inside data are data', async () => {
  const tricky = [
    '\r',
    '\r\n',
    '\r\n-',
    '\r\n--',
    `\r\n--${B.slice(0, 4)}`,
    `\r\n--${B.slice(0, -1)}`,
    `\r\r\n--${B.slice(0, -1)}\r\n`,
    `\t--${B}`, // a boundary not at the start of a line
    `x--${B}--`,
    `\n--${B}`, // LF alone is no line break for a delimiter
    `\r--${B}`,
    `\r\n-${B}`,
    `\r\n--${B.toUpperCase()}`,
    `\r\n--\r\n--\r\n--${B.slice(0, 3)}\r\n--${B.slice(0, 7)}`,
  ];
  for (const value of tricky) {
    const got = await parts(file('f', 'x', value) + field('after', value) + end);
    assert.deepEqual(
      got.map((p) => p.data),
      [value, value],
      JSON.stringify(value),
    );
  }
});

test('data ending in a delimiter prefix, and data that is nothing but delimiter prefixes', async () => {
  let value = '';
  const d = `\r\n--${B}`;
  for (let i = 1; i < d.length; i++) value += d.slice(0, i);
  const got = await parts(file('f', 'x', value) + file('g', 'y', value + '\r') + end);
  assert.deepEqual(
    got.map((p) => p.data),
    [value, value + '\r'],
  );
});

test('the delimiter search finds the first delimiter wherever it is: either half of a chunk, both, across the middle, none', () => {
  // indexOfDelimiter searches both halves of a chunk at once from TWO_SEARCHES bytes on, and once
  // below: both must agree with Buffer#indexOf.
  const r = rng(21);
  for (const boundary of ['b', B, '----WebKitFormBoundary7MA4YWxkTrZu0gW', 'x'.repeat(70)]) {
    const d = Buffer.from(`\r\n--${boundary}`, 'latin1');
    const shift = shiftTable(d);
    for (let round = 0; round < 300; round++) {
      // Small chunks (one search), and chunks over the threshold with a busy stretch of 300 bytes at
      // their start, around their middle or at their end (two searches).
      const small = round % 4 === 0;
      const n = small ? Math.floor(r() * 300) : TWO_SEARCHES + Math.floor(r() * 600);
      const c = Buffer.alloc(n, 'a');
      const busy = small ? 0 : [0, (n >> 1) - 150, n - 300][round % 3]!;
      const len = Math.min(300, n);
      // Mostly bytes of the delimiter itself (so prefixes and near misses abound), some random ones.
      for (let i = busy; i < busy + len; i++) c[i] = r() < 0.7 ? d[Math.floor(r() * d.length)]! : Math.floor(r() * 256);
      const plants = Math.floor(r() * 3);
      for (let k = 0; k < plants && len >= d.length; k++) d.copy(c, busy + Math.floor(r() * (len - d.length + 1)));
      const from = small || r() < 0.2 ? Math.floor(r() * (n + 1)) : Math.floor(r() * 300);
      assert.equal(indexOfDelimiter(c, from, d, shift), c.indexOf(d, from), `${boundary} n=${n} from=${from}`);
    }
    // A delimiter ending just before the middle of the two searches, at it, and just after it,
    // alone and with one after it; and in a chunk of nothing else.
    for (const n of [TWO_SEARCHES, TWO_SEARCHES + 1, TWO_SEARCHES + d.length]) {
      const mid = d.length - 1 + ((n - d.length + 1) >> 1);
      for (let delta = -d.length - 1; delta <= d.length + 1; delta++) {
        const at = mid + delta - (d.length - 1);
        const c = Buffer.alloc(n, 'a');
        d.copy(c, at);
        assert.equal(indexOfDelimiter(c, 0, d, shift), at, `${boundary} n=${n} at=${at}`);
        d.copy(c, n - d.length);
        assert.equal(indexOfDelimiter(c, 0, d, shift), at, `${boundary} n=${n} at=${at}, one more at the end`);
      }
      assert.equal(indexOfDelimiter(Buffer.alloc(n, 'a'), 0, d, shift), -1, 'none');
    }
  }
});

test('empty parts, an empty body part list, and parts with no data before the close', async () => {
  const got = await parts(field('a', '') + file('f', 'e.txt', '') + field('b', '') + end);
  assert.deepEqual(
    got.map((p) => [p.name, p.filename, p.data]),
    [
      ['a', undefined, ''],
      ['f', 'e.txt', ''],
      ['b', undefined, ''],
    ],
  );
  // A part may have no body at all, not even the CRLF after its blank line (RFC 2046 §5.1.1).
  const bare = await parts(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n--${B}\r\nContent-Disposition: form-data; name="b"\r\n\r\n--${B}--`);
  assert.deepEqual(
    bare.map((p) => [p.name, p.data]),
    [
      ['a', ''],
      ['b', ''],
    ],
  );
  // A body that is only the close delimiter has no parts.
  assert.deepEqual(await parts(end), []);
  assert.deepEqual(await parts(`preamble\r\n${end}\r\n`), []);
});

test('binary data with every byte value passes through unchanged', async () => {
  let all = '';
  for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
  const got = await parts(file('f', 'bin', all + all) + end);
  assert.equal(got[0]!.data, all + all);
});

test('boundaries: quoted or not, 1 to 70 characters of the RFC alphabet, other parameters ignored', async () => {
  const ok = ['a', 'x'.repeat(70), "0'()+_,-./:=?Z", 'with space inside', '----WebKitFormBoundaryAbC123xYz456QrSt'];
  for (const b of ok) {
    const body = `--${b}\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--${b}--`;
    for (const ct of [`multipart/form-data; boundary="${b}"`, `Multipart/Form-Data ;charset=utf-8; BOUNDARY="${b}" ; x=y`]) {
      const r = await outcome(body, { contentType: ct });
      assert.deepEqual(r, { parts: [{ name: 'a', filename: undefined, contentType: 'text/plain', headers: cd('name="a"'), data: 'v' }] }, ct);
    }
    if (!b.includes(' ')) {
      const r = await run([Buffer.from(body)], { contentType: `multipart/form-data; boundary=${b}` });
      assert.ok('parts' in r && r.parts.length === 1, b);
    }
  }
});

test('MULTIPART_NO_BOUNDARY: missing, invalid or ambiguous boundary, or not multipart/form-data', async () => {
  const body = [Buffer.from(field('a', 'v') + end)];
  const bad: (string | undefined)[] = [
    undefined,
    '',
    'text/plain',
    'multipart/mixed; boundary=b0undary',
    'multipart/form-data',
    'multipart/form-data;',
    'multipart/form-data; charset=utf-8',
    'multipart/form-data; boundary=',
    'multipart/form-data; boundary=""',
    `multipart/form-data; boundary=${'x'.repeat(71)}`,
    'multipart/form-data; boundary="ends with space "',
    'multipart/form-data; boundary=bad*char',
    'multipart/form-data; boundary="bad\\char"',
    'multipart/form-data; boundary=caf\u00e9',
    'multipart/form-data; boundary="unterminated',
    'multipart/form-data; boundary=a; boundary=b',
    'multipart/form-data; boundary',
    'multipart/form-data; =x',
    'multipart/form-data; boundary=a"b',
    'multipart/form-data junk; boundary=a',
  ];
  for (const contentType of bad) {
    const r = await run(body, { contentType });
    assert.deepEqual(r, { error: 'MULTIPART_NO_BOUNDARY', status: 400, after: [] }, String(contentType));
  }
});

test('MULTIPART_UNEXPECTED_END: the body ends anywhere before the close delimiter', async () => {
  const cases = [
    '',
    'just a preamble',
    `--${B}`,
    `--${B}-`,
    `--${B}\r`,
    `--${B}  `,
    `--${B}\r\n`,
    `--${B}\r\nContent-Disposition: form-data; name="a"`,
    `--${B}\r\nContent-Disposition: form-data; name="a"\r\n`,
    `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r`,
    field('a', 'v').slice(0, -2),
    field('a', 'v'),
    field('a', 'v') + `--${B}`,
    field('a', 'v') + `--${B}-`,
    field('a', 'v') + `--${B.slice(0, 3)}`,
    field('a', 'v') + `\r\n--${B}--`.slice(2, 6),
  ];
  for (const body of cases) {
    const r = await fails(body, 'MULTIPART_UNEXPECTED_END');
    assert.ok('after' in r && r.after.length <= 1, JSON.stringify(body));
  }
});

test('MULTIPART_MALFORMED_DELIMITER: a delimiter followed by anything but "--", padding and CRLF', async () => {
  for (const tail of [`x`, `-x`, ` x`, `\rx`, `\t-`, ` --`]) {
    await fails(field('a', 'v') + `--${B}${tail}\r\n` + field('b', 'w') + end, 'MULTIPART_MALFORMED_DELIMITER');
  }
  await fails(`--${B}x\r\n` + field('a', 'v') + end, 'MULTIPART_MALFORMED_DELIMITER');
  // Data may not start with the boundary either: after the blank line's CRLF it is a delimiter.
  await fails(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n--${B}x\r\n${end}`, 'MULTIPART_MALFORMED_DELIMITER');
});

test('MULTIPART_MALFORMED_HEADER: folding, no colon, bad names, control characters, bare LF, repeats', async () => {
  const head = `--${B}\r\n`;
  const tail = `\r\n\r\nv\r\n${end}`;
  const cdLine = 'Content-Disposition: form-data; name="a"';
  const cases = [
    `${cdLine}\r\n continued`,
    `${cdLine}\r\n\tcontinued`,
    ` ${cdLine}`,
    `\t${cdLine}`,
    `no colon here\r\n${cdLine}`,
    `${cdLine}\r\nnocolon`,
    `: empty name\r\n${cdLine}`,
    `Bad Name: x\r\n${cdLine}`,
    `B@d: x\r\n${cdLine}`,
    `X-Ctl: a\u0001b\r\n${cdLine}`,
    `X-Ctl: a\u007fb\r\n${cdLine}`,
    `X-Cr: a\rb\r\n${cdLine}`,
    `X-Lf: a\nb: c\r\n${cdLine}`,
    `${cdLine}\nX: bare LF`,
    `${cdLine}\r\nContent-Disposition: form-data; name="b"`,
    `${cdLine}\r\ncontent-type: text/plain\r\nContent-Type: image/png`,
    'Content-Disposition: form-data; name="a"; name="b"',
    'Content-Disposition: form-data; name="a',
    'Content-Disposition: form-data; name',
    'Content-Disposition: form-data; name="a" junk',
    'Content-Disposition: form-data; name=a"b',
    `Content-Disposition: form-data; name="a"; filename*=bogus`,
    `Content-Disposition: form-data; name="a"; filename*=UTF-8''%ZZ`,
    `Content-Disposition: form-data; name="a"; filename*=UTF-8''%C3`,
    `Content-Disposition: form-data; name="a"; filename*=Shift_JIS''x`,
    `Content-Disposition: form-data; name="a"; filename*=UTF-8''a b`,
  ];
  for (const h of cases) await fails(head + h + tail, 'MULTIPART_MALFORMED_HEADER');
  // The end of the header block itself may not be a bare LF either.
  await fails(`${head}${cdLine}\r\n\nv\r\n${end}`, 'MULTIPART_MALFORMED_HEADER');
});

test('a header line without a colon fails at once, not after many KiB of the same', async () => {
  const r = await firstError([Buffer.from(`--${B}\r\nnot a header\r\n`)]);
  assert.equal(r, 'MULTIPART_MALFORMED_HEADER');
  await fails(`--${B}\r\n` + 'no colon at all\r\n'.repeat(4000) + `\r\nv\r\n${end}`, 'MULTIPART_MALFORMED_HEADER');
});

test('MULTIPART_HEADER_TOO_LARGE: one huge header, thousands of headers, endless padding; limits apply exactly', async () => {
  const head = `--${B}\r\nContent-Disposition: form-data; name="a"\r\n`;
  await fails(`${head}X-Big: ${'x'.repeat(17 * 1024)}\r\n\r\nv\r\n${end}`, 'MULTIPART_HEADER_TOO_LARGE');
  const many = Array.from({ length: 5000 }, (_, i) => `X-${i}: ${i}\r\n`).join('');
  await fails(`${head}${many}\r\nv\r\n${end}`, 'MULTIPART_HEADER_TOO_LARGE');
  await fails(`--${B}${' '.repeat(20000)}\r\n` + `Content-Disposition: form-data; name="a"\r\n\r\nv\r\n${end}`, 'MULTIPART_HEADER_TOO_LARGE');
  // Thousands of headers are fine (and parsed in linear time) when the limit allows them; repeats join.
  const got = await run([Buffer.from(`${head}${many}X-0: again\r\n\r\nv\r\n${end}`)], { limits: { headerSize: 1 << 20 } });
  assert.ok('parts' in got);
  assert.equal(Object.keys(got.parts[0]!.headers).length, 5001);
  assert.equal(got.parts[0]!.headers['x-0'], '0, again');
  assert.equal(got.parts[0]!.headers['x-4999'], '4999');
  // The block is counted from after the delimiter line to its blank line, both CRLFs included.
  const block = 'Content-Disposition: form-data; name="a"\r\n\r\n';
  const body = `--${B}\r\n${block}v\r\n${end}`;
  assert.ok('parts' in (await outcome(body, { limits: { headerSize: block.length } })));
  await fails(body, 'MULTIPART_HEADER_TOO_LARGE', { limits: { headerSize: block.length - 1 } });
  // And it fails as soon as the limit is passed, without waiting for the rest of the line.
  assert.equal(await firstError([Buffer.from(`${head}X-Big: ${'x'.repeat(20000)}`)]), 'MULTIPART_HEADER_TOO_LARGE');
});

test('MULTIPART_NO_DISPOSITION and MULTIPART_NO_NAME', async () => {
  await fails(`--${B}\r\nContent-Type: text/plain\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_DISPOSITION');
  await fails(`--${B}\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_DISPOSITION');
  await fails(`--${B}\r\nContent-Disposition: attachment; name="a"\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_DISPOSITION');
  await fails(`--${B}\r\nContent-Disposition: ; name="a"\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_DISPOSITION');
  await fails(`--${B}\r\nContent-Disposition: form-data, name="a"\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_DISPOSITION');
  await fails(field('a', 'v') + `--${B}\r\nContent-Disposition: form-data\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_NAME');
  await fails(`--${B}\r\nContent-Disposition: form-data; name=""\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_NAME');
  await fails(`--${B}\r\nContent-Disposition: form-data; filename="x"\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_NAME');
  await fails(`--${B}\r\nContent-Disposition: form-data; name=\r\n\r\nv\r\n${end}`, 'MULTIPART_NO_NAME');
});

test('filenames: filename* beats filename, raw UTF-8, HTML escapes, backslashes, empty, ISO-8859-1', async () => {
  const one = async (params: string): Promise<Got> => {
    const got = await parts(Buffer.from(`--${B}\r\nContent-Disposition: form-data; ${params}\r\n\r\nv\r\n${end}`, 'utf8'));
    assert.equal(got.length, 1);
    return got[0]!;
  };
  assert.equal((await one(`name="f"; filename="plain.txt"; filename*=UTF-8''na%C3%AFve.txt`)).filename, 'naïve.txt');
  assert.equal((await one(`name="f"; filename*=utf-8'en'%E2%82%AC%20rates.txt; filename="EUR rates.txt"`)).filename, '€ rates.txt');
  assert.equal((await one(`name="f"; filename*=UTF-8''only.txt`)).filename, 'only.txt');
  assert.equal((await one(`name="f"; filename*=ISO-8859-1''caf%E9.txt`)).filename, 'café.txt');
  // An undecodable filename* falls back to filename (RFC 6266 §4.3).
  assert.equal((await one(`name="f"; filename="fallback.txt"; filename*=UTF-8''%FF%FE`)).filename, 'fallback.txt');
  assert.equal((await one(`name="f"; filename="fallback.txt"; filename*=KOI8-R''x`)).filename, 'fallback.txt');
  // filename* must be pure ASCII: a raw non-ASCII or space character makes it undecodable.
  assert.equal((await one(`name="f"; filename="fallback.txt"; filename*="UTF-8''caf\u00e9 x"`)).filename, 'fallback.txt');
  // Browsers send non-ASCII names as raw UTF-8 bytes.
  const raw = await one(`name="na\u00efve"; filename="\u65e5\u672c\u8a9e \u{1f600}.txt"`);
  assert.deepEqual([raw.name, raw.filename], ['naïve', '日本語 😀.txt']);
  // The HTML spec escapes ", CR and LF in names as %22, %0D, %0A; nothing else is unescaped.
  const esc = await one(`name="a%22b"; filename="x%22y%0D%0Az%25.txt %zz %2"`);
  assert.deepEqual([esc.name, esc.filename], ['a"b', 'x"y\r\nz%25.txt %zz %2']);
  // No backslash escapes in HTML's encoding: a Windows path keeps its backslashes.
  assert.equal((await one(`name="f"; filename="C:\\dir\\x.txt"`)).filename, 'C:\\dir\\x.txt');
  // filename="" (an empty file input) is a file part with an empty name, typed as a file.
  const empty = await one(`name="f"; filename=""`);
  assert.deepEqual([empty.filename, empty.contentType], ['', 'application/octet-stream']);
  // Unquoted (token) values, odd spacing and case in parameter names.
  const tok = await one(`name=plain ;FILENAME = tok.txt ;`);
  assert.deepEqual([tok.name, tok.filename], ['plain', 'tok.txt']);
  // A quoted value may hold ; and = and spaces.
  assert.equal((await one(`name="f"; filename="a; b=c.txt"`)).filename, 'a; b=c.txt');
  // A field is a part without filename, whatever its type.
  const typed = await parts(`--${B}\r\nContent-Disposition: form-data; name="x"\r\nContent-Type: application/octet-stream\r\n\r\nv\r\n${end}`);
  assert.deepEqual([typed[0]!.filename, typed[0]!.contentType], [undefined, 'application/octet-stream']);
});

test("the browsers' Content-Disposition line and every other spelling of it read alike", async () => {
  // The exact form browsers send is read straight from the bytes; each case also goes through the
  // general path (split inside the line by `outcome`, and respelled here): all must agree.
  const params = [
    'name="a"',
    'name="a"; filename="x.txt"',
    'name="a"; filename=""',
    'name="sp ace;=,\\"; filename="C:\\dir\\x y.txt"',
    'name="a%22b"; filename="x%0Ay"',
    'name="na\u00efve"; filename="\u65e5\u672c.txt"',
    'name="a"; filename="x"; filename*=UTF-8\'\'%C3%A9',
    'name="a"; other="1"',
    'name="a\tb"',
  ];
  for (const p of params) {
    const body = (line: string): Buffer => Buffer.from(`--${B}\r\n${line}\r\n\r\nv\r\n${field('next', 'w')}${end}`, 'utf8');
    const [browser] = await parts(body(`Content-Disposition: form-data; ${p}`));
    const [respelled] = await parts(body(`content-disposition:  form-data;  ${p} `));
    assert.deepEqual({ ...respelled!, headers: {} }, { ...browser!, headers: {} }, p);
    assert.equal(browser!.headers['content-disposition'], Buffer.from(`form-data; ${p}`, 'utf8').toString());
  }
  // Two of them, the first in the browsers' form, are still two.
  await fails(`--${B}\r\nContent-Disposition: form-data; name="a"\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n${end}`, 'MULTIPART_MALFORMED_HEADER');
  await fails(`--${B}\r\nContent-Type: text/plain\r\nContent-Disposition: form-data; name="a"\r\ncontent-disposition: form-data; name="b"\r\n\r\nv\r\n${end}`, 'MULTIPART_MALFORMED_HEADER');
  // A browser line with a control character after its closing quote is no browser line.
  await fails(`--${B}\r\nContent-Disposition: form-data; name="a"\u0001\r\n\r\nv\r\n${end}`, 'MULTIPART_MALFORMED_HEADER');
});

test('other headers are kept: repeated ones joined, values trimmed, an empty Content-Type defaulted', async () => {
  const got = await parts(
    `--${B}\r\ncontent-DISPOSITION:form-data; name="a"  \r\nX-Tag: one\r\nx-tag:\ttwo \r\nContent-Type: \r\nContent-Transfer-Encoding: 8bit\r\n\r\nv\r\n${end}`,
  );
  assert.deepEqual(got[0], {
    name: 'a',
    filename: undefined,
    contentType: 'text/plain',
    headers: { 'content-disposition': 'form-data; name="a"', 'x-tag': 'one, two', 'content-type': '', 'content-transfer-encoding': '8bit' },
    data: 'v',
  });
});

test('LIMIT_FILE_SIZE and LIMIT_FIELD_SIZE: exactly the limit passes, one byte more fails', async () => {
  const limits = { fileSize: 10, fieldSize: 5 };
  assert.equal((await parts(file('f', 'x', '0123456789') + field('a', '01234') + end, { limits })).length, 2);
  await fails(file('f', 'x', '0123456789A') + end, 'LIMIT_FILE_SIZE', { limits });
  await fails(field('a', '012345') + end, 'LIMIT_FIELD_SIZE', { limits });
  // Delimiter-like bytes count once they turn out to be data.
  await fails(file('f', 'x', '012345678\r\n') + end, 'LIMIT_FILE_SIZE', { limits });
  await fails(file('f', 'x', '', 'text/plain') + file('g', 'y', 'x'.repeat(11)) + end, 'LIMIT_FILE_SIZE', { limits });
  const zero = await fails(field('a', 'v') + file('f', 'x', '') + file('g', 'y', 'z') + end, 'LIMIT_FILE_SIZE', { limits: { fileSize: 0 } });
  assert.ok('after' in zero);
  // The default field limit is 1 MiB.
  await fails(field('a', 'x'.repeat(DEFAULT_LIMITS.fieldSize + 1)) + end, 'LIMIT_FIELD_SIZE');
});

test('LIMIT_FILES, LIMIT_FIELDS, LIMIT_PARTS: counted as each part starts', async () => {
  const body = field('a', '1') + file('f', 'x', '2') + field('b', '3') + file('g', 'y', '4') + end;
  assert.equal((await parts(body, { limits: { files: 2, fields: 2, parts: 4 } })).length, 4);
  await fails(body, 'LIMIT_FILES', { limits: { files: 1 } });
  await fails(body, 'LIMIT_FIELDS', { limits: { fields: 1 } });
  await fails(body, 'LIMIT_PARTS', { limits: { parts: 3 } });
  await fails(body, 'LIMIT_FILES', { limits: { files: 0 } });
  const r = await fails(body, 'LIMIT_FIELDS', { limits: { fields: 0 } });
  assert.deepEqual('after' in r && r.after, []);
});

test('25,000 tiny parts parse with raised limits, and stop at the default part limit', async () => {
  let body = '';
  for (let i = 0; i < 25000; i++) body += `--${B}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${i % 10}\r\n`;
  body += end;
  const buf = Buffer.from(body);
  for (const chunks of chunkings(buf).slice(-4)) {
    const r = await run(chunks, { limits: { parts: 25000, fields: 25000 }, text: true });
    assert.ok('parts' in r);
    assert.equal(r.parts.length, 25000);
    assert.deepEqual([r.parts[24999]!.name, r.parts[24999]!.data], ['f24999', '9']);
  }
  const r = await run([buf], { limits: { fields: 25000 } });
  assert.ok('error' in r && r.error === 'LIMIT_PARTS' && r.after.length === DEFAULT_LIMITS.parts);
  const f = await run([buf]);
  assert.ok('error' in f && f.error === 'LIMIT_FIELDS' && f.after.length === DEFAULT_LIMITS.fields);
});

/** The code the iteration rejects with when `chunks` are followed by a source that never ends. */
async function firstError(chunks: Buffer[], limits: Partial<MultipartLimits> = {}): Promise<string> {
  let pulled = 0;
  const source: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]: () => ({
      next: () => (pulled < chunks.length ? Promise.resolve({ done: false, value: chunks[pulled++]! }) : new Promise<never>(() => {})),
    }),
  };
  try {
    for await (const part of parseMultipart(source, { contentType: CT, limits })) part.body.resume();
  } catch (err) {
    return (err as WharfError).code;
  }
  return 'none';
}

test('a limit is reported the moment it is crossed, not after the rest of the body', async () => {
  const head = Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n`);
  assert.equal(await firstError([head, Buffer.alloc(100, 1), Buffer.alloc(100, 1)], { fileSize: 150 }), 'LIMIT_FILE_SIZE');
  assert.equal(await firstError([Buffer.from(field('a', '1') + field('b', '2'))], { fields: 1 }), 'LIMIT_FIELDS');
  assert.equal(await firstError([Buffer.from(field('a', 'x'.repeat(50)))], { fieldSize: 10 }), 'LIMIT_FIELD_SIZE');
});

/** A source of `count` chunks of `size` bytes of one file part, counting how many were taken. */
function countingSource(count: number, size: number): { source: AsyncIterable<Buffer>; pulled: () => number } {
  let pulled = 0;
  const head = Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n`);
  const tail = Buffer.from(`\r\n${end}`);
  async function* gen(): AsyncGenerator<Buffer> {
    pulled++;
    yield head;
    for (let i = 0; i < count; i++) {
      pulled++;
      yield Buffer.alloc(size, i & 0xff);
    }
    pulled++;
    yield tail;
  }
  return { source: gen(), pulled: () => pulled };
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

test('backpressure: while a body is not read, the parser stops taking input', async () => {
  const { source, pulled } = countingSource(1000, 16 * 1024);
  const it = parseMultipart(source, { contentType: CT });
  const { value: part } = await it.next();
  assert.ok(part);
  const body = part.body;
  await turns(50);
  const before = pulled();
  assert.ok(before < 10, `took ${before} chunks with nobody reading`);
  await turns(50);
  assert.equal(pulled(), before);
  let bytes = 0;
  for await (const c of body) bytes += (c as Buffer).length;
  assert.equal(bytes, 1000 * 16 * 1024);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('backpressure: a part nobody has touched holds the parser too, and a Readable source is paused', async () => {
  const chunks: Buffer[] = [Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n`)];
  for (let i = 0; i < 200; i++) chunks.push(Buffer.alloc(16 * 1024, 7));
  chunks.push(Buffer.from(`\r\n${end}`));
  const src = new PassThrough({ highWaterMark: 16 * 1024 });
  let written = 0;
  const writer = (async () => {
    for (const c of chunks) {
      written++;
      if (!src.write(c)) await once(src, 'drain');
    }
    src.end();
  })();
  const it = parseMultipart(src, { contentType: CT });
  const { value: part } = await it.next();
  assert.ok(part);
  await turns(50);
  assert.ok(written < 10, `wrote ${written} chunks into a parser nobody reads`);
  assert.equal(src.isPaused(), true);
  const text = await part.text();
  assert.equal(text.length, 200 * 16 * 1024);
  await writer;
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('moving to the next part drains an unread body and drops an untouched one', async () => {
  const big = 'x'.repeat(300 * 1024);
  const body = file('skipped', 'a', big) + file('opened', 'b', big) + field('last', 'v') + end;
  for (const chunks of [[Buffer.from(body)], chunkings(Buffer.from(body)).at(-1)!]) {
    const it = parseMultipart(generate(chunks), { contentType: CT });
    const a = (await it.next()).value as Part;
    const b = (await it.next()).value as Part;
    const opened = b.body; // opened, never read
    const c = (await it.next()).value as Part;
    assert.deepEqual([a.name, b.name, c.name], ['skipped', 'opened', 'last']);
    assert.equal(await c.text(), 'v');
    await finished(opened);
    assert.equal(await readStream(a.body), '', 'a dropped part reads as empty');
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  }
});

test('an error met while dropping an untouched part rejects the next() that dropped it', async () => {
  const namesOnly = async (body: string, limits: Partial<MultipartLimits> = {}): Promise<string[]> => {
    const names: string[] = [];
    for await (const part of parseMultipart(generate([Buffer.from(body)]), { contentType: CT, limits })) names.push(part.name);
    return names;
  };
  const cases: [string, Partial<MultipartLimits>, string][] = [
    [`${field('a', 'x')}--${B}\r\nno colon\r\n\r\ny\r\n${end}`, {}, 'MULTIPART_MALFORMED_HEADER'],
    [`${field('a', 'x'.repeat(100))}${end}`, { fieldSize: 10 }, 'LIMIT_FIELD_SIZE'],
    [`${field('a', 'x')}${field('b', 'y')}${end}`, { parts: 1 }, 'LIMIT_PARTS'],
    [`${field('a', 'x')}--${B}junk\r\n${end}`, {}, 'MULTIPART_MALFORMED_DELIMITER'],
    [`${field('a', 'x')}`, {}, 'MULTIPART_UNEXPECTED_END'],
  ];
  for (const [body, limits, code] of cases) await assert.rejects(namesOnly(body, limits), { code }, code);
  assert.deepEqual(await namesOnly(field('a', 'x') + field('b', 'y') + end), ['a', 'b']);
});

test('an error reaches the body being piped and the iteration, with the same code', async () => {
  const head = Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n`);
  const chunks = [head, Buffer.alloc(1000, 1), Buffer.alloc(1000, 2), Buffer.alloc(1000, 3)];
  const it = parseMultipart(generate(chunks), { contentType: CT, limits: { fileSize: 2500 } });
  const part = (await it.next()).value as Part;
  let written = 0;
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      written += c.length;
      cb();
    },
  });
  const piped = pipeline(part.body, sink).then(
    () => 'ok',
    (e: WharfError) => e.code,
  );
  await assert.rejects(it.next(), (e: unknown) => e instanceof WharfError && e.code === 'LIMIT_FILE_SIZE' && e.status === 413);
  assert.equal(await piped, 'LIMIT_FILE_SIZE');
  assert.ok(written <= 2000);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('an error on a body nobody listens to does not crash; text() rejects with it', async () => {
  const head = `--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n`;
  const it = parseMultipart(generate([Buffer.from(head + 'abc')]), { contentType: CT });
  const part = (await it.next()).value as Part;
  const body = part.body;
  let seen = 0;
  body.on('data', (c: Buffer) => (seen += c.length)); // and no 'error' listener
  await assert.rejects(it.next(), { code: 'MULTIPART_UNEXPECTED_END' });
  assert.equal(seen, 3);
  await turns(5);
  assert.equal(body.destroyed, true);
  // A body first asked for after the failure is born destroyed with it.
  const it2 = parseMultipart(generate([Buffer.from(head + 'abc')]), { contentType: CT });
  const p2 = (await it2.next()).value as Part;
  const text = p2.text();
  await assert.rejects(text, { code: 'MULTIPART_UNEXPECTED_END' });
  await assert.rejects(it2.next(), { code: 'MULTIPART_UNEXPECTED_END' });
  assert.equal(p2.text(), text);
  const late = p2.body;
  await assert.rejects(readStream(late), { code: 'MULTIPART_UNEXPECTED_END' });
});

test('break out of the iteration: an open body is destroyed and the source released', async () => {
  let finalized = false;
  async function* source(): AsyncGenerator<Buffer> {
    try {
      yield Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nabc`);
      for (;;) yield Buffer.alloc(16 * 1024, 1);
    } finally {
      finalized = true;
    }
  }
  const it = parseMultipart(source(), { contentType: CT });
  let body: Readable | undefined;
  for await (const part of it) {
    body = part.body;
    break;
  }
  assert.ok(body);
  assert.equal(body.destroyed, true);
  await turns(2);
  assert.equal(finalized, true);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  // A pending text() is rejected.
  const it2 = parseMultipart(generate([Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx`)]), { contentType: CT });
  const p = (await it2.next()).value as Part;
  const t = p.text();
  await it2.return!();
  await assert.rejects(t, { code: 'MULTIPART_ABORTED' });
});

test('a failing source: its WharfError passes through, anything else is MULTIPART_UNEXPECTED_END with the cause', async () => {
  const boom = new Error('socket hang up');
  async function* failing(err: unknown): AsyncGenerator<Buffer> {
    yield Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nabc`);
    throw err;
  }
  await assert.rejects(
    (async () => {
      for await (const p of parseMultipart(failing(boom), { contentType: CT })) await p.text();
    })(),
    (e: unknown) => e instanceof WharfError && e.code === 'MULTIPART_UNEXPECTED_END' && e.cause === boom,
  );
  const mine = new WharfError('LIMIT_REQUEST_SIZE', 'too big', 413);
  await assert.rejects(
    (async () => {
      for await (const p of parseMultipart(failing(mine), { contentType: CT })) p.body.resume();
    })(),
    (e: unknown) => e === mine,
  );
  const throwsAtOnce: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]: () => {
      throw boom;
    },
  };
  await assert.rejects(parseMultipart(throwsAtOnce, { contentType: CT }).next(), { code: 'MULTIPART_UNEXPECTED_END' });
});

test('a Readable source: errors, premature close, already ended; it is paused, never destroyed, on failure', async () => {
  const src = new PassThrough();
  src.write(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nabc`);
  const it = parseMultipart(src, { contentType: CT });
  const part = (await it.next()).value as Part;
  part.body.resume();
  src.destroy(new Error('aborted'));
  await assert.rejects(it.next(), { code: 'MULTIPART_UNEXPECTED_END' });

  const closed = new PassThrough();
  const it2 = parseMultipart(closed, { contentType: CT });
  const pending = it2.next();
  closed.destroy();
  await assert.rejects(pending, { code: 'MULTIPART_UNEXPECTED_END' });

  const done = new PassThrough();
  done.end();
  done.resume();
  await once(done, 'end');
  await assert.rejects(parseMultipart(done, { contentType: CT }).next(), { code: 'MULTIPART_UNEXPECTED_END' });
  const gone = new PassThrough();
  gone.destroy();
  await assert.rejects(parseMultipart(gone, { contentType: CT }).next(), { code: 'MULTIPART_UNEXPECTED_END' });

  const kept = new PassThrough();
  kept.write(field('a', 'x'.repeat(100)));
  kept.write('more to come');
  const it3 = parseMultipart(kept, { contentType: CT, limits: { fieldSize: 10 } });
  await assert.rejects((async () => { for await (const p of it3) await p.text(); })(), { code: 'LIMIT_FIELD_SIZE' });
  assert.equal(kept.destroyed, false);
  assert.equal(kept.isPaused(), true);
  kept.destroy();
});

test('a Readable that emits data while paused: the extra chunks wait their turn', async () => {
  const src = new Readable({ read() {} });
  const it = parseMultipart(src, { contentType: CT });
  const first = it.next();
  const head = `--${B}\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n`;
  // Emitted by hand, as a misbehaving stream might: pause() cannot hold these back.
  src.emit('data', Buffer.from(head));
  const sizes = [100_000, 100_000, 100_000];
  for (const [i, n] of sizes.entries()) src.emit('data', Buffer.alloc(n, 97 + i));
  src.emit('data', Buffer.from(`\r\n${field('a', 'after')}${end}`));
  src.emit('end');
  const part = (await first).value as Part;
  const data = await readStream(part.body);
  assert.equal(data, 'a'.repeat(100_000) + 'b'.repeat(100_000) + 'c'.repeat(100_000));
  const next = (await it.next()).value as Part;
  assert.equal(await next.text(), 'after');
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('sources yielding Uint8Arrays work; anything else is refused', async () => {
  const bytes = new TextEncoder().encode(field('a', 'v') + end);
  const u8 = async function* (): AsyncGenerator<Buffer> {
    yield bytes.subarray(0, 10) as Buffer;
    yield bytes.subarray(10) as Buffer;
  };
  const got: string[] = [];
  for await (const p of parseMultipart(u8(), { contentType: CT })) got.push(await p.text());
  assert.deepEqual(got, ['v']);
  const strings = async function* (): AsyncGenerator<Buffer> {
    yield (field('a', 'v') + end) as unknown as Buffer;
  };
  await assert.rejects(parseMultipart(strings(), { contentType: CT }).next(), { code: 'INTERNAL' });
});

test('the iterator: lazy, iterable, concurrent next() calls, done after the end, limits checked at once', async () => {
  let touched = false;
  const lazy: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]: () => {
      touched = true;
      return generate([Buffer.from(field('a', '1') + field('b', '2') + end)]);
    },
  };
  const it = parseMultipart(lazy, { contentType: CT });
  assert.equal(it[Symbol.asyncIterator](), it);
  await turns(2);
  assert.equal(touched, false);
  // Each next() asked for before a part was touched moves past it: a and b are dropped unread.
  const [a, b, c] = await Promise.all([it.next(), it.next(), it.next()]);
  assert.deepEqual([(a.value as Part).name, (b.value as Part).name], ['a', 'b']);
  assert.equal(await (a.value as Part).text(), '');
  assert.equal(await readStream((b.value as Part).body), '');
  assert.deepEqual(c, { done: true, value: undefined });
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  assert.deepEqual(await it.return!(), { done: true, value: undefined });
  assert.throws(() => parseMultipart(generate([]), { contentType: CT, limits: { fileSize: -1 } }), { code: 'INVALID_OPTION' });
  assert.throws(() => parseMultipart(generate([]), { contentType: CT, limits: { nope: 1 } as never }), { code: 'INVALID_OPTION' });
  // After an error, the first next() rejects and later ones are done.
  const bad = parseMultipart(generate([]), { contentType: 'text/plain' });
  await assert.rejects(bad.next(), { code: 'MULTIPART_NO_BOUNDARY' });
  assert.deepEqual(await bad.next(), { done: true, value: undefined });
});

test('a consumer that destroys a body: the rest of that part is skipped, the parse goes on', async () => {
  const big = 'y'.repeat(200 * 1024);
  const it = parseMultipart(generate(chunkings(Buffer.from(file('f', 'x', big) + field('a', 'after') + end)).at(-1)!), { contentType: CT });
  const f = (await it.next()).value as Part;
  const body = f.body;
  body.once('data', () => body.destroy());
  const a = (await it.next()).value as Part;
  assert.equal(await a.text(), 'after');
  assert.equal(body.destroyed, true);
  assert.equal((await it.next()).done, true);
  // text() after body was taken reads the stream.
  const it2 = parseMultipart(generate([Buffer.from(field('a', 'both') + end)]), { contentType: CT });
  const p = (await it2.next()).value as Part;
  const s = p.body;
  assert.equal(await p.text(), 'both');
  assert.equal(p.body, s);
  assert.equal((await it2.next()).done, true);
  // body after text(): the bytes went to the text, the stream is empty.
  const it3 = parseMultipart(generate([Buffer.from(field('a', 'once', 'X-One: 1\r\nX-One: 2\r\n') + end)]), { contentType: CT });
  const q = (await it3.next()).value as Part;
  assert.equal(await q.text(), 'once');
  assert.equal(await readStream(q.body), '');
  assert.equal(q.headers, q.headers);
  assert.deepEqual({ ...q.headers }, { 'content-disposition': 'form-data; name="a"', 'x-one': '1, 2' });
  assert.equal((await it3.next()).done, true);
});

test('over HTTP: parts stream from a real socket, and a limit is answered with 413 while the client still sends', async (t) => {
  const server = http.createServer(async (req, res) => {
    try {
      const out: { name: string; filename?: string | undefined; bytes: number }[] = [];
      const limits = { fileSize: Number(req.headers['x-limit'] ?? DEFAULT_LIMITS.fileSize) };
      for await (const part of parseMultipart(req, { contentType: req.headers['content-type'], limits })) {
        let bytes = 0;
        for await (const c of part.body) bytes += (c as Buffer).length;
        out.push({ name: part.name, filename: part.filename, bytes });
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(out));
    } catch (err) {
      sendError(res, err, { Connection: 'close' });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(t, () => server.close());
  const { port } = server.address() as AddressInfo;
  const post = (chunks: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ port, host: '127.0.0.1', method: 'POST', headers: { 'content-type': CT, ...headers } }, (res) => {
        const got: Buffer[] = [];
        res.on('data', (c: Buffer) => got.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(got).toString() }));
      });
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
      (async () => {
        for (const c of chunks) {
          if (req.destroyed) return;
          if (!req.write(c)) await Promise.race([once(req, 'drain'), once(req, 'close')]);
        }
        req.end();
      })().catch(reject);
    });
  const payload = Buffer.alloc(3 * 1024 * 1024, 0x2d);
  const body = Buffer.concat([Buffer.from(field('a', 'hello') + `--${B}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n\r\n`), payload, Buffer.from(`\r\n${end}\r\n`)]);
  const chunks = chunkings(body).at(-1)!;
  const ok = await post(chunks);
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.body), [
    { name: 'a', bytes: 5 },
    { name: 'f', filename: 'big.bin', bytes: payload.length },
  ]);
  const big = Buffer.concat([body, Buffer.alloc(16 * 1024 * 1024)]);
  const tooBig = await post(chunkings(big.subarray(0, 8 * 1024 * 1024)).at(-1)!, { 'x-limit': String(1024 * 1024) });
  assert.equal(tooBig.status, 413);
  assert.equal(JSON.parse(tooBig.body).error, 'LIMIT_FILE_SIZE');
});

test('collectPart: a small part whole without a stream, a bigger one streamed from its first byte, limits and errors as ever', async () => {
  const big = 'B'.repeat(3000);
  const body = Buffer.from(file('f', 'small.txt', 'tiny') + file('f', 'big.bin', big) + file('f', 'empty', '') + field('x', 'v') + end, 'latin1');
  for (const chunks of chunkings(body).slice(0, 40)) {
    const got: Array<[string, string | null]> = [];
    for await (const part of parseMultipart(generate(chunks), { contentType: CT })) {
      const whole = await collectPart(part, 100);
      got.push([part.filename ?? part.name, whole === null ? await readStream(part.body) + ' (streamed)' : Buffer.concat(whole).toString('latin1')]);
      // Once collected, the part has nothing more to give.
      if (whole !== null) assert.equal(await readStream(part.body), '');
    }
    assert.deepEqual(got, [['small.txt', 'tiny'], ['big.bin', `${big} (streamed)`], ['empty', ''], ['x', 'v']]);
  }
  // A body already asked for is not collected; nor is a part of another parser.
  for await (const part of parseMultipart(generate([body]), { contentType: CT })) {
    const stream = part.body;
    assert.equal(await collectPart(part, 100), null);
    await readStream(stream);
  }
  assert.equal(await collectPart({} as Part, 100), null);
  // The file size limit still holds while collecting, and errors reject the collector.
  await assert.rejects(
    (async () => {
      for await (const part of parseMultipart(generate([body]), { contentType: CT, limits: { fileSize: 3 } })) await collectPart(part, 100);
    })(),
    (err: WharfError) => err.code === 'LIMIT_FILE_SIZE',
  );
  const cut = body.subarray(0, 60);
  await assert.rejects(
    (async () => {
      for await (const part of parseMultipart(generate([cut.subarray(0, 55), cut.subarray(55)]), { contentType: CT })) await collectPart(part, 100);
    })(),
    (err: WharfError) => err.code === 'MULTIPART_UNEXPECTED_END',
  );
  // A spilled part keeps backpressure: unread, it holds the parser once its stream buffer is full.
  const huge = Buffer.from(file('f', 'huge.bin', 'H'.repeat(400 * 1024)) + end, 'latin1');
  let pulled = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for (let i = 0; i < huge.length; i += 16 * 1024) {
      pulled += 16 * 1024;
      yield huge.subarray(i, i + 16 * 1024);
    }
  }
  const it = parseMultipart(counted(), { contentType: CT, limits: {} });
  const first = (await it.next()).value as Part;
  assert.equal(await collectPart(first, 10), null);
  await new Promise((resolve) => setTimeout(resolve, 20));
  const seen = pulled;
  assert.ok(seen < 200 * 1024, `pulled ${seen} bytes of an unread part`);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(pulled, seen);
  assert.equal((await readStream(first.body)).length, 400 * 1024);
  await it.return!();
});

/** A `PartSink` that keeps what it is given; `room()` is what each `write` answers. */
function keeper(room: () => boolean = () => true): PartSink & { data(): string; writes: number; ended: boolean; error: Error | undefined } {
  const got: Buffer[] = [];
  const sink = {
    writes: 0,
    ended: false,
    error: undefined as Error | undefined,
    data: () => Buffer.concat(got).toString('latin1'),
    write(chunk: Buffer): boolean {
      assert.ok(!sink.ended && sink.error === undefined, 'a write after the end');
      got.push(chunk);
      sink.writes++;
      return room();
    },
    end(): void {
      assert.ok(!sink.ended && sink.error === undefined, 'ended twice');
      sink.ended = true;
    },
    destroy(err: Error): void {
      assert.ok(!sink.ended && sink.error === undefined, 'destroyed after the end');
      sink.error = err;
    },
  };
  return sink;
}

test('sinkPart: bytes go to the sink as parsed, ended before the next part; a held part first gives what it gathered', async () => {
  const big = 'B'.repeat(3000);
  const body = Buffer.from(file('f', 'held.bin', big) + file('f', 'direct.bin', big + 'C') + field('x', 'v') + file('f', 'empty', '') + file('f', 'told.txt', 'text') + end, 'latin1');
  for (const [i, chunks] of chunkings(body).slice(0, 60).entries()) {
    const got: Array<[string, ReturnType<typeof keeper>]> = [];
    const source = i % 2 === 1 ? Readable.from(chunks, { objectMode: false }) : generate(chunks);
    for await (const part of parseMultipart(source, { contentType: CT })) {
      assert.ok(got.every(([, sink]) => sink.ended), 'the previous sink ended before the next part');
      if (part.filename === undefined) continue;
      if (part.filename === 'held.bin') assert.equal(await collectPart(part, 100), null);
      // Bytes already taken another way: the sink ends at once, empty.
      if (part.filename === 'told.txt') assert.equal(await part.text(), 'text');
      const sink = keeper();
      sinkPart(part, sink);
      if (part.filename === 'told.txt') assert.equal(sink.ended, true);
      got.push([part.filename, sink]);
    }
    assert.ok(got.every(([, sink]) => sink.ended));
    assert.deepEqual(got.map(([name, sink]) => [name, sink.data()]), [['held.bin', big], ['direct.bin', big + 'C'], ['empty', ''], ['told.txt', '']], `chunking #${i}`);
  }
});

test('sinkPart: a sink that says "enough" holds the parser until resumed, for a fresh part and a held one', async () => {
  for (const held of [false, true]) {
    const { source, pulled } = countingSource(100, 16 * 1024);
    const it = parseMultipart(source, { contentType: CT });
    const part = (await it.next()).value as Part;
    if (held) assert.equal(await collectPart(part, 10), null);
    const sink = keeper(() => false);
    const resume = sinkPart(part, sink);
    await turns(20);
    const seen = pulled();
    assert.ok(seen <= 3, `pulled ${seen} chunks past a full sink (held: ${held})`);
    await turns(20);
    assert.equal(pulled(), seen, 'nothing more is read while the sink is full');
    // Each resume lets the parser go on until the sink says "enough" again.
    while (!sink.ended) {
      const writes = sink.writes;
      resume();
      await turns(3);
      assert.ok(sink.ended || sink.writes > writes, 'a resume makes progress');
    }
    assert.equal(sink.data().length, 100 * 16 * 1024);
    assert.equal((await it.next()).done, true);
  }
});

test('sinkPart: a body asked for first is read through it, with its backpressure', async () => {
  const { source, pulled } = countingSource(100, 16 * 1024);
  const it = parseMultipart(source, { contentType: CT });
  const part = (await it.next()).value as Part;
  const body = part.body;
  let full = true;
  const sink = keeper(() => !full);
  const resume = sinkPart(part, sink);
  await turns(20);
  const seen = pulled();
  await turns(20);
  assert.equal(pulled(), seen, 'the stream is paused while the sink is full');
  assert.ok(body.isPaused());
  full = false;
  resume();
  await finished(body);
  assert.equal(sink.ended, true);
  assert.equal(sink.data().length, 100 * 16 * 1024);
  // A body already read to its end has nothing more: a sink given it now ends at once.
  const late = keeper();
  sinkPart(part, late);
  assert.equal(late.ended, true);
  assert.equal(late.writes, 0);
  assert.equal((await it.next()).done, true);
  // An error on the body reaches the sink.
  const cut = Buffer.from(file('f', 'cut.bin', 'x'.repeat(500)), 'latin1');
  const broken = parseMultipart(generate([cut.subarray(0, 100), cut.subarray(100)]), { contentType: CT });
  const part2 = (await broken.next()).value as Part;
  part2.body.on('error', () => {});
  const sink2 = keeper();
  sinkPart(part2, sink2);
  await assert.rejects(broken.next(), (err: WharfError) => err.code === 'MULTIPART_UNEXPECTED_END');
  await turns(3);
  assert.equal((sink2.error as WharfError | undefined)?.code, 'MULTIPART_UNEXPECTED_END');
});

test('sinkPart: a failure destroys the sink with the error the iteration rejects with (cut body, file size limit)', async () => {
  const body = Buffer.from(file('f', 'a.bin', 'x'.repeat(5000)) + end, 'latin1');
  for (const [source, limits, code] of [
    [generate([body.subarray(0, 2000)]), {}, 'MULTIPART_UNEXPECTED_END'],
    [generate([body.subarray(0, 1000), body.subarray(1000)]), { fileSize: 4096 }, 'LIMIT_FILE_SIZE'],
  ] as const) {
    const it = parseMultipart(source, { contentType: CT, limits });
    const part = (await it.next()).value as Part;
    const sink = keeper();
    sinkPart(part, sink);
    await assert.rejects(it.next(), (err: WharfError) => err.code === code);
    assert.equal((sink.error as WharfError | undefined)?.code, code);
    assert.equal(sink.ended, false);
  }
});

test('parseMultipart signal: an abort stops the parse with its reason; a part that failed meanwhile destroys its sink at once', async () => {
  const body = Buffer.from(file('f', 'a.bin', 'x'.repeat(5000)) + end, 'latin1');
  const reason = new WharfError('LIMIT_REQUEST_SIZE', 'too big', 413);

  // Aborted before the first next(): nothing is parsed.
  const early = new AbortController();
  early.abort(reason);
  await assert.rejects(parseMultipart(generate([body]), { contentType: CT, signal: early.signal }).next(), (err: unknown) => err === reason);

  // Aborted while a part waits for its consumer: a sink given afterwards is destroyed with the reason.
  const later = new AbortController();
  const it = parseMultipart(generate([body.subarray(0, 200), body.subarray(200)]), { contentType: CT, signal: later.signal });
  const part = (await it.next()).value as Part;
  later.abort(reason);
  const sink = keeper();
  sinkPart(part, sink);
  assert.equal(sink.error, reason);
  await assert.rejects(it.next(), (err: unknown) => err === reason);

  // Any other reason is an unexpected end carrying it as its cause.
  const other = new AbortController();
  const it2 = parseMultipart(generate([body.subarray(0, 200), body.subarray(200)]), { contentType: CT, signal: other.signal });
  const part2 = (await it2.next()).value as Part;
  const sink2 = keeper();
  sinkPart(part2, sink2);
  const cause = new Error('socket gone');
  other.abort(cause);
  await assert.rejects(it2.next(), (err: WharfError) => err.code === 'MULTIPART_UNEXPECTED_END' && err.cause === cause);
  assert.equal((sink2.error as WharfError | undefined)?.code, 'MULTIPART_UNEXPECTED_END');

  // A parse that ends leaves no listener on the signal.
  const done = new AbortController();
  for await (const p of parseMultipart(generate([body]), { contentType: CT, signal: done.signal })) sinkPart(p, keeper());
  assert.equal(getEventListeners(done.signal, 'abort').length, 0);
});

/** A stopper as the server's body watch is one: one listener, called at once if it has stopped. */
function stopper(): { whenFailed(l: (r: WharfError) => void): void; stop(r: WharfError): void } {
  let listener: ((r: WharfError) => void) | undefined;
  let reason: WharfError | undefined;
  return {
    whenFailed(l) {
      if (reason !== undefined) l(reason);
      else listener = l;
    },
    stop(r) {
      reason = r;
      listener?.(r);
    },
  };
}

test('parseMultipart stopper: stops the parse as a signal does, before the first part and while a part waits', async () => {
  const body = Buffer.from(file('f', 'a.bin', 'x'.repeat(5000)) + end, 'latin1');
  const reason = new WharfError('LIMIT_REQUEST_SIZE', 'too big', 413);

  const early = stopper();
  early.stop(reason);
  await assert.rejects(parseMultipart(generate([body]), { contentType: CT, stopper: early }).next(), (err: unknown) => err === reason);

  const later = stopper();
  const it = parseMultipart(generate([body.subarray(0, 200), body.subarray(200)]), { contentType: CT, stopper: later });
  const part = (await it.next()).value as Part;
  later.stop(reason);
  const sink = keeper();
  sinkPart(part, sink);
  assert.equal(sink.error, reason);
  await assert.rejects(it.next(), (err: unknown) => err === reason);

  // Stopped after the parse ended: nothing happens.
  const after = stopper();
  let parts = 0;
  for await (const p of parseMultipart(generate([body]), { contentType: CT, stopper: after })) {
    sinkPart(p, keeper());
    parts++;
  }
  after.stop(reason);
  assert.equal(parts, 1);
});
