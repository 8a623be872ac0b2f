// Test helper: temporary directories that are removed when the test file's tests are done.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** A maker of fresh directories under the system temp dir, named `<prefix>XXXXXX`; all are removed after the file's tests. */
export function tempDirs(): (prefix: string) => Promise<string> {
  const made: string[] = [];
  after(async () => {
    for (const d of made) await rm(d, { recursive: true, force: true });
  });
  return async (prefix) => {
    const d = await mkdtemp(join(tmpdir(), prefix));
    made.push(d);
    return d;
  };
}
