// An open file's content: chunk-backed segments plus dirty in-memory and hole segments; reads, writes, truncate,
// re-chunking into a new chunk list. Knows the ChunkStore interface only; nothing of the tree, SQLite or FUSE.
import { HOLE_ID, isHole, type ChunkRef, type ChunkStore } from '../chunks/types.js';
import { copyBytes } from '../chunks/accel.js';
import { TailBuffers } from './tail-buffers.js';

/**
 * A byte range of the file: part of a stored chunk, dirty bytes in memory, or a hole (zeros). A dirty segment that is
 * exactly one chunk being stored in the background carries that put (`put`); it becomes a 'c' segment when the put
 * succeeds, and stays dirty bytes if it fails (the next rechunk stores them again and reports the error).
 */
type MemSeg = { k: 'm'; buf: Buffer; len: number; put?: Promise<ChunkRef | undefined> };
type Seg = { k: 'c'; ref: ChunkRef; off: number; len: number } | MemSeg | { k: 'z'; len: number };

/** A byte range taken from one file's content by `FileContent.slice`, to be pasted into another (or the same). */
export interface ContentSlice {
  readonly length: number;
  readonly segs: readonly Seg[];
}

/** Dirty bytes one open file may hold before it is spilled into chunks (no version is recorded by a spill). */
export const DEFAULT_DIRTY_LIMIT = 64 * 1024 * 1024;

/**
 * Bytes of streamed chunks one open file may have in background puts: a sequential writer's WRITE is answered once
 * its bytes are in memory while earlier chunks are hashed, sealed and written; beyond this it waits for the oldest.
 */
export const PUT_AHEAD_LIMIT = 16 * 1024 * 1024;

/** A hole ref of `len` zero bytes (nothing stored). */
export function holeRef(len: number): ChunkRef {
  return { id: HOLE_ID, size: len };
}

function segOf(ref: ChunkRef): Seg {
  return isHole(ref) ? { k: 'z', len: ref.size } : { k: 'c', ref, off: 0, len: ref.size };
}

/** Cuts a stream of bytes into content-defined chunks as it arrives, storing complete chunks at once. */
export class Rechunker {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  readonly out: ChunkRef[] = [];

  constructor(private readonly store: ChunkStore) {}

  async push(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    this.pending.push(Buffer.from(data.buffer, data.byteOffset, data.length));
    this.pendingLen += data.length;
    if (this.pendingLen >= this.store.chunking.maxSize * 2) await this.cut(false);
  }

  /** Emit a ready chunk unchanged (only valid when nothing is pending, else the pending bytes are closed first). */
  async pushRef(ref: ChunkRef): Promise<void> {
    if (isHole(ref)) return this.pushHole(ref.size);
    if (this.pendingLen > 0) await this.cut(true);
    this.out.push(ref);
  }

  /** Emit `len` zero bytes as a hole (pending bytes are closed first; adjacent holes merge). */
  async pushHole(len: number): Promise<void> {
    if (len <= 0) return;
    if (this.pendingLen > 0) await this.cut(true);
    const last = this.out[this.out.length - 1];
    if (last !== undefined && isHole(last)) this.out[this.out.length - 1] = holeRef(last.size + len);
    else this.out.push(holeRef(len));
  }

  async end(): Promise<ChunkRef[]> {
    if (this.pendingLen > 0) await this.cut(true);
    return this.out;
  }

  private async cut(final: boolean): Promise<void> {
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    const lens = this.store.split(buf, final);
    let off = 0;
    for (const len of lens) {
      this.out.push(await this.store.put(buf.subarray(off, off + len)));
      off += len;
    }
    const rest = buf.subarray(off);
    this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.pendingLen = rest.length;
  }
}

