// accel: the two hot loops of the chunk pipeline without JavaScript's costs. AES-256-GCM into a caller-provided
// buffer (node's cipher API allocates a fresh buffer per update): on CPUs with VAES and VPCLMULQDQ our own 512-bit
// vector code (gcm-vaes.c, ~2x OpenSSL 3.0's AES-NI path), elsewhere the OpenSSL linked into node itself; and the
// gear-hash cut scan. Optional: src/chunks/accel.ts falls back to byte-identical JavaScript when this addon is not
// built.
#define _GNU_SOURCE /* O_DIRECT, strerrorname_np */
#include <stdint.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>
#endif
#include <errno.h>
#include <node_api.h>
#include <openssl/evp.h>

#include "gcm-vaes.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "direct.h"

#define NONCE 12
#define TAG 16

/* The bytes of a Uint8Array/Buffer argument (offset-adjusted), or NULL with a TypeError thrown. */
static uint8_t *bytes_of(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type type;
  void *data = NULL;
  size_t n = 0;
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &n, &data, NULL, NULL) != napi_ok ||
      (type != napi_uint8_array && type != napi_int32_array)) {
    napi_throw_type_error(env, NULL, "expected a Uint8Array");
    return NULL;
  }
  if (type == napi_int32_array) n *= 4;
  *len = n;
  /* An empty typed array may have a NULL data pointer; callers never dereference zero bytes. */
  return data ? (uint8_t *)data : (uint8_t *)"";
}

static napi_value make_bool(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

/* Fetch `n` arguments into argv, and up to `optional` more (undefined when not passed); false (a TypeError thrown
 * naming `usage`) when fewer than `n` were passed. */
static bool args(napi_env env, napi_callback_info info, size_t n, size_t optional, napi_value *argv,
                 const char *usage) {
  size_t argc = n + optional;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < n) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

/* AES-256-GCM through OpenSSL: the path on CPUs without VAES/VPCLMULQDQ. Same contract as gcm_vaes_seal/open. */
static bool openssl_gcm(bool enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t al,
                        const uint8_t *src, size_t body, const uint8_t *tag, uint8_t *out) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return false;
  int ok = 0, n = 0;
  if (enc) {
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
         (al == 0 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)al) == 1) &&
         (body == 0 || EVP_EncryptUpdate(ctx, out, &n, src, (int)body) == 1) &&
         EVP_EncryptFinal_ex(ctx, out + body, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, out + body) == 1;
  } else {
    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
         (al == 0 || EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)al) == 1) &&
         (body == 0 || EVP_DecryptUpdate(ctx, out, &n, src, (int)body) == 1) &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG, (void *)tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, out + body, &n) == 1;
    /* OpenSSL leaves the unauthenticated plaintext in out; clear it, as the vector path does. */
    if (!ok) memset(out, 0, body);
  }
  EVP_CIPHER_CTX_free(ctx);
  return ok != 0;
}

/* The GCM implementation gcm() runs by default: the vector one where the CPU has it, unless ARBOR_GCM_IMPL=openssl
 * (for comparing the two in a running daemon or a bench). Decided once, at load. */
static bool gcm_have_vaes, gcm_default_vaes;
static const char *const GCM_VAES = "vaes-avx512", *const GCM_OPENSSL = "openssl";

/*
 * gcm(encrypt, key32, nonce12, aad, src, out[, impl]) -> boolean
 * encrypt: out = ciphertext(src.length) | tag(16). decrypt: src = ciphertext | tag, out = plaintext
 * (src.length - 16); returns false when the tag does not verify, and out is then all zeros (never unauthenticated
 * plaintext). out may be src itself (in place). impl: "vaes-avx512" or "openssl" to pick one (tests), omitted for
 * the default (gcmImpl); "vaes-avx512" throws where the CPU lacks it.
 */

