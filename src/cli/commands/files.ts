// `arbor ls|cat|put|get|mkdir|rm|mv|ln|chmod <dir> …`: work on an arbor directory's tree through the library API, in
// this process or, while a mount owns the directory, inside that mount (src/cli/run.ts).
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { CancelledError, InvalidInputError, fsError } from '../../errors.js';
import { Arbor } from '../../index.js';
import { defineCommand, runOnWorkspace, type CommandArgs, type CommandIO } from '../run.js';
import type { Workspace } from '../workspace.js';
import { innerPath, onPath, requireWritable } from './common.js';

/** Bytes per read or write of file content: what a command holds of a file at a time. */
const BLOCK = 1024 * 1024;

function writable(ws: Workspace): Arbor {
  requireWritable(ws);
  return new Arbor(ws.tree);
}

function modeString(kind: string, mode: number): string {
  const t = { dir: 'd', symlink: 'l', file: '-', chr: 'c', blk: 'b', fifo: 'p', sock: 's' }[kind] ?? '?';
  let s = t;
  for (let i = 8; i >= 0; i--) s += mode & (1 << i) ? 'rwx'[(8 - i) % 3] : '-';
  return s;
}

/**
 * Write `input` to `target` as it arrives (a file or stdin being put). Complete or not at all: if the input fails or
 * is cancelled (the client interrupted, or gone from a mount), no version is recorded, so an existing file keeps its
 * content, and a file this put created is removed again.
 */
async function putStream(
  a: Arbor,
  target: string,
  mode: number,
  input: AsyncIterable<Uint8Array>,
): Promise<void> {
  const existed = await a.exists(target);
  const h = await a.open(target, 'w', mode);
  let closing = false;
  try {
    let pos = 0;
    for await (const chunk of input) {
      await h.write(chunk, pos);
      pos += chunk.length;
    }
    // Storing the last chunks can fail too (ENOSPC: a cache full of pinned chunks, or a full disk); close releases
    // the handle either way and records no version then.
    closing = true;
    await h.close();
  } catch (err) {
    if (!closing) await h.discard();
    if (!existed) await a.unlink(target).catch(() => undefined);
    throw err;
  }
}

/** A file's content to stdout, a block at a time (until EOF, should it grow meanwhile). */
async function catFile(a: Arbor, path: string, io: CommandIO): Promise<void> {
  if ((await a.stat(path)).isDirectory()) throw fsError('EISDIR');
  const h = await a.open(path, 'r');
  try {
    for (let pos = 0; ;) {
      const buf = await h.read(BLOCK, pos);
      if (buf.length === 0) break;
      await io.write(buf);
      pos += buf.length;
    }
  } finally {
    await h.close();
  }
}

/**
 * An interrupt (Ctrl-C, SIGTERM) while `input` is read fails it with a one-line CancelledError, so the put it feeds
 * keeps nothing partial — here, or in the mount, which sees the connection close before the input's end.
 */
function cancelOnSignals(input: Readable, shown: string): () => void {
  const cancel = (): void =>
    void input.destroy(new CancelledError(`put of ${shown} was interrupted; nothing was written`));
  process.once('SIGINT', cancel);
  process.once('SIGTERM', cancel);
  return () => {
    process.off('SIGINT', cancel);
    process.off('SIGTERM', cancel);
  };
}

/** Copy a local file or directory tree into the arbor. */
async function putTree(a: Arbor, local: string, target: string): Promise<number> {
  const st = await stat(local);
  if (st.isDirectory()) {
    if (!(await a.exists(target))) await a.mkdir(target, { mode: st.mode & 0o7777 });
    let n = 0;
    for (const name of (await readdir(local)).sort()) {
      n += await putTree(a, join(local, name), target === '/' ? `/${name}` : `${target}/${name}`);
    }
    return n;
  }
  if (!st.isFile()) return 0;
  const h = await a.open(target, 'w', st.mode & 0o7777);
  try {
    let pos = 0;
    for await (const chunk of createReadStream(local, { highWaterMark: BLOCK })) {
      await h.write(chunk as Buffer, pos);
      pos += (chunk as Buffer).length;
    }
  } finally {
    await h.close();
  }
  return 1;
}

