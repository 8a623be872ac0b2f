// One ChunkStore contract, run against every implementation (memory and cached), so tree/ can rely on either.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { CachedChunkStore, MemoryChunkStore, type ChunkStore } from './index.js';
import { MemoryRemote } from './testing/memory-remote.js';
import { ChunkCorruptError } from '../errors.js';

const CHUNKING = { minSize: 256, avgSize: 1024, maxSize: 4096 };
const dirs: string[] = [];
/** Cached stores keep uploading after a test ends: close them (and their databases) before deleting their dirs. */
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers) await c();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function chunkStoreContract(name: string, make: (secret: Uint8Array) => Promise<ChunkStore>): void {
  describe(`ChunkStore contract: ${name}`, () => {
    test('any file splits, stores and reads back byte for byte; refs are deterministic per secret', async () => {
      const secret = randomBytes(32);
      const s = await make(secret);
      const s2 = await make(secret);
      assert.deepEqual(s.chunking, CHUNKING);
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 20_000 }), async (data) => {
          const lens = s.split(data, true);
          const refs = [];
          let p = 0;
          for (const l of lens) {
            refs.push(await s.put(data.subarray(p, p + l)));
            p += l;
          }
          assert.equal(p, data.length);
          s.prefetch?.(refs);
          const back = Buffer.concat(await Promise.all(refs.map((r) => s.get(r))));
          assert.equal(Buffer.compare(back, data), 0);
          for (const [i, r] of refs.entries()) {
            assert.equal(r.size, lens[i]);
            assert.match(r.id, /^[0-9a-f]{64}$/);
          }
          if (lens.length) assert.deepEqual(await s2.put(data.subarray(0, lens[0])), refs[0]);
        }),
        { numRuns: 30 },
      );
    });

    test('an unknown or mis-sized ref is ChunkCorruptError (EIO), never bytes', async () => {
      const s = await make(randomBytes(32));
      const ref = await s.put(randomBytes(1000));
      await assert.rejects(s.get({ id: ref.id, size: 999 }), ChunkCorruptError);
      await assert.rejects(s.get({ id: 'b'.repeat(64), size: 10 }), ChunkCorruptError);
    });
  });
}

chunkStoreContract(
  'MemoryChunkStore',
  async (secret) => new MemoryChunkStore({ chunking: CHUNKING, secret }),
);

const remotes = new Map<string, MemoryRemote>();
chunkStoreContract('CachedChunkStore', async (secret) => {
  const key = Buffer.from(secret).toString('hex');
  const remote = remotes.get(key) ?? new MemoryRemote();
  remotes.set(key, remote);
  const dir = await mkdtemp(join(tmpdir(), 'arbor-contract-'));
  dirs.push(dir);
  const db = new Database(join(dir, 'state.sqlite3'));
  const store = await CachedChunkStore.open({
    dir,
    db,
    remote,
    secret,
    chunking: CHUNKING,
    cacheLimitBytes: 64 * 1024,
    fsync: false,
    logger: () => undefined,
  });
  closers.push(async () => {
    await store.flushUploads();
    await store.close();
    db.close();
  });
  return store;
});
