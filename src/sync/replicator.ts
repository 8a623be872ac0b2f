// Replication through the remote: push (chunks first, then the sealed batch, write-once), pull (other replicas' new
// batches, applied per replica in one tree transaction), checkpoints for fast clone. Knows nothing of FUSE or the CLI.
import type BetterSqlite3 from 'better-sqlite3';
import type { FsCrypto } from '../chunks/crypto.js';
import { isHole, type ChunkStore } from '../chunks/types.js';
import { RemoteUnavailableError } from '../errors.js';
import { checkReachable } from '../remote/index.js';
import type { Remote } from '../remote/types.js';
import type { FileTree } from '../tree/filetree.js';
import type { TreeChange, TreeOp } from '../tree/types.js';
import {
  type Checkpoint,
  type Horizon,
  type CheckpointV1,
  type CheckpointV2,
  type RemoteBatch,
  checkpointKey,
  openBatch,
  openCheckpoint,
  opsKey,
  parseSeqKey,
  sealBatch,
  sealCheckpoint,
} from './codec.js';
import { assertNotRetired, joinReplicaSet } from './join.js';
import { isRetired } from './membership.js';
import { SyncState } from './state.js';

/** The chunk store as sync needs it: the real CachedChunkStore satisfies it. */
export interface SyncStore extends ChunkStore {
  /** Resolves once these chunks are on the remote (ids it never held count as uploaded). */
  whenUploaded(ids: readonly string[]): Promise<void>;
  /** Resolves when every chunk put so far is uploaded. */
  flushUploads?(): Promise<void>;
  stats?(): { pendingUploads: number; dirtyBytes: number; residentBytes: number; cacheLimitBytes: number };
}

/** Everything sync touches; an opened workspace (src/cli/workspace.ts) is one. */
export interface SyncContext {
  readonly tree: FileTree;
  readonly store: SyncStore;
  readonly remote: Remote;
  readonly crypto: FsCrypto;
  /** A connection to the same state.sqlite3 the tree uses (sync_* tables live there). */
  readonly db: BetterSqlite3.Database;
  readonly replicaId: string;
  /** Satellites pull but never push. */
  readonly readOnly: boolean;
}

export interface ReplicatorOptions {
  /** Local batches are merged into remote batches of at most this many ops. Default 20000. */
  maxOpsPerBatch?: number;
  /** Give up waiting for a batch's chunk uploads after this long (RemoteUnavailableError). Default 120 s. */
  uploadTimeoutMs?: number;
  /** Write a checkpoint after this many ops were pushed or applied since the last one. Default 50000; 0 = never. */
  checkpointEvery?: number;
  /** Parallel batch fetches when pulling. Default 8. */
  fetchConcurrency?: number;
}

export interface Progress {
  readonly phase: 'list' | 'checkpoint' | 'pull' | 'push';
  readonly done: number;
  readonly total: number;
}

export interface SyncReport {
  pushedBatches: number;
  pushedOps: number;
  pulledBatches: number;
  pulledOps: number;
  /** Everything the pull changed, merged (for kernel cache invalidation). */
  change: TreeChange;
  /** What is still local only after this sync. */
  pending: Pending;
  checkpoint?: number;
}

export interface Pending {
  /** Local tree batches not yet on the remote. */
  localBatches: number;
  /** Chunks waiting for upload. */
  chunks: number;
}

export interface ReplicaLag {
  readonly replica: string;
  /** Latest batch seq on the remote. */
  readonly published: number;
  /** Batches of it applied here (for this replica: pushed). */
  readonly applied: number;
  readonly behind: number;
}

export function mergeChanges(changes: readonly TreeChange[]): TreeChange {
  const nodes = new Set<string>();
  const dirs = new Map<string, Set<string>>();
  for (const c of changes) {
    for (const n of c.nodes) nodes.add(n);
    for (const d of c.dirs) {
      let s = dirs.get(d.dir);
      if (s === undefined) dirs.set(d.dir, (s = new Set()));
      for (const n of d.names) s.add(n);
    }
  }
  return { nodes: [...nodes], dirs: [...dirs].map(([dir, names]) => ({ dir, names: [...names] })) };
}

