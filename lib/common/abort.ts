/**
 * The one error every aborted transfer rejects with, client and in-process site alike, so a caller
 * matches `err.code === 'ABORTED'` whichever site it holds.
 */
import { WharfError } from './errors.js';

/** 499, nginx's "client closed request", as both sites say it; the signal's reason is the cause. */
export function abortError(signal: AbortSignal): WharfError {
  return new WharfError('ABORTED', 'the transfer was aborted', 499, { cause: signal.reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
