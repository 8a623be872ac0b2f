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
  /**
   * Group commit: writes are queued and committed together at most this many ms later (or sooner: see
   * StateDb.flush), instead of one SQLite commit per `tx`. Off (undefined) by default; ignored with `durable`.
   */
  groupCommitMs?: number;
  /**
   * The current registers of a node, encoded (null: none), for `setRegsLater`: read when the queued write runs, so a
   * node changed by many queued operations (a directory's times) is encoded and written once per group.
   */
  regsOf?: (id: string) => string | null;
}

/** Queued writes that force a flush at the end of the current `tx` (bounds the queue's memory under a burst). */
const MAX_QUEUED = 8192;

/** One queued write: a prepared statement and its arguments. */
interface Write {
  stmt: Statement<unknown[]>;
  args: unknown[];
  /** A setRegsLater write: args is [id]; the value is asked of `regsOf` when it runs. */
  later?: boolean;
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

/**
 * The state database with every statement prepared once. All writes go through `tx`.
 *
 * Group commit (`groupCommitMs`): a commit costs ~45 µs (the WAL write of every page it touched), most of a small
 * metadata operation. So writes are queued in order and run in one transaction later, and durability moves to where
 * POSIX owes it: fsync/fsyncdir (the caller flushes before it fsyncs the files), a push to the remote and close flush
 * too. A kill -9 then loses at most the last few ms of unsynced operations, never part of one: a `tx` that throws
 * drops its own queued writes, and a flush runs whole `tx`s only. Reads see every queued write: a read whose answer
 * a queued write could change flushes first (per key for the hot ones — nodes, versions, purged — else always).
 */
export class StateDb {
  readonly #conn: Db;
  #groupMs: number | undefined;
  readonly #queue: Write[] = [];
  /** Keys with queued writes, for the reads that only need a flush when their key is among them. */
  readonly #pendingNodes = new Set<string>();
  readonly #pendingVersions = new Set<string>();
  readonly #pendingPurged = new Set<string>();
  /** Nodes with a queued setRegsLater write (a later call for one of them adds nothing). */
  readonly #later = new Set<string>();
  readonly #regsOf: ((id: string) => string | null) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Nesting of `tx` calls (only the outermost one is a unit). */
  #depth = 0;
  /** Queue length when the outermost running `tx` began: writes before it are whole operations. */
  #mark = 0;
  /** A flush ran inside the running `tx`: a SQLite transaction is open and writes run at once until it ends. */
  #open = false;
  private readonly s: {
    kvGet: Statement<[string]>;
    kvSet: Statement<[string, string]>;
    placeNode: Statement<[string, string, string]>;
    setRegs: Statement<[string, string | null]>;
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
    this.#conn = new Database(path);
    this.#groupMs = opts.durable ? undefined : opts.groupCommitMs;
    this.#regsOf = opts.regsOf;
    configureConnection(this.#conn, opts);
    this.#conn.pragma('foreign_keys = OFF');
    this.migrate();
    const p = <A extends unknown[]>(sql: string): Statement<A> => this.#conn.prepare<A>(sql);
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

  /** The connection itself, for code that runs its own SQL (snapshots, the past tree): every queued write is run first. */
  get db(): Db {
    this.flush();
    return this.#conn;
  }

  private migrate(): void {
    this.#conn.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.#conn.prepare('SELECT version FROM schema_version').get() as
      { version: number } | undefined;
    let v = row?.version ?? 0;
    if (v > MIGRATIONS.length) {
      throw new Error(`state database schema ${v} is newer than this arbor (${MIGRATIONS.length})`);
    }
    const step = this.#conn.transaction((i: number) => {
      this.#conn.exec(MIGRATIONS[i]!);
      this.#conn.prepare('DELETE FROM schema_version').run();
      this.#conn.prepare('INSERT INTO schema_version (version) VALUES (?)').run(i + 1);
    });
    while (v < MIGRATIONS.length) step(v++);
  }

  private readonly runTx = (fn: () => unknown): unknown => fn();
  private wrappedTx: ((fn: () => unknown) => unknown) | undefined;

