// Raw HTTP over real sockets, for requests no client library would send as written (dot segments,
// broken escapes, pipelined bytes, a body cut short) and answers read exactly as they came.
import { connect, type Socket } from 'node:net';

/** A request as it is written on the wire; `null` drops a default header (`Host`, `Connection`). */
export interface RawRequest {
  method?: string;
  path: string;
  headers?: Record<string, string | null>;
  body?: Buffer;
}

/** The bytes of `r`: `Host: wharf` and `Connection: close` unless `r` says otherwise, `Content-Length` for a body. */
export function rawRequest(r: RawRequest): Buffer {
  const headers: Record<string, string | null> = { Host: 'wharf', Connection: 'close', ...r.headers };
  if (r.body !== undefined) headers['Content-Length'] = String(r.body.length);
  const lines = Object.entries(headers).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = `${r.method ?? 'GET'} ${r.path} HTTP/1.1\r\n${lines}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), r.body ?? Buffer.alloc(0)]);
}

export interface RawAnswer {
  status: number;
  /** Header lines as received, lower-cased names, each value kept (repeats too). */
  headers: Array<[string, string]>;
  body: Buffer;
  /** Everything received. */
  raw: Buffer;
}

/**
 * Sends `bytes` as they are (a request line no client library would send) on a fresh connection and
 * reads one answer: to its Content-Length, or to the end of the connection.
 */
export function rawSend(port: number, bytes: Buffer | string, timeoutMs = 15_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    let done = false;
    const finish = (): void => {
      if (done) return;
      const parsed = parseAnswer(got);
      if (parsed === null) {
        done = true;
        sock.destroy();
        reject(new Error(`no complete answer (${got.length} bytes: ${JSON.stringify(got.subarray(0, 200).toString('latin1'))})`));
        return;
      }
      done = true;
      sock.destroy();
      clearTimeout(timer);
      resolve(parsed);
    };
    const timer = setTimeout(() => {
      if (!done) {
        done = true;
        sock.destroy();
        reject(new Error(`raw request: no answer within ${timeoutMs} ms`));
      }
    }, timeoutMs);
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const parsed = parseAnswer(got, false);
      if (parsed !== null) finish();
    });
    sock.on('end', finish);
    sock.on('close', finish);
    sock.on('error', () => finish());
    sock.write(bytes);
  });
}

/** Parses one HTTP/1.1 answer from `raw`; null while it is incomplete (unless `atEnd`). */
export function parseAnswer(raw: Buffer, atEnd = true): RawAnswer | null {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) return null;
  const status = Number(m[1]);
  // An interim 100 Continue: the real answer follows.
  if (status === 100) return parseAnswer(raw.subarray(end + 4), atEnd);
  const headers: Array<[string, string]> = lines.slice(1).map((l) => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()];
  });
  const len = headers.find(([k]) => k === 'content-length')?.[1];
  const rest = raw.subarray(end + 4);
  if (len !== undefined) {
    if (rest.length < Number(len)) return atEnd ? { status, headers, body: rest, raw } : null;
    return { status, headers, body: rest.subarray(0, Number(len)), raw };
  }
  return atEnd ? { status, headers, body: rest, raw } : null;
}

export interface RawConnection {
  sock: Socket;
  /** Everything received so far. */
  received(): Buffer;
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>;
  isClosed(): boolean;
  /** Resolves with the first complete answer (reading resumes if it was paused). */
  answer(): Promise<RawAnswer>;
}

/** A connection on which the test writes what it likes, when it likes. */
export function rawConnect(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    let isClosed = false;
    const waiters: Array<() => void> = [];
    const closed = new Promise<void>((done) => sock.once('close', () => {
      isClosed = true;
      for (const w of waiters.splice(0)) w();
      done();
    }));
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      for (const w of waiters.splice(0)) w();
    });
    sock.on('error', () => {});
    sock.once('connect', () => resolve({
      sock,
      received: () => got,
      closed,
      isClosed: () => isClosed,
      answer: () => new Promise((ok, fail) => {
        const check = (): void => {
          const parsed = parseAnswer(got, isClosed);
          if (parsed !== null) return ok(parsed);
          if (isClosed) return fail(new Error(`connection closed without an answer (${got.length} bytes)`));
          waiters.push(check);
        };
        if (sock.isPaused()) sock.resume();
        check();
      }),
    }));
    sock.once('error', reject);
  });
}

/** Waits for 'drain' or 'close', whichever first, and leaves no listener behind. */
export function drainOrClose(emitter: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      emitter.off('drain', done);
      emitter.off('close', done);
      resolve();
    };
    emitter.on('drain', done);
    emitter.on('close', done);
  });
}

/**
 * Writes `head` (request line and headers, CRLF-terminated lines; a blank line is added) on a raw
 * socket and collects everything the server sends until it closes or `until` says enough.
 */
export function rawExchange(port: number, head: string, opts: { body?: Buffer | string; until?: (received: string) => boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const done = (): void => {
      sock.destroy();
      resolve(got);
    };
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (opts.until?.(got)) done();
    });
    sock.on('end', done);
    sock.on('close', () => resolve(got));
    sock.on('error', (err) => (got ? resolve(got) : reject(err)));
    sock.write(`${head}\r\n\r\n`);
    if (opts.body !== undefined) sock.write(opts.body);
  });
}

/** A raw GET with `Connection: close`: status and body, the path byte-for-byte as given. */
export async function rawGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const extra = Object.entries(headers).map(([k, v]) => `\r\n${k}: ${v}`).join('');
  const got = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close${extra}`);
  const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
  return { status: m ? Number(m[1]) : 0, text: got };
}

