// Non-root mounting through fusermount3: it opens /dev/fuse, mounts, and hands the descriptor back
// over a unix socket (SCM_RIGHTS), received by the native/fdpass addon. Knows nothing of the protocol.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fsError } from '../errors.js';
import { findAddon, requireAddon } from '../native.js';

interface FdPass {
  socketpair(): [number, number];
  recvFd(sock: number): number;
}

let addon: FdPass | undefined;

/** Load native/build/Release/fdpass.node (built by `npm ci` through native/build.mjs). */
export function loadFdPass(): FdPass {
  if (addon) return addon;
  const file = findAddon('build/Release/fdpass.node');
  if (file !== undefined) return (addon = requireAddon<FdPass>(file));
  throw fsError(
    'ENOSYS',
    'native/fdpass.node is not built (run `node native/build.mjs`): non-root FUSE mounts need it to receive /dev/fuse from fusermount3',
  );
}

/**
 * Run `fusermount3 -o <options> -- <mountpoint>` and return the /dev/fuse descriptor it mounted.
 * fusermount3 exits right after sending it, so the descriptor is waiting when we receive.
 */
export async function fusermountFd(mountpoint: string, options: string): Promise<number> {
  const { socketpair, recvFd } = loadFdPass();
  const [ours, theirs] = socketpair();
  try {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('fusermount3', ['-o', options, '--', mountpoint], {
        stdio: ['ignore', 'ignore', 'pipe', theirs],
        env: { ...process.env, _FUSE_COMMFD: '3' },
      });
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.on('error', (e) => resolve({ code: -1, stderr: String(e) }));
      child.on('close', (c) => resolve({ code: c, stderr: err.trim() }));
    });
    if (code !== 0) throw fsError('EPERM', `fusermount3 failed (${code}): ${stderr}`);
    return recvFd(ours);
  } finally {
    fs.closeSync(ours);
    fs.closeSync(theirs);
  }
}
