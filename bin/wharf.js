#!/usr/bin/env node
// The `wharf` command. Its code lives in dist/, which a published package ships and which
// `npm install` builds (the `prepare` script) in a clone or a git install: a checkout that was never
// built gets one line saying what to run, not a stack trace.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/lib/cli/command.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('wharf: not built yet: run `npm install` (or `npm run build`) in the package directory first\n');
  process.exit(2);
}
const { main } = await import(entry.href);
main(process.argv.slice(2)).then((code) => { if (typeof code === 'number') process.exitCode = code; });