/** The content of one open inode, shared by all its handles. Callers serialize operations with `lock`. */
export class FileContent {
  private segs: Seg[];
  private _size: number;
  private _dirty = 0;
  /** True when the bytes differ from the version this content was loaded from or last recorded. */
  changed = false;
  private tail: Promise<unknown> = Promise.resolve();
  /** Locked operations queued or running (see `idle`). */
  private locked = 0;
  private readonly unlock = (): void => {
    this.locked--;
  };
  private cache = new Map<string, Uint8Array>();
  /** Background puts of streamed chunks, oldest first, and their bytes (see PUT_AHEAD_LIMIT). */
  private readonly puts: Promise<unknown>[] = [];
  private putBytes = 0;
  /** A streaming writer's tail buffers (shared with the sealing worker, reused). */
  private readonly tails = new TailBuffers();
  /** A cut of the streaming tail is queued (see scheduleCut). */
  private cutScheduled = false;

  constructor(
    private readonly store: ChunkStore,
    chunks: readonly ChunkRef[],
    size: number,
    private readonly dirtyLimit = DEFAULT_DIRTY_LIMIT,
  ) {
    this.segs = [];
    this._size = 0;
    this.load(chunks, size);
  }

  get size(): number {
    return this._size;
  }
  get dirtyBytes(): number {
    return this._dirty;
  }
  /** Bytes that are data (stored or dirty), not holes: what st_blocks counts. */
  get dataBytes(): number {
    let n = 0;
    for (const s of this.segs) if (s.k !== 'z') n += s.len;
    return n;
  }

  /** Replace the content with a stored version (drops dirty data: only call when `changed` is false). */
  load(chunks: readonly ChunkRef[], size: number): void {
    this.segs = chunks.filter((ref) => ref.size > 0).map(segOf);
    let total = 0;
    for (const c of chunks) total += c.size;
    this._size = total;
    this._dirty = 0;
    this.changed = false;
    if (size !== total) this.resize(size);
    this.changed = false;
  }

  /** Serialize async operations on this content (FUSE may send overlapping writes). */
  lock<T>(fn: () => Promise<T>): Promise<T> {
    this.locked++;
    const run = this.tail.then(fn, fn);
    this.tail = run.then(this.unlock, this.unlock);
    return run;
  }

  /** No locked operation is queued or running: a caller may read `changed` and act on it synchronously. */
  get idle(): boolean {
    return this.locked === 0;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset >= this._size || length <= 0) return Buffer.alloc(0);
    const end = Math.min(this._size, offset + length);
    const out = Buffer.alloc(end - offset);
    let pos = 0;
    for (const s of this.segs) {
      const sEnd = pos + s.len;
      if (sEnd > offset && pos < end) {
        const from = Math.max(offset, pos) - pos;
        const to = Math.min(end, sEnd) - pos;
        const dst = Math.max(offset, pos) - offset;
        if (s.k === 'm') s.buf.copy(out, dst, from, to);
        else if (s.k === 'c') {
          const bytes = await this.chunk(s.ref);
          out.set(bytes.subarray(s.off + from, s.off + to), dst);
        }
      }
      pos = sEnd;
      if (pos >= end) break;
    }
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<number> {
    if (data.length === 0) return 0;
    this.changed = true;
    // Writes that arrived together (several queued requests) can come before a scheduled cut: cut now, or the tail
    // would outgrow its buffer and streaming would stop until the next rechunk.
    if (this.cutScheduled) this.cutStreamingTail();
    const last = this.segs[this.segs.length - 1];
    const growLimit = this.store.chunking.maxSize * 2 + 1024 * 1024;
    if (
      offset === this._size &&
      last?.k === 'm' &&
      last.len + data.length <= Math.max(last.buf.length, growLimit)
    ) {
      if (last.buf.length - last.len < data.length) {
        // Amortized growth; buffers made by splitAt have no spare capacity, so this never writes into shared memory.
        const cap = Math.min(
          Math.max(last.buf.length * 2, last.len + data.length),
          Math.max(growLimit, last.len + data.length),
        );
        const grown = this.tails.take(cap);
        copyBytes(grown, 0, last.buf.subarray(0, last.len));
        this.tails.retire(last.buf);
        last.buf = grown;
      }
      copyBytes(last.buf, last.len, data);
      last.len += data.length;
    } else if (offset >= this._size) {
      if (offset > this._size) this.segs.push({ k: 'z', len: offset - this._size });
      const cap = Math.max(data.length, Math.min(growLimit, data.length * 4));
      const buf = this.tails.take(cap);
      copyBytes(buf, 0, data);
      this.segs.push({ k: 'm', buf, len: data.length });
    } else {
      const buf = Buffer.from(data);
      this.replace(offset, Math.min(data.length, this._size - offset), [{ k: 'm', buf, len: buf.length }]);
    }
    this._size = Math.max(this._size, offset + data.length);
    this._dirty += data.length;
    this.scheduleCut();
    while (this.putBytes > PUT_AHEAD_LIMIT) await this.puts[0];
    if (this._dirty > this.dirtyLimit) await this.rechunk();
    return data.length;
  }

