// Uploads, `{base}_f/` (docs/protocol.md §1): POST streams `files` parts socket → parser → staging and
// publishes the whole request at once; DELETE removes an upload; `site.*` does the same in-process
// with local copies. Every byte of an upload goes through the `Storage` seam (storage.ts).
import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, join } from 'node:path';
import { WharfError, fromFsError } from '../common/errors.js';
import { sendError, sendJson } from '../http/answer.js';
import { closeAfterAnswer } from '../http/close-after-answer.js';
import { checkFilename, isUploadId, parseUploadUrl, uploadUrl } from './filenames.js';
import type { Limits } from '../common/limits.js';
import { contentTypeFor } from '../common/mime.js';
import { collectPart, parseMultipart, sinkPart, type Part } from '../multipart/parser.js';
import type { Site, TransferOptions } from '../common/site-api.js';
import type { FileSource, StaticEngine } from '../static/engine.js';
import { createLocalStorage, storageError, type Staging, type Storage } from './local-storage.js';
import { recordFor, type UploadRecord, type UploadVia } from './upload-record.js';

export interface UploadedFile {
  /** URL path, `{base}_f/<id>/<name>`, the name as stored (only `%`, `#`, `?` escaped), as the uploader was answered. */
  path: string;
  /** Relative name as stored (`a/b.txt` for directory uploads). */
  filename: string;
  size: number;
  contentType: string;
}

/**
 * One committed upload id and its files. A plain request with three files commits three ids, so
 * `onUpload` runs three times (one file each); a directory upload is one id with all its files.
 */
export interface UploadEvent {
  id: string;
  files: UploadedFile[];
}

export interface UploadsConfig {
  dataDir: string;
  /** Normalised base URL, always starting and ending with `/`. */
  base: string;
  limits: Limits;
  statics: StaticEngine;
  /**
   * Called once per upload id after its request is committed (HTTP or `site.upload`), without
   * being awaited: the uploader's answer is already decided and never changes. A hook that throws
   * or rejects is reported through `warn`.
   */
  onUpload?: (event: UploadEvent) => void | Promise<void>;
  /** Where failures nobody else sees go (a failing `onUpload`, a temp dir that would not go away). Default `console.warn`. */
  warn?: (message: string) => void;
  /** Where uploaded bytes live. Default: the local layout of docs/protocol.md §1 under `dataDir`. */
  storage?: Storage;
}

export interface Uploads {
  /** The read side of upload storage, served by the static engine for `GET/HEAD {base}_f/<rest>`. */
  source: FileSource;
  /**
   * `POST {base}_f/`. Parts named `files` with a filename are stored; every other part (fields, file
   * inputs with another name) is read and dropped within the limits, as Wave does. Answers 200
   * `{"files": [...]}`, or `{"error","message"}` with 400 (names, malformed body, no file), 408
   * (`limits.uploadIdleTimeout`), 413 (a limit), 415 (not multipart), 5xx (storage, shutdown); an
   * answer given before the body was read to its end closes the connection in stages (lib/http/close-after-answer.ts).
   * `via` is what let the request in; it decides the upload's record (trust.ts), hence how it is served.
   */
  receive(req: IncomingMessage, res: ServerResponse, via: UploadVia): Promise<void>;
  /**
   * `DELETE {base}_f/<id>[/…]`, `rel` the path after `{base}_f/` as routing decoded and checked it
   * (urlpath.ts `treePath`): 200 `{"removed": "{base}_f/<id>"}`, or 404 when `<id>` is no upload id or absent.
   */
  remove(req: IncomingMessage, res: ServerResponse, rel: string): Promise<void>;
  site: Pick<Site, 'upload' | 'uploadDir' | 'download' | 'unload'>;
  /** Creates the storage layout and sweeps a crashed run's temp leftovers. */
  start(): Promise<void>;
  /** Aborts in-flight uploads (their temp bytes removed) and resolves when they are gone. */
  close(): Promise<void>;
}

interface Stored {
  id: string;
  rel: string;
  size: number;
  contentType: string;
}

