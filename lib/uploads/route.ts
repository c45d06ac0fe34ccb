// Uploads, `{base}_f/` (docs/protocol.md §1): POST streams `files` parts socket → parser → staging and
// publishes the whole request at once; DELETE removes an upload; `site.*` does the same in-process
// with local copies (in-process-site.ts). Every byte of an upload goes through the `Storage` seam (storage.ts).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { sendError, sendJson } from '../http/answer.js';
import { refuse } from '../http/refuse.js';
import { mountPrefix } from '../http/mount.js';
import { collectPart, heldHead, parseMultipart, sinkPart, type Part } from '../multipart/parser.js';
import type { FileSource, StaticEngine } from '../static/engine.js';
import { watchBody, type BodyWatch } from '../http/body-watch.js';
import { checkFilename, isUploadId, uploadUrl } from './filenames.js';
import { createInProcessSite, type InProcessSite } from './in-process-site.js';
import type { Staging } from './storage.js';
import { storeFull, type QuotaHold } from './quota.js';
import { classify, createUploadCore, requestTooLarge, shuttingDown, type LifeTerms, type Stored, type UploadCore, type UploadCoreConfig } from './upload-core.js';
import { lifeFromHeaders } from './upload-meta.js';
import { recordFor, type UploadVia } from './upload-record.js';
import { SNIFF_BYTES } from './sniff.js';
import { createFileCheck, type FileCheck, type UploadFilter } from './upload-filter.js';

// Where these were declared before they had a module of their own.
export type { UploadedFile, UploadEvent } from './upload-core.js';

export interface UploadsConfig extends UploadCoreConfig {
  statics: StaticEngine;
  /** `FileServerOptions.accept`: checked against each file's name, declared type and first bytes. */
  accept?: readonly string[];
  /** `FileServerOptions.filter`. */
  filter?: UploadFilter;
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
   * `via` is what let the request in; it decides the upload's record (trust.ts), hence how it is served;
   * `owner` is the identity `authorize` gave, recorded with it. A file that `accept` or `filter`
   * refuses refuses the request (415/422), and nothing of it is stored.
   */
  receive(req: IncomingMessage, res: ServerResponse, via: UploadVia, owner?: string): Promise<void>;
  /** The owner upload `id` was recorded with (see `receive`); undefined when none. */
  owner(id: string): Promise<string | undefined>;
  /**
   * `DELETE {base}_f/<id>[/…]`, `rel` the path after `{base}_f/` as routing decoded and checked it
   * (urlpath.ts `treePath`): 200 `{"removed": "{base}_f/<id>"}`, or 404 when `<id>` is no upload id or absent.
   */
  remove(req: IncomingMessage, res: ServerResponse, rel: string): Promise<void>;
  site: InProcessSite;
  /**
   * What `receive` would refuse from the headers alone, before `100 Continue`: a `Content-Length`
   * over the quota's room (507 STORE_FULL), a malformed `Wharf-Expires-In`/`Wharf-Once` (400).
   */
  refuseEarly(req: IncomingMessage): WharfError | undefined;
  /** Creates the storage layout and sweeps a crashed run's temp leftovers. */
  start(): Promise<void>;
  /** Aborts in-flight uploads (their temp bytes removed), removes this node's staging area, and resolves when they are gone. */
  close(): Promise<void>;
}

// Files of one request being finished (written, closed) while the next ones arrive.
const FILES_IN_FLIGHT = 16;
// Files up to this size are gathered whole by the parser (at most FILES_IN_FLIGHT of them held at once).
const SMALL_FILE = 64 * 1024;
const noop = (): void => {};

export function createUploads(config: UploadsConfig): Uploads {
  const core = createUploadCore(config);
  const check = createFileCheck(config.accept, config.filter, core.warn);
  // Request bodies being read: close() stops them.
  const bodies = new Set<BodyWatch>();
  return {
    source: core.storage.source,
    receive: (req, res, via, owner) => core.settle(receive({ core, check, bodies }, req, res, via, owner)),
    owner: (id) => core.storage.owner(id),
    remove: (req, res, rel) => core.settle(remove(core, res, rel, mountPrefix(req))),
    site: createInProcessSite(core),
    refuseEarly: (req) => refuseEarly(core, req),
    start: () => core.storage.start(),
    // The node's staging area goes once nothing is staged in it any more.
    close: () =>
      core.close(() => {
        for (const body of bodies) body.fail(shuttingDown());
      }).then(() => core.storage.close()),
  };
}

/** What every request of the upload route shares. */
interface Receiver {
  core: UploadCore;
  check: FileCheck | undefined;
  /** Request bodies being read: close() stops them. */
  bodies: Set<BodyWatch>;
}

function refuseEarly(core: UploadCore, req: IncomingMessage): WharfError | undefined {
  try {
    lifeFromHeaders(req.headers);
  } catch (err) {
    return err as WharfError;
  }
  const quota = core.storage.quota;
  const length = Number(req.headers['content-length']);
  return quota !== undefined && Number.isSafeInteger(length) && !quota.fits(length) ? storeFull(quota.limit) : undefined;
}

