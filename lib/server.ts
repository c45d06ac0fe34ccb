// STUB — owned by the server helper; the exported names and types below are the contract.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limits } from './limits.js';
import type { Site } from './site.js';
import type { StreamStats } from './streams.js';
import type { UploadEvent } from './uploads.js';

/** A directory mapping: files under `path` are served at `url`. Wave writes it as `URL@PATH`. */
export interface DirMapping {
  url: string;
  path: string;
}

export interface FileServerOptions {
  /** Where uploads live (`<dataDir>/f/<id>/<name>`). Default `./data`. */
  dataDir?: string;
  /** URL prefix of `_f/` and `_m/`. Default `/`. */
  baseUrl?: string;
  /** Mappings served to anyone: `'/datasets/@/srv/data'` or `{ url, path }`. */
  publicDirs?: Array<string | DirMapping>;
  /** Mappings served only to a valid access key or `authorize(req)`; closed when neither is configured. */
  privateDirs?: Array<string | DirMapping>;
  /** Access keys for app calls, `{ [id]: secret }`. Default Wave's `{ access_key_id: 'access_key_secret' }`, accepted only on loopback. */
  accessKeys?: Record<string, string>;
  /** The host app's check for browser requests (its session, say). */
  authorize?: (req: IncomingMessage) => boolean | Promise<boolean>;
  /** Let anyone upload. Default false. */
  anonymousUploads?: boolean;
  /** Serve dotfiles from mappings. Default false. */
  dotfiles?: boolean;
  /** `Cache-Control` for served files. */
  cacheControl?: string;
  limits?: Partial<Limits>;
  /** Called after an upload is committed. */
  onUpload?: (event: UploadEvent) => void | Promise<void>;
  /** Where warnings go (a mapped directory that does not exist yet…). Default `console.warn`. */
  warn?: (message: string) => void;
}

export interface ListenOptions {
  port?: number;
  host?: string;
}

export interface BoundAddress {
  host: string;
  port: number;
  /** `http://host:port` */
  url: string;
}

export interface FileServer {
  /** Standalone: binds (default `127.0.0.1:10101`) and resolves with the bound address. */
  listen(options?: ListenOptions): Promise<BoundAddress>;
  /** Middleware for `node:http`, Express, Connect: calls `next()` for URLs that are not wharf's, else 404s. */
  handle(req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /** Stops accepting; resolves once in-flight work is finished or cleanly aborted and streams are ended. */
  close(): Promise<void>;
  /** Wave's `q.site`, in-process (no HTTP). */
  site: Site;
  /** Image stream statistics for the host app. */
  streamStats(): StreamStats[];
}

export function createFileServer(_options: FileServerOptions = {}): FileServer {
  throw new Error('not implemented');
}
