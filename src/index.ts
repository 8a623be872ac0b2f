// The arbor library entry: openArbor(dir) gives an fs/promises-like, path-based API over a FileTree (no mount needed).
// Resolves paths and symlinks; knows nothing of FUSE, sync or where chunks are stored (the caller passes a ChunkStore).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChunkStore } from './chunks/types.js';
import type { NodeId, ReplicaId } from './crdt/index.js';
import { fsError } from './errors.js';
import { FileTree } from './tree/filetree.js';
import type { OpenFlags } from './tree/filetree.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT } from './tree/types.js';
import type { Attr, ContentVersion, FileKind, StatFs } from './tree/types.js';

export { FileTree } from './tree/filetree.js';
export { decodeTreeOpBatch, encodeTreeOpBatch } from './tree/codec.js';
export { PathPins } from './tree/pins.js';
export type { ChunkPinner, PathPinsOptions, PinnedPath, PinProgress, ReconcileReport } from './tree/pins.js';
export type { FileTreeOptions, OpenFlags } from './tree/filetree.js';
export * from './tree/types.js';

export interface OpenArborOptions {
  store: ChunkStore;
  replica?: ReplicaId;
  /** fsync every transaction (default false: WAL with synchronous=NORMAL). */
  durable?: boolean;
  now?: () => bigint;
  /** Every replica of the filesystem, for log truncation (see FileTreeOptions.replicas). */
  replicas?: () => Iterable<ReplicaId>;
  /** Group commit window in ms (see FileTreeOptions.groupCommitMs). Default off: every operation commits. */
  groupCommitMs?: number;
}

/** fs.Stats-like attributes; times are bigint ns plus ms numbers for convenience. */
export class ArborStats implements Attr {
  readonly nodeId: NodeId;
  readonly kind: FileKind;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly blocks: number;
  readonly rdev: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  constructor(a: Attr) {
    this.nodeId = a.nodeId;
    this.kind = a.kind;
    this.mode = a.mode;
    this.nlink = a.nlink;
    this.uid = a.uid;
    this.gid = a.gid;
    this.size = a.size;
    this.blocks = a.blocks;
    this.rdev = a.rdev;
    this.atimeNs = a.atimeNs;
    this.mtimeNs = a.mtimeNs;
    this.ctimeNs = a.ctimeNs;
  }
  get mtimeMs(): number {
    return Number(this.mtimeNs / 1000n) / 1000;
  }
  isFile(): boolean {
    return this.kind === 'file';
  }
  isDirectory(): boolean {
    return this.kind === 'dir';
  }
  isSymbolicLink(): boolean {
    return this.kind === 'symlink';
  }
}

const SYMLOOP_MAX = 40;

/** An open file, like fs/promises' FileHandle. */
export class ArborFileHandle {
  private pos = 0;
  constructor(
    private readonly arbor: Arbor,
    readonly fd: number,
  ) {}
  /** Read up to `length` bytes at `position` (default: the current position, which then advances). */
  async read(length: number, position?: number | null): Promise<Buffer> {
    const at = position ?? this.pos;
    const buf = await this.arbor.tree.read(this.fd, at, length);
    if (position == null) this.pos += buf.length;
    return buf;
  }
  async write(data: Uint8Array | string, position?: number | null): Promise<number> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const at = position ?? this.pos;
    const n = await this.arbor.tree.write(this.fd, at, bytes);
    if (position == null) this.pos = at + n;
    return n;
  }
  async stat(): Promise<ArborStats> {
    return new ArborStats(this.arbor.tree.getattr(this.arbor.tree.handleNode(this.fd)));
  }
  async truncate(len = 0): Promise<void> {
    await this.arbor.tree.setattr(this.arbor.tree.handleNode(this.fd), { size: len }, this.fd);
  }
  async sync(): Promise<void> {
    await this.arbor.tree.fsync(this.fd);
  }
  async readFile(): Promise<Buffer> {
    const size = (await this.stat()).size;
    return this.arbor.tree.read(this.fd, 0, size);
  }
  async close(): Promise<void> {
    await this.arbor.tree.release(this.fd);
  }
  /** Close without recording a version of what was written through this handle (FileTree.discard). */
  async discard(): Promise<void> {
    await this.arbor.tree.discard(this.fd);
  }
}

