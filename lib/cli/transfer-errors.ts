/**
 * What `wharf upload|download|unload` says when a transfer cannot go on, in its user's words: the
 * path as they typed it, the server they named, the limit in human units, "interrupted".
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { WharfError } from '../common/errors.js';
import { CommandFailure } from './command-io.js';

/** Exit code of a command stopped by Ctrl+C (128 + SIGINT), as shells report it. */
export const INTERRUPTED = 130;

/**
 * Checks the local paths of an upload before anything is sent: each exists, and is a directory
 * exactly when `--dir` was given. Resolves with each file's size (0 for a directory).
 */
export async function checkLocalPaths(paths: readonly string[], dir: boolean): Promise<number[]> {
  return Promise.all(paths.map(async (p) => {
    let info;
    try {
      info = await stat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new CommandFailure(`no such file: ${p}`);
      if (code === 'EACCES' || code === 'EPERM') throw new CommandFailure(`cannot read ${p}: permission denied`);
      throw err;
    }
    if (dir && !info.isDirectory()) throw new CommandFailure(`--dir: ${p} is not a directory`);
    if (!dir && info.isDirectory()) throw new CommandFailure(`${p} is a directory: use --dir to upload a directory`);
    return info.isDirectory() ? 0 : info.size;
  }));
}

/** `1536` → `1.5 KiB`: a size as a person reads it. */
export function humanSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} bytes` : `${Number(n.toFixed(n < 10 ? 2 : 1))} ${units[u]}`;
}

/** What the command knows of a transfer that failed: the server it named, and for an upload its files. */
export interface TransferContext {
  server: string;
  files?: Array<{ path: string; size: number }>;
}

/**
 * The failure `err` of a transfer, said for its user; a failure with nothing better to say is
 * returned as it is (printed with its code).
 */
export function explain(err: unknown, ctx: TransferContext): unknown {
  if (!(err instanceof WharfError)) return err;
  if (err.code === 'NETWORK' && err.status === 0) {
    const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code;
    if (cause === 'ECONNREFUSED') return new CommandFailure(`cannot reach the server at ${ctx.server} — is it running?`);
    if (cause === 'ENOTFOUND' || cause === 'EAI_AGAIN') return new CommandFailure(`cannot find the server's host in ${ctx.server} (${cause})`);
    if (cause === 'EHOSTUNREACH' || cause === 'ENETUNREACH' || cause === 'ETIMEDOUT') return new CommandFailure(`cannot reach the server at ${ctx.server} (${cause})`);
    return err;
  }
  if (err.code === 'LIMIT_FILE_SIZE' || err.code === 'LIMIT_REQUEST_SIZE') return limitFailure(err, ctx) ?? err;
  return err;
}

/** A size limit the server refused the upload by, with the file (or files) over it and the limit in human units. */
function limitFailure(err: WharfError, ctx: TransferContext): CommandFailure | undefined {
  const m = /limit of (\d+)/.exec(err.message);
  if (m === null || ctx.files === undefined) return undefined;
  const limit = Number(m[1]);
  if (err.code === 'LIMIT_FILE_SIZE') {
    const over = ctx.files.find((f) => f.size > limit);
    const what = over === undefined ? 'a file' : `${over.path} (${humanSize(over.size)})`;
    return new CommandFailure(`upload refused: ${what} is larger than the server's limit of ${humanSize(limit)} per file`);
  }
  const total = ctx.files.reduce((n, f) => n + f.size, 0);
  const names = ctx.files.length === 1 ? ctx.files[0]!.path : `${ctx.files.length} files (${ctx.files.map((f) => basename(f.path)).slice(0, 3).join(', ')}${ctx.files.length > 3 ? ', …' : ''})`;
  return new CommandFailure(`upload refused: ${names}, ${humanSize(total)} in all, is more than the server's limit of ${humanSize(limit)} per upload`);
}
