// One arbor mount's lifetime: open the workspace, serve ArborFs on the mountpoint, record who serves it, and shut down
// cleanly (flush every handle, record versions, close the state) when unmounted or signalled. Knows no CLI parsing.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fsError } from '../errors.js';
import { processAlive as alive } from '../util/process.js';
import { isMounted, mount, type FuseMount } from '../fuse/mount.js';
import type { FileTree } from '../tree/filetree.js';
import { ArborFs } from './arborfs.js';

/** What a mount serves: an opened arbor directory (the CLI opens it; vfs does not know config or remotes). */
export interface ServedWorkspace {
  readonly dir: string;
  readonly tree: FileTree;
  /** Path of the state database, fsynced by fsync(2) on the mount. */
  readonly statePath: string;
  close(): Promise<void>;
}

export interface MountDaemonOptions {
  dir: string;
  mountpoint: string;
  readOnly?: boolean;
  allowOther?: boolean;
  /** Seconds the kernel may cache names and attributes (default DEFAULT_TTL). */
  ttl?: number;
  /**
   * Threadpool reader only (native/fuseio missing or ARBOR_NO_NATIVE=1): outstanding reads on /dev/fuse (default 4);
   * UV_THREADPOOL_SIZE must be at least this + 4.
   */
  reads?: number;
  /** Where errors with nowhere else to go are reported (default: ignored). */
  onError?: (err: unknown) => void;
  /** Opens the arbor directory (exclusively) for this mount. */
  open: (dir: string, readOnly: boolean) => Promise<ServedWorkspace>;
}

/**
 * How long the kernel may cache names and attributes, in seconds. Nothing changes arbor's tree behind the kernel's
 * back without telling it: local changes pass through the kernel, and other replicas' changes are dropped from its
 * caches by ArborFs.invalidate (inval_entry/inval_inode). The timeout is only a safety net, so it is long; a short one
 * (it was 1 s) made the kernel revalidate every name and attribute older than that with a LOOKUP or GETATTR.
 */
export const DEFAULT_TTL = 60;

/**
 * The tree's group commit window for a mount, in ms (FileTreeOptions.groupCommitMs). A SQLite commit per create,
 * rename or unlink was a large part of each one's cost; fsync(2) and fsyncdir(2) still commit and fsync before they
 * return, so only the last few ms of operations nobody fsynced can be lost to a crash, as on a disk filesystem.
 */
export const MOUNT_GROUP_COMMIT_MS = 5;

/** What `arbor unmount` needs to find the daemon serving a mountpoint. */
export interface MountRecord {
  pid: number;
  dir: string;
  mountpoint: string;
}

/** Directory of mount records: $XDG_RUNTIME_DIR/arbor or <tmp>/arbor-<uid>. */
export function recordDir(): string {
  const base = process.env.XDG_RUNTIME_DIR;
  return base ? path.join(base, 'arbor') : path.join(os.tmpdir(), `arbor-${process.getuid?.() ?? 0}`);
}

function recordPath(mountpoint: string): string {
  const h = createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 32);
  return path.join(recordDir(), `mount-${h}.json`);
}

export function readMountRecord(mountpoint: string): MountRecord | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(recordPath(mountpoint), 'utf8')) as MountRecord;
    return typeof r.pid === 'number' && r.mountpoint === path.resolve(mountpoint) ? r : undefined;
  } catch {
    return undefined;
  }
}

export function removeMountRecord(mountpoint: string, pid?: number): void {
  const p = recordPath(mountpoint);
  try {
    if (pid !== undefined && readMountRecord(mountpoint)?.pid !== pid) return;
    fs.unlinkSync(p);
  } catch {
    // already gone
  }
}

function writeMountRecord(r: MountRecord): void {
  fs.mkdirSync(recordDir(), { recursive: true, mode: 0o700 });
  const p = recordPath(r.mountpoint);
  fs.writeFileSync(`${p}.tmp`, JSON.stringify(r) + '\n');
  fs.renameSync(`${p}.tmp`, p);
}

/**
 * fsync the state database's files. SQLite runs in WAL mode with synchronous=NORMAL, so a commit is written to the
 * WAL but not fsynced; fsync(2) on any descriptor of a file flushes that file, so this makes every commit so far
 * durable without changing how the tree's own connection is configured.
 */
async function syncStateFiles(state: string): Promise<void> {
  for (const f of [`${state}-wal`, state]) {
    let h: fs.promises.FileHandle | undefined;
    try {
      h = await fs.promises.open(f, 'r');
      await h.sync();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    } finally {
      await h?.close();
    }
  }
}

const FUSECTL = '/sys/fs/fuse/connections';

/**
 * Aborting a FUSE connection (what ends a lazily detached mount that processes still use) needs the fusectl
 * filesystem, which systemd mounts at boot but containers often lack. Mount it if we can (root); best effort.
 * Without an abort, reads parked on /dev/fuse never return and the daemon could not exit.
 */
async function ensureFusectl(): Promise<void> {
  try {
    if (process.getuid?.() !== 0 || !fs.existsSync(FUSECTL) || fs.readdirSync(FUSECTL).length > 0) return;
    // Never spawnSync from the daemon: a child that stats our own mount would wait for us.
    await new Promise<void>((resolve) => {
      const c = spawn('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { stdio: 'ignore' });
      c.on('error', () => resolve());
      c.on('exit', () => resolve());
    });
  } catch {
    // best effort
  }
}

/**
 * Exit once the kernel connection is closed. If it is not (a detached mount whose connection could not be
 * aborted), exit(3) would wait forever for the threadpool threads parked in read(2) on /dev/fuse (threadpool reader), so the process
 * kills itself instead; call this only after `done` (the state is closed, nothing is lost).
 */
export async function exitWhenClosed(m: MountedArbor, code = 0): Promise<never> {
  const closed = await Promise.race([
    m.fuse.closed.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref()),
  ]);
  if (!closed) process.kill(process.pid, 'SIGKILL');
  process.exit(code);
}

