// Big answers sent through reused buffers (file-pump.ts): bytes never change under a slow socket,
// a file cut short or failing mid-way cuts the connection, and the descriptor is always closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirectorySource, createStatic, type FileSource, type OpenFile } from '../lib/static/engine.js';
import { PUMP_CHUNK } from '../lib/static/file-pump.js';
import { resolveLimits } from '../lib/common/limits.js';
import { defer } from './helpers/defer.js';
import { eventually, fdsOn, serveEngine } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The files of `dir`, each opened file given what `change` returns in place of its own methods. */
function reopened(dir: string, change: (f: OpenFile) => Partial<OpenFile>): FileSource {
  const inner = createDirectorySource(dir);
  return {
    stat: (rel) => inner.stat(rel),
    open: async (rel) => {
      const f = await inner.open(rel);
      return f === null ? null : Object.assign(f, change(f));
    },
  };
}

/**
 * GETs `path`, reading `pauseAfter` bytes at full speed, then pausing `pauseMs` between chunks
 * (a slow reader, so the server's writes back up); resolves with the body, or 'cut'. `onFirst`
 * runs once the first bytes arrived.
 */
function download(url: string, path: string, slow: boolean, onFirst?: () => Promise<void>): Promise<Buffer | 'cut'> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}${path}`, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let first = true;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        if (first && onFirst) {
          first = false;
          res.pause();
          void onFirst().then(() => res.resume());
        } else if (slow && chunks.length % 8 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 2);
        }
      });
      res.on('end', () => resolve(res.complete ? Buffer.concat(chunks) : 'cut'));
      res.on('error', () => resolve('cut'));
      res.on('aborted', () => resolve('cut'));
    });
    req.on('error', () => resolve('cut'));
    req.end();
  });
}

test('a download held up while others run: its bytes are never reused from under its socket', async (t) => {
  const { dir, cleanup } = await makeTempDir();
  defer(t, cleanup);
  // Bigger than the kernel's socket buffers on loopback, so the held download's writes back up
  // with a buffer of the pool still in them while the other downloads take and fill buffers.
  const held = randomBytes(48 * PUMP_CHUNK + 5);
  await writeFile(join(dir, 'held.bin'), held);
  const files = [0, 1, 2, 3].map((i) => randomBytes(3 * PUMP_CHUNK + 1000 * i + 7));
  for (const [i, data] of files.entries()) await writeFile(join(dir, `f${i}.bin`), data);
  // No memory cache: every download goes through the pump.
  const url = await serveEngine(t, createStatic({ limits: resolveLimits({ cacheFileSize: 0 }) }), createDirectorySource(dir));
  const others = async (): Promise<void> => {
    const runs: Array<Promise<void>> = [];
    for (let k = 0; k < 12; k++) {
      const i = k % files.length;
      runs.push(download(url, `/x/f${i}.bin`, k % 2 === 0).then((body) => {
        assert.notEqual(body, 'cut');
        assert.equal(sha(body as Buffer), sha(files[i]!), `download ${k} of f${i}.bin`);
      }));
    }
    await Promise.all(runs);
  };
  const body = await download(url, '/x/held.bin', false, others);
  assert.notEqual(body, 'cut');
  assert.equal(sha(body as Buffer), sha(held), 'the held download');
  await eventually(async () => (await fdsOn(join(dir, 'held.bin'))) === 0 && (await fdsOn(join(dir, 'f0.bin'))) === 0, 'every descriptor closed');
});

test('a file truncated while it is sent: the client sees a cut connection, no read past the end, the descriptor closed', async (t) => {
  const { dir, cleanup } = await makeTempDir();
  defer(t, cleanup);
  const path = join(dir, 'shrinks.bin');
  await writeFile(path, randomBytes(8 * PUMP_CHUNK));
  let reads = 0;
  const source = reopened(dir, (f) => {
    const readAt = f.readAt!.bind(f);
    return { readAt: (...a) => (reads++, readAt(...a)) };
  });
  // Never cut for stalling: only the short read may end this download.
  const url = await serveEngine(t, createStatic({ limits: resolveLimits({ downloadStallTimeout: 0 }) }), source);
  let poll: NodeJS.Timeout | undefined;
  const looping = new Promise<string>((resolve) => {
    poll = setInterval(() => reads > 20 && resolve(`still reading after the end (${reads} reads)`), 10);
  });
  try {
    const outcome = await Promise.race([download(url, '/x/shrinks.bin', false, () => truncate(path, PUMP_CHUNK + 10)), looping]);
    assert.equal(outcome, 'cut');
  } finally {
    clearInterval(poll);
  }
  await eventually(async () => (await fdsOn(path)) === 0, 'the descriptor is closed');
});

test('a read that fails mid-way: a cut connection, the file closed once', async (t) => {
  const { dir, cleanup } = await makeTempDir();
  defer(t, cleanup);
  await writeFile(join(dir, 'a.bin'), randomBytes(4 * PUMP_CHUNK));
  let closes = 0;
  const source = reopened(dir, (f) => {
    let reads = 0;
    const readAt = f.readAt!.bind(f);
    const close = f.close.bind(f);
    return {
      readAt: (buf, length, position, done) => {
        if (++reads === 3) {
          setImmediate(() => done(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }), 0));
          return;
        }
        readAt(buf, length, position, done);
      },
      close: () => {
        closes++;
        return close();
      },
    };
  });
  const url = await serveEngine(t, createStatic({ limits: resolveLimits() }), source);
  assert.equal(await download(url, '/x/a.bin', false), 'cut');
  await eventually(() => closes === 1, 'closed once');
  await eventually(async () => (await fdsOn(join(dir, 'a.bin'))) === 0, 'the descriptor is closed');
});
