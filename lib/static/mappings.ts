// Directory mappings (`URL@PATH`, as Wave writes them): parsed, normalised and checked at start-up,
// so a mistake fails fast instead of turning into a 404 nobody can explain.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { WharfError } from '../common/errors.js';
import { canonicalPrefix } from '../http/request-path.js';

export interface Mapping {
  /** Canonical URL prefix: percent-encoded, leading and trailing `/`. */
  prefix: string;
  /** Absolute directory path. */
  path: string;
  private: boolean;
}

const invalid = (message: string): WharfError => new WharfError('INVALID_OPTION', message);

/** `'/datasets/@/srv/data'` or `{ url, path }` → a mapping; the split is at the first `@`, so paths may contain `@`. */
export function parseMapping(spec: unknown, isPrivate: boolean): Mapping {
  const what = isPrivate ? 'privateDirs' : 'publicDirs';
  let url: unknown;
  let path: unknown;
  if (typeof spec === 'string') {
    const at = spec.indexOf('@');
    if (at < 0) throw invalid(`${what}: "${spec}" is not URL@PATH (no "@"), e.g. "/datasets/@/srv/data"`);
    url = spec.slice(0, at);
    path = spec.slice(at + 1);
  } else if (spec !== null && typeof spec === 'object') {
    ({ url, path } = spec as { url?: unknown; path?: unknown });
  } else {
    throw invalid(`${what}: expected "URL@PATH" or { url, path }, got ${typeof spec}`);
  }
  if (typeof url !== 'string' || url.trim() === '') throw invalid(`${what}: empty URL in ${JSON.stringify(spec)}`);
  if (typeof path !== 'string' || path.trim() === '') throw invalid(`${what}: empty path in ${JSON.stringify(spec)}`);
  if (path.includes('\0')) throw invalid(`${what}: path may not contain NUL`);
  return { prefix: canonicalPrefix(url.trim(), what), path: resolve(path), private: isPrivate };
}

/**
 * All mappings, checked against each other and against wharf's own routes: two mappings on one
 * URL, or one at or under `{base}_f/` or `{base}_m/` (whose URLs always go to uploads and streams,
 * so such a mapping could never be reached), fail fast.
 */
export function parseMappings(publicDirs: unknown, privateDirs: unknown, base: string): Mapping[] {
  const out: Mapping[] = [];
  for (const [list, isPrivate] of [[publicDirs, false], [privateDirs, true]] as const) {
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw invalid(`${isPrivate ? 'privateDirs' : 'publicDirs'}: expected an array`);
    for (const spec of list) out.push(parseMapping(spec, isPrivate));
  }
  const seen = new Set<string>();
  for (const m of out) {
    if (seen.has(m.prefix)) throw invalid(`two mappings on one URL: ${m.prefix}`);
    seen.add(m.prefix);
    for (const own of [`${base}_f/`, `${base}_m/`]) {
      if (m.prefix.startsWith(own)) throw invalid(`mapping ${m.prefix} is under ${own}, which is wharf's own route`);
    }
  }
  // Longest prefix first: /a/b/ wins over /a/.
  return out.sort((a, b) => b.prefix.length - a.prefix.length);
}

/** A warning for each mapped directory that is missing (Wave learned: volumes get mounted after start). */
export function missingDirWarnings(mappings: Mapping[]): string[] {
  const out: string[] = [];
  for (const m of mappings) {
    let problem: string | undefined;
    try {
      if (!statSync(m.path).isDirectory()) problem = 'is not a directory';
    } catch (err) {
      problem = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist (yet)' : `cannot be read (${(err as NodeJS.ErrnoException).code})`;
    }
    if (problem) out.push(`wharf: WARNING: mapped directory ${m.path} ${problem}; ${m.prefix} answers 404 until it appears`);
  }
  return out;
}
