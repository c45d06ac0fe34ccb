// What a person who opens the server's root in a browser sees when nothing is mapped there: what
// this server is and where its documentation lives. Standalone only (in middleware mode `/` is the
// host app's), and nothing about how this server is configured: that is for its operator's banner.
import type { IncomingMessage, ServerResponse } from 'node:http';

const PAGE = `This is a wharf file server: uploads, downloads, directories and live image streams for
web apps, speaking H2O Wave's file protocol. There is nothing to show at this address.

Documentation: https://www.npmjs.com/package/wharf-files
`;

const HEADERS = {
  'Content-Type': 'text/plain; charset=utf-8',
  'Content-Length': Buffer.byteLength(PAGE),
  'Cache-Control': 'no-cache',
  // Text that can never run or load anything, nor be framed.
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
  'X-Content-Type-Options': 'nosniff',
};

/** Answers `GET`/`HEAD /` (any query) with the page and returns true; false for any other request. */
export function answerRoot(req: IncomingMessage, res: ServerResponse): boolean {
  const url = req.url ?? '';
  if ((url !== '/' && !url.startsWith('/?')) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  res.writeHead(200, HEADERS);
  res.end(req.method === 'HEAD' ? undefined : PAGE);
  return true;
}
