// Helpers shared by CLI commands: cache-size arguments, opening a workspace for one command, output.
import { DEFAULT_CHUNKING, minCacheBytes } from '../../chunks/index.js';
import { ArborError, InvalidInputError, ReadOnlyError } from '../../errors.js';
import { parseSize } from '../size.js';
import { DEFAULT_CACHE_BYTES, openWorkspace, type OpenOptions, type Workspace } from '../workspace.js';

/** `[max-local-MB]` positional (syncer style) or `--cache-size`; both given must agree. */
export function cacheBytesFrom(maxMb: string | undefined, cacheSize: string | undefined): number {
  let fromMb: number | undefined;
  if (maxMb !== undefined) {
    if (!/^\d+$/.test(maxMb) || Number(maxMb) <= 0) {
      throw new InvalidInputError(`max-local-MB must be a positive whole number of MB, not '${maxMb}'`);
    }
    fromMb = Number(maxMb) * 1024 * 1024;
  }
  const fromSize = cacheSize === undefined ? undefined : parseSize(cacheSize);
  if (fromMb !== undefined && fromSize !== undefined && fromMb !== fromSize) {
    throw new InvalidInputError('give the cache size once: either max-local-MB or --cache-size');
  }
  const bytes = fromMb ?? fromSize ?? DEFAULT_CACHE_BYTES;
  // The store refuses a cache that cannot hold two maximal chunks; say so here, before init or clone writes a
  // config that every later command would then fail to open.
  const min = minCacheBytes(DEFAULT_CHUNKING);
  if (bytes < min) {
    throw new InvalidInputError(
      `the cache must hold at least two maximal chunks: ${Math.ceil(min / (1024 * 1024))} MB or more, not ${bytes} bytes`,
    );
  }
  return bytes;
}

/** Open `dir`, run `fn`, always close (releasing the lock). */
export async function withWorkspace<T>(
  dir: string,
  fn: (ws: Workspace) => Promise<T>,
  opts: OpenOptions = {},
): Promise<T> {
  // Upload retries are a daemon's news; a one-shot command reports only its own outcome (one line on failure).
  const ws = await openWorkspace(dir, { logger: () => undefined, ...opts });
  try {
    return await fn(ws);
  } finally {
    await ws.close();
  }
}

export function out(line: string): void {
  process.stdout.write(line + '\n');
}

export function note(line: string): void {
  process.stderr.write(`arbor: ${line}\n`);
}

/** Mutating commands refuse a read-only replica: its changes could never be published. */
export function requireWritable(ws: Workspace): void {
  if (ws.readOnly)
    throw new ReadOnlyError(`${ws.dir} is a read-only replica; changes could never be published`);
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EINVAL: 'invalid argument',
  EBUSY: 'busy',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'name too long',
  EIO: 'input/output error',
};

/** Run a filesystem operation on `path`, turning a bare POSIX error into "path: what went wrong". */
export async function onPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ArborError && ERRNO_TEXT[err.code] !== undefined) {
      throw new ArborError(err.code, err.errno, `${path}: ${ERRNO_TEXT[err.code]}`, { cause: err });
    }
    throw err;
  }
}

/** A path inside the arbor as the commands take it: relative ones are from the root, nothing at all is the root. */
export function innerPath(path: string | undefined): string {
  if (path === undefined || path === '' || path === '/') return '/';
  return path.startsWith('/') ? path : '/' + path;
}
