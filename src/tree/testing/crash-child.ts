// Child process of the crash test: runs the workload on a state dir and prints "ack <i>" after each op returns.
// Usage: node crash-child.js <state dir> <round> [group] ; runs until killed. With `group`: group commit on, and
// every 4th op is followed by flushState() and "durable <i>" (what fsync does on a mount).
import { join } from 'node:path';
import { openArbor } from '../../index.js';
import { DirChunkStore } from './dir-store.js';
import { workloadOp } from './crash-workload.js';

const [dir, roundArg, mode] = process.argv.slice(2);
const round = Number(roundArg);
const group = mode === 'group';
const fs = await openArbor(dir!, {
  store: new DirChunkStore(join(dir!, 'chunks'), 4096),
  replica: 'crash',
  ...(group ? { groupCommitMs: 3 } : {}),
});
for (let i = 0; ; i++) {
  await workloadOp(fs, round, i);
  process.stdout.write(`ack ${i}\n`);
  if (group && i % 4 === 3) {
    fs.tree.flushState();
    process.stdout.write(`durable ${i}\n`);
  }
}
