// Child process of the crash test: runs the workload on a state dir and prints "ack <i>" after each op returns.
// Usage: node crash-child.js <state dir> <round> ; runs until killed.
import { join } from 'node:path';
import { openArbor } from '../../index.js';
import { DirChunkStore } from './dir-store.js';
import { workloadOp } from './crash-workload.js';

const [dir, roundArg] = process.argv.slice(2);
const round = Number(roundArg);
const fs = await openArbor(dir!, { store: new DirChunkStore(join(dir!, 'chunks'), 4096), replica: 'crash' });
for (let i = 0; ; i++) {
  await workloadOp(fs, round, i);
  process.stdout.write(`ack ${i}\n`);
}
