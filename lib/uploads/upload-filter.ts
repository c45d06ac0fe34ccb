// Deciding about each file of an upload before any of it is stored: the declarative `accept` list
// and the host app's `filter` hook (docs/protocol.md §1). A refused file refuses its whole request.
import type { IncomingMessage } from 'node:http';
import { WharfError, errorDetail } from '../common/errors.js';
import { DEFAULT_TYPE, contentTypeFor } from '../common/mime.js';
import { bytesAgree, sniffType } from './sniff.js';

/** A file of an upload as `filter` is told of it. */
export interface UploadFileInfo {
  /** The form field it came in (`files`). */
  field: string;
  /** Its name as it will be stored (a relative path in a directory upload). */
  filename: string;
  /** The type the uploader declared (the part's `Content-Type`; `application/octet-stream` when absent). */
  type: string;
  /** Its place among the request's parts, from 1. */
  index: number;
  /**
   * Only on the second call (see `UploadFilter`): its first bytes, 4 KiB or the whole file when it
   * is smaller. Read it there and then: it is not kept.
   */
  head?: Buffer;
  /** Only on the second call: what the built-in sniffer makes of `head` (`image/png`, `application/zip`, `text/html`…), undefined when nothing it knows. */
  sniffedType?: string | undefined;
}

/**
 * What `filter` answers: nothing (or `true`) takes the file; `{ sniff: true }`, on the first call,
 * asks to be called again with the file's first bytes; a string, `false` or a `WharfError` refuses
 * the whole request — 422 `UPLOAD_REFUSED` with that reason (a `WharfError` is answered as it is),
 * and nothing of it is stored.
 */
export type FilterVerdict = void | undefined | boolean | string | WharfError | { sniff: true };

/**
 * The host app's per-file check, called (and awaited: the request's body waits meanwhile) when a
 * file's headers are known, and when it asked for them, again with its first bytes. It is not asked
 * about `files.site` uploads (the app's own) or parts that are not files.
 */
export type UploadFilter = (file: UploadFileInfo, req: IncomingMessage) => FilterVerdict | Promise<FilterVerdict>;

/** An `accept` list read: MIME patterns (`image/*`, `application/pdf`) and extensions (`.pdf`). */
interface AcceptRule {
  types: string[];
  extensions: string[];
  /** As given, for messages. */
  text: string;
}

// Other spellings of a type some uploaders declare.
const ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg', 'image/pjpeg': 'image/jpeg', 'image/vnd.microsoft.icon': 'image/x-icon', 'image/x-ms-bmp': 'image/bmp',
  'application/x-zip-compressed': 'application/zip', 'application/x-zip': 'application/zip', 'application/x-gzip': 'application/gzip',
  'application/x-pdf': 'application/pdf', 'text/xml': 'application/xml',
};

const essence = (type: string): string => {
  const e = type.split(';', 1)[0]!.trim().toLowerCase();
  return ALIASES[e] ?? e;
};

/** Reads and checks an `accept` list; a bad entry is an `INVALID_OPTION` (named after `what`, the option or flag). */
export function parseAccept(list: readonly string[], what = 'accept'): AcceptRule {
  if (!Array.isArray(list) || list.length === 0) throw new WharfError('INVALID_OPTION', `${what}: expected a non-empty list such as ['image/*', '.pdf']`);
  const rule: AcceptRule = { types: [], extensions: [], text: list.join(', ') };
  for (const entry of list) {
    const e = typeof entry === 'string' ? entry.trim().toLowerCase() : '';
    if (/^\.[a-z0-9][a-z0-9._+-]*$/.test(e)) rule.extensions.push(e);
    else if (/^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$/.test(e)) rule.types.push(e);
    else throw new WharfError('INVALID_OPTION', `${what}: ${JSON.stringify(entry)} is neither a type (image/png, image/*) nor an extension (.pdf)`);
  }
  return rule;
}

