// Content-defined chunking (FastCDC-style gear hash with normalized chunking); pure, knows nothing of ids, crypto or storage.
import { InvalidInputError } from '../errors.js';
import type { ChunkingParams } from './types.js';
import { type Accel, accel } from './accel.js';

/** Which cut scan `new Chunker(params)` uses here: the native addon's (~2× faster) or the JavaScript one. */
export const chunkerImplementation: 'native' | 'js' = accel ? 'native' : 'js';

/** arbor's default cut parameters: min 256 KiB, average 1 MiB, max 4 MiB. Stored in arbor.json. */
export const DEFAULT_CHUNKING: ChunkingParams = Object.freeze({
  minSize: 256 * 1024,
  avgSize: 1024 * 1024,
  maxSize: 4 * 1024 * 1024,
});

/**
 * The gear table: 256 pseudo-random 32-bit words. It is part of the on-remote format (every replica must cut
 * identically), so it comes from a fixed seed through splitmix32 and must never change.
 */
const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  let s = 0x61726272; // 'arbr'
  for (let i = 0; i < 256; i++) {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    t[i] = z ^ (z >>> 16);
  }
  return t;
})();

/** Throws InvalidInputError unless 64 ≤ min ≤ avg ≤ max ≤ 1 GiB and avg is a power of two. */
export function validateChunking(p: ChunkingParams): ChunkingParams {
  const ok =
    Number.isSafeInteger(p.minSize) &&
    Number.isSafeInteger(p.avgSize) &&
    Number.isSafeInteger(p.maxSize) &&
    p.minSize >= 64 &&
    p.minSize <= p.avgSize &&
    p.avgSize <= p.maxSize &&
    p.maxSize <= 1 << 30 &&
    (p.avgSize & (p.avgSize - 1)) === 0;
  if (!ok) {
    throw new InvalidInputError(
      `invalid chunking parameters min=${p.minSize} avg=${p.avgSize} max=${p.maxSize} ` +
        '(need 64 <= min <= avg <= max <= 1 GiB, avg a power of two)',
    );
  }
  return { minSize: p.minSize, avgSize: p.avgSize, maxSize: p.maxSize };
}

