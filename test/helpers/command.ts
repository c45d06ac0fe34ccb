// Runs the `wharf` command as a child process: `node -e <runner> <command module URL> args…`.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { TestContext } from 'node:test';
import { defer } from './defer.js';

/** The compiled command module, next to this compiled test whatever the output directory. */
export const COMMAND = new URL('../../lib/cli/command.js', import.meta.url).href;
const RUNNER = 'const [u, ...a] = process.argv.slice(1); import(u).then((m) => m.main(a)).then((c) => { process.exitCode = c; });';

/** The parent's environment without any WHARF_* variable, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WHARF_')) out[k] = v;
  return { ...out, ...env };
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Child {
  proc: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  exited: Promise<Result>;
}

export function spawnWharf(t: TestContext, args: string[], env: Record<string, string> = {}, cwd?: string, timeout = 0): Child {
  const proc = spawn(process.execPath, ['-e', RUNNER, COMMAND, ...args], { env: childEnv(env), timeout, ...(cwd ? { cwd } : {}) });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  proc.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const exited = new Promise<Result>((resolve) => {
    proc.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  // Killed and waited for: a child still running when its data dir is removed writes into it (ENOTEMPTY).
  defer(t, async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await exited;
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** Runs the command to its end (killed after 30 s: a command that should have ended must not hang the suite). */
export function runWharf(t: TestContext, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Result> {
  return spawnWharf(t, args, env, cwd, 30_000).exited;
}

/** Starts `wharf serve` with JSON logs and resolves once it listens, with its URL and its parsed output so far. */
export async function startWharfProcess(t: TestContext, args: string[], env: Record<string, string> = {}): Promise<Child & { url: string; lines(): Array<Record<string, unknown>> }> {
  const child = spawnWharf(t, args, env);
  const lines = (): Array<Record<string, unknown>> =>
    child.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const url = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      const listening = lines().find((l) => l.event === 'listening');
      if (listening) {
        child.proc.stdout.off('data', check);
        resolve(String(listening.url));
      }
    };
    child.proc.stdout.on('data', check);
    void child.exited.then((r) => reject(new Error(`wharf exited (${r.code}) before listening: ${r.stderr}`)));
  });
  return { ...child, url, lines };
}
