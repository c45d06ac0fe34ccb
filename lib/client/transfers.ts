/**
 * The transfers of `Site` over HTTP: uploads stream their multipart body from the files as the
 * socket drains (its length computed up front), downloads resume (./download.ts), image-stream
 * frames go as Wave's one-part form.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { basename, join } from 'node:path';
import { WharfError, fromFsError } from '../common/errors.js';
import { localFileSize, walkFiles } from '../common/local-files.js';
import { contentTypeFor } from '../common/mime.js';
import type { Progress, Site, TransferOptions, UploadOptions } from '../common/site-api.js';
import { streamPath } from '../common/stream-paths.js';
import { requestPath } from '../common/upload-names.js';
import { download } from './download.js';
import { bufferForm, fileForm, type FormFile } from './form-data.js';
import type { Transport } from './transport.js';

/** Wraps `onProgress` so it never goes backwards (a retry re-sends bytes already counted). */
function progressOf(options: TransferOptions | undefined): (loaded: number, total: number | undefined) => void {
  const cb = options?.onProgress;
  let last = -1;
  return (loaded, total) => {
    if (!cb || loaded <= last) return;
    last = loaded;
    cb({ loaded, total } satisfies Progress);
  };
}

/** A local file as the form sends it: under `filename` (a relative path for a directory upload). */
async function formFile(path: string, filename: string): Promise<FormFile> {
  return { path, filename, size: await localFileSize(path), contentType: contentTypeFor(filename) };
}

/** POSTs `files` as one upload; resolves with the URL paths the server answers. */
async function postFiles(t: Transport, base: string, files: FormFile[], headers: OutgoingHttpHeaders, options: TransferOptions | undefined): Promise<string[]> {
  const form = fileForm(files);
  const total = files.reduce((sum, f) => sum + f.size, 0);
  const progress = progressOf(options);
  progress(0, total);
  let loaded = 0;
  const answer = await t.call('POST', t.target(`${base}_f/`), {
    ...headers,
    'content-type': form.contentType,
    'content-length': form.length,
    expect: '100-continue',
  }, () => {
    loaded = 0;
    return form.chunks((n) => { loaded += n; progress(loaded, total); });
  }, options?.signal);
  let paths: unknown;
  try {
    paths = (JSON.parse(answer.toString('utf8')) as { files?: unknown }).files;
  } catch { /* checked below */ }
  if (!Array.isArray(paths) || !paths.every((p): p is string => typeof p === 'string')) {
    throw new WharfError('BAD_RESPONSE', 'the upload answer has no "files" list', 0);
  }
  progress(total, total);
  return paths;
}

/**
 * The request headers of `options`' life (docs/protocol.md §1): `Wharf-Expires-In` in whole seconds,
 * rounded up; `Wharf-Once: 1`. Checked here, so a bad value fails before a byte is sent.
 */
function lifeHeaders(options: UploadOptions | undefined): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const { expiresIn, once } = options ?? {};
  if (expiresIn !== undefined) {
    if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw new WharfError('BAD_EXPIRY', `expiresIn: expected a positive number of ms, got ${String(expiresIn)}`, 400);
    }
    headers['wharf-expires-in'] = String(Math.ceil(expiresIn / 1000));
  }
  if (once === true) headers['wharf-once'] = '1';
  return headers;
}

/** `Site`'s transfers against the server `t` talks to, whose base URL path is `base`. */
export function createTransfers(t: Transport, base: string): Site {
  // Where this server's upload URLs live, as `target` spells them.
  const uploads = t.target(`${base}_f/`);

  /**
   * A URL that `upload` returned, or its fully percent-encoded form (docs/protocol.md §1). The URL
   * parser already escapes spaces and non-ASCII and keeps `%25`; an upload URL of this server is
   * also read once more by the rule the server reads it by, so a stray `%` in a hand-built one goes
   * out as `%25` instead of a malformed escape. Other URLs are sent as any HTTP client sends them.
   */
  function uploadTarget(url: string): URL {
    const u = t.target(url);
    if (u.origin === uploads.origin && u.pathname.startsWith(uploads.pathname)) u.pathname = requestPath(u.pathname);
    return u;
  }

  return {
    async upload(paths, options) {
      if (paths.length === 0) throw new WharfError('NO_FILES', 'no files to upload', 400);
      const files: FormFile[] = [];
      const headers = lifeHeaders(options);
      for (const p of paths) files.push(await formFile(p, basename(p)));
      return postFiles(t, base, files, headers, options);
    },

    async uploadDir(dir, options) {
      const headers = { ...lifeHeaders(options), 'wave-directory-upload': 'True' };
      const rels = await walkFiles(dir).catch((err: unknown) => {
        throw fromFsError(err, 'directory');
      });
      if (rels.length === 0) throw new WharfError('NO_FILES', 'the directory has no files', 400);
      const files: FormFile[] = [];
      for (const rel of rels) files.push(await formFile(join(dir, rel), rel));
      return postFiles(t, base, files, headers, options);
    },

    async download(url, fileOrDir, options) {
      const from = uploadTarget(url);
      return download(t, from, fileOrDir, progressOf(options), options?.signal);
    },

    async unload(url, options) {
      await t.call('DELETE', uploadTarget(url), {}, undefined, options?.signal);
    },

    async uplink(name, contentType, data, options) {
      const path = streamPath(base, name);
      // Wave's client sends the frame as a form: field `f`, filename `f`, the frame's type.
      const form = bufferForm('f', 'f', contentType, data);
      await t.call('POST', t.target(path), { 'content-type': form.contentType, 'content-length': form.body.length }, form.body, options?.signal);
      return path;
    },

    async unlink(name, options) {
      // A stream that is gone already answers 200 too (docs/protocol.md §2): unlinking twice is fine.
      await t.call('DELETE', t.target(streamPath(base, name)), {}, undefined, options?.signal);
    },
  };
}