const EMPTY: TreeChange = { nodes: [], dirs: [] };

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RemoteUnavailableError(`${what} did not finish within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function chunkIdsOf(ops: readonly TreeOp[]): string[] {
  const ids = new Set<string>();
  for (const op of ops)
    if (op.type === 'version') for (const c of op.version.chunks) if (!isHole(c)) ids.add(c.id);
  return [...ids];
}

export class Replicator {
  readonly state: SyncState;
  private readonly maxOps: number;
  private readonly uploadTimeoutMs: number;
  private readonly checkpointEvery: number;
  private readonly fetchConcurrency: number;
  /** One sync at a time: push/pull/checkpoint serialize on this chain. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly ctx: SyncContext,
    opts: ReplicatorOptions = {},
  ) {
    this.state = new SyncState(ctx.db);
    this.maxOps = opts.maxOpsPerBatch ?? 20_000;
    this.uploadTimeoutMs = opts.uploadTimeoutMs ?? 120_000;
    this.checkpointEvery = opts.checkpointEvery ?? 50_000;
    this.fetchConcurrency = opts.fetchConcurrency ?? 8;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  pending(): Pending {
    const pushed = this.state.pushed.local;
    return {
      localBatches: this.ctx.readOnly ? 0 : Math.max(0, this.ctx.tree.localSeq - pushed),
      chunks: this.ctx.readOnly ? 0 : (this.ctx.store.stats?.().pendingUploads ?? 0),
    };
  }

  /** Push, pull, maybe checkpoint. Throws RemoteUnavailableError when the remote cannot be reached. */
  /**
   * `announce`: when this replica has applied more than its newest published batch says and there is nothing left to
   * push, publish an op-less batch with its positions (`arbor sync` does, so GC learns what every replica has seen).
   */
  sync(
    opts: {
      checkpoint?: boolean;
      announce?: boolean;
      /** Wait until every dirty chunk is uploaded (default true: `arbor sync` reports nothing pending after it). */
      flushUploads?: boolean;
      onProgress?: (p: Progress) => void;
    } = {},
  ): Promise<SyncReport> {
    return this.serial(async () => {
      try {
        const reach = await checkReachable(this.ctx.remote);
        if (!reach.reachable) throw new RemoteUnavailableError(`remote unreachable: ${reach.error}`);
        await this.beforePublish();
        const pushed = await this.pushNow(opts.onProgress);
        const pulled = await this.pullNow(opts.onProgress);
        // Push again: the pull cannot add local ops, but writes made meanwhile should not wait a whole interval.
        const pushed2 = await this.pushNow();
        if (opts.flushUploads !== false && !this.ctx.readOnly && this.ctx.store.flushUploads) {
          await withTimeout(this.ctx.store.flushUploads(), this.uploadTimeoutMs, 'chunk upload');
        }
        let announced = 0;
        if (
          opts.announce === true &&
          pushed2.batches === 0 &&
          (this.positionsAdvanced() || this.horizonStale()) &&
          !(await isRetired(this.ctx.remote, this.ctx.replicaId))
        ) {
          announced = await this.announceNow();
        }
        const moved = pushed.ops + pulled.ops + pushed2.ops;
        if (moved > 0) this.state.setOpsSinceCheckpoint(this.state.opsSinceCheckpoint + moved);
        let checkpoint: number | undefined;
        if (
          !this.ctx.readOnly &&
          (opts.checkpoint === true ||
            (this.checkpointEvery > 0 && this.state.opsSinceCheckpoint >= this.checkpointEvery))
        ) {
          checkpoint = await this.writeCheckpointNow();
        }
        this.state.setLastSync({ time: Date.now(), ok: true });
        return {
          pushedBatches: pushed.batches + pushed2.batches + announced,
          pushedOps: pushed.ops + pushed2.ops,
          pulledBatches: pulled.batches,
          pulledOps: pulled.ops,
          change: pulled.change,
          pending: this.pending(),
          ...(checkpoint !== undefined ? { checkpoint } : {}),
        };
      } catch (err) {
        this.state.setLastSync({
          time: Date.now(),
          ok: false,
          error: err instanceof Error ? err.message : String(err),
        });
        throw err;
      }
    });
  }

  push(): Promise<{ batches: number; ops: number }> {
    return this.serial(async () => {
      await this.beforePublish();
      return this.pushNow();
    });
  }

  /** Register if this replica never did; refuse to publish once retired (only asked when there is something). */
  private async beforePublish(): Promise<void> {
    if (this.ctx.readOnly) return;
    await joinReplicaSet(this.ctx, this.state);
    if (this.ctx.tree.localSeq > this.state.pushed.local || this.state.plan !== undefined) {
      await assertNotRetired(this.ctx);
    }
  }

  /** This replica's clock moved past its newest published horizon (GC wants it published). */
  private horizonStale(): boolean {
    return this.ctx.tree.clockCounter > (this.state.ownHorizonClock ?? -1);
  }

  /**
   * The horizon a batch covering local batches up to `to` may carry: only when nothing else is pending, so that
   * every op this replica makes later has a larger counter than the clock it states. Read synchronously with the
   * batch contents.
   */
  private horizonFor(to: number): Horizon | undefined {
    const { tree } = this.ctx;
    if (tree.localSeq !== to) return undefined;
    return { clock: tree.clockCounter, seen: Object.fromEntries(tree.seenCounters()) };
  }

  /** After a batch is on the remote: remember the horizon it published (not when the object was an older one). */
  private published(batch: RemoteBatch, written: boolean): void {
    if (written && batch.horizon !== undefined) this.state.setOwnHorizonClock(batch.horizon.clock);
  }

  pull(onProgress?: (p: Progress) => void): Promise<{ batches: number; ops: number; change: TreeChange }> {
    return this.serial(() => this.pullNow(onProgress));
  }

  // ------------------------------------------------------------------------------------------------ push

  /** Whether this replica has applied more than its newest published batch says. */
  private positionsAdvanced(): boolean {
    // Only batches with ops count: announcing because of another replica's announcement would ping-pong forever.
    const published = this.state.publishedSeen;
    for (const [r, n] of Object.entries(this.state.appliedWithOps)) if (n > (published[r] ?? 0)) return true;
    return false;
  }

  /**
   * Publish an op-less batch carrying only this replica's peer positions, so GC learns what it has seen even when
   * it writes nothing. Used by an explicit sync that pulled something and had nothing to push.
   */
  private async announceNow(): Promise<number> {
    if (this.ctx.readOnly || this.state.plan !== undefined) return 0;
    const pushed = this.state.pushed;
    if (this.ctx.tree.localSeq !== pushed.local) return 0;
    const plan = { rseq: pushed.rseq + 1, from: pushed.local + 1, to: pushed.local };
    this.state.setPlan(plan);
    const horizon = this.horizonFor(plan.to);
    const batch: RemoteBatch = {
      version: 1,
      replica: this.ctx.replicaId,
      seq: plan.rseq,
      ops: [],
      seen: Object.fromEntries(this.ctx.tree.peerPositions()),
      ...(horizon !== undefined ? { horizon } : {}),
    };
    const written = await this.ctx.remote.putIfAbsent(
      opsKey(this.ctx.replicaId, plan.rseq),
      sealBatch(this.ctx.crypto, batch),
    );
    this.state.completePlan(plan);
    this.published(batch, written);
    this.state.setPublishedSeen(batch.seen ?? {});
    return 1;
  }

  private async pushNow(onProgress?: (p: Progress) => void): Promise<{ batches: number; ops: number }> {
    if (this.ctx.readOnly) return { batches: 0, ops: 0 };
    const { tree, remote, crypto, store } = this.ctx;
    let batches = 0;
    let ops = 0;
    const start = this.state.pushed.local;
    const total = Math.max(0, tree.localSeq - start);
    // Read the pending local batches once (re-reading them per remote batch is quadratic for a large backlog);
    // ops committed meanwhile are picked up by the next round.
    let local = tree.localOpsSince(start);
    // Only what was committed when this push began: ops committed while it uploads wait for the next push (the sync
    // loop schedules one on every local change). Chasing them here published one batch per remote round trip during
    // a burst of creates (241 batches for 10k files), each costing a seal, an upload and the daemon's CPU.
    const end = tree.localSeq;
    let at = 0;
    for (;;) {
      let plan = this.state.plan;
      if (plan === undefined) {
        if (at >= local.length) {
          if (this.state.pushed.local >= end) break;
          local = tree.localOpsSince(this.state.pushed.local);
          at = 0;
          if (local.length === 0) break;
        }
        const pushed = this.state.pushed;
        let n = 0;
        let to = local[at]!.seq;
        for (let i = at; i < local.length; i++) {
          const b = local[i]!;
          if (n > 0 && n + b.ops.length > this.maxOps) break;
          n += b.ops.length;
          to = b.seq;
        }
        // The plan is persisted before the upload: after a crash the same range is re-sent under the same name,
        // so a write-once "already exists" means it is ours and done.
        plan = { rseq: pushed.rseq + 1, from: local[at]!.seq, to };
        this.state.setPlan(plan);
      }
      const p = plan;
      if (at >= local.length || local[at]!.seq !== p.from) {
        local = tree.localOpsSince(p.from - 1);
        at = 0;
      }
      const merged: TreeOp[] = [];
      while (at < local.length && local[at]!.seq <= p.to) merged.push(...local[at++]!.ops);
      const horizon = this.horizonFor(p.to);
      const batch: RemoteBatch = {
        version: 1,
        replica: this.ctx.replicaId,
        seq: p.rseq,
        ops: merged,
        seen: Object.fromEntries(tree.peerPositions()),
        ...(horizon !== undefined ? { horizon } : {}),
      };
      // Chunks before the batch: no replica ever sees an op whose data is missing (DESIGN.md §5).
      await withTimeout(store.whenUploaded(chunkIdsOf(merged)), this.uploadTimeoutMs, 'chunk upload');
      const written = await remote.putIfAbsent(opsKey(this.ctx.replicaId, p.rseq), sealBatch(crypto, batch));
      this.state.completePlan(p);
      this.published(batch, written);
      this.state.setPublishedSeen(batch.seen ?? {});
      batches++;
      ops += merged.length;
      onProgress?.({ phase: 'push', done: Math.min(total, p.to - start), total });
    }
    return { batches, ops };
  }

  // ------------------------------------------------------------------------------------------------ pull

  /** Every replica's published batch seqs (sorted), from one listing of ops/. */
  async listPublished(): Promise<Map<string, number[]>> {
    const byReplica = new Map<string, number[]>();
    for (const key of await this.ctx.remote.list('ops/')) {
      const k = parseSeqKey('ops', key);
      if (!k) continue;
      let a = byReplica.get(k.replica);
      if (a === undefined) byReplica.set(k.replica, (a = []));
      a.push(k.seq);
    }
    for (const a of byReplica.values()) a.sort((x, y) => x - y);
    return byReplica;
  }

  private async pullNow(
    onProgress?: (p: Progress) => void,
  ): Promise<{ batches: number; ops: number; change: TreeChange }> {
    const { tree, remote, crypto } = this.ctx;
    onProgress?.({ phase: 'list', done: 0, total: 0 });
    const published = await this.listPublished();
    const positions = tree.peerPositions();
    const todo: Array<{ replica: string; seqs: number[] }> = [];
    for (const [replica, seqs] of [...published].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (replica === this.ctx.replicaId) continue;
      const from = positions.get(replica) ?? 0;
      // Only a contiguous run: a gap means a batch is still being written (or was lost); wait for it.
      const run: number[] = [];
      for (const s of seqs) {
        if (s <= from) continue;
        if (s !== from + run.length + 1) break;
        run.push(s);
      }
      if (run.length > 0) todo.push({ replica, seqs: run });
    }
    const total = todo.reduce((n, t) => n + t.seqs.length, 0);
    let done = 0;
    let ops = 0;
    const changes: TreeChange[] = [];
    for (const { replica, seqs } of todo) {
      // Fetch in windows; apply each window as one tree transaction (one undo/redo pass).
      for (let i = 0; i < seqs.length; i += 64) {
        const window = seqs.slice(i, i + 64);
        const batches = await mapLimit(window, this.fetchConcurrency, async (seq) => {
          const key = opsKey(replica, seq);
          return openBatch(crypto, key, await remote.get(key));
        });
        let group: TreeOp[] = [];
        let withOps = 0;
        let horizon: Horizon | undefined;
        let last = 0;
        const flush = (): void => {
          if (last === 0) return;
          changes.push(tree.applyRemote({ version: 1, replica, seq: last, ops: group }));
          group = [];
          last = 0;
        };
        for (const b of batches) {
          if (b.ops.length > 0) withOps = b.seq;
          if (b.horizon !== undefined) horizon = b.horizon;
          if (group.length > 0 && group.length + b.ops.length > 4 * this.maxOps) flush();
          group.push(...b.ops);
          last = b.seq;
          ops += b.ops.length;
        }
        flush();
        // Recorded only once the window's batches are applied: a horizon speaks for everything before it.
        if (horizon !== undefined) this.state.setPeerHorizon(replica, horizon);
        if (withOps > 0) this.state.setAppliedWithOps({ ...this.state.appliedWithOps, [replica]: withOps });
        done += window.length;
        onProgress?.({ phase: 'pull', done, total });
      }
    }
    return { batches: total, ops, change: changes.length === 0 ? EMPTY : mergeChanges(changes) };
  }

  /** Published vs applied per replica (status). */
  async lag(): Promise<ReplicaLag[]> {
    const published = await this.listPublished();
    const positions = this.ctx.tree.peerPositions();
    const out: ReplicaLag[] = [];
    for (const [replica, seqs] of published) {
      const pub = seqs[seqs.length - 1] ?? 0;
      const applied = replica === this.ctx.replicaId ? this.state.pushed.rseq : (positions.get(replica) ?? 0);
      out.push({ replica, published: pub, applied, behind: Math.max(0, pub - applied) });
    }
    return out.sort((a, b) => (a.replica < b.replica ? -1 : 1));
  }

  // ------------------------------------------------------------------------------------------------ checkpoints

  writeCheckpoint(): Promise<number | undefined> {
    return this.serial(() => this.writeCheckpointNow());
  }

  /**
   * Publish this replica's state as a snapshot of its tables (checkpoint format 2). Only when everything local is
   * pushed (a checkpoint must not carry ops whose chunks may not be uploaded). Returns the checkpoint seq, or
   * undefined if skipped.
   */
  private async writeCheckpointNow(): Promise<number | undefined> {
    if (this.ctx.readOnly) return undefined;
    const { tree } = this.ctx;
    // Read positions and state in one synchronous stretch so no local or remote op lands in between.
    if (this.state.plan !== undefined || tree.localSeq !== this.state.pushed.local) return undefined;
    const positions: Record<string, number> = Object.fromEntries(tree.peerPositions());
    positions[this.ctx.replicaId] = this.state.pushed.rseq;
    const snapshot = tree.exportSnapshot();
    const seq = this.state.checkpointSeq + 1;
    const cp: Checkpoint = {
      version: 2,
      replica: this.ctx.replicaId,
      seq,
      positions,
      snapshot,
      time: Date.now(),
    };
    await this.ctx.remote.putIfAbsent(
      checkpointKey(this.ctx.replicaId, seq),
      sealCheckpoint(this.ctx.crypto, cp),
    );
    this.state.setCheckpointSeq(seq);
    this.state.setOpsSinceCheckpoint(0);
    return seq;
  }

  /**
   * For a fresh clone: load the most advanced published checkpoint that opens and validates, so the pull that
   * follows fetches only later batches. A checkpoint that fails (corrupt, forged, unknown format, inconsistent
   * state) is named in `failed` and the next best is tried; with none usable the clone replays every batch.
   * `loaded` = state rows (format 2) or ops (format 1) taken from the checkpoint, 0 without one.
   */
  restoreLatestCheckpoint(onProgress?: (p: Progress) => void): Promise<CheckpointRestore> {
    return this.serial(async () => {
      const { remote, crypto } = this.ctx;
      const newest = new Map<string, number>();
      for (const key of await remote.list('checkpoints/')) {
        const k = parseSeqKey('checkpoints', key);
        if (k && k.seq > (newest.get(k.replica) ?? 0)) newest.set(k.replica, k.seq);
      }
      const failed: string[] = [];
      if (newest.size === 0) return { loaded: 0, failed };
      onProgress?.({ phase: 'checkpoint', done: 0, total: 1 });
      const candidates: Checkpoint[] = [];
      for (const [replica, seq] of newest) {
        const key = checkpointKey(replica, seq);
        try {
          candidates.push(openCheckpoint(crypto, key, await remote.get(key)));
        } catch (err) {
          if (err instanceof RemoteUnavailableError) throw err;
          failed.push(`${key}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      const score = (cp: Checkpoint): number => Object.values(cp.positions).reduce((a, b) => a + b, 0);
      candidates.sort((a, b) => score(b) - score(a));
      for (const cp of candidates) {
        const key = checkpointKey(cp.replica, cp.seq);
        try {
          const loaded = cp.version === 2 ? this.loadSnapshot(cp) : this.replayCheckpoint(cp, onProgress);
          onProgress?.({ phase: 'checkpoint', done: 1, total: 1 });
          return { loaded, from: key, failed };
        } catch (err) {
          // The load is one transaction (format 2) and rolled back: the replica is still empty, try the next one.
          if (cp.version !== 2) throw err;
          failed.push(`${key}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      return { loaded: 0, failed };
    });
  }

  /** Format 2: bulk-load the rows, take the checkpoint's positions as ours. One transaction. */
  private loadSnapshot(cp: CheckpointV2): number {
    const positions = new Map(Object.entries(cp.positions));
    return this.ctx.tree.importSnapshot(cp.snapshot, cp.replica, positions);
  }

  /** Format 1 (older replicas wrote it): replay the compacted op set through the tree. */
  private replayCheckpoint(cp: CheckpointV1, onProgress?: (p: Progress) => void): number {
    const { tree } = this.ctx;
    // In timestamp order and in slices: each slice only appends to the CRDT log (no undo/redo of the earlier ones)
    // and is one moderate transaction. Only the last slice records the position, so an interrupted restore
    // is redone rather than taken as complete.
    const ops = [...cp.ops].sort(
      (x, y) =>
        x.ts.counter - y.ts.counter ||
        (x.ts.replica < y.ts.replica ? -1 : x.ts.replica > y.ts.replica ? 1 : 0),
    );
    const slice = 4 * this.maxOps;
    for (let i = 0; i < ops.length || i === 0; i += slice) {
      const last = i + slice >= ops.length;
      tree.applyRemote({
        version: 1,
        replica: cp.replica,
        seq: last ? (cp.positions[cp.replica] ?? 0) : 0,
        ops: ops.slice(i, i + slice),
      });
      onProgress?.({ phase: 'checkpoint', done: Math.min(ops.length, i + slice), total: ops.length });
    }
    for (const [replica, seq] of Object.entries(cp.positions)) {
      if (replica !== cp.replica && replica !== this.ctx.replicaId) {
        tree.applyRemote({ version: 1, replica, seq, ops: [] });
      }
    }
    return cp.ops.length;
  }
}

export interface CheckpointRestore {
  /** State rows (format 2) or ops (format 1) loaded from the checkpoint; 0 when none was usable. */
  loaded: number;
  /** The checkpoint's remote key, when one was loaded. */
  from?: string;
  /** Checkpoints that could not be used, each as "key: reason". */
  failed: string[];
}
