// Who may do what (docs/protocol.md §4): the full matrix of route kinds × server configurations ×
// credentials, over HTTP. Handlers behind the auth check belong to other modules, so a request that
// is let in is asserted only to have got past auth (not 401, not AUTHORIZE_FAILED).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { basicAuth, createKeyCheck, DEFAULT_ACCESS_KEYS, isLoopback } from '../lib/http/access-keys.js';
import { createFileServer, type FileServerOptions } from '../lib/http/server.js';
import { WharfError } from '../lib/common/errors.js';
import { DEFAULT_KEY } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';

interface Probe {
  status: number;
  error?: string;
  wwwAuthenticate?: string;
}

/** Status (and the JSON error code, if any) of one request; an endless body is not waited for. */
function probe(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, headers, agent: false }, (res) => {
      const base: Probe = { status: res.statusCode ?? 0 };
      if (res.headers['www-authenticate'] !== undefined) base.wwwAuthenticate = String(res.headers['www-authenticate']);
      if (!String(res.headers['content-type']).startsWith('application/json')) {
        res.destroy();
        resolve(base);
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => {
        try {
          resolve({ ...base, error: (JSON.parse(text) as { error?: string }).error ?? '' });
        } catch {
          resolve(base);
        }
      });
      res.on('error', () => resolve(base));
    });
    req.on('error', reject);
    req.end(body);
  });
}

type Access = 'open' | 'read' | 'upload' | 'key' | 'private';
const ROUTES: Array<{ name: string; method: string; path: (id: string) => string; access: Access; body?: string; type?: string }> = [
  { name: 'POST _f/ (upload)', method: 'POST', path: () => '/_f/', access: 'upload', body: 'not multipart', type: 'text/plain' },
  { name: 'GET _f/<id>/…', method: 'GET', path: (id) => `/_f/${id}/ok.txt`, access: 'read' },
  { name: 'HEAD _f/<id>/…', method: 'HEAD', path: (id) => `/_f/${id}/ok.txt`, access: 'read' },
  { name: 'DELETE _f/<id>', method: 'DELETE', path: () => `/_f/${randomUUID()}`, access: 'key' },
  { name: 'POST _m/<name>', method: 'POST', path: () => '/_m/cam', access: 'key', body: 'frame', type: 'image/png' },
  { name: 'GET _m/<name>', method: 'GET', path: () => '/_m/cam', access: 'read' },
  { name: 'DELETE _m/<name>', method: 'DELETE', path: () => '/_m/cam', access: 'key' },
  { name: 'GET public mapping', method: 'GET', path: () => '/pub/ok.txt', access: 'open' },
  { name: 'GET private mapping', method: 'GET', path: () => '/priv/ok.txt', access: 'private' },
];

type Hook = 'none' | 'true' | 'false' | 'async-true' | 'async-false' | 'throws' | 'rejects' | 'cookie';
const CONFIGS: Array<{ name: string; hook: Hook; anonymousUploads?: boolean; keys?: Record<string, string> }> = [
  { name: 'default keys, no hook', hook: 'none' },
  { name: 'authorize → true', hook: 'true' },
  { name: 'authorize → false', hook: 'false' },
  { name: 'authorize → Promise(true)', hook: 'async-true' },
  { name: 'authorize → Promise(false)', hook: 'async-false' },
  { name: 'authorize throws', hook: 'throws' },
  { name: 'authorize rejects', hook: 'rejects' },
  { name: 'authorize checks a session cookie', hook: 'cookie' },
  { name: 'anonymousUploads', hook: 'none', anonymousUploads: true },
  { name: 'own keys', hook: 'none', keys: { app: 's3cret', other: 'x' } },
  { name: 'no keys at all, no hook', hook: 'none', keys: {} },
];

const CREDS: Array<{ name: string; headers: (keys: Record<string, string> | undefined) => Record<string, string>; valid: boolean }> = [
  { name: 'no credentials', headers: () => ({}), valid: false },
  { name: 'wrong secret', headers: (k) => ({ Authorization: basicAuth(Object.keys(k ?? DEFAULT_ACCESS_KEYS)[0] ?? 'access_key_id', 'wrong') }), valid: false },
  { name: 'unknown id', headers: () => ({ Authorization: basicAuth('nobody', 'access_key_secret') }), valid: false },
  { name: 'not Basic', headers: () => ({ Authorization: 'Bearer abc' }), valid: false },
  { name: 'right key', headers: (k) => (k === undefined ? { Authorization: DEFAULT_KEY } : Object.keys(k).length ? { Authorization: basicAuth('app', 's3cret') } : {}), valid: true },
  { name: 'session cookie + a foreign Basic header', headers: () => ({ Cookie: 'sid=ok', Authorization: basicAuth('proxy-user', 'proxy-pass') }), valid: false },
];

