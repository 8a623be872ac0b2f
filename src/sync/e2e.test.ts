// End to end through the real CLI, three replicas on one remote per backend: the full scenario on the dir backend,
// the lean one on SFTP (real sshd) and S3 (real Ceph RGW); e2e.long.test.ts runs the full one on those too.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { inCI } from '../remote/test-env.js';
import { backends, scenario } from './testing/e2e.js';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

for (const b of backends) {
  const full = b.name === 'dir';
  describe(`replication end to end through the CLI (${b.name}${full ? '' : ', lean'})`, () => {
    if ('missing' in b) {
      if (inCI) it('needs its server', () => assert.fail(b.missing));
      else it.skip(`skipped: ${b.missing}`, () => undefined);
      return;
    }
    it('three replicas converge; conflicts kept; gc, then a fresh clone reads every current file', async () => {
      await scenario(b, full, cleanups);
    });
  });
}
