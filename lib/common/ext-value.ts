/** RFC 8187 `attr-char`: everything else is percent-encoded. */
const ATTR_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/;

/**
 * The value part of an RFC 8187 `ext-value` (after `UTF-8''`), as `filename*` carries a name in
 * a `Content-Disposition`: the UTF-8 bytes, each that is not an `attr-char` percent-encoded.
 */
export function extValue(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 128 && ATTR_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
