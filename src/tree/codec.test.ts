// Tests of the tree-op codec: round trips of every op kind, and rejection of malformed batches.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeOps, decodeTreeOpBatch, encodeOps, encodeTreeOpBatch } from './codec.js';
import type { TreeOp, TreeOpBatch } from './types.js';

const R = 'rep-1';
const ops: TreeOp[] = [
  {
    type: 'move',
    ts: { counter: 5, replica: R },
    parent: 'root',
    child: '3.rep-1',
    meta: { n: 'dir', k: 'd', t: [5, R] },
  },
  {
    type: 'move',
    ts: { counter: 6, replica: R },
    parent: '3.rep-1',
    child: '4.rep-1',
    meta: { n: 'f.txt', k: 'l', i: '2.rep-1', f: 'file', t: [6, R] },
  },
  {
    type: 'set',
    ts: { counter: 7, replica: R },
    node: '2.rep-1',
    fields: { mode: 0o644, mtime: '123', 'x:user.a': null },
  },
  {
    type: 'version',
    ts: { counter: 8, replica: R },
    node: '2.rep-1',
    version: {
      id: `8.${R}`,
      base: null,
      size: 10,
      chunks: [{ id: 'ab'.repeat(32), size: 4 }],
      timeNs: '1700000000000000000',
      replica: R,
    },
  },
];

describe('tree op codec', () => {
  it('round-trips every op kind', () => {
    assert.deepEqual(decodeOps(encodeOps(ops, R), R), ops);
    const batch: TreeOpBatch = { version: 1, replica: R, seq: 3, ops };
    assert.deepEqual(decodeTreeOpBatch(encodeTreeOpBatch(batch)), batch);
  });

  it('refuses an op of another replica in a batch', () => {
    assert.throws(() => encodeOps(ops, 'other'), { code: 'ARBOR_BAD_BATCH' });
  });

  it('rejects malformed batches with ARBOR_BAD_BATCH', () => {
    const good = JSON.parse(
      Buffer.from(encodeTreeOpBatch({ version: 1, replica: R, seq: 1, ops })).toString(),
    );
    const cases: Array<(b: { v: number; r: string; s: number; o: unknown[][] }) => void> = [
      (b) => (b.v = 2),
      (b) => (b.r = 'bad replica!'),
      (b) => (b.s = 0),
      (b) => (b.o[0]![4] = 'a/b'),
      (b) => (b.o[0]![4] = ''),
      (b) => (b.o[0]![4] = 'x'.repeat(256)),
      (b) => (b.o[0]![4] = 'lone \ud800 surrogate'), // JSON can carry it; UTF-8 storage cannot
      (b) => (b.o[0]![5] = 'q'),
      (b) => (b.o[1]![6] = null),
      (b) => (b.o[1]![7] = 'dir'),
      (b) => (b.o[2]![3] = { mode: 1.5 }),
      (b) => (b.o[2]![3] = { mode: {} }),
      (b) => (b.o[3]![4] = 2),
      (b) => (b.o[3]![6] = [['XYZ', 4]]),
      (b) => (b.o[3]![5] = 'soon'),
      (b) => (b.o[0]![1] = -1),
      (b) => (b.o[0]![2] = 'bad id!'),
      (b) => (b.o[0] = ['z', 1, 'root']),
    ];
    for (const mutate of cases) {
      const b = structuredClone(good);
      mutate(b);
      assert.throws(
        () => decodeTreeOpBatch(Buffer.from(JSON.stringify(b))),
        { code: 'ARBOR_BAD_BATCH' },
        String(mutate),
      );
    }
    assert.throws(() => decodeTreeOpBatch(Buffer.from('not json')), { code: 'ARBOR_BAD_BATCH' });
  });
});
