// Golden byte tests of the protocol core through handle(bytes) → bytes, with no mount.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno, fsError } from '../errors.js';
import { F_RDLCK, F_UNLCK, F_WRLCK, InitFlag, Opcode } from './abi.js';
import type { DirBuffer, Entry, LowLevelFileSystem } from './filesystem.js';
import { type NodeId } from './ids.js';
import { LockManager, OFFSET_MAX } from './locks.js';
import { checkTable, OPS, type Reply } from './ops.js';
import { Session } from './session.js';

/** Little-endian byte builders, so each golden array reads as its struct. */
const u16 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff];
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const u64 = (v: bigint | number): number[] => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return [...b];
};
const i32 = (v: number): number[] => u32(v >>> 0);
const str = (s: string): number[] => [...Buffer.from(s + '\0')];

/** fuse_in_header + body. */
function request(
  opcode: number,
  unique: number,
  nodeid: number,
  body: number[],
  uid = 1000,
  gid = 100,
  pid = 42,
): Buffer {
  return Buffer.from([
    ...u32(40 + body.length), // len
    ...u32(opcode), // opcode
    ...u64(unique), // unique
    ...u64(nodeid), // nodeid
    ...u32(uid), // uid
    ...u32(gid), // gid
    ...u32(pid), // pid
    ...u16(0), // total_extlen
    ...u16(0), // padding
    ...body,
  ]);
}

const INIT_BODY = [
  ...u32(7), // major
  ...u32(45), // minor (what this kernel offers)
  ...u32(131072), // max_readahead
  ...u32(0xffffffff), // flags: everything
  ...u32(0), // flags2
  ...Array(44).fill(0), // unused[11]
];

function flat(r: Reply): Buffer {
  assert.ok(r !== null, 'expected a reply');
  return Array.isArray(r) ? Buffer.concat(r) : r;
}

async function initd(fs: LowLevelFileSystem, opts = {}): Promise<Session> {
  const s = new Session(fs, opts);
  const r = flat(await s.handle(request(Opcode.INIT, 1, 0, INIT_BODY)));
  assert.equal(r.readInt32LE(4), 0);
  return s;
}

const T = 1_700_000_000_123_456_789n;
const FILE_ATTR = {
  ino: 5n,
  size: 1000,
  atimeNs: T,
  mtimeNs: T,
  ctimeNs: T,
  mode: 0o100644,
  nlink: 1,
  uid: 1000,
  gid: 100,
};

describe('opcode table', () => {
  it('is consistent with the ABI (one entry per opcode, names agree, sizes aligned)', () => {
    assert.deepEqual(checkTable(), []);
  });
  it('marks exactly FORGET, BATCH_FORGET, INTERRUPT and NOTIFY_REPLY as reply-less', () => {
    const silent = OPS.filter((o) => !o.replies)
      .map((o) => o.name)
      .sort();
    assert.deepEqual(silent, ['BATCH_FORGET', 'FORGET', 'INTERRUPT', 'NOTIFY_REPLY']);
  });
  it('implements every opcode a complete filesystem uses', () => {
    const needed = [
      'LOOKUP',
      'FORGET',
      'BATCH_FORGET',
      'GETATTR',
      'SETATTR',
      'READLINK',
      'SYMLINK',
      'MKNOD',
      'MKDIR',
      'UNLINK',
      'RMDIR',
      'RENAME',
      'RENAME2',
      'LINK',
      'OPEN',
      'CREATE',
      'READ',
      'WRITE',
      'FLUSH',
      'RELEASE',
      'FSYNC',
      'OPENDIR',
      'READDIR',
      'READDIRPLUS',
      'RELEASEDIR',
      'FSYNCDIR',
      'STATFS',
      'SETXATTR',
      'GETXATTR',
      'LISTXATTR',
      'REMOVEXATTR',
      'ACCESS',
      'INTERRUPT',
      'DESTROY',
      'FALLOCATE',
      'LSEEK',
      'GETLK',
      'SETLK',
      'SETLKW',
      'COPY_FILE_RANGE',
      'INIT',
    ];
    for (const n of needed) assert.ok(OPS.find((o) => o.name === n)?.run, `${n} has a handler`);
  });
});

