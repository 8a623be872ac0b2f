// Tests of FileContent: random writes/truncates against a plain buffer model, bounded dirty memory, chunk reuse.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FileContent } from './content.js';
import { MemChunkStore } from './testing/mem-store.js';

describe('FileContent', () => {
  it('matches a buffer model under random writes, truncates and re-chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ w: fc.nat(20_000), data: fc.uint8Array({ minLength: 1, maxLength: 3000 }) }),
            fc.record({ t: fc.nat(25_000) }),
            fc.record({ flush: fc.constant(true) }),
          ),
          { maxLength: 30 },
        ),
        async (steps) => {
          const store = new MemChunkStore(1024);
          const c = new FileContent(store, [], 0, 8192);
          let model = Buffer.alloc(0);
          for (const s of steps) {
            if ('w' in s) {
              const end = s.w + s.data.length;
              if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)]);
              model.set(s.data, s.w);
              await c.write(s.w, s.data);
            } else if ('t' in s) {
              model =
                s.t <= model.length
                  ? model.subarray(0, s.t)
                  : Buffer.concat([model, Buffer.alloc(s.t - model.length)]);
              c.truncate(s.t);
            } else {
              const refs = await c.rechunk();
              assert.equal(
                refs.reduce((n, r) => n + r.size, 0),
                model.length,
              );
            }
            assert.equal(c.size, model.length);
            assert.ok(c.dirtyBytes <= 8192 + 3000, `dirty ${c.dirtyBytes}`);
          }
          assert.deepEqual(await c.read(0, model.length + 10), model);
          const refs = await c.rechunk();
          const again = new FileContent(store, refs, model.length);
          assert.deepEqual(await again.read(0, model.length), model);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('cuts sequential writes into chunks as they arrive (dirty bytes stay bounded)', async () => {
    const store = new MemChunkStore(4096);
    const c = new FileContent(store, [], 0);
    const piece = Buffer.alloc(1000);
    let maxDirty = 0;
    for (let i = 0; i < 2000; i++) {
      piece.fill(i & 0xff);
      await c.write(i * 1000, piece);
      maxDirty = Math.max(maxDirty, c.dirtyBytes);
    }
    assert.ok(maxDirty <= 3 * 4096, `dirty peaked at ${maxDirty}`);
    assert.ok(store.puts >= 2_000_000 / 4096 - 3, 'chunks were stored while writing');
    const refs = await c.rechunk();
    assert.equal(refs.length, Math.ceil(2_000_000 / 4096));
    assert.equal((await c.read(1_500_000, 1000))[0], 1500 & 0xff);
  });

  it('an overwrite in the middle re-stores only the chunk it touches', async () => {
    const store = new MemChunkStore(1024);
    const c = new FileContent(store, [], 0);
    await c.write(0, Buffer.alloc(10 * 1024, 7));
    const before = await c.rechunk();
    const puts = store.puts;
    await c.write(5000, Buffer.from('hello'));
    const after = await c.rechunk();
    assert.equal(store.puts - puts, 1);
    assert.equal(after.filter((r, i) => r.id !== before[i]!.id).length, 1);
  });
});
