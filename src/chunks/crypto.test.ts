// Tests for keyed ids, convergent chunk encryption, compression choice and sealed objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { FsCrypto, ObjectCorruptError, SEAL_OVERHEAD } from './crypto.js';
import { ChunkCorruptError } from '../errors.js';

const secret = randomBytes(32);
/** Byte equality regardless of Buffer vs Uint8Array. */
const same = (a: Uint8Array, b: Uint8Array, msg?: string): void => assert.equal(Buffer.compare(a, b), 0, msg);
const fsc = new FsCrypto(secret);

test('chunk round trip for any bytes and every compression; equal plaintexts give equal ciphertexts', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 5000 }),
      fc.constantFrom('none', 'deflate', 'brotli'),
      (data, comp) => {
        const id = fsc.chunkId(data);
        assert.match(id, /^[0-9a-f]{64}$/);
        const a = fsc.sealChunk(id, data, comp);
        const b = new FsCrypto(Uint8Array.from(secret)).sealChunk(id, data, comp);
        same(a, b, 'convergent within one filesystem');
        same(fsc.openChunk(id, a, data.length), data);
      },
    ),
    { numRuns: 100 },
  );
});

test('ids are keyed: another secret gives other ids and cannot open the chunk', () => {
  const data = randomBytes(10_000);
  const other = new FsCrypto(randomBytes(32));
  const id = fsc.chunkId(data);
  assert.notEqual(other.chunkId(data), id);
  const sealed = fsc.sealChunk(id, data);
  assert.throws(() => other.openChunk(id, sealed), ChunkCorruptError);
  assert.notEqual(Buffer.compare(other.sealChunk(id, data), sealed), 0);
});

test('compression is used when it pays and skipped (sample check) when it does not', () => {
  const text = Buffer.from('hello arbor, a compressible line of text\n'.repeat(5000));
  const id = fsc.chunkId(text);
  const sealed = fsc.sealChunk(id, text, 'deflate');
  assert.ok(sealed.length < text.length / 5, `compressed ${sealed.length}`);
  assert.equal(sealed[0]! & 0x0f, 1);
  assert.equal(sealed[0]! >> 4, 1, 'format version 1');
  const rnd = randomBytes(200_000);
  const s2 = fsc.sealChunk(fsc.chunkId(rnd), rnd, 'deflate');
  assert.equal(s2.length, rnd.length + SEAL_OVERHEAD);
  assert.equal(s2[0]! & 0x0f, 0);
  const br = fsc.sealChunk(id, text, 'brotli');
  assert.equal(br[0]! & 0x0f, 2);
  same(fsc.openChunk(id, br, text.length), text);
});

test('any tampering, truncation or mismatched id is ChunkCorruptError, never wrong bytes', () => {
  const data = Buffer.from('some chunk content '.repeat(300));
  const id = fsc.chunkId(data);
  for (const comp of ['none', 'deflate'] as const) {
    const sealed = fsc.sealChunk(id, data, comp);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: sealed.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, x) => {
          const bad = Uint8Array.from(sealed);
          bad[at] = bad[at]! ^ x;
          assert.throws(() => fsc.openChunk(id, bad, data.length), ChunkCorruptError);
          // The read paths' open (tag only, in place) catches every flipped bit just the same.
          const inPlace = Uint8Array.from(bad);
          assert.throws(
            () => fsc.openChunk(id, inPlace, data.length, { inPlace: true, checkId: false }),
            ChunkCorruptError,
          );
        },
      ),
      { numRuns: 100 },
    );
    assert.throws(() => fsc.openChunk(id, sealed.subarray(0, sealed.length - 1)), ChunkCorruptError);
    assert.throws(() => fsc.openChunk(id, sealed.subarray(0, 10)), ChunkCorruptError);
    assert.throws(() => fsc.openChunk(id, sealed, data.length + 1), ChunkCorruptError);
    const otherId = fsc.chunkId(Buffer.from('x'));
    assert.throws(() => fsc.openChunk(otherId, sealed), ChunkCorruptError);
    // An object stored under another chunk's name fails the tag alone: the key is derived from the id.
    assert.throws(() => fsc.openChunk(otherId, sealed, undefined, { checkId: false }), ChunkCorruptError);
    same(fsc.openChunk(id, Uint8Array.from(sealed), data.length, { inPlace: true, checkId: false }), data);
  }
  // Only a holder of the secret can seal other bytes under an id; the id check (fsck's) is what catches that.
  const forged = fsc.sealChunk(id, Buffer.from('not the bytes this id names'));
  assert.throws(() => fsc.openChunk(id, forged), /does not match its id/);
  same(fsc.openChunk(id, forged, undefined, { checkId: false }), Buffer.from('not the bytes this id names'));
  const err = (() => {
    try {
      fsc.openChunk(id, new Uint8Array(40));
    } catch (e) {
      return e as ChunkCorruptError;
    }
    return undefined;
  })();
  assert.ok(err);
  assert.equal(err.errno, 5, 'EIO');
  assert.ok(err.message.includes(id));
});

test('sealed objects: round trip, random nonces, bound to kind and name, tamper-evident', () => {
  const body = Buffer.from(
    JSON.stringify({ ops: Array.from({ length: 100 }, (_, i) => ({ i, name: `f${i}` })) }),
  );
  const a = fsc.sealObject('ops', 'ops/r1/0000000000000001', body);
  const b = fsc.sealObject('ops', 'ops/r1/0000000000000001', body);
  assert.notEqual(Buffer.compare(a, b), 0, 'random nonce');
  assert.ok(a.length < body.length, 'compressed');
  same(fsc.openObject('ops', 'ops/r1/0000000000000001', a), body);
  assert.throws(() => fsc.openObject('ops', 'ops/r1/0000000000000002', a), ObjectCorruptError);
  assert.throws(() => fsc.openObject('checkpoint', 'ops/r1/0000000000000001', a), ObjectCorruptError);
  assert.throws(
    () => new FsCrypto(randomBytes(32)).openObject('ops', 'ops/r1/0000000000000001', a),
    ObjectCorruptError,
  );
  const bad = Uint8Array.from(a);
  bad[20] = bad[20]! ^ 1;
  assert.throws(() => fsc.openObject('ops', 'ops/r1/0000000000000001', bad), ObjectCorruptError);
  assert.throws(() => fsc.openObject('ops', 'x', new Uint8Array(5)), ObjectCorruptError);
  const raw = fsc.sealObject('checkpoint', 'c', body, 'none');
  same(fsc.openObject('checkpoint', 'c', raw), body);
});

test('messages never contain key material', () => {
  const hex = Buffer.from(secret).toString('hex');
  try {
    fsc.openObject('ops', 'n', new Uint8Array(100));
  } catch (e) {
    assert.ok(!(e as Error).message.includes(hex));
  }
  assert.ok(!JSON.stringify(fsc).includes(hex));
  assert.throws(() => new FsCrypto(new Uint8Array(16)));
});
