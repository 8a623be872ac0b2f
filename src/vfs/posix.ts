// The project's POSIX conformance suite: name → test(dir), run against a plain temp directory (checking the tests
// against the kernel's own filesystem) and against an arbor mount. Uses only syscalls (node:fs) and standard tools.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { constants as C } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ok, sh } from './testing/shell.js';

export type PosixTest = (dir: string) => Promise<void>;

/** Assert the promise rejects with this errno code (ENOENT, EEXIST, ...). */
async function fails(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export const posixSuite: Record<string, PosixTest> = {
  async mkdirErrors(d) {
    await fs.mkdir(path.join(d, 'a'));
    await fails(fs.mkdir(path.join(d, 'a')), 'EEXIST');
    await fails(fs.mkdir(path.join(d, 'missing', 'b')), 'ENOENT');
    await fs.writeFile(path.join(d, 'f'), 'x');
    await fails(fs.mkdir(path.join(d, 'f', 'b')), 'ENOTDIR');
    await fails(fs.mkdir(path.join(d, 'f')), 'EEXIST');
  },

  async rmdirUnlinkErrors(d) {
    await fs.mkdir(path.join(d, 'a'));
    await fs.writeFile(path.join(d, 'a', 'x'), 'x');
    await fails(fs.rmdir(path.join(d, 'a')), 'ENOTEMPTY');
    await fails(fs.rmdir(path.join(d, 'a', 'x')), 'ENOTDIR');
    await fails(fs.unlink(path.join(d, 'a')), 'EISDIR');
    await fails(fs.unlink(path.join(d, 'nope')), 'ENOENT');
    await fs.unlink(path.join(d, 'a', 'x'));
    await fs.rmdir(path.join(d, 'a'));
    await fails(fs.stat(path.join(d, 'a')), 'ENOENT');
  },

  async createExclusive(d) {
    const p = path.join(d, 'f');
    const h = await fs.open(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o640);
    await h.close();
    await fails(fs.open(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY), 'EEXIST');
    assert.equal((await fs.stat(p)).mode & 0o777, 0o640 & ~process.umask());
  },

  async nameTooLong(d) {
    await fails(fs.writeFile(path.join(d, 'n'.repeat(256)), 'x'), 'ENAMETOOLONG');
    await fs.writeFile(path.join(d, 'n'.repeat(255)), 'x');
  },

  async openDirForWriting(d) {
    await fs.mkdir(path.join(d, 'dir'));
    await fails(fs.open(path.join(d, 'dir'), 'w'), 'EISDIR');
    await fails(fs.readFile(path.join(d, 'dir')), 'EISDIR');
  },

  async renameDirIntoItself(d) {
    await fs.mkdir(path.join(d, 'a', 'b'), { recursive: true });
    await fails(fs.rename(path.join(d, 'a'), path.join(d, 'a', 'b', 'c')), 'EINVAL');
  },

  async renameTypeMismatch(d) {
    await fs.mkdir(path.join(d, 'dir'));
    await fs.mkdir(path.join(d, 'full'));
    await fs.writeFile(path.join(d, 'full', 'x'), 'x');
    await fs.writeFile(path.join(d, 'file'), 'x');
    await fails(fs.rename(path.join(d, 'file'), path.join(d, 'dir')), 'EISDIR');
    await fails(fs.rename(path.join(d, 'dir'), path.join(d, 'file')), 'ENOTDIR');
    await fails(fs.rename(path.join(d, 'dir'), path.join(d, 'full')), 'ENOTEMPTY');
    await fails(fs.rename(path.join(d, 'nope'), path.join(d, 'x')), 'ENOENT');
    await fs.mkdir(path.join(d, 'empty'));
    await fs.rename(path.join(d, 'dir'), path.join(d, 'empty'));
    assert.deepEqual((await fs.readdir(d)).sort(), ['empty', 'file', 'full']);
  },

  async renameOverOpenFile(d) {
    await fs.writeFile(path.join(d, 'old'), 'old content');
    await fs.writeFile(path.join(d, 'new'), 'new content');
    const h = await fs.open(path.join(d, 'old'), 'r');
    await fs.rename(path.join(d, 'new'), path.join(d, 'old'));
    assert.equal(await fs.readFile(path.join(d, 'old'), 'utf8'), 'new content');
    const b = Buffer.alloc(64);
    const { bytesRead } = await h.read(b, 0, 64, 0);
    assert.equal(
      b.subarray(0, bytesRead).toString(),
      'old content',
      'the replaced file stays readable while open',
    );
    await h.close();
    assert.deepEqual(await fs.readdir(d), ['old']);
  },

  async renameSameInode(d) {
    await fs.writeFile(path.join(d, 'a'), 'x');
    await fs.link(path.join(d, 'a'), path.join(d, 'b'));
    await fs.rename(path.join(d, 'a'), path.join(d, 'b'));
    assert.deepEqual(
      (await fs.readdir(d)).sort(),
      ['a', 'b'],
      'rename between two names of one inode does nothing',
    );
  },

  async renameNoReplace(d) {
    await fs.writeFile(path.join(d, 'a'), 'A');
    await fs.writeFile(path.join(d, 'b'), 'B');
    // mv -n → renameat2(RENAME_NOREPLACE) on coreutils 9; the target must survive either way.
    await ok(`mv -n a b || true`, { cwd: d });
    assert.equal(await fs.readFile(path.join(d, 'b'), 'utf8'), 'B');
    await ok(`mv -n a c`, { cwd: d });
    assert.equal(await fs.readFile(path.join(d, 'c'), 'utf8'), 'A');
  },

  async hardLinks(d) {
    const a = path.join(d, 'a');
    await fs.writeFile(a, 'one');
    await fs.link(a, path.join(d, 'b'));
    await fails(fs.link(a, path.join(d, 'b')), 'EEXIST');
    await fs.mkdir(path.join(d, 'dir'));
    await fails(fs.link(path.join(d, 'dir'), path.join(d, 'dl')), 'EPERM');
    const sa = await fs.stat(a);
    const sb = await fs.stat(path.join(d, 'b'));
    assert.equal(sa.ino, sb.ino);
    assert.equal(sa.nlink, 2);
    await fs.writeFile(path.join(d, 'b'), 'two');
    assert.equal(await fs.readFile(a, 'utf8'), 'two');
    await fs.unlink(a);
    assert.equal((await fs.stat(path.join(d, 'b'))).nlink, 1);
  },

  async symlinks(d) {
    await fs.writeFile(path.join(d, 't'), 'target');
    await fs.symlink('t', path.join(d, 'l'));
    assert.equal(await fs.readlink(path.join(d, 'l')), 't');
    assert.ok((await fs.lstat(path.join(d, 'l'))).isSymbolicLink());
    assert.equal((await fs.lstat(path.join(d, 'l'))).size, 1);
    assert.ok((await fs.stat(path.join(d, 'l'))).isFile());
    assert.equal(await fs.readFile(path.join(d, 'l'), 'utf8'), 'target');
    await fails(fs.readlink(path.join(d, 't')), 'EINVAL');
    await fs.symlink('loop2', path.join(d, 'loop1'));
    await fs.symlink('loop1', path.join(d, 'loop2'));
    await fails(fs.readFile(path.join(d, 'loop1')), 'ELOOP');
    await fs.symlink('nowhere', path.join(d, 'dangling'));
    await fails(fs.stat(path.join(d, 'dangling')), 'ENOENT');
    await fails(fs.symlink('x', path.join(d, 't')), 'EEXIST');
    await fails(fs.open(path.join(d, 'l'), C.O_RDONLY | C.O_NOFOLLOW), 'ELOOP');
  },

  async notADirectoryInPath(d) {
    await fs.writeFile(path.join(d, 'f'), 'x');
    await fails(fs.stat(path.join(d, 'f', 'x')), 'ENOTDIR');
    await fails(fs.writeFile(path.join(d, 'f', 'x'), 'x'), 'ENOTDIR');
    await fails(fs.readdir(path.join(d, 'f')), 'ENOTDIR');
  },

  async truncateGrowShrink(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'abcdef');
    await fs.truncate(p, 3);
    assert.equal(await fs.readFile(p, 'utf8'), 'abc');
    await fs.truncate(p, 10);
    assert.deepEqual(await fs.readFile(p), Buffer.from('abc\0\0\0\0\0\0\0'));
    const h = await fs.open(p, 'r+');
    await h.truncate(1);
    await h.close();
    assert.equal((await fs.stat(p)).size, 1);
    await fs.mkdir(path.join(d, 'dir'));
    await fails(fs.truncate(path.join(d, 'dir'), 0), 'EISDIR');
  },

  async appendMode(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'start');
    const h = await fs.open(p, 'a');
    await h.write('-end', 0); // position ignored with O_APPEND
    await h.close();
    assert.equal(await fs.readFile(p, 'utf8'), 'start-end');
  },

  async sparseWrite(d) {
    const p = path.join(d, 'f');
    const h = await fs.open(p, 'w');
    await h.write(Buffer.from('end'), 0, 3, 1 << 20);
    await h.close();
    const b = await fs.readFile(p);
    assert.equal(b.length, (1 << 20) + 3);
    assert.ok(b.subarray(0, 1 << 20).every((x) => x === 0));
    assert.equal(b.subarray(1 << 20).toString(), 'end');
  },

  async writeToReadOnlyDescriptor(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'x');
    const h = await fs.open(p, 'r');
    await fails(h.write('y'), 'EBADF');
    await h.close();
    const w = await fs.open(p, 'w');
    await fails(w.read(Buffer.alloc(1), 0, 1, 0), 'EBADF');
    await w.close();
  },

  async largeFileRandomOverwrites(d) {
    const p = path.join(d, 'big');
    const data = randomBytes(9 << 20);
    await fs.writeFile(p, data);
    const h = await fs.open(p, 'r+');
    for (const [off, len] of [
      [1, 100],
      [4 << 20, 70_000],
      [(9 << 20) - 10, 20],
      [3 << 20, 1 << 20],
    ] as const) {
      const patch = randomBytes(len);
      await h.write(patch, 0, len, off);
      const end = off + len;
      if (end > data.length) {
        const grown = Buffer.alloc(end);
        data.copy(grown);
        patch.copy(grown, off);
        assert.equal(sha(await fs.readFile(p)), sha(grown));
        return void (await h.close());
      }
      patch.copy(data, off);
    }
    await h.close();
    assert.equal(sha(await fs.readFile(p)), sha(data));
  },

  async unlinkWhileOpen(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'keep me');
    const h = await fs.open(p, 'r+');
    await fs.unlink(p);
    await fails(fs.stat(p), 'ENOENT');
    assert.deepEqual(await fs.readdir(d), []);
    const st = await h.stat();
    assert.equal(st.nlink, 0);
    await h.write(Buffer.from(' and more'), 0, 9, 7);
    const b = Buffer.alloc(32);
    const { bytesRead } = await h.read(b, 0, 32, 0);
    assert.equal(b.subarray(0, bytesRead).toString(), 'keep me and more');
    await h.close();
  },

  async chmodChownUtimes(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'x');
    await fs.chmod(p, 0o4751);
    assert.equal((await fs.stat(p)).mode & 0o7777, 0o4751);
    await fs.chown(p, 1234, 5678);
    const st = await fs.stat(p);
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 5678);
    await ok(
      `touch -m -d '2020-01-02 03:04:05.123456789 UTC' f && touch -a -d '2019-05-06 07:08:09.5 UTC' f`,
      { cwd: d },
    );
    const out = await ok(`stat -c '%y|%x' f`, { cwd: d, env: { ...process.env, TZ: 'UTC' } });
    assert.equal(out.trim(), '2020-01-02 03:04:05.123456789 +0000|2019-05-06 07:08:09.500000000 +0000');
  },

  async setuidBitsDropOnWriteTruncateChown(d) {
    // Linux's rules, whoever enforces them (the kernel here, the filesystem under FUSE_HANDLE_KILLPRIV_V2): a write or
    // truncate by a process without CAP_FSETID drops setuid, and setgid when group-executable (without g+x setgid
    // marks mandatory locking and stays); a chown drops them for anyone, root included; a root write keeps them.
    const noFsetid = 'setpriv --bounding-set -fsetid --inh-caps -fsetid';
    const modeOf = async (f: string): Promise<number> => (await fs.stat(path.join(d, f))).mode & 0o7777;
    const make = async (f: string, mode: number): Promise<void> => {
      await fs.writeFile(path.join(d, f), 'x');
      await fs.chmod(path.join(d, f), mode);
    };
    await make('u', 0o4755);
    await make('gx', 0o2755);
    await make('g', 0o2745);
    await make('root', 0o6755);
    await make('t', 0o4755);
    await make('c', 0o6755);
    await ok(`${noFsetid} sh -c 'printf y >> u; printf y >> gx; printf y >> g; truncate -s 0 t'`, { cwd: d });
    await fs.appendFile(path.join(d, 'root'), 'y');
    await fs.chown(path.join(d, 'c'), 0, 0);
    assert.equal(await modeOf('u'), 0o755, 'setuid dropped by a write');
    assert.equal(await modeOf('gx'), 0o755, 'setgid (with g+x) dropped by a write');
    assert.equal(await modeOf('g'), 0o2745, 'setgid without g+x kept');
    assert.equal(await modeOf('t'), 0o755, 'setuid dropped by a truncate');
    assert.equal(await modeOf('root'), 0o6755, 'kept when the writer has CAP_FSETID');
    assert.equal(await modeOf('c'), 0o755, 'dropped by chown');
    assert.equal(await fs.readFile(path.join(d, 'u'), 'utf8'), 'xy');
  },

  async timesMoveOnChange(d) {
    const p = path.join(d, 'f');
    await fs.writeFile(p, 'x');
    const old = new Date('2001-01-01T00:00:00Z');
    await fs.utimes(p, old, old);
    await fs.utimes(d, old, old);
    await fs.appendFile(p, 'more');
    const st = await fs.stat(p);
    assert.ok(st.mtimeMs > old.getTime(), 'write moves mtime');
    await fs.writeFile(path.join(d, 'g'), '');
    assert.ok((await fs.stat(d)).mtimeMs > old.getTime(), 'create moves the directory mtime');
    const c0 = (await fs.stat(p, { bigint: true })).ctimeNs;
    await new Promise((r) => setTimeout(r, 5));
    await fs.chmod(p, 0o600);
    assert.ok((await fs.stat(p, { bigint: true })).ctimeNs > c0, 'chmod moves ctime');
  },

  async directoryNlinkAndSize(d) {
    await fs.mkdir(path.join(d, 'p'));
    assert.equal((await fs.stat(path.join(d, 'p'))).nlink, 2);
    await fs.mkdir(path.join(d, 'p', 'a'));
    await fs.mkdir(path.join(d, 'p', 'b'));
    await fs.writeFile(path.join(d, 'p', 'f'), '');
    assert.equal((await fs.stat(path.join(d, 'p'))).nlink, 4);
  },

  async readdirManyEntries(d) {
    const names = Array.from({ length: 600 }, (_, i) => `entry-${i}-${'x'.repeat(i % 40)}`);
    for (const n of names) await fs.writeFile(path.join(d, n), '');
    const listed = await fs.readdir(d);
    assert.equal(listed.length, names.length);
    assert.deepEqual([...listed].sort(), [...names].sort());
    const dir = await fs.opendir(d, { bufferSize: 7 });
    const seen = new Set<string>();
    for await (const e of dir) {
      assert.ok(!seen.has(e.name), `repeated ${e.name}`);
      seen.add(e.name);
    }
    assert.equal(seen.size, names.length);
  },

  async fsyncFileAndDirectory(d) {
    const h = await fs.open(path.join(d, 'f'), 'w');
    await h.write('data');
    await h.sync();
    await h.datasync();
    await h.close();
    await ok(`python3 -c "import os; fd=os.open('.', os.O_RDONLY); os.fsync(fd); os.close(fd)"`, { cwd: d });
  },

  async fifoAndSpecialFiles(d) {
    await ok(`mkfifo p && [ -p p ]`, { cwd: d });
    assert.ok((await fs.stat(path.join(d, 'p'))).isFIFO());
    await ok(`mknod c c 1 3 && [ -c c ] && stat -c '%t:%T' c`, { cwd: d });
    assert.ok((await fs.stat(path.join(d, 'c'))).isCharacterDevice());
  },

  async xattrs(d) {
    await fs.writeFile(path.join(d, 'f'), 'x');
    await ok(`setfattr -n user.color -v blue f && setfattr -n user.bin -v 0x00ff10 f`, { cwd: d });
    const dump = await ok(`getfattr -d -e hex f`, { cwd: d });
    assert.match(dump, /user\.color=0x626c7565/);
    assert.match(dump, /user\.bin=0x00ff10/);
    await ok(`setfattr -x user.color f`, { cwd: d });
    const r = await sh(`getfattr -n user.color f`, { cwd: d });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /No such attribute/);
    const r2 = await sh(`setfattr -x user.never f`, { cwd: d });
    assert.match(r2.stderr, /No such attribute/);
    await fs.mkdir(path.join(d, 'dir'));
    await ok(`setfattr -n user.on-dir -v 1 dir && getfattr -n user.on-dir --only-values dir | grep -qx 1`, {
      cwd: d,
    });
  },

  async locks(d) {
    await fs.writeFile(path.join(d, 'f'), '');
    // A second open file description cannot take an exclusive flock held by the first; after unlock it can.
    const out = await ok(
      `exec 9>f; flock -x 9; if flock -n -x f true; then echo taken; else echo blocked; fi; flock -u 9; flock -n -x f echo free`,
      { cwd: d },
    );
    assert.deepEqual(out.trim().split('\n'), ['blocked', 'free']);
    const posix = await ok(
      `python3 - <<'EOF'
import fcntl, os, sys
fd = os.open('f', os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
pid = os.fork()
if pid == 0:
    fd2 = os.open('f', os.O_RDWR)
    try:
        fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
        os._exit(1)
    except OSError:
        pass
    fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)
    os._exit(0)
_, st = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(st))
EOF`,
      { cwd: d },
    );
    assert.equal(posix.trim(), '0', 'overlapping POSIX lock refused, disjoint range granted');
  },

  async sharedWritableMmap(d) {
    const out = await ok(
      `python3 - <<'EOF'
import mmap, os
fd = os.open('m', os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 3 * 4096)
m = mmap.mmap(fd, 3 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:5] = b'hello'
m[8190:8195] = b'world'
m.flush()
m.close()
os.close(fd)
data = open('m', 'rb').read()
print(len(data), data[0:5].decode(), data[8190:8195].decode())
EOF`,
      { cwd: d },
    );
    assert.equal(out.trim(), '12288 hello world');
  },

  async statfsWorks(d) {
    const out = await ok(`stat -f -c '%l %b' .`, { cwd: d });
    const [namelen, blocks] = out.trim().split(' ').map(Number);
    assert.equal(namelen, 255);
    assert.ok(blocks! > 0);
  },

  async namesDotsAndLimits(d) {
    // Paths are built by hand: path.join would normalize the dots away.
    await fs.mkdir(path.join(d, 'sub'));
    await fs.writeFile(path.join(d, 'plain0'), 'x');
    await fails(fs.mkdir(`${d}/sub/.`), 'EEXIST');
    await fails(fs.mkdir(`${d}/sub/..`), 'EEXIST');
    await fails(fs.rmdir(`${d}/sub/.`), 'EINVAL');
    await fails(fs.rmdir(`${d}/sub/..`), 'ENOTEMPTY');
    await fails(fs.unlink(`${d}/sub/.`), 'EISDIR');
    await fails(fs.rename(`${d}/sub/.`, path.join(d, 'x')), 'EBUSY');
    await fails(fs.rename(path.join(d, 'plain0'), `${d}/sub/..`), 'EBUSY');
    await fails(fs.open(`${d}/sub/..`, 'w'), 'EISDIR');
    // The 255-byte limit counts bytes, not characters: 127 two-byte letters + 1 fit, 128 do not.
    await fs.writeFile(path.join(d, 'é'.repeat(127) + 'x'), 'x');
    await fails(fs.writeFile(path.join(d, 'é'.repeat(128)), 'x'), 'ENAMETOOLONG');
    await fails(fs.mkdir(path.join(d, 'd'.repeat(256))), 'ENAMETOOLONG');
    await fails(fs.symlink('t', path.join(d, 's'.repeat(256))), 'ENAMETOOLONG');
    await fails(fs.rename(path.join(d, 'sub'), path.join(d, 'r'.repeat(256))), 'ENAMETOOLONG');
    await fs.writeFile(path.join(d, 'plain'), 'x');
    await fails(fs.link(path.join(d, 'plain'), path.join(d, 'l'.repeat(256))), 'ENAMETOOLONG');
    // Unusual but valid UTF-8 names come back byte for byte.
    const odd = ['new\nline', 'tab\there', 'back\\slash', '-dash', ' space ', '日本語', '🌳', 'e\u0301', 'é'];
    for (const n of odd) await fs.writeFile(path.join(d, n), n);
    const listed = await fs.readdir(d, { encoding: 'buffer' });
    for (const n of odd) {
      assert.ok(
        listed.some((b) => b.equals(Buffer.from(n))),
        `${JSON.stringify(n)} listed as its exact bytes`,
      );
      assert.equal(await fs.readFile(path.join(d, n), 'utf8'), n);
    }
  },

  async seekDataAndHole(d) {
    // Block-aligned data so a block-based filesystem (ext4, tmpfs) reports the same boundaries as arbor's byte-exact ones.
    const out = await ok(
      `python3 - <<'EOF'
import os
K = 65536
fd = os.open('s', os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b'a' * K, 0)
os.pwrite(fd, b'b' * K, 16 * K)
os.ftruncate(fd, 64 * K)
def probe(fd):
    out = []
    for off in (0, K - 1, K, 16 * K, 17 * K, 64 * K - 1, 64 * K, 100 * K):
        for w in (os.SEEK_DATA, os.SEEK_HOLE):
            try:
                out.append(str(os.lseek(fd, off, w) // 1024))
            except OSError as e:
                out.append(os.strerror(e.errno).split()[0])
    return ' '.join(out)
print(probe(fd))
os.fsync(fd)
os.close(fd)
fd = os.open('s', os.O_RDONLY)
print(probe(fd))
EOF`,
      { cwd: d },
    );
    const want = '0 64 63 64 1024 64 1024 1088 No 1088 No 4095 No No No No';
    assert.deepEqual(out.trim().split('\n'), [want, want]);
    // Tools that look for holes keep them: cp --sparse=always and tar -S round trips stay sparse and equal.
    await ok(
      `cp --sparse=always s s.cp && cmp s s.cp && tar -S -cf ../s.tar s && mkdir x && tar -xf ../s.tar -C x`,
      {
        cwd: d,
      },
    );
    await ok(`cmp s x/s`, { cwd: d });
    for (const f of ['s', 's.cp', 'x/s']) {
      const st = await fs.stat(path.join(d, f));
      assert.equal(st.size, 64 * 65536);
      assert.ok(st.blocks <= (4 * 65536) / 512, `${f}: ${st.blocks} blocks, should be sparse`);
    }
    await fs.rm(path.join(d, '..', 's.tar'));
  },

  async fallocateModes(d) {
    const K = 65536;
    const data = randomBytes(4 * K);
    const p = path.join(d, 'f');
    await fs.writeFile(p, data);
    await ok(`sync f`, { cwd: d });
    const before = (await fs.stat(p)).blocks;
    // -p: punch a hole (keeps the size); the range reads as zeros and no longer counts as stored.
    await ok(`fallocate -p -o ${K} -l ${K} f`, { cwd: d });
    let st = await fs.stat(p);
    assert.equal(st.size, 4 * K);
    assert.ok(st.blocks <= before - K / 512, `blocks ${before} -> ${st.blocks}`);
    let want = Buffer.from(data);
    want.fill(0, K, 2 * K);
    assert.deepEqual(await fs.readFile(p), want);
    const hole = await ok(
      `python3 -c "import os; fd = os.open('f', os.O_RDONLY); print(os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, ${K}, os.SEEK_DATA))"`,
      { cwd: d },
    );
    assert.equal(hole.trim(), `${K} ${2 * K}`);
    // -z: zero a range inside, then one reaching past the end (which grows the file), then with -n (keeps the size).
    await ok(`fallocate -z -o ${2 * K + 100} -l 1000 f`, { cwd: d });
    want.fill(0, 2 * K + 100, 2 * K + 1100);
    await ok(`fallocate -z -o ${4 * K - 10} -l ${K} f`, { cwd: d });
    want = Buffer.concat([want.subarray(0, 4 * K - 10), Buffer.alloc(K)]);
    assert.deepEqual(await fs.readFile(p), want);
    await ok(`fallocate -z -n -o ${5 * K - 10} -l ${K} f`, { cwd: d });
    // -n: allocate beyond the end without growing; plain mode grows.
    await ok(`fallocate -n -o 0 -l ${16 * K} f`, { cwd: d });
    assert.equal((await fs.stat(p)).size, 5 * K - 10);
    await ok(`fallocate -o 0 -l ${8 * K} f`, { cwd: d });
    st = await fs.stat(p);
    assert.equal(st.size, 8 * K);
    assert.deepEqual(await fs.readFile(p), Buffer.concat([want, Buffer.alloc(3 * K + 10)]));
  },

  async copyFileRange(d) {
    const data = randomBytes(3 << 20);
    await fs.writeFile(path.join(d, 'src'), data);
    const out = await ok(
      `python3 - <<'EOF'
import os, errno
s = os.open('src', os.O_RDWR)
t = os.open('dst', os.O_RDWR | os.O_CREAT, 0o644)
n = [os.copy_file_range(s, t, 1000, 3, 777)]          # into a new file past its end: a zero gap first
n.append(os.copy_file_range(s, t, 5 << 20, 100, 5000)) # more than the source has: stops at its end
n.append(os.copy_file_range(s, t, 10, 3 << 20, 0))     # at the source's end: 0
try:
    os.copy_file_range(s, s, 1000, 0, 500)             # overlapping ranges of one file
    n.append('overlap copied')
except OSError as e:
    n.append(errno.errorcode[e.errno])
n.append(os.copy_file_range(s, s, 4096, 0, (3 << 20) + 4096)) # same file, disjoint: grows it
print(' '.join(map(str, n)))
EOF`,
      { cwd: d },
    );
    const total = (3 << 20) - 100;
    assert.equal(out.trim(), `1000 ${total} 0 EINVAL 4096`);
    const dst = await fs.readFile(path.join(d, 'dst'));
    const want = Buffer.alloc(5000 + total);
    data.copy(want, 777, 3, 1003);
    data.copy(want, 5000, 100);
    assert.ok(dst.equals(want), 'copied bytes');
    const src = await fs.readFile(path.join(d, 'src'));
    assert.equal(src.length, (3 << 20) + 8192);
    assert.ok(src.subarray(0, 3 << 20).equals(data));
    assert.ok(src.subarray((3 << 20) + 4096).equals(data.subarray(0, 4096)));
    assert.ok(src.subarray(3 << 20, (3 << 20) + 4096).every((b) => b === 0));
    await ok(`cp --reflink=auto src copy && cmp src copy`, { cwd: d });
  },
};

