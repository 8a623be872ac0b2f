// Tests of FileContent: random writes/truncates against a plain buffer model, bounded dirty memory, chunk reuse.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HOLE_ID, isHole, type ChunkRef } from '../chunks/types.js';
import { FileContent, PUT_AHEAD_LIMIT, holeRef } from './content.js';
import { MemChunkStore } from './testing/mem-store.js';

const TiB = 2 ** 40;

/** A MemChunkStore that also counts gets (holes must never reach the store). */
class CountingStore extends MemChunkStore {
  gets = 0;
  override async get(ref: ChunkRef): Promise<Uint8Array> {
    this.gets++;
    return super.get(ref);
  }
}

describe('FileContent', () => {
  it('matches a buffer model under random writes, truncates and re-chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ w: fc.nat(20_000), data: fc.uint8Array({ minLength: 1, maxLength: 3000 }) }),
            fc.record({ t: fc.nat(25_000) }),
            fc.record({ flush: fc.constant(true) }),
          ),
          { maxLength: 30 },
        ),
        async (steps) => {
          const store = new MemChunkStore(1024);
          const c = new FileContent(store, [], 0, 8192);
          let model = Buffer.alloc(0);
          for (const s of steps) {
            if ('w' in s) {
              const end = s.w + s.data.length;
              if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)]);
              model.set(s.data, s.w);
              await c.write(s.w, s.data);
            } else if ('t' in s) {
              model =
                s.t <= model.length
                  ? model.subarray(0, s.t)
                  : Buffer.concat([model, Buffer.alloc(s.t - model.length)]);
              c.truncate(s.t);
            } else {
              const refs = await c.rechunk();
              assert.equal(
                refs.reduce((n, r) => n + r.size, 0),
                model.length,
              );
            }
            assert.equal(c.size, model.length);
            assert.ok(c.dirtyBytes <= 8192 + 3000, `dirty ${c.dirtyBytes}`);
          }
          assert.deepEqual(await c.read(0, model.length + 10), model);
          const refs = await c.rechunk();
          const again = new FileContent(store, refs, model.length);
          assert.deepEqual(await again.read(0, model.length), model);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('cuts sequential writes into chunks as they arrive (dirty bytes stay bounded)', async () => {
    const store = new MemChunkStore(4096);
    const c = new FileContent(store, [], 0);
    const piece = Buffer.alloc(1000);
    let maxDirty = 0;
    for (let i = 0; i < 2000; i++) {
      piece.fill(i & 0xff);
      await c.write(i * 1000, piece);
      maxDirty = Math.max(maxDirty, c.dirtyBytes);
    }
    assert.ok(maxDirty <= 3 * 4096, `dirty peaked at ${maxDirty}`);
    assert.ok(store.puts >= 2_000_000 / 4096 - 3, 'chunks were stored while writing');
    const refs = await c.rechunk();
    assert.equal(refs.length, Math.ceil(2_000_000 / 4096));
    assert.equal((await c.read(1_500_000, 1000))[0], 1500 & 0xff);
  });

  it('an overwrite in the middle re-stores only the chunk it touches', async () => {
    const store = new MemChunkStore(1024);
    const c = new FileContent(store, [], 0);
    await c.write(0, Buffer.alloc(10 * 1024, 7));
    const before = await c.rechunk();
    const puts = store.puts;
    await c.write(5000, Buffer.from('hello'));
    const after = await c.rechunk();
    assert.equal(store.puts - puts, 1);
    assert.equal(after.filter((r, i) => r.id !== before[i]!.id).length, 1);
  });

  it('truncate up to 1 TiB stores nothing: one hole ref, reads of it are zeros without touching the store', async () => {
    const store = new CountingStore(1024);
    const c = new FileContent(store, [], 0);
    await c.write(0, Buffer.from('head'));
    const t0 = Date.now();
    c.truncate(TiB);
    const refs = await c.rechunk();
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.equal(store.puts, 1, 'only the 4 data bytes were stored');
    assert.equal(refs.length, 2);
    assert.deepEqual(refs[1], { id: HOLE_ID, size: TiB - 4 });
    assert.equal(c.size, TiB);
    assert.equal(c.dataBytes, 4);
    const gets = store.gets;
    assert.deepEqual(await c.read(TiB / 2, 65536), Buffer.alloc(65536));
    assert.deepEqual(await c.read(TiB - 10, 100), Buffer.alloc(10));
    assert.equal(store.gets, gets, 'hole reads do not touch the store');
    // Loading the version back: same bytes, still no store traffic for the hole.
    const again = new FileContent(store, refs, TiB);
    assert.equal((await again.read(0, 8)).toString(), 'head\0\0\0\0');
    assert.deepEqual(await again.read(3 * 2 ** 30, 4096), Buffer.alloc(4096));
    assert.equal(store.puts, 1);
  });

  it('a write in the middle of a huge hole splits it: hole | data | hole', async () => {
    const store = new CountingStore(1024);
    const c = new FileContent(store, [holeRef(TiB)], TiB);
    const at = TiB / 2 + 12345;
    const data = Buffer.alloc(3000, 0x5a);
    await c.write(at, data);
    const refs = await c.rechunk();
    assert.equal(store.puts, 3, '3000 bytes in 1024-byte chunks');
    assert.ok(isHole(refs[0]!) && isHole(refs[refs.length - 1]!));
    assert.equal(refs[0]!.size, at);
    assert.equal(
      refs.reduce((n, r) => n + r.size, 0),
      TiB,
    );
    assert.equal(c.dataBytes, 3000);
    const back = new FileContent(store, refs, TiB);
    const got = await back.read(at - 2, 3004);
    assert.deepEqual(got, Buffer.concat([Buffer.alloc(2), data, Buffer.alloc(2)]));
    // Writes past the end leave a hole too; adjacent holes merge.
    await back.write(TiB + 2 ** 30, Buffer.from('z'));
    back.truncate(TiB + 2 ** 31);
    const more = await back.rechunk();
    assert.equal(more.filter(isHole).length, 3);
    assert.equal(store.puts, 4);
    assert.equal((await back.read(TiB + 2 ** 30 - 1, 3)).toString('hex'), '007a00');
  });

  it('truncate down into a hole and into data after a hole', async () => {
    const store = new CountingStore(1024);
    const c = new FileContent(store, [], 0);
    await c.write(0, Buffer.alloc(2048, 1));
    c.truncate(TiB);
    await c.write(TiB - 100, Buffer.alloc(100, 2));
    await c.rechunk();
    c.truncate(2 ** 30);
    let refs = await c.rechunk();
    assert.deepEqual(
      refs.map((r) => (isHole(r) ? `h${r.size}` : r.size)),
      [1024, 1024, `h${2 ** 30 - 2048}`],
    );
    c.truncate(1000);
    refs = await c.rechunk();
    assert.deepEqual(
      refs.map((r) => r.size),
      [1000],
    );
    assert.deepEqual(await c.read(0, 2000), Buffer.alloc(1000, 1));
  });

  it('seek, zero and slice/paste match a byte model with a hole map (property)', async () => {
    const op = fc.oneof(
      fc.record({ w: fc.nat(20_000), data: fc.uint8Array({ minLength: 1, maxLength: 3000 }) }),
      fc.record({ t: fc.nat(25_000) }),
      fc.record({ z: fc.nat(25_000), len: fc.integer({ min: 1, max: 9000 }), keep: fc.boolean() }),
      fc.record({ cp: fc.nat(25_000), to: fc.nat(25_000), len: fc.integer({ min: 0, max: 12_000 }) }),
      fc.record({ flush: fc.constant(true) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), fc.nat(26_000), async (steps, probe) => {
        const store = new MemChunkStore(1024);
        const a = new FileContent(store, [], 0, 8192);
        const b = new FileContent(store, [], 0, 8192);
        // model: bytes, and which bytes are holes (true) — a copy carries holes with it
        let bytes = Buffer.alloc(0);
        let hole: boolean[] = [];
        const grow = (n: number): void => {
          if (n <= bytes.length) return;
          hole = hole.concat(new Array<boolean>(n - bytes.length).fill(true));
          bytes = Buffer.concat([bytes, Buffer.alloc(n - bytes.length)]);
        };
        const src = Buffer.alloc(30_000);
        for (let i = 0; i < src.length; i++) src[i] = (i * 7 + 3) & 0xff;
        await b.write(0, src);
        b.truncate(40_000); // b = data then a hole
        for (const s of steps) {
          if ('w' in s) {
            grow(s.w + s.data.length);
            bytes.set(s.data, s.w);
            hole.fill(false, s.w, s.w + s.data.length);
            await a.write(s.w, s.data);
          } else if ('t' in s) {
            if (s.t < bytes.length) {
              bytes = bytes.subarray(0, s.t);
              hole = hole.slice(0, s.t);
            } else grow(s.t);
            a.truncate(s.t);
          } else if ('z' in s) {
            const end = s.keep ? Math.min(bytes.length, s.z + s.len) : s.z + s.len;
            grow(end);
            if (end > s.z) {
              bytes.fill(0, s.z, end);
              hole.fill(true, s.z, end);
            }
            a.zero(s.z, s.len, s.keep);
          } else if ('cp' in s) {
            const n = Math.max(0, Math.min(40_000, s.cp + s.len) - s.cp);
            const piece = b.slice(s.cp, s.len);
            assert.equal(piece.length, n);
            await a.paste(s.to, piece);
            if (n > 0) {
              grow(s.to + n);
              for (let i = 0; i < n; i++) {
                const at = s.cp + i;
                bytes[s.to + i] = at < 30_000 ? src[at]! : 0;
                hole[s.to + i] = at >= 30_000;
              }
            }
          } else await a.rechunk();
          assert.equal(a.size, bytes.length);
        }
        assert.deepEqual(await a.read(0, bytes.length), bytes);
        // SEEK_DATA / SEEK_HOLE from `probe`, against the hole map (the end is a hole; ENXIO is -1)
        const firstData = hole.findIndex((h, i) => i >= probe && !h);
        const firstHole = hole.findIndex((h, i) => i >= probe && h);
        assert.equal(a.seek(probe, true), probe >= bytes.length ? -1 : firstData);
        assert.equal(
          a.seek(probe, false),
          probe >= bytes.length ? -1 : firstHole < 0 ? bytes.length : firstHole,
        );
        const refs = await a.rechunk();
        const back = new FileContent(store, refs, bytes.length);
        assert.deepEqual(await back.read(0, bytes.length), bytes);
        assert.equal(back.seek(probe, true), a.seek(probe, true));
        assert.equal(back.seek(probe, false), a.seek(probe, false));
      }),
      { numRuns: 300 },
    );
  });

  it('copying whole chunks shares them: nothing is read or stored, even across several calls', async () => {
    const store = new CountingStore(1024);
    const data = Buffer.alloc(20 * 1024 + 300);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    const src = new FileContent(store, [], 0);
    await src.write(0, data);
    const srcRefs = await src.rechunk();
    const loaded = new FileContent(store, srcRefs, data.length);
    const dst = new FileContent(store, [], 0);
    const puts = store.puts;
    const gets = store.gets;
    // Three calls whose boundaries fall inside chunks: the parts are joined again.
    await dst.paste(0, loaded.slice(0, 5000));
    await dst.paste(5000, loaded.slice(5000, 7000));
    await dst.paste(12_000, loaded.slice(12_000, 1 << 20));
    const refs = await dst.rechunk();
    assert.equal(store.puts - puts, 0, 'no chunk stored');
    assert.equal(store.gets - gets, 0, 'no chunk read');
    assert.deepEqual(refs, srcRefs);
    // An unaligned copy re-cuts the partial chunks only.
    const off = new FileContent(store, [], 0);
    await off.paste(0, loaded.slice(100, 4096));
    await off.rechunk();
    assert.ok(store.puts - puts <= 5, `stored ${store.puts - puts} chunks`);
    assert.deepEqual(await off.read(0, 4096), data.subarray(100, 4196));
  });

  it('punching a hole drops the chunks of the range; seek sees it', async () => {
    const store = new CountingStore(1024);
    const c = new FileContent(store, [], 0);
    await c.write(0, Buffer.alloc(8192, 9));
    await c.rechunk();
    assert.equal(c.zero(1024, 4096, true), true);
    const refs = await c.rechunk();
    assert.deepEqual(
      refs.map((r) => (isHole(r) ? `h${r.size}` : r.size)),
      [1024, 'h4096', 1024, 1024, 1024],
    );
    assert.equal(c.size, 8192);
    assert.equal(c.dataBytes, 4096);
    assert.equal(c.seek(0, false), 1024);
    assert.equal(c.seek(1024, true), 5120);
    assert.equal(c.seek(8191, false), 8192);
    assert.equal(c.seek(8192, true), -1);
    assert.equal(c.zero(9000, 10, true), false, 'past the end with keep-size: nothing');
    assert.equal(c.size, 8192);
  });
});