  /** Run `fn` in one transaction (nested calls join the outer one). With group commit: as one unit of the queue. */
  tx<T>(fn: () => T): T {
    if (this.#groupMs === undefined) {
      if (this.#conn.inTransaction) return fn();
      this.wrappedTx ??= this.#conn.transaction(this.runTx);
      return this.wrappedTx(fn) as T;
    }
    if (this.#depth > 0) {
      this.#depth++;
      try {
        return fn();
      } finally {
        this.#depth--;
      }
    }
    this.#mark = this.#queue.length;
    this.#depth = 1;
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.#depth = 0;
      if (this.#open) {
        // Undo this operation's writes; the whole ones flushed before it are kept.
        this.#open = false;
        this.#conn.exec('ROLLBACK TO op; RELEASE op; COMMIT');
      } else this.#dropFrom(this.#mark);
      throw err;
    }
    this.#depth = 0;
    if (this.#open) {
      this.#open = false;
      this.#conn.exec('RELEASE op; COMMIT');
    } else if (this.#queue.length >= MAX_QUEUED) this.flush();
    return result;
  }

  /**
   * Queue a write (group commit) or run it now (no group commit, or a flush already ran inside the current tx).
   * `key` goes into `pending` while the write is queued, for the reads that flush only for their own key.
   */
  #write(stmt: Statement<unknown[]>, args: unknown[], pending?: Set<string>, key?: string): void {
    this.#enqueue({ stmt, args }, pending, key);
  }

  /** #write for a prepared Write; whether it was queued (false: it ran now). */
  #enqueue(w: Write, pending?: Set<string>, key?: string): boolean {
    if (this.#groupMs === undefined || this.#open) {
      this.#run(w);
      return false;
    }
    this.#queue.push(w);
    if (pending !== undefined && key !== undefined) pending.add(key);
    this.#timer ??= setTimeout(() => this.#flushQuietly(), this.#groupMs).unref();
    return true;
  }

