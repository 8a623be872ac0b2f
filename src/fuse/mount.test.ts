// Mounted memfs driven by ordinary tools and syscalls (root; each suite mounts in a temp dir and
// unmounts in after()). The daemon runs in a child process so blocking tools never stall the server.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MemFs } from './examples/memfs.js';
import { checkThreadpool, isMounted, mount, unmount } from './mount.js';

const MAIN = fileURLToPath(new URL('./examples/memfs-main.js', import.meta.url));
const canMount = process.getuid?.() === 0 && fs.existsSync('/dev/fuse');
const skip = canMount ? false : 'needs root and /dev/fuse';

/** A non-root mount needs /dev/fuse open to others (0666 on most distributions; 0600 on some CI machines). */
function nonRootSkip(): string | false {
  if (!canMount) return 'needs root to set the test up';
  if ((fs.statSync('/dev/fuse').mode & 0o006) !== 0o006)
    return '/dev/fuse is not accessible to other users here';
  if (fs.statSync(MAIN).mode & 0o004 ? false : true) return 'the daemon script is not world-readable';
  return false;
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a bash script without blocking the event loop; never rejects. */
function sh(script: string, cwd?: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', script], { cwd, maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(script: string, cwd?: string): Promise<string> {
  const r = await sh(script, cwd);
  assert.equal(r.code, 0, `script failed (${r.code}): ${script}\n${r.stderr}`);
  return r.stdout;
}

class Daemon {
  #next = 1;
  readonly #waiting = new Map<number, (m: { result?: unknown; error?: string }) => void>();
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(
    readonly child: ChildProcess,
    readonly mnt: string,
  ) {
    child.on('message', (raw) => {
      const m = raw as { id?: number; result?: unknown; error?: string };
      if (m.id !== undefined) this.#waiting.get(m.id)?.(m);
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((r) => child.on('exit', (code) => r(code)));
  }

  static async start(mnt: string, args: string[] = []): Promise<Daemon> {
    const child = spawn(process.execPath, [MAIN, mnt, ...args], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const d = new Daemon(child, mnt);
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: { ready?: boolean }) => m.ready && resolve());
      void d.exited.then((code) => reject(new Error(`daemon exited ${code}: ${d.stderr}`)));
    });
    return d;
  }

  call(cmd: string, fields: Record<string, string> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.result)));
      this.child.send({ id, cmd, ...fields });
    });
  }

  /** Unmount (lazily if need be) and make sure the process is gone. */
  async stop(): Promise<void> {
    if (isMounted(this.mnt)) await unmount(this.mnt, { lazy: true }).catch(() => undefined);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

async function tempMount(args: string[] = []): Promise<{ dir: string; mnt: string; d: Daemon }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuse-test-'));
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const d = await Daemon.start(mnt, args);
  return { dir, mnt, d };
}

async function cleanup(t: { dir: string; d: Daemon } | undefined): Promise<void> {
  if (!t) return;
  await t.d.stop();
  fs.rmSync(t.dir, { recursive: true, force: true });
}

describe('threadpool guard', () => {
  it('refuses to serve when UV_THREADPOOL_SIZE cannot hold the parked reads plus spare threads', () => {
    const saved = process.env.UV_THREADPOOL_SIZE;
    try {
      delete process.env.UV_THREADPOOL_SIZE; // libuv's default: 4
      assert.throws(() => checkThreadpool(4, 4), /UV_THREADPOOL_SIZE >= 8/);
      process.env.UV_THREADPOOL_SIZE = '8';
      assert.doesNotThrow(() => checkThreadpool(4, 4));
    } finally {
      if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE;
      else process.env.UV_THREADPOOL_SIZE = saved;
    }
  });
});

