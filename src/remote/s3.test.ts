// Runs the Remote conformance suite against the real Ceph RGW that scripts/servers/rgw.sh starts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { remoteContract, mapLimit } from './contract.js';
import { checkReachable } from './index.js';
import { Readable } from 'node:stream';
import { RemoteNotFoundError, RemoteUnavailableError } from '../errors.js';
import { FinalRemoteError } from './retry.js';
import { S3Remote, readBody } from './s3.js';
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

describe('S3 GET bodies (no server)', () => {
  const pieces = (...sizes: number[]): Buffer[] => sizes.map((n, i) => Buffer.alloc(n, i + 1));
  it('are copied into one buffer of the Content-Length, or concatenated without one', async () => {
    const want = Buffer.concat(pieces(70_000, 65_536, 3));
    for (const len of [want.length, undefined]) {
      const got = await readBody(Readable.from(pieces(70_000, 65_536, 3)), len);
      assert.equal(
        Object.getPrototypeOf(got),
        Uint8Array.prototype,
        'a plain Uint8Array, as the contract says',
      );
      assert.equal(Buffer.compare(got, want), 0);
    }
    assert.equal((await readBody(Readable.from([]), 0)).length, 0);
  });
  it("go into the caller's buffer when it gives one (with its copy function), a view of its first bytes", async () => {
    const want = Buffer.concat(pieces(70_000, 65_536, 3));
    const mine = Buffer.from(new SharedArrayBuffer(want.length + 100));
    let copies = 0;
    const got = await readBody(Readable.from(pieces(70_000, 65_536, 3)), want.length, {
      alloc: (n) => {
        assert.equal(n, want.length);
        return mine;
      },
      copy: (dst, offset, src) => {
        copies++;
        dst.set(src, offset);
      },
    });
    assert.equal(got.buffer, mine.buffer);
    assert.equal(got.length, want.length);
    assert.equal(copies, 3);
    assert.equal(Buffer.compare(got, want), 0);
    // Too small a buffer is refused, never overrun, and not retried.
    await assert.rejects(
      readBody(Readable.from(pieces(10)), 10, { alloc: () => new Uint8Array(5) }),
      (err: unknown) => err instanceof FinalRemoteError && !err.retryable,
    );
  });
  it('longer or shorter than the Content-Length is a retryable transport error, never short or padded bytes', async () => {
    for (const len of [100, 200]) {
      await assert.rejects(readBody(Readable.from(pieces(150)), len), RemoteUnavailableError);
    }
    const broken = new Readable({ read() {} });
    const p = readBody(broken, 10);
    broken.push(Buffer.alloc(5));
    broken.destroy(new Error('socket hang up'));
    await assert.rejects(p, /socket hang up/);
  });
});

if ('missing' in cfg) {
  describe('S3 remote (Ceph RGW)', () => {
    if (inCI) it('needs the RGW server', () => assert.fail(cfg.missing));
    else it.skip(`skipped: ${cfg.missing}`, () => undefined);
  });
} else {
  const url = cfg.env.ARBOR_TEST_S3_URL;
  remoteContract('s3 (Ceph RGW)', async () => freshS3(url));

  describe('S3 backend specifics', () => {
    it('getInto reads an object into the buffer the caller allocates; a missing one is RemoteNotFoundError', async () => {
      const r = freshS3(url);
      try {
        const data = randomBytes(300_000);
        await r.putIfAbsent('chunks/ab/x', data);
        const mine = new Uint8Array(400_000);
        const got = await r.getInto('chunks/ab/x', { alloc: () => mine });
        assert.equal(got.buffer, mine.buffer);
        assert.equal(Buffer.compare(got, data), 0);
        await assert.rejects(r.getInto('chunks/ab/none', { alloc: () => mine }), RemoteNotFoundError);
      } finally {
        await r.close();
      }
    });

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
