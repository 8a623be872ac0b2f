// Unit tests of FileTree and the path API: each operation's success cases and its Linux errno cases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { isHole } from '../chunks/types.js';
import { openArbor } from '../index.js';
import type { Arbor } from '../index.js';
import { FileTree } from './filetree.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT, XATTR_CREATE, XATTR_REPLACE } from './types.js';
import { MemChunkStore } from './testing/mem-store.js';
import { rejectsCode, tempDir } from './testing/helpers.js';

describe('FileTree operations', () => {
  let t: { dir: string; cleanup: () => void };
  let fs: Arbor;
  const store = new MemChunkStore(1024);
  before(async () => {
    t = tempDir();
    fs = await openArbor(t.dir, { store, replica: 'A' });
  });
  after(async () => {
    await fs.close();
    t.cleanup();
  });

  it('discard: a handle closed without recording keeps the last version (O_TRUNC and writes dropped)', async () => {
    await fs.writeFile('/kept', 'old content');
    const versions = (await fs.versions('/kept')).length;
    const h = await fs.open('/kept', 'w');
    await h.write(Buffer.alloc(5000, 1), 0);
    await h.discard();
    assert.equal(await fs.readFile('/kept', 'utf8'), 'old content');
    assert.equal((await fs.versions('/kept')).length, versions, 'no version recorded');
    assert.equal((await fs.stat('/kept')).size, 11);
    await fs.unlink('/kept');
  });

  it('pathOf follows renames and links, undefined once removed; contentOf is the current version', async () => {
    await fs.mkdir('/po/sub', { recursive: true });
    await fs.writeFile('/po/sub/f', 'one');
    const dir = fs.resolve('/po');
    const file = fs.resolve('/po/sub/f');
    assert.equal(fs.tree.pathOf(ROOT), '/');
    assert.equal(fs.tree.pathOf(dir), '/po');
    assert.equal(fs.tree.pathOf(file), '/po/sub/f');
    await fs.rename('/po', '/po2');
    assert.equal(fs.tree.pathOf(file), '/po2/sub/f', 'an inode is found through its link');
    await fs.link('/po2/sub/f', '/po-link');
    await fs.unlink('/po2/sub/f');
    assert.equal(fs.tree.pathOf(file), '/po-link', 'another link of the inode');
    await fs.writeFile('/po-link', 'two!');
    const v = fs.tree.contentOf(file);
    assert.equal(v?.size, 4);
    assert.equal(v?.id, (await fs.versions('/po-link')).at(-1)?.id);
    await fs.unlink('/po-link');
    await fs.rm('/po2', { recursive: true });
    assert.equal(fs.tree.pathOf(file), undefined);
    assert.equal(fs.tree.pathOf(dir), undefined);
  });

  it('mkdir, readdir, stat, rmdir', async () => {
    await fs.mkdir('/d', { mode: 0o750 });
    const st = await fs.stat('/d');
    assert.equal(st.kind, 'dir');
    assert.equal(st.mode, 0o40750);
    assert.equal(st.nlink, 2);
    assert.equal((await fs.stat('/')).nlink, 3);
    await rejectsCode(() => fs.mkdir('/d'), 'EEXIST');
    await rejectsCode(() => fs.mkdir('/nope/x'), 'ENOENT');
    await fs.writeFile('/d/f', 'x');
    await rejectsCode(() => fs.rmdir('/d'), 'ENOTEMPTY');
    await rejectsCode(() => fs.rmdir('/d/f'), 'ENOTDIR');
    await rejectsCode(() => fs.unlink('/d'), 'EISDIR');
    await rejectsCode(() => fs.mkdir('/d/f/x'), 'ENOTDIR');
    await fs.unlink('/d/f');
    await fs.rmdir('/d');
    assert.deepEqual(await fs.readdir('/'), []);
    await rejectsCode(() => fs.rmdir('/d'), 'ENOENT');
  });

  it('names up to 255 bytes; ENAMETOOLONG beyond', async () => {
    await fs.mkdir('/' + 'a'.repeat(255));
    await rejectsCode(() => fs.mkdir('/' + 'a'.repeat(256)), 'ENAMETOOLONG');
    await rejectsCode(() => fs.writeFile('/' + 'é'.repeat(128), 'x'), 'ENAMETOOLONG');
    // Strings UTF-8 cannot carry (lone surrogates) would be stored as U+FFFD: refused, never mangled.
    await rejectsCode(() => fs.writeFile('/bad\ud800', 'x'), 'EILSEQ');
    await rejectsCode(() => fs.mkdir('/bad\udc00'), 'EILSEQ');
    await rejectsCode(() => fs.symlink('t\ud800', '/s'), 'EILSEQ');
    await fs.writeFile('/ok', 'x');
    await rejectsCode(() => fs.rename('/ok', '/bad\ud800'), 'EILSEQ');
    await rejectsCode(() => fs.setxattr('/ok', 'user.\ud800', 'v'), 'EILSEQ');
    await fs.unlink('/ok');
    await fs.rmdir('/' + 'a'.repeat(255));
  });

  it('files: write at offsets, holes read as zeros, truncate up and down', async () => {
    const h = await fs.open('/f', 'w+');
    await h.write(Buffer.from('hello'), 0);
    await h.write(Buffer.from('world'), 5000);
    const st = await h.stat();
    assert.equal(st.size, 5005);
    const all = await h.read(6000, 0);
    assert.equal(all.length, 5005);
    assert.equal(all.subarray(0, 5).toString(), 'hello');
    assert.ok(all.subarray(5, 5000).every((b) => b === 0));
    assert.equal(all.subarray(5000).toString(), 'world');
    await h.truncate(3);
    assert.equal((await h.read(100, 0)).toString(), 'hel');
    await h.truncate(10);
    assert.deepEqual([...(await h.read(100, 0))], [...Buffer.from('hel'), 0, 0, 0, 0, 0, 0, 0]);
    await h.close();
    assert.equal((await fs.stat('/f')).size, 10);
    await fs.truncate('/f', 2);
    assert.equal(await fs.readFile('/f', 'utf8'), 'he');
    await rejectsCode(() => fs.truncate('/', 0), 'EISDIR');
    await rejectsCode(() => fs.open('/f', 'wx'), 'EEXIST');
    await rejectsCode(() => fs.open('/missing', 'r'), 'ENOENT');
    await rejectsCode(() => fs.open('/', 'w'), 'EISDIR');
    await fs.unlink('/f');
  });

  it('big sequential writes are chunked as they arrive and read back', async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
    const h = await fs.open('/big', 'w');
    for (let off = 0; off < data.length; off += 7000) await h.write(data.subarray(off, off + 7000), off);
    await h.close();
    assert.deepEqual(await fs.readFile('/big'), data);
    // random overwrite in the middle
    const h2 = await fs.open('/big', 'r+');
    await h2.write(Buffer.from('XYZ'), 150_000);
    await h2.close();
    data.write('XYZ', 150_000);
    assert.deepEqual(await fs.readFile('/big'), data);
    assert.equal((await fs.versions('/big')).length, 2);
    await fs.unlink('/big');
  });

  it('hard links: nlink, shared content, unlink keeps the other name', async () => {
    await fs.writeFile('/a', 'data');
    await fs.link('/a', '/b');
    assert.equal((await fs.stat('/a')).nlink, 2);
    assert.equal((await fs.stat('/a')).nodeId, (await fs.stat('/b')).nodeId);
    await fs.writeFile('/b', 'new');
    assert.equal(await fs.readFile('/a', 'utf8'), 'new');
    await fs.unlink('/a');
    assert.equal((await fs.stat('/b')).nlink, 1);
    await rejectsCode(() => fs.link('/b', '/b'), 'EEXIST');
    await fs.mkdir('/dd');
    await rejectsCode(() => fs.link('/dd', '/dd2'), 'EPERM');
    await fs.rmdir('/dd');
    await fs.unlink('/b');
  });

  it('an unlinked open file stays usable until the last close', async () => {
    await fs.writeFile('/u', 'abc');
    const h = await fs.open('/u', 'r+');
    await fs.unlink('/u');
    await rejectsCode(() => fs.stat('/u'), 'ENOENT');
    await h.write('Z', 1);
    assert.equal((await h.read(10, 0)).toString(), 'aZc');
    assert.equal((await h.stat()).nlink, 0);
    await h.close();
  });

  it('two handles on one file see each other', async () => {
    const a = await fs.open('/s', 'w+');
    const b = await fs.open('/s', 'r');
    await a.write('shared', 0);
    assert.equal((await b.read(100, 0)).toString(), 'shared');
    await a.close();
    await b.close();
    await fs.unlink('/s');
  });

  it('symlinks and readlink', async () => {
    await fs.mkdir('/t');
    await fs.writeFile('/t/file', 'via link');
    await fs.symlink('t/file', '/ln');
    assert.equal(await fs.readlink('/ln'), 't/file');
    assert.equal(await fs.readFile('/ln', 'utf8'), 'via link');
    assert.equal((await fs.lstat('/ln')).kind, 'symlink');
    assert.equal((await fs.lstat('/ln')).size, 6);
    await rejectsCode(() => fs.readlink('/t'), 'EINVAL');
    await rejectsCode(() => fs.symlink('', '/e'), 'ENOENT');
    await fs.symlink('loop2', '/loop1');
    await fs.symlink('loop1', '/loop2');
    await rejectsCode(() => fs.readFile('/loop1'), 'ELOOP');
    for (const p of ['/ln', '/loop1', '/loop2', '/t/file']) await fs.unlink(p);
    await fs.rmdir('/t');
  });

  it('rename: replace file, dir over empty dir, ENOTEMPTY, EINVAL, EISDIR, ENOTDIR, flags', async () => {
    await fs.writeFile('/x', '1');
    await fs.writeFile('/y', '2');
    await fs.rename('/x', '/y');
    assert.equal(await fs.readFile('/y', 'utf8'), '1');
    assert.deepEqual(await fs.readdir('/'), ['y']);
    await fs.mkdir('/p');
    await fs.mkdir('/q');
    await fs.rename('/p', '/q');
    assert.deepEqual(await fs.readdir('/'), ['q', 'y']);
    await fs.mkdir('/r');
    await fs.mkdir('/r/sub');
    await rejectsCode(() => fs.rename('/q', '/r'), 'ENOTEMPTY');
    await rejectsCode(() => fs.rename('/r', '/r/sub/in'), 'EINVAL');
    await rejectsCode(() => fs.rename('/r', '/r/sub'), 'EINVAL');
    await rejectsCode(() => fs.rename('/y', '/q'), 'EISDIR');
    await rejectsCode(() => fs.rename('/q', '/y'), 'ENOTDIR');
    await rejectsCode(() => fs.rename('/nope', '/z'), 'ENOENT');
    await rejectsCode(() => fs.rename('/y', '/q', 'noreplace'), 'EEXIST');
    await fs.rename('/y', '/q', 'exchange');
    assert.equal((await fs.stat('/y')).kind, 'dir');
    assert.equal((await fs.stat('/q')).kind, 'file');
    await rejectsCode(() => fs.rename('/q', '/none', 'exchange'), 'ENOENT');
    await rejectsCode(
      () => fs.tree.rename(ROOT, 'q', ROOT, 'y', RENAME_NOREPLACE | RENAME_EXCHANGE),
      'EINVAL',
    );
    fs.tree.rename(ROOT, 'q', ROOT, 'q2', RENAME_NOREPLACE);
    fs.tree.rename(ROOT, 'q2', ROOT, 'y', RENAME_EXCHANGE);
    await fs.rm('/', { recursive: false }).catch(() => undefined);
    for (const n of await fs.readdir('/')) await fs.rm('/' + n, { recursive: true });
    assert.deepEqual(await fs.readdir('/'), []);
  });

  it('xattrs: create/replace flags, ENODATA, ERANGE, E2BIG, EOPNOTSUPP', async () => {
    await fs.writeFile('/xa', '');
    await fs.setxattr('/xa', 'user.k', 'v1');
    assert.equal((await fs.getxattr('/xa', 'user.k')).toString(), 'v1');
    await rejectsCode(() => fs.setxattr('/xa', 'user.k', 'v2', XATTR_CREATE), 'EEXIST');
    await fs.setxattr('/xa', 'user.k', 'v2', XATTR_REPLACE);
    await rejectsCode(() => fs.setxattr('/xa', 'user.other', 'v', XATTR_REPLACE), 'ENODATA');
    await rejectsCode(() => fs.getxattr('/xa', 'user.none'), 'ENODATA');
    await rejectsCode(() => fs.removexattr('/xa', 'user.none'), 'ENODATA');
    await rejectsCode(() => fs.setxattr('/xa', 'user.' + 'n'.repeat(251), 'v'), 'ERANGE');
    await rejectsCode(() => fs.setxattr('/xa', 'user.big', Buffer.alloc(65537)), 'E2BIG');
    await rejectsCode(() => fs.setxattr('/xa', 'bogus.k', 'v'), 'EOPNOTSUPP');
    await fs.setxattr('/xa', 'user.e', '');
    assert.deepEqual(await fs.listxattr('/xa'), ['user.e', 'user.k']);
    await fs.removexattr('/xa', 'user.k');
    assert.deepEqual(await fs.listxattr('/xa'), ['user.e']);
    await fs.unlink('/xa');
  });

  it('setattr: chmod, chown, utimes with ns; ctime moves', async () => {
    await fs.writeFile('/m', 'x');
    const before = await fs.stat('/m');
    await fs.chmod('/m', 0o600);
    await fs.chown('/m', 1000, 1001);
    await fs.utimes('/m', 1_000_000_001n, 2_000_000_002n);
    const st = await fs.stat('/m');
    assert.equal(st.mode, 0o100600);
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 1001);
    assert.equal(st.atimeNs, 1_000_000_001n);
    assert.equal(st.mtimeNs, 2_000_000_002n);
    assert.ok(st.ctimeNs >= before.ctimeNs);
    await fs.unlink('/m');
  });

  it('readdir offsets stay valid while the directory changes', async () => {
    await fs.mkdir('/rd');
    for (let i = 0; i < 50; i++) await fs.writeFile(`/rd/f${i}`, '');
    const dir = fs.resolve('/rd');
    const seen: string[] = [];
    let off = 0;
    let k = 0;
    while (true) {
      const page = fs.tree.readdir(dir, off).slice(0, 7);
      if (page.length === 0) break;
      for (const e of page) seen.push(e.name);
      off = page[page.length - 1]!.cookie;
      // change the directory between pages: add one, remove one already listed
      await fs.writeFile(`/rd/new${k++}`, '');
      const listed = seen.find((n) => n.startsWith('f') && n !== 'gone');
      if (listed) {
        await fs.rename(`/rd/${listed}`, '/rd-moved-' + listed).catch(() => undefined);
      }
    }
    for (let i = 0; i < 50; i++) assert.ok(seen.includes(`f${i}`), `f${i} was skipped`);
    assert.equal(new Set(seen).size, seen.length, 'no entry repeated');
    await fs.rm('/rd', { recursive: true });
    for (const n of await fs.readdir('/')) await fs.rm('/' + n, { recursive: true });
  });

  it('mknod and statfs', async () => {
    const a = fs.tree.mknod(ROOT, 'fifo', 0o010644);
    assert.equal(a.kind, 'fifo');
    const c = fs.tree.mknod(ROOT, 'chr', 0o020600, 0x0103);
    assert.equal(c.rdev, 0x0103);
    const s = await fs.statfs();
    assert.ok(s.blocks > 0 && s.bsize > 0 && s.namemax === 255);
    await fs.unlink('/fifo');
    await fs.unlink('/chr');
  });

  it('more errno cases: ENAMETOOLONG, EBADF, ENOTDIR on readdir, EINVAL on rename of root names', async () => {
    await fs.writeFile('/e', 'x');
    await rejectsCode(() => fs.rename('/e', '/' + 'n'.repeat(256)), 'ENAMETOOLONG');
    await rejectsCode(() => fs.symlink('t'.repeat(4096), '/sl'), 'ENAMETOOLONG');
    await rejectsCode(() => fs.readdir('/e'), 'ENOTDIR');
    await rejectsCode(() => fs.tree.read(9999, 0, 1), 'EBADF');
    const h = await fs.open('/e', 'r');
    await rejectsCode(() => h.write('no'), 'EBADF');
    await h.close();
    await rejectsCode(() => fs.tree.rename(ROOT, '.', ROOT, 'x'), 'EBUSY');
    await rejectsCode(() => fs.tree.rmdir(ROOT, '.'), 'EINVAL');
    await rejectsCode(() => fs.tree.mkdir(ROOT, 'a/b', 0o755), 'EINVAL');
    await rejectsCode(() => fs.tree.lookupId(fs.resolve('/e'), 'x'), 'ENOTDIR');
    await fs.unlink('/e');
  });

  it('sparse files: truncate to 1 TiB stores no chunk, st_blocks counts data only, survives reopen and restore', async () => {
    const t2 = tempDir();
    try {
      const TiB = 2 ** 40;
      let a = await openArbor(t2.dir, { store, replica: 'S' });
      const puts = store.puts;
      const t0 = Date.now();
      await a.writeFile('/sparse', '');
      await a.truncate('/sparse', TiB);
      assert.ok(Date.now() - t0 < 1000, `truncate took ${Date.now() - t0} ms`);
      assert.equal(store.puts, puts, 'no chunk stored for a hole');
      let st = await a.stat('/sparse');
      assert.equal(st.size, TiB);
      assert.equal(st.blocks, 0);
      const h = await a.open('/sparse', 'r+');
      assert.deepEqual(await h.read(4096, TiB / 3), Buffer.alloc(4096));
      await h.write(Buffer.alloc(2000, 9), TiB / 2);
      assert.equal((await h.stat()).blocks, 4, 'open file: 2000 dirty bytes');
      await h.close();
      const vs = await a.versions('/sparse');
      const cur = vs[vs.length - 1]!;
      assert.ok(cur.chunks.some(isHole));
      assert.equal(
        cur.chunks.filter((c) => !isHole(c)).reduce((n, c) => n + c.size, 0),
        2000,
      );
      // Sync pushes only real chunks: a batch's refs minus holes are all in the store.
      for (const c of cur.chunks) if (!isHole(c)) assert.ok(store.chunks.has(c.id));
      await a.close();
      a = await openArbor(t2.dir, { store, replica: 'S' });
      st = await a.stat('/sparse');
      assert.equal(st.size, TiB);
      assert.equal(st.blocks, 4);
      const r = await a.open('/sparse', 'r');
      assert.deepEqual(
        await r.read(2004, TiB / 2 - 2),
        Buffer.concat([Buffer.alloc(2), Buffer.alloc(2000, 9), Buffer.alloc(2)]),
      );
      await r.close();
      await a.truncate('/sparse', 10);
      assert.equal((await a.stat('/sparse')).blocks, 0);
      await a.restoreVersion('/sparse', cur.id);
      st = await a.stat('/sparse');
      assert.equal(st.size, TiB);
      assert.equal(st.blocks, 4);
      await a.close();
    } finally {
      t2.cleanup();
    }
  });

  it('prunes pushed local batches and keeps its clock across reopen', async () => {
    const t2 = tempDir();
    try {
      let a = await openArbor(t2.dir, { store, replica: 'P' });
      await a.mkdir('/x');
      await a.mkdir('/y');
      const seq = a.tree.localSeq;
      assert.ok(a.tree.pruneLocalOps(seq) > 0);
      assert.deepEqual(a.tree.localOpsSince(0), []);
      await a.mkdir('/z');
      const next = a.tree.localOpsSince(0);
      assert.equal(next.length, 1);
      assert.equal(next[0]!.seq, seq + 1);
      await a.close();
      a = await openArbor(t2.dir, { store, replica: 'P' });
      await a.mkdir('/w');
      const all = a.tree.localOpsSince(0);
      assert.equal(all[all.length - 1]!.seq, seq + 2);
      const counters = all.flatMap((b) => b.ops.map((o) => o.ts.counter));
      assert.ok(counters[counters.length - 1]! > counters[0]!, 'clock moved forward');
      assert.deepEqual(await a.readdir('/'), ['w', 'x', 'y', 'z']);
      await a.close();
    } finally {
      t2.cleanup();
    }
  });

  it('localOpsSince answers from memory exactly what reading the batches back from SQLite gives', async () => {
    const t2 = tempDir();
    try {
      let a = await openArbor(t2.dir, { store, replica: 'M' });
      await a.mkdir('/d');
      await a.writeFile('/d/f', 'content');
      await a.truncate('/d/f', 100_000); // a version with a trailing hole
      await a.symlink('f', '/d/s');
      await a.link('/d/f', '/d/g');
      await a.rename('/d/g', '/h');
      await a.chmod('/h', 0o600);
      await a.setxattr('/h', 'user.k', 'v');
      await a.unlink('/d/s');
      await a.rm('/d', { recursive: true });
      const mem = a.tree.localOpsSince(0);
      assert.ok(mem.length >= 9);
      assert.deepEqual(a.tree.localOpsSince(3), mem.slice(3));
      await a.close();
      a = await openArbor(t2.dir, { store, replica: 'M' });
      const disk = a.tree.localOpsSince(0);
      // The same objects and the same bytes on the remote (sync publishes JSON.stringify of them).
      assert.deepEqual(mem, disk);
      assert.equal(JSON.stringify(mem), JSON.stringify(disk));
      // After a reopen the new batches come from memory, the older ones from SQLite; pruning drops both.
      await a.mkdir('/e');
      assert.deepEqual(a.tree.localOpsSince(0).slice(0, disk.length), disk);
      assert.ok(a.tree.pruneLocalOps(disk[2]!.seq) > 0);
      assert.deepEqual(
        a.tree.localOpsSince(0).map((b) => b.seq),
        [...disk.slice(3).map((b) => b.seq), a.tree.localSeq],
      );
      await a.close();
    } finally {
      t2.cleanup();
    }
  });

  it('persists across reopen, with versions', async () => {
    const t2 = tempDir();
    try {
      let a = await openArbor(t2.dir, { store });
      await a.mkdir('/k/l', { recursive: true });
      await a.writeFile('/k/l/f', 'one');
      await a.writeFile('/k/l/f', 'two');
      await a.link('/k/l/f', '/k/g');
      await a.setxattr('/k/g', 'user.z', 'zz');
      const replica = a.tree.replica;
      await a.close();
      a = await openArbor(t2.dir, { store });
      assert.equal(a.tree.replica, replica);
      assert.equal(await a.readFile('/k/l/f', 'utf8'), 'two');
      assert.equal((await a.stat('/k/g')).nlink, 2);
      assert.equal((await a.getxattr('/k/l/f', 'user.z')).toString(), 'zz');
      const vs = await a.versions('/k/g');
      assert.equal(vs.length, 2);
      await a.restoreVersion('/k/g', vs[0]!.id);
      assert.equal(await a.readFile('/k/l/f', 'utf8'), 'one');
      a.tree.verify();
      await a.close();
      const ft = new FileTree({ store, dbPath: join(t2.dir, 'state.sqlite3') });
      assert.equal(ft.replica, replica);
      ft.close();
    } finally {
      t2.cleanup();
    }
  });
});
