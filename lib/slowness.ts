/**
 * Decides whether synchronous file-system calls are cheap enough to make on the event loop.
 *
 * On a local, warm file system a metadata call or a page-cache write takes a few µs to a few tens
 * of µs, less than the ~20 µs of CPU one thread-pool round trip costs (two thread wake-ups, an
 * eventfd, an epoll turn; bench/static and bench/uploads). On network storage, FUSE, a cold disk or
 * a disk the kernel is throttling writers on, the same call can block for milliseconds, and the
 * event loop with it. So callers time their synchronous calls and go asynchronous for good once
 * this says the storage is slow.
 *
 * A call over SLOW_CALL_MS counts as slow. Slow calls are counted with decay rather than averaged:
 * a busy machine preempts a process now and then for many ms, which an average would take for slow
 * storage, while slow storage makes nearly every call slow. The storage is slow once the decayed
 * count passes SLOW_SCORE, half of its ceiling 1 / (1 - SLOW_DECAY): after about twenty slow calls.
 */
const SLOW_CALL_MS = 1;
const SLOW_DECAY = 31 / 32;
const SLOW_SCORE = 16;

export interface Slowness {
  /** True once the synchronous calls timed so far were mostly slow; it stays true. */
  readonly slow: boolean;
  /** Feeds one synchronous call that started at `t0` (`performance.now()`) and just ended. */
  timed(t0: number): void;
}

export function createSlowness(): Slowness {
  let score = 0;
  const slowness = {
    slow: false,
    timed(t0: number): void {
      score = score * SLOW_DECAY + (performance.now() - t0 > SLOW_CALL_MS ? 1 : 0);
      if (score > SLOW_SCORE) slowness.slow = true;
    },
  };
  return slowness;
}
