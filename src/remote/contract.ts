// The one conformance suite every Remote backend passes (dir, SFTP, S3); registers node:test cases, knows no backend.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { InvalidInputError, RemoteNotFoundError } from '../errors.js';
import { mapLimit } from './limit.js';
import type { Remote } from './types.js';

export { mapLimit };

export interface ContractOptions {
  /** Keys written for the pagination case (default 1005: S3 pages hold 1000). */
  readonly manyKeys?: number;
  /** Size of the large-object case (default 8 MiB). */
  readonly largeBytes?: number;
}

const bytes = (s: string) => new TextEncoder().encode(s);

/**
 * Registers the conformance suite for one backend. `makeRemote` returns a Remote over an empty namespace
 * (a fresh directory or prefix); the suite closes it at the end.
 */
export function remoteContract(
  name: string,
  makeRemote: () => Promise<Remote>,
  opts: ContractOptions = {},
): void {
  const manyKeys = opts.manyKeys ?? 1005;
  const largeBytes = opts.largeBytes ?? 8 * 1024 * 1024;

  describe(`Remote contract: ${name}`, () => {
    let r: Remote;
    before(async () => {
      r = await makeRemote();
    });
    after(async () => {
      await r?.close();
    });

    it('putIfAbsent writes once: true, then false, and the first bytes stay', async () => {
      assert.equal(await r.putIfAbsent('once/a', bytes('first')), true);
      assert.equal(await r.putIfAbsent('once/a', bytes('second, longer')), false);
      assert.equal(await r.putIfAbsent('once/a', bytes('')), false);
      assert.deepEqual(await r.get('once/a'), bytes('first'));
    });

    it('concurrent putIfAbsent of one key: exactly one true, and its bytes win', async () => {
      const payloads = Array.from({ length: 8 }, (_, i) => randomBytes(1000 + i));
      const results = await Promise.all(payloads.map((p) => r.putIfAbsent('race/key', p)));
      assert.equal(results.filter(Boolean).length, 1, `results: ${results.join(',')}`);
      const winner = payloads[results.indexOf(true)] as Uint8Array;
      assert.deepEqual(Buffer.from(await r.get('race/key')), Buffer.from(winner));
    });

    it('get returns the whole object and exact ranges, including edge ranges', async () => {
      const data = randomBytes(1000);
      assert.equal(await r.putIfAbsent('range/obj', data), true);
      assert.deepEqual(Buffer.from(await r.get('range/obj')), data);
      const cases: Array<[number, number]> = [
        [0, 0],
        [0, 1],
        [0, 1000],
        [0, 5000],
        [500, 100],
        [999, 1],
        [999, 5],
        [1000, 1],
        [1000, 0],
        [2000, 10],
        [10, 0],
      ];
      for (const [offset, length] of cases) {
        const got = await r.get('range/obj', { offset, length });
        assert.deepEqual(
          Buffer.from(got),
          data.subarray(offset, offset + length),
          `range ${offset}+${length}`,
        );
      }
    });

    it('ranges agree with slicing (property)', async () => {
      const data = randomBytes(4096);
      await r.putIfAbsent('range/prop', data);
      await fc.assert(
        fc.asyncProperty(fc.nat({ max: 5000 }), fc.nat({ max: 5000 }), async (offset, length) => {
          const got = await r.get('range/prop', { offset, length });
          assert.deepEqual(Buffer.from(got), data.subarray(offset, offset + length));
        }),
        { numRuns: 30 },
      );
    });

    it('a missing object: get (whole or range) throws RemoteNotFoundError, exists is false', async () => {
      await assert.rejects(r.get('missing/x'), RemoteNotFoundError);
      await assert.rejects(r.get('missing/x', { offset: 0, length: 10 }), RemoteNotFoundError);
      await assert.rejects(r.get('missing/x', { offset: 0, length: 0 }), RemoteNotFoundError);
      await assert.rejects(r.get('nodir/at/all'), RemoteNotFoundError);
      assert.equal(await r.exists('missing/x'), false);
    });

    it('exists sees written objects only (not directories/prefixes)', async () => {
      await r.putIfAbsent('ex/dir/obj', bytes('x'));
      assert.equal(await r.exists('ex/dir/obj'), true);
      assert.equal(await r.exists('ex/dir'), false);
      assert.equal(await r.exists('ex/dir/ob'), false);
    });

    it('list by prefix: sorted, nested keys, partial segments', async () => {
      const keys = [
        'ls/b',
        'ls/a/2',
        'ls/a/1',
        'ls/a/sub/deep/x',
        'ls/ab',
        'ls/a-b',
        'ls/c/0000000000000002',
        'ls/c/0000000000000001',
      ];
      for (const k of keys) assert.equal(await r.putIfAbsent(k, bytes(k)), true);
      const sorted = [...keys].sort();
      assert.deepEqual(await r.list('ls/'), sorted);
      assert.deepEqual(await r.list('ls'), sorted);
      assert.deepEqual(await r.list('ls/a/'), ['ls/a/1', 'ls/a/2', 'ls/a/sub/deep/x']);
      assert.deepEqual(await r.list('ls/a'), ['ls/a-b', 'ls/a/1', 'ls/a/2', 'ls/a/sub/deep/x', 'ls/ab']);
      assert.deepEqual(await r.list('ls/c/'), ['ls/c/0000000000000001', 'ls/c/0000000000000002']);
      assert.deepEqual(await r.list('ls/zzz'), []);
      assert.deepEqual(await r.list('nothing-here/'), []);
      const all = await r.list('');
      for (const k of keys) assert.ok(all.includes(k), k);
      assert.deepEqual(all, [...all].sort());
    });

    it(`lists more than 1000 keys (${manyKeys}, pagination)`, async () => {
      const keys = Array.from({ length: manyKeys }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      const results = await mapLimit(keys, 32, (k) => r.putIfAbsent(k, bytes(k)));
      assert.ok(results.every(Boolean));
      const listed = await r.list('many/');
      assert.equal(listed.length, manyKeys);
      assert.deepEqual(listed, keys);
    });

    it('delete removes, and deleting again (or a missing key) is not an error', async () => {
      await r.putIfAbsent('del/a', bytes('a'));
      await r.delete('del/a');
      assert.equal(await r.exists('del/a'), false);
      await assert.rejects(r.get('del/a'), RemoteNotFoundError);
      await r.delete('del/a');
      await r.delete('del/never/was');
      assert.deepEqual(await r.list('del/'), []);
      // Write-once applies to live objects: a deleted key can be written again.
      assert.equal(await r.putIfAbsent('del/a', bytes('again')), true);
      assert.deepEqual(await r.get('del/a'), bytes('again'));
    });

    it('empty objects', async () => {
      assert.equal(await r.putIfAbsent('empty/o', new Uint8Array(0)), true);
      assert.equal(await r.exists('empty/o'), true);
      assert.equal((await r.get('empty/o')).length, 0);
      assert.equal((await r.get('empty/o', { offset: 0, length: 10 })).length, 0);
      assert.equal(await r.putIfAbsent('empty/o', bytes('x')), false);
      assert.deepEqual(await r.list('empty/'), ['empty/o']);
    });

    it('binary data: every byte value survives', async () => {
      const data = new Uint8Array(256 * 4).map((_, i) => i % 256);
      assert.equal(await r.putIfAbsent('bin/all', data), true);
      assert.deepEqual(await r.get('bin/all'), data);
      // A view into a larger buffer writes only the view's bytes.
      const big = randomBytes(300);
      const view = big.subarray(100, 200);
      assert.equal(await r.putIfAbsent('bin/view', view), true);
      assert.deepEqual(Buffer.from(await r.get('bin/view')), Buffer.from(view));
    });

    it(`large object (${largeBytes} bytes): whole and ranged reads`, async () => {
      const data = randomBytes(largeBytes);
      assert.equal(await r.putIfAbsent('large/o', data), true);
      const got = await r.get('large/o');
      assert.equal(got.length, data.length);
      assert.ok(Buffer.from(got).equals(data), 'large object bytes differ');
      const mid = Math.floor(largeBytes / 2) - 12345;
      const part = await r.get('large/o', { offset: mid, length: 1024 * 1024 + 7 });
      assert.ok(Buffer.from(part).equals(data.subarray(mid, mid + 1024 * 1024 + 7)));
    });

    it('rejects malformed keys and prefixes with InvalidInputError', async () => {
      for (const k of [
        '',
        '/abs',
        'a//b',
        '../x',
        'a/../b',
        '.hidden',
        'a/.tmp',
        'a/',
        'sp ace',
        'nul\0',
        'a\\b',
      ]) {
        await assert.rejects(r.putIfAbsent(k, bytes('x')), InvalidInputError, JSON.stringify(k));
        await assert.rejects(r.get(k), InvalidInputError, JSON.stringify(k));
      }
      await assert.rejects(r.list('../'), InvalidInputError);
      await assert.rejects(r.get('range/obj', { offset: -1, length: 1 }), InvalidInputError);
      await assert.rejects(r.get('range/obj', { offset: 0, length: 1.5 }), InvalidInputError);
    });

    it('ping answers when the store is reachable', async () => {
      if (!r.ping) return;
      await r.ping();
    });
  });
}
