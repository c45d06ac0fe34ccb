import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** After an early answer, what the client still sends is read and dropped for this long at most… */
const LINGER_MS = 2_000;
/** …and up to this many bytes, before the connection is cut. */
const LINGER_BYTES = 8 * 1024 * 1024;
/** How often the bytes drained so far are compared with LINGER_BYTES. */
const LINGER_CHECK_MS = 10;

/** Set on a connection once wharf has given it (or decided) its last answer. */
const LAST = Symbol('wharf.lastAnswer');
type Closing = Socket & { destroySoon?: () => void; [LAST]?: true };

/**
 * Has `req`'s connection been given its last answer? Then nothing more from it is processed (RFC
 * 9112 §9.6): a request pipelined after a refusal that announced close is neither run nor answered.
 */
export function afterLastAnswer(req: IncomingMessage): boolean {
  return (req.socket as Closing | null)?.[LAST] === true;
}

/**
 * Marks `res` as the last answer on its connection, for a request whose body will not be read to
 * its end (refused from its headers, or past a limit halfway through). Every answer wharf gives with
 * `Connection: close` goes through here, so that `afterLastAnswer` knows of it.
 *
 * Closing such a connection at once loses answers: the client is still sending, our kernel meets
 * those bytes with a reset, and a reset can erase the answer from the client's receive buffer
 * before it is read (RFC 9112 §9.6). So the close is staged, as nginx's `lingering_close` does: the
 * answer carries `Connection: close`, then the write side is half-closed, and what the client still
 * sends is read and dropped until it closes its side, for `LINGER_MS` and `LINGER_BYTES` at most —
 * never gigabytes — and only then is the socket destroyed.
 */
export function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('Connection', 'close');
  const socket = req.socket as Closing | null;
  if (!socket || socket.destroyed) return;
  socket[LAST] = true;
  // Node's server ends a `Connection: close` exchange with socket.destroySoon(): a FIN, then a
  // full close as soon as it is flushed. This socket gets the staged close instead.
  socket.destroySoon = () => {
    socket.end();
    const limit = socket.bytesRead + LINGER_BYTES;
    const cut = (): void => { socket.destroy(); };
    const timer = setTimeout(cut, LINGER_MS);
    // Node's HTTP parser reads the socket's handle itself: a 'data' listener on the socket would
    // stop those reads (nothing drained, the close left to the timer), so the byte budget is
    // checked on a short interval instead (overshooting it by at most what arrives in that time).
    const meter = setInterval(() => { if (socket.bytesRead > limit) cut(); }, LINGER_CHECK_MS);
    timer.unref();
    meter.unref();
    socket.once('end', cut);
    socket.once('close', () => {
      clearTimeout(timer);
      clearInterval(meter);
    });
    // The request may have been paused mid-body; with no listener left, resuming drops its bytes.
    req.resume();
    socket.resume();
  };
}
