// Faults (issue 8 §3), each against a wharf server in a child process (its descriptors and fd limit
// its own): the disk filling up mid-upload and mid-directory-upload, the data directory removed or
// made read-only under a running server, running out of descriptors (EMFILE), slowloris headers, a
// body that stops coming, a client that never reads its download, a viewer that never reads its
// stream. Each: a clear error to the affected client, nothing partial visible, others served, and the
// server healthy after — its descriptors back to where they were.
//
// Disk faults use a real tmpfs (`mount -t tmpfs -o size=2m`, remounted read-only for EROFS): the
// tests run as root. If mounting is not permitted (EPERM, an unprivileged container) those tests
// are skipped, saying so; any other mount failure fails them.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { basicAuth } from '../lib/http/access-keys.js';
import type { Limits } from '../lib/common/limits.js';
import { eventually, formBody, matchesPattern, patternBytes, send, settledFds, sleep, startChild, type Answer, type Child, type FormFile } from './helpers/load-gen.js';
import { APP_KEY } from './helpers/keys.js';
import { staged } from './helpers/uploads.js';
import { rawConnect, type RawConnection } from './helpers/raw-http.js';
import { defer } from './helpers/defer.js';

const run = promisify(execFile);
const KEY = APP_KEY;
const AUTH = basicAuth(KEY.id, KEY.secret);
const MiB = 1024 * 1024;

async function tempRoot(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'wharf-faults-'));
  defer(t, () => rm(root, { recursive: true, force: true }));
  return root;
}

/** Mounts a tmpfs of `size` at `dir`; false (the test skipped, with the reason) when mounting is not permitted. */
async function mountTmpfs(t: TestContext, dir: string, size: string): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '');
    if (/permission denied|not permitted|EPERM|must be superuser/i.test(stderr)) {
      t.skip(`cannot mount a tmpfs here (EPERM: ${stderr.trim()}); the disk-fault tests need root`);
      return false;
    }
    throw err;
  }
  defer(t, () => run('umount', ['-l', dir]));
  return true;
}

async function server(t: TestContext, options: Parameters<typeof startChild>[0], opts: Parameters<typeof startChild>[1] = {}): Promise<Child> {
  const child = await startChild({ accessKeys: { [KEY.id]: KEY.secret }, ...options }, opts);
  defer(t, () => child.stop());
  return child;
}

function upload(child: Child, files: FormFile[], headers: Record<string, string> = {}): Promise<Answer> {
  const form = formBody(files);
  return send(child.url, '/_f/', {
    method: 'POST',
    headers: { 'Content-Type': form.contentType, 'Content-Length': form.length, Authorization: AUTH, ...headers },
    body: form.chunks(),
  });
}

const json = (a: Answer): unknown => JSON.parse(a.body.toString('utf8'));
const filesOf = (a: Answer): string[] => (json(a) as { files: string[] }).files;

/** The upload ids committed under `dataDir`, and that nothing is left in its temp area. */
async function committed(dataDir: string): Promise<string[]> {
  await eventually(async () => (await staged(dataDir).catch(() => [])).length === 0, 'nothing staged');
  return (await readdir(join(dataDir, 'f'))).sort();
}

/** GETs `url` and checks it is the pattern file at `offset` of `size` bytes. */
async function checkFile(child: Child, url: string, offset: number, size: number): Promise<void> {
  const a = await send(child.url, url);
  assert.equal(a.status, 200, `GET ${url}`);
  assert.equal(a.body.length, size, `GET ${url}: size`);
  assert.ok(matchesPattern(a.body, offset, 0), `GET ${url}: content`);
}

// ---------------------------------------------------------------------------------------------
// Disk

