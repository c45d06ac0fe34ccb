// Access keys (docs/protocol.md §4): HTTP Basic id + secret, compared in constant time.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/** Wave's client defaults; accepted only on loopback. */
export const DEFAULT_ACCESS_KEYS: Readonly<Record<string, string>> = Object.freeze({ access_key_id: 'access_key_secret' });

/** What a request's `Authorization` header says about access keys. */
export type KeyVerdict = 'valid' | 'invalid' | 'none';

export interface KeyCheck {
  (req: IncomingMessage): KeyVerdict;
  /** True when these are Wave's well-known default keys. */
  readonly defaults: boolean;
}

/** Loopback addresses and names: 127.0.0.0/8, ::1, IPv4-mapped loopback, `localhost`. */
export function isLoopback(host: string | undefined): boolean {
  if (!host) return false;
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * Builds the check for `keys`. Secrets are never compared directly: both sides are HMAC'd under a
 * per-process random key and the equal-length digests compared with `timingSafeEqual`, so neither
 * the secret's content nor its length leaks through timing. An unknown id is compared against a
 * dummy digest, so ids do not leak either.
 */
export function createKeyCheck(keys: Record<string, string> | undefined): KeyCheck {
  const pepper = randomBytes(32);
  const digest = (s: string): Buffer => createHmac('sha256', pepper).update(s, 'utf8').digest();
  const defaults = keys === undefined;
  const table = new Map<string, Buffer>();
  for (const [id, secret] of Object.entries(keys ?? DEFAULT_ACCESS_KEYS)) table.set(id, digest(secret));
  const dummy = digest(randomBytes(16).toString('hex'));

  const check = (req: IncomingMessage): KeyVerdict => {
    const header = req.headers.authorization;
    if (header === undefined) return 'none';
    const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
    if (!m) return 'invalid';
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return 'invalid';
    const expected = table.get(decoded.slice(0, colon));
    const ok = timingSafeEqual(digest(decoded.slice(colon + 1)), expected ?? dummy) && expected !== undefined;
    // Wave's default keys are public knowledge: they mean something only to a server on loopback.
    if (ok && defaults && !isLoopback(req.socket?.localAddress)) return 'invalid';
    return ok ? 'valid' : 'invalid';
  };
  return Object.assign(check, { defaults });
}

// The header a key is sent in: written once, in common/, where the client builds it too.
export { basicAuth } from '../common/basic-auth.js';