/**
 * Deliberate differences from ext4, run on the mount only. Names must be valid UTF-8 (like ZFS utf8only or APFS):
 * names are strings in the replicated ops, so a byte string that is not UTF-8 would be stored mangled (every bad
 * sequence as U+FFFD) and distinct names would merge; arbor refuses them with EILSEQ instead. ext4 accepts any bytes.
 */
export const arborOnlySuite: Record<string, PosixTest> = {
  async nonUtf8NamesRefused(d) {
    await fs.writeFile(path.join(d, 'ok'), 'x');
    await fs.mkdir(path.join(d, 'dir'));
    const bad = [[0xff], [0x61, 0xfe, 0x62], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]].map((b) =>
      Buffer.concat([Buffer.from(d + '/'), Buffer.from(b)]),
    );
    for (const p of bad) {
      await fails(fs.writeFile(p, 'x'), 'EILSEQ');
      await fails(fs.mkdir(p), 'EILSEQ');
      await fails(fs.symlink('ok', p), 'EILSEQ');
      await fails(fs.link(path.join(d, 'ok'), p), 'EILSEQ');
      await fails(fs.rename(path.join(d, 'ok'), p), 'EILSEQ');
      await fails(fs.rename(path.join(d, 'dir'), p), 'EILSEQ');
      await fails(fs.stat(p), 'EILSEQ');
    }
    const fifo = await sh(`python3 -c "import os; os.mkfifo(b'${d}/\\xff')"`);
    assert.match(fifo.stderr, /Invalid or incomplete multibyte|Illegal byte sequence/);
    // Nothing was created or renamed, mangled or not.
    assert.deepEqual((await fs.readdir(d)).sort(), ['dir', 'ok']);
  },

  async fallocateUnsupportedModes(d) {
    await fs.writeFile(path.join(d, 'f'), randomBytes(1 << 20));
    // Collapse and insert would shift every later byte: refused rather than emulated.
    for (const flag of ['-c', '-i']) {
      const r = await sh(`fallocate ${flag} -o 65536 -l 65536 f`, { cwd: d });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /not supported/);
    }
    assert.equal((await fs.stat(path.join(d, 'f'))).size, 1 << 20);
  },
};