describe('memfs mounted', { skip }, () => {
  let t: { dir: string; mnt: string; d: Daemon } | undefined;
  let mnt = '';
  before(async () => {
    t = await tempMount();
    mnt = t.mnt;
  });
  after(() => cleanup(t));

  it('mount shows the filesystem type and the root is an empty directory', async () => {
    assert.ok(isMounted(mnt));
    assert.match(await ok(`grep " ${mnt} " /proc/mounts`), /^memfs \S+ fuse\.memfs /);
    assert.deepEqual(fs.readdirSync(mnt), []);
  });

  it('mkdir, ls, cp, mv, ln, ln -s, find, stat, rm -r', async () => {
    const out = await ok(
      `set -e
       mkdir -p a/b/c && echo one > a/f1 && cp a/f1 a/b/f2 && mv a/b/f2 a/b/c/f3
       ln a/f1 a/hard && ln -s ../f1 a/b/sym
       cat a/b/sym; stat -c '%h %s %F' a/f1; readlink a/b/sym
       find a | sort
       mv a z; ls z; rm -r z; ls -A`,
      mnt,
    );
    assert.equal(
      out,
      [
        'one',
        '2 4 regular file',
        '../f1',
        'a',
        'a/b',
        'a/b/c',
        'a/b/c/f3',
        'a/b/sym',
        'a/f1',
        'a/hard',
        'b',
        'f1',
        'hard',
        '',
      ].join('\n'),
    );
  });

  it('rename: RENAME2 NOREPLACE refuses an existing name, EXCHANGE swaps, plain rename replaces', async () => {
    const py = `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def r2(a, b, flags):
    rc = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 0 if rc == 0 else ctypes.get_errno()
open('x','w').write('X'); open('y','w').write('Y')
print(r2('x', 'y', 1), open('x').read(), open('y').read())
print(r2('x', 'y', 2), open('x').read(), open('y').read())
os.rename('x', 'y'); print(os.path.exists('x'), open('y').read())
print(r2('y', 'z', 1), open('z').read())
`;
    const out = await ok(`python3 -c "$PY"`.replace('$PY', py.replace(/"/g, '\\"')), mnt);
    assert.equal(out, `17 X Y\n0 Y X\nFalse Y\n0 Y\n`); // 17 = EEXIST
    const mv = await ok('echo new > m1 && mv m1 m2 && cat m2 && ls m1 2>/dev/null | wc -l', mnt);
    assert.equal(mv, 'new\n0\n');
  });

  it('dd round trip of 64 MiB keeps the checksum (also after dropping caches)', async () => {
    const src = path.join(t!.dir, 'src.bin');
    fs.writeFileSync(src, randomBytes(64 << 20));
    const want = createHash('sha256').update(fs.readFileSync(src)).digest('hex');
    await ok(`dd if=${src} of=${mnt}/big bs=1M status=none conv=fsync`);
    assert.equal((await ok(`sha256sum < ${mnt}/big`)).split(' ')[0], want);
    await ok('sync; echo 3 > /proc/sys/vm/drop_caches');
    assert.equal((await ok(`dd if=${mnt}/big bs=1M status=none | sha256sum`)).split(' ')[0], want);
    // Unaligned reads across chunk boundaries.
    const piece = (await ok(`dd if=${mnt}/big bs=1000 skip=1048 count=3 status=none | sha256sum`)).split(
      ' ',
    )[0];
    const exp = createHash('sha256').update(fs.readFileSync(src).subarray(1048_000, 1051_000)).digest('hex');
    assert.equal(piece, exp);
    fs.unlinkSync(src);
    await ok(`rm ${mnt}/big`);
  });

  it('setfattr/getfattr round trip, list and remove', async () => {
    const out = await ok(
      `touch xf && setfattr -n user.color -v blue xf && setfattr -n user.size -v 42 xf
       getfattr --only-values -n user.color xf; echo
       getfattr -d xf | grep -c user.
       setfattr -x user.color xf; getfattr -n user.color xf 2>&1 | grep -c 'No such attribute'`,
      mnt,
    );
    assert.equal(out, 'blue\n2\n1\n');
  });

  it('truncate shrinks and grows with zeros', async () => {
    const out = await ok(
      `printf 'abcdefghij' > tr && truncate -s 4 tr && cat tr; echo
       truncate -s 8 tr && od -An -c tr | tr -s ' '; stat -c %s tr`,
      mnt,
    );
    assert.equal(out, 'abcd\n a b c d \\0 \\0 \\0 \\0\n8\n');
  });

  it('O_APPEND appends from two descriptors', async () => {
    const py = `
import os
a = os.open('ap', os.O_WRONLY|os.O_CREAT|os.O_APPEND, 0o644)
b = os.open('ap', os.O_WRONLY|os.O_APPEND)
for i in range(3):
    os.write(a, b'A'); os.write(b, b'B')
os.close(a); os.close(b)
print(open('ap').read())`;
    assert.equal(await ok(`python3 -c "${py}"`, mnt), 'ABABAB\n');
  });

  it('mmap: shared writes reach the file, and reads see file data', async () => {
    const py = `
import mmap, os
fd = os.open('mm', os.O_RDWR|os.O_CREAT, 0o644)
os.write(fd, b'hello world' + bytes(8192))
m = mmap.mmap(fd, 8192)
print(m[:5].decode())
m[6:11] = b'WORLD'
m[5000:5003] = b'xyz'
m.flush(); m.close(); os.close(fd)
`;
    assert.equal(await ok(`python3 -c "${py}"`, mnt), 'hello\n');
    await ok('sync; echo 3 > /proc/sys/vm/drop_caches');
    assert.equal(
      await ok(`head -c 11 mm; echo; dd if=mm bs=1 skip=5000 count=3 status=none`, mnt),
      'hello WORLD\nxyz',
    );
  });

  it('flock: a second holder is refused while the first holds, admitted after', async () => {
    await ok('touch fl', mnt);
    const holder = sh(`flock fl -c 'echo held > held.flag; sleep 1.5'`, mnt);
    await ok('for i in $(seq 100); do [ -e held.flag ] && break; sleep 0.05; done; [ -e held.flag ]', mnt);
    const busy = await sh('flock -n fl -c true', mnt);
    assert.equal(busy.code, 1, 'flock -n must fail while held');
    assert.equal((await holder).code, 0);
    assert.equal((await sh('flock -n fl -c true', mnt)).code, 0);
  });

  it('fcntl locks: byte ranges conflict between processes and are released on close', async () => {
    const holder = `
import fcntl, os, time
f = open('lk', 'w'); fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
open('lk.flag', 'w').close(); time.sleep(1.5); f.close()`;
    const tryer = `
import fcntl, sys
f = open('lk', 'r+')
def attempt(start):
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, start); fcntl.lockf(f, fcntl.LOCK_UN, 10, start); return 'ok'
    except OSError as e:
        return 'busy'
print(attempt(0), attempt(20))`;
    await ok('touch lk', mnt);
    const h = sh(`python3 -c "${holder}"`, mnt);
    await ok('for i in $(seq 100); do [ -e lk.flag ] && break; sleep 0.05; done; [ -e lk.flag ]', mnt);
    assert.equal(await ok(`python3 -c "${tryer}"`, mnt), 'busy ok\n');
    assert.equal((await h).code, 0);
    assert.equal(await ok(`python3 -c "${tryer}"`, mnt), 'ok ok\n');
  });

  it('fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range', async () => {
    const py = `
import os
fd = os.open('fa', os.O_RDWR|os.O_CREAT, 0o644)
os.write(fd, b'0123456789')
os.posix_fallocate(fd, 0, 100)
print(os.fstat(fd).st_size, os.lseek(fd, 3, os.SEEK_DATA), os.lseek(fd, 3, os.SEEK_HOLE))
out = os.open('fb', os.O_RDWR|os.O_CREAT, 0o644)
print(os.copy_file_range(fd, out, 4, 2, 0))
os.close(fd); os.close(out)
print(open('fb').read())`;
    assert.equal(await ok(`python3 -c "${py}"`, mnt), '100 3 100\n4\n2345\n');
  });

  it('statfs: df reports the capacity', async () => {
    const out = await ok(`stat -f -c '%S %b %l' ${mnt}; df -B1 --output=size ${mnt} | tail -1`);
    const [bs, blocks, namelen] = out.split('\n')[0]!.split(' ').map(Number);
    assert.equal(bs, 4096);
    assert.equal(namelen, 255);
    assert.equal(blocks! * bs!, 64 * 2 ** 30);
    assert.equal(Number(out.split('\n')[1]!.trim()), 64 * 2 ** 30);
  });

  it('symlink and hard-link counts, chmod, chown, touch -d', async () => {
    const out = await ok(
      `touch p && chmod 640 p && chown 123:456 p && touch -d '2001-02-03 04:05:06.123456789' p
       stat -c '%a %u %g %y' p`,
      mnt,
    );
    assert.equal(out, '640 123 456 2001-02-03 04:05:06.123456789 +0000\n');
  });

  it('errors: ENOENT, EEXIST, ENOTEMPTY, EISDIR come back as errno', async () => {
    const py = `
import os, errno
def code(f):
    try: f(); return 'ok'
    except OSError as e: return errno.errorcode[e.errno]
os.mkdir('e1'); open('e1/x','w').close()
print(code(lambda: os.stat('nope')), code(lambda: os.mkdir('e1')), code(lambda: os.rmdir('e1')), code(lambda: os.unlink('e1')))`;
    assert.equal(await ok(`python3 -c "${py}"`, mnt), 'ENOENT EEXIST ENOTEMPTY EISDIR\n');
  });

  it('forget: dropping the kernel caches lowers memfs’s count of kernel-held nodes', async () => {
    await ok('mkdir many && cd many && for i in $(seq 300); do : > f$i; done && ls -l > /dev/null', mnt);
    const before = (await t!.d.call('known')) as number;
    assert.ok(before > 300, `kernel holds ${before} nodes`);
    let after = before;
    for (let i = 0; i < 40 && after > before - 250; i++) {
      await ok('sync; echo 2 > /proc/sys/vm/drop_caches');
      await new Promise((r) => setTimeout(r, 50));
      after = (await t!.d.call('known')) as number;
    }
    assert.ok(after <= before - 250, `known nodes fell from ${before} to ${after}`);
    await ok('rm -r many', mnt);
  });
});

describe('kernel notifications', { skip }, () => {
  let t: { dir: string; mnt: string; d: Daemon } | undefined;
  before(async () => {
    t = await tempMount(['--ttl=3600', '--keep-cache']); // long TTLs: only a notification can refresh the kernel's view
  });
  after(() => cleanup(t));

  it('inval_inode: new content written behind the kernel shows after the notification', async () => {
    const f = path.join(t!.mnt, 'n.txt');
    await ok(`echo old-content > ${f} && cat ${f}`);
    // Same size, same times: nothing in the attributes tells the kernel its pages are stale.
    await t!.d.call('setContent', { path: 'n.txt', data: Buffer.from('new-content\n').toString('base64') });
    assert.equal(await ok(`cat ${f}`), 'old-content\n', 'cached before the notification');
    assert.equal(await t!.d.call('invalInode', { path: 'n.txt' }), true);
    assert.equal(await ok(`cat ${f}`), 'new-content\n');
  });

  it('inval_entry: a rename made elsewhere shows after the notification', async () => {
    const m = t!.mnt;
    await ok(`mkdir ${m}/d && echo x > ${m}/d/before && stat ${m}/d/before > /dev/null`);
    await t!.d.call('renameBehind', { path: 'd', from: 'before', to: 'after' });
    assert.equal((await sh(`stat ${m}/d/before`)).code, 0, 'old name still cached');
    assert.equal(await t!.d.call('invalEntry', { path: 'd', from: 'before' }), true);
    assert.notEqual((await sh(`stat ${m}/d/before`)).code, 0, 'old name gone');
    assert.equal(await ok(`cat ${m}/d/after`), 'x\n');
  });

  it('notify_delete: a name deleted elsewhere disappears from the kernel', async () => {
    const m = t!.mnt;
    await ok(`mkdir ${m}/del && echo y > ${m}/del/gone && stat ${m}/del/gone > /dev/null`);
    assert.equal(await t!.d.call('deleteBehind', { path: 'del', from: 'gone' }), true);
    assert.notEqual((await sh(`stat ${m}/del/gone`)).code, 0);
    assert.equal(await ok(`ls -A ${m}/del | wc -l`), '0\n');
  });
});

describe('mount lifecycle', { skip }, () => {
  const temps: Array<{ dir: string; mnt: string; d: Daemon }> = [];
  after(async () => {
    for (const t of temps) await cleanup(t);
  });

  it('mount() rejects when mount(8) fails, leaving nothing mounted and no read loop behind', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuse-bad-'));
    try {
      await assert.rejects(
        mount(dir, new MemFs(), {
          extraOptions: ['no_such_option_xyz'],
          skipThreadpoolCheck: true,
          handleSignals: false,
        }),
        /mount .* failed/,
      );
      assert.equal(isMounted(dir), false);
      await assert.rejects(
        mount(path.join(dir, 'missing'), new MemFs(), { skipThreadpoolCheck: true }),
        /ENOENT/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM unmounts cleanly and the daemon exits', async () => {
    const t = await tempMount();
    temps.push(t);
    await ok(`echo hi > ${t.mnt}/f`);
    t.d.child.kill('SIGTERM');
    await t.d.exited;
    assert.equal(isMounted(t.mnt), false);
    assert.deepEqual(fs.readdirSync(t.mnt), [], 'the plain directory is back');
  });

  it('kill -9 leaves a dead mount that unmount() clears', async () => {
    const t = await tempMount();
    temps.push(t);
    t.d.child.kill('SIGKILL');
    await t.d.exited;
    assert.equal(isMounted(t.mnt), true);
    const r = await sh(`ls ${t.mnt}`);
    assert.match(r.stderr, /Transport endpoint is not connected/);
    assert.equal(await unmount(t.mnt), true);
    assert.equal(isMounted(t.mnt), false);
    assert.equal(await unmount(t.mnt), false, 'nothing left to unmount');
  });

  it('read-only mounts refuse writes with EROFS', async () => {
    const t = await tempMount(['--ro']);
    temps.push(t);
    const r = await sh(`touch ${t.mnt}/x`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Read-only file system/);
  });

  it('mounting through fusermount3 (descriptor received over SCM_RIGHTS) works', async () => {
    const t = await tempMount(['--fusermount']);
    temps.push(t);
    assert.match(await ok(`grep " ${t.mnt} " /proc/mounts`), /fuse\.memfs/);
    assert.equal(await ok(`echo via-fusermount > ${t.mnt}/f && cat ${t.mnt}/f`), 'via-fusermount\n');
    await t.d.call('unmount');
    assert.equal(await t.d.exited, 0);
    assert.equal(isMounted(t.mnt), false);
  });

  it('a normal user mounts through fusermount3', { skip: nonRootSkip() }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuse-user-'));
    fs.chmodSync(dir, 0o755);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    fs.chownSync(mnt, 65534, 65534);
    const child = spawn(process.execPath, [MAIN, mnt], {
      uid: 65534,
      gid: 65534,
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const d = new Daemon(child, mnt);
    temps.push({ dir, mnt, d });
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: { ready?: boolean }) => m.ready && resolve());
      void d.exited.then((code) => reject(new Error(`daemon exited ${code}: ${d.stderr}`)));
    });
    assert.match(await ok(`grep " ${mnt} " /proc/mounts`), /user_id=65534/);
    // Without allow_other only the mounting user may look inside (root included is refused).
    assert.notEqual((await sh(`stat ${mnt}`)).code, 0);
    const asUser = await ok(
      `su nobody -s /bin/sh -c 'echo mine > ${mnt}/f && stat -c "%u %U" ${mnt} ${mnt}/f && cat ${mnt}/f'`,
    );
    assert.equal(asUser, '65534 nobody\n65534 nobody\nmine\n');
    await ok(`su nobody -s /bin/sh -c 'fusermount3 -u ${mnt}'`);
    assert.equal(await d.exited, 0);
  });

  it('allow_other lets other users in; default_permissions makes the kernel check mode bits', async () => {
    const t = await tempMount(['--allow-other', '--default-permissions']);
    temps.push(t);
    fs.chmodSync(t.dir, 0o755);
    assert.match(await ok(`grep " ${t.mnt} " /proc/mounts`), /default_permissions,allow_other/);
    await ok(`echo shared > ${t.mnt}/r && chmod 644 ${t.mnt}/r`);
    assert.equal(await ok(`su nobody -s /bin/sh -c 'cat ${t.mnt}/r'`), 'shared\n');
    const denied = await sh(`su nobody -s /bin/sh -c 'touch ${t.mnt}/mine'`);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
  });

  it('a writeback-cache mount round-trips data', async () => {
    const t = await tempMount(['--writeback']);
    temps.push(t);
    const out = await ok(
      `cd ${t.mnt} && head -c 3000000 /dev/urandom > /tmp/wb.$$ && cp /tmp/wb.$$ w && sync && echo 3 > /proc/sys/vm/drop_caches && cmp w /tmp/wb.$$ && echo same; rm -f /tmp/wb.$$`,
    );
    assert.equal(out, 'same\n');
  });
});
