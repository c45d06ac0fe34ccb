// Several wharf nodes as one service: separate processes (the real command) sharing one data dir,
// behind Debian's nginx as a round-robin load balancer. Uploads through any node download through
// every node; a node killed mid-upload leaves nothing visible and takes nobody else's staging
// with it; nodes starting side by side never sweep each other; the health route says when a node
// cannot write its data dir.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { startWharfProcess } from './helpers/command.js';
import { eventually } from './helpers/eventually.js';
import { startNginx } from './helpers/nginx.js';
import { rawConnect, type RawAnswer, type RawConnection } from './helpers/raw-http.js';
import { KEY, MULTIPART, TAIL, form, get, partHead, send, sha256, staged, tempDir, type Answer, type FormPart } from './helpers/uploads.js';

const MiB = 1024 * 1024;

interface Node {
  id: string;
  url: string;
  port: number;
  kill(): Promise<void>;
}

/** `wharf serve` as node `id` on `dataDir`, listening on a free port; killed after the test if still running. */
async function startNode(t: TestContext, dataDir: string, id: string, extra: string[] = []): Promise<Node> {
  const child = await startWharfProcess(t, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--node-id', id, '--log', 'off', ...extra]);
  const listening = child.lines().find((l) => l.event === 'listening');
  assert.equal(listening?.node, id);
  return {
    id,
    url: child.url,
    port: Number(new URL(child.url).port),
    async kill() {
      child.proc.kill('SIGKILL');
      await child.exited;
    },
  };
}

/** The name of node `id`'s staging area (`<id>.<instance>`) in `dataDir`, if it has one. */
async function areaOf(dataDir: string, id: string): Promise<string | undefined> {
  return (await readdir(join(dataDir, '.wharf-tmp'))).find((n) => n.startsWith(`${id}.`));
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

/** Runs `work` on every item, `width` at a time. */
async function pool<T, R>(items: T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]!);
    }
  }));
  return out;
}

/** A deterministic stream of numbers in [0, 1) (mulberry32), so the mix of sizes is the same every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Planned {
  directory: boolean;
  files: Array<{ rel: string; data: Buffer }>;
}

/** Upload `i` of the mix: a few bytes, mostly small files, some up to 1 MiB, some of a few MiB, multi-file uploads and directory uploads. */
function plan(i: number, rand: () => number): Planned {
  const size = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo));
  const kind = i % 10;
  if (kind === 7) return { directory: false, files: Array.from({ length: size(2, 5) }, (_, j) => ({ rel: `m${i}-${j}.bin`, data: randomBytes(size(1, 256 * 1024)) })) };
  if (kind === 8) {
    const rels = ['index.html', 'css/site.css', 'js/lib/app.js', 'img/a/b/logo.png', 'data.json'].slice(0, size(3, 6));
    return { directory: true, files: rels.map((rel) => ({ rel, data: randomBytes(size(1, 64 * 1024)) })) };
  }
  const bytes = kind === 9 ? size(MiB, 3 * MiB) : kind === 6 ? size(64 * 1024, MiB) : kind === 0 ? size(1, 16) : size(1, 64 * 1024);
  return { directory: false, files: [{ rel: `f${i}.bin`, data: randomBytes(bytes) }] };
}

interface Stored {
  files: Array<{ path: string; sha: string }>;
}

async function uploadPlanned(url: string, p: Planned): Promise<Stored> {
  const parts: FormPart[] = p.files.map((f) => ({ filename: f.rel, data: f.data }));
  const res = await send(url, 'POST', '/_f/', form(parts), { 'Content-Type': MULTIPART, Authorization: KEY, ...(p.directory ? { 'Wave-Directory-Upload': 'true' } : {}) });
  assert.equal(res.status, 200, res.body.toString());
  const answered = res.json.files as string[];
  const paths = p.directory ? p.files.map((f) => `${answered[0]}/${f.rel}`) : answered;
  assert.equal(paths.length, p.files.length);
  return { files: p.files.map((f, j) => ({ path: paths[j]!, sha: sha256(f.data) })) };
}

// Bytes of a file to send before holding it: a server writes a file in batches of `writeBatch`
// (1 MiB), so past the first one its staged file is on disk.
const HELD = MiB + 256 * 1024;

/** An upload of one file of `data` sent to `port` up to `first` bytes of the file and held there, the body unfinished. */
async function holdUpload(port: number, name: string, data: Buffer, first: number): Promise<{ conn: RawConnection; finish(): Promise<RawAnswer> }> {
  const head = partHead({ filename: name }, true);
  const conn = await rawConnect(port);
  conn.sock.write(`POST /_f/ HTTP/1.1\r\nHost: wharf\r\nAuthorization: ${KEY}\r\nContent-Type: ${MULTIPART}\r\nContent-Length: ${head.length + data.length + TAIL.length}\r\n\r\n`);
  conn.sock.write(head);
  conn.sock.write(data.subarray(0, first));
  return {
    conn,
    finish() {
      conn.sock.write(data.subarray(first));
      conn.sock.write(TAIL);
      return conn.answer();
    },
  };
}

