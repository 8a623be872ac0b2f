// Tests for CachedChunkStore: bound, eviction, back-pressure, restart reconciliation, shared fetches, pins, faults.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { CachedChunkStore, type CachedChunkStoreOptions, remoteKey } from './store.js';
import { MemoryRemote } from './testing/memory-remote.js';
import { ChunkCorruptError, FsError } from '../errors.js';
import type { ChunkRef } from './types.js';
import type { ReadTarget } from '../remote/types.js';
import { FinalRemoteError } from '../remote/retry.js';

const CHUNKING = { minSize: 256, avgSize: 1024, maxSize: 4096 };
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Env {
  dir: string;
  db: Database.Database;
  remote: MemoryRemote;
  secret: Uint8Array;
  logs: string[];
  open(extra?: Partial<CachedChunkStoreOptions>): Promise<CachedChunkStore>;
}

async function env(remote = new MemoryRemote(), secret: Uint8Array = randomBytes(32)): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'arbor-chunks-'));
  dirs.push(dir);
  const db = new Database(join(dir, 'state.sqlite3'));
  db.pragma('journal_mode = WAL');
  const logs: string[] = [];
  const e: Env = {
    dir,
    db,
    remote,
    secret,
    logs,
    open: (extra = {}) =>
      CachedChunkStore.open({
        dir,
        db: e.db,
        remote,
        secret,
        chunking: CHUNKING,
        cacheLimitBytes: 20_000,
        fsync: false,
        retryBaseMs: 2,
        retryMaxMs: 20,
        logger: (l) => logs.push(l),
        ...extra,
      }),
  };
  return e;
}

/** Bytes of chunk files actually on disk under <dir>/cache. */
function diskBytes(dir: string): number {
  let n = 0;
  const cache = join(dir, 'cache');
  for (const sub of readdirSync(cache))
    for (const f of readdirSync(join(cache, sub))) n += statSync(join(cache, sub, f)).size;
  return n;
}

const same = (a: Uint8Array, b: Uint8Array): void => assert.equal(Buffer.compare(a, b), 0);
const chunk = (n = 3000): Uint8Array => randomBytes(n);

/** True if the promise is still pending after the remote has been called `calls` more times. */
async function pendingAfterCalls(p: Promise<unknown>, remote: MemoryRemote, calls: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < calls; i++) await remote.nextCall();
  await new Promise((r) => setImmediate(r));
  return !settled;
}

test('put/get round trip, idempotent put, upload to chunks/<2hex>/<id>, refetch after eviction', async () => {
  const e = await env();
  const s = await e.open();
  const data = chunk();
  const ref = await s.put(data);
  assert.equal(ref.size, data.length);
  assert.match(ref.id, /^[0-9a-f]{64}$/);
  assert.deepEqual(await s.put(Uint8Array.from(data)), ref);
  same(await s.get(ref), data);
  await s.flushUploads();
  assert.ok(e.remote.objects.has(remoteKey(ref.id)));
  assert.equal(remoteKey(ref.id), `chunks/${ref.id.slice(0, 2)}/${ref.id}`);
  // Stored encrypted: the remote object does not contain the plaintext.
  assert.equal(
    Buffer.from(e.remote.objects.get(remoteKey(ref.id))!).indexOf(Buffer.from(data.subarray(0, 32))),
    -1,
  );
  // Fill the cache with other chunks until the first is evicted, then read it back through the remote.
  const others: ChunkRef[] = [];
  for (let i = 0; i < 12; i++) others.push(await s.put(chunk()));
  await s.flushUploads();
  for (const o of others) await s.get(o);
  assert.ok(s.stats().residentBytes <= 20_000);
  const before = e.remote.calls.get;
  same(await s.get(ref), data);
  assert.ok(e.remote.calls.get > before, 'evicted chunk was fetched from the remote');
  const st = s.stats();
  assert.equal(st.pendingUploads, 0);
  assert.equal(st.dirtyBytes, 0);
  assert.equal(st.cacheLimitBytes, 20_000);
  assert.equal(s.split(new Uint8Array(10), true).length, 1);
  await s.close();
});

