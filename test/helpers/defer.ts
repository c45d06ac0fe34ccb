// The tests' one way to clean up after a test: Go's `t.Cleanup`, not node:test's `t.after`.
// `t.after` runs hooks first-registered-first and stops at the first that throws, so a temp dir made
// before a server was removed while the server still wrote into it (ENOTEMPTY), and the hooks after
// it, the ones that killed the child processes, never ran: the file's process never exited and the
// suite hung. Here the last registered runs first (a server stops before its dir goes), every
// cleanup runs whatever the others do, and their errors are reported together.

interface Hooks {
  after(fn: () => Promise<void>): void;
}

const stacks = new WeakMap<Hooks, Array<() => unknown>>();

/** Runs `fn` when `t` ends, before everything deferred earlier on `t`. */
export function defer(t: Hooks, fn: () => unknown): void {
  let stack = stacks.get(t);
  if (stack === undefined) {
    const mine: Array<() => unknown> = [];
    stacks.set(t, (stack = mine));
    t.after(() => unwind(mine));
  }
  stack.push(fn);
}

async function unwind(stack: Array<() => unknown>): Promise<void> {
  const errors: unknown[] = [];
  while (stack.length > 0) {
    const fn = stack.pop()!;
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
}
