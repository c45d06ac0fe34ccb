// A node's own staging area in a data dir that several processes share (docs/protocol.md §7):
//
//   <dataDir>/.wharf-tmp/<node-id>.<instance>/lease   rewritten every `interval` ms while the node lives
//   <dataDir>/.wharf-tmp/<node-id>.<instance>/<n>/    one upload id being staged (staging.ts)
//
// `<instance>` is random per start, so a node restarted under the same id (a container whose pid
// is 1 every time) never takes over the area of a predecessor that may still be alive somewhere.
// Another node's area is swept only once its lease is stale: not rewritten for LEASE_STALE_FACTOR
// of the intervals the lease says its owner renews it at. Both times compared are the file system's (the sweeper's own lease, just rewritten,
// against the other's), so the clocks of two machines sharing an NFS server never meet. A sweep
// renames the area into the sweeper's own area first and removes it there: two nodes sweeping at
// once find it gone (ENOENT) rather than remove half each, and a sweeper dying midway leaves the
// rest inside its own area, swept in turn once its lease is stale.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open as openHandle, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, sep } from 'node:path';
import { errorMessage, WharfError } from '../common/errors.js';
import { MAX_TIMER } from '../common/limits.js';
import { mkdirRoot } from './disk.js';
import type { StorageModes } from './local-storage.js';

export const LEASE_NAME = 'lease';
/** A lease not rewritten for this many intervals is stale: its node is gone. */
export const LEASE_STALE_FACTOR = 6;
/** How often a node rewrites its lease: every 10 s, so a dead node's area is swept a minute after it died. */
export const DEFAULT_LEASE_INTERVAL = 10_000;

// O_NONBLOCK: a FIFO planted where a lease should be must not park a thread-pool thread.
const LEASE_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

export interface NodeAreaOptions {
  nodeId: string;
  /** ms between two rewrites of the lease (and sweeps of stale areas). */
  interval: number;
  modes: StorageModes;
  warn?: (message: string) => void;
}

export interface NodeArea {
  /** `<tempDir>/<node-id>.<instance>` */
  readonly path: string;
  /** A new name in the area, for a staged upload id or something being removed. */
  tempName(): string;
  /** Makes the area and its lease, sweeps stale areas of other nodes, then keeps the lease fresh. */
  start(): Promise<void>;
  /** Rewrites the lease now (a real write in the temp area), making the area again if it was removed. */
  renew(): Promise<void>;
  /** Removes whatever in the temp area has a stale lease (a stale mtime, for what has none); resolves with the names swept. */
  sweep(): Promise<string[]>;
  /** Stops renewing and removes the area whole: call it once no staging is left in it. */
  close(): Promise<void>;
}

