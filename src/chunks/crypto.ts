// Keyed chunk ids, keyed convergent chunk encryption and sealed remote objects, all derived from the filesystem
// secret. Pure byte transforms: knows nothing of caches, remotes, SQLite or where the secret came from.
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  brotliCompressSync,
  brotliDecompressSync,
  constants as zc,
  deflateRawSync,
  inflateRawSync,
} from 'node:zlib';
import { ArborError, ChunkCorruptError, Errno, InvalidInputError } from '../errors.js';
import { GCM_NONCE, GCM_TAG, gcmOpen, gcmOpenInto, gcmSealInto } from './gcm.js';
import {
  type ChunkIdAlgorithm,
  DEFAULT_CHUNK_ID,
  chunkIdFunction,
  validateChunkIdAlgorithm,
} from './chunk-id.js';

/** The format version carried in the high nibble of every sealed object's first byte. */
export const SEAL_VERSION = 1;

/** Compression before encryption. 'deflate' (zlib level 1) and 'brotli' (quality 1) are fast levels. */
export type Compression = 'none' | 'deflate' | 'brotli';

const COMP_CODE: Record<Compression, number> = { none: 0, deflate: 1, brotli: 2 };
const NONCE = GCM_NONCE;
const TAG = GCM_TAG;
/** header byte + nonce + tag */
export const SEAL_OVERHEAD = 1 + NONCE + TAG;

/** A sealed remote object (op batch, checkpoint) that failed authentication or is malformed. Maps to EIO. */
export class ObjectCorruptError extends ArborError {
  constructor(name: string, detail: string) {
    super('ARBOR_OBJECT_CORRUPT', Errno.EIO, `object ${name} is corrupt: ${detail}`);
  }
}

const SAMPLE = 4096;
const SAMPLES = 4;
/** A sample must compress below this fraction, and the whole chunk below SHRINK, for compression to be kept. */
const SAMPLE_PAYS = 0.9;
const SHRINK = 0.97;

function compress(kind: Compression, data: Uint8Array): Buffer {
  if (kind === 'brotli') {
    return brotliCompressSync(data, {
      params: {
        [zc.BROTLI_PARAM_QUALITY]: 1,
        [zc.BROTLI_PARAM_SIZE_HINT]: data.length,
      },
    });
  }
  return deflateRawSync(data, { level: 1 });
}

function decompress(code: number, data: Uint8Array, maxLength: number): Buffer {
  // maxOutputLength bounds a hostile "decompression bomb" to the size the caller expects.
  if (code === 1) return inflateRawSync(data, { maxOutputLength: Math.max(1, maxLength) });
  if (code === 2) return brotliDecompressSync(data, { maxOutputLength: Math.max(1, maxLength) });
  throw new Error(`unknown compression code ${code}`);
}

/**
 * Estimated entropy in bits per byte of a few slices spread through the data: a histogram costs microseconds,
 * while even a fast deflate of the sample costs a tenth of a millisecond per chunk.
 */
function sampleEntropy(data: Uint8Array): number {
  // Four interleaved histograms: consecutive equal bytes would otherwise make each increment wait for the last.
  const h4 = hist4;
  h4.fill(0);
  const step = Math.floor((data.length - SAMPLE) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) {
    const from = i * step;
    for (let j = from; j < from + SAMPLE; j += 4) {
      h4[data[j]!]!++;
      h4[256 + data[j + 1]!]!++;
      h4[512 + data[j + 2]!]!++;
      h4[768 + data[j + 3]!]!++;
    }
  }
  const n = SAMPLE * SAMPLES;
  let bits = 0;
  for (let i = 0; i < 256; i++) {
    const c = h4[i]! + h4[256 + i]! + h4[512 + i]! + h4[768 + i]!;
    if (c > 0) bits -= (c / n) * Math.log2(c / n);
  }
  return bits;
}

/** Scratch for sampleEntropy (SAMPLE is a multiple of 4). */
const hist4 = new Uint32Array(4 * 256);

/** Above this many bits per byte in the sample, a byte-oriented compressor cannot pay; skip it. */
const ENTROPY_SKIP = 7.5;