  /** Drop queued writes from index `at` on (a `tx` that threw). */
  #dropFrom(at: number): void {
    const q = this.#queue;
    for (let i = at; i < q.length; i++) if (q[i]!.later) this.#later.delete(q[i]!.args[0] as string);
    q.length = at;
  }

  #run(w: Write): void {
    if (w.later) {
      const id = w.args[0] as string;
      this.s.setRegs.run(id, this.#regsOf!(id));
    } else w.stmt.run(...w.args);
  }

  #flushQuietly(): void {
    this.#timer = undefined;
    try {
      this.flush();
    } catch {
      // the queue is kept: the next flush retries, and an explicit one (fsync, close) reports a failure
    }
  }

  /**
   * Run every queued write. Outside a `tx`: in one transaction, committed (crash-safe; fsync the files for power
   * loss). Inside one: the transaction stays open until that `tx` ends, with a savepoint where its own writes begin,
   * so it still commits or rolls back as a whole. A failure rolls everything back and keeps the queue for a retry.
   */
  flush(): void {
    if (this.#groupMs === undefined || this.#open) return;
    if (this.#depth === 0 && this.#queue.length === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const q = this.#queue;
    const c = this.#conn;
    try {
      c.exec('BEGIN IMMEDIATE');
      try {
        const split = this.#depth > 0 ? this.#mark : q.length;
        for (let i = 0; i < split; i++) this.#run(q[i]!);
        if (this.#depth > 0) {
          c.exec('SAVEPOINT op');
          for (let i = split; i < q.length; i++) this.#run(q[i]!);
        } else c.exec('COMMIT');
      } catch (err) {
        if (c.inTransaction) c.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      if (this.#queue.length > 0) this.#timer = setTimeout(() => this.#flushQuietly(), this.#groupMs).unref();
      throw err;
    }
    q.length = 0;
    this.#later.clear();
    this.#pendingNodes.clear();
    this.#pendingVersions.clear();
    this.#pendingPurged.clear();
    if (this.#depth > 0) this.#open = true;
  }

  /**
   * Run `fn` without group commit, everything queued committed first: for code that runs its own SQL on `db` inside
   * a `tx` (a snapshot load), whose writes must share that transaction.
   */
  direct<T>(fn: () => T): T {
    if (this.#groupMs === undefined || this.#depth > 0) return fn();
    this.flush();
    const ms = this.#groupMs;
    this.#groupMs = undefined;
    try {
      return fn();
    } finally {
      this.#groupMs = ms;
    }
  }

  /** Queued writes not yet committed (tests). */
  get queued(): number {
    return this.#queue.length;
  }

  kvGet(key: string): string | undefined {
    this.flush();
    return (this.s.kvGet.get(key) as { value: string } | undefined)?.value;
  }
  kvSet(key: string, value: string): void {
    this.#write(this.s.kvSet, [key, value]);
  }
  placeNode(id: string, parent: string, meta: string): void {
    this.#write(this.s.placeNode, [id, parent, meta], this.#pendingNodes, id);
  }
  setRegs(id: string, regs: string): void {
    this.#write(this.s.setRegs, [id, regs], this.#pendingNodes, id);
  }
  /**
   * Write the node's current registers (as `regsOf` encodes them) when the queue runs: one write per node and group,
   * however many queued operations changed it. The group commits as one transaction, so it holds the registers as of
   * its last operation — which is what the writes in order would have left. Without group commit it runs now.
   */
  setRegsLater(id: string): void {
    // #later holds only queued writes (a flush clears it), so a node found there is written by the queue already.
    if (this.#later.has(id)) return;
    const w: Write = { stmt: this.s.setRegs as Statement<unknown[]>, args: [id], later: true };
    if (this.#enqueue(w, this.#pendingNodes, id)) this.#later.add(id);
  }
  getNode(id: string): NodeRow | undefined {
    if (this.#pendingNodes.has(id)) this.flush();
    return this.s.getNode.get(id) as NodeRow | undefined;
  }
  /** Every placed node as [id, parent, meta JSON] (registers are read on demand with getRegs). */
  allPlacements(): Array<[string, string, string]> {
    this.flush();
    return this.s.allNodes.raw(true).all() as Array<[string, string, string]>;
  }
  getRegs(id: string): string | null {
    if (this.#pendingNodes.has(id)) this.flush();
    return (this.s.getRegs.get(id) as { regs: string | null } | undefined)?.regs ?? null;
  }
  versionGet(node: string, id: string): string | undefined {
    if (this.#pendingVersions.has(node)) this.flush();
    return (this.s.versionGet.get(node, id) as { data: string } | undefined)?.data;
  }
  nodeCount(): number {
    this.flush();
    return (this.s.nodeCount.get() as { n: number }).n;
  }
  logPut(counter: number, replica: string, op: string, old: string | null): void {
    this.#write(this.s.logPut, [counter, replica, op, old]);
  }
  logAll(): LogRow[] {
    this.flush();
    return this.s.logAll.all() as LogRow[];
  }
  /** Delete log entries with timestamp < (counter, replica). */
  logDeleteBelow(counter: number, replica: string): void {
    this.#write(this.s.logDeleteBelow, [counter, counter, replica]);
  }
  localOpPut(seq: number, ops: string): void {
    this.#write(this.s.localOpPut, [seq, ops]);
  }
  localOpsSince(seq: number): Array<{ seq: number; ops: string }> {
    this.flush();
    return this.s.localOpsSince.all(seq) as Array<{ seq: number; ops: string }>;
  }
  lastLocalOps(): { seq: number; ops: string } | undefined {
    this.flush();
    return this.s.lastLocalOps.get() as { seq: number; ops: string } | undefined;
  }
  pruneLocalOps(throughSeq: number): number {
    this.flush();
    return this.s.pruneLocalOps.run(throughSeq).changes;
  }
  /** Make every committed transaction durable (fsync the WAL, copy it into the database). */
  checkpoint(): void {
    this.flush();
    this.#conn.pragma('wal_checkpoint(PASSIVE)');
  }
  versionPut(node: string, id: string, counter: number, data: string): void {
    this.#write(this.s.versionPut, [node, id, counter, data], this.#pendingVersions, node);
  }
  versionsOf(node: string): string[] {
    if (this.#pendingVersions.has(node)) this.flush();
    return (this.s.versionsOf.all(node) as Array<{ data: string }>).map((r) => r.data);
  }
  peerGet(replica: string): { replica: string; seq: number; counter: number } | undefined {
    this.flush();
    return this.s.peerGet.get(replica) as { replica: string; seq: number; counter: number } | undefined;
  }
  peerPut(replica: string, seq: number, counter: number): void {
    this.#write(this.s.peerPut, [replica, seq, counter]);
  }
  peers(): Array<{ replica: string; seq: number; counter: number }> {
    this.flush();
    return this.s.peersAll.all() as Array<{ replica: string; seq: number; counter: number }>;
  }

  // ---- GC: emptying trash for good

  logCount(): number {
    this.flush();
    return (this.s.logCount.get() as { n: number }).n;
  }
  /** Remove a node for good: its placement, registers and versions; remember it as purged. */
  purgeNode(id: string): void {
    // A later register write of this node must come after the delete, not merge into one queued before it.
    this.#later.delete(id);
    this.#write(this.s.deleteNode, [id], this.#pendingNodes, id);
    this.#write(this.s.deleteVersionsOf, [id], this.#pendingVersions, id);
    this.#write(this.s.purgedAdd, [id], this.#pendingPurged, id);
  }
  isPurged(id: string): boolean {
    if (this.#pendingPurged.has(id)) this.flush();
    return this.s.purgedHas.get(id) !== undefined;
  }

  /** Flush (a failure throws and leaves the database open, so nothing queued is silently dropped), then close. */
  close(): void {
    this.flush();
    clearTimeout(this.#timer);
    this.#conn.close();
  }
}
