// The visible tree as it was at a past wall-clock time, rebuilt from the CRDT log's old placements (what undo restores)
// and the current placements, for `arbor restore` of paths that no longer exist. Read-only; knows the tables of
// src/state/db.ts and the tree's meta, nothing of POSIX.
//
// Lamport timestamps carry no wall time, so the time is mapped to a cutoff timestamp through anchors: every content
// version (its id is its timestamp, it records when it was made) and every `ctime` register (written with the time of
// the op that wrote it; unlink writes the inode's). The cutoff is the largest anchor timestamp made at or before the
// time; moves at or below it count as done by then. Timestamp order respects causality, so the past tree is a state
// some replica could have seen.
import { compareTimestamps, type NodeId, type NodePlacement, type Timestamp } from '../crdt/index.js';
import type { StateDb } from '../state/db.js';
import { ROOT, type ContentVersion, type TreeMeta } from './types.js';

export interface PastEntry {
  readonly name: string;
  /** The tree node: a directory, or a link. */
  readonly node: NodeId;
  readonly kind: 'dir' | 'link';
  /** A link's inode. */
  readonly inode?: NodeId;
}

const later = (a: Timestamp, b: Timestamp | undefined): boolean =>
  b === undefined || compareTimestamps(a, b) > 0;

/** The largest anchor timestamp made at or before `timeNs` (ns since the epoch); undefined if none is that old. */
export function cutoffAt(db: StateDb, timeNs: bigint): Timestamp | undefined {
  let best: Timestamp | undefined;
  const d = db.db;
  for (const [id, counter, data] of d
    .prepare('SELECT id, counter, data FROM versions')
    .raw(true)
    .iterate() as IterableIterator<[string, number, string]>) {
    const v = JSON.parse(data) as ContentVersion;
    const ts = { counter, replica: id.slice(id.indexOf('.') + 1) };
    if (BigInt(v.timeNs) <= timeNs && later(ts, best)) best = ts;
  }
  for (const regs of d
    .prepare('SELECT regs FROM nodes WHERE regs IS NOT NULL')
    .pluck(true)
    .iterate() as IterableIterator<string>) {
    const stored = JSON.parse(regs) as { g: Array<[number, string, Record<string, unknown>]> };
    for (const [counter, replica, fields] of stored.g) {
      const ctime = fields.ctime;
      if (typeof ctime !== 'string' || !/^\d+$/.test(ctime) || BigInt(ctime) > timeNs) continue;
      const ts = { counter, replica };
      if (later(ts, best)) best = ts;
    }
  }
  return best;
}

/** The placements of every node as of a cutoff timestamp, with a name index per directory. */
export class PastTree {
  private readonly placements = new Map<NodeId, NodePlacement<TreeMeta>>();
  private readonly kids = new Map<NodeId, NodeId[]>();

  /**
   * `truncated`: the log truncation point; a cutoff below it cannot be answered (the old placements are gone) and
   * throws. `current` = every node's placement now.
   */
  constructor(
    db: StateDb,
    readonly cutoff: Timestamp,
    current: Iterable<readonly [NodeId, NodePlacement<TreeMeta>]>,
    truncated: Timestamp | undefined,
  ) {
    if (truncated !== undefined && compareTimestamps(cutoff, truncated) < 0)
      throw new RangeError('the history of that time was already truncated');
    // A node's placement at the cutoff = the `old` of its first logged move after the cutoff (what that move
    // replaced), or its current placement when no later move exists.
    const decided = new Set<NodeId>();
    for (const [counter, replica, op, old] of db.db
      .prepare('SELECT counter, replica, op, old FROM log ORDER BY counter, replica')
      .raw(true)
      .iterate() as IterableIterator<[number, string, string, string | null]>) {
      if (compareTimestamps({ counter, replica }, cutoff) <= 0) continue;
      const child = (JSON.parse(op) as { child: NodeId }).child;
      if (decided.has(child)) continue;
      decided.add(child);
      if (old !== null) this.placements.set(child, JSON.parse(old) as NodePlacement<TreeMeta>);
    }
    for (const [id, p] of current) if (!decided.has(id)) this.placements.set(id, p);
    for (const [id, p] of this.placements) {
      let k = this.kids.get(p.parent);
      if (k === undefined) this.kids.set(p.parent, (k = []));
      k.push(id);
    }
  }

  /** The entries shown in a directory then (of duplicate names, the earliest placed one, as the tree shows it). */
  children(dir: NodeId): PastEntry[] {
    const byName = new Map<string, [NodeId, NodePlacement<TreeMeta>]>();
    for (const id of this.kids.get(dir) ?? []) {
      const p = this.placements.get(id)!;
      if (p.meta.k !== 'd' && p.meta.k !== 'l') continue;
      const had = byName.get(p.meta.n);
      const t = { counter: p.meta.t[0], replica: p.meta.t[1] };
      if (
        had === undefined ||
        compareTimestamps(t, { counter: had[1].meta.t[0], replica: had[1].meta.t[1] }) < 0
      )
        byName.set(p.meta.n, [id, p]);
    }
    return [...byName.values()]
      .map(([node, p]): PastEntry =>
        p.meta.k === 'd'
          ? { name: p.meta.n, node, kind: 'dir' }
          : { name: p.meta.n, node, kind: 'link', inode: p.meta.i! },
      )
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The entry at an absolute path then, or undefined (root itself: a directory entry named ''). */
  lookup(path: string): PastEntry | undefined {
    let cur: PastEntry = { name: '', node: ROOT, kind: 'dir' };
    for (const part of path.split('/').filter((s) => s.length > 0)) {
      if (cur.kind !== 'dir') return undefined;
      const next = this.children(cur.node).find((e) => e.name === part);
      if (next === undefined) return undefined;
      cur = next;
    }
    return cur;
  }
}
