// Readdir cookies: positive, below 2^48 + 3, never the reserved 0..2 (a negative cookie once restarted listings).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nameCookie } from './names.js';

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
