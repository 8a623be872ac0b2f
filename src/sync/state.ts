// Sync's own persisted state in state.sqlite3 (sync_* tables): push position, an in-flight push plan, last sync
// results, GC candidates. Knows nothing of the tree's tables (the tree keeps peer positions itself).
import type BetterSqlite3 from 'better-sqlite3';
import type { Horizon } from './codec.js';

export interface PushPlan {
  /** Remote seq being written. */
  readonly rseq: number;
  /** Local batch seqs (inclusive) it covers. */
  readonly from: number;
  readonly to: number;
}

export class SyncState {
  private readonly get: BetterSqlite3.Statement<[string]>;
  private readonly put: BetterSqlite3.Statement<[string, string]>;
  private readonly del: BetterSqlite3.Statement<[string]>;

  constructor(readonly db: BetterSqlite3.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS sync_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS sync_gc (chunk TEXT PRIMARY KEY, first_seen INTEGER NOT NULL) WITHOUT ROWID;`);
    this.get = db.prepare('SELECT value FROM sync_kv WHERE key = ?');
    this.put = db.prepare(
      'INSERT INTO sync_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
    );
    this.del = db.prepare('DELETE FROM sync_kv WHERE key = ?');
  }

  private read<T>(key: string, dflt: T): T {
    const row = this.get.get(key) as { value: string } | undefined;
    return row === undefined ? dflt : (JSON.parse(row.value) as T);
  }
  private write(key: string, v: unknown): void {
    this.put.run(key, JSON.stringify(v));
  }

  /** Last remote seq written under ops/<me>/ and the last local batch seq it covers. */
  get pushed(): { rseq: number; local: number } {
    return this.read('pushed', { rseq: 0, local: 0 });
  }
  get plan(): PushPlan | undefined {
    return this.read<PushPlan | null>('plan', null) ?? undefined;
  }
  setPlan(p: PushPlan): void {
    this.write('plan', p);
  }
  /** The plan's object is on the remote: advance the position and clear the plan in one transaction. */
  completePlan(p: PushPlan): void {
    this.db.transaction(() => {
      this.write('pushed', { rseq: p.rseq, local: p.to });
      this.del.run('plan');
    })();
  }

  /** The `seen` positions carried by this replica's newest published batch. */
  get publishedSeen(): Record<string, number> {
    return this.read('publishedSeen', {});
  }
  setPublishedSeen(v: Record<string, number>): void {
    this.write('publishedSeen', v);
  }

  /** Per replica, the newest applied batch that carried ops (op-less announcements do not count). */
  get appliedWithOps(): Record<string, number> {
    return this.read('appliedWithOps', {});
  }
  setAppliedWithOps(v: Record<string, number>): void {
    this.write('appliedWithOps', v);
  }

  // ---- membership and horizons (membership.ts)

  /** The floor this replica registered with, once it did. */
  get registeredFloor(): number | undefined {
    return this.read<number | null>('registeredFloor', null) ?? undefined;
  }
  setRegisteredFloor(n: number): void {
    this.write('registeredFloor', n);
  }

  /** Clock of this replica's newest published horizon. */
  get ownHorizonClock(): number | undefined {
    return this.read<number | null>('ownHorizonClock', null) ?? undefined;
  }
  setOwnHorizonClock(n: number): void {
    this.write('ownHorizonClock', n);
  }

  /** Per replica, its newest horizon applied here. */
  get peerHorizons(): Record<string, Horizon> {
    return this.read('peerHorizons', {});
  }
  setPeerHorizon(replica: string, h: Horizon): void {
    this.write('peerHorizons', { ...this.peerHorizons, [replica]: h });
  }

  get lastSync(): { time: number; ok: boolean; error?: string } | undefined {
    return this.read<{ time: number; ok: boolean; error?: string } | null>('lastSync', null) ?? undefined;
  }
  setLastSync(v: { time: number; ok: boolean; error?: string }): void {
    this.write('lastSync', v);
  }

  /** Ops pushed or applied since the last checkpoint this replica wrote. */
  get opsSinceCheckpoint(): number {
    return this.read('opsSinceCheckpoint', 0);
  }
  setOpsSinceCheckpoint(n: number): void {
    this.write('opsSinceCheckpoint', n);
  }
  get checkpointSeq(): number {
    return this.read('checkpointSeq', 0);
  }
  setCheckpointSeq(n: number): void {
    this.write('checkpointSeq', n);
  }

  /** GC: when each unreferenced remote chunk was first seen unreferenced (ms). */
  gcCandidates(): Map<string, number> {
    const rows = this.db.prepare('SELECT chunk, first_seen FROM sync_gc').all() as Array<{
      chunk: string;
      first_seen: number;
    }>;
    return new Map(rows.map((r) => [r.chunk, r.first_seen]));
  }
  setGcCandidates(m: Map<string, number>): void {
    const ins = this.db.prepare('INSERT INTO sync_gc (chunk, first_seen) VALUES (?, ?)');
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM sync_gc').run();
      for (const [c, t] of m) ins.run(c, t);
    })();
  }
}
