// An upload's life (docs/protocol.md §1, "Expiry, once and the quota"): its deadline and its `once`
// flag, asked for by the uploader (the `Wharf-Expires-In` and `Wharf-Once` request headers, or
// `expiresIn`/`once` of `site.upload`), held to `limits.uploadTtl`, and kept in the upload's record
// (upload-record.ts), so it is published with the upload by the same rename and survives restarts.
import type { IncomingHttpHeaders } from 'node:http';
import { WharfError } from '../common/errors.js';
import type { UploadRecord } from './upload-record.js';

/** What an uploader asks for: `expiresIn` in ms (undefined: the server's default). */
export interface LifeRequest {
  expiresIn?: number | undefined;
  once?: boolean | undefined;
}

/** An upload's life as stored: `expiresAt` ms since the epoch (undefined: none). */
export interface UploadLife {
  expiresAt: number | undefined;
  once: boolean;
}

export const NO_LIFE: UploadLife = Object.freeze({ expiresAt: undefined, once: false });

/** The request headers, lowercase as Node gives them. */
export const EXPIRES_IN_HEADER = 'wharf-expires-in';
export const ONCE_HEADER = 'wharf-once';

// Ten years: past it a number is a mistake (ms sent as seconds, say), not a lifetime.
const MAX_EXPIRES_IN = 10 * 365 * 86_400_000;

const badExpiry = (message: string): WharfError => new WharfError('BAD_EXPIRY', message, 400);

/**
 * The life an upload request asks for: `Wharf-Expires-In: <seconds>` (a whole number, at least 1)
 * and `Wharf-Once: 1` (or `true`; `0`/`false` mean no). Anything else is 400 `BAD_EXPIRY`.
 */
export function lifeFromHeaders(headers: IncomingHttpHeaders): LifeRequest {
  const raw = headers[EXPIRES_IN_HEADER];
  const onceRaw = headers[ONCE_HEADER];
  const out: LifeRequest = {};
  if (raw !== undefined) {
    const text = Array.isArray(raw) ? raw.join(',') : raw;
    if (!/^\s*\d{1,12}\s*$/.test(text) || Number(text) < 1) throw badExpiry(`${EXPIRES_IN_HEADER}: expected whole seconds (at least 1), got ${JSON.stringify(text.slice(0, 40))}`);
    out.expiresIn = Number(text) * 1000;
  }
  if (onceRaw !== undefined) {
    const text = (Array.isArray(onceRaw) ? onceRaw.join(',') : onceRaw).trim().toLowerCase();
    if (text !== '1' && text !== 'true' && text !== '0' && text !== 'false') throw badExpiry(`${ONCE_HEADER}: expected 1 or 0, got ${JSON.stringify(text.slice(0, 40))}`);
    out.once = text === '1' || text === 'true';
  }
  return out;
}

/** Checks what `site.upload` was given: `expiresIn` a positive number of ms, `once` a boolean. */
export function checkLifeRequest(options: LifeRequest): LifeRequest {
  const { expiresIn, once } = options;
  if (expiresIn !== undefined && (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0 || expiresIn > MAX_EXPIRES_IN)) {
    throw badExpiry(`expiresIn: expected a positive number of ms, got ${String(expiresIn)}`);
  }
  if (once !== undefined && typeof once !== 'boolean') throw badExpiry(`once: expected a boolean, got ${String(once)}`);
  return options;
}

/**
 * The life granted: the deadline asked for held to `ttl` (`limits.uploadTtl`, 0: none), or `ttl`
 * itself when none was asked for; `now` is when the upload is committed.
 */
export function grantLife(asked: LifeRequest, ttl: number, now: number): UploadLife {
  const wanted = asked.expiresIn !== undefined ? Math.min(asked.expiresIn, MAX_EXPIRES_IN) : undefined;
  const span = wanted === undefined ? (ttl > 0 ? ttl : undefined) : ttl > 0 ? Math.min(wanted, ttl) : wanted;
  return { expiresAt: span === undefined ? undefined : now + Math.ceil(span), once: asked.once === true };
}

/** `record` carrying `life`. */
export function withLife(record: UploadRecord, life: UploadLife): UploadRecord {
  const out: UploadRecord = { ...record };
  if (life.expiresAt !== undefined) out.expires = life.expiresAt;
  if (life.once) out.once = true;
  return out;
}

/** The life a stored record's text says; a record that does not parse has none. */
export function lifeOfRecord(text: string | undefined): UploadLife {
  if (text === undefined) return NO_LIFE;
  try {
    const r = JSON.parse(text) as { expires?: unknown; once?: unknown } | null;
    if (r === null || typeof r !== 'object') return NO_LIFE;
    const expiresAt = typeof r.expires === 'number' && Number.isFinite(r.expires) ? r.expires : undefined;
    return { expiresAt, once: r.once === true };
  } catch {
    return NO_LIFE;
  }
}
