// An Express app that mounts wharf next to its own routes and lets its own session decide who may
// upload and read files.
//
//   npm run build && node examples/express/app.mjs      then open http://127.0.0.1:10104/
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { createFileServer } from 'wharf-files';

const sessions = new Set();
function sessionOf(req) {
  const match = /(?:^|;\s*)sid=([0-9a-f-]{36})/.exec(req.headers.cookie ?? '');
  return match && sessions.has(match[1]) ? match[1] : undefined;
}

const files = createFileServer({
  dataDir: process.env.WHARF_DATA_DIR ?? fileURLToPath(new URL('./.data', import.meta.url)),
  // With `authorize`, uploads and reads need a session (or an access key, for apps).
  authorize: (req) => sessionOf(req) !== undefined,
});

const app = express();
app.get('/', (req, res) => {
  res.type('html').send(sessionOf(req)
    ? `<p>Signed in. <form method="post" action="/logout"><button>Sign out</button></form></p>
       <form method="post" action="/_f/" enctype="multipart/form-data"><input type="file" name="files" multiple><button>Upload</button></form>`
    : '<form method="post" action="/login"><button>Sign in</button></form>');
});
app.post('/login', (req, res) => {
  const sid = randomUUID();
  sessions.add(sid);
  res.cookie('sid', sid, { httpOnly: true, sameSite: 'strict' }).redirect(303, '/');
});
app.post('/logout', (req, res) => {
  const sid = sessionOf(req);
  if (sid) sessions.delete(sid);
  res.clearCookie('sid').redirect(303, '/');
});
app.get('/whoami', (req, res) => res.json({ signedIn: sessionOf(req) !== undefined }));
app.use(files.handle); // wharf answers its own URLs and calls next() for everything else
app.use((req, res) => res.status(404).json({ error: 'NOT_FOUND', message: 'no such page' }));

const port = Number(process.env.PORT ?? 10104);
const server = app.listen(port, '127.0.0.1', () => console.log(`open http://127.0.0.1:${server.address().port}/`));
// A browser keeps idle and preconnected sockets open, and `server.close()` waits for them (Node
// counts a socket that never sent a request as active until its headers timeout): once wharf has
// finished its uploads, drop them, or Ctrl+C with a browser open takes minutes.
const stop = () => {
  server.close(() => process.exit(0));
  files.close().then(() => server.closeAllConnections());
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
