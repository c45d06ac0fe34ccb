/** Progress of one transfer: `total` is undefined when the size is not known in advance. */
export interface Progress {
  loaded: number;
  total: number | undefined;
}

/** Options every transfer of `Site` accepts. */
export interface TransferOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

/** Options of `upload` and `uploadDir`: wharf's own, which Wave ignores (docs/protocol.md §1). */
export interface UploadOptions extends TransferOptions {
  /**
   * ms the upload lives; past it, it is gone (404) and removed. The server holds it to its
   * `limits.uploadTtl`; without it, that TTL, if any. Sent as whole seconds (`Wharf-Expires-In`), rounded up.
   */
  expiresIn?: number;
  /** Removed after its first complete download (a HEAD, a Range or a cut download does not count). */
  once?: boolean;
}

/**
 * Wave's `q.site` file API. The in-process `files.site` and the HTTP client from `wharf-files/client`
 * both implement it, with the same results, so an app can switch between them.
 */
export interface Site {
  /** Stores each file under a new id; resolves with their URL paths (`{base}_f/<id>/<name>`, the name as stored: only `%`, `#`, `?` escaped, as Wave returns it), in order. */
  upload(paths: string[], options?: UploadOptions): Promise<string[]>;
  /** Stores a directory tree under one new id; resolves with `[{base}_f/<id>]`. */
  uploadDir(dir: string, options?: UploadOptions): Promise<string[]>;
  /** Fetches `url` (as returned, or fully percent-encoded) into `fileOrDir` (an existing directory keeps the file's real name); resolves with the local path written. */
  download(url: string, fileOrDir: string, options?: TransferOptions): Promise<string>;
  /** Deletes the upload that `url` (as returned, or fully percent-encoded) points into. */
  unload(url: string, options?: Pick<TransferOptions, 'signal'>): Promise<void>;
  /** Publishes one frame to image stream `name`; resolves with the path viewers open (`{base}_m/<name>`). */
  uplink(name: string, contentType: string, data: Uint8Array, options?: Pick<TransferOptions, 'signal'>): Promise<string>;
  /** Ends image stream `name`; resolves also when there is no such stream (never published, or ended already), as Wave does. */
  unlink(name: string, options?: Pick<TransferOptions, 'signal'>): Promise<void>;
}
