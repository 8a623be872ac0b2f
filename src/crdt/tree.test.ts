// Properties of the tree CRDT (convergence, acyclicity, idempotence, truncation, restore) and the paper's scenarios.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInputError } from '../errors.js';
import { compareTimestamps, LamportClock } from './clock.js';
import { CrdtTree } from './tree.js';
import { TreeReplica, nodeIdFor } from './replica.js';
import type { ChangeSet, LogMove, Move, NodeId, NodePlacement, Timestamp } from './types.js';

type Meta = string;

const CHILDREN = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
const PARENTS = ['root', 'trash', ...CHILDREN];
const REPLICAS = ['r0', 'r1', 'r2', 'r3', 'r4'];

/** A deterministic snapshot of the materialized tree, for equality checks. */
function snapshot<M>(t: CrdtTree<M>): string[] {
  return [...t.nodes()].map(([id, p]) => `${id}<${p.parent}:${String(p.meta)}`).sort();
}

function tsKey(ts: Timestamp): string {
  return `${ts.counter}@${ts.replica}`;
}

/** Small seeded PRNG (mulberry32) so one fast-check integer drives a whole delivery schedule. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The sequential reference: every op applied one at a time in timestamp order on a fresh tree. */
function reference(ops: readonly Move<Meta>[]): CrdtTree<Meta> {
  const t = new CrdtTree<Meta>();
  for (const op of [...ops].sort((x, y) => compareTimestamps(x.ts, y.ts))) t.apply(op);
  return t;
}

const opArb = fc.record({
  counter: fc.integer({ min: 1, max: 40 }),
  replica: fc.constantFrom(...REPLICAS),
  parent: fc.constantFrom(...PARENTS),
  child: fc.constantFrom(...CHILDREN),
  meta: fc.constantFrom('x', 'y', 'z'),
});
const opsArb = fc
  .uniqueArray(opArb, { minLength: 1, maxLength: 40, selector: (o) => `${o.counter}@${o.replica}` })
  .map((os) =>
    os.map((o): Move<Meta> => ({
      ts: { counter: o.counter, replica: o.replica },
      parent: o.parent,
      meta: o.meta,
      child: o.child,
    })),
  );

test('every replica converges to the sequential result, whatever the delivery order and batching', () => {
  fc.assert(
    fc.property(opsArb, fc.integer({ min: 3, max: 5 }), fc.integer(), (ops, k, seed) => {
      const rand = rng(seed);
      const want = snapshot(reference(ops));
      for (let r = 0; r < k; r++) {
        const t = new CrdtTree<Meta>();
        const order = shuffle(ops, rand);
        let i = 0;
        while (i < order.length) {
          const n = 1 + Math.floor(rand() * Math.min(8, order.length - i));
          const batch = order.slice(i, i + n);
          // Sometimes re-deliver an op already sent, mixed into the batch.
          if (i > 0 && rand() < 0.3) batch.push(order[Math.floor(rand() * i)]!);
          if (batch.length === 1 && rand() < 0.5) t.apply(batch[0]!);
          else t.applyBatch(batch);
          t.verify(); // acyclic, one parent per node, child index consistent, log ordered
          i += n;
        }
        assert.deepEqual(snapshot(t), want);
        assert.equal(t.logLength, ops.length);
      }
    }),
    { numRuns: 300 },
  );
});

test('re-delivering ops changes nothing and reports nothing', () => {
  fc.assert(
    fc.property(opsArb, fc.integer(), (ops, seed) => {
      const rand = rng(seed);
      const t = new CrdtTree<Meta>();
      t.applyBatch(ops);
      const before = snapshot(t);
      const again = shuffle(ops, rand).slice(0, 1 + Math.floor(rand() * ops.length));
      const cs = t.applyBatch(again);
      assert.deepEqual(cs.changes, []);
      assert.deepEqual(cs.newOps, []);
      assert.deepEqual(cs.logWrites, []);
      assert.deepEqual(t.apply(again[0]!).newOps, []);
      assert.deepEqual(snapshot(t), before);
      assert.equal(t.logLength, ops.length);
    }),
    { numRuns: 300 },
  );
});

