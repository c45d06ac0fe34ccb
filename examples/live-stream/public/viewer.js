// Reads the stream (multipart/x-mixed-replace) with fetch, so the page knows what an <img src> of it
// would not tell: each frame as it arrives (counted in the caption) and the end of the stream.
// Each part's bytes go to the <img> as a blob; an empty part (the server closing an announced part
// when the next frame has another type) is skipped, as RFC 2046 says.
const view = document.getElementById('view');
const state = document.getElementById('state');
const STREAM = '../_m/demo';
const CRLF2 = new Uint8Array([13, 10, 13, 10]);

let frames = 0;
let shownUrl;
let shownSeq = 0;
let ended = false;

function indexOf(haystack, needle, from) {
  const first = needle[0];
  for (let i = haystack.indexOf(first, from); i >= 0 && i + needle.length <= haystack.length; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * Shows a frame once it is decoded, so the <img> never goes blank between frames (an image already
 * decoded is shown at once when its URL is set); a frame that decodes after a newer one is dropped.
 */
function show(bytes, type) {
  if (bytes.length === 0) return;
  const seq = ++frames;
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const next = new Image();
  next.src = url;
  next.decode().then(() => {
    if (seq < shownSeq) return URL.revokeObjectURL(url);
    view.src = url;
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    shownUrl = url;
    shownSeq = seq;
    if (!ended) state.textContent = `live · frame ${seq}`;
  }, () => URL.revokeObjectURL(url));
}

/** Splits the body into parts as it arrives: a part is complete once the next delimiter is in. */
async function follow(res, boundary) {
  const delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
  const reader = res.body.getReader();
  let buf = new Uint8Array([13, 10]); // the first delimiter has no CRLF of its own before it
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf);
    joined.set(value, buf.length);
    buf = joined;
    for (;;) {
      const start = indexOf(buf, delimiter, 0);
      const headEnd = start < 0 ? -1 : indexOf(buf, CRLF2, start + delimiter.length);
      const next = headEnd < 0 ? -1 : indexOf(buf, delimiter, headEnd + 4);
      if (next < 0) break;
      const head = new TextDecoder().decode(buf.subarray(start, headEnd));
      const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1] ?? 'image/png';
      show(buf.slice(headEnd + 4, next), type);
      buf = buf.slice(next);
    }
  }
}

async function watch() {
  let res;
  try {
    res = await fetch(STREAM, { cache: 'no-store' });
  } catch {
    state.textContent = 'cannot reach the server';
    return;
  }
  if (res.status === 404) {
    state.textContent = 'no such stream yet: waiting for it…';
    setTimeout(watch, 1000);
    return;
  }
  const boundary = /boundary=([^;]+)/.exec(res.headers.get('content-type') ?? '')?.[1];
  if (!res.ok || !boundary) {
    state.textContent = `the stream cannot be shown (HTTP ${res.status})`;
    return;
  }
  try {
    await follow(res, boundary);
    ended = true;
    state.textContent = `stream ended after ${frames} frame${frames === 1 ? '' : 's'}`;
  } catch {
    ended = true;
    state.textContent = `connection lost after ${frames} frame${frames === 1 ? '' : 's'}`;
  }
}

watch();