/** Cheap checks first (sample entropy, then a small deflate of the sample); only if they pass compress it all. */
function maybeCompress(kind: Compression, data: Uint8Array): { code: number; payload: Uint8Array } {
  if (kind === 'none' || data.length < 64) return { code: 0, payload: data };
  if (data.length > SAMPLE * SAMPLES * 2) {
    if (sampleEntropy(data) > ENTROPY_SKIP) return { code: 0, payload: data };
    const sample = Buffer.allocUnsafe(SAMPLE * SAMPLES);
    const step = Math.floor((data.length - SAMPLE) / (SAMPLES - 1));
    for (let i = 0; i < SAMPLES; i++) sample.set(data.subarray(i * step, i * step + SAMPLE), i * SAMPLE);
    if (deflateRawSync(sample, { level: 1 }).length > sample.length * SAMPLE_PAYS) {
      return { code: 0, payload: data };
    }
  }
  const c = compress(kind, data);
  if (c.length > data.length * SHRINK) return { code: 0, payload: data };
  return { code: COMP_CODE[kind], payload: c };
}

function header(code: number): number {
  return (SEAL_VERSION << 4) | code;
}

/**
 * Every key arbor derives from one filesystem secret (32 bytes). Holds the derived keys only, never the secret
 * itself, and never prints them.
 */
export class FsCrypto {
  /** The filesystem's chunk id algorithm (arbor.json `chunkId`). */
  readonly chunkIdAlgorithm: ChunkIdAlgorithm;
  private readonly id: (data: Uint8Array) => string;
  private readonly chunkKey: Buffer;
  private readonly objectKey: Buffer;

  constructor(secret: Uint8Array, chunkId: ChunkIdAlgorithm = DEFAULT_CHUNK_ID) {
    if (secret.length !== 32) throw new InvalidInputError('the filesystem secret must be 32 bytes');
    this.chunkIdAlgorithm = validateChunkIdAlgorithm(chunkId);
    const d = (info: string): Buffer => Buffer.from(hkdfSync('sha256', secret, 'arbor', info, 32));
    // A distinct HKDF label per id algorithm: one key is never used by two different primitives.
    this.id = chunkIdFunction(
      chunkId,
      d(chunkId === 'blake3' ? 'arbor chunk-id blake3 v1' : 'arbor chunk-id v1'),
    );
    this.chunkKey = d('arbor chunk-encryption v1');
    this.objectKey = d('arbor object v1');
  }

  /** The chunk's id: the keyed hash (HMAC-SHA-256 or keyed BLAKE3-256) of its plaintext, lowercase hex. */
  chunkId(data: Uint8Array): string {
    return this.id(data);
  }

  /**
   * Encrypt a chunk (after optional compression). Convergent within this filesystem: the key comes from the id and
   * the nonce from the exact payload, so equal plaintexts give equal bytes and a key/nonce pair never covers two
   * different payloads (different zlib builds may compress differently). Layout: header, nonce, ciphertext, tag.
   * `alloc` gives the output buffer of exactly the size asked for (a caller reusing buffers; default: a new one).
   */
  sealChunk(
    id: string,
    plaintext: Uint8Array,
    compression: Compression = 'none',
    alloc: (size: number) => Buffer = Buffer.allocUnsafe,
  ): Uint8Array {
    const { code, payload } = maybeCompress(compression, plaintext);
    const h = header(code);
    const key = this.perChunkKey(id);
    const nm = createHmac('sha256', this.chunkKey).update('nonce').update(Buffer.of(h)).update(id);
    // Uncompressed payload = plaintext, already pinned by the id; a compressed one is hashed (it is small and rare).
    if (code !== 0) nm.update(createHash('sha256').update(payload).digest());
    const nonce = nm.digest().subarray(0, NONCE);
    // One buffer of the exact sealed size; the cipher writes ciphertext and tag straight into its tail.
    const out = alloc(SEAL_OVERHEAD + payload.length);
    out[0] = h;
    nonce.copy(out, 1);
    gcmSealInto(key, nonce, out.subarray(0, 1), payload, out.subarray(1 + NONCE));
    return out;
  }

