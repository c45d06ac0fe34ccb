// The layout of uploads in a bucket and the manifest that makes each upload id appear whole
// (docs/protocol.md §8):
//
//   <prefix>f/<id>/<path>     the files, written straight to their final keys while the upload arrives
//   <prefix>m/<id>            the manifest, written LAST: an upload exists for readers iff it does
//   <prefix>x/<bucket>/<id>   the expiry index (expiry.ts), as on disk
//   <prefix>u/<node>          the quota's ledgers (quota.ts), as on disk
//   <prefix>.wharf-probe/…    what the health probe writes and removes
//
// The manifest is the upload record (upload-record.ts: trust, via, owner, expires, once), so the
// record's own readers read it, plus `committed` (ms) and every file with its size, ETag and mtime:
//
//   {"v":1,"trust":"app","via":"key","committed":1700000000000,"files":{"a.txt":[5,"\"9a0364b9…\"",1700000000000]}}
//
// Readers answer `stat` (and so ETag, Last-Modified, 304) from it alone and serve nothing it does not
// list: bytes of an id with no manifest (being written, or left by a crash) are invisible.
import { isUploadId } from './filenames.js';
import type { UploadRecord } from './upload-record.js';

/** A file as the manifest lists it. */
export interface ManifestFile {
  size: number;
  /** The object's ETag as S3 gave it (quotes included). */
  etag: string;
  mtimeMs: number;
}

export interface Manifest {
  /** The record's own text: trustOf / lifeOfRecord / ownerOf read it. */
  text: string;
  committed: number;
  files: Map<string, ManifestFile>;
  /** Bytes of every file. */
  bytes: number;
}

/** A manifest larger than this is not one wharf wrote (a 10,000-file upload takes ~1.5 MB). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** The keys of one store, under `prefix` (`''` or ending in `/`). */
export interface S3Keys {
  readonly prefix: string;
  file(id: string, rel: string): string;
  /** The prefix of every file of `id`. */
  files(id: string): string;
  manifest(id: string): string;
  /** The prefix of all files, and of all manifests. */
  readonly filesRoot: string;
  readonly manifestsRoot: string;
  readonly marksRoot: string;
  readonly ledgersRoot: string;
  readonly probeRoot: string;
  /** The upload id of a key under `filesRoot` or `manifestsRoot`; undefined for anything else. */
  idOf(key: string): string | undefined;
}

export function s3Keys(prefix: string): S3Keys {
  const filesRoot = `${prefix}f/`;
  const manifestsRoot = `${prefix}m/`;
  return {
    prefix,
    file: (id, rel) => `${filesRoot}${id}/${rel}`,
    files: (id) => `${filesRoot}${id}/`,
    manifest: (id) => `${manifestsRoot}${id}`,
    filesRoot,
    manifestsRoot,
    marksRoot: `${prefix}x/`,
    ledgersRoot: `${prefix}u/`,
    probeRoot: `${prefix}.wharf-probe/`,
    idOf(key) {
      const root = key.startsWith(filesRoot) ? filesRoot : key.startsWith(manifestsRoot) ? manifestsRoot : undefined;
      if (root === undefined) return undefined;
      const rest = key.slice(root.length);
      const slash = rest.indexOf('/');
      const id = slash < 0 ? rest : rest.slice(0, slash);
      return isUploadId(id) ? id : undefined;
    },
  };
}

/** The manifest's text: the record's fields, `committed`, and the files as `[size, etag, mtimeMs]`. */
export function serializeManifest(record: UploadRecord, committed: number, files: Map<string, ManifestFile>): string {
  const listed: Record<string, [number, string, number]> = {};
  for (const [rel, f] of files) listed[rel] = [f.size, f.etag, f.mtimeMs];
  return `${JSON.stringify({ ...record, committed, files: listed })}\n`;
}

/** The manifest of `text`; null when it is not one (damaged, or of a version this does not know). */
export function parseManifest(text: string): Manifest | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== 'object') return null;
  const r = raw as { v?: unknown; committed?: unknown; files?: unknown };
  if (r.v !== 1 || typeof r.committed !== 'number' || r.files === null || typeof r.files !== 'object') return null;
  const files = new Map<string, ManifestFile>();
  let bytes = 0;
  for (const [rel, f] of Object.entries(r.files as Record<string, unknown>)) {
    if (!Array.isArray(f) || typeof f[0] !== 'number' || typeof f[1] !== 'string' || typeof f[2] !== 'number') return null;
    files.set(rel, { size: f[0], etag: f[1], mtimeMs: f[2] });
    bytes += f[0];
  }
  return { text, committed: r.committed, files, bytes };
}

/**
 * A stable number for the static engine's validators (`FileInfo.ino`) from an object's ETag: its
 * first 48 bits (an MD5 for a plain PUT, the MD5 of the parts' for a multipart one), so that the
 * wharf ETag changes whenever the object does.
 */
export function inoOf(etag: string): number {
  const hex = /[0-9a-f]{12}/i.exec(etag)?.[0];
  if (hex !== undefined) return parseInt(hex, 16);
  let h = 0;
  for (let i = 0; i < etag.length; i++) h = (h * 31 + etag.charCodeAt(i)) % 2 ** 48;
  return h;
}
