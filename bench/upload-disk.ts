// Where bench/uploads stores: a fresh file system per case and server when this process may make
// one (root, mkfs.ext4, mount): an ext4 image on a tmpfs, mounted `-o loop`, so that every server
// writes into the same state of file system and memory, and nothing of one case (or of anyone
// else's deletes) shapes the next. Otherwise a directory under `--data-dir` (or the OS temp dir),
// with a note saying so.
//
// The image has a journal (mkfs's default): ext4 without one (this machine's root file system)
// skips every inode freed in the last ~30 s when it allocates one (`recently_deleted()` in
// fs/ext4/ialloc.c, checked only when there is no journal), so there a server that makes a
// directory per upload slows down run by run as the runs before it are removed. Inode tables are
// written at mkfs (`lazy_itable_init=0`), so no kernel thread initialises them during a run.
// `Disk.settle`, between runs: the journal committed and the freed blocks given back to the tmpfs
// (`fstrim`), so memory holds only what is stored now. Not the `discard` mount option: its discards
// run in the journal's commits, so a run's metadata waited for the deletes of the run before it
// (small files at 3,500–11,000 files/s from one run to the next, against ±15% without).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Disk {
  /** The data dir to give a server. */
  dir: string;
  /** After a run's files were removed: nothing of them left for the next run to wait on. */
  settle(): void;
  /** Unmounts and removes it. */
  dispose(): Promise<void>;
}

export interface Disks {
  /** What each disk is, for the run's header line. */
  readonly note: string;
  /** A disk of at least `bytes` for `label`'s data. */
  make(label: string, bytes: number): Promise<Disk>;
  /** Removes whatever is left (after a failure). */
  close(): Promise<void>;
}

const MiB = 1024 * 1024;

const ok = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
}

/** Fresh ext4 images under `shm` when possible (and `dataDir` was not given), else directories under `dataDir`. */
export async function createDisks(dataDir: string | undefined, shm = '/dev/shm'): Promise<Disks> {
  const why = dataDir !== undefined ? '--data-dir given'
    : process.getuid?.() !== 0 ? 'not root'
    : !ok('mkfs.ext4', ['-V']) ? 'no mkfs.ext4'
    : !ok('findmnt', ['-n', '-t', 'tmpfs', shm]) ? `${shm} is no tmpfs`
    : undefined;
  if (why !== undefined) return directories(dataDir ?? tmpdir(), why);
  const root = await mkdtemp(join(shm, 'wharf-bench-uploads-'));
  const live = new Set<Disk>();
  return {
    note: `a fresh ext4 (128 MiB journal) in a tmpfs image, mounted -o loop, per case and server`,
    async make(label, bytes) {
      const image = join(root, `${label}.img`);
      const dir = join(root, label);
      // Sparse: the tmpfs holds only the blocks written. At least 2 GiB, with a 128 MiB journal, as
      // a real data disk has (mkfs would give a small image 4 MiB, which a run of 1,000 files, each
      // a directory, a file and a rename, fills many times over).
      const size = Math.max(2048 * MiB, Math.ceil(bytes * 1.25 + 256 * MiB));
      run('truncate', ['-s', `${Math.ceil(size / MiB)}M`, image]);
      run('mkfs.ext4', ['-q', '-F', '-i', '8192', '-J', 'size=128', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
      mkdirSync(dir);
      run('mount', ['-o', 'loop,noatime', image, dir]);
      const disk: Disk = {
        dir,
        settle: () => {
          run('sync', ['-f', dir]);
          run('fstrim', [dir]);
        },
        dispose: async () => {
          live.delete(disk);
          run('umount', [dir]);
          rmSync(dir, { recursive: true, force: true });
          rmSync(image, { force: true });
        },
      };
      live.add(disk);
      return disk;
    },
    async close() {
      for (const disk of [...live]) await disk.dispose().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}

function directories(base: string, why: string): Disks {
  let root: string | undefined;
  return {
    note: `directories under ${base} (no fresh file system: ${why}; on ext4 without a journal, removing one run's files slows the next run's directories)`,
    async make(label) {
      root ??= await mkdtemp(join(base, 'wharf-bench-uploads-'));
      const dir = join(root, label);
      mkdirSync(dir);
      return { dir, settle: () => void spawnSync('sync', ['-f', dir]), dispose: () => rm(dir, { recursive: true, force: true }) };
    },
    async close() {
      if (root !== undefined) await rm(root, { recursive: true, force: true });
    },
  };
}
