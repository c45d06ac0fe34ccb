/**
 * The `wharf` command: `wharf [serve]` runs the file server; `wharf upload|download|unload` talk to
 * one over HTTP. Exit codes: 0 ok, 1 the server or a transfer failed, 2 usage (a bad flag, a
 * configuration the server refuses to start with).
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { basename, join, resolve } from 'node:path';
import { isLoopback } from '../http/access-keys.js';
import { connect, type ClientSite } from '../client/index.js';
import { WharfError } from '../common/errors.js';
import { formatFlags, parseArgs, UsageError, type FlagSpec, type FlagValue } from './flags.js';
import { DEFAULT_LIMITS, LIMIT_UNITS, type Limits } from '../common/limits.js';
import { parseMapping } from '../static/mappings.js';
import { createBar } from './progress-bar.js';
import { createFileServer, type FileServer, type FileServerOptions } from '../http/server.js';
import { decodeName } from '../common/upload-names.js';
import { storageModes } from '../uploads/local-storage.js';
import { canonicalPrefix } from '../http/request-path.js';
import type { TransferOptions } from '../common/site-api.js';

/** Where the command writes and what it reads; the real process by default, injectable for tests. */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Signals that stop `serve` or abort a transfer. */
  signals: NodeJS.EventEmitter;
}

const DEFAULT_LISTEN = '127.0.0.1:10101';
const DEFAULT_SERVER = 'http://127.0.0.1:10101';

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (flag: string): string => `WHARF_${flag.replace(/-/g, '_').toUpperCase()}`;

const keyFlags = (serving: boolean): FlagSpec[] => [
  { name: 'access-key-id', kind: 'string', env: 'WHARF_ACCESS_KEY_ID', value: 'ID', help: serving ? 'the access key apps authenticate with' : 'the access key to authenticate with', defaultText: serving ? "Wave's access_key_id, loopback only" : "Wave's access_key_id" },
  { name: 'access-key-secret', kind: 'string', env: 'WHARF_ACCESS_KEY_SECRET', value: 'SECRET', help: 'its secret (prefer the variable: flags show in ps)', defaultText: "Wave's access_key_secret" },
  { name: 'base-url', kind: 'string', env: 'WHARF_BASE_URL', value: 'PATH', help: serving ? 'URL prefix of _f/ and _m/' : "the server's base URL path", defaultText: '/' },
];
const HELP_FLAG: FlagSpec = { name: 'help', kind: 'boolean', help: 'show this help' };

const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>;

