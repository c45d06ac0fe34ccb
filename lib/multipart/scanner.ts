/**
 * The synchronous half of the multipart parser: finds the delimiters and reads the header lines of
 * a body handed to it in chunks of any size, split anywhere, and says what it found through
 * `ScanEvents`. It knows nothing of streams, consumers or limits other than `headerSize`: whoever
 * feeds it decides when to go on (see `Scanner#step`), which makes it easy to drive on its own.
 */
import { WharfError } from '../common/errors.js';
import { COLON, CR, DASH, HTAB, LF, SP, TCHAR, latin1Slice, utf8Slice } from './bytes.js';
import { disposition, formDataOf } from './params.js';
import { indexOfDelimiter, shiftTable } from './delimiter-search.js';

export interface ScanEvents {
  /**
   * A part's header block is complete and names a form-data part. `cd` is its Content-Disposition,
   * or null when it was exactly the form every browser sends (then it is rebuilt from `name` and
   * `filename`); `type` its Content-Type; `others` any other headers as lower-cased name/value pairs.
   */
  part(name: string, filename: string | undefined, cd: string | null, type: string | undefined, others: string[] | null): void;
  /** Bytes of the current part's data, `c[from, to)`; false when the parse stopped. */
  data(c: Buffer, from: number, to: number): boolean;
  /** The current part's data ended at a delimiter. */
  end(): void;
  /** The body is malformed; the scanner reads nothing more of it. */
  fail(err: WharfError): void;
}

const enum State {
  Preamble,
  Delimiter,
  Headers,
  Body,
  Epilogue,
  Failed,
}

const enum After {
  Start,
  Dash,
  Padding,
  Cr,
}

export class Scanner {
  private readonly events: ScanEvents;
  private readonly headerSize: number;
  // The delimiter `CRLF--boundary` and its Boyer–Moore–Horspool shift table.
  private readonly delimiter: Buffer;
  private readonly shift: Uint8Array;

  private state = State.Preamble;
  private after = After.Start;
  // Bytes at the end of the previous chunk that are a prefix of the delimiter, not yet known to be
  // data; the first `virtual` of them are a CRLF that is never data (see `startPart`). At the start,
  // RFC 2046 §5.1.1: the first delimiter may start the body without a CRLF; pretend one came before it.
  private carry = 2;
  private virtual = 2;

  private headerBytes = 0;
  private line: Buffer | null = null;
  // The header block being read.
  private disposition: string | undefined = undefined;
  // Or what `browserDisposition` read of it.
  private fastName: string | undefined = undefined;
  private fastFilename: string | undefined = undefined;
  private type: string | undefined = undefined;
  private others: string[] | null = null;

  /** `boundary` as `boundaryOf` validated it. */
  constructor(boundary: string, headerSize: number, events: ScanEvents) {
    this.events = events;
    this.headerSize = headerSize;
    const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.shift = shiftTable(delimiter);
    this.delimiter = delimiter;
  }

  /** True once the closing delimiter was read: what follows is the epilogue. */
  get complete(): boolean {
    return this.state === State.Epilogue;
  }

  /** Where the body stopped, for the error when it ends before the closing delimiter. */
  where(): string {
    switch (this.state) {
      case State.Body:
        return "in a part's data";
      case State.Headers:
        return "in a part's headers";
      case State.Delimiter:
        return 'in a delimiter line';
      default:
        return 'before the first boundary';
    }
  }

  /**
   * Reads `c` from `pos` up to the next event that may make its caller wait (a part's data up to a
   * delimiter, a delimiter line, a header block) or to its end: the index it got to.
   */
  step(c: Buffer, pos: number): number {
    switch (this.state) {
      case State.Body:
      case State.Preamble:
        return this.scanBody(c, pos);
      case State.Delimiter:
        return this.scanDelimiter(c, pos);
      case State.Headers:
        return this.scanHeaders(c, pos);
      default:
        return c.length;
    }
  }