test('property: resident bytes never exceed the limit under random puts, gets, pins and remote faults', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant('put' as const), size: fc.integer({ min: 1, max: 4096 }) }),
          fc.record({ op: fc.constant('get' as const), i: fc.nat() }),
          fc.record({ op: fc.constant('pin' as const), i: fc.nat() }),
          fc.record({ op: fc.constant('unpin' as const), i: fc.nat() }),
          fc.record({ op: fc.constant('flaky' as const), rate: fc.constantFrom(0, 0.3) }),
          fc.record({ op: fc.constant('prefetch' as const), i: fc.nat() }),
        ),
        { maxLength: 40 },
      ),
      async (ops) => {
        const e = await env();
        const s = await e.open({ cacheLimitBytes: 16_384 });
        const known: { ref: ChunkRef; data: Uint8Array }[] = [];
        const pinned: ChunkRef[] = [];
        const check = (): void => {
          assert.ok(s.stats().residentBytes <= 16_384, `resident ${s.stats().residentBytes}`);
          assert.ok(s.stats().peakResidentBytes <= 16_384);
          assert.ok(diskBytes(e.dir) <= 16_384, `disk ${diskBytes(e.dir)}`);
        };
        try {
          for (const o of ops) {
            if (o.op === 'put') {
              const data = randomBytes(o.size);
              known.push({ ref: await s.put(data), data });
            } else if (o.op === 'get' && known.length) {
              const k = known[o.i % known.length]!;
              same(await s.get(k.ref), k.data);
            } else if (o.op === 'pin' && known.length && pinned.length < 2) {
              const k = known[o.i % known.length]!;
              await s.flushUploads();
              await s.pin([k.ref]);
              pinned.push(k.ref);
            } else if (o.op === 'unpin' && pinned.length) {
              s.unpin([pinned.pop()!]);
            } else if (o.op === 'flaky') {
              e.remote.errorRate = o.rate;
            } else if (o.op === 'prefetch' && known.length) {
              s.prefetch(known.slice(o.i % known.length).map((k) => k.ref));
            }
            check();
          }
          e.remote.errorRate = 0;
          await s.flushUploads();
          for (const k of known) same(await s.get(k.ref), k.data);
          check();
        } finally {
          await s.close();
        }
      },
    ),
    { numRuns: 15 },
  );
});

test('dirty chunks are never evicted; back-pressure: put waits while the remote is down, proceeds when it returns', async () => {
  const e = await env();
  const s = await e.open();
  e.remote.down = true;
  const written: { ref: ChunkRef; data: Uint8Array }[] = [];
  // 6 × ~4 KiB fits under 20,000 bytes; the 6th must wait for an upload.
  for (let i = 0; i < 4; i++) {
    const data = chunk(4000);
    written.push({ ref: await s.put(data), data });
  }
  assert.equal(e.remote.objects.size, 0);
  assert.equal(s.stats().pendingUploads, 4);
  assert.ok(s.stats().dirtyBytes >= 16_000);
  const data5 = chunk(4000);
  const p5 = s.put(data5);
  assert.ok(await pendingAfterCalls(p5, e.remote, 6), 'put must wait while dirty data fills the cache');
  assert.ok(s.stats().residentBytes <= 20_000);
  for (const w of written) same(await s.get(w.ref), w.data); // served from the cache, remote down
  e.remote.down = false;
  written.push({ ref: await p5, data: data5 });
  await s.flushUploads();
  for (const w of written) assert.ok(e.remote.objects.has(remoteKey(w.ref.id)));
  assert.equal(s.stats().pendingUploads, 0);
  assert.ok(
    e.logs.some((l) => l.includes('upload of chunk')),
    'upload failures are logged',
  );
  await s.close();
});

test('whenUploaded waits for exactly the given chunks', async () => {
  const e = await env();
  const s = await e.open();
  e.remote.down = true;
  const a = await s.put(chunk());
  const w = s.whenUploaded([a.id, 'f'.repeat(64)]);
  assert.ok(await pendingAfterCalls(w, e.remote, 3));
  e.remote.down = false;
  await w;
  assert.ok(e.remote.objects.has(remoteKey(a.id)));
  await s.whenUploaded([a.id]);
  await s.close();
});

test('dirty chunks survive a restart and are uploaded by the next open', async () => {
  const e = await env();
  e.remote.down = true;
  const s = await e.open();
  const data = chunk();
  const ref = await s.put(data);
  await s.close();
  assert.equal(e.remote.objects.size, 0);
  e.remote.down = false;
  const s2 = await e.open();
  assert.equal(s2.stats().pendingUploads <= 1, true);
  await s2.flushUploads();
  assert.ok(e.remote.objects.has(remoteKey(ref.id)));
  same(await s2.get(ref), data);
  await s2.close();
});