/** A size in the largest unit that divides it, in a form the flag accepts back (`8GiB`). */
function exactSize(n: number): string {
  for (const [unit, f] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${unit}`;
  }
  return String(n);
}

function exactDuration(ms: number): string {
  for (const [unit, f] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= f && ms % f === 0) return `${ms / f}${unit}`;
  }
  return `${ms}ms`;
}

/** One line per limit for `--help`; a limit missing here is still a flag, described by its key. */
const LIMIT_HELP: Partial<Record<keyof Limits, string>> = {
  fileSize: 'bytes in one uploaded file',
  files: 'files in one upload request',
  requestSize: 'bytes in one upload request',
  parts: 'parts in one multipart body',
  fields: 'non-file fields in one multipart body',
  fieldSize: "bytes in one field's value",
  headerSize: "bytes in one part's header block",
  frameSize: 'bytes in one image-stream frame',
  streams: 'image streams alive at once',
  viewersPerStream: 'viewers of one image stream',
  viewerStallTimeout: 'a viewer that reads nothing this long is dropped',
  streamIdleTimeout: 'a stream without a frame this long is ended',
  uploadIdleTimeout: 'an upload body that sends nothing this long fails',
  headersTimeout: 'time a client has to send its request headers',
  cacheFileSize: 'files up to this size are cached in memory (0: no cache)',
  cacheSize: 'bytes in the memory cache',
  closeGrace: 'time downloads get to finish on shutdown',
  downloadStallTimeout: 'a download whose client takes nothing this long is cut',
};

/** `--limit-file-size` … one per key of `Limits`, so a new limit gets its flag and variable by itself. */
export const LIMIT_FLAGS: FlagSpec[] = LIMIT_KEYS.map((key) => {
  const unit = LIMIT_UNITS[key];
  const name = `limit-${kebab(key)}`;
  const d = DEFAULT_LIMITS[key];
  return {
    name,
    kind: unit === 'bytes' ? 'size' : unit === 'ms' ? 'duration' : 'count',
    env: envName(name),
    value: unit === 'bytes' ? 'SIZE' : unit === 'ms' ? 'DURATION' : 'N',
    help: LIMIT_HELP[key] ?? `limits.${key}`,
    defaultText: unit === 'bytes' ? exactSize(d) : unit === 'ms' ? exactDuration(d) : String(d),
  } satisfies FlagSpec;
});

export const SERVE_FLAGS: FlagSpec[] = [
  { name: 'listen', kind: 'string', env: 'WHARF_LISTEN', value: 'HOST:PORT', help: 'address to listen on (:PORT = all interfaces)', defaultText: DEFAULT_LISTEN },
  { name: 'data-dir', kind: 'string', env: 'WHARF_DATA_DIR', value: 'DIR', help: 'where uploads are stored', defaultText: './data' },
  { name: 'public-dir', kind: 'list', env: 'WHARF_PUBLIC_DIR', value: 'URL@DIR', help: 'serve DIR at URL to anyone; repeatable' },
  { name: 'private-dir', kind: 'list', env: 'WHARF_PRIVATE_DIR', value: 'URL@DIR', help: 'serve DIR at URL to access keys only; repeatable' },
  ...keyFlags(true),
  { name: 'anonymous-uploads', kind: 'boolean', env: 'WHARF_ANONYMOUS_UPLOADS', help: 'let anyone POST uploads', defaultText: 'off' },
  { name: 'dotfiles', kind: 'boolean', env: 'WHARF_DOTFILES', help: 'serve dotfiles from mapped directories', defaultText: 'off' },
  { name: 'group-readable', kind: 'boolean', env: 'WHARF_GROUP_READABLE', help: "let the data dir's group read uploads (0750/0640)", defaultText: 'off: owner-only, 0700/0600' },
  { name: 'cache-control', kind: 'string', env: 'WHARF_CACHE_CONTROL', value: 'VALUE', help: 'Cache-Control of files anyone may read', defaultText: 'public, max-age=0, must-revalidate' },
  { name: 'private-cache-control', kind: 'string', env: 'WHARF_PRIVATE_CACHE_CONTROL', value: 'VALUE', help: 'Cache-Control of files that need authorization (must say private or no-store)', defaultText: 'private, max-age=0, must-revalidate' },
  { name: 'trust-unrecorded-uploads', kind: 'boolean', env: 'WHARF_TRUST_UNRECORDED_UPLOADS', help: "serve uploads with no record of who made them (copied into the data dir) as the app's own", defaultText: "off: as an end user's" },
  { name: 'sync-io', kind: 'choice', env: 'WHARF_SYNC_IO', choices: ['auto', 'off'], help: 'small file-system calls on the event loop while cheap; off for NFS/EFS/FUSE', defaultText: 'auto' },
  { name: 'log', kind: 'choice', env: 'WHARF_LOG', choices: ['text', 'json', 'off'], help: 'request log format', defaultText: 'text on a terminal, else json' },
  ...LIMIT_FLAGS,
  HELP_FLAG,
  { name: 'version', kind: 'boolean', help: 'print the version' },
];

const SERVER_FLAG: FlagSpec = { name: 'server', kind: 'string', env: 'WHARF_SERVER', value: 'URL', help: 'the wharf or Wave server', defaultText: DEFAULT_SERVER };
export const UPLOAD_FLAGS: FlagSpec[] = [
  SERVER_FLAG, ...keyFlags(false),
  { name: 'dir', kind: 'boolean', help: 'each FILE is a directory, uploaded whole under one id' },
  HELP_FLAG,
];
export const TRANSFER_FLAGS: FlagSpec[] = [SERVER_FLAG, ...keyFlags(false), HELP_FLAG];

function version(): string {
  try {
    // lib/cli/command.js sits in <root>/<outDir>/lib/cli/, whichever outDir it was built into.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function usage(): string {
  return `wharf ${version()}: a file server that speaks H2O Wave's file protocol

Usage:
  wharf [serve] [flags]              run the server
  wharf upload FILE... [--dir]       upload files (or directories) and print their URL paths
  wharf download URL [DEST]          download URL into DEST (a file or directory; default .)
  wharf unload URL                   delete the upload URL points into
  wharf help | --help                this help; wharf COMMAND --help for a command's flags
  wharf --version

Server flags (a flag beats its variable; list variables are separated by "${process.platform === 'win32' ? ';' : ':'}"):
${formatFlags(SERVE_FLAGS)}

Transfer flags:
${formatFlags(UPLOAD_FLAGS)}

Sizes: 512MiB, 2GiB, 1.5G (K/M/G/T are powers of 1024), 10MB (SI), or bytes.
Durations: 30s, 10m, 2h, 250ms, or milliseconds.
Exit codes: 0 ok, 1 failed, 2 usage or refused to start.
`;
}

interface Listen { host: string; port: number }

function parseListen(text: string): Listen {
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) [, host, port] = v6 as unknown as [string, string, string];
  else if (/^\d+$/.test(text)) [host, port] = ['127.0.0.1', text];
  else {
    const colon = text.lastIndexOf(':');
    if (colon < 0 || text.indexOf(':') !== colon) throw new UsageError(`--listen: expected HOST:PORT, [IPV6]:PORT or :PORT, got ${JSON.stringify(text)}`);
    host = text.slice(0, colon) || '0.0.0.0';
    port = text.slice(colon + 1);
  }
  const n = Number(port);
  if (!/^\d+$/.test(port) || n > 65535) throw new UsageError(`--listen: bad port in ${JSON.stringify(text)}`);
  return { host, port: n };
}

const FS_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EEXIST: 'it exists and is not a directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
};

/**
 * Proves `dir` writable by creating and removing a file in it: mode bits alone do not tell (root,
 * ACLs, read-only mounts), and this is the check Wave lacks, whose users meet a 500 on upload.
 */
async function probeDataDir(dir: string, mode: number): Promise<string | undefined> {
  const probe = join(dir, `.wharf-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    // With the mode the server's storage gives what it creates (its own start finds the dir there).
    await mkdir(dir, { recursive: true, mode });
    await writeFile(probe, 'probe', { flag: 'wx' });
    await rm(probe, { force: true });
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    return `data dir ${dir} is not writable: ${FS_REASONS[code] ?? (err as Error).message} (${code})`;
  }
}

