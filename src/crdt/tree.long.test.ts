// Soak: five replicas, tens of thousands of ops over a few hundred nodes, random in-order delivery, truncation and
// restore; every replica must end equal to the sequential reference. Run with ARBOR_LONG=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareTimestamps } from './clock.js';
import { CrdtTree } from './tree.js';
import { TreeReplica } from './replica.js';
import type { Move } from './types.js';

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

function snapshot(t: CrdtTree<number>): string {
  return [...t.nodes()]
    .map(([id, p]) => `${id}<${p.parent}:${p.meta}`)
    .sort()
    .join('\n');
}

for (const seed of [1, 2, 3]) {
  test(`soak seed ${seed}: 5 replicas, 40k ops, truncation and restore`, () => {
    const rand = rng(seed);
    const ids = ['r0', 'r1', 'r2', 'r3', 'r4'];
    const nodes = Array.from({ length: 300 }, (_, i) => `n${i}`);
    const parents = ['root', 'trash', ...nodes];
    let reps = ids.map((id) => new TreeReplica<number>(id));
    const outbox: Move<number>[][] = ids.map(() => []);
    const pos = ids.map(() => ids.map(() => 0));
    let steps = 0;
    while (outbox.reduce((n, o) => n + o.length, 0) < 40_000) {
      steps++;
      const r = Math.floor(rand() * ids.length);
      const x = rand();
      if (x < 0.6) {
        const n = 1 + Math.floor(rand() * 50);
        for (let i = 0; i < n; i++) {
          const parent = parents[Math.floor(rand() * parents.length)]!;
          const child = nodes[Math.floor(rand() * nodes.length)]!;
          outbox[r]!.push(reps[r]!.move(parent, Math.floor(rand() * 10), child));
        }
        pos[r]![r] = outbox[r]!.length;
      } else if (x < 0.95) {
        const f = Math.floor(rand() * ids.length);
        if (f === r) continue;
        const start = pos[r]![f]!;
        const batch = outbox[f]!.slice(start, start + 1 + Math.floor(rand() * 400));
        pos[r]![f] = start + batch.length;
        reps[r]!.receive(batch);
      } else if (x < 0.98) {
        const th = reps[r]!.tree.stableThreshold(ids);
        if (th !== undefined) reps[r]!.tree.truncateLogBelow(th);
      } else {
        const t = reps[r]!.tree;
        const restored = CrdtTree.restore(t.nodes(), t.log(), t.truncatedBelow, t.latestSeen().values());
        reps = reps.map((rep, i) =>
          i === r ? new TreeReplica<number>(ids[r]!, restored, rep.clock.counter) : rep,
        );
      }
      if (steps % 200 === 0) reps[r]!.tree.verify();
    }
    for (let r = 0; r < ids.length; r++) {
      for (let f = 0; f < ids.length; f++) {
        if (f !== r) reps[r]!.receive(outbox[f]!.slice(pos[r]![f]!));
      }
    }
    const all = outbox.flat().sort((a, b) => compareTimestamps(a.ts, b.ts));
    const want = snapshot(CrdtTree.fromOps(all));
    for (const rep of reps) {
      rep.tree.verify();
      assert.equal(snapshot(rep.tree), want, `${rep.replica} diverged`);
    }
  });
}
