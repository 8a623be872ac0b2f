// Long runs of the tree's property and crash tests (ARBOR_LONG=1): many more sequences, replicas runs and kills.
process.env.ARBOR_MODEL_RUNS ??= '2000';
process.env.ARBOR_REPLICA_RUNS ??= '600';
process.env.ARBOR_CRASH_ROUNDS ??= '80';
await import('./model.test.js');
await import('./replicas.test.js');
await import('./crash.test.js');
