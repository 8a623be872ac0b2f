// AES-256-GCM seal/open writing into one exact-size buffer. Uses the native addon when it is built (straight into
// the caller's memory, ~2× node's cipher API on MiB-sized chunks with OpenSSL, and its own VAES/AVX-512 code is
// ~2.2× OpenSSL where the CPU has it), else node:crypto; all produce the same bytes (accel.test.ts), so a replica
// with the addon and one without interoperate.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { accel } from './accel.js';

export const GCM_NONCE = 12;
export const GCM_TAG = 16;

/**
 * node:crypto pieces: OpenSSL via node runs ~2× faster on 256 KiB updates than on one multi-MiB update (fewer
 * page faults on the output buffers node allocates per update).
 */
const PIECE = 256 * 1024;

interface GcmStream {
  update(data: Uint8Array): Buffer;
}

/** Run `src` through a node cipher/decipher in pieces, writing at out[offset...]; returns bytes written. */
function updateInto(c: GcmStream, src: Uint8Array, out: Uint8Array, offset: number): number {
  let n = 0;
  for (let p = 0; p < src.length; p += PIECE) {
    const piece = c.update(src.subarray(p, Math.min(src.length, p + PIECE)));
    out.set(piece, offset + n);
    n += piece.length;
  }
  return n;
}

/** Which implementation `impl: 'auto'` picks here. */
export const gcmImplementation: 'native' | 'node' = accel ? 'native' : 'node';

/** Encrypt `plain` into out = ciphertext ‖ tag (out.length must be plain.length + 16). */
export function gcmSealInto(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plain: Uint8Array,
  out: Uint8Array,
  impl: 'native' | 'node' = gcmImplementation,
): void {
  if (out.length !== plain.length + GCM_TAG) throw new RangeError('gcmSealInto: output size');
  if (impl === 'native' && accel) {
    accel.gcm(true, key, nonce, aad, plain, out);
    return;
  }
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const n = updateInto(c, plain, out, 0);
  c.final(); // GCM is a stream mode: final() emits no bytes
  out.set(c.getAuthTag(), n);
}

/**
 * Decrypt `sealed` = ciphertext ‖ tag into `out` (exactly the plaintext's size); false when the tag does not
 * verify. `out` may be the ciphertext's own bytes (`sealed.subarray(0, sealed.length - 16)`): every path writes
 * each byte only after reading it. A failed tag leaves zeros there with the addon (either implementation) and
 * garbage with node:crypto; the caller must drop it either way.
 */
export function gcmOpenInto(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
  out: Uint8Array,
  impl: 'native' | 'node' = gcmImplementation,
): boolean {
  if (sealed.length < GCM_TAG || out.length !== sealed.length - GCM_TAG) return false;
  if (impl === 'native' && accel) return accel.gcm(false, key, nonce, aad, sealed, out);
  const ct = sealed.subarray(0, sealed.length - GCM_TAG);
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    // Copied first: an in-place `out` overwrites the ciphertext but never the tag behind it, yet keep it exact.
    d.setAuthTag(Buffer.from(sealed.subarray(sealed.length - GCM_TAG)));
    updateInto(d, ct, out, 0);
    d.final(); // throws when the tag does not verify
  } catch {
    return false;
  }
  return true;
}

/**
 * Decrypt `sealed` = ciphertext ‖ tag into a new buffer of exactly the plaintext's size; undefined when the tag
 * does not verify (the caller maps that to its own corruption error).
 */
export function gcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
  impl: 'native' | 'node' = gcmImplementation,
): Buffer | undefined {
  if (sealed.length < GCM_TAG) return undefined;
  const out = Buffer.allocUnsafe(sealed.length - GCM_TAG);
  return gcmOpenInto(key, nonce, aad, sealed, out, impl) ? out : undefined;
}
