// The command's parts in-process: flags, sizes and durations, the progress bar, and `main` with a
// fake terminal (progress bar, text log).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { delimiter, join } from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'node:test';
import { main } from '../lib/cli/command.js';
import { formatFlags, parseArgs, parseBoolean, parseCount, parseDuration, parseSize, splitList, UsageError, type FlagSpec } from '../lib/cli/flags.js';
import { createBar, formatBytes, formatEta, renderBar } from '../lib/cli/progress-bar.js';
import { eventually, fetchRaw, startWharf, tempDir, KEY } from './helpers/client.js';
import { defer } from './helpers/defer.js';

test('sizes: IEC and SI units, fractions, plain bytes; nonsense is a UsageError', () => {
  assert.equal(parseSize('512MiB'), 512 * 1024 ** 2);
  assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
  assert.equal(parseSize('10MB'), 10_000_000);
  assert.equal(parseSize('64k'), 65536);
  assert.equal(parseSize('1 kB'), 1000);
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('0'), 0);
  for (const bad of ['', 'MiB', '-1', '1e3', '12XB', '1.2.3', '99999999999TiB']) assert.throws(() => parseSize(bad), UsageError, bad);
});

test('durations: ms, s, m, min, h, d, plain ms', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('2min'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('5000'), 5000);
  for (const bad of ['soon', '1w', '-5s', 's']) assert.throws(() => parseDuration(bad), UsageError, bad);
});

test('counts, booleans and lists', () => {
  assert.equal(parseCount('1000'), 1000);
  for (const bad of ['1.5', '-1', 'x', '', '99999999999999999999']) assert.throws(() => parseCount(bad), UsageError, bad);
  for (const yes of ['1', 'true', 'YES', 'on']) assert.equal(parseBoolean(yes), true);
  for (const no of ['0', 'false', 'No', 'off', '']) assert.equal(parseBoolean(no), false);
  assert.throws(() => parseBoolean('maybe'), UsageError);
  assert.deepEqual(splitList(['/a/@/x', ' /b/@/y ', '', '/c/@/z'].join(delimiter)), ['/a/@/x', '/b/@/y', '/c/@/z']);
});

test('parseArgs: flag forms, repeats, env fallback, flags beat env, errors', () => {
  const specs: FlagSpec[] = [
    { name: 'name', kind: 'string', env: 'T_NAME', help: 'a name' },
    { name: 'dir', kind: 'list', env: 'T_DIR', help: 'dirs' },
    { name: 'on', kind: 'boolean', env: 'T_ON', help: 'a switch' },
    { name: 'size', kind: 'size', env: 'T_SIZE', help: 'a size' },
    { name: 'mode', kind: 'choice', choices: ['a', 'b'], help: 'a choice' },
  ];
  const r = parseArgs(['pos1', '--name', 'x', '--dir=/a', '--dir', '/b', '--on', '--size=1KiB', 'pos2', '--', '--not-a-flag'], specs, { T_NAME: 'env', T_DIR: '/c', T_SIZE: '5' });
  assert.deepEqual(Object.fromEntries(r.values), { name: 'x', dir: ['/a', '/b'], on: true, size: 1024 });
  assert.deepEqual(r.positionals, ['pos1', 'pos2', '--not-a-flag']);

  const e = parseArgs([], specs, { T_NAME: 'env', T_DIR: ['/c', '/d'].join(delimiter), T_ON: 'false', T_SIZE: '2MiB' });
  assert.deepEqual(Object.fromEntries(e.values), { name: 'env', dir: ['/c', '/d'], on: false, size: 2 * 1024 ** 2 });
  assert.deepEqual(Object.fromEntries(parseArgs([], specs, { T_NAME: '', T_DIR: '' }).values), {}, 'empty variables are unset');
  assert.deepEqual(parseArgs(['-'], specs).positionals, ['-']);
  assert.equal(parseArgs(['--on=no'], specs).values.get('on'), false);

  for (const [argv, message] of [
    [['--nope'], /unknown flag --nope/],
    [['-n'], /unknown flag -n/],
    [['--name'], /--name needs a value/],
    [['--name', '--on'], /--name needs a value/],
    [['--name', 'a', '--name', 'b'], /--name given twice/],
    [['--name='], /--name: empty value/],
    [['--mode', 'c'], /--mode: expected one of a, b/],
    [['--size', 'big'], /--size: not a size/],
  ] as Array<[string[], RegExp]>) {
    assert.throws(() => parseArgs(argv, specs), (err: unknown) => err instanceof UsageError && message.test(err.message), argv.join(' '));
  }
  assert.throws(() => parseArgs([], specs, { T_SIZE: 'big' }), /T_SIZE: not a size/);

  const help = formatFlags(specs);
  assert.match(help, /--name VALUE\s+a name \(env T_NAME\)/);
  assert.match(help, /--on\s+a switch \(env T_ON\)/);
  assert.match(help, /--mode a\|b\s+a choice/);
});

