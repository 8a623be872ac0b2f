// A FileTree's persisted state as a small SQLite database (its `nodes`, `log` and `versions` tables) plus peers and
// clock: what a checkpoint carries so a new clone bulk-loads it with one INSERT … SELECT per table in one transaction,
// instead of replaying ops through the CRDT or handling rows one by one in JavaScript. Knows the table layout of
// src/state/db.ts and the shapes of the JSON in it; knows no CRDT or POSIX logic.
import { unlinkSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Timestamp } from '../crdt/index.js';
import { InvalidInputError } from '../errors.js';
import type { StateDb } from '../state/db.js';
import type { ContentVersion, TreeMeta } from './types.js';

export interface TreeSnapshot {
  /** A serialized SQLite database holding exactly the tables `nodes`, `log` and `versions` (SCHEMA below). */
  readonly db: Uint8Array;
  /** [replica, last applied batch seq, largest Lamport counter seen from it] per peer. */
  readonly peers: ReadonlyArray<readonly [string, number, number]>;
  /** Nodes with conflict copies (the tree keeps this derived set in kv). */
  readonly conflicted: readonly string[];
  /** The CRDT log truncation point, if any. */
  readonly truncated: Timestamp | null;
  /** The exporting replica's Lamport counter: every op it covers has a counter ≤ this. */
  readonly clock: number;
}

// purged: a clone must ignore late ops aimed at entries the exporter emptied from trash, as the exporter does.
const TABLES = ['nodes', 'log', 'versions', 'purged'] as const;
/** The snapshot database's schema: the tree's own tables (src/state/db.ts), columns in the same order. */
const SCHEMA: Record<(typeof TABLES)[number], { create: string; columns: string }> = {
  nodes: {
    create: 'CREATE TABLE snap.nodes (id TEXT PRIMARY KEY, parent TEXT, meta TEXT, regs TEXT) WITHOUT ROWID',
    columns: 'id, parent, meta, regs',
  },
  log: {
    create:
      'CREATE TABLE snap.log (counter INTEGER NOT NULL, replica TEXT NOT NULL, op TEXT NOT NULL, old TEXT,' +
      ' PRIMARY KEY (counter, replica)) WITHOUT ROWID',
    columns: 'counter, replica, op, old',
  },
  versions: {
    create:
      'CREATE TABLE snap.versions (node TEXT NOT NULL, id TEXT NOT NULL, counter INTEGER NOT NULL, data TEXT NOT NULL,' +
      ' PRIMARY KEY (node, id)) WITHOUT ROWID',
    columns: 'node, id, counter, data',
  },
  purged: {
    create: 'CREATE TABLE snap.purged (id TEXT PRIMARY KEY) WITHOUT ROWID',
    columns: 'id',
  },
};

/** Copy the tables into an in-memory database and serialize it; one synchronous stretch (no commit in between). */
export function readSnapshot(db: StateDb, clock: number): TreeSnapshot {
  const d = db.db;
  d.exec("ATTACH DATABASE ':memory:' AS snap");
  let bytes: Buffer;
  try {
    for (const t of TABLES) {
      d.exec(SCHEMA[t].create);
      d.exec(`INSERT INTO snap.${t} (${SCHEMA[t].columns}) SELECT ${SCHEMA[t].columns} FROM main.${t}`);
    }
    bytes = d.serialize({ attached: 'snap' });
  } finally {
    d.exec('DETACH DATABASE snap');
  }
  const t = db.kvGet('truncated');
  return {
    db: bytes,
    peers: d.prepare('SELECT replica, seq, counter FROM peers').raw(true).all() as Array<
      [string, number, number]
    >,
    conflicted: JSON.parse(db.kvGet('conflicted') ?? '[]') as string[],
    truncated: t === undefined ? null : (JSON.parse(t) as Timestamp),
    clock,
  };
}

// ---------------------------------------------------------------- validation of remote input

function bad(what: string): InvalidInputError {
  return new InvalidInputError(`checkpoint snapshot: ${what}`, 'ARBOR_BAD_CHECKPOINT');
}

