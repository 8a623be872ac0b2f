// The mount's side of commands run for other processes: a unix socket (<dir>/command.sock) on which each
// connection is one command. The request frame names it; input frames (a file being put) feed `io.input()` as the
// command consumes them; what it writes goes back in stdout frames as it writes, waiting while the socket is full;
// the last frame is `done` or `error`. So a command on a file of any size holds a few frames in memory here and in
// the client. The control socket (src/sync/control.ts) stays the sync loop's line-JSON one.
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { ArborError, CancelledError, Errno, ReadOnlyError } from '../errors.js';
import type { TreeChange } from '../tree/types.js';
import { FrameSocket, FrameType } from './frames.js';
import { commandNamed, type CommandIO, type RunRequest } from './run.js';
import type { Workspace } from './workspace.js';

export interface CommandServerOptions {
  ws: Workspace;
  /** The socket's path (paths(dir).commands); a stale socket file is replaced. */
  path: string;
  mountpoint: string;
  /** Mounted with --read-only: mutating commands are refused naming the mount, not the replica. */
  readOnlyMount: boolean;
  /** What a command changed (the mount drops it from the kernel's caches, as for changes pulled from elsewhere). */
  onChanges: (change: TreeChange) => void;
  /** A failure that is nobody's reply (the client went away first); default silent. */
  log?: (line: string) => void;
}

/** How long a client may keep the socket open after the command's last frame (sending input nobody reads). */
const LINGER_MS = 10_000;

export async function serveCommands(o: CommandServerOptions): Promise<{ close(): Promise<void> }> {
  if (existsSync(o.path)) unlinkSync(o.path);
  const open = new Set<Socket>();
  const running = new Set<Promise<void>>();
  let closing = false;
  // Once closing, the kernel side is gone: what a cancelled command undoes has no caches left to drop.
  const opts: CommandServerOptions = { ...o, onChanges: (change) => void (closing || o.onChanges(change)) };
  const server: Server = createServer((sock) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    const p = serveOne(new FrameSocket(sock), opts).finally(() => running.delete(p));
    running.add(p);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.path, () => resolve());
  });
  // Commands run with the daemon's rights (a put of a directory reads local paths): only its own user may ask.
  chmodSync(o.path, 0o600);
  server.unref();
  return {
    close: async () => {
      // A command still running fails on its next frame (a put is cancelled); wait until it has closed its files,
      // so the workspace closes under no one.
      closing = true;
      for (const s of open) s.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      try {
        unlinkSync(o.path);
      } catch {
        /* gone */
      }
      await Promise.allSettled([...running]);
      await closed;
    },
  };
}

function parseRequest(f: { type: number; payload: Buffer } | undefined): RunRequest | undefined {
  if (f?.type !== FrameType.request) return undefined;
  try {
    const req = JSON.parse(f.payload.toString()) as Partial<RunRequest>;
    if (typeof req.run !== 'string' || typeof req.args !== 'object' || req.args === null) return undefined;
    return { run: req.run, args: req.args, input: req.input === true };
  } catch {
    return undefined;
  }
}

/** The input frames as a stream; the connection closing before `inputEnd` cancels the command. */
async function* inputOf(conn: FrameSocket): AsyncGenerator<Uint8Array> {
  for (;;) {
    const f = await conn.next();
    if (f === undefined) throw new CancelledError('the client went away before sending all of the input');
    if (f.type === FrameType.inputEnd) return;
    if (f.type === FrameType.input) yield f.payload;
  }
}

async function serveOne(conn: FrameSocket, o: CommandServerOptions): Promise<void> {
  const req = parseRequest(await conn.next());
  if (req === undefined) {
    conn.sock.destroy();
    return;
  }
  let exitCode = 0;
  let inputTaken = false;
  const io: CommandIO = {
    out: (line) => void conn.sendNow(FrameType.stdout, Buffer.from(line + '\n')),
    write: (data) => conn.send(FrameType.stdout, data),
    note: (line) => void conn.sendNow(FrameType.note, Buffer.from(`arbor: ${line}\n`)),
    setExitCode: (code) => void (exitCode = code),
    input: () => {
      if (!req.input || inputTaken)
        throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, `${req.run} was given no input`);
      inputTaken = true;
      return inputOf(conn);
    },
  };
  let reply: { type: number; body: unknown };
  try {
    await run(req, io, o);
    reply = { type: FrameType.done, body: { exitCode } };
  } catch (err) {
    const e = readOnlyMount(err, o);
    reply = {
      type: FrameType.error,
      body: {
        message: e instanceof Error ? e.message : String(e),
        // The asking process rebuilds the same typed error (its errno and code decide its message and exit).
        ...(e instanceof ArborError ? { code: e.code, errno: e.errno } : {}),
      },
    };
  }
  conn.discardInput();
  try {
    conn.sendNow(reply.type, Buffer.from(JSON.stringify(reply.body)));
    conn.sock.end();
    setTimeout(() => conn.sock.destroy(), LINGER_MS).unref();
  } catch {
    // The client is gone (closed its end early, e.g. `arbor cat … | head`): nobody to tell.
    conn.sock.destroy();
  }
}

async function run(req: RunRequest, io: CommandIO, o: CommandServerOptions): Promise<void> {
  const cmd = commandNamed(req.run);
  if (cmd === undefined)
    throw new ArborError('ARBOR_INTERNAL', Errno.EINVAL, `the mount has no command ${req.run}`);
  if (!cmd.inMount)
    throw new ArborError(
      'EBUSY',
      Errno.EBUSY,
      `${o.ws.dir} is mounted on ${o.mountpoint}; unmount it to run ${req.run}`,
    );
  const off = o.ws.tree.onChange((change, local) => {
    if (local) o.onChanges(change);
  });
  try {
    await cmd.fn(o.ws, req.args, io);
  } finally {
    off();
  }
}

/** A refusal because this mount is --read-only names the mount (the replica itself could take the change). */
function readOnlyMount(err: unknown, o: CommandServerOptions): unknown {
  if (!(err instanceof ReadOnlyError) || !o.readOnlyMount) return err;
  return new ReadOnlyError(
    `${o.ws.dir} is mounted read-only on ${o.mountpoint}; unmount it (or mount it without --read-only) to change it`,
  );
}
