// The paper's State: the materialized forest, its child index and the timestamp-ordered move log, with do/undo/redo.
// Pure and deterministic: no I/O, no wall clock, no logging. Must not know what `meta` means (names, inodes, ...).
import { InvalidInputError } from '../errors.js';
import { compareTimestamps } from './clock.js';
import type {
  ChangeSet,
  LogMove,
  Move,
  NodeChange,
  NodeId,
  NodePlacement,
  ReplicaId,
  Timestamp,
} from './types.js';

const NO_CHILDREN: readonly NodeId[] = Object.freeze([]);
const EMPTY_CHANGES: ChangeSet<never> = Object.freeze({
  changes: Object.freeze([]),
  newOps: Object.freeze([]),
  logWrites: Object.freeze([]),
});

/** Two placements are the same if parent and meta are identical (meta compared by reference, never deeply). */
function samePlacement<M>(a: NodePlacement<M> | null, b: NodePlacement<M> | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return a.parent === b.parent && a.meta === b.meta;
}

/**
 * The replicated tree: Kleppmann et al. 2021's move operation, applied in batches.
 *
 * Invariants (checked by verify()):
 * - every placed node has exactly one parent; the parent relation is acyclic;
 * - ids that are parents but never placed anywhere are the forest roots ('root', 'inodes', 'trash');
 * - the log is strictly ascending by timestamp and, replayed from the state before its first entry, yields the tree;
 * - each log entry's `old` is the child's placement just before that op (what undo restores).
 */
export class CrdtTree<M> {
  readonly #nodes = new Map<NodeId, NodePlacement<M>>();
  /** parent → its children. Sets are deleted when they become empty, so memory follows the directories that exist. */
  readonly #kids = new Map<NodeId, Set<NodeId>>();
  #log: LogMove<M>[] = [];
  /** Ops older than this were applied and dropped from the log; when they arrive again they are ignored. */
  #truncatedBelow: Timestamp | undefined;
  readonly #seen = new Map<ReplicaId, Timestamp>();

  // ---- reading the tree ----

  /** Number of placed nodes (forest roots that were never moved are not counted). */
  get size(): number {
    return this.#nodes.size;
  }

  get(child: NodeId): NodePlacement<M> | undefined {
    return this.#nodes.get(child);
  }

  has(node: NodeId): boolean {
    return this.#nodes.has(node);
  }

  /** The children of `parent`, O(#children). Do not mutate the tree while iterating. */
  children(parent: NodeId): Iterable<NodeId> {
    return this.#kids.get(parent) ?? NO_CHILDREN;
  }

  childCount(parent: NodeId): number {
    return this.#kids.get(parent)?.size ?? 0;
  }

  /** True if `ancestor` is a proper ancestor of `node` (false when they are equal). O(depth). */
  isAncestor(ancestor: NodeId, node: NodeId): boolean {
    let p = this.#nodes.get(node);
    while (p !== undefined) {
      if (p.parent === ancestor) return true;
      p = this.#nodes.get(p.parent);
    }
    return false;
  }

  /** Every placed node and its placement, in no particular order (for persistence and checkpoints). */
  nodes(): IterableIterator<[NodeId, NodePlacement<M>]> {
    return this.#nodes.entries();
  }

