// The paper's TreeReplica: one replica's tree plus its Lamport clock; makes local moves and integrates remote ones.
// Pure: no I/O. Must not know how ops travel (sync/) or are stored (state/).
import { LamportClock } from './clock.js';
import { CrdtTree } from './tree.js';
import type { ChangeSet, Move, NodeId, ReplicaId, Timestamp } from './types.js';

/** A globally unique node id derived from the timestamp of the move that creates the node: `<replica>.<counter b36>`. */
export function nodeIdFor(ts: Timestamp): NodeId {
  return `${ts.replica}.${ts.counter.toString(36)}`;
}

export class TreeReplica<M> {
  readonly tree: CrdtTree<M>;
  readonly clock: LamportClock;

  /**
   * `tree` defaults to an empty one; pass a restored tree to reopen. The clock starts above every timestamp the tree
   * has seen (and above `counter`, the persisted clock value), so reopened replicas never reuse a timestamp.
   */
  constructor(replica: ReplicaId, tree: CrdtTree<M> = new CrdtTree<M>(), counter = 0) {
    this.tree = tree;
    this.clock = new LamportClock(replica, counter);
    for (const ts of tree.latestSeen().values()) this.clock.observe(ts);
    const last = tree.lastTimestamp();
    if (last !== undefined) this.clock.observe(last);
  }

  get replica(): ReplicaId {
    return this.clock.replica;
  }

  /** Make a local op (ticks the clock) without applying it; apply with tree.apply/applyBatch to get the ChangeSet. */
  makeMove(parent: NodeId, meta: M, child: NodeId): Move<M> {
    return { ts: this.clock.tick(), parent, meta, child };
  }

  /** Make and apply a local move. */
  move(parent: NodeId, meta: M, child: NodeId): Move<M> {
    const op = this.makeMove(parent, meta, child);
    this.tree.apply(op);
    return op;
  }

  /** Make and apply a local move, returning what changed (for write-through). */
  moveWithChanges(parent: NodeId, meta: M, child: NodeId): { op: Move<M>; changes: ChangeSet<M> } {
    const op = this.makeMove(parent, meta, child);
    return { op, changes: this.tree.apply(op) };
  }

  /** Create a fresh node (id from its timestamp, see nodeIdFor) under `parent`. */
  create(parent: NodeId, meta: M): Move<M> {
    const ts = this.clock.tick();
    const op: Move<M> = { ts, parent, meta, child: nodeIdFor(ts) };
    this.tree.apply(op);
    return op;
  }

  /** Integrate remote ops (any order, duplicates fine) and advance the clock past them. */
  receive(ops: readonly Move<M>[]): ChangeSet<M> {
    for (const op of ops) this.clock.observe(op.ts);
    return this.tree.applyBatch(ops);
  }
}
