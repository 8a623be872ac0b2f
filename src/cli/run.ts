// Commands that work on an arbor directory's tree (ls, cat, get, put, log, restore, fsck, gc, …) run in this process
// when the directory is free, or inside the mount that owns it, through its command socket (<dir>/command.sock,
// served by src/cli/serve.ts): never two processes writing one state file. A command's body writes through a
// CommandIO, so the same code prints here or is streamed back by the mount, frame by frame (src/cli/frames.ts).
import { createConnection, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { ArborError, Errno } from '../errors.js';
import { withWorkspace } from './commands/common.js';
import { FrameSocket, FrameType } from './frames.js';
import { WorkspaceLockedError, lockOwner, paths, type Workspace } from './workspace.js';

/** Where a command's output goes and its input comes from: this process, or a client of the mount. */
export interface CommandIO {
  /** A short line to stdout (not back-pressured: for listings and reports, not file contents). */
  out(line: string): void;
  /** Bytes to stdout; resolves when they may be followed by more (back-pressure). */
  write(data: Uint8Array): Promise<void>;
  note(line: string): void;
  setExitCode(code: number): void;
  /** The command's input (a file or stdin the caller streams), taken once; throws CancelledError if the caller gave up. */
  input(): AsyncIterable<Uint8Array>;
}

/** JSON-safe arguments of one command (what crosses the socket). */
export type CommandArgs = Readonly<Record<string, string | boolean | number | undefined>>;

export type WorkspaceCommand = (ws: Workspace, args: CommandArgs, io: CommandIO) => Promise<void>;

export interface CommandEntry {
  readonly fn: WorkspaceCommand;
  readonly inMount: boolean;
}

const commands = new Map<string, CommandEntry>();

/**
 * Register a command body under a name, so a mount can run it for another process. `inMount: false` for commands
 * that must not share a process with a mount (gc syncs on its own and would race the mount's sync loop): they are
 * refused while one runs, naming its mountpoint.
 */
export function defineCommand(name: string, fn: WorkspaceCommand, o: { inMount?: boolean } = {}): void {
  commands.set(name, { fn, inMount: o.inMount ?? true });
}

export function commandNamed(name: string): CommandEntry | undefined {
  return commands.get(name);
}

/** What the mount receives as the first frame of a connection. */
export interface RunRequest {
  run: string;
  args: CommandArgs;
  /** The client streams input frames after the request. */
  input?: boolean;
}

const noInput = (): AsyncIterable<Uint8Array> => {
  throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, 'this command was given no input');
};

function processIO(input: Readable | undefined): CommandIO {
  return {
    out: (line) => void process.stdout.write(line + '\n'),
    write: (data) => new Promise<void>((r) => process.stdout.write(data, () => r())),
    note: (line) => void process.stderr.write(`arbor: ${line}\n`),
    setExitCode: (code) => {
      process.exitCode = code;
    },
    input: input === undefined ? noInput : () => input as AsyncIterable<Uint8Array>,
  };
}

/**
 * Run a registered command on `dir`: here when the directory is free, else inside the mount that owns it. `input`
 * (stdin or a local file) is read here either way: the command gets it through `io.input()`. Another command holding
 * the lock (no socket answers) is refused with the usual one-line "in use" error.
 */
export async function runOnWorkspace(
  dir: string,
  name: string,
  args: CommandArgs,
  o: { input?: Readable } = {},
): Promise<void> {
  const cmd = commands.get(name);
  if (cmd === undefined) throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, `no command ${name}`);
  const owner = lockOwner(dir);
  if (owner === undefined) {
    await withWorkspace(dir, (ws) => cmd.fn(ws, args, processIO(o.input)));
    return;
  }
  // No answer at all means another command (not a mount) holds the lock.
  const sock = await connect(paths(dir).commands).catch(() => {
    throw new WorkspaceLockedError(dir, owner);
  });
  await runInMount(new FrameSocket(sock), { run: name, args, input: o.input !== undefined }, o.input);
}

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

/** The client's side: send the request and the input, copy stdout/notes as they come, end as the mount says. */
async function runInMount(conn: FrameSocket, req: RunRequest, input: Readable | undefined): Promise<void> {
  let finished = false;
  let inputError: unknown;
  conn.sendNow(FrameType.request, Buffer.from(JSON.stringify(req)));
  if (input !== undefined) {
    const pump = async (): Promise<void> => {
      for await (const chunk of input) {
        if (finished) return;
        await conn.send(FrameType.input, chunk as Uint8Array);
      }
      if (!finished) conn.sendNow(FrameType.inputEnd, Buffer.alloc(0));
    };
    pump().catch((err: unknown) => {
      if (finished) return; // the mount answered already (e.g. an early error): the rest of the input is moot
      // Closing without inputEnd tells the mount to cancel the command (see `put`): nothing partial is kept.
      inputError = err;
      conn.sock.destroy();
    });
  }
  try {
    for (;;) {
      const f = await conn.next();
      if (f === undefined) {
        if (inputError !== undefined) throw inputError;
        throw new ArborError(
          'ARBOR_MOUNT_ERROR',
          Errno.EIO,
          'the mount closed the connection before the command finished',
        );
      }
      if (f.type === FrameType.stdout) {
        if (!process.stdout.write(f.payload)) await new Promise((r) => process.stdout.once('drain', r));
      } else if (f.type === FrameType.note) {
        process.stderr.write(f.payload);
      } else if (f.type === FrameType.done) {
        const { exitCode } = JSON.parse(f.payload.toString()) as { exitCode: number };
        if (exitCode !== 0) process.exitCode = exitCode;
        return;
      } else if (f.type === FrameType.error) {
        // The same typed error a local run throws (its errno and code decide its message and exit).
        const e = JSON.parse(f.payload.toString()) as { message?: string; code?: string; errno?: number };
        throw new ArborError(
          typeof e.code === 'string' ? e.code : 'ARBOR_MOUNT_ERROR',
          typeof e.errno === 'number' ? e.errno : Errno.EIO,
          e.message ?? 'the mount reported an error',
        );
      }
    }
  } finally {
    finished = true;
    input?.destroy();
    conn.sock.end();
  }
}
