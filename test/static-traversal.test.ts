// Path traversal, over raw sockets (so no client normalises the path first), against a public
// mapping, a private mapping (with a valid key, so auth is not what stops it), a symlinked root and
// the upload storage `_f/`: every attempt is a 400 or 404, and no byte from outside ever comes back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFileServer, type FileServer } from '../lib/http/server.js';
import { DEFAULT_KEY } from './helpers/server.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { rawExchange, rawGet } from './helpers/raw-http.js';

const OUTSIDE = 'OUTSIDE-SECRET-7f3a';
const DATA_SECRET = 'DATA-SECRET-91bc';
const MARKERS = [OUTSIDE, DATA_SECRET, 'root:x:0:0', 'PRIVATE-ONLY'];

/** Attempts relative to a root `R` that sits `depth` directories below the temp dir holding `outside/`. */
function attempts(depth: number): string[] {
  const up = (sep: string): string => Array(depth).fill('..').join(sep);
  const enc = (sep: string, dots: string): string => Array(depth).fill(dots).join(sep);
  return [
    `${up('/')}/outside/secret.txt`,
    `${enc('/', '%2e%2e')}/outside/secret.txt`,
    `${enc('/', '%2E%2E')}/outside/secret.txt`,
    `${enc('/', '.%2e')}/outside/secret.txt`,
    `${enc('%2f', '%2e%2e')}%2foutside%2fsecret.txt`,
    `${up('%2F')}%2Foutside%2Fsecret.txt`,
    `${enc('/', '%252e%252e')}/outside/secret.txt`, // double-encoded
    `${enc('%252f', '%252e%252e')}%252foutside%252fsecret.txt`,
    `${up('%5c')}%5coutside%5csecret.txt`, // ..%5c
    `${up('\\')}\\outside\\secret.txt`, // raw backslashes
    `%5c${up('%5c')}%5coutside%5csecret.txt`,
    `${enc('/', '%c0%ae%c0%ae')}/outside/secret.txt`, // overlong UTF-8 dots
    `${enc('%c0%af', '%c0%ae%c0%ae')}%c0%afoutside%c0%afsecret.txt`,
    `${enc('/', '%e0%80%ae%e0%80%ae')}/outside/secret.txt`,
    `${enc('/', '%u002e%u002e')}/outside/secret.txt`, // IIS-style %u
    `${up('/')}%00/outside/secret.txt`, // NUL
    'ok.txt%00.png',
    `${up('/')}/outside/secret.txt%00ok.txt`,
    '/etc/passwd', // absolute: R + '/etc/passwd'
    '%2fetc%2fpasswd',
    '%2Fetc/passwd',
    `./${up('/')}/outside/secret.txt`,
    `sub/../${up('/')}/outside/secret.txt`,
    `ok.txt/../${up('/')}/outside/secret.txt`,
    `${Array(12).fill('..').join('/')}/etc/passwd`,
    `....//outside/secret.txt`,
    `${enc('/', '..;')}/outside/secret.txt`, // Tomcat-style
    `${enc('/', '.%2e')}%5c..%5cetc%5cpasswd`,
    `${up('%255c')}%255coutside%255csecret.txt`, // double-encoded backslash
    'escape/secret.txt', // a symlinked directory inside the root leading out
    'leak.txt', // a symlinked file inside the root leading out
    'escape%2fsecret.txt',
    `?x=${up('/')}/outside/secret.txt`,
  ];
}

