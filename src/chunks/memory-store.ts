// An in-memory ChunkStore for tests and the library API without a cache: real chunker, real keyed ids, no disk, no remote.
import { randomBytes } from 'node:crypto';
import { ChunkCorruptError } from '../errors.js';
import { Chunker, DEFAULT_CHUNKING } from './chunker.js';
import { FsCrypto } from './crypto.js';
import type { ChunkIdAlgorithm } from './chunk-id.js';
import type { ChunkingParams, ChunkRef, ChunkStore } from './types.js';

export interface MemoryChunkStoreOptions {
  /** Cut parameters; tests may use small ones (min ≥ 64, avg a power of two). Default DEFAULT_CHUNKING. */
  chunking?: ChunkingParams;
  /** The 32-byte filesystem secret that keys chunk ids. Default: random per store. */
  secret?: Uint8Array;
  /** Chunk id algorithm. Default DEFAULT_CHUNK_ID. */
  chunkId?: ChunkIdAlgorithm;
}

export class MemoryChunkStore implements ChunkStore {
  readonly chunking: ChunkingParams;
  private readonly chunker: Chunker;
  private readonly crypto: FsCrypto;
  private readonly chunks = new Map<string, Uint8Array>();
  /** Counters for tests: how many put/get calls reached the store. */
  puts = 0;
  gets = 0;

  constructor(opts: MemoryChunkStoreOptions = {}) {
    this.chunker = new Chunker(opts.chunking ?? DEFAULT_CHUNKING);
    this.chunking = this.chunker.params;
    this.crypto = new FsCrypto(opts.secret ?? randomBytes(32), opts.chunkId);
  }

  split(data: Uint8Array, final: boolean): number[] {
    return this.chunker.split(data, final);
  }

  async put(chunk: Uint8Array): Promise<ChunkRef> {
    this.puts++;
    const id = this.crypto.chunkId(chunk);
    if (!this.chunks.has(id)) this.chunks.set(id, Uint8Array.from(chunk));
    return { id, size: chunk.length };
  }

  async get(ref: ChunkRef): Promise<Uint8Array> {
    this.gets++;
    const c = this.chunks.get(ref.id);
    if (!c) throw new ChunkCorruptError(ref.id, 'not in the store');
    if (c.length !== ref.size)
      throw new ChunkCorruptError(ref.id, `size ${c.length} != expected ${ref.size}`);
    return Uint8Array.from(c);
  }

  prefetch(_refs: readonly ChunkRef[]): void {}

  /** Number of distinct chunks held. */
  get size(): number {
    return this.chunks.size;
  }

  /** Total plaintext bytes held (each distinct chunk once). */
  get bytes(): number {
    let n = 0;
    for (const c of this.chunks.values()) n += c.length;
    return n;
  }

  has(id: string): boolean {
    return this.chunks.has(id);
  }
}
