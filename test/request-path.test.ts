// lib/http/request-path.ts: a request path is decoded once, segment by segment, and routes match within its
// clean part; the rules of files then refuse what no honest URL to a file holds.
import test from 'node:test';
import assert from 'node:assert/strict';
import { WharfError } from '../lib/common/errors.js';
import { ENCODED_SLASH, MALFORMED, decodePath, filePath, routePrefix, treePath, canonicalPrefix } from '../lib/http/request-path.js';

test('decodePath: every segment decoded once, the whole path clean when nothing is odd', () => {
  assert.deepEqual(decodePath('/n/%69nner/secret.txt'), { path: '/n/inner/secret.txt', clean: 19, flags: 0 });
  assert.deepEqual(decodePath('/n/%2569nner/x'), { path: '/n/%69nner/x', clean: 12, flags: 0 });
  assert.deepEqual(decodePath('/%E6%97%A5/%2e%2e/x'), { path: '/日/../x', clean: 7, flags: 0 });
});

test('decodePath: an encoded slash is data, not a separator: the clean part ends before its segment', () => {
  assert.deepEqual(decodePath('/n%2Finner/secret.txt'), { path: '/n/inner/secret.txt', clean: 1, flags: ENCODED_SLASH });
  assert.deepEqual(decodePath('/_m/cam%2f1/%41'), { path: '/_m/cam/1/A', clean: 4, flags: ENCODED_SLASH });
});

test('decodePath: from a malformed segment on, the raw text, and the clean part ends before it', () => {
  assert.deepEqual(decodePath('/n/%69nner/%zz/%41'), { path: '/n/inner/%zz/%41', clean: 9, flags: MALFORMED });
  assert.deepEqual(decodePath('/n/%c0%ae%c0%ae/x'), { path: '/n/%c0%ae%c0%ae/x', clean: 3, flags: MALFORMED });
  assert.deepEqual(decodePath('/a%2Fb/%'), { path: '/a/b/%', clean: 1, flags: ENCODED_SLASH | MALFORMED });
});

test('filePath: 400 for what no honest URL to a file holds, 404 for dot and empty segments', () => {
  const refused = (rest: string, flags: number, status: number, code: string): void => {
    assert.throws(() => filePath(rest, flags), (e: unknown) => e instanceof WharfError && e.status === status && e.code === code, JSON.stringify(rest));
  };
  assert.equal(filePath('a/b.txt', 0), 'a/b.txt');
  assert.equal(filePath('%2e%2e', 0), '%2e%2e', 'decoded once: a literal name');
  refused('a/b', ENCODED_SLASH, 400, 'BAD_PATH');
  refused('a%zz', MALFORMED, 400, 'BAD_PATH');
  refused('a\\b', 0, 400, 'BAD_PATH');
  refused('a\u0000b', 0, 400, 'BAD_PATH');
  refused('a\u007fb', 0, 400, 'BAD_PATH');
  for (const rest of ['', '.', '..', 'a/..', '../a', 'a/./b', 'a//b', '/a', 'a/']) refused(rest, 0, 404, 'NOT_FOUND');
});

test('treePath: a file path, or a directory with one trailing slash', () => {
  assert.equal(treePath('id/', 0), 'id');
  assert.equal(treePath('id/a.txt', 0), 'id/a.txt');
  assert.throws(() => treePath('id//', 0), /file not found/);
  assert.throws(() => treePath('id/../x/', 0), /file not found/);
});

test('routePrefix: the decoded form of a canonical prefix', () => {
  assert.equal(routePrefix(canonicalPrefix('/my data/', 'x')), '/my data/');
  assert.equal(routePrefix(canonicalPrefix('/100%/', 'x')), '/100%/');
  assert.equal(routePrefix(canonicalPrefix('/%69nner', 'x')), '/inner/');
});