function parseFlags(flags: string): OpenFlags & { create: boolean; exclusive: boolean } {
  switch (flags) {
    case 'r':
      return { read: true, create: false, exclusive: false };
    case 'r+':
      return { read: true, write: true, create: false, exclusive: false };
    case 'w':
    case 'w+':
      return { read: flags === 'w+', write: true, truncate: true, create: true, exclusive: false };
    case 'wx':
    case 'w+x':
    case 'wx+':
      return { read: flags !== 'wx', write: true, create: true, exclusive: true };
    case 'a':
    case 'a+':
      return { read: flags === 'a+', append: true, write: true, create: true, exclusive: false };
    case 'ax':
    case 'ax+':
    case 'a+x':
      return { read: flags !== 'ax', append: true, write: true, create: true, exclusive: true };
    default:
      throw fsError('EINVAL', `unknown open flags ${flags}`);
  }
}

/** An arbor directory opened as a library. Paths are absolute within the arbor ('/a/b'); '' and '/' are the root. */
export class Arbor {
  constructor(readonly tree: FileTree) {}

  // ---- path resolution

  /** Resolve a path to a node id, following symlinks in every component (and the last one if `follow`). */
  resolve(path: string, follow = true): NodeId {
    const { dir, name } = this.parent(path);
    if (name === undefined) return dir;
    return this.step(dir, name, follow, { n: 0 });
  }

  /** The directory holding the last component and that component (undefined for the root). */
  parent(path: string): { dir: NodeId; name: string | undefined } {
    return this.parentFrom(ROOT, path);
  }

  private parentFrom(start: NodeId, path: string): { dir: NodeId; name: string | undefined } {
    const parts = path.split('/').filter((p) => p.length > 0);
    const budget = { n: 0 };
    let dir = start;
    for (let i = 0; i < parts.length - 1; i++) dir = this.step(dir, parts[i]!, true, budget);
    if (parts.length > 0 && !this.tree.isDirectory(dir)) {
      this.tree.getattr(dir); // ENOENT for a vanished node, else:
      throw fsError('ENOTDIR');
    }
    return { dir, name: parts[parts.length - 1] };
  }

  private step(dir: NodeId, name: string, follow: boolean, budget: { n: number }): NodeId {
    const id = this.tree.lookupId(dir, name);
    if (!follow) return id;
    if (this.tree.isDirectory(id) || this.tree.getattr(id).kind !== 'symlink') return id;
    if (++budget.n > SYMLOOP_MAX) throw fsError('ELOOP');
    const target = this.tree.readlink(id);
    let cur = target.startsWith('/') ? ROOT : dir;
    const parts = target.split('/').filter((p) => p.length > 0);
    for (let i = 0; i < parts.length; i++)
      cur = this.step(cur, parts[i]!, i < parts.length - 1 || follow, budget);
    return cur;
  }

  private newEntry(path: string): { dir: NodeId; name: string } {
    const { dir, name } = this.parent(path);
    if (name === undefined) throw fsError('EEXIST');
    return { dir, name };
  }

  // ---- metadata

  async stat(path: string): Promise<ArborStats> {
    return new ArborStats(this.tree.getattr(this.resolve(path, true)));
  }
  async lstat(path: string): Promise<ArborStats> {
    return new ArborStats(this.tree.getattr(this.resolve(path, false)));
  }
  async exists(path: string): Promise<boolean> {
    try {
      this.resolve(path, false);
      return true;
    } catch {
      return false;
    }
  }

  async mkdir(path: string, opts: { mode?: number; recursive?: boolean } = {}): Promise<void> {
    const mode = opts.mode ?? 0o755;
    if (opts.recursive) {
      let dir = ROOT;
      for (const part of path.split('/').filter((p) => p.length > 0)) {
        try {
          dir = this.step(dir, part, true, { n: 0 });
          if (this.tree.getattr(dir).kind !== 'dir') throw fsError('ENOTDIR');
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOENT') throw err;
          dir = this.tree.mkdir(dir, part, mode).nodeId;
        }
      }
      return;
    }
    const { dir, name } = this.newEntry(path);
    this.tree.mkdir(dir, name, mode);
  }

