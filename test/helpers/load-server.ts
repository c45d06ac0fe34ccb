// A wharf file server in a process of its own, for the load and fault tests: its descriptors, RSS
// and file-descriptor limit are then its own. Started by `startChild` (test/helpers/load-gen.ts):
//
//   node [--expose-gc] load-server.js '<FileServerOptions as JSON>'
//
// Prints one JSON line `{"port":…,"pid":…}` on stdout once listening. Over the IPC channel it answers
// `{cmd:"memory"}` with `{rss, heapTotal, heapUsed, external, arrayBuffers}` after a full GC (with
// --expose-gc), `{cmd:"loop"}` with the event-loop delay since the last ask (p50, p99, max in ms),
// and `{cmd:"close"}` by closing the server and exiting. Warnings go to stderr.
//
// With `WHARF_TEST_REDIS_URL` in its environment, its image streams go through that Redis
// (`redisHub` with node-redis clients of its own, as a host app would make them).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createClient } from 'redis';
import { createFileServer, type FileServerOptions } from '../../lib/http/server.js';
import { redisHub } from '../../lib/image-streams/redis-hub.js';

const options = JSON.parse(process.argv[2] ?? '{}') as FileServerOptions;
const redisUrl = process.env.WHARF_TEST_REDIS_URL;
if (redisUrl) {
  // Retries every 100 ms while Redis is away, so a restart in a test is noticed quickly.
  const publisher = createClient({ url: redisUrl, socket: { reconnectStrategy: () => 100 } });
  const subscriber = publisher.duplicate();
  for (const c of [publisher, subscriber]) c.on('error', () => {}); // node-redis needs a listener; reconnects by itself
  await Promise.all([publisher.connect(), subscriber.connect()]);
  options.hub = redisHub({ publisher, subscriber });
}
const files = createFileServer({ ...options, warn: (message) => process.stderr.write(`${message}\n`) });
const address = await files.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ port: address.port, pid: process.pid })}\n`);

const gc = (globalThis as { gc?: () => void }).gc;
// How long the server's event loop was blocked: a synchronous call that waits for the disk stalls
// every client at once, which latency percentiles alone cannot tell from a slow client.
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

process.on('message', (message: { id: number; cmd: string }) => {
  const reply = (value: unknown): void => {
    process.send?.({ id: message.id, value });
  };
  if (message.cmd === 'memory') {
    // Twice: the first pass finalises what the second then frees.
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    reply({ rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
  } else if (message.cmd === 'loop') {
    const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
    reply({ p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) });
    loop.reset();
  } else if (message.cmd === 'close') {
    void files.close().then(() => {
      reply(true);
      process.disconnect?.();
      process.exit(0);
    });
  }
});
// The parent gone (a crashed test) must not leave a server behind.
process.on('disconnect', () => process.exit(0));