export interface PostAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection (FIN or RST) after answering. */
  closed: boolean;
  /** Body bytes the client managed to hand to its socket before the answer (or an error) stopped it. */
  sent: number;
}

/**
 * POSTs over a raw socket, writing `chunks` with backpressure while reading: so a server that
 * answers before the body is over (a limit, a refused name) is seen answering, and whether it then
 * closes the connection. `stall` stops writing (without ending) once that many body bytes are out;
 * `destroyAfter` destroys the socket there instead (a client that goes away).
 */
export function rawPost(
  port: number,
  path: string,
  headers: Record<string, string | number>,
  chunks: Iterable<Buffer> | AsyncIterable<Buffer>,
  opts: { stall?: number; destroyAfter?: number } = {},
): Promise<PostAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let sent = 0;
    let answer: { status: number; headers: Record<string, string>; body: string } | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (answer) resolve({ ...answer, closed, sent });
      else if (opts.destroyAfter !== undefined) resolve({ status: 0, headers: {}, body: '', closed, sent });
      else reject(new Error(`connection closed without an answer after ${sent} body bytes`));
    };
    const parse = (): void => {
      const at = received.indexOf('\r\n\r\n');
      if (at < 0) return;
      const lines = received.subarray(0, at).toString('latin1').split('\r\n');
      const hdrs: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const c = line.indexOf(':');
        hdrs[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
      }
      const length = Number(hdrs['content-length'] ?? 0);
      if (received.length - at - 4 < length) return;
      answer = { status: Number(lines[0]!.split(' ')[1]), headers: hdrs, body: received.subarray(at + 4, at + 4 + length).toString() };
      // An answer with `Connection: close` must be followed by the server closing: give it 3 s.
      if (/close/i.test(hdrs['connection'] ?? '')) timer = setTimeout(() => settle(false), 3000);
      else settle(false);
    };
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (!answer) parse();
    });
    socket.on('error', () => {});
    socket.on('close', () => settle(true));
    socket.on('connect', () => {
      void (async () => {
        const head = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
        socket.write(head);
        for await (const chunk of chunks) {
          if (answer || settled || socket.destroyed) return;
          if (opts.destroyAfter !== undefined && sent + chunk.length > opts.destroyAfter) {
            socket.destroy();
            return;
          }
          if (opts.stall !== undefined && sent + chunk.length > opts.stall) return;
          sent += chunk.length;
          if (!socket.write(chunk)) await drainOrClose(socket);
        }
      })();
    });
  });
}