/** Check the parts of a snapshot that travel beside the database (the database is checked by writeSnapshot). */
export function checkSnapshotHeader(v: unknown, db: Uint8Array): TreeSnapshot {
  const o = v as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null) throw bad('not an object');
  const int = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  const replica = (x: unknown): boolean => typeof x === 'string' && /^[A-Za-z0-9_-]{1,32}$/.test(x);
  if (
    !Array.isArray(o.peers) ||
    !(o.peers as unknown[]).every(
      (p) => Array.isArray(p) && p.length === 3 && replica(p[0]) && int(p[1]) && int(p[2]),
    )
  )
    throw bad('peers');
  if (!Array.isArray(o.conflicted) || !(o.conflicted as unknown[]).every((x) => typeof x === 'string'))
    throw bad('conflicted');
  const t = o.truncated as { counter?: unknown; replica?: unknown } | null;
  if (t !== null && (typeof t !== 'object' || !int(t.counter) || !replica(t.replica)))
    throw bad('truncation point');
  if (!int(o.clock)) throw bad('clock');
  return {
    db,
    peers: o.peers as TreeSnapshot['peers'],
    conflicted: o.conflicted as string[],
    truncated: t as Timestamp | null,
    clock: o.clock as number,
  };
}

/** [what, SQL counting the bad rows] per table: column types and the JSON columns' validity and outer shape. */
const CHECKS: Array<[string, string]> = [
  [
    'purged row',
    `SELECT count(*) FROM snap.purged WHERE NOT coalesce(typeof(id) = 'text' AND length(id) > 0, 0)`,
  ],
  [
    'node row',
    `SELECT count(*) FROM snap.nodes WHERE NOT coalesce(typeof(id) = 'text' AND length(id) > 0
       AND ((parent IS NULL AND meta IS NULL) OR (typeof(parent) = 'text' AND parent != id AND typeof(meta) = 'text'))
       AND (regs IS NULL OR (typeof(regs) = 'text' AND json_valid(regs) AND json_type(regs, '$.g') = 'array')), 0)`,
  ],
  [
    'log row',
    `SELECT count(*) FROM snap.log WHERE NOT coalesce(typeof(counter) = 'integer' AND counter BETWEEN 0 AND 9007199254740991
       AND typeof(replica) = 'text' AND length(replica) BETWEEN 1 AND 32 AND NOT replica GLOB '*[^A-Za-z0-9_-]*'
       AND typeof(op) = 'text' AND (old IS NULL OR typeof(old) = 'text'), 0)`,
  ],
  [
    'version row',
    `SELECT count(*) FROM snap.versions WHERE NOT coalesce(typeof(node) = 'text' AND typeof(id) = 'text'
       AND typeof(counter) = 'integer' AND typeof(data) = 'text' AND json_valid(data)
       AND data ->> '$.id' = id AND json_type(data, '$.size') = 'integer' AND data ->> '$.size' >= 0
       AND json_type(data, '$.chunks') = 'array', 0)`,
  ],
  [
    'chunk reference',
    `SELECT count(*) FROM snap.versions v, json_each(v.data, '$.chunks') c WHERE NOT coalesce(
       json_type(c.value) = 'object' AND json_type(c.value, '$.id') = 'text' AND length(c.value ->> '$.id') = 64
       AND NOT (c.value ->> '$.id') GLOB '*[^0-9a-f]*' AND json_type(c.value, '$.size') = 'integer', 0)`,
  ],
];

/**
 * Load a snapshot's tables into an empty state: the database is written to `tmpPath`, attached, checked (only the
 * four tables, no views or triggers; column types; JSON validity and shape) and copied with one INSERT … SELECT
 * per table, all in one transaction. Nodes that already have registers (a fresh tree's root) get
 * `mergeRegs(id, mine, theirs)`. The caller then rebuilds its CRDT from the tables (which parses and checks every
 * placement and log entry) and rolls back on any throw. Throws InvalidInputError (ARBOR_BAD_CHECKPOINT). Returns the
 * number of rows loaded.
 */
