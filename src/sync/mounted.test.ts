// Three mounted replicas on one remote, kept in step only by their background sync loops: edits made through the
// kernel on each (creates, writes, renames across directories, hard links, deletes, chmod) appear on all, identical;
// a replica remounted while its remote is unreachable serves its cache, takes writes, and catches up later.
// Once per backend: dir, SFTP (the real sshd) and S3 (the real Ceph RGW).
import assert from 'node:assert/strict';
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
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli as arbor } from '../cli/testing/run-cli.js';
import { inCI } from '../remote/test-env.js';
import { backends, clearRemote } from './testing/e2e.js';

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
  for (const url of remotes) await clearRemote(url);
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
        const { url, unreachable } = await b.make(tmp);
        if (b.name !== 'dir') remotes.push(url);
        const dirs = ['a', 'b', 'c'].map((n) => join(tmp, n));
        const mnts = ['ma', 'mb', 'mc'].map((n) => join(tmp, n));
        const init = await arbor('init', dirs[0]!, url, '64');
        assert.equal(init.code, 0, init.stderr);
        for (const d of dirs.slice(1)) {
          const r = await arbor('clone', d, url, '64', '--key-file', join(dirs[0]!, 'key'));
          assert.equal(r.code, 0, r.stderr);
        }
        const mountOk = async (i: number): Promise<void> => {
          const r = await arbor('mount', dirs[i]!, mnts[i]!);
          assert.equal(r.code, 0, r.stderr);
          mounted.push(mnts[i]!);
          // The mount runs the sync loop behind its control socket; without it nothing below could converge.
          assert.ok(existsSync(join(dirs[i]!, 'control.sock')), 'the mount serves its control socket');
        };
        const unmountOk = async (i: number): Promise<void> => {
          const r = await arbor('unmount', mnts[i]!);
          assert.equal(r.code, 0, r.stderr);
          mounted.splice(mounted.indexOf(mnts[i]!), 1);
        };
        for (let i = 0; i < 3; i++) {
          await mkdir(mnts[i]!);
          await mountOk(i);
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

        // C goes offline: remounted on a remote it cannot reach, it still mounts, serves what it has cached and takes
        // writes; the others go on without it. Back on the real remote it catches up both ways.
        const cfgPath = join(dirs[2]!, 'config.json');
        const cfg = await readFile(cfgPath, 'utf8');
        assert.ok(cfg.includes(JSON.stringify(url)), 'the config names the remote');
        await unmountOk(2);
        await writeFile(cfgPath, cfg.replace(JSON.stringify(url), JSON.stringify(unreachable)));
        await mountOk(2);
        assert.ok(
          (await readFile(join(C, 'two.bin'))).equals(Buffer.alloc(300_000, 7)),
          'cached content offline',
        );
        await writeFile(join(C, 'offline.txt'), 'written offline\n');
        await writeFile(join(A, 'while-away.txt'), 'A went on\n');
        await eventually('B sees what A wrote while C is away', async () => {
          assert.ok((await tree(B)).some((l) => l.startsWith('/while-away.txt ')));
        });
        const st = await arbor('status', dirs[2]!, '--json');
        assert.equal(st.code, 0, st.stderr);
        assert.equal((JSON.parse(st.stdout) as { reachable: boolean }).reachable, false, st.stdout);
        assert.ok(
          !(await tree(A)).some((l) => l.startsWith('/offline.txt ')),
          'nothing leaked from C while away',
        );
        assert.ok(!(await tree(C)).some((l) => l.startsWith('/while-away.txt ')), 'C really was cut off');
        await unmountOk(2);
        await writeFile(cfgPath, cfg);
        await mountOk(2);
        await eventually('C catches up both ways', async () => {
          await same();
          const ta = await tree(A);
          assert.ok(ta.some((l) => l.startsWith('/offline.txt ')));
          assert.ok(ta.some((l) => l.startsWith('/while-away.txt ')));
        });

        const unmounted = await Promise.all(mnts.map((m) => arbor('unmount', m)));
        for (const r of unmounted) assert.equal(r.code, 0, r.stderr);
        mounted.splice(0, mounted.length, ...mounted.filter((m) => !mnts.includes(m)));
      },
    );
  });
}
