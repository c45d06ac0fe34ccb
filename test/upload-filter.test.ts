// Deciding before storing: the built-in sniffer, `accept`, and the `filter` hook over real
// multipart requests; a refusal refuses the whole request and leaves nothing on disk.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { createFileServer, sniffType, WharfError, type UploadFileInfo } from '../lib/index.js';
import { EMPTY, MULTIPART, TAIL, form, layout, partHead, serve, settledTree, staged, upload } from './helpers/uploads.js';
import { eventually } from './helpers/eventually.js';
import { defer } from './helpers/defer.js';

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(100, 7)]);
const PDF = Buffer.from('%PDF-1.7\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n', 'latin1');
const ZIP = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(60)]);
const HTML = Buffer.from('  <!DOCTYPE html><html><script>alert(document.cookie)</script></html>');

test('sniffType knows the common signatures, HTML and XML, and nothing else', () => {
  const tar = Buffer.alloc(600);
  tar.write('ustar', 257, 'latin1');
  const webp = Buffer.from('RIFF\0\0\0\0WEBPVP8 ', 'latin1');
  const cases: Array<[Buffer, string | undefined]> = [
    [PNG, 'image/png'], [Buffer.from([0xff, 0xd8, 0xff, 0xe0]), 'image/jpeg'], [Buffer.from('GIF89a...'), 'image/gif'],
    [Buffer.from('GIF87a...'), 'image/gif'], [webp, 'image/webp'], [Buffer.from('BM\0\0\0\0'), 'image/bmp'],
    [Buffer.from([0, 0, 1, 0, 1, 0]), 'image/x-icon'], [PDF, 'application/pdf'], [ZIP, 'application/zip'],
    [Buffer.from([0x1f, 0x8b, 8, 0]), 'application/gzip'], [tar, 'application/x-tar'],
    [Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]), 'application/x-7z-compressed'],
    [HTML, 'text/html'], [Buffer.from('\xef\xbb\xbf<p>hi</p>', 'latin1'), 'text/html'],
    [Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'), 'image/svg+xml'],
    [Buffer.from('<?xml version="1.0"?><note/>'), 'application/xml'],
    [Buffer.from('name,size\na,1\n'), undefined], [Buffer.from('RIFF\0\0\0\0WAVE'), undefined], [Buffer.alloc(0), undefined],
    [Buffer.from('<paragraph> is not a tag a browser sniffs'), undefined],
  ];
  for (const [bytes, type] of cases) assert.equal(sniffType(bytes), type, bytes.subarray(0, 16).toString('latin1'));
});

test('accept: a real PNG, a PDF by extension, a docx (a zip) pass; the files are stored', async (t) => {
  const s = await serve(t, { accept: ['image/*', '.pdf', '.docx'] });
  const up = await upload(s.url, [
    { filename: 'cat.png', contentType: 'image/png', data: PNG },
    { filename: 'paper.pdf', contentType: 'application/pdf', data: PDF },
    { filename: 'letter.docx', data: ZIP },
  ]);
  assert.equal(up.status, 200, up.body.toString());
  assert.equal(up.json.files.length, 3);
});

test('accept: an evil.png whose bytes are HTML is refused 415, and nothing of the request stays', async (t) => {
  const s = await serve(t, { accept: ['image/*'] });
  const up = await upload(s.url, [
    { filename: 'ok.png', contentType: 'image/png', data: Buffer.concat([PNG, Buffer.alloc(200_000, 1)]) },
    { filename: 'evil.png', contentType: 'image/png', data: HTML },
  ]);
  assert.equal(up.status, 415, up.body.toString());
  assert.equal(up.json.error, 'UPLOAD_TYPE_REFUSED');
  assert.match(up.json.message, /evil\.png.*not what its name says \(text\/html\)/);
  assert.deepEqual(await settledTree(s.dataDir), EMPTY);
});

test('accept: a type not listed, a declared type that disagrees with the name, a name without extension: 415', async (t) => {
  const s = await serve(t, { accept: ['image/png', '.pdf'] });
  for (const [part, why] of [
    [{ filename: 'a.gif', contentType: 'image/gif', data: 'GIF89a' }, /not an accepted type \(image\/png, \.pdf\)/],
    [{ filename: 'a.png', contentType: 'text/html', data: PNG }, /declared as text\/html, but its name says image\/png/],
    [{ filename: 'png', contentType: 'image/png', data: PNG }, /not an accepted type/],
  ] as const) {
    const up = await upload(s.url, [part]);
    assert.equal(up.status, 415, up.body.toString());
    assert.match(up.json.message, why);
  }
  assert.deepEqual(await settledTree(s.dataDir), EMPTY);
});

test('accept is checked at creation: a bad entry is INVALID_OPTION', () => {
  for (const accept of [[], ['png'], ['image/'], ['.'], [''], [3]] as unknown as string[][]) {
    assert.throws(() => createFileServer({ accept }), (e: unknown) => e instanceof WharfError && e.code === 'INVALID_OPTION', JSON.stringify(accept));
  }
  assert.throws(() => createFileServer({ filter: 'no' as never }), /filter: expected a function/);
});

