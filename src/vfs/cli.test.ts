// `arbor mount` / `arbor unmount` as a user runs them: background start that returns once ready, clean stop with
// open handles flushed, a kill -9'd daemon's stale mount cleared, fsynced data intact, one-line errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted, unmount } from '../fuse/mount.js';
import { processAlive } from '../util/process.js';
import { readMountRecord } from './daemon.js';
import { CLI, mountSkip, tempArbor } from './testing/mounts.js';
import { ok, sh } from './testing/shell.js';

const arbor = (args: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  sh(`'${process.execPath}' '${CLI}' ${args}`);

const alive = processAlive;

const waitFor = async (cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
};

describe('arbor mount / unmount', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  const pids: number[] = [];
  before(async () => {
    t = await tempArbor('arbor-cli-mount-');
  });
  after(async () => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (t && isMounted(t.mnt)) await unmount(t.mnt, { lazy: true }).catch(() => undefined);
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('wrong arguments: one line on stderr and a non-zero exit', async () => {
    for (const args of [
      'mount',
      `mount '${t!.dir}'`,
      `mount '${t!.base}/not-arbor' '${t!.mnt}'`,
      `mount '${t!.dir}' '${t!.base}/no-such-mountpoint'`,
      `mount '${t!.dir}' '${t!.dir}/config.json'`,
      `unmount '${t!.mnt}'`,
    ]) {
      const r = await arbor(args);
      assert.notEqual(r.code, 0, `arbor ${args} should fail`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for arbor ${args}: ${r.stderr}`);
      assert.match(r.stderr, /^arbor: /);
    }
    assert.equal(isMounted(t!.mnt), false);
  });

  it('mounts in the background, ready when the command returns; unmount stops the daemon; data persists', async () => {
    await ok(`'${process.execPath}' '${CLI}' mount '${t!.dir}' '${t!.mnt}'`);
    assert.ok(isMounted(t!.mnt), 'mounted when mount returns');
    const rec = readMountRecord(t!.mnt);
    assert.ok(rec && alive(rec.pid), 'the daemon runs');
    pids.push(rec.pid);
    fs.writeFileSync(path.join(t!.mnt, 'hello.txt'), 'persisted');
    fs.mkdirSync(path.join(t!.mnt, 'dir'));
    const again = await arbor(`mount '${t!.dir}' '${t!.mnt}'`);
    assert.notEqual(again.code, 0, 'mounting twice fails');
    await ok(`'${process.execPath}' '${CLI}' unmount '${t!.mnt}'`);
    assert.equal(isMounted(t!.mnt), false);
    assert.equal(alive(rec.pid), false, 'the daemon exited');
    await ok(`'${process.execPath}' '${CLI}' mount '${t!.dir}' '${t!.mnt}'`);
    pids.push(readMountRecord(t!.mnt)!.pid);
    assert.equal(fs.readFileSync(path.join(t!.mnt, 'hello.txt'), 'utf8'), 'persisted');
    assert.ok(fs.statSync(path.join(t!.mnt, 'dir')).isDirectory());
    await ok(`'${process.execPath}' '${CLI}' unmount '${t!.mnt}'`);
    assert.equal(isMounted(t!.mnt), false);
  });

  it('--foreground: SIGTERM unmounts and records what an open handle wrote', async () => {
    const d = spawn(process.execPath, [CLI, 'mount', t!.dir, t!.mnt, '--foreground'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    pids.push(d.pid!);
    let err = '';
    d.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const exited = new Promise<number | null>((r) => d.on('exit', (code) => r(code)));
    assert.ok(await waitFor(() => err.includes('mounted')), `foreground mount did not come up: ${err}`);
    assert.ok(isMounted(t!.mnt));
    // A process keeps a file open with data written but never closed.
    const holder = spawn(
      'bash',
      ['-c', `exec 3>'${t!.mnt}/open.txt'; printf 'unflushed data' >&3; sleep 60`],
      { stdio: 'ignore' },
    );
    pids.push(holder.pid!);
    assert.ok(
      await waitFor(() => {
        try {
          return fs.statSync(path.join(t!.mnt, 'open.txt')).size === 14;
        } catch {
          return false;
        }
      }),
    );
    d.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    holder.kill('SIGKILL');
    assert.equal(isMounted(t!.mnt), false);
    await ok(`'${process.execPath}' '${CLI}' mount '${t!.dir}' '${t!.mnt}'`);
    pids.push(readMountRecord(t!.mnt)!.pid);
    assert.equal(fs.readFileSync(path.join(t!.mnt, 'open.txt'), 'utf8'), 'unflushed data');
    await ok(`'${process.execPath}' '${CLI}' unmount '${t!.mnt}'`);
  });

  it('kill -9 of the daemon: arbor unmount clears the stale mount; fsynced data survives the remount', async () => {
    await ok(`'${process.execPath}' '${CLI}' mount '${t!.dir}' '${t!.mnt}'`);
    const rec = readMountRecord(t!.mnt)!;
    pids.push(rec.pid);
    await ok(
      `python3 -c "
import os
fd = os.open('${t!.mnt}/synced.bin', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'fsynced ' * 100000)
os.fsync(fd)
os.close(fd)
os.mkdir('${t!.mnt}/synced-dir')
fd = os.open('${t!.mnt}', os.O_RDONLY); os.fsync(fd); os.close(fd)
"`,
    );
    process.kill(rec.pid, 'SIGKILL');
    assert.ok(await waitFor(() => !alive(rec.pid)));
    assert.ok(isMounted(t!.mnt), 'the crashed daemon left its mount behind');
    const stale = await sh(`ls '${t!.mnt}'`);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /Transport endpoint is not connected/);
    await ok(`'${process.execPath}' '${CLI}' unmount '${t!.mnt}'`);
    assert.equal(isMounted(t!.mnt), false);
    await ok(`'${process.execPath}' '${CLI}' mount '${t!.dir}' '${t!.mnt}'`);
    pids.push(readMountRecord(t!.mnt)!.pid);
    assert.equal(fs.readFileSync(path.join(t!.mnt, 'synced.bin'), 'utf8'), 'fsynced '.repeat(100000));
    assert.ok(fs.statSync(path.join(t!.mnt, 'synced-dir')).isDirectory());
    assert.equal(fs.readFileSync(path.join(t!.mnt, 'hello.txt'), 'utf8'), 'persisted');
    await ok(`'${process.execPath}' '${CLI}' unmount '${t!.mnt}'`);
  });
});
