// H2O Wave's own Go server (waved) as a peer row of the benchmarks: `../shared/peers/wave/run`
// beside the checkout, built from Wave's unmodified source (its README there lists its flags and
// how it differs from wharf). Nothing may depend on it: a bench asks `waveAvailable()` and prints
// `WAVE_SKIPPED` when it is absent.
//
//   const wave = await startWave({ dataDir, publicDir: dir, cpu: 0 });
//   // GET `${wave.url}${WAVE_PUBLIC_PREFIX}1k.bin` …
//   await wave.stop();
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/free-port.js';

/** Wave's launcher, resolved from the checkout root (this file runs as dist/bench/wave.js). */
export const WAVE_RUN = fileURLToPath(new URL('../../../shared/peers/wave/run', import.meta.url));
/** What a bench prints instead of Wave's rows when the peer is absent. */
export const WAVE_SKIPPED = 'Wave: skipped (../shared/peers/wave/run not found)';
/** Where `publicDir` is served (`-public-dir /pub/@DIR`). */
export const WAVE_PUBLIC_PREFIX = '/pub/';
/** Where `privateDir` is served (`-private-dir /priv/@DIR`). */
export const WAVE_PRIVATE_PREFIX = '/priv/';

export function waveAvailable(): boolean {
  return existsSync(WAVE_RUN);
}

export interface WaveOptions {
  /** Where uploads land (`DIR/f/<uuid>/<name>`). */
  dataDir: string;
  /** A directory served at `WAVE_PUBLIC_PREFIX`. */
  publicDir?: string;
  /** A directory served at `WAVE_PRIVATE_PREFIX`. */
  privateDir?: string;
  /** Wave checks a key only on `DELETE /_f/` and `POST`/`DELETE /_m/` (see its README). */
  accessKey?: { id: string; secret: string };
  /** Pin the server to this CPU with `taskset -c` (ignored where taskset is missing). */
  cpu?: number;
}

export interface Wave {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  port: number;
  pid: number;
  /** Stops the server and resolves once it has exited. */
  stop(): Promise<void>;
}

const canPin = (): boolean => spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** Starts waved on a free port of 127.0.0.1 and resolves once it answers HTTP. */
export async function startWave(options: WaveOptions): Promise<Wave> {
  if (!waveAvailable()) throw new Error(WAVE_SKIPPED);
  const port = await freePort();
  const args = [WAVE_RUN, '-listen', `127.0.0.1:${port}`, '-data-dir', options.dataDir, '-base-url', '/'];
  if (options.publicDir !== undefined) args.push('-public-dir', `${WAVE_PUBLIC_PREFIX}@${options.publicDir}`);
  if (options.privateDir !== undefined) args.push('-private-dir', `${WAVE_PRIVATE_PREFIX}@${options.privateDir}`);
  if (options.accessKey !== undefined) args.push('-access-key-id', options.accessKey.id, '-access-key-secret', options.accessKey.secret);
  const pinned = options.cpu !== undefined && canPin();
  const [cmd, ...rest] = pinned ? ['taskset', '-c', String(options.cpu), ...args] : args;
  // Wave logs a line per request to stdout: dropped, or the pipe would cost it (and us) per request.
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const url = `http://127.0.0.1:${port}`;
  for (let tries = 0; ; tries++) {
    if (exited) throw new Error(`wave exited before answering: ${stderr}`);
    if (await answers(port)) break;
    if (tries === 200) {
      await stop();
      throw new Error(`wave did not answer on ${url} within 10 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, port, pid: child.pid!, stop };
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
