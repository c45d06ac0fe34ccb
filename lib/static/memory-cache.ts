// The static engine's memory cache: per source, the representations of files answered recently
// (with their bytes when small, or hot blocks of them when big), bounded by `limits.cacheSize`,
// least recently used first out. Entries are revalidated by the engine before each use; this holds
// and evicts them.
import type { Limits } from '../common/limits.js';
import { representationOf, type Representation } from './answer.js';
import type { FileInfo, FileSource } from './engine.js';

/** A cached representation, with what eviction needs. */
export interface Entry extends Representation {
  /** Bytes this entry is charged against `limits.cacheSize`. */
  cost: number;
  /** Its key in `map`, the cache of its source (null until cached): how eviction finds it. */
  rel: string;
  map: Map<string, Entry> | null;
  /** See `touch`. */
  gen: number;
  /**
   * Of a file too big to keep whole: block index → its bytes once hot, or null while asked for
   * once (see `blockWanted`); null until a Range of it falls within one block. Oldest first.
   */
  blocks: Map<number, Buffer | null> | null;
}

/**
 * A Range of a file too big to keep whole is answered from memory when it falls within one aligned
 * block of this size that was asked for before: a player or viewer re-reading a big file's header,
 * index or first seconds then costs no open, read or close (bench/static, Range of 100 MiB). 64 KiB:
 * one read of it from the page cache costs about what reading 1 KiB does through the thread pool.
 */
export const BLOCK_SIZE = 64 * 1024;
/** What each block remembered is charged on top of its bytes: a Map slot, not nothing. */
const MARK_COST = 64;
/**
 * Blocks remembered as asked for once, per file: a client reading a huge file at random (a database
 * over HTTP) marks and forgets, and never makes this read whole blocks it does not come back to.
 */
const MAX_MARKS = 64;

/** Bookkeeping charged per entry on top of its bytes, so many tiny or data-less entries stay bounded too. */
const ENTRY_OVERHEAD = 256;

/**
 * Files up to this size are kept in memory the first time they are read; bigger ones (up to
 * `limits.cacheFileSize`) only once hot: asked for again while their validators are still cached.
 * A hot 1 MiB file answered from memory costs no open, read or close (bench/static, 1 MiB and
 * Range rows), while a scan through many files read once each does not push them out.
 */
export const FIRST_READ_SIZE = 64 * 1024;

export function entryOf(info: FileInfo, rel: string, data: Buffer | null, untrusted: boolean, expiresAt?: number): Entry {
  const r = representationOf(info, rel, data, untrusted, expiresAt);
  // One literal with every field, not a spread: a spread plus added fields made entries slow
  // objects, and the LRU's Set and Maps with them (bench/static's Range cases, +20% CPU).
  return {
    size: r.size,
    mtimeMs: r.mtimeMs,
    ino: r.ino,
    etag: r.etag,
    lastModified: r.lastModified,
    type: r.type,
    untrusted: r.untrusted,
    disposition: r.disposition,
    data: r.data,
    expiresAt: r.expiresAt,
    cost: ENTRY_OVERHEAD + rel.length + (data?.length ?? 0),
    rel,
    map: null,
    gen: 0,
    blocks: null,
  };
}

/** The block holding bytes `start`..`end` of a file, or -1 when they span two. */
export function blockOf(start: number, end: number): number {
  const index = Math.floor(start / BLOCK_SIZE);
  return Math.floor(end / BLOCK_SIZE) === index ? index : -1;
}

/** Does `b` (a fresh stat) show the same file as `a` (what was cached)? */
export const sameFile = (a: FileInfo, b: FileInfo): boolean => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;

export interface MemoryCache {
  /** False when `limits` leave no room for a cache: nothing is remembered. */
  readonly on: boolean;
  /** The entries of `source` (rel → entry); one empty map shared by all when the cache is off. */
  of(source: FileSource): Map<string, Entry>;
  forget(map: Map<string, Entry>, rel: string): void;
  /** Caches `e` as `rel` of `map`, evicting the least recently used entries past `limits.cacheSize`. */
  remember(map: Map<string, Entry>, rel: string, e: Entry): void;
  /** Marks `e` as just used. */
  touch(e: Entry): void;
  /**
   * What `info`, a fresh stat of `rel`, says of `e` (its entry in `map`): the same file (`e`
   * touched), changed or gone (`e` forgotten either way).
   */
  recheck(map: Map<string, Entry>, e: Entry, info: FileInfo | null, rel: string): 'same' | 'changed' | 'gone';
  /** Are the bytes of a file of `size` to be kept? `hot`: its validators are cached (it was asked for recently). */
  admits(size: number, hot: boolean): boolean;
  /**
   * Block `index` of `e` (a cached file kept without its bytes) was just asked for: true when it was
   * asked for before, so it is to be read whole and kept (`keepBlock`); else it is marked.
   */
  blockWanted(e: Entry, index: number): boolean;
  /** Keeps `data`, block `index` of `e`, while `e` is cached; the file's oldest block makes room past its share. */
  keepBlock(e: Entry, index: number, data: Buffer): void;
}

