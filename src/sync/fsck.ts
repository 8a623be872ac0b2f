// Consistency check of a replica and its remote: tree invariants, every visible file's current chunks present and
// verifying (on the remote when reachable, else in the local cache), every published batch opening in sequence.
import { checkReachable } from '../remote/index.js';
import { isHole, type ChunkRef } from '../chunks/types.js';
import { openBatch, parseSeqKey } from './codec.js';
import type { SyncContext } from './replicator.js';

export interface FsckReport {
  files: number;
  chunks: number;
  batches: number;
  problems: string[];
}

export async function fsck(ctx: SyncContext, opts: { skipBatches?: boolean } = {}): Promise<FsckReport> {
  const problems: string[] = [];
  const { tree, remote, crypto, store } = ctx;
  try {
    tree.verify();
  } catch (err) {
    problems.push(`tree: ${err instanceof Error ? err.message : String(err)}`);
  }
  const chunks = new Map<string, { ref: ChunkRef; path: string }>();
  let files = 0;
  for (const [path, e] of tree.snapshot()) {
    let attr;
    try {
      attr = tree.getattr(e.node);
    } catch (err) {
      problems.push(`${path}: entry does not resolve (${err instanceof Error ? err.message : String(err)})`);
      continue;
    }
    if (attr.kind !== 'file') continue;
    files++;
    const vs = tree.versions(e.node);
    const cur = vs[vs.length - 1];
    if (cur === undefined) {
      if (attr.size !== 0) problems.push(`${path}: size ${attr.size} but no content version`);
      continue;
    }
    const sum = cur.chunks.reduce((n, c) => n + c.size, 0);
    if (sum !== cur.size) problems.push(`${path}: chunks add up to ${sum} bytes, version says ${cur.size}`);
    for (const c of cur.chunks) if (!isHole(c) && !chunks.has(c.id)) chunks.set(c.id, { ref: c, path });
  }
  const reach = await checkReachable(remote);
  const pendingUpload = new Set(
    (ctx.db.prepare('SELECT id FROM chunk_cache WHERE uploaded = 0').all() as Array<{ id: string }>).map(
      (r) => r.id,
    ),
  );
  for (const { ref, path } of chunks.values()) {
    try {
      if (reach.reachable && !pendingUpload.has(ref.id)) {
        crypto.openChunk(ref.id, await remote.get(`chunks/${ref.id.slice(0, 2)}/${ref.id}`), ref.size);
      } else {
        await store.get(ref);
      }
    } catch (err) {
      problems.push(
        `${path}: chunk ${ref.id.slice(0, 16)}…: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  let batches = 0;
  if (reach.reachable && !opts.skipBatches) {
    const seqs = new Map<string, number>();
    for (const key of await remote.list('ops/')) {
      const k = parseSeqKey('ops', key);
      if (!k) continue;
      const expect = (seqs.get(k.replica) ?? 0) + 1;
      if (k.seq !== expect)
        problems.push(`${key}: gap in replica ${k.replica}'s batches (expected seq ${expect})`);
      seqs.set(k.replica, k.seq);
      try {
        openBatch(crypto, key, await remote.get(key));
        batches++;
      } catch (err) {
        problems.push(`${key}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } else if (!reach.reachable) {
    problems.push(`remote unreachable (${reach.error}): chunks were checked in the local cache only`);
  }
  return { files, chunks: chunks.size, batches, problems };
}
