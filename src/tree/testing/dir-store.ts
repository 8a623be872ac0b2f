// A ChunkStore on a local directory for tests that need content to outlive the process (crash tests, bench).
// Fixed-size cuts, sha256 ids, write-temp-then-rename. Knows nothing of the tree.
import { createHash } from 'node:crypto';
import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { ChunkingParams, ChunkRef, ChunkStore } from '../../chunks/types.js';
import { ChunkCorruptError } from '../../errors.js';
import { MemChunkStore } from './mem-store.js';

export class DirChunkStore implements ChunkStore {
  readonly chunking: ChunkingParams;
  private readonly cutter: MemChunkStore;

  constructor(
    private readonly dir: string,
    chunkSize = 64 * 1024,
  ) {
    mkdirSync(dir, { recursive: true });
    this.cutter = new MemChunkStore(chunkSize);
    this.chunking = this.cutter.chunking;
  }

  split(data: Uint8Array, final: boolean): number[] {
    return this.cutter.split(data, final);
  }

  async put(chunk: Uint8Array): Promise<ChunkRef> {
    const id = createHash('sha256').update(chunk).digest('hex');
    const path = join(this.dir, id);
    const tmp = `${path}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, chunk);
    await fsp.rename(tmp, path);
    return { id, size: chunk.length };
  }

  async get(ref: ChunkRef): Promise<Uint8Array> {
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(join(this.dir, ref.id));
    } catch {
      throw new ChunkCorruptError(ref.id, 'missing');
    }
    if (createHash('sha256').update(bytes).digest('hex') !== ref.id)
      throw new ChunkCorruptError(ref.id, 'hash');
    return bytes;
  }
}
