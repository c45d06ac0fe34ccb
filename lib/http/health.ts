// `GET/HEAD {base}_wharf/health` (docs/protocol.md §7): readiness for a load balancer. Ready means
// the data dir can be written now (a real write in this node's staging area, and `f/` writable) and
// the image-stream hub can be reached. One probe serves every poll for a second, so a load
// balancer polling hard cannot turn it into disk traffic; a probe that hangs (a stuck NFS mount)
// counts as failed after PROBE_TIMEOUT instead of holding the poll.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_TIMER } from '../common/limits.js';
import type { Hub } from '../image-streams/hub.js';
import { sendJson } from './answer.js';

/** How long one probe's answer is reused. */
export const HEALTH_CACHE_MS = 1_000;
/** A check that has not answered in this long has failed. */
export const PROBE_TIMEOUT = 2_000;

export interface HealthParts {
  /** Starts upload storage if need be, then proves it writable; rejects with the `fs` error. */
  storage(): Promise<void>;
  /** Asked through its optional `health()` (lib/image-streams/hub.ts); a hub without one is always reachable. */
  hub?: Pick<Hub, 'health'> | undefined;
}

/** Each check's verdict: `ok`, or why not (an errno code, `timeout`, `unreachable`): nothing secret, no path. */
export interface HealthReport {
  ok: boolean;
  checks: { storage: string; hub: string };
}

export interface Health {
  /** The current report, probed at most once per HEALTH_CACHE_MS. */
  report(): Promise<HealthReport>;
  /** Answers 200 `{"ok":true,…}` or 503 `{"ok":false,"error":"NOT_READY",…}`, never cached by anyone. */
  respond(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createHealth(parts: HealthParts): Health {
  const hub = parts.hub;
  let last: { at: number; report: Promise<HealthReport> } | undefined;

  async function probe(): Promise<HealthReport> {
    const [storage, reach] = await Promise.all([
      verdict(parts.storage().then(() => true), (err) => (err as NodeJS.ErrnoException | null)?.code ?? 'failed'),
      hub?.health === undefined ? Promise.resolve('ok') : verdict(Promise.resolve().then(() => hub.health!()), () => 'unreachable'),
    ]);
    return { ok: storage === 'ok' && reach === 'ok', checks: { storage, hub: reach } };
  }

  function report(): Promise<HealthReport> {
    const now = performance.now();
    // Polls that come while a probe is on its way share it.
    if (last === undefined || now - last.at >= HEALTH_CACHE_MS) last = { at: now, report: probe() };
    return last.report;
  }

  return {
    report,
    async respond(_req, res) {
      const r = await report();
      if (r.ok) {
        sendJson(res, 200, r);
        return;
      }
      const failed = Object.entries(r.checks).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k} (${v})`);
      sendJson(res, 503, { ...r, error: 'NOT_READY', message: `not ready: ${failed.join(', ')}` });
    },
  };
}

/** `ok` when `check` resolves true in time; else what `why` makes of its failure, `unreachable` for false, `timeout` for silence. */
function verdict(check: Promise<boolean>, why: (err: unknown) => string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.min(PROBE_TIMEOUT, MAX_TIMER));
  });
  const settled = check.then((ok) => (ok === true ? 'ok' : 'unreachable'), why);
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}
