/**
 * `multipart/form-data` bodies built on the fly (RFC 7578): the length is known before the first
 * byte is sent, from the file sizes and the framing, so a server can refuse an upload that is too
 * large from its `Content-Length` alone; the bytes are then read from disk as the socket drains.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { WharfError } from '../common/errors.js';
import { extValue } from '../common/ext-value.js';

export interface FormFile {
  /** Local path the bytes are read from. */
  path: string;
  /** Name sent in `Content-Disposition` (a relative path for directory uploads). */
  filename: string;
  /** Bytes to send; the file must still have exactly this many when it is read. */
  size: number;
  contentType?: string;
}

export interface FormBody {
  /** `multipart/form-data; boundary=…` */
  contentType: string;
  /** Exact byte length of the body. */
  length: number;
  /** The body, one chunk at a time; `onFileBytes(n)` after each file chunk is handed on. Call again for a fresh copy (a retry). */
  chunks(onFileBytes?: (n: number) => void): AsyncGenerator<Buffer>;
}

const CRLF = Buffer.from('\r\n');

export function newBoundary(): string {
  // 96 random bits, like browsers: the odds of the boundary occurring inside a file are negligible.
  return `----wharf${randomBytes(12).toString('hex')}`;
}

/**
 * A part's `Content-Disposition`. `filename` carries the name as browsers send it (UTF-8, with `"`,
 * CR and LF percent-encoded per the WHATWG form encoding); names that are not plain ASCII, or that
 * a server could read two ways, also get `filename*=UTF-8''…` (RFC 8187), which wins wherever
 * it is understood (Go's `mime`, busboy, wharf).
 */
export function contentDisposition(name: string, filename: string | undefined): string {
  const quote = (s: string): string => s.replace(/["\r\n]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  let out = `form-data; name="${quote(name)}"`;
  if (filename === undefined) return out;
  out += `; filename="${quote(filename)}"`;
  if (/[^\x20-\x7e]|["%\\]/.test(filename)) out += `; filename*=UTF-8''${extValue(filename)}`;
  return out;
}

function partHead(boundary: string, name: string, filename: string | undefined, contentType: string): Buffer {
  return Buffer.from(
    `--${boundary}\r\nContent-Disposition: ${contentDisposition(name, filename)}\r\nContent-Type: ${contentType.replace(/[\r\n]/g, '')}\r\n\r\n`,
    'utf8',
  );
}

/** A body whose parts are all named `field`, one per file, streamed from disk. */
export function fileForm(files: readonly FormFile[], field = 'files', boundary = newBoundary()): FormBody {
  const heads = files.map((f) => partHead(boundary, field, f.filename, f.contentType ?? 'application/octet-stream'));
  const tail = Buffer.from(`--${boundary}--\r\n`);
  let length = tail.length;
  files.forEach((f, i) => { length += heads[i]!.length + f.size + CRLF.length; });
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    length,
    async *chunks(onFileBytes) {
      for (const [i, file] of files.entries()) {
        yield heads[i]!;
        let sent = 0;
        if (file.size > 0) {
          // `end` bounds the read, so a file that grew since it was measured cannot overrun Content-Length.
          for await (const chunk of createReadStream(file.path, { start: 0, end: file.size - 1, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
            sent += chunk.length;
            yield chunk;
            onFileBytes?.(chunk.length);
          }
        }
        if (sent !== file.size) {
          throw new WharfError('FILE_CHANGED', `${file.path} shrank while it was being uploaded (${sent} of ${file.size} bytes)`, 0);
        }
        yield CRLF;
      }
      yield tail;
    },
  };
}

/** A one-part body held in memory (an image-stream frame). */
export function bufferForm(field: string, filename: string, contentType: string, data: Uint8Array, boundary = newBoundary()): { contentType: string; body: Buffer } {
  const body = Buffer.concat([partHead(boundary, field, filename, contentType), data, CRLF, Buffer.from(`--${boundary}--\r\n`)]);
  return { contentType: `multipart/form-data; boundary=${boundary}`, body };
}