// Files of one request being finished (written, closed) while the next ones arrive.
const FILES_IN_FLIGHT = 16;
// Files up to this size are gathered whole by the parser (at most FILES_IN_FLIGHT of them held at once).
const SMALL_FILE = 64 * 1024;
const noop = (): void => {};
const shuttingDown = (): WharfError => new WharfError('SHUTTING_DOWN', 'the server is shutting down', 503);
// `files.site` is the app itself, in process.
const SITE_RECORD = recordFor('site');

export function createUploads(config: UploadsConfig): Uploads {
  const { base, limits } = config;
  const warn = config.warn ?? ((message: string) => console.warn(message));
  const storage = config.storage ?? createLocalStorage(config.dataDir, { warn });
  // What close() must stop: request bodies being read, and every staging (HTTP or site) not yet settled.
  const bodies = new Set<BodyWatch>();
  const stagings = new Set<Staging>();
  const running = new Set<Promise<unknown>>();
  let closed = false;

  const settle = <T>(work: Promise<T>): Promise<T> => {
    running.add(work);
    const forget = (): void => void running.delete(work);
    work.then(forget, forget);
    return work;
  };

  /**
   * Stages and commits with `record`; any failure removes every staged byte and rethrows. `failed`
   * hears of a failure before the abort, which fails every file still being written.
   */
  async function withStaging<T>(record: UploadRecord, fill: (staging: Staging) => Promise<T>, failed?: (err: unknown) => void): Promise<T> {
    if (closed) throw shuttingDown();
    const staging = storage.stage();
    stagings.add(staging);
    try {
      const result = await fill(staging);
      if (closed) throw shuttingDown();
      await staging.commit(record);
      return result;
    } catch (err) {
      failed?.(err);
      await staging.abort().catch((e: unknown) => warn(`wharf: could not remove an aborted upload's temp files: ${String(e)}`));
      throw err;
    } finally {
      stagings.delete(staging);
    }
  }

  function announce(stored: Stored[]): void {
    const hook = config.onUpload;
    if (!hook) return;
    const byId = new Map<string, UploadedFile[]>();
    for (const f of stored) {
      const files = byId.get(f.id) ?? [];
      files.push({ path: uploadUrl(base, f.id, f.rel), filename: f.rel, size: f.size, contentType: f.contentType });
      byId.set(f.id, files);
    }
    for (const [id, files] of byId) {
      Promise.resolve()
        .then(() => hook({ id, files }))
        .catch((err: unknown) => warn(`wharf: onUpload hook failed for upload ${id}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`));
    }
  }

  async function receive(req: IncomingMessage, res: ServerResponse, via: UploadVia): Promise<void> {
    const body = watchBody(req, limits.requestSize, limits.uploadIdleTimeout);
    bodies.add(body);
    const stored: Stored[] = [];
    const directory = /^\s*true\s*$/i.test(String(req.headers['wave-directory-upload'] ?? ''));
    try {
      if (closed) throw shuttingDown();
      const contentType = req.headers['content-type'];
      if (!/^multipart\/form-data\s*(;|$)/i.test(contentType ?? '')) {
        throw new WharfError('UNSUPPORTED_MEDIA_TYPE', 'an upload must be multipart/form-data', 415);
      }
      if (Number(req.headers['content-length']) > limits.requestSize) throw requestTooLarge(limits.requestSize);
      const dirId = directory ? randomUUID() : undefined;
      const paths = directory ? createPathSet() : undefined;
      await withStaging(recordFor(via), async (staging) => {
        // Files whose bytes were all handed over but are still being written and closed: parsing
        // moves on meanwhile, so one file's open/writev/close overlaps the next one's arrival
        // instead of adding up (1,000 small files would otherwise wait on 4,000 round trips in turn).
        const writing: Array<Promise<void>> = [];
        let index = 0;
        try {
          for await (const part of parseMultipart(req, { contentType, limits, signal: body.signal })) {
            index++;
            // Wave stores only `files` parts; anything else (fields, other file inputs) is dropped
            // (within the limits) when the next part is asked for.
            if (part.name !== 'files' || part.filename === undefined) continue;
            const rel = checkFilename(part.filename, directory, `part ${index}`);
            paths?.add(rel, `part ${index}`);
            const entry: Stored = { id: dirId ?? randomUUID(), rel, size: 0, contentType: part.contentType };
            stored.push(entry);
            // A small file (most of a directory upload) is gathered whole and written in one go:
            // a stream and a pipe per file would cost more than its syscalls.
            const whole = await collectPart(part, SMALL_FILE);
            const written = whole !== null ? staging.put(entry.id, rel, whole).then((size) => void (entry.size = size)) : sinkFile(staging, part, entry);
            // A file failing later (the disk filling up at its close) stops the upload at once.
            written.catch((err: unknown) => body.fail(body.error ?? classify(err, warn)));
            writing.push(written);
            if (writing.length >= FILES_IN_FLIGHT) await writing.shift();
          }
        } catch (err) {
          // The first failure (a limit, a bad name, a malformed body) is what the client is told:
          // it is recorded before the staging is aborted, since aborting fails the files still
          // being written, and their SHUTTING_DOWN must not take its place. Failing the body stops
          // the parser, which destroys whatever a part was being written to.
          const e = body.error ?? classify(err, warn);
          body.fail(e);
          throw e;
        }
        await Promise.all(writing);
        if (stored.length === 0) {
          throw new WharfError('NO_FILES', directory ? 'the directory upload has no files' : 'no part named "files" with a filename', 400);
        }
      }, (err) => {
        // The cause (a limit the parser met, say) is the answer, not the SHUTTING_DOWN of the files
        // the abort is about to fail, whose `written.catch` would otherwise claim the body first.
        body.fail(body.error ?? classify(err, warn));
      });
    } catch (err) {
      // A body not read to its end cannot be followed by another request on this connection: answer
      // and close (Node ends the socket once the answer is flushed) rather than drain gigabytes.
      const unread = !body.complete;
      const e = body.error ?? classify(err, warn);
      body.fail(e);
      bodies.delete(body);
      if (unread) closeAfterAnswer(req, res);
      sendError(res, e);
      return;
    }
    bodies.delete(body);
    const files = directory ? [uploadUrl(base, stored[0]!.id)] : stored.map((f) => uploadUrl(base, f.id, f.rel));
    announce(stored);
    sendJson(res, 200, { files });
  }

  async function remove(_req: IncomingMessage, res: ServerResponse, rel: string): Promise<void> {
    const id = rel.split('/', 1)[0]!;
    try {
      if (!isUploadId(id) || !(await storage.remove(id))) throw new WharfError('NOT_FOUND', 'no such upload', 404);
      sendJson(res, 200, { removed: uploadUrl(base, id) });
    } catch (err) {
      sendError(res, classify(err, warn));
    }
  }

  async function copyIn(staging: Staging, files: LocalFile[], id: () => string, options: TransferOptions): Promise<Stored[]> {
    const total = files.reduce((sum, f) => sum + f.size, 0);
    if (files.length > limits.files) throw new WharfError('LIMIT_FILES', `more than ${limits.files} files in one upload`, 413);
    if (total > limits.requestSize) throw requestTooLarge(limits.requestSize);
    const stored: Stored[] = [];
    let loaded = 0;
    for (const f of files) {
      throwIfAborted(options.signal);
      if (f.size > limits.fileSize) throw fileTooLarge(f.rel, limits.fileSize);
      const uploadId = id();
      const size = await staging.copy(uploadId, f.rel, f.from);
      // The file may have grown since it was listed.
      if (size > limits.fileSize) throw fileTooLarge(f.rel, limits.fileSize);
      stored.push({ id: uploadId, rel: f.rel, size, contentType: contentTypeFor(f.rel) });
      loaded += size;
      options.onProgress?.({ loaded, total });
    }
    throwIfAborted(options.signal);
    return stored;
  }

  const site: Uploads['site'] = {
    upload: (paths, options = {}) =>
      settle(
        (async () => {
          if (paths.length === 0) throw new WharfError('NO_FILES', 'no files to upload', 400);
          const files = await Promise.all(paths.map((p, i) => localFile(p, checkFilename(basename(p), false, `file ${i + 1}`))));
          const stored = await withStaging(SITE_RECORD, (staging) => copyIn(staging, files, randomUUID, options)).catch(rethrow(warn));
          announce(stored);
          return stored.map((f) => uploadUrl(base, f.id, f.rel));
        })(),
      ),
    uploadDir: (dir, options = {}) =>
      settle(
        (async () => {
          const rels = await walk(dir).catch((err: unknown) => {
            throw fromFsError(err, 'directory');
          });
          if (rels.length === 0) throw new WharfError('NO_FILES', 'the directory has no files', 400);
          const files = await Promise.all(rels.map((rel) => localFile(join(dir, rel), checkFilename(rel, true, `file ${JSON.stringify(rel)}`))));
          const id = randomUUID();
          const stored = await withStaging(SITE_RECORD, (staging) => copyIn(staging, files, () => id, options)).catch(rethrow(warn));
          announce(stored);
          return [uploadUrl(base, id)];
        })(),
      ),
    download: (url, fileOrDir, options = {}) =>
      settle(
        (async () => {
          if (closed) throw shuttingDown();
          const target = parseUploadUrl(base, url);
          if (!target || target.rel === '') throw new WharfError('NOT_FOUND', `not an uploaded file of this server: ${url}`, 404);
          throwIfAborted(options.signal);
          const isDir = await stat(fileOrDir).then((s) => s.isDirectory(), () => false);
          const to = isDir ? join(fileOrDir, target.rel.slice(target.rel.lastIndexOf('/') + 1)) : fileOrDir;
          const size = await storage.copyOut(target.id, target.rel, to).catch((err: unknown) => {
            throw fromFsError(err, 'download target');
          });
          options.onProgress?.({ loaded: size, total: size });
          return to;
        })(),
      ),
    unload: (url, options = {}) =>
      settle(
        (async () => {
          throwIfAborted(options.signal);
          const target = parseUploadUrl(base, url);
          if (!target || !(await storage.remove(target.id).catch(rethrow(warn)))) {
            throw new WharfError('NOT_FOUND', `no such upload: ${url}`, 404);
          }
        })(),
      ),
  };

  return {
    source: storage.source,
    receive: (req, res, via) => settle(receive(req, res, via)),
    remove: (req, res, rel) => settle(remove(req, res, rel)),
    site,
    start: () => storage.start(),
    async close() {
      closed = true;
      for (const body of bodies) body.fail(shuttingDown());
      for (const staging of stagings) void staging.abort().catch(() => {});
      await Promise.allSettled([...running]);
    },
  };
}

