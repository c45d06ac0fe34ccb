// Makes `nice` mean, for a benchmark, what it says. Linux schedules by session first when
// autogroup is on (/proc/sys/kernel/sched_autogroup_enabled): a niced benchmark then only outranks
// the other processes of its own session, and shares each core equally with every other session's
// processes (a test suite somebody runs in another terminal). A benchmark run in a session of its
// own (bench/run.ts starts each one so) gives that session's autogroup its own nice value; in a
// session it does not lead (a terminal's) it changes nothing.
import { readFileSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';

/** What was done, for the benchmark's header line. */
export function sessionPriority(): string {
  const nice = getPriority();
  let stat: string;
  try {
    stat = readFileSync('/proc/self/stat', 'utf8');
    readFileSync('/proc/self/autogroup', 'utf8');
  } catch {
    return `nice ${nice}`; // not Linux, or no autogroup
  }
  const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]); // field 6
  if (readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() !== '1') return `nice ${nice}`;
  if (session !== process.pid) return `nice ${nice} (autogroup: in a session it does not lead, so other sessions share the cores equally; see bench/README.md)`;
  try {
    writeFileSync('/proc/self/autogroup', String(nice));
    return `nice ${nice}, its session's autogroup too`;
  } catch (err) {
    return `nice ${nice} (its autogroup could not be reniced: ${(err as Error).message})`;
  }
}
