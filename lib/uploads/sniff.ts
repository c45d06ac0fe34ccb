// What a file's first bytes say it is: the magic numbers of the common image, document and archive
// types, and the start of an HTML or XML document. For upload checks (accept.ts, the `filter` hook):
// a name or a declared type is the uploader's word, the bytes are what a reader gets.

/** Bytes a check is given: enough for every signature here (tar's is at 257), and for a document's start. */
export const SNIFF_BYTES = 4096;

interface Signature {
  type: string;
  /** Where `bytes` must be. */
  at: number;
  bytes: number[];
  /** A second signature that must hold too (WebP's `WEBP` after `RIFF`, say). */
  and?: { at: number; bytes: number[] };
}

const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

const SIGNATURES: Signature[] = [
  { type: 'image/png', at: 0, bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { type: 'image/jpeg', at: 0, bytes: [0xff, 0xd8, 0xff] },
  { type: 'image/gif', at: 0, bytes: ascii('GIF87a') },
  { type: 'image/gif', at: 0, bytes: ascii('GIF89a') },
  { type: 'image/webp', at: 0, bytes: ascii('RIFF'), and: { at: 8, bytes: ascii('WEBP') } },
  { type: 'image/bmp', at: 0, bytes: ascii('BM') },
  { type: 'image/x-icon', at: 0, bytes: [0x00, 0x00, 0x01, 0x00] },
  { type: 'image/tiff', at: 0, bytes: [0x49, 0x49, 0x2a, 0x00] },
  { type: 'image/tiff', at: 0, bytes: [0x4d, 0x4d, 0x00, 0x2a] },
  { type: 'application/pdf', at: 0, bytes: ascii('%PDF-') },
  { type: 'application/zip', at: 0, bytes: [0x50, 0x4b, 0x03, 0x04] },
  { type: 'application/zip', at: 0, bytes: [0x50, 0x4b, 0x05, 0x06] }, // an empty archive
  { type: 'application/zip', at: 0, bytes: [0x50, 0x4b, 0x07, 0x08] }, // a spanned one
  { type: 'application/gzip', at: 0, bytes: [0x1f, 0x8b] },
  { type: 'application/x-tar', at: 257, bytes: ascii('ustar') },
  { type: 'application/x-7z-compressed', at: 0, bytes: [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c] },
  { type: 'application/x-bzip2', at: 0, bytes: ascii('BZh') },
  { type: 'application/x-xz', at: 0, bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { type: 'application/zstd', at: 0, bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  { type: 'application/wasm', at: 0, bytes: [0x00, 0x61, 0x73, 0x6d] },
  // Microsoft's compound files: .doc, .xls, .ppt (and .msi, .msg).
  { type: 'application/x-ole-storage', at: 0, bytes: [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1] },
];

const has = (head: Uint8Array, at: number, bytes: number[]): boolean => {
  if (head.length < at + bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (head[at + i] !== bytes[i]) return false;
  return true;
};

// The tags that make a browser sniff a document as HTML (WHATWG MIME Sniffing §7.1), followed by a space or `>`.
const HTML_START = /^<(!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|!--)[\s>]/i;

/**
 * The type `head` (a file's first bytes, `SNIFF_BYTES` of them or the whole file) says, or undefined
 * when it says none of these: a signature of `SIGNATURES`; `text/html` for what a browser would
 * render as HTML; `image/svg+xml` and `application/xml` for an SVG or XML document.
 */
export function sniffType(head: Uint8Array): string | undefined {
  for (const s of SIGNATURES) {
    if (has(head, s.at, s.bytes) && (s.and === undefined || has(head, s.and.at, s.and.bytes))) return s.type;
  }
  return sniffMarkup(head);
}

function sniffMarkup(head: Uint8Array): string | undefined {
  let text = Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, 1024)).toString('latin1');
  if (text.startsWith('\xef\xbb\xbf')) text = text.slice(3); // a UTF-8 byte order mark
  text = text.trimStart();
  if (HTML_START.test(text)) return 'text/html';
  if (/<svg[\s>]/i.test(text) && /^<(\?xml|svg|!doctype svg|!--)/i.test(text)) return 'image/svg+xml';
  if (text.startsWith('<?xml')) return 'application/xml';
  return undefined;
}

/** Zip containers of the types that are zip archives inside (Office Open XML, OpenDocument, EPUB, JAR). */
const ZIP_BASED = new Set([
  'application/zip',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  'application/vnd.oasis.opendocument.text', 'application/vnd.oasis.opendocument.spreadsheet',
  'application/epub+zip', 'application/java-archive',
]);

const OLE_BASED = new Set(['application/msword', 'application/vnd.ms-excel', 'application/vnd.ms-powerpoint']);

/** The type a signature says for a file of `type`: its container's for a zip- or OLE-based type, PNG's for APNG. */
function containerOf(type: string): string {
  if (ZIP_BASED.has(type)) return 'application/zip';
  if (OLE_BASED.has(type)) return 'application/x-ole-storage';
  if (type === 'image/apng') return 'image/png';
  return type;
}

const SIGNED = new Set(SIGNATURES.map((s) => s.type));

/**
 * Do a file's bytes (what `sniffType` said of them) agree with `type` (a MIME essence, from its
 * name)? A type with a signature needs it; a type without one (text, CSV, JSON…) needs bytes that
 * carry no signature, and no markup unless it is markup itself: an `evil.png` that is HTML, a
 * `notes.txt` that is a zip, a `data.csv` that is an HTML page all disagree.
 */
export function bytesAgree(type: string, sniffed: string | undefined): boolean {
  const expected = containerOf(type);
  if (SIGNED.has(expected)) return sniffed === expected;
  if (sniffed === undefined) return true;
  const xml = type === 'application/xml' || type === 'text/xml' || type.endsWith('+xml');
  if (sniffed === 'text/html') return type === 'text/html' || type === 'application/xhtml+xml';
  if (sniffed === 'image/svg+xml' || sniffed === 'application/xml') return xml;
  return false;
}
