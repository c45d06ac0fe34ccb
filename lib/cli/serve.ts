/**
 * `wharf serve`: options from the flags, a data dir proved writable, the start banner, the request
 * log, and a close on SIGINT/SIGTERM (a second signal exits at once).
 */
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorMessage, WharfError } from '../common/errors.js';
import { resolveLimits, type Limits } from '../common/limits.js';
import { isLoopback } from '../http/access-keys.js';
import { canonicalPrefix } from '../http/request-path.js';
import { createFileServer, type FileServer, type FileServerOptions } from '../http/server.js';
import { clusterHub } from '../image-streams/cluster-hub.js';
import { redisHub } from '../image-streams/redis-hub.js';
import { parseMapping } from '../static/mappings.js';
import { defaultNodeId, isNodeId } from '../common/node-id.js';
import { storageModes, TEMP_DIR } from '../uploads/local-storage.js';
import { onStopSignal, type CommandIo } from './command-io.js';
import { DEFAULT_LISTEN, LIMIT_FLAGS, LIMIT_KEYS, SERVE_FLAGS, unpairedKey } from './flag-specs.js';
import { parseArgs, UsageError, type Flags } from './flags.js';
import { LOG_FORMATS, startRequestLog, type LogFormat } from './request-log.js';
import { usage, version } from './usage.js';
import { connectRedis, loadRedis, type RedisClients } from './redis-clients.js';
import { runPrimary, tellListening, workerSignals } from './workers.js';
import { s3Backend, s3Config, s3Where, type S3Config } from './s3-flags.js';

interface Listen { host: string; port: number }

function parseListen(text: string): Listen {
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) [host, port] = [v6[1]!, v6[2]!];
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
 * The same for its `f/` and temp area where they exist already (a data dir shared with other
 * nodes, or restored from a backup, may have them made by another account); storage makes those
 * that do not.
 */
async function probeDataDir(dir: string, mode: number): Promise<string | undefined> {
  for (const [what, at] of [['data dir', dir], ['uploads dir', join(dir, 'f')], ['temp area', join(dir, TEMP_DIR)]] as const) {
    const probe = join(at, `.wharf-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      // With the mode the server's storage gives what it creates (its own start finds the dir there).
      if (at === dir) await mkdir(dir, { recursive: true, mode });
      else if (!(await lstat(at).then(() => true, () => false))) continue;
      await writeFile(probe, 'probe', { flag: 'wx' });
      await rm(probe, { force: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      return `${what} ${at} is not writable: ${FS_REASONS[code] ?? errorMessage(err)} (${code})`;
    }
  }
  return undefined;
}

/**
 * The server's warnings, worded for the command ("wharf: warning: …"). Those before the start-up
 * lines are held and printed with them; later ones (a failing request, say) at once.
 */
function createWarnings(startFormat: 'text' | 'json', io: CommandIo): { warn(message: string): void; takeHeld(): string[] } {
  const held: string[] = [];
  let started = false;
  return {
    warn(message) {
      // The server words its warnings for a log of its own ("wharf: WARNING: …"); ours says who and what.
      const m = message.replace(/^wharf:\s*/i, '').replace(/^warning:\s*/i, '');
      if (!started) {
        held.push(m);
        return;
      }
      if (startFormat === 'json') io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'warning', message: m })}\n`);
      io.stderr.write(`wharf: warning: ${m}\n`);
    },
    takeHeld() {
      started = true;
      return held.splice(0);
    },
  };
}

interface ServeConfig {
  listen: Listen;
  /** The server's options, but `warn`. */
  options: FileServerOptions;
  dataDir: string;
  nodeId: string;
  baseUrl: string;
  publicDirs: string[];
  privateDirs: string[];
  /** Wave's default access keys, which are allowed on loopback only. */
  defaultKeys: boolean;
  logFormat: LogFormat;
  /** The start banner's format: the log's, or as the log would be when the log is off. */
  startFormat: 'text' | 'json';
  /** Processes (`--workers`); 1 = no cluster. */
  workers: number;
  redisUrl: string | undefined;
  /** `--s3-bucket` and its companions: uploads in S3, not in the data dir. */
  s3: S3Config | undefined;
}

