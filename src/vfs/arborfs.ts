// ArborFs: the FUSE low-level filesystem interface over a FileTree — kernel inode numbers, lookup counts, handles,
// readahead, fsync durability, kernel cache invalidation. Knows the FileTree API and src/fuse's interface; nothing of
// the wire bytes, SQLite or where chunks live.
import { fsError } from '../errors.js';
import { OpenOutFlag, RENAME_WHITEOUT } from '../fuse/abi.js';
import type {
  Attr as FuseAttr,
  Created,
  DirBuffer,
  Entry,
  LowLevelFileSystem,
  Opened,
  RequestContext,
  SetattrChanges,
  StatFs as FuseStatFs,
  WriteInfo,
} from '../fuse/filesystem.js';
import type { FileHandle, LockOwner, NodeId as Ino } from '../fuse/ids.js';
import { isHole, type ChunkRef } from '../chunks/types.js';
import type { FileTree, OpenFlags } from '../tree/filetree.js';
import { ROOT } from '../tree/types.js';
import type { Attr, ContentVersion, DirEntry, SetAttr, TreeChange } from '../tree/types.js';
import { InodeTable } from './inodes.js';

const O_ACCMODE = 0o3;
const O_WRONLY = 0o1;
const O_RDWR = 0o2;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_DIRECT = 0o40000;
const S_ISGID = 0o2000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** Largest copy_file_range per request: Linux's MAX_RW_COUNT (the reply's count is a u32). */
const MAX_COPY = 0x7ffff000;
/**
 * The answer to every LOOKUP of a missing name. The kernel looks each new name up before creating it, so a miss is
 * part of every create; one shared error spares building a stack trace per miss (~15 µs each in daemon profiles).
 */
const LOOKUP_MISS = fsError('ENOENT', 'no such entry');
const R_OK = 4;
const W_OK = 2;
const X_OK = 1;

/** Where kernel notifications go (a FuseMount or its Session). */
export interface KernelNotifier {
  notifyInvalInode(ino: bigint, offset?: number, len?: number): Promise<boolean>;
  notifyInvalEntry(parent: bigint, name: string): Promise<boolean>;
}

export interface ArborFsOptions {
  /** Refuse every change with EROFS (the mount is read-only too; this guards library use). */
  readOnly?: boolean;
  /**
   * Make committed state durable (fsync the state database's WAL). fsync/fsyncdir call it after the version is
   * recorded, so a successful fsync(2) means the chunks (stored durably by the chunk store) and the op are on disk.
   */
  syncState?: () => void | Promise<void>;
  /** Open every file with DIRECT_IO (no page cache; shared mmap then fails). Default off: O_DIRECT opens only. */
  directIo?: boolean;
  /** Bytes to read ahead once a handle reads sequentially (default 8 MiB). 0 disables. */
  readaheadBytes?: number;
  /** Sequential bytes a handle must read in a row before readahead starts (default 256 KiB). */
  readaheadAfter?: number;
  /**
   * Largest file size (truncate/fallocate growth, a write's end); beyond it calls fail with EFBIG. Default and upper
   * bound: MAX_FILE_SIZE (2^53 - 1, the largest exact byte offset). Holes cost nothing: they are stored as hole refs.
   */
  maxFileSize?: number;
  /** Wall clock in ns for UTIME_NOW (tests pin it). */
  now?: () => bigint;
}

interface OpenHandle {
  readonly ino: bigint;
  readonly node: string;
  /** Byte offset just after the last read (sequential-read detection). */
  nextRead: number;
  /** Bytes read sequentially in a row. */
  seqRun: number;
  /** Up to where readahead has been asked for, and the last chunk index asked for. */
  prefetchedTo: number;
  prefetchedIdx: number;
  /** The current version's chunks and their start offsets, loaded when readahead first needs them. */
  layout: { refs: ChunkRef[]; starts: number[] } | undefined;
}

