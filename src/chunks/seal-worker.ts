// Worker-thread side of SealPool: computes a chunk's keyed id and sealed bytes off the main thread. Holds the derived
// keys (FsCrypto) for its lifetime; knows nothing of caches or files.
import { parentPort, workerData } from 'node:worker_threads';
import type { ChunkIdAlgorithm } from './chunk-id.js';
import { FsCrypto, type Compression } from './crypto.js';
import type { SealJob, SealResult } from './seal-pool.js';

// The id algorithm comes from arbor.json via the main thread's FsCrypto: a worker must never hash differently.
const { secret, chunkId } = workerData as { secret: Uint8Array; chunkId: ChunkIdAlgorithm };
const crypto = new FsCrypto(secret, chunkId);

parentPort!.on('message', (job: SealJob) => {
  let msg: SealResult;
  let transfer: ArrayBuffer[] = [];
  try {
    const id = crypto.chunkId(job.data);
    const sealed = crypto.sealChunk(id, job.data, job.compression satisfies Compression);
    // Hand the sealed bytes over without a copy when they own their whole ArrayBuffer (large Buffers do).
    const own = sealed.byteOffset === 0 && sealed.byteLength === sealed.buffer.byteLength;
    const out = own ? sealed : new Uint8Array(sealed);
    msg = { n: job.n, id, sealed: out };
    transfer = [out.buffer as ArrayBuffer];
  } catch (err) {
    msg = { n: job.n, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(msg, transfer);
});