test('faults: the disk fills up mid-upload and mid-directory-upload → 507, nothing partial, healthy after', async (t) => {
  const root = await tempRoot(t);
  const dataDir = join(root, 'data');
  if (!(await mountTmpfs(t, dataDir, '2m'))) return;
  const child = await server(t, { dataDir });
  const fds = await child.fds();

  const first = await upload(child, [{ filename: 'keep.bin', size: 100 * 1024, offset: 7 }]);
  assert.equal(first.status, 200);
  const kept = filesOf(first)[0]!;
  const before = await committed(dataDir);

  // One file larger than the disk; meanwhile a download of what is there is served.
  const [full, read] = await Promise.all([
    upload(child, [{ filename: 'big.bin', size: 3 * MiB, offset: 1 }]),
    checkFile(child, kept, 7, 100 * 1024),
  ]);
  void read;
  assert.equal(full.status, 507);
  assert.equal(full.code, 'STORAGE_FULL');
  assert.deepEqual(await committed(dataDir), before, 'nothing of the refused upload is stored');

  // Several files, the first ones fitting: all or nothing.
  const several = await upload(child, [
    { filename: 'a.bin', size: 200 * 1024, offset: 2 },
    { filename: 'b.bin', size: 300 * 1024, offset: 3 },
    { filename: 'c.bin', size: 3 * MiB, offset: 4 },
  ]);
  assert.equal(several.status, 507);
  assert.equal(several.code, 'STORAGE_FULL');
  assert.deepEqual(await committed(dataDir), before);

  // A directory upload whose third file does not fit.
  const dir = await upload(child, [
    { filename: 'top.txt', size: 100 * 1024, offset: 5 },
    { filename: 'sub/deeper/mid.bin', size: 500 * 1024, offset: 6 },
    { filename: 'sub/last.bin', size: 3 * MiB, offset: 8 },
  ], { 'Wave-Directory-Upload': 'True' });
  assert.equal(dir.status, 507);
  assert.equal(dir.code, 'STORAGE_FULL');
  assert.deepEqual(await committed(dataDir), before);

  // Healthy after: the space is back, uploads and downloads work, descriptors are back.
  const after = await upload(child, [{ filename: 'after.bin', size: 1 * MiB, offset: 9 }]);
  assert.equal(after.status, 200, after.body.toString());
  await checkFile(child, filesOf(after)[0]!, 9, 1 * MiB);
  const afterDir = await upload(child, [{ filename: 'x/y.bin', size: 300 * 1024, offset: 10 }], { 'Wave-Directory-Upload': 'True' });
  assert.equal(afterDir.status, 200);
  await checkFile(child, `${filesOf(afterDir)[0]!}/x/y.bin`, 10, 300 * 1024);
  await eventually(async () => (await child.fds()) === fds, 'server descriptors back to the baseline');
  assert.equal(child.stderr(), '');
});

test('faults: the data directory made read-only while running → 503 READ_ONLY, reads go on, healthy when writable again', async (t) => {
  const root = await tempRoot(t);
  const dataDir = join(root, 'data');
  if (!(await mountTmpfs(t, dataDir, '16m'))) return;
  const child = await server(t, { dataDir });
  const fds = await child.fds();
  const first = await upload(child, [{ filename: 'keep.bin', size: 200 * 1024, offset: 3 }]);
  assert.equal(first.status, 200);
  const kept = filesOf(first)[0]!;
  const id = kept.split('/')[2]!;
  const before = await committed(dataDir);

  await run('mount', ['-o', 'remount,ro', dataDir]);
  const refused = await upload(child, [{ filename: 'ro.bin', size: 500 * 1024, offset: 1 }]);
  assert.equal(refused.status, 503);
  assert.equal(refused.code, 'READ_ONLY');
  const dirRefused = await upload(child, [{ filename: 'd/ro.bin', size: 10 * 1024, offset: 1 }], { 'Wave-Directory-Upload': 'True' });
  assert.equal(dirRefused.status, 503);
  assert.equal(dirRefused.code, 'READ_ONLY');
  const del = await send(child.url, `/_f/${id}`, { method: 'DELETE', headers: { Authorization: AUTH } });
  assert.equal(del.status, 503);
  assert.equal(del.code, 'READ_ONLY');
  await checkFile(child, kept, 3, 200 * 1024);

  await run('mount', ['-o', 'remount,rw', dataDir]);
  assert.deepEqual(await committed(dataDir), before, 'nothing stored, nothing removed while read-only');
  const after = await upload(child, [{ filename: 'rw.bin', size: 500 * 1024, offset: 4 }]);
  assert.equal(after.status, 200);
  await checkFile(child, filesOf(after)[0]!, 4, 500 * 1024);
  assert.equal((await send(child.url, `/_f/${id}`, { method: 'DELETE', headers: { Authorization: AUTH } })).status, 200);
  await eventually(async () => (await child.fds()) === fds, 'server descriptors back to the baseline');
});

