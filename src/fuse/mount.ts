// Mounting and unmounting a FUSE filesystem (mount(8) with an inherited /dev/fuse as root,
// fusermount3 otherwise) and the lifetime of one mount; knows nothing of what is served.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, fsError } from '../errors.js';
import { FuseDevice } from './device.js';
import type { ConnectionInfo, LowLevelFileSystem } from './filesystem.js';
import { fuseIo } from './fuseio.js';
import { fusermountFd } from './fusermount.js';
import { Session, type SessionOptions } from './session.js';

export interface MountOptions extends SessionOptions {
  /** Source name shown by mount/df (default: subtype). */
  fsname?: string;
  /** Filesystem type suffix: the mount shows as fuse.<subtype> (default 'fuse'... i.e. plain "fuse"). */
  subtype?: string;
  readOnly?: boolean;
  /** Let other users (and root) see the mount; needs user_allow_other in /etc/fuse.conf for non-root. */
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits (otherwise the filesystem decides). */
  defaultPermissions?: boolean;
  /** Threadpool reader only: outstanding reads on /dev/fuse (default 4); see checkThreadpool. */
  reads?: number;
  /**
   * Read requests through the libuv threadpool even when the native poll reader (native/fuseio) is available.
   * ARBOR_NO_NATIVE=1 has the same effect process-wide.
   */
  threadpoolReader?: boolean;
  /** Threads to keep free for the filesystem's own fs.* calls (default 4). */
  spareThreads?: number;
  /** Skip the UV_THREADPOOL_SIZE check (you have made sure the pool is big enough another way). */
  skipThreadpoolCheck?: boolean;
  /** Unmount on SIGINT/SIGTERM, then re-raise the signal (default true). */
  handleSignals?: boolean;
  /** Mount through fusermount3 even as root. */
  useFusermount?: boolean;
  /**
   * Kernel readahead for sequential reads, in KiB (default maxReadahead / 1024 = 1024). Set through
   * /sys/class/bdi/<dev>/read_ahead_kb after INIT; needs root (silently left at 128 otherwise).
   */
  readAheadKb?: number;
  /** Extra -o options passed verbatim. */
  extraOptions?: string[];
}

/**
 * With the threadpool reader, each outstanding read on /dev/fuse parks one libuv threadpool thread in the kernel
 * (the poll reader parks none: call this with reads = 0). The pool's
 * size is fixed when it is first used, so it must be set in the environment before node starts
 * (or at the very top of the entry point, before any fs/crypto/dns call):
 *   UV_THREADPOOL_SIZE=16 node app.js
 * Throws InvalidInputError when UV_THREADPOOL_SIZE is below reads + spare.
 */
export function checkThreadpool(reads: number, spare = 4): void {
  const size = Number(process.env.UV_THREADPOOL_SIZE || 4);
  const need = reads + spare;
  if (!(size >= need)) {
    throw new InvalidInputError(
      `FUSE needs UV_THREADPOOL_SIZE >= ${need} (${reads} reads parked on /dev/fuse + ${spare} for file I/O); ` +
        `it is ${size}. Start node with UV_THREADPOOL_SIZE=${Math.max(need, 16)}.`,
      'ARBOR_THREADPOOL_TOO_SMALL',
    );
  }
}

interface Run {
  code: number | null;
  stderr: string;
}

/** Run a command without blocking the event loop (the mount may need this process to answer). */
function run(cmd: string, args: string[], extraFd?: number): Promise<Run> {
  return new Promise((resolve) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'pipe'];
    if (extraFd !== undefined) stdio.push(extraFd);
    const child = spawn(cmd, args, { stdio });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => resolve({ code: -1, stderr: String(err) }));
    child.on('close', (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

/** Undo the octal escapes of /proc/self/mountinfo (space → \040 ...). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Whether `mountpoint` is a mount point now (reads /proc/self/mountinfo; never stats the mount). */
export function isMounted(mountpoint: string): boolean {
  const abs = path.resolve(mountpoint);
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMount(f[4]!) === abs) return true;
  }
  return false;
}

/** The device ("major:minor") of what is mounted at `mountpoint` (the last mount wins), from mountinfo. */
function deviceOf(mountpoint: string): string | undefined {
  const abs = path.resolve(mountpoint);
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  let dev: string | undefined;
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMount(f[4]!) === abs) dev = f[2];
  }
  return dev;
}

/**
 * Raise the kernel's readahead window for the mount. INIT can only lower it below the bdi default
 * (128 KiB), which splits sequential reads into 128 KiB requests; as root we set it directly.
 */
