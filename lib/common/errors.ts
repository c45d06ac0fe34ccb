/**
 * Every code a `WharfError` carries, so `err.code` is typed for users (`switch` on it is checked).
 * docs/protocol.md lists each with its status and where it comes from. Stable: a code is never
 * renamed or reused; a new one is added here.
 */
export type WharfErrorCode =
  // requests and paths
  | 'BAD_PATH' | 'NOT_FOUND' | 'METHOD_NOT_ALLOWED' | 'FORBIDDEN' | 'UNAUTHORIZED' | 'AUTHORIZE_FAILED' | 'CORS_ORIGIN_REFUSED'
  | 'PRECONDITION_FAILED' | 'RANGE_NOT_SATISFIABLE' | 'FILE_CHANGED' | 'NOT_A_FILE'
  // uploads and their multipart bodies
  | 'BAD_FILENAME' | 'DUPLICATE_FILENAME' | 'BAD_EXPIRY' | 'NO_FILES' | 'UNSUPPORTED_MEDIA_TYPE'
  | 'UPLOAD_REFUSED' | 'UPLOAD_TYPE_REFUSED' | 'FILTER_FAILED'
  | 'LIMIT_FILE_SIZE' | 'LIMIT_FILES' | 'LIMIT_REQUEST_SIZE' | 'LIMIT_PARTS' | 'LIMIT_FIELDS' | 'LIMIT_FIELD_SIZE'
  | 'MULTIPART_NO_BOUNDARY' | 'MULTIPART_MALFORMED_DELIMITER' | 'MULTIPART_MALFORMED_HEADER' | 'MULTIPART_HEADER_TOO_LARGE'
  | 'MULTIPART_NO_DISPOSITION' | 'MULTIPART_NO_NAME' | 'MULTIPART_UNEXPECTED_END' | 'MULTIPART_ABORTED'
  // image streams
  | 'INVALID_STREAM_NAME' | 'INVALID_CONTENT_TYPE' | 'EMPTY_FRAME' | 'LIMIT_FRAME_SIZE' | 'BODY_TIMEOUT'
  | 'TOO_MANY_STREAMS' | 'TOO_MANY_VIEWERS' | 'HUB_UNAVAILABLE'
  // storage
  | 'STORAGE_FULL' | 'STORE_FULL' | 'STORAGE_DENIED' | 'STORAGE_ERROR' | 'STORAGE_UNAVAILABLE' | 'READ_ONLY' | 'BUSY'
  // the server's life
  | 'SHUTTING_DOWN' | 'NOT_READY' | 'CLOSED' | 'ALREADY_LISTENING' | 'LISTEN_FAILED' | 'DEFAULT_KEYS_OFF_LOOPBACK' | 'INVALID_OPTION' | 'INTERNAL'
  // the client: its own, and those it names after the status of a server that sent no code (Wave)
  | 'ABORTED' | 'CLIENT_ABORTED' | 'NETWORK' | 'BAD_RESPONSE' | 'BAD_NAME'
  | 'BAD_REQUEST' | 'TOO_LARGE' | 'BAD_GATEWAY' | 'UNAVAILABLE' | 'GATEWAY_TIMEOUT' | `HTTP_${number}`;

/**
 * The one error type wharf throws and answers with. `code` is stable (tests, clients and logs match
 * on it); `status` is the HTTP status the server answers with; `message` is for people.
 */
export class WharfError extends Error {
  readonly code: WharfErrorCode;
  readonly status: number;
  /** Seconds after which the request may succeed if tried again: answered as `Retry-After` (a 503 of a store that is away). */
  readonly retryAfter: number | undefined;

  constructor(code: WharfErrorCode, message: string, status = 400, options?: { cause?: unknown; retryAfter?: number }) {
    super(message, options);
    this.name = 'WharfError';
    this.code = code;
    this.status = status;
    this.retryAfter = options?.retryAfter;
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

/** What a caught value says, for a message: an `Error`'s message, anything else (a thrown string) as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** As `errorMessage`, with the stack when there is one: for a log line about a bug. */
export function errorDetail(err: unknown): string {
  return err instanceof Error ? err.stack ?? err.message : String(err);
}
