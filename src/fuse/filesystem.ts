// The interface a filesystem implements to be served over FUSE (low-level, inode-based); no protocol bytes here.
import type { FileHandle, Generation, LockOwner, NodeId, RequestId } from './ids.js';

/**
 * Who asked. Taken from the request header: the caller's fsuid/fsgid and thread-group id as seen in
 * the daemon's pid namespace (pid 0 for requests the kernel makes on its own, e.g. writeback).
 * One object per request: it may be kept across awaits.
 */
export interface RequestContext {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  readonly unique: RequestId;
}

/**
 * Attributes of one node, as stat(2) shows them. Times are nanoseconds since the epoch (bigint, so
 * utimensat precision round-trips). `ttl` (seconds, fractional allowed) overrides the mount's
 * attrTimeout for this reply.
 */
export interface Attr {
  ino: NodeId | bigint;
  size: number;
  /** 512-byte blocks; defaults to ceil(size / 512). */
  blocks?: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** Type and permission bits (S_IFREG | 0o644, ...). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev?: number;
  /** Preferred I/O size reported by stat; defaults to 4096. */
  blksize?: number;
  ttl?: number;
}

/**
 * The answer to LOOKUP and every call that creates a name. A successful reply makes the kernel
 * count one more lookup of `ino` (the filesystem must count it too and expect a matching FORGET).
 * `ino: 0n` is a negative entry: the kernel caches "no such name" for entryTtl (no lookup counted).
 */
export interface Entry {
  ino: NodeId | bigint;
  generation?: Generation | bigint;
  attr: Attr;
  /** Seconds the kernel may cache the name → ino binding; default: the mount's entryTimeout. */
  entryTtl?: number;
  /** Seconds the kernel may cache the attributes; default: attr.ttl, then the mount's attrTimeout. */
  attrTtl?: number;
}

/** Result of OPEN/OPENDIR. `flags` are OpenOutFlag bits (DIRECT_IO, KEEP_CACHE, CACHE_DIR, ...). */
export interface Opened {
  fh: FileHandle | bigint;
  flags?: number;
}

/** Result of CREATE: the new entry plus the open file. */
export interface Created extends Opened {
  entry: Entry;
}

/** Changes requested by SETATTR (chmod, chown, truncate, utimensat, ...); absent fields are untouched. */
export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** A time in ns, or 'now' (UTIME_NOW: the filesystem's clock decides). */
  atimeNs?: bigint | 'now';
  mtimeNs?: bigint | 'now';
  ctimeNs?: bigint;
  /** The open file the change came through (ftruncate, fchmod), if any. */
  fh?: FileHandle;
  lockOwner?: LockOwner;
  /** The kernel asks the filesystem to clear setuid/setgid bits (HANDLE_KILLPRIV_V2). */
  killSuidgid?: boolean;
}

/** statfs(2) numbers. */
export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** One directory entry to hand back from readdir/readdirplus. */
export interface DirEntry {
  name: string;
  ino: NodeId | bigint;
  /** Only the type bits (S_IFMT) are used. */
  mode: number;
  /** The offset cookie of the *next* entry: the kernel passes it back to continue after this one. */
  off: bigint;
}

/**
 * Where readdir/readdirplus put entries. `add`/`addPlus` return false once the kernel's buffer is
 * full: the entry was NOT sent, so stop (and, for addPlus, do not count a lookup for it).
 * For readdirplus every entry added with a non-null Entry counts one lookup, except "." and "..",
 * which the kernel ignores (pass null for them).
 */
export interface DirBuffer {
  add(e: DirEntry): boolean;
  addPlus(e: DirEntry, entry: Entry | null): boolean;
}

/** A byte-range (POSIX) or whole-file (flock) lock. `end` is inclusive; OFFSET_MAX = to end of file. */
export interface FileLock {
  start: bigint;
  end: bigint;
  /** F_RDLCK 0, F_WRLCK 1, F_UNLCK 2. */
  type: number;
  pid: number;
}

