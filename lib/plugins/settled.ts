// What every framework plugin waits on: the answer wharf writes, to its end (or its abort), so the
// framework's own hooks and loggers after it see a finished response.
import type { ServerResponse } from 'node:http';
import { finished } from 'node:stream';

/** Resolves once `res` has finished or closed, whichever way; never rejects (an abort is wharf's to handle). */
export function settled(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    finished(res, { readable: false }, () => resolve());
  });
}

/** Runs wharf's `handle`: true when it took the request, false when it is not wharf's (its `next` was called). */
export function handled(handle: (req: never, res: never, next: () => void) => void, req: unknown, res: unknown): boolean {
  let passed = false;
  // `handle` calls `next` synchronously when no route matches: nothing was answered.
  handle(req as never, res as never, () => {
    passed = true;
  });
  return !passed;
}
