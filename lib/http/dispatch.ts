// Dispatch: a request's route, its turn on the connection, its method and path rule, who may use
// it (access keys, `authorize`, `anonymousUploads`), and the refusals on the way.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError, errorDetail, errorMessage } from '../common/errors.js';
import type { KeyCheck } from './access-keys.js';
import type { CorsCheck } from './cors.js';
import { sendError } from './answer.js';
import { afterLastAnswer, closeAfterAnswer } from './close-after-answer.js';
import { admit, awaitTurn, type Connections } from './connections.js';
import { answerRoot } from './landing.js';
import { refuse } from './refuse.js';
import { routedUrl } from './mount.js';
import { askAuthorize, authorizeAsksActions, type AccessRequest, type Authorize } from './authorize.js';
import type { Grant, Method, Router } from './routes.js';

const OPEN: Grant = { via: 'open', identity: undefined };
const KEY: Grant = { via: 'key', identity: undefined };
const ANONYMOUS: Grant = { via: 'anonymous', identity: undefined };

export type Next = (err?: unknown) => void;

export interface DispatchContext {
  router: Router;
  connections: Connections;
  keyCheck: KeyCheck;
  authorize: Authorize | undefined;
  anonymousUploads: boolean;
  /** With the `cors` option: applied to every request on a route, before its method is looked at. */
  cors: CorsCheck | undefined;
  /** Has close() begun? */
  closing(): boolean;
  /** Is upload storage started? Else `ready()` starts it. */
  storageReady(): boolean;
  ready(): Promise<void>;
  warn(message: string): void;
}

/** `dispatch(req, res, next, expectContinue)`: answers `req` or hands it to `next`; never throws. */
export type Dispatch = (req: IncomingMessage, res: ServerResponse, next: Next | undefined, expectContinue: boolean) => void;