test('restart reconciliation: missing or corrupt cached chunks are refetched, orphans removed', async () => {
  const e = await env();
  const s = await e.open();
  const items: { ref: ChunkRef; data: Uint8Array }[] = [];
  for (let i = 0; i < 4; i++) {
    const data = chunk(2000);
    items.push({ ref: await s.put(data), data });
  }
  await s.flushUploads();
  await s.close();
  const p = (id: string): string => join(e.dir, 'cache', id.slice(0, 2), id);
  await unlink(p(items[0]!.ref.id));
  const buf = Buffer.from(randomBytes(items[1]!.data.length + 29));
  await writeFile(p(items[1]!.ref.id), buf); // same size, wrong bytes: only verification can tell
  await writeFile(p(items[2]!.ref.id), 'short'); // wrong size: dropped at open
  await mkdir(join(e.dir, 'cache', 'ab'), { recursive: true });
  const orphan = join(e.dir, 'cache', 'ab', 'ab' + '0'.repeat(62));
  await writeFile(orphan, 'x');
  await writeFile(p(items[3]!.ref.id) + '.tmp-1234', 'partial');
  const s2 = await e.open();
  assert.ok(!existsSync(orphan), 'orphan removed');
  assert.ok(!existsSync(p(items[3]!.ref.id) + '.tmp-1234'), 'temp file removed');
  const before = e.remote.calls.get;
  for (const it of items) same(await s2.get(it.ref), it.data);
  assert.equal(e.remote.calls.get - before, 3, 'the missing, corrupt and short chunks were refetched');
  assert.ok(e.logs.some((l) => l.includes(items[1]!.ref.id) && l.includes('corrupt')));
  // Now all four are cached again: no further remote reads.
  for (const it of items) same(await s2.get(it.ref), it.data);
  assert.equal(e.remote.calls.get - before, 3);
  await s2.close();
});

/** `n` random chunks put and uploaded by a writer that is then closed: a remote for another replica to read. */
async function uploaded(
  n: number,
): Promise<{ remote: MemoryRemote; secret: Uint8Array; refs: ChunkRef[]; datas: Uint8Array[] }> {
  const remote = new MemoryRemote();
  const secret = randomBytes(32);
  const writer = await (await env(remote, secret)).open();
  const refs: ChunkRef[] = [];
  const datas: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    datas.push(chunk(3000));
    refs.push(await writer.put(datas[i]!));
  }
  await writer.flushUploads();
  await writer.close();
  return { remote, secret, refs, datas };
}

test('concurrent readers of one chunk share one fetch; prefetch warms the cache', async () => {
  const { remote, secret, refs, datas } = await uploaded(4);
  const r = await env(remote, secret); // another replica: empty cache, same remote and secret
  const reader = await r.open();
  remote.delayMs = 20;
  const before = remote.calls.get;
  const got = await Promise.all(Array.from({ length: 10 }, () => reader.get(refs[0]!)));
  for (const g of got) same(g, datas[0]!);
  assert.equal(remote.calls.get - before, 1, 'ten readers, one GET');
  reader.prefetch(refs.slice(1));
  reader.prefetch(refs.slice(1)); // duplicate hints are merged
  for (let i = 1; i < 4; i++) same(await reader.get(refs[i]!), datas[i]!);
  assert.equal(remote.calls.get - before, 4, 'one GET per chunk, prefetched or not');
  await reader.close();
});

