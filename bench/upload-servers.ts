// The Node servers of bench/uploads, each run in a child process of its own (`uploads.js --serve
// KIND DIR SCENARIO [WHARF]`): wharf (or another build of it), node:http + busboy +
// fs.createWriteStream, formidable, multer (Express), `discard` (node:http reading the body and
// dropping it: Node's own floor, in speed and in memory) and `floor` (no parsing, only the
// syscalls wharf's atomic layout costs). Each prints `PORT n` once it listens.
import { randomUUID } from 'node:crypto';
import { closeSync, createWriteStream, mkdirSync, openSync, renameSync, writevSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** `big`: one big file; `small`: many small files in one request; `concurrent`: 1 MiB uploads at once. */
export type ScenarioKey = 'big' | 'small' | 'concurrent';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const KiB = 1024;

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function listen(srv: Server): Promise<number> {
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return (srv.address() as { port: number }).port;
}

/** Starts server `kind` storing into `dataDir` and prints its port; `wharfAt`: another build's lib/index.js. */
export async function serve(kind: string, dataDir: string, scenario: ScenarioKey, wharfAt?: string): Promise<void> {
  let port: number;
  if (kind === 'wharf' || wharfAt !== undefined) {
    const { createFileServer } = (await import(wharfAt === undefined ? '../lib/index.js' : pathToFileURL(wharfAt).href)) as typeof import('../lib/index.js');
    const files = createFileServer({ dataDir, anonymousUploads: true, warn: () => {} });
    port = (await files.listen({ port: 0, host: '127.0.0.1' })).port;
  } else if (kind === 'multer') {
    port = await multerServer(dataDir);
  } else {
    const handler = kind === 'busboy' ? await busboyHandler(dataDir)
      : kind === 'formidable' ? await formidableHandler(dataDir)
      : kind === 'floor' ? floorHandler(dataDir, scenario)
      : discardHandler;
    port = await listen(createServer(handler));
  }
  process.stdout.write(`PORT ${port}\n`);
}

const discardHandler: Handler = (req, res) => {
  req.resume();
  req.on('end', () => json(res, 200, { files: [] }));
};

async function busboyHandler(dataDir: string): Promise<Handler> {
  const { default: busboy } = await import('busboy');
  return (req, res) => {
    const bb = busboy({ headers: req.headers, limits: { files: 100_000 } });
    const names: string[] = [];
    let writing = 0;
    let parsed = false;
    const done = (): void => {
      if (parsed && writing === 0) json(res, 200, { files: names });
    };
    bb.on('file', (_name, stream, info) => {
      const id = randomUUID();
      names.push(`${id}/${info.filename}`);
      writing++;
      const out = createWriteStream(join(dataDir, id));
      stream.pipe(out);
      out.on('close', () => {
        writing--;
        done();
      });
    });
    bb.on('close', () => {
      parsed = true;
      done();
    });
    bb.on('error', (err: Error) => json(res, 400, { error: err.message }));
    req.pipe(bb);
  };
}

async function formidableHandler(dataDir: string): Promise<Handler> {
  const { default: formidable } = await import('formidable');
  return (req, res) => {
    const form = formidable({ uploadDir: dataDir, maxFileSize: 2 ** 40, maxTotalFileSize: 2 ** 40, maxFiles: 100_000, allowEmptyFiles: true, minFileSize: 0 });
    form.parse(req).then(
      ([, files]) => json(res, 200, { files: (files['files'] ?? []).map((f) => f.newFilename) }),
      (err: Error) => json(res, 400, { error: err.message }),
    );
  };
}

async function multerServer(dataDir: string): Promise<number> {
  const { default: express } = await import('express');
  const { default: multer } = await import('multer');
  const upload = multer({
    storage: multer.diskStorage({ destination: dataDir, filename: (_req, _file, cb) => cb(null, randomUUID()) }),
    limits: { files: 100_000 },
  });
  const app = express();
  app.post('/_f/', upload.array('files', 100_000), (req, res) => {
    res.json({ files: ((req as unknown as { files: Array<{ filename: string }> }).files ?? []).map((f) => f.filename) });
  });
  const srv = app.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return (srv.address() as { port: number }).port;
}

/**
 * The least any server can do to store a scenario in wharf's layout (docs/protocol.md §1, atomic),
 * on the event loop with no stream or promise. Small files: the body is read unparsed, its parts
 * only counted by their delimiters, then each costs mkdir of a temp directory, open, one 10 KiB
 * writev, close, rename to f/<id>. Streamed files (the other scenarios): the raw body, never
 * parsed, goes to a staged file as it arrives, one writev per socket read, then close and rename.
 * No check, no cleanup: what is left is the file system's price for two inodes and a rename.
 */
function floorHandler(dataDir: string, scenario: ScenarioKey): Handler {
  const temp = join(dataDir, '.wharf-tmp');
  const files = join(dataDir, 'f');
  mkdirSync(temp, { recursive: true });
  mkdirSync(files, { recursive: true });
  const data = Buffer.alloc(10 * KiB, 1);
  let seq = 0;
  const stage = (name: string, write: (fd: number) => void): string => {
    const dir = join(temp, String(++seq));
    mkdirSync(dir);
    const fd = openSync(join(dir, name), 'wx');
    write(fd);
    closeSync(fd);
    const id = randomUUID();
    renameSync(dir, join(files, id));
    return `${id}/${name}`;
  };
  if (scenario !== 'small') {
    return (req, res) => {
      const dir = join(temp, String(++seq));
      mkdirSync(dir);
      const fd = openSync(join(dir, 'body.bin'), 'wx');
      req.on('data', (chunk: Buffer) => writevSync(fd, [chunk]));
      req.on('end', () => {
        closeSync(fd);
        const id = randomUUID();
        renameSync(dir, join(files, id));
        json(res, 200, { files: [`${id}/body.bin`] });
      });
    };
  }
  return (req, res) => {
    const delimiter = Buffer.from(`\r\n--${/boundary=(\S+)/.exec(req.headers['content-type'] ?? '')?.[1] ?? ''}`);
    let carry = Buffer.from('\r\n');
    let parts = -1; // the closing delimiter is no part
    req.on('data', (chunk: Buffer) => {
      const text = Buffer.concat([carry, chunk]);
      for (let at = text.indexOf(delimiter); at >= 0; at = text.indexOf(delimiter, at + delimiter.length)) parts++;
      carry = text.subarray(Math.max(0, text.length - delimiter.length + 1));
    });
    req.on('end', () => {
      const names: string[] = [];
      for (let i = 0; i < parts; i++) names.push(stage(`f${i}.bin`, (fd) => writevSync(fd, [data])));
      json(res, 200, { files: names });
    });
  };
}
