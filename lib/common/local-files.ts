/**
 * The local files an upload sends, read the same way by the HTTP client and the in-process site, so
 * both refuse the same paths with the same words.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { WharfError, fromFsError } from './errors.js';

/** Size of a local file to upload: it must be a regular file (a symlink to one counts). */
export async function localFileSize(path: string): Promise<number> {
  const st = await stat(path).catch((err: unknown) => {
    throw fromFsError(err, `local file ${JSON.stringify(path)}`);
  });
  if (!st.isFile()) throw new WharfError('NOT_A_FILE', `${JSON.stringify(path)} is not a regular file`, 400);
  return st.size;
}

/**
 * The regular files under `dir` as `/`-separated relative paths, sorted. Like Python's `os.walk`
 * (what Wave's `upload_dir` uses), a symlink to a file counts as that file and a symlink to a
 * directory is not followed, so a link cycle cannot loop. Fs errors are thrown as they come.
 */
export async function walkFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  // By code unit, not locale: the same order on every machine.
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await walkFiles(dir, rel)));
    else if (entry.isFile()) out.push(rel);
    else if (entry.isSymbolicLink() && (await stat(join(dir, rel)).then((s) => s.isFile(), () => false))) out.push(rel);
  }
  return out;
}
