// The naming rules of uploads (docs/protocol.md §1): which part filenames may be stored, what an upload id
// looks like, and how `{base}_f/<id>/<path>` URLs are built and read back.
import { WharfError } from '../common/errors.js';
import { decodeName, escapeName } from '../common/upload-names.js';
import { isRecordName } from './upload-record.js';

/** Longest path segment, in UTF-8 bytes: NAME_MAX on Linux, macOS and NTFS (in UTF-16 units there). */
export const MAX_SEGMENT_BYTES = 255;
/** Longest relative path of a directory upload, in UTF-8 bytes: well under PATH_MAX (4096) with `dataDir` in front. */
export const MAX_PATH_BYTES = 1024;

// C0, DEL and C1: never part of a real file name, and a header/log injection vector.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// `C:x` is drive-relative on Windows, `C:\x` absolute: either way not a relative path.
const DRIVE = /^[A-Za-z]:/;
// Windows device names stay devices with any extension (`nul.txt` is NUL). They are harmless on a
// POSIX disk, but such an upload could never be downloaded to (or stored on) a Windows machine
// under its own name, so they are refused everywhere: one rule, portable data directories.
const DEVICE = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;
// A lone UTF-16 surrogate cannot be encoded as UTF-8, so it has no URL and no name on disk.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Checks a part's filename and returns it as stored: Unicode NFC, so a name typed on macOS (whose
 * file pickers hand out NFD) and the same name typed elsewhere are one file with one URL.
 *
 * `directory` is true for `Wave-Directory-Upload`, where the name is a relative path (`a/b.txt`);
 * otherwise `/` is refused too. `label` names the offending part in the error (`part 3`).
 * Throws `WharfError('BAD_FILENAME', …, 400)`.
 */
export function checkFilename(raw: string | undefined, directory: boolean, label: string): string {
  const refuse = (why: string): never => {
    const shown = raw === undefined ? '' : ` ${JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw)}`;
    throw new WharfError('BAD_FILENAME', `${label}: filename${shown} ${why}`, 400);
  };
  if (raw === undefined || raw === '') return refuse('is empty');
  if (LONE_SURROGATE.test(raw)) return refuse('is not valid Unicode');
  const name = raw.normalize('NFC');
  if (CONTROL.test(name)) return refuse('contains a control character');
  if (name.startsWith('/') || name.startsWith('\\') || DRIVE.test(name)) return refuse('is absolute');
  if (name.includes('\\')) return refuse('contains a backslash');
  if (!directory && name.includes('/')) return refuse('contains "/" (only a directory upload may send paths)');
  if (Buffer.byteLength(name) > MAX_PATH_BYTES) return refuse(`is longer than ${MAX_PATH_BYTES} bytes`);
  for (const segment of name.split('/')) {
    if (segment === '') return refuse('has an empty path segment');
    if (segment === '.' || segment === '..') return refuse(`has a "${segment}" segment`);
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return refuse(`has a segment longer than ${MAX_SEGMENT_BYTES} bytes`);
    if (DEVICE.test(segment)) return refuse('is a reserved Windows device name');
  }
  // The place of the upload's own record (trust.ts): an uploader who could write it could forge it.
  const slash = name.indexOf('/');
  if (isRecordName(slash < 0 ? name : name.slice(0, slash))) return refuse('is reserved for the upload\'s record');
  return name;
}

/** A fresh upload id, as in Wave: a random UUIDv4 — the unguessable capability in its URLs. */
export function isUploadId(s: string): boolean {
  return UUID_V4.test(s);
}

/**
 * `{base}_f/<id>[/<path>]` with the path as stored, as Wave returns it (docs/protocol.md §1): only
 * `%`, `#` and `?` escaped, so the URL still GETs exactly this file back.
 */
export function uploadUrl(base: string, id: string, rel?: string): string {
  return rel === undefined ? `${base}_f/${id}` : `${base}_f/${id}/${escapeName(rel)}`;
}

/**
 * Reads a URL path into the upload id and the decoded relative path under it (`''` for the upload
 * itself). Accepts `{base}_f/…` as returned or fully percent-encoded (each segment is decoded once;
 * a `%` that is no valid escape is literal), with an optional query or fragment; `null` for
 * anything else — a foreign URL, another base, an id that is not one, or a path that the rules
 * above would never have stored.
 */
export function parseUploadUrl(base: string, url: string): { id: string; rel: string } | null {
  const prefix = `${base}_f/`;
  if (!url.startsWith(prefix)) return null;
  const raw = url.slice(prefix.length).replace(/[?#].*$/s, '');
  const [id = '', ...encoded] = raw.split('/');
  if (!isUploadId(id)) return null;
  if (encoded.length === 0 || (encoded.length === 1 && encoded[0] === '')) return { id, rel: '' };
  const segments: string[] = [];
  for (const seg of encoded) {
    const s = decodeName(seg);
    if (s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\\') || CONTROL.test(s)) return null;
    segments.push(s);
  }
  return { id, rel: segments.join('/') };
}
