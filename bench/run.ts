// `npm run bench [name…]`: every benchmark, one after another, each in a process of its own so one
// benchmark's heap and JIT state cannot skew the next one's figures, and in a session of its own
// (`detached`), so that the nice it was started with ranks it against other sessions' processes
// too (bench/priority.ts).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WAVE_RUN, WAVE_SKIPPED, waveAvailable } from './wave.js';

const ALL = ['multipart', 'static', 'uploads', 'streams', 'cluster', 'sweep', 's3'];
const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = chosen.length ? chosen : ALL;
// Wave's own server is a row of static, uploads and streams when the peer is there (bench/wave.ts).
console.log(waveAvailable() ? `Wave: ${WAVE_RUN} (its rows are in static, uploads and streams)` : WAVE_SKIPPED);
let failed = 0;
for (const name of names) {
  if (!ALL.includes(name)) {
    console.error(`bench: unknown benchmark "${name}" (have: ${ALL.join(', ')})`);
    process.exit(2);
  }
  console.log(`\n=== bench/${name} ===`);
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const child = spawn(process.execPath, ['--expose-gc', file, ...process.argv.slice(2).filter((a) => a.startsWith('-'))], { stdio: 'inherit', detached: true });
  // Its own session has its own process group, out of reach of the terminal's Ctrl-C: passed on
  // to the group, so that its servers stop with it.
  const forward = (signal: NodeJS.Signals): void => void process.kill(-child.pid!, signal);
  process.on('SIGINT', forward).on('SIGTERM', forward);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  process.off('SIGINT', forward).off('SIGTERM', forward);
  if (code !== 0) {
    failed++;
    console.error(`bench/${name} failed (exit ${code ?? signal})`);
  }
}
process.exit(failed ? 1 : 0);