test('the change set lists exactly the nodes whose placement changed, with before and after', () => {
  fc.assert(
    fc.property(opsArb, opsArb, (first, second) => {
      const t = new CrdtTree<Meta>();
      t.applyBatch(first);
      const before = new Map(t.nodes());
      const cs = t.applyBatch(second);
      const after = new Map(t.nodes());
      const same = (a: NodePlacement<Meta> | undefined, b: NodePlacement<Meta> | undefined): boolean =>
        a === b || (a !== undefined && b !== undefined && a.parent === b.parent && a.meta === b.meta);
      const expected = new Set<NodeId>();
      for (const id of new Set([...before.keys(), ...after.keys()])) {
        if (!same(before.get(id), after.get(id))) expected.add(id);
      }
      assert.deepEqual(new Set(cs.changes.map((c) => c.node)), expected);
      for (const c of cs.changes) {
        assert.ok(same(c.before ?? undefined, before.get(c.node)));
        assert.ok(same(c.after ?? undefined, after.get(c.node)));
      }
      const known = new Set(first.map((o) => tsKey(o.ts)));
      const fresh = second.filter((o) => !known.has(tsKey(o.ts)));
      assert.deepEqual(cs.newOps.map((o) => tsKey(o.ts)).sort(), fresh.map((o) => tsKey(o.ts)).sort());
    }),
    { numRuns: 300 },
  );
});

// ---- A network simulation: replicas with Lamport clocks, in-order per-origin delivery, truncation and restore ----

