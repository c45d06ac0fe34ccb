// nginx (Debian's, /usr/sbin/nginx) as the load balancer in front of several wharf nodes: a config
// generated into a temp dir (its pid, logs and body temp files there too), started in the
// foreground by the test and stopped after it.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { eventually } from './eventually.js';
import { tempDir } from './temp-dir.js';
import { freePort } from './free-port.js';
import { defer } from './defer.js';

export const NGINX = '/usr/sbin/nginx';

interface TestContext {
  after(fn: () => Promise<void>): void;
}

export interface Nginx {
  url: string;
  port: number;
  /** The upstream (`127.0.0.1:<port>`) of each request so far, in order, as nginx logged it. */
  upstreams(): Promise<string[]>;
}


/**
 * A whole config for one nginx in the foreground, without a master, its pid, logs and temp files
 * in `dir`; `http` is the rest of its `http` block.
 */
export function nginxConfigOf(dir: string, http: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${http}}
`;
}

/** The config: round robin over `nodes` (`host:port`), request and response bodies streamed, no body size limit. */
export function nginxConfig(dir: string, port: number, nodes: string[]): string {
  return nginxConfigOf(dir, `  log_format upstream '$request_method $uri $status $upstream_addr';
  access_log ${dir}/access.log upstream;
  client_max_body_size 0;
  upstream wharf {
${nodes.map((n) => `    server ${n};`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://wharf;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
`);
}

/** Starts nginx in front of `nodes` and resolves once it accepts connections; stopped when `t` ends. */
export async function startNginx(t: TestContext, nodes: string[]): Promise<Nginx> {
  const dir = await tempDir(t, 'wharf-nginx-');
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxConfig(dir, port, nodes));
  const proc = spawn(NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let exited = false;
  const gone = new Promise<void>((resolve) => proc.once('exit', () => {
    exited = true;
    resolve();
  }));
  defer(t, async () => {
    if (!exited) proc.kill('SIGTERM');
    await gone;
  });
  const accepts = (): Promise<boolean> => new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
  await eventually(async () => {
    if (exited) throw new Error(`nginx exited: ${stderr}${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
    return accepts();
  }, 'nginx accepts connections');
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    upstreams: async () => (await readFile(join(dir, 'access.log'), 'utf8')).split('\n').filter(Boolean).map((l) => l.split(' ')[3]!),
  };
}