describe('INIT', () => {
  it('answers 7.38 with 1 MiB writes, 256 pages and the negotiated flags', async () => {
    const s = new Session({ readdirplus: () => undefined });
    const r = flat(await s.handle(request(Opcode.INIT, 1, 0, INIT_BODY)));
    assert.equal(r.length, 16 + 64);
    assert.equal(r.readUInt32LE(0), 80); // len
    assert.equal(r.readInt32LE(4), 0); // error
    assert.equal(r.readBigUInt64LE(8), 1n); // unique
    assert.equal(r.readUInt32LE(16), 7); // major
    assert.equal(r.readUInt32LE(20), 38); // minor
    assert.equal(r.readUInt32LE(24), 131072); // max_readahead: min(kernel, ours)
    const flags = r.readUInt32LE(28);
    for (const f of [
      'ASYNC_READ',
      'ATOMIC_O_TRUNC',
      'BIG_WRITES',
      'PARALLEL_DIROPS',
      'MAX_PAGES',
      'POSIX_LOCKS',
      'FLOCK_LOCKS',
      'DO_READDIRPLUS',
      'READDIRPLUS_AUTO',
    ] as const) {
      assert.ok(flags & InitFlag[f], `${f} negotiated`);
    }
    assert.equal(flags & InitFlag.WRITEBACK_CACHE, 0, 'writeback off by default');
    assert.equal(r.readUInt16LE(32), 64); // max_background
    assert.equal(r.readUInt32LE(36), 1 << 20); // max_write
    assert.equal(r.readUInt32LE(40), 1); // time_gran
    assert.equal(r.readUInt16LE(44), 256); // max_pages
    assert.equal((await s.ready()).maxWrite, 1 << 20);
  });
  it('offers only what the kernel offers, and writeback only when asked', async () => {
    const s = new Session({}, { writebackCache: true });
    const body = [...INIT_BODY];
    body.splice(12, 4, ...u32(InitFlag.ASYNC_READ | InitFlag.WRITEBACK_CACHE));
    const r = flat(await s.handle(request(Opcode.INIT, 1, 0, body)));
    assert.equal(r.readUInt32LE(28), InitFlag.ASYNC_READ | InitFlag.WRITEBACK_CACHE);
  });
  it('refuses requests before INIT with EIO and an old major with EPROTO', async () => {
    const s = new Session({ getattr: () => FILE_ATTR });
    const r = flat(await s.handle(request(Opcode.GETATTR, 7, 1, Array(16).fill(0))));
    assert.deepEqual([...r], [...u32(16), ...i32(-Errno.EIO), ...u64(7)]);
    const old = [...INIT_BODY];
    old.splice(0, 4, ...u32(6));
    const r2 = flat(await s.handle(request(Opcode.INIT, 8, 0, old)));
    assert.equal(r2.readInt32LE(4), -Errno.EPROTO);
  });
});