  /**
   * Part data: what precedes the delimiter goes out as one slice of the chunk. A delimiter prefix at
   * the very end of the chunk is held back (as a count: its bytes are the delimiter's) until the
   * next chunk says whether it is one. The preamble is read the same way, and dropped.
   */
  private scanBody(c: Buffer, pos: number): number {
    const inPart = this.state === State.Body;
    const n = c.length;
    const d = this.delimiter;
    const dl = d.length;
    if (this.carry > 0) {
      const k = this.carry;
      const need = dl - k;
      const m = n - pos < need ? n - pos : need;
      let j = 0;
      while (j < m && c[pos + j] === d[k + j]) j++;
      if (j === m) {
        if (m === need) {
          this.carry = 0;
          this.virtual = 0;
          this.endPart();
          return pos + need;
        }
        this.carry = k + m;
        return n;
      }
      // Not a delimiter after all: the held bytes were data. The only CR in the delimiter is its
      // first byte, so no delimiter can start inside them.
      const from = this.virtual;
      this.carry = 0;
      this.virtual = 0;
      if (inPart && k > from && !this.events.data(Buffer.from(d.subarray(from, k)), 0, k - from)) return n;
    }
    const at = indexOfDelimiter(c, pos, d, this.shift);
    if (at !== -1) {
      if (inPart && at > pos && !this.events.data(c, pos, at)) return n;
      this.endPart();
      return at + dl;
    }
    // A delimiter prefix at the end starts with the last CR in the final dl-1 bytes, or is absent.
    let t = n - dl + 1;
    if (t < pos) t = pos;
    let s = n - 1;
    while (s >= t && c[s] !== CR) s--;
    let end = n;
    if (s >= t) {
      let j = 1;
      while (s + j < n && c[s + j] === d[j]) j++;
      if (s + j === n) end = s;
    }
    if (inPart && end > pos) this.events.data(c, pos, end);
    this.carry = n - end;
    return n;
  }

  private endPart(): void {
    if (this.state === State.Body) this.events.end();
    this.state = State.Delimiter;
    this.after = After.Start;
    this.headerBytes = 0;
  }

  /** What follows a delimiter: `--` (the close delimiter), or transport padding and CRLF. */
  private scanDelimiter(c: Buffer, pos: number): number {
    const n = c.length;
    while (pos < n) {
      const b = c[pos++]!;
      switch (this.after) {
        case After.Start:
          if (b === DASH) this.after = After.Dash;
          else if (b === CR) this.after = After.Cr;
          else if (b === SP || b === HTAB) this.after = After.Padding;
          else return this.malformedDelimiter(n);
          break;
        case After.Dash:
          if (b !== DASH) return this.malformedDelimiter(n);
          this.state = State.Epilogue;
          return pos;
        case After.Padding:
          if (b === CR) this.after = After.Cr;
          else if (b !== SP && b !== HTAB) return this.malformedDelimiter(n);
          else if (++this.headerBytes > this.headerSize) return this.headerTooLarge(n);
          break;
        default:
          if (b !== LF) return this.malformedDelimiter(n);
          this.state = State.Headers;
          this.line = null;
          this.disposition = undefined;
          this.fastName = undefined;
          this.type = undefined;
          this.others = null;
          return pos;
      }
    }
    return pos;
  }

  /** Stops the scan with `err`: the index to return (the chunk's end). */
  private fail(n: number, err: WharfError): number {
    this.state = State.Failed;
    this.events.fail(err);
    return n;
  }

  private malformedDelimiter(n: number): number {
    return this.fail(n, new WharfError('MULTIPART_MALFORMED_DELIMITER', 'a boundary delimiter is followed by something other than "--" or a line break', 400));
  }

  private headerTooLarge(n: number): number {
    return this.fail(n, new WharfError('MULTIPART_HEADER_TOO_LARGE', `a part's header block is larger than the limit of ${this.headerSize} bytes`, 413));
  }

  private malformedHeader(n: number, why: string): number {
    return this.fail(n, new WharfError('MULTIPART_MALFORMED_HEADER', `malformed part header: ${why}`, 400));
  }

