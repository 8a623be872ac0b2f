// CachedChunkStore over the real directory backend: round trip between two replicas, and an object corrupted on
// disk behind the backend's back is detected (ChunkCorruptError), never returned.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DirRemote } from '../remote/dir.js';
import { CachedChunkStore, remoteKey } from './store.js';
import { ChunkCorruptError } from '../errors.js';
import type { ChunkRef } from './types.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function replica(root: string, secret: Uint8Array, logs: string[]): Promise<CachedChunkStore> {
  const dir = await mkdtemp(join(tmpdir(), 'arbor-chunks-dir-'));
  dirs.push(dir);
  return CachedChunkStore.open({
    dir,
    db: new Database(join(dir, 'state.sqlite3')),
    remote: new DirRemote(root, { fsync: false }),
    secret,
    chunking: { minSize: 1024, avgSize: 4096, maxSize: 16384 },
    cacheLimitBytes: 1 << 20,
    fsync: false,
    logger: (l) => logs.push(l),
  });
}

test('two replicas share chunks through a directory remote; on-disk corruption is detected', async () => {
  const root = await mkdtemp(join(tmpdir(), 'arbor-remote-dir-'));
  dirs.push(root);
  const secret = randomBytes(32);
  const logs: string[] = [];
  const a = await replica(root, secret, logs);
  const data = randomBytes(200_000);
  const refs: ChunkRef[] = [];
  let p = 0;
  for (const l of a.split(data, true)) {
    refs.push(await a.put(data.subarray(p, p + l)));
    p += l;
  }
  await a.flushUploads();
  await a.close();
  const b = await replica(root, secret, logs);
  b.prefetch(refs);
  const back = Buffer.concat(await Promise.all(refs.map((r) => b.get(r))));
  assert.equal(Buffer.compare(back, data), 0);
  await b.close();

  const c = await replica(root, secret, logs);
  const f0 = join(root, remoteKey(refs[0]!.id));
  const bytes = await readFile(f0);
  bytes[bytes.length >> 1] ^= 1;
  await writeFile(f0, bytes);
  await truncate(join(root, remoteKey(refs[1]!.id)), 100);
  await assert.rejects(c.get(refs[0]!), ChunkCorruptError);
  await assert.rejects(c.get(refs[1]!), ChunkCorruptError);
  assert.ok(logs.some((l) => l.includes(refs[0]!.id)));
  assert.ok(logs.some((l) => l.includes(refs[1]!.id)));
  const ok = await c.get(refs[2]!);
  assert.equal(ok.length, refs[2]!.size);
  await c.close();
});
