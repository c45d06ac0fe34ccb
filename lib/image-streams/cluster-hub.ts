// Image streams across the workers of one machine (`wharf serve --workers N`): the cluster's primary
// owns the registry of streams (an in-process hub, hub.ts), and each worker is one subscriber of each
// stream it has viewers of, fed over the cluster's IPC channel; the worker fans out to its viewers
// (fan-out.ts). Frames travel as Buffers: the primary forks with `serialization: 'advanced'`, so
// no JSON or base64. A worker whose channel is backed up gets a short queue per stream (16 frames,
// 32 MiB), then skips to the newest frame (as a slow viewer does): the primary's memory does not
// grow with a slow worker.
//
// Limits: `streams` and `streamIdleTimeout` are the primary's, so machine-wide; `viewersPerStream`
// is each worker's.
import type { Cluster, Worker } from 'node:cluster';
import { WharfError, type WharfErrorCode } from '../common/errors.js';
import { createFanOut } from './fan-out.js';
import { createLocalHub, hubUnavailable, shuttingDown, type Frame, type Hub, type HubFactory, type LocalHubOptions, type Subscriber, type Subscription } from './hub.js';

/** worker → primary */
type Ask =
  | { wharfHub: 'pub'; id: number; name: string; type: string; data: Uint8Array }
  | { wharfHub: 'sub' | 'end' | 'has'; id: number; name: string }
  | { wharfHub: 'unsub'; name: string };

/** primary → worker */
type Tell =
  | { wharfHub: 'reply'; id: number; value?: unknown; error?: { code: WharfErrorCode; message: string; status: number } }
  | { wharfHub: 'frame'; name: string; type: string; data: Uint8Array }
  | { wharfHub: 'end'; name: string };

const isHubMessage = (m: unknown): m is { wharfHub: string } => typeof m === 'object' && m !== null && typeof (m as { wharfHub?: unknown }).wharfHub === 'string';

/** A Buffer over the bytes of a deserialized Uint8Array, without a copy. */
const asBuffer = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));

export interface ClusterHubPrimary {
  /** Ends every stream and stops listening to workers. */
  close(): Promise<void>;
}

/**
 * The primary's side: answers every worker of `cluster` (forked with `serialization: 'advanced'`).
 * Call it before forking.
 */
