// The crash suite at scale (ARBOR_LONG=1): 60 rounds, kills at more varied points.
import { crashSuite } from './testing/crash-suite.js';

crashSuite('arbor survives kill -9 of its daemon (long)', { rounds: 60, minDurableOps: 3, maxDelayMs: 2000 });
