// H2O Wave's own Go server (waved) as a peer row of the benchmarks: `../shared/peers/wave/run`
// beside the checkout, built from Wave's unmodified source (its README there lists its flags and
// how it differs from wharf). Nothing may depend on it: a bench asks `waveAvailable()` and prints
// `WAVE_SKIPPED` when it is absent.
//
//   const wave = await startWave({ dataDir, publicDir: dir, cpu: 0 });
//   // GET `${wave.url}${WAVE_PUBLIC_PREFIX}1k.bin` …
//   await wave.stop();
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/free-port.js';
import { startNative } from './native-server.js';

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

/** Starts waved on a free port of 127.0.0.1 and resolves once it answers HTTP. */
export async function startWave(options: WaveOptions): Promise<Wave> {
  if (!waveAvailable()) throw new Error(WAVE_SKIPPED);
  const port = await freePort();
  const args = ['-listen', `127.0.0.1:${port}`, '-data-dir', options.dataDir, '-base-url', '/'];
  if (options.publicDir !== undefined) args.push('-public-dir', `${WAVE_PUBLIC_PREFIX}@${options.publicDir}`);
  if (options.privateDir !== undefined) args.push('-private-dir', `${WAVE_PRIVATE_PREFIX}@${options.privateDir}`);
  if (options.accessKey !== undefined) args.push('-access-key-id', options.accessKey.id, '-access-key-secret', options.accessKey.secret);
  // Wave logs a line per request to stdout: dropped (startNative), or the pipe would cost it per request.
  const { child, stop } = await startNative(WAVE_RUN, args, port, options.cpu, async () => '');
  return { url: `http://127.0.0.1:${port}`, port, pid: child.pid!, stop };
}
