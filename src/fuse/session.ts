// The protocol core: handle(request bytes) → reply bytes, INIT negotiation, interrupts and kernel
// notifications. Knows nothing of /dev/fuse I/O or mounting (see device.ts, mount.ts).
import { errnoOf, Errno } from '../errors.js';
import {
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  InitFlag,
  LK_FLOCK,
  NotifyCode,
  Opcode,
  Size,
} from './abi.js';
import { decodeInHeader, errorReply, okReply, type InHeader, type Ttls } from './codec.js';
import type { ConnectionInfo, FileLock, LowLevelFileSystem, RequestContext } from './filesystem.js';
import type { FileHandle, LockOwner, NodeId } from './ids.js';
import { LockManager } from './locks.js';
import { OP_BY_CODE, type BufferSlot, type Reply } from './ops.js';

export interface SessionOptions {
  /** Seconds the kernel caches name lookups (default 1). */
  entryTimeout?: number;
  /** Seconds the kernel caches attributes (default 1). */
  attrTimeout?: number;
  /** Largest WRITE payload (default and maximum 1 MiB; at least 4 KiB). */
  maxWrite?: number;
  /** Largest readahead the kernel may ask for (default 1 MiB, capped by the kernel's offer). */
  maxReadahead?: number;
  /** Let the kernel cache writes and send them in big batches (FUSE_WRITEBACK_CACHE). Default off. */
  writebackCache?: boolean;
  /** Hold POSIX and flock locks in the server's LockManager when the filesystem has no getlk/setlk. Default on. */
  locks?: boolean;
  /** Advertise EXPORT_SUPPORT (lookups of "." and ".." by node id, for NFS export). Default off. */
  exportSupport?: boolean;
  /** Let the kernel drop cached pages when it sees mtime/size change (FUSE_AUTO_INVAL_DATA). Default on. */
  autoInvalData?: boolean;
  /** Called with errors that have nowhere else to go (e.g. a failed notification); never throws. */
  onError?: (err: unknown) => void;
}

/** Writes a notification to the kernel; resolves or rejects with the kernel's answer. */
export type NotifySink = (bytes: Buffer[]) => Promise<void>;

const MIB = 1 << 20;
/** Errors the kernel accepts in a reply are 1..511 (fuse_dev_do_write: `oh.error <= -512` is EINVAL). */
const MAX_ERRNO = 512;
/** INTERRUPTs remembered for requests not seen waiting (see Session.#early). */
const EARLY_INTERRUPTS = 1024;

/** Default statfs-less answer and every other default live in ops.ts; this class is per-connection state. */
export class Session {
  readonly ttls: Ttls;
  readonly locks: LockManager | undefined;
  readonly maxWrite: number;
  /** Set once INIT has been answered. */
  conn: ConnectionInfo | undefined;
  #notify: NotifySink | undefined;
  /** SETLKW waits that INTERRUPT can cancel, by request id. */
  readonly #waits = new Map<bigint, object>();
  /**
   * INTERRUPTs that matched no waiting request, oldest first (bounded). Several reads are outstanding on /dev/fuse
   * and their completions reach the event loop in any order, so an INTERRUPT can be handled before the SETLKW it
   * targets; forgetting it would leave that SETLKW waiting for good — and a process killed while blocked in it
   * unkillable in D state, since the kernel then waits for our answer (stress-ng's lock stressors hung on this).
   * Most entries are interrupts of requests already answered; the bound keeps those from piling up.
   */
  readonly #early = new Set<bigint>();
  #initWaiters: Array<(c: ConnectionInfo) => void> = [];

  constructor(
    readonly fs: LowLevelFileSystem,
    readonly opts: SessionOptions = {},
  ) {
    this.ttls = { entry: opts.entryTimeout ?? 1, attr: opts.attrTimeout ?? 1 };
    this.locks = opts.locks === false || fs.setlk ? undefined : new LockManager();
    this.maxWrite = Math.max(4096, Math.min(MIB, opts.maxWrite ?? MIB));
  }

  /** Where notifications go (the device, or a test sink). */
  setNotifySink(sink: NotifySink): void {
    this.#notify = sink;
  }

  /** Bytes a read buffer needs: the largest WRITE plus its headers (and then some, as libfuse does). */
  get bufferSize(): number {
    return this.maxWrite + 4096;
  }

