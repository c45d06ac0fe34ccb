/**
 * A download is written to a temp file next to the target and renamed into place once its byte
 * count matches, resuming with `Range` + `If-Range` after a dropped connection.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import type { OutgoingHttpHeaders } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { abortError } from '../common/abort.js';
import { WharfError, fromFsError } from '../common/errors.js';
import { decodeName } from '../common/upload-names.js';
import { httpError, networkError, type Exchange, type Transport } from './transport.js';

/** The file name a URL ends in, decoded once (the upload's real name); refused when it could not be a safe local name. */
function urlFileName(url: URL): string {
  const name = decodeName(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
  if (name === '' || name === '.' || name === '..' || /[/\\\x00]/.test(name)) {
    throw new WharfError('BAD_NAME', `${url.pathname} does not end in a file name; give a file path to download to`, 400);
  }
  return name;
}

/** The bytes on disk so far, what the whole should be, and the validator that lets us resume. */
interface Got {
  bytes: number;
  total: number | undefined;
  validator: string | undefined;
}

/** The temp file a download is written into: its bytes so far, and writes at their end. */
interface Part {
  got: Got;
  /** Writes `buffers` at the end of what is on disk, however many calls that takes. */
  writeAt(buffers: Buffer[]): Promise<void>;
  /** Starts over from nothing. */
  restart(): Promise<void>;
}

function createPart(fh: FileHandle, progress: (loaded: number, total: number | undefined) => void): Part {
  const got: Got = { bytes: 0, total: undefined, validator: undefined };
  return {
    got,
    async writeAt(buffers) {
      let list = buffers;
      while (list.length > 0) {
        const { bytesWritten } = await fh.writev(list, got.bytes);
        if (bytesWritten === 0) throw Object.assign(new Error('the disk took no bytes'), { code: 'EIO', syscall: 'writev' });
        got.bytes += bytesWritten;
        progress(got.bytes, got.total);
        let skip = bytesWritten;
        while (list.length > 0 && skip >= list[0]!.length) {
          skip -= list[0]!.length;
          list = list.slice(1);
        }
        if (skip > 0) list = [list[0]!.subarray(skip), ...list.slice(1)];
      }
    },
    async restart() {
      got.bytes = 0;
      await fh.truncate(0);
    },
  };
}

/** Checks the answer's head against what is on disk; a fresh 200 starts the file over. */
async function startAnswer(t: Transport, ex: Exchange, from: URL, part: Part, signal: AbortSignal | undefined): Promise<void> {
  const { res } = ex;
  const { got } = part;
  if (res.statusCode === 206 && got.bytes > 0) {
    const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers['content-range'] ?? '');
    if (!m || Number(m[1]) !== got.bytes || (got.total !== undefined && Number(m[2]) !== got.total)) {
      ex.req.destroy();
      throw new WharfError('BAD_RESPONSE', `the server resumed ${from.pathname} at the wrong place (${res.headers['content-range'] ?? 'no Content-Range'})`, 0);
    }
    got.total = Number(m[2]);
  } else if (res.statusCode === 200) {
    if (got.bytes > 0) await part.restart();
    const length = res.headers['content-length'];
    got.total = length === undefined ? undefined : Number(length);
    const etag = res.headers.etag;
    // A weak ETag may not be used in If-Range; Last-Modified may.
    got.validator = etag && !etag.startsWith('W/') ? etag : res.headers['last-modified'];
  } else {
    throw httpError(res.statusCode ?? 0, await t.readAnswer(ex, signal));
  }
}

/** One GET: from the start, or the rest of the bytes after those on disk. */
async function attempt(t: Transport, from: URL, part: Part, progress: (loaded: number, total: number | undefined) => void, signal: AbortSignal | undefined): Promise<void> {
  const { got } = part;
  const headers: OutgoingHttpHeaders = { 'accept-encoding': 'identity' };
  if (got.bytes > 0 && got.validator) {
    headers.range = `bytes=${got.bytes}-`;
    // RFC 9110 §13.1.5: the rest of the bytes only if the file is still the one we started on.
    headers['if-range'] = got.validator;
  } else if (got.bytes > 0) {
    await part.restart();
  }
  const ex = await t.send('GET', from, headers, undefined, signal);
  await startAnswer(t, ex, from, part, signal);
  progress(got.bytes, got.total);
  // Chunks that arrive while a write is in flight are written together in one writev.
  let writing: Promise<void> = Promise.resolve();
  let diskError: unknown;
  const sink = new Writable({
    highWaterMark: 1024 * 1024,
    writev(entries, done) {
      writing = part.writeAt(entries.map((e) => e.chunk as Buffer)).then(() => done(), (err: unknown) => {
        diskError = err;
        done(err as Error);
      });
    },
  });
  try {
    await pipeline(ex.res, sink);
  } catch (err) {
    ex.req.destroy();
    // The next attempt starts where the bytes on disk end: let the write in flight land first.
    await writing.catch(() => {});
    if (signal?.aborted) throw abortError(signal);
    if (diskError) throw fromFsError(diskError, 'download target');
    throw networkError(err, `GET ${from.pathname}`);
  }
  if (got.total !== undefined && got.bytes !== got.total) {
    throw new WharfError('NETWORK', `GET ${from.pathname}: the body ended after ${got.bytes} of ${got.total} bytes`, 0);
  }
}

/** Downloads `from` into the file `fileOrDir`, or into the directory under the URL's file name; resolves with the path written. */
export async function download(t: Transport, from: URL, fileOrDir: string, progress: (loaded: number, total: number | undefined) => void, signal: AbortSignal | undefined): Promise<string> {
  const isDir = await stat(fileOrDir).then((s) => s.isDirectory(), () => false);
  const dest = isDir ? join(fileOrDir, urlFileName(from)) : fileOrDir;
  // Next to the target so the final rename stays on one file system; hidden, so nothing picks it up.
  const tmp = join(dirname(dest), `.${basename(dest).slice(0, 180)}.${randomBytes(6).toString('hex')}.wharf-part`);
  const fh = await open(tmp, 'wx').catch((err: NodeJS.ErrnoException) => {
    const missing = err.code === 'ENOENT' || err.code === 'ENOTDIR';
    throw new WharfError(missing ? 'NOT_FOUND' : 'FORBIDDEN', `cannot write next to ${dest}: ${err.code ?? err.message}`, missing ? 404 : 403, { cause: err });
  });
  let isOpen = true;
  const part = createPart(fh, progress);
  try {
    await t.retrying(() => attempt(t, from, part, progress, signal), signal);
    await fh.sync();
    isOpen = false;
    await fh.close();
    await rename(tmp, dest);
    return dest;
  } catch (err) {
    if (isOpen) await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}
