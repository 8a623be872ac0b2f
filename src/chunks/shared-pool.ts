// Reused shared-memory buffers for fetched chunks. A fetched chunk's sealed bytes live from its GET until a reader
// takes them (readahead holds them for a while): fresh MiB-sized buffers with that lifetime outlived V8's young
// generation, and the external memory they added drove a full (mark-compact) collection every ~50 ms on the thread
// that reads from the remote. Shared memory, because a seal worker writes and decrypts them in place.

/** Capacity granule: chunk sizes vary, and a slot serves any later chunk that fits. */
const GRANULE = 256 * 1024;

export class SharedBufferPool {
  private readonly free: SharedArrayBuffer[] = [];
  private freeBytes = 0;

  /** Keeps at most `maxFreeBytes` of unused buffers; more are left to the garbage collector. */
  constructor(private readonly maxFreeBytes: number) {}

  /** A buffer of exactly `n` bytes (contents undefined) over a SharedArrayBuffer owned by the caller until release. */
  acquire(n: number): Buffer {
    // Most recently released first: its bytes are likeliest still in a CPU cache (the seal worker then copies them
    // into the page cache, decrypts and hashes them: memory traffic is most of what a fetched chunk costs).
    let sab: SharedArrayBuffer | undefined;
    for (let i = this.free.length - 1; i >= 0; i--) {
      if (this.free[i]!.byteLength >= n) {
        sab = this.free.splice(i, 1)[0]!;
        this.freeBytes -= sab.byteLength;
        break;
      }
    }
    sab ??= new SharedArrayBuffer(Math.max(GRANULE, Math.ceil(n / GRANULE) * GRANULE));
    return Buffer.from(sab, 0, n);
  }

  /** Give back a buffer from acquire() (any view of it); nobody may use it afterwards. */
  release(b: Uint8Array): void {
    const sab = b.buffer;
    if (!(sab instanceof SharedArrayBuffer)) return;
    if (this.freeBytes + sab.byteLength > this.maxFreeBytes) {
      // Full: keep the larger buffers, which serve any chunk.
      let smallest = -1;
      for (let i = 0; i < this.free.length; i++) {
        if (smallest < 0 || this.free[i]!.byteLength < this.free[smallest]!.byteLength) smallest = i;
      }
      if (smallest < 0 || this.free[smallest]!.byteLength >= sab.byteLength) return;
      this.freeBytes -= this.free[smallest]!.byteLength;
      this.free[smallest] = this.free[this.free.length - 1]!;
      this.free.pop();
      if (this.freeBytes + sab.byteLength > this.maxFreeBytes) return;
    }
    this.free.push(sab);
    this.freeBytes += sab.byteLength;
  }
}