static napi_value Gcm(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!args(env, info, 6, 1, argv, "gcm(encrypt, key, nonce, aad, src, out[, impl])")) return NULL;
  bool enc;
  if (napi_get_value_bool(env, argv[0], &enc) != napi_ok) {
    napi_throw_type_error(env, NULL, "gcm: encrypt must be a boolean");
    return NULL;
  }
  size_t kl, nl, al, sl, ol;
  uint8_t *key = bytes_of(env, argv[1], &kl);
  if (!key) return NULL;
  uint8_t *nonce = bytes_of(env, argv[2], &nl);
  if (!nonce) return NULL;
  uint8_t *aad = bytes_of(env, argv[3], &al);
  if (!aad) return NULL;
  uint8_t *src = bytes_of(env, argv[4], &sl);
  if (!src) return NULL;
  uint8_t *out = bytes_of(env, argv[5], &ol);
  if (!out) return NULL;
  if (kl != 32 || nl != NONCE || (enc ? ol != sl + TAG : (sl < TAG || ol != sl - TAG)) || sl > INT32_MAX) {
    napi_throw_range_error(env, NULL, "gcm: bad key, nonce or buffer sizes");
    return NULL;
  }
  bool vaes = gcm_default_vaes;
  napi_valuetype t;
  if (napi_typeof(env, argv[6], &t) == napi_ok && t != napi_undefined) {
    char name[16];
    size_t len = 0;
    if (t != napi_string || napi_get_value_string_utf8(env, argv[6], name, sizeof name, &len) != napi_ok ||
        (strcmp(name, GCM_VAES) != 0 && strcmp(name, GCM_OPENSSL) != 0)) {
      napi_throw_type_error(env, NULL, "gcm: impl must be \"vaes-avx512\" or \"openssl\"");
      return NULL;
    }
    vaes = strcmp(name, GCM_VAES) == 0;
    if (vaes && !gcm_have_vaes) {
      napi_throw_error(env, NULL, "gcm: this CPU or OS lacks VAES/VPCLMULQDQ/AVX-512");
      return NULL;
    }
  }
  size_t body = enc ? sl : sl - TAG;
  if (vaes) {
    if (enc) {
      gcm_vaes_seal(key, nonce, aad, al, src, body, out);
      return make_bool(env, true);
    }
    return make_bool(env, gcm_vaes_open(key, nonce, aad, al, src, body, src + body, out));
  }
  uint8_t tag[TAG];
  if (!enc) memcpy(tag, src + body, TAG); /* copied first, as gcm_vaes_open reads it first: out may reach it */
  bool ok = openssl_gcm(enc, key, nonce, aad, al, src, body, tag, out);
  if (enc && !ok) {
    napi_throw_error(env, NULL, "gcm: OpenSSL encryption failed");
    return NULL;
  }
  return make_bool(env, ok);
}

/* The gear hash after data[i] given the hash is 0 at `origin`: only the last 32 bytes matter (older ones are
 * shifted out), so start at max(origin, i - 31). */
static uint32_t warm(const uint8_t *d, size_t origin, size_t i, const uint32_t *g) {
  uint32_t h = 0;
  for (size_t p = i >= origin + 32 ? i - 32 : origin; p < i; p++) h = (h << 1) + g[d[p]];
  return h;
}

#define LANES 6
#define BLOCK 4096

/*
 * First cut in [a, b) with one mask, the hash being 0 at `origin` (origin <= a). The gear hash is one long
 * dependency chain (a shift-add per byte), so one lane leaves most of the core idle. Six lanes scan six adjacent
 * 4 KiB blocks at once, each warmed up on the 32 bytes before its block (which makes its hash exact); the first hit
 * of the lowest lane is the first cut. Identical results to the byte-at-a-time scan (in C or JS), ~1.8x its speed.
 */
