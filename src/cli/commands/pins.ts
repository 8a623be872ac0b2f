// `arbor pin <dir> <path>` and `arbor unpin <dir> <path>`: keep a file or directory tree fully local (offline use),
// run here or inside the mount that owns the directory (src/cli/run.ts). The pins themselves: src/tree/pins.ts.
import type { Command } from 'commander';
import { ArborError, Errno, InvalidInputError } from '../../errors.js';
import { Arbor } from '../../index.js';
import type { PinProgress } from '../../tree/pins.js';
import { formatBytes } from '../size.js';
import { defineCommand, runOnWorkspace, type CommandIO } from '../run.js';
import { innerPath, onPath } from './common.js';

/** While a pin fetches, a progress line this often (none at all when it is done sooner). */
const PROGRESS_MS = 2000;

function progressLines(path: string, io: CommandIO): (p: PinProgress) => void {
  const start = Date.now();
  let last = start;
  return (p) => {
    const now = Date.now();
    if (now - last < PROGRESS_MS || p.doneChunks === p.totalChunks) return;
    last = now;
    io.note(
      `pinning ${path}: ${p.doneChunks}/${p.totalChunks} chunks, ${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}`,
    );
  };
}

defineCommand('pin', async (ws, args, io) => {
  const path = innerPath(String(args.path));
  const node = new Arbor(ws.tree).resolve(path);
  let p;
  try {
    p = await ws.pins.pin(node, progressLines(path, io));
  } catch (err) {
    if (err instanceof ArborError && err.code === 'ENOSPC') {
      throw new ArborError(
        'ENOSPC',
        Errno.ENOSPC,
        `cannot pin ${path}: the local cache (limit ${formatBytes(ws.config.cacheBytes)}) cannot hold all of it ` +
          'beside the chunks already pinned or waiting for upload; nothing was pinned',
        { cause: err },
      );
    }
    throw err;
  }
  io.note(`pinned ${p.path}: ${p.files} file${p.files === 1 ? '' : 's'}, ${formatBytes(p.bytes)} local`);
});

defineCommand('unpin', async (ws, args, io) => {
  const path = innerPath(String(args.path));
  const node = new Arbor(ws.tree).resolve(path);
  if (!(await ws.pins.unpin(node))) {
    const outer = ws.pins.list().find((p) => path.startsWith(p.path === '/' ? '/' : p.path + '/'));
    throw new InvalidInputError(
      `${path} is not pinned` + (outer ? ` (it is inside pinned ${outer.path}: unpin that)` : ''),
    );
  }
  io.note(`unpinned ${path}`);
});

export function registerPins(program: Command): void {
  program
    .command('pin')
    .description(
      'keep a file or directory (recursively) fully local for offline use; follows renames, new files and new versions',
    )
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file or directory inside the arbor')
    .action((dir: string, path: string) =>
      onPath(innerPath(path), () => runOnWorkspace(dir, 'pin', { path })),
    );

  program
    .command('unpin')
    .description(
      'stop keeping a pinned path local (its chunks become evictable unless another pin needs them)',
    )
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'a path given to arbor pin')
    .action((dir: string, path: string) =>
      onPath(innerPath(path), () => runOnWorkspace(dir, 'unpin', { path })),
    );
}
