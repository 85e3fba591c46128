/*
 * SM4-CTR with AES-NI and AVX2, for CPUs without GFNI: up to 72 blocks in
 * flight as 9 groups of 8, each group held transposed (register w holds word
 * w of 8 blocks). The S-box is AESENCLAST (whose SubBytes is inversion in the
 * AES field) between two affine maps done as nibble-table byte shuffles
 * (constants and their derivation: sm4_consts.h, docs/ciphers.md). Compiled
 * for these instructions only inside this file's functions; used only when the
 * CPU reports them.
 */
#include "cipher/sm4.h"

#ifdef SM4_HAVE_X86
#include <immintrin.h>

#include "cipher/sm4_consts.h"

#define TARGET __attribute__((target("aes,avx2")))
#define INLINE TARGET __attribute__((always_inline)) static inline

static const uint8_t pre_lo[16] = {SM4_AESNI_PRE_LO}, pre_hi[16] = {SM4_AESNI_PRE_HI},
                     post_lo[16] = {SM4_AESNI_POST_LO}, post_hi[16] = {SM4_AESNI_POST_HI};

/* Applies the affine map given by its low- and high-nibble tables to every byte. */
INLINE __m256i
nibble_affine(__m256i x, const uint8_t *lo_table, const uint8_t *hi_table)
{
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const __m256i lo =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)lo_table));
    const __m256i hi =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)hi_table));
    return _mm256_xor_si256(
        _mm256_shuffle_epi8(lo, _mm256_and_si256(x, mask)),
        _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16(x, 4), mask)));
}

/* The S-box on every byte: pre-affine, AESENCLAST (SubBytes), post-affine. */
INLINE __m256i
sbox_bytes(__m256i x)
{
    /* AESENCLAST applies ShiftRows after SubBytes; this shuffle undoes it in advance. */
    const __m256i inv_shift_rows =
        _mm256_setr_epi8(0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3, 0, 13, 10, 7, 4, 1,
                         14, 11, 8, 5, 2, 15, 12, 9, 6, 3);
    __m128i lo, hi;

    x = _mm256_shuffle_epi8(nibble_affine(x, pre_lo, pre_hi), inv_shift_rows);
    /* AES-NI without VAES works on 128 bits: one AESENCLAST per half. */
    lo = _mm_aesenclast_si128(_mm256_castsi256_si128(x), _mm_setzero_si128());
    hi = _mm_aesenclast_si128(_mm256_extracti128_si256(x, 1), _mm_setzero_si128());
    return nibble_affine(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1), post_lo,
                         post_hi);
}

#include "cipher/sm4_avx2_body.h"

static bool
supports(tde_method m)
{
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return m == TDE_METHOD_SM4_CTR && __builtin_cpu_supports("aes") &&
           __builtin_cpu_supports("avx2");
}

const cipher_backend tde_cipher_backend_sm4_aesni = {
    .name = "sm4-aesni",
    .supports = supports,
    .key_new = sm4_key_new,
    .key_free = sm4_key_free,
    .process = process,
};

#endif
