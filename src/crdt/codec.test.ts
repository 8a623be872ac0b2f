// The op batch codec: round trips, and rejection of truncated, damaged and hostile input with ARBOR_BAD_BATCH only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInputError } from '../errors.js';
import { crc32, decodeOpBatch, encodeOpBatch, MAX_BATCH_OPS } from './codec.js';
import { isNodeId, isReplicaId, parseTimestamp } from './validate.js';
import type { Move, OpBatch } from './types.js';

interface Meta {
  name: string;
  inode: string | null;
  mode?: number;
}

function validateMeta(x: unknown): Meta {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new TypeError('meta must be an object');
  const { name, inode, mode } = x as Record<string, unknown>;
  if (typeof name !== 'string') throw new TypeError('name must be a string');
  if (inode !== null && typeof inode !== 'string') throw new TypeError('inode must be a string or null');
  if (mode !== undefined && (typeof mode !== 'number' || !Number.isInteger(mode)))
    throw new TypeError('bad mode');
  return mode === undefined ? { name, inode } : { name, inode, mode };
}

const idChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-';
const replicaArb = fc.string({ unit: fc.constantFrom(...idChars), minLength: 1, maxLength: 32 });
const nodeArb = fc.oneof(
  fc.constantFrom('root', 'trash', 'inodes'),
  fc.string({
    unit: fc.constantFrom(...idChars, '.', ':', '~', '+', '=', '@'),
    minLength: 1,
    maxLength: 128,
  }),
);
const metaArb: fc.Arbitrary<Meta> = fc.oneof(
  fc.record({ name: fc.string(), inode: fc.option(nodeArb, { nil: null }) }),
  fc.record({
    name: fc.string({ unit: 'grapheme' }),
    inode: fc.constant(null),
    mode: fc.integer({ min: 0, max: 0o7777 }),
  }),
);
const moveArb: fc.Arbitrary<Move<Meta>> = fc.record({
  ts: fc.record({ counter: fc.oneof(fc.nat(1000), fc.maxSafeNat()), replica: replicaArb }),
  parent: nodeArb,
  meta: metaArb,
  child: nodeArb,
});
// structuredClone: fast-check builds null-prototype records; decoded batches are plain objects.
const batchArb: fc.Arbitrary<OpBatch<Meta>> = fc
  .record({
    version: fc.constant(1 as const),
    replica: replicaArb,
    seq: fc.oneof(fc.nat(), fc.maxSafeNat()),
    ops: fc.array(moveArb, { maxLength: 30 }),
  })
  .map((b) => structuredClone(b));

function decode(bytes: Uint8Array): OpBatch<Meta> {
  return decodeOpBatch(bytes, validateMeta);
}

/** A well-framed batch around an arbitrary payload: the checksum is right, so only validation can reject it. */
function frame(payload: string, version = 1): Uint8Array {
  const body = new TextEncoder().encode(payload);
  const out = new Uint8Array(13 + body.length);
  out.set([0x41, 0x52, 0x42, 0x4f, version]);
  const view = new DataView(out.buffer);
  view.setUint32(5, body.length);
  view.setUint32(9, crc32(body));
  out.set(body, 13);
  return out;
}

function assertBad(fn: () => unknown, why: string): void {
  assert.throws(
    fn,
    (err: unknown) => err instanceof InvalidInputError && err.code === 'ARBOR_BAD_BATCH',
    `expected ARBOR_BAD_BATCH: ${why}`,
  );
}

test('encode then decode returns the same batch', () => {
  fc.assert(
    fc.property(batchArb, (batch) => {
      assert.deepEqual(decode(encodeOpBatch(batch)), batch);
    }),
    { numRuns: 500 },
  );
});

test('random byte damage, truncation or extension is either harmless or rejected with ARBOR_BAD_BATCH', () => {
  const damage = fc.oneof(
    fc
      .array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 4,
      })
      .map((edits) => (b: Uint8Array) => {
        const c = b.slice();
        for (const e of edits) c[e.at % c.length] = e.value;
        return c;
      }),
    fc.nat().map((n) => (b: Uint8Array) => b.slice(0, n % b.length)),
    fc.uint8Array({ minLength: 1, maxLength: 8 }).map((extra) => (b: Uint8Array) => {
      const c = new Uint8Array(b.length + extra.length);
      c.set(b);
      c.set(extra, b.length);
      return c;
    }),
  );
  let rejected = 0;
  fc.assert(
    fc.property(batchArb, damage, (batch, hurt) => {
      const bytes = encodeOpBatch(batch);
      const damaged = hurt(bytes);
      let decoded: OpBatch<Meta>;
      try {
        decoded = decode(damaged);
      } catch (err) {
        assert.ok(err instanceof InvalidInputError, `threw ${String(err)}`);
        assert.equal(err.code, 'ARBOR_BAD_BATCH');
        rejected++;
        return;
      }
      assert.deepEqual(decoded, batch, 'decoded a batch that differs from the original without an error');
    }),
    { numRuns: 1000 },
  );
  assert.ok(rejected > 900, `only ${rejected} of 1000 damaged batches were rejected`);
});