test('readahead hands its fetched bytes to the first reader (decrypted in place): no GET, no cache file read; corrupt → never cached, refetch, then EIO', async () => {
  const { remote, secret, refs, datas } = await uploaded(6);
  remote.corrupt(remoteKey(refs[5]!.id), 100);
  const r = await env(remote, secret);
  const reader = await r.open({ fetchConcurrency: 2 });
  reader.prefetch(refs);
  // The corrupt one is verified before it is indexed: it never becomes resident, only logged.
  const corruptLogged = (): boolean => r.logs.some((l) => l.includes(refs[5]!.id) && l.includes('corrupt'));
  for (let t = 0; reader.stats().residentChunks < 5 || !corruptLogged(); t++) {
    assert.ok(t < 1000, 'the readahead lands');
    await new Promise((res) => setTimeout(res, 2));
  }
  const before = remote.calls.get;
  // Cache files gone behind the store's back: only the held bytes can answer these without a GET.
  for (let i = 1; i < 5; i++) await unlink(join(r.dir, 'cache', refs[i]!.id.slice(0, 2), refs[i]!.id));
  for (let i = 1; i < 5; i++) same(await reader.get(refs[i]!), datas[i]!);
  // Two readers at once: one takes the held bytes, the other reads the cache file; both get the right bytes.
  const [a, b] = await Promise.all([reader.get(refs[0]!), reader.get(refs[0]!)]);
  same(a, datas[0]!);
  same(b, datas[0]!);
  assert.equal(remote.calls.get - before, 0, 'no GET: the readahead had them all');
  // Held bytes are given out once: a second read of a chunk whose file is gone refetches it.
  same(await reader.get(refs[1]!), datas[1]!);
  assert.equal(remote.calls.get - before, 1);
  await assert.rejects(reader.get(refs[5]!), ChunkCorruptError);
  assert.equal(remote.calls.get - before, 2, 'the corrupt chunk was refetched once before failing');
  assert.ok(r.logs.some((l) => l.includes(refs[5]!.id) && l.includes('corrupt')));
  // Its cache file was written (on a threadpool thread, while it was decrypted) and removed again once it failed.
  assert.equal(existsSync(join(r.dir, 'cache', refs[5]!.id.slice(0, 2), refs[5]!.id)), false);
  await reader.close();
});

test('faults: corrupted, truncated and missing remote objects are ChunkCorruptError with a log line', async () => {
  const remote = new MemoryRemote();
  const secret = randomBytes(32);
  const w = await env(remote, secret);
  const writer = await w.open();
  const refs = [];
  for (let i = 0; i < 3; i++) refs.push(await writer.put(chunk(3000)));
  await writer.flushUploads();
  await writer.close();
  remote.corrupt(remoteKey(refs[0]!.id), 100);
  remote.truncate(remoteKey(refs[1]!.id), 500);
  remote.objects.delete(remoteKey(refs[2]!.id));
  const r = await env(remote, secret);
  const reader = await r.open();
  for (const ref of refs) {
    await assert.rejects(reader.get(ref), (err: unknown) => {
      assert.ok(err instanceof ChunkCorruptError);
      assert.equal(err.errno, 5);
      return true;
    });
    assert.ok(
      r.logs.some((l) => l.includes(ref.id)),
      `a log line names ${ref.id}`,
    );
  }
  assert.equal(reader.stats().residentChunks, 0, 'nothing corrupt stays cached');
  await reader.close();
});

test('faults: uploads survive random errors and a slow remote; reads retry transient errors', async () => {
  const e = await env();
  const s = await e.open({ uploadConcurrency: 3 });
  e.remote.errorRate = 0.5;
  e.remote.delayMs = 2;
  const items: { ref: ChunkRef; data: Uint8Array }[] = [];
  for (let i = 0; i < 8; i++) {
    const data = chunk(1500);
    items.push({ ref: await s.put(data), data });
  }
  await s.flushUploads();
  for (const it of items) assert.ok(e.remote.objects.has(remoteKey(it.ref.id)));
  e.remote.errorRate = 0;
  const r = await env(e.remote, e.secret);
  const reader = await r.open();
  e.remote.failNext = 2;
  same(await reader.get(items[0]!.ref), items[0]!.data);
  e.remote.down = true;
  await assert.rejects(reader.get(items[1]!.ref), (err: unknown) => (err as { errno?: number }).errno === 5);
  e.remote.down = false;
  await reader.close();
  await s.close();
});