export function createMemoryCache(limits: Limits): MemoryCache {
  const on = limits.cacheFileSize > 0 && limits.cacheSize > 0;
  // One map per source (rel → entry: no key to build per request) and one LRU order over all of
  // them: a Set keeps insertion order, so its first entry is the least recently used.
  const caches = new WeakMap<FileSource, Map<string, Entry>>();
  const noCache = new Map<string, Entry>();
  const order = new Set<Entry>();
  let cached = 0;
  /** Insertions into `order` so far; an entry's `gen` is this count when it was last (re)inserted. */
  let inserts = 0;

  function of(source: FileSource): Map<string, Entry> {
    if (!on) return noCache;
    let map = caches.get(source);
    if (map === undefined) caches.set(source, (map = new Map()));
    return map;
  }

  function forget(map: Map<string, Entry>, rel: string): void {
    const e = map.get(rel);
    if (e === undefined) return;
    map.delete(rel);
    order.delete(e);
    e.map = null;
    cached -= e.cost;
  }

  function remember(map: Map<string, Entry>, rel: string, e: Entry): void {
    forget(map, rel);
    if (e.cost > limits.cacheSize) return;
    e.map = map;
    map.set(rel, e);
    order.add(e);
    e.gen = ++inserts;
    cached += e.cost;
    evict();
  }

  /** Drops the least recently used entries until the cache fits its budget. */
  function evict(): void {
    for (const old of order) {
      if (cached <= limits.cacheSize) break;
      order.delete(old);
      old.map?.delete(old.rel);
      old.map = null;
      cached -= old.cost;
    }
  }

  /** Charges `bytes` more (or less) to `e`, cached. */
  function charge(e: Entry, bytes: number): void {
    e.cost += bytes;
    cached += bytes;
  }

  /**
   * Moving `e` to the young end of the order is two hash-table updates, a measurable share of a
   * 304's CPU, so an entry still in the younger half is left where it is: it cannot be evicted
   * before it has aged through the older half, where its next hit moves it.
   */
  function touch(e: Entry): void {
    if (inserts - e.gen <= order.size >> 1) return;
    order.delete(e);
    order.add(e);
    e.gen = ++inserts;
  }

  function recheck(map: Map<string, Entry>, e: Entry, info: FileInfo | null, rel: string): 'same' | 'changed' | 'gone' {
    if (info !== null && sameFile(info, e)) {
      touch(e);
      return 'same';
    }
    forget(map, rel);
    return info === null ? 'gone' : 'changed';
  }

  const admits = (size: number, hot: boolean): boolean => on && size <= limits.cacheFileSize && (hot || size <= FIRST_READ_SIZE);

  // A file's blocks together get no more room than one file kept whole (`cacheFileSize`).
  const maxBlocks = Math.floor(limits.cacheFileSize / BLOCK_SIZE);

  function blockWanted(e: Entry, index: number): boolean {
    if (maxBlocks === 0 || e.map === null || e.data !== null) return false;
    const blocks = (e.blocks ??= new Map());
    if (blocks.has(index)) return true;
    if (blocks.size >= MAX_MARKS) dropOldest(e, blocks, (b) => b === null);
    blocks.set(index, null);
    charge(e, MARK_COST);
    evict();
    return false;
  }

  function keepBlock(e: Entry, index: number, data: Buffer): void {
    const blocks = e.blocks;
    if (blocks === null || e.map === null || !blocks.has(index) || blocks.get(index) != null) return;
    let kept = 0;
    for (const b of blocks.values()) if (b !== null) kept++;
    if (kept >= maxBlocks) dropOldest(e, blocks, (b) => b !== null);
    blocks.set(index, data);
    charge(e, data.length);
    evict();
  }

  /** Forgets the oldest block of `blocks` (of `e`) that `which` picks, and its charge. */
  function dropOldest(e: Entry, blocks: Map<number, Buffer | null>, which: (b: Buffer | null) => boolean): void {
    for (const [i, b] of blocks) {
      if (!which(b)) continue;
      blocks.delete(i);
      charge(e, -MARK_COST - (b?.length ?? 0));
      return;
    }
  }

  return { on, of, forget, remember, touch, recheck, admits, blockWanted, keepBlock };
}
