// Publishes a generated animation to a wharf image stream at 30 fps, and serves a page showing it.
//
//   node examples/live-stream/publish.mjs     then open http://127.0.0.1:10102/live/
//
// Options: --port N (10102), --fps N (30), --frames N (stop after N frames; default: until Ctrl+C),
// --name NAME (stream name, `demo`). Ctrl+C ends the stream (`unlink`), so viewers see it finish.
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFileServer } from 'wharf-files';
import { connect } from 'wharf-files/client';
import { bouncingSquare } from './png.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '10102' },
    fps: { type: 'string', default: '30' },
    frames: { type: 'string', default: '0' },
    name: { type: 'string', default: 'demo' },
  },
});

const accessKeyId = 'live-demo';
const accessKeySecret = process.env.WHARF_DEMO_SECRET ?? crypto.randomUUID();
const files = createFileServer({
  dataDir: process.env.WHARF_DATA_DIR ?? fileURLToPath(new URL('./.data', import.meta.url)),
  publicDirs: [{ url: '/live/', path: fileURLToPath(new URL('./public', import.meta.url)) }],
  accessKeys: { [accessKeyId]: accessKeySecret },
});
const { url } = await files.listen({ port: Number(opts.port), host: '127.0.0.1' });
console.log(`open ${url}/live/index.html — publishing to ${url}/_m/${opts.name} at ${opts.fps} fps`);

// The publisher talks HTTP like an app in another process would; the client keeps one connection alive.
const site = connect(url, { accessKeyId, accessKeySecret });
const interval = 1000 / Number(opts.fps);
const limit = Number(opts.frames);
let stopping = false;
const stop = () => { stopping = true; };
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

let next = performance.now();
for (let n = 0; !stopping && (limit === 0 || n < limit); n++) {
  await site.uplink(opts.name, 'image/png', bouncingSquare(n));
  if (n === 0) console.log('first frame published');
  next += interval;
  const wait = next - performance.now();
  if (wait > 0) await sleep(wait);
  else next = performance.now(); // fell behind: don't burst to catch up
}
await site.unlink(opts.name);
console.log('stream ended');
await files.close();