type Cmd =
  | { kind: 'move'; r: number; parent: number; child: number; meta: number }
  | { kind: 'sync'; r: number; from: number; n: number }
  | { kind: 'truncate'; r: number }
  | { kind: 'restore'; r: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('move' as const),
      r: fc.nat(4),
      parent: fc.nat(PARENTS.length - 1),
      child: fc.nat(CHILDREN.length - 1),
      meta: fc.nat(2),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('sync' as const),
      r: fc.nat(4),
      from: fc.nat(4),
      n: fc.integer({ min: 1, max: 12 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), r: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restore' as const), r: fc.nat(4) }) },
);

/** What state/ would keep in SQLite: the materialized tree and the log, maintained only from change sets. */
interface Db {
  nodes: Map<NodeId, NodePlacement<Meta>>;
  log: Map<string, LogMove<Meta>>;
}

function writeThrough(db: Db, cs: ChangeSet<Meta>): void {
  for (const c of cs.changes) {
    if (c.after === null) db.nodes.delete(c.node);
    else db.nodes.set(c.node, c.after);
  }
  for (const e of cs.logWrites) db.log.set(tsKey(e.op.ts), e);
}

test('replicas with clocks, truncation at the stable threshold and restore from write-through state converge', () => {
  let totalTruncated = 0;
  let totalRestores = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 3, max: 5 }),
      fc.array(cmdArb, { minLength: 10, maxLength: 150, size: 'max' }),
      (k, cmds) => {
        const ids = REPLICAS.slice(0, k);
        const reps = ids.map((id) => new TreeReplica<Meta>(id));
        const dbs: Db[] = ids.map(() => ({ nodes: new Map(), log: new Map() }));
        const outbox: Move<Meta>[][] = ids.map(() => []);
        const pos: number[][] = ids.map(() => ids.map(() => 0));
        let truncations = 0;

        const sync = (r: number, from: number, n: number): void => {
          const start = pos[r]![from]!;
          const batch = outbox[from]!.slice(start, start + n);
          pos[r]![from] = start + batch.length;
          writeThrough(dbs[r]!, reps[r]!.receive(batch));
        };

        for (const c of cmds) {
          const r = c.r % k;
          const rep = reps[r]!;
          if (c.kind === 'move') {
            const { op, changes } = rep.moveWithChanges(
              PARENTS[c.parent]!,
              ['x', 'y', 'z'][c.meta]!,
              CHILDREN[c.child]!,
            );
            outbox[r]!.push(op);
            pos[r]![r] = outbox[r]!.length;
            writeThrough(dbs[r]!, changes);
          } else if (c.kind === 'sync') {
            if (c.from % k !== r) sync(r, c.from % k, c.n);
          } else if (c.kind === 'truncate') {
            const th = rep.tree.stableThreshold(ids);
            if (th !== undefined) {
              const before = snapshot(rep.tree);
              const dropped = rep.tree.truncateLogBelow(th);
              if (dropped > 0) truncations++;
              totalTruncated += dropped;
              assert.deepEqual(snapshot(rep.tree), before);
              for (const [key, e] of dbs[r]!.log)
                if (compareTimestamps(e.op.ts, th) < 0) dbs[r]!.log.delete(key);
            }
          } else {
            const db = dbs[r]!;
            const restored = CrdtTree.restore(
              db.nodes,
              db.log.values(),
              rep.tree.truncatedBelow,
              rep.tree.latestSeen().values(),
            );
            assert.deepEqual(snapshot(restored), snapshot(rep.tree));
            assert.deepEqual([...restored.log()], [...rep.tree.log()]);
            reps[r] = new TreeReplica<Meta>(ids[r]!, restored, rep.clock.counter);
            totalRestores++;
          }
          reps[r]!.tree.verify();
        }

        // Deliver everything everywhere (twice: the second round must be a no-op).
        for (let round = 0; round < 2; round++) {
          for (let r = 0; r < k; r++) for (let f = 0; f < k; f++) if (f !== r) sync(r, f, Infinity);
        }
        const want = snapshot(reference(outbox.flat()));
        for (let r = 0; r < k; r++) {
          assert.deepEqual(
            snapshot(reps[r]!.tree),
            want,
            `replica ${ids[r]} diverged (${truncations} truncations)`,
          );
          // The write-through copy equals the tree: change sets were complete.
          assert.deepEqual(
            [...dbs[r]!.nodes].map(([id, p]) => `${id}<${p.parent}:${p.meta}`).sort(),
            want,
            `write-through state of ${ids[r]} is stale`,
          );
          const logged = [...dbs[r]!.log.values()].sort((a, b) => compareTimestamps(a.op.ts, b.op.ts));
          assert.deepEqual(logged, [...reps[r]!.tree.log()]);
        }
      },
    ),
    { numRuns: 300 },
  );
  // The generator must really exercise truncation and restore, or the property above proves little.
  assert.ok(totalTruncated > 1000, `only ${totalTruncated} log entries truncated`);
  assert.ok(totalRestores > 300, `only ${totalRestores} restores`);
});

// ---- The paper's two scenarios ----

test('concurrent moves that would form a cycle: exactly one applies, on every replica', () => {
  const a = new TreeReplica<Meta>('A');
  const b = new TreeReplica<Meta>('B');
  const setup = [a.move('root', 'A', 'A'), a.move('root', 'B', 'B'), a.move('A', 'C', 'C')];
  b.receive(setup);
  // Offline: A moves B under A, B moves A under B. Same counter; replica id breaks the tie (A < B).
  const opA = a.move('A', 'B', 'B');
  const opB = b.move('B', 'A', 'A');
  assert.equal(opA.ts.counter, opB.ts.counter);
  a.receive([opB]);
  b.receive([opA]);
  for (const rep of [a, b]) {
    rep.tree.verify();
    assert.equal(rep.tree.get('B')?.parent, 'A', 'the earlier move (A: B under A) applies');
    assert.equal(rep.tree.get('A')?.parent, 'root', 'the later move would form a cycle and is skipped');
    assert.equal(rep.tree.logLength, 5, 'the skipped move stays in the log');
  }
  assert.deepEqual(snapshot(a.tree), snapshot(b.tree));
});