export function writeSnapshot(
  db: StateDb,
  s: TreeSnapshot,
  tmpPath: string,
  mergeRegs: (id: string, mine: string, theirs: string) => string,
  inTransaction: (fn: () => void) => void,
): number {
  const d = db.db;
  writeFileSync(tmpPath, s.db, { mode: 0o600 });
  let rows = 0;
  try {
    try {
      d.prepare('ATTACH DATABASE ? AS snap').run(tmpPath);
    } catch (err) {
      throw bad(`not a database: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      inTransaction(() => {
        try {
          const objects = d
            .prepare("SELECT type, name FROM snap.sqlite_schema WHERE name NOT LIKE 'sqlite_autoindex_%'")
            .raw(true)
            .all() as Array<[string, string]>;
          const names = objects.map(([type, name]) => `${type} ${name}`).sort();
          if (names.join(',') !== 'table log,table nodes,table purged,table versions')
            throw bad(`unexpected schema (${names.join(', ')})`);
          for (const [what, sql] of CHECKS) {
            const n = d.prepare(sql).pluck(true).get() as number;
            if (n > 0) throw bad(`${n} malformed ${what}(s)`);
          }
          const mine = d
            .prepare('SELECT id, regs FROM main.nodes WHERE regs IS NOT NULL')
            .raw(true)
            .all() as Array<[string, string]>;
          d.exec('DELETE FROM main.nodes');
          for (const t of TABLES) {
            const c = SCHEMA[t].columns;
            rows += d.prepare(`INSERT INTO main.${t} (${c}) SELECT ${c} FROM snap.${t}`).run().changes;
          }
          const theirsOf = d.prepare<[string]>('SELECT regs FROM main.nodes WHERE id = ?').pluck(true);
          const setRegs = d.prepare<[string, string]>(
            'INSERT INTO main.nodes (id, regs) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET regs = excluded.regs',
          );
          for (const [id, regs] of mine) {
            const theirs = theirsOf.get(id) as string | null | undefined;
            setRegs.run(id, theirs == null ? regs : mergeRegs(id, regs, theirs));
          }
        } catch (err) {
          if (err instanceof InvalidInputError) throw err;
          // SQLITE_CORRUPT, SQLITE_NOTADB, a constraint, malformed JSON in a check: all mean a bad checkpoint.
          throw bad(err instanceof Error ? err.message : String(err));
        }
        if (s.truncated !== null) db.kvSet('truncated', JSON.stringify(s.truncated));
        if (s.conflicted.length > 0) db.kvSet('conflicted', JSON.stringify(s.conflicted));
      });
    } finally {
      d.exec('DETACH DATABASE snap');
    }
  } finally {
    try {
      unlinkSync(tmpPath);
    } catch {
      /* gone */
    }
  }
  return rows;
}

/** A placement's meta as the tree needs it (the CRDT checks the forest; this checks what meta it carries). */
export function checkMeta(m: unknown, where: string): void {
  const o = m as Partial<TreeMeta> | null;
  const t = o?.t as unknown[] | undefined;
  if (
    typeof o !== 'object' ||
    o === null ||
    typeof o.n !== 'string' ||
    (o.k !== 'd' && o.k !== 'l' && o.k !== 'i') ||
    !Array.isArray(t) ||
    t.length !== 2 ||
    typeof t[0] !== 'number' ||
    typeof t[1] !== 'string' ||
    (o.k === 'l' && typeof o.i !== 'string')
  )
    throw bad(`${where}: bad meta`);
}

/** The versions of a snapshot (GC marks their chunks), read from its database without touching disk. */
export function snapshotVersions(s: TreeSnapshot): Array<[string, string, number, ContentVersion]> {
  const d = new Database(Buffer.from(s.db), { readonly: true });
  try {
    return (
      d.prepare('SELECT node, id, counter, data FROM versions').raw(true).all() as Array<
        [string, string, number, string]
      >
    ).map(([node, id, counter, data]) => [node, id, counter, JSON.parse(data) as ContentVersion]);
  } finally {
    d.close();
  }
}
