// The optional native addon for the chunk pipeline's hot loops (native/accel): AES-256-GCM into a caller's buffer
// (its own AVX-512 code, or OpenSSL) and the gear-hash cut scan. Absent (not built, or ARBOR_NO_NATIVE=1) →
// undefined, and callers use their byte-identical JavaScript paths; accel.test.ts checks both paths against each
// other.
import { loadOptionalAddon } from '../native.js';

/**
 * The addon's AES-256-GCM implementations: its own VAES + VPCLMULQDQ code on 512-bit vectors (CPUs with AVX-512
 * and those extensions, ~2.2× the other) or the OpenSSL linked into node. Same bytes either way.
 */
export type GcmImpl = 'vaes-avx512' | 'openssl';

export interface Accel {
  /**
   * AES-256-GCM. Encrypt: out = ciphertext(src.length) ‖ tag(16), returns true. Decrypt: src = ciphertext ‖ tag,
   * out = plaintext (src.length − 16); returns false when the tag does not verify, and out is then zeroed. out may
   * be src's own bytes (in place). `impl` picks an implementation (tests; 'vaes-avx512' throws where the CPU lacks
   * it); omitted, `gcmImpl` runs.
   */
  gcm(
    encrypt: boolean,
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    src: Uint8Array,
    out: Uint8Array,
    impl?: GcmImpl,
  ): boolean;
  /**
   * Which GCM `gcm` runs by default: 'vaes-avx512' where the CPU and OS support it, unless ARBOR_GCM_IMPL=openssl
   * is set. Absent from addons built before it (they run OpenSSL).
   */
  readonly gcmImpl?: GcmImpl;
  /**
   * Gear-hash scan from `from` (hash 0) with maskS up to `mid`, then maskL up to `to`; the index just past the
   * first cut, or -1. `gear` is the 256-entry table (Int32Array).
   */
  gearScan(
    data: Uint8Array,
    from: number,
    mid: number,
    to: number,
    maskS: number,
    maskL: number,
    gear: Int32Array,
  ): number;
  /**
   * memcpy of all of `src` into `dst` at `dstOffset` (RangeError if it does not fit). For shared memory, where V8's
   * own copy is a slow relaxed-atomic loop; the caller guarantees no other thread uses that range meanwhile.
   */
  copy(dst: Uint8Array, dstOffset: number, src: Uint8Array): void;
  /** Which gearScan this CPU runs: sixteen AVX-512 lanes (VBMI table lookups) or six scalar ones. */
  readonly scanImpl?: 'avx512vbmi' | 'scalar';
  /** glibc mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD); false elsewhere. */
  tuneMalloc(mmapThreshold: number, trimThreshold: number): boolean;
  /**
   * Mark a directory as the top of a hierarchy for ext4's allocator (chattr +T): subdirectories made under it are
   * spread over block groups. False where the filesystem has no such flag. Absent from addons built before it.
   */
  markTopDir?(path: string): boolean;
  /**
   * Create (or truncate) `path`, mode 0600, holding `bytes`: whole 4 KiB blocks with O_DIRECT, so the page cache is
   * left alone, the rest buffered; an ordinary write where the filesystem refuses O_DIRECT. True when it bypassed
   * the page cache. Throws an Error whose `code` is the errno name. Not fsynced. Absent from older builds.
   */
  writeFileDirect?(path: string, bytes: Uint8Array): boolean;
  /**
   * writeFileDirect on a libuv threadpool thread; `callback(err, wasDirect)` on this thread when done (err's `code`
   * is the errno name). `bytes` is copied before this returns: the caller may change it at once. Absent from older
   * builds.
   */
  writeFileDirectAsync?(
    path: string,
    bytes: Uint8Array,
    callback: (err: NodeJS.ErrnoException | undefined, wasDirect: boolean) => void,
  ): void;
}

/**
 * Chunk buffers (sealed outputs, up to the 4 MiB default max chunk) come from the heap rather than fresh mmaps,
 * and up to 64 MiB of freed heap is kept for reuse instead of being returned to the kernel and faulted back in.
 * Measured on the pipeline bench: sealing ~1,600 → ~2,800 MiB per CPU-second. The price is up to 64 MiB of
 * resident memory kept after a burst of writes.
 */
const MMAP_THRESHOLD = 8 << 20;
export const MALLOC_RETAINED_BYTES = 64 << 20;

function load(): Accel | undefined {
  const m = loadOptionalAddon<Accel>('accel/build/Release/accel.node', [
    'gcm',
    'gearScan',
    'copy',
    'tuneMalloc',
  ]);
  m?.tuneMalloc(MMAP_THRESHOLD, MALLOC_RETAINED_BYTES);
  return m;
}

/** The loaded addon, or undefined. */
export const accel: Accel | undefined = load();

/**
 * Copy all of `src` into `dst` at `offset`. When either side is shared memory, V8 copies with a relaxed-atomic word
 * loop (another thread might be looking); perf showed it as a fifth of a sequential writer's daemon CPU and a sixth
 * of a cold reader's main thread. The callers copy ranges no other thread uses meanwhile, so the addon's plain memcpy
 * is safe there; ordinary memory, or no addon, gets TypedArray.set.
 */
export function copyBytes(dst: Uint8Array, offset: number, src: Uint8Array): void {
  if (
    accel !== undefined &&
    (dst.buffer instanceof SharedArrayBuffer || src.buffer instanceof SharedArrayBuffer)
  )
    accel.copy(dst, offset, src);
  else dst.set(src, offset);
}
