// A FileTree's persisted state as plain rows (nodes, CRDT log, versions, peers, clock): what a checkpoint carries so
// a new clone can bulk-load it into SQLite in one transaction instead of replaying ops one by one through the CRDT.
// Knows the table layout of src/state/db.ts and the shapes of the JSON in it; knows no CRDT or POSIX logic.
import { InvalidInputError } from '../errors.js';
import type { LogMove, NodePlacement, Timestamp } from '../crdt/index.js';
import type { Database, Statement } from 'better-sqlite3';
import type { StateDb } from '../state/db.js';
import type { ContentVersion, TreeMeta } from './types.js';

/** The stored registers of one node (src/tree/filetree.ts: fields grouped by the timestamp that wrote them). */
export interface StoredRegs {
  readonly g: ReadonlyArray<readonly [number, string, Readonly<Record<string, unknown>>]>;
  readonly h?: readonly unknown[];
}
/** One `nodes` row: id, parent, meta, registers (parent and meta are null together: a node with registers only). */
export type SnapshotNode = readonly [string, string | null, TreeMeta | null, StoredRegs | null];
/** A logged move without its timestamp, and the placement it undoes to. */
export interface LoggedMove {
  readonly parent: string;
  readonly meta: TreeMeta;
  readonly child: string;
}
/** One `log` row: counter, replica, the move, the child's placement before it (null: it was new). */
export type SnapshotLog = readonly [number, string, LoggedMove, NodePlacement<TreeMeta> | null];
/** One `versions` row: node, version id, counter, the version. */
export type SnapshotVersion = readonly [string, string, number, ContentVersion];
/** One `peers` row: replica, last applied batch seq, largest Lamport counter seen from it. */
export type SnapshotPeer = readonly [string, number, number];

/**
 * Rows carry parsed objects, not the JSON text of the columns: the checkpoint is parsed once, and the clone builds
 * its in-memory tree from the same objects it writes to SQLite.
 */
export interface TreeSnapshot {
  readonly nodes: readonly SnapshotNode[];
  readonly log: readonly SnapshotLog[];
  readonly versions: readonly SnapshotVersion[];
  readonly peers: readonly SnapshotPeer[];
  /** Nodes with conflict copies (the tree keeps this derived set in kv). */
  readonly conflicted: readonly string[];
  /** The CRDT log truncation point, if any. */
  readonly truncated: Timestamp | null;
  /** The exporting replica's Lamport counter: every op it covers has a counter ≤ this. */
  readonly clock: number;
}

/** Read the whole state in one synchronous stretch (no commit can land in between). */
export function readSnapshot(db: StateDb, clock: number): TreeSnapshot {
  const d = db.db;
  const j = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));
  const nodes = (
    d.prepare('SELECT id, parent, meta, regs FROM nodes').raw(true).all() as Array<
      [string, string | null, string | null, string | null]
    >
  ).map(([id, parent, meta, regs]): SnapshotNode => [id, parent, j<TreeMeta>(meta), j<StoredRegs>(regs)]);
  const log = (
    d.prepare('SELECT counter, replica, op, old FROM log').raw(true).all() as Array<
      [number, string, string, string | null]
    >
  ).map(([c, r, op, old]): SnapshotLog => [
    c,
    r,
    JSON.parse(op) as LoggedMove,
    j<NodePlacement<TreeMeta>>(old),
  ]);
  const versions = (
    d.prepare('SELECT node, id, counter, data FROM versions').raw(true).all() as Array<
      [string, string, number, string]
    >
  ).map(([n, id, c, data]): SnapshotVersion => [n, id, c, JSON.parse(data) as ContentVersion]);
  const peers = d.prepare('SELECT replica, seq, counter FROM peers').raw(true).all() as SnapshotPeer[];
  const conflicted = JSON.parse(db.kvGet('conflicted') ?? '[]') as string[];
  const t = db.kvGet('truncated');
  const truncated = t === undefined ? null : (JSON.parse(t) as Timestamp);
  return { nodes, log, versions, peers, conflicted, truncated, clock };
}

/**
 * Write a snapshot's rows into an empty state (the caller runs this inside its transaction). Nodes that already have
 * a row (a fresh tree's root registers) are handed to `mergeRegs` instead of being overwritten.
 */
