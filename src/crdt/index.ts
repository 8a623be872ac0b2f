// The public face of src/crdt: everything other parts may use. Pure; re-exports only.
export type {
  ChangeSet,
  LogMove,
  Move,
  NodeChange,
  NodeId,
  NodePlacement,
  OpBatch,
  ReplicaId,
  Timestamp,
} from './types.js';
export { LamportClock, compareTimestamps, formatTimestamp, maxTimestamp, timestampsEqual } from './clock.js';
export { BAD_BATCH, isCounter, isNodeId, isReplicaId, parseTimestamp } from './validate.js';
export { CrdtTree } from './tree.js';
export { TreeReplica, nodeIdFor } from './replica.js';
export { MAX_BATCH_BYTES, MAX_BATCH_OPS, decodeOpBatch, encodeOpBatch } from './codec.js';
