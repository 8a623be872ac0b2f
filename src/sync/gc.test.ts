// GC across replicas (library level, dir remote): the join protocol and the stability threshold keep log truncation
// and trash emptying safe under random schedules and random (per-replica ordered) delivery, late joiners lose nothing,
// a silent replica blocks until retired, open and hard-linked files survive purges.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cloneWorkspace, initWorkspace, paths, type Workspace } from '../cli/workspace.js';
import { compareTimestamps } from '../crdt/clock.js';
import type { Timestamp } from '../crdt/types.js';
import { ReplicaRetiredError } from '../errors.js';
import { Arbor } from '../index.js';
import type { Remote } from '../remote/types.js';
import { ROOT, type TreeOpBatch } from '../tree/types.js';
import { parseSeqKey } from './codec.js';
import { collectGarbage, truncateStable } from './gc.js';
import { retireReplica } from './join.js';
import { startSyncLoop } from './loop.js';
import { Replicator, type SyncContext } from './replicator.js';
import { treeDigest } from './testing/digest.js';
import { applyEdit, editArb, type Edit } from './testing/edits.js';
import { tempDirs } from '../testing/temp-dirs.js';

const tempDir = tempDirs();
const tmp = (): Promise<string> => tempDir('arbor-gc-');

const CACHE = 64 << 20;

/** A view of the remote that hides the newest `lag` batches of every replica: delivery lags, in each one's order. */
class Laggy implements Remote {
  lag = 0;
  constructor(private readonly inner: Remote) {}
  get url(): string {
    return this.inner.url;
  }
  putIfAbsent(k: string, d: Uint8Array): Promise<boolean> {
    return this.inner.putIfAbsent(k, d);
  }
  get(k: string, r?: { offset: number; length: number }): Promise<Uint8Array> {
    return this.inner.get(k, r);
  }
  exists(k: string): Promise<boolean> {
    return this.inner.exists(k);
  }
  async list(p: string): Promise<string[]> {
    const keys = await this.inner.list(p);
    if (this.lag === 0 || !p.startsWith('ops')) return keys;
    const newest = new Map<string, number>();
    for (const k of keys) {
      const s = parseSeqKey('ops', k);
      if (s) newest.set(s.replica, Math.max(newest.get(s.replica) ?? 0, s.seq));
    }
    return keys.filter((k) => {
      const s = parseSeqKey('ops', k);
      return !s || s.seq <= newest.get(s.replica)! - this.lag;
    });
  }
  delete(k: string): Promise<void> {
    return this.inner.delete(k);
  }
  async close(): Promise<void> {}
}

function truncatedOf(ws: Workspace): Timestamp | undefined {
  const row = ws.db.prepare("SELECT value FROM kv WHERE key = 'truncated'").get() as
    { value: string } | undefined;
  return row === undefined ? undefined : (JSON.parse(row.value) as Timestamp);
}

function logRows(ws: Workspace): number {
  return (ws.db.prepare('SELECT count(*) AS n FROM log').get() as { n: number }).n;
}

/** One replica under test: its replicator sees the remote through a laggy view; every applied op is checked. */
interface Peer {
  ws: Workspace;
  view: Laggy;
  r: Replicator;
  /** Keys of every remote op applied here. */
  applied: Set<string>;
}

const key = (ts: Timestamp): string => `${ts.counter}.${ts.replica}`;

function peer(ws: Workspace): Peer {
  const view = new Laggy(ws.remote);
  const ctx: SyncContext = { ...ws, remote: view };
  const p: Peer = { ws, view, r: new Replicator(ctx), applied: new Set() };
  const tree = ws.tree;
  const orig = tree.applyRemote.bind(tree);
  // The invariant: an op below this replica's truncation point is one it has applied already. An op it never saw
  // there would be dropped as "known" — the trees would diverge for good. By construction this cannot happen.
  tree.applyRemote = (batch: TreeOpBatch) => {
    const tb = truncatedOf(ws);
    for (const op of batch.ops) {
      if (op.type === 'move' && op.ts.replica !== ws.replicaId && tb !== undefined) {
        if (compareTimestamps(op.ts, tb) < 0) {
          assert.ok(
            p.applied.has(key(op.ts)),
            `${ws.replicaId} truncated below ${key(tb)} but then received op ${key(op.ts)} it never applied`,
          );
        }
      }
    }
    const out = orig(batch);
    for (const op of batch.ops) p.applied.add(key(op.ts));
    return out;
  };
  return p;
}