test('pins keep chunks local for offline reads; too many pins is ENOSPC', async () => {
  const remote = new MemoryRemote();
  const secret = randomBytes(32);
  const w = await env(remote, secret);
  const writer = await w.open();
  const items: { ref: ChunkRef; data: Uint8Array }[] = [];
  for (let i = 0; i < 8; i++) {
    const data = chunk(4000);
    items.push({ ref: await writer.put(data), data });
  }
  await writer.flushUploads();
  await writer.close();
  const r = await env(remote, secret);
  const reader = await r.open();
  const local: string[] = [];
  await reader.pin(
    items.slice(0, 2).map((i) => i.ref),
    { onLocal: (r) => local.push(r.id) },
  );
  assert.deepEqual(
    local.sort(),
    items
      .slice(0, 2)
      .map((i) => i.ref.id)
      .sort(),
    'onLocal hears of each pinned chunk',
  );
  // Stream the rest through the cache: pinned chunks must not be evicted.
  for (const it of items.slice(2)) same(await reader.get(it.ref), it.data);
  remote.down = true;
  for (const it of items.slice(0, 2)) same(await reader.get(it.ref), it.data);
  assert.ok(reader.stats().pinnedBytes >= 8000);
  remote.down = false;
  await assert.rejects(
    reader.pin(items.slice(2).map((i) => i.ref)),
    (err: unknown) => err instanceof FsError && err.code === 'ENOSPC',
  );
  reader.unpin(items.map((i) => i.ref));
  assert.equal(reader.stats().pinnedBytes, 0);
  await reader.pin([items[0]!.ref]);
  await reader.close();
  // Pins persist across restarts.
  const again = await r.open();
  assert.ok(again.stats().pinnedBytes >= 4000);
  again.unpin([items[0]!.ref]);
  assert.equal(again.stats().pinnedBytes, 0);
  await again.close();
});

test('faults: the remote going down in the middle of an upload loses nothing', async () => {
  const e = await env();
  const s = await e.open({ uploadConcurrency: 1 });
  e.remote.delayMs = 10;
  const called = e.remote.nextCall();
  const data = chunk(3000);
  const ref = await s.put(data);
  await called; // the upload is in flight now
  e.remote.down = true; // ...and fails when its delayed answer comes
  const retried = [e.remote.nextCall(), e.remote.nextCall()];
  await Promise.all(retried);
  assert.equal(e.remote.objects.size, 0);
  assert.equal(s.stats().pendingUploads, 1);
  e.remote.down = false;
  await s.flushUploads();
  const sealed = e.remote.objects.get(remoteKey(ref.id));
  assert.ok(sealed);
  const r = await env(e.remote, e.secret);
  const reader = await r.open();
  same(await reader.get(ref), data);
  await reader.close();
  await s.close();
});

test('a dirty chunk whose cached copy is corrupted is dropped, reported, and never uploaded as garbage', async () => {
  const e = await env();
  const s = await e.open();
  e.remote.down = true;
  const ref = await s.put(chunk(3000));
  const waiting = s.whenUploaded([ref.id]);
  const file = join(e.dir, 'cache', ref.id.slice(0, 2), ref.id);
  const bytes = Buffer.from(await readFile(file));
  bytes[100] = bytes[100]! ^ 0xff;
  await writeFile(file, bytes);
  await assert.rejects(s.get(ref), ChunkCorruptError);
  await assert.rejects(waiting, ChunkCorruptError);
  assert.ok(e.logs.some((l) => l.includes(ref.id) && l.includes('lost')));
  e.remote.down = false;
  await s.flushUploads();
  assert.equal(e.remote.objects.size, 0);
  assert.equal(s.stats().dirtyBytes, 0);
  assert.equal(s.stats().residentBytes, 0);
  await s.close();
});

test('reopening with a smaller limit evicts down to it', async () => {
  const e = await env();
  const s = await e.open({ cacheLimitBytes: 40_000 });
  for (let i = 0; i < 8; i++) await s.put(chunk(4000));
  await s.flushUploads();
  assert.ok(s.stats().residentBytes > 20_000);
  await s.close();
  const s2 = await e.open({ cacheLimitBytes: 20_000 });
  assert.ok(s2.stats().residentBytes <= 20_000);
  assert.ok(diskBytes(e.dir) <= 20_000);
  await s2.close();
});

test('large chunks are hashed and sealed on a worker thread: same ids, readable, deduplicated; sync() fsyncs them', async () => {
  const e = await env();
  const big = { minSize: 64 * 1024, avgSize: 128 * 1024, maxSize: 256 * 1024 };
  const s = await e.open({ chunking: big, cacheLimitBytes: 8 << 20, fsync: true, sealThreads: 1 });
  const { FsCrypto } = await import('./crypto.js');
  const crypto = new FsCrypto(e.secret);
  const data = [chunk(200_000), chunk(100_000), chunk(70_000)];
  const refs = await Promise.all([...data, data[0]!].map((d) => s.put(d)));
  for (let i = 0; i < data.length; i++) {
    assert.equal(refs[i]!.id, crypto.chunkId(data[i]!));
    same(await s.get(refs[i]!), data[i]!);
  }
  assert.deepEqual(refs[3], refs[0]);
  assert.equal(s.stats().residentChunks, 3);
  await s.sync();
  await s.sync(); // nothing new: a no-op
  await s.close();

  // A filesystem with the other id algorithm: the worker must hash as arbor.json says, not with the default.
  const e2 = await env();
  const h = await e2.open({
    chunking: big,
    cacheLimitBytes: 8 << 20,
    sealThreads: 1,
    chunkId: 'hmac-sha256',
  });
  const hmac = new FsCrypto(e2.secret, 'hmac-sha256');
  const ref = await h.put(data[0]!);
  assert.equal(ref.id, hmac.chunkId(data[0]!));
  assert.notEqual(ref.id, new FsCrypto(e2.secret, 'blake3').chunkId(data[0]!));
  await h.close();
});

