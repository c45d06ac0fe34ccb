// The one rule for names in URL paths (lib/common/upload-names.ts): the returned form, decoding once, and the
// request line.
import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeName, encodeSegment, escapeName, requestPath } from '../lib/common/upload-names.js';

const NAMES = ['plain.txt', 'ünïcødé 名前 €.txt', 'pixels ü.bin', '100%.txt', '%2e%2e%2f', '%25', 'hash #1.txt', 'what?.txt', 'a+b;c=d&e,f.txt', "it's (1) [x] ~!$@:.txt", '🚀 "q" <a> `b` {c} |d| ^e^.txt'];

test('urlnames: the returned form keeps the name as stored and escapes only %, # and ?', () => {
  assert.equal(escapeName('ünïcødé 名前 €.txt'), 'ünïcødé 名前 €.txt');
  assert.equal(escapeName('a b/c+d;e.txt'), 'a b/c+d;e.txt', 'slashes of a relative path stay');
  assert.equal(escapeName('100% #1 ?.txt'), '100%25 %231 %3F.txt');
  assert.equal(escapeName('%2e%2e%2f'), '%252e%252e%252f');
  for (const name of NAMES) assert.equal(decodeName(escapeName(name)), name, name);
});

test('urlnames: a path segment is decoded once, whichever form it came in', () => {
  for (const name of NAMES) {
    assert.equal(decodeName(encodeURIComponent(name)), name, `fully encoded ${name}`);
    assert.equal(decodeName(encodeSegment(name)), name, `browser-encoded ${name}`);
  }
  assert.equal(decodeName('%252e%252e%252f'), '%2e%2e%2f', 'once, not twice');
  assert.equal(decodeName('%C3%BC%20x'), 'ü x');
  assert.equal(decodeName('%c3%bc'), 'ü', 'lower-case hex too');
});

test('urlnames: a % that is no valid escape is literal, never an error', () => {
  const cases: Array<[string, string]> = [
    ['100% sure.txt', '100% sure.txt'],
    ['%', '%'],
    ['%%', '%%'],
    ['%zz%20', '%zz '],
    ['%C3.txt', '%C3.txt'],
    ['%C3%20', '%C3 '],
    ['%E2%82', '%E2%82'],
    ['%E2%82%AC%FF', '€%FF'],
    ['%80%C3%A9', '%80é'],
    ['%ED%A0%80', '%ED%A0%80'],
    ['%F0%9F%9A%80%F8', '🚀%F8'],
  ];
  for (const [raw, name] of cases) assert.equal(decodeName(raw), name, raw);
});

test('urlnames: a path goes on the request line encoded once: spaces, non-ASCII and a stray % escaped, %25 kept', () => {
  assert.equal(requestPath('/_f/id/ünïcødé 名前 €.txt'), '/_f/id/%C3%BCn%C3%AFc%C3%B8d%C3%A9%20%E5%90%8D%E5%89%8D%20%E2%82%AC.txt');
  assert.equal(requestPath('/_f/id/100%25 %231 %3F.txt'), '/_f/id/100%25%20%231%20%3F.txt');
  assert.equal(requestPath('/_f/id/100%25%20%231%20%3F.txt'), '/_f/id/100%25%20%231%20%3F.txt', 'idempotent: no %2525');
  assert.equal(requestPath('/_f/id/100% sure.txt'), '/_f/id/100%25%20sure.txt');
  assert.equal(requestPath('/_f/id/%252e%252e%252f'), '/_f/id/%252e%252e%252f');
  assert.equal(requestPath('/_f/id/a+b;c=d&e,f.txt'), '/_f/id/a+b;c=d&e,f.txt', 'sub-delims stay, as browsers send them');
  assert.equal(requestPath('/_f/id/a%2Fb'), '/_f/id/a%2Fb', 'an encoded slash stays inside its segment');
  for (const name of NAMES) {
    const line = requestPath(`/_f/id/${escapeName(name)}`);
    assert.match(line, /^[\x21-\x7e]+$/, `${name}: printable ASCII only`);
    assert.equal(decodeURIComponent(line.slice('/_f/id/'.length)), name, `${name}: the server's one decode gives the name back`);
  }
});
