// /dev/fuse I/O: several outstanding reads, replies and notifications written back; knows no opcode
// beyond WRITE (whose data borrows the read buffer) and nothing of mounting.
import fs from 'node:fs';
import { Errno } from '../errors.js';
import { Opcode, Size } from './abi.js';
import { errorReply } from './codec.js';
import type { Reply } from './ops.js';
import type { Session } from './session.js';

export interface DeviceOptions {
  /**
   * Reads kept outstanding on /dev/fuse (default 4). Each one blocks a libuv threadpool thread
   * for as long as the kernel has nothing to say, so UV_THREADPOOL_SIZE must exceed it by the
   * threads the filesystem itself needs for fs.* calls (see mount.ts: checkThreadpool).
   */
  reads?: number;
}

/** Errors after which a read is simply retried. */
const RETRY = new Set(['EINTR', 'EAGAIN', 'ENOENT']);

/**
 * Serves one FUSE connection. Each read slot owns a buffer of session.bufferSize bytes: it reads
 * one request, hands it to the session and re-arms at once, except for WRITE, whose data is a view
 * into the buffer: that slot re-arms only once the handler has settled.
 *
 * Replies are written with writevSync on the main thread: a reply write never waits in the kernel
 * (it completes the request and returns), and doing it synchronously keeps READ replies zero-copy
 * (the data view is written before anything else runs) and leaves the threadpool to the reads.
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
    const reads = Math.max(1, opts.reads ?? 4);
    for (let i = 0; i < reads; i++) this.#arm(Buffer.allocUnsafe(session.bufferSize));
  }

  /** Resolves when the connection is gone (unmounted or aborted): every read returned ENODEV. */
  get closed(): Promise<void> {
    return this.#done;
  }

  /** The error that ended the loop, if it was not a normal unmount. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Stop re-arming reads (used when the mount failed before the descriptor was attached). */
  stop(): void {
    this.#closed = true;
    this.#slotDone();
  }

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
          }, 5);
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
    const req = buf.subarray(0, n);
    const isWrite = n >= 8 && buf.readUInt32LE(4) === Opcode.WRITE;
    const slot = isWrite ? { taken: false } : undefined;
    let out: Reply | Promise<Reply>;
    try {
      out = this.#session.handle(req, slot);
    } catch (err) {
      // Session.handle never throws; this is a last line of defence for the loop.
      this.#session.opts.onError?.(err);
      out = null;
    }
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

  #slotDone(): void {
    if (this.#active === 0 && this.#closed) this.#resolveDone();
  }
}