test('faults: the data directory removed while running → clear 5xx; uploads work again once it is back', async (t) => {
  const root = await tempRoot(t);
  const dataDir = join(root, 'data');
  await mkdir(dataDir);
  const child = await server(t, { dataDir });
  const fds = await child.fds();
  const first = await upload(child, [{ filename: 'a.bin', size: 64 * 1024, offset: 1 }]);
  assert.equal(first.status, 200);

  await rm(dataDir, { recursive: true, force: true });
  assert.equal((await send(child.url, filesOf(first)[0]!)).status, 404, 'a removed upload is gone');
  const refused = await upload(child, [{ filename: 'b.bin', size: 64 * 1024, offset: 2 }]);
  assert.ok(refused.status >= 500 && refused.status < 600, `a 5xx, got ${refused.status}`);
  assert.equal(typeof refused.code, 'string', 'a JSON error');
  assert.deepEqual(await readdir(join(dataDir, 'f')).catch(() => []), [], 'nothing stored');

  // The operator puts the (empty) data directory back, as a remount or a restore would.
  await rm(dataDir, { recursive: true, force: true });
  await mkdir(dataDir);
  const after = await upload(child, [{ filename: 'c.bin', size: 64 * 1024, offset: 3 }]);
  assert.equal(after.status, 200, `upload once the data directory is back: ${after.status} ${after.body.toString()}`);
  await checkFile(child, filesOf(after)[0]!, 3, 64 * 1024);
  await eventually(async () => (await child.fds()) === fds, 'server descriptors back to the baseline');
});

// ---------------------------------------------------------------------------------------------
// Descriptors