/** What INIT negotiated, handed to `init()`. */
export interface ConnectionInfo {
  major: number;
  minor: number;
  maxWrite: number;
  maxReadahead: number;
  /** The low 32 flag bits (InitFlag) both sides agreed on. */
  flags: number;
}

export interface WriteInfo {
  /** FUSE_WRITE_CACHE etc. */
  writeFlags: number;
  /** The writer lacks CAP_FSETID (handlesKillpriv): drop setuid/setgid as Linux does on write. */
  killSuidgid: boolean;
  /** The open(2) flags of the file description. */
  flags: number;
  lockOwner: LockOwner;
  /**
   * Take ownership of `data` instead of copying it: the server gives its read slot a fresh buffer,
   * so the returned Buffer (the same bytes) stays valid for good. Cheap zero-copy for large writes;
   * call it before the handler's first await.
   */
  keep(): Buffer;
}

type R<T> = T | Promise<T>;

/**
 * A low-level FUSE filesystem. Every method is optional: a missing method answers ENOSYS, except
 * where noted (the defaults libfuse also uses). Methods may return a value or a Promise. Throwing
 * (or rejecting) with an error carrying `errno` (ArborError/FsError, or a Node system error)
 * answers that errno; anything else answers EIO. Node ids are bigints (NodeId), offsets and sizes
 * numbers (exact up to 2^53), lock ranges and directory cookies bigints.
 *
 * File names are decoded as UTF-8 (names that are not valid UTF-8 do not round-trip).
 */
export interface LowLevelFileSystem {
  /**
   * The filesystem drops setuid/setgid (and file capabilities) itself on write, truncate and chown
   * (FUSE_HANDLE_KILLPRIV_V2): WriteInfo.killSuidgid, SetattrChanges.killSuidgid and open's `killSuidgid` say when.
   * Without it the kernel checks before every write with a GETXATTR of security.capability, one more round trip.
   */
  readonly handlesKillpriv?: boolean;
  /** INIT answered: the negotiated connection. */
  init?(conn: ConnectionInfo): R<void>;
  /** The kernel tears the connection down (only some kernels send DESTROY; `close` always follows). */
  destroy?(): R<void>;

  lookup?(ctx: RequestContext, parent: NodeId, name: string): R<Entry>;
  /** The kernel dropped `nlookup` references to `ino` (no reply is sent; errors are ignored). */
  forget?(ino: NodeId, nlookup: bigint): void;
  getattr?(ctx: RequestContext, ino: NodeId, fh: FileHandle | undefined): R<Attr>;
  setattr?(ctx: RequestContext, ino: NodeId, changes: SetattrChanges): R<Attr>;
  readlink?(ctx: RequestContext, ino: NodeId): R<string | Uint8Array>;
  symlink?(ctx: RequestContext, parent: NodeId, name: string, target: string): R<Entry>;
  mknod?(
    ctx: RequestContext,
    parent: NodeId,
    name: string,
    mode: number,
    rdev: number,
    umask: number,
  ): R<Entry>;
  mkdir?(ctx: RequestContext, parent: NodeId, name: string, mode: number, umask: number): R<Entry>;
  unlink?(ctx: RequestContext, parent: NodeId, name: string): R<void>;
  rmdir?(ctx: RequestContext, parent: NodeId, name: string): R<void>;
  /** RENAME (flags 0) and RENAME2 (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2, RENAME_WHITEOUT 4). */
  rename?(
    ctx: RequestContext,
    parent: NodeId,
    name: string,
    newParent: NodeId,
    newName: string,
    flags: number,
  ): R<void>;
  link?(ctx: RequestContext, ino: NodeId, newParent: NodeId, newName: string): R<Entry>;

