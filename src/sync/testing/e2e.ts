// The end-to-end scenario through the real CLI (e2e.test.ts runs it on every backend): three replicas on one remote,
// edits everywhere, sync, identical trees, conflict copies, a partitioned replica that catches up, gc, then a fresh
// clone that reads every current file.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWorkspace } from '../../cli/workspace.js';
import { Arbor } from '../../index.js';
import { openRemote } from '../../remote/index.js';
import { serverEnv } from '../../remote/test-env.js';
import { runCli, runCliOk } from '../../cli/testing/run-cli.js';

const arbor = runCli;

async function ok(...args: string[]): Promise<string> {
  return (await runCliOk(...args)).stdout;
}

/** Every visible path: kind, mode, size, nlink, content hash (files) or target (symlinks). */
async function digest(dir: string): Promise<Map<string, string>> {
  const ws = await openWorkspace(dir);
  try {
    const a = new Arbor(ws.tree);
    const outMap = new Map<string, string>();
    for (const [path] of ws.tree.snapshot()) {
      const s = await a.lstat(path);
      let d = `${s.kind} ${s.mode.toString(8)} n${s.nlink}`;
      if (s.kind === 'file')
        d += ` ${s.size} ${createHash('sha256')
          .update(await a.readFile(path))
          .digest('hex')
          .slice(0, 16)}`;
      if (s.kind === 'symlink') d += ` -> ${await a.readlink(path)}`;
      outMap.set(path, d);
    }
    return outMap;
  } finally {
    await ws.close();
  }
}

async function syncAll(dirs: readonly string[]): Promise<void> {
  // Everyone publishes (and pulls what is there), then all but the last pull again: everyone has everyone's.
  for (const d of [...dirs, ...dirs.slice(0, -1)]) await ok('sync', d);
}

function withSegment(url: string, seg: string): string {
  const q = url.indexOf('?');
  const base = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q);
  return `${base.replace(/\/$/, '')}/${seg}${query}`;
}

function addQuery(url: string, params: Record<string, string>): string {
  const qs = Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
  return url + (url.includes('?') ? '&' : '?') + qs;
}

export interface Backend {
  name: string;
  /** A fresh remote URL, and one that points at the same kind of backend but cannot be reached. */
  make(tmp: string): Promise<{ url: string; unreachable: string }>;
}