type LogFormat = 'text' | 'json' | 'off';

/** Control characters in a logged path are escaped, so a request cannot forge log lines. */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function requestLogger(format: LogFormat, out: NodeJS.WritableStream): ((req: IncomingMessage, res: ServerResponse) => void) | undefined {
  if (format === 'off') return undefined;
  return (req, res) => {
    const started = performance.now();
    const socket = req.socket;
    const before = socket.bytesWritten;
    res.once('close', () => {
      const ms = Math.round((performance.now() - started) * 10) / 10;
      // The query string is left out: it may carry tokens. Headers are never logged.
      const path = (req.url ?? '').split('?')[0]!.slice(0, 2048);
      const bytes = socket.bytesWritten - before;
      const status = res.statusCode;
      const complete = res.writableFinished;
      out.write(format === 'json'
        ? `${JSON.stringify({ time: new Date().toISOString(), method: req.method, path, status, bytes, ms, ...(complete ? {} : { aborted: true }) })}\n`
        : `${new Date().toISOString()} ${req.method} ${printable(path)} ${status} ${bytes} B ${ms} ms${complete ? '' : ' (aborted)'}\n`);
    });
  };
}

async function serve(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(argv, SERVE_FLAGS, io.env);
  if (values.get('help')) {
    io.stdout.write(usage());
    return 0;
  }
  if (values.get('version')) {
    io.stdout.write(`${version()}\n`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const str = (name: string): string | undefined => values.get(name) as string | undefined;
  const listen = parseListen(str('listen') ?? DEFAULT_LISTEN);
  const id = str('access-key-id');
  const secret = str('access-key-secret');
  if ((id === undefined) !== (secret === undefined)) {
    throw new UsageError('--access-key-id and --access-key-secret go together (or WHARF_ACCESS_KEY_ID and WHARF_ACCESS_KEY_SECRET)');
  }
  const defaultKeys = id === undefined || (id === 'access_key_id' && secret === 'access_key_secret');
  if (defaultKeys && !isLoopback(listen.host)) {
    throw new UsageError(`refusing to listen on ${listen.host} with Wave's default access keys, which anyone knows: set --access-key-id and --access-key-secret (or WHARF_ACCESS_KEY_ID and WHARF_ACCESS_KEY_SECRET)`);
  }
  const limits: Partial<Limits> = {};
  LIMIT_KEYS.forEach((key, i) => {
    const v = values.get(LIMIT_FLAGS[i]!.name);
    if (v !== undefined) limits[key] = v as number;
  });
  const dataDir = resolve(str('data-dir') ?? './data');
  const publicDirs = (values.get('public-dir') as string[] | undefined) ?? [];
  const privateDirs = (values.get('private-dir') as string[] | undefined) ?? [];
  const baseUrl = str('base-url') ?? '/';
  const logFormat = (str('log') ?? (io.stdout.isTTY ? 'text' : 'json')) as LogFormat;
  const startFormat = logFormat === 'off' ? (io.stdout.isTTY ? 'text' : 'json') : logFormat;
  // Warnings before the start-up lines are printed with them; later ones (a failing request, say) at once.
  const warnings: string[] = [];
  let started = false;
  const printWarning = (message: string): void => {
    if (startFormat === 'json') io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'warning', message })}\n`);
    io.stderr.write(`wharf: warning: ${message}\n`);
  };

  const options: FileServerOptions = {
    dataDir,
    baseUrl,
    publicDirs,
    privateDirs,
    anonymousUploads: values.get('anonymous-uploads') === true,
    dotfiles: values.get('dotfiles') === true,
    trustUnrecordedUploads: values.get('trust-unrecorded-uploads') === true,
    groupReadable: values.get('group-readable') === true,
    limits,
    // The server words its warnings for a log of its own ("wharf: WARNING: …"); ours says who and what.
    warn: (message) => {
      const m = message.replace(/^wharf:\s*/i, '').replace(/^warning:\s*/i, '');
      if (started) printWarning(m);
      else warnings.push(m);
    },
  };
  if (id !== undefined && secret !== undefined && !defaultKeys) options.accessKeys = { [id]: secret };
  const cacheControl = str('cache-control');
  if (cacheControl !== undefined) options.cacheControl = cacheControl;
  if (values.get('sync-io') === 'off') options.syncIo = 'off';
  const privateCacheControl = str('private-cache-control');
  if (privateCacheControl !== undefined) options.privateCacheControl = privateCacheControl;

  let files: FileServer;
  try {
    files = createFileServer(options);
  } catch (err) {
    if (err instanceof WharfError) throw new UsageError(err.message);
    throw err;
  }
  const unwritable = await probeDataDir(dataDir, storageModes(options.groupReadable).dir);
  if (unwritable) throw new UsageError(unwritable);

  // Node announces every request its HTTP servers receive on this channel; the command's process
  // runs one server, wharf's, so its request log needs no hook inside the server.
  const logRequest = requestLogger(logFormat, io.stdout);
  const onStart = (message: unknown): void => {
    const { request, response } = message as { request: IncomingMessage; response: ServerResponse };
    logRequest?.(request, response);
  };
  if (logRequest) subscribe('http.server.request.start', onStart);
  let bound;
  try {
    bound = await files.listen(listen);
  } catch (err) {
    if (logRequest) unsubscribe('http.server.request.start', onStart);
    await files.close().catch(() => {});
    io.stderr.write(`wharf: ${(err as Error).message}\n`);
    return 1;
  }

  // As the server normalised it (createFileServer has accepted it, so this cannot throw).
  const base = canonicalPrefix(baseUrl, 'baseUrl');
  const lines: Array<Record<string, unknown>> = [
    { event: 'listening', url: bound.url, version: version(), keys: defaultKeys ? 'default' : 'configured', anonymousUploads: options.anonymousUploads },
    { event: 'serving', kind: 'uploads', url: `${bound.url}${base}_f/`, path: join(dataDir, 'f') },
    { event: 'serving', kind: 'streams', url: `${bound.url}${base}_m/` },
  ];
  for (const [list, isPrivate] of [[publicDirs, false], [privateDirs, true]] as const) {
    for (const spec of list) {
      const m = parseMapping(spec, isPrivate);
      lines.push({ event: 'serving', kind: isPrivate ? 'private' : 'public', url: `${bound.url}${m.prefix}`, path: m.path });
    }
  }
  for (const w of warnings) lines.push({ event: 'warning', message: w });
  // One write, so a reader that sees the first line sees them all.
  const time = new Date().toISOString();
  io.stdout.write(lines.map((line) => {
    if (startFormat === 'json') return `${JSON.stringify({ time, ...line })}\n`;
    if (line.event === 'listening') return `wharf ${String(line.version)} listening on ${String(line.url)}${defaultKeys ? " (Wave's default access keys: loopback only)" : ''}\n`;
    if (line.event === 'warning') return ''; // on stderr, below
    return `  ${String(line.kind).padEnd(8)} ${String(line.url)}${line.path ? ` -> ${String(line.path)}` : ''}\n`;
  }).join(''));
  for (const w of warnings) io.stderr.write(`wharf: warning: ${w}\n`);
  warnings.length = 0;
  started = true;

  const signal = await new Promise<string>((resolvePromise) => {
    const onInt = (): void => done('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    const done = (sig: string): void => {
      io.signals.off('SIGINT', onInt);
      io.signals.off('SIGTERM', onTerm);
      resolvePromise(sig);
    };
    io.signals.on('SIGINT', onInt);
    io.signals.on('SIGTERM', onTerm);
  });
  // A second signal while closing means "now": in-flight work is abandoned.
  const hurry = (): void => { process.exit(1); };
  io.signals.once('SIGINT', hurry);
  io.signals.once('SIGTERM', hurry);
  if (startFormat === 'json') io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'closing', signal })}\n`);
  else io.stdout.write(`wharf: ${signal}, closing (in-flight uploads finish or are removed)\n`);
  try {
    await files.close();
  } finally {
    io.signals.off('SIGINT', hurry);
    io.signals.off('SIGTERM', hurry);
    if (logRequest) unsubscribe('http.server.request.start', onStart);
  }
  return 0;
}

