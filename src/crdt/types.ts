// The vocabulary of the tree CRDT (Kleppmann et al. 2021): replica ids, Lamport timestamps, moves, log entries.
// Pure data; no I/O. Other parts (tree/, state/, sync/) depend on these shapes.

/** A replica's id: 1–32 characters of [A-Za-z0-9_-], unique per replica directory, never reused. */
export type ReplicaId = string;

/** A tree node's id: globally unique, never reused. Forest roots use the reserved ids in ROOTS. */
export type NodeId = string;

/** Lamport timestamp; totally ordered by (counter, replica). Compare only with compareTimestamps. */
export interface Timestamp {
  readonly counter: number;
  readonly replica: ReplicaId;
}

/** Move(ts, parent, meta, child): the only operation. Create, delete (move to trash) and rename are moves. */
export interface Move<M> {
  readonly ts: Timestamp;
  readonly parent: NodeId;
  readonly meta: M;
  readonly child: NodeId;
}

/** Where a node sat before a logged move; null when the move created it. */
export interface NodePlacement<M> {
  readonly parent: NodeId;
  readonly meta: M;
}

/** A move as kept in the log: the op and the child's placement before it (for undo). */
export interface LogMove<M> {
  readonly op: Move<M>;
  readonly old: NodePlacement<M> | null;
}

/** How one node's placement changed in a batch: null = the node was absent (not placed) on that side. */
export interface NodeChange<M> {
  readonly node: NodeId;
  readonly before: NodePlacement<M> | null;
  readonly after: NodePlacement<M> | null;
}

/** What applyBatch did: the placements that really changed, the ops that were new, and log rows to upsert. */
export interface ChangeSet<M> {
  /** One entry per node whose placement differs after the batch (value compare: parent and meta identity). */
  readonly changes: readonly NodeChange<M>[];
  /** The ops of the batch that were not already known (duplicates and truncated ops are left out), by timestamp. */
  readonly newOps: readonly Move<M>[];
  /**
   * Log entries to write through (upsert keyed by op timestamp): every new op's entry plus every redone entry whose
   * `old` placement changed. Persisting these keeps a stored log equal to `log()` without rewriting it whole.
   */
  readonly logWrites: readonly LogMove<M>[];
}

/** One replica's op batch as shipped between replicas (remote layout ops/<replica>/<seq>). */
export interface OpBatch<M> {
  readonly version: 1;
  readonly replica: ReplicaId;
  readonly seq: number;
  readonly ops: Move<M>[];
}
