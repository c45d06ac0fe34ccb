/**
 * Decides whether synchronous file-system calls are cheap enough to make on the event loop.
 *
 * On a local, warm file system a metadata call or a page-cache write takes a few µs to a few tens
 * of µs, less than the ~20 µs of CPU one thread-pool round trip costs (two thread wake-ups, an
 * eventfd, an epoll turn; bench/static and bench/uploads). On network storage, FUSE, a cold disk or
 * a disk the kernel is throttling writers on, the same call can block for milliseconds, and the
 * event loop with it. So callers time their synchronous calls and go asynchronous once this says
 * the storage is slow.
 *
 * A call over SLOW_CALL_MS counts as slow. Slow calls are counted with decay rather than averaged:
 * a busy machine preempts a process now and then for many ms, which an average would take for slow
 * storage, while slow storage makes nearly every call slow. The storage is slow once the decayed
 * count passes SLOW_SCORE, half of its ceiling 1 / (1 - SLOW_DECAY): after about twenty slow calls.
 *
 * Slow is not for ever: a busy minute on a shared machine (or a disk that caught up) must not send
 * every write through the thread pool for the rest of the process's life. Once slow, calls stop
 * being made (so nothing can be timed) for a back-off, FIRST_BACKOFF_MS; then they are tried again,
 * with the count just under the threshold so that storage still slow trips it again within a few
 * calls. A trip soon after the last (within the back-off it followed) doubles the back-off, up to
 * MAX_BACKOFF_MS: storage that is really slow costs a few slow calls every five minutes.
 */
const SLOW_CALL_MS = 1;
const SLOW_DECAY = 31 / 32;
const SLOW_SCORE = 16;
/** Where the count restarts after a back-off: four slow calls in a row trip it again. */
const PROBATION_SCORE = SLOW_SCORE - 2;
const FIRST_BACKOFF_MS = 10_000;
const MAX_BACKOFF_MS = 5 * 60_000;

export interface Slowness {
  /** True while synchronous calls are to be avoided: they turned out mostly slow, and the back-off has not run out. */
  readonly slow: boolean;
  /** Feeds one synchronous call that started at `t0` (`performance.now()`) and just ended. */
  timed(t0: number): void;
}

export function createSlowness(): Slowness {
  let score = 0;
  let backoff = FIRST_BACKOFF_MS;
  // When the last back-off ended (Date.now(): only compared with a back-off of seconds), or -Infinity before the first.
  let retried = -Infinity;
  const slowness = {
    slow: false,
    timed(t0: number): void {
      const now = performance.now();
      score = score * SLOW_DECAY + (now - t0 > SLOW_CALL_MS ? 1 : 0);
      if (score <= SLOW_SCORE || slowness.slow) return;
      slowness.slow = true;
      backoff = Date.now() - retried < backoff ? Math.min(backoff * 2, MAX_BACKOFF_MS) : FIRST_BACKOFF_MS;
      // A timer, not a clock read on every call: `slow` stays a plain field on the hot path.
      setTimeout(() => {
        slowness.slow = false;
        score = PROBATION_SCORE;
        retried = Date.now();
      }, backoff).unref();
    },
  };
  return slowness;
}

/**
 * Whether small file-system calls may be made synchronously on the event loop: `'auto'` while they
 * prove cheap (above), `'off'` never — for storage known to block (NFS, EFS, CephFS, FUSE).
 */
export type SyncIo = 'auto' | 'off';

const ALWAYS_SLOW: Slowness = Object.freeze({ slow: true, timed(): void {} });

/** The detector for `mode`: `'off'` is slow for good, and times nothing. */
export const slownessFor = (mode: SyncIo = 'auto'): Slowness => (mode === 'off' ? ALWAYS_SLOW : createSlowness());
