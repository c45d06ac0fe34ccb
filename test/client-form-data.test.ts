import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import test from 'node:test';
import busboy from 'busboy';
import { bufferForm, contentDisposition, fileForm } from '../lib/client/form-data.js';
import { tempDir } from './helpers/client.js';

interface Parsed { name: string; filename: string; mimeType: string; data: Buffer }

/** Parses a body with busboy, an independent implementation, as a server would. */
function parse(contentType: string, body: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<Parsed[]> {
  return new Promise((resolve, reject) => {
    const out: Parsed[] = [];
    const bb = busboy({ headers: { 'content-type': contentType }, preservePath: true, defParamCharset: 'utf8' });
    bb.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => out.push({ name, filename: info.filename ?? "", mimeType: info.mimeType, data: Buffer.concat(chunks) }));
    });
    bb.on('close', () => resolve(out));
    bb.on('error', reject);
    Readable.from(body).pipe(bb);
  });
}

test('fileForm: the announced length is exact and a standard parser reads every part back', async (t) => {
  const dir = await tempDir(t);
  const files = [
    { filename: 'plain.txt', data: Buffer.from('hello') },
    { filename: 'empty.bin', data: Buffer.alloc(0) },
    { filename: 'résumé 📄.pdf', data: randomBytes(300_000) },
    { filename: 'a/b/c "q" 50%.txt', data: Buffer.from('--not-a-boundary\r\n') },
  ];
  for (const [i, f] of files.entries()) await writeFile(join(dir, String(i)), f.data);
  const form = fileForm(files.map((f, i) => ({ path: join(dir, String(i)), filename: f.filename, size: f.data.length, contentType: i === 2 ? 'application/pdf' : 'application/octet-stream' })));
  let counted = 0;
  const chunks: Buffer[] = [];
  for await (const c of form.chunks((n) => { counted += n; })) chunks.push(c);
  const body = Buffer.concat(chunks);
  assert.equal(body.length, form.length, 'Content-Length is computed before any byte is read');
  assert.equal(counted, files.reduce((n, f) => n + f.data.length, 0));
  assert.match(form.contentType, /^multipart\/form-data; boundary=----wharf[0-9a-f]{24}$/);

  const parsed = await parse(form.contentType, [body]);
  assert.equal(parsed.length, files.length);
  for (const [i, f] of files.entries()) {
    assert.equal(parsed[i]!.name, 'files');
    assert.equal(parsed[i]!.filename, f.filename);
    assert.deepEqual(parsed[i]!.data, f.data);
  }
  assert.equal(parsed[2]!.mimeType, 'application/pdf');

  // A second call gives a fresh, identical body (a retry re-reads the files).
  const again: Buffer[] = [];
  for await (const c of form.chunks()) again.push(c);
  assert.deepEqual(Buffer.concat(again), body);
});

test('contentDisposition: filename as browsers send it, filename* (RFC 8187) when the name needs it', () => {
  assert.equal(contentDisposition('files', 'a.txt'), 'form-data; name="files"; filename="a.txt"');
  assert.equal(contentDisposition('f', undefined), 'form-data; name="f"');
  assert.equal(
    contentDisposition('files', 'ü "x".txt'),
    `form-data; name="files"; filename="ü %22x%22.txt"; filename*=UTF-8''%C3%BC%20%22x%22.txt`,
  );
  assert.equal(contentDisposition('files', "it's (1)*.txt"), `form-data; name="files"; filename="it's (1)*.txt"`);
  assert.equal(contentDisposition('files', "it's 100%.txt"), `form-data; name="files"; filename="it's 100%.txt"; filename*=UTF-8''it%27s%20100%25.txt`);
  assert.equal(contentDisposition('files', 'a\r\nb'), `form-data; name="files"; filename="a%0D%0Ab"; filename*=UTF-8''a%0D%0Ab`);
});

test('bufferForm: one in-memory part as Wave\'s client sends a frame (field f, filename f, the frame type)', async () => {
  const frame = randomBytes(1000);
  const { contentType, body } = bufferForm('f', 'f', 'image/jpeg', frame);
  const parsed = await parse(contentType, [body]);
  assert.deepEqual(parsed, [{ name: 'f', filename: 'f', mimeType: 'image/jpeg', data: frame }]);
});
