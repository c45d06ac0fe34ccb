// `site.upload/uploadDir/download/unload`: what the HTTP routes do, in process, with local copies
// (copy-on-write where the filesystem can) instead of request bodies.
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { throwIfAborted } from '../common/abort.js';
import { WharfError, fromFsError } from '../common/errors.js';
import { localFileSize, walkFiles } from '../common/local-files.js';
import { contentTypeFor } from '../common/mime.js';
import type { Site, TransferOptions } from '../common/site-api.js';
import { checkFilename, parseUploadUrl, uploadUrl } from './filenames.js';
import type { Staging } from './storage.js';
import { classify, requestTooLarge, shuttingDown, type Stored, type UploadCore } from './upload-core.js';
import { recordFor } from './upload-record.js';

export type InProcessSite = Pick<Site, 'upload' | 'uploadDir' | 'download' | 'unload'>;

// `files.site` is the app itself, in process.
const SITE_RECORD = recordFor('site');

export function createInProcessSite(core: UploadCore): InProcessSite {
  const { base, storage } = core;
  const rethrow = (err: unknown): never => {
    throw classify(err, core.warn);
  };
  return {
    upload: (paths, options = {}) =>
      core.settle(
        (async () => {
          if (paths.length === 0) throw new WharfError('NO_FILES', 'no files to upload', 400);
          const files = await Promise.all(paths.map((p, i) => localFile(p, checkFilename(basename(p), false, `file ${i + 1}`))));
          const stored = await core.withStaging(SITE_RECORD, (staging) => copyIn(core, staging, files, randomUUID, options)).catch(rethrow);
          core.announce(stored);
          return stored.map((f) => uploadUrl(base, f.id, f.rel));
        })(),
      ),
    uploadDir: (dir, options = {}) =>
      core.settle(
        (async () => {
          const rels = await walkFiles(dir).catch((err: unknown) => {
            throw fromFsError(err, 'directory');
          });
          if (rels.length === 0) throw new WharfError('NO_FILES', 'the directory has no files', 400);
          const files = await Promise.all(rels.map((rel) => localFile(join(dir, rel), checkFilename(rel, true, `file ${JSON.stringify(rel)}`))));
          const id = randomUUID();
          const stored = await core.withStaging(SITE_RECORD, (staging) => copyIn(core, staging, files, () => id, options)).catch(rethrow);
          core.announce(stored);
          return [uploadUrl(base, id)];
        })(),
      ),
    download: (url, fileOrDir, options = {}) =>
      core.settle(
        (async () => {
          if (core.closed) throw shuttingDown();
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
      core.settle(
        (async () => {
          throwIfAborted(options.signal);
          const target = parseUploadUrl(base, url);
          if (!target || !(await storage.remove(target.id).catch(rethrow))) {
            throw new WharfError('NOT_FOUND', `no such upload: ${url}`, 404);
          }
        })(),
      ),
  };
}

/** Stages a copy of each of `files`, within the limits, under the upload id `id()` gives. */
async function copyIn(core: UploadCore, staging: Staging, files: LocalFile[], id: () => string, options: TransferOptions): Promise<Stored[]> {
  const { limits } = core;
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

const fileTooLarge = (rel: string, max: number): WharfError =>
  new WharfError('LIMIT_FILE_SIZE', `${JSON.stringify(rel)} is larger than ${max} bytes`, 413);

interface LocalFile {
  from: string;
  rel: string;
  size: number;
}

const localFile = async (from: string, rel: string): Promise<LocalFile> => ({ from, rel, size: await localFileSize(from) });