/** `--workers N|auto`. */
function parseWorkers(text: string | undefined): number {
  if (text === undefined) return 1;
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 1024) throw new UsageError(`--workers: expected a number from 1 to 1024 or auto, got ${JSON.stringify(text)}`);
  return n;
}

function parseRedisUrl(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new UsageError(`--redis-url: expected redis://[user:password@]host[:port][/db], got an unparsable URL`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UsageError(`--redis-url: expected a redis:// or rediss:// URL, got ${u.protocol}`);
  return text;
}

/** The server's options from the flags; refuses what the server must not start with. */
function serveConfig(flags: Flags, io: CommandIo): ServeConfig {
  const listen = parseListen(flags.str('listen') ?? DEFAULT_LISTEN);
  const id = flags.str('access-key-id');
  const secret = flags.str('access-key-secret');
  const unpaired = unpairedKey(flags);
  if (unpaired) throw unpaired;
  const defaultKeys = id === undefined || (id === 'access_key_id' && secret === 'access_key_secret');
  if (defaultKeys && !isLoopback(listen.host)) {
    throw new UsageError(`refusing to listen on ${listen.host} with Wave's default access keys, which anyone knows: set --access-key-id and --access-key-secret (or WHARF_ACCESS_KEY_ID and WHARF_ACCESS_KEY_SECRET)`);
  }
  const limits: Partial<Limits> = {};
  LIMIT_KEYS.forEach((key, i) => {
    const v = flags.num(LIMIT_FLAGS[i]!.name);
    if (v !== undefined) limits[key] = v;
  });
  const given = flags.str('node-id');
  if (given !== undefined && !isNodeId(given)) throw new UsageError(`--node-id: expected 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit, got ${JSON.stringify(given)}`);
  // Workers given one id tell themselves apart by their number (the default, `<hostname>-<pid>`, already does).
  const worker = cluster.isWorker ? cluster.worker?.id : undefined;
  const nodeId = given === undefined ? defaultNodeId() : worker === undefined ? given : `${given.slice(0, 56)}-w${worker}`;
  const logFormat = flags.choice('log', LOG_FORMATS) ?? (io.stdout.isTTY ? 'text' : 'json');
  const dataDir = resolve(flags.str('data-dir') ?? './data');
  const baseUrl = flags.str('base-url') ?? '/';
  const publicDirs = flags.list('public-dir');
  const privateDirs = flags.list('private-dir');
  const options: FileServerOptions = {
    dataDir,
    baseUrl,
    publicDirs,
    privateDirs,
    anonymousUploads: flags.bool('anonymous-uploads'),
    dotfiles: flags.bool('dotfiles'),
    indexPages: !flags.bool('no-index-pages'),
    trustUnrecordedUploads: flags.bool('trust-unrecorded-uploads'),
    groupReadable: flags.bool('group-readable'),
    nodeId,
    limits,
  };
  const leaseInterval = flags.num('lease-interval');
  if (leaseInterval !== undefined) options.leaseInterval = leaseInterval;
  if (id !== undefined && secret !== undefined && !defaultKeys) options.accessKeys = { [id]: secret };
  const accept = flags.list('accept');
  if (accept.length > 0) options.accept = accept;
  const cacheControl = flags.str('cache-control');
  if (cacheControl !== undefined) options.cacheControl = cacheControl;
  if (flags.str('sync-io') === 'off') options.syncIo = 'off';
  const corsOrigins = flags.list('cors-origin');
  if (corsOrigins.length) options.cors = { origins: corsOrigins, credentials: flags.bool('cors-credentials') };
  else if (flags.bool('cors-credentials')) throw new UsageError('--cors-credentials needs --cors-origin');
  const privateCacheControl = flags.str('private-cache-control');
  if (privateCacheControl !== undefined) options.privateCacheControl = privateCacheControl;
  const startFormat = logFormat === 'off' ? (io.stdout.isTTY ? 'text' : 'json') : logFormat;
  const workers = parseWorkers(flags.str('workers'));
  return { listen, options, dataDir, nodeId, baseUrl, publicDirs, privateDirs, defaultKeys, logFormat, startFormat, workers, redisUrl: parseRedisUrl(flags.str('redis-url')), s3: s3Config(flags, io.env) };
}

/** The start-up lines: where the server listens, what it serves, and the warnings held until now. */
function startBanner(url: string, { options, dataDir, nodeId, baseUrl, publicDirs, privateDirs, defaultKeys, startFormat, workers, redisUrl, s3 }: ServeConfig, warnings: readonly string[]): string {
  // As the server normalised it (createFileServer has accepted it, so this cannot throw).
  const base = canonicalPrefix(baseUrl, 'baseUrl');
  const lines: Array<Record<string, unknown>> = [
    { event: 'listening', url, version: version(), node: nodeId, keys: defaultKeys ? 'default' : 'configured', anonymousUploads: options.anonymousUploads, workers },
    { event: 'serving', kind: 'uploads', url: `${url}${base}_f/`, path: s3 === undefined ? join(dataDir, 'f') : s3Where(s3) },
    { event: 'serving', kind: 'streams', url: `${url}${base}_m/`, hub: redisUrl ? 'redis' : workers > 1 ? 'workers' : 'local' },
  ];
  for (const [list, isPrivate] of [[publicDirs, false], [privateDirs, true]] as const) {
    for (const spec of list) {
      const m = parseMapping(spec, isPrivate);
      lines.push({ event: 'serving', kind: isPrivate ? 'private' : 'public', url: `${url}${m.prefix}`, path: m.path });
    }
  }
  for (const w of warnings) lines.push({ event: 'warning', message: w });
  if (defaultKeys) lines.push({ event: 'try', ...firstSteps(`${url}${base}`) });
  const time = new Date().toISOString();
  return lines.map((line) => {
    if (line.event === 'try' && startFormat === 'text') return `\nTry it (Wave's default keys work on loopback):\n  ${String(line.curl)}\nFrom another Node.js app (npm install wharf-files):\n  ${String(line.client).replace(/\n/g, '\n  ')}\n`;
    if (startFormat === 'json') return `${JSON.stringify({ time, ...line })}\n`;
    if (line.event === 'listening') return `wharf ${String(line.version)} listening on ${String(line.url)} as node ${nodeId}${workers > 1 ? ` with ${workers} workers` : ''}${defaultKeys ? " (Wave's default access keys: loopback only)" : ''}\n`;
    if (line.event === 'warning') return ''; // on stderr
    const hub = line.hub === 'redis' ? ' (shared through Redis)' : '';
    return `  ${String(line.kind).padEnd(8)} ${String(line.url)}${line.path ? ` -> ${String(line.path)}` : ''}${hub}\n`;
  }).join('');
}

/**
 * What a newcomer can paste while the server runs with Wave's default keys: an upload with curl
 * (from stdin, so it works in any directory) and the same with the client. Never printed with keys
 * of one's own: the banner does not show secrets.
 */
function firstSteps(root: string): { curl: string; client: string } {
  const origin = new URL(root).origin;
  const base = new URL(root).pathname;
  return {
    curl: `echo hello | curl -u access_key_id:access_key_secret -F 'files=@-;filename=hello.txt' ${root}_f/`,
    client: `import { connect } from 'wharf-files/client';\nconst site = connect('${origin}'${base === '/' ? '' : `, { baseUrl: '${base}' }`}); // Wave's default keys\nconst [path] = await site.upload(['package.json']); // '${base}_f/<id>/package.json'`,
  };
}

/**
 * Closes the server after a signal; a second signal while closing means "now": in-flight work is
 * abandoned. A worker closes quietly: the primary says it for all.
 */
async function closeOnSignal(files: FileServer, startFormat: 'text' | 'json', io: CommandIo, quiet = false): Promise<void> {
  const signal = await new Promise<string>((resolvePromise) => onStopSignal(io.signals, resolvePromise));
  const stopHurry = onStopSignal(io.signals, () => process.exit(1));
  if (!quiet && startFormat === 'json') io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'closing', signal })}\n`);
  else if (!quiet) io.stdout.write(`wharf: ${signal}, closing (in-flight uploads finish or are removed)\n`);
  try {
    await files.close();
  } finally {
    stopHurry();
  }
}

/** `wharf [serve]`: resolves with the exit code once a signal has closed the server. */
export async function serve(argv: string[], io: CommandIo): Promise<number> {
  const { flags, positionals } = parseArgs(argv, SERVE_FLAGS, io.env);
  if (flags.bool('help')) {
    io.stdout.write(usage());
    return 0;
  }
  if (flags.bool('version')) {
    io.stdout.write(`${version()}\n`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const config = serveConfig(flags, io);
  const warnings = createWarnings(config.startFormat, io);
  config.options.warn = warnings.warn;
  const inWorker = config.workers > 1 && cluster.isWorker;
  if (config.workers > 1 && !inWorker) return primary(argv, config, warnings, io);
  // A worker stops when the primary says so, even while it still starts.
  const runIo = inWorker ? { ...io, signals: workerSignals() } : io;

  // Streams across nodes through Redis; across the workers of this machine through the primary.
  let redis: RedisClients | undefined;
  if (config.redisUrl) {
    redis = await connectRedis(config.redisUrl, warnings.warn);
    config.options.hub = redisHub(redis);
  } else if (inWorker) config.options.hub = clusterHub();
  let s3: Awaited<ReturnType<typeof s3Backend>> | undefined;
  try {
    // With S3 the data dir holds nothing of uploads: the store is proved usable by the server's start.
    if (config.s3) {
      s3 = await s3Backend(config.s3);
      config.options.storage = s3.storage;
    }
    const files = fileServer(config.options);
    const unwritable = config.s3 ? undefined : await probeDataDir(config.dataDir, storageModes(config.options.groupReadable).dir);
    if (unwritable) throw new UsageError(unwritable);
    return await runServer(files, config, warnings, runIo, inWorker);
  } finally {
    s3?.client.destroy();
    await redis?.close();
  }
}

/** `createFileServer`, its refusals worded as usage errors. */
function fileServer(options: FileServerOptions): FileServer {
  try {
    return createFileServer(options);
  } catch (err) {
    // Said as the user wrote it: the `--accept` flag, not the `accept` option.
    if (err instanceof WharfError) throw new UsageError(err.message.replace(/^accept:/, '--accept:'));
    throw err;
  }
}

async function runServer(files: FileServer, config: ServeConfig, warnings: ReturnType<typeof createWarnings>, io: CommandIo, inWorker: boolean): Promise<number> {
  const stopLog = startRequestLog(config.logFormat, io.stdout, config.nodeId);
  let bound;
  try {
    bound = await files.listen(config.listen);
  } catch (err) {
    stopLog();
    await files.close().catch(() => {});
    io.stderr.write(`wharf: ${errorMessage(err)}\n`);
    return 1;
  }
  const held = warnings.takeHeld();
  if (inWorker) tellListening(bound.url);
  // One write, so a reader that sees the first line sees them all.
  else io.stdout.write(startBanner(bound.url, config, held));
  // Workers have the same start-up warnings: the first one says them (the primary's lines have them too).
  if (!inWorker || cluster.worker?.id === 1) for (const w of held) io.stderr.write(`wharf: warning: ${w}\n`);
  try {
    await closeOnSignal(files, config.startFormat, io, inWorker);
  } finally {
    stopLog();
  }
  return 0;
}

/** `--workers N` in the primary: checks what a worker would refuse, then runs the cluster (workers.ts). */
async function primary(argv: string[], config: ServeConfig, warnings: ReturnType<typeof createWarnings>, io: CommandIo): Promise<number> {
  fileServer(config.options);
  // Said once here rather than by every worker in a loop of restarts.
  if (config.s3) (await s3Backend(config.s3)).client.destroy();
  const unwritable = config.s3 ? undefined : await probeDataDir(config.dataDir, storageModes(config.options.groupReadable).dir);
  if (unwritable) throw new UsageError(unwritable);
  // Said once here rather than by every worker in a loop of restarts.
  if (config.redisUrl) await loadRedis();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(io.env)) if (k.startsWith('WHARF_') && v !== undefined) env[k] = v;
  const limits = resolveLimits(config.options.limits);
  return runPrimary({
    workers: config.workers,
    argv,
    env,
    hubLimits: config.redisUrl ? undefined : limits,
    // The warnings on stderr are the first worker's.
    banner: (url) => io.stdout.write(startBanner(url, config, warnings.takeHeld())),
    warn: warnings.warn,
    startFormat: config.startFormat,
  }, io);
}
