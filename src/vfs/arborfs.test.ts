// ArborFs without a mount: inode numbers and lookup counts, handles, readdir offsets, errno mapping, invalidation.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryChunkStore } from '../chunks/memory-store.js';
import type { ChunkStore } from '../chunks/types.js';
import { Errno } from '../errors.js';
import type { DirBuffer, DirEntry, Entry, RequestContext, WriteInfo } from '../fuse/filesystem.js';
import type { FileHandle, LockOwner, NodeId as Ino, RequestId } from '../fuse/ids.js';
import { FileTree } from '../tree/filetree.js';
import { ROOT } from '../tree/types.js';
import { ArborFs, type KernelNotifier } from './arborfs.js';
import { InodeTable } from './inodes.js';

const ctx: RequestContext = { uid: 0, gid: 0, pid: 1, unique: 1n as RequestId };
const user: RequestContext = { uid: 1000, gid: 1000, pid: 1, unique: 1n as RequestId };
const ino = (n: bigint): Ino => n as Ino;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_DIRECT = 0o40000;

const winfo = (): WriteInfo => ({
  writeFlags: 0,
  killSuidgid: false,
  flags: O_RDWR,
  lockOwner: 0n as LockOwner,
  keep: () => {
    throw new Error('ArborFs copies what it keeps');
  },
});

async function errno(fn: () => unknown): Promise<number> {
  try {
    await fn();
  } catch (err) {
    return (err as { errno: number }).errno;
  }
  return 0;
}

/** A DirBuffer that accepts `room` entries. */
class Buf implements DirBuffer {
  readonly got: Array<{ e: DirEntry; entry: Entry | null }> = [];
  constructor(private room = Infinity) {}
  add(e: DirEntry): boolean {
    if (this.got.length >= this.room) return false;
    this.got.push({ e, entry: null });
    return true;
  }
  addPlus(e: DirEntry, entry: Entry | null): boolean {
    if (this.got.length >= this.room) return false;
    this.got.push({ e, entry });
    return true;
  }
}

