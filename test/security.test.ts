// Security regression suite (issue 8 §4): one table of every hostile input wharf has met, each row
// sent over a raw socket exactly as written (no client normalises it), with its expected status and
// error code, and the same checks after every row:
// - nothing leaked: no byte of a file outside a root, of a dotfile or of a private mapping in the
//   answer; no header injected (no `X-Injected`, no header value holding CR/LF, at most one
//   Content-Disposition);
// - nothing stored: the upload ids on disk are exactly those before plus what the row says, and the
//   temp area is empty.
// A row may pipeline more requests behind its own in the same write (`then`): the answer checked is
// the first, and nothing may follow it.
// Statuses follow the documented rules: lib/http/request-path.ts (routing decodes a path once and matches
// routes on that; then 400 BAD_PATH for what no honest URL holds — malformed or overlong escapes,
// encoded separators, backslashes, control characters; 404 for dot segments, on every method, and
// what does not exist), lib/uploads/filenames.ts (400 BAD_FILENAME), lib/multipart/parser.ts, docs/protocol.md §4
// (401 with `WWW-Authenticate`). Access-key checks are tested by behaviour only.
// Three servers share one data dir, so an upload made through one is seen by all: the main one
// (access keys only), `anon` (anonymousUploads) and `hook` (an authorize hook taking the cookie
// `session=ok`, trustUnrecordedUploads, a public cacheControl of an hour); a row says which it
// talks to (`on`). End users' uploads (through `anon` or `hook`) must never run script on the
// origin, an app's (with its key) is served as it is (lib/uploads/upload-record.ts); answers that needed
// authorization are `Cache-Control: private`.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { renameSync, symlinkSync, unlinkSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { Agent, get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { Worker } from 'node:worker_threads';
import { basicAuth } from '../lib/http/access-keys.js';
import { createFileServer, type FileServer } from '../lib/http/server.js';
import { connect } from 'node:net';
import { directorySeams } from '../lib/static/engine.js';
import { createLocalStorage } from '../lib/uploads/local-storage.js';
import { RECORD_NAME, recordFor } from '../lib/uploads/upload-record.js';
import { eventually, formBuffer } from './helpers/load-gen.js';
import { fdsOn } from './helpers/server.js';
import { APP_KEY } from './helpers/keys.js';
import { staged } from './helpers/uploads.js';
import { parseAnswer, rawRequest, rawSend, type RawAnswer, type RawRequest } from './helpers/raw-http.js';
import { defer } from './helpers/defer.js';
import { serveOn, storageTest } from './helpers/storages.js';

const OUTSIDE = 'OUTSIDE-SECRET-5d1c';
const DOTFILE = 'DOTFILE-SECRET-77ae';
const PRIVATE = 'PRIVATE-SECRET-c3f0';
const MARKERS = [OUTSIDE, DOTFILE, PRIVATE, 'root:x:0:0'];
const KEY = APP_KEY;
const AUTH = basicAuth(KEY.id, KEY.secret);

let files: FileServer;
let port: number;
/** The other two servers on the same data dir (see the top of this file). */
let anonFiles: FileServer;
let hookFiles: FileServer;
type On = 'main' | 'anon' | 'hook';
const ports: Record<On, number> = { main: 0, anon: 0, hook: 0 };
const SESSION = { Cookie: 'session=ok' };
/** Uploads copied straight into the layout (no record from wharf): `page.html` in each. */
const copied = { bare: '', appRecord: '', badRecord: '', futureRecord: '' };
let root: string;
let dataDir: string;
/** An upload made before the table runs: `_f/<id>/doc.txt`. */
let uploadId: string;
/** Another one, which rows try to delete by a path that names something else: `_f/<id>/doc.txt`. */
let victimId: string;

type Req = RawRequest;

interface Row {
  name: string;
  /** The server the request goes to (default the main one). */
  on?: On;
  req: () => Req;
  /** The status, or the statuses allowed. */
  status: number | readonly number[];
  /** The JSON `error` code, when the answer is wharf's JSON error. */
  code?: string;
  /** Upload ids the row adds on disk (default 0). */
  stored?: number;
  /** May the answer hold PRIVATE (an authorised read of the private mapping)? */
  privateOk?: boolean;
  /** Runs before the request (and before the disk is looked at). */
  setup?: () => Promise<void>;
  check?: (a: RawAnswer) => void | Promise<void>;
  /** Requests written right behind this one, in the same write (pipelined). */
  then?: () => Req[];
  /** Runs after the row, whether it passed or not. */
  teardown?: () => void | Promise<void>;
}

/**
 * Writes pipelined requests at once and reads until the server ends its side; then holds the
 * connection open a little longer (a request the server should not run would run meanwhile), and
 * gives the first answer.
 */
function rawPipelined(bytes: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), 10_000);
    sock.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); });
    sock.on('error', () => {});
    sock.once('end', () => setTimeout(() => sock.destroy(), 250));
    sock.once('close', () => {
      clearTimeout(timer);
      const a = parseAnswer(got);
      if (a === null) reject(new Error(`no complete answer: ${JSON.stringify(got.subarray(0, 200).toString('latin1'))}`));
      else resolve(a);
    });
    sock.write(bytes);
  });
}

