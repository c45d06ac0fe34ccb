/** `wharf --version` and `wharf --help`. */
import { readFileSync } from 'node:fs';
import { formatFlags } from './flags.js';
import { SERVE_FLAGS, UPLOAD_FLAGS } from './flag-specs.js';

export function version(): string {
  try {
    // lib/cli/command.js sits in <root>/<outDir>/lib/cli/, whichever outDir it was built into.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function usage(): string {
  return `wharf ${version()}: a file server that speaks H2O Wave's file protocol

Usage:
  wharf [serve] [flags]              run the server
  wharf upload FILE... [--dir]       upload files (or directories) and print their URL paths
  wharf download URL [DEST]          download URL into DEST (a file or directory; default .)
  wharf unload URL                   delete the upload URL points into
  wharf help | --help                this help; wharf COMMAND --help for a command's flags
  wharf --version

Server flags (a flag beats its variable; list variables are separated by "${process.platform === 'win32' ? ';' : ':'}", origins by ","):
${formatFlags(SERVE_FLAGS)}

Transfer flags:
${formatFlags(UPLOAD_FLAGS)}

Sizes: 512MiB, 2GiB, 1.5G (K/M/G/T are powers of 1024), 10MB (SI), or bytes.
Durations: 30s, 10m, 2h, 250ms, or milliseconds.
Exit codes: 0 ok, 1 failed, 2 usage or refused to start.
`;
}