describe('InodeTable', () => {
  it('root is 1; numbers are never reused; entries live while looked up or open', () => {
    const t = new InodeTable('root');
    assert.equal(t.node(1n), 'root');
    const a = t.lookedUp('a');
    assert.equal(t.lookedUp('a'), a);
    assert.equal(t.lookups(a), 2n);
    t.forget(a, 1n);
    assert.equal(t.node(a), 'a');
    t.opened(a);
    t.forget(a, 1n);
    assert.equal(t.node(a), 'a', 'an open handle keeps the entry');
    t.closed(a);
    assert.throws(
      () => t.node(a),
      (e: { errno: number }) => e.errno === Errno.ENOENT,
    );
    const again = t.lookedUp('a');
    assert.notEqual(again, a, 'a forgotten node gets a fresh number');
    t.forget(1n, 100n);
    assert.equal(t.node(1n), 'root', 'root is never forgotten');
  });

  it('property: after any interleaving, an entry exists iff its lookups minus forgets > 0 or it is open', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.constantFrom('look', 'forget', 'open', 'close'), fc.integer({ min: 0, max: 3 })),
          {
            maxLength: 60,
          },
        ),
        (steps) => {
          const t = new InodeTable('root');
          const model = new Map<string, { n: bigint; opens: number }>();
          const names = ['a', 'b', 'c', 'd'];
          for (const [op, i] of steps) {
            const name = names[i]!;
            const m = model.get(name);
            const cur = t.peek(name);
            if (op === 'look') {
              t.lookedUp(name);
              model.set(name, { n: (m?.n ?? 0n) + 1n, opens: m?.opens ?? 0 });
            } else if (op === 'forget' && cur !== undefined && m && m.n > 0n) {
              t.forget(cur, 1n);
              m.n--;
            } else if (op === 'open' && cur !== undefined && m) {
              t.opened(cur);
              m.opens++;
            } else if (op === 'close' && cur !== undefined && m && m.opens > 0) {
              t.closed(cur);
              m.opens--;
            }
            const after = model.get(name);
            if (after && after.n === 0n && after.opens === 0) model.delete(name);
          }
          for (const name of names) {
            assert.equal(t.peek(name) !== undefined, model.has(name), `entry for ${name}`);
            if (model.has(name)) assert.equal(t.lookups(t.peek(name)!), model.get(name)!.n);
          }
          assert.equal(t.size, 1 + model.size);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('ArborFs over a FileTree', () => {
  let dir: string;
  let tree: FileTree;
  let afs: ArborFs;
  const notes: string[] = [];
  const notifier: KernelNotifier = {
    notifyInvalInode: async (i) => {
      notes.push(`inode ${i}`);
      return true;
    },
    notifyInvalEntry: async (p, name) => {
      notes.push(`entry ${p} ${name}`);
      return true;
    },
  };
  let synced = 0;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'arbor-vfs-'));
    tree = new FileTree({ store: new MemoryChunkStore(), dbPath: join(dir, 'state.sqlite3'), replica: 'A' });
    afs = new ArborFs(tree, { syncState: () => void synced++ });
    afs.attach(notifier);
  });
  after(() => {
    tree.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every entry reply counts one lookup; forget drops the number; tree ids never reach the kernel', async () => {
    const d = afs.mkdir(ctx, ino(1n), 'd', 0o755, 0o022);
    assert.equal(typeof d.ino, 'bigint');
    assert.ok(BigInt(d.ino) > 1n);
    assert.equal(afs.inodes.lookups(BigInt(d.ino)), 1n);
    const again = afs.lookup(ctx, ino(1n), 'd');
    assert.equal(again.ino, d.ino);
    assert.equal(afs.inodes.lookups(BigInt(d.ino)), 2n);
    assert.equal(afs.getattr(ctx, ino(BigInt(d.ino)), undefined).mode, 0o40755);
    afs.forget(ino(BigInt(d.ino)), 2n);
    assert.equal(await errno(() => afs.getattr(ctx, ino(BigInt(d.ino)), undefined)), Errno.ENOENT);
    const fresh = afs.lookup(ctx, ino(1n), 'd');
    assert.notEqual(fresh.ino, d.ino);
  });

  it('hard links share one inode number; nlink counts names', async () => {
    const c = await afs.create(ctx, ino(1n), 'f', 0o644, 0o022, O_WRONLY);
    await afs.release(ctx, ino(BigInt(c.entry.ino)), c.fh as FileHandle, 0);
    const l = afs.link(ctx, ino(BigInt(c.entry.ino)), ino(1n), 'g');
    assert.equal(l.ino, c.entry.ino);
    assert.equal(l.attr.nlink, 2);
  });

  it('writes, reads, O_APPEND and O_TRUNC through handles; O_DIRECT asks for direct I/O', async () => {
    const c = await afs.create(ctx, ino(1n), 'w', 0o600, 0, O_RDWR);
    const i = ino(BigInt(c.entry.ino));
    const fh = c.fh as FileHandle;
    assert.equal(await afs.write(ctx, i, fh, 0, Buffer.from('hello world'), winfo()), 11);
    assert.equal(Buffer.from(await afs.read(ctx, i, fh, 6, 100)).toString(), 'world');
    await afs.flush(ctx, i, fh, 0n as never);
    await afs.release(ctx, i, fh, 0);
    assert.equal(afs.openHandles, 0);

    const a = await afs.open(ctx, i, O_WRONLY | O_APPEND);
    await afs.write(ctx, i, a.fh as FileHandle, 0, Buffer.from('!'), winfo());
    await afs.release(ctx, i, a.fh as FileHandle, 0);
    const r = await afs.open(ctx, i, O_RDONLY);
    assert.equal(Buffer.from(await afs.read(ctx, i, r.fh as FileHandle, 0, 100)).toString(), 'hello world!');
    await afs.release(ctx, i, r.fh as FileHandle, 0);

    const t = await afs.open(ctx, i, O_WRONLY | O_TRUNC | O_DIRECT);
    assert.equal(t.flags, 1, 'DIRECT_IO');
    assert.equal(afs.getattr(ctx, i, undefined).size, 0);
    await afs.fsync(ctx, i, t.fh as FileHandle, false);
    assert.ok(synced > 0, 'fsync made the state durable');
    await afs.release(ctx, i, t.fh as FileHandle, 0);
  });

  it('holes cost nothing (truncate to 1 TiB, a write far past the end); beyond maxFileSize EFBIG', async () => {
    const small = new ArborFs(tree, { maxFileSize: 2 ** 41 });
    const c = await small.create(ctx, ino(1n), 'holes', 0o644, 0, O_RDWR);
    const i = ino(BigInt(c.entry.ino));
    const fh = c.fh as FileHandle;
    const t0 = Date.now();
    await small.setattr(ctx, i, { size: 2 ** 40 });
    await small.fallocate(ctx, i, fh, 0, 2 ** 40 + 4096, 0);
    assert.equal(await small.write(ctx, i, fh, 2 ** 40 + 2 ** 30, Buffer.from('x'), winfo()), 1);
    await small.fsync(ctx, i, fh, false);
    assert.ok(Date.now() - t0 < 2000, `holes took ${Date.now() - t0} ms`);
    const a = small.getattr(ctx, i);
    assert.equal(a.size, 2 ** 40 + 2 ** 30 + 1);
    assert.ok((a.blocks ?? 0) <= 8, `blocks ${a.blocks}`);
    assert.deepEqual(Buffer.from(await small.read(ctx, i, fh, 2 ** 39, 4096)), Buffer.alloc(4096));
    const tail = Buffer.from(await small.read(ctx, i, fh, 2 ** 40 + 2 ** 30 - 2, 10));
    assert.deepEqual(tail, Buffer.from([0, 0, 0x78]));
    assert.equal(await errno(() => small.setattr(ctx, i, { size: 2 ** 42 })), Errno.EFBIG);
    assert.equal(await errno(() => small.fallocate(ctx, i, fh, 0, 2 ** 41 + 1, 0)), Errno.EFBIG);
    assert.equal(await errno(() => small.write(ctx, i, fh, 2 ** 41, Buffer.from('x'), winfo())), Errno.EFBIG);
    await small.release(ctx, i, fh, 0);
    // The default bound is the largest exact byte offset (2^53 - 1): stress-ng fsize's 2^62 gets EFBIG at once.
    const d = await afs.create(ctx, ino(1n), 'holes-default', 0o644, 0, O_RDWR);
    const di = ino(BigInt(d.entry.ino));
    assert.equal(await errno(() => afs.setattr(ctx, di, { size: 2 ** 54 })), Errno.EFBIG);
    assert.equal(await errno(() => afs.fallocate(ctx, di, d.fh as FileHandle, 2 ** 62, 1, 0)), Errno.EFBIG);
    await afs.setattr(ctx, di, { size: 2 ** 50 });
    assert.equal(afs.getattr(ctx, di).size, 2 ** 50);
    await afs.release(ctx, di, d.fh as FileHandle, 0);
  });

  it('fallocate modes, SEEK_DATA/SEEK_HOLE and copy_file_range errnos', async () => {
    const KEEP = 1;
    const PUNCH = 2;
    const ZERO = 0x10;
    const c = await afs.create(ctx, ino(1n), 'modes', 0o644, 0, O_RDWR);
    const i = ino(BigInt(c.entry.ino));
    const fh = c.fh as FileHandle;
    await afs.write(ctx, i, fh, 0, Buffer.alloc(8192, 1), winfo());
    await afs.fallocate(ctx, i, fh, 1000, 100_000, KEEP);
    assert.equal(afs.getattr(ctx, i).size, 8192, 'KEEP_SIZE alone changes nothing');
    await afs.fallocate(ctx, i, fh, 4096, 4096, PUNCH | KEEP);
    assert.equal(await afs.lseek(ctx, i, fh, 0, 4), 4096, 'SEEK_HOLE');
    assert.equal(await afs.lseek(ctx, i, fh, 10, 3), 10, 'SEEK_DATA inside data');
    assert.equal(await errno(() => afs.lseek(ctx, i, fh, 5000, 3)), Errno.ENXIO, 'no data after 5000');
    assert.equal(await errno(() => afs.lseek(ctx, i, fh, 8192, 4)), Errno.ENXIO, 'at the end');
    assert.equal(await errno(() => afs.lseek(ctx, i, fh, 0, 2)), Errno.EINVAL, "SEEK_END is the kernel's");
    await afs.fallocate(ctx, i, fh, 8000, 1000, ZERO);
    assert.equal(afs.getattr(ctx, i).size, 9000, 'ZERO_RANGE without KEEP_SIZE grows');
    await afs.fallocate(ctx, i, fh, 8000, 5000, ZERO | KEEP);
    assert.equal(afs.getattr(ctx, i).size, 9000);
    for (const mode of [
      PUNCH,
      0x08 /* COLLAPSE */,
      0x20 /* INSERT */,
      0x40 /* UNSHARE */,
      0x04 /* NO_HIDE_STALE */,
    ])
      assert.equal(
        await errno(() => afs.fallocate(ctx, i, fh, 0, 4096, mode | (mode === PUNCH ? 0 : KEEP))),
        Errno.EOPNOTSUPP,
      );
    const data = Buffer.from(await afs.read(ctx, i, fh, 0, 10_000));
    assert.equal(data.length, 9000);
    assert.ok(data.subarray(4096).every((b) => b === 0) && data.subarray(0, 4096).every((b) => b === 1));

    const d = await afs.create(ctx, ino(1n), 'modes-copy', 0o644, 0, O_RDWR);
    const di = ino(BigInt(d.entry.ino));
    const dfh = d.fh as FileHandle;
    assert.equal(await afs.copyFileRange(ctx, i, fh, 100, di, dfh, 10, 1 << 20, 0), 8900);
    assert.equal(afs.getattr(ctx, di).size, 8910);
    assert.equal(await afs.copyFileRange(ctx, i, fh, 9000, di, dfh, 0, 10, 0), 0, 'at the source end');
    assert.equal(
      await errno(() => afs.copyFileRange(ctx, i, fh, 0, di, dfh, 0, 10, 1)),
      Errno.EINVAL,
      'flags',
    );
    assert.equal(
      await errno(() => afs.copyFileRange(ctx, i, fh, 0, i, fh, 100, 1000, 0)),
      Errno.EINVAL,
      'overlap',
    );
    const r = await afs.open(ctx, di, O_RDONLY);
    assert.equal(
      await errno(() => afs.copyFileRange(ctx, i, fh, 0, di, r.fh as FileHandle, 0, 10, 0)),
      Errno.EBADF,
    );
    for (const h of [fh, dfh, r.fh as FileHandle]) await afs.release(ctx, i, h, 0);
  });

  it('a file unlinked while open stays readable through its handle', async () => {
    const c = await afs.create(ctx, ino(1n), 'u', 0o644, 0, O_RDWR);
    const i = ino(BigInt(c.entry.ino));
    const fh = c.fh as FileHandle;
    await afs.write(ctx, i, fh, 0, Buffer.from('still here'), winfo());
    await afs.flush(ctx, i, fh, 0n as never);
    afs.unlink(ctx, ino(1n), 'u');
    assert.equal(await errno(() => afs.lookup(ctx, ino(1n), 'u')), Errno.ENOENT);
    assert.equal(afs.getattr(ctx, i, undefined).nlink, 0);
    assert.equal(Buffer.from(await afs.read(ctx, i, fh, 0, 100)).toString(), 'still here');
    await afs.release(ctx, i, fh, 0);
  });

  it('readdirplus counts a lookup only for entries the buffer took; offsets resume without repeats', async () => {
    const d = afs.mkdir(ctx, ino(1n), 'many', 0o755, 0);
    const di = ino(BigInt(d.ino));
    for (let k = 0; k < 20; k++) afs.mkdir(ctx, di, `e${k}`, 0o755, 0);
    // Forget what mkdir handed out, so only readdirplus counts below.
    for (let k = 0; k < 20; k++) {
      const e = afs.lookup(ctx, di, `e${k}`);
      afs.forget(ino(BigInt(e.ino)), 2n);
    }
    const seen: string[] = [];
    let off = 0n;
    for (;;) {
      const b = new Buf(7);
      afs.readdirplus(ctx, di, 0n as FileHandle, off, b);
      if (b.got.length === 0) break;
      for (const { e, entry } of b.got) {
        seen.push(e.name);
        if (e.name === '.' || e.name === '..') assert.equal(entry, null);
        else assert.equal(afs.inodes.lookups(BigInt(e.ino)), 1n, `${e.name} counted once`);
      }
      off = b.got[b.got.length - 1]!.e.off;
    }
    assert.equal(seen.length, 22);
    assert.equal(new Set(seen).size, 22);
    // An entry added mid-listing does not disturb the entries after the offset.
    const b1 = new Buf(5);
    afs.readdir(ctx, di, 0n as FileHandle, 0n, b1);
    afs.mkdir(ctx, di, 'zz-new', 0o755, 0);
    const rest = new Buf();
    afs.readdir(ctx, di, 0n as FileHandle, b1.got[4]!.e.off, rest);
    const names = [...b1.got, ...rest.got].map((x) => x.e.name).filter((n) => n !== 'zz-new');
    assert.equal(new Set(names).size, names.length, 'no repeats');
    assert.equal(names.length, 22, 'none skipped');
  });

  it('errors map to Linux errnos (ENOENT, EEXIST, ENOTEMPTY, EINVAL for whiteout, EROFS when read-only)', async () => {
    assert.equal(await errno(() => afs.lookup(ctx, ino(1n), 'nope')), Errno.ENOENT);
    assert.equal(await errno(() => afs.mkdir(ctx, ino(1n), 'd', 0o755, 0)), Errno.EEXIST);
    assert.equal(await errno(() => afs.rmdir(ctx, ino(1n), 'many')), Errno.ENOTEMPTY);
    assert.equal(await errno(() => afs.rename(ctx, ino(1n), 'd', ino(1n), 'x', 4)), Errno.EINVAL);
    assert.equal(await errno(() => afs.getattr(ctx, ino(999999n), undefined)), Errno.ENOENT);
    const ro = new ArborFs(tree, { readOnly: true });
    assert.equal(await errno(() => ro.mkdir(ctx, ino(1n), 'x', 0o755, 0)), Errno.EROFS);
    assert.equal(await errno(() => ro.open(ctx, ino(1n), O_WRONLY)), Errno.EROFS);
  });

  it('new nodes belong to the caller; a setgid directory passes on its group', async () => {
    const d = afs.mkdir(ctx, ino(1n), 'sg', 0o2775, 0);
    await afs.setattr(ctx, ino(BigInt(d.ino)), { gid: 50 });
    const sub = afs.mkdir(user, ino(BigInt(d.ino)), 'sub', 0o755, 0o022);
    assert.equal(sub.attr.uid, 1000);
    assert.equal(sub.attr.gid, 50);
    assert.equal(sub.attr.mode & 0o2000, 0o2000);
    assert.equal(await errno(() => afs.access(user, ino(BigInt(d.ino)), 2)), Errno.EACCES);
    assert.equal(await errno(() => afs.access(user, ino(BigInt(sub.ino)), 7)), 0);
  });

  it('invalidate() notifies only nodes and names the kernel was given', async () => {
    const d = afs.lookup(ctx, ino(1n), 'd');
    notes.length = 0;
    await afs.invalidate({
      nodes: [tree.lookupId(ROOT, 'd'), 'never-seen-node'],
      dirs: [
        { dir: ROOT, names: ['new-name'] },
        { dir: 'unknown-dir', names: ['x'] },
      ],
    });
    assert.deepEqual(notes.sort(), [`entry 1 new-name`, `inode 1`, `inode ${d.ino}`].sort());
  });

  it('names whose readdir cookies are negative list completely across small buffers', () => {
    const d = afs.mkdir(ctx, ino(1n), 'cookies', 0o755, 0);
    const di = ino(BigInt(d.ino));
    // These names hash to negative cookies in the tree (see the report); the listing must still be complete.
    const names = Array.from({ length: 120 }, (_, i) => `entry-${i}-${'x'.repeat(i % 40)}`);
    for (const n of names) afs.mknod(ctx, di, n, 0o100644, 0, 0);
    const seen: string[] = [];
    let off = 0n;
    for (let guard = 0; guard < 1000; guard++) {
      const b = new Buf(5);
      afs.readdir(ctx, di, 0n as FileHandle, off, b);
      if (b.got.length === 0) break;
      for (const { e } of b.got) {
        assert.ok(e.off > 0n, 'offsets are positive');
        seen.push(e.name);
      }
      off = b.got[b.got.length - 1]!.e.off;
    }
    assert.deepEqual(seen.slice(2).sort(), [...names].sort());
    assert.deepEqual(seen.slice(0, 2), ['.', '..']);
  });
});

