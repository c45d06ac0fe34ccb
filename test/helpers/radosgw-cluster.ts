// A throw-away Ceph cluster with its S3 gateway (radosgw), for the tests and benchmarks of the S3
// storage: one monitor, one OSD keeping objects in RAM (memstore), no manager, no cephx, every daemon
// on 127.0.0.1 and free ports, everything (config, data, pids, logs, sockets) in one temp dir.
// Debian's packages ceph-mon, ceph-osd, radosgw and ceph-common (.ci/run installs them).
//
// This module knows nothing of node:test (the benchmarks use it); test/helpers/radosgw.ts gives the
// tests one cluster per test file on top of it.
//
// Each daemon runs in the foreground under a small sh watchdog that SIGKILLs it when its stdin
// closes: stopping is closing stdin and waiting for the watchdog's exit, and a test process that dies
// any other way (killed, crashed) closes that pipe too, so no daemon outlives it. SIGKILL, not a
// clean shutdown: the data is throw-away, and memstore would first write all of it to disk.
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { freePort } from './free-port.js';
import { makeTempDir } from './temp-dir.js';

/** What the cluster needs installed (`ceph` and `monmaptool` come with ceph-common, ceph-mon). */
export const CEPH_BINARIES = ['/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/radosgw', '/usr/bin/radosgw-admin', '/usr/bin/ceph', '/usr/bin/monmaptool'];
export const CEPH_INSTALL = 'apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common';

/** The binaries are installed. */
export function radosgwAvailable(): boolean {
  return CEPH_BINARIES.every((b) => existsSync(b));
}

export interface RadosgwCluster {
  /** `http://127.0.0.1:<port>`: path-style S3. */
  endpoint: string;
  /** Any region does (radosgw ignores it); the clients sign with this one. */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The cluster's temp dir (logs under `log/`). */
  dir: string;
  /**
   * A new client of the gateway: path style, and checksums only where an operation requires one
   * (this radosgw refuses the SDK's default aws-chunked stream uploads with 411). Destroyed by `stop`.
   */
  client(): S3Client;
  /** Kills radosgw only (the S3 endpoint goes away; the cluster stays) and waits for its exit. */
  stopGateway(): Promise<void>;
  /** Starts radosgw again on the same port; resolves once it answers HTTP. */
  startGateway(): Promise<void>;
  gatewayRunning(): boolean;
  /** Kills every daemon, waits for their exits, removes the temp dir. */
  stop(): Promise<void>;
}

/** Generous: a busy 2-core machine with other clusters starting beside this one. */
const STEP_TIMEOUT = 120_000;
const GATEWAY_TIMEOUT = 120_000;

export interface RadosgwOptions {
  /**
   * Seconds before the tail of a deleted or overwritten object is freed (60 by default: a download
   * under way keeps reading it meanwhile). The benchmark, storing 512 MiB objects over and over in
   * an OSD that keeps them in RAM, wants them gone sooner.
   */
  gcSeconds?: number;
}

/** Starts a cluster and its gateway, with an S3 user; resolves once the gateway answers. */
export async function startRadosgw(options: RadosgwOptions = {}): Promise<RadosgwCluster> {
  if (!radosgwAvailable()) throw new Error(`radosgw is not installed (need ${CEPH_BINARIES.join(', ')}): ${CEPH_INSTALL}`);
  const { dir, cleanup } = await makeTempDir('wharf-rgw-');
  leftDirs.add(dir);
  const daemons: Daemon[] = [];
  const clients: S3Client[] = [];
  let gateway: Daemon | undefined;
  const stopAll = async (): Promise<void> => {
    for (const c of clients.splice(0)) c.destroy();
    await Promise.all(daemons.splice(0).map((d) => d.stop()));
    await cleanup();
    leftDirs.delete(dir);
  };
  try {
    const ports = { mon: await freePort(), gateway: await freePort() };
    const conf = await writeCluster(dir, ports, options.gcSeconds ?? 60);
    daemons.push(await startMon(dir, conf));
    daemons.push(await startOsd(dir, conf));
    const endpoint = `http://127.0.0.1:${ports.gateway}`;
    const startGateway = async (): Promise<void> => {
      if (gateway?.running()) return;
      gateway = startDaemon(dir, 'client.rgw', '/usr/bin/radosgw', ['-f', '-c', conf, '-n', 'client.rgw']);
      daemons.push(gateway);
      await waitForGateway(gateway, endpoint).catch(async (err: Error) => {
        throw new Error(`${err.message}${await logTails(dir, ['client.rgw'])}`);
      });
    };
    await startGateway();
    const keys = await createUser(conf);
    return {
      endpoint,
      region: 'us-east-1',
      ...keys,
      dir,
      client() {
        const c = new S3Client({
          endpoint,
          region: 'us-east-1',
          credentials: keys,
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        });
        clients.push(c);
        return c;
      },
      async stopGateway() {
        const g = gateway;
        if (!g) return;
        gateway = undefined;
        daemons.splice(daemons.indexOf(g), 1);
        await g.stop();
      },
      startGateway,
      gatewayRunning: () => gateway?.running() ?? false,
      stop: stopAll,
    };
  } catch (err) {
    const logs = await logTails(dir, ['mon.a', 'osd.0', 'client.admin']);
    await stopAll();
    throw new Error(`the radosgw test cluster did not start: ${(err as Error).message}${logs}`);
  }
}

