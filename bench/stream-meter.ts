// The viewers' side of the image-stream benchmarks (bench/streams.ts, bench/cluster.ts): frames
// stamped with their sequence number and publish time, and viewers on raw sockets that measure
// when each frame arrived and when it was shown.
import net from 'node:net';

/** Every benchmark frame has this size. */
export const FRAME = 50 * 1024;

/** Milliseconds on a clock every process here shares (the system's), with sub-ms resolution. */
export const now = (): number => performance.timeOrigin + performance.now();

/** A frame: sequence number, publish time (`now()`), then filler. */
export function makeFrame(): Buffer {
  const b = Buffer.alloc(FRAME);
  for (let i = 12; i < FRAME; i++) b[i] = (i * 31) & 0xff;
  return b;
}

export function stamp(frame: Buffer, seq: number): Buffer {
  frame.writeUInt32BE(seq, 0);
  frame.writeDoubleBE(now(), 4);
  return frame;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Counts frames on one viewer. Works for both framings: every frame is a header block ending in an
 * empty line followed by exactly FRAME bytes (both servers get only FRAME-byte frames here).
 */
export class Meter {
  lastSeq = -1;
  received = 0;
  lost = 0;
  recv: number[] = [];
  seqs: number[] = [];
  shown: number[] = [];
  private inHead = true;
  private tail = Buffer.alloc(0);
  private need = 0;
  private head = Buffer.alloc(12);
  private unshown: number | undefined;
  constructor(private readonly from: () => number) {}

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.inHead) {
        // The empty line may straddle chunks: look at the last 3 bytes seen with the first 3 new ones.
        let end = -1;
        if (this.tail.length) {
          const joint = Buffer.concat([this.tail, chunk.subarray(off, off + 3)]);
          const at = joint.indexOf(CRLFCRLF);
          if (at >= 0) end = off + at + 4 - this.tail.length;
        }
        if (end < 0) {
          const at = chunk.indexOf(CRLFCRLF, off);
          if (at >= 0) end = at + 4;
        }
        if (end < 0) {
          const seen = Buffer.concat([this.tail, chunk.subarray(Math.max(off, chunk.length - 3))]);
          this.tail = Buffer.from(seen.subarray(Math.max(0, seen.length - 3)));
          return;
        }
        this.tail = Buffer.alloc(0);
        off = end;
        if (this.unshown !== undefined) this.shown.push(now() - this.unshown);
        this.unshown = undefined;
        this.inHead = false;
        this.need = FRAME;
        continue;
      }
      const n = Math.min(this.need, chunk.length - off);
      const got = FRAME - this.need;
      if (got < 12) chunk.copy(this.head, got, off, off + Math.min(n, 12 - got));
      this.need -= n;
      off += n;
      if (this.need > 0) return;
      this.inHead = true;
      const seq = this.head.readUInt32BE(0);
      const at = this.head.readDoubleBE(4);
      if (seq >= this.from()) {
        this.received++;
        this.lost += Math.max(0, seq - Math.max(this.lastSeq, this.from() - 1) - 1);
        this.recv.push(now() - at);
        this.seqs.push(seq);
        this.unshown = at;
      }
      this.lastSeq = seq;
    }
  }
}

/**
 * The response a viewer reads off a raw socket: status line and headers, then the body, de-chunked
 * when it is chunked (RFC 9112 §7.1), else up to the close. Body bytes go to `body` as views of the
 * socket's read buffer, valid during the call only (the Meter copies the few bytes it keeps). This
 * does the work a viewer must do to know a frame and the header block after it arrived, and no more:
 * no copy of every body byte and no stream events, which in node:http's client (its parser copies
 * each body piece into a new Buffer) cost the viewers' CPU more than the servers' fan-out did.
 */
class ResponseReader {
  status = 0;
  private state: 'head' | 'size' | 'data' | 'crlf' | 'raw' | 'done' = 'head';
  private line = '';
  private left = 0;
  constructor(private readonly body: (b: Buffer) => void) {}

  push(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) {
      switch (this.state) {
        case 'head': {
          // Once per viewer: the head is small, a string is fine.
          this.line += buf.toString('latin1', off);
          const end = this.line.indexOf('\r\n\r\n');
          if (end < 0) return;
          off = buf.length - (this.line.length - end - 4);
          const head = this.line.slice(0, end);
          this.line = '';
          this.status = Number(head.slice(9, 12));
          this.state = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head) ? 'size' : 'raw';
          break;
        }
        case 'size': {
          const lf = buf.indexOf(10, off);
          this.line += buf.toString('latin1', off, lf < 0 ? buf.length : lf + 1);
          if (lf < 0) return;
          off = lf + 1;
          const m = /^([0-9a-fA-F]{1,8})(?:;[^\r\n]*)?\r\n$/.exec(this.line);
          if (!m) throw new Error(`bad chunk-size line ${JSON.stringify(this.line)}`);
          this.line = '';
          this.left = parseInt(m[1]!, 16);
          this.state = this.left === 0 ? 'done' : 'data';
          break;
        }
        case 'data': {
          const n = Math.min(this.left, buf.length - off);
          this.body(buf.subarray(off, off + n));
          off += n;
          this.left -= n;
          if (this.left === 0) (this.state = 'crlf'), (this.left = 2);
          break;
        }
        case 'crlf':
          if (buf[off] !== (this.left === 2 ? 13 : 10)) throw new Error('chunk data not followed by CRLF');
          off++;
          if (--this.left === 0) this.state = 'size';
          break;
        case 'raw':
          this.body(buf.subarray(off));
          return;
        case 'done':
          return;
      }
    }
  }
}

/** One read buffer for every viewer: each read is handed to its viewer's reader before the next. */
const readBuffer = Buffer.allocUnsafe(64 * 1024);

/**
 * A viewer of `path` on a raw socket. Resolves once the response's status line says 200, or, with
 * `early`, as soon as the request is sent: for a server that sends nothing, not even its status,
 * until it has a frame for the viewer (Wave's, which buffers ~4 KiB before its first write); a
 * status other than 200 then destroys the socket with an error.
 */
export function openViewer(port: number, path: string, meter: Meter, early = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const reader = new ResponseReader((b) => meter.push(b));
    let answered = false;
    const socket = net.connect({
      host: '127.0.0.1',
      port,
      onread: {
        buffer: readBuffer,
        callback: (n: number, buf: Uint8Array) => {
          reader.push((buf as Buffer).subarray(0, n));
          if (answered || reader.status === 0) return true;
          answered = true;
          if (reader.status === 200) resolve(socket);
          else if (early) socket.destroy(new Error(`GET ${path}: ${reader.status}`));
          else reject(new Error(`GET ${path}: ${reader.status}`));
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    socket.on('error', (err) => (answered || early ? undefined : reject(err)));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, () => {
      if (early) resolve(socket);
    });
  });
}


export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