const matches = (pattern: string, type: string): boolean =>
  pattern.endsWith('/*') ? type.startsWith(pattern.slice(0, -1)) : pattern === type;

/** How one request's files are checked, in the order they come; undefined when nothing is configured. */
export interface FileCheck {
  /** With a file's headers: refuses (throws) or says whether its first bytes must be looked at too. */
  headers(file: UploadFileInfo, req: IncomingMessage): boolean | Promise<boolean>;
  /** With its first bytes: refuses (throws) or returns. */
  bytes(file: UploadFileInfo, head: Buffer, req: IncomingMessage): void | Promise<void>;
}

export function createFileCheck(accept: readonly string[] | undefined, filter: UploadFilter | undefined, warn: (message: string) => void): FileCheck | undefined {
  if (accept === undefined && filter === undefined) return undefined;
  const rule = accept === undefined ? undefined : parseAccept(accept);
  const ask = (file: UploadFileInfo, req: IncomingMessage): Promise<FilterVerdict> => {
    try {
      return Promise.resolve(filter!(file, req)).catch((err: unknown) => filterFailed(err, warn));
    } catch (err) {
      return filterFailed(err, warn);
    }
  };
  return {
    headers(file, req) {
      if (rule !== undefined) checkNamed(rule, file);
      if (filter === undefined) return rule !== undefined;
      return ask(file, req).then((verdict) => refused(verdict, file) || rule !== undefined);
    },
    bytes(file, head, req) {
      const sniffedType = sniffType(head);
      if (rule !== undefined && !bytesAgree(essence(contentTypeFor(file.filename)), sniffedType)) {
        throw new WharfError('UPLOAD_TYPE_REFUSED', `${label(file)}: its content is not what its name says (${sniffedType ?? 'unknown bytes'})`, 415);
      }
      if (filter === undefined) return;
      return ask({ ...file, head, sniffedType }, req).then((verdict) => void refused(verdict, file));
    },
  };
}

const label = (file: UploadFileInfo): string => `part ${file.index} (${JSON.stringify(file.filename)})`;

/** The name and declared type against `accept`: the name's type (or extension) must be listed, and the declared type agree with it. */
function checkNamed(rule: AcceptRule, file: UploadFileInfo): void {
  const named = essence(contentTypeFor(file.filename));
  const lower = file.filename.toLowerCase();
  const listed = rule.extensions.some((ext) => lower.endsWith(ext)) || (named !== DEFAULT_TYPE && rule.types.some((p) => matches(p, named)));
  if (!listed) throw new WharfError('UPLOAD_TYPE_REFUSED', `${label(file)}: not an accepted type (${rule.text})`, 415);
  const declared = essence(file.type);
  if (declared !== DEFAULT_TYPE && declared !== named) {
    throw new WharfError('UPLOAD_TYPE_REFUSED', `${label(file)}: declared as ${declared}, but its name says ${named}`, 415);
  }
}

/** Throws the refusal a verdict says; else whether it asked for the file's first bytes. */
function refused(verdict: FilterVerdict, file: UploadFileInfo): boolean {
  if (verdict === undefined || verdict === true) return false;
  if (verdict instanceof WharfError) throw verdict;
  if (typeof verdict === 'string' || verdict === false) {
    const reason = verdict === false || verdict.trim() === '' ? 'refused by the upload filter' : verdict;
    throw new WharfError('UPLOAD_REFUSED', `${label(file)}: ${reason}`, 422);
  }
  if (typeof verdict === 'object' && verdict !== null && (verdict as { sniff?: unknown }).sniff === true) return true;
  throw new WharfError('FILTER_FAILED', 'the upload filter returned something it may not (see UploadFilter)', 500);
}

function filterFailed(err: unknown, warn: (message: string) => void): never {
  if (err instanceof WharfError) throw err;
  warn(`wharf: the upload filter threw: ${errorDetail(err)}`);
  throw new WharfError('FILTER_FAILED', 'the upload filter failed', 500);
}