function setReadahead(dev: string, kb: number): boolean {
  try {
    fs.writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
    return true;
  } catch {
    return false; // not root (fusermount3 mounts), or no such bdi
  }
}

const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * Clear a mount, including one left by a daemon that crashed (ENOTCONN). As root: umount, then
 * umount -l if busy; otherwise fusermount3 -u, then -uz. Resolves false if nothing was mounted.
 * Never call this with spawnSync-like blocking from the daemon that serves the mount.
 */
export async function unmount(mountpoint: string, opts: { lazy?: boolean } = {}): Promise<boolean> {
  const abs = path.resolve(mountpoint);
  if (!isMounted(abs)) return false;
  const tries: Array<[string, string[]]> = isRoot()
    ? [
        ['umount', opts.lazy ? ['-l', abs] : [abs]],
        ['umount', ['-l', abs]],
      ]
    : [
        ['fusermount3', opts.lazy ? ['-uz', abs] : ['-u', abs]],
        ['fusermount3', ['-uz', abs]],
      ];
  let last = '';
  for (const [cmd, args] of tries) {
    const r = await run(cmd, args);
    if (r.code === 0 || !isMounted(abs)) return true;
    last = r.stderr;
  }
  throw fsError('EBUSY', `could not unmount ${abs}: ${last}`);
}

/** One mounted filesystem: its session (for notifications) and its lifetime. */
export class FuseMount {
  readonly #device: FuseDevice;
  #unmounting: Promise<void> | undefined;
  #signalHandler: ((sig: NodeJS.Signals) => void) | undefined;
  /** Resolves once the kernel connection is gone and the descriptor closed. */
  readonly closed: Promise<void>;
  /** /sys/fs/fuse/connections/<id>, for aborting a connection that a lazy unmount left busy. */
  connId: number | undefined;

  constructor(
    readonly mountpoint: string,
    readonly session: Session,
    fd: number,
    device: FuseDevice,
    readonly viaFusermount: boolean,
  ) {
    this.#device = device;
    this.closed = device.closed.then(() => {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
      this.#removeSignals();
    });
  }

  get connection(): ConnectionInfo | undefined {
    return this.session.conn;
  }

  /** How requests are read: 'poll' (native/fuseio on the event loop) or 'threadpool' (fs.read, the fallback). */
  get reader(): 'poll' | 'threadpool' {
    return this.#device.reader;
  }

  /** Error that ended the read loop abnormally, if any. */
  get error(): Error | undefined {
    return this.#device.error;
  }

  notifyInvalInode(ino: bigint, offset = 0, len = 0): Promise<boolean> {
    return this.session.notifyInvalInode(ino, offset, len);
  }
  notifyInvalEntry(parent: bigint, name: string): Promise<boolean> {
    return this.session.notifyInvalEntry(parent, name);
  }
  notifyDelete(parent: bigint, child: bigint, name: string): Promise<boolean> {
    return this.session.notifyDelete(parent, child, name);
  }

  /**
   * Unmount and wait until the connection is closed. `lazy` detaches even if busy; `abortAfterMs`
   * (root only) aborts the connection if it is still open that long after a lazy detach.
   */
  unmount(opts: { lazy?: boolean; abortAfterMs?: number } = {}): Promise<void> {
    if (this.#unmounting) return this.#unmounting;
    this.#unmounting = (async () => {
      if (isMounted(this.mountpoint)) {
        const args = this.viaFusermount
          ? [opts.lazy ? '-uz' : '-u', this.mountpoint]
          : opts.lazy
            ? ['-l', this.mountpoint]
            : [this.mountpoint];
        const r = await run(this.viaFusermount ? 'fusermount3' : 'umount', args);
        if (r.code !== 0 && isMounted(this.mountpoint)) {
          this.#unmounting = undefined;
          throw fsError('EBUSY', `unmount ${this.mountpoint}: ${r.stderr}`);
        }
      }
      if (opts.abortAfterMs !== undefined) {
        const t = setTimeout(() => this.#abort(), opts.abortAfterMs);
        await this.closed;
        clearTimeout(t);
      } else await this.closed;
    })();
    return this.#unmounting;
  }

