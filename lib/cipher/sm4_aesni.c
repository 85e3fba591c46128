/*
 * SM4-CTR with AES-NI and SSSE3, for CPUs without GFNI: up to 64 blocks in
 * flight as 16 groups of 4, each group held transposed (register w holds word w of 4
 * blocks). The S-box is AESENCLAST (whose SubBytes is inversion in the AES
 * field) between two affine maps done as nibble-table byte shuffles
 * (constants and their derivation: sm4_consts.h, docs/ciphers.md). Compiled for these instructions
 * only inside this file's functions; used only when the CPU reports them.
 */
#include "cipher/sm4.h"

#ifdef SM4_HAVE_X86
#include <string.h>

#include <immintrin.h>

#include "cipher/sm4_consts.h"

#define TARGET __attribute__((target("aes,ssse3")))
#define INLINE TARGET __attribute__((always_inline)) static inline
#define WIDTH 4   /* blocks per register */
#define GROUPS 16 /* registers-full in flight in a full batch */

static const uint8_t pre_lo[16] = {SM4_AESNI_PRE_LO}, pre_hi[16] = {SM4_AESNI_PRE_HI},
                     post_lo[16] = {SM4_AESNI_POST_LO}, post_hi[16] = {SM4_AESNI_POST_HI};

/* Rotates every 32-bit word left by 8, 16 or 24 bits (byte shuffles). */
INLINE __m128i
rol_bytes(__m128i x, int bytes)
{
    const __m128i m8 = _mm_setr_epi8(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14);
    const __m128i m16 = _mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    const __m128i m24 = _mm_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
    return _mm_shuffle_epi8(x, bytes == 1 ? m8 : bytes == 2 ? m16 : m24);
}

/* Applies the affine map given by its low- and high-nibble tables to every byte. */
INLINE __m128i
nibble_affine(__m128i x, const uint8_t *lo_table, const uint8_t *hi_table)
{
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)lo_table);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)hi_table);
    return _mm_xor_si128(_mm_shuffle_epi8(lo, _mm_and_si128(x, mask)),
                         _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi16(x, 4), mask)));
}

/* T = L(tau(x)): the S-box on every byte, then x ^ x<<<2 ^ x<<<10 ^ x<<<18 ^ x<<<24. */
INLINE __m128i
sm4_t(__m128i x)
{
    /* AESENCLAST applies ShiftRows after SubBytes; this shuffle undoes it in advance. */
    const __m128i inv_shift_rows =
        _mm_setr_epi8(0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3);
    __m128i t;

    x = nibble_affine(x, pre_lo, pre_hi);
    x = _mm_aesenclast_si128(_mm_shuffle_epi8(x, inv_shift_rows), _mm_setzero_si128());
    x = nibble_affine(x, post_lo, post_hi);
    /* x<<<2 ^ x<<<10 ^ x<<<18 = (x ^ x<<<8 ^ x<<<16) <<< 2 */
    t = _mm_xor_si128(_mm_xor_si128(x, rol_bytes(x, 1)), rol_bytes(x, 2));
    t = _mm_xor_si128(_mm_slli_epi32(t, 2), _mm_srli_epi32(t, 30));
    return _mm_xor_si128(_mm_xor_si128(x, rol_bytes(x, 3)), t);
}