static int64_t scan(const uint8_t *d, size_t origin, size_t a, size_t b, uint32_t mask, const uint32_t *g) {
  size_t i = a;
  /* A top-bits mask (the only kind the chunker uses; checked by the caller): (h & mask) == 0 <=> h < thr. */
  const uint32_t thr = ~mask + 1;
  while (b - i >= LANES * BLOCK) {
    uint32_t h[LANES];
    uint32_t any;
    for (int k = 0; k < LANES; k++) h[k] = warm(d, origin, i + (size_t)k * BLOCK, g);
    const uint8_t *p = d + i;
    size_t j = 0;
    for (; j < BLOCK; j++) {
      any = 0;
#pragma GCC unroll 16
      for (int k = 0; k < LANES; k++) {
        h[k] = (h[k] << 1) + g[p[k * BLOCK + j]];
        any += h[k] < thr; /* compare + add-with-carry: cheaper than test, setcc, or */
      }
      if (__builtin_expect(any, 0)) break;
    }
    if (j < BLOCK) {
      /* Some lane hit at step j. The lowest such lane holds the earliest cut among the hits at step j; lanes below
       * it had no hit up to j, so they are finished only if they reach their block end without one. */
      int first = 0;
      while (h[first] & mask) first++;
      int64_t best = (int64_t)(i + (size_t)first * BLOCK + j + 1);
      if (first == 0) return best;
      /* Lanes 0..first-1 may still cut later in their blocks: finish them one by one, in order. */
      for (int k = 0; k < first; k++) {
        uint32_t hk = h[k];
        for (size_t q = j + 1; q < BLOCK; q++) {
          hk = (hk << 1) + g[p[k * BLOCK + q]];
          if (!(hk & mask)) return (int64_t)(i + (size_t)k * BLOCK + q + 1);
        }
      }
      return best;
    }
    i += LANES * BLOCK;
  }
  uint32_t h = warm(d, origin, i, g);
  for (; i < b; i++) {
    h = (h << 1) + g[d[i]];
    if (!(h & mask)) return (int64_t)i + 1;
  }
  return -1;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_SCAN_VBMI 1
#define GEAR_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))
#define VLANES 16
#define VBLOCK 2048

/* One gear-table lookup of 64 bytes: four byte planes, each a pair of two-register byte permutes and a blend. */
GEAR_VBMI static inline void lookup4(const __m512i t[4][4], __m512i x, __m512i d[4]) {
  __mmask64 top = _mm512_movepi8_mask(x);
  __m512i p[4];
  for (int k = 0; k < 4; k++)
    p[k] = _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(t[k][0], x, t[k][1]),
                                  _mm512_permutex2var_epi8(t[k][2], x, t[k][3]));
  __m512i w01l = _mm512_unpacklo_epi8(p[0], p[1]), w01h = _mm512_unpackhi_epi8(p[0], p[1]);
  __m512i w23l = _mm512_unpacklo_epi8(p[2], p[3]), w23h = _mm512_unpackhi_epi8(p[2], p[3]);
  d[0] = _mm512_unpacklo_epi16(w01l, w23l);
  d[1] = _mm512_unpackhi_epi16(w01l, w23l);
  d[2] = _mm512_unpacklo_epi16(w01h, w23h);
  d[3] = _mm512_unpackhi_epi16(w01h, w23h);
}

/*
 * scan() with sixteen lanes in one AVX-512 register, for CPUs with VBMI. No gathers (slow on many Intel parts):
 * each lane's next 64 bytes are loaded whole, a 16x16 dword transpose makes vectors of "4 bytes of every lane",
 * and the gear table is looked up as four byte planes with byte permutes. The per-byte step (h = 2h + g, compare)
 * is then three instructions for all sixteen lanes. Same lanes-and-blocks scheme as scan(), same results.
 */
