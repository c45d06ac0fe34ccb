// Debian's nginx (/usr/sbin/nginx) as a static-file peer of bench/static: the file server every
// other one is measured against, configured the way a production static server is (sendfile,
// open_file_cache, ETag, no access log), one worker in the foreground, pinned like the others.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NGINX, nginxConfigOf } from '../test/helpers/nginx.js';
import { freePort } from '../test/helpers/free-port.js';
import { startNative } from './native-server.js';

export const nginxAvailable = (): boolean => existsSync(NGINX);

/** `root` served at `/` on 127.0.0.1:`port`. */
const staticHttp = (port: number, root: string): string => `  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=60s;
  etag on;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
`;

export interface NginxStatic {
  port: number;
  pid: number;
  /** Stops nginx and resolves once it exited, its temp dir removed. */
  stop(): Promise<void>;
}

/** Starts nginx serving `root`, pinned to `cpu` when given, and resolves once it answers. */
export async function startNginxStatic(root: string, cpu?: number): Promise<NginxStatic> {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-bench-nginx-'));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxConfigOf(dir, staticHttp(port, root)));
  const errorLog = join(dir, 'error.log');
  try {
    const { child, stop } = await startNative(NGINX, ['-p', dir, '-c', conf, '-e', errorLog], port, cpu, () => readFile(errorLog, 'utf8').catch(() => ''));
    return { port, pid: child.pid!, stop: () => stop().finally(() => rm(dir, { recursive: true, force: true })) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
