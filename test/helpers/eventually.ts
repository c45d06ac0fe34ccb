// Waiting for something the test cannot be told about (a descriptor closed, a file removed, a
// timer that fired): polled, with a limit, and a failure that says what never happened.

/** Resolves once `check` holds; rejects after `ms` with `what` in the message. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out (${ms} ms) waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
