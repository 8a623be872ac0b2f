// What the rest of arbor sees of file content: chunk references and a store that cuts, keeps and returns chunks.
// tree/ and vfs/ depend on this interface only; the real store (cache + remote) and a memory fake implement it.

/** A reference to one chunk: keyed hash of its plaintext (lowercase hex) and its plaintext length in bytes. */
export interface ChunkRef {
  readonly id: string;
  readonly size: number;
}

/**
 * The reserved id of a hole: a ChunkRef with this id stands for `size` zero bytes that are not stored anywhere
 * (truncate up, writes past the end, fallocate). A version's chunk list may contain such entries; nothing is put,
 * uploaded, fetched, verified or garbage-collected for them, and reads of them return zeros without asking a
 * ChunkStore. (No real chunk can have this id: it would be a keyed hash equal to zero.) Its size may be any length
 * up to the maximum file size, so code that walks chunk refs must skip holes (see `isHole`).
 */
export const HOLE_ID = '0'.repeat(64);

/** True when `ref` is a hole (zeros, not stored), not a chunk. */
export function isHole(ref: ChunkRef): boolean {
  return ref.id === HOLE_ID;
}

/** Content-defined chunking parameters; stored in arbor.json so every replica cuts identically. */
export interface ChunkingParams {
  readonly minSize: number;
  readonly avgSize: number;
  readonly maxSize: number;
}

export interface ChunkStore {
  readonly chunking: ChunkingParams;
  /**
   * Content-defined boundaries in `data`: the lengths of consecutive complete chunks from its start.
   * With `final` false, the bytes after the last boundary are not a chunk yet (more data may follow);
   * with `final` true, the tail is a chunk too. Deterministic: depends on the bytes and params only.
   */
  split(data: Uint8Array, final: boolean): number[];
  /**
   * Store one chunk in the local cache (dirty until uploaded), safe against a process crash once it resolves but
   * durable against power loss only after the next `sync()`. Idempotent: same bytes, same ref. A chunk inside a
   * SharedArrayBuffer may be read by a worker thread without a copy: its bytes must not change until this settles.
   */
  put(chunk: Uint8Array): Promise<ChunkRef>;
  /**
   * Make every chunk put so far durable (fsync). Callers run it before making the ops that reference those chunks
   * durable (fsync, fsyncdir). Absent: puts are durable already (or nothing is, as in memory).
   */
  sync?(): Promise<void>;
  /** The chunk's verified plaintext. Throws ChunkCorruptError (EIO), never returns wrong bytes. */
  get(ref: ChunkRef): Promise<Uint8Array>;
  /** Hint: these chunks will be read soon (sequential readahead). Never throws. */
  prefetch?(refs: readonly ChunkRef[]): void;
}
