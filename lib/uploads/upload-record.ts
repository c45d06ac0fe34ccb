// Who uploaded what, and how that decides the way it is served (docs/protocol.md §4): content an end
// user uploaded never runs script on the server's origin; an app's own upload is served as it is.
//
// Each upload id carries a small record, `<dataDir>/f/<id>/.wharf-upload.json`, written into the
// id's staging directory and published by the same rename as its files (storage.ts), so it is there
// exactly when they are, and survives restarts (the ids of one request share one file through hard
// links, so a record is replaced, never edited in place). It is JSON, one object:
//
//   {"v":1,"trust":"app","via":"key"}
//
// - `v`: the format version. Fields are added without changing it; it changes only when a reader of
//   an older version would misread the record, and a reader treats a version it does not know as an
//   end user's upload.
// - `trust`: `"app"` (served as is) or `"user"` (served so it cannot run script). Anything else is
//   `"user"`.
// - `via`: how the upload was let in: `"key"` (an access key), `"site"` (in-process `files.site`),
//   `"authorize"` (the host app's hook) or `"anonymous"` (`anonymousUploads`). For the record only.
// - `owner` (optional): the identity the host app's `authorize` hook gave the uploader
//   (lib/http/authorize.ts), told to `authorize` when the upload is to be deleted.
// - `expires` (optional): the upload's deadline, ms since the epoch; past it the upload is gone for
//   readers and the sweep removes it (expiry.ts). `once` (optional, `true`): removed after its first
//   complete download (upload-meta.ts).
//
// An upload may never hold a file of that name at its top (`checkFilename` refuses it with 400
// BAD_FILENAME), and the read side never serves it, so no uploader can forge or read one.

/** Whose content an upload is: the app's own (served as is) or an end user's (never runs script). */
export type Trust = 'app' | 'user';

/** How an upload was let in. */
export type UploadVia = 'key' | 'site' | 'authorize' | 'anonymous';

/** The per-upload record, format version 1. Later fields are optional, so version-1 readers still read it. */
export interface UploadRecord {
  v: 1;
  trust: Trust;
  via: UploadVia;
  /** Who uploaded it, as `authorize` named them; absent when it gave no identity. */
  owner?: string;
  /** The deadline, ms since the epoch (upload-meta.ts). */
  expires?: number;
  /** Removed after its first complete download. */
  once?: true;
}

/** The record's name, at the top of each upload id's directory. */
export const RECORD_NAME = '.wharf-upload.json';

/** A record larger than this is not one wharf wrote: it is read as an end user's. */
export const MAX_RECORD_BYTES = 16 * 1024;

/** The record of an upload let in `via` this route, by `owner` if `authorize` named one: access keys and `files.site` are the app. */
export function recordFor(via: UploadVia, owner?: string): UploadRecord {
  const record: UploadRecord = { v: 1, trust: via === 'key' || via === 'site' ? 'app' : 'user', via };
  if (owner !== undefined) record.owner = owner;
  return record;
}

/** The owner a stored record's text names: undefined when there is none, or the record is not a version-1 one. */
export function ownerOf(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as { v?: unknown; owner?: unknown } | null;
    return r !== null && typeof r === 'object' && r.v === 1 && typeof r.owner === 'string' ? r.owner : undefined;
  } catch {
    return undefined;
  }
}

export function serializeRecord(record: UploadRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/**
 * The trust a stored record's text says; `unrecorded` when there is none (files copied straight into
 * the layout, uploads stored before records existed). Whatever does not parse as a version-1 record
 * saying `"app"` is an end user's: a damaged or unknown record can only take trust away.
 */
export function trustOf(text: string | undefined, unrecorded: Trust): Trust {
  if (text === undefined) return unrecorded;
  try {
    const r = JSON.parse(text) as unknown;
    return r !== null && typeof r === 'object' && (r as { v?: unknown }).v === 1 && (r as { trust?: unknown }).trust === 'app' ? 'app' : 'user';
  } catch {
    return 'user';
  }
}

/**
 * Is `segment` (the first one of a stored path) the record's name, as any file system could take
 * it? Case-insensitive file systems (macOS, Windows) open `.WHARF-UPLOAD.JSON` as the record, and
 * Windows drops trailing dots and spaces, so those spellings are the record too.
 */
export function isRecordName(segment: string): boolean {
  if (segment.length < RECORD_NAME.length) return false;
  return segment.replace(/[. ]+$/, '').toLowerCase() === RECORD_NAME;
}

/** Content-Security-Policy of every end user's upload: an opaque origin, no script, no forms, no popups. */
export const UNTRUSTED_CSP = 'sandbox';

// JavaScript MIME types (WHATWG MIME Sniffing, "JavaScript MIME type"): what browsers run as classic or module scripts
// and workers. Any other type is refused as a script when sent with `X-Content-Type-Options: nosniff`
// (Fetch, "should response to request be blocked due to nosniff"); modules and workers refuse it always.
const SCRIPT_TYPES = new Set([
  'application/ecmascript', 'application/javascript', 'application/x-ecmascript', 'application/x-javascript',
  'text/ecmascript', 'text/javascript', 'text/javascript1.0', 'text/javascript1.1', 'text/javascript1.2',
  'text/javascript1.3', 'text/javascript1.4', 'text/javascript1.5', 'text/jscript', 'text/livescript',
  'text/x-ecmascript', 'text/x-javascript',
]);

/**
 * Is `type` one a browser can run script from: a document that may hold script when navigated to,
 * framed or embedded (HTML, XHTML, any XML — an XML document runs `<html:script>` elements — SVG,
 * XSL, multipart/x-mixed-replace whose parts render as documents), or a script itself?
 */
export function isActiveType(type: string): boolean {
  const semi = type.indexOf(';');
  const essence = (semi < 0 ? type : type.slice(0, semi)).trim().toLowerCase();
  return essence === 'text/html' || SCRIPT_TYPES.has(essence) || essence.endsWith('/xml') || essence.endsWith('+xml') ||
    essence === 'text/xsl' || essence === 'multipart/x-mixed-replace';
}

/** How an end user's file of content type `type` is served. */
export interface UntrustedView {
  /** The Content-Type sent. */
  type: string;
  /** Sent as `Content-Disposition: attachment`: a navigation or a frame saves it instead of rendering it. */
  attachment: boolean;
}

const INERT_TYPE = 'application/octet-stream';

/**
 * An end user's file, every one with `Content-Security-Policy: sandbox` (and `nosniff`, as every
 * file): a document rendered anyway (an `<object>`, a browser that ignores the disposition) gets an
 * opaque origin and runs no script.
 *
 * - Active types (isActiveType) are attachments, sent as `application/octet-stream`: no browser
 *   renders or runs that type, and with `nosniff` it is refused as a `<script src>`, a module or a
 *   worker — which Content-Disposition and the response's own CSP would not stop.
 * - SVG keeps `image/svg+xml`, as an attachment: `<img src=x.svg>` shows it (an image never runs
 *   script: SVG in an image context runs in SVG Integration's secure mode; and images ignore the
 *   disposition), while a navigation or a frame saves it, and `<script src>` refuses `image/*`
 *   whatever the other headers say (Fetch, "should response to request be blocked due to its
 *   MIME type").
 * - Every other type is served as it is: images, media, PDF (rendered by the browser's own viewer,
 *   which has no access to the origin), text, JSON, CSS, archives.
 */
export function untrustedView(type: string): UntrustedView {
  if (!isActiveType(type)) return { type, attachment: false };
  return { type: type.startsWith('image/svg+xml') ? type : INERT_TYPE, attachment: true };
}
