// Soak (ARBOR_LONG=1): many random puts/gets/pins/restarts against a flaky remote; the bound and the bytes must hold.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { CachedChunkStore } from './store.js';
import { MemoryRemote } from './testing/memory-remote.js';
import type { ChunkRef } from './types.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('soak: bound, integrity and upload completeness across restarts with a flaky remote', async () => {
  const LIMIT = 48 * 1024;
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant('put' as const), size: fc.integer({ min: 1, max: 4096 }) }),
          fc.record({ op: fc.constant('get' as const), i: fc.nat() }),
          fc.record({ op: fc.constant('pin' as const), i: fc.nat() }),
          fc.record({ op: fc.constant('unpin' as const) }),
          fc.record({ op: fc.constant('restart' as const) }),
          fc.record({ op: fc.constant('flaky' as const), rate: fc.constantFrom(0, 0.2, 0.6) }),
        ),
        { maxLength: 150 },
      ),
      async (ops) => {
        const dir = await mkdtemp(join(tmpdir(), 'arbor-soak-'));
        dirs.push(dir);
        const db = new Database(join(dir, 'state.sqlite3'));
        const remote = new MemoryRemote();
        const secret = randomBytes(32);
        const open = (): Promise<CachedChunkStore> =>
          CachedChunkStore.open({
            dir,
            db,
            remote,
            secret,
            chunking: { minSize: 256, avgSize: 1024, maxSize: 4096 },
            cacheLimitBytes: LIMIT,
            fsync: false,
            retryBaseMs: 1,
            retryMaxMs: 10,
            logger: () => undefined,
          });
        let s = await open();
        const known: { ref: ChunkRef; data: Uint8Array }[] = [];
        const pinned: ChunkRef[] = [];
        try {
          for (const o of ops) {
            if (o.op === 'put') {
              const data = randomBytes(o.size);
              known.push({ ref: await s.put(data), data });
            } else if (o.op === 'get' && known.length) {
              const k = known[o.i % known.length]!;
              assert.equal(Buffer.compare(await s.get(k.ref), k.data), 0);
            } else if (o.op === 'pin' && known.length && pinned.length < 4) {
              await s.flushUploads();
              const k = known[o.i % known.length]!;
              await s.pin([k.ref]);
              pinned.push(k.ref);
            } else if (o.op === 'unpin' && pinned.length) {
              s.unpin([pinned.pop()!]);
            } else if (o.op === 'restart') {
              await s.close();
              s = await open();
            } else if (o.op === 'flaky') {
              remote.errorRate = o.rate;
            }
            assert.ok(s.stats().residentBytes <= LIMIT);
          }
          remote.errorRate = 0;
          await s.flushUploads();
          for (const k of known) assert.ok(remote.objects.has(`chunks/${k.ref.id.slice(0, 2)}/${k.ref.id}`));
          for (const k of known) assert.equal(Buffer.compare(await s.get(k.ref), k.data), 0);
        } finally {
          await s.close();
          db.close();
        }
      },
    ),
    { numRuns: 40 },
  );
});
