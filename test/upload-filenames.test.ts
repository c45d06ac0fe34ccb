import test from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { checkFilename, isUploadId, parseUploadUrl, uploadUrl, MAX_PATH_BYTES, MAX_SEGMENT_BYTES } from '../lib/uploads/filenames.js';
import { WharfError } from '../lib/common/errors.js';

const refused = (name: string | undefined, directory: boolean, why: RegExp): void => {
  assert.throws(
    () => checkFilename(name, directory, 'part 7'),
    (e: unknown) => e instanceof WharfError && e.code === 'BAD_FILENAME' && e.status === 400 && /^part 7: filename/.test(e.message) && why.test(e.message),
    `${JSON.stringify(name)} (directory: ${directory}) should be refused with ${why}`,
  );
};

test('filenames: ordinary names pass unchanged, in plain and directory uploads', () => {
  for (const name of ['a.txt', 'résumé.pdf', 'with space #1 ?x %20 & +.txt', '.env', 'ab:c', 'x'.repeat(MAX_SEGMENT_BYTES), '日本語.csv', '🚀.png', 'nul-not-device.txt', 'conx']) {
    assert.equal(checkFilename(name, false, 'part 1'), name);
    assert.equal(checkFilename(name, true, 'part 1'), name);
  }
  assert.equal(checkFilename('a/b/c.txt', true, 'part 1'), 'a/b/c.txt');
  assert.equal(checkFilename('.git/config', true, 'part 1'), '.git/config');
});

test('filenames: stored in Unicode NFC, so macOS (NFD) and other clients agree', () => {
  const nfd = 'cafe\u0301.txt';
  assert.equal(checkFilename(nfd, false, 'part 1'), 'caf\u00e9.txt');
  assert.equal(checkFilename(`dir\u0301/${nfd}`, true, 'part 1'), 'dir\u0301'.normalize('NFC') + '/caf\u00e9.txt');
});

test('filenames: the refusals of docs/protocol.md §1, each with a reason naming the part', () => {
  for (const directory of [false, true]) {
    refused(undefined, directory, /is empty/);
    refused('', directory, /is empty/);
    refused('.', directory, /"\." segment/);
    refused('..', directory, /"\.\." segment/);
    refused('/etc/passwd', directory, /absolute/);
    refused('C:x', directory, /absolute/);
    refused('c:\\windows\\x', directory, /absolute/);
    refused('\\\\server\\share\\x', directory, /absolute/);
    refused('a\\b', directory, /backslash/);
    refused('..\\x', directory, /backslash/);
    refused('a\u0000b', directory, /control character/);
    refused('a\nb', directory, /control character/);
    refused('a\u007fb', directory, /control character/);
    refused('a\u0085b', directory, /control character/);
    refused('y'.repeat(MAX_SEGMENT_BYTES + 1), directory, /longer than 255 bytes/);
    refused('é'.repeat(128), directory, /longer than 255 bytes/); // 256 bytes in UTF-8, 128 characters
    refused('bad\ud800surrogate', directory, /not valid Unicode/);
    for (const device of ['CON', 'nul.txt', 'Aux.tar.gz', 'com1', 'LPT9.log', 'conin$']) refused(device, directory, /device name/);
  }
  refused('a/b', false, /contains "\/"/);
  refused('../x', false, /contains "\/"/);
  refused('../x', true, /"\.\." segment/);
  refused('a/../b', true, /"\.\." segment/);
  refused('a/./b', true, /"\." segment/);
  refused('a//b', true, /empty path segment/);
  refused('a/', true, /empty path segment/);
  refused('a/nul/b', true, /device name/);
  refused(`${'d'.repeat(200)}/`.repeat(6) + 'f', true, new RegExp(`longer than ${MAX_PATH_BYTES} bytes`));
});

test('filenames: a refused name is quoted (and cut short) in the message', () => {
  assert.throws(() => checkFilename(`${'z'.repeat(300)}/x`, false, 'part 2'), (e: unknown) => e instanceof WharfError && e.message.includes(`"${'z'.repeat(80)}…"`));
  assert.throws(() => checkFilename('a\u0000', false, 'part 2'), (e: unknown) => e instanceof WharfError && e.message.includes('"a\\u0000"'));
});

test('filenames: upload ids are lower-case UUIDv4s', () => {
  const id = randomUUID();
  assert.ok(isUploadId(id));
  for (const bad of [id.toUpperCase(), '', '..', id.slice(1), `${id}x`, '00000000-0000-1000-8000-000000000000', id.replace(/-/g, '')]) {
    assert.equal(isUploadId(bad), false, bad);
  }
});

test('filenames: upload URLs carry the name as stored (only %, # and ? escaped), and read back to it in that form and fully encoded', () => {
  const id = randomUUID();
  assert.equal(uploadUrl('/', id), `/_f/${id}`);
  assert.equal(uploadUrl('/app/', id, 'a b/#?%/é.txt'), `/app/_f/${id}/a b/%23%3F%25/é.txt`);
  assert.equal(uploadUrl('/', id, 'ünïcødé 名前 €.txt'), `/_f/${id}/ünïcødé 名前 €.txt`, 'as Wave returns it');
  assert.equal(uploadUrl('/', id, '%2e%2e%2f'), `/_f/${id}/%252e%252e%252f`);
  for (const rel of ['a b.txt', '#1?.txt', '100%.txt', '%2e%2e%2f', '%25', 'résumé/日本.csv', 'a+b&c=d;e.txt', '.env']) {
    assert.deepEqual(parseUploadUrl('/app/', uploadUrl('/app/', id, rel)), { id, rel }, rel);
    const encoded = `/app/_f/${id}/${rel.split('/').map(encodeURIComponent).join('/')}`;
    assert.deepEqual(parseUploadUrl('/app/', encoded), { id, rel }, encoded);
  }
  // A hand-built raw URL with a `%` that is no valid escape means the name as written.
  for (const rel of ['100% sure.txt', '%zz', '%C3.txt', '%E0%A4%A.txt', 'é%', '%C3%A9%FF']) {
    assert.deepEqual(parseUploadUrl('/', `/_f/${id}/${rel}`), { id, rel: rel === '%C3%A9%FF' ? 'é%FF' : rel }, rel);
  }
  assert.deepEqual(parseUploadUrl('/', `/_f/${id}`), { id, rel: '' });
  assert.deepEqual(parseUploadUrl('/', `/_f/${id}/`), { id, rel: '' });
  assert.deepEqual(parseUploadUrl('/', `/_f/${id}/a.txt?download#x`), { id, rel: 'a.txt' });
});

test('filenames: URLs that are not an upload of this server read as null', () => {
  const id = randomUUID();
  for (const url of [
    `http://elsewhere.example/_f/${id}/a.txt`,
    `/other/_f/${id}/a.txt`,
    `/_f/not-an-id/a.txt`,
    `/_f/../f/${id}/a.txt`,
    `/_f/${id}/%2e%2e/x`,
    `/_f/${id}/a%2Fb`,
    `/_f/${id}/a%5Cb`,
    `/_f/${id}/a%00b`,
    `/_f/${id}//b`,
    `/_f/${id}/./b`,
    '',
  ]) {
    assert.equal(parseUploadUrl('/', url), null, url);
  }
});