/** A multipart upload request; `parts` may give a raw Content-Disposition to send bytes no encoder would. */
function uploadReq(parts: Array<{ filename?: string; disposition?: string; data?: Buffer | string }>, o: { directory?: boolean; boundary?: string; auth?: string; headers?: Record<string, string> } = {}): Req {
  const boundary = o.boundary ?? 'sec0boundary';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const cd = p.disposition ?? `form-data; name="files"; filename="${p.filename}"`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${cd}\r\nContent-Type: application/octet-stream\r\n\r\n`, 'utf8'));
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data ?? 'x', 'utf8'));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  const headers: Record<string, string> = { 'Content-Type': `multipart/form-data; boundary=${boundary}`, Authorization: o.auth ?? AUTH };
  if (o.auth === '') delete headers.Authorization;
  if (o.directory) headers['Wave-Directory-Upload'] = 'True';
  Object.assign(headers, o.headers);
  return { method: 'POST', path: '/_f/', headers, body: Buffer.concat(chunks) };
}

const header = (a: RawAnswer, name: string): string[] => a.headers.filter(([k]) => k === name).map(([, v]) => v);
const answerJson = (a: RawAnswer): { files: string[] } => JSON.parse(a.body.toString('utf8')) as { files: string[] };
const idOf = (url: string): string => url.split('/')[2]!;
const get = (path: string, headers: Record<string, string> = {}, on: On = 'main', method = 'GET'): Promise<RawAnswer> => rawSend(ports[on], rawRequest({ method, path, headers }));
/** A returned upload path (the name as stored) as a browser puts it on the request line. */
const asBrowser = (path: string): string => {
  const u = new URL(path, 'http://wharf');
  return u.pathname + u.search;
};

/** The parameters of a Content-Disposition value (RFC 6266), each as found; a broken value throws. */
function dispositionParams(value: string): Array<[string, string]> {
  const m = /^attachment((?:;\s*[a-z*]+=(?:"[^"\\\r\n]*"|[^;\s"]+))*)\s*$/i.exec(value);
  assert.ok(m, `Content-Disposition does not parse: ${JSON.stringify(value)}`);
  return [...m[1]!.matchAll(/;\s*([a-z*]+)=("[^"]*"|[^;\s"]+)/gi)].map((x) => [x[1]!.toLowerCase(), x[2]!.replace(/^"|"$/g, '')]);
}

/** Checks the download's Content-Disposition and returns the name its `filename*` (or `filename`) gives. */
function downloadName(a: RawAnswer): string {
  const cds = header(a, 'content-disposition');
  assert.equal(cds.length, 1, 'exactly one Content-Disposition');
  const params = dispositionParams(cds[0]!);
  const names = params.filter(([k]) => k === 'filename');
  const stars = params.filter(([k]) => k === 'filename*');
  assert.equal(names.length, 1, 'one filename');
  assert.ok(stars.length <= 1, 'at most one filename*');
  assert.match(names[0]![1], /^[\x20-\x7e]*$/, 'the fallback filename is plain ASCII');
  if (stars.length === 0) return names[0]![1];
  const ext = /^UTF-8''(.*)$/.exec(stars[0]![1]);
  assert.ok(ext, 'filename* is UTF-8');
  return decodeURIComponent(ext[1]!);
}

// ---------------------------------------------------------------------------------------------
// The table

function traversal(): Row[] {
  const rows: Row[] = [];
  const roots: Array<{ name: string; prefix: string; up: number; headers?: Record<string, string> }> = [
    { name: 'public', prefix: '/pub/', up: 1 },
    { name: 'private (valid key)', prefix: '/priv/', up: 1, headers: { Authorization: AUTH } },
    { name: '_f upload', prefix: `/_f/${uploadId}/`, up: 3 },
  ];
  for (const r of roots) {
    const up = (sep: string, dots = '..'): string => Array(r.up).fill(dots).join(sep);
    const cases: Array<[string, string, number, string?]> = [
      ['plain ../', `${up('/')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['encoded %2e%2e/', `${up('/', '%2e%2e')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['encoded upper %2E%2E/', `${up('/', '%2E%2E')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['half-encoded .%2e/', `${up('/', '.%2e')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['encoded separator ..%2f', `${up('%2f')}%2foutside%2fsecret.txt`, 400, 'BAD_PATH'],
      ['double-encoded %252e%252e/', `${up('/', '%252e%252e')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['double-encoded separator %252f', `${up('%252f', '%252e%252e')}%252foutside%252fsecret.txt`, 404, 'NOT_FOUND'],
      ['..%5c (encoded backslash)', `${up('%5c')}%5coutside%5csecret.txt`, 400, 'BAD_PATH'],
      ['raw backslash ..\\', `${up('\\')}\\outside\\secret.txt`, 400, 'BAD_PATH'],
      ['double-encoded backslash %255c', `${up('%255c')}%255coutside%255csecret.txt`, 404, 'NOT_FOUND'],
      ['NUL then dots', `..%00/outside/secret.txt`, 400, 'BAD_PATH'],
      ['NUL in a name', 'doc.txt%00.png', 400, 'BAD_PATH'],
      ['overlong UTF-8 dots %c0%ae', `${up('/', '%c0%ae%c0%ae')}/outside/secret.txt`, 400, 'BAD_PATH'],
      ['overlong UTF-8 slash %c0%af', `${up('%c0%af')}%c0%afoutside%c0%afsecret.txt`, 400, 'BAD_PATH'],
      ['3-byte overlong dots %e0%80%ae', `${up('/', '%e0%80%ae%e0%80%ae')}/outside/secret.txt`, 400, 'BAD_PATH'],
      ['IIS %u002e', `${up('/', '%u002e%u002e')}/outside/secret.txt`, 400, 'BAD_PATH'],
      ['absolute //etc/passwd', '/etc/passwd', 404, 'NOT_FOUND'],
      ['absolute %2fetc%2fpasswd', '%2fetc%2fpasswd', 400, 'BAD_PATH'],
      ['far up', `${Array(16).fill('..').join('/')}/etc/passwd`, 404, 'NOT_FOUND'],
      ['inside then out', `sub/${up('/')}/../outside/secret.txt`, 404, 'NOT_FOUND'],
      ['one-dot leader U+2024 ‥', `${up('/', '%E2%80%A4%E2%80%A4')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['fullwidth full stop U+FF0E', `${up('/', '%EF%BC%8E%EF%BC%8E')}/outside/secret.txt`, 404, 'NOT_FOUND'],
      ['fullwidth solidus U+FF0F', `${up('%EF%BC%8F')}%EF%BC%8Foutside%EF%BC%8Fsecret.txt`, 404, 'NOT_FOUND'],
      ['symlinked directory out of the root', 'escape/secret.txt', 404, 'NOT_FOUND'],
      ['symlinked file out of the root', 'leak.txt', 404, 'NOT_FOUND'],
      ['dotfile', '.env', 404, 'NOT_FOUND'],
      ['control character', 'doc%0a.txt', 400, 'BAD_PATH'],
    ];
    for (const [what, rest, status, code] of cases) {
      // Uploads may hold dotfiles (a user's `.bashrc`): storage serves what was uploaded, so this
      // row is for mappings only.
      if (what === 'dotfile' && r.prefix.startsWith('/_f/')) continue;
      const row: Row = { name: `traversal, ${r.name} root: ${what}`, req: () => ({ path: `${r.prefix}${rest}`, headers: r.headers ?? {} }), status };
      if (code !== undefined) row.code = code;
      rows.push(row);
    }
  }
  rows.push(
    { name: 'traversal: absolute-form target http://host/pub/../outside', req: () => ({ path: 'http://wharf/pub/../outside/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'traversal: _f with no upload id, straight up', req: () => ({ path: '/_f/../../outside/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'traversal: _f id itself encoded up', req: () => ({ path: '/_f/%2e%2e/%2e%2e/outside/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'traversal: from the public root into the private one', req: () => ({ path: '/pub/../priv/private.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'private mapping without a key', req: () => ({ path: '/priv/private.txt' }), status: 401, code: 'UNAUTHORIZED', check: (a) => assert.equal(header(a, 'www-authenticate')[0], 'Basic realm="wharf"') },
    { name: 'private mapping with a key (control)', req: () => ({ path: '/priv/private.txt', headers: { Authorization: AUTH } }), status: 200, privateOk: true },
  );
  return rows;
}

/**
 * A private mapping nested in a public one (`/n/` public, `/n/inner/` private, its directory inside
 * the public one's): however the private prefix is spelled, the request is the private mapping's
 * (routing decodes once, then matches), never the public mapping's with the private file under it.
 */
function nestedMappings(): Row[] {
  const priv = (name: string, path: string, method = 'GET'): Row => ({
    name,
    req: () => ({ method, path }),
    status: 401,
    // A HEAD answer has no body to carry the code.
    ...(method === 'HEAD' ? {} : { code: 'UNAUTHORIZED' }),
    check: (a) => assert.equal(header(a, 'www-authenticate')[0], 'Basic realm="wharf"'),
  });
  return [
    priv('the private prefix as is (control)', '/n/inner/secret.txt'),
    priv('an escaped letter %69 (i) in the private prefix', '/n/%69nner/secret.txt'),
    priv('an escaped letter %65 (e) in the private prefix', '/n/inn%65r/secret.txt'),
    priv('the whole private segment escaped, upper-case hex', '/n/%69%6E%6E%65%72/secret.txt'),
    priv('the whole private segment escaped, mixed-case hex', '/n/%69%6e%6E%65%72/secret.txt'),
    priv('escapes in the prefix and the file name', '/n/%69nner/%73ecret.txt'),
    priv('escapes, then a query string', '/n/%69nner/secret.txt?download'),
    priv('escapes, HEAD (no body, but the status and length would tell)', '/n/%69nner/secret.txt', 'HEAD'),
    priv('escapes, in an absolute-form target', 'http://wharf/n/%69nner/secret.txt'),
    { name: "escapes, the private prefix without its trailing slash: the private mapping's own URL, 401 as unescaped (its index page needs a key)", req: () => ({ path: '/n/%69nner' }), status: 401, code: 'UNAUTHORIZED' },
    { name: 'escapes, with a key: the private mapping serves it (control)', req: () => ({ path: '/n/%69nner/secret.txt', headers: { Authorization: AUTH } }), status: 200, privateOk: true },
    { name: 'the public mapping still serves its own files, escaped or not (control)', req: () => ({ path: '/n/%70ub.txt' }), status: 200, check: (a) => assert.equal(a.body.toString(), 'nested public') },
    { name: 'an encoded slash joining the private prefix', req: () => ({ path: '/n/inner%2Fsecret.txt' }), status: 400, code: 'BAD_PATH' },
    { name: 'an encoded slash after an escaped prefix', req: () => ({ path: '/n/%69nner%2fsecret.txt' }), status: 400, code: 'BAD_PATH' },
    { name: 'double-encoded %2569 (decoded once: a literal name)', req: () => ({ path: '/n/%2569nner/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'a malformed escape in the private prefix', req: () => ({ path: '/n/%6nner/secret.txt' }), status: 400, code: 'BAD_PATH' },
    { name: 'an overlong escape in the private prefix', req: () => ({ path: '/n/%c1%a9nner/secret.txt' }), status: 400, code: 'BAD_PATH' },
    { name: 'through ./ in the public mapping', req: () => ({ path: '/n/./inner/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'through an encoded %2e/ in the public mapping', req: () => ({ path: '/n/%2e/%69nner/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'through x/../ in the public mapping', req: () => ({ path: '/n/x/../inner/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'through an empty segment in the public mapping', req: () => ({ path: '/n//inner/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    // The file system can reach the private directory where routing cannot: a link inside the public root.
    { name: 'through a symlink in the public root to the private directory', req: () => ({ path: '/n/alias/secret.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'through a symlink in the public root to the private file', req: () => ({ path: '/n/secret-link.txt' }), status: 404, code: 'NOT_FOUND' },
    { name: 'through a symlink to the private directory, HEAD', req: () => ({ method: 'HEAD', path: '/n/alias/secret.txt' }), status: 404 },
    { name: 'through a symlink in the public root to the upload store', req: () => ({ path: `/n/store/f/${uploadId}/doc.txt` }), status: 404, code: 'NOT_FOUND' },
  ];
}

/**
 * `DELETE {base}_f/<A>/../<B>`: every normalising client or proxy reads it as `<B>`, and a GET of it
 * is 404; so is the DELETE, whatever the spelling of the dot segment: neither A nor B goes.
 */
function deleteDots(): Row[] {
  const del = (name: string, path: () => string, status = 404, code = 'NOT_FOUND'): Row => ({
    name,
    req: () => ({ method: 'DELETE', path: path(), headers: { Authorization: AUTH } }),
    status,
    code,
    check: async () => {
      for (const id of [uploadId, victimId]) assert.equal((await get(`/_f/${id}/doc.txt`)).status, 200, `upload ${id} is still there`);
    },
  });
  return [
    del('A/../B', () => `/_f/${uploadId}/../${victimId}`),
    del('A/%2e%2e/B', () => `/_f/${uploadId}/%2e%2e/${victimId}`),
    del('A/.%2E/B', () => `/_f/${uploadId}/.%2E/${victimId}`),
    del('A/%2E./B/doc.txt', () => `/_f/${uploadId}/%2E./${victimId}/doc.txt`),
    del('x/../A', () => `/_f/x/../${uploadId}`),
    del('%2e%2e/_f/A', () => `/_f/%2e%2e/_f/${uploadId}`),
    del('A/..', () => `/_f/${uploadId}/..`),
    del('A/./doc.txt', () => `/_f/${uploadId}/./doc.txt`),
    del('A/%2e', () => `/_f/${uploadId}/%2e`),
    del('A//doc.txt', () => `/_f/${uploadId}//doc.txt`),
    del('A/..%2fB (an encoded separator)', () => `/_f/${uploadId}/..%2f${victimId}`, 400, 'BAD_PATH'),
    del('A/..%5cB (an encoded backslash)', () => `/_f/${uploadId}/..%5c${victimId}`, 400, 'BAD_PATH'),
    del('A/%ZZ (a malformed escape)', () => `/_f/${uploadId}/%ZZ`, 400, 'BAD_PATH'),
    del('A in an absolute-form target with ../B', () => `http://wharf/_f/${uploadId}/../${victimId}`),
    del('an image stream a/../b', () => '/_m/a/../b', 400, 'INVALID_STREAM_NAME'),
  ];
}

/**
 * A refusal that announces `Connection: close`, and in the same write a keyed DELETE of another
 * upload: after the last answer nothing more from the connection is processed (RFC 9112 §9.6), so
 * the DELETE neither runs nor is answered. Refusals decided at the headers, halfway through the
 * body, by Node itself, and after an interim `Expect: 100-continue`.
 */
function pipelinedAfterRefusal(): Row[] {
  const keepAlive = { Connection: 'keep-alive' };
  const upload = (body: string, headers: Record<string, string | null> = {}): Req => ({
    method: 'POST',
    path: '/_f/',
    headers: { 'Content-Type': 'multipart/form-data; boundary=B', Authorization: AUTH, ...keepAlive, ...headers },
    body: Buffer.from(body),
  });
  const files = (n: number, name = (i: number) => `f${i}.txt`): string => {
    let out = '';
    for (let i = 0; i < n; i++) out += `--B\r\nContent-Disposition: form-data; name="files"; filename="${name(i)}"\r\n\r\nx\r\n`;
    return `${out}--B--\r\n`;
  };
  const row = (name: string, first: () => Req, status: number, code?: string): Row => ({
    name,
    req: first,
    status,
    ...(code === undefined ? {} : { code }),
    then: () => [{ method: 'DELETE', path: `/_f/${victimId}`, headers: { Authorization: AUTH } }],
    check: async (a) => {
      assert.match(header(a, 'connection')[0] ?? '', /close/i, 'the refusal announced close');
      assert.equal(a.raw.toString('latin1').match(/HTTP\/1\.1 \d{3} /g)?.length, 1, 'nothing answered after it');
      assert.equal((await get(`/_f/${victimId}/doc.txt`)).status, 200, 'the pipelined DELETE did not run');
    },
  });
  return [
    row('401, upload without a key', () => upload(files(1), { Authorization: null }), 401, 'UNAUTHORIZED'),
    row('401 instead of 100 Continue (the body sent anyway)', () => upload(files(1), { Authorization: basicAuth(KEY.id, 'wrong'), Expect: '100-continue' }), 401, 'UNAUTHORIZED'),
    row('405, PUT with a body', () => ({ method: 'PUT', path: `/_f/${uploadId}/doc.txt`, headers: keepAlive, body: Buffer.from('x') }), 405, 'METHOD_NOT_ALLOWED'),
    row('404, no route, with a body', () => ({ method: 'POST', path: '/nowhere', headers: keepAlive, body: Buffer.from('x') }), 404, 'NOT_FOUND'),
    row('400, a bad path with a body', () => ({ path: '/pub/a%00b', headers: keepAlive, body: Buffer.from('x') }), 400, 'BAD_PATH'),
    row('400, a bad stream name', () => ({ method: 'POST', path: '/_m/a%00b', headers: { 'Content-Type': 'image/png', Authorization: AUTH, ...keepAlive }, body: Buffer.from('png') }), 400, 'INVALID_STREAM_NAME'),
    row('415, an upload that is not multipart', () => upload('x', { 'Content-Type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE'),
    row('400, multipart without a boundary', () => upload(files(1), { 'Content-Type': 'multipart/form-data' }), 400, 'MULTIPART_NO_BOUNDARY'),
    row('400, a bad filename in the body (refused after the headers)', () => upload(files(3, (i) => (i === 1 ? '../x' : `f${i}.txt`))), 400, 'BAD_FILENAME'),
    row('413, more files than allowed (refused halfway through the body)', () => upload(files(5000)), 413, 'LIMIT_FILES'),
    row('413, a frame over the limit by its Content-Length (the body sent anyway)', () => ({ method: 'POST', path: '/_m/cam', headers: { 'Content-Type': 'image/png', Authorization: AUTH, ...keepAlive }, body: Buffer.alloc((5 << 20) + (65 << 10), 1) }), 413, 'LIMIT_FRAME_SIZE'),
    row('400 from Node itself, no Host header', () => ({ path: `/_f/${uploadId}/doc.txt`, headers: { Host: null, ...keepAlive } }), 400),
    {
      name: '401, then a keyed upload: nothing stored',
      req: () => upload(files(1), { Authorization: basicAuth(KEY.id, 'wrong') }),
      status: 401,
      code: 'UNAUTHORIZED',
      then: () => [{ method: 'POST', path: '/_f/', headers: { 'Content-Type': 'multipart/form-data; boundary=B', Authorization: AUTH }, body: Buffer.from(files(1)) }],
    },
  ];
}

function headerInjection(): Row[] {
  const downloadRow = (name: string, query: string, expectName: string): Row => ({
    name: `?download= ${name}`,
    req: () => ({ path: `/pub/ok.txt?download=${query}` }),
    status: 200,
    check: (a) => assert.equal(downloadName(a), expectName),
  });
  // Uploaded under a hostile name, then downloaded: the name survives and no header breaks.
  const roundTripRow = (name: string, filename: string, expectName: string): Row => ({
    name: `upload filename ${name}, then downloaded`,
    req: () => uploadReq([{ filename, data: 'x' }]),
    status: 200,
    stored: 1,
    check: async (a) => {
      const d = await get(asBrowser(`${answerJson(a).files[0]!}?download`));
      assert.equal(d.status, 200);
      assert.equal(downloadName(d), expectName);
    },
  });
  return [
    { name: 'upload filename with a raw CR LF (breaks the part header)', req: () => uploadReq([{ disposition: 'form-data; name="files"; filename="a\r\nX-Injected: 1.txt"' }]), status: 400, code: 'MULTIPART_MALFORMED_HEADER' },
    { name: 'upload filename with HTML-escaped CR LF (%0D%0A)', req: () => uploadReq([{ filename: 'a%0D%0AX-Injected: 1.txt' }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'upload filename* with an encoded CR LF', req: () => uploadReq([{ disposition: "form-data; name=\"files\"; filename=\"a.txt\"; filename*=UTF-8''a%0D%0AX-Injected%3A%201.txt" }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'upload filename with a lone LF (escaped)', req: () => uploadReq([{ filename: 'a%0Ab.txt' }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'upload filename with a tab', req: () => uploadReq([{ filename: 'a\tb.txt' }]), status: 400, code: 'BAD_FILENAME' },
    roundTripRow('with a quote', 'say %22hi%22.txt', 'say "hi".txt'),
    roundTripRow('trying to add a second filename parameter', 'x.txt%22; filename=%22evil.exe', 'x.txt"; filename="evil.exe'),
    roundTripRow('with ; and = and a newline-looking Unicode (U+2028)', 'a;b=c\u2028d.txt', 'a;b=c\u2028d.txt'),
    downloadRow('with CR LF and a header', 'a%0D%0AX-Injected:%201', 'a__X-Injected: 1'),
    downloadRow('with a lone CR', 'a%0Db', 'a_b'),
    downloadRow('with quotes', 'say%20%22hi%22.txt', 'say "hi".txt'),
    downloadRow('closing the quote to add a parameter', '%22%3B%20filename%3D%22evil.exe', '"; filename="evil.exe'),
    downloadRow('with a path', '..%2F..%2Fetc%2Fpasswd', '.._.._etc_passwd'),
    downloadRow('with a backslash path', '..%5C..%5Cboot.ini', '.._.._boot.ini'),
    downloadRow('with NUL', 'a%00b', 'a_b'),
    downloadRow('non-ASCII', '%E6%97%A5%E6%9C%AC.txt', '日本.txt'),
    downloadRow('with a percent sign', '100%25.txt', '100%.txt'),
    { name: '?download with a raw CR in the request line (refused by the HTTP parser)', req: () => ({ path: '/pub/ok.txt?download=a\rX-Injected:1' }), status: 400 },
  ];
}

function multipartLimits(): Row[] {
  const manyParts = (n: number, file: boolean): Req => {
    const chunks: string[] = [];
    for (let i = 0; i < n; i++) chunks.push(`--b\r\nContent-Disposition: form-data; name="${file ? 'files' : 'f'}"${file ? `; filename="f${i}.txt"` : ''}\r\n\r\nx\r\n`);
    chunks.push('--b--\r\n');
    return { method: 'POST', path: '/_f/', headers: { 'Content-Type': 'multipart/form-data; boundary=b', Authorization: AUTH }, body: Buffer.from(chunks.join('')) };
  };
  return [
    { name: 'boundary of 71 characters (RFC 2046 allows 70)', req: () => uploadReq([{ filename: 'a.txt' }], { boundary: 'b'.repeat(71) }), status: 400, code: 'MULTIPART_NO_BOUNDARY' },
    { name: 'boundary of 4,000 characters', req: () => uploadReq([{ filename: 'a.txt' }], { boundary: 'b'.repeat(4000) }), status: 400, code: 'MULTIPART_NO_BOUNDARY' },
    { name: 'boundary of 70 characters (control)', req: () => uploadReq([{ filename: 'a.txt' }], { boundary: 'b'.repeat(70) }), status: 200, stored: 1 },
    { name: '10,000 file parts', req: () => manyParts(10_000, true), status: 413, code: 'LIMIT_FILES' },
    { name: '10,000 fields', req: () => manyParts(10_000, false), status: 413, code: 'LIMIT_FIELDS' },
    {
      name: 'a part header block of 1 MiB',
      req: () => uploadReq([{ disposition: `form-data; name="files"; filename="a.txt"\r\nX-Pad: ${'p'.repeat(1 << 20)}` }]),
      status: 413,
      code: 'MULTIPART_HEADER_TOO_LARGE',
    },
    {
      name: 'a close-delimiter inside a part\'s header block (boundary "a:b") smuggling a file past delimiter-anywhere parsers',
      req: () => ({
        method: 'POST',
        path: '/_f/',
        headers: { 'Content-Type': 'multipart/form-data; boundary="a:b"', Authorization: AUTH },
        body: Buffer.from('--a:b\r\nContent-Disposition: form-data; name="x"\r\n--a:b--\r\n\r\nhidden\r\n--a:b\r\nContent-Disposition: form-data; name="files"; filename="evil.exe"\r\n\r\nMZ\r\n--a:b--\r\n'),
      }),
      status: 400,
    },
    { name: 'no boundary at all', req: () => ({ method: 'POST', path: '/_f/', headers: { 'Content-Type': 'multipart/form-data', Authorization: AUTH }, body: Buffer.from('x') }), status: 400, code: 'MULTIPART_NO_BOUNDARY' },
  ];
}

function paths(): Row[] {
  const deep = (levels: number, seg = 'd'): string => `${Array(levels).fill(seg).join('/')}/f.txt`;
  return [
    {
      name: 'directory upload 200 levels deep (stored, served)',
      req: () => uploadReq([{ filename: deep(200), data: 'deep' }], { directory: true }),
      status: 200,
      stored: 1,
      check: async (a) => {
        const g = await get(`${answerJson(a).files[0]!}/${deep(200)}`);
        assert.equal(g.status, 200);
        assert.equal(g.body.toString(), 'deep');
      },
    },
    { name: 'directory upload path over PATH_MAX (2,100 levels, 4,205 bytes)', req: () => uploadReq([{ filename: deep(2100) }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'directory upload path of 1,800 bytes', req: () => uploadReq([{ filename: deep(600, 'ab') }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'a segment of 256 bytes', req: () => uploadReq([{ filename: `${'x'.repeat(252)}.txt` }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'directory upload with ../ in a path', req: () => uploadReq([{ filename: 'a/../../outside/x.txt' }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'directory upload with an absolute path', req: () => uploadReq([{ filename: '/etc/cron.d/x' }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'directory upload with a drive path', req: () => uploadReq([{ filename: 'C:\\Windows\\x.txt' }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'plain upload with a slash', req: () => uploadReq([{ filename: 'a/b.txt' }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'plain upload named ..', req: () => uploadReq([{ filename: '..' }]), status: 400, code: 'BAD_FILENAME' },
    { name: 'one good file and one bad: nothing stored', req: () => uploadReq([{ filename: 'good.txt' }, { filename: '../bad.txt' }]), status: 400, code: 'BAD_FILENAME' },
  ];
}

function unicode(): Row[] {
  return [
    { name: 'NFC and NFD spellings of one name in one directory upload collide', req: () => uploadReq([{ filename: 'd/\u00e9.txt' }, { filename: 'd/e\u0301.txt' }], { directory: true }), status: 400, code: 'DUPLICATE_FILENAME' },
    {
      name: 'an NFD name is stored NFC, served at the NFC URL',
      req: () => uploadReq([{ filename: 'caf\u0065\u0301.txt', data: 'nfd' }]),
      status: 200,
      stored: 1,
      check: async (a) => {
        const url = answerJson(a).files[0]!;
        assert.ok(url.endsWith('/caf\u00e9.txt'), url);
        assert.deepEqual((await readdir(join(dataDir, 'f', idOf(url)))).sort(), [RECORD_NAME, 'caf\u00e9.txt']);
        assert.equal((await get(asBrowser(url))).status, 200);
      },
    },
    {
      name: 'one-dot leaders U+2024 as a directory name stay a name inside the upload',
      req: () => uploadReq([{ filename: '\u2024\u2024/x.txt', data: 'leader' }], { directory: true }),
      status: 200,
      stored: 1,
      check: async (a) => {
        const id = idOf(answerJson(a).files[0]!);
        assert.equal(await readFile(join(dataDir, 'f', id, '\u2024\u2024', 'x.txt'), 'utf8'), 'leader');
      },
    },
    {
      name: 'a fullwidth solidus U+FF0F is not a separator (not NFKC-folded)',
      req: () => uploadReq([{ filename: 'a\uff0fb.txt', data: 'solidus' }]),
      status: 200,
      stored: 1,
      check: async (a) => {
        const id = idOf(answerJson(a).files[0]!);
        assert.deepEqual((await readdir(join(dataDir, 'f', id))).sort(), [RECORD_NAME, 'a\uff0fb.txt']);
      },
    },
    {
      name: 'fullwidth full stops U+FF0E as a directory name stay a name',
      req: () => uploadReq([{ filename: '\uff0e\uff0e/y.txt', data: 'stops' }], { directory: true }),
      status: 200,
      stored: 1,
      check: async (a) => {
        const id = idOf(answerJson(a).files[0]!);
        assert.equal(await readFile(join(dataDir, 'f', id, '\uff0e\uff0e', 'y.txt'), 'utf8'), 'stops');
      },
    },
    { name: 'a lone surrogate (invalid UTF-8 bytes) in a filename', req: () => uploadReq([{ disposition: "form-data; name=\"files\"; filename*=UTF-8''a%ED%A0%80.txt" }]), status: 400, code: 'MULTIPART_MALFORMED_HEADER' },
    { name: 'a C1 control (U+0085 NEL) in a filename', req: () => uploadReq([{ filename: 'a\u0085b.txt' }]), status: 400, code: 'BAD_FILENAME' },
  ];
}

function deviceNames(): Row[] {
  return ['CON', 'nul', 'COM1.txt', 'lpt9.log', 'aux.tar.gz', 'CONIN$', 'com\u00b9.txt'].map((n): Row => ({
    name: `Windows device name ${JSON.stringify(n)}`,
    req: () => uploadReq([{ filename: n }]),
    status: 400,
    code: 'BAD_FILENAME',
  })).concat([
    { name: 'Windows device name as a directory segment', req: () => uploadReq([{ filename: 'a/con/b.txt' }], { directory: true }), status: 400, code: 'BAD_FILENAME' },
    { name: 'a name merely starting with a device name (control)', req: () => uploadReq([{ filename: 'console.txt' }]), status: 200, stored: 1 },
  ]);
}

function keys(): Row[] {
  const del = (auth: string | undefined): Req => ({ method: 'DELETE', path: `/_f/${uploadId}`, headers: auth === undefined ? {} : { Authorization: auth } });
  const same = KEY.secret.replace(/.$/, (c) => (c === 'x' ? 'y' : 'x'));
  const unauthorized = (name: string, req: () => Req): Row => ({
    name,
    req,
    status: 401,
    code: 'UNAUTHORIZED',
    check: async (a) => {
      assert.equal(header(a, 'www-authenticate')[0], 'Basic realm="wharf"');
      assert.equal((await get(`/_f/${uploadId}/doc.txt`)).status, 200, 'the upload is still there');
    },
  });
  return [
    unauthorized('DELETE without credentials', () => del(undefined)),
    unauthorized('DELETE with a wrong secret of the same length', () => del(basicAuth(KEY.id, same))),
    unauthorized('DELETE with the secret minus its last character', () => del(basicAuth(KEY.id, KEY.secret.slice(0, -1)))),
    unauthorized('DELETE with the secret plus one character', () => del(basicAuth(KEY.id, `${KEY.secret}x`))),
    unauthorized('DELETE with a 10 KiB secret', () => del(basicAuth(KEY.id, 'x'.repeat(10 * 1024)))),
    unauthorized('DELETE with an empty secret', () => del(basicAuth(KEY.id, ''))),
    unauthorized('DELETE with an unknown key id and the right secret', () => del(basicAuth('someone', KEY.secret))),
    unauthorized("DELETE with Wave's default key (not configured here)", () => del(basicAuth('access_key_id', 'access_key_secret'))),
    unauthorized('DELETE with a malformed Basic header', () => del('Basic !!!not-base64')),
    unauthorized('DELETE with a Bearer token', () => del(`Bearer ${KEY.secret}`)),
    unauthorized('DELETE with id and secret swapped', () => del(basicAuth(KEY.secret, KEY.id))),
    { name: 'upload with a wrong secret of the same length', req: () => uploadReq([{ filename: 'a.txt' }], { auth: basicAuth(KEY.id, same) }), status: 401, code: 'UNAUTHORIZED' },
    { name: 'upload without credentials (anonymous uploads off)', req: () => uploadReq([{ filename: 'a.txt' }], { auth: '' }), status: 401, code: 'UNAUTHORIZED' },
    { name: 'image-stream publish with a wrong secret', req: () => ({ method: 'POST', path: '/_m/cam', headers: { 'Content-Type': 'image/png', Authorization: basicAuth(KEY.id, same) }, body: Buffer.from('png') }), status: 401, code: 'UNAUTHORIZED' },
  ];
}

// A directory swapped for a symlink that leads out, between the containment check and the open
// (issue 16, 4.3): made deterministic by the source's `beforeOpen` seam, which runs the swap in
// exactly that window. Each root holds `swap/` (victim.txt, big.bin, changed.txt); `outside-swap/`
// holds files of the same names full of the OUTSIDE marker.

const SWAP_DIR = 'swap';
const BIG = 1024 * 1024 + 100 * 1024; // over limits.cacheFileSize: cached as validators only, reopened per GET
let outsideSwap: string;
/** The real path of each root's `swap/`, and of the second upload whose id directory is swapped whole. */
const swapDirs = new Map<string, string>();
let swapUploadId: string;
/** Undoes the swap made by the seam, if it fired (and was not undone already). */
let unswap: (() => void) | undefined;
/** How this machine verifies descriptors (/proc/self/fd or not), restored after each row that changes it. */
const procFdWas = directorySeams.procFd;
/** The seam swapped `dir` out for the open. */
let swapped = false;
let changes = 0;

/**
 * Arms the seam: `dir` (a directory, or a file with `to`) becomes a symlink to `to` (default
 * `outside-swap/`) right before it is opened (through); with `back`, the real one is back right
 * after the open, before the descriptor is checked.
 */
function armSwap(dir: string, back: boolean, to = outsideSwap): void {
  swapped = false;
  directorySeams.beforeOpen = (path) => {
    if (path !== dir && !path.startsWith(dir + sep)) return;
    directorySeams.beforeOpen = undefined;
    renameSync(dir, `${dir}.away`);
    symlinkSync(to, dir);
    swapped = true;
    unswap = () => {
      unlinkSync(dir);
      renameSync(`${dir}.away`, dir);
    };
    if (back) {
      directorySeams.afterOpen = () => {
        directorySeams.afterOpen = undefined;
        unswap?.();
        unswap = undefined;
      };
    }
  };
}

function disarmSwap(): void {
  directorySeams.beforeOpen = undefined;
  directorySeams.afterOpen = undefined;
  unswap?.();
  unswap = undefined;
}

function swaps(): Row[] {
  const rows: Row[] = [];
  const roots: Array<{ name: string; prefix: () => string; dir: string; headers?: Record<string, string> }> = [
    { name: 'public', prefix: () => '/pub/', dir: 'pub' },
    { name: 'private (valid key)', prefix: () => '/priv/', dir: 'priv', headers: { Authorization: AUTH } },
    { name: '_f upload', prefix: () => `/_f/${uploadId}/`, dir: 'upload' },
  ];
  for (const [how, procFd] of [['/proc/self/fd', true], ['realpath + inode, as without /proc', false]] as const) {
    // Swapped back before the check, the descriptor is refused (404) or, where the check on the
    // event loop cannot tell a race from a re-pointed root and hands over to the thread-pool path,
    // the file is opened anew and checked again: then it is the inside file (200).
    const row = (name: string, dir: () => string, path: () => string, headers: Record<string, string>, o: { before?: () => Promise<void>; after?: () => Promise<void>; back?: boolean; to?: string } = {}): Row => ({
      name: `${name} (${how})`,
      setup: async () => {
        directorySeams.procFd = procFd;
        await o.before?.();
        armSwap(dir(), o.back ?? false, o.to === undefined ? outsideSwap : join(outsideSwap, o.to));
      },
      req: () => ({ path: path(), headers }),
      status: o.back ? [404, 200] : 404,
      check: async (a) => {
        if (a.status === 404) assert.equal((JSON.parse(a.body.toString('utf8')) as { error?: string }).error, 'NOT_FOUND');
        else assert.deepEqual(a.body, await readFile(o.to === undefined ? join(dir(), path().split('/').pop()!) : dir()), 'the inside file');
        assert.ok(swapped, 'the swap ran between the check and the open');
        assert.equal(await fdsOn(join(outsideSwap, o.to ?? path().split('/').pop()!)), 0, 'the refused descriptor is closed');
        disarmSwap();
        await o.after?.();
      },
      teardown: () => {
        disarmSwap();
        directorySeams.procFd = procFdWas;
      },
    });
    for (const r of roots) {
      const h = r.headers ?? {};
      const dir = (): string => swapDirs.get(r.dir)!;
      const url = (file: string) => (): string => `${r.prefix()}${SWAP_DIR}/${file}`;
      rows.push(
        row(`swap, ${r.name} root: a directory swapped for an outward symlink between the check and the open, first request`, dir, url('victim.txt'), h),
        row(`swap, ${r.name} root: swapped out for the open and back before the descriptor is checked`, dir, url('victim.txt'), h, { back: true }),
        row(`swap, ${r.name} root: the same for a big file served before (its cached validators, the file reopened)`, dir, url('big.bin'), h, {
          before: async () => {
            const a = await get(url('big.bin')(), h);
            assert.equal(a.status, 200);
            assert.equal(a.body.length, BIG);
          },
        }),
        row(`swap, ${r.name} root: a big file served before, swapped out for the open and back before the check`, dir, url('big.bin'), h, {
          back: true,
          before: async () => assert.equal((await get(url('big.bin')(), h)).status, 200),
        }),
        row(`swap, ${r.name} root: the same for a small cached file changed since (revalidation reopens it)`, dir, url('changed.txt'), h, {
          before: async () => {
            assert.equal((await get(url('changed.txt')(), h)).status, 200);
            await writeFile(join(dir(), 'changed.txt'), `changed ${++changes}`);
          },
          after: async () => {
            // Nothing of the outside file was cached: the next GET has the file as it is inside.
            const a = await get(url('changed.txt')(), h);
            assert.equal(a.status, 200);
            assert.equal(a.body.toString(), `changed ${changes}`);
          },
        }),
      );
    }
    rows.push(row("swap, _f upload: the upload id's own directory swapped for an outward symlink", () => swapDirs.get('upload-id')!, () => `/_f/${swapUploadId}/victim.txt`, {}));
    // A file right in the root crosses no directory an attacker could swap, so its descriptor is
    // not checked: O_NOFOLLOW refuses the name itself turned into a symlink (ELOOP: 404).
    for (const big of [false, true]) {
      const name = big ? 'big.bin' : 'victim.txt';
      rows.push(row(`swap, public root: a file right in the root swapped for an outward symlink before the open${big ? ', a big file served before' : ''}`, () => swapDirs.get(`top-${name}`)!, () => `/pub/top-${name}`, {}, {
        to: name,
        ...(big ? { before: async () => assert.equal((await get(`/pub/top-${name}`)).status, 200) } : {}),
      }));
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Who uploaded decides how an upload is served (docs/protocol.md §4, lib/uploads/upload-record.ts)

const one = (a: RawAnswer, name: string): string | undefined => {
  const values = header(a, name);
  assert.ok(values.length <= 1, `at most one ${name}`);
  return values[0];
};

/** An end user's file: sandboxed, sniffing off, and (`filename`) an attachment, of the type given. */
function assertProtected(a: RawAnswer, type: string, filename: string | undefined): void {
  assert.equal(one(a, 'content-security-policy'), 'sandbox', 'Content-Security-Policy: sandbox');
  assert.equal(one(a, 'x-content-type-options'), 'nosniff');
  assert.equal(one(a, 'content-type'), type);
  if (filename === undefined) assert.equal(one(a, 'content-disposition'), undefined, 'inline');
  else assert.equal(downloadName(a), filename, 'an attachment');
}

/** The app's own file: its own type, inline, no sandbox. */
function assertAsIs(a: RawAnswer, type: string): void {
  assert.equal(one(a, 'content-security-policy'), undefined, 'no sandbox');
  assert.equal(one(a, 'content-disposition'), undefined, 'inline');
  assert.equal(one(a, 'content-type'), type);
}

const SCRIPT = 'fetch("/ran?" + document.cookie)';
const HTML_TYPE = 'text/html; charset=utf-8';
const JS_TYPE = 'text/javascript; charset=utf-8';
const INERT = 'application/octet-stream';
/** name, bytes, the type an app's upload is served with, the type an end user's is, whether the latter is an attachment. */
const SCRIPTED: Array<[string, string, string, string, boolean]> = [
  ['x.html', `<!doctype html><script>${SCRIPT}</script>`, HTML_TYPE, INERT, true],
  ['x.htm', `<script>${SCRIPT}</script>`, HTML_TYPE, INERT, true],
  ['x.svg', `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><script>${SCRIPT}</script></svg>`, 'image/svg+xml', 'image/svg+xml', true],
  ['x.xml', `<?xml version="1.0"?><r><h:script xmlns:h="http://www.w3.org/1999/xhtml">${SCRIPT}</h:script></r>`, 'application/xml; charset=utf-8', INERT, true],
  ['x.js', SCRIPT, JS_TYPE, INERT, true],
  ['x.mjs', SCRIPT, JS_TYPE, INERT, true],
  ['x.png', 'PNG (the type comes from the name)', 'image/png', 'image/png', false],
  ['x.pdf', '%PDF-1.4\n%%EOF\n', 'application/pdf', 'application/pdf', false],
];

function endUsersUploads(): Row[] {
  const rows: Row[] = [];
  const url = (a: RawAnswer): string => answerJson(a).files[0]!;
  for (const [name, data, appType, userType, attached] of SCRIPTED) {
    const filename = attached ? name : undefined;
    rows.push({
      name: `an anonymous upload of ${name}: sandboxed${attached ? `, an attachment of type ${userType}` : ''} (GET, HEAD, a Range)`,
      on: 'anon',
      req: () => uploadReq([{ filename: name, data }], { auth: '' }),
      status: 200,
      stored: 1,
      check: async (a) => {
        const g = await get(url(a), {}, 'anon');
        assert.equal(g.status, 200);
        assert.equal(g.body.toString('latin1'), data);
        assertProtected(g, userType, filename);
        assert.match(one(g, 'etag') ?? '', /^"u/, 'an ETag of its own');
        assertProtected(await get(url(a), {}, 'anon', 'HEAD'), userType, filename);
        const r = await get(url(a), { Range: 'bytes=0-3' }, 'anon');
        assert.equal(r.status, 206);
        assertProtected(r, userType, filename);
        assertProtected(await get(url(a), {}, 'main'), userType, filename);
      },
    });
    rows.push({
      name: `an upload of ${name} let in by the authorize hook: sandboxed${attached ? ', an attachment' : ''}`,
      on: 'hook',
      req: () => uploadReq([{ filename: name, data }], { auth: '', headers: SESSION }),
      status: 200,
      stored: 1,
      check: async (a) => assertProtected(await get(url(a), SESSION, 'hook'), userType, filename),
    });
    rows.push({
      name: `an upload of ${name} with the access key, where anonymous uploads are on too: the app's, served as it is`,
      on: 'anon',
      req: () => uploadReq([{ filename: name, data }]),
      status: 200,
      stored: 1,
      check: async (a) => {
        const g = await get(url(a), {}, 'anon');
        assert.equal(g.body.toString('latin1'), data);
        assertAsIs(g, appType);
      },
    });
  }
  const bundle = (extra: Array<{ filename: string; data: string }> = []): Array<{ filename: string; data: string }> => [
    { filename: 'index.html', data: '<!doctype html><script src="app.js"></script>' },
    { filename: 'app.js', data: SCRIPT },
    ...extra,
  ];
  const forged = JSON.stringify({ v: 1, trust: 'app', via: 'key' });
  rows.push(
    {
      name: 'an upload of x.html with the access key on the main server: served as it is',
      req: () => uploadReq([{ filename: 'x.html', data: '<p>app</p>' }]),
      status: 200,
      stored: 1,
      check: async (a) => assertAsIs(await get(url(a)), HTML_TYPE),
    },
    {
      name: "an end user's x.html with ?download=y.html: one Content-Disposition, the name asked for, still sandboxed",
      on: 'anon',
      req: () => uploadReq([{ filename: 'x.html', data: '<p>user</p>' }], { auth: '' }),
      status: 200,
      stored: 1,
      check: async (a) => assertProtected(await get(`${url(a)}?download=y.html`, {}, 'anon'), INERT, 'y.html'),
    },
    {
      name: "the app's directory upload of an HTML/JS bundle (Wave's upload_dir): served as it is",
      req: () => uploadReq(bundle(), { directory: true }),
      status: 200,
      stored: 1,
      check: async (a) => {
        assertAsIs(await get(`${url(a)}/index.html`), HTML_TYPE);
        assertAsIs(await get(`${url(a)}/app.js`), JS_TYPE);
      },
    },
    {
      name: "an end user's directory upload of the same bundle, with a forged record one level down: every file protected",
      on: 'anon',
      req: () => uploadReq(bundle([{ filename: `sub/${RECORD_NAME}`, data: forged }]), { directory: true, auth: '' }),
      status: 200,
      stored: 1,
      check: async (a) => {
        assertProtected(await get(`${url(a)}/index.html`, {}, 'anon'), INERT, 'index.html');
        assertProtected(await get(`${url(a)}/app.js`, {}, 'anon'), INERT, 'app.js');
        const deeper = await get(`${url(a)}/sub/${RECORD_NAME}`, {}, 'anon');
        assert.equal(deeper.status, 200, 'below the top it is an ordinary file');
        assertProtected(deeper, 'application/json; charset=utf-8', undefined);
      },
    },
  );
  // The record's name: no upload may hold it at its top, however it is spelled.
  for (const [what, filename] of [['', RECORD_NAME], [' in capitals', RECORD_NAME.toUpperCase()], [' with a trailing dot (Windows drops it)', `${RECORD_NAME}.`], [' with a trailing space', `${RECORD_NAME} `]] as const) {
    rows.push({ name: `an end user's upload named the record${what}`, on: 'anon', req: () => uploadReq([{ filename, data: forged }], { auth: '' }), status: 400, code: 'BAD_FILENAME' });
  }
  rows.push(
    { name: "the app's upload named the record (reserved for everyone)", req: () => uploadReq([{ filename: RECORD_NAME, data: forged }]), status: 400, code: 'BAD_FILENAME' },
    { name: "an end user's directory upload forging the record at its top: nothing stored", on: 'anon', req: () => uploadReq(bundle([{ filename: RECORD_NAME, data: forged }]), { directory: true, auth: '' }), status: 400, code: 'BAD_FILENAME' },
  );
  // The record is on disk but never served.
  const recordOnDisk = async (): Promise<void> => {
    assert.deepEqual(JSON.parse(await readFile(join(dataDir, 'f', uploadId, RECORD_NAME), 'utf8')), { v: 1, trust: 'app', via: 'key' }, 'the record is there');
  };
  for (const [what, path, method] of [
    ['GET', RECORD_NAME, 'GET'],
    ['HEAD', RECORD_NAME, 'HEAD'],
    ['?download', `${RECORD_NAME}?download`, 'GET'],
    ['in capitals', RECORD_NAME.toUpperCase(), 'GET'],
    ['percent-encoded', `%2E${RECORD_NAME.slice(1).replace(/-/g, '%2D')}`, 'GET'],
  ] as const) {
    rows.push({ name: `the record is never served: ${what}`, req: () => ({ method, path: `/_f/${uploadId}/${path}` }), status: 404, check: recordOnDisk });
  }
  rows.push({
    name: 'the record is never served: site.download',
    req: () => ({ path: `/_f/${uploadId}/doc.txt` }),
    status: 200,
    check: async () => {
      await recordOnDisk();
      await assert.rejects(files.site.download(`/_f/${uploadId}/${RECORD_NAME}`, root), (e: unknown) => (e as { code?: string }).code === 'NOT_FOUND');
    },
  });
  // Uploads copied straight into the layout: no record, or one the app wrote itself.
  const page = (id: () => string, headers: Record<string, string> = {}): (() => Req) => () => ({ path: `/_f/${id()}/page.html`, headers });
  rows.push(
    { name: 'a copied-in upload without a record: an end user\'s (who made it cannot be known)', req: page(() => copied.bare), status: 200, check: (a) => assertProtected(a, INERT, 'page.html') },
    { name: 'a copied-in upload whose record the app wrote (trust "app"): served as it is', req: page(() => copied.appRecord), status: 200, check: (a) => assertAsIs(a, HTML_TYPE) },
    { name: 'a copied-in upload with a damaged record: an end user\'s', req: page(() => copied.badRecord), status: 200, check: (a) => assertProtected(a, INERT, 'page.html') },
    { name: 'a copied-in upload with a record of an unknown version: an end user\'s', req: page(() => copied.futureRecord), status: 200, check: (a) => assertProtected(a, INERT, 'page.html') },
    { name: 'a copied-in upload without a record, where trustUnrecordedUploads is on: served as it is', on: 'hook', req: page(() => copied.bare, SESSION), status: 200, check: (a) => assertAsIs(a, HTML_TYPE) },
  );
  rows.push({
    name: "an end user's upload revalidated with the validator of its unprotected answer (from before wharf protected them): 200 protected, not a 304 that revives the copy",
    on: 'anon',
    req: () => uploadReq([{ filename: 'cached.html', data: `<script>${SCRIPT}</script>` }], { auth: '' }),
    status: 200,
    stored: 1,
    check: async (a) => {
      const st = await stat(join(dataDir, 'f', idOf(url(a)), 'cached.html'));
      const before = `"${st.ino.toString(36)}-${st.size.toString(36)}-${Math.round(st.mtimeMs * 1000).toString(36)}"`;
      const g = await get(url(a), { 'If-None-Match': before }, 'anon');
      assert.equal(g.status, 200);
      assertProtected(g, INERT, 'cached.html');
      const again = await get(url(a), { 'If-None-Match': one(g, 'etag')! }, 'anon');
      assert.equal(again.status, 304, 'its own validator still revalidates');
    },
  });
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Answers that needed authorization are private (RFC 9111 §5.2.2.7)

function privateAnswers(): Row[] {
  const PRIVATE_CC = 'private, max-age=0, must-revalidate';
  const cc = (want: string) => (a: RawAnswer): void => assert.equal(one(a, 'cache-control'), want);
  const key = { Authorization: AUTH };
  const rows: Array<[string, On, string, Record<string, string>, number, string, boolean]> = [
    ['a private mapping with a key', 'main', '/priv/private.txt', key, 200, PRIVATE_CC, true],
    ["a private mapping's 304", 'main', '/priv/private.txt', { ...key, 'If-None-Match': '*' }, 304, PRIVATE_CC, true],
    ["a private mapping's 206", 'main', '/priv/private.txt', { ...key, Range: 'bytes=0-3' }, 206, PRIVATE_CC, true],
    ["a private mapping's HEAD", 'main', 'HEAD /priv/private.txt', key, 200, PRIVATE_CC, true],
    ['a private mapping through the hook, where cacheControl is public for an hour', 'hook', '/priv/private.txt', SESSION, 200, PRIVATE_CC, true],
    ['a private mapping with a key, where cacheControl is public for an hour', 'hook', '/priv/private.txt', key, 200, PRIVATE_CC, true],
    ["a private mapping's 304, where cacheControl is public for an hour", 'hook', '/priv/private.txt', { ...SESSION, 'If-None-Match': '*' }, 304, PRIVATE_CC, true],
    ['an upload, where reads need the hook', 'hook', '/_f/{id}/doc.txt', SESSION, 200, PRIVATE_CC, false],
    ["an upload's 304, where reads need the hook", 'hook', '/_f/{id}/doc.txt', { ...SESSION, 'If-None-Match': '*' }, 304, PRIVATE_CC, false],
    ['an upload read with a key, where reads need the hook', 'hook', '/_f/{id}/doc.txt', key, 200, PRIVATE_CC, false],
    ['a public mapping (control: cacheControl)', 'hook', '/pub/ok.txt', {}, 200, 'public, max-age=3600', false],
    ['an upload where reads are open (control: public)', 'main', '/_f/{id}/doc.txt', {}, 200, 'public, max-age=0, must-revalidate', false],
  ];
  return [
    ...rows.map(([name, on, target, headers, status, want, privateOk]): Row => {
      const [method, path] = target.startsWith('HEAD ') ? ['HEAD', target.slice(5)] : ['GET', target];
      return { name, on, req: () => ({ method, path: path.replace('{id}', uploadId), headers }), status, privateOk, check: cc(want) };
    }),
    {
      name: 'an image stream, where reads need the hook: no-store (stronger than private)',
      on: 'hook',
      req: () => ({ method: 'POST', path: '/_m/trust-cam', headers: { ...key, 'Content-Type': 'image/png' }, body: Buffer.from('frame') }),
      status: 200,
      check: async () => {
        const view = await get('/_m/trust-cam', SESSION, 'hook', 'HEAD');
        assert.equal(view.status, 200);
        assert.equal(one(view, 'cache-control'), 'no-store');
        assert.equal((await rawSend(ports.hook, rawRequest({ method: 'DELETE', path: '/_m/trust-cam', headers: key }))).status, 200);
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wharf-security-'));
  dataDir = join(root, 'data');
  const pub = join(root, 'public');
  const priv = join(root, 'private');
  await mkdir(join(root, 'outside'), { recursive: true });
  await writeFile(join(root, 'outside', 'secret.txt'), OUTSIDE);
  await mkdir(join(pub, 'sub'), { recursive: true });
  await writeFile(join(pub, 'ok.txt'), 'public ok');
  await writeFile(join(pub, 'doc.txt'), 'public doc');
  await writeFile(join(pub, '.env'), DOTFILE);
  await symlink(join(root, 'outside'), join(pub, 'escape'));
  await symlink(join(root, 'outside', 'secret.txt'), join(pub, 'leak.txt'));
  await mkdir(join(priv, 'sub'), { recursive: true });
  await writeFile(join(priv, 'private.txt'), PRIVATE);
  await writeFile(join(priv, 'doc.txt'), PRIVATE);
  await writeFile(join(priv, '.env'), DOTFILE);
  await symlink(join(root, 'outside'), join(priv, 'escape'));
  await symlink(join(root, 'outside', 'secret.txt'), join(priv, 'leak.txt'));
  const nested = join(root, 'nested');
  await mkdir(join(nested, 'inner'), { recursive: true });
  await writeFile(join(nested, 'pub.txt'), 'nested public');
  await writeFile(join(nested, 'inner', 'secret.txt'), PRIVATE);
  await symlink(join(nested, 'inner'), join(nested, 'alias'));
  await symlink(join(nested, 'inner', 'secret.txt'), join(nested, 'secret-link.txt'));
  await symlink(dataDir, join(nested, 'store'));
  const common = {
    dataDir,
    publicDirs: [`/pub/@${pub}`, `/n/@${nested}`],
    privateDirs: [`/priv/@${priv}`, `/n/inner/@${join(nested, 'inner')}`],
    accessKeys: { [KEY.id]: KEY.secret },
    warn: () => {},
  };
  files = createFileServer(common);
  ({ port } = await files.listen({ port: 0 }));
  ports.main = port;
  anonFiles = createFileServer({ ...common, anonymousUploads: true });
  ports.anon = (await anonFiles.listen({ port: 0 })).port;
  hookFiles = createFileServer({
    ...common,
    authorize: (req) => req.headers.cookie === SESSION.Cookie,
    trustUnrecordedUploads: true,
    cacheControl: 'public, max-age=3600',
  });
  ports.hook = (await hookFiles.listen({ port: 0 })).port;
  // Copied straight into the layout, as Wave's client does on a shared disk: without a record, or
  // with one the app wrote itself (or a damaged one).
  for (const [k, record] of [['bare', undefined], ['appRecord', '{"v":1,"trust":"app","via":"key"}'], ['badRecord', '{"v":1,"trust":'], ['futureRecord', '{"v":2,"trust":"app"}']] as const) {
    const id = randomUUID();
    await mkdir(join(dataDir, 'f', id), { recursive: true });
    await writeFile(join(dataDir, 'f', id, 'page.html'), `<script>${SCRIPT}</script>`);
    if (record !== undefined) await writeFile(join(dataDir, 'f', id, RECORD_NAME), record);
    copied[k] = id;
  }
  const form = formBuffer([{ filename: 'doc.txt', data: Buffer.from('upload doc') }]);
  const a = await rawSend(port, rawRequest({ method: 'POST', path: '/_f/', headers: { 'Content-Type': form.contentType, Authorization: AUTH }, body: form.body }));
  assert.equal(a.status, 200);
  uploadId = idOf(answerJson(a).files[0]!);
  const b = await rawSend(port, rawRequest({ method: 'POST', path: '/_f/', headers: { 'Content-Type': form.contentType, Authorization: AUTH }, body: form.body }));
  assert.equal(b.status, 200);
  victimId = idOf(answerJson(b).files[0]!);
  // Links inside the upload too: a symlink planted in storage must not lead out either.
  await mkdir(join(dataDir, 'f', uploadId, 'sub'));
  await symlink(join(root, 'outside'), join(dataDir, 'f', uploadId, 'escape'));
  await symlink(join(root, 'outside', 'secret.txt'), join(dataDir, 'f', uploadId, 'leak.txt'));

  outsideSwap = join(await realpath(root), 'outside-swap');
  await mkdir(outsideSwap);
  const secret = (n: number): string => OUTSIDE.repeat(Math.ceil(n / OUTSIDE.length)).slice(0, n);
  await writeFile(join(outsideSwap, 'victim.txt'), secret(64));
  await writeFile(join(outsideSwap, 'big.bin'), secret(BIG));
  await writeFile(join(outsideSwap, 'changed.txt'), secret(64));
  swapUploadId = randomUUID();
  const swapRoots: Array<[string, string]> = [['pub', join(pub, SWAP_DIR)], ['priv', join(priv, SWAP_DIR)], ['upload', join(dataDir, 'f', uploadId, SWAP_DIR)], ['upload-id', join(dataDir, 'f', swapUploadId)]];
  for (const [name, dir] of swapRoots) {
    await mkdir(dir);
    await writeFile(join(dir, 'victim.txt'), 'inside victim');
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(BIG, 'i'));
    await writeFile(join(dir, 'changed.txt'), 'inside, as first written');
    swapDirs.set(name, await realpath(dir));
  }
  for (const name of ['victim.txt', 'big.bin']) {
    await writeFile(join(pub, `top-${name}`), name === 'big.bin' ? Buffer.alloc(BIG, 't') : 'inside, top');
    swapDirs.set(`top-${name}`, join(await realpath(pub), `top-${name}`));
  }
});

after(async () => {
  await Promise.all([files.close(), anonFiles.close(), hookFiles.close()]);
  await rm(root, { recursive: true, force: true });
});

const uploadsOnDisk = async (): Promise<string[]> => (await readdir(join(dataDir, 'f'))).sort();

test('security: every hostile input, its status, nothing stored, nothing leaked', async (t) => {
  const table: Array<[string, Row[]]> = [
    ['path traversal', traversal()],
    ['nested mappings', nestedMappings()],
    ['DELETE with dot segments', deleteDots()],
    ['pipelined after a refusal', pipelinedAfterRefusal()],
    ['header injection', headerInjection()],
    ['multipart limits', multipartLimits()],
    ['upload paths', paths()],
    ['Unicode', unicode()],
    ['Windows device names', deviceNames()],
    ['access keys', keys()],
    ["end users' uploads never run script", endUsersUploads()],
    ['private answers', privateAnswers()],
    ['directory swapped for a symlink', swaps()],
  ];
  let rows = 0;
  for (const [group, list] of table) {
    for (const row of list) {
      rows++;
      await t.test(`${group} — ${row.name}`, async () => {
        try {
          await runRow(row);
        } finally {
          await row.teardown?.();
        }
      });
    }
  }
  assert.ok(rows >= 100, `${rows} rows`);
});

async function runRow(row: Row): Promise<void> {
  await row.setup?.();
  const before = await uploadsOnDisk();
  const more = row.then?.() ?? [];
  const a = more.length === 0 ? await rawSend(ports[row.on ?? 'main'], rawRequest(row.req()), 60_000) : await rawPipelined(Buffer.concat([row.req(), ...more].map(rawRequest)));
  const text = a.raw.toString('latin1');
  if (typeof row.status === 'number') assert.equal(a.status, row.status, `status; answer: ${text.slice(0, 300)}`);
  else assert.ok(row.status.includes(a.status), `status ${a.status}, not one of ${row.status.join(', ')}; answer: ${text.slice(0, 300)}`);
  if (row.code !== undefined) assert.equal((JSON.parse(a.body.toString('utf8')) as { error?: string }).error, row.code, text.slice(0, 300));
  for (const m of row.privateOk ? MARKERS.filter((x) => x !== PRIVATE) : MARKERS) assert.ok(!text.includes(m), `the answer leaks ${m}`);
  assert.equal(header(a, 'x-injected').length, 0, 'no injected header');
  for (const [k, v] of a.headers) assert.doesNotMatch(`${k}: ${v}`, /[\r\n\0]/, 'no CR, LF or NUL in a header');
  assert.ok(header(a, 'content-disposition').length <= 1, 'at most one Content-Disposition');
  await row.check?.(a);
  const after = await uploadsOnDisk();
  const added = after.filter((id) => !before.includes(id));
  assert.equal(added.length, row.stored ?? 0, `upload ids added: ${added.join(', ')}`);
  assert.deepEqual(before.filter((id) => !after.includes(id)), [], 'nothing removed');
  await eventually(async () => (await staged(dataDir)).length === 0, 'nothing staged', 5000);
}

// ---------------------------------------------------------------------------------------------
// The same race for real: a thread renames directories back and forth to outward symlinks while
// requests run, with no seam. Bounded in requests and time; not one byte of an outside file may
// come back. RACE_MODE=portable runs it with the check used where /proc/self/fd is missing.

/** Renames each `dir` to `real` and `link` to `dir`, and back, until told to stop or `ms` pass; counts the cycles. */
const SWAPPER = `
const { workerData } = require('node:worker_threads');
const { renameSync } = require('node:fs');
const { pairs, flag, ms } = workerData;
const state = new Int32Array(flag);
const end = Date.now() + ms;
let cycles = 0;
while (Atomics.load(state, 0) === 0 && Date.now() < end) {
  for (const [dir, real, link] of pairs) { renameSync(dir, real); renameSync(link, dir); }
  for (const [dir, real, link] of pairs) { renameSync(dir, link); renameSync(real, dir); }
  cycles++;
}
Atomics.store(state, 1, cycles);
`;

const RACE_REQUESTS = 4000;
const RACE_MS = 4000;
const RACE_CONCURRENCY = 16;

test('security: directories renamed back and forth to outward symlinks while requests run: no outside byte is answered', async () => {
  const base = await realpath(root);
  const outside = join(base, 'race-outside');
  const park = join(base, 'race-park');
  await mkdir(outside);
  await mkdir(park);
  const files: Array<[string, Buffer, Buffer]> = [
    ['v.txt', Buffer.from('inside race file, small'), Buffer.from(OUTSIDE.repeat(2).slice(0, 23))],
    ['b.bin', Buffer.alloc(BIG, 'r'), Buffer.from(OUTSIDE.repeat(Math.ceil(BIG / OUTSIDE.length)).slice(0, BIG))],
  ];
  for (const [name, , out] of files) await writeFile(join(outside, name), out);
  // One directory in the public mapping, one in the private one, one inside an upload.
  const dirs: Array<[string, string, Record<string, string>]> = [
    [join(base, 'public', 'race'), '/pub/race/', {}],
    [join(base, 'private', 'race'), '/priv/race/', { Authorization: AUTH }],
    [join(dataDir, 'f', uploadId, 'race'), `/_f/${uploadId}/race/`, {}],
  ];
  const pairs: Array<[string, string, string]> = [];
  for (const [i, [dir]] of dirs.entries()) {
    await mkdir(dir);
    for (const [name, inside] of files) await writeFile(join(dir, name), inside);
    await symlink(outside, join(park, `link${i}`));
    pairs.push([dir, join(park, `real${i}`), join(park, `link${i}`)]);
  }
  const portable = process.env.RACE_MODE === 'portable';
  directorySeams.procFd = procFdWas && !portable;

  const flag = new SharedArrayBuffer(8);
  const state = new Int32Array(flag);
  const worker = new Worker(SWAPPER, { eval: true, workerData: { pairs, flag, ms: RACE_MS + 2000 } });
  const exited = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve());
  });
  const agent = new Agent({ keepAlive: true, maxSockets: RACE_CONCURRENCY });
  const statuses = new Map<number, number>();
  const leaks: string[] = [];
  let sent = 0;
  const end = Date.now() + RACE_MS;
  const one = (path: string, headers: Record<string, string>, inside: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      httpGet({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (body.includes(OUTSIDE.slice(0, 8))) leaks.push(`${path}: ${status}, ${body.length} bytes of the outside file`);
          else if (status === 200 && !body.equals(inside)) leaks.push(`${path}: 200 with ${body.length} bytes that are not the file's`);
          resolve();
        });
      }).on('error', reject);
    });
  try {
    await Promise.all(Array.from({ length: RACE_CONCURRENCY }, async (_, lane) => {
      while (sent < RACE_REQUESTS && Date.now() < end) {
        const n = sent++;
        const [, prefix, headers] = dirs[(n + lane) % dirs.length]!;
        const [name, inside] = files[n % files.length]!;
        await one(`${prefix}${name}`, headers, inside);
      }
    }));
  } finally {
    Atomics.store(state, 0, 1);
    await exited;
    agent.destroy();
    directorySeams.procFd = procFdWas;
  }
  const cycles = Atomics.load(state, 1);
  // Every descriptor opened on an outside file and refused was closed.
  await eventually(async () => (await fdsOn(join(outside, 'v.txt'))) + (await fdsOn(join(outside, 'b.bin'))) === 0, 'no descriptor left on an outside file', 5000);
  const summary = `${sent} requests, ${cycles} swap cycles, statuses ${JSON.stringify(Object.fromEntries(statuses))}`;
  assert.deepEqual(leaks.slice(0, 10), [], `${leaks.length} answers leaked (${summary})`);
  assert.ok(cycles > 10, `the directories were swapped (${summary})`);
  assert.ok((statuses.get(200) ?? 0) > 0 && (statuses.get(404) ?? 0) > 0, `both sides of the race were seen (${summary})`);
  assert.deepEqual([...statuses.keys()].filter((s) => s !== 200 && s !== 404), [], summary);
  console.log(`race: ${summary}`);
});

// ---------------------------------------------------------------------------------------------
// Permissions (issue 16, 4.5): what wharf creates under the data dir is owner-only whatever the
// umask (0 here, the widest), or readable by the group with `groupReadable`; a directory that was
// there already keeps its mode and is reported.

/** Every directory and file under `dir` (itself included), with its permission bits. */
async function modesUnder(dir: string): Promise<Array<{ path: string; dir: boolean; mode: number }>> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = [];
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    out.push({ path: p, dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) for (const name of await readdir(p)) await walk(join(p, name));
  };
  await walk(dir);
  return out;
}

function assertModes(entries: Array<{ path: string; dir: boolean; mode: number }>, dirMode: number, fileMode: number): void {
  const wrong = entries.filter((e) => e.mode !== (e.dir ? dirMode : fileMode)).map((e) => `${e.path}: 0${e.mode.toString(8)}`);
  assert.deepEqual(wrong, [], `every directory 0${dirMode.toString(8)}, every file 0${fileMode.toString(8)}`);
}

test('security: the data dir, f/, the temp area and every upload are owner-only whatever the umask; groupReadable lets the group read', async () => {
  const umask = process.umask(0);
  try {
    for (const [groupReadable, dirMode, fileMode] of [[false, 0o700, 0o600], [true, 0o750, 0o640]] as const) {
      // Through the server: a missing data dir (and its missing parent) made at start, plain
      // uploads written on the event loop and through the thread pool (past the first MiB), a
      // directory upload, copies by site.upload and site.uploadDir of files whose own mode is 0755.
      const base = join(root, `modes-${groupReadable}`);
      const dir = join(base, 'parent', 'data');
      const warnings: string[] = [];
      const server = createFileServer({ dataDir: dir, accessKeys: { [KEY.id]: KEY.secret }, ...(groupReadable ? { groupReadable } : {}), warn: (m) => warnings.push(m) });
      try {
        const { port: p } = await server.listen({ port: 0 });
        const post = async (files: Array<{ filename: string; data: Buffer }>, directory = false): Promise<void> => {
          const form = formBuffer(files);
          const headers: Record<string, string> = { 'Content-Type': form.contentType, Authorization: AUTH, ...(directory ? { 'Wave-Directory-Upload': 'True' } : {}) };
          const a = await rawSend(p, rawRequest({ method: 'POST', path: '/_f/', headers, body: form.body }));
          assert.equal(a.status, 200, a.body.toString());
        };
        await post([{ filename: 'small.txt', data: Buffer.from('small') }, { filename: 'big.bin', data: Buffer.alloc(3 * 1024 * 1024, 'b') }]);
        await post([{ filename: 'd/e/f.txt', data: Buffer.from('deep') }, { filename: 'd/g.txt', data: Buffer.from('g') }], true);
        const src = join(base, 'src');
        await mkdir(join(src, 'sub'), { recursive: true });
        await writeFile(join(src, 'tool.sh'), '#!/bin/sh\n', { mode: 0o755 });
        await writeFile(join(src, 'sub', 'x.txt'), 'x', { mode: 0o755 });
        const [copied] = await server.site.upload([join(src, 'tool.sh')]);
        await server.site.uploadDir(src);
        assertModes(await modesUnder(join(base, 'parent')), dirMode, fileMode);
        // A copy downloaded in-process is the app's file: the mode any new file gets (0666 less the umask 0).
        const to = join(base, 'downloaded.sh');
        await server.site.download(copied!, to);
        assert.equal((await lstat(to)).mode & 0o777, 0o666);
        // f/ and the temp area removed under the running server are made again, with the mode too.
        await rm(join(dir, 'f'), { recursive: true });
        await rm(join(dir, '.wharf-tmp'), { recursive: true });
        await post([{ filename: 'again.txt', data: Buffer.from('again') }]);
        assertModes(await modesUnder(join(base, 'parent')), dirMode, fileMode);
        assert.deepEqual(warnings, [], 'nothing to warn about: wharf made every directory');
      } finally {
        await server.close();
      }

      // The storage alone with every write through the thread pool (nothing on the event loop).
      const data = join(base, 'pool');
      const storage = createLocalStorage(data, { syncWriteBelow: 0, ...(groupReadable ? { groupReadable } : {}) });
      await storage.start();
      const staging = storage.stage();
      const id = randomUUID();
      const file = staging.file(id, 'a/b/c.bin', () => {});
      file.write(Buffer.alloc(256 * 1024, 'c'));
      file.end();
      await file.done;
      await staging.put(id, 'a/d.txt', [Buffer.from('d')]);
      await staging.commit(recordFor('site'));
      assertModes(await modesUnder(data), dirMode, fileMode);
    }
  } finally {
    process.umask(umask);
  }
});

test('security: a data dir and f/ that were already there keep their modes; an open f/ is reported', async () => {
  const umask = process.umask(0);
  try {
    const dir = join(root, 'premade');
    await mkdir(dir, { mode: 0o755 });
    const warnings: string[] = [];
    const start = async (): Promise<void> => {
      const server = createFileServer({ dataDir: dir, accessKeys: { [KEY.id]: KEY.secret }, warn: (m) => warnings.push(m) });
      await server.listen({ port: 0 }); // starts the storage
      await server.site.upload([join(root, 'outside', 'secret.txt')]);
      await server.close();
    };
    await start();
    assert.equal((await lstat(dir)).mode & 0o777, 0o755, 'the data dir keeps its mode');
    assert.equal((await lstat(join(dir, 'f'))).mode & 0o777, 0o700, 'f/, made by wharf, is owner-only');
    assert.deepEqual(warnings, [], 'an open data dir shows others only the names f and .wharf-tmp: nothing to warn about');

    // f/ left open by an earlier version (or by hand): every upload id in it is exposed.
    await chmod(join(dir, 'f'), 0o755);
    await start();
    assert.equal((await lstat(join(dir, 'f'))).mode & 0o777, 0o755, 'f/ keeps its mode');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /premade\/f has mode 0755: other accounts on this machine can list every upload id in it \(each id is the URL of an upload\) and read the uploads made before; wharf does not change the mode of a directory it did not create \(new uploads are 0700\/0600\): chmod 0700 .*premade\/f, and chmod -R go-rwx it for the uploads made before$/);
    for (const id of await readdir(join(dir, 'f'))) assertModes(await modesUnder(join(dir, 'f', id)), 0o700, 0o600);
  } finally {
    process.umask(umask);
  }
});

test('security: uploads are served at _f/ only — a mapping around the data dir, or a link to it, serves none of them; a mapping in it is refused', async (t) => {
  const site = await mkdtemp(join(tmpdir(), 'wharf-site-'));
  defer(t, () => rm(site, { recursive: true, force: true }));
  await writeFile(join(site, 'index.txt'), 'site');
  const data = join(site, 'data');
  const server = createFileServer({ dataDir: data, publicDirs: [`/site/@${site}`], anonymousUploads: true, warn: () => {} });
  const { port: p } = await server.listen({ port: 0 });
  defer(t, () => server.close());
  const form = formBuffer([{ filename: 'evil.html', data: Buffer.from('<script>alert(1)</script>') }]);
  const up = await rawSend(p, rawRequest({ method: 'POST', path: '/_f/', headers: { 'Content-Type': form.contentType }, body: form.body }));
  assert.equal(up.status, 200);
  const path = answerJson(up).files[0]!;
  const id = idOf(path);
  await symlink(join(data, 'f'), join(site, 'store'));
  const get = (q: string): Promise<RawAnswer> => rawSend(p, rawRequest({ path: q }));
  assert.equal((await get('/site/index.txt')).status, 200, 'the mapping serves its own files (control)');
  for (const q of [`/site/data/f/${id}/evil.html`, `/site/store/${id}/evil.html`, `/site/data/f/${id}/${RECORD_NAME}`]) {
    const a = await get(q);
    assert.equal(a.status, 404, `${q}: ${a.raw.toString('latin1').slice(0, 200)}`);
    assert.ok(!a.body.toString().includes('<script>'), q);
  }
  const own = await get(path);
  assert.equal(own.status, 200);
  assert.match(header(own, 'content-disposition')[0] ?? '', /^attachment/, 'served at _f/ by its own rules: an end user\'s HTML is an attachment');
  for (const inside of [data, join(data, 'f'), join(data, 'f', id)]) {
    assert.throws(() => createFileServer({ dataDir: data, publicDirs: [`/x/@${inside}`] }), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'INVALID_OPTION', inside);
  }
});

// ---------------------------------------------------------------------------------------------
// The same rules whatever keeps the uploads: on disk and in S3 (lib/uploads/s3-storage.ts), an end
// user's upload is sandboxed (and inert when active), the app's is served as it is, through GET,
// HEAD, a Range, a 304 and an index page, and the record's name is never an upload's nor served.

storageTest("security: end users' uploads never run script, the app's are served as they are, whatever keeps them", async (t, storage) => {
  const running = await serveOn(storage, t, {
    accessKeys: { [KEY.id]: KEY.secret },
    anonymousUploads: false,
    authorize: (req) => (req.headers.cookie === SESSION.Cookie ? { identity: 'end-user' } : false),
  });
  const at = Number(new URL(running.url).port);
  const send = (req: RawRequest): Promise<RawAnswer> => rawSend(at, rawRequest(req));
  const fetchAs = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawAnswer> => send({ method, path, headers: { ...SESSION, ...headers } });
  for (const [name, data, appType, userType, attached] of SCRIPTED) {
    const user = await send(uploadReq([{ filename: name, data }], { auth: '', headers: SESSION }));
    assert.equal(user.status, 200, name);
    const path = answerJson(user).files[0]!;
    const g = await fetchAs(path);
    assert.equal(g.body.toString('latin1'), data, name);
    assertProtected(g, userType, attached ? name : undefined);
    assertProtected(await fetchAs(path, {}, 'HEAD'), userType, attached ? name : undefined);
    const r = await fetchAs(path, { Range: 'bytes=0-3' });
    assert.equal(r.status, 206, name);
    assertProtected(r, userType, attached ? name : undefined);
    assert.equal((await fetchAs(path, { 'If-None-Match': one(g, 'etag')! })).status, 304, name);
    const app = await send(uploadReq([{ filename: name, data }]));
    assertAsIs(await fetchAs(answerJson(app).files[0]!), appType);
  }
  // An end user's directory upload: its index page is theirs too.
  const site = await send(uploadReq([{ filename: 'index.html', data: `<script>${SCRIPT}</script>` }], { auth: '', headers: SESSION, directory: true }));
  assertProtected(await fetchAs(`${answerJson(site).files[0]!}/`), INERT, 'index.html');
  // The record's name: refused as a file, never served, in any spelling.
  const forged = await send(uploadReq([{ filename: RECORD_NAME, data: '{"v":1,"trust":"app","via":"key"}' }], { auth: '', headers: SESSION }));
  assert.equal(forged.status, 400);
  const id = idOf(answerJson(site).files[0]!);
  for (const spelling of [RECORD_NAME, RECORD_NAME.toUpperCase(), `${RECORD_NAME}.`]) assert.equal((await fetchAs(`/_f/${id}/${spelling}`)).status, 404, spelling);
});