  truncate(size: number): void {
    if (size === this._size) return;
    this.changed = true;
    this.resize(size);
  }

  /** Turn all content into chunk references (storing new chunks); returns the chunk list. */
  async rechunk(): Promise<ChunkRef[]> {
    const r = new Rechunker(this.store);
    // A snapshot: background puts settling meanwhile swap segments of this.segs for equivalent ones.
    for (const s of [...this.segs]) {
      const stored = s.k === 'm' && s.put !== undefined ? await s.put : undefined;
      if (stored !== undefined) await r.pushRef(stored);
      else if (s.k === 'c' && s.off === 0 && s.len === s.ref.size) await r.pushRef(s.ref);
      else if (s.k === 'c') await r.push((await this.chunk(s.ref)).subarray(s.off, s.off + s.len));
      else if (s.k === 'm') await r.push(s.buf.subarray(0, s.len));
      else await r.pushHole(s.len);
    }
    const refs = await r.end();
    this.segs = refs.map(segOf);
    this._dirty = 0;
    this.tails.clear();
    return refs;
  }

  /**
   * Cut the streaming tail soon, but after this write has been answered: the chunker's scan of the new bytes then
   * runs while the writer (a separate process, on the other core) copies its next buffer into the kernel, instead
   * of before its reply. Locked like any other operation, so it sees a settled content.
   */
  private scheduleCut(): void {
    if (this.cutScheduled) return;
    const last = this.segs[this.segs.length - 1];
    if (last?.k !== 'm' || last.len < this.store.chunking.maxSize * 2) return;
    this.cutScheduled = true;
    setImmediate(() => {
      this.cutScheduled = false;
      void this.lock(async () => this.cutStreamingTail());
    });
  }

  /**
   * Sequential writers: cut the dirty tail into chunks as soon as it is big enough, keeping the unfinished part. The
   * chunks are stored in the background (the write that completed them need not wait for hashing and sealing); each
   * stays a dirty segment until its put settles.
   */
  private cutStreamingTail(): void {
    const n = this.segs.length;
    const last = this.segs[n - 1];
    if (last?.k !== 'm' || last.len < this.store.chunking.maxSize * 2) return;
    // Only when everything before the tail is whole chunks (stored or being stored): the tail starts at a boundary.
    for (let i = 0; i < n - 1; i++) {
      const s = this.segs[i]!;
      if (s.k === 'z' || (s.k === 'm' && s.put !== undefined)) continue;
      if (s.k !== 'c' || s.off !== 0 || s.len !== s.ref.size) return;
    }
    const data = last.buf.subarray(0, last.len);
    const lens = this.store.split(data, false);
    const cut: Seg[] = [];
    let off = 0;
    for (const len of lens) {
      // A view of the old tail buffer, which nothing writes into again (the rest is copied to a new one below).
      const seg: MemSeg = { k: 'm', buf: data.subarray(off, off + len), len };
      seg.put = this.putInBackground(seg);
      cut.push(seg);
      off += len;
    }
    const rest = last.len - off;
    const buf = this.tails.take(Math.max(rest, last.buf.length));
    copyBytes(buf, 0, data.subarray(off));
    this.tails.retire(last.buf);
    this.segs.splice(n - 1, 1, ...cut, { k: 'm', buf, len: rest });
  }

