import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WharfError } from '../lib/common/errors.js';
import { createFileServer } from '../lib/http/server.js';
import type { IncomingMessage } from 'node:http';
import { MixedReplaceReader, boundaryOf, view } from './helpers/mixed-replace.js';
import { AUTH, eventually, frame, post, request, start, waveForm } from './helpers/streams.js';
import { defer } from './helpers/defer.js';

const isCode = (code: string) => (e: unknown) => e instanceof WharfError && e.code === code;

test('a fast viewer gets every frame byte-exact and in order, each shown on arrival', async (t) => {
  const s = await start(t);
  const sent = [frame(0, 1000)];
  assert.equal((await post(s.url, 'cam', 'image/jpeg', sent[0]!)).status, 200);
  const v = await view(`${s.url}/_m/cam`);
  defer(t, () => v.close());
  assert.equal(v.status, 200);
  assert.match(String(v.headers['content-type']), /^multipart\/x-mixed-replace; boundary=[0-9a-f]{32}$/);
  assert.equal(v.headers['cache-control'], 'no-store');
  assert.equal(v.headers['content-length'], undefined);
  for (let i = 1; i < 25; i++) {
    const data = frame(i, 1 + ((i * 7919) % 200_000));
    sent.push(data);
    assert.equal((await post(s.url, 'cam', 'image/jpeg', data)).status, 200);
    // Shown: the frame's delimiter and the next part's header block are both there.
    await v.until((r) => r.parts.length === i + 1 && r.announced !== undefined, `frame ${i}`);
  }
  assert.equal(v.reader.parts.length, sent.length);
  v.reader.parts.forEach((p, i) => {
    assert.deepEqual(p.headers, { 'content-type': 'image/jpeg' });
    assert.ok(p.body.equals(sent[i]!), `frame ${i} byte-exact`);
  });
  assert.deepEqual(v.reader.announced, { 'content-type': 'image/jpeg' });
  const [st] = s.stats();
  assert.deepEqual({ ...st, bytesQueued: 0 }, { name: 'cam', viewers: 1, framesPublished: 25, framesSkipped: 0, framesPending: 0, bytesQueued: 0 });
});

test('one published frame is delivered whole and followed by the next part\'s header block', async (t) => {
  const s = await start(t);
  const data = frame(1, 5000);
  await s.site.uplink('single', 'image/png', data);
  const v = await view(`${s.url}/_m/single`);
  defer(t, () => v.close());
  // What makes a browser show the lone frame: nothing else is ever published here.
  await v.until((r) => r.parts.length === 1 && r.announced !== undefined, 'first frame shown');
  assert.ok(v.reader.parts[0]!.body.equals(data));
  assert.deepEqual(v.reader.parts[0]!.headers, { 'content-type': 'image/png' });
  assert.deepEqual(v.reader.announced, { 'content-type': 'image/png' });
  assert.equal(v.reader.closed, false);
});

test('a late viewer gets the latest frame first; two viewers see the same frames', async (t) => {
  const s = await start(t);
  for (let i = 0; i < 5; i++) await s.site.uplink('late', 'image/jpeg', frame(i, 300));
  const a = await view(`${s.url}/_m/late`);
  const b = await view(`${s.url}/_m/late`);
  defer(t, () => (a.close(), b.close()));
  for (const v of [a, b]) await v.until((r) => r.parts.length === 1, 'latest frame');
  for (const v of [a, b]) assert.ok(v.reader.parts[0]!.body.equals(frame(4, 300)));
  await s.site.uplink('late', 'image/jpeg', frame(5, 300));
  for (const v of [a, b]) await v.until((r) => r.parts.length === 2, 'next frame');
  for (const v of [a, b]) assert.ok(v.reader.parts[1]!.body.equals(frame(5, 300)));
  assert.equal(s.stats()[0]!.viewers, 2);
});

