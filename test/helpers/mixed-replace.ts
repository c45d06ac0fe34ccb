// A raw `multipart/x-mixed-replace` reader for tests. It delimits parts by the boundary alone, as
// RFC 2046 §5.1.1 says (no Content-Length needed), and reports what a browser would show: a part
// counts as shown once the next part's header block (or the close-delimiter) has arrived.
import http from 'node:http';
import net from 'node:net';

export interface MixedPart {
  headers: Record<string, string>;
  body: Buffer;
}

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

export class MixedReplaceReader {
  /** Parts whose closing delimiter has arrived, in order (empty parts included); the last `keep` of them. */
  readonly parts: MixedPart[] = [];
  /** How many parts have arrived in all. */
  count = 0;
  /** Header block of the part now open, once complete: the part the next bytes fill. */
  announced: Record<string, string> | undefined;
  /** The close-delimiter (`--boundary--`) has arrived. */
  closed = false;
  /** Bytes after the close-delimiter. */
  epilogue: Buffer = Buffer.alloc(0);
  private buf: Buffer = Buffer.alloc(0);
  private body: Buffer[] = [];
  private state: 'preamble' | 'delimiter' | 'headers' | 'body' | 'done' = 'preamble';
  private scanFrom = 0;
  private readonly dashBoundary: Buffer;
  private readonly delimiter: Buffer;

