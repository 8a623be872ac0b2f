// Three mounted replicas on one remote, kept in step only by their background sync loops: edits made through the
// kernel on each (creates, writes, renames across directories, hard links, deletes, chmod) appear on all, identical.
// Once per backend: dir, SFTP (the real sshd) and S3 (the real Ceph RGW).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openRemote } from '../remote/index.js';
import { inCI } from '../remote/test-env.js';
import { backends } from './testing/e2e.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');

function arbor(...args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, _stdout, stderr) => {
      const code = err ? Number((err as { code?: number }).code ?? 1) : 0;
      resolve({ code, stderr: String(stderr) });
    });
  });
}

async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const s = await lstat(p);
      let d = `${rel}/${name} ${s.mode.toString(8)} n${s.nlink}`;
      if (s.isFile())
        d += ` ${s.size} ${createHash('sha256')
          .update(await readFile(p))
          .digest('hex')
          .slice(0, 12)}`;
      if (s.isSymbolicLink()) d += ` -> ${await readlink(p)}`;
      out.push(d);
      if (s.isDirectory()) await walk(p, `${rel}/${name}`);
    }
  };
  await walk(root, '');
  return out;
}

const canMount = process.getuid?.() === 0 && existsSync('/dev/fuse');
const mounted: string[] = [];
const tmps: string[] = [];
const remotes: string[] = [];
after(async () => {
  for (const m of mounted) await arbor('unmount', m);
  for (const url of remotes) {
    const r = await openRemote(url);
    for (const k of await r.list('')) await r.delete(k);
    await r.close();
  }
  for (const t of tmps) await rm(t, { recursive: true, force: true });
});

async function eventually(what: string, check: () => Promise<void>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() - t0 > ms)
        throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

for (const b of backends) {
  describe(`mounted replicas kept in step by the background loop (${b.name} remote)`, () => {
    if ('missing' in b) {
      if (inCI) it('needs its server', () => assert.fail(b.missing));
      else it.skip(`skipped: ${b.missing}`, () => undefined);
      return;
    }
    it(
      'edits through three mounts converge to identical trees',
      { skip: !canMount && 'needs root and /dev/fuse' },
      async () => {
        const tmp = await mkdtemp(join(tmpdir(), `arbor-sync-mnt-${b.name}-`));
        tmps.push(tmp);
        const { url } = await b.make(tmp);
        if (b.name !== 'dir') remotes.push(url);
        const dirs = ['a', 'b', 'c'].map((n) => join(tmp, n));
        const mnts = ['ma', 'mb', 'mc'].map((n) => join(tmp, n));
        const init = await arbor('init', dirs[0]!, url, '64');
        assert.equal(init.code, 0, init.stderr);
        for (const d of dirs.slice(1)) {
          const r = await arbor('clone', d, url, '64', '--key-file', join(dirs[0]!, 'key'));
          assert.equal(r.code, 0, r.stderr);
        }
        for (let i = 0; i < 3; i++) {
          await mkdir(mnts[i]!);
          const r = await arbor('mount', dirs[i]!, mnts[i]!);
          assert.equal(r.code, 0, r.stderr);
          mounted.push(mnts[i]!);
          // The mount runs the sync loop behind its control socket; without it nothing below could converge.
          assert.ok(existsSync(join(dirs[i]!, 'control.sock')), 'the mount serves its control socket');
        }
        const [A, B, C] = mnts as [string, string, string];
        await mkdir(join(A, 'docs'));
        await writeFile(join(A, 'docs', 'one.txt'), 'one\n');
        await writeFile(join(B, 'two.bin'), Buffer.alloc(300_000, 7));
        await mkdir(join(C, 'tmp'));
        await symlink('docs/one.txt', join(C, 'sym'));
        const same = async (): Promise<void> => {
          const ta = await tree(A);
          assert.deepEqual(await tree(B), ta);
          assert.deepEqual(await tree(C), ta);
        };
        await eventually('first round converges', async () => {
          await same();
          assert.ok((await tree(A)).some((l) => l.startsWith('/two.bin')));
          assert.ok((await tree(B)).some((l) => l.startsWith('/sym')));
        });
        await rename(join(A, 'docs', 'one.txt'), join(A, 'moved.txt'));
        await link(join(B, 'two.bin'), join(B, 'docs', 'hard.bin'));
        await rm(join(C, 'tmp'), { recursive: true });
        await chmod(join(A, 'two.bin'), 0o600);
        await writeFile(join(C, 'docs', 'three.txt'), 'three\n');
        await eventually('second round converges', async () => {
          await same();
          const ta = await tree(A);
          assert.ok(ta.some((l) => l.startsWith('/moved.txt ')));
          assert.ok(!ta.some((l) => l.startsWith('/tmp ')));
          assert.ok(
            ta.some((l) => /^\/two\.bin 100600 n2 /.test(l)),
            ta.join('\n'),
          );
          assert.ok(ta.some((l) => l.startsWith('/docs/three.txt ')));
        });
        await unlink(join(B, 'docs', 'hard.bin'));
        await eventually('unlink reaches everyone', async () => {
          await same();
          assert.ok((await tree(C)).some((l) => /^\/two\.bin 100600 n1 /.test(l)));
        });
        const unmounted = await Promise.all(mnts.map((m) => arbor('unmount', m)));
        for (const r of unmounted) assert.equal(r.code, 0, r.stderr);
        mounted.splice(0, mounted.length, ...mounted.filter((m) => !mnts.includes(m)));
      },
    );
  });
}
