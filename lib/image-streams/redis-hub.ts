// Image streams across nodes through Redis (docs/protocol.md §2, "Several nodes"): the host app's
// own node-redis clients, typed by the few calls used here, so wharf keeps no runtime dependency.
//
// Per stream `<name>`, with the prefix `p` (default `wharf:`):
// - channel `p` + `m:<name>` carries each frame as `F<seq> <type>\n<bytes>` and the end as `E<seq>\n`:
//   a header of a few bytes and the frame's bytes as they are (no base64), one PUBLISH per frame.
// - key `p` + `m-latest:<name>` holds the latest message, expiring after `streamIdleTimeout`, so a
//   new viewer on any node gets it at once, and a stream nobody publishes to is gone everywhere.
// - `p` + `m-seq` numbers the messages of every stream, `p` + `m-streams` (a sorted set scored by
//   expiry) counts the live streams against `limits.streams`, which is global.
// Each publish is one script (count, number, keep, publish) so every node sees frames in one order.
//
// A node subscribes once per stream it has viewers of (fan-out.ts), and learns the latest frame by
// asking Redis to publish it again (the `replay` script): nodes that have it already drop it by its
// number, and no client option for binary replies is needed. After the subscriber reconnects (Redis
// restarted, or Redis dropped it for falling behind, `client-output-buffer-limit pubsub`), node-redis
// subscribes again and every stream is replayed: its viewers skip to the latest frame.
import { WharfError } from '../common/errors.js';
import { createFanOut, type FanOut, type RemoteTopic } from './fan-out.js';
import { hubUnavailable, shuttingDown, tooManyStreams, type Frame, type Hub, type HubFactory, type HubOptions } from './hub.js';

/** The calls of a node-redis (`redis` ≥ 4) client used here; any client with them will do. */
export interface RedisClientLike {
  /** Whether commands can be sent now (node-redis: connected, handshake done). */
  readonly isReady: boolean;
  sendCommand(args: Array<string | Buffer>): Promise<unknown>;
}

/** The subscriber: a client of its own (`publisher.duplicate()`), in pub/sub mode. */
export interface RedisSubscriberLike {
  readonly isReady: boolean;
  subscribe(channel: string, listener: (message: Buffer, channel: Buffer) => void, bufferMode: true): Promise<unknown>;
  unsubscribe(channel: string, listener: (message: Buffer, channel: Buffer) => void, bufferMode: true): Promise<unknown>;
  on(event: 'ready', listener: () => void): unknown;
  off(event: 'ready', listener: () => void): unknown;
}

export interface RedisHubOptions {
  /** A connected client for commands (node-redis `createClient()`). Left open by `close()`. */
  publisher: RedisClientLike;
  /** A second connected client, for pub/sub only (`publisher.duplicate()`). Left open by `close()`. */
  subscriber: RedisSubscriberLike;
  /** Prefix of wharf's keys and channels, so several deployments can share a Redis. Default `wharf:`. */
  prefix?: string;
  /** ms a new viewer waits for Redis before 503 `HUB_UNAVAILABLE`. Default 5,000. */
  timeout?: number;
}

const PUBLISH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[3], ARGV[6]) and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return -1 end
if ttl > 0 then redis.call('ZADD', KEYS[3], now + ttl, ARGV[6]) else redis.call('ZADD', KEYS[3], 'inf', ARGV[6]) end
local seq = redis.call('INCR', KEYS[2])
local msg = 'F' .. seq .. ' ' .. ARGV[2] .. '\\n' .. ARGV[3]
if ttl > 0 then redis.call('SET', KEYS[1], msg, 'PX', ttl) else redis.call('SET', KEYS[1], msg) end
redis.call('PUBLISH', ARGV[1], msg)
return seq`;

const REPLAY = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
redis.call('PUBLISH', ARGV[1], v)
return 1`;

const END = `
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], 'E' .. seq .. '\\n')
return n`;

const F = 0x46; // 'F'
const E = 0x45; // 'E'
const NL = 0x0a;

/** `createFileServer({ hub: redisHub({ publisher, subscriber }) })`: image streams shared by every node on one Redis. */
export function redisHub(options: RedisHubOptions): HubFactory {
  const { publisher, subscriber } = options;
  for (const [what, c] of [['publisher', publisher], ['subscriber', subscriber]] as const) {
    if (c === null || typeof c !== 'object') throw new WharfError('INVALID_OPTION', `redisHub: ${what}: expected a node-redis client`);
  }
  if (typeof publisher.sendCommand !== 'function') throw new WharfError('INVALID_OPTION', 'redisHub: publisher: expected a node-redis client (sendCommand)');
  if (typeof subscriber.subscribe !== 'function' || typeof subscriber.on !== 'function') throw new WharfError('INVALID_OPTION', 'redisHub: subscriber: expected a node-redis client (subscribe)');
  if (publisher === (subscriber as unknown)) throw new WharfError('INVALID_OPTION', 'redisHub: the subscriber must be a client of its own (publisher.duplicate())');
  const prefix = options.prefix ?? 'wharf:';
  const timeout = options.timeout ?? 5000;
  if (typeof prefix !== 'string') throw new WharfError('INVALID_OPTION', 'redisHub: prefix: expected a string');
  if (!Number.isInteger(timeout) || timeout <= 0) throw new WharfError('INVALID_OPTION', 'redisHub: timeout: expected a positive integer (ms)');
  return (limits) => createRedisHub({ publisher, subscriber, prefix, timeout }, limits);
}

