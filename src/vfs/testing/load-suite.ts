// The fio + stress-ng load suite against a mounted filesystem, sized by a profile (normal suite vs *.long.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  loadSkip,
  makeTarget,
  runFio,
  runStressNg,
  type FioJob,
  type FioReport,
  type Target,
} from './load.js';

export interface LoadProfile {
  /** fio jobs; each runs with --verify=crc32c and must finish with zero errors. */
  fio: FioJob[];
  /** Seconds per stress-ng run (all stressors at once). */
  stressSeconds: number;
  /** stress-ng runs in a row (fresh directories each). */
  stressRounds: number;
}

/**
 * The filesystem-class stressors a complete FUSE filesystem should pass. Left out, on purpose:
 * bind-mount (mount namespaces), binderfs and procfs (other filesystems), dup/eventfd/ioprio (no filesystem
 * in play), fanotify (needs fsid-based marks), chattr/inode-flags/file-ioctl/fiemap/verity (FS_IOC_* ioctls,
 * which a FUSE filesystem without an IOCTL handler answers ENOTTY; they would only test stress-ng's skip path).
 * Left out for known arbor bugs: see KNOWN_BUGS.
 */
export const STRESSORS = [
  'access',
  'chdir',
  'chmod',
  'chown',
  'copy-file',
  'dentry',
  'dir',
  'dirdeep',
  'dirmany',
  'dnotify',
  'fallocate',
  'fcntl',
  'filename',
  'flock',
  'fpunch',
  'fsize',
  'fstat',
  'getdent',
  'handle',
  'hdd',
  'inotify',
  'io',
  'iomix',
  'lease',
  'link',
  'locka',
  'lockf',
  'lockofd',
  'mknod',
  'open',
  'rename',
  'symlink',
  'sync-file',
  'touch',
  'utime',
  'xattr',
];

/**
 * Stressors that expose arbor bugs not fixed yet. `todo` ones still run (in a todo test, so the report shows
 * them and they turn green when fixed); `hang` ones wedge the daemon and are not run at all.
 */
export const KNOWN_BUGS: Record<string, { kind: 'todo' | 'hang'; bug: string }> = {};

const STRESS_GROUPS = 3;

/** Keep the data-heavy stressors small: defaults write GiBs (hdd 1 GiB, copy-file 256 MiB per instance). */
const STRESS_SIZES = [
  '--hdd-bytes',
  '16m',
  '--iomix-bytes',
  '16m',
  '--fallocate-bytes',
  '16m',
  '--sync-file-bytes',
  '16m',
  '--copy-file-bytes',
  '128m', // stress-ng's minimum
  '--dirdeep-dirs',
  '4',
  '--dirdeep-inodes',
  '2000',
];

function fioOk(r: FioReport): void {
  const detail = `${r.command}\nfailed jobs: ${r.failedJobs.join('; ')}\n${r.verifyMessages.join('\n')}\n${r.stderr}`;
  assert.equal(r.failedJobs.length, 0, `fio job errors:\n${detail}`);
  assert.equal(r.verifyMessages.length, 0, `fio verification messages:\n${detail}`);
  assert.equal(r.code, 0, `fio exited ${r.code}:\n${detail}`);
}

function sizeBytes(s: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return (
    Number(m[1]) *
    ({ '': 1, k: 1024, m: 1 << 20, g: 1 << 30 } as Record<string, number>)[m[2]!.toLowerCase()]!
  );
}

export function loadSuite(title: string, profile: LoadProfile): void {
  describe(title, { skip: loadSkip() }, () => {
    let t: Target;
    before(async () => {
      t = makeTarget('arbor-load-');
      await t.create();
      await t.mount();
    });
    after(async () => {
      await t?.destroy();
    });

    for (const job of profile.fio) {
      it(`fio ${job.name}: ${job.rw} bs=${job.bs} ${job.numjobs}×${job.size} (${job.ioengine ?? 'psync'}) verifies crc32c`, async () => {
        const dir = path.join(t.mnt, `fio-${job.name}`);
        fs.mkdirSync(dir);
        const r = await runFio(dir, job);
        fioOk(r);
        // Written and read-back bytes prove the workload ran and was verified (a mixed job splits its I/O).
        const total = sizeBytes(job.size) * job.numjobs;
        const want = /rw|readwrite/.test(job.rw)
          ? total * 0.25
          : total - sizeBytes(job.bs.replace(/-.*/, '')) * job.numjobs;
        assert.ok(r.writtenBytes >= want, `fio wrote only ${r.writtenBytes} of ${total} bytes`);
        assert.ok(r.readBytes >= want, `fio verified only ${r.readBytes} of ${total} bytes`);
      });
    }

    it('every fio file verifies again after unmount and remount (nothing lives only in memory)', async (ctx) => {
      if (t.kind === 'memfs') return ctx.skip('memfs keeps nothing across mounts');
      await t.unmount();
      await t.mount();
      // An appending job can't be re-verified: a second run would append (and verify) past the end.
      for (const job of profile.fio.filter((j) => !j.extra?.includes('--file_append=1'))) {
        const r = await runFio(path.join(t.mnt, `fio-${job.name}`), job, { verifyOnly: true });
        fioOk(r);
        assert.ok(r.readBytes > 0, `${job.name}: re-verified nothing`);
      }
    });

    // A few groups at a time rather than all at once: every stressor gets a fair share of the daemon.
    const groups = Array.from({ length: STRESS_GROUPS }, (_, g) =>
      STRESSORS.filter((_, i) => i % STRESS_GROUPS === g),
    );
    for (let round = 1; round <= profile.stressRounds; round++) {
      groups.forEach((group, g) => {
        it(`stress-ng round ${round}, group ${g + 1} (${group.join(' ')}), ${profile.stressSeconds}s, --verify: no failures`, async (ctx) => {
          const dir = path.join(t.mnt, `stress-${round}-${g}`);
          fs.mkdirSync(dir);
          const r = await runStressNg(dir, group, { timeoutS: profile.stressSeconds, extra: STRESS_SIZES });
          const failures = [...r.failed].map(
            ([name, lines]) => `${name}:\n  ${lines.slice(0, 5).join('\n  ')}`,
          );
          assert.equal(
            failures.length,
            0,
            `${r.command}\nfailed stressors:\n${failures.join('\n')}\n${t.log()}`,
          );
          // Progress depends on speed, so it is reported, not asserted; skips say why.
          ctx.diagnostic(`bogo ops: ${group.map((s) => `${s}=${r.ops.get(s) ?? 0}`).join(' ')}`);
          for (const [name, why] of r.skipped) ctx.diagnostic(`skipped ${name}: ${why}`);
          // The mount still answers after the storm, and the stressors' files are gone with their directory.
          fs.rmSync(dir, { recursive: true, force: true });
          assert.equal(fs.existsSync(dir), false);
          assert.ok(fs.statSync(t.mnt).isDirectory());
        });
      });
    }

    for (const [name, known] of Object.entries(KNOWN_BUGS).filter(([, k]) => k.kind === 'todo')) {
      it(`stress-ng ${name} (known bug: ${known.bug})`, { todo: known.bug }, async () => {
        const dir = path.join(t.mnt, `stress-${name}`);
        fs.mkdirSync(dir);
        const r = await runStressNg(dir, [name], { timeoutS: 3 });
        assert.equal(r.failed.size, 0, [...r.failed.values()].flat().join('\n'));
        fs.rmSync(dir, { recursive: true, force: true });
      });
    }
  });
}