test('a frame of another type closes the announced part empty and opens one of its type', async (t) => {
  const s = await start(t);
  await s.site.uplink('mixed', 'image/jpeg', frame(1, 100));
  const v = await view(`${s.url}/_m/mixed`);
  defer(t, () => v.close());
  await v.until((r) => r.parts.length === 1 && r.announced !== undefined, 'jpeg frame');
  await s.site.uplink('mixed', 'image/png', frame(2, 100));
  await v.until((r) => r.parts.length === 3 && r.announced !== undefined, 'png frame');
  await s.site.uplink('mixed', 'image/png', frame(3, 100));
  await v.until((r) => r.parts.length === 4, 'second png frame');
  const parts = v.reader.parts.map((p) => [p.headers['content-type'], p.body.length]);
  assert.deepEqual(parts, [['image/jpeg', 100], ['image/jpeg', 0], ['image/png', 100], ['image/png', 100]]);
  assert.deepEqual(v.reader.frames.map((p) => p.body.readUInt32BE(0)), [1, 2, 3]);
  assert.deepEqual(v.reader.announced, { 'content-type': 'image/png' });
});

test('DELETE ends every viewer with the closing delimiter; the stream is gone afterwards', async (t) => {
  const s = await start(t);
  await s.site.uplink('bye', 'image/jpeg', frame(1, 2000));
  const viewers = await Promise.all([view(`${s.url}/_m/bye`), view(`${s.url}/_m/bye`)]);
  for (const v of viewers) await v.until((r) => r.parts.length === 1, 'frame');
  const del = await request(`${s.url}/_m/bye`, { method: 'DELETE', headers: { Authorization: AUTH } });
  assert.equal(del.status, 200);
  assert.deepEqual(del.json, { ended: true });
  for (const v of viewers) {
    assert.deepEqual(await v.ended, { complete: true });
    assert.equal(v.reader.closed, true);
    assert.deepEqual(v.reader.epilogue.toString(), '\r\n');
    // Frame, then the announced part, closed empty by the close-delimiter.
    assert.deepEqual(v.reader.parts.map((p) => p.body.length), [2000, 0]);
  }
  const gone = await request(`${s.url}/_m/bye`);
  assert.equal(gone.status, 404);
  assert.equal(gone.json?.error, 'NOT_FOUND');
  assert.deepEqual(s.stats(), []);
});

test('DELETE of a stream that is gone or never was answers 200, as Wave does (its unlink() raises on anything else)', async (t) => {
  const s = await start(t, { streamIdleTimeout: 150 });
  const del = (name: string) => request(`${s.url}/_m/${name}`, { method: 'DELETE', headers: { Authorization: AUTH } });
  await s.site.uplink('twice', 'image/jpeg', frame(1, 10));
  assert.deepEqual((await del('twice')).json, { ended: true });
  for (const [name, why] of [['twice', 'unlinked twice'], ['never', 'never published'], ['a%20b/c', 'never published, encoded']] as const) {
    const again = await del(name);
    assert.equal(again.status, 200, why);
    assert.match(String(again.headers['content-type']), /^application\/json/, why);
    assert.deepEqual(again.json, { ended: false }, why);
  }
  // Ended by wharf's own idle timeout: the app's late unlink must not break it.
  await s.site.uplink('idle', 'image/jpeg', frame(1, 10));
  await eventually(() => s.stats().length === 0, 'the idle stream ended itself');
  assert.deepEqual((await del('idle')).json, { ended: false });
  await s.site.unlink('idle');
  // A bad name is still bad input, not "nothing to end".
  assert.equal((await del('a/../b')).status, 400);
  assert.deepEqual(s.stats(), []);
});

test('close() ends every stream the same way, and later publishes are refused', async (t) => {
  const s = await start(t);
  await s.site.uplink('a', 'image/jpeg', frame(1, 10));
  await s.site.uplink('b/c', 'image/jpeg', frame(2, 10));
  const a = await view(`${s.url}/_m/a`);
  const b = await view(`${s.url}/_m/b/c`);
  for (const v of [a, b]) await v.until((r) => r.parts.length === 1, 'frame');
  await s.close();
  for (const v of [a, b]) {
    assert.deepEqual(await v.ended, { complete: true });
    assert.equal(v.reader.closed, true);
  }
  await assert.rejects(s.site.uplink('a', 'image/jpeg', frame(3, 10)), isCode('SHUTTING_DOWN'));
});

test('a viewer that disconnects is removed at once', async (t) => {
  const s = await start(t);
  await s.site.uplink('drop', 'image/jpeg', frame(1, 10));
  const v = await view(`${s.url}/_m/drop`);
  await v.until((r) => r.parts.length === 1, 'frame');
  assert.equal(s.stats()[0]!.viewers, 1);
  v.close();
  await eventually(() => s.stats()[0]!.viewers === 0, 'viewer removed');
  await s.site.uplink('drop', 'image/jpeg', frame(2, 10));
  assert.equal(s.stats()[0]!.framesSkipped, 0);
});

