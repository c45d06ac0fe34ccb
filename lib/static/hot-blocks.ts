// Hot blocks: a Range of a file too big to keep whole, answered from an aligned block of it held in
// memory (memory-cache.ts keeps the blocks and bounds them). Which block a request falls within,
// and answering from it once the file was just opened; the engine answers from a kept block after
// a stat alone (engine.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WharfError } from '../common/errors.js';
import { sendError } from '../http/answer.js';
import { answerFromBlock, isConditional, spanOf, UNSATISFIABLE, type Span } from './answer.js';
import type { FileSource, Missing, OpenFile } from './engine.js';
import { BLOCK_SIZE, blockOf, type Entry, type MemoryCache } from './memory-cache.js';

/**
 * The span of a plain ranged GET of `e` (no precondition but `If-Range`, which `spanOf` applies)
 * when it falls within one block; null otherwise.
 */
export function blockSpan(req: IncomingMessage, e: Entry): Span | null {
  if (req.headers.range === undefined || req.method !== 'GET' || isConditional(req.headers)) return null;
  const span = spanOf(req, e);
  if (span === null || span === UNSATISFIABLE) return null;
  return blockOf(span[0], span[1]) >= 0 ? span : null;
}

/**
 * Answers a Range within a block of `hit` kept in memory after one stat, without opening the file:
 * true once answered (a 404 too, the file being gone), false when the file is to be opened (no
 * such block kept, no cheap stat, or the file changed: `hit` is forgotten then).
 */
export function answeredFromKeptBlock(cache: MemoryCache, req: IncomingMessage, res: ServerResponse, source: FileSource, map: Map<string, Entry>, hit: Entry, rel: string, cacheControl: string, missing: Missing): boolean {
  const span = blockSpan(req, hit);
  const index = span !== null ? blockOf(span[0], span[1]) : -1;
  const block = hit.blocks?.get(index);
  if (block == null) return false;
  const info = source.statSync?.(rel);
  if (info === undefined) return false;
  const state = cache.recheck(map, hit, info, rel);
  if (state === 'gone') missing(req, res);
  else if (state === 'same') answerFromBlock(req, res, hit, rel, span!, block, index * BLOCK_SIZE, cacheControl);
  return state !== 'changed';
}

/**
 * Answers `span` of `e` (just opened as `file`) from a block in memory: kept, or read whole now
 * because it was asked for before. False, `file` untouched, when that block is not hot (yet).
 */
export async function answeredFromBlocks(cache: MemoryCache, req: IncomingMessage, res: ServerResponse, e: Entry, rel: string, file: OpenFile, span: Span, cacheControl: string): Promise<boolean> {
  const index = blockOf(span[0], span[1]);
  const start = index * BLOCK_SIZE;
  let block = e.blocks?.get(index);
  if (block == null) {
    if (file.read === undefined || !cache.blockWanted(e, index)) return false;
    const end = Math.min(start + BLOCK_SIZE, e.size) - 1;
    block = await file.read(start, end);
    if (block.length !== end - start + 1) {
      sendError(res, new WharfError('FILE_CHANGED', 'the file changed while it was read; try again', 503));
      return true;
    }
    cache.keepBlock(e, index, block);
  } else {
    void file.close();
  }
  answerFromBlock(req, res, e, rel, span, block, start, cacheControl);
  return true;
}