  /** Ids that have children but no placement of their own. */
  roots(): NodeId[] {
    const out: NodeId[] = [];
    for (const id of this.#kids.keys()) if (!this.#nodes.has(id)) out.push(id);
    return out.sort();
  }

  // ---- the log ----

  get logLength(): number {
    return this.#log.length;
  }

  get truncatedBelow(): Timestamp | undefined {
    return this.#truncatedBelow;
  }

  /** The timestamp of the newest logged op, if any. */
  lastTimestamp(): Timestamp | undefined {
    return this.#log.length ? this.#log[this.#log.length - 1]!.op.ts : undefined;
  }

  /** Every log entry, oldest first. */
  *log(): IterableIterator<LogMove<M>> {
    yield* this.#log;
  }

  /** Log entries with a timestamp strictly greater than `ts`, oldest first. */
  *logSince(ts: Timestamp): IterableIterator<LogMove<M>> {
    const log = this.#log;
    for (let i = this.#upperBound(ts); i < log.length; i++) yield log[i]!;
  }

  /** True if an op with this timestamp is known: in the log, or older than the truncation point. */
  knows(ts: Timestamp): boolean {
    if (this.#truncatedBelow !== undefined && compareTimestamps(ts, this.#truncatedBelow) < 0) return true;
    return this.#indexOf(ts) >= 0;
  }

  // ---- applying ops ----

  /** Apply one op. A local op (newer than everything logged) takes the fast path: no undo/redo, no sorting. */
  apply(op: Move<M>): ChangeSet<M> {
    const log = this.#log;
    const last = log.length ? log[log.length - 1]!.op.ts : undefined;
    if (
      (last === undefined || compareTimestamps(op.ts, last) > 0) &&
      (this.#truncatedBelow === undefined || compareTimestamps(op.ts, this.#truncatedBelow) >= 0)
    ) {
      this.observe(op.ts);
      const old = this.#doOp(op, undefined);
      const entry: LogMove<M> = { op, old };
      log.push(entry);
      const after = this.#nodes.get(op.child) ?? null;
      const changes: NodeChange<M>[] = samePlacement(old, after)
        ? []
        : [{ node: op.child, before: old, after }];
      return { changes, newOps: [op], logWrites: [entry] };
    }
    return this.applyBatch([op]);
  }

  /**
   * Apply ops in any order, local or remote, with one undo/redo pass over the log suffix newer than the oldest new op.
   * Known ops (in the log, repeated in the batch, or older than the truncation point) are ignored, so re-delivery is a
   * no-op. Moves that would make a cycle (or a node its own parent) change nothing but stay in the log.
   */
  applyBatch(ops: readonly Move<M>[]): ChangeSet<M> {
    const fresh: Move<M>[] = [];
    for (const op of ops) if (!this.knows(op.ts)) fresh.push(op);
    if (fresh.length === 0) return EMPTY_CHANGES as ChangeSet<M>;
    if (fresh.length > 1) fresh.sort((a, b) => compareTimestamps(a.ts, b.ts));
    for (const op of fresh) this.observe(op.ts);

    const log = this.#log;
    const touched = new Map<NodeId, NodePlacement<M> | null>();
    const pos = this.#upperBound(fresh[0]!.ts);

    // Undo, newest first, every logged op newer than the oldest new op (a loop, never recursion).
    for (let i = log.length - 1; i >= pos; i--) this.#undo(log[i]!, touched);
    const suffix = log.slice(pos);
    log.length = pos;

    // Do the new ops and redo the undone ones in one merged timestamp-ordered pass.
    const newOps: Move<M>[] = [];
    const logWrites: LogMove<M>[] = [];
    let i = 0;
    let j = 0;
    let prev: Timestamp | undefined;
    while (i < suffix.length || j < fresh.length) {
      const s = suffix[i];
      const f = fresh[j];
      if (f !== undefined && (s === undefined || compareTimestamps(f.ts, s.op.ts) < 0)) {
        j++;
        if (prev !== undefined && compareTimestamps(prev, f.ts) === 0) continue; // repeated within the batch
        prev = f.ts;
        const entry: LogMove<M> = { op: f, old: this.#doOp(f, touched) };
        log.push(entry);
        newOps.push(f);
        logWrites.push(entry);
      } else {
        i++;
        const entry = s!;
        prev = entry.op.ts;
        const old = this.#doOp(entry.op, touched);
        if (samePlacement(old, entry.old)) {
          log.push(entry);
        } else {
          const redone: LogMove<M> = { op: entry.op, old };
          log.push(redone);
          logWrites.push(redone);
        }
      }
    }

    const changes: NodeChange<M>[] = [];
    for (const [node, before] of touched) {
      const after = this.#nodes.get(node) ?? null;
      if (!samePlacement(before, after)) changes.push({ node, before, after });
    }
    return { changes, newOps, logWrites };
  }

  // ---- causal stability ----

  /** Record a timestamp seen from its replica (applyBatch does this for every new op). */
  observe(ts: Timestamp): void {
    const cur = this.#seen.get(ts.replica);
    if (cur === undefined || ts.counter > cur.counter) this.#seen.set(ts.replica, ts);
  }

  /** The latest timestamp seen from each replica. */
  latestSeen(): ReadonlyMap<ReplicaId, Timestamp> {
    return this.#seen;
  }

  /**
   * The minimum over `knownReplicas` (include this replica) of the latest timestamp seen from each; undefined if one
   * has not been heard from. Sound only if each replica's ops arrive in its own timestamp order (sync/ delivers batches
   * by seq): then every op still to come has a larger timestamp, so ops below the threshold are stable.
   */
  stableThreshold(knownReplicas: Iterable<ReplicaId>): Timestamp | undefined {
    let min: Timestamp | undefined;
    for (const r of knownReplicas) {
      const ts = this.#seen.get(r);
      if (ts === undefined) return undefined;
      if (min === undefined || compareTimestamps(ts, min) < 0) min = ts;
    }
    return min;
  }

  /**
   * Drop log entries older than `ts` (call with a stable threshold). Ops arriving later with an older timestamp are
   * treated as already applied. Returns how many entries were dropped.
   */
  truncateLogBelow(ts: Timestamp): number {
    if (this.#truncatedBelow !== undefined && compareTimestamps(ts, this.#truncatedBelow) <= 0) return 0;
    this.#truncatedBelow = ts;
    const n = this.#lowerBound(ts);
    this.#log.splice(0, n);
    return n;
  }

  /**
   * Remove nodes from the materialized tree for good (emptying trash). All-or-nothing; throws InvalidInputError and
   * changes nothing unless, for every node: it is placed, no log entry moves it (its last move is below the truncation
   * point, hence stable), and all of its children are purged with it. The caller (tree/) must also guarantee that no
   * replica will address these nodes again — true of nodes in trash whose removal is below the stable threshold.
   */
  purge(nodes: Iterable<NodeId>): NodeChange<M>[] {
    const set = new Set(nodes);
    // One scan of the (truncated, hence short) log per purge call instead of a per-node counter on every op.
    const unstable = new Set<NodeId>();
    for (const e of this.#log) if (set.has(e.op.child)) unstable.add(e.op.child);
    for (const id of set) {
      if (!this.#nodes.has(id)) throw new InvalidInputError(`purge: node ${id} is not placed`);
      if (unstable.has(id))
        throw new InvalidInputError(`purge: node ${id} has a move that is not yet stable`);
      for (const c of this.children(id)) {
        if (!set.has(c)) throw new InvalidInputError(`purge: node ${id} has a child ${c} that is not purged`);
      }
    }
    const changes: NodeChange<M>[] = [];
    for (const id of set) {
      const before = this.#nodes.get(id)!;
      this.#place(id, null, before);
      changes.push({ node: id, before, after: null });
    }
    for (const id of set) this.#kids.delete(id);
    return changes;
  }

  removeNode(id: NodeId): NodeChange<M> {
    return this.purge([id])[0]!;
  }

  // ---- persistence ----

  /**
   * Rebuild a tree from its persisted materialized state and log, without replaying anything. Validates that the
   * nodes form a forest (one placement per node, no cycle) and that the log has unique timestamps at or above
   * `truncatedBelow`; throws InvalidInputError otherwise. `latestSeen` restores causal-stability knowledge.
   */
  static restore<M>(
    nodes: Iterable<readonly [NodeId, NodePlacement<M>]>,
    log: Iterable<LogMove<M>>,
    truncatedBelow?: Timestamp,
    latestSeen?: Iterable<Timestamp>,
  ): CrdtTree<M> {
    const t = new CrdtTree<M>();
    for (const [id, placement] of nodes) {
      if (t.#nodes.has(id)) throw new InvalidInputError(`restore: node ${id} placed twice`);
      t.#place(id, placement, null);
    }
    t.#checkAcyclic();
    const entries = Array.from(log);
    entries.sort((a, b) => compareTimestamps(a.op.ts, b.op.ts));
    for (let k = 0; k < entries.length; k++) {
      const ts = entries[k]!.op.ts;
      if (k > 0 && compareTimestamps(entries[k - 1]!.op.ts, ts) === 0) {
        throw new InvalidInputError(`restore: two log entries at ${ts.counter}@${ts.replica}`);
      }
      if (truncatedBelow !== undefined && compareTimestamps(ts, truncatedBelow) < 0) {
        throw new InvalidInputError('restore: a log entry is older than the truncation point');
      }
      t.observe(ts);
    }
    t.#log = entries;
    t.#truncatedBelow = truncatedBelow;
    if (truncatedBelow !== undefined) t.observe(truncatedBelow);
    if (latestSeen !== undefined) for (const ts of latestSeen) t.observe(ts);
    return t;
  }

  /**
   * Rebuild a tree by replaying ops from an empty state (a clone without a checkpoint, or a log-only recovery). The
   * same result as applyBatch(ops) on an empty tree, without computing a change set. Duplicates are ignored.
   */
  static fromOps<M>(ops: Iterable<Move<M>>): CrdtTree<M> {
    const sorted = Array.from(ops);
    for (let k = 1; k < sorted.length; k++) {
      if (compareTimestamps(sorted[k - 1]!.ts, sorted[k]!.ts) > 0) {
        sorted.sort((x, y) => compareTimestamps(x.ts, y.ts));
        break;
      }
    }
    const t = new CrdtTree<M>();
    const log = t.#log;
    let prev: Timestamp | undefined;
    for (const op of sorted) {
      if (prev !== undefined && compareTimestamps(prev, op.ts) === 0) continue;
      prev = op.ts;
      t.observe(op.ts);
      log.push({ op, old: t.#doOp(op, undefined) });
    }
    return t;
  }

  /** Check every invariant (child index, single parent, acyclic, log order); throws Error on the first violation. */
  verify(): void {
    let indexed = 0;
    for (const [parent, set] of this.#kids) {
      if (set.size === 0) throw new Error(`empty child set kept for ${parent}`);
      for (const c of set) {
        if (this.#nodes.get(c)?.parent !== parent)
          throw new Error(`child index says ${c} is under ${parent}`);
        indexed++;
      }
    }
    if (indexed !== this.#nodes.size)
      throw new Error(`child index has ${indexed} entries for ${this.#nodes.size} nodes`);
    this.#checkAcyclic();
    for (let k = 1; k < this.#log.length; k++) {
      if (compareTimestamps(this.#log[k - 1]!.op.ts, this.#log[k]!.op.ts) >= 0)
        throw new Error('log out of order');
    }
  }

  // ---- internals ----

  /** The paper's do_op: returns the child's placement before the op; skips cycles and self-parenting. */
  #doOp(op: Move<M>, touched: Map<NodeId, NodePlacement<M> | null> | undefined): NodePlacement<M> | null {
    const old = this.#nodes.get(op.child) ?? null;
    // A node without children cannot be an ancestor of anything: files (leaves) skip the O(depth) walk.
    if (op.child === op.parent || (this.#kids.has(op.child) && this.isAncestor(op.child, op.parent)))
      return old;
    if (touched !== undefined && !touched.has(op.child)) touched.set(op.child, old);
    this.#place(op.child, { parent: op.parent, meta: op.meta }, old);
    return old;
  }

  /** The paper's undo_op: put the child back where it was before the entry's op. */
  #undo(entry: LogMove<M>, touched: Map<NodeId, NodePlacement<M> | null>): void {
    const child = entry.op.child;
    const cur = this.#nodes.get(child) ?? null;
    if (samePlacement(cur, entry.old)) return; // a skipped op, or one that changed nothing
    if (!touched.has(child)) touched.set(child, cur);
    this.#place(child, entry.old, cur);
  }

  #place(child: NodeId, next: NodePlacement<M> | null, prev: NodePlacement<M> | null): void {
    if (prev !== null) {
      const set = this.#kids.get(prev.parent);
      if (set !== undefined) {
        set.delete(child);
        if (set.size === 0) this.#kids.delete(prev.parent);
      }
    }
    if (next === null) {
      this.#nodes.delete(child);
      return;
    }
    this.#nodes.set(child, next);
    const set = this.#kids.get(next.parent);
    if (set === undefined) this.#kids.set(next.parent, new Set([child]));
    else set.add(child);
  }

  /** O(n): walk up from every node, marking finished paths, so each node is visited a bounded number of times. */
  #checkAcyclic(): void {
    const done = new Set<NodeId>();
    const path = new Set<NodeId>();
    for (const start of this.#nodes.keys()) {
      if (done.has(start)) continue;
      path.clear();
      let cur: NodeId | undefined = start;
      while (cur !== undefined && !done.has(cur)) {
        if (path.has(cur)) throw new InvalidInputError(`tree has a cycle through ${cur}`);
        path.add(cur);
        cur = this.#nodes.get(cur)?.parent;
      }
      for (const p of path) done.add(p);
    }
  }

  /** Index of the entry with exactly this timestamp, or -1. */
  #indexOf(ts: Timestamp): number {
    const log = this.#log;
    if (log.length === 0 || compareTimestamps(ts, log[log.length - 1]!.op.ts) > 0) return -1;
    const i = this.#lowerBound(ts);
    return i < log.length && compareTimestamps(log[i]!.op.ts, ts) === 0 ? i : -1;
  }

  /** First index whose timestamp is >= ts. */
  #lowerBound(ts: Timestamp): number {
    const log = this.#log;
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareTimestamps(log[mid]!.op.ts, ts) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First index whose timestamp is > ts. */
  #upperBound(ts: Timestamp): number {
    const log = this.#log;
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareTimestamps(log[mid]!.op.ts, ts) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
