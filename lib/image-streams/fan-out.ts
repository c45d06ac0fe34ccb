// The local half of a hub between processes (redis-hub.ts, cluster-hub.ts): this process's viewers
// of each stream, fed by one remote subscription per stream however many viewers it has. The
// remote side brings frames in (`frame`) and ends streams (`end`); this side fans them out to its
// subscribers exactly as the in-process hub does.
import { MAX_TIMER } from '../common/limits.js';
import { hubUnavailable, tooManyStreams, tooManyViewers, type Frame, type HubStats, type LocalHubOptions, type Subscriber, type Subscription } from './hub.js';

/** What the fan-out asks of the transport. */
export interface Remote {
  /**
   * Starts receiving stream `name` (frames come to `FanOut.frame`) and resolves with its latest
   * frame, or `undefined` when there is no such stream (then `leave` follows).
   */
  join(name: string): Promise<Frame | undefined>;
  /** This process has no viewer of `name` left: stop receiving it. */
  leave(name: string): void;
  /** No frame of `name` arrived for the idle timeout: the remote side checks, and ends it or `rearm`s it. */
  idle?(name: string): void;
}

export interface RemoteTopic {
  readonly name: string;
  readonly subscribers: Set<Subscriber>;
  latest: Frame | undefined;
  /** The transport's position in the stream (Redis: the last sequence number taken), -1 before any. */
  seq: number;
  /** Viewers waiting for the join. */
  waiting: number;
  joining: Promise<Frame | undefined> | undefined;
  published: number;
  skipped: number;
  idle: NodeJS.Timeout | undefined;
}

export interface FanOut {
  readonly topics: ReadonlyMap<string, RemoteTopic>;
  subscribe(name: string, subscriber: Subscriber): Promise<Subscription | undefined>;
  /** A frame from the remote side; ignored for a stream nobody here views. */
  frame(topic: RemoteTopic, frame: Frame): void;
  /** Ends stream `name` here (its viewers get the closing boundary) and leaves it. */
  end(name: string): void;
  /** Arms the idle check of `name` again, `ms` from now. */
  rearm(name: string, ms: number): void;
  stats(): HubStats[];
  /** Ends every stream here. */
  close(): void;
}

/** `joinTimeout`: ms a new viewer waits for the remote side before 503 `HUB_UNAVAILABLE`. */
export function createFanOut(remote: Remote, limits: LocalHubOptions, joinTimeout: number): FanOut {
  const topics = new Map<string, RemoteTopic>();

  function drop(t: RemoteTopic): void {
    if (topics.get(t.name) !== t) return;
    topics.delete(t.name);
    if (t.idle) clearTimeout(t.idle);
    remote.leave(t.name);
  }

  function create(name: string): RemoteTopic {
    if (topics.size >= limits.streams) throw tooManyStreams(limits.streams);
    const t: RemoteTopic = { name, subscribers: new Set(), latest: undefined, seq: -1, waiting: 0, joining: undefined, published: 0, skipped: 0, idle: undefined };
    topics.set(name, t);
    return t;
  }

  function armIdle(t: RemoteTopic, ms: number): void {
    if (!remote.idle || limits.streamIdleTimeout <= 0) return;
    if (t.idle) clearTimeout(t.idle);
    t.idle = setTimeout(() => {
      if (topics.get(t.name) === t) remote.idle?.(t.name);
    }, Math.min(ms, MAX_TIMER));
    t.idle.unref();
  }

  async function join(t: RemoteTopic): Promise<Frame | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(hubUnavailable('no answer in time')), joinTimeout);
    });
    try {
      const latest = await Promise.race([remote.join(t.name), late]);
      // A frame that came in while joining is newer than the one the join brought.
      if (latest && !t.latest) t.latest = latest;
      if (t.latest) armIdle(t, limits.streamIdleTimeout);
      return t.latest;
    } finally {
      clearTimeout(timer);
      t.joining = undefined;
    }
  }

  async function subscribe(name: string, s: Subscriber): Promise<Subscription | undefined> {
    const t = topics.get(name) ?? create(name);
    if (t.subscribers.size + t.waiting >= limits.viewersPerStream) throw tooManyViewers(limits.viewersPerStream);
    if (!t.latest) {
      t.waiting++;
      try {
        t.joining ??= join(t);
        await t.joining;
      } catch (err) {
        if (t.subscribers.size === 0 && t.waiting === 1) drop(t);
        throw err;
      } finally {
        t.waiting--;
      }
      if (!t.latest || topics.get(name) !== t) {
        if (t.subscribers.size === 0 && t.waiting === 0) drop(t);
        return undefined;
      }
    }
    t.subscribers.add(s);
    return {
      latest: t.latest,
      unsubscribe: () => {
        if (t.subscribers.delete(s) && t.subscribers.size === 0 && t.waiting === 0) drop(t);
      },
    };
  }

  function end(name: string): void {
    const t = topics.get(name);
    if (!t) return;
    drop(t);
    const subscribers = [...t.subscribers];
    t.subscribers.clear();
    for (const s of subscribers) s.end();
  }

  return {
    topics,
    subscribe,
    frame(t, frame) {
      t.latest = frame;
      t.published++;
      t.idle?.refresh();
      for (const s of t.subscribers) if (!s.deliver(frame)) t.skipped++;
    },
    end,
    rearm(name, ms) {
      const t = topics.get(name);
      if (t) armIdle(t, ms);
    },
    stats: () => [...topics.values()].filter((t) => t.latest).map((t) => ({
      name: t.name, viewers: t.subscribers.size, framesPublished: t.published, framesSkipped: t.skipped,
    })),
    close() {
      for (const name of [...topics.keys()]) end(name);
    },
  };
}
