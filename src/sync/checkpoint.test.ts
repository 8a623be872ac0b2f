// Snapshot checkpoints (format 2): a clone loaded from one plus later batches is identical to a clone by full replay
// (tree, inodes, attributes, xattrs, version history, content) and keeps converging; corrupt, forged or unknown
// checkpoints are skipped with a reason and the clone replays the batches instead.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cloneWorkspace, initWorkspace, openWorkspace, paths, type Workspace } from '../cli/workspace.js';
import { Arbor } from '../index.js';
import { ROOT } from '../tree/types.js';
import Database from 'better-sqlite3';
import {
  checkpointKey,
  openCheckpoint,
  sealCheckpoint,
  type CheckpointV1,
  type CheckpointV2,
} from './codec.js';
import { Replicator } from './replicator.js';
import { tempDirs } from '../testing/temp-dirs.js';

const tempDir = tempDirs();

const CACHE = 64 << 20;

/** Everything a replica shows, by path and by node: attributes, xattrs, nlink, content, full version history. */
async function deepDigest(ws: Workspace): Promise<string[]> {
  const a = new Arbor(ws.tree);
  const out: string[] = [];
  for (const [path, { node }] of ws.tree.snapshot()) {
    const s = ws.tree.getattr(node);
    let d = `${path} ${node} ${s.kind} ${s.mode.toString(8)} n${s.nlink} u${s.uid} g${s.gid} ${s.size} m${s.mtimeNs} c${s.ctimeNs}`;
    d += ` x[${ws.tree
      .listxattr(node)
      .map((x) => `${x}=${ws.tree.getxattr(node, x).toString('hex')}`)
      .join(',')}]`;
    if (s.kind === 'file') {
      d += ` ${createHash('sha256')
        .update(await a.readFile(path))
        .digest('hex')
        .slice(0, 12)}`;
      if (!path.includes('.conflict-'))
        d += ` v[${ws.tree
          .versions(node)
          .map((v) => `${v.id}<${v.base ?? ''}:${v.size}`)
          .join(',')}]`;
    }
    out.push(d);
  }
  return out.sort();
}

/** A (with B's concurrent edits merged) publishes a checkpoint, then one more batch; returns the family. */
async function scene(): Promise<{ root: string; remote: string; a: Workspace; b: Workspace; key: string }> {
  const root = await tempDir('arbor-cp-');
  const remote = join(root, 'remote');
  const a = await initWorkspace(join(root, 'a'), remote, { cacheBytes: CACHE });
  const key = paths(a.dir).key;
  const b = await cloneWorkspace(join(root, 'b'), remote, { keyFile: key, cacheBytes: CACHE });
  const fa = new Arbor(a.tree);
  const fb = new Arbor(b.tree);
  const ra = new Replicator(a);
  const rb = new Replicator(b);
  await fa.mkdir('/d1');
  await fa.mkdir('/d1/sub');
  await fa.writeFile('/d1/f', 'base');
  await fa.writeFile('/d1/sub/deep', 'deep');
  await fa.link('/d1/f', '/hard');
  await fa.writeFile('/gone', 'x');
  await fa.symlink('d1/f', '/sym');
  await ra.sync();
  await rb.sync();
  await fa.writeFile('/d1/f', 'from a');
  await fb.writeFile('/d1/f', 'from b');
  await fb.rename('/d1', '/moved');
  await fb.mkdir('/same');
  await fa.mkdir('/same');
  await fa.unlink('/gone');
  await fa.chmod('/hard', 0o600);
  await fa.setxattr('/hard', 'user.tag', Buffer.from('v1'));
  await ra.sync();
  await rb.sync();
  await ra.sync();
  assert.equal(await ra.writeCheckpoint(), 1);
  await fa.writeFile('/after-checkpoint', 'later');
  await fa.rename('/moved/sub', '/sub-out');
  await ra.sync();
  return { root, remote, a, b, key };
}