test('HEAD answers the headers only; unknown streams are 404 JSON', async (t) => {
  const s = await start(t);
  assert.equal((await request(`${s.url}/_m/nope`, { method: 'HEAD' })).status, 404);
  const missing = await request(`${s.url}/_m/nope`);
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.json, { error: 'NOT_FOUND', message: 'no such stream' });
  await s.site.uplink('here', 'image/jpeg', frame(1, 10));
  const head = await request(`${s.url}/_m/here`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.match(String(head.headers['content-type']), /^multipart\/x-mixed-replace; boundary=/);
  assert.equal(head.body.length, 0);
  assert.equal(s.stats()[0]!.viewers, 0);
});

test('Wave\'s multipart form publishes the part with its own type', async (t) => {
  const s = await start(t);
  const data = frame(7, 70_000);
  const form = waveForm('image/png', data);
  const res = await request(`${s.url}/_m/wave`, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': form.contentType }, body: form.body });
  assert.equal(res.status, 200);
  const v = await view(`${s.url}/_m/wave`);
  defer(t, () => v.close());
  await v.until((r) => r.parts.length === 1, 'frame');
  assert.ok(v.reader.parts[0]!.body.equals(data));
  assert.equal(v.reader.parts[0]!.headers['content-type'], 'image/png');

  // The same from fetch's FormData, as a browser or Python's httpx would build it.
  const fd = new FormData();
  fd.append('f', new Blob([frame(8, 1234)], { type: 'image/jpeg' }), 'f');
  const viaFetch = await fetch(`${s.url}/_m/wave`, { method: 'POST', headers: { Authorization: AUTH }, body: fd });
  assert.equal(viaFetch.status, 200);
  await v.until((r) => r.frames.length === 2, 'second frame');
  assert.ok(v.reader.frames[1]!.body.equals(frame(8, 1234)));
  assert.equal(v.reader.frames[1]!.headers['content-type'], 'image/jpeg');
});

test('a form part without a type, an empty form and an empty frame are 400', async (t) => {
  const s = await start(t);
  const untyped = waveForm(undefined, frame(1, 10));
  let res = await request(`${s.url}/_m/x`, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': untyped.contentType }, body: untyped.body });
  assert.equal(res.status, 400);
  assert.equal(res.json?.error, 'INVALID_CONTENT_TYPE');
  res = await request(`${s.url}/_m/x`, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': 'multipart/form-data; boundary=zz' }, body: Buffer.from('--zz--\r\n') });
  assert.equal(res.status, 400);
  res = await post(s.url, 'x', 'image/jpeg', Buffer.alloc(0));
  assert.equal(res.status, 400);
  assert.equal(res.json?.error, 'EMPTY_FRAME');
  assert.deepEqual(s.stats(), [], 'no stream was created');
});

test('names may have slashes and any character, percent-encoded per segment', async (t) => {
  const s = await start(t);
  assert.equal(await s.site.uplink('cam/1', 'image/jpeg', frame(1, 10)), '/_m/cam/1');
  const odd = 'caméra 1/x?#%';
  const path = await s.site.uplink(odd, 'image/jpeg', frame(2, 10));
  assert.equal(path, '/_m/cam%C3%A9ra%201/x%3F%23%25');
  for (const [p, seq] of [['/_m/cam/1', 1], [path, 2]] as const) {
    const v = await view(s.url + p);
    await v.until((r) => r.parts.length === 1, p);
    assert.equal(v.reader.parts[0]!.body.readUInt32BE(0), seq);
    v.close();
  }
  assert.equal((await post(s.url, 'cam/2', 'image/gif', frame(3, 10))).status, 200);
  assert.deepEqual(s.stats().map((x) => x.name).sort(), ['cam/1', 'cam/2', odd].sort());
  assert.equal((await request(`${s.url}/_m/cam/2`, { method: 'DELETE', headers: { Authorization: AUTH } })).status, 200);
  await s.site.unlink(odd);
  assert.deepEqual(s.stats().map((x) => x.name), ['cam/1']);
});

test('bad names are 400 INVALID_STREAM_NAME, over HTTP and in-process', async (t) => {
  const s = await start(t);
  const bad = ['', 'a/../b', '..', 'a/./b', 'a//b', 'a/', '%2e%2e', 'a%2F..', '%00', 'a%0Ab', '%7F', 'a%5Cb', '%ZZ', '%C3', 'x'.repeat(257), '%C3%A9'.repeat(129)];
  for (const name of bad) {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await request(`${s.url}/_m/${name}`, { method, headers: { Authorization: AUTH, 'Content-Type': 'image/jpeg', 'Content-Length': 1 }, body: Buffer.from('x') });
      assert.equal(res.status, 400, `${method} ${name}`);
      assert.equal(res.json?.error, 'INVALID_STREAM_NAME', `${method} ${name}`);
    }
  }
  for (const name of ['', '../x', 'a\\b', 'a\u0000', 'a\u0085', '\ud800', 'é'.repeat(129), '/x']) {
    await assert.rejects(s.site.uplink(name, 'image/jpeg', frame(1, 10)), isCode('INVALID_STREAM_NAME'), JSON.stringify(name));
    await assert.rejects(s.site.unlink(name), isCode('INVALID_STREAM_NAME'), JSON.stringify(name));
  }
  assert.equal((await post(s.url, 'x'.repeat(256), 'image/jpeg', frame(1, 10))).status, 200, '256 bytes is fine');
});

test('a missing or malformed frame type is 400 INVALID_CONTENT_TYPE', async (t) => {
  const s = await start(t);
  for (const type of [undefined, '', 'jpeg', 'image/', '/png', 'image/jpeg extra', 'image/jpeg; q', 'ima ge/png', 'image/png;a="x', 'image/' + 'x'.repeat(300)]) {
    const res = await post(s.url, 't', type, frame(1, 10));
    assert.equal(res.status, 400, String(type));
    assert.equal(res.json?.error, 'INVALID_CONTENT_TYPE', String(type));
  }
  for (const type of ['image/jpeg\r\nSet-Cookie: a=b', 'image/jpeg\n', 'text']) {
    await assert.rejects(s.site.uplink('t', type, frame(1, 10)), isCode('INVALID_CONTENT_TYPE'));
  }
  for (const type of ['image/svg+xml', 'IMAGE/JPEG', 'image/jpeg; q=1', 'image/png ; name="a b\\"c"']) {
    assert.equal((await post(s.url, 't', type, frame(1, 10))).status, 200, type);
  }
  const v = await view(`${s.url}/_m/t`);
  defer(t, () => v.close());
  await v.until((r) => r.parts.length === 1, 'frame');
  assert.equal(v.reader.parts[0]!.headers['content-type'], 'image/png ; name="a b\\"c"');
});

test('a frame over limits.frameSize is 413, raw, chunked, multipart and in-process', async (t) => {
  const s = await start(t, { frameSize: 64 * 1024 });
  const atLimit = frame(1, 64 * 1024);
  assert.equal((await post(s.url, 'big', 'image/jpeg', atLimit)).status, 200);
  let res = await post(s.url, 'big', 'image/jpeg', frame(2, 64 * 1024 + 1));
  assert.equal(res.status, 413);
  assert.equal(res.json?.error, 'LIMIT_FRAME_SIZE');
  // Chunked, with no Content-Length, far past the limit: refused once the limit is crossed.
  res = await request(`${s.url}/_m/big`, {
    method: 'POST',
    headers: { Authorization: AUTH, 'Content-Type': 'image/jpeg' },
    body: (req) => {
      let sent = 0;
      const more = (): void => {
        while (sent < 64 * 1024 * 1024) {
          sent += 16 * 1024;
          if (!req.write(Buffer.alloc(16 * 1024))) return void req.once('drain', more);
        }
        req.end();
      };
      req.on('error', () => {});
      more();
    },
  });
  assert.equal(res.status, 413);
  assert.equal(res.headers.connection, 'close');
  const form = waveForm('image/jpeg', frame(3, 64 * 1024 + 1));
  res = await request(`${s.url}/_m/big`, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': form.contentType }, body: form.body });
  assert.equal(res.status, 413);
  await assert.rejects(s.site.uplink('big', 'image/jpeg', frame(4, 64 * 1024 + 1)), isCode('LIMIT_FRAME_SIZE'));
  assert.equal(s.stats()[0]!.framesPublished, 1);
});

/** A frame that announces `length` bytes and sends only `sent` of them, then waits for the answer. */
function partialFrame(url: string, name: string, length: number, sent: number): ReturnType<typeof request> {
  return request(`${url}/_m/${name}`, {
    method: 'POST',
    headers: { Authorization: AUTH, 'Content-Type': 'image/jpeg', 'Content-Length': length },
    body: (req) => {
      req.on('error', () => {});
      req.write(Buffer.alloc(sent));
    },
  });
}

test('a frame body that stops arriving is 408 after limits.uploadIdleTimeout', async (t) => {
  const s = await start(t, { uploadIdleTimeout: 100 });
  const res = await partialFrame(s.url, 'slow', 1000, 10);
  assert.equal(res.status, 408);
  assert.equal(res.json?.error, 'BODY_TIMEOUT');
  assert.deepEqual(s.stats(), []);
});

test('limits.streams and limits.viewersPerStream: 503 past them', async (t) => {
  const s = await start(t, { streams: 1, viewersPerStream: 1 });
  assert.equal((await post(s.url, 'one', 'image/jpeg', frame(1, 10))).status, 200);
  const two = await post(s.url, 'two', 'image/jpeg', frame(1, 10));
  assert.equal(two.status, 503);
  assert.equal(two.json?.error, 'TOO_MANY_STREAMS');
  const v = await view(`${s.url}/_m/one`);
  defer(t, () => v.close());
  const second = await request(`${s.url}/_m/one`);
  assert.equal(second.status, 503);
  assert.equal(second.json?.error, 'TOO_MANY_VIEWERS');
});

test('a stream with no frame for limits.streamIdleTimeout ends itself', async (t) => {
  const s = await start(t, { streamIdleTimeout: 150 });
  await s.site.uplink('idle', 'image/jpeg', frame(1, 10));
  const v = await view(`${s.url}/_m/idle`);
  assert.deepEqual(await v.ended, { complete: true });
  assert.equal(v.reader.closed, true);
  assert.equal((await request(`${s.url}/_m/idle`)).status, 404);
});

test('site.unlink of an unknown stream resolves, as DELETE answers 200; aborted calls reject', async (t) => {
  const s = await start(t);
  assert.equal(await s.site.unlink('never'), undefined);
  await s.site.uplink('once', 'image/jpeg', frame(1, 10));
  await s.site.unlink('once');
  await s.site.unlink('once');
  assert.deepEqual(s.stats(), []);
  const ac = new AbortController();
  ac.abort();
  // Every abort path rejects with the one ABORTED error, as files.site's upload and the client do.
  await assert.rejects(s.site.uplink('x', 'image/jpeg', frame(1, 10), { signal: ac.signal }), { name: 'WharfError', code: 'ABORTED', status: 499 });
  await assert.rejects(s.site.unlink('x', { signal: ac.signal }), { name: 'WharfError', code: 'ABORTED', status: 499 });
  await assert.rejects(s.site.uplink('x', 'image/jpeg', new Uint8Array(0)), isCode('EMPTY_FRAME'));
  // The frame is copied: the caller may reuse its buffer at once.
  const mine = frame(1, 100);
  await s.site.uplink('copy', 'image/jpeg', mine);
  mine.fill(0);
  const v = await view(`${s.url}/_m/copy`);
  defer(t, () => v.close());
  await v.until((r) => r.parts.length === 1, 'frame');
  assert.ok(v.reader.parts[0]!.body.equals(frame(1, 100)));
});

test('auth: POST and DELETE need the access key, GET and HEAD are open', async (t) => {
  const s = await start(t);
  const wrong = 'Basic ' + Buffer.from('app:not-the-secret').toString('base64');
  const unknown = 'Basic ' + Buffer.from('nobody:app-secret').toString('base64');
  const data = frame(1, 100);
  for (const authorization of [undefined, wrong, unknown, 'Bearer app-secret', 'Basic !!!']) {
    const headers: Record<string, string | number> = { 'Content-Type': 'image/jpeg', 'Content-Length': data.length };
    if (authorization) headers['Authorization'] = authorization;
    const pub = await request(`${s.url}/_m/guarded`, { method: 'POST', headers, body: data });
    assert.equal(pub.status, 401, `POST with ${authorization}`);
    assert.equal(pub.headers['www-authenticate'], 'Basic realm="wharf"');
    assert.deepEqual(s.stats(), [], 'nothing published');
  }
  assert.equal((await post(s.url, 'guarded', 'image/jpeg', data)).status, 200);
  const v = await view(`${s.url}/_m/guarded`);
  await v.until((r) => r.parts.length === 1, 'frame, with no credentials');
  assert.equal((await request(`${s.url}/_m/guarded`, { method: 'HEAD' })).status, 200);
  for (const authorization of [undefined, wrong, unknown]) {
    const del = await request(`${s.url}/_m/guarded`, { method: 'DELETE', headers: authorization ? { Authorization: authorization } : {} });
    assert.equal(del.status, 401, `DELETE with ${authorization}`);
  }
  assert.equal(s.stats()[0]!.viewers, 1, 'the stream lives on');
  assert.equal((await request(`${s.url}/_m/guarded`, { method: 'DELETE', headers: { Authorization: AUTH } })).status, 200);
  assert.equal((await v.ended).complete, true);
});

test('a Content-Length over the frame limit is refused before the body is read', async (t) => {
  const s = await start(t, { frameSize: 1024 });
  const res = await partialFrame(s.url, 'huge', 1024 * 1024 * 1024, 1024);
  assert.equal(res.status, 413);
  assert.equal(res.json?.error, 'LIMIT_FRAME_SIZE');
  assert.deepEqual(s.stats(), []);
});

test('a viewer gone before an async authorize answers is never subscribed', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-streams-'));
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let asked!: (req: IncomingMessage) => void;
  const asking = new Promise<IncomingMessage>((r) => (asked = r));
  const files = createFileServer({
    dataDir,
    accessKeys: { app: 'app-secret' },
    authorize: async (req) => {
      asked(req);
      await held;
      return true;
    },
  });
  const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
  defer(t, async () => {
    await files.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await files.site.uplink('late', 'image/jpeg', frame(1, 10));
  const socket = net.connect({ host: '127.0.0.1', port: Number(new URL(url).port) });
  socket.on('error', () => {});
  socket.write('GET /_m/late HTTP/1.1\r\nHost: x\r\n\r\n');
  const req = await asking;
  // The server has seen the viewer leave before authorize answers.
  const seen = new Promise((r) => req.socket.once('close', r));
  socket.destroy();
  await seen;
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(files.streamStats()[0]!.viewers, 0);
  // A viewer that stays is subscribed as usual.
  const v = await view(`${url}/_m/late`);
  defer(t, () => v.close());
  await v.until((r) => r.parts.length === 1, 'frame');
  assert.equal(files.streamStats()[0]!.viewers, 1);
});

test('a publisher that disconnects mid-frame publishes nothing and breaks nothing', async (t) => {
  const s = await start(t);
  const socket = net.connect({ host: '127.0.0.1', port: Number(new URL(s.url).port) });
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  socket.write(`POST /_m/cut HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n`);
  socket.write(Buffer.alloc(5000));
  await new Promise((r) => setTimeout(r, 50)); // let the server start reading the body
  socket.destroy();
  await new Promise((r) => setTimeout(r, 50)); // and notice the abort
  assert.deepEqual(s.stats(), []);
  assert.equal((await post(s.url, 'cut', 'image/jpeg', frame(1, 10))).status, 200);
});

/**
 * One raw HTTP/1.x response off `bytes`: status, headers, the body (de-chunked with a strict reader when
 * chunked) and where it ends. Undefined while incomplete.
 */
function rawResponse(bytes: Buffer, closed: boolean): { status: number; headers: Map<string, string>; body: Buffer; end: number } | undefined {
  const headEnd = bytes.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine, ...lines] = bytes.subarray(0, headEnd).toString('latin1').split('\r\n');
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  const status = Number(statusLine!.split(' ')[1]);
  let at = headEnd + 4;
  if (headers.get('transfer-encoding') !== 'chunked') {
    if (headers.has('content-length')) {
      const end = at + Number(headers.get('content-length'));
      return bytes.length < end ? undefined : { status, headers, body: bytes.subarray(at, end), end };
    }
    return closed ? { status, headers, body: bytes.subarray(at), end: bytes.length } : undefined;
  }
  const body: Buffer[] = [];
  for (;;) {
    const lf = bytes.indexOf('\r\n', at);
    if (lf < 0) return undefined;
    const line = bytes.subarray(at, lf).toString('latin1');
    assert.match(line, /^[0-9a-f]+$/, 'chunk-size line');
    const size = parseInt(line, 16);
    at = lf + 2;
    if (bytes.length < at + size + 2) return undefined;
    assert.equal(bytes.subarray(at + size, at + size + 2).toString('latin1'), '\r\n', 'CRLF after chunk data');
    body.push(bytes.subarray(at, at + size));
    at += size + 2;
    if (size === 0) return { status, headers, body: Buffer.concat(body), end: at };
  }
}

function rawViewer(url: string, request: string): { bytes: () => Buffer; closed: () => boolean; write(s: string): void; destroy(): void } {
  const socket = net.connect({ host: '127.0.0.1', port: Number(new URL(url).port) });
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('close', () => (closed = true));
  socket.on('error', () => {});
  socket.write(request);
  return { bytes: () => Buffer.concat(chunks), closed: () => closed, write: (s) => void socket.write(s), destroy: () => socket.destroy() };
}

test('on the wire: a well-formed chunked body that ends where it says, the connection kept for the next request', async (t) => {
  const s = await start(t);
  const sent = [frame(1, 70_000), frame(2, 3), frame(3, 4096)];
  await s.site.uplink('wire', 'image/jpeg', sent[0]!);
  const v = rawViewer(s.url, 'GET /_m/wire HTTP/1.1\r\nHost: x\r\n\r\n');
  defer(t, () => v.destroy());
  await eventually(() => v.bytes().includes('\r\n\r\n'), 'response head');
  await s.site.uplink('wire', 'image/png', sent[1]!); // another type: an empty part, then a png one
  await s.site.uplink('wire', 'image/png', sent[2]!);
  await s.site.unlink('wire');
  let first: ReturnType<typeof rawResponse>;
  await eventually(() => (first = rawResponse(v.bytes(), v.closed())) !== undefined, 'the chunked body\'s last chunk');
  assert.equal(first!.status, 200);
  assert.equal(first!.headers.get('transfer-encoding'), 'chunked');
  const reader = new MixedReplaceReader(boundaryOf(first!.headers.get('content-type')));
  reader.push(first!.body);
  assert.equal(reader.closed, true);
  assert.deepEqual(reader.frames.map((p) => p.headers['content-type']), ['image/jpeg', 'image/png', 'image/png']);
  reader.frames.forEach((p, i) => assert.ok(p.body.equals(sent[i]!), `frame ${i} byte-exact`));
  assert.equal(reader.epilogue.toString(), '\r\n'); // the close-delimiter's line end, nothing after it
  // The body ended exactly at its last chunk: the same connection answers the next request.
  v.write('GET /_m/wire HTTP/1.1\r\nHost: x\r\n\r\n');
  let second: ReturnType<typeof rawResponse>;
  await eventually(() => (second = rawResponse(v.bytes().subarray(first!.end), v.closed())) !== undefined, 'the second answer');
  assert.equal(second!.status, 404);
  assert.equal(v.closed(), false);
});

test('on the wire: an HTTP/1.0 viewer gets the parts unchunked, ended by the close-delimiter and the connection\'s close', async (t) => {
  const s = await start(t);
  const sent = [frame(1, 20_000), frame(2, 50)];
  await s.site.uplink('old', 'image/jpeg', sent[0]!);
  const v = rawViewer(s.url, 'GET /_m/old HTTP/1.0\r\n\r\n');
  defer(t, () => v.destroy());
  await eventually(() => v.bytes().includes('\r\n\r\n'), 'response head');
  await s.site.uplink('old', 'image/jpeg', sent[1]!);
  await s.site.unlink('old');
  await eventually(() => v.closed(), 'connection closed');
  const answer = rawResponse(v.bytes(), true)!;
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get('transfer-encoding'), undefined);
  const reader = new MixedReplaceReader(boundaryOf(answer.headers.get('content-type')));
  reader.push(answer.body);
  assert.equal(reader.closed, true);
  assert.equal(reader.frames.length, 2);
  reader.frames.forEach((p, i) => assert.ok(p.body.equals(sent[i]!), `frame ${i} byte-exact`));
});