export function startClusterHubPrimary(cluster: Cluster, limits: LocalHubOptions): ClusterHubPrimary {
  // Each worker is one subscriber of a stream; its viewers are counted by the worker.
  const hub = createLocalHub({ ...limits, viewersPerStream: Number.MAX_SAFE_INTEGER });
  const perWorker = new Map<Worker, Map<string, Subscription>>();

  async function answer(worker: Worker, m: Ask): Promise<unknown> {
    switch (m.wharfHub) {
      case 'pub':
        return hub.publish(m.name, { type: m.type, data: asBuffer(m.data) });
      case 'end':
        return hub.end(m.name);
      case 'has':
        return hub.has(m.name);
      case 'sub':
        return subscribe(worker, m.name);
      case 'unsub':
        perWorker.get(worker)?.get(m.name)?.unsubscribe();
        perWorker.get(worker)?.delete(m.name);
        return undefined;
    }
  }

  async function subscribe(worker: Worker, name: string): Promise<Frame | null> {
    const subs = perWorker.get(worker) ?? new Map<string, Subscription>();
    perWorker.set(worker, subs);
    subs.get(name)?.unsubscribe();
    const s = await hub.subscribe(name, workerSubscriber(worker, name, () => subs.delete(name)));
    if (!s) return null;
    subs.set(name, s);
    return s.latest;
  }

  const onMessage = (worker: Worker, m: unknown): void => {
    if (!isHubMessage(m)) return;
    const ask = m as Ask;
    answer(worker, ask).then(
      (value) => { if ('id' in ask) reply(worker, { wharfHub: 'reply', id: ask.id, value }); },
      (err: unknown) => {
        if (!('id' in ask)) return;
        const e = err instanceof WharfError ? err : new WharfError('INTERNAL', 'image streams failed', 500);
        reply(worker, { wharfHub: 'reply', id: ask.id, error: { code: e.code, message: e.message, status: e.status } });
      },
    );
  };
  const onExit = (worker: Worker): void => {
    for (const s of perWorker.get(worker)?.values() ?? []) s.unsubscribe();
    perWorker.delete(worker);
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return {
    async close() {
      cluster.off('message', onMessage);
      cluster.off('exit', onExit);
      await hub.close();
      perWorker.clear();
    },
  };
}

function reply(worker: Worker, m: Tell): void {
  // A worker that died meanwhile: its exit cleans up.
  if (worker.isConnected()) worker.send(m, undefined, () => {});
}

/**
 * A worker's channel may be backed up for a moment (a frame bigger than the pipe, a busy worker): so
 * much queued per worker and stream, in order, before the worker skips to the newest frame.
 */
const QUEUE_FRAMES = 16;
const QUEUE_BYTES = 32 * 1024 * 1024;

/** One worker as a subscriber of one stream: one frame in flight on the channel, a short queue behind it. */
function workerSubscriber(worker: Worker, name: string, ended: () => void): Subscriber {
  let inFlight = false;
  const queue: Frame[] = [];
  let queued = 0;
  const send = (frame: Frame): void => {
    if (!worker.isConnected()) return;
    inFlight = true;
    const m: Tell = { wharfHub: 'frame', name, type: frame.type, data: frame.data };
    worker.send(m, undefined, () => {
      inFlight = false;
      const next = queue.shift();
      if (!next) return;
      queued -= next.data.length;
      send(next);
    });
  };
  return {
    deliver(frame) {
      if (!inFlight) {
        send(frame);
        return true;
      }
      const skipped = queue.length >= QUEUE_FRAMES || queued + frame.data.length > QUEUE_BYTES;
      if (skipped) {
        // Far behind: the worker skips to the newest frame, as a slow viewer does.
        queue.length = 0;
        queued = 0;
      }
      queue.push(frame);
      queued += frame.data.length;
      return !skipped;
    },
    end() {
      queue.length = 0;
      queued = 0;
      ended();
      reply(worker, { wharfHub: 'end', name });
    },
  };
}

/**
 * The worker's side: a `Hub` that asks the primary (`startClusterHubPrimary`). Only in a process
 * forked by `node:cluster` (or any child with an IPC channel whose parent runs the primary side).
 */
export function clusterHub(options: { timeout?: number } = {}): HubFactory {
  const timeout = options.timeout ?? 5000;
  return (limits) => {
    if (typeof process.send !== 'function') throw new WharfError('INVALID_OPTION', 'clusterHub: this process has no IPC channel to a primary (not a cluster worker)');
    return createWorkerHub(limits, timeout);
  };
}

function createWorkerHub(limits: LocalHubOptions, timeout: number): Hub {
  const waiting = new Map<number, { ok(value: unknown): void; fail(err: unknown): void }>();
  let nextId = 0;
  let closed = false;

  const ask = (m: Ask & { id: number }): Promise<unknown> => new Promise((ok, fail) => {
    if (!process.connected) {
      fail(hubUnavailable('the cluster\'s primary is gone'));
      return;
    }
    waiting.set(m.id, { ok, fail });
    process.send!(m, undefined, {}, (err: Error | null) => {
      if (!err) return;
      waiting.delete(m.id);
      fail(hubUnavailable('the cluster\'s primary is gone', err));
    });
  });

  const fan = createFanOut({
    join: async (name) => {
      const latest = await ask({ wharfHub: 'sub', id: ++nextId, name }) as Frame | null;
      return latest ? { type: latest.type, data: asBuffer(latest.data) } : undefined;
    },
    leave: (name) => {
      if (process.connected) process.send!({ wharfHub: 'unsub', name } satisfies Ask, undefined, {}, () => {});
    },
  }, limits, timeout);

  const onMessage = (m: unknown): void => {
    if (!isHubMessage(m)) return;
    const tell = m as Tell;
    if (tell.wharfHub === 'reply') {
      const w = waiting.get(tell.id);
      waiting.delete(tell.id);
      if (tell.error) w?.fail(new WharfError(tell.error.code, tell.error.message, tell.error.status));
      else w?.ok(tell.value);
      return;
    }
    const t = fan.topics.get(tell.name);
    if (tell.wharfHub === 'end') fan.end(tell.name);
    else if (t) fan.frame(t, { type: tell.type, data: asBuffer(tell.data) });
  };
  const onDisconnect = (): void => {
    for (const w of waiting.values()) w.fail(hubUnavailable('the cluster\'s primary is gone'));
    waiting.clear();
  };
  process.on('message', onMessage);
  process.on('disconnect', onDisconnect);

  return {
    // The primary holds the streams: a worker cut off from it cannot carry any.
    health: () => Promise.resolve(process.connected),
    async publish(name, frame) {
      if (closed) throw shuttingDown();
      await ask({ wharfHub: 'pub', id: ++nextId, name, type: frame.type, data: frame.data });
    },
    subscribe(name, s) {
      if (closed) return Promise.reject(shuttingDown());
      return fan.subscribe(name, s);
    },
    async has(name) {
      if (fan.topics.get(name)?.latest) return true;
      return (await ask({ wharfHub: 'has', id: ++nextId, name })) === true;
    },
    async end(name) {
      if (closed) throw shuttingDown();
      return (await ask({ wharfHub: 'end', id: ++nextId, name })) === true;
    },
    stats: () => fan.stats(),
    async close() {
      if (closed) return;
      closed = true;
      fan.close();
      process.off('message', onMessage);
      process.off('disconnect', onDisconnect);
    },
  };
}