type Step =
  | { s: 'op'; r: number; o: Edit }
  | { s: 'sync'; r: number; lag: number }
  | { s: 'trunc'; r: number; sync: boolean }
  | { s: 'clone' };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      s: fc.constant('op' as const),
      r: fc.nat(9),
      o: editArb({ chmod: false, rmWeight: 2 }),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      s: fc.constant('sync' as const),
      r: fc.nat(9),
      lag: fc.oneof(fc.constant(0), fc.nat(2)),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ s: fc.constant('trunc' as const), r: fc.nat(9), sync: fc.boolean() }), weight: 3 },
  { arbitrary: fc.constant({ s: 'clone' as const }), weight: 1 },
);

describe('gc: log truncation and trash emptying across replicas', () => {
  it('random ops, lagging delivery and truncation at random points: converge, nothing dropped that was needed', async () => {
    let truncatedRuns = 0;
    let purged = 0;
    /** Truncations at a replica that had not applied every published batch yet (deliveries still to come). */
    let withPending = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 20, maxLength: 60 }), async (steps) => {
        const root = await tmp();
        const remote = join(root, 'remote');
        const first = await initWorkspace(join(root, 'r0'), remote, { cacheBytes: CACHE });
        const all: Workspace[] = [first];
        const clone = async (i: number): Promise<Workspace> => {
          const ws = await cloneWorkspace(join(root, `r${i}`), remote, {
            keyFile: paths(first.dir).key,
            cacheBytes: CACHE,
          });
          all.push(ws);
          return ws;
        };
        try {
          const peers = [peer(first), peer(await clone(1)), peer(await clone(2))];
          let cloned = false;
          let truncatedHere = false;
          /** Truncate at p's own threshold; count it, and whether deliveries to p were still outstanding. */
          const trunc = async (p: Peer): Promise<void> => {
            const { truncation } = await truncateStable(p.r);
            if (truncation === undefined) return;
            purged += truncation.purgedNodes;
            if (truncation.logAfter >= truncation.logBefore) return;
            truncatedHere = true;
            const positions = p.ws.tree.peerPositions();
            const late = (await p.ws.remote.list('ops/')).some((k) => {
              const s = parseSeqKey('ops', k);
              return (
                s !== undefined && s.replica !== p.ws.replicaId && s.seq > (positions.get(s.replica) ?? 0)
              );
            });
            if (late) withPending++;
          };
          for (const st of steps) {
            if (st.s === 'clone') {
              if (cloned) continue;
              cloned = true;
              // A late joiner: registered by cloneWorkspace before it pulls, then a full pull, then it makes ops.
              const p = peer(await clone(3));
              await p.r.pull();
              peers.push(p);
              continue;
            }
            const p = peers[st.r % peers.length]!;
            if (st.s === 'op') await applyEdit(new Arbor(p.ws.tree), st.o);
            else if (st.s === 'sync') {
              p.view.lag = st.lag;
              await p.r.sync({ announce: true });
            } else {
              if (st.sync) await p.r.sync({ announce: true });
              await trunc(p);
            }
          }
          // Quiesce with truncation between rounds (each replica truncates while others' batches are still on their
          // way to it), then a last truncation everywhere and two more rounds.
          for (const p of peers) p.view.lag = 0;
          for (let round = 0; round < 3; round++) {
            for (const p of peers) await p.r.sync({ announce: true });
            for (const p of peers) await trunc(p);
          }
          for (let round = 0; round < 2; round++) for (const p of peers) await p.r.sync({ announce: true });
          const want = await treeDigest(peers[0]!.ws);
          for (const p of peers) {
            p.ws.tree.verify();
            assert.deepEqual(await treeDigest(p.ws), want, `replica ${p.ws.replicaId} diverged`);
          }
          // An oracle that never truncated: a fresh clone replaying every batch sees the same tree.
          const oracle = await clone(9);
          await new Replicator(oracle).pull();
          assert.deepEqual(await treeDigest(oracle), want, 'a fresh clone disagrees: an op was lost');
          if (truncatedHere) truncatedRuns++;
        } finally {
          for (const w of all) await w.close();
          await rm(root, { recursive: true, force: true });
        }
      }),
      { numRuns: 12 },
    );
    // Not vacuous: some runs did truncate (and empty trash).
    assert.ok(truncatedRuns > 0, 'no run truncated anything');
    assert.ok(purged > 0, 'no run emptied trash');
    assert.ok(withPending > 0, 'no truncation happened with deliveries still pending');
    process.stdout.write(
      `# gc property: ${truncatedRuns} runs truncated, ${withPending} truncations with deliveries still pending, ${purged} trash entries emptied\n`,
    );
  });

  it('a late joiner blocks truncation until it publishes, then its ops are all kept', async () => {
    const root = await tmp();
    const remote = join(root, 'remote');
    const a = await initWorkspace(join(root, 'a'), remote, { cacheBytes: CACHE });
    const b = await cloneWorkspace(join(root, 'b'), remote, { keyFile: paths(a.dir).key, cacheBytes: CACHE });
    const ra = new Replicator(a);
    const rb = new Replicator(b);
    try {
      const fa = new Arbor(a.tree);
      for (let i = 0; i < 20; i++) await fa.writeFile(`/f${i}`, `x${i}`);
      for (let i = 0; i < 10; i++) await fa.unlink(`/f${i}`);
      await ra.sync({ announce: true });
      await rb.sync({ announce: true });
      await ra.sync({ announce: true });
      const before = logRows(a);
      const t1 = await truncateStable(ra);
      assert.ok(t1.truncation && t1.truncation.logAfter < before, `log shrank (${before} rows)`);
      assert.ok(t1.truncation.purgedInodes >= 10, `deleted files emptied (${t1.truncation.purgedInodes})`);

      // C joins after all that, pulls, and works offline before ever publishing.
      const c = await cloneWorkspace(join(root, 'c'), remote, {
        keyFile: paths(a.dir).key,
        cacheBytes: CACHE,
      });
      const rc = new Replicator(c);
      try {
        await rc.pull();
        const fc2 = new Arbor(c.tree);
        await fc2.writeFile('/late', 'from c');
        await fc2.rename('/f15', '/g15');
        await fa.writeFile('/more', 'a again');
        await ra.sync({ announce: true });
        await rb.sync({ announce: true });
        await ra.sync({ announce: true });
        const t2 = await truncateStable(ra);
        assert.match(t2.stability.blocker ?? '', new RegExp(`replica ${c.replicaId} has published nothing`));
        // C's floor holds A's threshold where it was: C's ops, above the floor, will still be applied.
        assert.ok(t2.stability.threshold!.counter <= t1.stability.threshold!.counter + 0);
        await rc.sync({ announce: true });
        await ra.sync({ announce: true });
        await rb.sync({ announce: true });
        await truncateStable(ra);
        await truncateStable(rb);
        await rc.sync({ announce: true });
        const want = await treeDigest(c);
        assert.ok(want.some((l) => l.startsWith('/late ')) && want.some((l) => l.startsWith('/g15 ')));
        assert.deepEqual(await treeDigest(a), want);
        assert.deepEqual(await treeDigest(b), want);
      } finally {
        await c.close();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('trash is emptied only once every replica has applied the delete, not merely moved its clock past it', async () => {
    const root = await tmp();
    const remote = join(root, 'remote');
    const a = await initWorkspace(join(root, 'a'), remote, { cacheBytes: CACHE });
    const b = await cloneWorkspace(join(root, 'b'), remote, { keyFile: paths(a.dir).key, cacheBytes: CACHE });
    const ra = new Replicator(a);
    const rb = new Replicator(b);
    try {
      const fa = new Arbor(a.tree);
      const fb = new Arbor(b.tree);
      await fa.writeFile('/f', 'content of f');
      await ra.sync({ announce: true });
      await rb.sync({ announce: true });
      await fa.unlink('/f');
      await ra.sync({ announce: true });
      // B works without pulling: its clock passes A's delete, but it has not seen it and still shows /f.
      for (let i = 0; i < 30; i++) await fb.writeFile(`/b${i}`, `b${i}`);
      await rb.push();
      await ra.sync({ announce: true });
      const t = await truncateStable(ra);
      assert.ok(t.stability.threshold !== undefined && t.truncation !== undefined);
      assert.equal(t.truncation.purgedInodes, 0, 'the delete is stable but B has not applied it');
      // B, still unaware, renames the file: a move of a node A would have emptied from trash.
      await fb.rename('/f', '/g');
      await rb.sync({ announce: true });
      await ra.sync({ announce: true });
      await rb.sync({ announce: true });
      await truncateStable(ra);
      await truncateStable(rb);
      const want = await treeDigest(a);
      assert.ok(
        want.some((l) => l.startsWith('/g file')),
        want.join('\n'),
      );
      assert.deepEqual(await treeDigest(b), want);
      assert.equal(await fa.readFile('/g', 'utf8'), 'content of f');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a registered replica that never syncs blocks truncation until retired; a retired replica cannot publish', async () => {
    const root = await tmp();
    const remote = join(root, 'remote');
    const a = await initWorkspace(join(root, 'a'), remote, { cacheBytes: CACHE });
    const silent = await cloneWorkspace(join(root, 's'), remote, {
      keyFile: paths(a.dir).key,
      cacheBytes: CACHE,
    });
    const ra = new Replicator(a);
    try {
      const fa = new Arbor(a.tree);
      await fa.writeFile('/x', 'x');
      await fa.unlink('/x');
      await ra.sync({ announce: true });
      const before = logRows(a);
      const g = await collectGarbage(ra, { graceMs: 0 });
      assert.equal(g.truncation?.logAfter ?? logRows(a), before, 'nothing truncated');
      assert.match(g.blocker ?? '', new RegExp(`replica ${silent.replicaId} has published nothing`));
      assert.equal(await retireReplica(a, silent.replicaId), true);
      const g2 = await collectGarbage(ra, { graceMs: 0 });
      assert.ok(g2.truncation !== undefined && g2.truncation.logAfter < before, 'truncated once retired');
      assert.equal(g2.truncation.purgedInodes, 1);
      await new Arbor(silent.tree).writeFile('/y', 'y');
      await assert.rejects(new Replicator(silent).sync(), ReplicaRetiredError);
    } finally {
      await a.close();
      await silent.close();
    }
  });

  it("a mount's sync loop truncates now and then, and keeps an open unlinked file readable", async () => {
    const root = await tmp();
    const a = await initWorkspace(join(root, 'a'), join(root, 'remote'), { cacheBytes: CACHE });
    try {
      const fa = new Arbor(a.tree);
      await fa.writeFile('/gone', 'bye');
      await fa.writeFile('/open', 'held open');
      const gone = a.tree.lookupId(ROOT, 'gone');
      const held = a.tree.lookupId(ROOT, 'open');
      const h = await fa.open('/open', 'r');
      await fa.unlink('/gone');
      await fa.unlink('/open');
      const loop = await startSyncLoop(a, { intervalMs: 20, idleIntervalMs: 20, truncateEveryMs: 1 });
      const until = async (what: string, ok: () => boolean): Promise<void> => {
        for (let i = 0; i < 250 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(ok(), what);
      };
      try {
        await until('the deleted file is emptied from trash', () => a.tree.isPurged(gone));
        assert.equal(a.tree.isPurged(held), false);
        assert.equal((await h.readFile()).toString(), 'held open');
        await h.close();
        await fa.writeFile('/later', 'x'); // activity: the loop syncs and truncates again
        await until('the closed file goes too', () => a.tree.isPurged(held));
      } finally {
        await loop.stop();
      }
      assert.deepEqual(await fa.readdir('/'), ['later']);
      a.tree.verify();
    } finally {
      await a.close();
    }
  });

  it('a file unlinked while open is kept until closed; a hard link keeps its inode', async () => {
    const root = await tmp();
    const a = await initWorkspace(join(root, 'a'), join(root, 'remote'), { cacheBytes: CACHE });
    const ra = new Replicator(a);
    try {
      const fa = new Arbor(a.tree);
      await fa.writeFile('/open', 'still readable');
      await fa.writeFile('/linked', 'two names');
      await fa.link('/linked', '/other');
      const h = await fa.open('/open', 'r');
      await fa.unlink('/open');
      await fa.unlink('/linked');
      await ra.sync({ announce: true });
      const t = await truncateStable(ra);
      assert.equal(t.truncation?.purgedNodes, 2, 'both trashed links emptied');
      assert.equal(t.truncation?.purgedInodes, 0);
      assert.equal(t.truncation?.deferredOpen, 1);
      assert.equal((await h.readFile()).toString(), 'still readable');
      assert.equal(await fa.readFile('/other', 'utf8'), 'two names');
      await h.close();
      await ra.sync({ announce: true });
      const t2 = await truncateStable(ra);
      assert.equal(t2.truncation?.purgedInodes, 1, 'purged once closed');
      assert.equal(await fa.readFile('/other', 'utf8'), 'two names');
      a.tree.verify();
    } finally {
      await a.close();
    }
  });
});
