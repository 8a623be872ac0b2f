// `arbor mount <dir> <mountpoint> [--foreground] [--read-only] [--allow-other]` and `arbor unmount <mountpoint>`.
// Background mounts run the foreground daemon in a detached child and return once it reports the mount ready.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidInputError, fsError } from '../../errors.js';
import { isMounted } from '../../fuse/mount.js';
import {
  exitWhenClosed,
  MOUNT_GROUP_COMMIT_MS,
  startMount,
  stopOnSignals,
  unmountArbor,
  type ServedWorkspace,
} from '../../vfs/daemon.js';
import { startSyncLoop, type SyncLoop } from '../../sync/loop.js';
import { serveCommands } from '../serve.js';
import { openWorkspace, paths, readConfig, type Workspace } from '../workspace.js';

interface MountFlags {
  foreground?: boolean;
  readOnly?: boolean;
  allowOther?: boolean;
}

/** Outstanding /dev/fuse reads; the daemon's threadpool needs this many threads plus spares for file I/O. */
const READS = 4;
const THREADPOOL = 16;
/** Set in the daemon child: the descriptor on which it reports "ready" or "error <message>". */
const READY_FD_ENV = 'ARBOR_MOUNT_READY_FD';

/** The opened workspace, its sync loop and command socket: both stop before the workspace closes. */
interface Served {
  ws?: Workspace;
  loop?: SyncLoop;
  commands?: { close(): Promise<void> };
}

function opener(served: Served): (dir: string, readOnly: boolean) => Promise<ServedWorkspace> {
  return async (dir, readOnly) => {
    const ws = await openWorkspace(dir, {
      groupCommitMs: MOUNT_GROUP_COMMIT_MS,
      ...(readOnly ? { readOnly: true } : {}),
    });
    served.ws = ws;
    // A crash may have left the pins behind the tree (or content arrived while unmounted): catch up in the background.
    ws.pins.schedule(0);
    return {
      dir: ws.dir,
      tree: ws.tree,
      statePath: paths(ws.dir).state,
      close: async () => {
        try {
          await served.commands?.close();
          await served.loop?.stop();
        } finally {
          await ws.close();
        }
      },
    };
  };
}

const say = (line: string): void => {
  process.stderr.write(`arbor mount: ${line}\n`);
};

function checkMountpoint(mnt: string): string {
  const abs = path.resolve(mnt);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new InvalidInputError(`mountpoint ${abs} does not exist`);
  }
  if (!st.isDirectory()) throw new InvalidInputError(`mountpoint ${abs} is not a directory`);
  if (isMounted(abs)) throw fsError('EBUSY', `${abs} is already a mount point (arbor unmount it first)`);
  return abs;
}

function childArgs(dir: string, mnt: string, o: MountFlags): string[] {
  const args = [process.argv[1]!, 'mount', dir, mnt, '--foreground'];
  if (o.readOnly) args.push('--read-only');
  if (o.allowOther) args.push('--allow-other');
  return args;
}

/** The libuv threadpool size is fixed at first use: re-run with it set rather than hoping nothing used it yet. */
function threadpoolReady(): boolean {
  return Number(process.env.UV_THREADPOOL_SIZE ?? 0) >= READS + 4;
}

