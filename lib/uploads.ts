// STUB — owned by the uploads helper; the exported names and types below are the contract.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Limits } from './limits.js';
import type { Site } from './site.js';
import { createDirectorySource, type FileSource, type StaticEngine } from './static.js';

export interface UploadedFile {
  /** URL path, `{base}_f/<id>/<name>` (percent-encoded). */
  path: string;
  /** Relative name as stored (`a/b.txt` for directory uploads). */
  filename: string;
  size: number;
  contentType: string;
}

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
  onUpload?: (event: UploadEvent) => void | Promise<void>;
}

export interface Uploads {
  /** The read side of upload storage, served by the static engine for `GET/HEAD {base}_f/<rest>`. */
  source: FileSource;
  /** `POST {base}_f/`. */
  receive(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** `DELETE {base}_f/<rest>`; `rest` still percent-encoded. */
  remove(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void>;
  site: Pick<Site, 'upload' | 'uploadDir' | 'download' | 'unload'>;
  /** Creates the storage layout and sweeps a crashed run's temp leftovers. */
  start(): Promise<void>;
  /** Aborts in-flight uploads (their temp bytes removed) and resolves when they are gone. */
  close(): Promise<void>;
}

export function createUploads(config: UploadsConfig): Uploads {
  const notYet = (): never => { throw new Error('not implemented'); };
  return {
    source: createDirectorySource(join(config.dataDir, 'f')),
    receive: async () => notYet(),
    remove: async () => notYet(),
    site: { upload: async () => notYet(), uploadDir: async () => notYet(), download: async () => notYet(), unload: async () => notYet() },
    start: async () => {},
    close: async () => {},
  };
}
