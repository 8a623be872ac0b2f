// SQLite persistence of one arbor directory's tree state: schema, migrations, prepared statements. Knows no tree logic.
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';

/** Schema migrations; index i upgrades from version i to i+1. Never edit a shipped migration: append one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
   -- Materialized tree and registers, one row per node: placement (parent, meta JSON) and register JSON.
   CREATE TABLE nodes (id TEXT PRIMARY KEY, parent TEXT, meta TEXT, regs TEXT) WITHOUT ROWID;
   -- The untruncated suffix of the CRDT move log (op JSON, old placement JSON), for undo/redo after reopen.
   CREATE TABLE log (counter INTEGER NOT NULL, replica TEXT NOT NULL, op TEXT NOT NULL, old TEXT,
                     PRIMARY KEY (counter, replica)) WITHOUT ROWID;
   -- Ops this replica made, one row per filesystem operation, numbered by the local sequence (for sync to push).
   CREATE TABLE local_ops (seq INTEGER PRIMARY KEY, ops TEXT NOT NULL);
   -- Every content version ever seen (history for log/restore; conflicts are derived from it).
   CREATE TABLE versions (node TEXT NOT NULL, id TEXT NOT NULL, counter INTEGER NOT NULL, data TEXT NOT NULL,
                          PRIMARY KEY (node, id)) WITHOUT ROWID;
   -- Replication positions of peers: last applied batch seq and the largest Lamport counter seen from each.
   CREATE TABLE peers (replica TEXT PRIMARY KEY, seq INTEGER NOT NULL, counter INTEGER NOT NULL) WITHOUT ROWID;`,
  // Nodes and inodes emptied from trash by GC: gone for good; late ops addressing them must not resurrect registers.
  `CREATE TABLE purged (id TEXT PRIMARY KEY) WITHOUT ROWID;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export interface NodeRow {
  id: string;
  parent: string | null;
  meta: string | null;
  regs: string | null;
}

export interface LogRow {
  counter: number;
  replica: string;
  op: string;
  old: string | null;
}

export interface StateDbOptions {
  /** fsync every commit (synchronous=FULL). Default false: WAL + NORMAL (durable against process crash, not power loss). */
  durable?: boolean;
}

/** WAL pages between automatic checkpoints (each one copies the WAL into the database and fsyncs both). */
export const WAL_AUTOCHECKPOINT_PAGES = 16384;

/**
 * The settings every writing connection to state.sqlite3 must share: WAL, synchronous=NORMAL (FULL when `durable`)
 * and one checkpoint threshold. The WAL is shared, so a connection left at SQLite's default (1000 pages, and FULL
 * on a database it switched to WAL itself) checkpoints and fsyncs on the main thread every 4 MiB of anyone's commits.
 */