GEAR_VBMI static int64_t scan_vbmi(const uint8_t *d, size_t origin, size_t a, size_t b, uint32_t mask,
                                   const uint32_t *g) {
  size_t i = a;
  if (b - i < VLANES * VBLOCK) return scan(d, origin, a, b, mask, g);
  uint8_t planes[4][256];
  for (int v = 0; v < 256; v++)
    for (int k = 0; k < 4; k++) planes[k][v] = (uint8_t)(g[v] >> (8 * k));
  __m512i t[4][4];
  for (int k = 0; k < 4; k++)
    for (int q = 0; q < 4; q++) t[k][q] = _mm512_loadu_si512(planes[k] + 64 * q);
  /* In each 128-bit lane (four lanes' 4 bytes), a 4x4 byte transpose: lookup4's unpacks then give d[r] = byte r. */
  uint8_t sh[64];
  for (int L = 0; L < 4; L++)
    for (int r = 0; r < 4; r++)
      for (int e = 0; e < 4; e++) sh[16 * L + 4 * r + e] = (uint8_t)(4 * e + r);
  const __m512i shuf = _mm512_loadu_si512(sh);
  const __m512i vthr = _mm512_set1_epi32((int)(~mask + 1));
  while (b - i >= VLANES * VBLOCK) {
    uint32_t hs[VLANES];
    for (int k = 0; k < VLANES; k++) hs[k] = warm(d, origin, i + (size_t)k * VBLOCK, g);
    __m512i h = _mm512_loadu_si512(hs);
    const uint8_t *p = d + i;
    for (size_t j = 0; j < VBLOCK; j += 64) {
      __m512i z[16], u[16], v[16], tr[16];
      for (int k = 0; k < 16; k++) z[k] = _mm512_loadu_si512(p + (size_t)k * VBLOCK + j);
      for (int k = 0; k < 16; k += 2) {
        u[k] = _mm512_unpacklo_epi32(z[k], z[k + 1]);
        u[k + 1] = _mm512_unpackhi_epi32(z[k], z[k + 1]);
      }
      for (int q = 0; q < 16; q += 4) {
        v[q] = _mm512_unpacklo_epi64(u[q], u[q + 2]);
        v[q + 1] = _mm512_unpackhi_epi64(u[q], u[q + 2]);
        v[q + 2] = _mm512_unpacklo_epi64(u[q + 1], u[q + 3]);
        v[q + 3] = _mm512_unpackhi_epi64(u[q + 1], u[q + 3]);
      }
      for (int c = 0; c < 4; c++) {
        __m512i c0 = _mm512_shuffle_i32x4(v[c], v[4 + c], 0x44), c1 = _mm512_shuffle_i32x4(v[c], v[4 + c], 0xEE);
        __m512i c2 = _mm512_shuffle_i32x4(v[8 + c], v[12 + c], 0x44);
        __m512i c3 = _mm512_shuffle_i32x4(v[8 + c], v[12 + c], 0xEE);
        tr[c] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        tr[4 + c] = _mm512_shuffle_i32x4(c0, c2, 0xDD);
        tr[8 + c] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        tr[12 + c] = _mm512_shuffle_i32x4(c1, c3, 0xDD);
      }
      /* tr[m] holds bytes j+4m .. j+4m+3 of every lane (element k = lane k). */
      for (int m = 0; m < 16; m++) {
        __m512i gv[4];
        lookup4(t, _mm512_shuffle_epi8(tr[m], shuf), gv);
        for (int r = 0; r < 4; r++) {
          h = _mm512_add_epi32(_mm512_add_epi32(h, h), gv[r]);
          __mmask16 hit = _mm512_cmplt_epu32_mask(h, vthr);
          if (__builtin_expect(hit != 0, 0)) {
            /* As in scan(): the lowest lane hitting at this step has the earliest cut among the hits; lanes below
             * it had none so far and are finished one by one, in order, to their block ends. */
            size_t step = j + 4 * (size_t)m + (size_t)r;
            _mm512_storeu_si512(hs, h);
            int first = __builtin_ctz((unsigned)hit);
            for (int k = 0; k < first; k++) {
              uint32_t hk = hs[k];
              for (size_t q = step + 1; q < VBLOCK; q++) {
                hk = (hk << 1) + g[p[k * VBLOCK + q]];
                if (!(hk & mask)) return (int64_t)(i + (size_t)k * VBLOCK + q + 1);
              }
            }
            return (int64_t)(i + (size_t)first * VBLOCK + step + 1);
          }
        }
      }
    }
    i += VLANES * VBLOCK;
  }
  /* The rest (under 32 KiB) with the scalar lanes, its hash warmed from `origin` as always. */
  return scan(d, origin, i, b, mask, g);
}
#endif

/* Which scan this CPU runs (AVX-512 VBMI where the CPU and OS support it); decided once. */
typedef int64_t (*scan_fn)(const uint8_t *, size_t, size_t, size_t, uint32_t, const uint32_t *);
static scan_fn best_scan(void) {
#ifdef HAVE_SCAN_VBMI
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vbmi"))
    return scan_vbmi;
#endif
  return scan;
}

/*
 * gearScan(data, from, mid, to, maskS, maskL, gear) -> index just past the first cut, or -1.
 * The hash starts at 0 at `from`; bytes [from, mid) are tested with maskS, [mid, to) with maskL (normalized
 * chunking). Exactly the JavaScript scanRange pair in src/chunks/chunker.ts.
 */