/* XORs the keystream of groups * WIDTH blocks from @p ctr into in -> out. */
INLINE void
batch(const uint32_t *rk, const uint8_t ctr[16], const uint8_t *in, uint8_t *out, const int groups)
{
    const __m128i bswap = _mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
    __m128i x[GROUPS][4];
    uint32_t w[4];

    for (int i = 0; i < 4; i++)
        w[i] = (uint32_t)ctr[4 * i] << 24 | (uint32_t)ctr[4 * i + 1] << 16 |
               (uint32_t)ctr[4 * i + 2] << 8 | ctr[4 * i + 3];
    if (w[3] <= UINT32_MAX - (uint32_t)(groups * WIDTH - 1)) {
        /* Lane i holds block i (see sm4_counters_transposed). */
        const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++) {
            x[g][0] = _mm_set1_epi32((int)w[0]);
            x[g][1] = _mm_set1_epi32((int)w[1]);
            x[g][2] = _mm_set1_epi32((int)w[2]);
            x[g][3] = _mm_add_epi32(_mm_set1_epi32((int)(w[3] + (uint32_t)(g * WIDTH))), lane);
        }
    } else {
        uint32_t words[GROUPS * 4 * WIDTH];
        sm4_counters_transposed(ctr, WIDTH, (unsigned)groups, words);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < 4; i++)
                x[g][i] = _mm_loadu_si128((const __m128i *)(words + (g * 4 + i) * WIDTH));
    }

    for (int r = 0; r < SM4_ROUNDS; r += 4) {
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            const __m128i key = _mm_set1_epi32((int)rk[r + k]);
#pragma GCC unroll 16
            for (int g = 0; g < groups; g++) {
                __m128i t = _mm_xor_si128(_mm_xor_si128(x[g][(k + 1) & 3], x[g][(k + 2) & 3]),
                                          _mm_xor_si128(x[g][(k + 3) & 3], key));
                x[g][k] = _mm_xor_si128(x[g][k], sm4_t(t));
            }
        }
    }

#pragma GCC unroll 16
    for (int g = 0; g < groups; g++) {
        /* The output block is X35..X32, i.e. x[3], x[2], x[1], x[0]; transpose back. */
        __m128i t0 = _mm_unpacklo_epi32(x[g][3], x[g][2]);
        __m128i t1 = _mm_unpackhi_epi32(x[g][3], x[g][2]);
        __m128i t2 = _mm_unpacklo_epi32(x[g][1], x[g][0]);
        __m128i t3 = _mm_unpackhi_epi32(x[g][1], x[g][0]);
        __m128i o[4] = {_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2),
                        _mm_unpacklo_epi64(t1, t3), _mm_unpackhi_epi64(t1, t3)};
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            /* o[k] holds block g*4 + k. */
            size_t at = (size_t)(g * WIDTH + k) * 16;
            __m128i d = _mm_loadu_si128((const __m128i *)(in + at));
            _mm_storeu_si128((__m128i *)(out + at),
                             _mm_xor_si128(d, _mm_shuffle_epi8(o[k], bswap)));
        }
    }
}

/* One instance per batch size, so that every loop over groups is unrolled. */
#define BATCH_FN(n)                                                                                \
    static TARGET void batch_##n(const uint32_t rk[SM4_ROUNDS], const uint8_t ctr[16],             \
                                 const uint8_t *in, uint8_t *out)                                  \
    {                                                                                              \
        batch(rk, ctr, in, out, n);                                                                \
    }
BATCH_FN(1)
BATCH_FN(2)
BATCH_FN(4)
BATCH_FN(8)
BATCH_FN(16)

static const sm4_impl impl = {
    .width = WIDTH,
    .max_log2 = 4,
    .batch = {batch_1, batch_2, batch_4, batch_8, batch_16},
};

static bool
supports(tde_method m)
{
    return m == TDE_METHOD_SM4_CTR && __builtin_cpu_supports("aes") &&
           __builtin_cpu_supports("ssse3");
}

static tde_status
process(void *sched, const uint8_t counter[TDE_CIPHER_BLOCK_LEN], unsigned skip, const uint8_t *in,
        uint8_t *out, size_t len)
{
    return sm4_process(&impl, sched, counter, skip, in, out, len);
}

const cipher_backend tde_cipher_backend_sm4_aesni = {
    .name = "sm4-aesni",
    .supports = supports,
    .key_new = sm4_key_new,
    .key_free = sm4_key_free,
    .process = process,
};

#endif