test('filter: told each file (field, name, type, index), then its head when it asks; a reason refuses with 422', async (t) => {
  const calls: UploadFileInfo[] = [];
  const s = await serve(t, {
    filter: async (file) => {
      calls.push({ ...file });
      if (file.head === undefined) return { sniff: true };
      return file.sniffedType === 'application/pdf' ? undefined : `only PDFs here, this is ${file.sniffedType ?? 'unknown'}`;
    },
  });
  const ok = await upload(s.url, [{ name: 'note', data: 'a field' }, { filename: 'a.pdf', contentType: 'application/pdf', data: PDF }]);
  assert.equal(ok.status, 200, ok.body.toString());
  assert.equal(calls.length, 2);
  assert.deepEqual({ ...calls[0] }, { field: 'files', filename: 'a.pdf', type: 'application/pdf', index: 2 });
  assert.equal(calls[1]!.sniffedType, 'application/pdf');
  assert.deepEqual(calls[1]!.head, PDF, 'a small file: its whole bytes');

  const refused = await upload(s.url, [{ filename: 'b.pdf', data: Buffer.concat([PNG, Buffer.alloc(300_000)]) }]);
  assert.equal(refused.status, 422);
  assert.equal(refused.json.error, 'UPLOAD_REFUSED');
  assert.equal(refused.json.message, 'part 1 ("b.pdf"): only PDFs here, this is image/png');
  assert.equal(calls.at(-1)!.head!.length, 4096, 'a big file: its first 4 KiB');
  const stored = await layout(s.dataDir);
  const [id] = (ok.json.files[0] as string).split('/').slice(2);
  assert.deepEqual(stored.filter((p) => p.startsWith('f/')), ['f/', `f/${id}/`, `f/${id}/.wharf-upload.json`, `f/${id}/a.pdf`], 'only the first upload');
  assert.deepEqual(await staged(s.dataDir), [], 'no temp file');
});

test('filter: false, a WharfError, a throw; a directory upload is checked file by file', async (t) => {
  const verdicts: Record<string, unknown> = {
    'no.txt': false,
    'teapot.txt': new WharfError('FORBIDDEN', 'teapots are not files', 403),
  };
  const s = await serve(t, {
    filter: (file) => {
      if (file.filename === 'boom.txt') throw new Error('bug in the filter');
      return verdicts[file.filename.split('/').pop()!] as undefined;
    },
  });
  const no = await upload(s.url, [{ filename: 'no.txt', data: 'x' }]);
  assert.deepEqual([no.status, no.json.error, no.json.message], [422, 'UPLOAD_REFUSED', 'part 1 ("no.txt"): refused by the upload filter']);
  const teapot = await upload(s.url, [{ filename: 'teapot.txt', data: 'x' }]);
  assert.deepEqual([teapot.status, teapot.json.error], [403, 'FORBIDDEN']);
  const boom = await upload(s.url, [{ filename: 'boom.txt', data: 'x' }]);
  assert.deepEqual([boom.status, boom.json.error], [500, 'FILTER_FAILED']);
  assert.ok(s.warnings.some((w) => w.includes('bug in the filter')));
  const dir = await upload(s.url, [{ filename: 'd/fine.txt', data: 'x' }, { filename: 'd/sub/no.txt', data: 'y' }], { 'Wave-Directory-Upload': 'true' });
  assert.equal(dir.status, 422, dir.body.toString());
  assert.match(dir.json.message, /"d\/sub\/no\.txt"/);
  assert.deepEqual(await settledTree(s.dataDir), EMPTY);
});

test('filter: while an async filter decides, the body is not read on (backpressure), then the upload completes', async (t) => {
  let release!: () => void;
  let asked!: IncomingMessage;
  const decided = new Promise<void>((ok) => (release = ok));
  const s = await serve(t, {
    filter: async (_file, req) => {
      asked = req;
      await decided;
    },
  });
  const size = 64 * 1024 * 1024;
  const head = partHead({ filename: 'big.bin' }, true);
  const chunk = Buffer.alloc(1024 * 1024, 3);
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${s.url}/_f/`, { method: 'POST', agent: false, headers: { 'Content-Type': MULTIPART, 'Content-Length': head.length + size + TAIL.length } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(head);
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end(TAIL);
    };
    pump();
    defer(t, () => req.destroy());
  });
  await eventually(() => asked !== undefined, 'the filter was asked');
  // The client's writes back up: the server reads no more of the socket while the filter decides
  // (given time in which, unpaused, it would have read all 64 MiB from loopback).
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(asked.socket.bytesRead < 8 * 1024 * 1024, `read ${asked.socket.bytesRead} bytes of 64 MiB while the filter decided`);
  release();
  const done = await answer;
  assert.equal(done.status, 200, done.body);
});