describe('FileContent background puts', () => {
  /** A store whose puts wait for `open()` and fail while `failing` is set. */
  class GatedStore extends MemChunkStore {
    failing = false;
    inFlight = 0;
    private gate: Promise<void> = Promise.resolve();
    private release: () => void = () => undefined;
    close(): void {
      this.gate = new Promise((r) => (this.release = r));
    }
    open(): void {
      this.release();
    }
    override async put(chunk: Uint8Array): Promise<ChunkRef> {
      this.inFlight++;
      try {
        await this.gate;
        if (this.failing) throw new Error('disk on fire');
        return await super.put(chunk);
      } finally {
        this.inFlight--;
      }
    }
  }

  it('a streamed chunk whose put failed stays readable; rechunk reports the error, then stores it', async () => {
    const store = new GatedStore(4096);
    const c = new FileContent(store, [], 0);
    store.failing = true;
    const data = Buffer.alloc(5 * 4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await c.write(0, data);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await c.read(0, data.length), data);
    await assert.rejects(c.rechunk(), /disk on fire/);
    store.failing = false;
    const refs = await c.rechunk();
    assert.equal(
      refs.reduce((n, r) => n + r.size, 0),
      data.length,
    );
    assert.deepEqual(await new FileContent(store, refs, data.length).read(0, data.length), data);
  });

  it('a sequential writer waits once PUT_AHEAD_LIMIT bytes of puts are in flight', async () => {
    const size = 1 << 20;
    const store = new GatedStore(size);
    store.close();
    const c = new FileContent(store, [], 0);
    let written = 0;
    const writer = (async () => {
      for (let i = 0; i < 40; i++) {
        await c.write(written, Buffer.alloc(size, i));
        written += size;
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(written < 40 * size, 'the writer is held back');
    assert.ok(store.inFlight * size <= PUT_AHEAD_LIMIT + 2 * size, `${store.inFlight} puts in flight`);
    store.open();
    await writer;
    const refs = await c.rechunk();
    assert.equal(refs.length, 40);
    assert.equal((await c.read(39 * size, 1))[0], 39);
  });
});
