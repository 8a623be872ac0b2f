// Where a chunk's sealed bytes live in the local cache and how a cache file is written. Shared by the store (main
// thread) and the seal workers, which write new chunks' files themselves.
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** `<cacheDir>/<first two hex digits>/<id>`: 256 subdirectories keep directories small. */
export function cacheFilePath(cacheDir: string, id: string): string {
  return join(cacheDir, id.slice(0, 2), id);
}

/** cacheFilePath, its subdirectory created first unless `madeDirs` (this thread's memory of them) has it. */
export function madeCacheFilePath(cacheDir: string, id: string, madeDirs: Set<string>): string {
  const sub = id.slice(0, 2);
  if (!madeDirs.has(sub)) {
    mkdirSync(join(cacheDir, sub), { recursive: true });
    madeDirs.add(sub);
  }
  return cacheFilePath(cacheDir, id);
}

/** A temp name next to `final`; reconcile at open removes any left by a crash (they are not in the index). */
export function cacheTempPath(final: string): string {
  return `${final}.tmp-${randomBytes(4).toString('hex')}`;
}

/**
 * Write a cache file under a temp name, then rename it into place: a file with its final name is always whole after
 * a process crash. Not fsynced (the store's sync() does that at the user's durability points). `madeDirs` remembers
 * the subdirectories this thread has already created.
 */
export function writeCacheFileSync(
  cacheDir: string,
  id: string,
  bytes: Uint8Array,
  madeDirs: Set<string>,
): void {
  const final = madeCacheFilePath(cacheDir, id, madeDirs);
  const tmp = cacheTempPath(final);
  try {
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, final);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw err;
  }
}