test('chunks in shared memory are sealed in place by the worker, which writes their cache files from one reused buffer: cached and uploaded bytes stay right', async () => {
  const e = await env();
  const big = { minSize: 64 * 1024, avgSize: 128 * 1024, maxSize: 256 * 1024 };
  const s = await e.open({ chunking: big, cacheLimitBytes: 64 << 20, sealThreads: 1 });
  const { FsCrypto } = await import('./crypto.js');
  const crypto = new FsCrypto(e.secret);
  const shared = Buffer.from(new SharedArrayBuffer(300_000));
  const data: Uint8Array[] = [];
  const refs = [];
  for (let i = 0; i < 48; i++) {
    const d = chunk(64 * 1024 + ((i * 7919) % 190_000));
    d.forEach((b, j) => (shared[j] = b));
    // A view at an offset into shared memory, as FileContent's tail buffers hand them out.
    refs.push(await s.put(shared.subarray(0, d.length)));
    shared.fill(0xee); // the caller may reuse its memory once put settles
    data.push(d);
    if (i % 8 === 7) await s.flushUploads(); // uploads read the files while the worker seals the next ones
  }
  refs.push(await s.put(data[3]!)); // a duplicate: its file exists, so the worker neither seals nor writes it
  await s.flushUploads();
  assert.deepEqual(refs[48], refs[3]);
  for (let i = 0; i < data.length; i++) {
    assert.equal(refs[i]!.id, crypto.chunkId(data[i]!));
    same(await s.get(refs[i]!), data[i]!);
    const remote = e.remote.objects.get(remoteKey(refs[i]!.id))!;
    same(crypto.openChunk(refs[i]!.id, remote, data[i]!.length), data[i]!);
  }
  await s.close();
});

test("a worker put never trusts a file it did not index: a stray file under the chunk's name is rewritten", async () => {
  const e = await env();
  const big = { minSize: 64 * 1024, avgSize: 128 * 1024, maxSize: 256 * 1024 };
  const data = chunk(150_000);
  const { FsCrypto } = await import('./crypto.js');
  const id = new FsCrypto(e.secret).chunkId(data);
  // Garbage under the final name, as a crash between rename and indexing or an eviction race could leave it.
  await mkdir(join(e.dir, 'cache', id.slice(0, 2)), { recursive: true });
  await writeFile(join(e.dir, 'cache', id.slice(0, 2), id), Buffer.alloc(1000, 0xaa));
  const s = await e.open({ chunking: big, cacheLimitBytes: 8 << 20, sealThreads: 1 });
  // open() reconciled the stray file away; put one back behind the store's back.
  await writeFile(join(e.dir, 'cache', id.slice(0, 2), id), Buffer.alloc(1000, 0xaa));
  const ref = await s.put(data);
  assert.equal(ref.id, id);
  same(await s.get(ref), data);
  await s.flushUploads();
  same(new FsCrypto(e.secret).openChunk(id, e.remote.objects.get(remoteKey(id))!, data.length), data);
  await s.close();
});

