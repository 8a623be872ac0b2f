// Local POSIX (byte-range, per owner) and flock (whole-file, per open file) locks; knows no protocol bytes.
import { fsError } from '../errors.js';
import { F_RDLCK, F_UNLCK, F_WRLCK } from './abi.js';
import type { FileLock } from './filesystem.js';

export const OFFSET_MAX = 0x7fffffffffffffffn;

interface Held {
  owner: bigint;
  pid: number;
  start: bigint;
  end: bigint;
  type: number;
}

interface Waiter {
  ino: bigint;
  owner: bigint;
  lock: FileLock;
  flock: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Holds locks for the nodes of one mount. POSIX locks and flock locks live in separate tables (as
 * in Linux, they never conflict with each other). Two locks conflict when their owners differ,
 * their ranges overlap and at least one is a write lock. Blocked SETLKW calls wait in FIFO order
 * and are retried whenever anything on the node is unlocked; `cancel` answers EINTR (INTERRUPT). A POSIX waiter
 * that would close a cycle of owners waiting for each other gets EDEADLK, as on Linux.
 */
export class LockManager {
  readonly #posix = new Map<bigint, Held[]>();
  readonly #flock = new Map<bigint, Held[]>();
  readonly #waiters: Waiter[] = [];

  #table(flock: boolean): Map<bigint, Held[]> {
    return flock ? this.#flock : this.#posix;
  }

  /** The first lock that would block `lock` for `owner`, or a lock of type F_UNLCK if none. */
  test(ino: bigint, owner: bigint, lock: FileLock, flock = false): FileLock {
    const c = this.#conflict(ino, owner, lock, flock);
    if (c) return { start: c.start, end: c.end, type: c.type, pid: c.pid };
    return { start: lock.start, end: lock.end, type: F_UNLCK, pid: 0 };
  }

  /**
   * Take, change or drop a lock. Without `sleep` a conflict throws EAGAIN; with it the promise
   * waits until the lock is granted or `cancel(token)` is called.
   */
  set(
    ino: bigint,
    owner: bigint,
    lock: FileLock,
    sleep: boolean,
    flock = false,
    token?: object,
  ): Promise<void> | void {
    if (lock.type !== F_UNLCK && lock.type !== F_RDLCK && lock.type !== F_WRLCK) throw fsError('EINVAL');
    if (lock.type === F_UNLCK) {
      this.#apply(ino, owner, lock, flock);
      this.#wake(ino);
      return;
    }
    if (flock) {
      // flock conversions drop the old lock first (Linux does the same), so waiters may run.
      const had = this.#remove(this.#flock, ino, owner, 0n, OFFSET_MAX);
      if (had) this.#wake(ino);
    }
    if (!this.#conflict(ino, owner, lock, flock)) {
      this.#apply(ino, owner, lock, flock);
      return;
    }
    if (!sleep) throw fsError('EAGAIN');
    if (!flock && this.#deadlocks(ino, owner, lock)) throw fsError('EDEADLK');
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { ino, owner, lock: { ...lock }, flock, resolve, reject };
      this.#waiters.push(w);
      if (token) this.#tokens.set(token, w);
    });
  }

  readonly #tokens = new WeakMap<object, Waiter>();

  /**
   * Would `owner` waiting for `lock` close a cycle of POSIX lock owners each waiting for the next? Linux answers such
   * an F_SETLKW with EDEADLK (posix_locks_deadlock, which follows the chain at most 10 steps); without it both
   * waiters would sleep until a signal, and a process killed meanwhile stays in D state until its request is answered.
   */
  #deadlocks(ino: bigint, owner: bigint, lock: FileLock): boolean {
    let blocker = this.#conflict(ino, owner, lock, false)?.owner;
    for (let step = 0; blocker !== undefined && step < 10; step++) {
      if (blocker === owner) return true;
      const w = this.#waiters.find((x) => !x.flock && x.owner === blocker);
      if (w === undefined) return false;
      blocker = this.#conflict(w.ino, w.owner, w.lock, false)?.owner;
    }
    return false;
  }

  /** Abort a waiting set() made with this token: it rejects with EINTR. Returns whether one was waiting. */
  cancel(token: object): boolean {
    const w = this.#tokens.get(token);
    if (!w) return false;
    const i = this.#waiters.indexOf(w);
    if (i < 0) return false;
    this.#waiters.splice(i, 1);
    w.reject(fsError('EINTR'));
    return true;
  }

  /** Drop every POSIX lock `owner` holds on `ino` (close(2) of any descriptor releases them all). */
  releaseOwner(ino: bigint, owner: bigint): void {
    if (this.#remove(this.#posix, ino, owner, 0n, OFFSET_MAX)) this.#wake(ino);
  }

  /** Drop the flock lock of an open file (RELEASE with FUSE_RELEASE_FLOCK_UNLOCK). */
  releaseFlock(ino: bigint, owner: bigint): void {
    if (this.#remove(this.#flock, ino, owner, 0n, OFFSET_MAX)) this.#wake(ino);
  }

  /** Number of locks held on a node (both kinds); for tests and diagnostics. */
  count(ino: bigint): number {
    return (this.#posix.get(ino)?.length ?? 0) + (this.#flock.get(ino)?.length ?? 0);
  }

  #conflict(ino: bigint, owner: bigint, lock: FileLock, flock: boolean): Held | undefined {
    const held = this.#table(flock).get(ino);
    if (!held) return undefined;
    for (const h of held) {
      if (h.owner === owner) continue;
      if (h.end < lock.start || lock.end < h.start) continue;
      if (h.type === F_WRLCK || lock.type === F_WRLCK) return h;
    }
    return undefined;
  }

  /** Remove owner's coverage of [start, end], splitting ranges that stick out. Returns whether anything changed. */
  #remove(table: Map<bigint, Held[]>, ino: bigint, owner: bigint, start: bigint, end: bigint): boolean {
    const held = table.get(ino);
    if (!held) return false;
    let changed = false;
    const next: Held[] = [];
    for (const h of held) {
      if (h.owner !== owner || h.end < start || end < h.start) {
        next.push(h);
        continue;
      }
      changed = true;
      if (h.start < start) next.push({ ...h, end: start - 1n });
      if (h.end > end) next.push({ ...h, start: end + 1n });
    }
    if (next.length === 0) table.delete(ino);
    else table.set(ino, next);
    return changed;
  }

  #apply(ino: bigint, owner: bigint, lock: FileLock, flock: boolean): void {
    const table = this.#table(flock);
    this.#remove(table, ino, owner, lock.start, lock.end);
    if (lock.type === F_UNLCK) return;
    let { start, end } = lock;
    const held = table.get(ino) ?? [];
    // Merge with adjacent or overlapping ranges of the same owner and type (POSIX coalesces them).
    const keep: Held[] = [];
    for (const h of held) {
      if (h.owner === owner && h.type === lock.type && h.end + 1n >= start && end + 1n >= h.start) {
        if (h.start < start) start = h.start;
        if (h.end > end) end = h.end;
      } else keep.push(h);
    }
    keep.push({ owner, pid: lock.pid, start, end, type: lock.type });
    table.set(ino, keep);
  }

  #wake(ino: bigint): void {
    for (let i = 0; i < this.#waiters.length;) {
      const w = this.#waiters[i]!;
      if (w.ino === ino && !this.#conflict(ino, w.owner, w.lock, w.flock)) {
        this.#waiters.splice(i, 1);
        this.#apply(ino, w.owner, w.lock, w.flock);
        w.resolve();
      } else i++;
    }
  }
}
