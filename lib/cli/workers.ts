/**
 * `wharf serve --workers N`: the cluster's primary. It forks N workers (each a whole `serve` sharing
 * the port and the data dir), owns the registry of image streams for them (cluster-hub.ts) unless
 * Redis carries the streams, prints the start-up lines once every worker listens, replaces a worker
 * that dies (after a back-off that grows while workers keep dying young, so a crash loop does not
 * spin), and on SIGINT/SIGTERM tells every worker to close and waits for them.
 */
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startClusterHubPrimary, type ClusterHubPrimary } from '../image-streams/cluster-hub.js';
import type { LocalHubOptions } from '../image-streams/hub.js';
import { onStopSignal, type CommandIo } from './command-io.js';

/** A worker that lived this long was not part of a crash loop. */
const HEALTHY_AFTER = 10_000;
const MAX_BACKOFF = 30_000;

/** The messages between the primary and its workers (besides the hub's). */
type Control = { wharfWorker: 'listening'; url: string } | { wharfWorker: 'shutdown' };

export interface PrimaryConfig {
  workers: number;
  /** The command line, given to each worker as its own. */
  argv: string[];
  /** `WHARF_*` variables for the workers (the command's environment may be injected). */
  env: Record<string, string>;
  /** Streams through the primary; none when Redis carries them. */
  hubLimits: LocalHubOptions | undefined;
  /** The start-up lines, once every worker listens at `url`. */
  banner(url: string): void;
  warn(message: string): void;
  startFormat: 'text' | 'json';
}

/** Resolves with the exit code: 0 after a signal closed every worker, 1 if the first workers could not start. */
export async function runPrimary(config: PrimaryConfig, io: CommandIo): Promise<number> {
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('./worker-entry.js', import.meta.url)),
    execArgv: workerExecArgv(process.execArgv),
    args: config.argv,
    // Frames cross the IPC channel as Buffers (structured clone), not as JSON.
    serialization: 'advanced',
  });
  const hub: ClusterHubPrimary | undefined = config.hubLimits && startClusterHubPrimary(cluster, config.hubLimits);
  const born = new Map<Worker, number>();
  /** Workers that said they listen (and so listen for "shutdown"). */
  const up = new Set<Worker>();
  const restarts = new Set<NodeJS.Timeout>();
  let listening = 0;
  let started = false;
  let stopping = false;
  let streak = 0;
  let failed: (code: number) => void = () => {};
  const startFailed = new Promise<number>((resolve) => { failed = resolve; });

  const fork = (): void => {
    const w = cluster.fork(config.env);
    born.set(w, Date.now());
    // A send to a worker that just died fails (EPIPE) as an 'error' event; its 'exit' follows and
    // says what there is to say.
    w.on('error', () => {});
    w.on('message', (m: Control) => {
      if (m?.wharfWorker !== 'listening') return;
      up.add(w);
      if (started) return;
      if (++listening === config.workers) {
        started = true;
        config.banner(m.url);
      }
    });
  };
  const onExit = (w: Worker, code: number | null, signal: string | null): void => {
    const lived = Date.now() - (born.get(w) ?? 0);
    born.delete(w);
    up.delete(w);
    if (stopping) return;
    if (!started) {
      // The first workers cannot start (a port in use, a bad option): their own message says why.
      failed(1);
      return;
    }
    streak = lived >= HEALTHY_AFTER ? 0 : streak + 1;
    const delay = streak === 0 ? 0 : Math.min(MAX_BACKOFF, 250 * 2 ** (streak - 1));
    config.warn(`worker ${w.process.pid ?? '?'} exited (${signal ?? `code ${code ?? '?'}`}); starting another${delay ? ` in ${delay} ms` : ''}`);
    const timer = setTimeout(() => {
      restarts.delete(timer);
      if (!stopping) fork();
    }, delay);
    restarts.add(timer);
  };
  cluster.on('exit', onExit);
  for (let i = 0; i < config.workers; i++) fork();

  const signal = await Promise.race([
    new Promise<string>((resolve) => onStopSignal(io.signals, resolve)),
    startFailed.then((code) => ({ code })),
  ]);
  stopping = true;
  for (const t of restarts) clearTimeout(t);
  if (typeof signal === 'string') {
    if (config.startFormat === 'json') io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'closing', signal, workers: born.size })}\n`);
    else io.stdout.write(`wharf: ${signal}, closing ${born.size} workers (in-flight uploads finish or are removed)\n`);
  }
  const stopHurry = onStopSignal(io.signals, () => {
    for (const w of born.keys()) w.process.kill('SIGKILL');
  });
  try {
    await stopWorkers([...born.keys()], up);
  } finally {
    stopHurry();
    cluster.off('exit', onExit);
    await hub?.close();
  }
  return typeof signal === 'string' ? 0 : signal.code;
}

/**
 * Node's flags for the workers: the primary's (`--max-old-space-size`…) but the code it was told to
 * run (`node -e '…'` embeds wharf): a worker runs worker-entry.js, and nothing else.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') i++;
    else if (!/^(--eval=|--print=|-pe$|--input-type)/.test(a)) out.push(a);
  }
  return out;
}

/**
 * Tells each worker to close (as a signal would) and resolves once every one has exited. A worker
 * still starting may not hear it yet, and has nothing in flight: it is killed.
 */
function stopWorkers(workers: Worker[], up: ReadonlySet<Worker>): Promise<void> {
  return Promise.all(workers.map((w) => new Promise<void>((resolve) => {
    if (w.process.exitCode !== null || w.process.signalCode !== null) {
      resolve();
      return;
    }
    w.once('exit', () => resolve());
    const kill = (): void => { w.process.kill('SIGKILL'); };
    if (up.has(w) && w.isConnected()) w.send({ wharfWorker: 'shutdown' } satisfies Control, undefined, (err) => { if (err) kill(); });
    else kill();
  }))).then(() => {});
}

/**
 * In a worker: the primary decides when to stop. Terminal signals reach every process of the group
 * and are left to the primary (which tells each worker); its "shutdown" message, or the primary
 * gone, stops this worker like a signal. Called first thing: a shutdown that comes while the worker
 * still starts is kept, and given to whoever listens for it later.
 */
export function workerSignals(): NodeJS.EventEmitter {
  const signals = new EventEmitter();
  // A stop nobody listened for yet (the worker still starting) is given to the first listener.
  let unheard = false;
  const stop = (): void => {
    if (signals.listenerCount('SIGTERM') === 0) unheard = true;
    else signals.emit('SIGTERM');
  };
  signals.on('newListener', (event: string) => {
    if (!unheard || event !== 'SIGTERM') return;
    unheard = false;
    process.nextTick(() => signals.emit('SIGTERM'));
  });
  const ignore = (): void => {};
  process.on('SIGINT', ignore);
  process.on('SIGTERM', ignore);
  process.on('message', (m: Control) => {
    if (m?.wharfWorker === 'shutdown') stop();
  });
  process.once('disconnect', stop);
  return signals;
}

/** In a worker, once it listens: the primary prints the start-up lines when all do. */
export function tellListening(url: string): void {
  process.send?.({ wharfWorker: 'listening', url } satisfies Control);
}