static napi_value GearScan(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!args(env, info, 7, 0, argv, "gearScan(data, from, mid, to, maskS, maskL, gear)")) return NULL;
  size_t len, gl;
  const uint8_t *d = bytes_of(env, argv[0], &len);
  if (!d) return NULL;
  double from_d, mid_d, to_d;
  int32_t ms, ml;
  if (napi_get_value_double(env, argv[1], &from_d) != napi_ok ||
      napi_get_value_double(env, argv[2], &mid_d) != napi_ok ||
      napi_get_value_double(env, argv[3], &to_d) != napi_ok ||
      napi_get_value_int32(env, argv[4], &ms) != napi_ok || napi_get_value_int32(env, argv[5], &ml) != napi_ok) {
    napi_throw_type_error(env, NULL, "gearScan: bad numbers");
    return NULL;
  }
  const uint8_t *graw = bytes_of(env, argv[6], &gl);
  if (!graw) return NULL;
  uint32_t lowS = ~(uint32_t)ms, lowL = ~(uint32_t)ml;
  if ((lowS & (lowS + 1)) != 0 || (lowL & (lowL + 1)) != 0 || ms == 0 || ml == 0) {
    napi_throw_range_error(env, NULL, "gearScan: masks must select the top bits");
    return NULL;
  }
  if (gl != 1024 || !(0 <= from_d && from_d <= mid_d && mid_d <= to_d && to_d <= (double)len)) {
    napi_throw_range_error(env, NULL, "gearScan: bad range or table");
    return NULL;
  }
  uint32_t g[256];
  memcpy(g, graw, sizeof g);
  size_t from = (size_t)from_d, mid = (size_t)mid_d, to = (size_t)to_d;
  static scan_fn run = NULL;
  if (run == NULL) run = best_scan();
  int64_t res = run(d, from, from, mid, (uint32_t)ms, g);
  if (res < 0) res = run(d, from, mid, to, (uint32_t)ml, g);
  napi_value r;
  napi_create_double(env, (double)res, &r);
  return r;
}

/*
 * copy(dst, dstOffset, src) -> undefined: memcpy of all of src into dst at dstOffset.
 * V8 copies into and out of SharedArrayBuffer memory with a relaxed-atomic word loop (no vector or `rep movsb`
 * stores), since another thread may be reading it: perf showed that copy, of every WRITE's payload into a file's
 * shared tail buffer, as a fifth of a sequential writer's daemon CPU. The caller guarantees no other thread touches
 * the destination range meanwhile (a tail buffer's free end), so a plain memcpy is correct.
 */
static napi_value Copy(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, 0, argv, "copy(dst, dstOffset, src)")) return NULL;
  size_t dl, sl;
  uint8_t *d = (uint8_t *)bytes_of(env, argv[0], &dl);
  if (!d) return NULL;
  const uint8_t *s = bytes_of(env, argv[2], &sl);
  if (!s) return NULL;
  double off_d;
  if (napi_get_value_double(env, argv[1], &off_d) != napi_ok || !(off_d >= 0) || off_d > (double)dl ||
      (double)sl > (double)dl - off_d || off_d != (double)(size_t)off_d) {
    napi_throw_range_error(env, NULL, "copy: source does not fit at that offset");
    return NULL;
  }
  if (sl > 0) memmove(d + (size_t)off_d, s, sl);
  return NULL;
}

/*
 * tuneMalloc(mmapThreshold, trimThreshold) -> boolean (false when not glibc).
 * Every sealed chunk is a fresh 0.25-4 MiB buffer. With glibc's defaults those are mmapped, or carved from heap
 * that was just trimmed back to the kernel, so each one is page-faulted in anew: measured, that doubles the cost
 * of sealing. Serving them from the heap and keeping a bounded amount of freed heap lets freed chunk buffers be
 * reused without faults.
 */
static napi_value TuneMalloc(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t mmap_t = 0, trim_t = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &mmap_t) != napi_ok ||
      napi_get_value_int32(env, argv[1], &trim_t) != napi_ok || mmap_t <= 0 || trim_t <= 0) {
    napi_throw_type_error(env, NULL, "tuneMalloc(mmapThreshold, trimThreshold)");
    return NULL;
  }
