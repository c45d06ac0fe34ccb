// STUB — owned by the client/CLI helper; the exported names and types below are the contract.
import type { Site } from './site.js';
export { WharfError } from './errors.js';
export type { Site, Progress, TransferOptions } from './site.js';

export interface ConnectOptions {
  accessKeyId?: string;
  accessKeySecret?: string;
  /** The server's base URL path. Default `/`. */
  baseUrl?: string;
}

export function connect(_url: string, _options: ConnectOptions = {}): Site {
  throw new Error('not implemented');
}
