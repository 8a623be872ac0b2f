// The past tree and restore of removed paths, on two replicas with controlled clocks: what was at a path at a time is
// found whichever replica removed or renamed it, comes back with the content current then, and the result converges.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openArbor, type Arbor } from '../index.js';
import { restorePathAt } from './restore.js';
import { tempDir, rejectsCode } from './testing/helpers.js';
import { MemChunkStore } from './testing/mem-store.js';

const SEC = 1_000_000_000n;

describe('restore of removed paths', () => {
  const t = tempDir('arbor-restore-');
  after(() => t.cleanup());

  it('finds what was at a path then (removed or renamed, by either replica) and brings it back', async () => {
    let now = 1_000n * SEC;
    const clock = (): bigint => now;
    const store = new MemChunkStore();
    const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A', now: clock });
    const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B', now: clock });
    const exchange = (): void => {
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as Array<[Arbor, Arbor]>) {
        for (const batch of from.tree.localOpsSince(0)) to.tree.applyRemote(batch);
      }
    };
    try {
      await a.mkdir('/p');
      await a.mkdir('/p/q');
      await a.writeFile('/p/q/f', 'v1');
      await a.writeFile('/p/g', 'g1');
      await a.symlink('q/f', '/p/s');
      await a.setxattr('/p/g', 'user.k', 'x');
      now += 10n * SEC;
      await a.writeFile('/p/q/f', 'v2');
      exchange();
      now += 10n * SEC;
      const then = now; // state: /p/q/f = v2, /p/g, /p/s
      now += 10n * SEC;
      await b.writeFile('/p/q/f', 'v3 by b');
      now += 10n * SEC;
      await b.rename('/p/g', '/moved-g');
      await b.rm('/p', { recursive: true });
      exchange();
      assert.equal(await a.exists('/p'), false);

      // Before anything existed: nothing to restore.
      assert.throws(() => restorePathAt(a.tree, '/p', 999n * SEC), /nothing was at \/p at /);
      assert.throws(() => restorePathAt(a.tree, '/nope', then), /nothing was at \/nope/);
      const r = restorePathAt(a.tree, '/p', then);
      assert.deepEqual(r, { created: 5, reverted: 0, skipped: [] });
      assert.equal(await a.readFile('/p/q/f', 'utf8'), 'v2', 'the version current then, not the later one');
      assert.equal(
        await a.readFile('/p/g', 'utf8'),
        'g1',
        'a renamed file is copied back under its old name',
      );
      assert.equal(await a.readlink('/p/s'), 'q/f');
      assert.equal((await a.getxattr('/p/g', 'user.k')).toString(), 'x');
      assert.equal(await a.readFile('/moved-g', 'utf8'), 'g1', 'the renamed original stays');
      // Restoring again: nothing left to bring back.
      assert.deepEqual(restorePathAt(a.tree, '/p', then), { created: 0, reverted: 0, skipped: [] });
      // A file that exists now is reverted in place; one elsewhere with --to.
      now += 10n * SEC;
      await a.writeFile('/moved-g', 'g2');
      assert.deepEqual(restorePathAt(a.tree, '/moved-g', now - 5n * SEC), {
        created: 0,
        reverted: 1,
        skipped: [],
      });
      assert.equal(await a.readFile('/moved-g', 'utf8'), 'g1');
      restorePathAt(a.tree, '/p/q', then, '/copy');
      assert.equal(await a.readFile('/copy/f', 'utf8'), 'v2');
      assert.throws(() => restorePathAt(a.tree, '/p/q/f', then, '/moved-g'), /\/moved-g exists now/);
      await rejectsCode(async () => restorePathAt(a.tree, '/p/q/f', then, '/none/f'), 'ENOENT');
      // The other replica converges on the restored tree.
      exchange();
      assert.deepEqual([...b.tree.snapshot().keys()].sort(), [...a.tree.snapshot().keys()].sort());
      assert.equal(await b.readFile('/p/q/f', 'utf8'), 'v2');
      a.tree.verify();
      b.tree.verify();
    } finally {
      await a.close();
      await b.close();
    }
  });
});