/** A served arbor mount. */
export class MountedArbor {
  /** Resolves once everything is flushed and closed (the mount gone, or detached and its last users cut off). */
  readonly done: Promise<void>;
  #stopping: Promise<void> | undefined;

  #cleanup: Promise<void> | undefined;

  constructor(
    readonly ws: ServedWorkspace,
    readonly fs: ArborFs,
    readonly fuse: FuseMount,
    readonly mountpoint: string,
  ) {
    let resolveDone: () => void = () => undefined;
    this.done = new Promise((r) => (resolveDone = r));
    this.#resolveDone = () => resolveDone();
    void fuse.closed.then(() => this.#cleanupOnce());
  }

  readonly #resolveDone: () => void;

  /** Release every handle (recording versions), close the workspace, drop the record; once. */
  #cleanupOnce(): Promise<void> {
    this.#cleanup ??= (async () => {
      try {
        await this.fs.close();
      } finally {
        try {
          await this.ws.close();
        } finally {
          removeMountRecord(this.mountpoint, process.pid);
          this.#resolveDone();
        }
      }
    })();
    return this.#cleanup;
  }

  /**
   * Unmount and clean up. A busy mount is detached lazily; if processes still hold files open on it after
   * `graceMs`, their handles are flushed and recorded anyway and the state closed: the caller then exits, which
   * closes /dev/fuse and ends the connection (those processes see ENOTCONN, as after any forced unmount).
   * Resolves once the state is closed (the connection may outlive it until the process exits).
   */
  stop(graceMs = 2000): Promise<void> {
    if (this.#stopping) return this.#stopping;
    this.#stopping = (async () => {
      try {
        await this.fuse.unmount();
      } catch {
        await ensureFusectl();
        const lazy = this.fuse.unmount({ lazy: true, abortAfterMs: graceMs }).catch(() => undefined);
        await Promise.race([lazy, new Promise((r) => setTimeout(r, graceMs + 500).unref())]);
      }
      await this.#cleanupOnce();
    })();
    return this.#stopping;
  }
}

/** Open `dir` and mount it on `mountpoint`; resolves once the kernel has answered INIT (the mount is usable). */
export async function startMount(o: MountDaemonOptions): Promise<MountedArbor> {
  const mountpoint = path.resolve(o.mountpoint);
  let st: fs.Stats;
  try {
    st = fs.statSync(mountpoint);
  } catch {
    throw fsError('ENOENT', `mountpoint ${mountpoint} does not exist`);
  }
  if (!st.isDirectory()) throw fsError('ENOTDIR', `mountpoint ${mountpoint} is not a directory`);
  if (isMounted(mountpoint))
    throw fsError('EBUSY', `${mountpoint} is already a mount point (arbor unmount it first)`);
  const ws = await o.open(o.dir, o.readOnly === true);
  let fuse: FuseMount;
  const afs = new ArborFs(ws.tree, {
    readOnly: o.readOnly === true,
    syncState: () => syncStateFiles(ws.statePath),
  });
  try {
    fuse = await mount(mountpoint, afs, {
      fsname: 'arbor',
      subtype: 'arbor',
      defaultPermissions: true,
      allowOther: o.allowOther === true,
      readOnly: o.readOnly === true,
      // Local writes pass through the page cache and other replicas' changes are dropped from it explicitly
      // (ArborFs.invalidate), so the kernel need not throw cached pages away whenever mtime moves — with it on,
      // every write through the mount (which moves mtime) would empty the cache of the file being written.
      autoInvalData: false,
      entryTimeout: o.ttl ?? DEFAULT_TTL,
      attrTimeout: o.ttl ?? DEFAULT_TTL,
      reads: o.reads ?? 4,
      handleSignals: false,
      ...(o.onError ? { onError: o.onError } : {}),
    });
  } catch (err) {
    await ws.close();
    throw err;
  }
  afs.attach(fuse);
  writeMountRecord({ pid: process.pid, dir: ws.dir, mountpoint });
  return new MountedArbor(ws, afs, fuse, mountpoint);
}

/** SIGINT/SIGTERM stop the mount cleanly (a second signal while stopping is ignored; SIGKILL is the way out). */
export function stopOnSignals(m: MountedArbor): void {
  const handler = (): void => {
    void m.stop();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  void m.done.finally(() => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  });
}

/** Ask the daemon serving `mountpoint` to stop, or clear a stale mount. Resolves what was done. */
export async function unmountArbor(
  mountpoint: string,
  timeoutMs = 60_000,
): Promise<'stopped' | 'cleared' | 'none'> {
  const { unmount } = await import('../fuse/mount.js');
  const abs = path.resolve(mountpoint);
  const rec = readMountRecord(abs);
  if (rec && rec.pid !== process.pid && alive(rec.pid)) {
    process.kill(rec.pid, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (alive(rec.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!alive(rec.pid)) {
      if (isMounted(abs)) await unmount(abs);
      return 'stopped';
    }
    throw fsError(
      'EBUSY',
      `the daemon serving ${abs} (pid ${rec.pid}) did not stop within ${timeoutMs / 1000} s`,
    );
  }
  if (rec) removeMountRecord(abs);
  if (await unmount(abs)) return 'cleared';
  return 'none';
}
