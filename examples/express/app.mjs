// An Express app that mounts wharf next to its own routes and lets its own session decide who may
// upload and read files.
//
//   node examples/express/app.mjs      then open http://127.0.0.1:10104/
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
// The upload form posts to wharf with fetch, so the page stays in the app and lists what was
// uploaded as links (without script, the form still posts and the browser shows wharf's answer).
const UPLOAD_SCRIPT = `
const form = document.getElementById('upload');
const list = document.getElementById('uploaded');
const state = document.getElementById('state');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  state.textContent = 'uploading…';
  const res = await fetch(form.action, { method: 'POST', body: new FormData(form) }).catch(() => undefined);
  const answer = res ? await res.json().catch(() => ({})) : { message: 'the server cannot be reached' };
  if (!res || !res.ok) { state.textContent = 'upload failed: ' + (answer.message || 'HTTP ' + res.status); return; }
  for (const path of answer.files) {
    const link = document.createElement('a');
    link.href = path;
    link.textContent = decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
    const item = document.createElement('li');
    item.append(link);
    list.append(item);
  }
  state.textContent = answer.files.length + ' uploaded';
  form.reset();
});`;

app.get('/', (req, res) => {
  res.type('html').send(sessionOf(req)
    ? `<!doctype html><meta charset="utf-8"><title>files</title>
       <p>Signed in. <form method="post" action="/logout"><button>Sign out</button></form></p>
       <form id="upload" method="post" action="/_f/" enctype="multipart/form-data"><input type="file" name="files" multiple required><button>Upload</button></form>
       <p id="state" role="status"></p><ul id="uploaded"></ul>
       <script>${UPLOAD_SCRIPT}</script>`
    : '<!doctype html><meta charset="utf-8"><title>files</title><form method="post" action="/login"><button>Sign in</button></form>');
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
