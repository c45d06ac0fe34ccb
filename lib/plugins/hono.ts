/**
 * wharf as Hono middleware for `@hono/node-server` (`wharf-files/hono`): wharf answers its own URLs
 * on the Node request and response the server hands Hono (`c.env.incoming`, `c.env.outgoing`), as
 * streams, with its limits; every other request goes on to `next()`.
 *
 *   const files = createFileServer({ dataDir: './data' });
 *   app.use(wharfHono(files));
 *   serve({ fetch: app.fetch, port: 3000 });
 *
 * Middleware before it runs first and may refuse before wharf reads a byte of the body. Under
 * `app.use('/files/*', …)` set wharf's `baseUrl` to `/files/`: Hono does not strip the path.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FileServer } from '../http/options.js';
import { handled, settled } from './settled.js';

/** What the middleware uses of a Hono context. */
export interface HonoContextLike {
  env: unknown;
}

// @hono/node-server's header for "the response was written to `outgoing` already": it then writes nothing.
const ALREADY_SENT = 'x-hono-already-sent';

/**
 * Hono middleware answering `files`'s URLs on `c.env.outgoing` (resolving, once it is finished, with
 * the response that tells @hono/node-server it was sent) and passing every other request to `next()`.
 */
export function wharfHono(files: FileServer): (c: HonoContextLike, next: () => Promise<void>) => Promise<Response | undefined> {
  return async (c, next) => {
    const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
    if (env?.incoming === undefined || env.outgoing === undefined) {
      throw new TypeError('wharfHono needs @hono/node-server, whose c.env holds the Node request and response (incoming, outgoing)');
    }
    if (!handled(files.handle, env.incoming, env.outgoing)) {
      await next();
      return undefined;
    }
    await settled(env.outgoing);
    const sent = new Response(null, { headers: { [ALREADY_SENT]: 'true' } });
    // @hono/node-server 2 replaces the global Response with one it writes out on a fast path that
    // never looks at ALREADY_SENT (so it wrote a second head: ERR_HTTP_HEADERS_SENT logged, the
    // connection destroyed). Reading `body` turns it into a plain Response, which goes the path that
    // honours the header; on a plain Response it is a no-op.
    void sent.body;
    return sent;
  };
}
