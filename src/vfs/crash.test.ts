// kill -9 the arbor daemon during a write workload, 10 rounds: after `arbor unmount` and remount, everything that
// was fsynced is intact and the tree is consistent. crash.long.test.ts runs many more rounds.
import { checkerSelfTest, crashSuite, writerResumeSelfTest } from './testing/crash-suite.js';

checkerSelfTest();
writerResumeSelfTest();
crashSuite('arbor survives kill -9 of its daemon', { rounds: 10, minDurableOps: 5, maxDelayMs: 400 });
