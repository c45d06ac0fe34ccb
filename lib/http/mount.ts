// Mounted under a path by a host framework (`app.use('/files', files.handle)`, a Fastify plugin
// registered with a prefix): the URL wharf routes on, and the prefix of every URL it hands out, so
// an upload's answer points where the browser can reach it (docs/protocol.md §1).
import type { IncomingMessage } from 'node:http';

const MOUNT = Symbol('wharf.mount');

interface Mount {
  /** What routing matches: the request target without the mount path. */
  url: string;
  /** Put before every URL handed out (`/files`), '' when none. */
  prefix: string;
}

type Mountable = IncomingMessage & { [MOUNT]?: Mount; baseUrl?: unknown; originalUrl?: unknown };

/** Says `req` reached wharf mounted under `prefix` (no trailing slash), routed as `url`. For plugins. */
export function setMount(req: IncomingMessage, prefix: string, url: string): void {
  (req as Mountable)[MOUNT] = { url, prefix };
}

/**
 * Express and Connect strip a mount path from `req.url` and keep it in `req.baseUrl` (Express) or
 * `req.originalUrl` (both). Under a mount path that `base` (the canonical `baseUrl`) already
 * starts with, wharf routes the original URL and adds nothing (so `files.site` and HTTP answers
 * agree); under any other, it routes what is left and puts the mount path before what it hands out.
 */
export function detectMount(req: IncomingMessage, base: string): void {
  const r = req as Mountable;
  if (r[MOUNT] !== undefined) return;
  const url = req.url ?? '';
  const original = typeof r.originalUrl === 'string' ? r.originalUrl : undefined;
  if (original === undefined || original === url) return;
  let prefix: string | undefined;
  if (typeof r.baseUrl === 'string') prefix = r.baseUrl;
  else {
    const path = url.split('?', 1)[0]!;
    const originalPath = original.split('?', 1)[0]!;
    if (originalPath.endsWith(path)) prefix = originalPath.slice(0, originalPath.length - path.length);
  }
  if (prefix === undefined || prefix === '' || prefix === '/') return;
  prefix = prefix.replace(/\/+$/, '');
  if (base.startsWith(`${prefix}/`)) r[MOUNT] = { url: original, prefix: '' };
  else r[MOUNT] = { url, prefix };
}

/** The request target routing matches. */
export function routedUrl(req: IncomingMessage): string {
  return (req as Mountable)[MOUNT]?.url ?? req.url ?? '';
}

/** What goes before every URL handed out in answer to `req`: its mount path, or ''. */
export function mountPrefix(req: IncomingMessage): string {
  return (req as Mountable)[MOUNT]?.prefix ?? '';
}
