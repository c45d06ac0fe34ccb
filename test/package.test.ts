// The package as a user gets it: a checkout with no dist/ is packed (`npm pack`, whose `prepare`
// builds it), the tarball is installed into a fresh project that has nothing else, and that project
// imports the library and the client, type-checks against the shipped types, and runs the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from './helpers/temp-dir.js';

const exec = promisify(execFile);
// The children run the package, not this checkout's lib/: coverage (c8's NODE_V8_COVERAGE) has
// nothing to count in them, and only slows tsc and npm down.
const { NODE_V8_COVERAGE: _coverage, ...ENV } = process.env;
const run = (file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<{ stdout: string; stderr: string }> =>
  exec(file, args, { ...options, env: { ...ENV, ...options.env } });
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
/** What a checkout holds that the package is built from (no dist/, no tests). */
const SOURCES = ['lib', 'bin', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'CHANGELOG.md'];
const NPM_QUIET = ['--no-audit', '--no-fund', '--loglevel=error'];

/** Every file under `dir`, relative, with `/` separators. */
async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await filesUnder(join(dir, e.name), `${prefix}${e.name}/`)));
    else out.push(prefix + e.name);
  }
  return out;
}

// What the fresh project runs: the server and the client of the installed package, end to end.
const USE_JS = `
import { createFileServer, WharfError } from 'wharf-files';
import { connect } from 'wharf-files/client';
import { writeFile } from 'node:fs/promises';
const files = createFileServer({ dataDir: './data', accessKeys: { app: 'app-secret' } });
const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
await writeFile('hello.txt', 'hello from the tarball');
const site = connect(url, { accessKeyId: 'app', accessKeySecret: 'app-secret' });
const [path] = await site.upload(['hello.txt']);
const body = await (await fetch(url + path)).text();
await files.close();
console.log(JSON.stringify({ path, body, typed: typeof WharfError }));
`;

// Type-checked only: a wrong option must be a type error, so the check below is not vacuous.
const USE_TS = `
import { createFileServer, type FileServerOptions, type UploadEvent } from 'wharf-files';
import { connect, type ConnectOptions } from 'wharf-files/client';
const options: FileServerOptions = { dataDir: './data', onUpload: (e: UploadEvent) => { void e.id; } };
const files = createFileServer(options);
const client: ConnectOptions = { accessKeyId: 'a', accessKeySecret: 'b' };
const site = connect('http://127.0.0.1:10101', client);
export const paths: Promise<string[]> = site.upload(['a.txt']);
export const closed: Promise<void> = files.close();
`;
const WRONG_TS = `
import { createFileServer } from 'wharf-files';
createFileServer({ dataDir: 42 });
`;

test('npm pack of a checkout without dist/, installed into a bare project: library, client, types and command', { timeout: 120_000 }, async (t) => {
  const tmp = await tempDir(t, 'wharf-package-');
  const checkout = join(tmp, 'checkout');
  await mkdir(checkout);
  for (const s of SOURCES) await cp(join(ROOT, s), join(checkout, s), { recursive: true });
  await symlink(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));

  // `npm pack` runs `prepare`, which builds dist/ from nothing.
  const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp, ...NPM_QUIET], { cwd: checkout });
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; name: string; files: Array<{ path: string }> }>;
  assert.equal(info!.name, 'wharf-files');
  const shipped = info!.files.map((f) => f.path);
  for (const must of ['bin/wharf.js', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/client/index.js', 'dist/lib/client/index.d.ts', 'dist/lib/cli/command.js', 'README.md', 'LICENSE', 'package.json']) {
    assert.ok(shipped.includes(must), `the tarball ships ${must}`);
  }
  assert.deepEqual(shipped.filter((p) => !p.startsWith('dist/lib/') && !p.startsWith('bin/') && !['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'].includes(p)), [], 'nothing but the library, the command and the docs');
  assert.deepEqual(shipped.filter((p) => p.endsWith('.map') || p.endsWith('.ts') && !p.endsWith('.d.ts')), [], 'no maps or sources pointing at files not shipped');

  // A project that has nothing installed: the tarball has no dependencies, so it installs offline.
  const project = join(tmp, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'fresh-project', private: true, type: 'module' }));
  await run('npm', ['install', '--offline', ...NPM_QUIET, join(tmp, info!.filename)], { cwd: project });
  const installed = await filesUnder(join(project, 'node_modules'));
  assert.deepEqual(installed.filter((p) => !p.startsWith('wharf-files/') && !p.startsWith('.')), [], 'no other package came with it');

  await writeFile(join(project, 'use.mjs'), USE_JS);
  const used = JSON.parse((await run(process.execPath, ['use.mjs'], { cwd: project })).stdout) as { path: string; body: string; typed: string };
  assert.match(used.path, /^\/_f\/[0-9a-f-]{36}\/hello\.txt$/);
  assert.equal(used.body, 'hello from the tarball');
  assert.equal(used.typed, 'function');

  // The shipped types under `module`/`moduleResolution: nodenext`, with the project's own @types/node.
  const tsconfig = (files: string[]): string => JSON.stringify({
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] },
    files,
  });
  // One run over both files: the usage compiles clean, the wrong option is a type error (so the check is not vacuous).
  await writeFile(join(project, 'use.ts'), USE_TS);
  await writeFile(join(project, 'wrong.ts'), WRONG_TS);
  await writeFile(join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] },
    files: ['use.ts', 'wrong.ts'],
  }));
  const checked = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: project }).then(() => 'no error at all', (err: { stdout: string }) => err.stdout);
  const errors = checked.split('\n').filter((l) => / error TS\d+/.test(l));
  assert.ok(errors.length > 0 && errors.every((l) => l.startsWith('wrong.ts(3,')), `only the wrong option is an error:\n${checked}`);
  assert.match(errors[0]!, /error TS2322/);

  // The command, as `npx` finds it in the project.
  // Offline: should the local bin be missing, npx must fail rather than fetch the registry's unrelated `wharf`.
  const help = await run('npx', ['wharf', '--help'], { cwd: project, env: { npm_config_offline: 'true' } });
  assert.match(help.stdout, /^wharf 0\.\d+\.\d+: /);
  assert.match(help.stdout, /--data-dir DIR/);
  assert.equal(help.stderr, '');
  const version = JSON.parse(await readFile(join(project, 'node_modules', 'wharf-files', 'package.json'), 'utf8')) as { version: string };
  assert.equal((await run(join(project, 'node_modules', '.bin', 'wharf'), ['--version'], { cwd: project })).stdout.trim(), version.version);
});

test('bin/wharf.js in a checkout never built: one line saying what to run, exit 2, no stack trace', async (t) => {
  const checkout = await tempDir(t, 'wharf-unbuilt-');
  await cp(join(ROOT, 'bin'), join(checkout, 'bin'), { recursive: true });
  await cp(join(ROOT, 'package.json'), join(checkout, 'package.json'));
  const failed = await run(process.execPath, [join(checkout, 'bin', 'wharf.js'), '--help'], { cwd: checkout }).then(
    () => undefined,
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  assert.ok(failed, 'it fails');
  assert.equal(failed.code, 2);
  assert.equal(failed.stdout, '');
  assert.equal(failed.stderr, 'wharf: not built yet: run `npm install` (or `npm run build`) in the package directory first\n');
});
