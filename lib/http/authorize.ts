// The host app's `authorize(req, access)` hook: what it is asked (`AccessRequest`), what it may
// answer (`AuthorizeResult`), and how an answer is read (docs/protocol.md §4).
import type { IncomingMessage } from 'node:http';
import { WharfError } from '../common/errors.js';

/**
 * What a request asks to do, as `authorize` is told it. Paths are decoded, as routing checked them.
 * - `upload`: `POST {base}_f/`.
 * - `read`: `GET/HEAD {base}_f/<id>/<path>` (`path` is what follows the id, `''` for the id itself).
 * - `delete`: `DELETE {base}_f/<id>`; `owner` is the identity the upload was recorded with (see
 *   `AuthorizeResult`), undefined when it has none (an app's upload, an older one).
 * - `view`: `GET/HEAD {base}_m/<stream>`.
 * - `publish`, `unpublish`: `POST` and `DELETE {base}_m/<stream>`.
 * - `read-mapping`: a file of a private mapping, `path` the request's URL path.
 */
export type AccessRequest =
  | { action: 'upload' }
  | { action: 'read'; id: string; path: string }
  | { action: 'delete'; id: string; owner: string | undefined }
  | { action: 'view'; stream: string }
  | { action: 'publish'; stream: string }
  | { action: 'unpublish'; stream: string }
  | { action: 'read-mapping'; path: string };

/** The actions of `AccessRequest`. */
export type AccessAction = AccessRequest['action'];

/**
 * What `authorize` answers: `true` lets the request in; `false` refuses it as unauthenticated (401);
 * `'forbidden'` refuses a known user what they may not do (403 `FORBIDDEN`: another user's upload,
 * say); and `{ identity }` lets it in as that end user. An upload let in with an identity is recorded as theirs
 * (`UploadEvent.owner`, and `owner` of a later `delete` of it), so an app can let users delete their
 * own uploads and no one else's. An identity is a non-empty string of at most 256 characters.
 */
export type AuthorizeResult = boolean | 'forbidden' | { identity: string };

/**
 * The host app's check. A hook declared with one parameter (`(req) => …`, as before `access`
 * existed) is asked only what it was asked then — uploads, reads of uploads and streams, private
 * mappings — and deletes and stream publishing stay key-only; a hook that declares `access` is asked
 * about every action (`authorizeAsksActions`).
 */
export type Authorize = (req: IncomingMessage, access: AccessRequest) => AuthorizeResult | Promise<AuthorizeResult>;

/** Longest identity accepted: it is stored with every upload made under it. */
export const MAX_IDENTITY = 256;

/** Does `hook` decide app-only actions (delete, publish, unpublish)? Only if it declares `access`. */
export function authorizeAsksActions(hook: Authorize | undefined): boolean {
  return hook !== undefined && hook.length >= 2;
}

/** A verdict read: refused (`forbidden`: to a known user), or let in with an identity or none. */
export type Verdict = { ok: false; forbidden: boolean } | { ok: true; identity: string | undefined };

const REFUSED: Verdict = { ok: false, forbidden: false };
const FORBIDDEN: Verdict = { ok: false, forbidden: true };
const ALLOWED: Verdict = { ok: true, identity: undefined };

/** Reads what the hook answered; an object without a valid `identity` is a bug of the hook (thrown). */
export function readVerdict(result: unknown): Verdict {
  if (result === true) return ALLOWED;
  if (result === 'forbidden') return FORBIDDEN;
  // Anything else that is not an object (false, undefined…) refuses, as it always did.
  if (result === null || typeof result !== 'object') return REFUSED;
  const identity = (result as { identity?: unknown }).identity;
  if (typeof identity === 'string' && identity !== '' && identity.length <= MAX_IDENTITY && !/[\0-\x1f\x7f]/.test(identity)) return { ok: true, identity };
  throw new WharfError('AUTHORIZE_FAILED', `authorize returned an invalid identity (a non-empty string of at most ${MAX_IDENTITY} characters, no control characters)`, 500);
}

/**
 * Asks `hook` about `request` and hands its verdict to `decided`, at once when it answers
 * synchronously; a hook that throws, rejects or answers something invalid goes to `failed` instead.
 */
export function askAuthorize(hook: Authorize, req: IncomingMessage, request: AccessRequest, decided: (verdict: Verdict) => void, failed: (err: unknown) => void): void {
  const decide = (result: unknown): void => {
    let verdict: Verdict;
    try {
      verdict = readVerdict(result);
    } catch (err) {
      failed(err);
      return;
    }
    decided(verdict);
  };
  let result: AuthorizeResult | Promise<AuthorizeResult>;
  try {
    result = hook(req, request);
  } catch (err) {
    failed(err);
    return;
  }
  if (typeof (result as Promise<AuthorizeResult> | undefined)?.then !== 'function') decide(result);
  else (result as Promise<AuthorizeResult>).then(decide, failed).catch(failed);
}