  /** Store one whole-chunk segment; on success swap it for the chunk ref (if it is still part of the content). */
  private putInBackground(seg: MemSeg): Promise<ChunkRef | undefined> {
    this.putBytes += seg.len;
    this.tails.cut(seg.buf);
    const p = this.store.put(seg.buf).then(
      (ref) => {
        const i = this.segs.indexOf(seg);
        if (i >= 0) {
          this.segs[i] = { k: 'c', ref, off: 0, len: seg.len };
          this._dirty -= seg.len;
        }
        // Not swapped: the content changed under the view (it may still hold parts of it), so its buffer is pinned.
        this.tails.settled(seg.buf, i >= 0);
        return ref;
      },
      () => {
        // The bytes stay dirty in memory: the next rechunk stores them again and reports the error.
        this.tails.settled(seg.buf, false);
        return undefined;
      },
    );
    const tracked = p.finally(() => {
      this.putBytes -= seg.len;
      this.puts.splice(this.puts.indexOf(tracked), 1);
    });
    this.puts.push(tracked);
    return p;
  }

  private resize(size: number): void {
    if (size > this._size) {
      this.segs.push({ k: 'z', len: size - this._size });
    } else {
      this.splitAt(size);
      let pos = 0;
      let i = 0;
      while (i < this.segs.length && pos < size) pos += this.segs[i++]!.len;
      for (const s of this.segs.slice(i)) if (s.k === 'm') this._dirty -= s.len;
      this.segs.length = i;
    }
    this._size = size;
  }

  /** Make `at` a segment boundary. */
  private splitAt(at: number): void {
    let pos = 0;
    for (let i = 0; i < this.segs.length; i++) {
      const s = this.segs[i]!;
      if (at > pos && at < pos + s.len) {
        const a = at - pos;
        let left: Seg;
        let right: Seg;
        if (s.k === 'c') {
          left = { k: 'c', ref: s.ref, off: s.off, len: a };
          right = { k: 'c', ref: s.ref, off: s.off + a, len: s.len - a };
        } else if (s.k === 'm') {
          left = { k: 'm', buf: s.buf.subarray(0, a), len: a };
          right = { k: 'm', buf: s.buf.subarray(a, s.len), len: s.len - a };
        } else {
          left = { k: 'z', len: a };
          right = { k: 'z', len: s.len - a };
        }
        this.segs.splice(i, 1, left, right);
        return;
      }
      pos += s.len;
      if (pos >= at) return;
    }
  }

  // ---- sparse seeking, zeroing and range copies (lseek SEEK_DATA/SEEK_HOLE, fallocate, copy_file_range)

  /**
   * SEEK_DATA (`data` true) or SEEK_HOLE: the first offset at or after `offset` that is data (stored or dirty bytes)
   * or a hole. The end of the file counts as a hole, as on Linux. Dirty bytes are data even when they are zeros
   * (ext4 reports written zeros as data too). -1 when `offset` is at or past the end, or no data follows it: the
   * caller answers ENXIO.
   */
  seek(offset: number, data: boolean): number {
    if (!(offset >= 0 && offset < this._size)) return -1;
    let pos = 0;
    for (const s of this.segs) {
      const end = pos + s.len;
      if (end > offset && (s.k === 'z') !== data) return Math.max(pos, offset);
      pos = end;
    }
    return data ? -1 : this._size;
  }

  /**
   * Make [offset, offset+length) zeros, stored as a hole (fallocate PUNCH_HOLE and ZERO_RANGE): nothing is written
   * and the range's chunks are no longer referenced by the next version. With `keepSize` the size never grows.
   * Returns whether anything changed.
   */
  zero(offset: number, length: number, keepSize: boolean): boolean {
    if (length <= 0) return false;
    const end = offset + length;
    const inside = Math.min(end, this._size);
    const grows = !keepSize && end > this._size;
    if (inside > offset) this.replace(offset, inside - offset, [{ k: 'z', len: inside - offset }]);
    if (grows) this.resize(end);
    if (inside > offset || grows) this.changed = true;
    return inside > offset || grows;
  }