test('hostile but well-framed payloads are rejected', () => {
  const op = (fields: string): string => `["A",0,["A","root","x"],[${fields}]]`;
  const meta = '{"name":"x","inode":null}';
  assert.deepEqual(decode(frame(op(`1,0,1,2,${meta}`))).ops[0]?.child, 'x', 'the control payload is valid');
  const cases: Record<string, Uint8Array> = {
    'unknown version': frame(op(`1,0,1,2,${meta}`), 2),
    'not JSON': frame('{'),
    'not an array': frame('{"replica":"A"}'),
    'extra field': frame(`["A",0,[],[],1]`),
    'bad replica': frame(`["A B",0,[],[]]`),
    'replica too long': frame(`["${'a'.repeat(33)}",0,[],[]]`),
    'negative seq': frame(`["A",-1,[],[]]`),
    'fractional seq': frame(`["A",1.5,[],[]]`),
    'seq beyond 2^53': frame(`["A",9007199254740993,[],[]]`),
    'string seq': frame(`["A","0",[],[]]`),
    'ops not an array': frame(`["A",0,[],{}]`),
    'ops length not a multiple of 5': frame(op(`1,0,1,2`)),
    'fractional counter': frame(op(`1.5,0,1,2,${meta}`)),
    'negative counter': frame(op(`-1,0,1,2,${meta}`)),
    'huge counter': frame(op(`1e300,0,1,2,${meta}`)),
    'string counter': frame(op(`"1",0,1,2,${meta}`)),
    'index out of range': frame(op(`1,0,1,3,${meta}`)),
    'negative index': frame(op(`1,0,-1,2,${meta}`)),
    'fractional index': frame(op(`1,0,0.5,2,${meta}`)),
    'index as string': frame(op(`1,0,"1",2,${meta}`)),
    'replica index pointing at a bad replica id': frame(`["A",0,["a.b","root","x"],[1,0,1,2,${meta}]]`),
    'bad node id in table': frame(`["A",0,["A","root","x/y"],[1,0,1,2,${meta}]]`),
    'empty id in table': frame(`["A",0,["A","root",""],[1,0,1,2,${meta}]]`),
    'non-string in table': frame(`["A",0,["A","root",7],[1,0,1,2,${meta}]]`),
    'duplicate table entry': frame(`["A",0,["A","root","root"],[1,0,1,2,${meta}]]`),
    'table larger than needed': frame(`["A",0,["A","b","c","d"],[1,0,1,2,${meta}]]`),
    'meta rejected by the validator': frame(op(`1,0,1,2,{"name":3}`)),
    'meta null': frame(op(`1,0,1,2,null`)),
    'deeply nested meta': frame(op(`1,0,1,2,${'['.repeat(100000)}${']'.repeat(100000)}`)),
    'absurd op count': frame(
      `["A",0,["A","root","x"],[${Array(MAX_BATCH_OPS * 5 + 5)
        .fill(0)
        .join(',')}]]`,
    ),
    'trailing garbage after the frame': (() => {
      const b = frame(op(`1,0,1,2,${meta}`));
      const c = new Uint8Array(b.length + 1);
      c.set(b);
      return c;
    })(),
    'invalid UTF-8': (() => {
      const b = frame('["A",0,[],[]]');
      b[14] = 0xff; // inside the replica string
      new DataView(b.buffer).setUint32(9, crc32(b, 13));
      return b;
    })(),
    empty: new Uint8Array(0),
    'header only': frame('').subarray(0, 12),
  };
  for (const [why, bytes] of Object.entries(cases)) assertBad(() => decode(bytes), why);
  assertBad(
    () => decodeOpBatch('not bytes' as unknown as Uint8Array, validateMeta),
    'a string instead of bytes',
  );
});

test('encode refuses batches the decoder would reject', () => {
  const good: Move<Meta> = {
    ts: { counter: 1, replica: 'A' },
    parent: 'root',
    meta: { name: 'x', inode: null },
    child: 'x',
  };
  const batch = (ops: Move<Meta>[], extra: Partial<OpBatch<Meta>> = {}): OpBatch<Meta> => ({
    version: 1,
    replica: 'A',
    seq: 0,
    ops,
    ...extra,
  });
  assert.ok(encodeOpBatch(batch([good])).length < 80, 'one op stays small');
  assertBad(() => encodeOpBatch(batch([{ ...good, child: 'a b' }])), 'bad child');
  assertBad(() => encodeOpBatch(batch([{ ...good, ts: { counter: 1.5, replica: 'A' } }])), 'bad counter');
  assertBad(() => encodeOpBatch(batch([], { seq: -1 })), 'bad seq');
  assertBad(() => encodeOpBatch(batch([], { replica: '' })), 'bad replica');
  assertBad(() => encodeOpBatch({ ...batch([]), version: 2 as 1 }), 'bad version');
});

test('validators', () => {
  assert.ok(isReplicaId('laptop-1_A'));
  assert.ok(!isReplicaId('a'.repeat(33)) && !isReplicaId('') && !isReplicaId('a.b') && !isReplicaId(3));
  assert.ok(isNodeId('root') && isNodeId('A.1z') && isNodeId('x'.repeat(128)));
  assert.ok(!isNodeId('x'.repeat(129)) && !isNodeId('a/b') && !isNodeId('a b') && !isNodeId(null));
  assert.deepEqual(parseTimestamp({ counter: 3, replica: 'A' }), { counter: 3, replica: 'A' });
  for (const bad of [
    null,
    [],
    { counter: 3 },
    { counter: -1, replica: 'A' },
    { counter: 1, replica: 'A', x: 1 },
    'x',
  ]) {
    assertBad(() => parseTimestamp(bad), JSON.stringify(bad));
  }
});
