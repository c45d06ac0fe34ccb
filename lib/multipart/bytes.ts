/** The bytes the multipart grammar is made of, and the fast ways to turn a slice of a chunk into a string. */

export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;
export const DASH = 45;
export const COLON = 58;

/** RFC 9110 §5.6.2 tchar: header names and parameter names. */
export const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

// What `toString('utf8', from, to)` ends in after checking its arguments, called directly: a third
// of the cost of decoding a short header value. Undocumented but in every Node release (busboy and
// undici use its siblings); `toString` if it is ever gone.
const slicer = (Buffer.prototype as Buffer & { utf8Slice?: (from: number, to: number) => string }).utf8Slice;
export const utf8Slice: (buf: Buffer, from: number, to: number) => string =
  typeof slicer === 'function' ? (buf, from, to) => slicer.call(buf, from, to) : (buf, from, to) => buf.toString('utf8', from, to);

const latin1er = (Buffer.prototype as Buffer & { latin1Slice?: (from: number, to: number) => string }).latin1Slice;
export const latin1Slice: (buf: Buffer, from: number, to: number) => string =
  typeof latin1er === 'function' ? (buf, from, to) => latin1er.call(buf, from, to) : (buf, from, to) => buf.toString('latin1', from, to);