  async readdir(path: string): Promise<string[]> {
    return this.tree
      .readdir(this.resolve(path))
      .filter((e) => e.name !== '.' && e.name !== '..')
      .map((e) => e.name)
      .sort();
  }

  async readdirWithTypes(path: string): Promise<Array<{ name: string; kind: FileKind }>> {
    return this.tree
      .readdir(this.resolve(path))
      .filter((e) => e.name !== '.' && e.name !== '..')
      .map((e) => ({ name: e.name, kind: e.kind }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async rename(from: string, to: string, flags: 'noreplace' | 'exchange' | 0 = 0): Promise<void> {
    const a = this.parent(from);
    const b = this.parent(to);
    if (a.name === undefined || b.name === undefined) throw fsError('EBUSY');
    const f = flags === 'noreplace' ? RENAME_NOREPLACE : flags === 'exchange' ? RENAME_EXCHANGE : 0;
    this.tree.rename(a.dir, a.name, b.dir, b.name, f);
  }

  async link(existing: string, newPath: string): Promise<void> {
    const id = this.resolve(existing, false);
    const { dir, name } = this.newEntry(newPath);
    this.tree.link(id, dir, name);
  }

  async symlink(target: string, path: string): Promise<void> {
    const { dir, name } = this.newEntry(path);
    this.tree.symlink(dir, name, target);
  }

  async readlink(path: string): Promise<string> {
    return this.tree.readlink(this.resolve(path, false));
  }

  async unlink(path: string): Promise<void> {
    const { dir, name } = this.parent(path);
    if (name === undefined) throw fsError('EISDIR');
    this.tree.unlink(dir, name);
  }

  async rmdir(path: string): Promise<void> {
    const { dir, name } = this.parent(path);
    if (name === undefined) throw fsError('EBUSY');
    this.tree.rmdir(dir, name);
  }

  /** Remove a file or (with recursive) a directory tree; `force` ignores a missing path. */
  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    let st: ArborStats;
    try {
      st = await this.lstat(path);
    } catch (err) {
      if (opts.force && (err as { code?: string }).code === 'ENOENT') return;
      throw err;
    }
    if (st.kind !== 'dir') return this.unlink(path);
    if (!opts.recursive) throw fsError('EISDIR');
    for (const name of await this.readdir(path)) await this.rm(`${path}/${name}`, opts);
    await this.rmdir(path);
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.tree.setattr(this.resolve(path), { mode });
  }
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.tree.setattr(this.resolve(path), { uid, gid });
  }
  async lchown(path: string, uid: number, gid: number): Promise<void> {
    await this.tree.setattr(this.resolve(path, false), { uid, gid });
  }
  /** Times as bigint ns. */
  async utimes(path: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    await this.tree.setattr(this.resolve(path), { atimeNs, mtimeNs });
  }
  async truncate(path: string, len = 0): Promise<void> {
    await this.tree.setattr(this.resolve(path), { size: len });
  }

  // ---- content

  async open(path: string, flags = 'r', mode = 0o644): Promise<ArborFileHandle> {
    const f = parseFlags(flags);
    let id: NodeId | undefined;
    let where = this.parent(path);
    if (where.name === undefined) id = where.dir;
    // Follow a final symlink by hand: O_CREAT through a dangling symlink creates its target (not with O_EXCL).
    for (let hops = 0; id === undefined; hops++) {
      const name: string = where.name!;
      let e: NodeId;
      try {
        e = this.tree.lookupId(where.dir, name);
      } catch (err) {
        if (!f.create || (err as { code?: string }).code !== 'ENOENT') throw err;
        break;
      }
      if (this.tree.getattr(e).kind !== 'symlink' || f.exclusive) {
        id = e;
        break;
      }
      if (hops >= SYMLOOP_MAX) throw fsError('ELOOP');
      const target = this.tree.readlink(e);
      where = this.parentFrom(target.startsWith('/') ? ROOT : where.dir, target);
      if (where.name === undefined) id = where.dir;
    }
    if (id !== undefined) {
      if (f.exclusive) throw fsError('EEXIST');
      if (this.tree.getattr(id).kind === 'dir' && (f.write || f.append)) throw fsError('EISDIR');
      return new ArborFileHandle(this, await this.tree.openNode(id, f));
    }
    const { fh } = this.tree.create(where.dir, where.name!, mode, { ...f, exclusive: true });
    return new ArborFileHandle(this, fh);
  }

  async readFile(path: string): Promise<Buffer>;
  async readFile(path: string, encoding: BufferEncoding): Promise<string>;
  async readFile(path: string, encoding?: BufferEncoding): Promise<Buffer | string> {
    const id = this.resolve(path);
    if (this.tree.getattr(id).kind === 'dir') throw fsError('EISDIR');
    const fh = await this.tree.openNode(id, { read: true });
    try {
      const buf = await this.tree.read(fh, 0, this.tree.getattr(id).size);
      return encoding ? buf.toString(encoding) : buf;
    } finally {
      await this.tree.release(fh);
    }
  }

  async writeFile(
    path: string,
    data: Uint8Array | string,
    opts: { mode?: number; flag?: string } = {},
  ): Promise<void> {
    const flag = opts.flag ?? 'w';
    if (flag === 'w' || flag === 'wx') {
      // A new file: create it with its content in one transaction (one version, no empty intermediate state).
      const { dir, name } = this.parent(path);
      if (name !== undefined && this.tree.tryLookupId(dir, name) === undefined) {
        const bytes = typeof data === 'string' ? Buffer.from(data) : data;
        await this.tree.createFile(dir, name, opts.mode ?? 0o644, bytes);
        return;
      }
    }
    const h = await this.open(path, opts.flag ?? 'w', opts.mode ?? 0o644);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      if (bytes.length > 0) await h.write(bytes, opts.flag?.startsWith('a') ? null : 0);
    } finally {
      await h.close();
    }
  }

