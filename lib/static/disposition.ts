// `Content-Disposition: attachment` per RFC 6266, with the name in both forms: an ASCII `filename`
// for old clients and an RFC 8187 `filename*` (UTF-8, percent-encoded) that modern browsers prefer.
import { extValue } from '../common/ext-value.js';

/**
 * The header value for downloading a file as `name`. Path separators, control characters (so no
 * CR/LF header injection), quotes, backslashes and `%` never reach the quoted ASCII fallback.
 */
export function attachment(name: string): string {
  const clean = name.replace(/[\u0000-\u001f\u007f/\\]/g, '_') || 'download';
  const fallback = clean.replace(/[^\x20-\x7e]|["%]/g, '_');
  return fallback === clean
    ? `attachment; filename="${fallback}"`
    : `attachment; filename="${fallback}"; filename*=UTF-8''${extValue(clean)}`;
}
