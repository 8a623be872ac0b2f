// Which replicas the causal-stability threshold ranges over. Knows nothing of the tree beyond that contract.
//
// The paper assumes a fixed replica set. arbor's is open: `arbor clone` can add a replica at any time, and its first
// ops carry timestamps just above what it cloned — possibly far below what an existing replica has seen since. If
// that replica had truncated its log past them (believing itself alone, or knowing only the replicas it had heard
// from), it would treat the newcomer's ops as already applied and drop them: the trees would diverge for good.
// Until a join protocol bounds how far back a newcomer can be (registration on the remote within a time window),
// the threshold includes a replica that is never seen, so the log is never truncated. Correct, at the cost of a log
// that grows with history (it holds moves only; content and registers are not in it).
import type { ReplicaId } from '../crdt/types.js';

/** Not a valid replica id ([A-Za-z0-9_-]), so no real replica can ever be it: "someone may still join". */
export const FUTURE_REPLICA = '~joining';

/** The replica set to pass to FileTree's `replicas` option. */
export function stabilityReplicas(self: ReplicaId): () => Iterable<ReplicaId> {
  return () => [self, FUTURE_REPLICA];
}
