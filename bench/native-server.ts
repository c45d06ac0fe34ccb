// A server that is not a Node process of the bench's own (nginx, Wave's waved): started pinned to
// a CPU the way the benches pin their servers, waited for until it answers HTTP, stopped and
// waited for.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';

export interface NativeServer {
  child: ChildProcess;
  /** Stops it (SIGTERM) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** Can servers be pinned here (`taskset` present and working)? */
export const canPin = (): boolean => spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/**
 * Starts `cmd args` (pinned with `taskset -c cpu` when `cpu` is given and taskset works), its stdout
 * dropped, and resolves once GET / on 127.0.0.1:`port` gets any answer. `describe()` tells why it
 * failed, when it exits or stays silent for 10 s (it is stopped then).
 */
export async function startNative(cmd: string, args: string[], port: number, cpu: number | undefined, describe: () => Promise<string>): Promise<NativeServer> {
  const argv = cpu !== undefined && canPin() ? ['taskset', '-c', String(cpu), cmd, ...args] : [cmd, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4096); });
  let exited = false;
  const gone = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGTERM');
    await gone;
  };
  for (let tries = 0; !(await answers(port)); tries++) {
    if (exited || tries === 200) {
      await stop();
      throw new Error(`${cmd} ${exited ? 'exited' : 'did not answer within 10 s'}: ${stderr}${await describe()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, stop };
}

/** One GET of `/`: true once anything answers it. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(true));
    });
    req.once('error', () => resolve(false));
    req.end();
  });
}
