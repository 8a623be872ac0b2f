// End to end through the real CLI, three replicas on one remote, once per backend: dir, SFTP (the real sshd) and S3
// (the real Ceph RGW). src/sync/testing/e2e.ts holds the scenario.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { inCI } from '../remote/test-env.js';
import { backends, scenario } from './testing/e2e.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

for (const b of backends) {
  describe(`replication end to end through the CLI (${b.name})`, () => {
    if ('missing' in b) {
      if (inCI) it('needs its server', () => assert.fail(b.missing));
      else it.skip(`skipped: ${b.missing}`, () => undefined);
      return;
    }
    it('three replicas converge; conflicts kept; a partitioned replica catches up; gc, then a fresh clone reads all', async () => {
      await scenario(b, cleanups);
    });
  });
}
