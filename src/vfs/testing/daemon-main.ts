// Test daemon: serves an arbor directory like `arbor mount --foreground`, plus an IPC channel through which tests read
// internal counts and play a second replica whose changes arrive as remote batches. Test-only.
// Usage: UV_THREADPOOL_SIZE=16 node daemon-main.js <dir> <mountpoint> [--read-only] [--allow-other] [--ttl=N]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openWorkspace, paths, type Workspace } from '../../cli/workspace.js';
import { FileTree } from '../../tree/filetree.js';
import { ROOT } from '../../tree/types.js';
import { exitWhenClosed, MOUNT_GROUP_COMMIT_MS, startMount, stopOnSignals } from '../daemon.js';

interface Msg {
  id: number;
  cmd: 'inodes' | 'handles' | 'remoteWrite' | 'remoteRename' | 'remoteUnlink' | 'flushUploads' | 'stop';
  path?: string;
  to?: string;
  data?: string;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const [dir, mnt] = args.filter((a) => !a.startsWith('--'));
  if (!dir || !mnt) throw new Error('usage: daemon-main <dir> <mountpoint>');
  const ttlArg = args.find((a) => a.startsWith('--ttl='))?.slice(6);
  let ws: Workspace | undefined;
  const m = await startMount({
    dir,
    mountpoint: mnt,
    readOnly: args.includes('--read-only'),
    allowOther: args.includes('--allow-other'),
    ...(ttlArg !== undefined ? { ttl: Number(ttlArg) } : {}),
    open: async (d, readOnly) => {
      ws = await openWorkspace(d, {
        groupCommitMs: MOUNT_GROUP_COMMIT_MS,
        ...(readOnly ? { readOnly: true } : {}),
      });
      const w = ws;
      return { dir: w.dir, tree: w.tree, statePath: paths(w.dir).state, close: () => w.close() };
    },
    onError: (err) => process.stderr.write(`daemon: ${String(err)}\n`),
  });
  stopOnSignals(m);
  const a = m.ws.tree;

  // Replica B shares the chunk store (so its chunks are readable here) and exchanges op batches with A directly.
  let b: FileTree | undefined;
  let bDir = '';
  let aSent = 0;
  let bSent = 0;
  const replicaB = (): FileTree => {
    if (b === undefined) {
      bDir = mkdtempSync(path.join(os.tmpdir(), 'arbor-replica-b-'));
      b = new FileTree({ store: ws!.store, dbPath: path.join(bDir, 'state.sqlite3'), replica: 'bbbbbbbb' });
    }
    for (const batch of a.localOpsSince(aSent)) {
      b.applyRemote(batch);
      aSent = batch.seq;
    }
    return b;
  };
  const deliver = async (): Promise<void> => {
    for (const batch of b!.localOpsSince(bSent)) {
      await m.fs.invalidate(a.applyRemote(batch));
      bSent = batch.seq;
    }
  };
  const resolve = (t: FileTree, p: string): { dir: string; name: string } => {
    const parts = p.split('/').filter(Boolean);
    let d = ROOT;
    for (const part of parts.slice(0, -1)) d = t.lookupId(d, part);
    return { dir: d, name: parts[parts.length - 1]! };
  };

  process.on('message', (raw) => {
    const msg = raw as Msg;
    const answer = async (): Promise<unknown> => {
      switch (msg.cmd) {
        case 'inodes':
          return m.fs.inodes.size;
        case 'handles':
          return m.fs.openHandles;
        case 'remoteWrite': {
          const t = replicaB();
          const { dir: d, name } = resolve(t, msg.path!);
          let fh: number;
          try {
            fh = await t.openNode(t.lookupId(d, name), { write: true, truncate: true });
          } catch {
            fh = t.create(d, name, 0o644, { write: true }).fh;
          }
          await t.write(fh, 0, Buffer.from(msg.data!, 'base64'));
          await t.release(fh);
          await deliver();
          return true;
        }
        case 'remoteRename': {
          const t = replicaB();
          const from = resolve(t, msg.path!);
          const to = resolve(t, msg.to!);
          t.rename(from.dir, from.name, to.dir, to.name);
          await deliver();
          return true;
        }
        case 'remoteUnlink': {
          const t = replicaB();
          const { dir: d, name } = resolve(t, msg.path!);
          t.unlink(d, name);
          await deliver();
          return true;
        }
        case 'flushUploads':
          await ws!.store.flushUploads();
          return true;
        case 'stop':
          await m.stop();
          return true;
      }
    };
    answer().then(
      (result) => process.send?.({ id: msg.id, result }),
      (err: unknown) => process.send?.({ id: msg.id, error: String(err) }),
    );
  });
  process.send?.({ ready: true });
  await m.done;
  b?.close();
  if (bDir) rmSync(bDir, { recursive: true, force: true });
  process.disconnect?.();
  await exitWhenClosed(m, 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`daemon: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