describe('path traversal', () => {
  let files: FileServer;
  let port: number;
  let tmp: string;
  let cleanup: () => Promise<void>;
  const id = randomUUID();

  before(async () => {
    ({ dir: tmp, cleanup } = await makeTempDir());
    await mkdir(join(tmp, 'outside'));
    await writeFile(join(tmp, 'outside', 'secret.txt'), OUTSIDE);
    const roots = { pub: join(tmp, 'pub'), priv: join(tmp, 'priv'), real: join(tmp, 'realroot'), upload: join(tmp, 'data', 'f', id) };
    for (const [name, dir] of Object.entries(roots)) {
      await mkdir(join(dir, 'sub'), { recursive: true });
      await writeFile(join(dir, 'ok.txt'), `OK-${name}`);
      await symlink(join(tmp, 'outside'), join(dir, 'escape'));
      await symlink(join(tmp, 'outside', 'secret.txt'), join(dir, 'leak.txt'));
    }
    await writeFile(join(tmp, 'data', 'secret.txt'), DATA_SECRET);
    await writeFile(join(tmp, 'data', 'f', 'secret.txt'), DATA_SECRET);
    await writeFile(join(tmp, 'priv', 'private.txt'), 'PRIVATE-ONLY');
    await symlink(roots.real, join(tmp, 'linkedroot'));
    files = createFileServer({
      dataDir: join(tmp, 'data'),
      publicDirs: [`/pub/@${roots.pub}`, { url: '/linked', path: join(tmp, 'linkedroot') }],
      privateDirs: [`/priv/@${roots.priv}`],
      warn: () => {},
    });
    ({ port } = await files.listen({ port: 0 }));
  });
  after(async () => {
    await files.close();
    await cleanup();
  });

  const roots: Array<{ prefix: () => string; depth: number; name: string; headers?: Record<string, string> }> = [
    { name: 'public mapping', prefix: () => '/pub/', depth: 1 },
    { name: 'private mapping (valid key)', prefix: () => '/priv/', depth: 1, headers: { Authorization: DEFAULT_KEY } },
    { name: 'symlinked root', prefix: () => '/linked/', depth: 1 },
    { name: 'upload storage _f/', prefix: () => `/_f/${id}/`, depth: 3 },
  ];

  for (const root of roots) {
    test(`${root.name}: the root itself serves (control)`, async () => {
      const r = await rawGet(port, `${root.prefix()}ok.txt`, root.headers);
      assert.equal(r.status, 200, r.text);
      assert.match(r.text, /OK-/);
    });

    test(`${root.name}: ${attempts(root.depth).length} traversal attempts get 400/404 and no outside byte`, async () => {
      const list = attempts(root.depth);
      assert.ok(list.length >= 25);
      for (const attempt of list) {
        const path = `${root.prefix()}${attempt}`;
        const r = await rawGet(port, path, root.headers);
        assert.ok(r.status === 400 || r.status === 404, `${path} → ${r.status}\n${r.text}`);
        for (const m of MARKERS) assert.ok(!r.text.includes(m), `${path} leaked ${m}`);
      }
    });
  }

  test('paths that leave one root for another, or for wharf\'s own routes, stay where they are', async () => {
    for (const path of ['/pub/../priv/private.txt', '/pub/%2e%2e/priv/private.txt', '/linked/../priv/private.txt', `/_f/${id}/../../../priv/private.txt`, '/pub/..%2fpriv%2fprivate.txt']) {
      const r = await rawGet(port, path);
      assert.ok(r.status === 400 || r.status === 404, `${path} → ${r.status}`);
      assert.ok(!r.text.includes('PRIVATE-ONLY'), path);
    }
  });

  test('a directory swapped for a symlink after its files were served (and cached) does not escape', async () => {
    const pub = join(tmp, 'pub');
    await mkdir(join(pub, 'swap'));
    await writeFile(join(pub, 'swap', 'secret.txt'), 'inside small');
    await writeFile(join(pub, 'swap', 'big.bin'), Buffer.alloc(1_200_000, 105)); // over cacheFileSize
    for (let i = 0; i < 2; i++) {
      assert.equal((await rawGet(port, '/pub/swap/secret.txt')).status, 200);
      assert.equal((await rawGet(port, '/pub/swap/big.bin', { 'If-None-Match': '"x"' })).status, 200);
    }
    await mkdir(join(tmp, 'outside', 'swap'), { recursive: true });
    await writeFile(join(tmp, 'outside', 'swap', 'secret.txt'), OUTSIDE);
    await writeFile(join(tmp, 'outside', 'swap', 'big.bin'), `${OUTSIDE}`.repeat(20_000));
    // and files swapped for symlinks themselves
    await writeFile(join(pub, 'small-swap.txt'), 'inside small');
    await writeFile(join(pub, 'big-swap.bin'), Buffer.alloc(1_200_000, 105));
    for (let i = 0; i < 2; i++) {
      assert.equal((await rawGet(port, '/pub/small-swap.txt')).status, 200);
      assert.equal((await rawGet(port, '/pub/big-swap.bin', { 'If-None-Match': '"x"' })).status, 200);
    }
    await rename(join(pub, 'swap'), join(tmp, 'swapped-away'));
    await symlink(join(tmp, 'outside', 'swap'), join(pub, 'swap'));
    await rename(join(pub, 'small-swap.txt'), join(tmp, 'swapped-away', 'small-swap.txt'));
    await symlink(join(tmp, 'outside', 'swap', 'secret.txt'), join(pub, 'small-swap.txt'));
    await rename(join(pub, 'big-swap.bin'), join(tmp, 'swapped-away', 'big-swap.bin'));
    await symlink(join(tmp, 'outside', 'swap', 'big.bin'), join(pub, 'big-swap.bin'));
    for (const [path, headers] of [
      ['/pub/swap/secret.txt', {}], ['/pub/swap/big.bin', {}], ['/pub/swap/big.bin', { 'If-None-Match': '"x"' }], ['/pub/swap/big.bin', { Range: 'bytes=0-99' }],
      ['/pub/small-swap.txt', {}], ['/pub/big-swap.bin', {}], ['/pub/big-swap.bin', { 'If-None-Match': '"x"' }], ['/pub/big-swap.bin', { Range: 'bytes=0-99' }],
    ] as const) {
      const r = await rawGet(port, path, headers);
      assert.equal(r.status, 404, `${path} ${JSON.stringify(headers)} → ${r.status}`);
      assert.ok(!r.text.includes(OUTSIDE) && !r.text.includes('inside small'), path);
    }
  });

  test('absolute-form request targets are reduced to their path and checked the same way', async () => {
    for (const target of [`http://127.0.0.1:${port}/pub/../outside/secret.txt`, `http://127.0.0.1:${port}/pub/%2e%2e/outside/secret.txt`]) {
      const got = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close`);
      assert.match(got, /^HTTP\/1\.1 (400|404)/, target);
      assert.ok(!got.includes(OUTSIDE));
    }
    const ok = await rawExchange(port, `GET http://127.0.0.1:${port}/pub/ok.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close`);
    assert.match(ok, /^HTTP\/1\.1 200/);
  });
});
