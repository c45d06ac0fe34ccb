// Who uploaded what, and how that decides the way it is served (docs/protocol.md §4): content an end
// user uploaded never runs script on the server's origin; an app's own upload is served as it is.
//
// Each upload id carries a small record, `<dataDir>/f/<id>/.wharf-upload.json`, written into the
// id's staging directory and published by the same rename as its files (storage.ts), so it is there
// exactly when they are, and survives restarts. It is JSON, one object:
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
}

/** The record's name, at the top of each upload id's directory. */
export const RECORD_NAME = '.wharf-upload.json';

/** A record larger than this is not one wharf wrote: it is read as an end user's. */
export const MAX_RECORD_BYTES = 16 * 1024;

/** The record of an upload let in `via` this route: access keys and `files.site` are the app. */
export function recordFor(via: UploadVia): UploadRecord {
  return { v: 1, trust: via === 'key' || via === 'site' ? 'app' : 'user', via };
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
