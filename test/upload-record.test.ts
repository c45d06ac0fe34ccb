// lib/uploads/upload-record.ts: the per-upload record and how an end user's file is served.
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkFilename } from '../lib/uploads/filenames.js';
import { isActiveType, isRecordName, RECORD_NAME, recordFor, serializeRecord, trustOf, untrustedView } from '../lib/uploads/upload-record.js';

test('records: who let the upload in decides its trust; only a version-1 record saying "app" is the app', () => {
  assert.deepEqual(recordFor('key'), { v: 1, trust: 'app', via: 'key' });
  assert.deepEqual(recordFor('site'), { v: 1, trust: 'app', via: 'site' });
  assert.deepEqual(recordFor('authorize'), { v: 1, trust: 'user', via: 'authorize' });
  assert.deepEqual(recordFor('anonymous'), { v: 1, trust: 'user', via: 'anonymous' });
  assert.equal(trustOf(serializeRecord(recordFor('key')), 'user'), 'app');
  assert.equal(trustOf(serializeRecord(recordFor('anonymous')), 'app'), 'user');
  assert.equal(trustOf(undefined, 'user'), 'user', 'no record: the default given');
  assert.equal(trustOf(undefined, 'app'), 'app');
  for (const text of ['', 'null', '"app"', '[]', '{"trust":"app"}', '{"v":2,"trust":"app"}', '{"v":"1","trust":"app"}', '{"v":1,"trust":"APP"}', '{"v":1,"trust":"app"', '\u0000']) {
    assert.equal(trustOf(text, 'app'), 'user', JSON.stringify(text));
  }
  assert.equal(trustOf('{"v":1,"trust":"app","expires":"later","via":"key"}', 'user'), 'app', 'fields added later are ignored');
});

test('the record\'s name: every spelling a file system takes for it, at the top of an upload only', () => {
  for (const name of [RECORD_NAME, '.WHARF-UPLOAD.JSON', '.Wharf-Upload.Json', `${RECORD_NAME}.`, `${RECORD_NAME} `, `${RECORD_NAME}. .`]) {
    assert.equal(isRecordName(name), true, name);
    assert.throws(() => checkFilename(name, false, 'part 1'), /BAD_FILENAME|reserved/, name);
    assert.throws(() => checkFilename(`${name}/x.txt`, true, 'part 1'), /reserved/, name);
  }
  for (const name of ['.wharf-upload', '.wharf-upload.jsonx', 'wharf-upload.json', '.wharf-upload.json.txt', 'x']) assert.equal(isRecordName(name), false, name);
  assert.equal(checkFilename(`sub/${RECORD_NAME}`, true, 'part 1'), `sub/${RECORD_NAME}`, 'below the top it is an ordinary name');
});

test('active types: documents that may hold script, and scripts', () => {
  const active = ['text/html; charset=utf-8', 'TEXT/HTML', 'application/xhtml+xml', 'image/svg+xml', 'application/xml; charset=utf-8', 'text/xml',
    'application/rss+xml', 'application/xslt+xml', 'text/xsl', 'text/javascript; charset=utf-8', 'application/javascript', 'application/x-javascript',
    'text/ecmascript', 'text/jscript', 'multipart/x-mixed-replace; boundary=x'];
  const passive = ['image/png', 'application/pdf', 'text/plain; charset=utf-8', 'application/json; charset=utf-8', 'text/css; charset=utf-8',
    'application/octet-stream', 'video/mp4', 'application/wasm', 'text/csv', 'application/manifest+json'];
  for (const type of active) assert.equal(isActiveType(type), true, type);
  for (const type of passive) assert.equal(isActiveType(type), false, type);
  assert.deepEqual(untrustedView('text/html; charset=utf-8'), { type: 'application/octet-stream', attachment: true });
  assert.deepEqual(untrustedView('text/javascript; charset=utf-8'), { type: 'application/octet-stream', attachment: true });
  assert.deepEqual(untrustedView('image/svg+xml'), { type: 'image/svg+xml', attachment: true }, 'SVG keeps its type for <img>');
  assert.deepEqual(untrustedView('image/png'), { type: 'image/png', attachment: false });
  assert.deepEqual(untrustedView('application/pdf'), { type: 'application/pdf', attachment: false });
});
