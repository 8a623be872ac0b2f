// /dev/fuse I/O: reading requests (poll-driven on the main thread, or outstanding threadpool reads as the fallback),
// writing replies and notifications; knows no opcode beyond WRITE (whose data borrows the read buffer) and nothing
// of mounting.
import fs from 'node:fs';
import { Errno, fsError, type ErrnoName } from '../errors.js';
import { Opcode, Size } from './abi.js';
import { errorReply } from './codec.js';
import { fuseIo, type FuseIo, type FuseWatch } from './fuseio.js';
import type { BufferSlot, Reply } from './ops.js';
import type { Session } from './session.js';

export interface DeviceOptions {
  /**
   * Threadpool reader only: reads kept outstanding on /dev/fuse (default 4). Each one blocks a libuv threadpool
   * thread for as long as the kernel has nothing to say, so UV_THREADPOOL_SIZE must exceed it by the threads the
   * filesystem itself needs for fs.* calls (see mount.ts: checkThreadpool).
   */
  reads?: number;
  /** The native poll reader to use; default the loaded native/fuseio addon; null forces the threadpool reader. */
  native?: FuseIo | null;
}

/** Errors after which a threadpool read is simply retried. */
const RETRY = new Set(['EINTR', 'EAGAIN', 'ENOENT']);
/**
 * Requests read per readiness callback before yielding to the event loop (the poll is level-triggered, so the rest
 * are read on the next turn): timers, I/O completions and async handlers' continuations must not starve in a burst.
 */
const DRAIN_BATCH = 64;
/** Idle read buffers kept (poll reader): WRITEs whose handler is still running each hold one. */
const SPARE_BUFFERS = 4;
/** How often to retry while mount(8) has not attached the descriptor yet (reads fail EPERM until it has). */
const ATTACH_POLL_MS = 5;

const ERRNO_NAMES = new Map<number, ErrnoName>(
  (Object.entries(Errno) as Array<[ErrnoName, number]>).map(([name, n]) => [n, name]),
);

/**
 * Serves one FUSE connection. Requests are read in one of two ways:
 *
 * - Poll reader (native/fuseio present): the descriptor is non-blocking and watched by a uv_poll on Node's own event
 *   loop; when it is readable, requests are read on the main thread until EAGAIN (at most DRAIN_BATCH per turn) and
 *   each is handled before the next is read. No threadpool thread is parked and no thread hop is paid per request.
 * - Threadpool reader (fallback): `reads` outstanding fs.read calls, each parking a libuv threadpool thread; a slot
 *   reads one request, hands it to the session and re-arms at once.
 *
 * Either way a WRITE's data is a view into the read buffer: that buffer is not read into again until the handler has
 * settled, and not at all once the handler took it (WriteInfo.keep; the reader then uses a fresh one).
 *
 * Replies are written with writevSync on the main thread: a reply write never waits in the kernel
 * (it completes the request and returns), and doing it synchronously keeps READ replies zero-copy
 * (the data view is written before anything else runs) and leaves the threadpool alone.
 * Notifications, which can wait in the kernel for page or inode locks, go through async fs.writev.
 */
export class FuseDevice {
  readonly #fd: number;
  readonly #session: Session;
  #active = 0;
  #closed = false;
  #error: Error | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  // poll reader state
  readonly #io: FuseIo | undefined;
  #watch: FuseWatch | undefined;
  readonly #spare: Buffer[] = [];
  #attachTimer: NodeJS.Timeout | undefined;

