// Runs the Remote conformance suite on the directory backend, plus its on-disk specifics.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { remoteContract } from './contract.js';
import { DirRemote } from './dir.js';
import { openRemote } from './index.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'arbor-dir-remote-'));
  dirs.push(d);
  return d;
}

remoteContract('dir', async () => new DirRemote(await tempDir()));
remoteContract(
  'dir via openRemote(file://…)',
  async () => openRemote(`file://${await tempDir()}/nested/root`),
  { manyKeys: 1001, largeBytes: 1 << 20 },
);

describe('dir backend specifics', () => {
  it('stores objects as plain files under the root and leaves no temp files behind', async () => {
    const root = await tempDir();
    const r = new DirRemote(root);
    await r.putIfAbsent('chunks/ab/abcdef', new Uint8Array([1, 2, 3]));
    await r.putIfAbsent('chunks/ab/abcdef', new Uint8Array([9]));
    assert.equal((await stat(join(root, 'chunks/ab/abcdef'))).size, 3);
    assert.deepEqual(await readdir(join(root, '.arbor-tmp')), []);
    await r.close();
  });

  it('putFileIfAbsent copies a local file write-once: the bytes, false for an existing key, no temp files', async () => {
    const root = await tempDir();
    const r = new DirRemote(root);
    const src = join(await tempDir(), 'chunk');
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff);
    await writeFile(src, bytes);
    assert.equal(await r.putFileIfAbsent('chunks/cd/cdef', src), true);
    await writeFile(src, new Uint8Array([7]));
    assert.equal(await r.putFileIfAbsent('chunks/cd/cdef', src), false);
    assert.deepEqual(new Uint8Array(await r.get('chunks/cd/cdef')), bytes);
    assert.deepEqual(await readdir(join(root, '.arbor-tmp')), []);
    await assert.rejects(r.putFileIfAbsent('chunks/cd/other', join(root, 'missing')));
    assert.equal(await r.exists('chunks/cd/other'), false);
    await r.close();
  });

  it('removes stale temp files of a dead writer and keeps fresh ones', async () => {
    const root = await tempDir();
    await mkdir(join(root, '.arbor-tmp'));
    await writeFile(join(root, '.arbor-tmp/old.tmp'), 'x');
    await writeFile(join(root, '.arbor-tmp/fresh.tmp'), 'y');
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    await utimes(join(root, '.arbor-tmp/old.tmp'), old, old);
    const r = new DirRemote(root);
    await r.putIfAbsent('k', new Uint8Array([1]));
    assert.deepEqual(await readdir(join(root, '.arbor-tmp')), ['fresh.tmp']);
    assert.deepEqual(await r.list(''), ['k']);
  });

  it('a plain relative path opens a dir remote at its absolute path', async () => {
    const r = await openRemote('some/relative/dir');
    assert.equal(r.url, `file://${join(process.cwd(), 'some/relative/dir')}`);
    await r.close();
  });

  it('ping fails with RemoteUnavailableError when the root is missing', async () => {
    const r = new DirRemote(join(await tempDir(), 'absent'));
    await assert.rejects(r.ping(), { code: 'ARBOR_REMOTE_UNAVAILABLE' });
  });
});