describe('dispatch', () => {
  it('LOOKUP: golden request and entry reply', async () => {
    const seen: unknown[] = [];
    const s = await initd(
      {
        lookup: (ctx, parent, name): Entry => {
          seen.push([ctx.uid, ctx.gid, ctx.pid, parent, name]);
          return { ino: 5n, generation: 3n, attr: FILE_ATTR, entryTtl: 1.5, attrTtl: 2 };
        },
      },
      { entryTimeout: 1, attrTimeout: 1 },
    );
    const r = flat(await s.handle(request(Opcode.LOOKUP, 0x1234, 1, str('hello'))));
    assert.deepEqual(seen, [[1000, 100, 42, 1n, 'hello']]);
    const sec = Number(T / 1_000_000_000n);
    const nsec = Number(T % 1_000_000_000n);
    const expected = [
      ...u32(144),
      ...i32(0),
      ...u64(0x1234), // out header: len, error, unique
      ...u64(5),
      ...u64(3), // nodeid, generation
      ...u64(1),
      ...u64(2), // entry_valid, attr_valid (seconds)
      ...u32(500_000_000),
      ...u32(0), // entry_valid_nsec, attr_valid_nsec
      ...u64(5),
      ...u64(1000),
      ...u64(2), // attr: ino, size, blocks
      ...u64(sec),
      ...u64(sec),
      ...u64(sec), // atime, mtime, ctime
      ...u32(nsec),
      ...u32(nsec),
      ...u32(nsec), // *timensec
      ...u32(0o100644),
      ...u32(1),
      ...u32(1000),
      ...u32(100), // mode, nlink, uid, gid
      ...u32(0),
      ...u32(4096),
      ...u32(0), // rdev, blksize, flags
    ];
    assert.deepEqual([...r], expected);
  });

  it('names that are not valid UTF-8 are refused with EILSEQ (never silently merged)', async () => {
    const names: string[] = [];
    const s = await initd({
      lookup: (_c, _p, name) => {
        names.push(name);
        return { ino: 5n, attr: FILE_ATTR };
      },
    });
    const bad = flat(await s.handle(request(Opcode.LOOKUP, 90, 1, [0x61, 0xff, 0])));
    assert.equal(bad.readInt32LE(4), -Errno.EILSEQ);
    const good = flat(await s.handle(request(Opcode.LOOKUP, 91, 1, str('été'))));
    assert.equal(good.readInt32LE(4), 0);
    assert.deepEqual(names, ['été']);
  });

  it('unknown opcodes and unimplemented methods answer ENOSYS', async () => {
    const s = await initd({});
    assert.deepEqual(
      [...flat(await s.handle(request(9999, 5, 1, [])))],
      [...u32(16), ...i32(-Errno.ENOSYS), ...u64(5)],
    );
    const r = flat(await s.handle(request(Opcode.MKDIR, 6, 1, [...u32(0o755), ...u32(0o22), ...str('d')])));
    assert.equal(r.readInt32LE(4), -Errno.ENOSYS);
    const r2 = flat(await s.handle(request(Opcode.BMAP, 7, 1, Array(16).fill(0))));
    assert.equal(r2.readInt32LE(4), -Errno.ENOSYS);
  });

  it('a throwing handler answers its errno (sync, async, plain errors → EIO), and the session lives on', async () => {
    let mode = 0;
    const s = await initd({
      getattr: () => {
        if (mode === 0) throw fsError('ENOENT');
        if (mode === 1) return Promise.reject(fsError('EACCES'));
        if (mode === 2) throw new Error('boom');
        if (mode === 3) throw Object.assign(new Error('sys'), { errno: -Errno.ENOSPC });
        // libuv-only codes (getaddrinfo EAI_AGAIN is -3001, UV_EOF -4095): the kernel refuses a reply whose error
        // is -512 or below with EINVAL and the request would never be answered, so they become EIO.
        if (mode === 4) throw Object.assign(new Error('getaddrinfo EAI_AGAIN'), { errno: -3001 });
        if (mode === 5) throw Object.assign(new Error('uv eof'), { errno: -4095 });
        if (mode === 6) throw Object.assign(new Error('restart'), { errno: 512 });
        return FILE_ATTR;
      },
    });
    const codes: number[] = [];
    for (mode = 0; mode < 8; mode++) {
      codes.push(
        flat(await s.handle(request(Opcode.GETATTR, 10 + mode, 5, Array(16).fill(0)))).readInt32LE(4),
      );
    }
    assert.deepEqual(codes, [
      -Errno.ENOENT,
      -Errno.EACCES,
      -Errno.EIO,
      -Errno.ENOSPC,
      -Errno.EIO,
      -Errno.EIO,
      -Errno.EIO,
      0,
    ]);
  });

  it('a truncated body answers EINVAL; a header too short to answer is dropped', async () => {
    const s = await initd({ mkdir: () => assert.fail('must not be called') });
    const r = flat(await s.handle(request(Opcode.MKDIR, 3, 1, [1, 2, 3])));
    assert.equal(r.readInt32LE(4), -Errno.EINVAL);
    assert.equal(await s.handle(Buffer.alloc(20)), null);
  });

  it('FORGET, BATCH_FORGET and INTERRUPT get no reply; forgets reach the filesystem', async () => {
    const forgotten: Array<[NodeId, bigint]> = [];
    const s = await initd({ forget: (ino, n) => void forgotten.push([ino, n]) });
    assert.equal(await s.handle(request(Opcode.FORGET, 20, 7, u64(3))), null);
    const batch = [...u32(2), ...u32(0), ...u64(8), ...u64(1), ...u64(9), ...u64(4)]; // count, dummy, {nodeid, nlookup}×2
    assert.equal(await s.handle(request(Opcode.BATCH_FORGET, 21, 0, batch)), null);
    assert.equal(await s.handle(request(Opcode.INTERRUPT, 22, 0, u64(20))), null);
    assert.deepEqual(forgotten, [
      [7n, 3n],
      [8n, 1n],
      [9n, 4n],
    ]);
  });

  it('READ answers header + data (zero-copy iovec), trimmed to the size asked', async () => {
    const data = Buffer.from('0123456789');
    const s = await initd({
      read: (_c, _i, fh, off, size) => (fh === 77n ? data.subarray(off, off + size + 3) : Buffer.alloc(0)),
    });
    const body = [...u64(77), ...u64(2), ...u32(4), ...u32(0), ...u64(0), ...u32(0), ...u32(0)]; // fh, offset, size, read_flags, lock_owner, flags, pad
    const r = await s.handle(request(Opcode.READ, 30, 5, body));
    assert.ok(Array.isArray(r));
    assert.deepEqual([...flat(r)], [...u32(20), ...i32(0), ...u64(30), ...Buffer.from('2345')]);
  });

  it('WRITE passes the payload and answers the count', async () => {
    let got = '';
    const s = await initd({
      write: (_c, _i, _fh, off, d, info) => {
        got = `${off}:${d.toString()}:${info.flags}`;
        return d.length;
      },
    });
    const payload = [...Buffer.from('abc')];
    const body = [
      ...u64(1),
      ...u64(10),
      ...u32(3),
      ...u32(0),
      ...u64(0),
      ...u32(0o2001),
      ...u32(0),
      ...payload,
    ];
    const r = flat(await s.handle(request(Opcode.WRITE, 31, 5, body)));
    assert.equal(got, `10:abc:${0o2001}`);
    assert.deepEqual([...r], [...u32(24), ...i32(0), ...u64(31), ...u32(3), ...u32(0)]);
  });

  it('WRITE keep() marks the slot taken and returns the same bytes', async () => {
    let kept: Buffer | undefined;
    const s = await initd({ write: (_c, _i, _fh, _off, _d, info) => (kept = info.keep()).length });
    const body = [...u64(1), ...u64(0), ...u32(2), ...u32(0), ...u64(0), ...u32(0), ...u32(0), 0x68, 0x69];
    const req = request(Opcode.WRITE, 32, 5, body);
    const slot = { taken: false };
    await s.handle(req, slot);
    assert.equal(slot.taken, true);
    assert.equal(kept?.buffer, req.buffer, 'no copy: a view of the request buffer');
    assert.equal(kept?.toString(), 'hi');
    const req2 = request(Opcode.WRITE, 33, 5, body);
    await s.handle(req2); // no slot: a private copy
    req2.fill(0);
    assert.equal(kept?.toString(), 'hi');
  });

  it('RENAME2 carries flags; RENAME is flags 0', async () => {
    const calls: unknown[] = [];
    const s = await initd({ rename: (_c, p, n, np, nn, f) => void calls.push([p, n, np, nn, f]) });
    await s.handle(
      request(Opcode.RENAME2, 40, 1, [...u64(2), ...u32(1), ...u32(0), ...str('a'), ...str('b')]),
    );
    await s.handle(request(Opcode.RENAME, 41, 1, [...u64(3), ...str('c'), ...str('d')]));
    assert.deepEqual(calls, [
      [1n, 'a', 2n, 'b', 1],
      [1n, 'c', 3n, 'd', 0],
    ]);
  });

  it('SETATTR decodes only the valid fields', async () => {
    let changes: unknown;
    const s = await initd({
      setattr: (_c, _i, ch) => {
        changes = ch;
        return FILE_ATTR;
      },
    });
    const body = Buffer.alloc(88);
    body.writeUInt32LE(8 | 32 | 128, 0); // valid: SIZE | MTIME | ATIME_NOW
    body.writeBigUInt64LE(4096n, 16); // size
    body.writeBigInt64LE(100n, 40); // mtime
    body.writeUInt32LE(5, 60); // mtimensec
    body.writeUInt32LE(0o777, 68); // mode (not valid: ignored)
    const r = flat(await s.handle(request(Opcode.SETATTR, 50, 5, [...body])));
    assert.equal(r.readInt32LE(4), 0);
    assert.equal(r.length, 16 + 104);
    assert.deepEqual(changes, { size: 4096, atimeNs: 'now', mtimeNs: 100_000_000_005n });
  });

  it('GETXATTR/LISTXATTR: size probes, ERANGE, values', async () => {
    const s = await initd({ getxattr: () => Buffer.from('value'), listxattr: () => ['user.a', 'user.bb'] });
    const probe = flat(
      await s.handle(request(Opcode.GETXATTR, 60, 5, [...u32(0), ...u32(0), ...str('user.a')])),
    );
    assert.deepEqual([...probe], [...u32(24), ...i32(0), ...u64(60), ...u32(5), ...u32(0)]);
    const small = flat(
      await s.handle(request(Opcode.GETXATTR, 61, 5, [...u32(2), ...u32(0), ...str('user.a')])),
    );
    assert.equal(small.readInt32LE(4), -Errno.ERANGE);
    const v = flat(
      await s.handle(request(Opcode.GETXATTR, 62, 5, [...u32(64), ...u32(0), ...str('user.a')])),
    );
    assert.equal(v.subarray(16).toString(), 'value');
    const l = flat(await s.handle(request(Opcode.LISTXATTR, 63, 5, [...u32(64), ...u32(0)])));
    assert.equal(l.subarray(16).toString(), 'user.a\0user.bb\0');
  });

  it('READDIR packs 8-aligned dirents until the buffer is full', async () => {
    const added: boolean[] = [];
    const s = await initd({
      readdir: (_c, _i, _fh, off, out: DirBuffer) => {
        for (let i = Number(off); i < 3; i++) {
          const ok = out.add({ name: `f${i}`, ino: 10n + BigInt(i), mode: 0o100644, off: BigInt(i + 1) });
          added.push(ok);
          if (!ok) break;
        }
      },
    });
    const body = [...u64(0), ...u64(0), ...u32(64), ...u32(0), ...u64(0), ...u32(0), ...u32(0)];
    const r = flat(await s.handle(request(Opcode.READDIR, 70, 1, body)));
    assert.deepEqual(added, [true, true, false]); // each record is 32 bytes: 2 fit in 64
    assert.deepEqual(
      [...r],
      [
        ...u32(16 + 64),
        ...i32(0),
        ...u64(70),
        ...u64(10),
        ...u64(1),
        ...u32(2),
        ...u32(8),
        ...Buffer.from('f0'),
        0,
        0,
        0,
        0,
        0,
        0, // ino, off, namelen, type DT_REG, name, pad
        ...u64(11),
        ...u64(2),
        ...u32(2),
        ...u32(8),
        ...Buffer.from('f1'),
        0,
        0,
        0,
        0,
        0,
        0,
      ],
    );
  });

  it('STATFS without a statfs method answers namelen 255', async () => {
    const s = await initd({});
    const r = flat(await s.handle(request(Opcode.STATFS, 80, 1, [])));
    assert.equal(r.length, 16 + 80);
    assert.equal(r.readUInt32LE(16 + 44), 255);
  });
});

