import type { ServerResponse } from 'node:http';

/**
 * The one error type wharf throws and answers with. `code` is stable (tests, clients and logs match
 * on it); `status` is the HTTP status the server answers with; `message` is for people.
 */
export class WharfError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, message: string, status = 400, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WharfError';
    this.code = code;
    this.status = status;
  }

  toJSON(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }
}

/** Maps an `fs` failure to the status a client should see; the path never reaches the message. */
export function fromFsError(err: unknown, what = 'file'): WharfError {
  if (err instanceof WharfError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return new WharfError('NOT_FOUND', `${what} not found`, 404, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new WharfError('FORBIDDEN', `${what}: permission denied`, 403, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new WharfError('STORAGE_FULL', 'no space left on the server', 507, { cause: err });
    case 'EMFILE':
    case 'ENFILE':
      return new WharfError('BUSY', 'server is out of file descriptors; try again', 503, { cause: err });
    case 'EROFS':
      return new WharfError('READ_ONLY', 'storage is read-only', 503, { cause: err });
    default:
      return new WharfError('INTERNAL', `${what}: I/O error${code ? ` (${code})` : ''}`, 500, { cause: err });
  }
}

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
  if (extraHeaders) for (const [k, v] of Object.entries(extraHeaders)) res.setHeader(k, v);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}
