// The body of `POST {base}_m/<name>`, read into one frame: Wave's one-part multipart form, or a raw
// body with the frame's `Content-Type`, watched by the one body watcher (lib/http/body-watch.ts).
import type { IncomingMessage } from 'node:http';
import { WharfError } from '../common/errors.js';
import type { Limits } from '../common/limits.js';
import { watchBody, type BodyWatch } from '../http/body-watch.js';
import { parseMultipart } from '../multipart/parser.js';
import type { Frame } from './hub.js';

const MAX_TYPE = 256;

// RFC 9110 §8.3.1 media type: token "/" token *( OWS ";" OWS parameter ), parameter values a token
// or a quoted-string. No CR or LF can get through, so the type is safe to echo in a part's headers.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\\\x00-\\x1f\\x7f]|\\\\[\\t\\x20-\\x7e])*"))*$`);

export function checkFrameType(type: string | undefined): string {
  if (!type) throw new WharfError('INVALID_CONTENT_TYPE', 'a frame needs a Content-Type such as image/jpeg', 400);
  if (type.length > MAX_TYPE || !MEDIA_TYPE.test(type)) {
    throw new WharfError('INVALID_CONTENT_TYPE', 'the frame\'s Content-Type is not a media type (type/subtype)', 400);
  }
  return type;
}

/**
 * Wave's client posts `multipart/form-data` with one part; anything else is the frame itself. The
 * body is watched (`watchBody`): past its cap 413 `LIMIT_FRAME_SIZE`, idle for
 * `limits.uploadIdleTimeout` 408 `BODY_TIMEOUT`.
 */
export async function readFrame(req: IncomingMessage, limits: Limits): Promise<Frame> {
  const header = req.headers['content-type'];
  const essence = header?.split(';', 1)[0]?.trim().toLowerCase();
  const form = essence === 'multipart/form-data';
  const type = form ? '' : checkFrameType(header);
  // Room for the delimiters and one part's header block around a form's frame.
  const cap = form ? limits.frameSize + limits.headerSize + 1024 : limits.frameSize;
  const watch = watchBody(req, cap, limits.uploadIdleTimeout, () => frameTooLarge(limits.frameSize));
  try {
    if (form) return await readFormFrame(req, header as string, cap, limits, watch);
    return { type, data: await collectBody(req, watch) };
  } catch (err) {
    // The first failure is the answer; failing the watch stops its timer.
    const e = watch.error ?? err;
    if (e instanceof WharfError) watch.fail(e);
    throw e;
  }
}

async function readFormFrame(req: IncomingMessage, contentType: string, cap: number, limits: Limits, watch: BodyWatch): Promise<Frame> {
  const parts = parseMultipart(req, {
    contentType,
    limits: { parts: 1, files: 1, fields: 1, fileSize: cap, fieldSize: cap, headerSize: limits.headerSize },
    stopper: watch,
  });
  let frame: Frame | undefined;
  for await (const part of parts) {
    // The parser defaults a missing type; a frame's type must be the sender's.
    const type = checkFrameType(part.headers['content-type']);
    frame = { type, data: await collect(part.body, limits.frameSize) };
  }
  if (!frame) throw emptyFrame();
  return frame;
}

/**
 * A raw body, whole. Its size is the watch's to check; reading through 'data' events (not the
 * request's async iterator) keeps the request flowing, so the watch tells a paused request from
 * an idle client.
 */
function collectBody(req: IncomingMessage, watch: BodyWatch): Promise<Buffer> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      req.off('data', onData);
      if (total === 0) fail(emptyFrame());
      else ok(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    watch.whenFailed((err) => {
      req.off('data', onData);
      req.off('end', onEnd);
      fail(err);
    });
    if (watch.error !== undefined) return;
    req.on('data', onData);
    req.once('end', onEnd);
    req.resume();
  });
}

async function collect(source: AsyncIterable<Buffer>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > max) throw frameTooLarge(max);
    chunks.push(chunk);
  }
  if (total === 0) throw emptyFrame();
  return Buffer.concat(chunks, total);
}

export function frameTooLarge(max: number): WharfError {
  return new WharfError('LIMIT_FRAME_SIZE', `frame larger than ${max} bytes`, 413);
}

export function emptyFrame(): WharfError {
  return new WharfError('EMPTY_FRAME', 'the frame is empty', 400);
}