  /** Resolves with the negotiated connection once INIT has been answered. */
  ready(): Promise<ConnectionInfo> {
    if (this.conn) return Promise.resolve(this.conn);
    return new Promise((resolve) => this.#initWaiters.push(resolve));
  }

  /**
   * Handle one request (`slot`: the device's buffer, which a WRITE handler may keep). Returns the reply bytes (or null when the opcode takes no reply), either
   * directly or as a promise; never throws and never rejects: every failure becomes an errno reply.
   */
  handle(req: Buffer, slot?: BufferSlot): Reply | Promise<Reply> {
    if (req.length < Size.IN_HEADER) return null; // no unique to answer to
    let h: InHeader;
    try {
      h = decodeInHeader(req);
    } catch {
      return null;
    }
    const spec = OP_BY_CODE.get(h.opcode);
    try {
      if (!spec) return errorReply(h.unique, Errno.ENOSYS);
      if (!this.conn && h.opcode !== Opcode.INIT) return errorReply(h.unique, Errno.EIO);
      const end = Math.min(req.length, h.len) - h.totalExtlen * 8;
      const body = req.subarray(Size.IN_HEADER, Math.max(Size.IN_HEADER, end));
      if (body.length < spec.inSize + spec.names)
        return spec.replies ? errorReply(h.unique, Errno.EINVAL) : null;
      if (!spec.run) return errorReply(h.unique, Errno.ENOSYS);
      const ctx: RequestContext = { uid: h.uid, gid: h.gid, pid: h.pid, unique: h.unique };
      const out = spec.run(this, h, ctx, body, slot);
      if (out instanceof Promise) {
        return out.then(
          (r) => (spec.replies ? r : null),
          (err: unknown) => this.#fail(h, spec.replies, err),
        );
      }
      return spec.replies ? out : null;
    } catch (err) {
      return this.#fail(h, spec?.replies ?? true, err);
    }
  }

  #fail(h: InHeader, replies: boolean, err: unknown): Reply {
    if (!replies) {
      this.#report(err);
      return null;
    }
    let errno = errnoOf(err);
    // The kernel takes errors 1..511 only: it refuses a reply carrying -512 or below with EINVAL and the request is
    // then never answered (its caller hangs). Node reports libuv-only codes (EAI_*, UV_EOF: -3000 and below) too.
    if (!(errno > 0 && errno < MAX_ERRNO)) errno = Errno.EIO;
    return errorReply(h.unique, errno);
  }

