// GC end to end through the real CLI on the dir backend: deletes on two replicas, sync, `arbor gc` truncates the log,
// empties trash and (grace 0) deletes the deleted files' chunks from the remote; pruned history leaves `arbor log`;
// a fresh clone reads every live file; a registered replica that never synced blocks truncation until retired.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openWorkspace } from '../cli/workspace.js';
import { isHole } from '../chunks/types.js';
import { Arbor } from '../index.js';
import { CLI, runCli, runCliOk } from '../cli/testing/run-cli.js';
import { tempDirs } from '../testing/temp-dirs.js';

const tempDir = tempDirs();

const arbor = runCli;

const ok = runCliOk;

function logRows(dir: string): number {
  const db = new Database(join(dir, 'state.sqlite3'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM log').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** The chunk ids of a file's current content (the workspace is opened between CLI runs, never during one). */
async function chunksOf(dir: string, path: string): Promise<string[]> {
  const ws = await openWorkspace(dir);
  try {
    const vs = await new Arbor(ws.tree).versions(path);
    return vs[vs.length - 1]!.chunks.filter((c) => !isHole(c)).map((c) => c.id);
  } finally {
    await ws.close();
  }
}

const chunkFile = (remote: string, id: string): string => join(remote, 'chunks', id.slice(0, 2), id);

interface GcJson {
  threshold?: { counter: number };
  blocker?: string;
  truncation?: { logBefore: number; logAfter: number; purgedNodes: number; purgedInodes: number };
  deleted: number;
  prunedVersions: number;
}

describe('arbor gc end to end (dir backend)', () => {
  it('truncates the log, empties trash, deletes dead chunks; clones read everything; a silent replica blocks', async () => {
    const root = await tempDir('arbor-gc-e2e-');
    const remote = join(root, 'remote');
    const A = join(root, 'a');
    const B = join(root, 'b');
    const say = (line: string): void => void process.stdout.write(`# ${line}\n`);
    await ok('init', A, remote, '64');
    await ok('clone', B, remote, '64', '--key-file', join(A, 'key'));

    const files = new Map<string, Buffer>();
    const put = async (dir: string, path: string, size: number): Promise<void> => {
      const data = randomBytes(size);
      const local = join(root, `src-${path.slice(1)}`);
      await writeFile(local, data);
      await ok('put', dir, local, path);
      files.set(path, data);
    };
    for (let i = 0; i < 4; i++) await put(A, `/a${i}`, 300_000 + i);
    await ok('sync', A);
    await ok('sync', B);
    for (let i = 0; i < 3; i++) await put(B, `/b${i}`, 200_000 + i);
    await put(A, `/v`, 100_000); // two versions: retention keeps one
    await put(A, `/v`, 100_001);
    await ok('ln', A, '/a2', '/a2link');
    // A directory of small files, then renamed and half deleted: moves for the log to hold until gc.
    const tree = join(root, 'tree');
    await mkdir(tree);
    for (let i = 0; i < 40; i++) await writeFile(join(tree, `t${i}`), `small ${i}`);
    await ok('put', A, tree, '/tree');
    await ok('mv', A, '/tree', '/moved');
    for (let i = 0; i < 40; i++) files.set(`/moved/t${i}`, Buffer.from(`small ${i}`));
    await ok('sync', B);
    await ok('sync', A);
    await ok('sync', B);

    const dead = [
      ...(await chunksOf(A, '/a0')),
      ...(await chunksOf(A, '/a1')),
      ...(await chunksOf(B, '/b0')),
    ];
    assert.ok(dead.length >= 3 && dead.every((id) => existsSync(chunkFile(remote, id))));
    await ok('rm', A, '/a0');
    await ok('rm', A, '/a1');
    await ok('rm', A, '/a2'); // /a2link still names the inode: it stays
    await ok('rm', B, '/b0');
    for (const p of ['/a0', '/a1', '/a2', '/b0']) files.delete(p);
    for (let i = 0; i < 20; i++) {
      await ok('rm', B, `/moved/t${i}`);
      files.delete(`/moved/t${i}`);
    }
    files.set('/a2link', (await readFile(join(root, 'src-a2'))) as Buffer);
    // Both replicas publish what they have applied (sync announces it), twice round so each sees the other's.
    await ok('sync', A);
    await ok('sync', B);
    await ok('sync', A);
    await ok('sync', B);
    assert.equal((await ok('log', B, '/v')).stdout.trim().split('\n').length, 2);

    const before = logRows(A);
    const r = await ok('gc', A, '--grace', '0', '--keep', '1v', '--json');
    const g = JSON.parse(r.stdout) as GcJson;
    const after1 = logRows(A);
    say(
      `gc 1: log rows ${before} -> ${after1}; ${JSON.stringify(g.truncation)}; ${g.deleted} chunks deleted`,
    );
    assert.ok(g.truncation !== undefined && after1 < before, `log shrank (${before} -> ${after1})`);
    assert.equal(g.truncation.purgedInodes, 23, 'a0, a1, b0, 20 of moved/ emptied; a2 lives on as a2link');
    for (const id of dead) assert.ok(!existsSync(chunkFile(remote, id)), `chunk ${id} deleted`);
    assert.ok(g.prunedVersions >= 1);
    assert.equal((await ok('log', A, '/v')).stdout.trim().split('\n').length, 1, 'pruned version not listed');
    await ok('sync', B);
    assert.equal((await ok('log', B, '/v')).stdout.trim().split('\n').length, 1, 'nor on the other replica');

    // A fresh clone after gc reads every live file.
    const C = join(root, 'c');
    await ok('clone', C, remote, '64', '--key-file', join(A, 'key'));
    files.set('/v', (await readFile(join(root, 'src-v'))) as Buffer);
    for (const [path, data] of files) {
      const got = await new Promise<Buffer>((resolve, reject) => {
        execFile(
          process.execPath,
          [CLI, 'cat', C, path],
          { encoding: 'buffer', maxBuffer: 64 << 20 },
          (err, stdout) => (err ? reject(err) : resolve(stdout)),
        );
      }); // bytes, not text: compared with the file as written
      assert.ok(got.equals(data), `${path} reads back on the fresh clone`);
    }

    // C is registered but never syncs: it holds truncation back, and gc says so.
    const cId = (JSON.parse(await readFile(join(C, 'config.json'), 'utf8')) as { replica: string }).replica;
    const dead2 = await chunksOf(A, '/a3');
    await ok('rm', A, '/a3');
    for (let i = 20; i < 30; i++) {
      await ok('rm', A, `/moved/t${i}`);
      files.delete(`/moved/t${i}`);
    }
    await ok('sync', A);
    await ok('sync', B);
    await ok('sync', A);
    const before2 = logRows(A);
    const r2 = await ok('gc', A, '--grace', '0');
    const after2 = logRows(A);
    say(`gc 2 (silent ${cId}): log rows ${before2} -> ${after2}; ${r2.stderr.trim().split('\n')[0]}`);
    assert.equal(after2, before2, 'nothing truncated');
    assert.match(r2.stderr, new RegExp(`replica ${cId} has published nothing since it registered`));
    assert.ok(
      dead2.every((id) => existsSync(chunkFile(remote, id))),
      'a3 still in trash: chunks kept',
    );

    // Retiring it (it is gone for good) unblocks.
    const r3 = await ok('gc', A, '--grace', '0', '--retire', cId);
    const after3 = logRows(A);
    say(`gc 3 (after --retire ${cId}): log rows ${before2} -> ${after3}; ${r3.stderr.trim().split('\n')[1]}`);
    assert.ok(before2 >= 11 && after3 < before2, 'truncated once retired');
    assert.ok(
      dead2.every((id) => !existsSync(chunkFile(remote, id))),
      'a3 chunks deleted',
    );
    files.delete('/a3');
    const ls = (await ok('ls', B, '/')).stdout;
    for (const p of files.keys()) {
      if (p.lastIndexOf('/') === 0) assert.ok(ls.includes(p.slice(1)), `${p} listed on B`);
    }
    const retired = await arbor('sync', C);
    assert.notEqual(retired.code, 0);
    assert.match(retired.stderr, /retired/);
    // Every check still passes after all that: every live file's chunks verify, every batch opens.
    await ok('fsck', A);
    await ok('fsck', B);
  });
});
