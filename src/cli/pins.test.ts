// Path pins on a real workspace (CachedChunkStore over a dir remote, a small cache): a pinned directory stays local
// through evictions, follows renames, new files, local and remote versions (old chunks unpinned), survives reopen,
// serves reads with the remote gone; unpin makes it evictable; ENOSPC and a missing path are one-line CLI errors; the
// commands and status work through a running mount.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path, { join } from 'node:path';
import { describe, it } from 'node:test';
import { Arbor } from '../index.js';
import { Replicator } from '../sync/replicator.js';
import { tempDirs } from '../testing/temp-dirs.js';
import { isMounted, unmount } from '../fuse/mount.js';
import { mountSkip } from '../vfs/testing/mounts.js';
import { runCli, runCliOk } from './testing/run-cli.js';
import { cloneWorkspace, initWorkspace, openWorkspace, paths, type Workspace } from './workspace.js';

const tempDir = tempDirs();
const CHUNKING = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
/** Room for the pinned files and a little more: reading /other evicts. */
const SMALL_CACHE = 160 * 1024;
const quiet = { logger: () => undefined };

const KEEP: Record<string, number> = { '/keep/a': 20_000, '/keep/b': 20_000, '/keep/sub/c': 10_000 };
const OTHER = ['/other/o0', '/other/o1', '/other/o2', '/other/o3', '/other/o4'];

interface Setup {
  t: string;
  remote: string;
  a: Workspace;
  /** A replica with an empty, small cache, filled from the remote. */
  b: Workspace;
  data: Map<string, Buffer>;
}

/** A writes /keep and /other and publishes; B is cloned with a small cache and pulls the tree (no chunks yet). */
async function setup(): Promise<Setup> {
  const t = await tempDir('arbor-pins-');
  const remote = join(t, 'remote');
  const a = await initWorkspace(join(t, 'a'), remote, { cacheBytes: 64 << 20, chunking: CHUNKING });
  const fa = new Arbor(a.tree);
  const data = new Map<string, Buffer>();
  await fa.mkdir('/keep/sub', { recursive: true });
  await fa.mkdir('/other');
  for (const [p, n] of Object.entries(KEEP)) data.set(p, randomBytes(n));
  for (const p of OTHER) data.set(p, randomBytes(40_000));
  for (const [p, d] of data) await fa.writeFile(p, d);
  await new Replicator(a).sync();
  const b = await cloneWorkspace(join(t, 'b'), remote, {
    keyFile: paths(a.dir).key,
    cacheBytes: SMALL_CACHE,
  });
  await new Replicator(b).pull();
  return { t, remote, a, b, data };
}

const chunksOf = (ws: Workspace, p: string): string[] =>
  (ws.tree.contentOf(new Arbor(ws.tree).resolve(p))?.chunks ?? []).map((c) => c.id);

function resident(ws: Workspace, id: string): boolean {
  const r = ws.db.prepare('SELECT resident FROM chunk_cache WHERE id = ?').get(id) as
    { resident: number } | undefined;
  return r?.resident === 1;
}

function pinCount(ws: Workspace, id: string): number {
  const r = ws.db.prepare('SELECT count FROM chunk_pins WHERE id = ?').get(id) as
    { count: number } | undefined;
  return r?.count ?? 0;
}

/** The store's pins and the path pins' record agree: exactly the recorded chunks, each counted once. */
function consistent(ws: Workspace): number {
  const held = ws.db.prepare('SELECT id FROM path_pin_chunks').all() as { id: string }[];
  const pins = ws.db.prepare('SELECT id, count FROM chunk_pins').all() as { id: string; count: number }[];
  assert.deepEqual(
    pins.map((p) => [p.id, p.count]).sort(),
    held.map((h) => [h.id, 1]).sort(),
    'chunk_pins = path_pin_chunks',
  );
  return held.length;
}

async function readAll(ws: Workspace, ps: readonly string[]): Promise<void> {
  const f = new Arbor(ws.tree);
  for (const p of ps) await f.readFile(p);
}

