// How a file's name travels in a URL path (docs/protocol.md §1): the form the server returns, how
// a path that comes back is read, and how it is put on a request line. One rule, imported by the
// server and by `wharf-files/client` alike, so this module imports nothing.

// The characters whose raw form would change what a URL means to a browser or httpx: `%` starts an
// escape, `#` a fragment, `?` a query. Everything else (spaces, non-ASCII, `+`, `;`) means itself
// and is percent-encoded by the client when it sends the request.
const MEANINGFUL: Record<string, string> = { '%': '%25', '#': '%23', '?': '%3F' };

/**
 * A stored name or relative path (`a/b c.txt`, slashes kept) as it appears in a returned URL: as
 * it is, as Wave returns it (`path.Join(base, id, name)`), with only `%`, `#` and `?` escaped. So
 * Wave's client, which names a download after the URL's last segment, and a page that shows that
 * segment, both see the real name, and a literal `%2e%2e%2f` name still GETs its own file.
 */
export function escapeName(name: string): string {
  return name.replace(/[%#?]/g, (c) => MEANINGFUL[c]!);
}

// A run of `%XX` escapes; a `%` that is not followed by two hex digits is not an escape at all.
const ESCAPES = /(?:%[0-9A-Fa-f]{2})+/g;

/** Decodes one run of escapes a UTF-8 sequence at a time; an escape that starts no valid sequence stays as written. */
function decodeRun(run: string): string {
  let out = '';
  for (let i = 0; i < run.length;) {
    const lead = parseInt(run.slice(i + 1, i + 3), 16);
    const bytes = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    const sequence = run.slice(i, i + 3 * bytes);
    try {
      out += decodeURIComponent(sequence);
      i += sequence.length;
    } catch {
      out += run.slice(i, i + 3);
      i += 3;
    }
  }
  return out;
}

/**
 * One segment of a URL path decoded once: right for the returned form (whose `%` is `%25`) and for
 * a fully percent-encoded one alike. Never throws: a `%` that is not valid percent-encoding (a
 * user-built `100% sure.txt`, a lone `%C3`) is taken literally, as the name it was meant to be.
 */
export function decodeName(segment: string): string {
  return segment.includes('%') ? segment.replace(ESCAPES, decodeRun) : segment;
}

// RFC 3986 pchar minus pct-encoded: unreserved / sub-delims / ":" / "@". What browsers leave
// unencoded in a path, so a mapping URL compares equal to what they send.
const PCHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;

/** Percent-encodes one path segment the way browsers do (UTF-8, upper-case hex). */
export function encodeSegment(segment: string): string {
  let out = '';
  for (const ch of segment) out += PCHAR.test(ch) ? ch : encodeURIComponent(ch).toUpperCase();
  return out;
}

/**
 * A URL path in either form (returned, or fully percent-encoded) as an HTTP request line needs it:
 * each segment decoded once and encoded again, so spaces and non-ASCII are escaped, a stray `%`
 * becomes `%25`, and an existing `%25` stays `%25` (never `%2525`).
 */
export function requestPath(path: string): string {
  return path.split('/').map((s) => encodeSegment(decodeName(s))).join('/');
}
