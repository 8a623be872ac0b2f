// Tests for MemoryChunkStore: the ChunkStore contract with the real chunker and keyed ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryChunkStore } from './memory-store.js';
import { ChunkCorruptError } from '../errors.js';
import { DEFAULT_CHUNKING } from './chunker.js';

test('memory store: split/put/get round trip, dedup, errors for unknown refs', async () => {
  const s = new MemoryChunkStore({ chunking: { minSize: 256, avgSize: 1024, maxSize: 4096 } });
  const data = randomBytes(50_000);
  const lens = s.split(data, true);
  assert.equal(
    lens.reduce((a, b) => a + b, 0),
    data.length,
  );
  const refs = [];
  let p = 0;
  for (const l of lens) {
    refs.push(await s.put(data.subarray(p, p + l)));
    p += l;
  }
  const back = Buffer.concat(await Promise.all(refs.map((r) => s.get(r))));
  assert.equal(Buffer.compare(back, data), 0);
  const again = await s.put(data.subarray(0, lens[0]));
  assert.deepEqual(again, refs[0]);
  assert.equal(s.size, new Set(refs.map((r) => r.id)).size);
  await assert.rejects(s.get({ id: 'a'.repeat(64), size: 1 }), ChunkCorruptError);
  await assert.rejects(s.get({ id: refs[0]!.id, size: refs[0]!.size + 1 }), ChunkCorruptError);
  // The returned bytes are copies: mutating them does not change the store.
  const g = await s.get(refs[0]!);
  g[0] = g[0]! ^ 1;
  assert.equal(Buffer.compare(await s.get(refs[0]!), data.subarray(0, lens[0])), 0);
  assert.deepEqual(new MemoryChunkStore().chunking, DEFAULT_CHUNKING);
  // Same secret, same ids: replicas agree.
  const secret = randomBytes(32);
  const a = await new MemoryChunkStore({ secret }).put(data);
  const b = await new MemoryChunkStore({ secret }).put(data);
  assert.equal(a.id, b.id);
});
