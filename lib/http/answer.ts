// Answers wharf gives in JSON: its errors (`{"error","message"}`) and the bodies of its successes.
import type { ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';

const JSON_HEADERS = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };

/** Answers `value` as JSON with `status`: the successful counterpart of `sendError`. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { ...JSON_HEADERS, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Answers `err` as `{"error","message"}` JSON. If the response has already started there is no
 * honest way to report an error in-band, so the connection is cut: the client sees a truncated body
 * rather than a complete-looking one.
 */
export function sendError(res: ServerResponse, err: unknown, extraHeaders?: Record<string, string>): void {
  const e = err instanceof WharfError ? err : new WharfError('INTERNAL', 'internal error', 500, { cause: err });
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(e.toJSON());
  res.statusCode = e.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (e.retryAfter !== undefined) res.setHeader('Retry-After', String(e.retryAfter));
  if (extraHeaders) for (const [k, v] of Object.entries(extraHeaders)) res.setHeader(k, v);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}