export function writeSnapshot(
  db: StateDb,
  s: TreeSnapshot,
  mergeRegs: (id: string, mine: string, theirs: StoredRegs) => string,
): void {
  const d = db.db;
  const getRegs = d.prepare<[string]>('SELECT regs FROM nodes WHERE id = ?').pluck(true);
  // Only nodes that already have a row need a merge; a fresh replica has a handful of them.
  const existing = new Set(d.prepare('SELECT id FROM nodes').pluck(true).all() as string[]);
  const nodes = new BulkInsert(d, 'INSERT OR REPLACE INTO nodes (id, parent, meta, regs) VALUES', 4);
  for (const [id, parent, meta, regs] of s.nodes) {
    const mine = existing.has(id) ? (getRegs.get(id) as string | null) : null;
    const text = regs === null ? mine : mine !== null ? mergeRegs(id, mine, regs) : JSON.stringify(regs);
    nodes.add(id, parent, meta === null ? null : JSON.stringify(meta), text);
  }
  nodes.end();
  const log = new BulkInsert(d, 'INSERT OR REPLACE INTO log (counter, replica, op, old) VALUES', 4);
  for (const [c, r, op, old] of s.log)
    log.add(c, r, JSON.stringify(op), old === null ? null : JSON.stringify(old));
  log.end();
  const versions = new BulkInsert(d, 'INSERT OR IGNORE INTO versions (node, id, counter, data) VALUES', 4);
  for (const [n, id, c, v] of s.versions) versions.add(n, id, c, JSON.stringify(v));
  versions.end();
  if (s.truncated !== null) db.kvSet('truncated', JSON.stringify(s.truncated));
  if (s.conflicted.length > 0) db.kvSet('conflicted', JSON.stringify(s.conflicted));
}

/**
 * Rows inserted ROWS at a time with one prepared multi-row statement (a remainder with a second one): the per-call
 * overhead of a statement, not SQLite, dominates one-row inserts.
 */
class BulkInsert {
  private static readonly ROWS = 64;
  private readonly full: Statement<SqlValue[]>;
  private readonly buf: SqlValue[] = [];

  constructor(
    private readonly db: Database,
    private readonly head: string,
    private readonly width: number,
  ) {
    this.full = db.prepare<SqlValue[]>(this.sql(BulkInsert.ROWS));
  }

  private sql(rows: number): string {
    const one = `(${new Array<string>(this.width).fill('?').join(', ')})`;
    return `${this.head} ${new Array<string>(rows).fill(one).join(', ')}`;
  }

  add(...values: SqlValue[]): void {
    for (const v of values) this.buf.push(v);
    if (this.buf.length === BulkInsert.ROWS * this.width) {
      this.full.run(...this.buf);
      this.buf.length = 0;
    }
  }

  end(): void {
    if (this.buf.length > 0)
      this.db.prepare<SqlValue[]>(this.sql(this.buf.length / this.width)).run(...this.buf);
    this.buf.length = 0;
  }
}

type SqlValue = string | number | null;

/** The snapshot's placements and log as the CRDT restores them (no SQLite round trip). */
export function crdtParts(s: TreeSnapshot): {
  placements: Array<[string, NodePlacement<TreeMeta>]>;
  log: Array<LogMove<TreeMeta>>;
} {
  const placements: Array<[string, NodePlacement<TreeMeta>]> = [];
  for (const [id, parent, meta] of s.nodes)
    if (parent !== null && meta !== null) placements.push([id, { parent, meta }]);
  const log = s.log.map(([counter, replica, op, old]) => ({
    op: { ts: { counter, replica }, parent: op.parent, meta: op.meta, child: op.child },
    old,
  }));
  return { placements, log };
}

// ---------------------------------------------------------------- validation of remote input

const REPLICA = /^[A-Za-z0-9_-]{1,32}$/;
const CHUNK = /^[0-9a-f]{64}$/;

function bad(what: string): InvalidInputError {
  return new InvalidInputError(`checkpoint snapshot: ${what}`, 'ARBOR_BAD_CHECKPOINT');
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkMeta(m: unknown, what: string): void {
  const o = m as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || !isStr(o.n) || (o.k !== 'd' && o.k !== 'l' && o.k !== 'i'))
    throw bad(`${what}: bad meta`);
  const t = o.t as unknown[];
  if (!Array.isArray(t) || t.length !== 2 || !isInt(t[0]) || !isStr(t[1])) throw bad(`${what}: bad meta.t`);
  if (o.k === 'l' && !isStr(o.i)) throw bad(`${what}: a link without an inode`);
}

