// One staged file being written (`Staging.file`): an explicit state machine, so that every way a
// batch, an end, a close or a failure can meet is a transition one can read, not a flag combination.
import { closeSync, openSync } from 'node:fs';
import type { Slowness } from '../static/sync-io.js';
import { closeFd, openExclusive, writeAll, writeAllSync } from './disk.js';
import type { Root } from './root.js';
import type { StagedFile } from './storage.js';

// Bytes a file accepts past a batch being written before it pushes back: one socket read. More
// would only move data from the kernel's socket buffer (not our memory) into ours.
const WRITING_AHEAD = 64 * 1024;

/** Write batching shared by the files of one storage. */
export interface WriteMemory {
  batch: number;
  /** Bytes at the start of each file written without the thread pool (see FileWriter). */
  syncBelow: number;
  /** Whether writes on the event loop turned out slow: then none are made until it says otherwise. */
  slowness: Slowness;
  budget: number;
  /** Bytes all writers hold right now, gathered or on their way to disk. */
  held: number;
}

/**
 * Where a writer is. Nothing goes through the thread pool in `gathering`; exactly one operation
 * does in `writing`, `closing` and `failing`, and its landing is the next transition:
 *
 *   gathering ──batch──▶ writing ──landed──▶ gathering (or straight on: closing, done, failed)
 *   gathering ──end──▶ done (written on the event loop) | closing (the last batch, then the close)
 *   writing ──end──▶ writing, ending: the end is acted on when the batch lands
 *   closing ──landed──▶ done
 *   writing | closing ──destroy or failure──▶ failing ──landed──▶ failed (descriptor closed)
 *   gathering ──destroy or failure──▶ failed (`done` rejects once the descriptor is closed)
 */
type WriterState =
  | { readonly kind: 'gathering' }
  | { readonly kind: 'writing'; readonly ending: boolean }
  | { readonly kind: 'closing' }
  | { readonly kind: 'failing'; readonly error: Error }
  | { readonly kind: 'done' }
  | { readonly kind: 'failed'; readonly error: Error };

const GATHERING: WriterState = { kind: 'gathering' };
const WRITING: WriterState = { kind: 'writing', ending: false };
const WRITING_THEN_END: WriterState = { kind: 'writing', ending: true };
const CLOSING: WriterState = { kind: 'closing' };
const DONE: WriterState = { kind: 'done' };

function noop(): void {}

/**
 * A file written with as few syscalls and as little held as possible. Chunks (slices of socket
 * reads, 16–64 KiB) are gathered into batches, each batch one `writev`; a batch is `memory.batch`
 * bytes, or less once all writers together hold `memory.budget`. The batches of a file's first
 * `memory.syncBelow` bytes are written on the event loop, the file opened (and its directory made)
 * at the first; past that, or while a directory is being made through the thread pool, or once the
 * storage proved slow, through the thread pool. While a batch is on its way there, up to
 * `WRITING_AHEAD` more bytes are taken before `write` says to wait (backpressure).
 */
export class FileWriter implements StagedFile {
  readonly done: Promise<number>;
  private state: WriterState = GATHERING;
  private fd: number | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Bytes taken so far. */
  private bytes = 0;
  /** `write` returned false: `drain` is owed. */
  private owed = false;
  private resolveDone!: (size: number) => void;
  private rejectDone!: (err: Error) => void;

  constructor(
    private readonly path: string,
    private readonly dir: string,
    private readonly root: Root,
    private readonly memory: WriteMemory,
    private readonly drain: () => void,
  ) {
    this.done = new Promise<number>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(noop);
  }

  write(chunk: Buffer): boolean {
    const kind = this.state.kind;
    if (kind !== 'gathering' && kind !== 'writing') return true;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    this.memory.held += chunk.length;
    this.bytes += chunk.length;
    if (kind === 'gathering') this.advance(false);
    if (this.takesMore()) return true;
    this.owed = true;
    return false;
  }

  end(): void {
    const state = this.state;
    if (state.kind === 'gathering') this.advance(true);
    else if (state.kind === 'writing') this.state = WRITING_THEN_END;
  }

  destroy(err: Error): void {
    this.fail(err);
  }