#ifdef __GLIBC__
  return make_bool(env, mallopt(M_MMAP_THRESHOLD, mmap_t) == 1 && mallopt(M_TRIM_THRESHOLD, trim_t) == 1);
#else
  return make_bool(env, false);
#endif
}

#define PATH_ARG_MAX 4096

/* A path argument copied into `buf` (PATH_ARG_MAX bytes); false (a TypeError thrown naming `fn`) otherwise. */
static bool path_arg(napi_env env, napi_value v, char *buf, const char *fn) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, PATH_ARG_MAX, &n) != napi_ok || n >= PATH_ARG_MAX - 1) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: path must be a string shorter than 4 KiB", fn);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return true;
}

/*
 * markTopDir(path) -> bool: set FS_TOPDIR_FL (chattr +T) on a directory, so ext4's Orlov allocator spreads the
 * subdirectories made under it afterwards over block groups as it does for top-level directories, instead of
 * packing them into the parent's group. A file's inode comes from its directory's group, and on ext4 without a
 * journal every new inode skips, one inode-table lookup each, the free inodes of that group deleted in the last
 * minutes: a cache that writes a file per chunk next to busy directories paid 2-3x the kernel time for its writes
 * (measured: ~0.7-1.3 s vs ~0.3-0.45 s per GiB). False where the filesystem has no such flag (nothing changes).
 */
static napi_value MarkTopDir(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, 0, argv, "markTopDir(path)")) return NULL;
  char path[PATH_ARG_MAX];
  if (!path_arg(env, argv[0], path, "markTopDir")) return NULL;
#if defined(__linux__) && defined(FS_TOPDIR_FL)
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_bool(env, false);
  int flags = 0; /* the kernel reads and writes an int, whatever the ioctl's declared type */
  int ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok && !(flags & FS_TOPDIR_FL)) {
    flags |= FS_TOPDIR_FL;
    ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  close(fd);
  return make_bool(env, ok);
#else
  return make_bool(env, false);
#endif
}

/* An Error for errno `err` on `path`, its `code` the errno name (as node:fs errors have). */
static napi_value errno_error(napi_env env, int err, const char *path) {
  const char *name = strerrorname_np(err);
  char msg[PATH_ARG_MAX + 128];
  snprintf(msg, sizeof msg, "%s: %s, open '%s'", name ? name : "EIO", strerror(err), path);
  napi_value code, text, e;
  napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &e);
  return e;
}

/*
 * writeFileDirect(path, bytes) -> boolean: direct.c's write_file_direct. True when the page cache was bypassed,
 * false when the filesystem made it an ordinary write; throws an Error whose code is the errno name on failure.
 */
static napi_value WriteFileDirect(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, 0, argv, "writeFileDirect(path, bytes)")) return NULL;
  char path[PATH_ARG_MAX];
  if (!path_arg(env, argv[0], path, "writeFileDirect")) return NULL;
  size_t len;
  const uint8_t *src = bytes_of(env, argv[1], &len);
  if (src == NULL) return NULL;
  bool was_direct = false;
  int err = write_file_direct(path, src, len, &was_direct);
  if (err != 0) {
    napi_throw(env, errno_error(env, err, path));
    return NULL;
  }
  return make_bool(env, was_direct);
}

/* One writeFileDirectAsync call: what the threadpool thread needs, and what the callback gets back. */
typedef struct {
  napi_async_work work;
  napi_ref callback_ref;
  uint8_t *copy; /* the caller's bytes, copied into a 4 KiB-aligned buffer of direct.c's pool */
  size_t len;
  char path[PATH_ARG_MAX];
  int err;
  bool was_direct;
} DirectWrite;

static void direct_write_execute(napi_env env, void *data) {
  (void)env;
  DirectWrite *w = data;
  w->err = write_file_direct(w->path, w->copy, w->len, &w->was_direct);
}

