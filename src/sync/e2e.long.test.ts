// The full end-to-end scenario (partition, offline work, status, tree deletes) on SFTP and S3 (ARBOR_LONG=1).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { inCI } from '../remote/test-env.js';
import { backends, scenario } from './testing/e2e.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

for (const b of backends.filter((x) => x.name !== 'dir')) {
  describe(`replication end to end through the CLI (${b.name}, full)`, () => {
    if ('missing' in b) {
      if (inCI) it('needs its server', () => assert.fail(b.missing));
      else it.skip(`skipped: ${b.missing}`, () => undefined);
      return;
    }
    it('three replicas converge; conflicts; a partitioned replica catches up; clone after gc', async () => {
      await scenario(b, true, cleanups);
    });
  });
}
