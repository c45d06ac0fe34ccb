/** `wharf serve`'s request log: one line per request, as text or JSON, once its answer is done. */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const LOG_FORMATS = ['text', 'json', 'off'] as const;
export type LogFormat = typeof LOG_FORMATS[number];

/** Control characters in a logged path are escaped, so a request cannot forge log lines. */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** nginx's status for a request whose client closed the connection before its answer was sent. */
const CLIENT_CLOSED = 499;

/** Counts the body bytes `res` is given (not its headers, nor chunked framing), as the log reports them. */
function countBody(res: ServerResponse): { body: number } {
  const count = { body: 0 };
  const add = (chunk: unknown, encoding?: unknown): void => {
    if (typeof chunk === 'string') count.body += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) count.body += chunk.byteLength;
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    add(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') add(chunk, rest[0]);
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as ServerResponse['end'];
  return count;
}

function requestLogger(format: LogFormat, out: NodeJS.WritableStream, node: string): ((req: IncomingMessage, res: ServerResponse) => void) | undefined {
  if (format === 'off') return undefined;
  return (req, res) => {
    const started = performance.now();
    const bytes = countBody(res);
    res.once('close', () => {
      const ms = Math.round((performance.now() - started) * 10) / 10;
      // The query string is left out: it may carry tokens. Headers are never logged.
      const path = (req.url ?? '').split('?')[0]!.slice(0, 2048);
      const complete = res.writableFinished;
      // An answer cut short was the client's doing (it closed the connection): 499, as nginx logs it.
      const status = complete ? res.statusCode : CLIENT_CLOSED;
      out.write(format === 'json'
        ? `${JSON.stringify({ time: new Date().toISOString(), node, method: req.method, path, status, bytes: bytes.body, ms, ...(complete ? {} : { aborted: true, answered: res.statusCode }) })}\n`
        : `${new Date().toISOString()} ${node} ${req.method} ${printable(path)} ${status} ${bytes.body} B ${ms} ms${complete ? '' : ' (client closed)'}\n`);
    });
  };
}

/**
 * Logs every request to `out`, each line naming this node (`node`: several share one log), until the returned function is called. Node announces every request
 * its HTTP servers receive on this channel; the command's process runs one server, wharf's, so its
 * request log needs no hook inside the server.
 */
export function startRequestLog(format: LogFormat, out: NodeJS.WritableStream, node: string): () => void {
  const logRequest = requestLogger(format, out, node);
  if (!logRequest) return () => {};
  const onStart = (message: unknown): void => {
    const { request, response } = message as { request: IncomingMessage; response: ServerResponse };
    logRequest(request, response);
  };
  subscribe('http.server.request.start', onStart);
  return () => unsubscribe('http.server.request.start', onStart);
}
