/**
 * The `wharf` command: `wharf [serve]` runs the file server (./serve.ts); `wharf
 * upload|download|unload` talk to one over HTTP (./transfer-commands.ts). Exit codes: 0 ok, 1 the
 * server or a transfer failed, 2 usage (a bad flag, a configuration the server refuses to start with).
 */
import { errorDetail, WharfError } from '../common/errors.js';
import { CommandFailure, type CommandIo } from './command-io.js';
import { UsageError } from './flags.js';
import { serve } from './serve.js';
import { download, unload, upload } from './transfer-commands.js';
import { usage, version } from './usage.js';

export type { CommandIo } from './command-io.js';
export { LIMIT_FLAGS, SERVE_FLAGS, TRANSFER_FLAGS, UPLOAD_FLAGS } from './flag-specs.js';

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
    if (err instanceof CommandFailure) {
      all.stderr.write(`wharf: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof WharfError) {
      all.stderr.write(`wharf: ${command} failed: ${err.message} (${err.code}${err.status ? `, HTTP ${err.status}` : ''})\n`);
      return 1;
    }
    all.stderr.write(`wharf: ${command} failed: ${errorDetail(err)}\n`);
    return 1;
  }
}
