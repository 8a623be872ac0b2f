// Worker-thread side of SealPool: computes a chunk's keyed id and sealed bytes off the main thread. Holds the derived
// keys (FsCrypto) for its lifetime; knows nothing of caches or files.
import { parentPort, workerData } from 'node:worker_threads';
import type { ChunkIdAlgorithm } from './chunk-id.js';
import { FsCrypto, type Compression } from './crypto.js';
import type { SealResult, WorkerMessage } from './seal-pool.js';

// The id algorithm comes from arbor.json via the main thread's FsCrypto: a worker must never hash differently.
const { secret, chunkId } = workerData as { secret: Uint8Array; chunkId: ChunkIdAlgorithm };
const crypto = new FsCrypto(secret, chunkId);

/**
 * Output buffers the main thread handed back (SealPool.recycle), by capacity (powers of two). A fresh buffer per
 * sealed chunk was most of the external memory that drove the main thread's full garbage collections (~10% of a
 * sequential write's CPU there); a returned one is reused instead.
 */
const free = new Map<number, ArrayBuffer[]>();
const FREE_PER_SIZE = 8;

function capacityOf(size: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(size, 64 * 1024)));
}

function alloc(size: number): Buffer {
  const ab = free.get(capacityOf(size))?.pop() ?? new ArrayBuffer(capacityOf(size));
  return Buffer.from(ab, 0, size);
}

parentPort!.on('message', (m: WorkerMessage) => {
  if ('recycle' in m) {
    const list = free.get(m.recycle.byteLength) ?? [];
    if (list.length < FREE_PER_SIZE && m.recycle.byteLength === capacityOf(m.recycle.byteLength)) {
      list.push(m.recycle);
      free.set(m.recycle.byteLength, list);
    }
    return;
  }
  let msg: SealResult;
  let transfer: ArrayBuffer[] = [];
  try {
    const id = crypto.chunkId(m.data);
    const sealed = crypto.sealChunk(id, m.data, m.compression satisfies Compression, alloc);
    // The sealed bytes start a buffer of their own (alloc above): hand it over without a copy.
    msg = { n: m.n, id, sealed };
    transfer = [sealed.buffer as ArrayBuffer];
  } catch (err) {
    msg = { n: m.n, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(msg, transfer);
});
