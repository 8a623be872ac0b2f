// Test helpers for tree/: temp state dirs and errno assertions. Test-only; knows nothing of FUSE.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'arbor-tree-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Assert that `fn` throws (or rejects with) an error whose code is `code`. */
export async function rejectsCode(fn: () => unknown, code: string): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${code}, but it succeeded`);
  assert.equal((err as { code?: string }).code, code, `expected ${code}, got ${String(err)}`);
}
