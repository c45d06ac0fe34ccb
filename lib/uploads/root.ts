import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { mkdirOne, mkdirRoot, mkdirRootSync } from './disk.js';
import type { StorageModes } from './local-storage.js';

/**
 * One upload id's temp directory, and the directories made in it: one mkdir per directory, shared
 * by every file in it, made when its first file is. A plain upload's file sits in its root, so
 * nothing but the root's own flag is ever looked at; the sets are for directory uploads.
 */
export interface Root {
  readonly path: string;
  /** Modes of the directories and files made in it. */
  readonly modes: StorageModes;
  /** Makes `dir` (the root or a directory in it) and those above it, through the thread pool. */
  dir(dir: string): Promise<void>;
  /** The same without the thread pool; false when that cannot be done (an async mkdir of it is under way). */
  dirSync(dir: string): boolean;
  /** Resolves once no mkdir is on its way any more (so removing the tree cannot race one). */
  settled(): Promise<unknown>;
}

export function createRoot(path: string, modes: StorageModes): Root {
  let rootMade = false;
  let rootMaking: Promise<void> | undefined;
  // Directories below the root known to exist, and those whose mkdir is on its way.
  let made: Set<string> | undefined;
  let dirs: Map<string, Promise<void>> | undefined;
  const root: Root = {
    path,
    modes,
    dir(dir) {
      if (dir === path) {
        return (rootMaking ??= mkdirRoot(path, modes.dir).then(() => {
          rootMade = true;
        }));
      }
      const making = (dirs ??= new Map()).get(dir);
      if (making) return making;
      const known = (made ??= new Set());
      const now = root.dir(dirname(dir)).then(() => mkdirOne(dir, modes.dir)).then(() => {
        known.add(dir);
      });
      dirs.set(dir, now);
      return now;
    },
    dirSync(dir) {
      if (dir === path) {
        if (rootMade) return true;
        if (rootMaking) return false;
        mkdirRootSync(path, modes.dir);
        rootMade = true;
        rootMaking = Promise.resolve();
        return true;
      }
      if (made?.has(dir)) return true;
      if (dirs?.has(dir)) return false;
      if (!root.dirSync(dirname(dir))) return false;
      mkdirSync(dir, modes.dir);
      (made ??= new Set()).add(dir);
      (dirs ??= new Map()).set(dir, Promise.resolve());
      return true;
    },
    settled: () => Promise.allSettled([rootMaking, ...(dirs?.values() ?? [])]),
  };
  return root;
}