/** Copy an arbor file or directory tree out to the local filesystem. */
async function getTree(a: Arbor, src: string, local: string): Promise<number> {
  const st = await a.stat(src);
  if (st.isDirectory()) {
    await mkdir(local, { recursive: true });
    let n = 0;
    for (const name of await a.readdir(src))
      n += await getTree(a, src === '/' ? `/${name}` : `${src}/${name}`, join(local, name));
    return n;
  }
  const h = await a.open(src, 'r');
  const ws = createWriteStream(local, { mode: st.mode & 0o777 });
  try {
    for (let pos = 0; pos < st.size;) {
      const buf = await h.read(Math.min(4 * 1024 * 1024, st.size - pos), pos);
      if (buf.length === 0) break;
      if (!ws.write(buf)) await new Promise<void>((r) => ws.once('drain', () => r()));
      pos += buf.length;
    }
  } finally {
    await h.close();
    await new Promise<void>((res, rej) => ws.end((err?: Error | null) => (err ? rej(err) : res())));
  }
  return 1;
}

const str = (a: CommandArgs, k: string): string => String(a[k] ?? '');

defineCommand('ls', async (ws, args, io) => {
  const a = new Arbor(ws.tree);
  const p = innerPath(str(args, 'path'));
  const st = await a.lstat(p);
  const names = st.isDirectory() ? await a.readdir(p) : [p.split('/').pop()!];
  for (const name of names) {
    if (args.long !== true) {
      io.out(name);
      continue;
    }
    const full = st.isDirectory() ? (p === '/' ? `/${name}` : `${p}/${name}`) : p;
    const s = await a.lstat(full);
    const link = s.isSymbolicLink() ? ` -> ${await a.readlink(full)}` : '';
    io.out(`${modeString(s.kind, s.mode)} ${s.nlink} ${String(s.size).padStart(10)} ${name}${link}`);
  }
});

defineCommand('cat', (ws, args, io) => catFile(new Arbor(ws.tree), innerPath(str(args, 'path')), io));

// A single file or stdin arrives as the command's input (`input: true`, read by the calling process, streamed by a
// mount's client); a directory tree is read from `local` by whoever runs the command.
defineCommand('put', async (ws, args, io) => {
  requireWritable(ws);
  const a = new Arbor(ws.tree);
  let target = innerPath(str(args, 'path'));
  if (args.input === true) {
    // `name`: the local file's name, for a target that is an existing directory (stdin has none: EISDIR then).
    if (typeof args.name === 'string' && (await a.exists(target)) && (await a.stat(target)).isDirectory())
      target = `${target === '/' ? '' : target}/${args.name}`;
    await putStream(a, target, typeof args.mode === 'number' ? args.mode : 0o644, io.input());
    return;
  }
  await putTree(a, str(args, 'local'), target);
});

defineCommand('get', async (ws, args, io) => {
  const a = new Arbor(ws.tree);
  const path = innerPath(str(args, 'path'));
  if (args.local === undefined) {
    if ((await a.stat(path)).isDirectory())
      throw new InvalidInputError('give a local destination for a directory');
    await catFile(a, path, io);
    return;
  }
  await getTree(a, path, str(args, 'local'));
});

defineCommand('mkdir', (ws, args) => writable(ws).mkdir(innerPath(str(args, 'path')), { recursive: true }));

defineCommand('rm', (ws, args) =>
  writable(ws).rm(innerPath(str(args, 'path')), { recursive: args.recursive === true }),
);

defineCommand('mv', (ws, args) =>
  writable(ws).rename(innerPath(str(args, 'from')), innerPath(str(args, 'to'))),
);

defineCommand('ln', (ws, args) => {
  const a = writable(ws);
  const path = innerPath(str(args, 'path'));
  return args.symbolic === true
    ? a.symlink(str(args, 'target'), path)
    : a.link(innerPath(str(args, 'target')), path);
});

defineCommand('chmod', (ws, args) => writable(ws).chmod(innerPath(str(args, 'path')), Number(args.mode)));

