/** `wharf serve`'s request log: one line per request, as text or JSON, once its answer is done. */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const LOG_FORMATS = ['text', 'json', 'off'] as const;
export type LogFormat = typeof LOG_FORMATS[number];

/** Control characters in a logged path are escaped, so a request cannot forge log lines. */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function requestLogger(format: LogFormat, out: NodeJS.WritableStream, worker: number | undefined): ((req: IncomingMessage, res: ServerResponse) => void) | undefined {
  if (format === 'off') return undefined;
  const who = worker === undefined ? {} : { worker };
  const whoText = worker === undefined ? '' : ` [worker ${worker}]`;
  return (req, res) => {
    const started = performance.now();
    const socket = req.socket;
    const before = socket.bytesWritten;
    res.once('close', () => {
      const ms = Math.round((performance.now() - started) * 10) / 10;
      // The query string is left out: it may carry tokens. Headers are never logged.
      const path = (req.url ?? '').split('?')[0]!.slice(0, 2048);
      const bytes = socket.bytesWritten - before;
      const status = res.statusCode;
      const complete = res.writableFinished;
      out.write(format === 'json'
        ? `${JSON.stringify({ time: new Date().toISOString(), ...who, method: req.method, path, status, bytes, ms, ...(complete ? {} : { aborted: true }) })}\n`
        : `${new Date().toISOString()}${whoText} ${req.method} ${printable(path)} ${status} ${bytes} B ${ms} ms${complete ? '' : ' (aborted)'}\n`);
    });
  };
}

/**
 * Logs every request to `out` until the returned function is called; `worker` (`--workers`) is
 * said on every line. Node announces every request
 * its HTTP servers receive on this channel; the command's process runs one server, wharf's, so its
 * request log needs no hook inside the server.
 */
export function startRequestLog(format: LogFormat, out: NodeJS.WritableStream, worker?: number): () => void {
  const logRequest = requestLogger(format, out, worker);
  if (!logRequest) return () => {};
  const onStart = (message: unknown): void => {
    const { request, response } = message as { request: IncomingMessage; response: ServerResponse };
    logRequest(request, response);
  };
  subscribe('http.server.request.start', onStart);
  return () => unsubscribe('http.server.request.start', onStart);
}
