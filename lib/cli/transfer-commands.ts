/** `wharf upload|download|unload`: one transfer each against a server, through `wharf-files/client`. */
import { basename, resolve } from 'node:path';
import { connect, type ClientSite } from '../client/index.js';
import { errorMessage } from '../common/errors.js';
import type { TransferOptions } from '../common/site-api.js';
import { decodeName } from '../common/upload-names.js';
import { CommandFailure, onStopSignal, type CommandIo } from './command-io.js';
import { DEFAULT_SERVER, TRANSFER_FLAGS, UPLOAD_FLAGS, unpairedKey } from './flag-specs.js';
import { formatFlags, parseArgs, UsageError, type FlagSpec, type Flags } from './flags.js';
import { createBar } from './progress-bar.js';
import { INTERRUPTED, checkLocalPaths, explain, type TransferContext } from './transfer-errors.js';


function clientFrom(flags: Flags): ClientSite {
  const id = flags.str('access-key-id');
  const secret = flags.str('access-key-secret');
  const unpaired = unpairedKey(flags);
  if (unpaired) throw unpaired;
  const server = flags.str('server') ?? DEFAULT_SERVER;
  const base = flags.str('base-url');
  try {
    return connect(server, { ...(id !== undefined ? { accessKeyId: id } : {}), ...(secret !== undefined ? { accessKeySecret: secret } : {}), ...(base !== undefined ? { baseUrl: base } : {}) });
  } catch (err) {
    throw new UsageError(`--server: ${errorMessage(err)}`);
  }
}

/**
 * Runs one transfer with Ctrl+C wired to abort it ("interrupted", exit 130) and, on a terminal, a
 * progress bar on stderr; a failure is said for the user (transfer-errors.ts).
 */
async function transfer<T>(io: CommandIo, label: string | undefined, ctx: TransferContext, run: (options: TransferOptions) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const stopAbort = onStopSignal(io.signals, () => controller.abort(new Error('interrupted')));
  const bar = io.stderr.isTTY && label !== undefined ? createBar({ label, out: io.stderr }) : undefined;
  try {
    const result = await run({ signal: controller.signal, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) });
    bar?.done();
    return result;
  } catch (err) {
    bar?.stop();
    if (controller.signal.aborted) throw new CommandFailure('interrupted', INTERRUPTED);
    throw explain(err, ctx);
  } finally {
    stopAbort();
  }
}

/**
 * One transfer command: `--help`, then `check` the arguments, then `run` with a client that is
 * closed afterwards.
 */
async function transferCommand(argv: string[], io: CommandIo, specs: FlagSpec[], usageLine: string, check: (positionals: string[]) => void, run: (site: ClientSite, positionals: string[], flags: Flags, server: string) => Promise<void>): Promise<number> {
  const { flags, positionals } = parseArgs(argv, specs, io.env);
  if (flags.bool('help')) {
    io.stdout.write(`Usage: ${usageLine}\n\n${formatFlags(specs)}\n`);
    return 0;
  }
  check(positionals);
  const site = clientFrom(flags);
  const server = flags.str('server') ?? DEFAULT_SERVER;
  try {
    await run(site, positionals, flags, server);
    return 0;
  } finally {
    site.close();
  }
}

export function upload(argv: string[], io: CommandIo): Promise<number> {
  return transferCommand(argv, io, UPLOAD_FLAGS, 'wharf upload FILE... [--dir] [--expires DURATION] [--once] [flags]', (positionals) => {
    if (positionals.length === 0) throw new UsageError('upload: name at least one FILE');
  }, async (site, positionals, flags, server) => {
    const paths: string[] = [];
    const dir = flags.bool('dir');
    const sizes = await checkLocalPaths(positionals, dir);
    const expiresIn = flags.num('expires');
    const life = { ...(expiresIn !== undefined ? { expiresIn } : {}), ...(flags.bool('once') ? { once: true } : {}) };
    if (dir) {
      for (const d of positionals) paths.push(...await transfer(io, basename(resolve(d)), { server, files: [{ path: d, size: 0 }] }, (o) => site.uploadDir(d, { ...o, ...life })));
    } else {
      const label = positionals.length === 1 ? basename(positionals[0]!) : `${positionals.length} files`;
      const files = positionals.map((path, i) => ({ path, size: sizes[i]! }));
      paths.push(...await transfer(io, label, { server, files }, (o) => site.upload(positionals, { ...o, ...life })));
    }
    for (const p of paths) io.stdout.write(`${p}\n`);
  });
}

export function download(argv: string[], io: CommandIo): Promise<number> {
  return transferCommand(argv, io, TRANSFER_FLAGS, 'wharf download URL [DEST] [flags]', (positionals) => {
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError('download: expected URL [DEST]');
  }, async (site, positionals, _flags, server) => {
    const url = positionals[0]!;
    const dest = positionals[1] ?? '.';
    // The bar shows the file's real name, however the URL spells it (docs/protocol.md §1).
    const written = await transfer(io, decodeName(basename(url.split(/[?#]/)[0]!)), { server }, (o) => site.download(url, dest, o));
    io.stdout.write(`${written}\n`);
  });
}

export function unload(argv: string[], io: CommandIo): Promise<number> {
  return transferCommand(argv, io, TRANSFER_FLAGS, 'wharf unload URL [flags]', (positionals) => {
    if (positionals.length !== 1) throw new UsageError('unload: expected one URL');
  }, async (site, positionals, _flags, server) => {
    await transfer(io, undefined, { server }, (o) => site.unload(positionals[0]!, o));
  });
}
