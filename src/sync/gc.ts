// Garbage collection of remote chunks, safe with concurrent replicas: mark over every replica's published state
// (all op batches and checkpoints) plus local unpushed ops, sweep only chunks unreferenced for a whole grace period,
// and prune history by a retention policy. Knows nothing of the CLI or FUSE.
import { isHole } from '../chunks/types.js';
import { InvalidInputError } from '../errors.js';
import type { ContentVersion, TreeOp } from '../tree/types.js';
import { checkpointVersionOps, openBatch, openCheckpoint, parseSeqKey } from './codec.js';
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
  // Publish our own ops first so the mark below covers them, and learn everyone else's.
  await replicator.sync();
  ctx.tree.truncateStable();

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
  for (const m of versions.values()) {
    total += m.size;
    const keep = retainedVersions([...m.values()], retention, now);
    retained += keep.length;
    for (const s of keep) for (const c of s.v.chunks) if (!isHole(c)) live.add(c.id);
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
  };
}