/** Run a registered command on `dir` (here or in its mount), errors naming the arbor path. */
function run(dir: string, shown: string, name: string, args: CommandArgs, input?: Readable): Promise<void> {
  return onPath(shown, () => runOnWorkspace(dir, name, args, input === undefined ? {} : { input }));
}

/** `arbor put`: stdin or a single file is read here and streamed to the command; a directory is read by it. */
async function put(dir: string, local: string, path: string): Promise<void> {
  let args: CommandArgs;
  let input: Readable | undefined;
  if (local === '-') {
    args = { path, input: true };
    input = process.stdin;
  } else {
    const abs = resolve(local);
    const st = await stat(abs);
    if (st.isDirectory()) args = { path, local: abs };
    else if (!st.isFile())
      return; // sockets, fifos, devices: nothing to copy (as for entries of a tree)
    else {
      args = { path, input: true, name: basename(abs), mode: st.mode & 0o7777 };
      input = createReadStream(abs, { highWaterMark: BLOCK });
    }
  }
  const restore = input === undefined ? undefined : cancelOnSignals(input, innerPath(path));
  try {
    await run(dir, innerPath(path), 'put', args, input);
  } finally {
    restore?.();
  }
}

export function registerFiles(program: Command): void {
  program
    .command('ls')
    .description('list a directory of the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('[path]', 'path inside the arbor', '/')
    .option('-l, --long', 'mode, links, size and name')
    .action((dir: string, path: string, o: { long?: boolean }) =>
      run(dir, innerPath(path), 'ls', { path, long: o.long === true }),
    );

  program
    .command('cat')
    .description('write a file of the arbor to stdout')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file inside the arbor')
    .action((dir: string, path: string) => run(dir, innerPath(path), 'cat', { path }));

  program
    .command('put')
    .description('copy a local file or directory (or - for stdin) into the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<local>', 'local file or directory, or - for stdin')
    .argument('<path>', 'destination inside the arbor')
    // Read here, not in a mount that may run it: stdin and relative paths are this process's.
    .action((dir: string, local: string, path: string) => put(dir, local, path));

  program
    .command('get')
    .description('copy a file or directory out of the arbor (a file to stdout when <local> is omitted)')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file or directory inside the arbor')
    .argument('[local]', 'local destination')
    .action((dir: string, path: string, local: string | undefined) =>
      run(dir, innerPath(path), 'get', { path, local: local === undefined ? undefined : resolve(local) }),
    );

  program
    .command('mkdir')
    .description('make a directory in the arbor (with parents)')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'directory inside the arbor')
    .action((dir: string, path: string) => run(dir, innerPath(path), 'mkdir', { path }));

  program
    .command('rm')
    .description('remove a file or (with -r) a directory tree from the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'path inside the arbor')
    .option('-r, --recursive', 'remove directories and their contents')
    .action((dir: string, path: string, o: { recursive?: boolean }) =>
      run(dir, innerPath(path), 'rm', { path, recursive: o.recursive === true }),
    );

  program
    .command('mv')
    .description('rename or move a path inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<from>', 'existing path')
    .argument('<to>', 'new path')
    .action((dir: string, from: string, to: string) => run(dir, innerPath(from), 'mv', { from, to }));

  program
    .command('ln')
    .description('make a hard link (or with -s a symbolic link) inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<target>', 'existing path (or the symlink text with -s)')
    .argument('<path>', 'new name')
    .option('-s, --symbolic', 'make a symbolic link')
    .action((dir: string, target: string, path: string, o: { symbolic?: boolean }) =>
      run(dir, innerPath(path), 'ln', { target, path, symbolic: o.symbolic === true }),
    );

  program
    .command('chmod')
    .description('change the permission bits of a path inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<mode>', 'octal mode, e.g. 640')
    .argument('<path>', 'path inside the arbor')
    .action((dir: string, mode: string, path: string) => {
      if (!/^[0-7]{1,4}$/.test(mode))
        throw new InvalidInputError(`mode must be octal (e.g. 640), not '${mode}'`);
      return run(dir, innerPath(path), 'chmod', { path, mode: parseInt(mode, 8) });
    });
}
