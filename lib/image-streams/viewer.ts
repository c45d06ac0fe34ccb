// One GET of an image stream: the `multipart/x-mixed-replace` answer a viewer reads, written from
// shared Buffers (see relay.ts on the fan-out's cost).
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Frame, Subscriber } from './hub.js';

export interface Viewer extends Subscriber {
  readonly name: string;
  readonly res: ServerResponse;
  /** `Date.now()` when a write was last refused by a full socket; 0 once drained. */
  busySince: number;
  pending: Frame | undefined;
}

export function viewHeaders(boundary: string): OutgoingHttpHeaders {
  return {
    'Content-Type': `multipart/x-mixed-replace; boundary=${boundary}`,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    // nginx buffers proxied responses by default, which would hold frames back.
    'X-Accel-Buffering': 'no',
  };
}

/**
 * One GET of a stream. Browsers show a part of `multipart/x-mixed-replace` only once the next part's
 * header block has arrived (Chromium), so every frame is followed at once by the delimiter and the
 * header block of the part that the next frame will fill (no `Content-Length`: its size is unknown).
 *
 * A frame and the header block after it go out as one HTTP chunk framed here (RFC 9112 §7.1), from
 * Buffers only: the size line (shared by every viewer of the frame), the frame, and this viewer's
 * header block with the chunk's CRLF — three socket writes and one writev. Left to node:http, each
 * `res.write` is a chunk of its own with its size line as a string: eight socket writes per viewer
 * and frame, and a string conversion in each writev. Without chunked encoding (an HTTP/1.0 viewer)
 * the bytes go as they are.
 */
export function createViewer(name: string, res: ServerResponse, boundary: string): Viewer & { start(first: Frame): void } {
  let type = '';
  let header = EMPTY;
  let tail = EMPTY;
  let chunked = false;
  let done = false;

  const announce = (t: string): void => {
    type = t;
    header = Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${t}\r\n\r\n`, 'latin1');
    tail = chunked ? Buffer.concat([header, CRLF]) : header;
  };

  /**
   * `head`, `data` and the header block as one chunk, handed to the kernel now: corked by hand, the
   * writes are one writev at `uncork()`. (Left to node:http they would wait for a nextTick per viewer,
   * and the publisher's 200, written in the meantime, would go out before every viewer's frame.)
   * Returns what the last write returned.
   */
  const put = (head: Buffer, data: Buffer): boolean => {
    res.cork();
    if (chunked) res.write(sizeLine(head.length + data.length + header.length));
    if (head.length > 0) res.write(head);
    if (data.length > 0) res.write(data);
    const ok = res.write(tail);
    res.uncork();
    return ok;
  };

  const send = (frame: Frame): void => {
    if (frame.type !== type) {
      // The announced part has another type: close it empty and open one of this frame's type.
      announce(frame.type);
      put(EMPTY, EMPTY);
    }
    if (!put(EMPTY, frame.data)) v.busySince = Date.now();
  };

  const v = {
    name,
    res,
    // Busy until `start`: a frame the hub delivers while `subscribe` resolves is held as pending,
    // without a check of its own on the per-frame path. (The stall sweep sees a viewer only after `start`.)
    busySince: Date.now(),
    pending: undefined as Frame | undefined,

    /** Right after `writeHead`, before anything else is written. */
    start(latest: Frame): void {
      const first = v.pending ?? latest;
      v.pending = undefined;
      v.busySince = 0;
      chunked = res.chunkedEncoding;
      res.chunkedEncoding = false;
      announce(first.type);
      // The body opens with the dash-boundary itself, without a preamble (RFC 2046 §5.1.1).
      if (!put(header.subarray(2), first.data)) v.busySince = Date.now();
    },

    deliver(frame: Frame): boolean {
      if (done) return true;
      if (v.busySince === 0) {
        send(frame);
        return true;
      }
      const fresh = v.pending === undefined;
      v.pending = frame;
      return fresh;
    },

    end(): void {
      if (done) return;
      done = true;
      v.pending = undefined;
      // The close-delimiter ends the announced part, which stays empty; then the last chunk.
      const close = `\r\n--${boundary}--\r\n`;
      res.end(chunked ? `${close.length.toString(16)}\r\n${close}\r\n0\r\n\r\n` : close, 'latin1');
      if (res.writableNeedDrain && v.busySince === 0) v.busySince = Date.now();
    },
  };

  res.on('drain', () => {
    v.busySince = 0;
    const next = v.pending;
    if (next === undefined || done) return;
    v.pending = undefined;
    send(next);
  });
  res.once('close', () => {
    done = true;
  });
  return v;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * A chunk's size line. In one fan-out every viewer's chunk has the same size (the frame plus a header
 * block of the same length: boundaries all have 32 characters), so the line is built once per frame.
 */
let lastSize = { size: -1, line: EMPTY };
function sizeLine(size: number): Buffer {
  if (lastSize.size !== size) lastSize = { size, line: Buffer.from(`${size.toString(16)}\r\n`, 'latin1') };
  return lastSize.line;
}
