// The one way to answer an error to a request whose body may still be unread (refused from its
// headers, or failed halfway through its body): uploads, image-stream frames and every refusal of
// the dispatcher go through `refuse`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendError } from './answer.js';
import { closeAfterAnswer } from './close-after-answer.js';

/**
 * Does `req` carry a body that was not read to its end? Then nobody will read the rest, and the
 * next request on the connection cannot be found after it: refusing it must also close the
 * connection. A body merely received (parsed into `req`'s buffer, not read) is unread: a request
 * pipelined behind one refused late (an `authorize` promise that says no) must not run.
 */
export function bodyUnread(req: IncomingMessage): boolean {
  if (req.readableEnded) return false;
  const h = req.headers;
  const len = h['content-length'];
  return (len !== undefined && len !== '0') || h['transfer-encoding'] !== undefined;
}

/**
 * Answers `err` (`sendError`, with `headers`); when the body is unread, as the connection's last
 * answer, closed in stages (close-after-answer.ts) rather than draining gigabytes nobody wants.
 */
export function refuse(req: IncomingMessage, res: ServerResponse, err: unknown, headers?: Record<string, string>): void {
  if (bodyUnread(req)) closeAfterAnswer(req, res);
  sendError(res, err, headers);
}
