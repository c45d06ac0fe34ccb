/**
 * wharf as Koa middleware (`wharf-files/koa`): wharf answers its own URLs on the raw response
 * (`ctx.respond = false`), and the middleware resolves once that answer is finished, so loggers
 * and timers upstream see it whole; every other request goes on to `next()`.
 *
 *   const files = createFileServer({ dataDir: './data' });
 *   app.use(wharfKoa(files));
 *
 * Middleware before it (auth, say) runs first and may refuse before wharf reads a byte of the body.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FileServer } from '../http/options.js';
import { handled, settled } from './settled.js';

/** What the middleware uses of a Koa context. */
export interface KoaContextLike {
  req: IncomingMessage;
  res: ServerResponse;
  respond?: boolean;
}

/** Koa middleware answering `files`'s URLs (resolving once the answer is finished) and passing every other request to `next()`. */
export function wharfKoa(files: FileServer): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<unknown> {
  return async (ctx, next) => {
    if (!handled(files.handle, ctx.req, ctx.res)) return next();
    // wharf writes the answer itself: Koa must not write one after it.
    ctx.respond = false;
    await settled(ctx.res);
    return undefined;
  };
}