/** The config, the monitor's map and the data dirs. Returns the config's path. */
async function writeCluster(dir: string, ports: { mon: number; gateway: number }, gcSeconds: number): Promise<string> {
  for (const d of ['mon', 'osd/osd.0', 'run', 'log', 'rgw', 'crash']) await mkdir(join(dir, d), { recursive: true });
  const fsid = randomUUID();
  const conf = join(dir, 'ceph.conf');
  await writeFile(conf, cephConf(dir, fsid, ports, gcSeconds));
  const monmap = join(dir, 'monmap');
  await run('/usr/bin/monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${ports.mon}]`, monmap]);
  await run('/usr/bin/ceph-mon', ['--mkfs', '-c', conf, '-i', 'a', '--monmap', monmap]);
  return conf;
}

/**
 * The smallest config that runs: msgr2 only, no auth (so the clients' mon connections must allow
 * `crc` mode: `secure` needs cephx), pools of one replica and few PGs (one OSD, no manager to scale
 * them), the monitor never stopping for a nearly full disk, and proposing map changes every 50 ms
 * rather than every second (the gateway's first start creates pools one after another: 11 s → 1 s).
 * Watches time out after 5 s (clients ping them every second), not 30: a killed gateway's watch on
 * its control objects would otherwise hold every metadata change (a bucket created or removed), which
 * notifies all watchers, for 30 s after the gateway comes back.
 * For the gateway: deleted objects'
 * tails collected after `gcSeconds` (not 2 h: memstore holds them in RAM), and a lifecycle "day" of 5 s
 * (`rgw lc debug interval`), so a bucket lifecycle rule (AbortIncompleteMultipartUpload after 1 day)
 * acts within a test; buckets without rules are not touched by it.
 */
export function cephConf(dir: string, fsid: string, ports: { mon: number; gateway: number }, gcSeconds: number): string {
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${ports.mon}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
keyring = ${dir}/keyring
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
mon cluster log file = ${dir}/log/cluster.log
log to stderr = false
err to stderr = true
crash dir = ${dir}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon data avail crit = 0
mon data avail warn = 0
paxos propose interval = 0.05
osd client watch timeout = 5
objecter tick interval = 1

[mon]
mon data = ${dir}/mon/$name

[osd]
osd data = ${dir}/osd/$name
osd objectstore = memstore
memstore device bytes = ${8 * 1024 ** 3}

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${ports.gateway}
rgw data = ${dir}/rgw
rgw gc obj min wait = ${gcSeconds}
rgw gc processor period = ${Math.max(1, Math.ceil(gcSeconds / 2))}
rgw lc debug interval = 5
`;
}

async function startMon(dir: string, conf: string): Promise<Daemon> {
  return startDaemon(dir, 'mon.a', '/usr/bin/ceph-mon', ['-f', '-c', conf, '-i', 'a']);
}

/** Registers OSD 0 with the monitor (which also waits for the monitor), makes its store, starts it. */
async function startOsd(dir: string, conf: string): Promise<Daemon> {
  const uuid = randomUUID();
  await run('/usr/bin/ceph', ['-c', conf, '--connect-timeout', String(STEP_TIMEOUT / 1000), 'osd', 'new', uuid]);
  await run('/usr/bin/ceph-osd', ['--mkfs', '-c', conf, '-i', '0', '--osd-uuid', uuid]);
  return startDaemon(dir, 'osd.0', '/usr/bin/ceph-osd', ['-f', '-c', conf, '-i', '0']);
}

/** An S3 user with fresh random keys. */
async function createUser(conf: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  const accessKeyId = randomBytes(10).toString('hex').toUpperCase();
  const secretAccessKey = randomBytes(20).toString('hex');
  await run('/usr/bin/radosgw-admin', ['-c', conf, 'user', 'create', '--uid=wharf', '--display-name=wharf tests', `--access-key=${accessKeyId}`, `--secret=${secretAccessKey}`]);
  return { accessKeyId, secretAccessKey };
}

/** Runs a command to its end; rejects with its stderr when it fails or takes over STEP_TIMEOUT. */
function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: STEP_TIMEOUT, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = err.killed ? `killed after ${STEP_TIMEOUT / 1000} s` : `exit ${err.code ?? err.signal}`;
      reject(new Error(`${file} ${args.join(' ')}: ${why}\n${tail(String(stderr), 20)}`));
    });
  });
}

interface Daemon {
  running(): boolean;
  /** The last lines it wrote to stderr, and how it ended if it did. */
  describe(): string;
  stop(): Promise<void>;
}

/**
 * The watchdog: runs the daemon in the background, a reader of the watchdog's stdin (fd 3: an
 * asynchronous list's own stdin is /dev/null) kills it at EOF, and the watchdog exits once the daemon
 * has, whichever way it went.
 */
const WATCHDOG = 'exec 3<&0; "$@" </dev/null & pid=$!; { read -r _ <&3; kill -9 "$pid" 2>/dev/null; } & reader=$!; wait "$pid"; s=$?; kill "$reader" 2>/dev/null; exit "$s"';

function startDaemon(dir: string, name: string, file: string, args: string[]): Daemon {
  const proc: ChildProcessByStdio<Writable, null, Readable> = spawn('/bin/sh', ['-c', WATCHDOG, 'watchdog', file, ...args], { stdio: ['pipe', 'ignore', 'pipe'], cwd: dir });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr = (stderr + s).slice(-8192);
  });
  proc.stdin.on('error', () => {}); // EPIPE when the watchdog is already gone
  let ended = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', (code, signal) => {
    ended = `exited (${code ?? signal})`;
    resolve();
  }));
  return {
    running: () => ended === '',
    describe: () => `${name} ${ended || 'running'}; its stderr:\n${tail(stderr, 20)}`,
    async stop() {
      proc.stdin.end();
      await exited;
    },
  };
}

/** Resolves once the gateway answers an HTTP request; rejects if it exits or takes too long. */
async function waitForGateway(gateway: Daemon, endpoint: string): Promise<void> {
  const until = Date.now() + GATEWAY_TIMEOUT;
  for (;;) {
    if (!gateway.running()) throw new Error(`radosgw stopped before answering: ${gateway.describe()}`);
    if (await answers(endpoint)) return;
    if (Date.now() > until) throw new Error(`radosgw did not answer at ${endpoint} within ${GATEWAY_TIMEOUT / 1000} s: ${gateway.describe()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function answers(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(endpoint, { timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** The end of these daemons' logs, for an error that says why the cluster did not come up. */
async function logTails(dir: string, names: string[]): Promise<string> {
  let out = '';
  for (const name of names) {
    const text = await readFile(join(dir, 'log', `${name}.log`), 'utf8').catch(() => '');
    if (text) out += `\n--- ${name}.log (end) ---\n${tail(text, 15)}`;
  }
  return out;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// A process that exits without stopping its cluster (a crashed benchmark) still removes its temp
// dirs; its daemons die with the watchdogs' stdin.
const leftDirs = new Set<string>();
process.once('exit', () => {
  for (const d of leftDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // a daemon still writing: the dir stays, under the OS temp dir
    }
  }
});