  /**
   * Whether what is held makes a write, on the event loop or through the thread pool: a batch, or
   * less once all writers together hold the budget. On the event loop too: a `writev` per 64 KiB
   * (one socket read) made 64 uploads of 1 MiB at once cost 1.2x the CPU of batches (bench/README.md,
   * "What cut upload CPU"): each write of a file costs far more than its bytes' copy.
   */
  private batchFull(): boolean {
    return this.heldBytes >= this.memory.batch || this.memory.held >= this.memory.budget;
  }

  /** False while a batch is on its way and a socket read more is held behind it: backpressure. */
  private takesMore(): boolean {
    return this.state.kind !== 'writing' || this.heldBytes < WRITING_AHEAD;
  }

  /**
   * From `gathering` (after taking bytes, ending, or a batch landing): write here, start a batch,
   * close, or wait for more.
   */
  private advance(ending: boolean): void {
    try {
      if (this.bytes <= this.memory.syncBelow && !this.memory.slowness.slow) {
        if (!ending && !this.batchFull()) return;
        if (this.flushSync()) {
          if (ending) this.closeSync();
          return;
        }
      }
      if (ending) {
        this.state = CLOSING;
        this.flush()
          .then(() => {
            const open = this.fd!;
            this.fd = undefined;
            return closeFd(open);
          })
          .then(() => this.landed(), (err: unknown) => this.lost(err));
      } else if (this.heldBytes > 0 && this.batchFull()) {
        // Never a batch of nothing: with the file already open it would land in a microtask with
        // no I/O, and while other files keep the budget full this would start the next one at once,
        // for ever, starving the event loop (so no socket is read and the budget never comes down).
        this.state = WRITING;
        this.flush().then(() => this.landed(), (err: unknown) => this.lost(err));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** The operation of `writing`, `closing` or `failing` landed. */
  private landed(): void {
    const state = this.state;
    if (state.kind === 'failing') return this.settle(state.error);
    if (state.kind === 'closing') return this.settle(undefined);
    if (state.kind !== 'writing') return;
    this.state = GATHERING;
    this.advance(state.ending);
    if (this.owed && this.state.kind !== 'failed' && this.takesMore()) {
      this.owed = false;
      this.drain();
    }
  }

  /** The operation of `writing`, `closing` or `failing` failed: the first failure is the one told. */
  private lost(err: unknown): void {
    const state = this.state;
    this.settle(state.kind === 'failing' ? state.error : (err as Error));
  }

  private fail(err: unknown): void {
    const kind = this.state.kind;
    if (kind === 'failing' || kind === 'failed' || kind === 'done') return;
    this.drop();
    if (kind === 'writing' || kind === 'closing') this.state = { kind: 'failing', error: err as Error };
    else this.settle(err as Error);
  }

  /** Settles `done` once the descriptor is closed: with the size, or with `error`. */
  private settle(error: Error | undefined): void {
    const open = this.fd;
    this.fd = undefined;
    if (error === undefined) {
      this.state = DONE;
      this.resolveDone(this.bytes);
      return;
    }
    this.state = { kind: 'failed', error };
    if (open === undefined) this.rejectDone(error);
    else closeFd(open).then(() => this.rejectDone(error), () => this.rejectDone(error));
  }

  /** The last bytes were written on the event loop: the close too. */
  private closeSync(): void {
    const open = this.fd!;
    this.fd = undefined;
    closeSync(open);
    this.settle(undefined);
  }

  private drop(): void {
    this.memory.held -= this.heldBytes;
    this.held = [];
    this.heldBytes = 0;
  }

  /** Writes what is held on this thread; false (nothing done) while its directory is made through the thread pool. */
  private flushSync(): boolean {
    const t0 = performance.now();
    try {
      if (this.fd === undefined) {
        if (!this.root.dirSync(this.dir)) return false;
        this.fd = openSync(this.path, 'wx', this.root.modes.file);
      }
      const chunks = this.held;
      const size = this.heldBytes;
      this.drop();
      writeAllSync(this.fd, chunks, size);
      return true;
    } finally {
      this.memory.slowness.timed(t0);
    }
  }

  /** One batch through the thread pool, the file opened (and its directory made) first if need be. */
  private async flush(): Promise<void> {
    const chunks = this.held;
    const size = this.heldBytes;
    this.held = [];
    this.heldBytes = 0;
    try {
      if (this.fd === undefined) {
        await this.root.dir(this.dir);
        this.fd = await openExclusive(this.path, this.root.modes.file);
      }
      if (size > 0) await writeAll(this.fd, chunks, size);
    } finally {
      this.memory.held -= size;
    }
  }
}
