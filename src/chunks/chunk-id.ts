// Chunk id algorithms. The algorithm is a property of a filesystem (recorded in arbor.json), because every replica
// must derive the same id from the same plaintext: ids name chunks on the remote and key their encryption.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { InvalidInputError } from '../errors.js';
import { blake3KeyedJs } from './blake3-js.js';

/**
 * 'hmac-sha256': the original (formatVersion 1) ids. 'blake3': keyed BLAKE3-256, ~3× faster on one core; the
 * default for new filesystems. Both give 32 bytes, written as 64 lowercase hex digits.
 */
export type ChunkIdAlgorithm = 'hmac-sha256' | 'blake3';

export const CHUNK_ID_ALGORITHMS: readonly ChunkIdAlgorithm[] = ['hmac-sha256', 'blake3'];

/** What `arbor init` records for a new filesystem. */
export const DEFAULT_CHUNK_ID: ChunkIdAlgorithm = 'blake3';

export function isChunkIdAlgorithm(v: unknown): v is ChunkIdAlgorithm {
  return typeof v === 'string' && (CHUNK_ID_ALGORITHMS as readonly string[]).includes(v);
}

export function validateChunkIdAlgorithm(v: unknown): ChunkIdAlgorithm {
  if (!isChunkIdAlgorithm(v)) {
    throw new InvalidInputError(
      `unknown chunk id algorithm ${JSON.stringify(v)} (known: ${CHUNK_ID_ALGORITHMS.join(', ')})`,
    );
  }
  return v;
}

interface NativeBlake3 {
  Blake3Hasher: {
    newKeyed(key: Uint8Array): { update(data: Uint8Array): { digest(enc: 'hex'): string } };
  };
}

/**
 * Where the prebuilt binary comes from. arbor depends on the platform package directly (an optional dependency that
 * npm installs only on linux-x64): the umbrella package `@napi-rs/blake-hash` lists binaries for platforms whose
 * versions the registry lacks, which leaves a lock file `npm ci` refuses. The umbrella is still tried for other
 * platforms where a user installed it.
 */
const NATIVE_BLAKE3_PACKAGES = ['@napi-rs/blake-hash-linux-x64-gnu', '@napi-rs/blake-hash'];

/** The native keyed BLAKE3 (SIMD, prebuilt per platform), or undefined when it cannot load here. */
function loadNativeBlake3(): NativeBlake3 | undefined {
  if (process.env.ARBOR_NO_NATIVE === '1') return undefined;
  const require = createRequire(import.meta.url);
  for (const name of NATIVE_BLAKE3_PACKAGES) {
    try {
      const mod = require(name) as Partial<NativeBlake3>;
      if (typeof mod.Blake3Hasher?.newKeyed === 'function') return mod as NativeBlake3;
    } catch {
      // not installed for this platform: try the next, else the TypeScript fallback
    }
  }
  return undefined;
}

const nativeBlake3 = loadNativeBlake3();

/** Which BLAKE3 implementation this process uses (for `arbor status` and the bench). */
export const blake3Implementation: 'native' | 'js' = nativeBlake3 ? 'native' : 'js';

/** Keyed BLAKE3-256 as hex, native when available, else the identical-output TypeScript fallback. */
export function blake3KeyedHex(key: Uint8Array, data: Uint8Array, impl = blake3Implementation): string {
  if (impl === 'native' && nativeBlake3)
    return nativeBlake3.Blake3Hasher.newKeyed(key).update(data).digest('hex');
  return Buffer.from(blake3KeyedJs(key, data)).toString('hex');
}

/** A chunk id function for one algorithm and its 32-byte key (derived from the secret, see FsCrypto). */
export function chunkIdFunction(alg: ChunkIdAlgorithm, key: Uint8Array): (data: Uint8Array) => string {
  const k = Buffer.from(key);
  if (alg === 'blake3') return (data) => blake3KeyedHex(k, data);
  return (data) => createHmac('sha256', k).update(data).digest('hex');
}
