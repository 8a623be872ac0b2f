// Faults against the real servers: the server process dies (or hangs) in the middle of an upload loop, and objects
// are corrupted behind the server's back. Each test starts its OWN sshd/radosgw from the shared config on a free
// port and kills only that one (by pid), so the shared servers keep serving the other test files.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ChunkCorruptError, RemoteUnavailableError } from '../errors.js';
import { CachedChunkStore, remoteKey } from '../chunks/store.js';
import type { ChunkRef } from '../chunks/types.js';
import { DirRemote } from './dir.js';
import { S3Remote, type S3RemoteOptions } from './s3.js';
import { SftpRemote, type SftpRemoteOptions } from './sftp.js';
import { inCI, serverEnv } from './test-env.js';
import type { Remote } from './types.js';
import { parseRemoteUrl, type S3Location, type SftpLocation } from './url.js';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function tempDir(tag: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `arbor-fault-${tag}-`));
  cleanups.push(() => rm(d, { recursive: true, force: true }));
  return d;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Pids of every descendant of `pid` (sshd forks a process per connection), from /proc. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let kids: string;
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.split(/\s+/).filter(Boolean).map(Number)) out.push(k, ...descendants(k));
  }
  return out;
}

/** Signals the process we started and everything it forked, each by pid. */
function signalTree(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  for (const p of [...descendants(child.pid), child.pid]) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  signalTree(child, 'SIGKILL');
  await exited;
}