test('faults: out of file descriptors (EMFILE) → 503 BUSY to those that cannot open, the others served, recovers', async (t) => {
  const root = await tempRoot(t);
  const dataDir = join(root, 'data');
  const pub = join(root, 'public');
  await mkdir(pub, { recursive: true });
  const BIG = 8 * MiB;
  await writeFile(join(pub, 'big.bin'), patternBytes(3, 0, BIG));
  const LIMIT = 64;
  const child = await server(t, { dataDir, publicDirs: [`/pub/@${pub}`] }, { fdLimit: LIMIT });
  const base = await child.fds();

  // Connections first, while descriptors last (an accept() that hits EMFILE is the kernel's
  // business, not an answer wharf could give), leaving two free.
  const conns: RawConnection[] = [];
  defer(t, () => {
    for (const c of conns) c.sock.destroy();
  });
  const want = LIMIT - base - 2;
  for (let i = 0; i < want; i++) conns.push(await rawConnect(child.port));
  await eventually(async () => (await child.fds()) >= base + want, 'every connection accepted');
  const uploader = conns.pop()!;
  // Every download holds its file open while its reader does not read: the first ones take the
  // last descriptors, the rest cannot open theirs. A 200's reader stops at its headers: one that
  // went on could take all 8 MiB while the others are waited for, freeing its file's descriptor.
  const answered = (c: RawConnection): boolean => c.received().includes('\r\n\r\n');
  const status = (c: RawConnection): number => Number(c.received().subarray(9, 12).toString());
  let holding = true;
  for (const c of conns) {
    c.sock.pause();
    c.sock.on('data', () => {
      if (holding && answered(c) && status(c) === 200) c.sock.pause();
    });
    c.sock.write('GET /pub/big.bin HTTP/1.1\r\nHost: wharf\r\n\r\n');
  }
  await eventually(async () => {
    for (const c of conns) if (!answered(c)) c.sock.resume();
    await sleep(50);
    return conns.every(answered);
  }, 'every download answered');
  const ok = conns.filter((c) => status(c) === 200);
  const busy = conns.filter((c) => status(c) === 503);
  assert.ok(ok.length >= 1, 'some downloads got their file');
  assert.ok(busy.length >= 1, `some did not (${conns.length} downloads, ${LIMIT} descriptors)`);
  assert.equal(ok.length + busy.length, conns.length, `only 200 or 503: ${conns.map(status).join(',')}`);
  console.log(`EMFILE: fd limit ${LIMIT}, ${base} in use at rest; ${conns.length} downloads at once → ${ok.length} served (200), ${busy.length} refused 503 BUSY`);
  for (const c of busy) {
    const a = await c.answer();
    assert.match(String(a.headers.find(([k]) => k === 'content-type')?.[1]), /^application\/json/);
    assert.equal((JSON.parse(a.body.toString()) as { error: string }).error, 'BUSY');
  }

  // An upload now cannot open its file either: 503, and nothing of it stays.
  const form = formBody([{ filename: 'up.bin', size: 100 * 1024, offset: 5 }]);
  uploader.sock.write(`POST /_f/ HTTP/1.1\r\nHost: wharf\r\nAuthorization: ${AUTH}\r\nContent-Type: ${form.contentType}\r\nContent-Length: ${form.length}\r\n\r\n`);
  for (const chunk of form.chunks()) uploader.sock.write(chunk);
  const refused = await uploader.answer();
  assert.equal(refused.status, 503);
  assert.equal((JSON.parse(refused.body.toString()) as { error: string }).error, 'BUSY');

  // The downloads that did open are whole and right.
  holding = false;
  for (const c of ok) {
    c.sock.resume();
    const a = await c.answer();
    assert.equal(a.body.length, BIG);
    assert.ok(matchesPattern(a.body, 3, 0), 'download content');
  }
  for (const c of conns) c.sock.destroy();
  uploader.sock.destroy();
  await eventually(async () => (await child.fds()) === base, 'server descriptors back to the baseline');
  assert.deepEqual(await committed(dataDir), [], 'nothing of the refused upload stored');

  // Recovered: downloads and uploads work.
  const a = await send(child.url, '/pub/big.bin');
  assert.equal(a.status, 200);
  assert.ok(matchesPattern(a.body, 3, 0));
  const up = await upload(child, [{ filename: 'later.bin', size: 100 * 1024, offset: 6 }]);
  assert.equal(up.status, 200);
  await checkFile(child, filesOf(up)[0]!, 6, 100 * 1024);
});

// ---------------------------------------------------------------------------------------------
// Slow and stalled clients

test('faults: slowloris — headers byte by byte; others served, each closed after headersTimeout, nothing held', async (t) => {
  const root = await tempRoot(t);
  const pub = join(root, 'public');
  await mkdir(pub, { recursive: true });
  await writeFile(join(pub, 'small.txt'), patternBytes(1, 0, 4096));
  const child = await server(t, { dataDir: join(root, 'data'), publicDirs: [`/pub/@${pub}`], limits: { headersTimeout: 1000 } });
  const base = await child.fds();

  const SLOW = 40;
  const slow: RawConnection[] = [];
  for (let i = 0; i < SLOW; i++) slow.push(await rawConnect(child.port));
  defer(t, () => {
    for (const c of slow) c.sock.destroy();
  });
  await eventually(async () => (await child.fds()) >= base + SLOW, 'every slow connection accepted');
  const head = 'GET /pub/small.txt HTTP/1.1\r\nHost: wharf\r\nX-Slow: ';
  const started = Date.now();
  let sent = 0;
  const drip = setInterval(() => {
    for (const c of slow) if (!c.isClosed()) c.sock.write(sent < head.length ? head[sent]! : 'a');
    sent++;
  }, 100);
  defer(t, () => clearInterval(drip));

  // Others are served meanwhile, on fresh and kept-alive connections.
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  defer(t, () => agent.destroy());
  const served = await Promise.all(Array.from({ length: 40 }, () => send(child.url, '/pub/small.txt', { agent })));
  for (const a of served) {
    assert.equal(a.status, 200);
    assert.ok(matchesPattern(a.body, 1, 0));
  }
  const openWhileServed = slow.filter((c) => !c.isClosed()).length;

  // The server closes every slow connection itself (408 or a plain close): the test never does.
  await Promise.all(slow.map((c) => c.closed));
  const closedAfter = Date.now() - started;
  clearInterval(drip);
  console.log(`slowloris: ${SLOW} connections dripping headers; 40 other requests served while ${openWhileServed} of them were open; all closed by the server ${closedAfter} ms after the first byte (headersTimeout 1000 ms)`);
  for (const c of slow) {
    const got = c.received().toString('latin1');
    assert.ok(got === '' || got.startsWith('HTTP/1.1 408'), `a slow client got ${JSON.stringify(got.slice(0, 60))}`);
  }
  agent.destroy();
  await eventually(async () => (await child.fds()) === base, 'server descriptors back to the baseline');
});