function hookOf(hook: Hook): FileServerOptions['authorize'] {
  switch (hook) {
    case 'none': return undefined;
    case 'true': return () => true;
    case 'false': return () => false;
    case 'async-true': return async () => true;
    case 'async-false': return async () => false;
    case 'throws': return () => { throw new Error('session store down'); };
    case 'rejects': return () => Promise.reject(new Error('session store down'));
    case 'cookie': return (req: IncomingMessage) => req.headers.cookie === 'sid=ok';
  }
}

/** What docs/protocol.md §4 says should happen: 'in' (past auth), 401, or 500 (the hook failed). */
function expected(access: Access, cfg: (typeof CONFIGS)[number], cred: (typeof CREDS)[number]): 'in' | 401 | 500 {
  const keyValid = cred.valid && (cfg.keys === undefined || Object.keys(cfg.keys).length > 0);
  if (keyValid) return 'in';
  const hook = cfg.hook !== 'none';
  if (access === 'open' || (access === 'read' && !hook) || (access === 'upload' && cfg.anonymousUploads)) return 'in';
  if (access === 'key' || !hook) return 401;
  switch (cfg.hook) {
    case 'true': case 'async-true': return 'in';
    case 'throws': case 'rejects': return 500;
    case 'cookie': return cred.name.startsWith('session cookie') ? 'in' : 401;
    default: return 401;
  }
}

describe('auth matrix', () => {
  let tmp: string;
  let cleanup: () => Promise<void>;
  const id = randomUUID();

  before(async () => {
    ({ dir: tmp, cleanup } = await makeTempDir());
    for (const d of ['pub', 'priv', join('data', 'f', id)]) {
      await mkdir(join(tmp, d), { recursive: true });
      await writeFile(join(tmp, d, 'ok.txt'), 'ok');
    }
  });
  after(() => cleanup());

  for (const cfg of CONFIGS) {
    test(cfg.name, async () => {
      const warnings: string[] = [];
      const authorize = hookOf(cfg.hook);
      const opts: FileServerOptions = {
        dataDir: join(tmp, 'data'),
        publicDirs: [`/pub/@${join(tmp, 'pub')}`],
        privateDirs: [`/priv/@${join(tmp, 'priv')}`],
        warn: (m) => warnings.push(m),
      };
      if (authorize) opts.authorize = authorize;
      if (cfg.anonymousUploads) opts.anonymousUploads = true;
      if (cfg.keys) opts.accessKeys = cfg.keys;
      const files = createFileServer(opts);
      const { url } = await files.listen({ port: 0 });
      try {
        for (const route of ROUTES) {
          for (const cred of CREDS) {
            const headers = cred.headers(cfg.keys);
            if (route.type) headers['Content-Type'] = route.type;
            const got = await probe(url, route.method, route.path(id), headers, route.body);
            const want = expected(route.access, cfg, cred);
            const where = `${route.name} with ${cred.name}: got ${got.status} ${got.error ?? ''}`;
            if (want === 401) {
              assert.equal(got.status, 401, where);
              assert.equal(got.wwwAuthenticate, 'Basic realm="wharf"', where);
              if (route.method !== 'HEAD') assert.equal(got.error, 'UNAUTHORIZED', where);
            } else if (want === 500) {
              assert.equal(got.status, 500, where);
              if (route.method !== 'HEAD') assert.equal(got.error, 'AUTHORIZE_FAILED', where);
            } else {
              assert.notEqual(got.status, 401, where);
              assert.notEqual(got.error, 'AUTHORIZE_FAILED', where);
              assert.notEqual(got.error, 'UNAUTHORIZED', where);
            }
          }
        }
        // the public and read routes really serve when let in
        if (cfg.hook === 'none') {
          assert.equal((await probe(url, 'GET', '/pub/ok.txt', {})).status, 200);
          assert.equal((await probe(url, 'GET', `/_f/${id}/ok.txt`, {})).status, 200);
        }
        if (cfg.hook === 'throws' || cfg.hook === 'rejects') {
          assert.ok(warnings.some((w) => w.includes('session store down')), 'the hook failure is logged');
        }
        for (const w of warnings) assert.ok(!w.includes('access_key_secret') && !w.includes('s3cret'), `no secret in logs: ${w}`);
      } finally {
        await files.close();
      }
    });
  }
});