test('concurrent moves of one node: the later timestamp wins everywhere', () => {
  const reps = ['A', 'B', 'C'].map((id) => new TreeReplica<Meta>(id));
  const [a, b, c] = reps as [TreeReplica<Meta>, TreeReplica<Meta>, TreeReplica<Meta>];
  const setup = [a.move('root', 'x', 'x'), a.move('root', 'd1', 'd1'), a.move('root', 'd2', 'd2')];
  b.receive(setup);
  c.receive(setup);
  const opA = a.move('d1', 'x-in-d1', 'x'); // 4@A
  b.receive([a.move('root', 'tick', 'tmp')]); // B has seen 5@A, so its next op is later
  const opB = b.move('d2', 'x-in-d2', 'x'); // 6@B
  assert.ok(compareTimestamps(opB.ts, opA.ts) > 0);
  a.receive([opB]);
  c.receive([opB]);
  c.receive([opA]); // opposite order on C
  b.receive([opA]);
  for (const rep of reps) assert.deepEqual(rep.tree.get('x'), { parent: 'd2', meta: 'x-in-d2' });
});

// ---- Focused checks ----

test('local ops take the fast path and report their single change', () => {
  const rep = new TreeReplica<Meta>('L');
  const op = rep.create('root', 'f');
  assert.equal(op.child, nodeIdFor(op.ts));
  const { changes } = rep.moveWithChanges('trash', 'f', op.child);
  assert.deepEqual(changes.changes, [
    { node: op.child, before: { parent: 'root', meta: 'f' }, after: { parent: 'trash', meta: 'f' } },
  ]);
  assert.equal(changes.logWrites.length, 1);
  assert.deepEqual([...rep.tree.children('trash')], [op.child]);
  assert.deepEqual([...rep.tree.children('root')], []);
  assert.deepEqual(rep.tree.roots(), ['trash']);
});

test('self-parent and cycle moves are skipped but logged', () => {
  const t = new CrdtTree<Meta>();
  const ts = (n: number): Timestamp => ({ counter: n, replica: 'A' });
  t.apply({ ts: ts(1), parent: 'root', meta: 'a', child: 'a' });
  t.apply({ ts: ts(2), parent: 'a', meta: 'b', child: 'b' });
  assert.deepEqual(t.apply({ ts: ts(3), parent: 'a', meta: 'a', child: 'a' }).changes, []);
  assert.deepEqual(t.apply({ ts: ts(4), parent: 'b', meta: 'a', child: 'a' }).changes, []);
  assert.equal(t.logLength, 4);
  assert.equal(t.get('a')?.parent, 'root');
  assert.ok(t.isAncestor('a', 'b'));
  assert.ok(t.isAncestor('root', 'b'));
  assert.ok(!t.isAncestor('b', 'a'));
  assert.ok(!t.isAncestor('a', 'a'));
});

test('ops older than the truncation point are ignored as already applied', () => {
  const t = new CrdtTree<Meta>();
  const ts = (n: number, r = 'A'): Timestamp => ({ counter: n, replica: r });
  t.applyBatch([1, 2, 3, 4].map((n) => ({ ts: ts(n), parent: 'root', meta: `m${n}`, child: `n${n}` })));
  assert.equal(t.truncateLogBelow(ts(3)), 2);
  assert.equal(t.logLength, 2);
  assert.equal(t.truncateLogBelow(ts(2)), 0, 'the truncation point never moves back');
  const cs = t.applyBatch([{ ts: ts(2, 'B'), parent: 'trash', meta: 'late', child: 'n4' }]);
  assert.deepEqual(cs.newOps, []);
  assert.equal(t.get('n4')?.parent, 'root');
  assert.ok(t.knows(ts(1, 'Z')));
  assert.deepEqual(
    [...t.logSince(ts(3))].map((e) => e.op.ts.counter),
    [4],
  );
});

test('stableThreshold is the minimum latest timestamp over the known replicas', () => {
  const t = new CrdtTree<Meta>();
  t.applyBatch([
    { ts: { counter: 5, replica: 'A' }, parent: 'root', meta: '', child: 'a' },
    { ts: { counter: 3, replica: 'B' }, parent: 'root', meta: '', child: 'b' },
    { ts: { counter: 1, replica: 'B' }, parent: 'root', meta: '', child: 'c' },
  ]);
  assert.deepEqual(t.stableThreshold(['A', 'B']), { counter: 3, replica: 'B' });
  assert.equal(t.stableThreshold(['A', 'B', 'C']), undefined);
  t.observe({ counter: 9, replica: 'C' });
  assert.deepEqual(t.stableThreshold(['A', 'C']), { counter: 5, replica: 'A' });
});