test('progress bar: bytes, percentage, rate, ETA, fitted to the width, redrawn in place', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(50 * 1024 ** 2), '50.0 MiB');
  assert.equal(formatBytes(500 * 1024 ** 3), '500 GiB');
  assert.equal(formatBytes(3 * 1024 ** 5), '3072 TiB');
  assert.equal(formatEta(0), '0:00');
  assert.equal(formatEta(61.2), '1:02');
  assert.equal(formatEta(3 * 3600 + 5), '3:00:05');
  assert.equal(formatEta(Number.POSITIVE_INFINITY), '--:--');

  const line = renderBar('model.bin', { loaded: 512 * 1024, total: 1024 * 1024 }, 256 * 1024, 100);
  assert.match(line, /^model\.bin {2}\[#+-+\] {2} 50% {2}512 KiB \/ 1.00 MiB {2}256 KiB\/s {2}ETA 0:02$/);
  assert.ok(line.length <= 99);
  assert.match(renderBar('x', { loaded: 10, total: undefined }, 0, 80), /^x {2}10 B {2}0 B\/s$/);
  const long = renderBar('a'.repeat(200), { loaded: 1, total: 2 }, 1, 60);
  assert.match(long, /^…a+ {2,}50%/, 'a long label keeps its end');
  assert.ok(long.length <= 59);
  assert.match(renderBar('a'.repeat(200), { loaded: 1, total: 2 }, 1, 120), /^…a+ {2}\[#+-+\]/);
  assert.ok(renderBar('name', { loaded: 1, total: 2 }, 1, 20).length <= 19, 'fits a narrow terminal');
  assert.match(renderBar('e', { loaded: 0, total: 0 }, 0, 80), /100%/);

  let now = 0;
  const frames: string[] = [];
  const bar = createBar({ label: 'f', out: { write: (s: string) => frames.push(s), columns: 80 }, now: () => now, interval: 100 });
  bar.update({ loaded: 0, total: 1000 });
  now = 50;
  bar.update({ loaded: 100, total: 1000 }); // within the interval: not drawn
  now = 1000;
  bar.update({ loaded: 500, total: 1000 });
  now = 2000;
  bar.update({ loaded: 1000, total: 1000 });
  bar.done();
  assert.equal(frames.length, 4 + 1);
  for (const f of frames.slice(0, 4)) assert.match(f, /^\r.*\x1b\[K$/);
  assert.match(frames[1]!, / 50%.*500 B\/s.*ETA 0:01/);
  assert.match(frames[2]!, /100%/);
  assert.equal(frames[4], '\n');
});

interface FakeTerminal extends PassThrough { isTTY: boolean; columns: number; text(): string }
function terminal(isTTY: boolean): FakeTerminal {
  const out = new PassThrough() as FakeTerminal;
  let text = '';
  out.on('data', (c: Buffer) => { text += c.toString(); });
  return Object.assign(out, { isTTY, columns: 100, text: () => text });
}

test('main in-process: a progress bar on a terminal, quiet otherwise; paths on stdout', async (t) => {
  const { url } = await startWharf(t);
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.bin'), Buffer.alloc(3 * 1024 * 1024, 1));
  const env = { WHARF_SERVER: url, WHARF_ACCESS_KEY_ID: KEY.accessKeyId, WHARF_ACCESS_KEY_SECRET: KEY.accessKeySecret };

  const stdout = terminal(false);
  const stderr = terminal(true);
  assert.equal(await main(['upload', join(dir, 'a.bin')], { stdout, stderr, env, signals: new EventEmitter() }), 0);
  const [path] = stdout.text().trim().split('\n');
  assert.match(path!, /^\/_f\/.+\/a\.bin$/);
  assert.match(stderr.text(), /\ra\.bin {2}\[#+\] +100% {2}3\.00 MiB \/ 3\.00 MiB {2}[\d.]+ [KMG]?i?B\/s {2}ETA 0:00/);
  assert.ok(stderr.text().endsWith('\n'));

  const out2 = terminal(false);
  const err2 = terminal(true);
  await mkdir(join(dir, 'into'));
  assert.equal(await main(['download', path!, join(dir, 'into')], { stdout: out2, stderr: err2, env, signals: new EventEmitter() }), 0);
  assert.equal(out2.text(), `${join(dir, 'into', 'a.bin')}\n`);
  assert.match(err2.text(), /100%/);

  const err3 = terminal(true);
  assert.equal(await main(['unload', path!], { stdout: terminal(false), stderr: err3, env, signals: new EventEmitter() }), 0);
  const err4 = terminal(true);
  assert.equal(await main(['unload', path!], { stdout: terminal(false), stderr: err4, env, signals: new EventEmitter() }), 1);
  assert.equal(err3.text(), '', 'no bar for an unload: there are no bytes to show');
  assert.match(err4.text(), /^wharf: unload failed: .*NOT_FOUND/);
  const err5 = terminal(true);
  assert.equal(await main(['download', path!, join(dir, 'into')], { stdout: terminal(false), stderr: err5, env, signals: new EventEmitter() }), 1);
  assert.match(err5.text(), /^wharf: download failed: .*NOT_FOUND/, 'nothing was drawn, so no empty line');
  // A transfer that fails after the bar has drawn ends the bar's line before the error.
  let served = 0;
  const cut = http.createServer((_req, res) => {
    // Half a body, then gone: the resume gets a 404, which is not retried.
    if (served++ > 0) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': 1 << 20, etag: '"a"' });
    res.write(Buffer.alloc(1 << 19), () => res.destroy());
  });
  await new Promise<void>((resolve) => cut.listen(0, '127.0.0.1', resolve));
  defer(t, () => new Promise((resolve) => { cut.closeAllConnections(); cut.close(resolve); }));
  const err6 = terminal(true);
  const cutUrl = `http://127.0.0.1:${(cut.address() as { port: number }).port}/half.bin`;
  assert.equal(await main(['download', cutUrl, join(dir, 'into')], { stdout: terminal(false), stderr: err6, env: {}, signals: new EventEmitter() }), 1);
  assert.match(err6.text(), /^\rhalf\.bin [^\n]*\nwharf: download failed: .*NOT_FOUND/s);
});

test('main in-process: serve logs text lines on a terminal and stops on a signal', async (t) => {
  const dir = await tempDir(t);
  const stdout = terminal(true);
  const stderr = terminal(false);
  const signals = new EventEmitter();
  const running = main(['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--public-dir', `/p/@${dir}`], { stdout, stderr, env: {}, signals });
  assert.ok(await eventually(async () => /listening on/.test(stdout.text())));
  const url = /listening on (http:\S+)/.exec(stdout.text())![1]!;
  assert.match(stdout.text(), /^wharf \S+ listening on http:\/\/127\.0\.0\.1:\d+ as node \S+-\d+ \(Wave's default access keys: loopback only\)\n {2}uploads {2}http.*\/_f\/ -> .*\n {2}streams {2}http.*\/_m\/\n {2}public {3}http.*\/p\/ -> /);
  await writeFile(join(dir, 'x.txt'), 'x');
  assert.equal((await fetchRaw(`${url}/p/x.txt`)).status, 200);
  assert.ok((await fetchRaw(`${url}/p/%0a%1b[31mfake`)).status >= 400);
  assert.ok(await eventually(async () => /fake/.test(stdout.text())));
  assert.match(stdout.text(), /\n\S+Z \S+-\d+ GET \/p\/x\.txt 200 \d+ B [\d.]+ ms\n/);
  assert.match(stdout.text(), /GET \/p\/%0a%1b\[31mfake 4\d\d/, 'the path as sent, percent-encoded: no control characters reach the log');
  signals.emit('SIGTERM');
  assert.equal(await running, 0);
  assert.match(stdout.text(), /SIGTERM, closing/);
  assert.equal(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGINT'), 0, 'no handler left behind');
});

test('main in-process: a port in use is exit 1 with the reason', async (t) => {
  const { url } = await startWharf(t);
  const dir = await tempDir(t);
  const stderr = terminal(false);
  const code = await main(['--listen', url.replace('http://', ''), '--data-dir', join(dir, 'data'), '--log', 'off'], { stdout: terminal(false), stderr, env: {}, signals: new EventEmitter() });
  assert.equal(code, 1);
  assert.match(stderr.text(), /^wharf: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
});

test('main in-process: --private-cache-control for what needs a key, --trust-unrecorded-uploads for files copied into the layout', async (t) => {
  const dir = await tempDir(t);
  const dataDir = join(dir, 'data');
  const copied = join(dataDir, 'f', '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b');
  await mkdir(copied, { recursive: true });
  await writeFile(join(copied, 'page.html'), '<p>copied</p>');
  await mkdir(join(dir, 'priv'));
  await writeFile(join(dir, 'priv', 'x.txt'), 'x');
  const stdout = terminal(false);
  const signals = new EventEmitter();
  const env = { WHARF_ACCESS_KEY_ID: KEY.accessKeyId, WHARF_ACCESS_KEY_SECRET: KEY.accessKeySecret, WHARF_TRUST_UNRECORDED_UPLOADS: 'true' };
  const running = main(['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--private-dir', `/priv/@${join(dir, 'priv')}`, '--private-cache-control', 'private, max-age=60', '--log', 'off'],
    { stdout, stderr: terminal(false), env, signals });
  assert.ok(await eventually(async () => /"listening"/.test(stdout.text())));
  const url = /"url":"(http:[^"]+)"/.exec(stdout.text())![1]!;
  const authorization = `Basic ${Buffer.from(`${KEY.accessKeyId}:${KEY.accessKeySecret}`).toString('base64')}`;
  assert.equal((await fetchRaw(`${url}/priv/x.txt`, { headers: { authorization } })).headers['cache-control'], 'private, max-age=60');
  const page = await fetchRaw(`${url}/_f/0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b/page.html`);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8', 'served as the app\'s own');
  assert.equal(page.headers['content-security-policy'], undefined);
  signals.emit('SIGTERM');
  assert.equal(await running, 0);

  const stderr = terminal(false);
  assert.equal(await main(['--data-dir', dataDir, '--private-cache-control', 'public, max-age=60'], { stdout: terminal(false), stderr, env: {}, signals: new EventEmitter() }), 2);
  assert.match(stderr.text(), /privateCacheControl: must say "private" or "no-store"/);
});
