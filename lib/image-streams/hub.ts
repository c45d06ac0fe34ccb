// The fan-out seam of image streams: a registry of named streams, each with its latest frame and its
// subscribers. The HTTP layer (relay.ts) only ever talks to a `Hub`, so a cross-process hub (Redis
// pub/sub, redis-hub.ts; the workers of one machine, cluster-hub.ts) replaces the in-process one
// below without touching how requests are read or responses written. The calls that may have to ask
// another process are asynchronous; the in-process hub answers them at once.
import { MAX_TIMER } from '../common/limits.js';
import { WharfError } from '../common/errors.js';

/** One published image. `data` is shared by every subscriber: nobody may mutate it. */
export interface Frame {
  /** A validated media type (`image/jpeg`), written as the part's `Content-Type`. */
  readonly type: string;
  readonly data: Buffer;
}

/** What a hub calls on each viewer. Both calls must return quickly and never throw. */
export interface Subscriber {
  /**
   * A new frame. Returns false when the subscriber dropped an earlier frame it had not sent yet to
   * take this one (a slow viewer skips to the newest frame); the hub counts those as skipped.
   */
  deliver(frame: Frame): boolean;
  /** The stream ended (unlink, idle, close): no call follows. */
  end(): void;
}

export interface Subscription {
  /** The frame to show at once (a new viewer does not wait for the next publish). */
  latest: Frame;
  /** Idempotent; `end()` is not called afterwards. */
  unsubscribe(): void;
}

export interface HubStats {
  name: string;
  viewers: number;
  framesPublished: number;
  framesSkipped: number;
}

export interface Hub {
  /**
   * Publishes `frame` to stream `name`, creating it if new. Rejects with 503 `TOO_MANY_STREAMS`,
   * `SHUTTING_DOWN`, or (a hub that needs another process) `HUB_UNAVAILABLE`.
   */
  publish(name: string, frame: Frame): Promise<void>;
  /**
   * `undefined` when there is no such stream. Rejects with 503 `TOO_MANY_VIEWERS` (or
   * `HUB_UNAVAILABLE`). Until it resolves the subscriber may already get `deliver` calls: frames
   * newer than `latest`, which it must hold (the newest one) until it starts.
   */
  subscribe(name: string, subscriber: Subscriber): Promise<Subscription | undefined>;
  /** Whether stream `name` exists (a HEAD, which must not subscribe). */
  has(name: string): Promise<boolean>;
  /** Ends stream `name` (every subscriber's `end()` runs, on every node); resolves false if there was none. */
  end(name: string): Promise<boolean>;
  /** This process's streams: those it has subscribers of (or, in-process, every stream). */
  stats(): HubStats[];
  /**
   * Whether the processes this hub needs can be reached now, for the health route (a load balancer's
   * readiness check). Absent on a hub that needs none (the in-process one): always ready.
   */
  health?(): Promise<boolean>;
  /**
   * Ends this process's subscribers (not the streams of other processes), clears every timer, and
   * refuses later publishes. A hub given clients by its caller leaves them open: they are the caller's.
   */
  close(): Promise<void>;
}

/** What `createFileServer` gives the hub it makes: the limits that concern streams, and its `warn`. */
export interface HubOptions extends LocalHubOptions {
  warn(message: string): void;
}

/**
 * Makes the server's hub: `createFileServer({ hub: redisHub({ publisher, subscriber }) })`. The
 * server calls it once, with its limits, and closes the hub when it closes.
 */
export type HubFactory = (options: HubOptions) => Hub;

export interface LocalHubOptions {
  /** Streams alive at once. */
  streams: number;
  /** Subscribers of one stream. */
  viewersPerStream: number;
  /** ms without a publish after which a stream ends itself; 0 = never. */
  streamIdleTimeout: number;
}

interface Topic {
  latest: Frame;
  subscribers: Set<Subscriber>;
  published: number;
  skipped: number;
  idle: NodeJS.Timeout | undefined;
}

/** The in-process hub: frames go straight from the publishing request to this process's viewers. */
export function createLocalHub(options: LocalHubOptions): Hub {
  const topics = new Map<string, Topic>();
  let closed = false;

  function finish(name: string, topic: Topic): void {
    topics.delete(name);
    if (topic.idle) clearTimeout(topic.idle);
    const subscribers = [...topic.subscribers];
    topic.subscribers.clear();
    for (const s of subscribers) s.end();
  }

  function create(name: string, frame: Frame): Topic {
    if (topics.size >= options.streams) {
      throw tooManyStreams(options.streams);
    }
    const topic: Topic = { latest: frame, subscribers: new Set(), published: 0, skipped: 0, idle: undefined };
    if (options.streamIdleTimeout > 0) {
      // One timer per stream, re-armed by `refresh()` on every publish: no allocation per frame.
      topic.idle = setTimeout(() => {
        if (topics.get(name) === topic) finish(name, topic);
      }, Math.min(options.streamIdleTimeout, MAX_TIMER));
      topic.idle.unref();
    }
    topics.set(name, topic);
    return topic;
  }

  return {
    async publish(name, frame) {
      if (closed) throw shuttingDown();
      const topic = topics.get(name) ?? create(name, frame);
      topic.latest = frame;
      topic.published++;
      topic.idle?.refresh();
      for (const s of topic.subscribers) if (!s.deliver(frame)) topic.skipped++;
    },

    async subscribe(name, subscriber) {
      const topic = topics.get(name);
      if (!topic) return undefined;
      if (topic.subscribers.size >= options.viewersPerStream) {
        throw tooManyViewers(options.viewersPerStream);
      }
      topic.subscribers.add(subscriber);
      return { latest: topic.latest, unsubscribe: () => void topic.subscribers.delete(subscriber) };
    },

    has: async (name) => topics.has(name),

    async end(name) {
      const topic = topics.get(name);
      if (!topic) return false;
      finish(name, topic);
      return true;
    },

    stats() {
      return [...topics].map(([name, t]) => ({
        name,
        viewers: t.subscribers.size,
        framesPublished: t.published,
        framesSkipped: t.skipped,
      }));
    },

    async close() {
      closed = true;
      for (const [name, topic] of [...topics]) finish(name, topic);
    },
  };
}

export function tooManyStreams(limit: number): WharfError {
  return new WharfError('TOO_MANY_STREAMS', `too many image streams (limit ${limit})`, 503);
}

export function tooManyViewers(limit: number): WharfError {
  return new WharfError('TOO_MANY_VIEWERS', `too many viewers of this stream (limit ${limit})`, 503);
}

export function shuttingDown(): WharfError {
  return new WharfError('SHUTTING_DOWN', 'the server is shutting down', 503);
}

/** 503 `HUB_UNAVAILABLE`: the process that carries frames between nodes (Redis, the cluster's primary) cannot be reached. */
export function hubUnavailable(why: string, cause?: unknown): WharfError {
  return new WharfError('HUB_UNAVAILABLE', `image streams are unavailable: ${why}`, 503, cause === undefined ? undefined : { cause });
}
