// A minimal entry until the full CLI lands (the client/CLI issue): `wharf [--data-dir DIR]
// [--listen HOST:PORT] [--public-dir URL@PATH]… [--private-dir URL@PATH]…`.
import { WharfError } from './errors.js';
import { createFileServer, DEFAULT_HOST, DEFAULT_PORT } from './server.js';

interface Args {
  dataDir: string;
  host: string;
  port: number;
  publicDirs: string[];
  privateDirs: string[];
}

function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  if (!m) throw new WharfError('INVALID_OPTION', `--listen: expected HOST:PORT, got "${value}"`);
  return { host: m[1] || m[2] || DEFAULT_HOST, port: Number(m[3]) };
}

export function parseArgs(argv: string[]): Args {
  const args: Args = { dataDir: './data', host: DEFAULT_HOST, port: DEFAULT_PORT, publicDirs: [], privateDirs: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0 && arg.startsWith('--')) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new WharfError('INVALID_OPTION', `${flag}: missing value`);
      return v;
    };
    switch (flag) {
      case '--data-dir': args.dataDir = value(); break;
      case '--listen': Object.assign(args, parseListen(value())); break;
      case '--public-dir': args.publicDirs.push(value()); break;
      case '--private-dir': args.privateDirs.push(value()); break;
      default: throw new WharfError('INVALID_OPTION', `unknown argument "${arg}"`);
    }
  }
  return args;
}

/** Runs the server until SIGINT/SIGTERM; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let files;
  let address;
  try {
    const args = parseArgs(argv);
    files = createFileServer({ dataDir: args.dataDir, publicDirs: args.publicDirs, privateDirs: args.privateDirs });
    address = await files.listen({ host: args.host, port: args.port });
    process.stdout.write(`wharf listening on ${address.url} (data: ${args.dataDir})\n`);
    for (const d of args.publicDirs) process.stdout.write(`  public  ${d}\n`);
    for (const d of args.privateDirs) process.stdout.write(`  private ${d}\n`);
  } catch (err) {
    process.stderr.write(`wharf: ${err instanceof Error ? err.message : String(err)}\n`);
    await files?.close();
    return 2;
  }
  const server = files;
  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  return 0;
}