  /**
   * Decrypt and verify a sealed chunk: the GCM tag, the expected size when given, and (unless `how.checkId` is
   * false) the recomputed keyed id. Any mismatch is a ChunkCorruptError; wrong bytes are never returned.
   *
   * The tag alone already proves the bytes are what a holder of this filesystem's secret sealed under this id: the
   * key is HMAC(chunk key, id), so a chunk stored under another id, or changed in any bit, fails it — unlike one MAC
   * key for all chunks, where an attacker on the remote could swap two objects and only the id check would notice.
   * Recomputing the id on top costs a keyed BLAKE3 pass (~0.2 ms per MiB) and guards only against a replica that
   * itself sealed wrong bytes under an id; the read paths skip it (`checkId: false`), fsck keeps it.
   *
   * `how.inPlace`: decrypt into `sealed`'s own ciphertext bytes and return a view of them, instead of allocating the
   * plaintext (a MiB per chunk: allocation, page faults and the garbage collections external memory triggers).
   * Only for a buffer nobody else reads any more — it is destroyed either way (garbage when the tag fails).
   */
  openChunk(
    id: string,
    sealed: Uint8Array,
    expectedSize?: number,
    how: { inPlace?: boolean; checkId?: boolean } = {},
  ): Uint8Array {
    const { inPlace = false, checkId = true } = how;
    if (sealed.length < SEAL_OVERHEAD) throw new ChunkCorruptError(id, 'truncated object');
    const h = sealed[0]!;
    if (h >> 4 !== SEAL_VERSION) throw new ChunkCorruptError(id, `unknown format version ${h >> 4}`);
    const code = h & 0x0f;
    if (code > 2) throw new ChunkCorruptError(id, `unknown compression code ${code}`);
    const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const body = buf.subarray(1 + NONCE);
    const payload = inPlace
      ? body.subarray(0, body.length - GCM_TAG)
      : Buffer.allocUnsafe(body.length - GCM_TAG);
    // Header (AAD) and nonce precede the ciphertext, so an in-place open never overwrites them.
    if (!gcmOpenInto(this.perChunkKey(id), buf.subarray(1, 1 + NONCE), buf.subarray(0, 1), body, payload))
      throw new ChunkCorruptError(id, 'authentication failed');
    let plain: Uint8Array = payload;
    if (code !== 0) {
      try {
        plain = decompress(code, payload, expectedSize ?? 1 << 30);
      } catch {
        throw new ChunkCorruptError(id, 'decompression failed');
      }
    }
    if (expectedSize !== undefined && plain.length !== expectedSize) {
      throw new ChunkCorruptError(id, `size ${plain.length} != expected ${expectedSize}`);
    }
    if (!checkId) return plain;
    const actual = Buffer.from(this.chunkId(plain), 'hex');
    if (
      actual.length !== 32 ||
      !/^[0-9a-f]{64}$/.test(id) ||
      !timingSafeEqual(actual, Buffer.from(id, 'hex'))
    ) {
      throw new ChunkCorruptError(id, 'content does not match its id');
    }
    return plain;
  }

  /**
   * Seal an op batch, checkpoint or other remote object. Random nonce; the associated data binds the object kind
   * and its remote key name, so an object moved or replayed under another name fails to open.
   */
  sealObject(
    kind: string,
    name: string,
    bytes: Uint8Array,
    compression: Compression = 'deflate',
  ): Uint8Array {
    const { code, payload } = maybeCompress(compression, bytes);
    const h = header(code);
    const nonce = randomBytes(NONCE);
    const out = Buffer.allocUnsafe(SEAL_OVERHEAD + payload.length);
    out[0] = h;
    nonce.copy(out, 1);
    gcmSealInto(this.objectKey, nonce, objectAad(h, kind, name), payload, out.subarray(1 + NONCE));
    return out;
  }

  /** Open a sealed object; ObjectCorruptError if it was tampered with, renamed, truncated or sealed by another key. */
  openObject(kind: string, name: string, sealed: Uint8Array, maxLength = 1 << 30): Uint8Array {
    if (sealed.length < SEAL_OVERHEAD) throw new ObjectCorruptError(name, 'truncated object');
    const h = sealed[0]!;
    if (h >> 4 !== SEAL_VERSION) throw new ObjectCorruptError(name, `unknown format version ${h >> 4}`);
    const code = h & 0x0f;
    if (code > 2) throw new ObjectCorruptError(name, `unknown compression code ${code}`);
    const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const payload = gcmOpen(
      this.objectKey,
      buf.subarray(1, 1 + NONCE),
      objectAad(h, kind, name),
      buf.subarray(1 + NONCE),
    );
    if (payload === undefined) throw new ObjectCorruptError(name, 'authentication failed');
    if (code === 0) return payload;
    try {
      return decompress(code, payload, maxLength);
    } catch {
      throw new ObjectCorruptError(name, 'decompression failed');
    }
  }

  /** A value that proves knowledge of the secret without revealing it (stored in arbor.json). */
  keyCheck(): string {
    return createHmac('sha256', this.objectKey).update('arbor key check v1').digest('hex');
  }

  private perChunkKey(id: string): Buffer {
    return createHmac('sha256', this.chunkKey).update('key').update(id).digest();
  }
}

function objectAad(h: number, kind: string, name: string): Buffer {
  return Buffer.from(`arbor-object\0${h}\0${kind}\0${name}`, 'utf8');
}
