// Worker-thread side of SealPool: computes a chunk's keyed id, seals it and writes its cache file, off the main
// thread. Holds the derived keys (FsCrypto) for its lifetime; knows the cache's file layout, not its index.
import { existsSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { cacheFilePath, writeCacheFileSync } from './cache-files.js';
import type { ChunkIdAlgorithm } from './chunk-id.js';
import { FsCrypto } from './crypto.js';
import { openFetchedAsync } from './fetched.js';
import type { WorkerJob, SealResult } from './seal-pool.js';

// The id algorithm comes from arbor.json via the main thread's FsCrypto: a worker must never hash differently.
const { secret, chunkId, cacheDir } = workerData as {
  secret: Uint8Array;
  chunkId: ChunkIdAlgorithm;
  cacheDir: string;
};
const crypto = new FsCrypto(secret, chunkId);
const madeDirs = new Set<string>();

/**
 * One output buffer, grown as needed and reused for every chunk: the sealed bytes go to the file before the next job
 * starts, so nothing crosses threads and nothing is left for a garbage collector (fresh or transferred buffers per
 * chunk were what drove the main thread's full collections: V8 counts a transferred buffer as new external memory).
 */
let out = Buffer.allocUnsafe(0);
function alloc(size: number): Buffer {
  if (out.length < size) out = Buffer.allocUnsafe(Math.max(size, out.length * 2));
  return out.subarray(0, size);
}

parentPort!.on('message', (m: WorkerJob) => {
  let msg: SealResult;
  try {
    if (m.kind === 'fetched') {
      // A compressed chunk's plaintext is a buffer of its own: copied across (rare; chunks that compress are small).
      openFetchedAsync({ crypto, cacheDir, madeDirs }, m, (fetched) =>
        parentPort!.postMessage(
          (fetched instanceof Error ? failure(m.n, fetched) : { n: m.n, fetched }) satisfies SealResult,
        ),
      );
      return;
    }
    const id = crypto.chunkId(m.data);
    if (!m.force && existsSync(cacheFilePath(cacheDir, id))) {
      msg = { n: m.n, id, stored: 0 };
    } else {
      const sealed = crypto.sealChunk(id, m.data, m.compression, alloc);
      writeCacheFileSync(cacheDir, id, sealed, madeDirs);
      msg = { n: m.n, id, stored: sealed.length };
    }
  } catch (err) {
    msg = failure(m.n, err);
  }
  parentPort!.postMessage(msg);
});

function failure(n: number, err: unknown): SealResult {
  const code = err && typeof err === 'object' && 'code' in err ? String(err.code) : undefined;
  return { n, error: err instanceof Error ? err.message : String(err), ...(code ? { code } : {}) };
}
