// The CLI entry as `npm start` runs it: a child process that serves, prints where, and exits 0 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request, tempDir } from './server-util.js';

const CLI = new URL('../lib/cli.js', import.meta.url).href;

function run(args: string[]): { out: () => string; exited: Promise<number | null>; kill: (s: NodeJS.Signals) => void; listening: Promise<string> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import { main } from ${JSON.stringify(CLI)}; process.exitCode = await main(${JSON.stringify(args)});`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d; });
  child.stderr.on('data', (d: Buffer) => { out += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  listening.catch(() => {});
  return { out: () => out, exited, kill: (s) => child.kill(s), listening };
}

test('cli: serves --data-dir and --public-dir on --listen, stops cleanly on SIGTERM and SIGINT', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await mkdir(join(dir, 'pub'));
    await writeFile(join(dir, 'pub', 'x.txt'), 'from the cli');
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const p = run(['--listen', '127.0.0.1:0', `--data-dir=${join(dir, 'data')}`, '--public-dir', `/p/@${join(dir, 'pub')}`, '--private-dir', `/q/@${join(dir, 'pub')}`]);
      const url = await p.listening;
      assert.equal((await request(url, '/p/x.txt')).text, 'from the cli');
      assert.equal((await request(url, '/q/x.txt')).status, 401);
      assert.match(p.out(), /public {2}\/p\/@/);
      p.kill(signal);
      assert.equal(await p.exited, 0, p.out());
    }
  } finally {
    await cleanup();
  }
});

test('cli: bad arguments and an off-loopback address with default keys exit 2 with a message', async () => {
  for (const [args, message] of [
    [['--nope'], /unknown argument "--nope"/],
    [['--listen'], /--listen: missing value/],
    [['--listen', 'nonsense'], /HOST:PORT/],
    [['--public-dir', '/x/'], /URL@PATH/],
    [['--listen', '0.0.0.0:0'], /default access key/],
  ] as const) {
    const p = run([...args]);
    assert.equal(await p.exited, 2, p.out());
    assert.match(p.out(), message);
  }
});