test('worker puts never take the cache past its limit: room is reserved before the worker writes', async () => {
  const e = await env();
  const big = { minSize: 64 * 1024, avgSize: 128 * 1024, maxSize: 256 * 1024 };
  const limit = 2 * (256 * 1024 + 64) + 100_000;
  const s = await e.open({ chunking: big, cacheLimitBytes: limit, sealThreads: 1, uploadConcurrency: 1 });
  e.remote.delayMs = 5;
  const data = Array.from({ length: 24 }, (_, i) => chunk(100_000 + i * 6000));
  let maxDisk = 0;
  // Files come and go while the worker writes and uploads evict: a name listed may be gone (or renamed) at its stat.
  const liveDiskBytes = (): number => {
    for (;;) {
      try {
        return diskBytes(e.dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  };
  const refs = await Promise.all(
    data.map(async (d) => {
      const r = await s.put(d);
      maxDisk = Math.max(maxDisk, liveDiskBytes());
      return r;
    }),
  );
  await s.flushUploads();
  assert.ok(s.stats().peakResidentBytes <= limit, `peak ${s.stats().peakResidentBytes} > ${limit}`);
  assert.ok(maxDisk <= limit, `disk ${maxDisk} > ${limit}`);
  for (let i = 0; i < data.length; i++) same(await s.get(refs[i]!), data[i]!);
  await s.close();
});

test(
  'a full cache disk: a worker put fails with ENOSPC, nothing half-stored is indexed, and puts work again once there is room',
  { skip: process.getuid?.() === 0 ? false : 'needs root (mounts a small tmpfs as the cache directory)' },
  async () => {
    const e = await env();
    const cache = join(e.dir, 'cache');
    await mkdir(cache);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'arbor-test-full', cache]);
    try {
      const big = { minSize: 64 * 1024, avgSize: 128 * 1024, maxSize: 256 * 1024 };
      const s = await e.open({ chunking: big, cacheLimitBytes: 8 << 20, sealThreads: 1 });
      const data = Array.from({ length: 8 }, (_, i) => chunk(200_000 + i));
      const results: (ChunkRef | unknown)[] = [];
      for (const d of data) results.push(await s.put(d).catch((err: unknown) => err));
      const failed = results.filter((r) => r instanceof Error);
      assert.ok(failed.length > 0, 'a 1 MiB disk cannot hold 1.6 MB of chunks');
      for (const err of failed) assert.ok(err instanceof FsError && err.code === 'ENOSPC', String(err));
      const stored = results.flatMap((r, i) => (r instanceof Error ? [] : [[r as ChunkRef, i] as const]));
      assert.equal(s.stats().residentChunks, stored.length);
      for (const [ref, i] of stored) same(await s.get(ref), data[i]!);
      execFileSync('mount', ['-o', 'remount,size=8m', cache]);
      const i = results.findIndex((r) => r instanceof Error);
      same(await s.get(await s.put(data[i]!)), data[i]!);
      await s.flushUploads();
      await s.close();
    } finally {
      execFileSync('umount', ['-l', cache]);
    }
  },
);

test('a remote with getInto fills the store’s pooled buffers: right bytes, shared by readers; an oversized object is refused unallocated', async () => {
  const { remote, secret, refs, datas } = await uploaded(4);
  const targets: number[] = [];
  const into = Object.assign(Object.create(remote) as MemoryRemote, {
    // As S3 does: ask the target for the object's length, copy into it, answer a view of it.
    async getInto(key: string, target: ReadTarget): Promise<Uint8Array> {
      const b = await remote.get(key);
      const out = target.alloc(b.length);
      targets.push(out.length);
      if (out.length < b.length) throw new FinalRemoteError('refused');
      if (target.copy) target.copy(out, 0, b);
      else out.set(b);
      return out.subarray(0, b.length);
    },
  });
  const r = await env(into, secret);
  const reader = await r.open();
  reader.prefetch(refs.slice(1));
  const [a, b] = await Promise.all([reader.get(refs[0]!), reader.get(refs[0]!)]);
  same(a, datas[0]!);
  same(b, datas[0]!);
  assert.notEqual(a.buffer, b.buffer, 'each reader has its own copy');
  assert.ok(!(a.buffer instanceof SharedArrayBuffer), 'readers never get the shared buffer');
  for (let i = 1; i < 4; i++) same(await reader.get(refs[i]!), datas[i]!);
  assert.equal(targets.length, 4);
  // An object far larger than its chunk can be: no buffer of that size, a ChunkCorruptError naming it.
  remote.objects.set(remoteKey(refs[3]!.id), new Uint8Array(1 << 20));
  await unlink(join(r.dir, 'cache', refs[3]!.id.slice(0, 2), refs[3]!.id));
  const r2 = await env(into, secret);
  const reader2 = await r2.open();
  await assert.rejects(reader2.get(refs[3]!), ChunkCorruptError);
  assert.equal(targets.at(-1), 0, 'the oversized body got no buffer');
  assert.ok(r2.logs.some((l) => l.includes(refs[3]!.id) && l.includes('impossible size')));
  await reader.close();
  await reader2.close();
});
