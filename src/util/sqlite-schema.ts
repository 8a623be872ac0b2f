// Versioned tables that one part keeps in a shared SQLite database: the part's migrations, and its schema version in
// a key/value table of its own, so parts upgrade independently (the chunk index, path pins).
import type { Database } from 'better-sqlite3';
import { InvalidInputError } from '../errors.js';

export interface TableSchema {
  /** The part's key/value table (created if missing) holding `schema_version`. */
  readonly meta: string;
  /** Its name in an error, e.g. 'chunk index'. */
  readonly what: string;
  /** migrations[i] upgrades from version i to i + 1 (append only); the schema version is their count. */
  readonly migrations: readonly string[];
}

/**
 * Bring the part's tables to its newest version, all pending migrations in one transaction. A database written by a
 * newer arbor (a higher version) is refused rather than guessed at.
 */
export function migrateTables(db: Database, s: TableSchema): void {
  db.exec(`CREATE TABLE IF NOT EXISTS ${s.meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
  const row = db.prepare(`SELECT value FROM ${s.meta} WHERE key = 'schema_version'`).get() as
    { value: string } | undefined;
  const v = row ? Number(row.value) : 0;
  if (v > s.migrations.length) {
    throw new InvalidInputError(`${s.what} schema ${v} is newer than this arbor understands`, 'ARBOR_SCHEMA');
  }
  if (v === s.migrations.length) return;
  db.transaction(() => {
    for (const m of s.migrations.slice(v)) db.exec(m);
    db.prepare(`INSERT OR REPLACE INTO ${s.meta} (key, value) VALUES ('schema_version', ?)`).run(
      String(s.migrations.length),
    );
  })();
}
