/**
 * wharf as a Fastify plugin (`wharf-files/fastify`): its URLs become Fastify routes, so the app's
 * hooks (`onRequest`, `preHandler`: auth, rate limits, logging) run for them as for any route,
 * before wharf reads a byte of the body. Fastify is not imported: this works with the Fastify the
 * app has (v4 and v5).
 *
 *   const files = createFileServer({ dataDir: './data' });
 *   app.register(wharfFastify(files));                        // at the root
 *   app.register(wharfFastify(files), { prefix: '/files' });  // or under a prefix
 *   app.addHook('onClose', () => files.close());
 *
 * Within the plugin (Fastify encapsulates it) request bodies are not parsed: each is handed to wharf
 * as the raw stream, so uploads stream to disk with wharf's limits, whatever Fastify's `bodyLimit`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setMount } from '../http/mount.js';
import type { FileServer } from '../http/options.js';
import { handled } from './settled.js';

/** What the plugin uses of a Fastify instance. */
export interface FastifyInstanceLike {
  readonly prefix: string;
  removeAllContentTypeParsers(): void;
  addContentTypeParser(type: string, parser: (request: unknown, payload: unknown, done: (err: Error | null, body?: unknown) => void) => void): void;
  route(options: {
    method: string[];
    url: string;
    exposeHeadRoute?: boolean;
    handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => void;
  }): unknown;
}

/** A Fastify plugin function (`register` it). */
export type WharfFastifyPlugin = (instance: FastifyInstanceLike, options: unknown, done: (err?: Error) => void) => void;

// What wharf answers (OPTIONS for CORS preflights), and PUT and PATCH, which it refuses with 405 and
// `Allow` — as standalone — rather than Fastify's 404.
const METHODS = ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS', 'PUT', 'PATCH'];

/** The plugin serving `files`'s URLs (`files.prefixes`) under the prefix it is registered with. */
export function wharfFastify(files: FileServer): WharfFastifyPlugin {
  return (instance, _options, done) => {
    const prefix = instance.prefix.replace(/\/+$/, '');
    // The body is wharf's to read, as a stream: no parser of this scope may consume it.
    instance.removeAllContentTypeParsers();
    instance.addContentTypeParser('*', (_request, _payload, next) => next(null));
    const handler = (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }): void => {
      reply.hijack();
      const req = request.raw;
      if (prefix !== '') setMount(req, prefix, (req.url ?? '').slice(prefix.length) || '/');
      if (!handled(files.handle, req, reply.raw)) notFound(reply.raw);
    };
    for (const p of files.prefixes) {
      // `{base}_f/*` (the prefix itself included), and `{base}_f`, which wharf takes for `{base}_f/`.
      instance.route({ method: METHODS, url: `${p}*`, exposeHeadRoute: false, handler });
      if (p !== '/') instance.route({ method: METHODS, url: p.slice(0, -1), exposeHeadRoute: false, handler });
    }
    done();
  };
}

/** A URL under one of wharf's prefixes that wharf does not route (it never happens with matching prefixes). */
function notFound(res: ServerResponse): void {
  res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end('{"error":"NOT_FOUND","message":"no such route"}');
}