describe('snapshot checkpoints', () => {
  it('checkpoint + later batches = full replay; the newcomer then edits and converges', async () => {
    const { root, remote, a, b, key } = await scene();
    const ws = [a, b];
    try {
      const c = await cloneWorkspace(join(root, 'c'), remote, { keyFile: key, cacheBytes: CACHE });
      ws.push(c);
      const rc = new Replicator(c);
      const cp = await rc.restoreLatestCheckpoint();
      assert.deepEqual(cp.failed, []);
      assert.equal(cp.from, checkpointKey(a.replicaId, 1));
      assert.ok(cp.loaded > 0);
      const pulled = await rc.pull();
      assert.equal(pulled.batches, 1, 'only the batch after the checkpoint is fetched');
      const d = await cloneWorkspace(join(root, 'd'), remote, { keyFile: key, cacheBytes: CACHE });
      ws.push(d);
      const rd = new Replicator(d);
      await rd.pull();
      const want = await deepDigest(a);
      assert.ok(
        want.some((l) => l.includes('.conflict-')) && want.some((l) => l.includes('~')),
        want.join('\n'),
      );
      assert.deepEqual(await deepDigest(d), want);
      assert.deepEqual(await deepDigest(c), want);
      c.tree.verify();
      // Reopened from its own SQLite, the checkpoint clone is the same again.
      await c.close();
      ws.splice(ws.indexOf(c), 1);
      const c2 = await openWorkspace(join(root, 'c'));
      ws.push(c2);
      assert.deepEqual(await deepDigest(c2), want);
      // Concurrent edits on all four converge.
      const rc2 = new Replicator(c2);
      await new Arbor(c2.tree).writeFile('/sub-out/deep', 'from c');
      await new Arbor(c2.tree).mkdir('/c-dir');
      await new Arbor(d.tree).rename('/hard', '/c-dir-not-yet');
      await new Arbor(a.tree).writeFile('/from-a', 'a');
      const reps = [new Replicator(a), new Replicator(b), rc2, rd];
      for (let round = 0; round < 2; round++) for (const r of reps) await r.sync();
      const final = await deepDigest(a);
      assert.ok(final.some((l) => l.startsWith('/c-dir ')));
      for (const w of [b, c2, d]) assert.deepEqual(await deepDigest(w), final);
      // A checkpoint written by the newcomer clones the same as well.
      assert.equal(await rc2.writeCheckpoint(), 1);
      const e = await cloneWorkspace(join(root, 'e'), remote, { keyFile: key, cacheBytes: CACHE });
      ws.push(e);
      const re = new Replicator(e);
      assert.ok((await re.restoreLatestCheckpoint()).loaded > 0);
      await re.pull();
      assert.deepEqual(await deepDigest(e), final);
    } finally {
      for (const w of ws) await w.close();
    }
  });

  it('a corrupt, forged or unknown checkpoint is skipped with a reason; the clone replays instead', async () => {
    const { root, remote, a, b, key } = await scene();
    const ws = [a, b];
    try {
      const want = await deepDigest(a);
      const file = join(remote, checkpointKey(a.replicaId, 1));
      const good = await readFile(file);
      const cp = openCheckpoint(a.crypto, checkpointKey(a.replicaId, 1), good) as CheckpointV2;
      const snap = cp.snapshot;
      /** The snapshot's database changed by SQL, sealed again with the right key (a forger who has it). */
      const forged = (...sql: string[]): Uint8Array => {
        const d = new Database(Buffer.from(snap.db));
        for (const q of sql) d.exec(q);
        const db = d.serialize();
        d.close();
        return sealCheckpoint(a.crypto, { ...cp, snapshot: { ...snap, db } });
      };
      const probe = new Database(Buffer.from(snap.db), { readonly: true });
      const [x, y] = probe
        .prepare("SELECT id FROM nodes WHERE meta ->> '$.k' = 'd' ORDER BY id LIMIT 2")
        .pluck(true)
        .all() as string[];
      probe.close();
      const variants: Array<[string, Uint8Array, RegExp]> = [
        ['flipped byte', Buffer.from(good.map((v, i) => (i === 40 ? v ^ 1 : v))), /corrupt|authentic/i],
        [
          'a cycle',
          forged(
            `UPDATE nodes SET parent = '${y}' WHERE id = '${x}'`,
            `UPDATE nodes SET parent = '${x}' WHERE id = '${y}'`,
          ),
          /cycle/i,
        ],
        [
          'not a database',
          sealCheckpoint(a.crypto, {
            ...cp,
            snapshot: { ...snap, db: Buffer.from('not a database at all') },
          }),
          /not a database|file is not a database/,
        ],
        ['an extra view', forged('CREATE VIEW v AS SELECT 1'), /unexpected schema/],
        [
          'a trigger',
          forged('CREATE TRIGGER t AFTER INSERT ON log BEGIN SELECT 1; END'),
          /unexpected schema/,
        ],
        [
          'malformed meta JSON',
          forged(`UPDATE nodes SET meta = '{bad' WHERE id = '${x}'`),
          /checkpoint snapshot: .*JSON/,
        ],
        [
          'a link without its inode',
          forged("UPDATE nodes SET meta = json_remove(meta, '$.i') WHERE meta ->> '$.k' = 'l'"),
          /bad meta/,
        ],
        [
          'a malformed chunk reference',
          forged(
            "UPDATE versions SET data = json_set(data, '$.chunks[0].id', 'zz') WHERE json_array_length(data, '$.chunks') > 0",
          ),
          /malformed chunk reference/,
        ],
        [
          'a negative version size',
          forged("UPDATE versions SET data = json_set(data, '$.size', -1)"),
          /malformed version row/,
        ],
        [
          'a log row from a bad replica id',
          forged("UPDATE log SET replica = 'bad/replica' WHERE counter = (SELECT min(counter) FROM log)"),
          /malformed log row/,
        ],
        [
          'a node row with an empty id',
          forged(`UPDATE nodes SET id = '' WHERE id = '${x}'`),
          /malformed node row/,
        ],
        [
          'an unknown format',
          a.crypto.sealObject(
            'checkpoint',
            checkpointKey(a.replicaId, 1),
            Buffer.from(JSON.stringify({ ...cp, version: 3 })),
          ),
          /unknown checkpoint format 3/,
        ],
      ];
      let i = 0;
      for (const [what, bytes, reason] of variants) {
        await writeFile(file, bytes);
        const c = await cloneWorkspace(join(root, `c${i++}`), remote, { keyFile: key, cacheBytes: CACHE });
        ws.push(c);
        const rc = new Replicator(c);
        const r = await rc.restoreLatestCheckpoint();
        assert.equal(r.loaded, 0, what);
        assert.equal(r.failed.length, 1, `${what}: ${r.failed.join('; ')}`);
        assert.match(r.failed[0]!, reason, `${what}: ${r.failed[0]}`);
        assert.deepEqual(
          c.tree.readdir(ROOT).map((e) => e.name),
          ['.', '..'],
          `${what}: nothing of it is left behind`,
        );
        await rc.pull();
        assert.deepEqual(await deepDigest(c), want, what);
      }
    } finally {
      for (const w of ws) await w.close();
    }
  });

  it('a format 1 checkpoint (a compacted op set, written by older replicas) is still replayed', async () => {
    const root = await tempDir('arbor-cp1-');
    const remote = join(root, 'remote');
    const a = await initWorkspace(join(root, 'a'), remote, { cacheBytes: CACHE });
    const ws = [a];
    try {
      const fa = new Arbor(a.tree);
      await fa.mkdir('/d');
      await fa.writeFile('/d/f', 'one');
      await fa.rename('/d/f', '/g');
      const ra = new Replicator(a);
      await ra.sync();
      const ops = a.tree.localOpsSince(0).flatMap((b) => b.ops);
      const cp: CheckpointV1 = {
        version: 1,
        replica: a.replicaId,
        seq: 1,
        positions: { [a.replicaId]: ra.state.pushed.rseq },
        ops,
        time: Date.now(),
      };
      await a.remote.putIfAbsent(checkpointKey(a.replicaId, 1), sealCheckpoint(a.crypto, cp));
      const c = await cloneWorkspace(join(root, 'c'), remote, {
        keyFile: paths(a.dir).key,
        cacheBytes: CACHE,
      });
      ws.push(c);
      const rc = new Replicator(c);
      const r = await rc.restoreLatestCheckpoint();
      assert.deepEqual([r.loaded, r.failed], [ops.length, []]);
      assert.equal((await rc.pull()).batches, 0);
      assert.deepEqual(await deepDigest(c), await deepDigest(a));
    } finally {
      for (const w of ws) await w.close();
    }
  });
});