describe('access keys', () => {
  const fakeReq = (authorization: string | undefined, localAddress: string): IncomingMessage =>
    ({ headers: authorization === undefined ? {} : { authorization }, socket: { localAddress } }) as unknown as IncomingMessage;

  test('default keys count only on loopback (middleware behind a public address)', () => {
    const check = createKeyCheck(undefined);
    assert.equal(check.defaults, true);
    assert.equal(check(fakeReq(DEFAULT_KEY, '127.0.0.1')), 'valid');
    assert.equal(check(fakeReq(DEFAULT_KEY, '::1')), 'valid');
    assert.equal(check(fakeReq(DEFAULT_KEY, '::ffff:127.0.0.1')), 'valid');
    assert.equal(check(fakeReq(DEFAULT_KEY, '10.0.0.5')), 'invalid');
    assert.equal(check(fakeReq(DEFAULT_KEY, '::ffff:192.168.1.2')), 'invalid');
    assert.equal(check(fakeReq(undefined, '10.0.0.5')), 'none');
  });

  test('own keys count anywhere; every malformed header is invalid', () => {
    const check = createKeyCheck({ app: 'pa:ss wörd' });
    assert.equal(check.defaults, false);
    assert.equal(check(fakeReq(basicAuth('app', 'pa:ss wörd'), '10.0.0.5')), 'valid');
    assert.equal(check(fakeReq(`basic   ${Buffer.from('app:pa:ss wörd').toString('base64')} `, '10.0.0.5')), 'valid');
    for (const bad of [basicAuth('app', 'pa:ss word'), basicAuth('app', ''), basicAuth('app', 'pa:ss wörd '), basicAuth('', 'pa:ss wörd'), 'Basic', 'Basic !!!', `Basic ${Buffer.from('no-colon').toString('base64')}`, 'Digest x', '']) {
      assert.equal(check(fakeReq(bad, '127.0.0.1')), 'invalid', bad);
    }
    assert.equal(createKeyCheck({})(fakeReq(DEFAULT_KEY, '127.0.0.1')), 'invalid');
  });

  test('a browser page\'s own requests get 401 without a Basic challenge; apps and navigations get it', async () => {
    const { dir, cleanup } = await makeTempDir();
    const files = createFileServer({ dataDir: dir, accessKeys: { app: 'secret' }, warn: () => {} });
    try {
      const { url } = await files.listen({ port: 0 });
      for (const [mode, challenged] of [[undefined, true], ['navigate', true], ['cors', false], ['same-origin', false], ['no-cors', false]] as const) {
        const headers: Record<string, string> = mode === undefined ? {} : { 'Sec-Fetch-Mode': mode };
        const p = await probe(url, 'DELETE', `/_f/${randomUUID()}`, headers);
        assert.equal(p.status, 401, String(mode));
        assert.equal(p.error, 'UNAUTHORIZED', String(mode));
        assert.equal(p.wwwAuthenticate, challenged ? 'Basic realm="wharf"' : undefined, String(mode));
      }
    } finally {
      await files.close();
      await cleanup();
    }
  });

  test('isLoopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost', 'app.localhost']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '', undefined, '::ffff:10.0.0.1', '127.0.0.1.evil.com']) assert.equal(isLoopback(h), false, String(h));
  });

  test('listen() with default keys off loopback is refused; with own keys it is fine', async () => {
    const { dir, cleanup } = await makeTempDir();
    try {
      for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
        const files = createFileServer({ dataDir: dir, warn: () => {} });
        await assert.rejects(files.listen({ host, port: 0 }), (e: unknown) => e instanceof WharfError && e.code === 'DEFAULT_KEYS_OFF_LOOPBACK' && /access/i.test(e.message));
        await files.close();
      }
      const files = createFileServer({ dataDir: dir, accessKeys: { app: 'secret' }, warn: () => {} });
      const a = await files.listen({ host: '0.0.0.0', port: 0 });
      assert.equal(a.host, '0.0.0.0');
      assert.ok(a.port > 0);
      await files.close();
    } finally {
      await cleanup();
    }
  });
});
