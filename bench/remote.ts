// `npm run bench -- remote`: object throughput of each remote backend that is configured (dir always; SFTP and S3
// from the ARBOR_TEST_* variables the server scripts export), and SFTP's one persistent connection vs a connection
// per object (what Syncer's users paid for with one rsync/ssh process per call).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mapLimit } from '../src/remote/limit.js';
import { DirRemote } from '../src/remote/dir.js';
import { S3Remote } from '../src/remote/s3.js';
import { SftpRemote } from '../src/remote/sftp.js';
import type { Remote } from '../src/remote/types.js';
import { parseRemoteUrl, type S3Location, type SftpLocation } from '../src/remote/url.js';
import type { BenchOptions, Metric } from './types.js';

const SMALL = 4096;
const SMALL_N = 400;
const BIG = 1 << 20;
const BIG_N = 32;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function measure(
  name: string,
  r: Remote,
  out: Record<string, Metric>,
  log: (l: string) => void,
): Promise<void> {
  const small = Array.from({ length: SMALL_N }, (_, i) => `small/${String(i).padStart(5, '0')}`);
  const big = Array.from({ length: BIG_N }, (_, i) => `big/${String(i).padStart(3, '0')}`);
  const smallData = randomBytes(SMALL);
  const bigData = randomBytes(BIG);
  let s = await timed(() => mapLimit(small, 32, (k) => r.putIfAbsent(k, smallData)));
  out[`${name}_put_small_ops_per_s`] = {
    value: Math.round(SMALL_N / s),
    unit: 'ops/s',
    note: '4 KiB, 32 in flight',
  };
  s = await timed(() => mapLimit(small, 32, (k) => r.get(k)));
  out[`${name}_get_small_ops_per_s`] = {
    value: Math.round(SMALL_N / s),
    unit: 'ops/s',
    note: '4 KiB, 32 in flight',
  };
  s = await timed(() => mapLimit(big, 8, (k) => r.putIfAbsent(k, bigData)));
  out[`${name}_put_mb_per_s`] = {
    value: Math.round(BIG_N / s),
    unit: 'MiB/s',
    note: '1 MiB objects, 8 in flight',
  };
  s = await timed(() => mapLimit(big, 8, (k) => r.get(k)));
  out[`${name}_get_mb_per_s`] = {
    value: Math.round(BIG_N / s),
    unit: 'MiB/s',
    note: '1 MiB objects, 8 in flight',
  };
  log(`${name}: done`);
}

export async function run(opts: BenchOptions): Promise<Record<string, Metric>> {
  const out: Record<string, Metric> = {};
  const tag = `bench-${randomBytes(4).toString('hex')}`;

  const dir = await mkdtemp(join(tmpdir(), 'arbor-bench-remote-'));
  try {
    const r = new DirRemote(dir);
    await measure('dir', r, out, opts.log);
    await r.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const sftpUrl = process.env.ARBOR_TEST_SFTP_URL;
  const sftpKey = process.env.ARBOR_TEST_SFTP_KEY;
  if (sftpUrl && sftpKey) {
    const base = parseRemoteUrl(sftpUrl) as SftpLocation;
    const kh = join(await mkdtemp(join(tmpdir(), 'arbor-bench-kh-')), 'known_hosts');
    const loc: SftpLocation = { ...base, path: `${base.path}/${tag}`, keyPath: sftpKey };
    const r = new SftpRemote(loc, { knownHostsFile: kh });
    try {
      await measure('sftp', r, out, opts.log);
      // Sequential small puts: one persistent connection vs a new connection (and SSH handshake) per object.
      const n = 40;
      const persistent = await timed(async () => {
        for (let i = 0; i < n; i++) await r.putIfAbsent(`seq/p${i}`, randomBytes(SMALL));
      });
      const perObject = await timed(async () => {
        for (let i = 0; i < n; i++) {
          const one = new SftpRemote(loc, { knownHostsFile: kh });
          await one.putIfAbsent(`seq/c${i}`, randomBytes(SMALL));
          await one.close();
        }
      });
      const value = n / persistent;
      const baseline = n / perObject;
      out.sftp_persistent_conn_ops_per_s = {
        value: Math.round(value),
        unit: 'ops/s',
        baseline: Math.round(baseline),
        ratio: value / baseline,
        note: 'sequential 4 KiB puts; baseline = one SSH connection per object',
      };
      opts.log('sftp: connection comparison done');
      await mapLimit(await r.list(''), 32, (k) => r.delete(k));
    } finally {
      await r.close();
      await rm(loc.path, { recursive: true, force: true }).catch(() => undefined);
    }
  } else {
    opts.log(
      'sftp: skipped (ARBOR_TEST_SFTP_URL/ARBOR_TEST_SFTP_KEY not set; run scripts/servers/sshd.sh start)',
    );
  }

  const s3Url = process.env.ARBOR_TEST_S3_URL;
  if (s3Url) {
    const base = parseRemoteUrl(s3Url) as S3Location;
    const r = new S3Remote({ ...base, prefix: base.prefix ? `${base.prefix}/${tag}` : tag });
    try {
      await measure('s3', r, out, opts.log);
      await mapLimit(await r.list(''), 32, (k) => r.delete(k));
    } finally {
      await r.close();
    }
  } else {
    opts.log('s3: skipped (ARBOR_TEST_S3_URL not set; run scripts/servers/rgw.sh start)');
  }
  return out;
}