/** A part's bytes from the parser straight into its staged file, socket read by socket read; resolves once it is closed. */
function sinkFile(staging: Staging, part: Part, entry: Stored): Promise<void> {
  let resume = noop;
  const file = staging.file(entry.id, entry.rel, () => resume());
  resume = sinkPart(part, file);
  return file.done.then((size) => void (entry.size = size));
}

const requestTooLarge = (max: number): WharfError => new WharfError('LIMIT_REQUEST_SIZE', `the upload is larger than ${max} bytes`, 413);
const fileTooLarge = (rel: string, max: number): WharfError =>
  new WharfError('LIMIT_FILE_SIZE', `${JSON.stringify(rel)} is larger than ${max} bytes`, 413);

/** A WharfError as is; an `fs` failure as a storage error; anything else is a bug, reported and answered 500. */
function classify(err: unknown, warn: (message: string) => void): WharfError {
  if (err instanceof WharfError) return err;
  if (typeof (err as NodeJS.ErrnoException | null)?.code === 'string' && 'syscall' in (err as object)) return storageError(err);
  warn(`wharf: upload failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  return new WharfError('INTERNAL', 'internal error', 500, { cause: err });
}
const rethrow = (warn: (message: string) => void) => (err: unknown): never => {
  throw classify(err, warn);
};

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new WharfError('ABORTED', 'the transfer was aborted', 499, { cause: signal.reason });
}

interface LocalFile {
  from: string;
  rel: string;
  size: number;
}

async function localFile(from: string, rel: string): Promise<LocalFile> {
  const info = await stat(from).catch((err: unknown) => {
    throw fromFsError(err, `local file ${JSON.stringify(from)}`);
  });
  if (!info.isFile()) throw new WharfError('NOT_A_FILE', `${JSON.stringify(from)} is not a regular file`, 400);
  return { from, rel, size: info.size };
}

/**
 * The regular files under `dir` as `/`-separated relative paths, sorted. Like Python's `os.walk`
 * (what Wave's `upload_dir` uses), a symlink to a file counts as that file and a symlink to a
 * directory is not followed, so a link cycle cannot loop.
 */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await walk(dir, rel)));
    else if (entry.isFile()) out.push(rel);
    else if (entry.isSymbolicLink() && (await stat(join(dir, rel)).then((s) => s.isFile(), () => false))) out.push(rel);
  }
  return out;
}

/** The paths of one directory upload: a path sent twice, or both as a file and as a directory, is refused. */
function createPathSet(): { add(rel: string, label: string): void } {
  const files = new Set<string>();
  const dirs = new Set<string>();
  return {
    add(rel, label) {
      const clash = (): never => {
        throw new WharfError('DUPLICATE_FILENAME', `${label}: ${JSON.stringify(rel)} clashes with an earlier file of this upload`, 400);
      };
      if (files.has(rel) || dirs.has(rel)) clash();
      for (let slash = rel.indexOf('/'); slash >= 0; slash = rel.indexOf('/', slash + 1)) {
        const dir = rel.slice(0, slash);
        if (files.has(dir)) clash();
        dirs.add(dir);
      }
      files.add(rel);
    },
  };
}

/**
 * What the parser cannot know about the request body it reads: the byte count against
 * `limits.requestSize`, the idle timeout (time spent waiting for the client, never time the disk
 * makes us wait), and the client going away. `fail()` stops the parse through `signal` without
 * destroying the socket, so an answer can still be sent.
 */
interface BodyWatch {
  /** Aborted, with the `WharfError` as reason, when reading stops early. */
  readonly signal: AbortSignal;
  /** Why reading stopped early, if it did. */
  readonly error: WharfError | undefined;
  /** True once the whole body was received, even if reading failed after that. */
  readonly complete: boolean;
  fail(err: WharfError): void;
}

function watchBody(req: IncomingMessage, maxBytes: number, idleMs: number): BodyWatch {
  const controller = new AbortController();
  let received = 0;
  let ended = false;
  let error: WharfError | undefined;
  let lastProgress = Date.now();
  let timer: NodeJS.Timeout | undefined;

  // Listening before the parser does, this sees each chunk first: one over the limit never reaches it.
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > maxBytes) return fail(requestTooLarge(maxBytes));
    lastProgress = Date.now();
  };
  // Reading resumes after the disk made us wait: the client's clock starts again.
  const onResume = (): void => {
    lastProgress = Date.now();
  };
  const onEnd = (): void => {
    ended = true;
    stop();
  };
  const onClose = (): void => {
    if (!ended) fail(new WharfError('CLIENT_ABORTED', 'the client went away before the upload ended', 400));
  };
  const onError = (err: Error): void => fail(new WharfError('CLIENT_ABORTED', 'the client went away before the upload ended', 400, { cause: err }));
  const stop = (): void => {
    if (timer) clearTimeout(timer);
    req.off('data', onData);
    req.off('resume', onResume);
    req.off('end', onEnd);
    req.off('close', onClose);
  };
  function fail(err: WharfError): void {
    if (error || ended) return;
    error = err;
    stop();
    req.pause();
    controller.abort(err);
  }
  // Fires at most once per idle period; while the request is paused (the disk is the slow side, or
  // the parser has not started) the client is not idle.
  const check = (): void => {
    const quiet = Date.now() - lastProgress;
    if (req.isPaused() || quiet < idleMs) {
      timer = setTimeout(check, req.isPaused() ? idleMs : idleMs - quiet).unref();
      return;
    }
    fail(new WharfError('UPLOAD_TIMEOUT', `no upload data received for ${idleMs} ms`, 408));
  };

  // Paused, so that no byte flows before the parser listens (it resumes the request when it does).
  req.pause();
  req.on('data', onData);
  req.on('resume', onResume);
  req.on('end', onEnd);
  req.on('close', onClose);
  req.on('error', onError);
  if (idleMs > 0) timer = setTimeout(check, idleMs).unref();

  return {
    signal: controller.signal,
    get error() {
      return error;
    },
    get complete() {
      return ended;
    },
    fail,
  };
}
