// Tests for chunk id algorithms: the TypeScript BLAKE3 fallback gives the native library's bytes, and both give the
// official keyed-hash test vectors (ids are a format property: every replica, on any platform, must agree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  blake3Implementation,
  blake3KeyedHex,
  chunkIdFunction,
  validateChunkIdAlgorithm,
} from './chunk-id.js';
import { FsCrypto } from './crypto.js';
import { InvalidInputError } from '../errors.js';

/** From the BLAKE3 reference test_vectors.json: key "whats the Elvish word for friend", input i % 251. */
const VECTORS: Array<[number, string]> = [
  [0, '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26'],
  [1, '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b'],
  [1023, 'c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e'],
  [1024, '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4'],
  [1025, '357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69'],
  [3073, '68dede9bef00ba89e43f31a6825f4cf433389fedae75c04ee9f0cf16a427c95a'],
  [8193, '954a2a75420c8d6547e3ba5b98d963e6fa6491addc8c023189cc519821b4a1f5'],
  [31744, 'efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419'],
  [102400, '1c35d1a5811083fd7119f5d5d1ba027b4d01c0c6c49fb6ff2cf75393ea5db4a7'],
];
const KEY = Buffer.from('whats the Elvish word for friend');
const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));

test('keyed BLAKE3: both implementations give the reference vectors', () => {
  for (const [n, hex] of VECTORS) {
    assert.equal(blake3KeyedHex(KEY, pattern(n), 'js'), hex, `js, length ${n}`);
    if (blake3Implementation === 'native') assert.equal(blake3KeyedHex(KEY, pattern(n), 'native'), hex);
  }
});

test('keyed BLAKE3: the TypeScript fallback equals the native library on random keys and inputs', (t) => {
  if (blake3Implementation !== 'native') {
    // Where the prebuilt binary exists (linux-x64, as in CI) a missing one is an install bug, not a skip: it
    // silently costs ~15× in hashing speed.
    const expected =
      process.platform === 'linux' && process.arch === 'x64' && process.env.ARBOR_NO_NATIVE !== '1';
    assert.ok(!expected, 'the native BLAKE3 package did not load on linux-x64 (is it installed? npm ci)');
    t.skip('no native BLAKE3 binary for this platform');
    return;
  }
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.oneof(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ minLength: 60_000, maxLength: 70_000 })),
      (key, data) => {
        assert.equal(blake3KeyedHex(key, data, 'js'), blake3KeyedHex(key, data, 'native'));
      },
    ),
    { numRuns: 60 },
  );
  const big = randomBytes(3 * 1024 * 1024 + 17); // a chunk-sized input: a deep tree, an uneven last subtree
  const key = randomBytes(32);
  assert.equal(blake3KeyedHex(key, big, 'js'), blake3KeyedHex(key, big, 'native'));
});

test('hmac-sha256 ids are unchanged: HMAC under the HKDF "arbor chunk-id v1" key (existing filesystems)', () => {
  const secret = randomBytes(32);
  const data = randomBytes(5000);
  const idKey = Buffer.from(hkdfSync('sha256', secret, 'arbor', 'arbor chunk-id v1', 32));
  const want = createHmac('sha256', idKey).update(data).digest('hex');
  assert.equal(new FsCrypto(secret, 'hmac-sha256').chunkId(data), want);
  assert.equal(chunkIdFunction('hmac-sha256', idKey)(data), want);
});

test('blake3 ids use their own HKDF key and differ from hmac ids; both round trip through seal/open', () => {
  const secret = randomBytes(32);
  const data = randomBytes(70_000);
  const b = new FsCrypto(secret, 'blake3');
  const h = new FsCrypto(secret, 'hmac-sha256');
  const key = Buffer.from(hkdfSync('sha256', secret, 'arbor', 'arbor chunk-id blake3 v1', 32));
  assert.equal(b.chunkId(data), blake3KeyedHex(key, data, 'js'));
  assert.notEqual(b.chunkId(data), h.chunkId(data));
  for (const c of [b, h]) {
    const id = c.chunkId(data);
    assert.deepEqual(Buffer.from(c.openChunk(id, c.sealChunk(id, data), data.length)), data);
  }
  // A replica using the other algorithm cannot accept the chunk: the recomputed id would not match.
  const id = b.chunkId(data);
  assert.throws(() => h.openChunk(id, b.sealChunk(id, data)));
});

test('unknown algorithms are InvalidInputError', () => {
  assert.throws(() => validateChunkIdAlgorithm('md5'), InvalidInputError);
  assert.throws(() => new FsCrypto(randomBytes(32), 'sha1' as never), InvalidInputError);
});
