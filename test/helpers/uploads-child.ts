// A wharf server alone in its process, for measuring that process (the uploads memory test):
// `node uploads-child.js <dataDir>` prints `PORT <n>` once it listens and runs until killed.
import { createFileServer } from '../../lib/index.js';

const files = createFileServer({ dataDir: process.argv[2]!, anonymousUploads: true });
const { port } = await files.listen({ port: 0 });
process.stdout.write(`PORT ${port}\n`);
