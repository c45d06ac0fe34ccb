// A real `redis-server` (Debian's, /usr/bin/redis-server) for the tests and benchmarks of the Redis
// hub: on a free port of 127.0.0.1, without persistence, in a temp dir, stopped after. `restart`
// brings it back on the same port, empty, as a crashed Redis without persistence comes back.
import { spawn, type ChildProcess } from 'node:child_process';
import { createClient } from 'redis';
import { makeTempDir } from './temp-dir.js';
import { freePort } from './free-port.js';

export interface RedisServer {
  url: string;
  port: number;
  pid(): number;
  /** Runs one command on a connection of its own (CONFIG SET, CLIENT KILL…). */
  command(args: string[]): Promise<unknown>;
  /** Kills it (SIGKILL: nothing is saved) and waits until it has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export const REDIS_SERVER = '/usr/bin/redis-server';


/**
 * On `port` when given (a port a test has already told a wharf node about), else on a free one;
 * with `password`, clients must give it (`redis://default:<password>@…`).
 */
export async function startRedis(port?: number, password?: string): Promise<RedisServer> {
  port ??= await freePort();
  const auth = password === undefined ? '' : `default:${encodeURIComponent(password)}@`;
  const { dir, cleanup } = await makeTempDir('wharf-redis-');
  let proc: ChildProcess | undefined;

  async function start(): Promise<void> {
    const p = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning', ...(password === undefined ? [] : ['--requirepass', password])], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    let log = '';
    p.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    // Ready once it answers PING.
    const until = Date.now() + 10_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}): ${log}`);
      try {
        if ((await command(['PING'])) === 'PONG') return;
      } catch {
        // not listening yet
      }
      if (Date.now() > until) throw new Error(`redis-server did not start in 10 s: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function command(args: string[]): Promise<unknown> {
    const c = createClient({ url: `redis://${auth}127.0.0.1:${port}`, socket: { reconnectStrategy: false, connectTimeout: 1000 } });
    c.on('error', () => {});
    await c.connect();
    try {
      return await c.sendCommand(args);
    } finally {
      c.destroy();
    }
  }

  async function kill(): Promise<void> {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  await start();
  return {
    url: `redis://${auth}127.0.0.1:${port}`,
    port,
    pid: () => proc?.pid ?? 0,
    command,
    kill,
    start,
    async stop() {
      await kill();
      await cleanup();
    },
  };
}
