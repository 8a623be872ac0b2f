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
};