  constructor(fd: number, session: Session, opts: DeviceOptions = {}) {
    this.#fd = fd;
    this.#session = session;
    this.#done = new Promise((r) => (this.#resolveDone = r));
    session.setNotifySink(
      (iov) =>
        new Promise((resolve, reject) => {
          if (this.#closed) return reject(Object.assign(new Error('closed'), { errno: 19, code: 'ENODEV' }));
          fs.writev(this.#fd, iov, (err) => (err ? reject(err) : resolve()));
        }),
    );
    this.#io = opts.native === null ? undefined : (opts.native ?? fuseIo);
    if (this.#io) {
      this.#watch = this.#io.watch(fd, (status) => this.#onReady(status));
      return;
    }
    const reads = Math.max(1, opts.reads ?? 4);
    for (let i = 0; i < reads; i++) this.#arm(Buffer.allocUnsafe(session.bufferSize));
  }

  /** Which reader serves this connection. */
  get reader(): 'poll' | 'threadpool' {
    return this.#io ? 'poll' : 'threadpool';
  }

  /** Resolves when the connection is gone (unmounted or aborted): every read returned ENODEV. */
  get closed(): Promise<void> {
    return this.#done;
  }

  /** The error that ended the loop, if it was not a normal unmount. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Stop reading (used when the mount failed before the descriptor was attached). */
  stop(): void {
    this.#closed = true;
    this.#slotDone();
  }

  // ---- poll reader ----

  /** The descriptor is readable (status 0), or the poll failed (status < 0; libuv stopped it): read to find out. */
  #onReady(status: number): void {
    this.#drain();
    // A failed poll is not re-armed by libuv; the read above said why. Unless that ended the connection or is
    // waiting for mount(8) to attach the descriptor, watch again.
    if (status < 0 && !this.#closed && this.#attachTimer === undefined) this.#restart();
  }

  #restart(): void {
    try {
      this.#io!.start(this.#watch!);
    } catch (err) {
      this.#end(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #drain(): void {
    const io = this.#io!;
    for (let i = 0; i < DRAIN_BATCH && !this.#closed; i++) {
      const buf = this.#spare.pop() ?? Buffer.allocUnsafe(this.#session.bufferSize);
      const n = io.read(this.#fd, buf);
      if (n === 0) return this.#end(undefined); // end of file: /dev/fuse never says this; a closed peer in tests
      if (n > 0) {
        this.#servePolled(buf, n);
        continue;
      }
      this.#recycle(buf);
      const errno = -n;
      if (errno === Errno.EAGAIN) return; // drained: wait for the next readiness
      if (errno === Errno.ENOENT || errno === Errno.EINTR) continue; // an interrupted request: read the next
      // EPERM before INIT: mount(2) has not attached this descriptor yet (the mount command runs concurrently), and
      // the poll reports POLLERR until it has; try again shortly. After INIT it is a real error.
      if (errno === Errno.EPERM && !this.#session.conn) {
        this.#attachTimer = setTimeout(() => {
          this.#attachTimer = undefined;
          if (this.#closed) return;
          this.#restart();
          this.#drain();
        }, ATTACH_POLL_MS);
        return;
      }
      // ENODEV: unmounted. Anything else (EBADF after close, EPERM, ...) also ends the connection.
      const name = ERRNO_NAMES.get(errno);
      this.#end(
        errno === Errno.ENODEV ? undefined : fsError(name ?? 'EIO', `read /dev/fuse: ${name ?? errno}`),
      );
      return;
    }
  }

  #servePolled(buf: Buffer, n: number): void {
    const isWrite = n >= 8 && buf.readUInt32LE(4) === Opcode.WRITE;
    const slot = isWrite ? { taken: false } : undefined;
    const out = this.#handle(buf.subarray(0, n), slot);
    if (out instanceof Promise) {
      if (isWrite) {
        // The handler still reads the data from this buffer: it goes back to the spares only once settled.
        out.then((r) => {
          this.#reply(r);
          if (!slot!.taken) this.#recycle(buf);
        });
        return;
      }
      out.then((r) => this.#reply(r));
    } else this.#reply(out);
    if (!slot?.taken) this.#recycle(buf);
  }

  #recycle(buf: Buffer): void {
    if (this.#spare.length < SPARE_BUFFERS) this.#spare.push(buf);
  }

  /** The connection is over: no more reads; the poll handle is closed so the event loop can end. */
  #end(err: Error | undefined): void {
    if (err && !this.#error) this.#error = err;
    this.#closed = true;
    this.#slotDone();
  }

  // ---- threadpool reader ----

  #arm(buf: Buffer): void {
    if (this.#closed) return this.#slotDone();
    this.#active++;
    fs.read(this.#fd, buf, 0, buf.length, null, (err, n) => {
      this.#active--;
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (RETRY.has(code)) return this.#arm(buf);
        // EPERM before INIT: mount(2) has not attached this descriptor yet (the mount command runs
        // concurrently); poll until it has. After INIT it is a real error.
        if (code === 'EPERM' && !this.#session.conn && !this.#closed) {
          this.#active++;
          setTimeout(() => {
            this.#active--;
            this.#arm(buf);
          }, ATTACH_POLL_MS);
          return;
        }
        // ENODEV: unmounted. Anything else (EBADF after close, EPERM, ...) also ends the connection.
        if (code !== 'ENODEV' && !this.#error) this.#error = err;
        this.#closed = true;
        return this.#slotDone();
      }
      this.#serve(buf, n);
    });
  }

  #serve(buf: Buffer, n: number): void {
    const isWrite = n >= 8 && buf.readUInt32LE(4) === Opcode.WRITE;
    const slot = isWrite ? { taken: false } : undefined;
    const out = this.#handle(buf.subarray(0, n), slot);
    // A WRITE handler may keep the buffer (WriteInfo.keep): the slot then continues with a new one.
    const next = (): Buffer => (slot?.taken ? Buffer.allocUnsafeSlow(this.#session.bufferSize) : buf);
    if (out instanceof Promise) {
      if (isWrite) {
        out.then((r) => {
          this.#reply(r);
          this.#arm(next());
        });
        return;
      }
      out.then((r) => this.#reply(r));
    } else {
      this.#reply(out);
    }
    this.#arm(next());
  }

  // ---- both ----

  #handle(req: Buffer, slot: BufferSlot | undefined): Reply | Promise<Reply> {
    try {
      return this.#session.handle(req, slot);
    } catch (err) {
      // Session.handle never throws; this is a last line of defence for the loop.
      this.#session.opts.onError?.(err);
      return null;
    }
  }

  #reply(r: Reply): void {
    if (r === null || this.#closed) return;
    try {
      if (Array.isArray(r)) fs.writevSync(this.#fd, r);
      else fs.writeSync(this.#fd, r);
    } catch (err) {
      // ENOENT: the request was interrupted and already finished by the kernel. ENODEV: unmounted.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV') this.#session.opts.onError?.(err);
      // EINVAL: the kernel refused the reply (a bad length or error field) and the request is still waiting; a
      // process blocked on it would hang for good (unkillable, in D state), so answer it EIO instead.
      if (code === 'EINVAL') this.#replyEio(Array.isArray(r) ? r[0] : r);
    }
  }

  #replyEio(head: Buffer | undefined): void {
    if (head === undefined || head.length < Size.OUT_HEADER) return;
    try {
      fs.writeSync(this.#fd, errorReply(head.readBigUInt64LE(8), Errno.EIO));
    } catch {
      // nothing more to try: the connection is going away or the request is gone
    }
  }

  /** Once closed and no threadpool read is in flight, the descriptor may be closed: resolve `closed`. */
  #slotDone(): void {
    if (!this.#closed) return;
    if (this.#watch !== undefined) {
      clearTimeout(this.#attachTimer);
      this.#attachTimer = undefined;
      this.#io!.close(this.#watch);
      this.#watch = undefined;
    }
    if (this.#active === 0) this.#resolveDone();
  }
}
