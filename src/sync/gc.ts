// Garbage collection, safe with concurrent replicas: truncate the CRDT log and empty trash below the causally stable
// threshold of the registered replica set (membership.ts), then mark chunks over every replica's published state (all
// op batches and checkpoints) plus local unpushed ops, minus files emptied from trash, prune history by a retention
// policy, and sweep only chunks unreferenced for a whole grace period. Knows nothing of the CLI or FUSE.
import { isHole } from '../chunks/types.js';
import { InvalidInputError } from '../errors.js';
import type { Timestamp } from '../crdt/types.js';
import type { TruncateReport } from '../tree/filetree.js';
import type { ContentVersion, TreeOp } from '../tree/types.js';
import { checkpointVersionOps, openBatch, openCheckpoint, parseSeqKey } from './codec.js';
import { computeStability, readMembers, type PeerKnowledge, type Stability } from './membership.js';
import type { Replicator } from './replicator.js';

export type Retention = { readonly keep: 'all' } | { readonly versions: number } | { readonly days: number };

export interface GcOptions {
  /** A chunk is deleted only after it was found unreferenced by a GC run at least this long ago. Default 24 h. */
  graceMs?: number;
  retention?: Retention;
  /** Report what would be deleted without deleting. */
  dryRun?: boolean;
  now?: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface GcReport {
  batchesScanned: number;
  checkpointsScanned: number;
  versions: number;
  retainedVersions: number;
  liveChunks: number;
  remoteChunks: number;
  unreferenced: number;
  deleted: number;
  /** Unreferenced but still inside the grace period. */
  waiting: number;
  /** Ops below this timestamp can never arrive again (undefined: nothing is stable yet). */
  threshold: Timestamp | undefined;
  /** Why the threshold is not higher (which replica holds it back). */
  blocker: string | undefined;
  /** Log truncation and trash emptying (undefined on a dry run or when nothing is stable). */
  truncation: TruncateReport | undefined;
  /** CRDT log rows now. */
  logRows: number;
  /** Versions newly marked pruned in history. */
  prunedVersions: number;
}

/**
 * Truncate the log and empty trash below the stability threshold as this replica knows it now (GC syncs first; any
 * moment is safe, knowing less only truncates less). `opKeys`: a listing of ops/ if the caller has one.
 */
export async function truncateStable(
  replicator: Replicator,
  opts: { opKeys?: readonly string[]; dryRun?: boolean } = {},
): Promise<{ stability: Stability; truncation: TruncateReport | undefined }> {
  const { ctx } = replicator;
  const keys = opts.opKeys ?? (await ctx.remote.list('ops/'));
  const published = new Map<string, number>();
  for (const k of keys) {
    const p = parseSeqKey('ops', k);
    if (p !== undefined) published.set(p.replica, Math.max(published.get(p.replica) ?? 0, p.seq));
  }
  const stability = await stabilityNow(replicator, published);
  const truncation =
    stability.threshold !== undefined && opts.dryRun !== true
      ? ctx.tree.truncateBelow(stability.threshold, stability.knownToAll)
      : undefined;
  return { stability, truncation };
}

/** The stability rule's verdict from what this replica has applied and the remote's member list. */
export async function stabilityNow(
  replicator: Replicator,
  published: ReadonlyMap<string, number>,
): Promise<Stability> {
  const { ctx, state } = replicator;
  const horizons = state.peerHorizons;
  const peers = new Map<string, PeerKnowledge>();
  const applied = ctx.tree.seenCounters();
  for (const r of new Set([...applied.keys(), ...Object.keys(horizons)])) {
    const h = horizons[r];
    peers.set(r, { applied: applied.get(r) ?? 0, ...(h !== undefined ? { horizon: h } : {}) });
  }
  const positions = ctx.tree.peerPositions();
  const unapplied = new Set<string>();
  for (const [r, seq] of published) {
    if (r !== ctx.replicaId && seq > (positions.get(r) ?? 0)) unapplied.add(r);
  }
  return computeStability({
    self: ctx.replicaId,
    members: await readMembers(ctx.remote, ctx.crypto),
    publishers: published.keys(),
    unapplied,
    ownClock: state.ownHorizonClock,
    peers,
  });
}

interface SeenVersion {
  readonly counter: number;
  readonly replica: string;
  readonly v: ContentVersion;
  /** Every writing replica has applied the batch holding it (so none can still treat an older one as current). */
  knownToAll: boolean;
}

function chunkIdFromKey(key: string): string | undefined {
  const m = /^chunks\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[2]!.startsWith(m[1]!) ? m[2] : undefined;
}

/** Which versions of one file the policy keeps: every head (current and conflict copies) always, then by policy. */
export function retainedVersions(
  all: readonly SeenVersion[],
  retention: Retention,
  now: number,
): SeenVersion[] {
  if ('keep' in retention) return [...all];
  const bases = new Set(all.map((s) => s.v.base));
  const sorted = [...all].sort(
    (a, b) => a.counter - b.counter || (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : 0),
  );
  const keep = new Set<SeenVersion>(sorted.filter((s) => !bases.has(s.v.id)));
  if ('versions' in retention) {
    for (const s of sorted.slice(Math.max(0, sorted.length - retention.versions))) keep.add(s);
  } else {
    const from = BigInt(Math.floor(now - retention.days * 86_400_000)) * 1_000_000n;
    for (const s of sorted) if (BigInt(s.v.timeNs) >= from) keep.add(s);
  }
  if (sorted.length > 0) keep.add(sorted[sorted.length - 1]!); // the current one, whatever the policy says
  // A version may go only once a newer one is known to every replica: one that has not seen the newer version still
  // reads (and may still edit) the old one as current.
  let newerKnown = false;
  for (let i = sorted.length - 1; i >= 0; i--) {
    const s = sorted[i]!;
    if (!newerKnown) keep.add(s);
    if (s.knownToAll) newerKnown = true;
  }
  return sorted.filter((s) => keep.has(s));
}

export async function collectGarbage(replicator: Replicator, opts: GcOptions = {}): Promise<GcReport> {
  const ctx = replicator.ctx;
  if (ctx.readOnly) throw new InvalidInputError('a read-only replica does not garbage-collect the remote');
  const now = opts.now ?? Date.now();
  const grace = opts.graceMs ?? 86_400_000;
  const retention = opts.retention ?? { keep: 'all' };
  // Publish our own ops (and a horizon) first so the mark below covers them, and learn everyone else's.
  await replicator.sync({ announce: true });

  const versions = new Map<string, Map<string, SeenVersion>>();
  const located = new Map<SeenVersion, { replica: string; seq: number }>();
  const see = (ops: readonly TreeOp[], at?: { replica: string; seq: number }): void => {
    for (const op of ops) {
      if (op.type !== 'version') continue;
      let m = versions.get(op.node);
      if (m === undefined) versions.set(op.node, (m = new Map()));
      let s = m.get(op.version.id);
      if (s === undefined) {
        s = { counter: op.ts.counter, replica: op.ts.replica, v: op.version, knownToAll: false };
        m.set(op.version.id, s);
      }
      if (at !== undefined && !located.has(s)) located.set(s, at);
    }
  };
  const { remote, crypto } = ctx;
  const opKeys = (await remote.list('ops/')).filter((k) => parseSeqKey('ops', k));
  // Truncate and empty trash before the mark, so the chunks of files purged now are swept by this very run.
  const { stability, truncation } = await truncateStable(replicator, {
    opKeys,
    dryRun: opts.dryRun === true,
  });
  /** What each writing replica had applied of every other, from the `seen` of its batches (and its own seqs). */
  const seenBy = new Map<string, Map<string, number>>();
  let done = 0;
  for (const key of opKeys) {
    const b = openBatch(crypto, key, await remote.get(key));
    see(b.ops, { replica: b.replica, seq: b.seq });
    let m = seenBy.get(b.replica);
    if (m === undefined) seenBy.set(b.replica, (m = new Map()));
    m.set(b.replica, Math.max(m.get(b.replica) ?? 0, b.seq));
    for (const [r, n] of Object.entries(b.seen ?? {})) m.set(r, Math.max(m.get(r) ?? 0, n));
    opts.onProgress?.('mark', ++done, opKeys.length);
  }
  for (const [s, at] of located) {
    s.knownToAll = [...seenBy.values()].every((m) => (m.get(at.replica) ?? 0) >= at.seq);
  }
  const cpKeys = (await remote.list('checkpoints/')).filter((k) => parseSeqKey('checkpoints', k));
  for (const key of cpKeys) see(checkpointVersionOps(openCheckpoint(crypto, key, await remote.get(key))));
  // Local ops written since the sync above (a mount keeps working) are published later: keep their chunks too.
  for (const b of ctx.tree.localOpsSince(replicator.state.pushed.local)) see(b.ops);

  const live = new Set<string>();
  let total = 0;
  let retained = 0;
  let prunedVersions = 0;
  for (const [node, m] of versions) {
    // A file emptied from trash is gone on every replica that can still address anything: nothing of it is live.
    if (ctx.tree.isPurged(node)) continue;
    total += m.size;
    const keep = retainedVersions([...m.values()], retention, now);
    retained += keep.length;
    for (const s of keep) for (const c of s.v.chunks) if (!isHole(c)) live.add(c.id);
    if (!opts.dryRun && keep.length < m.size) {
      const kept = new Set(keep);
      const gone = [...m.values()].filter((s) => !kept.has(s)).map((s) => s.v.id);
      const before = ctx.tree.versions(node).length;
      ctx.tree.markPruned(node, gone);
      prunedVersions += before - ctx.tree.versions(node).length;
    }
  }
  // Chunks still waiting for upload here are referenced by local writes in progress.
  for (const row of ctx.db.prepare('SELECT id FROM chunk_cache WHERE uploaded = 0').all() as Array<{
    id: string;
  }>) {
    live.add(row.id);
  }

  const remoteChunks = (await remote.list('chunks/'))
    .map(chunkIdFromKey)
    .filter((x): x is string => x !== undefined);
  const before = replicator.state.gcCandidates();
  const next = new Map<string, number>();
  let unreferenced = 0;
  let deleted = 0;
  for (const id of remoteChunks) {
    if (live.has(id)) continue;
    unreferenced++;
    const first = before.get(id) ?? now;
    if (now - first >= grace) {
      if (!opts.dryRun) await remote.delete(`chunks/${id.slice(0, 2)}/${id}`);
      deleted++;
    } else {
      next.set(id, first);
    }
  }
  if (!opts.dryRun) replicator.state.setGcCandidates(next);
  // Publish the pruned-history marks, so every replica's `arbor log` stops offering those versions.
  if (prunedVersions > 0) await replicator.push();
  return {
    batchesScanned: opKeys.length,
    checkpointsScanned: cpKeys.length,
    versions: total,
    retainedVersions: retained,
    liveChunks: live.size,
    remoteChunks: remoteChunks.length,
    unreferenced,
    deleted,
    waiting: next.size,
    threshold: stability.threshold,
    blocker: stability.blocker,
    truncation,
    logRows: ctx.tree.logLength,
    prunedVersions,
  };
}
