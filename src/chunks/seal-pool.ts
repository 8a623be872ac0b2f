// Hashing, sealing and cache-file writing of large chunks on worker threads, so the main thread (which answers FUSE
// requests) keeps running while a chunk is hashed, compressed, encrypted and written. Small chunks are done inline
// by the store: a message round trip costs more than they do. Knows FsCrypto's API and the cache file layout only;
// the cache index (what is resident, the byte limit) stays with the store on the main thread.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Errno, fsError, type ErrnoName } from '../errors.js';
import { cacheFilePath, writeCacheFileSync } from './cache-files.js';
import type { Compression } from './crypto.js';
import { FsCrypto } from './crypto.js';
import { type CacheContext, type FetchedOutcome, openFetched } from './fetched.js';

/**
 * A job sent to a worker: the chunk bytes (a view of the caller's SharedArrayBuffer, or a private copy, transferred),
 * the compression to try, and whether to write the file even if one with the chunk's name exists.
 */
export interface SealJob {
  kind: 'seal';
  n: number;
  data: Uint8Array;
  compression: Compression;
  force: boolean;
}

/** A fetched chunk to cache and open (openFetched): `sealed` is a view of shared memory, changed in place. */
export interface FetchedJob {
  kind: 'fetched';
  n: number;
  id: string;
  size: number;
  sealed: Uint8Array;
  write: boolean;
}

export type WorkerJob = SealJob | FetchedJob;

/**
 * A worker's answer: the keyed id and how many sealed bytes it wrote to the chunk's cache file (0: a file with that
 * name existed, nothing written), or the error (with its errno code name when it came from the filesystem).
 */
export type SealResult =
  | { n: number; id: string; stored: number }
  | { n: number; fetched: FetchedOutcome }
  | { n: number; error: string; code?: string };

export interface StoredChunk {
  id: string;
  /** Sealed bytes written to the cache file; 0 when a file with the chunk's name already existed (not written). */
  stored: number;
}

interface Waiter {
  resolve: (s: StoredChunk | FetchedOutcome) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
  waiting: Map<number, Waiter>;
}

export class SealPool {
  private readonly slots: Slot[] = [];
  private next = 1;
  private closed = false;
  private readonly madeDirs = new Set<string>();

  /** `threads` workers (0: everything inline). A pool whose workers cannot start works inline. */
  constructor(
    private readonly crypto: FsCrypto,
    secret: Uint8Array,
    threads: number,
    private readonly cacheDir: string,
  ) {
    for (let i = 0; i < threads; i++) {
      let worker: Worker;
      try {
        worker = new Worker(new URL('./seal-worker.js', import.meta.url), {
          workerData: { secret, chunkId: crypto.chunkIdAlgorithm, cacheDir },
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

  /** True when chunks are sealed on a worker (else the caller may prefer to hash first and seal only new ones). */
  get offloads(): boolean {
    return !this.closed && this.slots.length > 0;
  }

  /**
   * Compute the chunk's keyed id (FsCrypto.chunkId) and, unless a file with that name exists (or `force`), seal it
   * (FsCrypto.sealChunk) and write its cache file (temp + rename, not fsynced). `data` in a SharedArrayBuffer is read
   * by the worker in place (the caller must not change it until this settles); any other `data` is copied before
   * this returns.
   */
  sealToCache(data: Uint8Array, compression: Compression, force = false): Promise<StoredChunk> {
    const slot = this.pick();
    if (slot === undefined) {
      try {
        return Promise.resolve(this.sealInline(data, compression, force));
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
    return this.post(
      slot,
      { kind: 'seal', n, data: payload, compression, force },
      shared ? [] : [payload.buffer as ArrayBuffer],
    ) as Promise<StoredChunk>;
  }

  /**
   * openFetched on a worker: write the chunk's cache file from `sealed` (if `write`), decrypt it in place and verify
   * it, so the thread that reads from the remote does none of that. `sealed` must be in shared memory (read and
   * changed in place; the caller must not touch it until this settles); other buffers are handled on this thread.
   */
  openFetched(id: string, size: number, sealed: Uint8Array, write: boolean): Promise<FetchedOutcome> {
    const slot = sealed.buffer instanceof SharedArrayBuffer ? this.pick() : undefined;
    if (slot === undefined) {
      try {
        return Promise.resolve(openFetched(this.cacheContext(), id, size, sealed, write));
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return this.post(
      slot,
      { kind: 'fetched', n: this.next++, id, size, sealed, write },
      [],
    ) as Promise<FetchedOutcome>;
  }

  private post(slot: Slot, job: WorkerJob, transfer: ArrayBuffer[]): Promise<StoredChunk | FetchedOutcome> {
    return new Promise((resolve, reject) => {
      slot.waiting.set(job.n, { resolve, reject });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage(job, transfer);
    });
  }

  private cacheContext(): CacheContext {
    return { crypto: this.crypto, cacheDir: this.cacheDir, madeDirs: this.madeDirs };
  }

  private sealInline(data: Uint8Array, compression: Compression, force: boolean): StoredChunk {
    const id = this.crypto.chunkId(data);
    if (!force && existsSync(cacheFilePath(this.cacheDir, id))) return { id, stored: 0 };
    const sealed = this.crypto.sealChunk(id, data, compression);
    writeCacheFileSync(this.cacheDir, id, sealed, this.madeDirs);
    return { id, stored: sealed.length };
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
    if ('error' in r) {
      // A cache write that failed (ENOSPC, EIO, ...) keeps its errno, as the same failure on this thread would.
      const message = `sealing a chunk failed: ${r.error}`;
      w.reject(
        r.code !== undefined && r.code in Errno ? fsError(r.code as ErrnoName, message) : new Error(message),
      );
    } else if ('fetched' in r) w.resolve(r.fetched);
    else w.resolve({ id: r.id, stored: r.stored });
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