static void direct_write_complete(napi_env env, napi_status status, void *data) {
  DirectWrite *w = data;
  napi_value cb, argv[2], undef;
  napi_get_undefined(env, &undef);
  napi_get_reference_value(env, w->callback_ref, &cb);
  if (status != napi_ok && w->err == 0) w->err = ECANCELED;
  argv[0] = w->err != 0 ? errno_error(env, w->err, w->path) : undef;
  argv[1] = make_bool(env, w->was_direct);
  direct_buffer_give(w->copy, w->len);
  napi_delete_reference(env, w->callback_ref);
  napi_delete_async_work(env, w->work);
  free(w);
  napi_call_function(env, undef, cb, 2, argv, NULL);
}

/*
 * writeFileDirectAsync(path, bytes, callback(err, wasDirect)): writeFileDirect on a libuv threadpool thread, so the
 * calling thread goes on (decrypting the chunk, sealing the next one) while the device takes the bytes. `bytes` is
 * copied (memcpy into a reused aligned buffer, which direct I/O needs anyway) before this returns, so the caller may
 * change it at once.
 */
static napi_value WriteFileDirectAsync(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, 0, argv, "writeFileDirectAsync(path, bytes, callback)")) return NULL;
  DirectWrite *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw_error(env, NULL, "writeFileDirectAsync: out of memory");
    return NULL;
  }
  napi_valuetype cb_type;
  napi_typeof(env, argv[2], &cb_type);
  const uint8_t *src;
  if (!path_arg(env, argv[0], w->path, "writeFileDirectAsync") || (src = bytes_of(env, argv[1], &w->len)) == NULL) {
    free(w);
    return NULL;
  }
  if (cb_type != napi_function) {
    free(w);
    napi_throw_type_error(env, NULL, "writeFileDirectAsync: callback must be a function");
    return NULL;
  }
  w->copy = direct_buffer_take(w->len);
  if (w->copy == NULL) {
    free(w);
    napi_throw_error(env, NULL, "writeFileDirectAsync: out of memory");
    return NULL;
  }
  memcpy(w->copy, src, w->len);
  napi_value name;
  napi_create_string_utf8(env, "arbor:writeFileDirect", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[2], 1, &w->callback_ref) != napi_ok ||
      napi_create_async_work(env, NULL, name, direct_write_execute, direct_write_complete, w, &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    direct_buffer_give(w->copy, w->len);
    free(w);
    napi_throw_error(env, NULL, "writeFileDirectAsync: could not queue the write");
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "gcm", NAPI_AUTO_LENGTH, Gcm, NULL, &f);
  napi_set_named_property(env, exports, "gcm", f);
  napi_create_function(env, "gearScan", NAPI_AUTO_LENGTH, GearScan, NULL, &f);
  napi_set_named_property(env, exports, "gearScan", f);
  napi_value impl;
  napi_create_string_utf8(env, best_scan() == scan ? "scalar" : "avx512vbmi", NAPI_AUTO_LENGTH, &impl);
  napi_set_named_property(env, exports, "scanImpl", impl);
  const char *force = getenv("ARBOR_GCM_IMPL");
  gcm_have_vaes = gcm_vaes_available();
  gcm_default_vaes = gcm_have_vaes && !(force && strcmp(force, GCM_OPENSSL) == 0);
  napi_create_string_utf8(env, gcm_default_vaes ? GCM_VAES : GCM_OPENSSL, NAPI_AUTO_LENGTH, &impl);
  napi_set_named_property(env, exports, "gcmImpl", impl);
  napi_create_function(env, "copy", NAPI_AUTO_LENGTH, Copy, NULL, &f);
  napi_set_named_property(env, exports, "copy", f);
  napi_create_function(env, "tuneMalloc", NAPI_AUTO_LENGTH, TuneMalloc, NULL, &f);
  napi_set_named_property(env, exports, "tuneMalloc", f);
  napi_create_function(env, "markTopDir", NAPI_AUTO_LENGTH, MarkTopDir, NULL, &f);
  napi_set_named_property(env, exports, "markTopDir", f);
  napi_create_function(env, "writeFileDirect", NAPI_AUTO_LENGTH, WriteFileDirect, NULL, &f);
  napi_set_named_property(env, exports, "writeFileDirect", f);
  napi_create_function(env, "writeFileDirectAsync", NAPI_AUTO_LENGTH, WriteFileDirectAsync, NULL, &f);
  napi_set_named_property(env, exports, "writeFileDirectAsync", f);
  return exports;
}
