// Buffers for one open file's streaming tail (FileContent): shared memory, handed to the sealing worker without a
// copy, and reused once nothing refers to them. Knows nothing of chunks or stores.

/** Below this a tail gets ordinary (pooled) memory: small files never reach a worker (small chunks seal inline). */
const SHARED_MIN = 256 * 1024;

/** Retired buffers kept for reuse: enough to cover the puts in flight behind a streaming writer (PUT_AHEAD_LIMIT). */
const SPARES = 3;

/**
 * Tail buffers of one file. A tail buffer is written only while it is the tail; chunks cut from it are views of it
 * being stored in the background (a worker reads them in place), and the unfinished rest moves to a new tail buffer.
 * A retired buffer is reused only when every chunk view cut from it has been swapped for its stored chunk ref: then
 * nothing refers to its bytes any more. A view that was not swapped (its put failed, or the content changed under it
 * and may still hold parts of it) pins its buffer for good; the garbage collector frees it once unreferenced.
 *
 * Why reuse: a fresh buffer per 8 MiB cut is fresh memory, zeroed and page-faulted in by the kernel; for a streaming
 * writer that cost about as much CPU as copying the bytes in (measured: ~0.4 CPU-s per GiB).
 */
export class TailBuffers {
  private readonly spares: Buffer[] = [];
  /** Chunk views of each shared buffer not yet settled (absent: none). */
  private readonly views = new Map<ArrayBufferLike, number>();
  /** Buffers with a view that will never be swapped: never reused. */
  private readonly pinned = new WeakSet<ArrayBufferLike>();

  /** A buffer of at least `size` bytes, reused when one is free. */
  take(size: number): Buffer {
    if (size < SHARED_MIN) return Buffer.allocUnsafe(size);
    for (let i = 0; i < this.spares.length; i++) {
      const b = this.spares[i]!;
      if (b.length >= size && !this.views.has(b.buffer)) {
        this.spares.splice(i, 1);
        return b;
      }
    }
    return Buffer.from(new SharedArrayBuffer(size));
  }

  /** `buf` is no longer the tail. Only a whole shared buffer can be reused (a view of one may share it with others). */
  retire(buf: Buffer): void {
    if (!(buf.buffer instanceof SharedArrayBuffer)) return;
    if (buf.byteOffset !== 0 || buf.length !== buf.buffer.byteLength || this.pinned.has(buf.buffer)) return;
    this.spares.push(buf);
    if (this.spares.length > SPARES) this.spares.shift();
  }

  /** A chunk view of `buf` is being stored. */
  cut(buf: Buffer): void {
    if (!(buf.buffer instanceof SharedArrayBuffer)) return;
    this.views.set(buf.buffer, (this.views.get(buf.buffer) ?? 0) + 1);
  }

  /** The view's put settled: `swapped` when the content now refers to the chunk ref instead of the view. */
  settled(buf: Buffer, swapped: boolean): void {
    const sab = buf.buffer;
    if (!(sab instanceof SharedArrayBuffer)) return;
    if (!swapped) {
      this.pinned.add(sab);
      const i = this.spares.findIndex((b) => b.buffer === sab);
      if (i >= 0) this.spares.splice(i, 1);
    }
    const n = (this.views.get(sab) ?? 1) - 1;
    if (n > 0) this.views.set(sab, n);
    else this.views.delete(sab);
  }

  /** Forget the spares (the file stopped streaming: flush, fsync, release). */
  clear(): void {
    this.spares.length = 0;
  }
}
