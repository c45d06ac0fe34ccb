// A node that stages a file and then is killed (SIGKILL, by the test) without a close: run as
// `node lease-child.js <dataDir> <nodeId> <leaseInterval>`; prints `STAGED` once its file is in its
// staging area, then renews its lease until it is killed.
import { randomUUID } from 'node:crypto';
import { createLocalStorage } from '../../lib/uploads/local-storage.js';

const [dataDir, nodeId, interval] = process.argv.slice(2);
const storage = createLocalStorage(dataDir!, { nodeId: nodeId!, leaseInterval: Number(interval) });
await storage.start();
await storage.stage().put(randomUUID(), 'partial.bin', [Buffer.alloc(100, 1)]);
process.stdout.write('STAGED\n');
setInterval(() => {}, 1 << 30); // alive (the lease's own timer is unref'd) until killed
