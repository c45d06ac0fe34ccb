// The multipart scanner's hot loop: where the delimiter (`CRLF--boundary`) starts in a chunk.
// Boyer–Moore–Horspool, measured faster than `Buffer.indexOf` (bench/multipart), two searches at
// once over a big chunk's halves.

/** Boyer–Moore–Horspool's shift table for `d` (at most 255 bytes long): how far a window may move on, by its last byte. */
export function shiftTable(d: Buffer): Uint8Array {
  const shift = new Uint8Array(256);
  const last = d.length - 1;
  shift.fill(d.length);
  for (let i = 0; i < last; i++) shift[d[i]!] = last - i;
  return shift;
}

/**
 * The hot loop: where `d` starts in `c` at or after `from`, or -1. Boyer–Moore–Horspool over the
 * whole chunk (measured faster than `Buffer.indexOf`, on random data by half again, and on data
 * made of delimiter fragments). A function of its own, so that when a rare branch of its caller
 * deoptimizes, this loop keeps its optimized code.
 *
 * Two searches at once, one over each half of the chunk (by where a match would end): each step of
 * one is a load, a table load and an add that the next step waits on, so a single search runs at
 * the latency of that chain; two independent chains overlap, 1.4–1.8x faster on random and text
 * data. A match in the first half is the first one; one found in the second waits for the first
 * half to be searched to its end.
 */
export function indexOfDelimiter(c: Buffer, from: number, d: Buffer, shift: Uint8Array): number {
  const n = c.length;
  const last = d.length - 1;
  // Below TWO_SEARCHES the second search's set-up and tail cost more than the overlap saves (16 KiB
  // chunks: 0.95–0.98x the single search in bench/multipart).
  const end = d[last]!;
  if (n - from < TWO_SEARCHES) {
    // The single search, written out here rather than called: a call cost small chunks ~2%.
    for (let i = from + last; i < n; ) {
      const x = c[i]!;
      if (x === end && endsAt(c, i, d)) return i - last;
      i += shift[x]!;
    }
    return -1;
  }
  // `a` and `b`: the last byte of the window each search is at. `a` looks at windows ending before `mid`.
  let a = from + last;
  const mid = a + ((n - a) >> 1);
  let b = mid;
  while (a < mid && b < n) {
    const x = c[a]!;
    const y = c[b]!;
    if (x === end && endsAt(c, a, d)) return a - last;
    if (y === end && endsAt(c, b, d)) {
      const first = searchTo(c, a, mid, d, shift);
      return first !== -1 ? first : b - last;
    }
    a += shift[x]!;
    b += shift[y]!;
  }
  const first = searchTo(c, a, mid, d, shift);
  return first !== -1 ? first : searchTo(c, b, n, d, shift);
}

/** Bytes left to search from which `indexOfDelimiter` runs two searches at once. */
export const TWO_SEARCHES = 32 * 1024;

/** One search, its window ending at `i` and then on, for a match ending before `to`. */
function searchTo(c: Buffer, i: number, to: number, d: Buffer, shift: Uint8Array): number {
  const last = d.length - 1;
  const end = d[last]!;
  while (i < to) {
    const x = c[i]!;
    if (x === end && endsAt(c, i, d)) return i - last;
    i += shift[x]!;
  }
  return -1;
}

/** Whether `d` ends at `c[i]`, whose byte is known to be `d`'s last. */
function endsAt(c: Buffer, i: number, d: Buffer): boolean {
  let j = d.length - 2;
  let k = i - 1;
  while (j >= 0 && c[k] === d[j]) {
    j--;
    k--;
  }
  return j < 0;
}
