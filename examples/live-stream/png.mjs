// A minimal PNG encoder (RGB, 8 bits per channel, no filtering) on node:zlib — enough to make
// frames for an image stream without an image library.
import { deflateSync, crc32 } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  // The CRC covers the chunk type and data, not the length (PNG spec §5.3).
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** `pixel(x, y)` returns `[r, g, b]`; the result is a complete PNG file. */
export function encodePng(width, height, pixel) {
  const stride = 1 + width * 3;
  const raw = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    raw[y * stride] = 0; // filter type None for every scanline
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y);
      const o = y * stride + 1 + x * 3;
      raw[o] = r;
      raw[o + 1] = g;
      raw[o + 2] = b;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: truecolour
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', deflateSync(raw, { level: 1 })), chunk('IEND', Buffer.alloc(0))]);
}

/** Frame `n` of a square that bounces across a dark background, with a frame-counter bar along the bottom. */
export function bouncingSquare(n, width = 320, height = 180) {
  const size = 40;
  const period = 2 * (width - size);
  const t = (n * 4) % period;
  const left = t < width - size ? t : period - t;
  const top = Math.round((height - size) / 2 + Math.sin(n / 10) * ((height - size) / 3));
  const hue = (n * 3) % 360;
  const [r, g, b] = hslToRgb(hue / 360, 0.8, 0.55);
  const bar = n % width;
  return encodePng(width, height, (x, y) => {
    if (x >= left && x < left + size && y >= top && y < top + size) return [r, g, b];
    if (y >= height - 4 && x <= bar) return [230, 230, 230];
    return [18, 22, 30];
  });
}

function hslToRgb(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}