  /**
   * The bytes of [offset, offset+length), clipped to the size, as segments that share this content's chunk refs
   * (nothing is read from the store; dirty bytes are copied, since this content may change before they are used).
   */
  slice(offset: number, length: number): ContentSlice {
    const end = Math.min(this._size, offset + length);
    const segs: Seg[] = [];
    let pos = 0;
    for (const s of this.segs) {
      if (pos >= end) break;
      const sEnd = pos + s.len;
      if (sEnd > offset) {
        const from = Math.max(offset, pos) - pos;
        const to = Math.min(end, sEnd) - pos;
        if (s.k === 'c') segs.push({ k: 'c', ref: s.ref, off: s.off + from, len: to - from });
        else if (s.k === 'm')
          segs.push({ k: 'm', buf: Buffer.from(s.buf.subarray(from, to)), len: to - from });
        else segs.push({ k: 'z', len: to - from });
      }
      pos = sEnd;
    }
    return { segs, length: Math.max(0, end - offset) };
  }

  /**
   * Write a slice at `offset` (copy_file_range). Whole chunks of the source stay whole chunk refs here, so recording
   * the next version stores nothing new for them (a reflink-like copy); parts of chunks are re-cut at the next
   * rechunk like any edit. A gap between the end and `offset` becomes a hole.
   */
  async paste(offset: number, slice: ContentSlice): Promise<void> {
    if (slice.length === 0) return;
    this.changed = true;
    if (offset > this._size) this.resize(offset);
    const i = this.replace(offset, Math.min(slice.length, this._size - offset), slice.segs);
    for (const s of slice.segs) if (s.k === 'm') this._dirty += s.len;
    this._size = Math.max(this._size, offset + slice.length);
    // A copy made in several calls splits chunks at the call boundaries: join the parts again, so a chunk copied
    // whole across two calls is still shared rather than re-cut and stored again.
    this.coalesce(Math.max(0, i - 1), i + slice.segs.length + 1);
    if (this._dirty > this.dirtyLimit) await this.rechunk();
  }

  /**
   * Replace [offset, offset+len) (within the size) with `segs`, which may be longer (a write extending past the end);
   * returns the index of the first inserted segment.
   */
  private replace(offset: number, len: number, segs: readonly Seg[]): number {
    this.splitAt(offset);
    this.splitAt(offset + len);
    let pos = 0;
    let i = 0;
    while (pos < offset) pos += this.segs[i++]!.len;
    let j = i;
    while (pos < offset + len) {
      const s = this.segs[j++]!;
      if (s.k === 'm') this._dirty -= s.len;
      pos += s.len;
    }
    this.segs.splice(i, j - i, ...segs);
    return i;
  }

  /** Merge neighbours in segs[from, to): consecutive parts of one chunk, and adjacent holes. */
  private coalesce(from: number, to: number): void {
    for (let i = Math.min(to, this.segs.length - 1); i > from; i--) {
      const a = this.segs[i - 1]!;
      const b = this.segs[i]!;
      if (a.k === 'c' && b.k === 'c' && a.ref.id === b.ref.id && a.off + a.len === b.off) {
        this.segs.splice(i - 1, 2, { k: 'c', ref: a.ref, off: a.off, len: a.len + b.len });
      } else if (a.k === 'z' && b.k === 'z') {
        this.segs.splice(i - 1, 2, { k: 'z', len: a.len + b.len });
      }
    }
  }

  private async chunk(ref: ChunkRef): Promise<Uint8Array> {
    const hit = this.cache.get(ref.id);
    if (hit) return hit;
    const bytes = await this.store.get(ref);
    if (this.cache.size >= 4) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(ref.id, bytes);
    return bytes;
  }
}