async function foreground(dir: string, mnt: string, o: MountFlags): Promise<void> {
  if (!threadpoolReady()) {
    const child = spawn(process.execPath, childArgs(dir, mnt, o), {
      stdio: 'inherit',
      env: { ...process.env, UV_THREADPOOL_SIZE: String(THREADPOOL) },
    });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const code = await new Promise<number>((r) => child.on('exit', (c, s) => r(c ?? (s ? 1 : 0))));
    process.exit(code);
  }
  const readyFd = process.env[READY_FD_ENV] ? Number(process.env[READY_FD_ENV]) : undefined;
  const report = (line: string): void => {
    if (readyFd === undefined) return;
    try {
      fs.writeSync(readyFd, line + '\n');
      fs.closeSync(readyFd);
    } catch {
      // the parent is gone
    }
  };
  const served: Served = {};
  let m;
  try {
    m = await startMount({
      dir,
      mountpoint: mnt,
      readOnly: o.readOnly === true,
      allowOther: o.allowOther === true,
      reads: READS,
      open: opener(served),
      onError: (err) => say(err instanceof Error ? err.message : String(err)),
    });
  } catch (err) {
    report(`error ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
  const mounted = m;
  stopOnSignals(mounted);
  // Other arbor commands on this directory (ls, cat, put, restore, …) run here, on the mount's own state, streamed
  // through <dir>/command.sock; the kernel's caches drop what they change.
  try {
    served.commands = await serveCommands({
      ws: served.ws!,
      path: paths(served.ws!.dir).commands,
      mountpoint: mounted.mountpoint,
      readOnlyMount: o.readOnly === true,
      onChanges: (change) => void mounted.fs.invalidate(change),
    });
  } catch (err) {
    say(`commands on ${dir} cannot reach this mount: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Replication runs inside the daemon: what a pull changes is dropped from the kernel's caches, and
  // `arbor sync/status <dir>` reach the loop through the control socket. A failure here leaves a working local mount.
  try {
    served.loop = await startSyncLoop(served.ws!, {
      onChanges: (change) => void mounted.fs.invalidate(change),
      socketPath: paths(served.ws!.dir).socket,
      log: say,
    });
  } catch (err) {
    say(`sync is off for this mount: ${err instanceof Error ? err.message : String(err)}`);
  }
  report('ready');
  process.stderr.write(`arbor: mounted ${m.ws.dir} on ${m.mountpoint}\n`);
  await m.done;
  process.stderr.write(`arbor: unmounted ${m.mountpoint}\n`);
  await exitWhenClosed(m, 0);
}

/** Start the daemon detached (its output goes to <dir>/mount.log) and wait for its first report. */
async function background(dir: string, mnt: string, o: MountFlags): Promise<void> {
  const log = fs.openSync(path.join(dir, 'mount.log'), 'a', 0o600);
  const child = spawn(process.execPath, childArgs(dir, mnt, o), {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...process.env, UV_THREADPOOL_SIZE: String(THREADPOOL), [READY_FD_ENV]: '3' },
  });
  fs.closeSync(log);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  const line = await new Promise<string>((resolve) => {
    let buf = '';
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    pipe.on('error', () => resolve(`error the mount daemon failed to start (see ${dir}/mount.log)`));
    pipe.on('end', () =>
      resolve(buf.split('\n')[0] || `error the mount daemon exited (see ${dir}/mount.log)`),
    );
    child.on('exit', (code) =>
      setTimeout(() => resolve(`error the mount daemon exited with ${code} (see ${dir}/mount.log)`), 200),
    );
  });
  if (line !== 'ready') throw new Error(line.replace(/^error /, ''));
  (pipe as unknown as { destroy(): void }).destroy();
  child.unref();
}

export function registerMount(program: Command): void {
  program
    .command('mount')
    .description('mount an arbor directory (returns once the mount is ready; --foreground stays)')
    .argument('<dir>', 'arbor directory (made by arbor init or arbor clone)')
    .argument('<mountpoint>', 'an existing empty directory')
    .option('--foreground', 'serve in this process until unmounted or interrupted')
    .option('--read-only', 'mount read-only')
    .option(
      '--allow-other',
      'let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root)',
    )
    .action(async (dir: string, mnt: string, o: MountFlags) => {
      const absDir = path.resolve(dir);
      await readConfig(absDir); // a wrong directory is one clear line, before anything is spawned
      const absMnt = o.foreground && process.env[READY_FD_ENV] ? path.resolve(mnt) : checkMountpoint(mnt);
      if (o.foreground) await foreground(absDir, absMnt, o);
      else await background(absDir, absMnt, o);
    });
  program
    .command('unmount')
    .description('unmount an arbor mount (stops its daemon cleanly; clears a mount left by a crashed daemon)')
    .argument('<mountpoint>')
    .action(async (mnt: string) => {
      const done = await unmountArbor(mnt);
      if (done === 'none') throw new InvalidInputError(`${path.resolve(mnt)} is not mounted`);
    });
}
