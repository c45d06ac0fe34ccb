// createFileServer: the lifecycle (listen / handle / close) around the parts it wires together:
// options (options.ts), the route table (routes.ts), dispatch and access (dispatch.ts), connections
// (connections.ts). Everything a route does lives in its own module.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve, sep } from 'node:path';
import { createKeyCheck, isLoopback } from './access-keys.js';
import { WharfError } from '../common/errors.js';
import { resolveLimits } from '../common/limits.js';
import { missingDirWarnings, parseMappings } from '../static/mappings.js';
import { createLocalStorage } from '../uploads/local-storage.js';
import { defaultNodeId } from '../common/node-id.js';
import { createStatic } from '../static/engine.js';
import { createStreams } from '../image-streams/relay.js';
import { createLocalHub } from '../image-streams/hub.js';
import { createUploads } from '../uploads/route.js';
import { canonicalPrefix } from './request-path.js';
import { createConnections } from './connections.js';
import type { Authorize } from './authorize.js';
import { createCors } from './cors.js';
import { createDispatch, type Dispatch } from './dispatch.js';
import { detectMount } from './mount.js';
import { checkOptions, DEFAULT_HOST, DEFAULT_PORT, invalid, type BoundAddress, type FileServer, type FileServerOptions, type ListenOptions } from './options.js';
import { createRouter, routeTable } from './routes.js';
import { createHealth } from './health.js';

export type { BoundAddress, DirMapping, FileServer, FileServerOptions, ListenOptions } from './options.js';
export { DEFAULT_HOST, DEFAULT_PORT } from './options.js';

const KEEP_ALIVE_TIMEOUT = 5_000;