function checkPlacement(p: unknown, what: string): void {
  const o = p as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || !isStr(o.parent)) throw bad(`${what}: bad placement`);
  checkMeta(o.meta, what);
}

function checkRegs(r: unknown, id: string): void {
  const o = r as { g?: unknown; h?: unknown } | null;
  if (typeof o !== 'object' || o === null || !Array.isArray(o.g)) throw bad(`registers of ${id}`);
  for (const g of o.g as unknown[]) {
    const a = g as unknown[];
    if (
      !Array.isArray(a) ||
      a.length !== 3 ||
      !isInt(a[0]) ||
      !isStr(a[1]) ||
      typeof a[2] !== 'object' ||
      a[2] === null
    )
      throw bad(`registers of ${id}`);
  }
  if (o.h !== undefined && !Array.isArray(o.h)) throw bad(`conflict heads of ${id}`);
}

function checkVersion(v: unknown, id: string): void {
  const o = v as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || o.id !== id || !isInt(o.size) || !Array.isArray(o.chunks))
    throw bad(`version ${id}`);
  for (const c of o.chunks as unknown[]) {
    const r = c as { id?: unknown; size?: unknown } | null;
    if (typeof r !== 'object' || r === null || !isStr(r.id) || !CHUNK.test(r.id) || !isInt(r.size))
      throw bad(`version ${id}: bad chunk reference`);
  }
}

function rows(v: unknown, width: number, what: string): unknown[][] {
  if (!Array.isArray(v)) throw bad(`${what} is not a list`);
  for (const r of v as unknown[]) if (!Array.isArray(r) || r.length !== width) throw bad(`a ${what} row`);
  return v as unknown[][];
}

/**
 * Check every row's shape and every JSON field inside it, so nothing malformed reaches SQLite or the tree (which
 * then checks the forest itself: no node placed twice, no cycle). Throws InvalidInputError (ARBOR_BAD_CHECKPOINT).
 */
export function checkSnapshot(v: unknown): TreeSnapshot {
  const o = v as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null) throw bad('not an object');
  const seen = new Set<string>();
  for (const r of rows(o.nodes, 4, 'node')) {
    const [id, parent, meta, regs] = r;
    if (!isStr(id) || id.length === 0 || seen.has(id)) throw bad(`node id ${String(id)}`);
    seen.add(id);
    if ((parent === null) !== (meta === null)) throw bad(`node ${id}: parent and meta disagree`);
    if (parent !== null) {
      if (!isStr(parent) || parent === id) throw bad(`node ${id}: bad parent`);
      checkMeta(meta, id);
    }
    if (regs !== null) checkRegs(regs, id);
  }
  for (const r of rows(o.log, 4, 'log')) {
    const [counter, replica, op, old] = r;
    if (!isInt(counter) || !isStr(replica) || !REPLICA.test(replica)) throw bad('log timestamp');
    const m = op as Record<string, unknown> | null;
    if (typeof m !== 'object' || m === null || !isStr(m.child)) throw bad('log op');
    checkPlacement(m, `log op ${counter}.${replica}`);
    if (old !== null) checkPlacement(old, `log op ${counter}.${replica}`);
  }
  for (const r of rows(o.versions, 4, 'version')) {
    const [node, id, counter, data] = r;
    if (!isStr(node) || !isStr(id) || !isInt(counter)) throw bad('version row');
    checkVersion(data, id);
  }
  for (const r of rows(o.peers, 3, 'peer')) {
    if (!isStr(r[0]) || !REPLICA.test(r[0]) || !isInt(r[1]) || !isInt(r[2])) throw bad('peer row');
  }
  if (!Array.isArray(o.conflicted) || !(o.conflicted as unknown[]).every(isStr)) throw bad('conflicted');
  const t = o.truncated as { counter?: unknown; replica?: unknown } | null;
  if (t !== null && (typeof t !== 'object' || !isInt(t.counter) || !isStr(t.replica)))
    throw bad('truncation point');
  if (!isInt(o.clock)) throw bad('clock');
  return o as unknown as TreeSnapshot;
}
