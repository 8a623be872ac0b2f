// Commands that work on an arbor directory's tree (ls, cat, get, put, log, restore, fsck, gc, …) run in this process
// when the directory is free, or inside the mount that owns it, through its control socket: never two processes
// writing one state file. A command's body writes through a CommandIO, so the same code prints here or is collected
// in the daemon and sent back.
import { ArborError, Errno } from '../errors.js';
import { askMount } from '../sync/control.js';
import type { TreeChange } from '../tree/types.js';
import { withWorkspace } from './commands/common.js';
import { WorkspaceLockedError, lockOwner, paths, type Workspace } from './workspace.js';

/** Where a command's output goes: this process's stdout/stderr, or a buffer sent back by the mount. */
export interface CommandIO {
  out(line: string): void;
  write(data: Uint8Array): Promise<void>;
  note(line: string): void;
  setExitCode(code: number): void;
}

/** JSON-safe arguments of one command (what crosses the socket). */
export type CommandArgs = Readonly<Record<string, string | boolean | number | undefined>>;

export type WorkspaceCommand = (ws: Workspace, args: CommandArgs, io: CommandIO) => Promise<void>;

const commands = new Map<string, { fn: WorkspaceCommand; inMount: boolean }>();

/**
 * Register a command body under a name, so a mount can run it for another process. `inMount: false` for commands
 * that must not share a process with a mount (gc syncs on its own and would race the mount's sync loop): they are
 * refused while one runs, naming its mountpoint.
 */
export function defineCommand(name: string, fn: WorkspaceCommand, o: { inMount?: boolean } = {}): void {
  commands.set(name, { fn, inMount: o.inMount ?? true });
}

const processIO: CommandIO = {
  out: (line) => void process.stdout.write(line + '\n'),
  write: (data) => new Promise<void>((r) => process.stdout.write(data, () => r())),
  note: (line) => void process.stderr.write(`arbor: ${line}\n`),
  setExitCode: (code) => {
    process.exitCode = code;
  },
};

interface RunRequest {
  run: string;
  args: CommandArgs;
}

interface RunReply {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Run a registered command on `dir`: here when the directory is free, else inside the mount that owns it. Another
 * command holding the lock (no socket answers) is refused with the usual one-line "in use" error.
 */
export async function runOnWorkspace(dir: string, name: string, args: CommandArgs): Promise<void> {
  const cmd = commands.get(name);
  if (cmd === undefined) throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, `no command ${name}`);
  const owner = lockOwner(dir);
  if (owner === undefined) {
    await withWorkspace(dir, (ws) => cmd.fn(ws, args, processIO));
    return;
  }
  const req: RunRequest = { run: name, args };
  const reply = (await askMount(paths(dir).socket, JSON.stringify(req)).catch((err: unknown) => {
    // A mount that answered with an error reports it; no answer at all means another command holds the lock.
    throw err instanceof ArborError ? err : new WorkspaceLockedError(dir, owner);
  })) as RunReply;
  if (reply.stdout.length > 0) await processIO.write(Buffer.from(reply.stdout, 'base64'));
  if (reply.stderr.length > 0) process.stderr.write(reply.stderr);
  if (reply.exitCode !== 0) process.exitCode = reply.exitCode;
}

/**
 * The mount's side: run a `{run, args}` request on its own workspace with output collected. What the command changed
 * goes to `onChanges` (the mount drops it from the kernel's caches, as for changes pulled from other replicas).
 * Returns undefined for requests that are not command runs.
 */
export async function serveCommand(
  ws: Workspace,
  request: string,
  mountpoint: string,
  onChanges: (change: TreeChange) => void,
): Promise<RunReply | undefined> {
  if (!request.startsWith('{')) return undefined;
  const req = JSON.parse(request) as Partial<RunRequest>;
  if (typeof req.run !== 'string' || typeof req.args !== 'object' || req.args === null) return undefined;
  const cmd = commands.get(req.run);
  if (cmd === undefined)
    throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, `the mount has no command ${req.run}`);
  if (!cmd.inMount)
    throw new ArborError(
      'EBUSY',
      Errno.EBUSY,
      `${ws.dir} is mounted on ${mountpoint}; unmount it to run ${req.run}`,
    );
  const stdout: Buffer[] = [];
  let stderr = '';
  let exitCode = 0;
  const io: CommandIO = {
    out: (line) => void stdout.push(Buffer.from(line + '\n')),
    write: (data) => {
      stdout.push(Buffer.from(data));
      return Promise.resolve();
    },
    note: (line) => void (stderr += `arbor: ${line}\n`),
    setExitCode: (code) => void (exitCode = code),
  };
  const off = ws.tree.onChange((change, local) => {
    if (local) onChanges(change);
  });
  try {
    await cmd.fn(ws, req.args, io);
  } finally {
    off();
  }
  return { stdout: Buffer.concat(stdout).toString('base64'), stderr, exitCode };
}