async function waitUntil(what: string, secs: number, probe: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + secs * 1000;
  while (Date.now() < end) {
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function sshBanner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('data', (b) => {
      s.destroy();
      resolve(b.toString().startsWith('SSH-'));
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * The upload loop of the fault tests: puts 64 KiB objects until one fails; `onProgress` runs after each success.
 * Returns what was acknowledged and the failure (with the object whose upload failed).
 */
async function uploadUntilFailure(
  remote: Remote,
  onProgress: (acked: number) => void,
): Promise<{
  acked: Map<string, Buffer>;
  failed: { key: string; data: Buffer; err: unknown; afterMs: number };
}> {
  const acked = new Map<string, Buffer>();
  for (let i = 0; ; i++) {
    const key = `loop/${String(i).padStart(6, '0')}`;
    const data = randomBytes(64 * 1024);
    const t0 = Date.now();
    try {
      await remote.putIfAbsent(key, data);
    } catch (err) {
      return { acked, failed: { key, data, err, afterMs: Date.now() - t0 } };
    }
    acked.set(key, data);
    onProgress(acked.size);
    if (i > 100_000) throw new Error('the loop never failed');
  }
}

/** After recovery: every acknowledged object is intact, and the interrupted one is absent or whole, never partial. */
async function assertNothingLost(
  remote: Remote,
  acked: Map<string, Buffer>,
  failed: { key: string; data: Buffer },
) {
  for (const [k, d] of acked)
    assert.ok(Buffer.from(await remote.get(k)).equals(d), `acknowledged ${k} damaged`);
  if (await remote.exists(failed.key)) {
    assert.ok(
      Buffer.from(await remote.get(failed.key)).equals(failed.data),
      'interrupted upload left a partial object',
    );
  }
}

function skipOrFail(title: string, missing: string): void {
  describe(title, () => {
    if (inCI) it('needs its server', () => assert.fail(missing));
    else it.skip(`skipped: ${missing}`, () => undefined);
  });
}

// ---- directory backend -----------------------------------------------------------------------------------------

describe('dir backend: corruption behind the backend', () => {
  it('a file edited on disk is returned as edited (the chunk layer must verify)', async () => {
    const root = await tempDir('dir');
    const r = new DirRemote(root, { fsync: false });
    const data = randomBytes(4096);
    await r.putIfAbsent('chunks/aa/obj', data);
    const file = join(root, 'chunks/aa/obj');
    const bytes = await readFile(file);
    bytes[100] ^= 0xff;
    await writeFile(file, bytes);
    const got = Buffer.from(await r.get('chunks/aa/obj'));
    assert.ok(!got.equals(data), 'the backend returned the original bytes: the corruption did not reach it');
    assert.equal(got[100], data[100]! ^ 0xff);
  });
});

// ---- SFTP ------------------------------------------------------------------------------------------------------

const sftpEnv = serverEnv([
  'ARBOR_TEST_SSHD_CONFIG',
  'ARBOR_TEST_SFTP_KEY',
  'ARBOR_TEST_SFTP_ROOT',
  'ARBOR_TEST_SFTP_URL',
] as const);
if ('missing' in sftpEnv) {
  skipOrFail('SFTP faults', sftpEnv.missing);
} else {
  const env = sftpEnv.env;
  const startSshd = async (port: number): Promise<ChildProcess> => {
    const dir = await tempDir('sshd');
    const child = spawn(
      '/usr/sbin/sshd',
      ['-D', '-e', '-f', env.ARBOR_TEST_SSHD_CONFIG, '-p', String(port), '-o', `PidFile=${dir}/pid`],
      {
        stdio: 'ignore',
      },
    );
    cleanups.push(() => killAndWait(child));
    await waitUntil(`sshd on port ${port}`, 30, () => sshBanner(port));
    return child;
  };
  const faultOpts = async (): Promise<SftpRemoteOptions> => ({
    knownHostsFile: join(await tempDir('kh'), 'known_hosts'),
    opTimeoutMs: 2000,
    connectTimeoutMs: 2000,
    keepaliveIntervalMs: 500,
    retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
  });

  describe('SFTP faults (real OpenSSH)', () => {
    it('sshd killed mid-upload: RemoteUnavailableError in bounded time, then success after restart, nothing lost', async () => {
      const port = await freePort();
      let sshd = await startSshd(port);
      const path = `${env.ARBOR_TEST_SFTP_ROOT}/fault-${randomBytes(4).toString('hex')}`;
      cleanups.push(() => rm(path, { recursive: true, force: true }));
      const remote = new SftpRemote(
        {
          kind: 'sftp',
          user: 'root',
          host: '127.0.0.1',
          port,
          path,
          keyPath: env.ARBOR_TEST_SFTP_KEY,
          knownHostsPath: undefined,
        },
        await faultOpts(),
      );
      try {
        const { acked, failed } = await uploadUntilFailure(remote, (n) => {
          if (n === 20) signalTree(sshd, 'SIGKILL'); // the listener and the session process serving us
        });
        assert.ok(
          failed.err instanceof RemoteUnavailableError,
          `expected RemoteUnavailableError, got ${String(failed.err)}`,
        );
        // Generous bound (loaded CI machines): the point is that it ends, not how fast.
        assert.ok(failed.afterMs < 60_000, `failure took ${failed.afterMs} ms`);
        assert.equal(acked.size, 20);
        await assert.rejects(remote.get('loop/000000'), RemoteUnavailableError);
        sshd = await startSshd(port);
        // The same Remote reconnects by itself.
        assert.equal(await remote.putIfAbsent('after/restart', Buffer.from('ok')), true);
        await assertNothingLost(remote, acked, failed);
      } finally {
        await remote.close();
        await killAndWait(sshd);
      }
    });

    it('a hung server (SIGSTOP) times out with RemoteUnavailableError instead of hanging, and recovers on SIGCONT', async () => {
      const port = await freePort();
      const sshd = await startSshd(port);
      const path = `${env.ARBOR_TEST_SFTP_ROOT}/hang-${randomBytes(4).toString('hex')}`;
      cleanups.push(() => rm(path, { recursive: true, force: true }));
      const remote = new SftpRemote(
        {
          kind: 'sftp',
          user: 'root',
          host: '127.0.0.1',
          port,
          path,
          keyPath: env.ARBOR_TEST_SFTP_KEY,
          knownHostsPath: undefined,
        },
        { ...(await faultOpts()), retry: { attempts: 1 } },
      );
      try {
        assert.equal(await remote.putIfAbsent('a', Buffer.from('a')), true);
        signalTree(sshd, 'SIGSTOP');
        const t0 = Date.now();
        await assert.rejects(remote.putIfAbsent('b', Buffer.from('b')), RemoteUnavailableError);
        assert.ok(Date.now() - t0 < 60_000, 'a hung server must not hang the caller');
        signalTree(sshd, 'SIGCONT');
        await waitUntil(
          'the remote to answer again',
          60,
          async () => (await remote.putIfAbsent('b', Buffer.from('b'))) || true,
        );
        assert.deepEqual(Buffer.from(await remote.get('b')), Buffer.from('b'));
      } finally {
        signalTree(sshd, 'SIGCONT');
        await remote.close();
        await killAndWait(sshd);
      }
    });

    it('a chunk corrupted on the server disk is rejected by the chunk store read through SFTP (ChunkCorruptError)', async () => {
      const loc = parseRemoteUrl(env.ARBOR_TEST_SFTP_URL) as SftpLocation;
      const path = `${loc.path}/verify-${randomBytes(4).toString('hex')}`;
      cleanups.push(() => rm(path, { recursive: true, force: true }));
      const remote = new SftpRemote({ ...loc, path, keyPath: env.ARBOR_TEST_SFTP_KEY }, await faultOpts());
      const dir = await tempDir('chunks');
      const logs: string[] = [];
      const secret = randomBytes(32);
      const open = async (sub: string) =>
        CachedChunkStore.open({
          dir: join(dir, sub),
          db: new Database(join(await mkdtemp(join(dir, 'db-')), 'state.sqlite3')),
          remote,
          secret,
          chunking: { minSize: 1024, avgSize: 4096, maxSize: 16384 },
          cacheLimitBytes: 1 << 20,
          fsync: false,
          logger: (l) => logs.push(l),
        });
      try {
        const a = await open('a');
        const data = randomBytes(20_000);
        const refs: ChunkRef[] = [];
        let p = 0;
        for (const l of a.split(data, true)) {
          refs.push(await a.put(data.subarray(p, p + l)));
          p += l;
        }
        await a.flushUploads();
        await a.close();
        const victim = refs[0] as ChunkRef;
        const file = `${path}/${remoteKey(victim.id)}`;
        const bytes = await readFile(file);
        bytes[bytes.length - 1] ^= 0x80;
        await writeFile(file, bytes);
        const b = await open('b');
        await assert.rejects(b.get(victim), ChunkCorruptError);
        assert.ok(logs.some((l) => l.includes(victim.id)));
        if (refs[1]) assert.equal((await b.get(refs[1])).length, refs[1].size);
        await b.close();
      } finally {
        await remote.close();
      }
    });

    it('a file edited on the server disk comes back edited through SFTP', async () => {
      const loc = parseRemoteUrl(env.ARBOR_TEST_SFTP_URL) as SftpLocation;
      const path = `${loc.path}/corrupt-${randomBytes(4).toString('hex')}`;
      cleanups.push(() => rm(path, { recursive: true, force: true }));
      const remote = new SftpRemote({ ...loc, path, keyPath: env.ARBOR_TEST_SFTP_KEY }, await faultOpts());
      try {
        const data = randomBytes(4096);
        await remote.putIfAbsent('chunks/bb/obj', data);
        const file = `${path}/chunks/bb/obj`;
        const bytes = await readFile(file);
        bytes[7] ^= 0x01;
        await writeFile(file, bytes);
        const got = Buffer.from(await remote.get('chunks/bb/obj'));
        assert.ok(!got.equals(data));
        assert.equal(got[7], data[7]! ^ 0x01);
      } finally {
        await remote.close();
      }
    });
  });
}

// ---- S3 (Ceph RGW) -----------------------------------------------------------------------------------------------

const s3Env = serverEnv([
  'ARBOR_TEST_S3_URL',
  'ARBOR_TEST_CEPH_CONF',
  'ARBOR_TEST_RGW_BUCKET',
  'AWS_ACCESS_KEY_ID',
] as const);
if ('missing' in s3Env) {
  skipOrFail('S3 faults', s3Env.missing);
} else {
  const env = s3Env.env;
  const base = parseRemoteUrl(env.ARBOR_TEST_S3_URL) as S3Location;
  const startRgw = async (port: number, name: string): Promise<ChildProcess> => {
    const dir = await tempDir('rgw');
    const child = spawn(
      'radosgw',
      [
        '-f',
        '-c',
        env.ARBOR_TEST_CEPH_CONF,
        '-n',
        `client.${name}`,
        '--rgw-frontends',
        `beast endpoint=127.0.0.1:${port} tcp_nodelay=1`,
        '--pid-file',
        `${dir}/pid`,
        '--admin-socket',
        `${dir}/asok`,
        '--log-file',
        `${dir}/log`,
      ],
      { stdio: 'ignore' },
    );
    cleanups.push(() => killAndWait(child));
    await waitUntil(
      `radosgw on port ${port}`,
      90,
      async () => (await fetch(`http://127.0.0.1:${port}/`)).status < 500,
    );
    return child;
  };
  const s3At = (port: number, opts: S3RemoteOptions): S3Remote =>
    new S3Remote(
      {
        ...base,
        endpoint: `http://127.0.0.1:${port}`,
        prefix: `${base.prefix}/fault-${randomBytes(4).toString('hex')}`,
      },
      opts,
    );
  const faultOpts: S3RemoteOptions = {
    connectTimeoutMs: 1000,
    requestTimeoutMs: 3000,
    retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
  };

  describe('S3 faults (real Ceph RGW)', () => {
    it('radosgw killed mid-upload: RemoteUnavailableError in bounded time, then success after restart, nothing lost', async () => {
      const port = await freePort();
      const name = `rgwfault${port}`;
      let rgw = await startRgw(port, name);
      const remote = s3At(port, faultOpts);
      try {
        const { acked, failed } = await uploadUntilFailure(remote, (n) => {
          if (n === 20) signalTree(rgw, 'SIGKILL');
        });
        assert.ok(
          failed.err instanceof RemoteUnavailableError,
          `expected RemoteUnavailableError, got ${String(failed.err)}`,
        );
        // Generous bound (loaded CI machines): the point is that it ends, not how fast.
        assert.ok(failed.afterMs < 60_000, `failure took ${failed.afterMs} ms`);
        assert.equal(acked.size, 20);
        await assert.rejects(remote.get('loop/000000'), RemoteUnavailableError);
        rgw = await startRgw(port, name);
        assert.equal(await remote.putIfAbsent('after/restart', Buffer.from('ok')), true);
        await assertNothingLost(remote, acked, failed);
        for (const k of await remote.list('')) await remote.delete(k);
      } finally {
        await remote.close();
        await killAndWait(rgw);
      }
    });

    it('a hung gateway (SIGSTOP) times out with RemoteUnavailableError instead of hanging, and recovers on SIGCONT', async () => {
      const port = await freePort();
      const rgw = await startRgw(port, `rgwhang${port}`);
      const remote = s3At(port, { ...faultOpts, retry: { attempts: 1 } });
      try {
        assert.equal(await remote.putIfAbsent('a', Buffer.from('a')), true);
        signalTree(rgw, 'SIGSTOP');
        const t0 = Date.now();
        await assert.rejects(remote.get('a'), RemoteUnavailableError);
        assert.ok(Date.now() - t0 < 60_000, 'a hung server must not hang the caller');
        signalTree(rgw, 'SIGCONT');
        await waitUntil(
          'the gateway to answer again',
          60,
          async () => Buffer.from(await remote.get('a')).toString() === 'a',
        );
        await remote.delete('a');
      } finally {
        signalTree(rgw, 'SIGCONT');
        await remote.close();
        await killAndWait(rgw);
      }
    });

    it('an object overwritten in RADOS behind RGW comes back altered, and the chunk store rejects it (ChunkCorruptError)', async () => {
      const prefix = `${base.prefix}/corrupt-${randomBytes(4).toString('hex')}`;
      const remote = new S3Remote({ ...base, prefix });
      const dir = await tempDir('chunks');
      const logs: string[] = [];
      const open = async (sub: string) =>
        CachedChunkStore.open({
          dir: join(dir, sub),
          db: new Database(join(await mkdtemp(join(dir, 'db-')), 'state.sqlite3')),
          remote,
          secret,
          chunking: { minSize: 1024, avgSize: 4096, maxSize: 16384 },
          cacheLimitBytes: 1 << 20,
          fsync: false,
          logger: (l) => logs.push(l),
        });
      const secret = randomBytes(32);
      try {
        // Write through one chunk store (uploads to RGW), read through a fresh one (cold cache → fetch from RGW).
        const a = await open('a');
        const data = randomBytes(20_000);
        const refs: ChunkRef[] = [];
        let p = 0;
        for (const l of a.split(data, true)) {
          refs.push(await a.put(data.subarray(p, p + l)));
          p += l;
        }
        await a.flushUploads();
        await a.close();
        const victim = refs[0] as ChunkRef;
        const key = remoteKey(victim.id);
        const original = Buffer.from(await remote.get(key));

        // Find the RADOS object that holds the bytes: <bucket marker>_<object name> in the data pool.
        const conf = env.ARBOR_TEST_CEPH_CONF;
        const stats = JSON.parse(
          execFileSync(
            'radosgw-admin',
            ['-c', conf, 'bucket', 'stats', `--bucket=${env.ARBOR_TEST_RGW_BUCKET}`],
            { encoding: 'utf8' },
          ),
        ) as { marker: string };
        const radosName = `${stats.marker}_${prefix}/${key}`;
        const altered = Buffer.from(original);
        altered[altered.length >> 1] ^= 0x01;
        const file = join(dir, 'altered.bin');
        await writeFile(file, altered);
        execFileSync('rados', ['-c', conf, '-p', 'default.rgw.buckets.data', 'put', radosName, file]);

        const got = Buffer.from(await remote.get(key));
        assert.ok(got.equals(altered), 'RGW should serve the bytes now in RADOS (it does not verify them)');
        const b = await open('b');
        await assert.rejects(b.get(victim), ChunkCorruptError);
        assert.ok(
          logs.some((l) => l.includes(victim.id)),
          'the corrupt chunk is named in a log line',
        );
        // The other chunks still read fine.
        if (refs[1]) assert.equal((await b.get(refs[1])).length, refs[1].size);
        await b.close();
      } finally {
        for (const k of await remote.list('')) await remote.delete(k);
        await remote.close();
      }
    });
  });
}