/** Largest file size: byte offsets are JS numbers, exact up to 2^53 - 1 (ext4 allows 16 TiB, the VFS 2^63 - 1). */
export const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER;
/** Offsets after `.` (1) and `..` (2): the entry's cookie shifted to be positive and above 2. */
const COOKIE_BIAS = 2n ** 53n + 3n;
function dirOffset(e: DirEntry): bigint {
  if (e.name === '.' && e.cookie === 1) return 1n;
  if (e.name === '..' && e.cookie === 2) return 2n;
  return BigInt(e.cookie) + COOKIE_BIAS;
}

const hrBase = process.hrtime.bigint();
const wallBase = BigInt(Date.now()) * 1_000_000n;
const defaultNow = (): bigint => process.hrtime.bigint() - hrBase + wallBase;

function compareVersionIds(a: string, b: string): number {
  const [ac, ar] = a.split('.') as [string, string];
  const [bc, br] = b.split('.') as [string, string];
  return Number(ac) - Number(bc) || (ar < br ? -1 : ar > br ? 1 : 0);
}

export class ArborFs implements LowLevelFileSystem {
  /** Setuid/setgid are dropped here (FileTree.dropPrivileges), saving the kernel's GETXATTR before every write. */
  readonly handlesKillpriv = true;
  readonly inodes = new InodeTable(ROOT);
  readonly #tree: FileTree;
  readonly #opts: ArborFsOptions;
  readonly #now: () => bigint;
  readonly #handles = new Map<number, OpenHandle>();
  #notifier: KernelNotifier | undefined;

  constructor(tree: FileTree, opts: ArborFsOptions = {}) {
    this.#tree = tree;
    this.#opts = opts;
    this.#now = opts.now ?? defaultNow;
  }

  get tree(): FileTree {
    return this.#tree;
  }

  /** Where invalidate() sends its notifications (call once the mount exists). */
  attach(notifier: KernelNotifier): void {
    this.#notifier = notifier;
  }

  /** Open handles (for tests and clean shutdown). */
  get openHandles(): number {
    return this.#handles.size;
  }

  // ---------------------------------------------------------------- helpers

