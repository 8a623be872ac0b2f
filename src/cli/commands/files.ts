// `arbor ls|cat|put|get|mkdir|rm|mv <dir> …`: work on an arbor directory's tree without mounting it (library API).
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { Arbor } from '../../index.js';
import type { Workspace } from '../workspace.js';
import { onPath, out, requireWritable, withWorkspace } from './common.js';

function writable(ws: Workspace): Arbor {
  requireWritable(ws);
  return new Arbor(ws.tree);
}

function inner(path: string | undefined): string {
  if (path === undefined || path === '' || path === '/') return '/';
  return path.startsWith('/') ? path : '/' + path;
}

function modeString(kind: string, mode: number): string {
  const t = { dir: 'd', symlink: 'l', file: '-', chr: 'c', blk: 'b', fifo: 'p', sock: 's' }[kind] ?? '?';
  let s = t;
  for (let i = 8; i >= 0; i--) s += mode & (1 << i) ? 'rwx'[(8 - i) % 3] : '-';
  return s;
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts);
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
    for await (const chunk of createReadStream(local, { highWaterMark: 4 * 1024 * 1024 })) {
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

export function registerFiles(program: Command): void {
  program
    .command('ls')
    .description('list a directory of the arbor (no mount needed)')
    .argument('<dir>', 'arbor directory')
    .argument('[path]', 'path inside the arbor', '/')
    .option('-l, --long', 'mode, links, size and name')
    .action(async (dir: string, path: string, o: { long?: boolean }) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, async (ws) => {
          const a = new Arbor(ws.tree);
          const p = inner(path);
          const st = await a.lstat(p);
          const names = st.isDirectory() ? await a.readdir(p) : [p.split('/').pop()!];
          for (const name of names) {
            if (!o.long) {
              out(name);
              continue;
            }
            const full = st.isDirectory() ? (p === '/' ? `/${name}` : `${p}/${name}`) : p;
            const s = await a.lstat(full);
            const link = s.isSymbolicLink() ? ` -> ${await a.readlink(full)}` : '';
            out(`${modeString(s.kind, s.mode)} ${s.nlink} ${String(s.size).padStart(10)} ${name}${link}`);
          }
        }),
      );
    });

  program
    .command('cat')
    .description('write a file of the arbor to stdout')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file inside the arbor')
    .action(async (dir: string, path: string) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, async (ws) => {
          const data = await new Arbor(ws.tree).readFile(inner(path));
          await new Promise<void>((r) => process.stdout.write(data, () => r()));
        }),
      );
    });

  program
    .command('put')
    .description('copy a local file or directory (or - for stdin) into the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<local>', 'local file or directory, or - for stdin')
    .argument('<path>', 'destination inside the arbor')
    .action(async (dir: string, local: string, path: string) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, async (ws) => {
          requireWritable(ws);
          const a = new Arbor(ws.tree);
          if (local === '-') {
            await a.writeFile(inner(path), await readStdin());
            return;
          }
          let target = inner(path);
          const st = await stat(local);
          if (!st.isDirectory() && (await a.exists(target)) && (await a.stat(target)).isDirectory()) {
            target = `${target === '/' ? '' : target}/${local.split('/').pop()}`;
          }
          await putTree(a, local, target);
        }),
      );
    });

  program
    .command('get')
    .description('copy a file or directory out of the arbor (a file to stdout when <local> is omitted)')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file or directory inside the arbor')
    .argument('[local]', 'local destination')
    .action(async (dir: string, path: string, local: string | undefined) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, async (ws) => {
          const a = new Arbor(ws.tree);
          if (local === undefined) {
            if ((await a.stat(inner(path))).isDirectory())
              throw new InvalidInputError('give a local destination for a directory');
            const data = await a.readFile(inner(path));
            await new Promise<void>((r) => process.stdout.write(data, () => r()));
            return;
          }
          await getTree(a, inner(path), local);
        }),
      );
    });

  program
    .command('mkdir')
    .description('make a directory in the arbor (with parents)')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'directory inside the arbor')
    .action(async (dir: string, path: string) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, (ws) => writable(ws).mkdir(inner(path), { recursive: true })),
      );
    });

  program
    .command('rm')
    .description('remove a file or (with -r) a directory tree from the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'path inside the arbor')
    .option('-r, --recursive', 'remove directories and their contents')
    .action(async (dir: string, path: string, o: { recursive?: boolean }) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, (ws) => new Arbor(ws.tree).rm(inner(path), { recursive: o.recursive === true })),
      );
    });

  program
    .command('mv')
    .description('rename or move a path inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<from>', 'existing path')
    .argument('<to>', 'new path')
    .action(async (dir: string, from: string, to: string) => {
      await onPath(inner(from), () =>
        withWorkspace(dir, (ws) => writable(ws).rename(inner(from), inner(to))),
      );
    });

  program
    .command('ln')
    .description('make a hard link (or with -s a symbolic link) inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<target>', 'existing path (or the symlink text with -s)')
    .argument('<path>', 'new name')
    .option('-s, --symbolic', 'make a symbolic link')
    .action(async (dir: string, target: string, path: string, o: { symbolic?: boolean }) => {
      await onPath(inner(path), () =>
        withWorkspace(dir, (ws) => {
          requireWritable(ws);
          const a = new Arbor(ws.tree);
          return o.symbolic ? a.symlink(target, inner(path)) : a.link(inner(target), inner(path));
        }),
      );
    });

  program
    .command('chmod')
    .description('change the permission bits of a path inside the arbor')
    .argument('<dir>', 'arbor directory')
    .argument('<mode>', 'octal mode, e.g. 640')
    .argument('<path>', 'path inside the arbor')
    .action(async (dir: string, mode: string, path: string) => {
      if (!/^[0-7]{1,4}$/.test(mode))
        throw new InvalidInputError(`mode must be octal (e.g. 640), not '${mode}'`);
      await onPath(inner(path), () =>
        withWorkspace(dir, (ws) => writable(ws).chmod(inner(path), parseInt(mode, 8))),
      );
    });
}