test('faults: an upload body that stops coming → 408 after uploadIdleTimeout, nothing stored', async (t) => {
  const root = await tempRoot(t);
  const dataDir = join(root, 'data');
  const child = await server(t, { dataDir, limits: { uploadIdleTimeout: 1000 } });
  const base = await child.fds();
  const form = formBody([{ filename: 'stalled.bin', size: 1 * MiB, offset: 2 }]);
  const c = await rawConnect(child.port);
  defer(t, () => c.sock.destroy());
  c.sock.write(`POST /_f/ HTTP/1.1\r\nHost: wharf\r\nAuthorization: ${AUTH}\r\nContent-Type: ${form.contentType}\r\nContent-Length: ${form.length}\r\n\r\n`);
  let written = 0;
  for (const chunk of form.chunks()) {
    if (written > 300 * 1024) break;
    c.sock.write(chunk);
    written += chunk.length;
  }
  const a = await c.answer();
  assert.equal(a.status, 408);
  assert.equal((JSON.parse(a.body.toString()) as { error: string }).error, 'BODY_TIMEOUT');
  await c.closed;
  assert.deepEqual(await committed(dataDir), []);
  await eventually(async () => (await child.fds()) === base, 'server descriptors back to the baseline');
  const ok = await upload(child, [{ filename: 'fine.bin', size: 100 * 1024, offset: 3 }]);
  assert.equal(ok.status, 200);
});

const STALL_FILE = 48 * MiB;

/** A server publishing `<root>/public` as /pub with a STALL_FILE-byte big.bin (pattern 9) in it, and its descriptor count at rest. */
async function downloadServer(t: TestContext, limits: Partial<Limits> = {}): Promise<{ child: Child; pub: string; base: number }> {
  const root = await tempRoot(t);
  const pub = join(root, 'public');
  await mkdir(pub, { recursive: true });
  await writeFile(join(pub, 'big.bin'), patternBytes(9, 0, STALL_FILE));
  const child = await server(t, { dataDir: join(root, 'data'), publicDirs: [`/pub/@${pub}`], limits });
  return { child, pub, base: await child.fds() };
}

/**
 * `count` connections that ask for /pub/big.bin and never read; resolves once each holds its socket
 * and its file (the server has stopped writing to it: backpressure). Destroyed when the test ends.
 */
async function stalledDownloads(t: TestContext, child: Child, base: number, count: number): Promise<RawConnection[]> {
  const stalled: RawConnection[] = [];
  defer(t, () => {
    for (const c of stalled) c.sock.destroy();
  });
  for (let i = 0; i < count; i++) {
    const c = await rawConnect(child.port);
    c.sock.pause();
    c.sock.write('GET /pub/big.bin HTTP/1.1\r\nHost: wharf\r\n\r\n');
    stalled.push(c);
  }
  await eventually(async () => (await child.fds()) === base + 2 * count, 'each stalled download holds its socket and its file');
  return stalled;
}

