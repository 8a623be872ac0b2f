// Runs the Remote conformance suite against the real Ceph RGW that scripts/servers/rgw.sh starts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { remoteContract, mapLimit } from './contract.js';
import { checkReachable } from './index.js';
import { S3Remote } from './s3.js';
import { inCI, serverEnv } from './test-env.js';
import { parseRemoteUrl, type S3Location } from './url.js';

const cfg = serverEnv(['ARBOR_TEST_S3_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const);

/** A remote over a fresh prefix; its objects are deleted when it is closed. */
export function freshS3(url: string): S3Remote {
  const loc = parseRemoteUrl(url) as S3Location;
  const prefix = `${loc.prefix ? `${loc.prefix}/` : ''}run-${randomBytes(6).toString('hex')}`;
  const remote = new S3Remote({ ...loc, prefix });
  const close = remote.close.bind(remote);
  remote.close = async () => {
    await mapLimit(await remote.list(''), 32, (k) => remote.delete(k));
    await close();
  };
  return remote;
}

if ('missing' in cfg) {
  describe('S3 remote (Ceph RGW)', () => {
    if (inCI) it('needs the RGW server', () => assert.fail(cfg.missing));
    else it.skip(`skipped: ${cfg.missing}`, () => undefined);
  });
} else {
  const url = cfg.env.ARBOR_TEST_S3_URL;
  remoteContract('s3 (Ceph RGW)', async () => freshS3(url));

  describe('S3 backend specifics', () => {
    it('reports reachability, and a missing bucket as unreachable with a clear message', async () => {
      const ok = freshS3(url);
      assert.equal((await checkReachable(ok)).reachable, true);
      await ok.close();
      const loc = parseRemoteUrl(url) as S3Location;
      const bad = new S3Remote({ ...loc, bucket: 'arbor-no-such-bucket' });
      const res = await checkReachable(bad);
      assert.equal(res.reachable, false);
      assert.match((res as { error: string }).error, /does not exist/);
      await bad.close();
    });

    it('wrong credentials fail fast (no retries) without leaking the secret', async () => {
      const saved = process.env.AWS_SECRET_ACCESS_KEY;
      process.env.AWS_SECRET_ACCESS_KEY = 'definitely-wrong-secret';
      try {
        const r = freshS3(url);
        const err = await r.putIfAbsent('x', new Uint8Array([1])).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        assert.ok(err, 'put with a wrong secret must fail');
        assert.equal((err as { code?: string }).code, 'ARBOR_REMOTE_UNAVAILABLE');
        assert.doesNotMatch(err.message, /definitely-wrong-secret/);
        assert.doesNotMatch(r.url, /secret/i);
      } finally {
        process.env.AWS_SECRET_ACCESS_KEY = saved;
      }
    });
  });
}