/** The path (from the temp area) of the staged file `name`, once it is there. */
async function stagedFile(dataDir: string, name: string): Promise<string> {
  let found: string | undefined;
  await eventually(async () => (found = (await staged(dataDir)).find((p) => p.endsWith(`/${name}`))) !== undefined, `${name} is staged`);
  return found!;
}

const bodyOf = (a: RawAnswer): { files: string[] } => JSON.parse(a.body.toString()) as { files: string[] };

test('cluster: 200 uploads through nginx download byte-identical through every node; a DELETE through one is a 404 through all', async (t) => {
  const dataDir = await tempDir(t);
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => startNode(t, dataDir, id)));
  const nginx = await startNginx(t, nodes.map((n) => `127.0.0.1:${n.port}`));
  const rand = prng(18);
  const planned = Array.from({ length: 200 }, (_, i) => plan(i, rand));
  const stored = await pool(planned, 8, (p) => uploadPlanned(nginx.url, p));

  // Round robin: every node took its share of the uploads.
  const posts = (await nginx.upstreams()).slice(0, 200);
  for (const n of nodes) {
    const share = posts.filter((u) => u === `127.0.0.1:${n.port}`).length;
    assert.ok(share >= 40, `node ${n.id} took ${share} of 200 uploads`);
  }
  // Every file, through every node directly.
  const checks = stored.flatMap((s) => s.files).flatMap((f) => nodes.map((n) => ({ n, f })));
  await pool(checks, 8, async ({ n, f }) => {
    const res = await get(n.url, encodeURI(f.path));
    assert.equal(res.status, 200, `${f.path} through ${n.id}`);
    assert.equal(sha256(res.body), f.sha, `${f.path} through ${n.id}`);
  });
  assert.ok(checks.length >= 3 * 300, `${checks.length} downloads`);

  // Every node has just served (and cached, the small ones) every file; a DELETE through a is seen by b and c at once.
  const doomed = [stored[7]!, stored[8]!, stored[0]!, stored[9]!, stored[3]!];
  // (Each file of a plain multi-file upload has an id of its own; a directory upload's files share one.)
  const ids = [...new Set(doomed.flatMap((s) => s.files.map((f) => f.path.split('/')[2]!)))];
  assert.ok(ids.length > doomed.length);
  for (const id of ids) {
    const del = await send(nodes[0]!.url, 'DELETE', `/_f/${id}`, undefined, { Authorization: KEY });
    assert.equal(del.status, 200, del.body.toString());
  }
  for (const s of doomed) {
    for (const f of s.files) {
      for (const url of [...nodes.map((n) => n.url), nginx.url]) {
        const res = await get(url, encodeURI(f.path));
        assert.equal(res.status, 404, `${f.path} through ${url} after the DELETE`);
      }
    }
  }
  for (const id of ids) {
    const again = await send(nodes[2]!.url, 'DELETE', `/_f/${id}`, undefined, { Authorization: KEY });
    assert.equal(again.status, 404, 'deleted everywhere: c has nothing to delete');
  }
  const kept = stored[1]!.files[0]!;
  for (const n of nodes) assert.equal(sha256((await get(n.url, encodeURI(kept.path))).body), kept.sha);
  assert.deepEqual(await staged(dataDir), [], 'nothing left staged');
  for (const url of [...nodes.map((n) => n.url), nginx.url]) assert.equal((await get(url, '/_wharf/health')).status, 200);
});

