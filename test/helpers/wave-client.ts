// H2O Wave's Python client (`h2o_wave` core.py, `Site`) as it behaves on the wire and on disk,
// reproduced in TypeScript from its sources — nothing of it is vendored — for tests that must see
// what it sends and what it saves:
//
// - Every call is httpx: `self._http.get/post/delete(f'{address}{url}')` with Basic auth.
// - `download(url, path)` names the local file `os.path.join(path, os.path.basename(url))` when
//   `path` is a directory, and raises unless the answer is 200; `unload` and `unlink` raise unless
//   it is 200.
// - httpx turns the URL string into a request line with `httpx/_urlparse.py`: the string is cut
//   into path, query and fragment at the first `?` and `#` (URL_REGEX), dot segments are removed
//   (normalize_path), and the path is `quote(path, safe=PATH_SAFE)`: every existing `%XX` kept as
//   it is, every other character outside unreserved + PATH_SAFE percent-encoded as UTF-8. Note
//   that `%` itself is in PATH_SAFE, so a stray `%` goes out raw.
// - An upload is httpx's multipart body: `--<hex boundary>`, `Content-Disposition: form-data;
//   name="files"; filename="<name>"` with `"` as `%22`, `\` doubled and C0 controls (but ESC) as
//   `%XX`, then the guessed `Content-Type`.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';

const UNRESERVED = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~';
const printable = (exclude: number[]): string => {
  let out = '';
  for (let c = 0x20; c < 0x7f; c++) if (!exclude.includes(c)) out += String.fromCharCode(c);
  return out;
};
/** httpx PATH_SAFE: printable ASCII less space, `"`, `#`, `<`, `>`, `?`, backtick, `{`, `}`. */
export const PATH_SAFE = printable([0x20, 0x22, 0x23, 0x3c, 0x3e, 0x3f, 0x60, 0x7b, 0x7d]);
/** httpx QUERY_SAFE: printable ASCII less space, `"`, `#`, `<`, `>`. */
export const QUERY_SAFE = printable([0x20, 0x22, 0x23, 0x3c, 0x3e]);

