// The CLI on an arbor directory, unmounted and while `arbor mount` owns it: `restore --at <time>` brings back removed
// files and directory trees (to their path or --to), with one-line errors when nothing was there; ls, cat, get, log,
// status and fsck work during a mount (through its command socket); put, mkdir, mv, rm, ln, chmod and restore run
// inside the mount and show through it at once; gc is refused naming the mountpoint.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted, unmount } from '../fuse/mount.js';
import { CLI, mountSkip, tempArbor } from '../vfs/testing/mounts.js';
import { sh } from '../vfs/testing/shell.js';

const arbor = (args: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  sh(`'${process.execPath}' '${CLI}' ${args}`);

async function ok(args: string): Promise<string> {
  const r = await arbor(args);
  assert.equal(r.code, 0, `arbor ${args} failed: ${r.stderr}`);
  return r.stdout;
}

/** A failing command: non-zero exit, one line on stderr matching `re`. */
async function fails(args: string, re: RegExp): Promise<void> {
  const r = await arbor(args);
  assert.notEqual(r.code, 0, `arbor ${args} should fail`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, re);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Make a tree, note the time, then change and remove it; returns that time. */
async function history(dir: string, local: string): Promise<string> {
  const file = (name: string, body: string): string => {
    const p = path.join(local, name);
    fs.writeFileSync(p, body);
    return p;
  };
  await ok(`mkdir '${dir}' /docs/sub`);
  await ok(`put '${dir}' '${file('a', 'A1')}' /docs/a.txt`);
  await ok(`put '${dir}' '${file('b', 'B1')}' /docs/sub/b.txt`);
  await ok(`ln '${dir}' -s a.txt /docs/link`);
  await ok(`put '${dir}' '${file('s', 'S1')}' /single.txt`);
  await ok(`chmod '${dir}' 640 /single.txt`);
  await sleep(50);
  const at = new Date().toISOString();
  await sleep(50);
  await ok(`put '${dir}' '${file('s2', 'S2 newer')}' /single.txt`);
  await ok(`put '${dir}' '${file('b2', 'B2 newer')}' /docs/sub/b.txt`);
  await ok(`rm '${dir}' /single.txt`);
  await ok(`rm '${dir}' -r /docs`);
  return at;
}

describe('arbor init and clone refuse a cache too small to work', () => {
  it('a cache under two maximal chunks is one line and writes nothing', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-cli-small-'));
    try {
      const dir = path.join(base, 'ws');
      await fails(
        `init '${dir}' '${path.join(base, 'remote')}' 8`,
        /at least two maximal chunks: 9 MB or more/,
      );
      assert.equal(
        fs.existsSync(path.join(dir, 'config.json')),
        false,
        'no config that later commands would refuse',
      );
      await fails(
        `init '${dir}' '${path.join(base, 'remote')}' --cache-size 1MiB`,
        /at least two maximal chunks: 9 MB or more/,
      );
      await ok(`init '${dir}' '${path.join(base, 'remote')}' 9`);
      assert.match(await ok(`status '${dir}'`), /of 9\.0 MiB/);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('arbor restore of removed paths (not mounted)', () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  before(async () => {
    t = await tempArbor('arbor-cli-restore-');
  });
  after(() => {
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('brings back a removed file and a removed directory tree as they were, to their path or --to', async () => {
    const { dir, base } = t!;
    const at = await history(dir, base);
    assert.equal((await ok(`ls '${dir}'`)).trim(), '');
    await ok(`restore '${dir}' /single.txt --at ${at}`);
    assert.equal(await ok(`cat '${dir}' /single.txt`), 'S1');
    assert.match(await ok(`ls '${dir}' -l /single.txt`), /^-rw-r-----/);
    await ok(`restore '${dir}' /docs --at ${at}`);
    assert.equal(await ok(`cat '${dir}' /docs/a.txt`), 'A1');
    assert.equal(
      await ok(`cat '${dir}' /docs/sub/b.txt`),
      'B1',
      'the version current then, not the last one',
    );
    assert.match(await ok(`ls '${dir}' -l /docs`), /link -> a\.txt/);
    await ok(`restore '${dir}' /docs/sub --at ${at} --to /elsewhere`);
    assert.equal(await ok(`cat '${dir}' /elsewhere/b.txt`), 'B1');
    // Restoring again over what is back changes nothing; an existing file gets its old content back as a new version.
    fs.writeFileSync(path.join(base, 'x'), 'edited');
    await ok(`put '${dir}' '${path.join(base, 'x')}' /docs/a.txt`);
    await ok(`restore '${dir}' /docs/a.txt --at ${new Date().toISOString()} --to /a-now`);
    assert.equal(await ok(`cat '${dir}' /a-now`), 'edited');
    await ok(`restore '${dir}' /a-now --at 1`);
    // Version numbers still work for existing files.
    await ok(`restore '${dir}' /docs/a.txt --at 1`);
    assert.equal(await ok(`cat '${dir}' /docs/a.txt`), 'A1');
    await fails(`restore '${dir}' /never --at ${at}`, /nothing was at \/never at /);
    await fails(`restore '${dir}' /docs --at 2001-01-01T00:00:00Z`, /nothing was at \/docs at 2001/);
    await fails(`restore '${dir}' /docs/a.txt --at ${at} --to /single.txt`, /\/single\.txt exists now/);
    await fails(`restore '${dir}' /docs/a.txt --at ${at} --to /no/such/dir`, /\/no\/such does not exist now/);
    await fails(`restore '${dir}' /gone --at 3`, /does not exist now: give --at a time/);
    await fails(
      `restore '${dir}' /docs --at yesterday`,
      /--at takes a version id, a version number or a time/,
    );
    const fsck = await arbor(`fsck '${dir}'`);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
  });
});

describe('CLI commands while a mount owns the directory', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  before(async () => {
    t = await tempArbor('arbor-cli-mounted-');
    await ok(`mount '${t.dir}' '${t.mnt}'`);
  });
  after(async () => {
    if (t && isMounted(t.mnt)) {
      await arbor(`unmount '${t.mnt}'`);
      if (isMounted(t.mnt)) await unmount(t.mnt, { lazy: true }).catch(() => undefined);
    }
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });

  it('read-only commands answer through the mount; mutating ones run in it and show through it', async () => {
    const { dir, mnt, base } = t!;
    const m = (p: string): string => path.join(mnt, p);
    fs.mkdirSync(m('d'));
    fs.writeFileSync(m('d/f.txt'), 'through the mount');
    fs.writeFileSync(m('d/f.txt'), 'second version');
    // Read-only commands.
    assert.deepEqual((await ok(`ls '${dir}' /d`)).trim().split('\n'), ['f.txt']);
    assert.match(await ok(`ls '${dir}' -l /d`), /^-rw-r--r-- 1 +14 f\.txt$/m);
    assert.equal(await ok(`cat '${dir}' /d/f.txt`), 'second version');
    assert.equal(await ok(`get '${dir}' /d/f.txt`), 'second version');
    await ok(`get '${dir}' /d '${path.join(base, 'out')}'`);
    assert.equal(fs.readFileSync(path.join(base, 'out', 'f.txt'), 'utf8'), 'second version');
    const log = JSON.parse(await ok(`log '${dir}' /d/f.txt --json`)) as Array<{ size: number }>;
    assert.ok(log.length >= 2, JSON.stringify(log));
    assert.equal(log[log.length - 1]!.size, 14);
    const st = JSON.parse(await ok(`status '${dir}' --json`)) as { mountedBy: number | null };
    assert.ok(st.mountedBy !== null);
    const fsck = await arbor(`fsck '${dir}'`);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    assert.match(fsck.stderr, /fsck: \d+ files/);
    await fails(`cat '${dir}' /d/missing`, /\/d\/missing: no such file or directory/);
    // Mutating commands run inside the mount; the kernel sees their results at once.
    fs.writeFileSync(path.join(base, 'local.txt'), 'put while mounted');
    await ok(`put '${dir}' '${path.join(base, 'local.txt')}' /d/put.txt`);
    assert.equal(fs.readFileSync(m('d/put.txt'), 'utf8'), 'put while mounted');
    const r = await sh(`echo -n piped | '${process.execPath}' '${CLI}' put '${dir}' - /stdin.txt`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(m('stdin.txt'), 'utf8'), 'piped');
    await ok(`mkdir '${dir}' /e/f`);
    assert.ok(fs.statSync(m('e/f')).isDirectory());
    await ok(`mv '${dir}' /d/put.txt /e/moved.txt`);
    assert.equal(fs.existsSync(m('d/put.txt')), false);
    assert.equal(fs.readFileSync(m('e/moved.txt'), 'utf8'), 'put while mounted');
    await ok(`chmod '${dir}' 600 /e/moved.txt`);
    assert.equal(fs.statSync(m('e/moved.txt')).mode & 0o777, 0o600);
    await ok(`ln '${dir}' /e/moved.txt /e/hard.txt`);
    assert.equal(fs.statSync(m('e/moved.txt')).nlink, 2);
    await ok(`rm '${dir}' /e/hard.txt`);
    assert.equal(fs.existsSync(m('e/hard.txt')), false);
    // Removed through the kernel, restored by the CLI while mounted.
    await sleep(50);
    const at = new Date().toISOString();
    await sleep(50);
    fs.rmSync(m('d'), { recursive: true });
    assert.equal(fs.existsSync(m('d')), false);
    await ok(`restore '${dir}' /d --at ${at}`);
    assert.equal(fs.readFileSync(m('d/f.txt'), 'utf8'), 'second version');
    await fails(`restore '${dir}' /nothing --at ${at}`, /nothing was at \/nothing/);
    // gc must not share a process with the mount's sync loop: refused, naming the mountpoint.
    await fails(
      `gc '${dir}'`,
      new RegExp(`mounted on ${mnt.replace(/[/.]/g, '\\$&')}; unmount it to run gc`),
    );
  });
});
