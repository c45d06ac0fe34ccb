/**
 * `wharf-files/client`: Wave's `q.site` over HTTP, for an app in another process. It speaks Wave's wire
 * protocol, so it works against wharf and against a real Wave server (`waved`) alike.
 *
 * Bodies stream both ways: an upload's multipart body is produced from file streams as the socket
 * drains (its length computed up front), a download is written to a temp file next to the target
 * and renamed into place once its byte count matches, resuming with `Range` + `If-Range` after a
 * dropped connection. ./transport.ts sends the requests, ./transfers.ts makes them.
 *
 * The client imports nothing of the server: it ships to apps that never run one.
 */
import { basicAuth } from '../common/basic-auth.js';
import { WharfError } from '../common/errors.js';
import type { Site } from '../common/site-api.js';
import { createTransfers } from './transfers.js';
import { createTransport } from './transport.js';

export { WharfError } from '../common/errors.js';
export type { WharfErrorCode } from '../common/errors.js';
export type { Site, Progress, TransferOptions, UploadOptions } from '../common/site-api.js';

export interface ConnectOptions {
  /** Default Wave's `access_key_id` (or the user part of `url`). */
  accessKeyId?: string;
  /** Default Wave's `access_key_secret` (or the password part of `url`). */
  accessKeySecret?: string;
  /** The server's base URL path. Default `/` (or the path of `url`). */
  baseUrl?: string;
  /** Times a download is resumed after a dropped connection or a 502/503/504. Default 4. */
  retries?: number;
  /** ms before the first retry; it doubles on each further one. Default 250. */
  retryDelay?: number;
}

/** The HTTP `Site`, plus what only a network client has. */
export interface ClientSite extends Site {
  /** The server origin, `http://host:port`. */
  readonly origin: string;
  /** The base URL path, starting and ending with `/`. */
  readonly base: string;
  /** Closes idle keep-alive sockets. Optional: idle sockets never keep the process alive. */
  close(): void;
}

function normaliseBase(base: string): string {
  let b = base.trim();
  if (!b.startsWith('/')) b = `/${b}`;
  if (!b.endsWith('/')) b += '/';
  return b;
}

/**
 * Connects to a wharf (or Wave) server at `url` (`http://host:port`, optionally with the base path).
 * Nothing is sent until the first call. Calls share keep-alive sockets, so a publishing loop of
 * `uplink` calls reuses one connection.
 */
export function connect(url: string, options: ConnectOptions = {}): ClientSite {
  let server: URL;
  try {
    server = new URL(url);
  } catch {
    throw new WharfError('INVALID_OPTION', `not a URL: ${JSON.stringify(url)}`);
  }
  if (server.protocol !== 'http:' && server.protocol !== 'https:') {
    throw new WharfError('INVALID_OPTION', `only http: and https: URLs are supported, got ${server.protocol}`);
  }
  const id = options.accessKeyId ?? (server.username ? decodeURIComponent(server.username) : 'access_key_id');
  const secret = options.accessKeySecret ?? (server.password ? decodeURIComponent(server.password) : 'access_key_secret');
  const base = normaliseBase(options.baseUrl ?? server.pathname);
  const transport = createTransport({
    origin: server.origin,
    authorization: basicAuth(id, secret),
    retries: options.retries ?? 4,
    retryDelay: options.retryDelay ?? 250,
  });
  return {
    ...createTransfers(transport, base),
    origin: server.origin,
    base,
    close: () => transport.close(),
  };
}