  /** `keep`: how many of the latest parts to remember (a long test need not hold every frame). */
  constructor(readonly boundary: string, private readonly keep = Infinity) {
    this.dashBoundary = Buffer.from(`--${boundary}`);
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  /** Parts that carry bytes, the way a browser (and RFC 2046 clients) skip empty ones. */
  get frames(): MixedPart[] {
    return this.parts.filter((p) => p.body.length > 0);
  }

  push(chunk: Buffer): void {
    if (this.state === 'done') {
      this.epilogue = Buffer.concat([this.epilogue, chunk]);
      return;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.step());
  }

  /** Parses as far as the buffer allows; false when it needs more bytes. */
  private step(): boolean {
    switch (this.state) {
      case 'preamble': {
        if (this.buf.length < this.dashBoundary.length) return false;
        if (this.buf.subarray(0, this.dashBoundary.length).equals(this.dashBoundary)) {
          this.consume(this.dashBoundary.length);
          this.state = 'delimiter';
          return true;
        }
        const at = this.buf.indexOf(this.delimiter, this.scanFrom);
        if (at < 0) {
          this.scanFrom = Math.max(0, this.buf.length - this.delimiter.length);
          return false;
        }
        this.consume(at + this.delimiter.length);
        this.state = 'delimiter';
        return true;
      }
      case 'delimiter': {
        if (this.buf.length < 2) return false;
        if (this.buf[0] === 0x2d && this.buf[1] === 0x2d) {
          this.closed = true;
          this.announced = undefined;
          this.state = 'done';
          this.epilogue = this.buf.subarray(2);
          this.buf = Buffer.alloc(0);
          return false;
        }
        // transport-padding (LWSP) then CRLF
        let i = 0;
        while (i < this.buf.length && (this.buf[i] === 0x20 || this.buf[i] === 0x09)) i++;
        if (this.buf.length < i + 2) return false;
        if (this.buf[i] !== 0x0d || this.buf[i + 1] !== 0x0a) throw new Error('malformed delimiter line');
        this.consume(i + 2);
        this.state = 'headers';
        return true;
      }
      case 'headers': {
        let end: number;
        if (this.buf.length >= 2 && this.buf[0] === 0x0d && this.buf[1] === 0x0a) end = 0;
        else {
          const at = this.buf.indexOf(CRLFCRLF);
          if (at < 0) return false;
          end = at + 2;
        }
        const headers: Record<string, string> = {};
        for (const line of this.buf.subarray(0, end).toString('latin1').split('\r\n')) {
          if (!line) continue;
          const colon = line.indexOf(':');
          if (colon <= 0) throw new Error(`malformed part header: ${JSON.stringify(line)}`);
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        this.consume(end + CRLF.length);
        this.announced = headers;
        this.state = 'body';
        return true;
      }
      case 'body': {
        // Bytes that cannot start a delimiter are set aside, so each byte is copied and scanned once.
        const at = this.buf.indexOf(this.delimiter);
        if (at < 0) {
          const keep = Math.min(this.buf.length, this.delimiter.length - 1);
          if (this.buf.length > keep) this.body.push(Buffer.from(this.buf.subarray(0, this.buf.length - keep)));
          this.buf = this.buf.subarray(this.buf.length - keep);
          return false;
        }
        this.body.push(Buffer.from(this.buf.subarray(0, at)));
        this.parts.push({ headers: this.announced ?? {}, body: Buffer.concat(this.body) });
        this.body = [];
        this.count++;
        if (this.parts.length > this.keep) this.parts.shift();
        this.announced = undefined;
        this.consume(at + this.delimiter.length);
        this.state = 'delimiter';
        return true;
      }
      default:
        return false;
    }
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
    this.scanFrom = 0;
  }
}

export function boundaryOf(contentType: string | undefined): string {
  const m = /^multipart\/x-mixed-replace;\s*boundary=("?)([^";]+)\1$/i.exec(contentType ?? '');
  if (!m) throw new Error(`not a mixed-replace Content-Type: ${contentType}`);
  return m[2]!;
}

export interface Viewer {
  status: number;
  headers: http.IncomingHttpHeaders;
  reader: MixedReplaceReader;
  /** Resolves once `check(reader)` holds (checked on every chunk); rejects if the response ends first. */
  /** Resolves once `check` holds; rejects when the answer ends first or after `ms` (a skipped frame must fail, not hang the test). */
  until(check: (r: MixedReplaceReader) => boolean, what?: string, ms?: number): Promise<void>;
  /** Resolves when the response has ended (cleanly or not); `complete` tells which. */
  ended: Promise<{ complete: boolean }>;
  close(): void;
}

/** GETs `url` and feeds the body to a `MixedReplaceReader`. */
export function view(url: string, options: { keep?: number } = {}): Promise<Viewer> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    // The path as given: a URL object would remove dot segments before sending.
    const path = url.slice(url.indexOf('/', 'http://'.length));
    const req = http.request({ host: hostname, port, path, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const waiters = new Set<() => void>();
      const reader = new MixedReplaceReader(res.statusCode === 200 ? boundaryOf(res.headers['content-type']) : 'none', options.keep);
      let over = false;
      const ended = new Promise<{ complete: boolean }>((done) => {
        res.on('close', () => {
          over = true;
          for (const w of waiters) w();
          done({ complete: res.complete });
        });
      });
      res.on('data', (chunk: Buffer) => {
        if (res.statusCode === 200) reader.push(chunk);
        for (const w of waiters) w();
      });
      res.on('error', () => {});
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        reader,
        ended,
        close: () => req.destroy(),
        until(check, what = 'condition', ms = 30_000) {
          return new Promise((ok, fail) => {
            const settle = (err?: Error): void => {
              waiters.delete(w);
              clearTimeout(timer);
              if (err) fail(err);
              else ok();
            };
            const w = (): void => {
              let hit = false;
              try {
                hit = check(reader);
              } catch (err) {
                settle(err as Error);
                return;
              }
              if (hit) settle();
              else if (over) settle(new Error(`response ended before: ${what} (${reader.parts.length} parts)`));
            };
            const timer = setTimeout(() => settle(new Error(`${ms} ms without: ${what} (${reader.parts.length} parts)`)), ms);
            waiters.add(w);
            w();
          });
        },
      });
    });
    req.end();
  });
}

/** A viewer that sends its request and then never reads a byte: its socket fills up and stays full. */
export function stalledViewer(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  const pathname = url.slice(url.indexOf('/', 'http://'.length));
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.pause();
      socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`, () => resolve(socket));
    });
    socket.on('error', reject);
  });
}
