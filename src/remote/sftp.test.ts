// Runs the Remote conformance suite against the real OpenSSH server that scripts/servers/sshd.sh starts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { remoteContract } from './contract.js';
import { checkReachable } from './index.js';
import { SftpRemote } from './sftp.js';
import { inCI, serverEnv } from './test-env.js';
import { tempDirs } from '../testing/temp-dirs.js';
import { parseRemoteUrl, type SftpLocation } from './url.js';

const tempDir = tempDirs();
const cfg = serverEnv(['ARBOR_TEST_SFTP_URL', 'ARBOR_TEST_SFTP_KEY'] as const);

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups) await c();
});

async function freshSftp(
  url: string,
  key: string,
  knownHosts?: string,
): Promise<{ remote: SftpRemote; path: string }> {
  const loc = parseRemoteUrl(url) as SftpLocation;
  const path = `${loc.path}/run-${randomBytes(6).toString('hex')}`;
  const kh = knownHosts ?? join(await tempDir('arbor-kh-'), 'known_hosts');
  const remote = new SftpRemote({ ...loc, path, keyPath: key }, { knownHostsFile: kh });
  // The server runs on this machine: remove the run's directory directly afterwards.
  cleanups.push(() => rm(path, { recursive: true, force: true }));
  return { remote, path };
}

if ('missing' in cfg) {
  describe('SFTP remote (OpenSSH)', () => {
    if (inCI) it('needs the sshd server', () => assert.fail(cfg.missing));
    else it.skip(`skipped: ${cfg.missing}`, () => undefined);
  });
} else {
  const { ARBOR_TEST_SFTP_URL: url, ARBOR_TEST_SFTP_KEY: key } = cfg.env;
  remoteContract('sftp (OpenSSH)', async () => (await freshSftp(url, key)).remote);

  describe('SFTP backend specifics', () => {
    it('records the host key on first use and refuses a changed one', async () => {
      const dir = await tempDir('arbor-kh-');
      const kh = join(dir, 'known_hosts');
      const a = (await freshSftp(url, key, kh)).remote;
      try {
        assert.equal(await a.putIfAbsent('k', new Uint8Array([1])), true);
        assert.equal((await checkReachable(a)).reachable, true);
      } finally {
        await a.close();
      }
      const recorded = await readFile(kh, 'utf8');
      assert.match(recorded, /^\[127\.0\.0\.1\]:\d+ ssh-ed25519 AAAA/);
      // Same key again: accepted.
      const b = (await freshSftp(url, key, kh)).remote;
      try {
        assert.equal(await b.exists('nothing'), false);
      } finally {
        await b.close();
      }
      // Tamper with the record: the connection is refused with a clear, final error.
      const fake = recorded.replace(/ (\S+)\n$/, ` ${Buffer.from(randomBytes(51)).toString('base64')}\n`);
      await writeFile(kh, fake);
      const c = (await freshSftp(url, key, kh)).remote;
      const spy = c as unknown as { connect: () => Promise<unknown> };
      let attempts = 0;
      const orig = spy.connect.bind(c);
      spy.connect = () => {
        attempts++;
        return orig();
      };
      try {
        await assert.rejects(c.exists('x'), /host key .* differs/);
        assert.equal(attempts, 1, 'a host key mismatch must not be retried');
      } finally {
        await c.close();
      }
    });

    it('uses one connection for many operations (no connection per object)', async () => {
      const { remote } = await freshSftp(url, key);
      const r = remote as unknown as { connect: () => Promise<unknown> };
      let connects = 0;
      const orig = r.connect.bind(remote);
      r.connect = () => {
        connects++;
        return orig();
      };
      await Promise.all(Array.from({ length: 50 }, (_, i) => remote.putIfAbsent(`c/${i}`, randomBytes(100))));
      assert.equal((await remote.list('c/')).length, 50);
      assert.equal(connects, 1);
      await remote.close();
    });

    it('removes stale temp files of a dead writer, keeps fresh ones, and never lists them', async () => {
      const { remote, path } = await freshSftp(url, key);
      try {
        await mkdir(`${path}/.arbor-tmp`, { recursive: true });
        await writeFile(`${path}/.arbor-tmp/old.tmp`, 'x');
        await writeFile(`${path}/.arbor-tmp/fresh.tmp`, 'y');
        const old = new Date(Date.now() - 2 * 3600 * 1000);
        await utimes(`${path}/.arbor-tmp/old.tmp`, old, old);
        assert.equal(await remote.putIfAbsent('k', new Uint8Array([1])), true);
        assert.deepEqual(await remote.list(''), ['k']);
        for (let i = 0; i < 50 && (await readdir(`${path}/.arbor-tmp`)).includes('old.tmp'); i++)
          await sleep(20);
        assert.deepEqual((await readdir(`${path}/.arbor-tmp`)).sort(), ['fresh.tmp']);
      } finally {
        await remote.close();
      }
    });

    it('wrong key fails with a clear final error', async () => {
      const dir = await tempDir('arbor-key-');
      const { execFileSync } = await import('node:child_process');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
      const loc = parseRemoteUrl(url) as SftpLocation;
      const r = new SftpRemote({ ...loc, keyPath: join(dir, 'k') }, { knownHostsFile: join(dir, 'kh') });
      const res = await checkReachable(r);
      assert.equal(res.reachable, false);
      assert.match((res as { error: string }).error, /authentication failed/);
      await r.close();
    });
  });
}