function clientFrom(values: Map<string, FlagValue>): ClientSite {
  const id = values.get('access-key-id') as string | undefined;
  const secret = values.get('access-key-secret') as string | undefined;
  if ((id === undefined) !== (secret === undefined)) throw new UsageError('--access-key-id and --access-key-secret go together');
  const server = (values.get('server') as string | undefined) ?? DEFAULT_SERVER;
  const base = values.get('base-url') as string | undefined;
  try {
    return connect(server, { ...(id !== undefined ? { accessKeyId: id } : {}), ...(secret !== undefined ? { accessKeySecret: secret } : {}), ...(base !== undefined ? { baseUrl: base } : {}) });
  } catch (err) {
    throw new UsageError(`--server: ${(err as Error).message}`);
  }
}

/** Runs one transfer with Ctrl+C wired to abort it and, on a terminal, a progress bar on stderr. */
async function transfer<T>(io: CommandIo, label: string | undefined, run: (options: TransferOptions) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const abort = (): void => controller.abort(new Error('interrupted'));
  io.signals.once('SIGINT', abort);
  io.signals.once('SIGTERM', abort);
  const bar = io.stderr.isTTY && label !== undefined ? createBar({ label, out: io.stderr as NodeJS.WritableStream & { columns?: number } }) : undefined;
  try {
    const result = await run({ signal: controller.signal, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) });
    bar?.done();
    return result;
  } catch (err) {
    bar?.stop();
    throw err;
  } finally {
    io.signals.off('SIGINT', abort);
    io.signals.off('SIGTERM', abort);
  }
}

