// The opcode table: for each FUSE opcode its input layout, whether it replies, and how it is decoded,
// dispatched to the LowLevelFileSystem and encoded. Knows nothing of /dev/fuse or of any filesystem.
import { Errno } from '../errors.js';
import {
  FSYNC_FDATASYNC,
  GETATTR_FH,
  LK_FLOCK,
  OPEN_KILL_SUIDGID,
  Opcode,
  RELEASE_FLOCK_UNLOCK,
  SetattrValid,
  Size,
  WRITE_KILL_SUIDGID,
  type OpcodeName,
} from './abi.js';
import {
  cstring,
  DirPacker,
  okReply,
  u64n,
  writeAttrOut,
  writeEntry,
  writeStatfs,
  type InHeader,
} from './codec.js';
import type { Entry, FileLock, Opened, RequestContext, SetattrChanges } from './filesystem.js';
import type { FileHandle, LockOwner, NodeId } from './ids.js';
import type { Session } from './session.js';

/** The read buffer a request arrived in; `taken` is set when a WRITE handler keeps its data. */
export interface BufferSlot {
  taken: boolean;
}

/** Reply bytes to write to /dev/fuse (one buffer or an iovec), or null for "no reply". */
export type Reply = Buffer | Buffer[] | null;
type Out = Reply | Promise<Reply>;

export interface OpSpec {
  opcode: number;
  name: OpcodeName;
  /** Bytes of the fixed input struct that must follow the header. */
  inSize: number;
  /** NUL-terminated names that follow the fixed struct. */
  names: 0 | 1 | 2;
  /** False for FORGET, BATCH_FORGET, INTERRUPT: the kernel expects no answer. */
  replies: boolean;
  /** Decode, dispatch and encode; absent = answered ENOSYS (known but unsupported opcode). */
  run?: (s: Session, h: InHeader, ctx: RequestContext, body: Buffer, slot: BufferSlot | undefined) => Out;
}

const nodeOf = (h: InHeader): NodeId => h.nodeid as NodeId;
const fhAt = (b: Buffer, off: number): FileHandle => b.readBigUInt64LE(off) as FileHandle;
const ENOSYS = Errno.ENOSYS;

/** Map a possibly-async result to a reply without allocating a promise when the result is sync. */
function then<T>(v: T | Promise<T>, f: (v: T) => Reply): Out {
  return v instanceof Promise ? v.then(f) : f(v);
}

function ok(h: InHeader): Buffer {
  return okReply(h.unique, 0);
}

function entryReply(s: Session, h: InHeader, e: Entry): Buffer {
  const b = okReply(h.unique, Size.ENTRY_OUT);
  writeEntry(b, Size.OUT_HEADER, e, s.ttls);
  return b;
}

function openReply(h: InHeader, o: Opened | undefined): Buffer {
  const b = okReply(h.unique, Size.OPEN_OUT);
  b.writeBigUInt64LE(BigInt(o?.fh ?? 0n), 16);
  b.writeUInt32LE((o?.flags ?? 0) >>> 0, 24);
  b.writeUInt32LE(0, 28);
  return b;
}

function u32Reply(h: InHeader, v: number): Buffer {
  const b = okReply(h.unique, 8);
  b.writeUInt32LE(v >>> 0, 16);
  b.writeUInt32LE(0, 20);
  return b;
}

/** Signals "this method is not implemented": the session answers ENOSYS. */
export class NotImplemented extends Error {
  readonly errno = ENOSYS;
}
function need<F>(f: F | undefined): F {
  if (f === undefined) throw new NotImplemented();
  return f;
}

function readLock(b: Buffer): FileLock {
  return {
    start: b.readBigUInt64LE(16),
    end: b.readBigUInt64LE(24),
    type: b.readUInt32LE(32),
    pid: b.readUInt32LE(36),
  };
}