async function receive({ core, check, bodies }: Receiver, req: IncomingMessage, res: ServerResponse, via: UploadVia, owner: string | undefined): Promise<void> {
  const { base, limits, warn } = core;
  const body = watchBody(req, limits.requestSize, limits.uploadIdleTimeout);
  bodies.add(body);
  const stored: Stored[] = [];
  const directory = /^\s*true\s*$/i.test(String(req.headers['wave-directory-upload'] ?? ''));
  const terms: LifeTerms = { asked: {}, granted: undefined };
  let hold: QuotaHold | undefined;
  try {
    if (core.closed) throw shuttingDown();
    const contentType = req.headers['content-type'];
    if (!/^multipart\/form-data\s*(;|$)/i.test(contentType ?? '')) {
      throw new WharfError('UNSUPPORTED_MEDIA_TYPE', 'an upload must be multipart/form-data', 415);
    }
    if (Number(req.headers['content-length']) > limits.requestSize) throw requestTooLarge(limits.requestSize);
    terms.asked = lifeFromHeaders(req.headers);
    // 507 STORE_FULL now when Content-Length says it will not fit, else the moment it does not.
    hold = core.storage.quota?.holdRequest(req, (e) => body.fail(e));
    await core.withStaging(recordFor(via, owner), (staging) => stageParts(core, check, req, contentType, body, directory, staging, stored), (err) => {
      // The cause (a limit the parser met, say) is the answer, not the SHUTTING_DOWN of the files
      // the abort is about to fail, whose `written.catch` would otherwise claim the body first.
      body.fail(body.error ?? classify(err, warn));
    }, terms);
  } catch (err) {
    // A body not read to its end cannot be followed by another request on this connection: `refuse`
    // answers and closes (in stages) rather than drain gigabytes.
    const e = body.error ?? classify(err, warn);
    body.fail(e);
    bodies.delete(body);
    hold?.release();
    refuse(req, res, e);
    return;
  }
  bodies.delete(body);
  hold?.release();
  // Mounted under a path (`app.use('/files', …)`), the URLs handed out are under it too.
  const mount = mountPrefix(req);
  const files = directory ? [mount + uploadUrl(base, stored[0]!.id)] : stored.map((f) => mount + uploadUrl(base, f.id, f.rel));
  core.announce(stored, { life: terms.granted, owner, mount });
  sendJson(res, 200, { files });
}

/** Parses the body and stages its `files` parts, each entry pushed to `stored` as its part begins. */
async function stageParts(
  core: UploadCore,
  check: FileCheck | undefined,
  req: IncomingMessage,
  contentType: string | undefined,
  body: BodyWatch,
  directory: boolean,
  staging: Staging,
  stored: Stored[],
): Promise<void> {
  const { limits, warn } = core;
  const dirId = directory ? randomUUID() : undefined;
  const paths = directory ? createPathSet() : undefined;
  // Files whose bytes were all handed over but are still being written and closed: parsing
  // moves on meanwhile, so one file's open/writev/close overlaps the next one's arrival
  // instead of adding up (1,000 small files would otherwise wait on 4,000 round trips in turn).
  const writing: Array<Promise<void>> = [];
  let index = 0;
  try {
    for await (const part of parseMultipart(req, { contentType, limits, stopper: body })) {
      index++;
      // Wave stores only `files` parts; anything else (fields, other file inputs) is dropped
      // (within the limits) when the next part is asked for.
      if (part.name !== 'files' || part.filename === undefined) continue;
      const rel = checkFilename(part.filename, directory, `part ${index}`);
      paths?.add(rel, `part ${index}`);
      // Checked before a byte of it is staged; the parser reads nothing more meanwhile (the part is
      // undecided, then held), so a slow async filter holds the client back rather than memory.
      const info = check === undefined ? undefined : { field: part.name, filename: rel, type: part.contentType, index };
      const sniff = info !== undefined && (await check!.headers(info, req));
      // A small file (most of a directory upload) is gathered whole and written in one go:
      // a stream and a pipe per file would cost more than its syscalls.
      const whole = await collectPart(part, SMALL_FILE);
      if (sniff) await check!.bytes(info!, whole === null ? heldHead(part, SNIFF_BYTES) : Buffer.concat(whole).subarray(0, SNIFF_BYTES), req);
      const entry: Stored = { id: dirId ?? randomUUID(), rel, size: 0, contentType: part.contentType };
      stored.push(entry);
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
}

async function remove(core: UploadCore, res: ServerResponse, rel: string, mount: string): Promise<void> {
  const id = rel.split('/', 1)[0]!;
  try {
    if (!isUploadId(id) || !(await core.storage.remove(id))) throw new WharfError('NOT_FOUND', 'no such upload', 404);
    sendJson(res, 200, { removed: mount + uploadUrl(core.base, id) });
  } catch (err) {
    sendError(res, classify(err, core.warn));
  }
}

/** A part's bytes from the parser straight into its staged file, socket read by socket read; resolves once it is closed. */
function sinkFile(staging: Staging, part: Part, entry: Stored): Promise<void> {
  let resume = noop;
  const file = staging.file(entry.id, entry.rel, () => resume());
  resume = sinkPart(part, file);
  return file.done.then((size) => void (entry.size = size));
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
