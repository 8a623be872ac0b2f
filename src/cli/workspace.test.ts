// The arbor directory: init/clone layout, key file and passphrase secrets, wrong keys, the process lock, offline open.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { WrongKeyError } from '../errors.js';
import { FsCrypto } from '../chunks/crypto.js';
import { readKeyFile } from '../chunks/keys.js';
import { parseDuration, parseSize } from './size.js';
import {
  WorkspaceLockedError,
  cloneWorkspace,
  initWorkspace,
  lockOwner,
  openWorkspace,
  paths,
} from './workspace.js';
import { tempDirs } from '../testing/temp-dirs.js';

const tempDir = tempDirs();
const tmp = (): Promise<string> => tempDir('arbor-ws-');
const cacheBytes = 64 << 20;
const scrypt = { N: 1 << 10, r: 8, p: 1 };

describe('workspace', () => {
  it('init writes the §6 layout, a 0600 key file and arbor.json on the remote; a second init is refused', async () => {
    const t = await tmp();
    const ws = await initWorkspace(join(t, 'a'), join(t, 'remote'), { cacheBytes });
    const dir = ws.dir;
    assert.equal(ws.config.cacheBytes, cacheBytes);
    assert.match(ws.replicaId, /^[0-9a-f]{12}$/);
    await ws.close();
    assert.equal((await stat(paths(dir).key)).mode & 0o777, 0o600);
    for (const f of ['config.json', 'state.sqlite3', 'cache', 'arbor.json']) await stat(join(dir, f));
    const remoteJson = JSON.parse(await readFile(join(t, 'remote', 'arbor.json'), 'utf8')) as {
      key: { mode: string };
    };
    assert.equal(remoteJson.key.mode, 'keyfile');
    await assert.rejects(
      initWorkspace(join(t, 'b'), join(t, 'remote')),
      /already holds an arbor filesystem; use arbor clone/,
    );
    await assert.rejects(initWorkspace(dir, join(t, 'remote2')), /already an arbor directory/);
  });

  it('chunk ids follow arbor.json: BLAKE3 for a new filesystem, HMAC-SHA-256 kept for a formatVersion 1 one', async () => {
    const t = await tmp();
    const data = Buffer.from('the same bytes on every replica '.repeat(100));
    for (const chunkId of ['blake3', 'hmac-sha256'] as const) {
      const remote = join(t, `r-${chunkId}`);
      const a = await initWorkspace(join(t, `a-${chunkId}`), remote, {
        cacheBytes,
        ...(chunkId === 'hmac-sha256' ? { chunkId } : {}),
      });
      const json = JSON.parse(await readFile(join(remote, 'arbor.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(json.formatVersion, chunkId === 'blake3' ? 2 : 1);
      assert.equal(json.chunkId, chunkId === 'blake3' ? 'blake3' : undefined);
      assert.equal(a.arborJson.chunkId, chunkId);
      const secret = await readKeyFile(paths(a.dir).key);
      const ref = await a.store.put(data);
      assert.equal(ref.id, new FsCrypto(secret, chunkId).chunkId(data));
      await a.store.flushUploads();
      await a.close();
      // Another replica reads arbor.json, so it computes (and verifies) ids the same way.
      const b = await cloneWorkspace(join(t, `b-${chunkId}`), remote, {
        keyFile: paths(a.dir).key,
        cacheBytes,
      });
      assert.deepEqual(Buffer.from(await b.store.get(ref)), data);
      assert.equal((await b.store.put(data)).id, ref.id);
      await b.close();
    }
  });

  it('clone needs the right key; a passphrase filesystem opens with its passphrase only', async () => {
    const t = await tmp();
    const a = await initWorkspace(join(t, 'a'), join(t, 'r1'), { cacheBytes });
    await a.close();
    await assert.rejects(cloneWorkspace(join(t, 'nokey'), join(t, 'r1')), /pass --key-file/);
    const other = await initWorkspace(join(t, 'o'), join(t, 'r2'), { cacheBytes });
    await other.close();
    await assert.rejects(
      cloneWorkspace(join(t, 'wrong'), join(t, 'r1'), { keyFile: paths(other.dir).key }),
      WrongKeyError,
    );
    const b = await cloneWorkspace(join(t, 'b'), join(t, 'r1'), { keyFile: paths(a.dir).key, cacheBytes });
    assert.notEqual(b.replicaId, a.replicaId);
    await b.close();

    const pass = join(t, 'pass');
    await writeFile(pass, 'correct horse\n');
    const p = await initWorkspace(join(t, 'p'), join(t, 'r3'), { cacheBytes, passphraseFile: pass, scrypt });
    await p.close();
    await assert.rejects(stat(paths(p.dir).key), /ENOENT/);
    const bad = join(t, 'bad');
    await writeFile(bad, 'wrong horse\n');
    await assert.rejects(cloneWorkspace(join(t, 'q'), join(t, 'r3'), { passphraseFile: bad }), WrongKeyError);
    const q = await cloneWorkspace(join(t, 'q2'), join(t, 'r3'), { passphraseFile: pass, cacheBytes });
    await q.close();
    await assert.rejects(openWorkspace(p.dir, { passphraseFile: bad }), WrongKeyError);
    await (await openWorkspace(p.dir)).close();
  });

  it('one process at a time: a live owner is refused, a dead owner’s lock is broken', async () => {
    const t = await tmp();
    const ws = await initWorkspace(join(t, 'a'), join(t, 'remote'), { cacheBytes });
    assert.equal(lockOwner(ws.dir), process.pid);
    await assert.rejects(
      openWorkspace(ws.dir),
      (e: unknown) => e instanceof WorkspaceLockedError && e.pid === process.pid,
    );
    await ws.close();
    assert.equal(lockOwner(ws.dir), undefined);
    // A lock left by a process that has exited.
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    await writeFile(paths(ws.dir).lock, `${pid}\n`);
    assert.equal(lockOwner(ws.dir), undefined);
    const again = await openWorkspace(ws.dir);
    await again.close();
  });

  it('opens and works while the remote is gone (offline), using the local copy of arbor.json', async () => {
    const t = await tmp();
    const ws = await initWorkspace(join(t, 'a'), join(t, 'remote'), { cacheBytes });
    await ws.close();
    await rm(join(t, 'remote'), { recursive: true });
    await writeFile(join(t, 'remote'), 'not a directory any more');
    const off = await openWorkspace(ws.dir, { logger: () => undefined });
    try {
      assert.equal(off.tree.readdir('root').filter((e) => e.name !== '.' && e.name !== '..').length, 0);
    } finally {
      await off.close();
    }
  });

  it('parses sizes and durations', () => {
    assert.equal(parseSize('10GiB'), 10 * 1024 ** 3);
    assert.equal(parseSize('512M'), 512 * 1024 ** 2);
    assert.equal(parseSize('1.5GB'), 1.5e9);
    assert.equal(parseSize('4096'), 4096);
    assert.throws(() => parseSize('ten'), /invalid size/);
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('0'), 0);
    assert.throws(() => parseDuration('soon'), /invalid duration/);
  });
});
