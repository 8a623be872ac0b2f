// The native addon (native/accel) against the JavaScript paths: both must give the same cut points and the same
// sealed bytes, so replicas with and without the addon interoperate. Skipped where the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { accel, type GcmImpl } from './accel.js';
import { Chunker, DEFAULT_CHUNKING } from './chunker.js';
import { GCM_TAG, gcmOpen, gcmSealInto } from './gcm.js';

const skip = accel === undefined ? 'native/accel is not built' : false;

test('native and JavaScript gear scans cut at the same points', { skip }, () => {
  const params = fc.constantFrom(
    { minSize: 64, avgSize: 256, maxSize: 1024 },
    { minSize: 256, avgSize: 1024, maxSize: 4096 },
    { minSize: 100, avgSize: 128, maxSize: 129 },
    { minSize: 1000, avgSize: 1024, maxSize: 50_000 },
  );
  fc.assert(
    fc.property(
      params,
      fc.uint8Array({ maxLength: 30_000 }),
      fc.nat(7),
      fc.boolean(),
      (p, bytes, shift, final) => {
        // An unaligned view too: the JavaScript scan reads aligned words, the native one does not care.
        const buf = new Uint8Array(bytes.length + shift);
        buf.set(bytes, shift);
        const data = buf.subarray(shift);
        const js = new Chunker(p, 'js').split(data, final);
        const native = new Chunker(p, 'native').split(data, final);
        assert.deepEqual(native, js);
      },
    ),
    { numRuns: 300 },
  );
  // Low-entropy inputs (runs of one byte) reach maxSize cuts and long scans without a cut.
  const runs = new Uint8Array(40_000).fill(7);
  runs.fill(200, 9000, 21_000);
  for (const p of [{ minSize: 256, avgSize: 1024, maxSize: 4096 }, DEFAULT_CHUNKING]) {
    assert.deepEqual(new Chunker(p, 'native').split(runs, true), new Chunker(p, 'js').split(runs, true));
  }
  // Parameters whose scan ranges span many 16 KiB lane groups, with cuts every few KiB: hits in every lane, several
  // lanes hitting in one group, and cuts right at lane and group boundaries.
  for (const p of [
    { minSize: 64, avgSize: 4096, maxSize: 1 << 20 },
    { minSize: 64, avgSize: 65536, maxSize: 1 << 20 },
    { minSize: 20_000, avgSize: 32768, maxSize: 300_000 },
  ]) {
    for (let seed = 1; seed <= 4; seed++) {
      const data = randomBytes(1_500_000 + seed);
      const sub = data.subarray(seed);
      assert.deepEqual(new Chunker(p, 'native').split(sub, true), new Chunker(p, 'js').split(sub, true));
      assert.deepEqual(new Chunker(p, 'native').split(sub, false), new Chunker(p, 'js').split(sub, false));
    }
  }
  const big = randomBytes(12 << 20);
  assert.deepEqual(
    new Chunker(DEFAULT_CHUNKING, 'native').split(big, true),
    new Chunker(DEFAULT_CHUNKING, 'js').split(big, true),
  );
});

test('native and node AES-256-GCM give the same bytes and open each other', { skip }, () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.oneof(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ minLength: 100_000, maxLength: 200_000 })),
      (key, nonce, aad, plain) => {
        const a = new Uint8Array(plain.length + GCM_TAG);
        const b = new Uint8Array(plain.length + GCM_TAG);
        gcmSealInto(key, nonce, aad, plain, a, 'native');
        gcmSealInto(key, nonce, aad, plain, b, 'node');
        assert.deepEqual(a, b);
        assert.deepEqual(new Uint8Array(gcmOpen(key, nonce, aad, a, 'node')!), plain);
        assert.deepEqual(new Uint8Array(gcmOpen(key, nonce, aad, b, 'native')!), plain);
        if (a.length > 0) {
          a[a.length - 1]! ^= 1; // a flipped tag bit
          assert.equal(gcmOpen(key, nonce, aad, a, 'native'), undefined);
          assert.equal(gcmOpen(key, nonce, aad, a, 'node'), undefined);
          a[a.length - 1]! ^= 1;
          a[0]! ^= 0x80; // a flipped ciphertext (or tag, when empty) bit
          assert.equal(gcmOpen(key, nonce, aad, a, 'native'), undefined);
          assert.equal(gcmOpen(key, nonce, aad, a, 'node'), undefined);
        }
        assert.equal(gcmOpen(key, nonce, Uint8Array.of(...aad, 1), b, 'native'), undefined);
      },
    ),
    { numRuns: 60 },
  );
  assert.equal(
    gcmOpen(randomBytes(32), randomBytes(12), new Uint8Array(0), new Uint8Array(5), 'native'),
    undefined,
  );
  assert.throws(
    () =>
      accel!.gcm(
        true,
        randomBytes(31),
        randomBytes(12),
        new Uint8Array(0),
        new Uint8Array(1),
        new Uint8Array(17),
      ),
    RangeError,
  );
});

