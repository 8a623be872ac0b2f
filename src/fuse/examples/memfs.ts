// An in-memory filesystem on the LowLevelFileSystem interface: the example that proves src/fuse
// stands alone and the target of its mount tests. Knows nothing of /dev/fuse or of arbor.
import { fsError } from '../../errors.js';
import {
  InitFlag,
  OpenOutFlag,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from '../abi.js';
import type {
  Attr,
  ConnectionInfo,
  Created,
  DirBuffer,
  Entry,
  LowLevelFileSystem,
  Opened,
  RequestContext,
  SetattrChanges,
  StatFs,
  WriteInfo,
} from '../filesystem.js';
import { ROOT_ID, type FileHandle, type NodeId } from '../ids.js';

const CHUNK = 1 << 20;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_EXCL = 0o200;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

const now = (): bigint => BigInt(Date.now()) * 1_000_000n;

interface Node {
  ino: NodeId;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  size: number;
  /** File data in 1 MiB chunks; undefined chunks are holes (read as zeros). */
  chunks: Array<Buffer | undefined>;
  children: Map<string, NodeId> | undefined;
  parent: NodeId;
  target: string | undefined;
  xattrs: Map<string, Buffer>;
  /** Kernel references (LOOKUP and friends minus FORGET). */
  nlookup: bigint;
  opens: number;
}

interface DirHandle {
  ino: NodeId;
  entries: Array<[string, NodeId]>;
}

export interface MemFsOptions {
  /** Reported capacity for statfs (default 64 GiB). */
  capacity?: number;
  /** Open files with FOPEN_KEEP_CACHE: the kernel keeps cached pages across opens (changes then need notifications). */
  keepCache?: boolean;
}

/**
 * Inode numbers are assigned once and never reused (generation stays 0). A node lives while it has
 * a name (nlink > 0), a kernel reference (nlookup > 0) or an open handle.
 */
export class MemFs implements LowLevelFileSystem {
  readonly #nodes = new Map<bigint, Node>();
  readonly #dirs = new Map<bigint, DirHandle>();
  readonly #files = new Map<bigint, { ino: NodeId; flags: number }>();
  #nextIno = 2n;
  #nextFh = 1n;
  readonly #capacity: number;
  readonly #openFlags: number;
  #writeback = false;
  #used = 0;

  constructor(opts: MemFsOptions = {}) {
    this.#capacity = opts.capacity ?? 64 * 2 ** 30;
    this.#openFlags = opts.keepCache ? OpenOutFlag.KEEP_CACHE : 0;
    // The root belongs to whoever serves the mount (as with any freshly created filesystem).
    const root = this.#newNode(S_IFDIR | 0o755, process.getuid?.() ?? 0, process.getgid?.() ?? 0, ROOT_ID);
    root.nlink = 2;
    root.nlookup = 1n; // the kernel's root reference is never forgotten
  }

  // ---- test and replication hooks (changes "made elsewhere", for notify tests) ----

  /** Resolve a slash-separated path from the root; undefined if absent. */
  resolve(p: string): NodeId | undefined {
    let cur: Node | undefined = this.#nodes.get(ROOT_ID);
    for (const part of p.split('/').filter(Boolean)) {
      const id = cur?.children?.get(part);
      cur = id === undefined ? undefined : this.#nodes.get(id);
    }
    return cur?.ino;
  }

  /**
   * Replace a file's content without the kernel knowing. Times are kept, so the kernel cannot
   * notice from attributes either (as with a same-size change arriving from another replica).
   */
  setContent(ino: NodeId, data: Buffer): void {
    const n = this.#must(ino);
    const { mtimeNs, ctimeNs } = n;
    this.#truncate(n, 0);
    this.#writeAt(n, 0, data);
    n.mtimeNs = mtimeNs;
    n.ctimeNs = ctimeNs;
  }

  /** Rename an entry without the kernel knowing. */
  /** Remove a name without the kernel knowing; returns the node it pointed at. */
  unlinkBehind(parent: NodeId, name: string): NodeId {
    const d = this.#dir(parent);
    const id = d.children.get(name);
    if (id === undefined) throw fsError('ENOENT');
    this.#removeName(d, name, this.#must(id));
    return id;
  }

  renameBehind(parent: NodeId, from: string, to: string): void {
    const d = this.#must(parent);
    const id = d.children?.get(from);
    if (id === undefined) throw fsError('ENOENT');
    d.children!.delete(from);
    d.children!.set(to, id);
  }

  /** Nodes the kernel holds references to (nlookup > 0), root included. */
  knownNodes(): number {
    let n = 0;
    for (const node of this.#nodes.values()) if (node.nlookup > 0n) n++;
    return n;
  }

  /** All nodes still alive. */
  nodeCount(): number {
    return this.#nodes.size;
  }

  // ---- internals ----

  #newNode(mode: number, uid: number, gid: number, ino?: NodeId): Node {
    const t = now();
    const n: Node = {
      ino: ino ?? (this.#nextIno++ as NodeId),
      mode,
      uid,
      gid,
      nlink: 1,
      rdev: 0,
      atimeNs: t,
      mtimeNs: t,
      ctimeNs: t,
      size: 0,
      chunks: [],
      children: (mode & S_IFMT) === S_IFDIR ? new Map() : undefined,
      parent: ROOT_ID,
      target: undefined,
      xattrs: new Map(),
      nlookup: 0n,
      opens: 0,
    };
    this.#nodes.set(n.ino, n);
    return n;
  }

  #must(ino: bigint): Node {
    const n = this.#nodes.get(ino);
    if (!n) throw fsError('ENOENT', `no node ${ino}`);
    return n;
  }

  #dir(ino: bigint): Node & { children: Map<string, NodeId> } {
    const n = this.#must(ino);
    if (!n.children) throw fsError('ENOTDIR');
    return n as Node & { children: Map<string, NodeId> };
  }

  #attr(n: Node): Attr {
    return {
      ino: n.ino,
      size: n.size,
      atimeNs: n.atimeNs,
      mtimeNs: n.mtimeNs,
      ctimeNs: n.ctimeNs,
      mode: n.mode,
      nlink: n.nlink,
      uid: n.uid,
      gid: n.gid,
      rdev: n.rdev,
      blocks: Math.ceil(n.size / 512),
    };
  }

  /** An entry reply: counts one kernel lookup. */
  #entry(n: Node): Entry {
    n.nlookup++;
    return { ino: n.ino, attr: this.#attr(n) };
  }

  #maybeDrop(n: Node): void {
    if (n.nlink <= 0 && n.nlookup <= 0n && n.opens <= 0 && n.ino !== ROOT_ID) {
      this.#used -= n.chunks.reduce((s, c) => s + (c ? c.length : 0), 0);
      this.#nodes.delete(n.ino);
    }
  }

  #checkName(name: string): void {
    if (Buffer.byteLength(name) > 255) throw fsError('ENAMETOOLONG');
  }

  #touch(n: Node): void {
    n.mtimeNs = n.ctimeNs = now();
  }

  #add(parent: Node & { children: Map<string, NodeId> }, name: string, child: Node): void {
    this.#checkName(name);
    parent.children.set(name, child.ino);
    if (child.children) {
      child.parent = parent.ino;
      parent.nlink++;
    }
    this.#touch(parent);
  }

  #create(ctx: RequestContext, parent: NodeId, name: string, mode: number): Node {
    const d = this.#dir(parent);
    if (d.children.has(name)) throw fsError('EEXIST');
    const n = this.#newNode(mode, ctx.uid, ctx.gid);
    if (n.children) n.nlink = 2;
    this.#add(d, name, n);
    return n;
  }

  #truncate(n: Node, size: number): void {
    if (size < n.size) {
      const keep = Math.ceil(size / CHUNK);
      for (let i = keep; i < n.chunks.length; i++) if (n.chunks[i]) this.#used -= CHUNK;
      n.chunks.length = Math.min(n.chunks.length, keep);
      const tail = size % CHUNK;
      const last = n.chunks[keep - 1];
      if (tail && last) last.fill(0, tail);
    }
    n.size = size;
    this.#touch(n);
  }

  #writeAt(n: Node, offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const ci = Math.floor(pos / CHUNK);
      const co = pos % CHUNK;
      const len = Math.min(CHUNK - co, data.length - done);
      let c = n.chunks[ci];
      if (!c) {
        if (this.#used + CHUNK > this.#capacity) throw fsError('ENOSPC');
        c = n.chunks[ci] = Buffer.alloc(CHUNK);
        this.#used += CHUNK;
      }
      c.set(data.subarray(done, done + len), co);
      done += len;
    }
    if (offset + data.length > n.size) n.size = offset + data.length;
  }

  #readAt(n: Node, offset: number, size: number): Uint8Array {
    if (offset >= n.size) return Buffer.alloc(0);
    size = Math.min(size, n.size - offset);
    const ci = Math.floor(offset / CHUNK);
    const co = offset % CHUNK;
    if (co + size <= CHUNK) {
      const c = n.chunks[ci];
      return c ? c.subarray(co, co + size) : Buffer.alloc(size); // zero-copy within one chunk
    }
    const out = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const pos = offset + done;
      const c = n.chunks[Math.floor(pos / CHUNK)];
      const o = pos % CHUNK;
      const len = Math.min(CHUNK - o, size - done);
      if (c) c.copy(out, done, o, o + len);
      done += len;
    }
    return out;
  }

  // ---- LowLevelFileSystem ----

  init(conn: ConnectionInfo): void {
    this.#writeback = (conn.flags & InitFlag.WRITEBACK_CACHE) !== 0;
  }

  lookup(_ctx: RequestContext, parent: NodeId, name: string): Entry {
    const d = this.#dir(parent);
    this.#checkName(name);
    const id = name === '.' ? d.ino : name === '..' ? d.parent : d.children.get(name);
    if (id === undefined) throw fsError('ENOENT');
    return this.#entry(this.#must(id));
  }

  forget(ino: NodeId, nlookup: bigint): void {
    const n = this.#nodes.get(ino);
    if (!n) return;
    n.nlookup -= nlookup;
    if (n.nlookup < 0n) n.nlookup = 0n;
    this.#maybeDrop(n);
  }

  getattr(_ctx: RequestContext, ino: NodeId): Attr {
    return this.#attr(this.#must(ino));
  }

  setattr(_ctx: RequestContext, ino: NodeId, c: SetattrChanges): Attr {
    const n = this.#must(ino);
    const t = now();
    if (c.mode !== undefined) n.mode = (n.mode & S_IFMT) | (c.mode & ~S_IFMT);
    if (c.uid !== undefined) n.uid = c.uid;
    if (c.gid !== undefined) n.gid = c.gid;
    if (c.size !== undefined) {
      if (n.children) throw fsError('EISDIR');
      if (c.size > n.size && c.size - n.size + this.#used > this.#capacity) throw fsError('EFBIG');
      this.#truncate(n, c.size);
    }
    if (c.atimeNs !== undefined) n.atimeNs = c.atimeNs === 'now' ? t : c.atimeNs;
    if (c.mtimeNs !== undefined) n.mtimeNs = c.mtimeNs === 'now' ? t : c.mtimeNs;
    n.ctimeNs = c.ctimeNs ?? t;
    return this.#attr(n);
  }

  readlink(_ctx: RequestContext, ino: NodeId): string {
    const n = this.#must(ino);
    if (n.target === undefined) throw fsError('EINVAL');
    return n.target;
  }

  symlink(ctx: RequestContext, parent: NodeId, name: string, target: string): Entry {
    const n = this.#create(ctx, parent, name, S_IFLNK | 0o777);
    n.target = target;
    n.size = Buffer.byteLength(target);
    return this.#entry(n);
  }

  mknod(ctx: RequestContext, parent: NodeId, name: string, mode: number, rdev: number): Entry {
    const n = this.#create(ctx, parent, name, mode);
    n.rdev = rdev;
    return this.#entry(n);
  }

  mkdir(ctx: RequestContext, parent: NodeId, name: string, mode: number): Entry {
    return this.#entry(this.#create(ctx, parent, name, S_IFDIR | (mode & 0o7777)));
  }

  #removeName(d: Node & { children: Map<string, NodeId> }, name: string, n: Node): void {
    d.children.delete(name);
    if (n.children) {
      d.nlink--;
      n.nlink = 0;
    } else n.nlink--;
    n.ctimeNs = now();
    this.#touch(d);
    this.#maybeDrop(n);
  }

  unlink(_ctx: RequestContext, parent: NodeId, name: string): void {
    const d = this.#dir(parent);
    const id = d.children.get(name);
    if (id === undefined) throw fsError('ENOENT');
    const n = this.#must(id);
    if (n.children) throw fsError('EISDIR');
    this.#removeName(d, name, n);
  }

  rmdir(_ctx: RequestContext, parent: NodeId, name: string): void {
    const d = this.#dir(parent);
    const id = d.children.get(name);
    if (id === undefined) throw fsError('ENOENT');
    const n = this.#must(id);
    if (!n.children) throw fsError('ENOTDIR');
    if (n.children.size > 0) throw fsError('ENOTEMPTY');
    this.#removeName(d, name, n);
  }

  rename(
    _ctx: RequestContext,
    parent: NodeId,
    name: string,
    newParent: NodeId,
    newName: string,
    flags: number,
  ): void {
    const from = this.#dir(parent);
    const to = this.#dir(newParent);
    this.#checkName(newName);
    const id = from.children.get(name);
    if (id === undefined) throw fsError('ENOENT');
    const n = this.#must(id);
    const existing = to.children.get(newName);
    if (n.children) {
      // A directory may not move under itself.
      for (let p: Node | undefined = to; p; p = p.ino === ROOT_ID ? undefined : this.#nodes.get(p.parent)) {
        if (p.ino === n.ino) throw fsError('EINVAL');
      }
    }
    if (flags & RENAME_EXCHANGE) {
      if (existing === undefined) throw fsError('ENOENT');
      const other = this.#must(existing);
      from.children.set(name, existing);
      to.children.set(newName, id);
      if (n.children) {
        n.parent = to.ino;
        from.nlink--;
        to.nlink++;
      }
      if (other.children) {
        other.parent = from.ino;
        to.nlink--;
        from.nlink++;
      }
      this.#touch(from);
      this.#touch(to);
      return;
    }
    if (existing !== undefined) {
      if (flags & RENAME_NOREPLACE) throw fsError('EEXIST');
      if (existing === id) return;
      const victim = this.#must(existing);
      if (victim.children) {
        if (!n.children) throw fsError('EISDIR');
        if (victim.children.size > 0) throw fsError('ENOTEMPTY');
      } else if (n.children) throw fsError('ENOTDIR');
      this.#removeName(to, newName, victim);
    }
    from.children.delete(name);
    if (n.children) from.nlink--;
    this.#add(to, newName, n);
    this.#touch(from);
    n.ctimeNs = now();
  }

  link(_ctx: RequestContext, ino: NodeId, newParent: NodeId, newName: string): Entry {
    const n = this.#must(ino);
    if (n.children) throw fsError('EPERM');
    const d = this.#dir(newParent);
    if (d.children.has(newName)) throw fsError('EEXIST');
    this.#add(d, newName, n);
    n.nlink++;
    n.ctimeNs = now();
    return this.#entry(n);
  }

  open(_ctx: RequestContext, ino: NodeId, flags: number): Opened {
    const n = this.#must(ino);
    if (n.children) throw fsError('EISDIR');
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0) this.#truncate(n, 0);
    n.opens++;
    const fh = this.#nextFh++;
    this.#files.set(fh, { ino, flags });
    return { fh, flags: this.#openFlags };
  }

  create(
    ctx: RequestContext,
    parent: NodeId,
    name: string,
    mode: number,
    _umask: number,
    flags: number,
  ): Created {
    const d = this.#dir(parent);
    const existing = d.children.get(name);
    let n: Node;
    if (existing !== undefined) {
      if (flags & O_EXCL) throw fsError('EEXIST');
      n = this.#must(existing);
      if (flags & O_TRUNC) this.#truncate(n, 0);
    } else {
      n = this.#create(ctx, parent, name, S_IFREG | (mode & 0o7777));
    }
    n.opens++;
    const fh = this.#nextFh++;
    this.#files.set(fh, { ino: n.ino, flags });
    return { fh, flags: this.#openFlags, entry: this.#entry(n) };
  }

  read(_ctx: RequestContext, ino: NodeId, _fh: FileHandle, offset: number, size: number): Uint8Array {
    return this.#readAt(this.#must(ino), offset, size);
  }

  write(
    _ctx: RequestContext,
    ino: NodeId,
    _fh: FileHandle,
    offset: number,
    data: Buffer,
    info: WriteInfo,
  ): number {
    const n = this.#must(ino);
    // Without writeback caching the kernel's offset for O_APPEND comes from possibly stale
    // attributes: append at our own end. With it, the kernel owns the size and its offsets are right.
    if (info.flags & O_APPEND && !this.#writeback) offset = n.size;
    if (offset % CHUNK === 0 && data.length === CHUNK) {
      // A whole aligned chunk: keep the server's buffer instead of copying 1 MiB.
      const ci = offset / CHUNK;
      if (!n.chunks[ci]) {
        if (this.#used + CHUNK > this.#capacity) throw fsError('ENOSPC');
        this.#used += CHUNK;
      }
      n.chunks[ci] = info.keep();
      if (offset + CHUNK > n.size) n.size = offset + CHUNK;
    } else this.#writeAt(n, offset, data);
    n.mtimeNs = n.ctimeNs = now();
    if (n.mode & 0o6000) n.mode &= ~0o6000; // a write by anyone clears setuid/setgid
    return data.length;
  }

  flush(): void {}

  release(_ctx: RequestContext, ino: NodeId, fh: FileHandle): void {
    this.#files.delete(fh);
    const n = this.#nodes.get(ino);
    if (n) {
      n.opens--;
      this.#maybeDrop(n);
    }
  }

  fsync(): void {}

  opendir(_ctx: RequestContext, ino: NodeId): Opened {
    this.#dir(ino);
    const fh = this.#nextFh++;
    this.#dirs.set(fh, { ino, entries: [] });
    return { fh };
  }

  /** Entries as of the first readdir call at offset 0: later calls continue that snapshot. */
  #listing(ino: NodeId, fh: FileHandle, offset: bigint): Array<[string, NodeId]> {
    const h = this.#dirs.get(fh);
    const d = this.#dir(ino);
    const fresh = (): Array<[string, NodeId]> => [['.', d.ino], ['..', d.parent], ...d.children.entries()];
    if (!h) return fresh();
    if (offset === 0n || h.entries.length === 0) h.entries = fresh();
    return h.entries;
  }

  readdir(_ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: bigint, out: DirBuffer): void {
    const list = this.#listing(ino, fh, offset);
    for (let i = Number(offset); i < list.length; i++) {
      const [name, id] = list[i]!;
      const mode = this.#nodes.get(id)?.mode ?? S_IFREG;
      if (!out.add({ name, ino: id, mode, off: BigInt(i + 1) })) break;
    }
  }

  readdirplus(_ctx: RequestContext, ino: NodeId, fh: FileHandle, offset: bigint, out: DirBuffer): void {
    const list = this.#listing(ino, fh, offset);
    for (let i = Number(offset); i < list.length; i++) {
      const [name, id] = list[i]!;
      const n = this.#nodes.get(id);
      if (!n) continue; // deleted since the snapshot
      const dot = name === '.' || name === '..';
      const e = dot ? null : { ino: n.ino, attr: this.#attr(n) };
      if (!out.addPlus({ name, ino: id, mode: n.mode, off: BigInt(i + 1) }, e)) break;
      if (!dot) n.nlookup++; // sent with attributes: the kernel now holds a reference
    }
  }

  releasedir(_ctx: RequestContext, _ino: NodeId, fh: FileHandle): void {
    this.#dirs.delete(fh);
  }

  fsyncdir(): void {}

  statfs(): StatFs {
    const bsize = 4096;
    const blocks = Math.floor(this.#capacity / bsize);
    const free = Math.max(0, blocks - Math.ceil(this.#used / bsize));
    return {
      blocks,
      bfree: free,
      bavail: free,
      files: 1 << 24,
      ffree: (1 << 24) - this.#nodes.size,
      bsize,
      namelen: 255,
      frsize: bsize,
    };
  }

  setxattr(_ctx: RequestContext, ino: NodeId, name: string, value: Buffer, flags: number): void {
    const n = this.#must(ino);
    const has = n.xattrs.has(name);
    if (flags & XATTR_CREATE && has) throw fsError('EEXIST');
    if (flags & XATTR_REPLACE && !has) throw fsError('ENODATA');
    n.xattrs.set(name, value);
    n.ctimeNs = now();
  }

  getxattr(_ctx: RequestContext, ino: NodeId, name: string): Uint8Array {
    const v = this.#must(ino).xattrs.get(name);
    if (!v) throw fsError('ENODATA');
    return v;
  }

  listxattr(_ctx: RequestContext, ino: NodeId): string[] {
    return [...this.#must(ino).xattrs.keys()];
  }

  removexattr(_ctx: RequestContext, ino: NodeId, name: string): void {
    const n = this.#must(ino);
    if (!n.xattrs.delete(name)) throw fsError('ENODATA');
    n.ctimeNs = now();
  }

  /** Permission check from the mode bits (used when the mount lacks default_permissions). */
  access(ctx: RequestContext, ino: NodeId, mask: number): void {
    const n = this.#must(ino);
    if (mask === 0) return; // F_OK
    if (ctx.uid === 0) {
      // root may read and write anything, and execute what has any x bit (or is a directory)
      if (mask & 1 && !n.children && (n.mode & 0o111) === 0) throw fsError('EACCES');
      return;
    }
    const bits = ctx.uid === n.uid ? (n.mode >> 6) & 7 : ctx.gid === n.gid ? (n.mode >> 3) & 7 : n.mode & 7;
    if ((bits & mask) !== mask) throw fsError('EACCES');
  }

  fallocate(
    _ctx: RequestContext,
    ino: NodeId,
    _fh: FileHandle,
    offset: number,
    length: number,
    mode: number,
  ): void {
    if (mode !== 0) throw fsError('EOPNOTSUPP');
    const n = this.#must(ino);
    const end = offset + length;
    if (end > n.size) {
      if (end - n.size + this.#used > this.#capacity) throw fsError('ENOSPC');
      n.size = end;
      this.#touch(n);
    }
  }

  lseek(_ctx: RequestContext, ino: NodeId, _fh: FileHandle, offset: number, whence: number): number {
    const n = this.#must(ino);
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw fsError('EINVAL');
    if (offset >= n.size) throw fsError('ENXIO');
    return whence === SEEK_DATA ? offset : n.size;
  }

  copyFileRange(
    _ctx: RequestContext,
    inoIn: NodeId,
    _fhIn: FileHandle,
    offIn: number,
    inoOut: NodeId,
    _fhOut: FileHandle,
    offOut: number,
    len: number,
  ): number {
    const src = this.#must(inoIn);
    const dst = this.#must(inoOut);
    const data = Buffer.from(this.#readAt(src, offIn, len)); // copy: ranges may overlap
    this.#writeAt(dst, offOut, data);
    this.#touch(dst);
    return data.length;
  }
}