async function upload(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(argv, UPLOAD_FLAGS, io.env);
  if (values.get('help')) {
    io.stdout.write(`Usage: wharf upload FILE... [--dir] [flags]\n\n${formatFlags(UPLOAD_FLAGS)}\n`);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('upload: name at least one FILE');
  const site = clientFrom(values);
  try {
    const paths: string[] = [];
    if (values.get('dir')) {
      for (const dir of positionals) paths.push(...await transfer(io, basename(resolve(dir)), (o) => site.uploadDir(dir, o)));
    } else {
      const label = positionals.length === 1 ? basename(positionals[0]!) : `${positionals.length} files`;
      paths.push(...await transfer(io, label, (o) => site.upload(positionals, o)));
    }
    for (const p of paths) io.stdout.write(`${p}\n`);
    return 0;
  } finally {
    site.close();
  }
}

async function download(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(argv, TRANSFER_FLAGS, io.env);
  if (values.get('help')) {
    io.stdout.write(`Usage: wharf download URL [DEST] [flags]\n\n${formatFlags(TRANSFER_FLAGS)}\n`);
    return 0;
  }
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError('download: expected URL [DEST]');
  const [url, dest = '.'] = positionals as [string, string?];
  const site = clientFrom(values);
  try {
    // The bar shows the file's real name, however the URL spells it (docs/protocol.md §1).
    const written = await transfer(io, decodeName(basename(url.split(/[?#]/)[0]!)), (o) => site.download(url, dest, o));
    io.stdout.write(`${written}\n`);
    return 0;
  } finally {
    site.close();
  }
}

async function unload(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs(argv, TRANSFER_FLAGS, io.env);
  if (values.get('help')) {
    io.stdout.write(`Usage: wharf unload URL [flags]\n\n${formatFlags(TRANSFER_FLAGS)}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('unload: expected one URL');
  const site = clientFrom(values);
  try {
    await transfer(io, undefined, (o) => site.unload(positionals[0]!, o));
    return 0;
  } finally {
    site.close();
  }
}

const COMMANDS: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = { serve, upload, download, unload };

/** Runs `wharf argv…`; resolves with the exit code. `serve` resolves once a signal has closed the server. */
export async function main(argv: string[], io: Partial<CommandIo> = {}): Promise<number> {
  const all: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env, signals: process, ...io };
  const [first, ...rest] = argv;
  let command = 'serve';
  let args = argv;
  if (first === 'help') {
    all.stdout.write(usage());
    return 0;
  }
  if (first === 'version') {
    all.stdout.write(`${version()}\n`);
    return 0;
  }
  if (first !== undefined && !first.startsWith('-')) {
    if (!(first in COMMANDS)) {
      all.stderr.write(`wharf: unknown command ${JSON.stringify(first)} (serve, upload, download, unload; see wharf --help)\n`);
      return 2;
    }
    command = first;
    args = rest;
  }
  try {
    return await COMMANDS[command]!(args, all);
  } catch (err) {
    if (err instanceof UsageError) {
      all.stderr.write(`wharf: ${err.message}\n`);
      return 2;
    }
    if (err instanceof WharfError) {
      all.stderr.write(`wharf: ${command} failed: ${err.message} (${err.code}${err.status ? `, HTTP ${err.status}` : ''})\n`);
      return 1;
    }
    all.stderr.write(`wharf: ${command} failed: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
