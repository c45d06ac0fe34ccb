/**
 * `--redis-url`: node-redis, loaded only when asked for (an optional peer dependency: wharf has no
 * runtime dependency), two clients (commands, and pub/sub) for `redisHub`, and their close.
 */
import { errorMessage } from '../common/errors.js';
import type { RedisClientLike, RedisSubscriberLike } from '../image-streams/redis-hub.js';
import { UsageError } from './flags.js';

interface NodeRedisClient extends RedisClientLike, RedisSubscriberLike {
  connect(): Promise<unknown>;
  duplicate(): NodeRedisClient;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  destroy?(): void;
  close?(): Promise<void>;
  quit?(): Promise<unknown>;
}

interface NodeRedis {
  createClient(options: { url: string; socket?: { reconnectStrategy?: (retries: number) => number } }): NodeRedisClient;
}

export interface RedisClients {
  publisher: NodeRedisClient;
  subscriber: NodeRedisClient;
  close(): Promise<void>;
}

/** The module's name, in a variable so the compiler does not resolve it: it need not be installed. */
const REDIS_MODULE = 'redis';

/** `import('redis')`, or the usage error that says what to install (the command exits 2). */
export async function loadRedis(from: string = REDIS_MODULE): Promise<NodeRedis> {
  try {
    const mod = await import(from) as Partial<NodeRedis> & { default?: Partial<NodeRedis> };
    const createClient = mod.createClient ?? mod.default?.createClient;
    if (typeof createClient !== 'function') throw new Error('no createClient export');
    return { createClient };
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
    throw new UsageError(`--redis-url needs the redis package (node-redis 4 or later): npm install redis${missing ? '' : ` (${errorMessage(err)})`}`);
  }
}

/**
 * Connects both clients. A Redis that is not reachable yet is a warning, not a failure: the clients
 * keep trying (every second at most), image streams answer 503 `HUB_UNAVAILABLE` until they
 * succeed, and everything else works meanwhile.
 */
export async function connectRedis(url: string, warn: (message: string) => void, connectWait = 5000): Promise<RedisClients> {
  const redis = await loadRedis();
  let publisher: NodeRedisClient;
  try {
    publisher = redis.createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(1000, 50 * 2 ** retries) } });
  } catch (err) {
    throw new UsageError(`--redis-url: ${errorMessage(err)}`);
  }
  const subscriber = publisher.duplicate();
  const where = redactUrl(url);
  // node-redis emits 'error' on every failed attempt; one warning per outage is enough.
  let down = false;
  const onError = (err: unknown): void => {
    if (down) return;
    down = true;
    warn(`Redis at ${where} is unreachable (${errorMessage(err)}): image streams answer 503 until it is back`);
  };
  const onReady = (): void => {
    if (down) warn(`Redis at ${where} is back`);
    down = false;
  };
  for (const c of [publisher, subscriber]) {
    c.on('error', onError);
    c.on('ready', onReady);
  }
  const connected = Promise.all([publisher.connect(), subscriber.connect()]).catch(onError);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([connected, new Promise((resolve) => { timer = setTimeout(resolve, connectWait); })]);
  clearTimeout(timer);
  return {
    publisher,
    subscriber,
    async close() {
      for (const c of [publisher, subscriber]) {
        try {
          await (c.close ?? c.quit)?.call(c);
        } catch {
          // not connected: nothing to say goodbye to
        }
        try {
          c.destroy?.();
        } catch {
          // closed already
        }
      }
    },
  };
}

/** The URL without its password, for a log line. `url` parses: the command checked it. */
function redactUrl(url: string): string {
  // The command checked that it parses (serve.ts, parseRedisUrl).
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