  /** Abort the kernel connection: every pending and future request fails with ENOTCONN. */
  #abort(): void {
    if (this.connId === undefined) return;
    try {
      fs.writeFileSync(`/sys/fs/fuse/connections/${this.connId}/abort`, '1');
    } catch {
      // not root or already gone
    }
  }

  installSignals(): void {
    const handler = (sig: NodeJS.Signals): void => {
      this.#removeSignals();
      this.unmount({ lazy: true, abortAfterMs: 2000 })
        .catch(() => this.#abort())
        .finally(() => process.kill(process.pid, sig));
    };
    this.#signalHandler = handler;
    process.once('SIGINT', handler);
    process.once('SIGTERM', handler);
  }

  #removeSignals(): void {
    if (!this.#signalHandler) return;
    process.removeListener('SIGINT', this.#signalHandler);
    process.removeListener('SIGTERM', this.#signalHandler);
    this.#signalHandler = undefined;
  }
}

function mountOptionList(o: MountOptions): string[] {
  const opts: string[] = [];
  if (o.allowOther) opts.push('allow_other');
  if (o.defaultPermissions) opts.push('default_permissions');
  if (o.readOnly) opts.push('ro');
  opts.push('nosuid', 'nodev');
  for (const e of o.extraOptions ?? []) {
    if (/[,\s]/.test(e)) throw new InvalidInputError(`bad mount option: ${e}`);
    opts.push(e);
  }
  return opts;
}

const SAFE_NAME = /^[A-Za-z0-9._+-]+$/;

/**
 * Mount `filesystem` at `mountpoint` and start serving it. Resolves once the kernel's INIT has been
 * answered (the mount is usable); rejects if mount(8)/fusermount3 fails. Requires
 * UV_THREADPOOL_SIZE >= spareThreads, plus `reads` when requests are read through the threadpool (see checkThreadpool).
 */
export async function mount(
  mountpoint: string,
  filesystem: LowLevelFileSystem,
  opts: MountOptions = {},
): Promise<FuseMount> {
  const reads = opts.reads ?? 4;
  const native = opts.threadpoolReader ? null : (fuseIo ?? null);
  if (!opts.skipThreadpoolCheck) checkThreadpool(native ? 0 : reads, opts.spareThreads ?? 4);
  const abs = path.resolve(mountpoint);
  const st = await fs.promises.stat(abs);
  if (!st.isDirectory()) throw fsError('ENOTDIR', `${abs} is not a directory`);
  const subtype = opts.subtype ?? 'fuse';
  const fsname = opts.fsname ?? subtype;
  if (!SAFE_NAME.test(subtype) || !SAFE_NAME.test(fsname))
    throw new InvalidInputError('fsname/subtype: [A-Za-z0-9._+-] only');

  const session = new Session(filesystem, opts);
  const viaFusermount = !isRoot() || opts.useFusermount === true;
  const list = mountOptionList(opts);
  let fd: number;
  let mounted: Promise<void>;
  if (!viaFusermount) {
    fd = fs.openSync('/dev/fuse', 'r+');
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const o = [`fd=3`, `rootmode=40000`, `user_id=${uid}`, `group_id=${gid}`, ...list].join(',');
    const type = subtype === 'fuse' ? 'fuse' : `fuse.${subtype}`;
    mounted = run('mount', ['-i', '-t', type, '-o', o, fsname, abs], fd).then((r) => {
      if (r.code !== 0) throw fsError('EIO', `mount ${abs} failed: ${r.stderr}`);
    });
  } else {
    const o = [...list, `fsname=${fsname}`, ...(subtype === 'fuse' ? [] : [`subtype=${subtype}`])].join(',');
    fd = await fusermountFd(abs, o);
    mounted = Promise.resolve();
  }
  const device = new FuseDevice(fd, session, { reads, native });
  const m = new FuseMount(abs, session, fd, device, viaFusermount);
  try {
    const failed = m.closed.then(() => {
      throw device.error ?? fsError('EIO', 'FUSE connection closed before INIT');
    });
    await Promise.race([Promise.all([mounted, session.ready()]), failed]);
  } catch (err) {
    // Stop the loop and let m.closed close the descriptor once every read has returned: closing it
    // under an in-flight read would let that read hit whatever file reuses the number next.
    device.stop();
    if (isMounted(abs)) await unmount(abs, { lazy: true }).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([m.closed, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    throw err;
  }
  const dev = deviceOf(abs);
  if (dev) {
    m.connId = Number(dev.split(':')[1]);
    const kb = opts.readAheadKb ?? Math.floor((opts.maxReadahead ?? 1 << 20) / 1024);
    if (kb > 0) setReadahead(dev, kb);
  }
  if (opts.handleSignals !== false) m.installSignals();
  return m;
}