describe('locks through the protocol', () => {
  const lk = (owner: number, start: bigint, end: bigint, type: number, pid: number, flags = 0): number[] => [
    ...u64(1),
    ...u64(owner), // fh, owner
    ...u64(start),
    ...u64(end),
    ...u32(type),
    ...u32(pid), // fuse_file_lock
    ...u32(flags),
    ...u32(0), // lk_flags, padding
  ];
  it('SETLK conflicts answer EAGAIN, GETLK reports the holder, SETLKW waits and INTERRUPT answers EINTR', async () => {
    const s = await initd({});
    const ok = flat(await s.handle(request(Opcode.SETLK, 1, 5, lk(1, 0n, 99n, F_WRLCK, 111))));
    assert.equal(ok.readInt32LE(4), 0);
    const busy = flat(await s.handle(request(Opcode.SETLK, 2, 5, lk(2, 50n, 60n, F_RDLCK, 222))));
    assert.equal(busy.readInt32LE(4), -Errno.EAGAIN);
    const g = flat(await s.handle(request(Opcode.GETLK, 3, 5, lk(2, 50n, 60n, F_RDLCK, 222))));
    assert.deepEqual([...g.subarray(16)], [...u64(0), ...u64(99), ...u32(F_WRLCK), ...u32(111)]);
    const free = flat(await s.handle(request(Opcode.GETLK, 4, 5, lk(2, 100n, 200n, F_WRLCK, 222))));
    assert.equal(free.readUInt32LE(32), F_UNLCK);
    // A waiter is granted when the holder unlocks.
    const waiting = s.handle(request(Opcode.SETLKW, 5, 5, lk(2, 0n, 10n, F_WRLCK, 222)));
    assert.ok(waiting instanceof Promise);
    await s.handle(request(Opcode.SETLK, 6, 5, lk(1, 0n, 99n, F_UNLCK, 111)));
    assert.equal(flat(await waiting).readInt32LE(4), 0);
    // Another waiter is interrupted.
    const w2 = s.handle(request(Opcode.SETLKW, 7, 5, lk(3, 0n, 10n, F_RDLCK, 333)));
    assert.equal(await s.handle(request(Opcode.INTERRUPT, 8, 0, u64(7))), null);
    assert.equal(flat(await w2).readInt32LE(4), -Errno.EINTR);
  });
  it('an INTERRUPT handled before its SETLKW (reads complete out of order) still cancels it', async () => {
    const s = await initd({});
    assert.equal(
      flat(await s.handle(request(Opcode.SETLK, 1, 5, lk(1, 0n, 99n, F_WRLCK, 111)))).readInt32LE(4),
      0,
    );
    // Interrupts of requests that never wait (or were answered) are remembered only boundedly.
    for (let i = 0; i < 3000; i++)
      await s.handle(request(Opcode.INTERRUPT, 100_000 + i, 0, u64(200_000 + i)));
    assert.equal(await s.handle(request(Opcode.INTERRUPT, 10, 0, u64(9))), null);
    const late = s.handle(request(Opcode.SETLKW, 9, 5, lk(2, 0n, 10n, F_WRLCK, 222)));
    assert.equal(flat(await late).readInt32LE(4), -Errno.EINTR, 'cancelled, not waiting for good');
    // The remembered interrupt was used up: a later waiter waits and is granted on unlock.
    const w = s.handle(request(Opcode.SETLKW, 11, 5, lk(3, 0n, 10n, F_WRLCK, 333)));
    await s.handle(request(Opcode.SETLK, 12, 5, lk(1, 0n, 99n, F_UNLCK, 111)));
    assert.equal(flat(await w).readInt32LE(4), 0);
  });
  it('a SETLKW that would deadlock two POSIX owners answers EDEADLK (flock waiters just wait)', async () => {
    const s = await initd({});
    const code = async (r: ReturnType<typeof s.handle>): Promise<number> => flat(await r).readInt32LE(4);
    assert.equal(await code(s.handle(request(Opcode.SETLK, 1, 5, lk(1, 0n, 9n, F_WRLCK, 1)))), 0);
    assert.equal(await code(s.handle(request(Opcode.SETLK, 2, 5, lk(2, 10n, 19n, F_WRLCK, 2)))), 0);
    assert.equal(await code(s.handle(request(Opcode.SETLK, 3, 5, lk(3, 20n, 29n, F_WRLCK, 3)))), 0);
    const w1 = s.handle(request(Opcode.SETLKW, 4, 5, lk(1, 10n, 10n, F_WRLCK, 1))); // 1 waits for 2
    const w2 = s.handle(request(Opcode.SETLKW, 5, 5, lk(2, 20n, 20n, F_WRLCK, 2))); // 2 waits for 3
    // 3 asking for 1's range closes the cycle 3 → 1 → 2 → 3.
    assert.equal(
      await code(s.handle(request(Opcode.SETLKW, 6, 5, lk(3, 0n, 0n, F_WRLCK, 3)))),
      -Errno.EDEADLK,
    );
    await s.handle(request(Opcode.SETLK, 7, 5, lk(3, 20n, 29n, F_UNLCK, 3)));
    assert.equal(await code(w2), 0);
    await s.handle(request(Opcode.SETLK, 8, 5, lk(2, 0n, OFFSET_MAX, F_UNLCK, 2)));
    assert.equal(await code(w1), 0);
  });
  it('flock locks (LK_FLOCK) are separate from POSIX locks and released by RELEASE', async () => {
    const s = await initd({});
    assert.equal(
      flat(await s.handle(request(Opcode.SETLK, 1, 5, lk(1, 0n, OFFSET_MAX, F_WRLCK, 1, 1)))).readInt32LE(4),
      0,
    );
    assert.equal(
      flat(await s.handle(request(Opcode.SETLK, 2, 5, lk(2, 0n, OFFSET_MAX, F_WRLCK, 2, 1)))).readInt32LE(4),
      -Errno.EAGAIN,
    );
    assert.equal(
      flat(await s.handle(request(Opcode.SETLK, 3, 5, lk(2, 0n, 10n, F_WRLCK, 2)))).readInt32LE(4),
      0,
      'posix is separate',
    );
    const rel = [...u64(1), ...u32(0), ...u32(2), ...u64(1)]; // fh, flags, release_flags FLOCK_UNLOCK, lock_owner
    assert.equal(flat(await s.handle(request(Opcode.RELEASE, 4, 5, rel))).readInt32LE(4), 0);
    assert.equal(
      flat(await s.handle(request(Opcode.SETLK, 5, 5, lk(2, 0n, OFFSET_MAX, F_WRLCK, 2, 1)))).readInt32LE(4),
      0,
    );
  });
});

