// The Remote interface every backend (dir, sftp, s3) implements; keys are '/'-separated relative paths
// such as 'chunks/ab/abcdef…' or 'ops/<replica>/0000000000000001' (DESIGN.md §5).

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/** Where getInto puts an object's bytes. */
export interface ReadTarget {
  /**
   * A buffer of at least `length` bytes, the caller's (and reused by it). Called again on a retry: the earlier
   * buffer is then no longer written to.
   */
  alloc(length: number): Uint8Array;
  /**
   * Copy `src` into `dst` at `offset` (default: TypedArray.set). For shared memory, where V8's own copy is a
   * relaxed-atomic loop several times slower than memcpy.
   */
  copy?(dst: Uint8Array, offset: number, src: Uint8Array): void;
}

export interface Remote {
  /** The URL it was opened from, without secrets. */
  readonly url: string;
  /** Write-once create: true if written, false if an object already exists at `key` (it is left unchanged). */
  putIfAbsent(key: string, data: Uint8Array): Promise<boolean>;
  /**
   * putIfAbsent with the bytes of a local file, for backends that can move them without reading them into memory
   * (the dir backend copies in the kernel). Optional: callers read the file and use putIfAbsent otherwise.
   */
  putFileIfAbsent?(key: string, file: string): Promise<boolean>;
  /** The object's bytes (or a range of them). RemoteNotFoundError if absent; RemoteUnavailableError if unreachable. */
  get(key: string, range?: ByteRange): Promise<Uint8Array>;
  /**
   * The whole object read into memory the caller provides (see ReadTarget), so a reader of many objects allocates
   * nothing per object; the answer is a view of the first `length` bytes of `target.alloc(length)`. Optional:
   * callers use get() otherwise. May answer a fresh buffer when the object's length is not known before its bytes
   * arrive.
   */
  getInto?(key: string, target: ReadTarget): Promise<Uint8Array>;
  exists(key: string): Promise<boolean>;
  /** Every key that starts with `prefix`, sorted ascending. */
  list(prefix: string): Promise<string[]>;
  /** Remove an object; removing an absent one is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
  /**
   * Resolves when the store answers (one cheap round trip), throws RemoteUnavailableError when it does not.
   * Optional so test fakes need not implement it; `checkReachable()` in src/remote/index.ts wraps it.
   */
  ping?(): Promise<void>;
}