export function createNodeArea(tempDir: string, options: NodeAreaOptions): NodeArea {
  const { interval, modes } = options;
  const warn = options.warn ?? (() => {});
  const name = `${options.nodeId}.${randomBytes(4).toString('hex')}`;
  const path = join(tempDir, name);
  const leasePath = join(path, LEASE_NAME);
  // What the lease says is for people looking at the data dir, but for `interval`, which tells the
  // other nodes when it is stale; its mtime says when it was last renewed.
  const content = `${JSON.stringify({ node: options.nodeId, host: hostname(), pid: process.pid, started: new Date().toISOString(), interval })}\n`;
  let seq = 0;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  // Said once when it starts failing, not at every interval.
  let failing = false;
  let sweepFailing = false;
  let closed = false;

  async function renew(): Promise<void> {
    // A health probe that began before `close`: the area must not be made again behind it.
    if (closed) throw new WharfError('SHUTTING_DOWN', 'the node is closing', 503);
    try {
      await writeFile(leasePath, content, { mode: modes.file });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // The area was removed under us: by an operator, or by a node that found the lease stale
    // (this process was stopped for longer than that). Made again, never the data dir itself.
    await mkdirRoot(path, modes.dir, 1).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await writeFile(leasePath, content, { mode: modes.file });
    if (timer !== undefined) warn(`wharf: warning: this node's staging area ${path} had been removed (uploads in flight in it fail); made again`);
  }

  async function sweep(): Promise<string[]> {
    // After `renew`: its mtime is the file system's "now".
    const now = (await stat(leasePath)).mtimeMs;
    const swept: string[] = [];
    for (const other of await readdir(tempDir)) {
      if (other === name) continue;
      const lease = await leaseOf(join(tempDir, other));
      // Judged by its owner's interval where the lease states it: nodes need not share one.
      if (lease === null || now - lease.at <= LEASE_STALE_FACTOR * (lease.interval ?? interval)) continue;
      const grave = tempName();
      try {
        await rename(join(tempDir, other), grave);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // another node swept it first
        throw err;
      }
      await rm(grave, { recursive: true, force: true });
      swept.push(other);
    }
    return swept;
  }

  function tick(): void {
    if (running !== undefined || closed) return; // a slow disk: never two at once
    running = renew()
      .then(() => {
        if (failing) warn(`wharf: this node's staging lease ${leasePath} is renewed again`);
        failing = false;
        return sweep();
      }, (err: unknown) => {
        if (!failing) warn(`wharf: warning: cannot renew this node's staging lease ${leasePath} (${errorMessage(err)}): other nodes will sweep its uploads in flight once it is stale`);
        failing = true;
      })
      .then(() => {
        sweepFailing = false;
      }, (err: unknown) => {
        if (!sweepFailing) warn(`wharf: warning: sweeping stale staging areas failed: ${errorMessage(err)}`);
        sweepFailing = true;
      })
      .finally(() => {
        running = undefined;
      });
  }

  function tempName(): string {
    return `${path}${sep}${++seq}`;
  }

  return {
    path,
    tempName,
    renew,
    sweep,
    async start() {
      await renew();
      await sweep();
      if (timer !== undefined || closed) return;
      timer = setInterval(tick, Math.min(interval, MAX_TIMER));
      timer.unref();
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      // ENOTDIR: a file where the temp area should be (a start that failed): there is no area.
      await rm(path, { recursive: true, force: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTDIR') throw err;
      });
    },
  };
}

/** Bytes of a lease read: what a lease says is far shorter. */
const LEASE_READ = 1024;

/**
 * When what is at `entry` in the temp area was last known alive, and how often its owner said it
 * renews its lease (absent when it says nothing: a leftover of an older wharf, an area whose lease
 * is not written yet); null when it is gone. The time is the later of the lease's mtime and the
 * entry's own. The lease is opened, not just stat'ed: opening revalidates what an NFS client
 * caches of a file (close-to-open), so another node's rewrite is seen.
 */
async function leaseOf(entry: string): Promise<{ at: number; interval: number | undefined } | null> {
  let own: number;
  try {
    own = (await lstat(entry)).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let handle;
  try {
    handle = await openHandle(join(entry, LEASE_NAME), LEASE_FLAGS);
  } catch {
    return { at: own, interval: undefined }; // none (ENOENT, ENOTDIR), or unreadable: the entry's own mtime says it
  }
  try {
    const info = await handle.stat();
    const buf = Buffer.alloc(LEASE_READ);
    const { bytesRead } = info.isFile() ? await handle.read(buf, 0, LEASE_READ, 0) : { bytesRead: 0 };
    return { at: Math.max(own, info.mtimeMs), interval: intervalIn(buf.toString('utf8', 0, bytesRead)) };
  } finally {
    await handle.close();
  }
}

/** The `interval` a lease's text states, if it states a sane one (no more than an interval can be). */
function intervalIn(text: string): number | undefined {
  try {
    const n = (JSON.parse(text) as { interval?: unknown } | null)?.interval;
    return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? Math.min(n, MAX_TIMER) : undefined;
  } catch {
    return undefined;
  }
}
