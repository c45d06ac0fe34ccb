/**
 * The module each `--workers` worker runs (lib/cli/workers.ts forks it with the command line): the
 * command itself, then an exit, since the IPC channel to the primary would keep the process alive.
 */
import { main } from './command.js';

const code = await main(process.argv.slice(2));
process.exit(code);