export function createDispatch(ctx: DispatchContext): Dispatch {
  const { router, connections, keyCheck, authorize, anonymousUploads, cors, warn } = ctx;
  const asksActions = authorizeAsksActions(authorize);

  const fail = (res: ServerResponse, err: unknown): void => failed(res, err, warn);
  const authorizeFailed = (req: IncomingMessage, res: ServerResponse, err: unknown): void => authorizeThrew(req, res, err, warn);

  function run(req: IncomingMessage, res: ServerResponse, method: Method, rest: string, expectContinue: boolean, grant: Grant): void {
    if (ctx.closing()) {
      shuttingDown(req, res); // an async authorize() may have resolved after close() began
      return;
    }
    const early = refusalOf(req, method);
    if (early !== undefined) {
      refuse(req, res, early);
      return;
    }
    if (expectContinue) res.writeContinue();
    connections.track(req, res);
    if (method.storage && !ctx.storageReady()) {
      ctx.ready().then(() => method.run(req, res, rest, grant)).catch((err: unknown) => fail(res, err));
      return;
    }
    method.run(req, res, rest, grant)?.catch((err: unknown) => fail(res, err));
  }

  /** Who may use `method` (see FileServerOptions): runs it with what let the request in, or refuses. */
  function checkAccess(req: IncomingMessage, res: ServerResponse, method: Method, rest: string, expectContinue: boolean): void {
    if (method.access === 'open' || (method.access === 'read' && authorize === undefined)) {
      run(req, res, method, rest, expectContinue, OPEN);
      return;
    }
    // The key is checked before `anonymousUploads`: an app's upload is the app's, wherever it comes in.
    if (keyCheck(req) === 'valid') {
      run(req, res, method, rest, expectContinue, KEY);
      return;
    }
    if (method.access === 'upload' && anonymousUploads) {
      run(req, res, method, rest, expectContinue, ANONYMOUS);
      return;
    }
    // Wrong or foreign credentials still fall through to the hook: a browser behind the host
    // app's own Basic auth sends an Authorization header that is not a wharf key.
    if (authorize === undefined || (method.access === 'key' && !asksActions)) {
      unauthorized(req, res);
      return;
    }
    const ask = (request: AccessRequest): void =>
      askAuthorize(authorize, req, request, (verdict) => {
        if (verdict.ok) run(req, res, method, rest, expectContinue, { via: 'authorize', identity: verdict.identity });
        else if (verdict.forbidden) refuse(req, res, new WharfError('FORBIDDEN', 'not allowed for this user', 403));
        else unauthorized(req, res);
      }, (err) => authorizeFailed(req, res, err));
    const request = method.asks(rest);
    if (typeof (request as Promise<AccessRequest>).then !== 'function') ask(request as AccessRequest);
    else (request as Promise<AccessRequest>).then(ask, (err: unknown) => fail(res, err));
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, next: Next | undefined, expectContinue: boolean, admitted = false): void {
    // After an answer that announced close, nothing more from the connection is processed (RFC 9112
    // §9.6), not even handed to the host app: its body is dropped and it gets no answer, as the
    // connection closes once the answers before it are out.
    if (afterLastAnswer(req)) {
      req.resume();
      return;
    }
    const found = router.route(routedUrl(req));
    if (found === undefined) {
      noRoute(req, res, next, expectContinue, cors !== undefined);
      return;
    }
    if (!admitted && !admit(req, res)) {
      awaitTurn(req, res, () => dispatchOrFail(req, res, next, expectContinue, true));
      return;
    }
    if (cors !== undefined && cors(req, res, found)) return;
    const method = found.methods[req.method ?? ''];
    if (method === undefined) {
      refuse(req, res, new WharfError('METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, 405), { Allow: found.allow });
      return;
    }
    let rest = router.rest;
    if (method.path !== undefined) {
      try {
        rest = method.path(rest, router.flags);
      } catch (err) {
        refuse(req, res, err);
        return;
      }
    }
    if (ctx.closing()) {
      shuttingDown(req, res);
      return;
    }
    checkAccess(req, res, method, rest, expectContinue);
  }

  function dispatchOrFail(req: IncomingMessage, res: ServerResponse, next: Next | undefined, expectContinue: boolean, admitted = false): void {
    try {
      dispatch(req, res, next, expectContinue, admitted);
    } catch (err) {
      fail(res, err);
    }
  }

  return dispatchOrFail;
}

/** A path that is no route of wharf's: the host app's (`next`); standalone, the root page or a 404. */
function noRoute(req: IncomingMessage, res: ServerResponse, next: Next | undefined, expectContinue: boolean, cors: boolean): void {
  if (next) return next();
  if (cors) res.setHeader('Vary', 'Origin');
  if (expectContinue) closeAfterAnswer(req, res);
  if (answerRoot(req, res)) return;
  refuse(req, res, new WharfError('NOT_FOUND', 'no such route', 404));
}

/** An unexpected failure (not a `WharfError`) is reported through `warn`; the client gets a 500 either way. */
function failed(res: ServerResponse, err: unknown, warn: (message: string) => void): void {
  if (!(err instanceof WharfError)) warn(`wharf: request failed: ${errorDetail(err)}`);
  sendError(res, err);
}

function shuttingDown(req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false;
  closeAfterAnswer(req, res);
  refuse(req, res, new WharfError('SHUTTING_DOWN', 'the file server is shutting down', 503));
}

function unauthorized(req: IncomingMessage, res: ServerResponse): void {
  const err = new WharfError('UNAUTHORIZED', 'a valid access key or an authorized session is required', 401);
  // A browser meets a Basic challenge on a page's fetch, XHR or <img> with a credentials dialog
  // its user cannot fill in (wharf's keys are app keys), and the request hangs until it is
  // dismissed. Fetch Metadata (`Sec-Fetch-Mode`, sent by every current browser) tells those
  // requests apart: they get the plain 401; apps and page navigations get the challenge.
  const mode = req.headers['sec-fetch-mode'];
  refuse(req, res, err, mode === undefined || mode === 'navigate' ? { 'WWW-Authenticate': 'Basic realm="wharf"' } : {});
}

function authorizeThrew(req: IncomingMessage, res: ServerResponse, err: unknown, warn: (message: string) => void): void {
  warn(`wharf: the authorize hook threw: ${errorMessage(err)}`);
  refuse(req, res, new WharfError('AUTHORIZE_FAILED', 'authorization check failed', 500));
}

/** What `method` refuses from `req`'s headers alone, before a body byte is read and before `100 Continue`. */
function refusalOf(req: IncomingMessage, method: Method): WharfError | undefined {
  const len = req.headers['content-length'];
  if (method.maxBody !== undefined && len !== undefined && Number(len) > method.maxBody.bytes) {
    return new WharfError(method.maxBody.code, `request body of ${len} bytes is over the limit of ${method.maxBody.bytes}`, 413);
  }
  return method.refuseEarly?.(req);
}