test('cluster: kill -9 of a node mid-upload leaves nothing visible, spares the other nodes\' uploads, and its staging is swept once its lease is stale', async (t) => {
  const dataDir = await tempDir(t);
  const lease = ['--lease-interval', '300ms']; // stale after 1.8 s
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((id) => startNode(t, dataDir, id, lease))) as [Node, Node, Node];
  const before = await readdir(join(dataDir, 'f'));

  // Two uploads to a, held mid-body: their files are in a's staging area.
  const aData = [randomBytes(2 * MiB), randomBytes(3 * MiB + 17)];
  const held = await Promise.all(aData.map((d, i) => holdUpload(a.port, `a${i}.bin`, d, HELD)));
  const aStaged = await Promise.all(aData.map((_, i) => stagedFile(dataDir, `a${i}.bin`)));
  const areaA = (await areaOf(dataDir, 'a'))!;
  for (const p of aStaged) assert.ok(p.startsWith(`${areaA}/`), `${p} is in a's area`);

  // A slow upload straight to b, then b killed under it.
  const slow = await holdUpload(b.port, 'b.bin', randomBytes(4 * MiB), HELD);
  const bStaged = await stagedFile(dataDir, 'b.bin');
  const areaB = (await areaOf(dataDir, 'b'))!;
  assert.ok(bStaged.startsWith(`${areaB}/`));
  await b.kill();
  await slow.conn.closed;
  await assert.rejects(slow.conn.answer(), /closed without an answer/, "b's client gets an error, not an answer");
  assert.deepEqual(await readdir(join(dataDir, 'f')), before, 'nothing of the cut upload is visible');

  // b restarted on the same data dir: it removes nothing of a's.
  const b2 = await startNode(t, dataDir, 'b', lease);
  for (const p of aStaged) assert.ok(await exists(join(dataDir, '.wharf-tmp', p)), `${p} is still staged after b restarted`);
  assert.notEqual(await areaOf(dataDir, 'b'), undefined);

  // b's dead area goes once its lease is stale (swept by whichever node gets there first), a's stays.
  await eventually(async () => !(await exists(join(dataDir, '.wharf-tmp', areaB))), "b's dead staging area is swept");
  await new Promise((r) => setTimeout(r, 2000)); // past the 1.8 s a stale lease would take
  for (const p of aStaged) assert.ok(await exists(join(dataDir, '.wharf-tmp', p)), `${p} is still staged: a is alive`);
  assert.deepEqual(await readdir(join(dataDir, 'f')), before, 'nothing partial visible still');

  // a's uploads finish intact, and every node serves them.
  const answers = await Promise.all(held.map((h) => h.finish()));
  for (const [i, ans] of answers.entries()) {
    assert.equal(ans.status, 200, ans.body.toString());
    const [path] = bodyOf(ans).files;
    for (const n of [a, b2, c]) assert.equal(sha256((await get(n.url, path!)).body), sha256(aData[i]!), `${path} through ${n.id}`);
  }
  const after = (await uploadPlanned(b2.url, { directory: false, files: [{ rel: 'later.txt', data: Buffer.from('later') }] })).files[0]!;
  assert.equal((await get(c.url, after.path)).body.toString(), 'later');
  assert.deepEqual(await staged(dataDir), [], 'nothing left staged');
});

test('cluster: nodes starting side by side on one data dir never remove each other\'s staging', async (t) => {
  const dataDir = await tempDir(t);
  const lease = ['--lease-interval', '300ms'];
  const holds: Array<{ name: string; data: Buffer; hold: Awaited<ReturnType<typeof holdUpload>> }> = [];
  const nodes: Node[] = [];
  for (const round of [1, 2, 3]) {
    // Two nodes start at the same moment, while the nodes before them hold uploads mid-body.
    const pair = await Promise.all([`p${round}`, `q${round}`].map((id) => startNode(t, dataDir, id, lease)));
    const left = await staged(dataDir);
    for (const h of holds) assert.ok(left.some((p) => p.endsWith(`/${h.name}`)), `${h.name} survived round ${round}`);
    nodes.push(...pair);
    for (const n of nodes) {
      const area = await areaOf(dataDir, n.id);
      assert.ok(area !== undefined && (await exists(join(dataDir, '.wharf-tmp', area, 'lease'))), `${n.id}'s area and lease are there after round ${round}`);
    }
    for (const n of pair) {
      const name = `${n.id}.bin`;
      const data = randomBytes(2 * MiB + round);
      holds.push({ name, data, hold: await holdUpload(n.port, name, data, HELD) });
      await stagedFile(dataDir, name);
    }
  }
  for (const { data, hold } of holds) {
    const ans = await hold.finish();
    assert.equal(ans.status, 200, ans.body.toString());
    assert.equal(sha256((await get(nodes[0]!.url, bodyOf(ans).files[0]!)).body), sha256(data));
  }
  assert.equal(holds.length, 6);
});

test('cluster: the health route answers 200 while the data dir is writable, 503 with the failed check when it is not, and recovers', async (t) => {
  const dataDir = join(await tempDir(t), 'data');
  const node = await startWharfProcess(t, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--access-key-id', 'app', '--log', 'off'], { WHARF_ACCESS_KEY_SECRET: 'app-secret' });
  const health = (method = 'GET'): Promise<Answer> => send(node.url, method, '/_wharf/health');
  const ok = await health();
  assert.equal(ok.status, 200, 'no key needed');
  assert.deepEqual(ok.json, { ok: true, checks: { storage: 'ok', hub: 'ok' } });
  assert.equal(ok.headers['cache-control'], 'no-store');
  const head = await health('HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal((await health('POST')).status, 405);

  // Root writes through any mode bits: the data dir is taken away and a file put in its place.
  await rename(dataDir, `${dataDir}.away`);
  await writeFile(dataDir, 'not a directory');
  let down: Answer | undefined;
  await eventually(async () => (down = await health()).status === 503, 'the health route says 503');
  assert.equal(down!.json.ok, false);
  assert.equal(down!.json.error, 'NOT_READY');
  assert.deepEqual(down!.json.checks, { storage: 'ENOTDIR', hub: 'ok' });
  assert.match(down!.json.message, /storage \(ENOTDIR\)/);
  assert.ok(!down!.body.toString().includes(dataDir), 'no path in the answer');
  assert.equal(down!.headers['cache-control'], 'no-store');

  await rm(dataDir);
  await rename(`${dataDir}.away`, dataDir);
  await eventually(async () => (await health()).status === 200, 'the health route is back to 200');
});