export function configureConnection(db: Db, opts: { durable?: boolean } = {}): void {
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.durable ? 'FULL' : 'NORMAL'}`);
  // Fewer, larger checkpoints: each one fsyncs; 64 MiB of WAL between them keeps small commits cheap.
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
}

/** The state database with every statement prepared once. All writes go through `tx`. */
export class StateDb {
  readonly db: Db;
  private readonly s: {
    kvGet: Statement<[string]>;
    kvSet: Statement<[string, string]>;
    placeNode: Statement<[string, string, string]>;
    setRegs: Statement<[string, string]>;
    getNode: Statement<[string]>;
    getRegs: Statement<[string]>;
    allNodes: Statement<[]>;
    logPut: Statement<[number, string, string, string | null]>;
    logAll: Statement<[]>;
    logDeleteBelow: Statement<[number, number, string]>;
    localOpPut: Statement<[number, string]>;
    localOpsSince: Statement<[number]>;
    lastLocalOps: Statement<[]>;
    pruneLocalOps: Statement<[number]>;
    versionPut: Statement<[string, string, number, string]>;
    versionsOf: Statement<[string]>;
    versionGet: Statement<[string, string]>;
    peerGet: Statement<[string]>;
    peerPut: Statement<[string, number, number]>;
    peersAll: Statement<[]>;
    nodeCount: Statement<[]>;
    logCount: Statement<[]>;
    deleteNode: Statement<[string]>;
    deleteVersionsOf: Statement<[string]>;
    purgedAdd: Statement<[string]>;
    purgedHas: Statement<[string]>;
  };

  constructor(path: string, opts: StateDbOptions = {}) {
    this.db = new Database(path);
    configureConnection(this.db, opts);
    this.db.pragma('foreign_keys = OFF');
    this.migrate();
    const p = <A extends unknown[]>(sql: string): Statement<A> => this.db.prepare<A>(sql);
    this.s = {
      kvGet: p('SELECT value FROM kv WHERE key = ?'),
      kvSet: p(
        'INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
      ),
      placeNode: p(
        'INSERT INTO nodes (id, parent, meta) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET parent = excluded.parent, meta = excluded.meta',
      ),
      setRegs: p(
        'INSERT INTO nodes (id, regs) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET regs = excluded.regs',
      ),
      getNode: p('SELECT id, parent, meta, regs FROM nodes WHERE id = ?'),
      getRegs: p('SELECT regs FROM nodes WHERE id = ?'),
      allNodes: p('SELECT id, parent, meta FROM nodes WHERE parent IS NOT NULL'),
      logPut: p(
        'INSERT INTO log (counter, replica, op, old) VALUES (?, ?, ?, ?) ON CONFLICT(counter, replica) DO UPDATE SET old = excluded.old',
      ),
      logAll: p('SELECT counter, replica, op, old FROM log ORDER BY counter, replica'),
      logDeleteBelow: p('DELETE FROM log WHERE counter < ? OR (counter = ? AND replica < ?)'),
      localOpPut: p('INSERT INTO local_ops (seq, ops) VALUES (?, ?)'),
      localOpsSince: p('SELECT seq, ops FROM local_ops WHERE seq > ? ORDER BY seq'),
      lastLocalOps: p('SELECT seq, ops FROM local_ops ORDER BY seq DESC LIMIT 1'),
      pruneLocalOps: p('DELETE FROM local_ops WHERE seq <= ?'),
      versionPut: p('INSERT OR IGNORE INTO versions (node, id, counter, data) VALUES (?, ?, ?, ?)'),
      versionsOf: p('SELECT data FROM versions WHERE node = ? ORDER BY counter, id'),
      versionGet: p('SELECT data FROM versions WHERE node = ? AND id = ?'),
      peerGet: p('SELECT replica, seq, counter FROM peers WHERE replica = ?'),
      peerPut: p(
        'INSERT INTO peers (replica, seq, counter) VALUES (?, ?, ?) ON CONFLICT(replica) DO UPDATE SET seq = max(seq, excluded.seq), counter = max(counter, excluded.counter)',
      ),
      peersAll: p('SELECT replica, seq, counter FROM peers'),
      nodeCount: p('SELECT count(*) AS n FROM nodes'),
      logCount: p('SELECT count(*) AS n FROM log'),
      deleteNode: p('DELETE FROM nodes WHERE id = ?'),
      deleteVersionsOf: p('DELETE FROM versions WHERE node = ?'),
      purgedAdd: p('INSERT OR IGNORE INTO purged (id) VALUES (?)'),
      purgedHas: p('SELECT 1 FROM purged WHERE id = ?'),
    };
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.db.prepare('SELECT version FROM schema_version').get() as
      { version: number } | undefined;
    let v = row?.version ?? 0;
    if (v > MIGRATIONS.length) {
      throw new Error(`state database schema ${v} is newer than this arbor (${MIGRATIONS.length})`);
    }
    const step = this.db.transaction((i: number) => {
      this.db.exec(MIGRATIONS[i]!);
      this.db.prepare('DELETE FROM schema_version').run();
      this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(i + 1);
    });
    while (v < MIGRATIONS.length) step(v++);
  }

  private readonly runTx = (fn: () => unknown): unknown => fn();
  private wrappedTx: ((fn: () => unknown) => unknown) | undefined;

  /** Run `fn` in one transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.wrappedTx ??= this.db.transaction(this.runTx);
    return this.wrappedTx(fn) as T;
  }

  kvGet(key: string): string | undefined {
    return (this.s.kvGet.get(key) as { value: string } | undefined)?.value;
  }
  kvSet(key: string, value: string): void {
    this.s.kvSet.run(key, value);
  }
  placeNode(id: string, parent: string, meta: string): void {
    this.s.placeNode.run(id, parent, meta);
  }
  setRegs(id: string, regs: string): void {
    this.s.setRegs.run(id, regs);
  }
  getNode(id: string): NodeRow | undefined {
    return this.s.getNode.get(id) as NodeRow | undefined;
  }
  /** Every placed node as [id, parent, meta JSON] (registers are read on demand with getRegs). */
  allPlacements(): Array<[string, string, string]> {
    return this.s.allNodes.raw(true).all() as Array<[string, string, string]>;
  }
  getRegs(id: string): string | null {
    return (this.s.getRegs.get(id) as { regs: string | null } | undefined)?.regs ?? null;
  }
  versionGet(node: string, id: string): string | undefined {
    return (this.s.versionGet.get(node, id) as { data: string } | undefined)?.data;
  }
  nodeCount(): number {
    return (this.s.nodeCount.get() as { n: number }).n;
  }
  logPut(counter: number, replica: string, op: string, old: string | null): void {
    this.s.logPut.run(counter, replica, op, old);
  }
  logAll(): LogRow[] {
    return this.s.logAll.all() as LogRow[];
  }
  /** Delete log entries with timestamp < (counter, replica). */
  logDeleteBelow(counter: number, replica: string): void {
    this.s.logDeleteBelow.run(counter, counter, replica);
  }
  localOpPut(seq: number, ops: string): void {
    this.s.localOpPut.run(seq, ops);
  }
  localOpsSince(seq: number): Array<{ seq: number; ops: string }> {
    return this.s.localOpsSince.all(seq) as Array<{ seq: number; ops: string }>;
  }
  lastLocalOps(): { seq: number; ops: string } | undefined {
    return this.s.lastLocalOps.get() as { seq: number; ops: string } | undefined;
  }
  pruneLocalOps(throughSeq: number): number {
    return this.s.pruneLocalOps.run(throughSeq).changes;
  }
  /** Make every committed transaction durable (fsync the WAL, copy it into the database). */
  checkpoint(): void {
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }
  versionPut(node: string, id: string, counter: number, data: string): void {
    this.s.versionPut.run(node, id, counter, data);
  }
  versionsOf(node: string): string[] {
    return (this.s.versionsOf.all(node) as Array<{ data: string }>).map((r) => r.data);
  }
  peerGet(replica: string): { replica: string; seq: number; counter: number } | undefined {
    return this.s.peerGet.get(replica) as { replica: string; seq: number; counter: number } | undefined;
  }
  peerPut(replica: string, seq: number, counter: number): void {
    this.s.peerPut.run(replica, seq, counter);
  }
  peers(): Array<{ replica: string; seq: number; counter: number }> {
    return this.s.peersAll.all() as Array<{ replica: string; seq: number; counter: number }>;
  }

  // ---- GC: emptying trash for good

  logCount(): number {
    return (this.s.logCount.get() as { n: number }).n;
  }
  /** Remove a node for good: its placement, registers and versions; remember it as purged. */
  purgeNode(id: string): void {
    this.s.deleteNode.run(id);
    this.s.deleteVersionsOf.run(id);
    this.s.purgedAdd.run(id);
  }
  isPurged(id: string): boolean {
    return this.s.purgedHas.get(id) !== undefined;
  }

  close(): void {
    this.db.close();
  }
}
