import { WharfError } from './errors.js';

/**
 * `{base}_m/<name>` (docs/protocol.md §2), each segment of the name percent-encoded, its slashes
 * kept (`foo/bar qux.png` → `foo/bar%20qux.png`). A name that cannot be spelled in a URL is
 * `INVALID_STREAM_NAME`; the server checks its names more strictly before it gets here.
 */
export function streamPath(base: string, name: unknown): string {
  const bad = (why: string): WharfError => new WharfError('INVALID_STREAM_NAME', `invalid stream name: ${why}`, 400);
  if (typeof name !== 'string' || name === '') throw bad('empty');
  try {
    return `${base}_m/${name.split('/').map(encodeURIComponent).join('/')}`;
  } catch {
    throw bad('not valid Unicode (a lone surrogate)');
  }
}
