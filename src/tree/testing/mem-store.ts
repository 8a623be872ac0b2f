// An in-memory ChunkStore for tests: fixed-size cuts, sha256 ids. Knows nothing of the tree.
import { createHash } from 'node:crypto';
import type { ChunkingParams, ChunkRef, ChunkStore } from '../../chunks/types.js';
import { ChunkCorruptError } from '../../errors.js';

export class MemChunkStore implements ChunkStore {
  readonly chunking: ChunkingParams;
  readonly chunks = new Map<string, Uint8Array>();
  puts = 0;

  constructor(chunkSize = 64 * 1024) {
    this.chunking = { minSize: chunkSize, avgSize: chunkSize, maxSize: chunkSize };
  }

  split(data: Uint8Array, final: boolean): number[] {
    const size = this.chunking.maxSize;
    const out: number[] = [];
    let left = data.length;
    while (left >= size) {
      out.push(size);
      left -= size;
    }
    if (final && left > 0) out.push(left);
    return out;
  }

  async put(chunk: Uint8Array): Promise<ChunkRef> {
    this.puts++;
    const id = createHash('sha256').update(chunk).digest('hex');
    if (!this.chunks.has(id)) this.chunks.set(id, Uint8Array.from(chunk));
    return { id, size: chunk.length };
  }

  async get(ref: ChunkRef): Promise<Uint8Array> {
    const c = this.chunks.get(ref.id);
    if (!c || c.length !== ref.size) throw new ChunkCorruptError(ref.id, 'missing');
    return c;
  }
}