describe('ArborFs readahead', () => {
  it('a sequential reader gets the next chunks prefetched; a random reader does not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arbor-vfs-ra-'));
    const inner = new MemoryChunkStore({ chunking: { minSize: 256, avgSize: 1024, maxSize: 4096 } });
    const prefetched: string[] = [];
    const store: ChunkStore = {
      chunking: inner.chunking,
      split: (d, f) => inner.split(d, f),
      put: (c) => inner.put(c),
      get: (r) => inner.get(r),
      prefetch: (refs) => {
        for (const r of refs) prefetched.push(r.id);
      },
    };
    const tree = new FileTree({ store, dbPath: join(dir, 'state.sqlite3'), replica: 'A' });
    try {
      const afs = new ArborFs(tree, { readaheadBytes: 8192, readaheadAfter: 4096 });
      const data = randomBytes(64 * 1024);
      const c = await afs.create(ctx, ino(1n), 'big', 0o644, 0, O_WRONLY);
      const i = ino(BigInt(c.entry.ino));
      await afs.write(ctx, i, c.fh as FileHandle, 0, data, winfo());
      await afs.release(ctx, i, c.fh as FileHandle, 0);

      const r = await afs.open(ctx, i, O_RDONLY);
      for (const off of [40_000, 3_000, 60_000, 10_000, 20_000])
        await afs.read(ctx, i, r.fh as FileHandle, off, 1000);
      assert.equal(prefetched.length, 0, 'no readahead for random reads');
      const got: Buffer[] = [];
      for (let off = 0; off < data.length; off += 2048) {
        got.push(Buffer.from(await afs.read(ctx, i, r.fh as FileHandle, off, 2048)));
      }
      assert.ok(Buffer.concat(got).equals(data));
      assert.ok(prefetched.length > 0, 'sequential reads prefetch');
      assert.ok(new Set(prefetched).size === prefetched.length, 'each chunk is asked for once');
      await afs.release(ctx, i, r.fh as FileHandle, 0);
    } finally {
      tree.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
