// Readdir cookies: positive, below 2^48 + 3, never the reserved 0..2 (a negative cookie once restarted listings).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkName, nameCookie } from './names.js';

test('nameCookie is an integer in [3, 2^48 + 3) for any name (property)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 255 }), (name) => {
      const c = nameCookie(name);
      assert.ok(Number.isSafeInteger(c), `not an integer: ${c}`);
      assert.ok(c >= 3 && c < 2 ** 48 + 3, `out of range: ${c} for ${JSON.stringify(name)}`);
    }),
    { numRuns: 2000 },
  );
});

test('nameCookie of the name that once hashed negative is positive, and names rarely collide', () => {
  assert.ok(nameCookie('entry-30-' + 'x'.repeat(30)) >= 3);
  const seen = new Set<number>();
  for (let i = 0; i < 20000; i++) seen.add(nameCookie(`file-${i}.txt`));
  assert.equal(seen.size, 20000);
});

test('checkName: ENOENT, ENAMETOOLONG (bytes), EINVAL for / and NUL, EILSEQ for strings UTF-8 cannot carry', () => {
  const code = (name: string): string | undefined => {
    try {
      checkName(name);
      return undefined;
    } catch (err) {
      return (err as { code: string }).code;
    }
  };
  assert.equal(code(''), 'ENOENT');
  assert.equal(code('é'.repeat(128)), 'ENAMETOOLONG');
  assert.equal(code('é'.repeat(127) + 'x'), undefined);
  assert.equal(code('a/b'), 'EINVAL');
  assert.equal(code('a\0b'), 'EINVAL');
  assert.equal(code('lone \ud800'), 'EILSEQ');
  assert.equal(code('\udfff tail'), 'EILSEQ');
  assert.equal(code('🌳 e\u0301 日本'), undefined);
  // Property: a name passes exactly when it survives UTF-8 and is within the other rules.
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (name) => {
      const roundTrips = Buffer.from(name, 'utf8').toString('utf8') === name;
      const plain = name.length > 0 && !name.includes('/') && !name.includes('\0');
      assert.equal(code(name) === undefined, plain && roundTrips && Buffer.byteLength(name) <= 255);
    }),
    { numRuns: 2000 },
  );
});
