// arbor mounted and driven by ordinary tools: cp/mv/ln/rm -r/find/tar round trips with checksums, git, SQLite in WAL
// mode, concurrent writers, open-but-unlinked files, remote changes showing up without remount, forget.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ok, sh } from './testing/shell.js';
import { TestMount, mountSkip, tempArbor } from './testing/mounts.js';

/** Sorted `type path [link target]` lines and checksums of every file under `root`. */
async function manifest(root: string): Promise<string> {
  return ok(
    `cd '${root}' && find . -mindepth 1 -printf '%y %p %l %m\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum`,
  );
}

const waitFor = async (cond: () => Promise<boolean>, ms = 10_000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
};

describe('arbor mounted, driven by tools', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  let m: TestMount | undefined;
  let mnt = '';
  let src = '';
  before(async () => {
    t = await tempArbor('arbor-mounted-');
    m = await TestMount.start(t.dir, t.mnt);
    mnt = t.mnt;
    // A source tree with small and multi-chunk files, empty files, nested dirs, symlinks and hard links.
    src = path.join(t.base, 'src');
    fs.mkdirSync(path.join(src, 'a', 'b', 'c'), { recursive: true });
    fs.mkdirSync(path.join(src, 'empty-dir'));
    fs.writeFileSync(path.join(src, 'small.txt'), 'hello\n');
    fs.writeFileSync(path.join(src, 'empty'), '');
    fs.writeFileSync(path.join(src, 'a', 'big.bin'), randomBytes(6 << 20));
    fs.writeFileSync(path.join(src, 'a', 'b', 'mid.bin'), randomBytes(300_000));
    for (let i = 0; i < 50; i++)
      fs.writeFileSync(path.join(src, 'a', 'b', 'c', `f${i}`), randomBytes(i * 97));
    fs.symlinkSync('../small.txt', path.join(src, 'a', 'link'));
    fs.symlinkSync('nowhere', path.join(src, 'dangling'));
    fs.linkSync(path.join(src, 'small.txt'), path.join(src, 'a', 'hard.txt'));
    fs.chmodSync(path.join(src, 'a', 'b', 'mid.bin'), 0o600);
  });
  after(async () => {
    await m?.stop();
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('cp -a, find, mv, ln, tar and rm -r round-trip with identical checksums', async () => {
    await ok(`cp -a '${src}' '${mnt}/copy'`);
    assert.equal(await manifest(path.join(mnt, 'copy')), await manifest(src));
    const st = fs.statSync(path.join(mnt, 'copy', 'a', 'hard.txt'));
    assert.equal(st.nlink, 2, 'cp -a keeps hard links');
    assert.equal(fs.statSync(path.join(mnt, 'copy', 'small.txt')).ino, st.ino);

    await ok(
      `cd '${mnt}' && mv copy moved && ln -s moved/a alink && ln moved/empty moved/empty2 && mv moved/a/b moved/b2`,
    );
    assert.equal(fs.readFileSync(path.join(mnt, 'alink', 'link'), 'utf8'), 'hello\n');
    assert.equal(fs.statSync(path.join(mnt, 'moved', 'empty2')).nlink, 2);
    await ok(`cd '${mnt}' && mv moved/b2 moved/a/b && rm moved/empty2 alink`);
    assert.equal(await manifest(path.join(mnt, 'moved')), await manifest(src));

    const out = path.join(t!.base, 'untar');
    fs.mkdirSync(out);
    await ok(`tar -C '${mnt}/moved' -cf - . | tar -C '${out}' -xf -`);
    assert.equal(await manifest(out), await manifest(src));
    await ok(`mkdir '${mnt}/fromtar' && tar -C '${src}' -cf - . | tar -C '${mnt}/fromtar' -xf -`);
    assert.equal(await manifest(path.join(mnt, 'fromtar')), await manifest(src));

    const count = await ok(`find '${mnt}/moved' | wc -l`);
    assert.equal(Number(count.trim()), Number((await ok(`find '${src}' | wc -l`)).trim()));
    await ok(`rm -r '${mnt}/moved' '${mnt}/fromtar'`);
    assert.deepEqual(
      fs.readdirSync(mnt).filter((n) => n === 'moved' || n === 'fromtar'),
      [],
    );
  });

  it('setfattr/getfattr round-trip, and cp --preserve=xattr carries them', async () => {
    await ok(
      `cd '${mnt}' && echo x > xf && setfattr -n user.k1 -v v1 xf && setfattr -n user.k2 -v 0xdeadbeef xf`,
    );
    const dump = await ok(`cd '${mnt}' && getfattr -d -e hex xf`);
    assert.match(dump, /user\.k1=0x7631/);
    assert.match(dump, /user\.k2=0xdeadbeef/);
    await ok(
      `cd '${mnt}' && cp --preserve=xattr xf xf2 && getfattr -n user.k2 -e hex xf2 | grep -q deadbeef`,
    );
    assert.equal(
      (await sh(`cd '${mnt}' && setfattr -n trusted.nope -v 1 /nonexistent-file`)).code !== 0,
      true,
    );
  });

  it('sparse files: truncate -s 1T and dd seek far past the end are instant; holes read as zeros', async () => {
    const f = path.join(mnt, 'sparse');
    const t0 = Date.now();
    await ok(
      `truncate -s 1T '${f}' && dd if=/dev/zero of='${f}' bs=4k count=1 seek=128M conv=notrunc status=none`,
    );
    await ok(`printf hi | dd of='${f}' bs=1 seek=$((1<<39)) conv=notrunc status=none`);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    const st = fs.statSync(f);
    assert.equal(st.size, 2 ** 40);
    assert.ok(st.blocks <= 16, `st_blocks ${st.blocks}`);
    const fd = fs.openSync(f, 'r');
    try {
      const b = Buffer.alloc(8, 1);
      fs.readSync(fd, b, 0, 8, 2 ** 39 - 3);
      assert.deepEqual([...b], [0, 0, 0, 0x68, 0x69, 0, 0, 0]);
      fs.readSync(fd, b, 0, 8, 3 * 2 ** 38);
      assert.deepEqual([...b], [0, 0, 0, 0, 0, 0, 0, 0]);
    } finally {
      fs.closeSync(fd);
    }
    assert.notEqual((await sh(`truncate -s 9P '${f}'`)).code, 0, 'beyond the max file size: EFBIG');
    // SEEK_DATA/SEEK_HOLE find the two data extents, so copying the 1 TiB file reads and writes only those.
    const t1 = Date.now();
    await ok(`cp --sparse=always '${f}' '${f}.cp' && tar -S -cf '${t!.base}/sparse.tar' -C '${mnt}' sparse`);
    assert.ok(Date.now() - t1 < 10_000, `cp and tar -S took ${Date.now() - t1} ms`);
    const cp = fs.statSync(`${f}.cp`);
    assert.equal(cp.size, 2 ** 40);
    assert.ok(cp.blocks <= 16, `copy st_blocks ${cp.blocks}`);
    assert.ok(fs.statSync(`${t!.base}/sparse.tar`).size < 1 << 20, 'tar -S stored the holes as holes');
    const fd2 = fs.openSync(`${f}.cp`, 'r');
    try {
      const b = Buffer.alloc(4);
      fs.readSync(fd2, b, 0, 4, 2 ** 39 - 1);
      assert.deepEqual([...b], [0, 0x68, 0x69, 0]);
    } finally {
      fs.closeSync(fd2);
    }
    fs.unlinkSync(f);
    fs.unlinkSync(`${f}.cp`);
  });

  it('copy_file_range shares chunks: cp --reflink=auto and piecewise copies of 40 MiB move no data', async () => {
    // Chunks are content-addressed, so a byte-by-byte copy would end up with the same chunk files: what tells a
    // shared copy apart is that the daemon neither receives nor stores the 40 MiB (its read+write byte counters).
    const daemonIo = async (): Promise<number> => {
      const io = await fs.promises.readFile(`/proc/${m!.pid}/io`, 'utf8');
      return [...io.matchAll(/^[rw]char: (\d+)$/gm)].reduce((n, x) => n + Number(x[1]), 0);
    };
    const f = path.join(mnt, 'orig');
    fs.writeFileSync(f, randomBytes(40 << 20));
    await ok(`sync '${f}'`);
    // The original's own uploads (they yield to the writer, so they run after it) are not part of the copies.
    await m!.call('flushUploads');
    const before = await daemonIo();
    const t0 = Date.now();
    await ok(`cp --reflink=auto '${f}' '${f}.cp' && sync '${f}.cp'`);
    const took = Date.now() - t0;
    // 3 MiB pieces cut chunks at arbitrary places; the parts are joined again, so they are not re-cut and stored.
    await ok(`python3 - <<'EOF'
import os
s = os.open('${f}', os.O_RDONLY)
t = os.open('${f}.pieces', os.O_WRONLY | os.O_CREAT, 0o644)
off = 0
while True:
    n = os.copy_file_range(s, t, 3 << 20, off, off)
    if n == 0:
        break
    off += n
os.fsync(t)
EOF`);
    const moved = (await daemonIo()) - before;
    assert.ok(moved < 4 << 20, `the daemon moved ${moved} bytes for two 40 MiB copies`);
    assert.ok(took < 2000, `cp took ${took} ms`);
    await ok(`cmp '${f}' '${f}.cp' && cmp '${f}' '${f}.pieces'`);
    // An unaligned copy works too (its partial chunks are re-cut and stored).
    await ok(
      `python3 -c "import os; s = os.open('${f}', os.O_RDONLY); t = os.open('${f}.odd', os.O_WRONLY | os.O_CREAT); assert os.copy_file_range(s, t, 5 << 20, 12345, 0) == 5 << 20"`,
    );
    await ok(`cmp -n $((5 << 20)) -i 12345:0 '${f}' '${f}.odd'`);
    for (const x of ['', '.cp', '.pieces', '.odd']) fs.unlinkSync(f + x);
  });

  it('a git repository: clone, commit, gc and fsck inside the mount', async () => {
    const origin = path.join(t!.base, 'origin');
    await ok(
      `git init -q '${origin}' && cd '${origin}' && git config user.email t@e && git config user.name t && ` +
        `cp -r '${src}/a' . && git add -A && git commit -qm first && echo more >> small-change && git add -A && git commit -qm second`,
    );
    const repo = path.join(mnt, 'repo');
    await ok(`git clone -q '${origin}' '${repo}'`);
    await ok(
      `cd '${repo}' && git config user.email t@e && git config user.name t && ` +
        `echo edit > new-file && git mv small-change renamed && git add -A && git commit -qm third && ` +
        `git gc -q && git fsck --full --strict && git status --porcelain | wc -l`,
    ).then((o) => assert.equal(o.trim(), '0'));
    const log = await ok(`cd '${repo}' && git log --format=%s`);
    assert.deepEqual(log.trim().split('\n'), ['third', 'second', 'first']);
  });

  // Processes sharing a WAL database use a busy timeout: over FUSE (arbor, and C passthrough_ll alike) a reader can
  // briefly see SQLITE_BUSY while another process's wal-index is in flux, where ext4 happens not to show it.
  it('SQLite in WAL mode: transactions, a concurrent reader, integrity_check', async () => {
    const db = path.join(mnt, 'sql', 'test.db');
    fs.mkdirSync(path.dirname(db));
    await ok(`sqlite3 '${db}' "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"`);
    const script = Array.from(
      { length: 20 },
      (_, i) =>
        `BEGIN; ${Array.from({ length: 100 }, (_, j) => `INSERT INTO t(v) VALUES('${i}-${j}-${'z'.repeat(j)}');`).join(' ')} COMMIT;`,
    ).join('\n');
    fs.writeFileSync(path.join(t!.base, 'ins.sql'), `.timeout 10000\n${script}\n`);
    const [w, r] = await Promise.all([
      sh(`sqlite3 '${db}' < '${t!.base}/ins.sql'`),
      sh(
        `for i in $(seq 1 20); do sqlite3 -cmd '.timeout 10000' '${db}' 'SELECT count(*) FROM t;' || exit 1; done`,
      ),
    ]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(r.code, 0, r.stderr);
    const counts = r.stdout.trim().split('\n').map(Number);
    assert.ok(
      counts.every((c) => c % 100 === 0),
      `readers see whole transactions only: ${counts.join(',')}`,
    );
    assert.equal(
      (
        await ok(`sqlite3 '${db}' 'PRAGMA integrity_check; SELECT count(*) FROM t; PRAGMA journal_mode;'`)
      ).trim(),
      'ok\n2000\nwal',
    );
    await ok(`sqlite3 '${db}' 'PRAGMA wal_checkpoint(TRUNCATE);'`);
    assert.equal((await ok(`sqlite3 '${db}' 'SELECT count(*) FROM t;'`)).trim(), '2000');
  });

  it('concurrent writers: separate files in parallel, and appenders sharing one O_APPEND file', async () => {
    const d = path.join(mnt, 'conc');
    fs.mkdirSync(d);
    const jobs = Array.from({ length: 4 }, (_, i) =>
      sh(
        `head -c ${(i + 1) * 1_500_000} /dev/urandom > '${t!.base}/w${i}' && cp '${t!.base}/w${i}' '${d}/w${i}'`,
      ),
    );
    const appenders = Array.from({ length: 3 }, (_, i) =>
      sh(`for n in $(seq 1 200); do echo "writer-${i}-line-$n" >> '${d}/log'; done`),
    );
    for (const r of await Promise.all([...jobs, ...appenders])) assert.equal(r.code, 0, r.stderr);
    for (let i = 0; i < 4; i++) {
      assert.ok(fs.readFileSync(path.join(d, `w${i}`)).equals(fs.readFileSync(path.join(t!.base, `w${i}`))));
    }
    const lines = fs.readFileSync(path.join(d, 'log'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 600);
    assert.equal(new Set(lines).size, 600, 'no line lost or torn');
    assert.ok(lines.every((l) => /^writer-\d-line-\d+$/.test(l)));
  });

  it('a file unlinked while open keeps working through its descriptor (shell)', async () => {
    const out = await ok(
      `cd '${mnt}' && printf 'first\\n' > gone && exec 3<>gone && rm gone && [ ! -e gone ] && ls && ` +
        `printf 'second\\n' >&3 && cat /proc/self/fd/3 && exec 3<&-`,
    );
    assert.equal(out.split('\n').includes('gone'), false, 'the name is gone from listings');
    assert.ok(out.endsWith('second\n'), `reopened through /proc: ${JSON.stringify(out)}`);
    assert.ok(
      await waitFor(async () => (await m!.call('handles')) === 0),
      'handles are released once descriptors close',
    );
  });

  it("another replica's changes show up without remount (inval_entry / inval_inode)", async () => {
    fs.writeFileSync(path.join(mnt, 'shared.txt'), 'version one');
    assert.equal(fs.readFileSync(path.join(mnt, 'shared.txt'), 'utf8'), 'version one'); // now in the page cache
    fs.mkdirSync(path.join(mnt, 'rd'));
    assert.deepEqual(fs.readdirSync(path.join(mnt, 'rd')), []);

    await m!.call('remoteWrite', {
      path: '/shared.txt',
      data: Buffer.from('version two from B').toString('base64'),
    });
    assert.equal(fs.readFileSync(path.join(mnt, 'shared.txt'), 'utf8'), 'version two from B');
    assert.equal(fs.statSync(path.join(mnt, 'shared.txt')).size, 18);

    await m!.call('remoteWrite', { path: '/rd/new.txt', data: Buffer.from('new').toString('base64') });
    assert.deepEqual(fs.readdirSync(path.join(mnt, 'rd')), ['new.txt']);
    await m!.call('remoteRename', { path: '/rd/new.txt', to: '/rd/renamed.txt' });
    assert.equal(fs.existsSync(path.join(mnt, 'rd', 'new.txt')), false);
    assert.equal(fs.readFileSync(path.join(mnt, 'rd', 'renamed.txt'), 'utf8'), 'new');
    await m!.call('remoteUnlink', { path: '/rd/renamed.txt' });
    assert.equal(fs.existsSync(path.join(mnt, 'rd', 'renamed.txt')), false);
  });

  it('forget: after the kernel drops its caches, the inode table shrinks', async () => {
    const d = path.join(mnt, 'forget');
    fs.mkdirSync(d);
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(d, `f${i}`), '');
    for (let i = 0; i < 300; i++) fs.statSync(path.join(d, `f${i}`));
    const before = (await m!.call('inodes')) as number;
    assert.ok(before >= 300, `inode table holds the looked-up files (${before})`);
    fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
    const shrank = await waitFor(async () => ((await m!.call('inodes')) as number) < before - 250);
    assert.ok(
      shrank,
      `inode table did not shrink after drop_caches (${before} → ${String(await m!.call('inodes'))})`,
    );
    assert.equal(fs.readdirSync(d).length, 300, 'forgotten nodes are looked up again');
    assert.equal(fs.statSync(path.join(d, 'f7')).size, 0);
  });
});

describe('arbor mounted read-only', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  let m: TestMount | undefined;
  before(async () => {
    t = await tempArbor('arbor-ro-');
    m = await TestMount.start(t.dir, t.mnt);
    fs.writeFileSync(path.join(t.mnt, 'kept'), 'data');
    await m.stop();
    m = await TestMount.start(t.dir, t.mnt, ['--read-only']);
  });
  after(async () => {
    await m?.stop();
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('reads work and every change fails with EROFS', async () => {
    assert.equal(fs.readFileSync(path.join(t!.mnt, 'kept'), 'utf8'), 'data');
    for (const f of [
      () => fs.writeFileSync(path.join(t!.mnt, 'new'), 'x'),
      () => fs.writeFileSync(path.join(t!.mnt, 'kept'), 'x'),
      () => fs.mkdirSync(path.join(t!.mnt, 'd')),
      () => fs.unlinkSync(path.join(t!.mnt, 'kept')),
      () => fs.chmodSync(path.join(t!.mnt, 'kept'), 0o600),
    ]) {
      assert.throws(f, (e: NodeJS.ErrnoException) => e.code === 'EROFS');
    }
  });
});

describe('arbor mounted for other users (--allow-other, default_permissions)', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  let m: TestMount | undefined;
  const nobody = (cmd: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    sh(`setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '${cmd}'`);
  before(async () => {
    t = await tempArbor('arbor-other-');
    fs.chmodSync(t.base, 0o755);
    m = await TestMount.start(t.dir, t.mnt);
    fs.writeFileSync(path.join(t.mnt, 'root-file'), 'x');
    fs.mkdirSync(path.join(t.mnt, 'open-dir'), { mode: 0o777 });
    fs.chmodSync(path.join(t.mnt, 'open-dir'), 0o777);
  });
  after(async () => {
    await m?.stop();
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('a private mount (the default) is closed to other users; --allow-other opens it with kernel permission checks', async () => {
    const denied = await nobody(`ls ${t!.mnt}`);
    assert.notEqual(denied.code, 0, 'private by default');
    await m!.stop();
    m = await TestMount.start(t!.dir, t!.mnt, ['--allow-other']);
    assert.equal((await nobody(`cat ${t!.mnt}/root-file`)).stdout, 'x');
    const w = await nobody(`echo y > ${t!.mnt}/root-file`);
    assert.match(w.stderr, /Permission denied/);
    assert.match((await nobody(`touch ${t!.mnt}/new`)).stderr, /Permission denied/);
    assert.match((await nobody(`chmod 600 ${t!.mnt}/root-file`)).stderr, /Operation not permitted/);
    const mine = await nobody(`echo mine > ${t!.mnt}/open-dir/f && stat -c %u:%g ${t!.mnt}/open-dir/f`);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(mine.stdout.trim(), '65534:65534', 'new files belong to their creator');
  });
});
