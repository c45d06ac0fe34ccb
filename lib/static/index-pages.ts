// Index pages (docs/protocol.md §3, "Index pages"), as Wave's server (Go's http.FileServer) has
// them: a directory's URL with its trailing slash serves the directory's `index.html`, and without
// it redirects to the URL with the slash, so the page's relative links resolve inside the directory.
// Never a listing: a directory without `index.html` is a 404 either way.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { encodeSegment } from '../common/upload-names.js';
import { sendError } from '../http/answer.js';
import { filePath, type PathRule } from '../http/request-path.js';
import type { FileSource, Missing, StaticEngine } from './engine.js';

const INDEX = 'index.html';

/**
 * The path rule of files with index pages: `filePath`, or a directory, which ends in `/` (or is
 * empty: the mapping's own URL). What it returns keeps that slash, for `servePage` to see.
 */
export const pagePath: PathRule = (rest, flags) => {
  if (rest === '') return rest;
  if (rest.charCodeAt(rest.length - 1) !== 47) return filePath(rest, flags);
  filePath(rest.slice(0, -1), flags);
  return rest;
};

/** Serves `rel` (as `pagePath` let it through) of `source`, a directory by its `index.html`. */
export type ServePage = (req: IncomingMessage, res: ServerResponse, source: FileSource, rel: string, isPrivate: boolean) => Promise<void> | undefined;

export function createPages(statics: StaticEngine): ServePage {
  /** A file that is not there: a directory with an index page is redirected to, else 404. */
  const toDirectory = (source: FileSource, rel: string, isPrivate: boolean): Missing => (req, res) => {
    source.stat(rel === '' ? INDEX : `${rel}/${INDEX}`).then(
      (index) => (index === null ? sendError(res, notFound()) : redirect(req, res, isPrivate)),
      () => sendError(res, notFound()),
    );
  };

  return (req, res, source, rel, isPrivate) => {
    if (rel === '' && !pathEndsInSlash(req.url ?? '')) {
      toDirectory(source, rel, isPrivate)(req, res); // a mapping's own URL without its slash
      return undefined;
    }
    if (rel === '' || rel.charCodeAt(rel.length - 1) === 47) return statics.respond(req, res, source, rel + INDEX, isPrivate);
    return statics.respond(req, res, source, rel, isPrivate, toDirectory(source, rel, isPrivate));
  };
}

const notFound = (): WharfError => new WharfError('NOT_FOUND', 'file not found', 404);

function pathEndsInSlash(url: string): boolean {
  const q = url.indexOf('?');
  return (q < 0 ? url : url.slice(0, q)).endsWith('/');
}

/**
 * 301 to the same URL with a slash, as Wave answers (a redirect of GET and HEAD only, where 301 and
 * 308 mean the same to every client). The `Location` is relative, `./<last segment>/`: it cannot
 * name another host however the path was spelled (`//evil.example`, `/\evil.example`, `http:`
 * as a segment), and it stays right when a proxy or a host app mounts wharf under a prefix. The
 * segment is the one routing decoded, encoded again; the query string is kept.
 */
function redirect(req: IncomingMessage, res: ServerResponse, isPrivate: boolean): void {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q);
  const segment = path.slice(path.lastIndexOf('/') + 1);
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    sendError(res, notFound()); // routing let no malformed escape through; never a redirect built from one
    return;
  }
  const location = `./${encodeSegment(name)}/${/^[\x21-\x7e]*$/.test(query) ? query : ''}`;
  res.writeHead(301, { Location: location, 'Content-Length': 0, 'Cache-Control': isPrivate ? 'private, no-cache' : 'no-cache' });
  res.end();
}