interface Keys { latest: string; seq: string; streams: string; channel: string }

function createRedisHub(o: Required<RedisHubOptions>, limits: HubOptions): Hub {
  const { publisher, subscriber, prefix } = o;
  const seqKey = `${prefix}m-seq`;
  const streamsKey = `${prefix}m-streams`;
  const keysOf = (name: string): Keys => ({ latest: `${prefix}m-latest:${name}`, seq: seqKey, streams: streamsKey, channel: `${prefix}m:${name}` });
  const ttl = String(limits.streamIdleTimeout);
  const listeners = new Map<string, (message: Buffer) => void>();
  const arrivals = new Map<RemoteTopic, () => void>();
  let closed = false;

  const run = async (script: string, k: Keys, ...args: Array<string | Buffer>): Promise<unknown> => {
    if (!publisher.isReady) throw hubUnavailable('Redis is not connected');
    try {
      return await publisher.sendCommand(['EVAL', script, '3', k.latest, k.seq, k.streams, k.channel, ...args]);
    } catch (err) {
      throw hubUnavailable('Redis failed', err);
    }
  };

  const fan: FanOut = createFanOut({
    async join(name) {
      const k = keysOf(name);
      const t = fan.topics.get(name)!;
      const arrived = new Promise<void>((resolve) => { arrivals.set(t, resolve); });
      const listener = (message: Buffer): void => onMessage(t, message);
      listeners.set(name, listener);
      try {
        if (!subscriber.isReady) throw hubUnavailable('Redis is not connected');
        await subscriber.subscribe(k.channel, listener, true).catch((err: unknown) => { throw hubUnavailable('Redis failed', err); });
        if ((await run(REPLAY, k)) !== 1) return undefined;
        await arrived;
        return t.latest;
      } finally {
        arrivals.delete(t);
      }
    },
    leave(name) {
      const listener = listeners.get(name);
      if (!listener) return;
      listeners.delete(name);
      // The unsubscribe is queued while Redis is away and sent after node-redis reconnects.
      subscriber.unsubscribe(keysOf(name).channel, listener, true).catch(() => {});
    },
    idle(name) {
      void checkIdle(name);
    },
  }, limits, o.timeout);

  function onMessage(t: RemoteTopic, message: Buffer): void {
    if (takeMessage(fan, t, message)) arrivals.get(t)?.();
  }

  /** No frame for the idle timeout: the stream is over when its latest frame has expired in Redis too. */
  async function checkIdle(name: string): Promise<void> {
    let left: unknown;
    try {
      left = await publisher.sendCommand(['PTTL', keysOf(name).latest]);
    } catch {
      left = undefined;
    }
    if (left === -2) fan.end(name);
    // Redis away: the viewers stay until it is back and says.
    else fan.rearm(name, typeof left === 'number' && left > 0 ? left + 10 : limits.streamIdleTimeout);
  }

  /** After a reconnect (Redis restarted, or dropped this subscriber): every stream's latest frame again. */
  function resync(): void {
    for (const t of fan.topics.values()) {
      // A restarted Redis numbers from 1 again; a dropped subscriber has missed frames. Take the next one.
      t.seq = -1;
      if (t.latest) run(REPLAY, keysOf(t.name)).catch(() => {});
    }
  }
  subscriber.on('ready', resync);

  return {
    // Both clients ready, and the command one answers now (a half-open socket still says ready).
    async health() {
      if (!publisher.isReady || !subscriber.isReady) return false;
      return (await publisher.sendCommand(['PING'])) === 'PONG';
    },
    async publish(name, frame) {
      if (closed) throw shuttingDown();
      const seq = await run(PUBLISH, keysOf(name), frame.type, frame.data, ttl, String(limits.streams), name);
      if (seq === -1) throw tooManyStreams(limits.streams);
    },
    subscribe: (name, s) => {
      if (closed) return Promise.reject(shuttingDown());
      return fan.subscribe(name, s);
    },
    async has(name) {
      if (fan.topics.get(name)?.latest) return true;
      const k = keysOf(name);
      if (!publisher.isReady) throw hubUnavailable('Redis is not connected');
      return (await publisher.sendCommand(['EXISTS', k.latest]).catch((err: unknown) => { throw hubUnavailable('Redis failed', err); })) === 1;
    },
    async end(name) {
      if (closed) throw shuttingDown();
      const n = await run(END, keysOf(name), name);
      // This node's viewers end with the message; those of a stream nobody publishes to any more too.
      fan.end(name);
      return n === 1;
    },
    stats: () => fan.stats(),
    async close() {
      if (closed) return;
      closed = true;
      subscriber.off('ready', resync);
      fan.close();
    },
  };
}

/** A message on a stream's channel: true for a frame newer than the last one taken; the end ends the stream. */
function takeMessage(fan: FanOut, t: RemoteTopic, message: Buffer): boolean {
  const nl = message.indexOf(NL);
  if (nl < 0) return false;
  if (message[0] === E) {
    fan.end(t.name);
    return false;
  }
  const space = message.indexOf(0x20);
  if (message[0] !== F || space < 0 || space > nl) return false;
  const seq = Number(message.toString('latin1', 1, space));
  if (seq <= t.seq) return false; // a replay of a frame this node has
  t.seq = seq;
  fan.frame(t, { type: message.toString('latin1', space + 1, nl), data: message.subarray(nl + 1) });
  return true;
}
