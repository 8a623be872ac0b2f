// A FileTree's persisted state as plain rows (nodes, CRDT log, versions, peers, clock): what a checkpoint carries so
// a new clone can bulk-load it into SQLite in one transaction instead of replaying ops one by one through the CRDT.
// Knows the table layout of src/state/db.ts and the shapes of the JSON in it; knows no CRDT or POSIX logic.
import { InvalidInputError } from '../errors.js';
import type { StateDb } from '../state/db.js';

/** One `nodes` row: id, parent, meta JSON, regs JSON (parent and meta are null together: a node with registers only). */
export type SnapshotNode = readonly [string, string | null, string | null, string | null];
/** One `log` row: counter, replica, op JSON ({parent, meta, child}), old placement JSON or null. */
export type SnapshotLog = readonly [number, string, string, string | null];
/** One `versions` row: node, version id, counter, version JSON. */
export type SnapshotVersion = readonly [string, string, number, string];
/** One `peers` row: replica, last applied batch seq, largest Lamport counter seen from it. */
export type SnapshotPeer = readonly [string, number, number];

export interface TreeSnapshot {
  readonly nodes: readonly SnapshotNode[];
  readonly log: readonly SnapshotLog[];
  readonly versions: readonly SnapshotVersion[];
  readonly peers: readonly SnapshotPeer[];
  /** Nodes with conflict copies (the tree keeps this derived set in kv). */
  readonly conflicted: readonly string[];
  /** The CRDT log truncation point, if any ({counter, replica}). */
  readonly truncated: { readonly counter: number; readonly replica: string } | null;
  /** The exporting replica's Lamport counter: every op it covers has a counter ≤ this. */
  readonly clock: number;
}

/** Read the whole state in one synchronous stretch (no commit can land in between). */
export function readSnapshot(db: StateDb, clock: number): TreeSnapshot {
  const d = db.db;
  const nodes = d.prepare('SELECT id, parent, meta, regs FROM nodes').raw(true).all() as SnapshotNode[];
  const log = d.prepare('SELECT counter, replica, op, old FROM log').raw(true).all() as SnapshotLog[];
  const versions = d
    .prepare('SELECT node, id, counter, data FROM versions')
    .raw(true)
    .all() as SnapshotVersion[];
  const peers = d.prepare('SELECT replica, seq, counter FROM peers').raw(true).all() as SnapshotPeer[];
  const conflicted = JSON.parse(db.kvGet('conflicted') ?? '[]') as string[];
  const t = db.kvGet('truncated');
  const truncated = t === undefined ? null : (JSON.parse(t) as { counter: number; replica: string });
  return { nodes, log, versions, peers, conflicted, truncated, clock };
}

/**
 * Write a snapshot's rows into an empty state (the caller runs this inside its transaction). Nodes that already have
 * a row (a fresh tree's root registers) are handed to `mergeRegs` instead of being overwritten.
 */
export function writeSnapshot(
  db: StateDb,
  s: TreeSnapshot,
  mergeRegs: (id: string, mine: string, theirs: string) => string,
): void {
  const d = db.db;
  const getRegs = d.prepare<[string]>('SELECT regs FROM nodes WHERE id = ?').pluck(true);
  const putNode = d.prepare<[string, string | null, string | null, string | null]>(
    'INSERT OR REPLACE INTO nodes (id, parent, meta, regs) VALUES (?, ?, ?, ?)',
  );
  for (const [id, parent, meta, regs] of s.nodes) {
    const mine = getRegs.get(id) as string | null | undefined;
    const merged = mine != null && regs !== null ? mergeRegs(id, mine, regs) : (regs ?? mine ?? null);
    putNode.run(id, parent, meta, merged);
  }
  const putLog = d.prepare<[number, string, string, string | null]>(
    'INSERT OR REPLACE INTO log (counter, replica, op, old) VALUES (?, ?, ?, ?)',
  );
  for (const r of s.log) putLog.run(r[0], r[1], r[2], r[3]);
  const putVersion = d.prepare<[string, string, number, string]>(
    'INSERT OR IGNORE INTO versions (node, id, counter, data) VALUES (?, ?, ?, ?)',
  );
  for (const r of s.versions) putVersion.run(r[0], r[1], r[2], r[3]);
  if (s.truncated !== null) db.kvSet('truncated', JSON.stringify(s.truncated));
  if (s.conflicted.length > 0) db.kvSet('conflicted', JSON.stringify(s.conflicted));
}

// ---------------------------------------------------------------- validation of remote input

const REPLICA = /^[A-Za-z0-9_-]{1,32}$/;
const CHUNK = /^[0-9a-f]{64}$/;

function bad(what: string): InvalidInputError {
  return new InvalidInputError(`checkpoint snapshot: ${what}`, 'ARBOR_BAD_CHECKPOINT');
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parse(text: unknown, what: string): unknown {
  if (!isStr(text)) throw bad(`${what} is not a string`);
  try {
    return JSON.parse(text);
  } catch {
    throw bad(`${what} is not JSON`);
  }
}

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
      checkMeta(parse(meta, `meta of ${id}`), id);
    }
    if (regs !== null) checkRegs(parse(regs, `registers of ${id}`), id);
  }
  for (const r of rows(o.log, 4, 'log')) {
    const [counter, replica, op, old] = r;
    if (!isInt(counter) || !isStr(replica) || !REPLICA.test(replica)) throw bad('log timestamp');
    const m = parse(op, 'log op') as Record<string, unknown> | null;
    if (typeof m !== 'object' || m === null || !isStr(m.child)) throw bad('log op');
    checkPlacement(m, `log op ${counter}.${replica}`);
    if (old !== null) checkPlacement(parse(old, 'log old placement'), `log op ${counter}.${replica}`);
  }
  for (const r of rows(o.versions, 4, 'version')) {
    const [node, id, counter, data] = r;
    if (!isStr(node) || !isStr(id) || !isInt(counter)) throw bad('version row');
    checkVersion(parse(data, `version ${id}`), id);
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

/** Every chunk a snapshot's versions reference (for GC's mark phase). */
export function snapshotVersions(s: TreeSnapshot): Array<{ node: string; data: string }> {
  return s.versions.map((r) => ({ node: r[0], data: r[3] }));
}