export function createFileServer(options: FileServerOptions = {}): FileServer {
  checkOptions(options);
  const warn = options.warn ?? ((message: string) => console.warn(message));
  const limits = resolveLimits(options.limits);
  const base = canonicalPrefix(options.baseUrl ?? '/', 'baseUrl');
  const dataDir = resolve(options.dataDir ?? './data');
  const mappings = parseMappings(options.publicDirs, options.privateDirs, base);
  // A mapping of the data dir, or of a directory in it, would serve uploads around their own rules
  // (authorize, end users' uploads never running script) and the staging area with them.
  for (const m of mappings) {
    if (m.path === dataDir || m.path.startsWith(dataDir + sep)) throw invalid(`mapping ${m.prefix} serves ${m.path}, which is the data dir or inside it: uploads are served at ${base}_f/ only`);
  }
  for (const w of missingDirWarnings(mappings)) warn(w);
  const keyCheck = createKeyCheck(options.accessKeys);

  const statics = createStatic({
    limits,
    ...(options.cacheControl === undefined ? {} : { cacheControl: options.cacheControl }),
    ...(options.privateCacheControl === undefined ? {} : { privateCacheControl: options.privateCacheControl }),
  });
  const syncIo = options.syncIo ?? 'auto';
  const unrecorded = options.trustUnrecordedUploads === true ? 'app' : 'user';
  const storage = options.storage !== undefined
    ? options.storage({ limits, nodeId: options.nodeId ?? defaultNodeId(), unrecorded, syncIo, warn })
    : createLocalStorage(dataDir, {
      syncIo,
      unrecorded,
      groupReadable: options.groupReadable ?? false,
      ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }),
      ...(options.leaseInterval === undefined ? {} : { leaseInterval: options.leaseInterval }),
      warn,
      lifecycle: { uploadTtl: limits.uploadTtl, storeSize: limits.storeSize },
    });
  const uploads = createUploads({
    dataDir, base, limits, statics, warn, storage,
    ...(options.onUpload === undefined ? {} : { onUpload: options.onUpload }),
    ...(options.accept === undefined ? {} : { accept: options.accept }),
    ...(options.filter === undefined ? {} : { filter: options.filter }),
  });
  const hub = (options.hub ?? createLocalHub)({ ...limits, warn });
  const streams = createStreams({ base, limits, hub });
  const health = createHealth({ storage: () => ready().then(() => storage.probe()), hub });
  const routes = routeTable({
    base, dataDir, limits, mappings, uploads, streams, statics, health,
    uploadsPrivate: options.authorize !== undefined, dotfiles: options.dotfiles ?? false, syncIo,
    indexPages: options.indexPages ?? true,
  });

  let started: Promise<void> | undefined;
  let storageReady = false;
  function ready(): Promise<void> {
    started ??= uploads.start().then(
      () => { storageReady = true; },
      (err: unknown) => { started = undefined; throw err; },
    );
    return started;
  }
  let server: Server | undefined;
  let closing = false;
  let closed: Promise<void> | undefined;
  const connections = createConnections();
  const dispatch = createDispatch({
    router: createRouter(routes), connections, keyCheck, warn,
    authorize: options.authorize, anonymousUploads: options.anonymousUploads ?? false,
    cors: options.cors === undefined ? undefined : createCors(options.cors),
    closing: () => closing, storageReady: () => storageReady, ready,
  });

  async function listen(opts: ListenOptions = {}): Promise<BoundAddress> {
    const host = opts.host ?? DEFAULT_HOST;
    const port = opts.port ?? DEFAULT_PORT;
    if (closing) throw new WharfError('CLOSED', 'this file server has been closed', 500);
    if (server) throw new WharfError('ALREADY_LISTENING', 'this file server is already listening', 500);
    if (keyCheck.defaults && !isLoopback(host)) {
      throw new WharfError('DEFAULT_KEYS_OFF_LOOPBACK',
        `refusing to listen on ${host} with Wave's well-known default access key; pass accessKeys (CLI: --access-key-id/--access-key-secret) or listen on 127.0.0.1`, 500);
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid(`port: expected 0..65535, got ${String(port)}`);
    await ready();
    const srv = standalone(dispatch, limits.headersTimeout);
    server = srv;
    try {
      return await bind(srv, port, host);
    } catch (err) {
      server = undefined;
      throw err;
    }
  }

  function close(): Promise<void> {
    closed ??= (async () => {
      closing = true;
      const srv = server;
      const serverClosed = srv ? new Promise<void>((ok) => srv.close(() => ok())) : Promise.resolve();
      srv?.closeIdleConnections();
      connections.lastAnswers();
      await Promise.allSettled([uploads.close(), streams.close()]);
      await connections.finish(limits.closeGrace);
      srv?.closeAllConnections();
      await serverClosed;
    })();
    return closed;
  }

  return {
    listen,
    handle: (req, res, next) => {
      detectMount(req, base);
      dispatch(req, res, next, false);
    },
    close,
    site: { ...uploads.site, ...streams.site },
    streamStats: () => streams.stats(),
    prefixes: Object.freeze([...new Set(routes.map((r) => r.prefix))]),
  };
}

/** The node:http server of standalone mode, its timeouts set for a file server. */
function standalone(dispatch: Dispatch, headersTimeout: number): Server {
  const srv = createServer({
    requestTimeout: 0, // uploads and frames have their own idle timeout; a slow live upload is fine
    headersTimeout,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT,
    // Node checks header timeouts on this interval; its 30 s default would let slowloris connections linger.
    connectionsCheckingInterval: Math.max(250, Math.min(1000, headersTimeout)),
  }, (req, res) => dispatch(req, res, undefined, false));
  // Answer `Expect: 100-continue` ourselves, so auth and size refusals go out instead of `100 Continue`.
  srv.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => dispatch(req, res, undefined, true));
  return srv;
}

/** Binds `srv` to `host:port` and says where it listens. */
async function bind(srv: Server, port: number, host: string): Promise<BoundAddress> {
  try {
    await new Promise<void>((ok, bad) => {
      srv.once('error', bad);
      srv.listen(port, host, () => {
        srv.off('error', bad);
        ok();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
    throw new WharfError('LISTEN_FAILED', `cannot listen on ${host}:${port}: ${code}`, 500, { cause: err });
  }
  const addr = srv.address() as AddressInfo;
  const shown = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return { host: addr.address, port: addr.port, url: `http://${shown}:${addr.port}` };
}
