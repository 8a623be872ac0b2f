// migrateTables: a part's tables come up to its newest version once, later migrations apply on top, and a database
// from a newer arbor is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { migrateTables } from './sqlite-schema.js';

test('migrateTables applies pending migrations once, in order, and refuses a newer schema', () => {
  const db = new Database(':memory:');
  try {
    const v1 = { meta: 'demo_meta', what: 'demo', migrations: ['CREATE TABLE demo (a INTEGER)'] };
    migrateTables(db, v1);
    migrateTables(db, v1); // already current: nothing runs again (a second CREATE TABLE would throw)
    const v2 = { ...v1, migrations: [...v1.migrations, 'ALTER TABLE demo ADD COLUMN b INTEGER'] };
    migrateTables(db, v2);
    db.prepare('INSERT INTO demo (a, b) VALUES (1, 2)').run();
    assert.deepEqual(db.prepare('SELECT value FROM demo_meta').get(), { value: '2' });
    assert.throws(
      () => migrateTables(db, v1),
      (err: Error & { code?: string }) =>
        err.code === 'ARBOR_SCHEMA' && /demo schema 2 is newer than this arbor understands/.test(err.message),
    );
    // Another part's table in the same database keeps its own version.
    migrateTables(db, { meta: 'other_meta', what: 'other', migrations: ['CREATE TABLE other (x TEXT)'] });
    assert.deepEqual(db.prepare('SELECT value FROM other_meta').get(), { value: '1' });
  } finally {
    db.close();
  }
});