test('faults: a client that never reads its download; others served; its descriptors freed once it is gone', async (t) => {
  const { child, pub, base } = await downloadServer(t);
  await writeFile(join(pub, 'small.txt'), patternBytes(1, 0, 4096));

  const stalled = await stalledDownloads(t, child, base, 4);

  const served = await Promise.all([
    ...Array.from({ length: 30 }, () => send(child.url, '/pub/small.txt')),
    send(child.url, '/pub/big.bin', { headers: { Range: 'bytes=1000000-2999999' } }),
  ]);
  for (const a of served.slice(0, 30)) {
    assert.equal(a.status, 200);
    assert.ok(matchesPattern(a.body, 1, 0));
  }
  const range = served[30]!;
  assert.equal(range.status, 206);
  assert.equal(range.body.length, 2_000_000);
  assert.ok(matchesPattern(range.body, 9, 1_000_000));
  const whole = await send(child.url, '/pub/big.bin');
  assert.equal(whole.body.length, STALL_FILE);
  assert.ok(matchesPattern(whole.body, 9, 0));

  for (const c of stalled) c.sock.destroy();
  await eventually(async () => (await child.fds()) === base, 'the stalled downloads\' sockets and files closed');
  assert.equal(child.stderr(), '');
});

test('faults: a download nobody reads is cut after downloadStallTimeout, its descriptors freed; a slow reader is not', async (t) => {
  const { child, base } = await downloadServer(t, { downloadStallTimeout: 1000 });
  const stalled = await stalledDownloads(t, child, base, 3);
  // The server, not the client, ends them: their sockets and files are released.
  await eventually(async () => (await child.fds()) === base, 'the stalled downloads were cut and their descriptors closed');
  for (const c of stalled) c.sock.resume();
  await Promise.all(stalled.map((c) => c.closed));
  // A client that stops reading now and then, for less than the timeout, gets the whole file. (What
  // counts is the server's progress: a reader that drains a full socket buffer too slowly to reopen
  // the TCP window within the timeout is cut, as with nginx's send_timeout.)
  const slow = connect(child.port, '127.0.0.1');
  defer(t, () => slow.destroy());
  let got = 0;
  let reads = 0;
  slow.on('data', (chunk: Buffer) => {
    got += chunk.length;
    if (++reads > 8) return;
    slow.pause();
    setTimeout(() => slow.resume(), 50);
  });
  slow.write('GET /pub/big.bin HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n');
  await new Promise((resolve) => slow.once('end', resolve));
  assert.ok(got > STALL_FILE, `the slow reader got ${got} bytes`);
  assert.equal(child.stderr(), '');
});

test('faults: an image-stream viewer that never reads is dropped after viewerStallTimeout; the others keep their frames', async (t) => {
  const root = await tempRoot(t);
  const child = await server(t, { dataDir: join(root, 'data'), limits: { viewerStallTimeout: 1000 } });
  const frame = (n: number): Buffer => patternBytes(n, 0, 256 * 1024);
  const publish = (n: number): Promise<Answer> => send(child.url, '/_m/cam', { method: 'POST', headers: { 'Content-Type': 'image/jpeg', Authorization: AUTH }, body: frame(n) });
  assert.equal((await publish(0)).status, 200);
  // The publisher's own connection may still be closing: the baseline is a count that holds still.
  const base = await settledFds(child);

  const stalled = await rawConnect(child.port);
  defer(t, () => stalled.sock.destroy());
  stalled.sock.pause();
  stalled.sock.write('GET /_m/cam HTTP/1.1\r\nHost: wharf\r\n\r\n');
  const viewer = await rawConnect(child.port);
  defer(t, () => viewer.sock.destroy());
  viewer.sock.write('GET /_m/cam HTTP/1.1\r\nHost: wharf\r\n\r\n');
  await eventually(async () => (await child.fds()) >= base + 2, 'both viewers connected');

  // Frames keep coming; the stalled viewer's socket fills and it is dropped, the other one reads on.
  let n = 1;
  await eventually(async () => {
    assert.equal((await publish(n++)).status, 200);
    await sleep(50);
    return (await child.fds()) === base + 1;
  }, 'the stalled viewer dropped', 20_000);
  const seen = viewer.received().length;
  for (let i = 0; i < 5; i++) assert.equal((await publish(n++)).status, 200);
  await eventually(() => viewer.received().length >= seen + 5 * 256 * 1024, 'the reading viewer still gets frames');
  assert.ok(!viewer.isClosed());
  viewer.sock.destroy();
  stalled.sock.destroy();
  await eventually(async () => (await child.fds()) === base, 'server descriptors back to the baseline');
});