/** node:crypto's AES-256-GCM: ciphertext ‖ tag. */
function nodeSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** n deterministic pseudo-random bytes: the AES-256-CTR keystream under a key made from `seed`. */
function seeded(seed: number, n: number): Buffer {
  const key = Buffer.alloc(32);
  key.writeUInt32LE(seed);
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** Whether this addon can run `impl` here ('vaes-avx512' throws where the CPU or OS lacks it). */
function runs(impl: GcmImpl): boolean {
  const a = accel!;
  if (a.gcmImpl === undefined) return false; // built before the choice existed
  try {
    a.gcm(
      true,
      new Uint8Array(32),
      new Uint8Array(12),
      new Uint8Array(0),
      new Uint8Array(0),
      new Uint8Array(16),
      impl,
    );
    return true;
  } catch {
    return false;
  }
}

/**
 * One case against node:crypto: seal out of place and in place (src and out one buffer), both at an odd byte offset;
 * open both ways; then a flipped bit in the ciphertext, the tag or the AAD must be refused and leave zeros, never
 * unauthenticated plaintext.
 */
function checkGcm(
  impl: GcmImpl,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plain: Uint8Array,
): void {
  const a = accel!;
  const n = plain.length;
  const want = nodeSeal(key, nonce, aad, plain);
  const shifted = (len: number): Uint8Array => new Uint8Array(len + 3).subarray(3);
  const sealed = shifted(n + GCM_TAG);
  assert.equal(a.gcm(true, key, nonce, aad, plain, sealed, impl), true);
  assert.equal(Buffer.compare(sealed, want), 0);
  const inPlace = shifted(n + GCM_TAG);
  inPlace.set(plain);
  a.gcm(true, key, nonce, aad, inPlace.subarray(0, n), inPlace, impl);
  assert.equal(Buffer.compare(inPlace, want), 0);

  const opened = shifted(n);
  assert.equal(a.gcm(false, key, nonce, aad, sealed, opened, impl), true);
  assert.equal(Buffer.compare(opened, plain), 0);
  assert.equal(a.gcm(false, key, nonce, aad, inPlace, inPlace.subarray(0, n), impl), true);
  assert.equal(Buffer.compare(inPlace.subarray(0, n), plain), 0);

  const zeros = new Uint8Array(n);
  const flips = [n + GCM_TAG - 1, n + (n % GCM_TAG), ...(n > 0 ? [0, n - 1, n >> 1] : [])];
  for (const at of flips) {
    const bad = Uint8Array.from(want);
    bad[at]! ^= 1 << (at & 7);
    const out = new Uint8Array(n).fill(0xa5);
    assert.equal(a.gcm(false, key, nonce, aad, bad, out, impl), false, `flipped byte ${at}`);
    assert.equal(Buffer.compare(out, zeros), 0);
    assert.equal(a.gcm(false, key, nonce, aad, bad, bad.subarray(0, n), impl), false, `in place, byte ${at}`);
    assert.equal(Buffer.compare(bad.subarray(0, n), zeros), 0);
  }
  const otherAad =
    aad.length > 0 ? Uint8Array.from(aad, (b, i) => (i === 0 ? b ^ 0x40 : b)) : Uint8Array.of(0);
  assert.equal(a.gcm(false, key, nonce, otherAad, want, new Uint8Array(n), impl), false);
  const otherNonce = Uint8Array.from(nonce, (b, i) => (i === 11 ? b ^ 1 : b));
  assert.equal(a.gcm(false, key, otherNonce, aad, want, new Uint8Array(n), impl), false);
}

for (const impl of ['vaes-avx512', 'openssl'] as const) {
  test(
    `native AES-256-GCM (${impl}) matches node:crypto: any length, AAD, in place or not; tampering refused`,
    { skip: skip || (!runs(impl) && `this CPU or addon build has no ${impl}`) },
    () => {
      const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
      fc.assert(
        fc.property(
          bytes(32, 32),
          bytes(12, 12),
          // arbor's 1-byte header, none, a few blocks, and more than one 16-block (256-byte) step
          fc.oneof(bytes(1, 1), bytes(0, 40), bytes(200, 700)),
          // every tail length around the 16-byte block and 256-byte step, and up to ~70 KiB; as a length and a
          // seed, so a failure shrinks to the shortest failing length quickly
          fc.oneof(fc.nat(600), fc.nat(70_000)),
          fc.nat(),
          (key, nonce, aad, n, seed) => checkGcm(impl, key, nonce, aad, seeded(seed, n)),
        ),
        { numRuns: 250 },
      );
      for (const n of [(4 << 20) + 33, 3 << 20, (1 << 20) - 1]) {
        checkGcm(impl, randomBytes(32), randomBytes(12), randomBytes(1), randomBytes(n));
      }
    },
  );
}

test('native GCM reports its implementation and refuses unknown ones', { skip }, (t) => {
  const a = accel!;
  if (a.gcmImpl === undefined) return t.skip('addon built before gcmImpl');
  assert.ok(a.gcmImpl === 'vaes-avx512' || a.gcmImpl === 'openssl');
  if (process.env.ARBOR_GCM_IMPL === 'openssl') assert.equal(a.gcmImpl, 'openssl');
  else assert.equal(a.gcmImpl, runs('vaes-avx512') ? 'vaes-avx512' : 'openssl');
  const args = [
    true,
    randomBytes(32),
    randomBytes(12),
    new Uint8Array(0),
    new Uint8Array(1),
    new Uint8Array(17),
  ];
  const gcm = a.gcm as (...xs: unknown[]) => boolean;
  assert.throws(() => gcm(...args, 'aes-ni'), TypeError);
  assert.throws(() => gcm(...args, 7), TypeError);
});

test(
  'native copy into shared memory: exact bytes at the offset, neighbours untouched, out of range refused',
  { skip },
  () => {
    const a = accel!;
    const dst = Buffer.from(new SharedArrayBuffer(3 << 20)).fill(0xee);
    const src = Buffer.from(Array.from({ length: (1 << 20) + 7 }, (_, i) => (i * 131) & 0xff));
    a.copy(dst, 12345, src);
    assert.equal(Buffer.compare(dst.subarray(12345, 12345 + src.length), src), 0);
    assert.equal(dst[12344], 0xee);
    assert.equal(dst[12345 + src.length], 0xee);
    a.copy(dst.subarray(100, 200), 0, src.subarray(0, 100)); // a view: offsets are relative to it
    assert.equal(Buffer.compare(dst.subarray(100, 200), src.subarray(0, 100)), 0);
    a.copy(dst, dst.length, new Uint8Array(0));
    assert.throws(() => a.copy(dst, dst.length - 10, src), RangeError);
    assert.throws(() => a.copy(dst, -1, src.subarray(0, 1)), RangeError);
    assert.throws(() => a.copy(dst, 1.5, src.subarray(0, 1)), RangeError);
  },
);

test(
  'markTopDir: a directory keeps working and its subdirectories are made as usual; no directory, false',
  {
    skip: skip || (accel?.markTopDir === undefined ? 'addon built before markTopDir' : false),
  },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'arbor-topdir-'));
    try {
      const first = accel!.markTopDir!(dir);
      assert.equal(typeof first, 'boolean'); // false on filesystems without the flag (tmpfs, xfs, ...)
      assert.equal(accel!.markTopDir!(dir), first); // already set: nothing to change, same answer
      mkdirSync(join(dir, 'ab'));
      writeFileSync(join(dir, 'ab', 'f'), 'x');
      assert.equal(readFileSync(join(dir, 'ab', 'f'), 'utf8'), 'x');
      assert.equal(accel!.markTopDir!(join(dir, 'missing')), false);
      assert.equal(accel!.markTopDir!(join(dir, 'ab', 'f')), false); // not a directory
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'writeFileDirect: every size and alignment reads back whole, mode 0600, replaces a file; errors carry the errno',
  { skip: skip || (accel?.writeFileDirect === undefined ? 'addon built before writeFileDirect' : false) },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'arbor-direct-'));
    try {
      const sizes = [0, 1, 511, 4095, 4096, 4097, 8192, 65_536 + 3, (1 << 20) + 37, 4 << 20];
      for (const size of sizes) {
        for (const shift of [0, 1, 16]) {
          // An unaligned view (shift) goes through the bounce buffer; shared memory as the fetch pool hands it over.
          const backing = new Uint8Array(new SharedArrayBuffer(size + shift));
          backing.set(randomBytes(size), shift);
          const bytes = backing.subarray(shift);
          const file = join(dir, `f-${size}-${shift}`);
          writeFileSync(file, 'stale bytes, longer than some of the sizes written over them: they must go');
          const direct = accel!.writeFileDirect!(file, bytes);
          assert.equal(typeof direct, 'boolean');
          if (size < 4096) assert.equal(direct, false); // nothing whole to write directly
          assert.deepEqual(readFileSync(file), Buffer.from(bytes), `size ${size} shift ${shift}`);
        }
      }
      const fresh = join(dir, 'fresh');
      accel!.writeFileDirect!(fresh, randomBytes(10_000));
      assert.equal(statSync(fresh).mode & 0o777, 0o600);
      assert.throws(
        () => accel!.writeFileDirect!(join(dir, 'missing', 'f'), randomBytes(10)),
        (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && err.message.includes('missing'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'writeFileDirectAsync: copies the bytes before it returns, writes them whole, reports errors with their errno',
  {
    skip:
      skip || (accel?.writeFileDirectAsync === undefined ? 'addon built before writeFileDirectAsync' : false),
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arbor-direct-async-'));
    const write = (file: string, bytes: Uint8Array): Promise<boolean> =>
      new Promise((resolve, reject) =>
        accel!.writeFileDirectAsync!(file, bytes, (err, direct) => (err ? reject(err) : resolve(direct))),
      );
    try {
      // Several at once (the pool hands out and takes back its aligned copies), each changed right after the call.
      const sizes = [0, 1, 4096, 4097, 70_001, (1 << 20) + 5, 3 << 20];
      const originals = sizes.map((n) => randomBytes(n));
      const pending = originals.map((o, i) => {
        const mine = Buffer.from(o);
        const p = write(join(dir, `f${i}`), mine.subarray(0));
        mine.fill(0xee); // after the call: the file must still get the original bytes
        return p;
      });
      await Promise.all(pending);
      originals.forEach((o, i) => assert.deepEqual(readFileSync(join(dir, `f${i}`)), o, `size ${o.length}`));
      assert.equal(statSync(join(dir, 'f3')).mode & 0o777, 0o600);
      await assert.rejects(
        write(join(dir, 'missing', 'f'), randomBytes(5000)),
        (err: NodeJS.ErrnoException) => {
          assert.equal(err.code, 'ENOENT');
          return true;
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('CI builds native/accel (a silent JS fallback would halve the pipeline unnoticed)', (t) => {
  if (process.env.CI !== 'true' || process.env.ARBOR_NO_NATIVE === '1')
    return t.skip('only checked under CI=true');
  assert.ok(
    accel !== undefined,
    'native/accel did not build or load (see native/build.mjs output in npm ci)',
  );
});