function lkReply(h: InHeader, l: FileLock): Buffer {
  const b = okReply(h.unique, Size.LK_OUT);
  b.writeBigUInt64LE(l.start, 16);
  b.writeBigUInt64LE(l.end, 24);
  b.writeUInt32LE(l.type >>> 0, 32);
  b.writeUInt32LE(l.pid >>> 0, 36);
  return b;
}

function xattrSized(h: InHeader, value: Uint8Array, size: number): Reply {
  if (size === 0) return u32Reply(h, value.length);
  if (value.length > size) throw Object.assign(new Error('ERANGE'), { errno: Errno.ERANGE });
  return [
    okReply(h.unique, value.length).subarray(0, 16),
    Buffer.from(value.buffer, value.byteOffset, value.length),
  ];
}

function setattrChanges(b: Buffer): SetattrChanges {
  const valid = b.readUInt32LE(0);
  const c: SetattrChanges = {};
  const ns = (secOff: number, nsecOff: number): bigint =>
    b.readBigInt64LE(secOff) * 1_000_000_000n + BigInt(b.readUInt32LE(nsecOff));
  if (valid & SetattrValid.MODE) c.mode = b.readUInt32LE(68);
  if (valid & SetattrValid.UID) c.uid = b.readUInt32LE(76);
  if (valid & SetattrValid.GID) c.gid = b.readUInt32LE(80);
  if (valid & SetattrValid.SIZE) c.size = u64n(b, 16);
  if (valid & SetattrValid.ATIME_NOW) c.atimeNs = 'now';
  else if (valid & SetattrValid.ATIME) c.atimeNs = ns(32, 56);
  if (valid & SetattrValid.MTIME_NOW) c.mtimeNs = 'now';
  else if (valid & SetattrValid.MTIME) c.mtimeNs = ns(40, 60);
  if (valid & SetattrValid.CTIME) c.ctimeNs = ns(48, 64);
  if (valid & SetattrValid.FH) c.fh = fhAt(b, 8);
  if (valid & SetattrValid.LOCKOWNER) c.lockOwner = b.readBigUInt64LE(24) as LockOwner;
  if (valid & SetattrValid.KILL_SUIDGID) c.killSuidgid = true;
  return c;
}

const op = (
  name: OpcodeName,
  inSize: number,
  names: 0 | 1 | 2,
  run?: OpSpec['run'],
  replies = true,
): OpSpec => ({ opcode: Opcode[name], name, inSize, names, replies, ...(run ? { run } : {}) });

