// STUB — owned by the image-streams helper; the exported names and types below are the contract.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limits } from './limits.js';
import type { Site } from './site.js';

export interface StreamStats {
  name: string;
  viewers: number;
  framesPublished: number;
  framesSkipped: number;
}

export interface StreamsConfig {
  /** Normalised base URL, always starting and ending with `/`. */
  base: string;
  limits: Limits;
}

export interface Streams {
  /** `POST {base}_m/<rest>`; `rest` still percent-encoded. */
  publish(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void>;
  /** `GET {base}_m/<rest>`. */
  view(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void>;
  /** `DELETE {base}_m/<rest>`. */
  end(req: IncomingMessage, res: ServerResponse, rest: string): Promise<void>;
  site: Pick<Site, 'uplink' | 'unlink'>;
  stats(): StreamStats[];
  /** Ends every stream (viewers get the closing delimiter). */
  close(): Promise<void>;
}

export function createStreams(_config: StreamsConfig): Streams {
  const notYet = (): never => { throw new Error('not implemented'); };
  return {
    publish: async () => notYet(),
    view: async () => notYet(),
    end: async () => notYet(),
    site: { uplink: async () => notYet(), unlink: async () => notYet() },
    stats: () => [],
    close: async () => {},
  };
}
