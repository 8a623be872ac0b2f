// AES-256-GCM on 512-bit vectors (VAES + VPCLMULQDQ + AVX-512), for accel.c. 12-byte nonces only (what arbor
// uses; the counter block is then nonce || 1, no GHASH of the nonce). Same bytes as OpenSSL's AES-256-GCM.
#ifndef ARBOR_GCM_VAES_H
#define ARBOR_GCM_VAES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when this CPU has every instruction the code uses and the OS saves the ZMM and mask registers. */
bool gcm_vaes_available(void);

/* out = ciphertext(len) || tag(16). `out` may be `src` itself (in place), otherwise the two must not overlap. */
void gcm_vaes_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                   const uint8_t *src, size_t len, uint8_t *out);

/* Decrypts src (len bytes of ciphertext) into out and checks `tag` in constant time. On a mismatch returns false
 * and zeroes out, so unauthenticated plaintext is never left behind. `out` may be `src` (in place). */
bool gcm_vaes_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                   const uint8_t *src, size_t len, const uint8_t tag[16], uint8_t *out);

#endif
