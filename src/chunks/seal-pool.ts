// Hashing and sealing of large chunks on worker threads, so the main thread (which answers FUSE requests) keeps
// running while a chunk is hashed, compressed and encrypted. Small chunks are done inline: a message round trip
// costs more than they do. Knows FsCrypto's API only.
import { Worker } from 'node:worker_threads';
import type { Compression } from './crypto.js';
import { FsCrypto } from './crypto.js';

/**
 * A job sent to a worker: the chunk bytes (a view of the caller's SharedArrayBuffer, or a private copy, transferred)
 * and the compression to try.
 */
export interface SealJob {
  n: number;
  data: Uint8Array;
  compression: Compression;
}

/** An output buffer handed back to a worker for reuse (SealPool.recycle). */
export interface RecycleMessage {
  recycle: ArrayBuffer;
}

export type WorkerMessage = SealJob | RecycleMessage;

/** A worker's answer: the keyed id and sealed bytes (at the start of their own ArrayBuffer), or the error message. */
export type SealResult = { n: number; id: string; sealed: Uint8Array } | { n: number; error: string };

export interface Sealed {
  id: string;
  sealed: Uint8Array;
}

/** Below this size a chunk is sealed inline (the copy and two thread hops would cost more than the work). */
const INLINE_BELOW = 64 * 1024;

interface Slot {
  worker: Worker;
  busy: number;
  waiting: Map<number, { resolve: (s: Sealed) => void; reject: (e: Error) => void }>;
}

export class SealPool {
  private readonly slots: Slot[] = [];
  private next = 1;
  private closed = false;
  /** Buffers of sealed bytes that came from a worker: only these are handed back by recycle(). */
  private readonly fromWorkers = new WeakSet<ArrayBufferLike>();
  private recycleNext = 0;

  /** `threads` workers (0: everything inline). A pool whose workers cannot start seals inline. */
  constructor(
    private readonly crypto: FsCrypto,
    secret: Uint8Array,
    threads: number,
  ) {
    for (let i = 0; i < threads; i++) {
      let worker: Worker;
      try {
        worker = new Worker(new URL('./seal-worker.js', import.meta.url), {
          workerData: { secret, chunkId: crypto.chunkIdAlgorithm },
        });
      } catch {
        break;
      }
      const slot: Slot = { worker, busy: 0, waiting: new Map() };
      worker.on('message', (r: SealResult) => this.settle(slot, r));
      worker.on('error', (err) => this.fail(slot, err));
      worker.on('exit', () => this.fail(slot, new Error('seal worker exited')));
      worker.unref(); // an idle pool never keeps the process alive; busy slots are ref'd while they work
      this.slots.push(slot);
    }
  }

  /** True when a chunk of `length` bytes is sealed on a worker (else inline, and a caller may hash it first). */
  offloads(length: number): boolean {
    return length >= INLINE_BELOW && !this.closed && this.slots.length > 0;
  }

  /**
   * The chunk's keyed id and sealed bytes (FsCrypto.chunkId + sealChunk). `data` in a SharedArrayBuffer is read by
   * the worker in place (the caller must not change it until this settles); any other `data` is copied before this
   * returns.
   */
  seal(data: Uint8Array, compression: Compression): Promise<Sealed> {
    const slot = this.pick();
    if (slot === undefined || data.length < INLINE_BELOW) {
      try {
        const id = this.crypto.chunkId(data);
        return Promise.resolve({ id, sealed: this.crypto.sealChunk(id, data, compression) });
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    const n = this.next++;
    // Shared memory is posted as a view (no copy: a copy of every chunk on the thread answering FUSE requests cost
    // as much as a third of a sequential write's CPU there). Other buffers may be views into a larger one that the
    // caller keeps using: send a private copy of just these bytes.
    const shared = data.buffer instanceof SharedArrayBuffer;
    const payload = shared ? data : new Uint8Array(data);
    return new Promise((resolve, reject) => {
      slot.waiting.set(n, { resolve, reject });
      if (slot.busy++ === 0) slot.worker.ref();
      const job: SealJob = { n, data: payload, compression };
      slot.worker.postMessage(job, shared ? [] : [payload.buffer as ArrayBuffer]);
    });
  }

  private pick(): Slot | undefined {
    if (this.closed) return undefined;
    let best: Slot | undefined;
    for (const s of this.slots) if (best === undefined || s.busy < best.busy) best = s;
    return best;
  }

  private settle(slot: Slot, r: SealResult): void {
    const w = slot.waiting.get(r.n);
    if (w === undefined) return;
    slot.waiting.delete(r.n);
    if (--slot.busy === 0) slot.worker.unref();
    if ('error' in r) w.reject(new Error(`sealing a chunk failed: ${r.error}`));
    else {
      this.fromWorkers.add(r.sealed.buffer);
      w.resolve({ id: r.id, sealed: r.sealed });
    }
  }

  /**
   * The caller is done with sealed bytes from `seal()`: nothing reads or keeps them any more (written, uploaded, or a
   * duplicate). A worker's buffer goes back to a worker to be sealed into again; anything else is left to the GC.
   */
  recycle(sealed: Uint8Array): void {
    const ab = sealed.buffer;
    if (this.closed || this.slots.length === 0 || !this.fromWorkers.has(ab)) return;
    this.fromWorkers.delete(ab);
    const slot = this.slots[this.recycleNext++ % this.slots.length]!;
    const msg: RecycleMessage = { recycle: ab as ArrayBuffer };
    slot.worker.postMessage(msg, [ab as ArrayBuffer]);
  }

  /** A worker died: its jobs fail (their callers keep the bytes and may retry) and it takes no more. */
  private fail(slot: Slot, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    for (const w of slot.waiting.values()) w.reject(err);
    slot.waiting.clear();
  }

  /** Stop the workers (jobs still running are rejected). */
  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