/** httpx `percent_encoded`: characters outside unreserved + `safe` as `%XX` of their UTF-8 bytes. */
function percentEncoded(s: string, safe: string): string {
  let out = '';
  for (const ch of s) {
    out += UNRESERVED.includes(ch) || safe.includes(ch)
      ? ch
      : [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  }
  return out;
}

/** httpx `quote(string, safe)`: existing `%XX` sequences kept, the text between them percent-encoded. */
export function httpxQuote(s: string, safe: string): string {
  let out = '';
  let at = 0;
  for (const m of s.matchAll(/%[A-Fa-f0-9]{2}/g)) {
    out += percentEncoded(s.slice(at, m.index), safe) + m[0];
    at = m.index + 3;
  }
  return out + percentEncoded(s.slice(at), safe);
}

/** httpx `normalize_path`: `.` and `..` segments removed (RFC 3986 §5.2.4). */
function normalizePath(path: string): string {
  const segments = path.split('/');
  if (!segments.includes('.') && !segments.includes('..')) return path;
  const out: string[] = [];
  for (const s of segments) {
    if (s === '.') continue;
    if (s === '..') {
      if (out.length > 0 && !(out.length === 1 && out[0] === '')) out.pop();
    } else out.push(s);
  }
  return out.join('/');
}

/** The request target httpx puts on the request line for the URL string `url` (`http://host:port/path…`). */
export function httpxTarget(url: string): string {
  const m = /^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?(?:\/\/[^/?#]*)?([^?#]*)(?:\?([^#]*))?(?:#.*)?$/s.exec(url)!;
  const path = httpxQuote(normalizePath(m[1]!), PATH_SAFE);
  return m[2] === undefined ? path : `${path}?${httpxQuote(m[2], QUERY_SAFE)}`;
}

/** Python's `posixpath.basename`: what follows the last `/`, as it is. */
export const pyBasename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** httpx `_format_form_param` for a filename: `"` → `%22`, `\` → `\\`, C0 controls but ESC → `%XX`. */
function formParam(value: string): string {
  return value.replace(/["\\\x00-\x1a\x1c-\x1f]/g, (c) => (c === '"' ? '%22' : c === '\\' ? '\\\\' : `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`));
}

export interface WaveAnswer {
  status: number;
  body: Buffer;
}

/** Wave's `Site`, as far as files and streams go, speaking to `address` (`http://host:port`) with base `/`. */
export function waveSite(address: string, key = { id: 'access_key_id', secret: 'access_key_secret' }) {
  const authorization = `Basic ${Buffer.from(`${key.id}:${key.secret}`).toString('base64')}`;
  const { hostname, port } = new URL(address);
  /** Every request line this client sent, `METHOD target`. */
  const sent: string[] = [];

  function call(method: string, url: string, body?: { type: string; data: Buffer }): Promise<WaveAnswer> {
    const path = httpxTarget(url);
    sent.push(`${method} ${path}`);
    const headers: http.OutgoingHttpHeaders = { authorization };
    if (body) Object.assign(headers, { 'content-type': body.type, 'content-length': body.data.length });
    return new Promise((resolve, reject) => {
      const req = http.request({ host: hostname, port, method, path, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body?.data);
    });
  }

  /** httpx's multipart body of `(field, (filename, bytes, type))` items. */
  function multipart(items: Array<[string, string, Buffer, string]>): { type: string; data: Buffer } {
    const boundary = randomBytes(16).toString('hex');
    const parts: Buffer[] = [];
    for (const [field, filename, data, type] of items) {
      parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${formParam(field)}"; filename="${formParam(filename)}"\r\nContent-Type: ${type}\r\n\r\n`), data, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from(`--${boundary}--\r\n`));
    return { type: `multipart/form-data; boundary=${boundary}`, data: Buffer.concat(parts) };
  }

  const raise = (what: string, a: WaveAnswer): never => {
    throw new Error(`${what} failed (code=${a.status}): ${a.body.toString()}`);
  };

  return {
    sent,
    /** `upload(files)` over HTTP (no shared disk): the answer's `files`, as returned. */
    async upload(files: Array<{ name: string; data: Buffer }>): Promise<string[]> {
      // mimetypes.guess_type, for the extensions used here; anything else is octet-stream.
      const type = (n: string): string => (n.endsWith('.txt') ? 'text/plain' : 'application/octet-stream');
      const a = await call('POST', `${address}/_f/`, multipart(files.map((f) => ['files', f.name, f.data, type(f.name)])));
      if (a.status !== 200) raise('Upload', a);
      return (JSON.parse(a.body.toString()) as { files: string[] }).files;
    },
    /** `download(url, dir)` into a directory: the file is named `basename(url)`. */
    async download(url: string, dir: string): Promise<string> {
      const filepath = join(dir, pyBasename(url));
      const a = await call('GET', `${address}${url}`);
      if (a.status !== 200) raise('Download', a);
      await writeFile(filepath, a.body);
      return filepath;
    },
    async unload(url: string): Promise<void> {
      const a = await call('DELETE', `${address}${url}`);
      if (a.status !== 200) raise('Unload', a);
    },
    /** `uplink(path, content_type, file)`: field `f`, filename `f`; returns `{base}_m/<path>`. */
    async uplink(name: string, contentType: string, data: Buffer): Promise<string> {
      const a = await call('POST', `${address}/_m/${name}`, multipart([['f', 'f', data, contentType]]));
      if (a.status !== 200) raise('Uplink', a);
      return `/_m/${name}`;
    },
    async unlink(name: string): Promise<void> {
      const a = await call('DELETE', `${address}/_m/${name}`);
      if (a.status !== 200) raise('Unlink', a);
    },
  };
}
