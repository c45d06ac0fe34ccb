// A host app with wharf mounted as middleware: the page comes from a public mapping, uploads go to
// wharf's `_f/`, and deletions go through the app (the browser never holds an access key).
//
//   node examples/upload-page/server.mjs      then open http://127.0.0.1:10103/
//
// Anonymous uploads are switched on because this demo listens on loopback only; a real app plugs its
// own session check into `authorize` instead (see examples/express).
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { createFileServer } from 'wharf-files';

const port = Number(process.env.PORT ?? 10103);
const files = createFileServer({
  dataDir: process.env.WHARF_DATA_DIR ?? fileURLToPath(new URL('./.data', import.meta.url)),
  publicDirs: [{ url: '/page/', path: fileURLToPath(new URL('./public', import.meta.url)) }],
  anonymousUploads: true,
  // WHARF_LIMIT_FILE_SIZE=1048576 shows how the page reports a file over the limit.
  limits: process.env.WHARF_LIMIT_FILE_SIZE ? { fileSize: Number(process.env.WHARF_LIMIT_FILE_SIZE) } : {},
});

async function readJson(req, max = 4096) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > max) throw new Error('body too large');
  }
  return JSON.parse(body);
}

const server = http.createServer(async (req, res) => {
  if (req.url === '/') {
    res.writeHead(302, { Location: '/page/index.html' }).end();
    return;
  }
  if (req.url === '/app/unload' && req.method === 'POST') {
    try {
      const { path } = await readJson(req);
      await files.site.unload(String(path));
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
    } catch (err) {
      const status = err?.status ?? 400;
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: err?.code ?? 'BAD_REQUEST', message: String(err?.message ?? err) }));
    }
    return;
  }
  files.handle(req, res);
});

server.listen(port, '127.0.0.1', () => console.log(`open http://127.0.0.1:${server.address().port}/`));
const stop = () => server.close(() => files.close().then(() => process.exit(0)));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