  #report(err: unknown): void {
    try {
      this.opts.onError?.(err);
    } catch {
      // the error hook must not take the server down
    }
  }

  /** INIT: agree on version, sizes and features. */
  init(h: InHeader, b: Buffer): Reply | Promise<Reply> {
    if (this.conn) return errorReply(h.unique, Errno.EIO);
    const major = b.readUInt32LE(0);
    const minor = b.readUInt32LE(4);
    const kernelReadahead = b.readUInt32LE(8);
    const kernelFlags = b.readUInt32LE(12);
    if (major < FUSE_KERNEL_VERSION) return errorReply(h.unique, Errno.EPROTO);
    if (major > FUSE_KERNEL_VERSION) {
      // The kernel asks again with our major: answer with just the version.
      const r = okReply(h.unique, Size.INIT_OUT);
      r.fill(0, Size.OUT_HEADER);
      r.writeUInt32LE(FUSE_KERNEL_VERSION, 16);
      r.writeUInt32LE(FUSE_KERNEL_MINOR_VERSION, 20);
      return r;
    }
    let want =
      InitFlag.ASYNC_READ |
      InitFlag.ATOMIC_O_TRUNC |
      InitFlag.BIG_WRITES |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES |
      InitFlag.ASYNC_DIO;
    if (this.opts.autoInvalData !== false) want |= InitFlag.AUTO_INVAL_DATA;
    if (this.fs.readdirplus) want |= InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO;
    if (this.fs.handlesKillpriv) want |= InitFlag.HANDLE_KILLPRIV_V2;
    if (this.locks || this.fs.setlk) want |= InitFlag.POSIX_LOCKS | InitFlag.FLOCK_LOCKS;
    if (this.opts.writebackCache) want |= InitFlag.WRITEBACK_CACHE;
    if (this.opts.exportSupport) want |= InitFlag.EXPORT_SUPPORT;
    const flags = (want & kernelFlags) >>> 0;
    const maxReadahead = Math.min(kernelReadahead, this.opts.maxReadahead ?? MIB);
    const conn: ConnectionInfo = {
      major: FUSE_KERNEL_VERSION,
      minor: Math.min(minor, FUSE_KERNEL_MINOR_VERSION),
      maxWrite: this.maxWrite,
      maxReadahead,
      flags,
    };
    const reply = (): Buffer => {
      // Kernels before 7.23 expect the 24-byte struct; everything here is newer.
      const size = minor < 23 ? 24 : Size.INIT_OUT;
      const r = okReply(h.unique, size);
      r.fill(0, Size.OUT_HEADER);
      r.writeUInt32LE(FUSE_KERNEL_VERSION, 16);
      r.writeUInt32LE(FUSE_KERNEL_MINOR_VERSION, 20);
      r.writeUInt32LE(maxReadahead, 24);
      r.writeUInt32LE(flags, 28);
      r.writeUInt16LE(64, 32); // max_background
      r.writeUInt16LE(48, 34); // congestion_threshold
      r.writeUInt32LE(this.maxWrite, 36);
      if (size > 24) {
        r.writeUInt32LE(1, 40); // time_gran: nanoseconds
        r.writeUInt16LE(Math.ceil(this.maxWrite / 4096), 44); // max_pages
      }
      this.conn = conn;
      for (const w of this.#initWaiters.splice(0)) w(conn);
      return r;
    };
    const done = this.fs.init?.(conn);
    return done instanceof Promise ? done.then(reply) : reply();
  }

  /**
   * INTERRUPT: a waiting SETLKW is cancelled (EINTR); other requests simply run to completion. One for a request not
   * waiting (yet) is remembered, so a SETLKW that arrives after its own INTERRUPT fails at once instead of waiting.
   */
  interrupt(unique: bigint): null {
    const token = this.#waits.get(unique);
    if (token && this.locks?.cancel(token)) return null;
    this.#early.add(unique);
    if (this.#early.size > EARLY_INTERRUPTS) this.#early.delete(this.#early.values().next().value as bigint);
    return null;
  }

  setlk(h: InHeader, ctx: RequestContext, b: Buffer, sleep: boolean): Reply | Promise<Reply> {
    const fh = b.readBigUInt64LE(0) as FileHandle;
    const owner = b.readBigUInt64LE(8) as LockOwner;
    const lock: FileLock = {
      start: b.readBigUInt64LE(16),
      end: b.readBigUInt64LE(24),
      type: b.readUInt32LE(32),
      pid: b.readUInt32LE(36),
    };
    const flock = (b.readUInt32LE(40) & LK_FLOCK) !== 0;
    const ok = (): Buffer => okReply(h.unique, 0);
    if (this.fs.setlk) {
      const r = this.fs.setlk(ctx, h.nodeid as NodeId, fh, owner, lock, sleep, flock);
      return r instanceof Promise ? r.then(ok) : ok();
    }
    if (!this.locks) return errorReply(h.unique, Errno.ENOSYS);
    const token = {};
    const r = this.locks.set(h.nodeid, owner, lock, sleep, flock, token);
    if (!(r instanceof Promise)) return ok();
    this.#waits.set(h.unique, token);
    if (this.#early.delete(h.unique)) this.locks.cancel(token); // interrupted before it got here
    return r.then(ok).finally(() => this.#waits.delete(h.unique));
  }

  // ---- notifications (daemon → kernel) ----

  async #send(code: number, payload: Buffer[]): Promise<boolean> {
    if (!this.#notify || !this.conn) return false;
    const len = Size.OUT_HEADER + payload.reduce((n, p) => n + p.length, 0);
    const hdr = Buffer.alloc(Size.OUT_HEADER);
    hdr.writeUInt32LE(len, 0);
    hdr.writeInt32LE(code, 4); // notifications carry the code in `error` and unique 0
    try {
      await this.#notify([hdr, ...payload]);
      return true;
    } catch (err) {
      // ENOENT: the kernel had nothing cached for it — nothing to invalidate.
      if (errnoOf(err) !== Errno.ENOENT) this.#report(err);
      return false;
    }
  }

  /**
   * Drop the kernel's cached attributes of `ino` and its cached pages in [offset, offset+len)
   * (len 0 = to the end; offset -1 = attributes only). Resolves false if the kernel had nothing cached.
   * Do not await this from inside a request handler for the same node (the kernel may wait for it).
   */
  notifyInvalInode(ino: NodeId | bigint, offset = 0, len = 0): Promise<boolean> {
    const b = Buffer.alloc(Size.NOTIFY_INVAL_INODE_OUT);
    b.writeBigUInt64LE(BigInt(ino), 0);
    b.writeBigInt64LE(BigInt(offset), 8);
    b.writeBigInt64LE(BigInt(len), 16);
    return this.#send(NotifyCode.INVAL_INODE, [b]);
  }

  /** Drop the kernel's cached name `name` in directory `parent` (a rename or create made elsewhere). */
  notifyInvalEntry(parent: NodeId | bigint, name: string): Promise<boolean> {
    const n = Buffer.from(name + '\0', 'utf8');
    const b = Buffer.alloc(Size.NOTIFY_INVAL_ENTRY_OUT);
    b.writeBigUInt64LE(BigInt(parent), 0);
    b.writeUInt32LE(n.length - 1, 8);
    return this.#send(NotifyCode.INVAL_ENTRY, [b, n]);
  }

  /** Tell the kernel `name` in `parent` (pointing at `child`) was deleted elsewhere (also prunes dentries). */
  notifyDelete(parent: NodeId | bigint, child: NodeId | bigint, name: string): Promise<boolean> {
    const n = Buffer.from(name + '\0', 'utf8');
    const b = Buffer.alloc(Size.NOTIFY_DELETE_OUT);
    b.writeBigUInt64LE(BigInt(parent), 0);
    b.writeBigUInt64LE(BigInt(child), 8);
    b.writeUInt32LE(n.length - 1, 16);
    return this.#send(NotifyCode.DELETE, [b, n]);
  }
}