  #node(ino: Ino | bigint): string {
    return this.inodes.node(ino);
  }

  #writable(): void {
    if (this.#opts.readOnly) throw fsError('EROFS');
  }

  #fuseAttr(a: Attr, ino: bigint): FuseAttr {
    return {
      ino,
      size: a.size,
      blocks: a.blocks,
      atimeNs: a.atimeNs,
      mtimeNs: a.mtimeNs,
      ctimeNs: a.ctimeNs,
      mode: a.mode,
      nlink: a.nlink,
      uid: a.uid,
      gid: a.gid,
      rdev: a.rdev,
      blksize: 65536,
    };
  }

  /** An entry reply for `a`, counting the lookup the kernel will make of it. */
  #entry(a: Attr): Entry {
    const ino = this.inodes.lookedUp(a.nodeId);
    return { ino, attr: this.#fuseAttr(a, ino) };
  }

  /** Owner and mode of a new node: the caller's ids, except a setgid directory passes its group (and, to dirs, the bit). */
  #newOwner(
    ctx: RequestContext,
    parent: string,
    mode: number,
    umask: number,
  ): { uid: number; gid: number; mode: number } {
    const p = this.#tree.getattr(parent);
    let m = mode & ~umask & 0o7777;
    let gid = ctx.gid;
    if (p.mode & S_ISGID) {
      gid = p.gid;
      if ((mode & S_IFMT) === S_IFDIR) m |= S_ISGID;
    }
    return { uid: ctx.uid, gid, mode: m };
  }

  #handle(fh: FileHandle | bigint): OpenHandle {
    const h = this.#handles.get(Number(fh));
    if (h === undefined) throw fsError('EBADF');
    return h;
  }

  #track(fh: number, ino: bigint, node: string): void {
    this.#handles.set(fh, {
      ino,
      node,
      nextRead: 0,
      seqRun: 0,
      prefetchedTo: 0,
      prefetchedIdx: -1,
      layout: undefined,
    });
    this.inodes.opened(ino);
  }

  #openFlags(flags: number): OpenFlags & { exclusive?: boolean } {
    const acc = flags & O_ACCMODE;
    return {
      read: acc !== O_WRONLY,
      write: acc === O_WRONLY || acc === O_RDWR,
      append: (flags & O_APPEND) !== 0,
      truncate: (flags & O_TRUNC) !== 0 && acc !== 0,
      exclusive: (flags & O_EXCL) !== 0,
    };
  }

  #openOut(flags: number): number {
    // The kernel page cache stays valid across opens (KEEP_CACHE): local changes pass through it, and changes from
    // other replicas are dropped from it by invalidate(). O_DIRECT opens bypass it (DIRECT_IO), as on a local disk.
    if (this.#opts.directIo || (flags & O_DIRECT) !== 0) return OpenOutFlag.DIRECT_IO;
    return OpenOutFlag.KEEP_CACHE;
  }

  // ---------------------------------------------------------------- names and attributes

  lookup(_ctx: RequestContext, parent: Ino, name: string): Entry {
    const id = this.#tree.tryLookupId(this.#node(parent), name);
    if (id === undefined) throw LOOKUP_MISS;
    return this.#entry(this.#tree.getattr(id));
  }

  forget(ino: Ino, nlookup: bigint): void {
    this.inodes.forget(ino, nlookup);
  }

  getattr(_ctx: RequestContext, ino: Ino, _fh?: FileHandle): FuseAttr {
    return this.#fuseAttr(this.#tree.getattr(this.#node(ino)), ino);
  }

  async setattr(_ctx: RequestContext, ino: Ino, c: SetattrChanges): Promise<FuseAttr> {
    this.#writable();
    const node = this.#node(ino);
    const ch: SetAttr = {};
    if (c.mode !== undefined) ch.mode = c.mode & 0o7777;
    if (c.uid !== undefined) ch.uid = c.uid;
    if (c.gid !== undefined) ch.gid = c.gid;
    if (c.size !== undefined) {
      this.#checkSize(c.size);
      ch.size = c.size;
    }
    if (c.atimeNs !== undefined) ch.atimeNs = c.atimeNs === 'now' ? this.#now() : c.atimeNs;
    if (c.mtimeNs !== undefined) ch.mtimeNs = c.mtimeNs === 'now' ? this.#now() : c.mtimeNs;
    // A truncate by a process without CAP_FSETID, or a chown (HANDLE_KILLPRIV_V2): unless this call sets the mode.
    if (c.killSuidgid && ch.mode === undefined) this.#tree.dropPrivileges(node);
    const fh = c.fh !== undefined && this.#handles.has(Number(c.fh)) ? Number(c.fh) : undefined;
    return this.#fuseAttr(await this.#tree.setattr(node, ch, fh), ino);
  }

  /** EFBIG when `size` is beyond the largest file size (see the maxFileSize option). */
  #checkSize(size: number): void {
    const max = Math.min(this.#opts.maxFileSize ?? MAX_FILE_SIZE, MAX_FILE_SIZE);
    if (!(size <= max)) throw fsError('EFBIG', `file size ${size} is beyond the maximum ${max}`);
  }

  readlink(_ctx: RequestContext, ino: Ino): string {
    return this.#tree.readlink(this.#node(ino));
  }

  symlink(ctx: RequestContext, parent: Ino, name: string, target: string): Entry {
    this.#writable();
    const dir = this.#node(parent);
    const o = this.#newOwner(ctx, dir, 0o777, 0);
    return this.#entry(this.#tree.symlink(dir, name, target, o.uid, o.gid));
  }

  mknod(ctx: RequestContext, parent: Ino, name: string, mode: number, rdev: number, umask: number): Entry {
    this.#writable();
    const dir = this.#node(parent);
    const o = this.#newOwner(ctx, dir, mode, umask);
    return this.#entry(this.#tree.mknod(dir, name, (mode & S_IFMT) | o.mode, rdev, o.uid, o.gid));
  }

  mkdir(ctx: RequestContext, parent: Ino, name: string, mode: number, umask: number): Entry {
    this.#writable();
    const dir = this.#node(parent);
    const o = this.#newOwner(ctx, dir, S_IFDIR | mode, umask);
    return this.#entry(this.#tree.mkdir(dir, name, o.mode, o.uid, o.gid));
  }

  unlink(_ctx: RequestContext, parent: Ino, name: string): void {
    this.#writable();
    this.#tree.unlink(this.#node(parent), name);
  }

  rmdir(_ctx: RequestContext, parent: Ino, name: string): void {
    this.#writable();
    this.#tree.rmdir(this.#node(parent), name);
  }

  rename(
    _ctx: RequestContext,
    parent: Ino,
    name: string,
    newParent: Ino,
    newName: string,
    flags: number,
  ): void {
    this.#writable();
    if (flags & RENAME_WHITEOUT) throw fsError('EINVAL');
    this.#tree.rename(this.#node(parent), name, this.#node(newParent), newName, flags);
  }

  link(_ctx: RequestContext, ino: Ino, newParent: Ino, newName: string): Entry {
    this.#writable();
    return this.#entry(this.#tree.link(this.#node(ino), this.#node(newParent), newName));
  }

  // ---------------------------------------------------------------- files

  async open(_ctx: RequestContext, ino: Ino, flags: number, killSuidgid = false): Promise<Opened> {
    const node = this.#node(ino);
    const f = this.#openFlags(flags);
    if (f.write || f.truncate) this.#writable();
    const fh = await this.#tree.openNode(node, f);
    if (killSuidgid && f.truncate) this.#tree.dropPrivileges(node);
    this.#track(fh, ino, node);
    return { fh: BigInt(fh), flags: this.#openOut(flags) };
  }

  /**
   * Synchronous unless O_TRUNC has content to cut: a returned promise puts the reply after a microtask hop, behind
   * the device's next read of /dev/fuse, while the caller waits.
   */
  create(
    ctx: RequestContext,
    parent: Ino,
    name: string,
    mode: number,
    umask: number,
    flags: number,
  ): Created | Promise<Created> {
    this.#writable();
    const dir = this.#node(parent);
    const o = this.#newOwner(ctx, dir, mode, umask);
    const f = this.#openFlags(flags);
    const r = this.#tree.create(dir, name, o.mode, f, o.uid, o.gid);
    const created = (attr: Attr): Created => {
      const entry = this.#entry(attr);
      this.#track(r.fh, BigInt(entry.ino), attr.nodeId);
      return { entry, fh: BigInt(r.fh), flags: this.#openOut(flags) };
    };
    // The name existed after all (made by another replica since the kernel looked): O_TRUNC still applies.
    if (f.truncate && r.attr.size > 0)
      return this.#tree.setattr(r.attr.nodeId, { size: 0 }, r.fh).then(created);
    return created(r.attr);
  }

  async read(
    _ctx: RequestContext,
    _ino: Ino,
    fh: FileHandle,
    offset: number,
    size: number,
  ): Promise<Uint8Array> {
    const h = this.#handle(fh);
    this.#readahead(h, offset, size);
    return this.#tree.read(Number(fh), offset, size);
  }

  /** Sequential readers get the next chunks fetched ahead of them (ChunkStore.prefetch; a hint, never an error). */
  #readahead(h: OpenHandle, offset: number, size: number): void {
    const window = this.#opts.readaheadBytes ?? 8 << 20;
    if (offset === h.nextRead) h.seqRun += size;
    else {
      h.seqRun = 0;
      h.prefetchedTo = 0;
      h.prefetchedIdx = -1;
    }
    h.nextRead = offset + size;
    const store = this.#tree.store;
    if (window <= 0 || store.prefetch === undefined || h.seqRun < (this.#opts.readaheadAfter ?? 256 << 10))
      return;
    const end = offset + size + window;
    // Ask again only once the reader has eaten half the window, and never for a chunk asked for already.
    if (end <= h.prefetchedTo + window / 2) return;
    if (h.layout === undefined) h.layout = this.#layout(h.node);
    const { refs, starts } = h.layout;
    const want: ChunkRef[] = [];
    let i = h.prefetchedIdx + 1;
    while (i < refs.length && starts[i]! + refs[i]!.size <= offset + size) i++;
    for (; i < refs.length && starts[i]! < end; i++) {
      want.push(refs[i]!);
      h.prefetchedIdx = i;
    }
    h.prefetchedTo = end;
    if (want.length > 0) store.prefetch(want);
  }

  #layout(node: string): { refs: ChunkRef[]; starts: number[] } {
    let cur: ContentVersion | undefined;
    try {
      for (const v of this.#tree.versions(node))
        if (cur === undefined || compareVersionIds(v.id, cur.id) > 0) cur = v;
    } catch {
      // no versions: nothing to read ahead
    }
    // Holes are zeros that are not stored: nothing to fetch, so they are left out of the layout.
    const refs: ChunkRef[] = [];
    const starts: number[] = [];
    let at = 0;
    for (const r of cur?.chunks ?? []) {
      if (!isHole(r)) {
        refs.push(r);
        starts.push(at);
      }
      at += r.size;
    }
    return { refs, starts };
  }

  async write(
    _ctx: RequestContext,
    _ino: Ino,
    fh: FileHandle,
    offset: number,
    data: Buffer,
    info: WriteInfo,
  ): Promise<number> {
    this.#writable();
    const h = this.#handle(fh);
    this.#checkSize(offset + data.length);
    if (info.killSuidgid) this.#tree.dropPrivileges(h.node);
    return this.#tree.write(Number(fh), offset, data);
  }

  flush(_ctx: RequestContext, _ino: Ino, fh: FileHandle, _owner?: LockOwner): Promise<void> | void {
    this.#handle(fh);
    return this.#tree.flush(Number(fh));
  }

  /**
   * Durability rule (whoever batches or reorders this must keep it): the reply to FSYNC is sent only after (1) every
   * chunk of the version is written and fsynced with its directory entry (ChunkStore.put resolves only then, and
   * recordVersion awaits all puts before it commits), (2) the version op and its register are committed in the same
   * SQLite transaction as its local batch (so a kill -9 after the reply keeps both: WAL writes are in the page cache;
   * with group commit, flushState commits everything queued), and (3) syncState has fsynced the WAL and the main file
   * (power loss). Never reply between those steps.
   */
  async fsync(_ctx: RequestContext, _ino: Ino, fh: FileHandle, _datasync?: boolean): Promise<void> {
    this.#handle(fh);
    await this.#tree.fsync(Number(fh));
    this.#tree.flushState(); // group commit: every queued op is committed before its files are fsynced
    await this.#opts.syncState?.();
  }

  /** Synchronous (no promise hop per close) unless a version has to be recorded. */
  release(_ctx: RequestContext, _ino: Ino, fh: FileHandle, _flags?: number): Promise<void> | void {
    const h = this.#handle(fh);
    const forget = (): void => {
      this.#handles.delete(Number(fh));
      this.inodes.closed(h.ino);
    };
    let done: Promise<void> | void;
    try {
      done = this.#tree.release(Number(fh));
    } catch (err) {
      forget();
      throw err;
    }
    if (done instanceof Promise) return done.finally(forget);
    forget();
  }

  async fallocate(
    _ctx: RequestContext,
    ino: Ino,
    fh: FileHandle,
    offset: number,
    length: number,
    mode: number,
  ): Promise<void> {
    this.#writable();
    if (mode !== 0) return this.#fallocateMode(fh, offset, length, mode);
    const node = this.#node(ino);
    const a = this.#tree.getattr(node);
    this.#checkSize(offset + length);
    if (offset + length > a.size) await this.#tree.setattr(node, { size: offset + length }, Number(fh));
  }

  /**
   * fallocate with flags. Space is never reserved (chunks are stored at flush), so KEEP_SIZE alone does nothing;
   * PUNCH_HOLE (the kernel only sends it with KEEP_SIZE) and ZERO_RANGE make the range a hole, which reads as zeros
   * and stores nothing. Every other mode (COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE, ...) is EOPNOTSUPP.
   */
  async #fallocateMode(fh: FileHandle, offset: number, length: number, mode: number): Promise<void> {
    this.#handle(fh);
    const keep = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    const rest = mode & ~FALLOC_FL_KEEP_SIZE;
    if (!(length > 0) || !(offset >= 0)) throw fsError('EINVAL');
    if (rest === 0) return;
    if (rest !== FALLOC_FL_PUNCH_HOLE && rest !== FALLOC_FL_ZERO_RANGE) throw fsError('EOPNOTSUPP');
    if (rest === FALLOC_FL_PUNCH_HOLE && !keep) throw fsError('EOPNOTSUPP');
    if (!keep) this.#checkSize(offset + length);
    await this.#tree.zeroRange(Number(fh), offset, length, keep);
  }

  /** SEEK_DATA / SEEK_HOLE (the kernel answers SEEK_SET/CUR/END itself): holes are the version's hole refs. */
  async lseek(
    _ctx: RequestContext,
    _ino: Ino,
    fh: FileHandle,
    offset: number,
    whence: number,
  ): Promise<number> {
    this.#handle(fh);
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw fsError('EINVAL');
    return this.#tree.seek(Number(fh), offset, whence === SEEK_DATA ? 'data' : 'hole');
  }

  /**
   * copy_file_range within this mount: the destination shares the source's chunk refs (whole chunks are neither
   * read nor stored again: an instant, deduplicated copy like a reflink); partial chunks are re-cut at the next
   * flush. The reply's count is 32-bit, so one call copies at most MAX_COPY bytes (callers loop, as for write).
   */
  async copyFileRange(
    _ctx: RequestContext,
    _inoIn: Ino,
    fhIn: FileHandle,
    offIn: number,
    _inoOut: Ino,
    fhOut: FileHandle,
    offOut: number,
    len: number,
    flags: number,
  ): Promise<number> {
    this.#writable();
    if (flags !== 0) throw fsError('EINVAL');
    this.#handle(fhIn);
    this.#handle(fhOut);
    const n = Math.min(len, MAX_COPY);
    const avail = Math.max(
      0,
      Math.min(n, this.#tree.getattr(this.#tree.handleNode(Number(fhIn))).size - offIn),
    );
    this.#checkSize(offOut + avail);
    return this.#tree.copyRange(Number(fhIn), offIn, Number(fhOut), offOut, n);
  }

  // ---------------------------------------------------------------- directories

  opendir(_ctx: RequestContext, ino: Ino): Opened {
    const a = this.#tree.getattr(this.#node(ino));
    if (a.kind !== 'dir') throw fsError('ENOTDIR');
    return { fh: 0n };
  }

  /**
   * Offsets are the tree's name cookies (a hash of the name, listed in cookie order), so a listing resumed from an
   * offset neither repeats nor skips entries when the directory changes in between.
   */
  readdir(_ctx: RequestContext, ino: Ino, _fh: FileHandle, offset: bigint, out: DirBuffer): void {
    for (const e of this.#entriesAfter(ino, offset)) {
      const n =
        e.name === '.' ? ino : e.name === '..' ? this.#dotdot(ino, e.nodeId) : this.inodes.ino(e.nodeId);
      if (!out.add({ name: e.name, ino: n, mode: this.#typeBits(e.kind), off: dirOffset(e) })) return;
    }
  }

  readdirplus(_ctx: RequestContext, ino: Ino, _fh: FileHandle, offset: bigint, out: DirBuffer): void {
    for (const e of this.#entriesAfter(ino, offset)) {
      const off = dirOffset(e);
      if (e.name === '.' || e.name === '..') {
        const n = e.name === '.' ? ino : this.#dotdot(ino, e.nodeId);
        if (!out.addPlus({ name: e.name, ino: n, mode: S_IFDIR, off }, null)) return;
        continue;
      }
      let a: Attr;
      try {
        a = this.#tree.getattr(e.nodeId);
      } catch {
        continue; // gone since the listing was made
      }
      const n = this.inodes.ino(a.nodeId);
      const entry: Entry = { ino: n, attr: this.#fuseAttr(a, n) };
      if (!out.addPlus({ name: e.name, ino: n, mode: a.mode, off }, entry)) return;
      this.inodes.lookedUp(a.nodeId);
    }
  }

  /**
   * The entries after a kernel offset. The tree lists `.` and `..` first, then names in ascending cookie order; the
   * cookie is mapped to an unsigned offset by dirOffset (cookies may be any safe integer), and resuming searches the
   * cookie order itself, so an entry removed meanwhile does not lose the place.
   */
  #entriesAfter(ino: bigint, offset: bigint): DirEntry[] {
    const list = this.#tree.readdir(this.#node(ino), 0);
    if (offset <= 0n) return list;
    if (offset <= 2n) return list.slice(Number(offset));
    const cookie = Number(offset - COOKIE_BIAS);
    let lo = 2;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.cookie <= cookie) lo = mid + 1;
      else hi = mid;
    }
    return list.slice(lo);
  }

  #dotdot(ino: bigint, parentNode: string): bigint {
    return ino === 1n ? 1n : this.inodes.ino(parentNode);
  }

  #typeBits(kind: Attr['kind']): number {
    switch (kind) {
      case 'dir':
        return 0o040000;
      case 'file':
        return 0o100000;
      case 'symlink':
        return 0o120000;
      case 'chr':
        return 0o020000;
      case 'blk':
        return 0o060000;
      case 'fifo':
        return 0o010000;
      case 'sock':
        return 0o140000;
    }
  }

  /** Directory entries are ops: chunks first (a durable op must not name a chunk that is not), then the state. */
  async fsyncdir(): Promise<void> {
    await this.#tree.syncChunks();
    this.#tree.flushState();
    await this.#opts.syncState?.();
  }

  // ---------------------------------------------------------------- the rest

  statfs(): FuseStatFs {
    const s = this.#tree.statfs();
    return {
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: s.files,
      ffree: s.ffree,
      bsize: s.bsize,
      frsize: s.frsize,
      namelen: s.namemax,
    };
  }

  setxattr(_ctx: RequestContext, ino: Ino, name: string, value: Buffer, flags: number): void {
    this.#writable();
    this.#tree.setxattr(this.#node(ino), name, value, flags);
  }

  getxattr(_ctx: RequestContext, ino: Ino, name: string): Uint8Array {
    return this.#tree.getxattr(this.#node(ino), name);
  }

  listxattr(_ctx: RequestContext, ino: Ino): string[] {
    return this.#tree.listxattr(this.#node(ino));
  }

  removexattr(_ctx: RequestContext, ino: Ino, name: string): void {
    this.#writable();
    this.#tree.removexattr(this.#node(ino), name);
  }

  /** Only reached without default_permissions (the kernel checks mode bits itself otherwise). */
  access(ctx: RequestContext, ino: Ino, mask: number): void {
    const a = this.#tree.getattr(this.#node(ino));
    if (mask === 0) return;
    if (mask & W_OK && this.#opts.readOnly) throw fsError('EROFS');
    if (ctx.uid === 0) {
      if (mask & X_OK && a.kind !== 'dir' && (a.mode & 0o111) === 0) throw fsError('EACCES');
      return;
    }
    const bits = ctx.uid === a.uid ? (a.mode >> 6) & 7 : ctx.gid === a.gid ? (a.mode >> 3) & 7 : a.mode & 7;
    if ((mask & (R_OK | W_OK | X_OK) & ~bits) !== 0) throw fsError('EACCES');
  }

  // ---------------------------------------------------------------- other replicas' changes

  /**
   * Drop what the kernel caches about nodes and names a remote batch changed (FileTree.applyRemote's report), so
   * other replicas' changes show up without a remount. Only inodes the kernel was given are notified. Never call
   * this from inside a request handler (the kernel may wait on that request before taking the notification).
   */
  async invalidate(changes: TreeChange): Promise<void> {
    const n = this.#notifier;
    if (n === undefined) return;
    const pending: Array<Promise<boolean>> = [];
    for (const { dir, names } of changes.dirs) {
      const dino = this.inodes.peek(dir);
      if (dino === undefined) continue;
      for (const name of names) pending.push(n.notifyInvalEntry(dino, name));
      pending.push(n.notifyInvalInode(dino, 0, 0));
    }
    for (const node of changes.nodes) {
      const ino = this.inodes.peek(node);
      if (ino !== undefined) pending.push(n.notifyInvalInode(ino, 0, 0));
    }
    await Promise.allSettled(pending);
  }

  /** Release every handle still open (recording their versions): the clean end of a mount. */
  async close(): Promise<void> {
    for (const [fh, h] of [...this.#handles]) {
      try {
        await this.#tree.release(fh);
      } finally {
        this.#handles.delete(fh);
        this.inodes.closed(h.ino);
      }
    }
  }
}