  /**
   * Header lines, each checked as soon as its LF arrives. One pass over a line finds its LF and
   * any control character in it; a line split across chunks is copied (it is small) and checked
   * whole once complete.
   */
  private scanHeaders(c: Buffer, pos: number): number {
    const n = c.length;
    while (pos < n) {
      if (this.line === null && this.disposition === undefined && this.fastName === undefined) {
        const end = this.browserDisposition(c, pos);
        if (end > 0) {
          this.headerBytes += end - pos;
          if (this.headerBytes > this.headerSize) return this.headerTooLarge(n);
          pos = end;
          continue;
        }
      }
      // No need to look further than the header block may reach.
      const budget = this.headerSize - this.headerBytes;
      const stop = n - pos > budget ? pos + budget : n;
      let lf = pos;
      let controls = 0;
      for (; lf < stop; lf++) {
        const b = c[lf]!;
        if (b < SP || b === 127) {
          if (b === LF) break;
          if (b !== HTAB) controls++;
        }
      }
      if (lf === stop) {
        if (stop < n) return this.headerTooLarge(n);
        this.headerBytes += n - pos;
        this.line = this.line === null ? Buffer.from(c.subarray(pos)) : Buffer.concat([this.line, c.subarray(pos)]);
        return n;
      }
      this.headerBytes += lf + 1 - pos;
      if (this.headerBytes > this.headerSize) return this.headerTooLarge(n);
      let buf = c;
      let from = pos;
      let to = lf;
      let checked = true;
      if (this.line !== null) {
        buf = Buffer.concat([this.line, c.subarray(pos, lf)]);
        this.line = null;
        from = 0;
        to = buf.length;
        checked = false;
      }
      pos = lf + 1;
      if (to === from || buf[to - 1] !== CR) return this.malformedHeader(n, 'a header line ends in a bare LF');
      to--;
      // The CR before the LF is the one control character a line may have.
      if (checked && controls > 1) return this.malformedHeader(n, 'a header line holds a control character');
      if (to === from) {
        this.startPart();
        return pos;
      }
      const why = this.headerLine(buf, from, to, checked);
      if (why !== null) return this.malformedHeader(n, why);
    }
    return pos;
  }

  /**
   * One `name: value` line, `buf[from, to)` without its CRLF, `checked` when it is known to hold no
   * control character: null when it is well formed, else what is wrong with it.
   */
  private headerLine(buf: Buffer, from: number, to: number, checked: boolean): string | null {
    const first = buf[from]!;
    // RFC 9112 §5.2: obsolete line folding; RFC 7578 senders never fold.
    if (first === SP || first === HTAB) return 'a header line starts with a space or tab';
    let i: number;
    let known = 0;
    // The two headers every part has are matched in place, without building their names.
    if (to - from > 19 && buf[from + 19] === COLON && equalsLower(buf, from, CONTENT_DISPOSITION)) {
      known = 1;
      i = from + 20;
    } else if (to - from > 12 && buf[from + 12] === COLON && equalsLower(buf, from, CONTENT_TYPE)) {
      known = 2;
      i = from + 13;
    } else {
      // RFC 2046 §5.1.1: the delimiter may not occur inside a part, header block included. `-` is a
      // token character, so `--boundary…` would pass as a header name here while a parser that
      // looks for the delimiter anywhere ends the part: two readers disagreeing on where a file
      // starts is how one gets smuggled past the other.
      const dash = this.delimiter.length - 2;
      if (to - from >= dash && buf.compare(this.delimiter, 2, this.delimiter.length, from, from + dash) === 0) {
        return 'a header line starts with the boundary delimiter';
      }
      i = from;
      while (i < to && TCHAR[buf[i]!] === 1) i++;
      if (i === from || i === to || buf[i] !== COLON) return 'a header line has no name and colon';
      i++;
    }
    const colon = i - 1;
    while (i < to && (buf[i] === SP || buf[i] === HTAB)) i++;
    let e = to;
    while (e > i && (buf[e - 1] === SP || buf[e - 1] === HTAB)) e--;
    if (!checked) {
      for (let k = from; k < to; k++) {
        const b = buf[k]!;
        if ((b < SP && b !== HTAB) || b === 127) return 'a header line holds a control character';
      }
    }
    if (known === 1 && (this.disposition !== undefined || this.fastName !== undefined)) return 'the Content-Disposition header is repeated';
    // Browsers send non-ASCII filenames as raw UTF-8 (HTML's multipart/form-data encoding).
    const value = utf8Slice(buf, i, e);
    if (known === 1) {
      this.disposition = value;
    } else if (known === 2) {
      if (this.type !== undefined) return 'the Content-Type header is repeated';
      this.type = value;
    } else {
      (this.others ??= []).push(buf.toString('latin1', from, colon).toLowerCase(), value);
    }
    return null;
  }

