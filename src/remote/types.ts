// The Remote interface every backend (dir, sftp, s3) implements; keys are '/'-separated relative paths
// such as 'chunks/ab/abcdef…' or 'ops/<replica>/0000000000000001' (DESIGN.md §5).

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
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
   * The whole object read into memory from `alloc(length)` (a buffer of at least `length` bytes that the caller
   * owns and reuses; the answer is a view of its first `length` bytes), so a reader of many objects allocates
   * nothing per object. Optional: callers use get() otherwise. May call `alloc` again on a retry (the earlier
   * buffer is then no longer written to), and may answer a fresh buffer when the object's length is not known
   * before its bytes arrive.
   */
  getInto?(key: string, alloc: (length: number) => Uint8Array): Promise<Uint8Array>;
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
