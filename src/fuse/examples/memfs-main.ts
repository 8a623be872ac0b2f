// Runs MemFs as a FUSE daemon: `UV_THREADPOOL_SIZE=16 node memfs-main.js <mountpoint> [--writeback]`.
// With an IPC channel (tests), it answers control messages that change the tree behind the kernel's back.
import { mount } from '../mount.js';
import { MemFs } from './memfs.js';

interface Msg {
  id: number;
  cmd:
    | 'known'
    | 'nodes'
    | 'setContent'
    | 'renameBehind'
    | 'deleteBehind'
    | 'invalInode'
    | 'invalEntry'
    | 'unmount';
  path?: string;
  data?: string;
  from?: string;
  to?: string;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const mnt = args.find((a) => !a.startsWith('--'));
  if (!mnt) {
    process.stderr.write('usage: memfs-main <mountpoint> [--writeback] [--ro] [--fusermount]\n');
    process.exit(2);
  }
  const memfs = new MemFs({ keepCache: args.includes('--keep-cache') });
  const m = await mount(mnt, memfs, {
    fsname: 'memfs',
    subtype: 'memfs',
    writebackCache: args.includes('--writeback'),
    readOnly: args.includes('--ro'),
    useFusermount: args.includes('--fusermount'),
    defaultPermissions: args.includes('--default-permissions'),
    allowOther: args.includes('--allow-other'),
    entryTimeout: Number(args.find((a) => a.startsWith('--ttl='))?.slice(6) ?? 1),
    attrTimeout: Number(args.find((a) => a.startsWith('--ttl='))?.slice(6) ?? 1),
    reads: Number(args.find((a) => a.startsWith('--reads='))?.slice(8) ?? 4),
    onError: (err) => process.stderr.write(`memfs: ${String(err)}\n`),
  });
  // The IPC channel closes only once the mount is gone and every command has been answered.
  let busy = 0;
  let closed = false;
  const maybeDisconnect = (): void => {
    if (closed && busy === 0 && process.connected) process.disconnect();
  };
  const send = (v: unknown): void => {
    if (!process.send || !process.connected) return;
    busy++;
    process.send(v, undefined, undefined, () => {
      busy--;
      maybeDisconnect();
    });
  };
  process.on('message', (raw) => {
    const msg = raw as Msg;
    const answer = async (): Promise<unknown> => {
      switch (msg.cmd) {
        case 'known':
          return memfs.knownNodes();
        case 'nodes':
          return memfs.nodeCount();
        case 'setContent': {
          const ino = memfs.resolve(msg.path!);
          if (ino === undefined) throw new Error(`no ${msg.path}`);
          memfs.setContent(ino, Buffer.from(msg.data!, 'base64'));
          return true;
        }
        case 'invalInode': {
          const ino = memfs.resolve(msg.path!);
          if (ino === undefined) throw new Error(`no ${msg.path}`);
          return m.notifyInvalInode(ino, 0, 0);
        }
        case 'renameBehind': {
          const dir = memfs.resolve(msg.path!);
          if (dir === undefined) throw new Error(`no ${msg.path}`);
          memfs.renameBehind(dir, msg.from!, msg.to!);
          return true;
        }
        case 'deleteBehind': {
          // Delete a name elsewhere and tell the kernel with notify_delete.
          const dir = memfs.resolve(msg.path!);
          if (dir === undefined) throw new Error(`no ${msg.path}`);
          const child = memfs.unlinkBehind(dir, msg.from!);
          return m.notifyDelete(dir, child, msg.from!);
        }
        case 'invalEntry': {
          const dir = memfs.resolve(msg.path!);
          if (dir === undefined) throw new Error(`no ${msg.path}`);
          return m.notifyInvalEntry(dir, msg.from!);
        }
        case 'unmount':
          await m.unmount();
          return true;
      }
    };
    busy++;
    answer()
      .finally(() => busy--)
      .then(
        (result) => send({ id: msg.id, result }),
        (err: unknown) => send({ id: msg.id, error: String(err) }),
      );
  });
  // A parent that dies (IPC channel gone) takes the mount with it.
  process.on('disconnect', () => {
    if (!closed) void m.unmount({ lazy: true, abortAfterMs: 1000 }).catch(() => process.exit(1));
  });
  send({ ready: true, conn: m.connection });
  if (!process.send) process.stdout.write(`mounted memfs on ${m.mountpoint}\n`);
  await m.closed;
  closed = true;
  maybeDisconnect();
}

main().catch((err: unknown) => {
  process.stderr.write(`memfs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
