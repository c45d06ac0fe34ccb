// `npm run bench [name…]`: every benchmark, one after another, each in a process of its own so one
// benchmark's heap and JIT state cannot skew the next one's figures.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ALL = ['multipart', 'static', 'uploads', 'streams', 'cluster', 'sweep', 's3'];
const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = chosen.length ? chosen : ALL;
let failed = 0;
for (const name of names) {
  if (!ALL.includes(name)) {
    console.error(`bench: unknown benchmark "${name}" (have: ${ALL.join(', ')})`);
    process.exit(2);
  }
  console.log(`\n=== bench/${name} ===`);
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const r = spawnSync(process.execPath, ['--expose-gc', file, ...process.argv.slice(2).filter((a) => a.startsWith('-'))], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench/${name} failed (exit ${r.status ?? r.signal})`);
  }
}
process.exit(failed ? 1 : 0);