  /**
   * Missing → success with fh 0. With ATOMIC_O_TRUNC negotiated, O_TRUNC in `flags` must truncate here.
   * `killSuidgid`: an O_TRUNC open by a process without CAP_FSETID (handlesKillpriv): drop setuid/setgid too.
   */
  open?(ctx: RequestContext, ino: NodeId, flags: number, killSuidgid: boolean): R<Opened>;
  /** Missing → ENOSYS, and the kernel falls back to mknod + open. */
  create?(
    ctx: RequestContext,
    parent: NodeId,
    name: string,
    mode: number,
    umask: number,
    flags: number,
  ): R<Created>;
  /** Return at most `size` bytes; fewer means end of file. The returned bytes are written out before the next await. */
  read?(ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: number, size: number): R<Uint8Array>;
  /**
   * `data` is a view into the server's read buffer, valid until the returned value/promise settles:
   * copy what you keep. Return the number of bytes written.
   */
  write?(
    ctx: RequestContext,
    ino: NodeId,
    fh: FileHandle,
    offset: number,
    data: Buffer,
    info: WriteInfo,
  ): R<number>;
  /** Each close(2) of a descriptor. */
  flush?(ctx: RequestContext, ino: NodeId, fh: FileHandle, lockOwner: LockOwner): R<void>;
  /** The last reference to the open file description is gone. Missing → success. */
  release?(ctx: RequestContext, ino: NodeId, fh: FileHandle, flags: number): R<void>;
  fsync?(ctx: RequestContext, ino: NodeId, fh: FileHandle, datasync: boolean): R<void>;

  /** Missing → success with fh 0. */
  opendir?(ctx: RequestContext, ino: NodeId, flags: number): R<Opened>;
  /** Add entries starting after cookie `offset` (0n = from the start) until `out.add` returns false. */
  readdir?(ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: bigint, out: DirBuffer): R<void>;
  /** As readdir, with attributes: READDIRPLUS is negotiated only when this exists. */
  readdirplus?(ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: bigint, out: DirBuffer): R<void>;
  /** Missing → success. */
  releasedir?(ctx: RequestContext, ino: NodeId, fh: FileHandle, flags: number): R<void>;
  fsyncdir?(ctx: RequestContext, ino: NodeId, fh: FileHandle, datasync: boolean): R<void>;

  /** Missing → a small fixed answer (namelen 255). */
  statfs?(ctx: RequestContext, ino: NodeId): R<StatFs>;
  setxattr?(ctx: RequestContext, ino: NodeId, name: string, value: Buffer, flags: number): R<void>;
  /** Return the whole value: the server answers size probes and ERANGE itself. Throw ENODATA when absent. */
  getxattr?(ctx: RequestContext, ino: NodeId, name: string): R<Uint8Array>;
  /** Return the names: the server encodes them and answers size probes and ERANGE. */
  listxattr?(ctx: RequestContext, ino: NodeId): R<string[]>;
  removexattr?(ctx: RequestContext, ino: NodeId, name: string): R<void>;
  /** Missing → ENOSYS, which the kernel remembers and treats as "allowed". */
  access?(ctx: RequestContext, ino: NodeId, mask: number): R<void>;

  fallocate?(
    ctx: RequestContext,
    ino: NodeId,
    fh: FileHandle,
    offset: number,
    length: number,
    mode: number,
  ): R<void>;
  /** SEEK_DATA (3) / SEEK_HOLE (4); SEEK_SET/CUR/END never reach the filesystem. */
  lseek?(ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: number, whence: number): R<number>;
  copyFileRange?(
    ctx: RequestContext,
    inoIn: NodeId,
    fhIn: FileHandle,
    offIn: number,
    inoOut: NodeId,
    fhOut: FileHandle,
    offOut: number,
    len: number,
    flags: number,
  ): R<number>;

  /**
   * Locks. When neither is implemented the server's own LockManager holds POSIX and flock locks
   * locally (option `locks`, default on); implement them to hold locks elsewhere (e.g. cluster-wide).
   */
  getlk?(ctx: RequestContext, ino: NodeId, fh: FileHandle, owner: LockOwner, lock: FileLock): R<FileLock>;
  /** `sleep` = SETLKW (wait for the lock); `flock` = a flock(2) lock (whole file, owned by the file). */
  setlk?(
    ctx: RequestContext,
    ino: NodeId,
    fh: FileHandle,
    owner: LockOwner,
    lock: FileLock,
    sleep: boolean,
    flock: boolean,
  ): R<void>;
}