export const backends: Array<Backend | { name: string; missing: string }> = [
  {
    name: 'dir',
    make: async (tmp) => ({ url: join(tmp, 'remote'), unreachable: '/dev/null/arbor-unreachable' }),
  },
];
const sftp = serverEnv(['ARBOR_TEST_SFTP_URL', 'ARBOR_TEST_SFTP_KEY'] as const);
backends.push(
  'missing' in sftp
    ? { name: 'sftp', missing: sftp.missing }
    : {
        name: 'sftp',
        make: async (tmp) => {
          const url = addQuery(
            withSegment(sftp.env.ARBOR_TEST_SFTP_URL, `sync-e2e-${randomBytes(5).toString('hex')}`),
            {
              key: sftp.env.ARBOR_TEST_SFTP_KEY,
              known_hosts: join(tmp, 'known_hosts'),
            },
          );
          return { url, unreachable: url.replace(/@127\.0\.0\.1:\d+/, '@127.0.0.1:1') };
        },
      },
);
const s3 = serverEnv(['ARBOR_TEST_S3_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const);
backends.push(
  'missing' in s3
    ? { name: 's3', missing: s3.missing }
    : {
        name: 's3',
        make: async () => {
          const url = withSegment(s3.env.ARBOR_TEST_S3_URL, `sync-e2e-${randomBytes(5).toString('hex')}`);
          return {
            url,
            unreachable: url.replace(/endpoint=http:\/\/127\.0\.0\.1:\d+/, 'endpoint=http://127.0.0.1:1'),
          };
        },
      },
);

/** Delete every object under a test's remote URL (SFTP and S3 remotes outlive the test's temp directory). */
export async function clearRemote(url: string): Promise<void> {
  const r = await openRemote(url);
  try {
    for (const k of await r.list('')) await r.delete(k);
  } finally {
    await r.close();
  }
}

/** Run the scenario on one backend; `cleanups` receives what removes its remote objects and temp files. */
export async function scenario(b: Backend, cleanups: Array<() => Promise<void>>): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), `arbor-sync-e2e-${b.name}-`));
  const { url, unreachable } = await b.make(tmp);
  cleanups.push(async () => {
    if (b.name !== 'dir') await clearRemote(url);
    await rm(tmp, { recursive: true, force: true });
  });
  const [A, B, C, D] = ['a', 'b', 'c', 'd'].map((n) => join(tmp, n)) as [string, string, string, string];
  const key = join(tmp, 'a', 'key');
  const same = async (what: string): Promise<Map<string, string>> => {
    const da = await digest(A);
    assert.deepEqual(await digest(B), da, `${what}: B differs from A`);
    assert.deepEqual(await digest(C), da, `${what}: C differs from A`);
    return da;
  };

  // init on an already-initialized remote is refused, pointing at clone, in one line.
  await ok('init', A, url, '64');
  const again = await arbor('init', join(tmp, 'x'), url);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /^arbor: .*already holds an arbor filesystem; use arbor clone/);
  assert.equal(again.stderr.trim().split('\n').length, 1, 'errors are one line');
  await ok('clone', B, url, '64', '--key-file', key);
  await ok('clone', C, url, '64', '--key-file', key);

  // Edits on all three: creates, a multi-chunk file, a symlink, a file both will later write.
  const big = randomBytes(3 * 1024 * 1024 + 12345);
  await writeFile(join(tmp, 'big.bin'), big);
  await writeFile(join(tmp, 'small.txt'), 'small\n');
  await writeFile(join(tmp, 'va'), 'from A\n');
  await ok('mkdir', A, '/docs/sub');
  await ok('put', A, join(tmp, 'big.bin'), '/docs/big.bin');
  await ok('put', A, join(tmp, 'small.txt'), '/docs/sub/small.txt');
  await ok('put', A, join(tmp, 'va'), '/clash.txt');
  await ok('mkdir', B, '/photos');
  await ok('put', B, join(tmp, 'small.txt'), '/photos/a.txt');
  await ok('ln', C, '-s', 'docs/big.bin', '/link-to-big');
  await ok('mkdir', C, '/tmpdir');
  await syncAll([A, B, C]);
  const d1 = await same('after creates');
  assert.ok(
    d1.has('/docs/big.bin') && d1.has('/photos/a.txt') && d1.has('/link-to-big') && d1.has('/clash.txt'),
  );

  // Renames across directories, hard links, deletes, chmod, and two replicas writing one file — on different replicas.
  await writeFile(join(tmp, 'va2'), 'A again\n');
  await writeFile(join(tmp, 'vb'), 'from B\n');
  await ok('mv', A, '/docs/sub/small.txt', '/photos/small.txt');
  await ok('ln', B, '/photos/a.txt', '/docs/hardlink.txt');
  await ok('rm', C, '-r', '/tmpdir');
  await ok('chmod', C, '600', '/docs/big.bin');
  await ok('put', A, join(tmp, 'va2'), '/clash.txt');
  await ok('put', B, join(tmp, 'vb'), '/clash.txt');
  await ok('mv', B, '/photos', '/pictures');
  await syncAll([A, B, C]);
  const d2 = await same('after renames, links, deletes, chmod, conflict');
  const pics = '/pictures';
  assert.equal(d2.has('/tmpdir'), false);
  assert.ok(d2.get('/docs/big.bin')!.startsWith('file 100600'), d2.get('/docs/big.bin'));
  assert.ok(d2.has(`${pics}/small.txt`), [...d2.keys()].join(' '));
  assert.match(d2.get('/docs/hardlink.txt')!, / n2 /);
  const bigBack = join(tmp, 'big.back');
  await ok('get', C, '/docs/big.bin', bigBack);
  assert.ok((await readFile(bigBack)).equals(big), 'content survives the round trip byte for byte');
  const clash = [...d2.keys()].filter((p) => p.startsWith('/clash'));
  assert.equal(clash.length, 2, `a conflict copy appears beside the file: ${clash.join(' ')}`);
  assert.ok(
    clash.some((p) => /^\/clash\.conflict-[A-Za-z0-9_-]+-\d{8}T\d{6}\.txt$/.test(p)),
    clash.join(' '),
  );
  const texts: string[] = [];
  for (const p of clash) texts.push(await ok('cat', A, p)); // one at a time: each command takes the directory's lock
  assert.deepEqual(texts.sort(), ['A again\n', 'from B\n']);

  // C is partitioned away: it keeps working offline, sync fails with one line, then it catches up.
  const cfgPath = join(C, 'config.json');
  const cfg = await readFile(cfgPath, 'utf8');
  await writeFile(cfgPath, cfg.replace(JSON.stringify(url), JSON.stringify(unreachable)));
  await writeFile(join(tmp, 'offline'), 'written offline\n');
  await ok('put', C, join(tmp, 'offline'), '/offline.txt');
  await ok('cat', C, '/docs/big.bin');
  const failed = await arbor('sync', C);
  assert.notEqual(failed.code, 0, 'sync exits non-zero while the remote is unreachable');
  assert.equal(failed.stderr.trim().split('\n').length, 1, failed.stderr);
  const st = JSON.parse(await ok('status', C, '--json')) as { reachable: boolean; pendingBatches: number };
  assert.equal(st.reachable, false);
  assert.ok(st.pendingBatches > 0);
  await ok('rm', A, '/docs/hardlink.txt');
  await ok('sync', A);
  await writeFile(cfgPath, cfg);
  await syncAll([A, B, C]);
  const d3 = await same('after the partition healed');
  assert.ok(d3.has('/offline.txt') && !d3.has('/docs/hardlink.txt'));
  assert.match(d3.get(`${pics}/a.txt`)!, / n1 /);
  await ok('sync', C); // picks up the others' position announcements too: nothing left behind
  const st2 = JSON.parse(await ok('status', C, '--json')) as {
    reachable: boolean;
    pendingBatches: number;
    replicas: Array<{ behind: number }>;
  };
  assert.equal(st2.reachable, true);
  assert.equal(st2.pendingBatches, 0);
  assert.equal(st2.replicas.length, 3);
  assert.ok(st2.replicas.every((r) => r.behind === 0));

  // Overwrite the big file (its chunks become history), gc keeping one version, then a fresh clone reads everything.
  await ok('put', A, join(tmp, 'small.txt'), '/docs/big.bin');
  // Everyone must have seen the overwrite (and said so) before the old content may go.
  await syncAll([A, B, C]);
  const gc = JSON.parse(await ok('gc', A, '--grace', '0', '--keep', '1v', '--json')) as { deleted: number };
  assert.ok(gc.deleted >= 1, `gc deleted the overwritten content's chunks (${JSON.stringify(gc)})`);
  await ok('clone', D, url, '64', '--key-file', key);
  assert.deepEqual(await digest(D), await digest(A));
  for (const dir of [A, B, C, D]) {
    const f = await arbor('fsck', dir);
    assert.equal(f.code, 0, `fsck ${dir}: ${f.stdout}${f.stderr}`);
  }
}