test('purge empties trash only for stable nodes and whole subtrees, all or nothing', () => {
  const rep = new TreeReplica<Meta>('A');
  rep.move('root', 'd', 'd');
  rep.move('d', 'f', 'f');
  rep.move('trash', 'd', 'd');
  rep.move('root', 'g', 'g');
  const t = rep.tree;
  assert.throws(() => t.purge(['d', 'f']), InvalidInputError, 'moves still in the log');
  t.truncateLogBelow(rep.clock.tick());
  assert.throws(() => t.purge(['d']), InvalidInputError, 'child f not purged with d');
  assert.equal(t.size, 3, 'a refused purge changes nothing');
  const changes = t.purge(['d', 'f']);
  assert.deepEqual(changes.map((c) => [c.node, c.after]).sort(), [
    ['d', null],
    ['f', null],
  ]);
  assert.equal(t.size, 1);
  assert.deepEqual([...t.children('trash')], []);
  assert.deepEqual(t.roots(), ['root']);
  t.verify();
});

test('restore rejects cycles, duplicate placements and logs below the truncation point', () => {
  const p = (parent: string): NodePlacement<Meta> => ({ parent, meta: '' });
  assert.throws(
    () =>
      CrdtTree.restore(
        [
          ['a', p('b')],
          ['b', p('a')],
        ],
        [],
      ),
    InvalidInputError,
  );
  assert.throws(() => CrdtTree.restore([['a', p('a')]], []), InvalidInputError);
  assert.throws(
    () =>
      CrdtTree.restore(
        [
          ['a', p('root')],
          ['a', p('trash')],
        ],
        [],
      ),
    InvalidInputError,
  );
  const op: Move<Meta> = { ts: { counter: 1, replica: 'A' }, parent: 'root', meta: '', child: 'a' };
  assert.throws(
    () => CrdtTree.restore([['a', p('root')]], [{ op, old: null }], { counter: 2, replica: 'A' }),
    InvalidInputError,
  );
  assert.throws(
    () =>
      CrdtTree.restore(
        [],
        [
          { op, old: null },
          { op, old: null },
        ],
      ),
    InvalidInputError,
  );
  const t = CrdtTree.restore([['a', p('root')]], [{ op, old: null }]);
  assert.equal(t.get('a')?.parent, 'root');
  assert.deepEqual(t.latestSeen().get('A'), op.ts);
});

test('a reopened replica never reuses a timestamp', () => {
  const a = new TreeReplica<Meta>('A');
  a.move('root', '', 'x');
  a.receive([{ ts: { counter: 41, replica: 'B' }, parent: 'root', meta: '', child: 'y' }]);
  const b = new TreeReplica<Meta>('A', CrdtTree.restore(a.tree.nodes(), a.tree.log()));
  assert.equal(b.makeMove('root', '', 'z').ts.counter, 42);
  const c = new LamportClock('C', 7);
  c.observe({ counter: 3, replica: 'A' });
  assert.deepEqual(c.tick(), { counter: 8, replica: 'C' });
  assert.throws(() => new LamportClock('bad id!'), InvalidInputError);
});

test('fromOps rebuilds the same tree and log as applying the ops', () => {
  fc.assert(
    fc.property(opsArb, fc.integer(), (ops, seed) => {
      const shuffled = shuffle(ops, rng(seed));
      const t = CrdtTree.fromOps([...shuffled, shuffled[0]!]);
      t.verify();
      const ref = reference(ops);
      assert.deepEqual(snapshot(t), snapshot(ref));
      assert.deepEqual([...t.log()], [...ref.log()]);
    }),
    { numRuns: 200 },
  );
});