async function eventually(what: string, check: () => void, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() - t0 > ms) throw new Error(`${what}: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('path pins', () => {
  it('keep a directory local through evictions, follow renames, new files and versions; persist; unpin', async () => {
    const { a, b, data } = await setup();
    const fb = new Arbor(b.tree);
    const keepChunks = Object.keys(KEEP).flatMap((p) => chunksOf(b, p));
    assert.ok(keepChunks.length >= 6 && keepChunks.every((id) => !resident(b, id)), 'nothing local yet');
    const pinned = await b.pins.pin(fb.resolve('/keep'));
    assert.deepEqual(
      { path: pinned.path, files: pinned.files, bytes: pinned.bytes },
      { path: '/keep', files: 3, bytes: 50_000 },
    );
    assert.ok(keepChunks.every((id) => resident(b, id) && pinCount(b, id) === 1));
    // Read far more than the cache holds besides: the unpinned chunks go, the pinned ones stay.
    await readAll(b, OTHER);
    assert.ok(!resident(b, chunksOf(b, OTHER[0]!)[0]!), 'reading /other evicted something');
    assert.ok(
      keepChunks.every((id) => resident(b, id)),
      'pinned chunks survive eviction',
    );

    // Rename the pinned directory, add a file, overwrite one: the pin follows, old content is released.
    const oldA = chunksOf(b, '/keep/a');
    await fb.rename('/keep', '/kept');
    const fresh = randomBytes(12_000);
    const newA = randomBytes(20_000);
    await fb.writeFile('/kept/new', fresh);
    await fb.writeFile('/kept/a', newA);
    const wantNew = [...chunksOf(b, '/kept/new'), ...chunksOf(b, '/kept/a')];
    await eventually('local changes are pinned', () => {
      assert.ok(wantNew.every((id) => pinCount(b, id) === 1));
      assert.ok(
        oldA.every((id) => pinCount(b, id) === 0),
        'the old version of a is unpinned',
      );
    });
    assert.deepEqual(
      b.pins.list().map((p) => [p.path, p.files]),
      [['/kept', 4]],
    );

    // A new version from another replica, pulled by sync: fetched and pinned, the old one released.
    const oldB = chunksOf(b, '/kept/b');
    const remoteB = randomBytes(20_000);
    await new Arbor(a.tree).writeFile('/keep/b', remoteB);
    await new Replicator(a).sync();
    await new Replicator(b).pull();
    const newB = chunksOf(b, '/kept/b');
    assert.notDeepEqual(newB, oldB);
    await eventually('the remote version is pinned and local', () => {
      assert.ok(newB.every((id) => pinCount(b, id) === 1 && resident(b, id)));
      assert.ok(oldB.every((id) => pinCount(b, id) === 0));
    });
    const n = consistent(b);

    // Pins survive reopen (and another round of evicting reads).
    await b.close();
    const b2 = await openWorkspace(b.dir, quiet);
    try {
      assert.deepEqual(
        b2.pins.list().map((p) => p.path),
        ['/kept'],
      );
      assert.equal(consistent(b2), n);
      await readAll(b2, OTHER);
      const f2 = new Arbor(b2.tree);
      assert.deepEqual(await f2.readFile('/kept/a'), newA);
      assert.deepEqual(await f2.readFile('/kept/new'), fresh);
      assert.deepEqual(await f2.readFile('/kept/b'), remoteB);
      assert.deepEqual(await f2.readFile('/kept/sub/c'), data.get('/keep/sub/c'));
      const all = ['/kept/a', '/kept/b', '/kept/new', '/kept/sub/c'].flatMap((p) => chunksOf(b2, p));
      assert.ok(all.every((id) => resident(b2, id)));

      // Unpin: nothing is pinned any more, and reading other data evicts the former pins.
      assert.equal(await b2.pins.unpin(f2.resolve('/kept')), true);
      assert.equal(await b2.pins.unpin(f2.resolve('/kept')), false);
      assert.equal(consistent(b2), 0);
      assert.deepEqual(b2.pins.list(), []);
      await readAll(b2, OTHER);
      assert.ok(
        all.some((id) => !resident(b2, id)),
        'unpinned chunks became evictable',
      );
    } finally {
      await b2.close();
      await a.close();
    }
  });

  it('a removed pinned path drops its pin; a pinned file follows its inode', async () => {
    const { a, b } = await setup();
    const fb = new Arbor(b.tree);
    await b.pins.pin(fb.resolve('/keep/sub/c'));
    await b.pins.pin(fb.resolve('/other/o1'));
    await fb.rename('/keep/sub/c', '/c-moved');
    await fb.rm('/other/o1');
    const r = await b.pins.reconcile();
    assert.equal(r.dropped, 1);
    assert.deepEqual(
      b.pins.list().map((p) => [p.path, p.files]),
      [['/c-moved', 1]],
    );
    assert.equal(consistent(b), chunksOf(b, '/c-moved').length);
    await b.close();
    await a.close();
  });

  it('pinned files read offline; an unpinned evicted file fails with a clear error', async () => {
    const { a, b, data } = await setup();
    await a.close();
    await b.pins.pin(new Arbor(b.tree).resolve('/keep'));
    await readAll(b, OTHER);
    await b.close();
    // The remote goes away (the dir remote's directory is gone): only the cache is left.
    const cfgPath = paths(b.dir).config;
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as { remote: string };
    fs.renameSync(cfg.remote, `${cfg.remote}.gone`);
    const off = await openWorkspace(b.dir, quiet);
    try {
      const f = new Arbor(off.tree);
      for (const p of Object.keys(KEEP)) assert.deepEqual(await f.readFile(p), data.get(p), p);
      await assert.rejects(f.readFile(OTHER[0]!), /missing on the remote/);
    } finally {
      await off.close();
    }
  });

  it('CLI: pin, status, unpin; a missing path and a cache too small are one-line errors', async () => {
    const { t: base, a, b } = await setup();
    await a.close();
    await b.close();
    const dir = b.dir;
    const one = (r: { code: number; stderr: string }, re: RegExp): void => {
      assert.notEqual(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, re);
    };
    one(await runCli('pin', dir, '/missing'), /^arbor: \/missing: no such file or directory$/m);
    one(await runCli('unpin', dir, '/keep'), /\/keep is not pinned/);
    const ok = await runCliOk('pin', dir, '/keep');
    assert.match(ok.stderr, /^arbor: pinned \/keep: 3 files, 48\.8 KiB local$/m);
    one(await runCli('unpin', dir, '/keep/a'), /\/keep\/a is not pinned \(it is inside pinned \/keep/);
    // /other (200 KB) cannot fit beside /keep in a 160 KiB cache: refused, nothing of it recorded.
    one(
      await runCli('pin', dir, '/other'),
      /^arbor: cannot pin \/other: the local cache \(limit 160\.0 KiB\) cannot hold all of it .*nothing was pinned$/m,
    );
    const st = JSON.parse((await runCliOk('status', dir, '--json')).stdout) as {
      pins: {
        paths: Array<{ path: string; files: number; bytes: number }>;
        bytes: number;
        localBytes: number;
      };
    };
    assert.deepEqual(st.pins.paths, [{ path: '/keep', files: 3, bytes: 50_000 }]);
    assert.equal(st.pins.bytes, 50_000);
    assert.equal(st.pins.localBytes, 50_000);
    assert.match((await runCliOk('status', dir)).stdout, /^pinned +1 path\(s\), 48\.8 KiB, all local$/m);
    // An unmounted put into the pinned directory pins the new file before the command exits.
    await writeFile(join(base, 'put.txt'), 'put into a pinned directory');
    await runCliOk('put', dir, join(base, 'put.txt'), '/keep/put.txt');
    const put = JSON.parse((await runCliOk('status', dir, '--json')).stdout) as typeof st;
    assert.deepEqual(put.pins.paths, [{ path: '/keep', files: 4, bytes: 50_027 }]);
    assert.equal(put.pins.localBytes, 50_027);
    const ws = await openWorkspace(dir, quiet);
    try {
      consistent(ws);
    } finally {
      await ws.close();
    }
    assert.match((await runCliOk('unpin', dir, '/keep')).stderr, /^arbor: unpinned \/keep$/m);
    const after = JSON.parse((await runCliOk('status', dir, '--json')).stdout) as { pins: { bytes: number } };
    assert.equal(after.pins.bytes, 0);
  });
});

describe('a put that cannot fit beside pinned chunks', () => {
  it('fails with one line and leaves no file behind (the last chunks are stored at close)', async () => {
    const t = await tempDir('arbor-pins-full-');
    const dir = join(t, 'ws');
    // The default chunker (chunks up to 4 MiB) in the smallest cache it allows, nearly all of it pinned.
    await runCliOk('init', dir, join(t, 'remote'), '9');
    await writeFile(join(t, 'big'), randomBytes(8_300_000));
    await runCliOk('put', dir, join(t, 'big'), '/big');
    await runCliOk('sync', dir);
    await runCliOk('pin', dir, '/big');
    await writeFile(join(t, 'new'), randomBytes(5_000_000));
    const r = await runCli('put', dir, join(t, 'new'), '/new');
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /full of pinned chunks \(unpin a path or raise the cache size\)/);
    assert.doesNotMatch((await runCliOk('ls', dir, '/')).stdout, /new/, 'the file the put created is gone');
  });
});

describe('path pins through a running mount', { skip: mountSkip }, () => {
  it('pin runs in the mount; a file written through the kernel into a pinned directory is pinned', async () => {
    const t = await tempDir('arbor-pins-mnt-');
    const dir = join(t, 'ws');
    const mnt = join(t, 'mnt');
    fs.mkdirSync(mnt);
    const ws = await initWorkspace(dir, join(t, 'remote'), { cacheBytes: 64 << 20, chunking: CHUNKING });
    await ws.close();
    await runCliOk('mount', dir, mnt);
    try {
      fs.mkdirSync(path.join(mnt, 'p'));
      await writeFile(path.join(mnt, 'p', 'one'), randomBytes(5000));
      assert.match((await runCliOk('pin', dir, '/p')).stderr, /pinned \/p: 1 file, 4\.9 KiB local/);
      await writeFile(path.join(mnt, 'p', 'two'), randomBytes(7000));
      let st: { pins: { paths: Array<{ files: number; bytes: number }>; localBytes: number } } | undefined;
      for (let i = 0; i < 100; i++) {
        st = JSON.parse((await runCliOk('status', dir, '--json')).stdout) as typeof st;
        if (st!.pins.paths[0]?.files === 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(st!.pins.paths, [{ path: '/p', files: 2, bytes: 12_000 }]);
      assert.equal(st!.pins.localBytes, 12_000);
      assert.match((await runCliOk('unpin', dir, '/p')).stderr, /unpinned \/p/);
    } finally {
      await runCli('unmount', mnt);
      if (isMounted(mnt)) await unmount(mnt, { lazy: true }).catch(() => undefined);
    }
  });
});
