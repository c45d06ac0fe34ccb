// STUB — owned by the parser helper; the exported names and types below are the contract.
import type { Readable } from 'node:stream';
import type { Limits } from './limits.js';

export type MultipartLimits = Pick<Limits, 'fileSize' | 'files' | 'fields' | 'parts' | 'fieldSize' | 'headerSize'>;

export interface Part {
  /** The `name` parameter of `Content-Disposition: form-data`. */
  name: string;
  /** `filename*` (RFC 5987) when present, else `filename`; `undefined` for a field. May be `''`. */
  filename: string | undefined;
  /** The part's `Content-Type`; `text/plain` for fields and `application/octet-stream` for files when absent. */
  contentType: string;
  /** The part's headers, names lower-cased. */
  headers: Record<string, string>;
  /** The part's bytes, with backpressure: while it is not read, the parser reads no input. */
  body: Readable;
}

export interface ParseOptions {
  /** The request's `Content-Type` header (`multipart/form-data; boundary=…`). */
  contentType: string | undefined;
  limits?: Partial<MultipartLimits>;
}

export function parseMultipart(_source: AsyncIterable<Buffer>, _options: ParseOptions): AsyncIterableIterator<Part> {
  throw new Error('not implemented');
}