/** A mask of the top `bits` bits: the gear hash mixes older bytes into its high bits, so those see a 32-byte window. */
function topBits(bits: number): number {
  const b = Math.max(1, Math.min(31, bits));
  return (~0 << (32 - b)) | 0;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** The gear hash at the end of the last scanRange that found no cut (a module variable avoids an allocation). */
let lastHash = 0;

/**
 * Roll the gear hash over data[from, to) starting from hash `h`; return the index just past the first byte where
 * `(h & mask) === 0`, or -1 (with lastHash set). Reads aligned 32-bit words where it can: the per-byte table
 * lookups dominate, and one load per four bytes roughly doubles throughput in V8.
 */
function scanRange(data: Uint8Array, from: number, to: number, h: number, mask: number): number {
  const g = GEAR;
  const off = data.byteOffset;
  let i = from;
  if (LITTLE_ENDIAN) {
    while (i < to && ((off + i) & 3) !== 0) {
      h = ((h << 1) + g[data[i]!]!) | 0;
      i++;
      if ((h & mask) === 0) return i;
    }
    const nWords = (to - i) >> 2;
    if (nWords > 0) {
      const w = new Uint32Array(data.buffer, off + i, nWords);
      for (let j = 0; j < nWords; j++) {
        const x = w[j]!;
        h = ((h << 1) + g[x & 255]!) | 0;
        if ((h & mask) === 0) return i + (j << 2) + 1;
        h = ((h << 1) + g[(x >>> 8) & 255]!) | 0;
        if ((h & mask) === 0) return i + (j << 2) + 2;
        h = ((h << 1) + g[(x >>> 16) & 255]!) | 0;
        if ((h & mask) === 0) return i + (j << 2) + 3;
        h = ((h << 1) + g[x >>> 24]!) | 0;
        if ((h & mask) === 0) return i + (j << 2) + 4;
      }
      i += nWords << 2;
    }
  }
  for (; i < to; i++) {
    h = ((h << 1) + g[data[i]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  lastHash = h;
  return -1;
}

/** A compiled chunker for one parameter set. */
export class Chunker {
  readonly params: ChunkingParams;
  private readonly maskS: number;
  private readonly maskL: number;
  /** The native scan, when this chunker uses it. */
  private readonly nativeScan: Accel['gearScan'] | undefined;

  /** `impl` picks the scan; both give the same cuts (chunker.test.ts), so it is never a format property. */
  constructor(params: ChunkingParams = DEFAULT_CHUNKING, impl: 'native' | 'js' = chunkerImplementation) {
    this.params = validateChunking(params);
    this.nativeScan = impl === 'native' ? accel?.gearScan : undefined;
    const bits = Math.round(Math.log2(this.params.avgSize));
    // Normalized chunking (level 2): harder to cut before the average, easier after it, so sizes cluster at avg.
    this.maskS = topBits(bits + 2);
    this.maskL = topBits(bits - 2);
  }

  /**
   * Length of the first chunk of data[start, end), or -1 when no boundary lies in the available bytes
   * (the chunk may continue past `end`). A cut depends only on the bytes from `start` up to it.
   */
  cut(data: Uint8Array, start: number, end: number): number {
    const { minSize, avgSize, maxSize } = this.params;
    const n = end - start;
    if (n <= minSize) return n === maxSize ? n : -1;
    const limit = n < maxSize ? n : maxSize;
    const normal = avgSize < limit ? avgSize : limit;
    const start0 = start + minSize;
    // Skip the first minSize bytes: no cut can fall there, so hashing them is wasted work.
    if (this.nativeScan) {
      const c = this.nativeScan(data, start0, start + normal, start + limit, this.maskS, this.maskL, GEAR);
      if (c >= 0) return c - start;
      return limit === maxSize ? maxSize : -1;
    }
    let c = scanRange(data, start0, start + normal, 0, this.maskS);
    if (c >= 0) return c - start;
    c = scanRange(data, start + normal, start + limit, lastHash, this.maskL);
    if (c >= 0) return c - start;
    return limit === maxSize ? maxSize : -1;
  }

  /**
   * Lengths of the consecutive complete chunks at the start of `data`. With `final` false, the trailing bytes
   * after the last boundary are left out (more data may follow); with `final` true they form the last chunk.
   */
  split(data: Uint8Array, final: boolean): number[] {
    const out: number[] = [];
    const len = data.length;
    let pos = 0;
    while (pos < len) {
      const c = this.cut(data, pos, len);
      if (c < 0) {
        if (final) out.push(len - pos);
        break;
      }
      out.push(c);
      pos += c;
    }
    return out;
  }
}

/**
 * Incremental splitting for writers that receive data piece by piece: keeps the unfinished tail and yields each
 * complete chunk once. The chunks are exactly those `split(all, true)` would give.
 */
export class StreamingSplitter {
  private buf: Uint8Array = new Uint8Array(0);
  private used = 0;
  /** Buffered length at the last scan: rescanning only after minSize more bytes keeps small writes cheap. */
  private scannedAt = 0;
  constructor(private readonly chunker: Chunker) {}

  /** Append bytes; returns the chunks completed by them (views that stay valid: each is a fresh copy). */
  push(data: Uint8Array): Uint8Array[] {
    this.append(data);
    const min = this.chunker.params.minSize;
    if (this.used - this.scannedAt < min && this.used < this.chunker.params.maxSize) return [];
    return this.drain(false);
  }

  /** No more data: returns the remaining chunks (the tail included). */
  end(): Uint8Array[] {
    const out = this.drain(true);
    this.buf = new Uint8Array(0);
    this.used = 0;
    this.scannedAt = 0;
    return out;
  }

  private append(data: Uint8Array): void {
    if (this.used + data.length > this.buf.length) {
      const next = new Uint8Array(Math.max(this.used + data.length, this.buf.length * 2, 64 * 1024));
      next.set(this.buf.subarray(0, this.used));
      this.buf = next;
    }
    this.buf.set(data, this.used);
    this.used += data.length;
  }

  private drain(final: boolean): Uint8Array[] {
    const view = this.buf.subarray(0, this.used);
    const lens = this.chunker.split(view, final);
    const out: Uint8Array[] = [];
    let pos = 0;
    for (const l of lens) {
      out.push(view.slice(pos, pos + l));
      pos += l;
    }
    if (pos > 0) {
      this.buf.copyWithin(0, pos, this.used);
      this.used -= pos;
    }
    this.scannedAt = this.used;
    return out;
  }
}
