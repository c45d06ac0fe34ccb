// `site.upload/uploadDir/download/unload`: what the HTTP routes do, in process, with local copies
// (copy-on-write where the filesystem can) instead of request bodies.
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { throwIfAborted } from '../common/abort.js';
import { WharfError, fromFsError } from '../common/errors.js';
import { localFileSize, walkFiles } from '../common/local-files.js';
import { contentTypeFor } from '../common/mime.js';
import type { Site, TransferOptions, UploadOptions } from '../common/site-api.js';
import { checkFilename, parseUploadUrl, uploadUrl } from './filenames.js';
import type { Staging } from './storage.js';
import { classify, requestTooLarge, shuttingDown, type LifeTerms, type Stored, type UploadCore } from './upload-core.js';
import { checkLifeRequest } from './upload-meta.js';
import { recordFor } from './upload-record.js';

/** What `files.site.uploadInfo` tells of an upload. */
export interface UploadInfo {
  /** The upload id. */
  id: string;
  /** When it expires; absent when it does not. */
  expiresAt?: Date;
  /** Removed after its first complete download. */
  once: boolean;
}

export type InProcessSite = Pick<Site, 'upload' | 'uploadDir' | 'download' | 'unload'> & {
  /** The life of the upload `url` points into (any URL `upload` returned); 404 when it is gone. */
  uploadInfo(url: string): Promise<UploadInfo>;
};

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
          checkLifeRequest(options);
          const terms = termsOf(options);
          const files = await Promise.all(paths.map((p, i) => localFile(p, checkFilename(basename(p), false, `file ${i + 1}`))));
          const stored = await held(core, files, () => core.withStaging(SITE_RECORD, (staging) => copyIn(core, staging, files, randomUUID, options), undefined, terms)).catch(rethrow);
          core.announce(stored, { life: terms.granted });
          return stored.map((f) => uploadUrl(base, f.id, f.rel));
        })(),
      ),
    uploadDir: (dir, options = {}) =>
      core.settle(
        (async () => {
          checkLifeRequest(options);
          const rels = await walkFiles(dir).catch((err: unknown) => {
            throw fromFsError(err, 'directory');
          });
          if (rels.length === 0) throw new WharfError('NO_FILES', 'the directory has no files', 400);
          const files = await Promise.all(rels.map((rel) => localFile(join(dir, rel), checkFilename(rel, true, `file ${JSON.stringify(rel)}`))));
          const id = randomUUID();
          const terms = termsOf(options);
          const stored = await held(core, files, () => core.withStaging(SITE_RECORD, (staging) => copyIn(core, staging, files, () => id, options), undefined, terms)).catch(rethrow);
          core.announce(stored, { life: terms.granted });
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
    uploadInfo: (url) =>
      core.settle(
        (async () => {
          const target = parseUploadUrl(base, url);
          const life = target && storage.life ? await storage.life(target.id).catch(rethrow) : null;
          if (!target || !life) throw new WharfError('NOT_FOUND', `no such upload: ${url}`, 404);
          const info: UploadInfo = { id: target.id, once: life.once };
          if (life.expiresAt !== undefined) info.expiresAt = new Date(life.expiresAt);
          return info;
        })(),
      ),
  };
}

/** Runs `copy` with the files' bytes held to the quota (507 STORE_FULL before a byte is copied). */
async function held<T>(core: UploadCore, files: LocalFile[], copy: () => Promise<T>): Promise<T> {
  const hold = core.storage.quota?.hold(files.reduce((sum, f) => sum + f.size, 0));
  try {
    return await copy();
  } finally {
    hold?.release();
  }
}

const termsOf = (options: UploadOptions): LifeTerms => ({ asked: { expiresIn: options.expiresIn, once: options.once }, granted: undefined });

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