  /**
   * The Content-Disposition line every browser (and curl, undici, Go, Python's requests) sends,
   * `Content-Disposition: form-data; name="…"` with an optional `; filename="…"`, the quoted values
   * printable ASCII without `%`: read in one pass over its bytes, where the general path scans the
   * line, builds the header's string and parses that — most of the cost of a small field. The index
   * after the line's LF, or -1 for anything else (other case or spacing, more parameters, escapes,
   * non-ASCII, a line the chunk cuts), which the general path then reads to the same result.
   */
  private browserDisposition(c: Buffer, pos: number): number {
    if (!startsWith(c, pos, BROWSER_DISPOSITION)) return -1;
    const nameStart = pos + BROWSER_DISPOSITION.length;
    const nameEnd = quotedEnd(c, nameStart);
    if (nameEnd <= nameStart) return -1;
    let end = nameEnd + 1;
    let filename: string | undefined;
    if (c[end] !== CR) {
      if (!startsWith(c, end, FILENAME)) return -1;
      const fnEnd = quotedEnd(c, end + FILENAME.length);
      if (fnEnd < 0) return -1;
      filename = latin1Slice(c, end + FILENAME.length, fnEnd);
      end = fnEnd + 1;
    }
    if (c[end] !== CR || c[end + 1] !== LF) return -1;
    this.fastName = latin1Slice(c, nameStart, nameEnd);
    this.fastFilename = filename;
    return end + 2;
  }

  /** The blank line after the headers: the part is handed out, its data follows. */
  private startPart(): void {
    // The blank line's CRLF may be the delimiter's own (RFC 2046: `body-part := headers [CRLF
    // *OCTET]`, a part may have no body at all): search from it, but it is never data.
    this.state = State.Body;
    this.carry = 2;
    this.virtual = 2;
    if (this.fastName !== undefined) {
      this.events.part(this.fastName, this.fastFilename, null, this.type, this.others);
      return;
    }
    const cd = this.disposition;
    if (cd === undefined) {
      this.fail(0, new WharfError('MULTIPART_NO_DISPOSITION', 'a part has no Content-Disposition header', 400));
      return;
    }
    const err = formDataOf(cd);
    if (err !== null) {
      this.fail(0, err);
      return;
    }
    this.events.part(disposition.name, disposition.filename, cd, this.type, this.others);
  }
}

const BROWSER_DISPOSITION = Buffer.from('Content-Disposition: form-data; name="');
const FILENAME = Buffer.from('; filename="');
const CONTENT_DISPOSITION = Buffer.from('content-disposition');
const CONTENT_TYPE = Buffer.from('content-type');

/** `buf` holds `bytes` at `from` (false where it ends first): a loop, as `Buffer#compare`'s argument checks cost more than these few bytes. */
function startsWith(buf: Buffer, from: number, bytes: Buffer): boolean {
  if (buf.length - from < bytes.length) return false;
  for (let k = 0; k < bytes.length; k++) if (buf[from + k] !== bytes[k]) return false;
  return true;
}

/** Where the quoted value from `from` closes (its `"`), or -1 at the chunk's end or at a byte `browserDisposition` leaves to the general path. */
function quotedEnd(buf: Buffer, from: number): number {
  for (let k = from; k < buf.length; k++) {
    const b = buf[k]!;
    if (b === 34 /* " */) return k;
    if (b < SP || b > 126 || b === 37 /* % */) return -1;
  }
  return -1;
}

// `| 0x20` lower-cases letters and leaves `-` alone (`name` holds nothing else); it would also
// turn a CR into `-`, hence the second test.
function equalsLower(buf: Buffer, from: number, name: Buffer): boolean {
  for (let k = 0; k < name.length; k++) {
    const b = buf[from + k]!;
    if ((b | 0x20) !== name[k] || b <= SP) return false;
  }
  return true;
}
