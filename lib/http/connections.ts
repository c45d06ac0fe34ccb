// Connections: what wharf is answering on each (for close()), and the order of pipelined requests
// (RFC 9112 §9.3.2). State lives on the socket itself (symbol keys): no map lookup per request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Pipelined requests one connection may have waiting for their turn (see `admit`); past it, the connection is cut. */
const MAX_WAITING = 32;

/** A connection, with the response it carries now (see `track`). */
const CURRENT = Symbol('wharf.response');
/** How many requests of a connection wait for their turn (see `awaitTurn`). */
const WAITING = Symbol('wharf.waiting');
/** How many unsafe requests of a connection are not answered yet (see `admit`). */
const UNSAFE = Symbol('wharf.unsafe');
type TrackedSocket = Socket & { [CURRENT]?: ServerResponse; [WAITING]?: number; [UNSAFE]?: number };

export interface Connections {
  /** `res` is now what wharf is answering on `req`'s connection. */
  track(req: IncomingMessage, res: ServerResponse): void;
  /** Answers not started yet will be their connection's last (close() has begun). */
  lastAnswers(): void;
  /**
   * Resolves once every connection's latest answer is finished, or after `graceMs`, then cuts the
   * connections still busy.
   */
  finish(graceMs: number): Promise<void>;
}

// In-flight work, for close(), tracked per connection: the socket remembers the latest response
// wharf gave it, and one 'close' listener per connection forgets the socket. A listener per
// response cost a measurable share of a 304's CPU time. The latest response is enough: those
// before it on the same connection (pipelining) are answered in order, so they are done when
// it is, and cutting the connection cuts them all.
export function createConnections(): Connections {
  const sockets = new Set<TrackedSocket>();

  function track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket as TrackedSocket;
    if (socket[CURRENT] === undefined) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    }
    socket[CURRENT] = res;
  }

  /** Connections whose latest wharf response is not finished. */
  function busy(): TrackedSocket[] {
    const out: TrackedSocket[] = [];
    for (const socket of sockets) if (socket[CURRENT]?.closed === false) out.push(socket);
    return out;
  }

  function lastAnswers(): void {
    for (const socket of busy()) if (!socket[CURRENT]!.headersSent) socket[CURRENT]!.shouldKeepAlive = false;
  }

  async function finish(graceMs: number): Promise<void> {
    const open = new Set(busy());
    if (open.size > 0) {
      await new Promise<void>((ok) => {
        const timer = setTimeout(ok, graceMs);
        for (const socket of open) {
          const done = (): void => {
            if (!open.delete(socket)) return;
            if (open.size > 0) return;
            clearTimeout(timer);
            setImmediate(ok);
          };
          socket[CURRENT]!.once('close', done);
          socket.once('close', done);
        }
      });
    }
    for (const socket of busy()) socket.destroy();
  }

  return { track, lastAnswers, finish };
}

/**
 * May `req` run now, or must it wait for its turn (`awaitTurn`)? Pipelined requests (RFC 9112
 * §9.3.2) may be processed in parallel only if they are all safe: an unsafe request waits until
 * every answer ahead of it is given (Node hands `res` the connection then), and so does any
 * request behind an unsafe one not answered yet, so that a GET after a DELETE sees it done. A
 * request at the head of the line (`res.socket` set) always runs. Waiting is also what stops
 * what follows a close decided late — an `authorize` promise that says no, an upload refused
 * halfway through its body (§9.6): Node never hands the connection on after a last answer.
 */
export function admit(req: IncomingMessage, res: ServerResponse): boolean {
  const socket = req.socket as TrackedSocket;
  const ahead = socket[UNSAFE] ?? 0;
  if (req.method === 'GET' || req.method === 'HEAD') return ahead === 0 || res.socket !== null;
  socket[UNSAFE] = ahead + 1;
  res.once('close', () => { socket[UNSAFE] = (socket[UNSAFE] ?? 1) - 1; });
  return res.socket !== null;
}

/**
 * Calls `go` once `res` has the connection to itself: every answer pipelined ahead of it has been
 * given. Never, if one of those was the connection's last: Node then never hands `res` the
 * connection, and closing it aborts `req`. A connection with more than MAX_WAITING waiting
 * requests is cut: they produce no output, so Node's own pipelining backpressure (which pauses
 * reading while answers pile up unsent) would never stop a flood of them.
 */
export function awaitTurn(req: IncomingMessage, res: ServerResponse, go: () => void): void {
  const socket = req.socket as TrackedSocket;
  const waiting = (socket[WAITING] ?? 0) + 1;
  if (waiting > MAX_WAITING) {
    socket.destroy();
    return;
  }
  socket[WAITING] = waiting;
  const gone = (): void => {
    socket[WAITING] = (socket[WAITING] ?? 1) - 1;
    res.off('socket', turn);
  };
  const turn = (): void => {
    socket[WAITING] = (socket[WAITING] ?? 1) - 1;
    req.off('close', gone);
    go();
  };
  res.once('socket', turn);
  req.once('close', gone);
}