describe('LockManager', () => {
  it('matches a per-byte model under random lock/unlock sequences (property)', () => {
    const SIZE = 12;
    const step = fc.record({
      owner: fc.integer({ min: 1, max: 3 }),
      start: fc.integer({ min: 0, max: SIZE - 1 }),
      len: fc.integer({ min: 1, max: SIZE }),
      type: fc.constantFrom(F_RDLCK, F_WRLCK, F_UNLCK),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const m = new LockManager();
        // model[byte][owner] = lock type or undefined
        const model: Array<Map<number, number>> = Array.from({ length: SIZE }, () => new Map());
        for (const st of steps) {
          const end = Math.min(SIZE - 1, st.start + st.len - 1);
          let conflict = false;
          for (let b = st.start; b <= end && st.type !== F_UNLCK; b++) {
            for (const [o, t] of model[b]!)
              if (o !== st.owner && (t === F_WRLCK || st.type === F_WRLCK)) conflict = true;
          }
          const lock = { start: BigInt(st.start), end: BigInt(end), type: st.type, pid: st.owner };
          if (conflict) {
            assert.throws(
              () => m.set(5n, BigInt(st.owner), lock, false),
              (e: { errno?: number }) => e.errno === Errno.EAGAIN,
            );
            continue;
          }
          m.set(5n, BigInt(st.owner), lock, false);
          for (let b = st.start; b <= end; b++) {
            if (st.type === F_UNLCK) model[b]!.delete(st.owner);
            else model[b]!.set(st.owner, st.type);
          }
          // Every byte's state agrees with test(): a write probe by a fresh owner sees a lock iff any is held.
          for (let b = 0; b < SIZE; b++) {
            const t = m.test(5n, 99n, { start: BigInt(b), end: BigInt(b), type: F_WRLCK, pid: 0 });
            assert.equal(t.type !== F_UNLCK, model[b]!.size > 0, `byte ${b}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('notifications', () => {
  it('inval_entry, inval_inode and delete are written with unique 0 and the code in `error`', async () => {
    const s = await initd({});
    const sent: Buffer[] = [];
    s.setNotifySink(async (iov) => void sent.push(Buffer.concat(iov)));
    assert.equal(await s.notifyInvalEntry(1n, 'ab'), true);
    assert.equal(await s.notifyInvalInode(5n, 0, 0), true);
    assert.equal(await s.notifyDelete(1n, 5n, 'ab'), true);
    assert.deepEqual(
      [...sent[0]!],
      [...u32(16 + 16 + 3), ...i32(3), ...u64(0), ...u64(1), ...u32(2), ...u32(0), ...str('ab')], // INVAL_ENTRY: parent, namelen, flags, name
    );
    assert.deepEqual([...sent[1]!], [...u32(40), ...i32(2), ...u64(0), ...u64(5), ...u64(0), ...u64(0)]); // INVAL_INODE: ino, off, len
    assert.deepEqual(
      [...sent[2]!],
      [...u32(16 + 24 + 3), ...i32(6), ...u64(0), ...u64(1), ...u64(5), ...u32(2), ...u32(0), ...str('ab')],
    );
  });
  it('a kernel ENOENT (nothing cached) resolves false', async () => {
    const s = await initd({});
    s.setNotifySink(() => Promise.reject(Object.assign(new Error('x'), { errno: -2, code: 'ENOENT' })));
    assert.equal(await s.notifyInvalInode(5n), false);
  });
});