/** The one table. Everything about an opcode that is not per-request state lives here. */
export const OPS: readonly OpSpec[] = [
  op('INIT', Size.INIT_IN_COMPAT, 0, (s, h, _c, b) => s.init(h, b)),
  op('DESTROY', 0, 0, (s, h) => then(s.fs.destroy?.(), () => ok(h))),
  op('LOOKUP', 0, 1, (s, h, c, b) => {
    const [name] = cstring(b, 0);
    return then(need(s.fs.lookup).call(s.fs, c, nodeOf(h), name), (e) => entryReply(s, h, e));
  }),
  op(
    'FORGET',
    Size.FORGET_IN,
    0,
    (s, h, _c, b) => {
      s.fs.forget?.(nodeOf(h), b.readBigUInt64LE(0));
      return null;
    },
    false,
  ),
  op(
    'BATCH_FORGET',
    Size.BATCH_FORGET_IN,
    0,
    (s, _h, _c, b) => {
      const count = b.readUInt32LE(0);
      const n = Math.min(count, Math.floor((b.length - 8) / Size.FORGET_ONE));
      for (let i = 0, at = 8; i < n; i++, at += Size.FORGET_ONE) {
        s.fs.forget?.(b.readBigUInt64LE(at) as NodeId, b.readBigUInt64LE(at + 8));
      }
      return null;
    },
    false,
  ),
  op('INTERRUPT', Size.INTERRUPT_IN, 0, (s, _h, _c, b) => s.interrupt(b.readBigUInt64LE(0)), false),
  op('GETATTR', Size.GETATTR_IN, 0, (s, h, c, b) => {
    const fh = b.readUInt32LE(0) & GETATTR_FH ? fhAt(b, 8) : undefined;
    return then(need(s.fs.getattr).call(s.fs, c, nodeOf(h), fh), (a) => {
      const r = okReply(h.unique, Size.ATTR_OUT);
      writeAttrOut(r, Size.OUT_HEADER, a, s.ttls);
      return r;
    });
  }),
  op('SETATTR', Size.SETATTR_IN, 0, (s, h, c, b) =>
    then(need(s.fs.setattr).call(s.fs, c, nodeOf(h), setattrChanges(b)), (a) => {
      const r = okReply(h.unique, Size.ATTR_OUT);
      writeAttrOut(r, Size.OUT_HEADER, a, s.ttls);
      return r;
    }),
  ),
  op('READLINK', 0, 0, (s, h, c) =>
    then(need(s.fs.readlink).call(s.fs, c, nodeOf(h)), (t) => {
      const bytes = typeof t === 'string' ? Buffer.from(t, 'utf8') : t;
      const r = okReply(h.unique, bytes.length);
      r.set(bytes, Size.OUT_HEADER);
      return r;
    }),
  ),
  op('SYMLINK', 0, 2, (s, h, c, b) => {
    const [name, at] = cstring(b, 0);
    const [target] = cstring(b, at);
    return then(need(s.fs.symlink).call(s.fs, c, nodeOf(h), name, target), (e) => entryReply(s, h, e));
  }),
  op('MKNOD', Size.MKNOD_IN, 1, (s, h, c, b) => {
    const [name] = cstring(b, Size.MKNOD_IN);
    const f = need(s.fs.mknod);
    return then(
      f.call(s.fs, c, nodeOf(h), name, b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8)),
      (e) => entryReply(s, h, e),
    );
  }),
  op('MKDIR', Size.MKDIR_IN, 1, (s, h, c, b) => {
    const [name] = cstring(b, Size.MKDIR_IN);
    const f = need(s.fs.mkdir);
    return then(f.call(s.fs, c, nodeOf(h), name, b.readUInt32LE(0), b.readUInt32LE(4)), (e) =>
      entryReply(s, h, e),
    );
  }),
  op('UNLINK', 0, 1, (s, h, c, b) =>
    then(need(s.fs.unlink).call(s.fs, c, nodeOf(h), cstring(b, 0)[0]), () => ok(h)),
  ),
  op('RMDIR', 0, 1, (s, h, c, b) =>
    then(need(s.fs.rmdir).call(s.fs, c, nodeOf(h), cstring(b, 0)[0]), () => ok(h)),
  ),
  op('RENAME', Size.RENAME_IN, 2, (s, h, c, b) => {
    const [name, at] = cstring(b, Size.RENAME_IN);
    const [newName] = cstring(b, at);
    const f = need(s.fs.rename);
    return then(f.call(s.fs, c, nodeOf(h), name, b.readBigUInt64LE(0) as NodeId, newName, 0), () => ok(h));
  }),
  op('RENAME2', Size.RENAME2_IN, 2, (s, h, c, b) => {
    const [name, at] = cstring(b, Size.RENAME2_IN);
    const [newName] = cstring(b, at);
    const f = need(s.fs.rename);
    const flags = b.readUInt32LE(8);
    return then(f.call(s.fs, c, nodeOf(h), name, b.readBigUInt64LE(0) as NodeId, newName, flags), () =>
      ok(h),
    );
  }),
  op('LINK', Size.LINK_IN, 1, (s, h, c, b) => {
    const [name] = cstring(b, Size.LINK_IN);
    const f = need(s.fs.link);
    return then(f.call(s.fs, c, b.readBigUInt64LE(0) as NodeId, nodeOf(h), name), (e) => entryReply(s, h, e));
  }),
  op('OPEN', Size.OPEN_IN, 0, (s, h, c, b) => {
    if (!s.fs.open) return openReply(h, undefined);
    const killSuidgid = (b.readUInt32LE(4) & OPEN_KILL_SUIDGID) !== 0;
    return then(s.fs.open(c, nodeOf(h), b.readUInt32LE(0), killSuidgid), (o) => openReply(h, o));
  }),
  op('CREATE', Size.CREATE_IN, 1, (s, h, c, b) => {
    const [name] = cstring(b, Size.CREATE_IN);
    const f = need(s.fs.create);
    const res = f.call(s.fs, c, nodeOf(h), name, b.readUInt32LE(4), b.readUInt32LE(8), b.readUInt32LE(0));
    return then(res, (cr) => {
      const r = okReply(h.unique, Size.ENTRY_OUT + Size.OPEN_OUT);
      writeEntry(r, Size.OUT_HEADER, cr.entry, s.ttls);
      const at = Size.OUT_HEADER + Size.ENTRY_OUT;
      r.writeBigUInt64LE(BigInt(cr.fh), at);
      r.writeUInt32LE((cr.flags ?? 0) >>> 0, at + 8);
      r.writeUInt32LE(0, at + 12);
      return r;
    });
  }),
  op('READ', Size.READ_IN, 0, (s, h, c, b) => {
    const size = b.readUInt32LE(16);
    const res = need(s.fs.read).call(s.fs, c, nodeOf(h), fhAt(b, 0), u64n(b, 8), size);
    return then(res, (data) => {
      const n = Math.min(size, data.length);
      const hdr = okReply(h.unique, n).subarray(0, Size.OUT_HEADER);
      if (n === 0) return hdr;
      return [hdr, Buffer.from(data.buffer, data.byteOffset, n)];
    });
  }),
  op('WRITE', Size.WRITE_IN, 0, (s, h, c, b, slot) => {
    const size = b.readUInt32LE(16);
    if (Size.WRITE_IN + size > b.length)
      throw Object.assign(new Error('short write'), { errno: Errno.EINVAL });
    const data = b.subarray(Size.WRITE_IN, Size.WRITE_IN + size);
    const writeFlags = b.readUInt32LE(20);
    const info = {
      writeFlags,
      killSuidgid: (writeFlags & WRITE_KILL_SUIDGID) !== 0,
      flags: b.readUInt32LE(32),
      lockOwner: b.readBigUInt64LE(24) as LockOwner,
      keep: (): Buffer => {
        if (!slot) return Buffer.from(data); // no device behind us (tests): hand out a copy
        slot.taken = true;
        return data;
      },
    };
    const res = need(s.fs.write).call(s.fs, c, nodeOf(h), fhAt(b, 0), u64n(b, 8), data, info);
    return then(res, (n) => u32Reply(h, n));
  }),
  op('FLUSH', Size.FLUSH_IN, 0, (s, h, c, b) => {
    const owner = b.readBigUInt64LE(16) as LockOwner;
    if (s.locks) s.locks.releaseOwner(h.nodeid, owner);
    if (!s.fs.flush) return ok(h);
    return then(s.fs.flush(c, nodeOf(h), fhAt(b, 0), owner), () => ok(h));
  }),
  op('RELEASE', Size.RELEASE_IN, 0, (s, h, c, b) => {
    if (s.locks && b.readUInt32LE(12) & RELEASE_FLOCK_UNLOCK)
      s.locks.releaseFlock(h.nodeid, b.readBigUInt64LE(16));
    if (!s.fs.release) return ok(h);
    return then(s.fs.release(c, nodeOf(h), fhAt(b, 0), b.readUInt32LE(8)), () => ok(h));
  }),
  op('FSYNC', Size.FSYNC_IN, 0, (s, h, c, b) => {
    const datasync = (b.readUInt32LE(8) & FSYNC_FDATASYNC) !== 0;
    return then(need(s.fs.fsync).call(s.fs, c, nodeOf(h), fhAt(b, 0), datasync), () => ok(h));
  }),
  op('OPENDIR', Size.OPEN_IN, 0, (s, h, c, b) => {
    if (!s.fs.opendir) return openReply(h, undefined);
    return then(s.fs.opendir(c, nodeOf(h), b.readUInt32LE(0)), (o) => openReply(h, o));
  }),
  op('READDIR', Size.READ_IN, 0, (s, h, c, b) => {
    const out = new DirPacker(h.unique, b.readUInt32LE(16), s.ttls);
    const f = need(s.fs.readdir);
    return then(f.call(s.fs, c, nodeOf(h), fhAt(b, 0), b.readBigUInt64LE(8), out), () => out.finish());
  }),
  op('READDIRPLUS', Size.READ_IN, 0, (s, h, c, b) => {
    const out = new DirPacker(h.unique, b.readUInt32LE(16), s.ttls);
    const f = need(s.fs.readdirplus);
    return then(f.call(s.fs, c, nodeOf(h), fhAt(b, 0), b.readBigUInt64LE(8), out), () => out.finish());
  }),
  op('RELEASEDIR', Size.RELEASE_IN, 0, (s, h, c, b) => {
    if (!s.fs.releasedir) return ok(h);
    return then(s.fs.releasedir(c, nodeOf(h), fhAt(b, 0), b.readUInt32LE(8)), () => ok(h));
  }),
  op('FSYNCDIR', Size.FSYNC_IN, 0, (s, h, c, b) => {
    const datasync = (b.readUInt32LE(8) & FSYNC_FDATASYNC) !== 0;
    return then(need(s.fs.fsyncdir).call(s.fs, c, nodeOf(h), fhAt(b, 0), datasync), () => ok(h));
  }),
  op('STATFS', 0, 0, (s, h, c) => {
    const st = s.fs.statfs
      ? s.fs.statfs(c, nodeOf(h))
      : { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 512, namelen: 255, frsize: 512 };
    return then(st, (v) => {
      const r = okReply(h.unique, Size.STATFS_OUT);
      writeStatfs(r, Size.OUT_HEADER, v);
      return r;
    });
  }),
  op('SETXATTR', Size.SETXATTR_IN, 1, (s, h, c, b) => {
    const size = b.readUInt32LE(0);
    const flags = b.readUInt32LE(4);
    const [name, at] = cstring(b, Size.SETXATTR_IN);
    const value = Buffer.from(b.subarray(at, at + size)); // copied: the read buffer is reused
    return then(need(s.fs.setxattr).call(s.fs, c, nodeOf(h), name, value, flags), () => ok(h));
  }),
  op('GETXATTR', Size.GETXATTR_IN, 1, (s, h, c, b) => {
    const size = b.readUInt32LE(0);
    const [name] = cstring(b, Size.GETXATTR_IN);
    return then(need(s.fs.getxattr).call(s.fs, c, nodeOf(h), name), (v) => xattrSized(h, v, size));
  }),
  op('LISTXATTR', Size.GETXATTR_IN, 0, (s, h, c, b) => {
    const size = b.readUInt32LE(0);
    return then(need(s.fs.listxattr).call(s.fs, c, nodeOf(h)), (names) => {
      const bytes = Buffer.from(names.map((n) => n + '\0').join(''), 'utf8');
      return xattrSized(h, bytes, size);
    });
  }),
  op('REMOVEXATTR', 0, 1, (s, h, c, b) =>
    then(need(s.fs.removexattr).call(s.fs, c, nodeOf(h), cstring(b, 0)[0]), () => ok(h)),
  ),
  op('ACCESS', Size.ACCESS_IN, 0, (s, h, c, b) =>
    then(need(s.fs.access).call(s.fs, c, nodeOf(h), b.readUInt32LE(0)), () => ok(h)),
  ),
  op('GETLK', Size.LK_IN, 0, (s, h, c, b) => {
    const owner = b.readBigUInt64LE(8) as LockOwner;
    const flock = (b.readUInt32LE(40) & LK_FLOCK) !== 0;
    if (s.fs.getlk)
      return then(s.fs.getlk(c, nodeOf(h), fhAt(b, 0), owner, readLock(b)), (l) => lkReply(h, l));
    if (!s.locks) throw new NotImplemented();
    return lkReply(h, s.locks.test(h.nodeid, owner, readLock(b), flock));
  }),
  op('SETLK', Size.LK_IN, 0, (s, h, c, b) => s.setlk(h, c, b, false)),
  op('SETLKW', Size.LK_IN, 0, (s, h, c, b) => s.setlk(h, c, b, true)),
  op('FALLOCATE', Size.FALLOCATE_IN, 0, (s, h, c, b) => {
    const f = need(s.fs.fallocate);
    return then(f.call(s.fs, c, nodeOf(h), fhAt(b, 0), u64n(b, 8), u64n(b, 16), b.readUInt32LE(24)), () =>
      ok(h),
    );
  }),
  op('LSEEK', Size.LSEEK_IN, 0, (s, h, c, b) => {
    const f = need(s.fs.lseek);
    return then(f.call(s.fs, c, nodeOf(h), fhAt(b, 0), u64n(b, 8), b.readUInt32LE(16)), (off) => {
      const r = okReply(h.unique, Size.LSEEK_OUT);
      r.writeBigUInt64LE(BigInt(off), 16);
      return r;
    });
  }),
  op('COPY_FILE_RANGE', Size.COPY_FILE_RANGE_IN, 0, (s, h, c, b) => {
    const f = need(s.fs.copyFileRange);
    const len = u64n(b, 40);
    const res = f.call(
      s.fs,
      c,
      nodeOf(h),
      fhAt(b, 0),
      u64n(b, 8),
      b.readBigUInt64LE(16) as NodeId,
      fhAt(b, 24),
      u64n(b, 32),
      len,
      Number(b.readBigUInt64LE(48)),
    );
    return then(res, (n) => u32Reply(h, Math.min(n, 0xffffffff)));
  }),
  // Known opcodes this server does not implement: answered ENOSYS (the kernel then stops asking
  // for most of them or falls back).
  op('BMAP', 16, 0),
  op('IOCTL', 32, 0),
  op('POLL', 24, 0),
  op('NOTIFY_REPLY', 0, 0, () => null, false),
  op('SETUPMAPPING', 40, 0),
  op('REMOVEMAPPING', 8, 0),
  op('SYNCFS', 8, 0),
  op('TMPFILE', Size.CREATE_IN, 1),
  op('STATX', 24, 0),
];

/** opcode → spec, for O(1) dispatch. Built (and checked) once. */
export const OP_BY_CODE: ReadonlyMap<number, OpSpec> = new Map(OPS.map((o) => [o.opcode, o]));

/** Consistency of the table: one entry per opcode in the ABI, names and numbers agree. Returns problems. */
export function checkTable(): string[] {
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const o of OPS) {
    if (seen.has(o.opcode)) problems.push(`duplicate opcode ${o.opcode}`);
    seen.add(o.opcode);
    if (Opcode[o.name] !== o.opcode) problems.push(`${o.name}: number ${o.opcode} != ${Opcode[o.name]}`);
    if (o.inSize % 8 !== 0) problems.push(`${o.name}: input size ${o.inSize} not 8-aligned`);
  }
  for (const [name, code] of Object.entries(Opcode)) {
    if (!seen.has(code)) problems.push(`${name} (${code}) missing from the table`);
  }
  if (OP_BY_CODE.size !== OPS.length) problems.push('table has duplicate codes');
  return problems;
}