  async appendFile(path: string, data: Uint8Array | string): Promise<void> {
    await this.writeFile(path, data, { flag: 'a' });
  }

  // ---- xattrs

  async getxattr(path: string, name: string): Promise<Buffer> {
    return this.tree.getxattr(this.resolve(path), name);
  }
  async setxattr(path: string, name: string, value: Uint8Array | string, flags = 0): Promise<void> {
    this.tree.setxattr(
      this.resolve(path),
      name,
      typeof value === 'string' ? Buffer.from(value) : value,
      flags,
    );
  }
  async listxattr(path: string): Promise<string[]> {
    return this.tree.listxattr(this.resolve(path));
  }
  async removexattr(path: string, name: string): Promise<void> {
    this.tree.removexattr(this.resolve(path), name);
  }

  // ---- history

  async versions(path: string): Promise<ContentVersion[]> {
    return this.tree.versions(this.resolve(path));
  }
  async restoreVersion(path: string, versionId: string): Promise<void> {
    this.tree.restoreVersion(this.resolve(path), versionId);
  }

  async statfs(): Promise<StatFs> {
    return this.tree.statfs();
  }

  async close(): Promise<void> {
    this.tree.close();
  }
}

/** Open (creating if needed) an arbor directory's state: `<dir>/state.sqlite3`. */
export async function openArbor(dir: string, opts: OpenArborOptions): Promise<Arbor> {
  mkdirSync(dir, { recursive: true });
  const tree = new FileTree({
    store: opts.store,
    dbPath: join(dir, 'state.sqlite3'),
    statfsPath: dir,
    ...(opts.replica !== undefined ? { replica: opts.replica } : {}),
    ...(opts.durable !== undefined ? { durable: opts.durable } : {}),
    ...(opts.now !== undefined ? { now: opts.now } : {}),
    ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}),
    ...(opts.groupCommitMs !== undefined ? { groupCommitMs: opts.groupCommitMs } : {}),
  });
  return new Arbor(tree);
}
