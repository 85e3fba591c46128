/*
 * The body shared by the two AVX2 SM4-CTR paths (sm4_aesni.c, sm4_gfni_avx2.c):
 * up to 72 blocks in flight as 9 groups of 8, each group held transposed
 * (register w holds word w of 8 blocks); counter generation, the round loop,
 * the transposition back and the store. Not a general header: include it once,
 * from one of those files, after defining
 *   TARGET  the __attribute__((target(...))) of that file's instructions,
 *   INLINE  TARGET __attribute__((always_inline)) static inline,
 *   sbox_bytes  an INLINE function __m256i -> __m256i applying the SM4 S-box to
 *             every byte.
 * It defines `impl` (the sm4_impl of batch sizes) and `process`; the file keeps
 * its own supports() and backend.
 */
#ifndef TDE_LIB_CIPHER_SM4_AVX2_BODY_H
#define TDE_LIB_CIPHER_SM4_AVX2_BODY_H

#if !defined(TARGET) || !defined(INLINE)
#error "define TARGET and INLINE before including sm4_avx2_body.h"
#endif

#include <immintrin.h>

#include "cipher/sm4.h"

#define WIDTH 8 /* blocks per register */
#define GROUPS SM4_MAX_GROUPS

/* Rotates every 32-bit word left by 8, 16 or 24 bits (byte shuffles). */
INLINE __m256i
rol_bytes(__m256i x, int bytes)
{
    const __m256i m8 = _mm256_setr_epi8(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0,
                                        1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14);
    const __m256i m16 = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3,
                                         0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    const __m256i m24 = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2,
                                         3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
    return _mm256_shuffle_epi8(x, bytes == 1 ? m8 : bytes == 2 ? m16 : m24);
}

/*
 * One round: x0 ^ T(x) with T = L(tau(.)): the S-box on every byte, then
 * L(y) = y ^ y<<<2 ^ y<<<10 ^ y<<<18 ^ y<<<24.
 */
INLINE __m256i
sm4_round(__m256i x0, __m256i x)
{
    __m256i t;

    x = sbox_bytes(x);
    /* x<<<2 ^ x<<<10 ^ x<<<18 = (x ^ x<<<8 ^ x<<<16) <<< 2 */
    t = _mm256_xor_si256(x, _mm256_xor_si256(rol_bytes(x, 1), rol_bytes(x, 2)));
    return _mm256_xor_si256(_mm256_xor_si256(_mm256_xor_si256(x0, x), rol_bytes(x, 3)),
                            _mm256_xor_si256(_mm256_slli_epi32(t, 2), _mm256_srli_epi32(t, 30)));
}

/* XORs the keystream of groups * WIDTH blocks from @p ctr into the chunks @p io names. */
INLINE void
batch(const uint32_t *rk, const uint8_t ctr[16], const sm4_io *io, const int groups)
{
    const __m256i bswap = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3,
                                           2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
    __m256i x[GROUPS][4];
    uint32_t w[4];

    if (!sm4_counter_words(ctr, w, (unsigned)(groups * WIDTH))) {
        /* Lane 4j+i holds block 2i+j (see sm4_counters_transposed). */
        const __m256i lane = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++) {
            x[g][0] = _mm256_set1_epi32((int)w[0]);
            x[g][1] = _mm256_set1_epi32((int)w[1]);
            x[g][2] = _mm256_set1_epi32((int)w[2]);
            x[g][3] =
                _mm256_add_epi32(_mm256_set1_epi32((int)(w[3] + (uint32_t)(g * WIDTH))), lane);
        }
    } else {
        uint32_t words[GROUPS * 4 * WIDTH];
        sm4_counters_transposed(ctr, WIDTH, (unsigned)groups, words);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < 4; i++)
                x[g][i] = _mm256_loadu_si256((const __m256i *)(words + (g * 4 + i) * WIDTH));
    }

    for (int r = 0; r < SM4_ROUNDS; r += 4) {
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            const __m256i key = _mm256_set1_epi32((int)rk[r + k]);
#pragma GCC unroll 16
            for (int g = 0; g < groups; g++) {
                /* x[(k + 3) & 3] is the newest word: XOR it in last. */
                __m256i t =
                    _mm256_xor_si256(_mm256_xor_si256(x[g][(k + 1) & 3], x[g][(k + 2) & 3]), key);
                x[g][k] = sm4_round(x[g][k], _mm256_xor_si256(t, x[g][(k + 3) & 3]));
            }
        }
    }

    /* A local copy: stores through uint8_t pointers would force reloads of *io. */
    const sm4_io where = *io;
    /* The common case: every chunk in place (and no branch per chunk to find it). */
    const bool direct = where.first == 0 && where.end >= (unsigned)(groups * SM4_CHUNKS_PER_GROUP);
#pragma GCC unroll 16
    for (int g = 0; g < groups; g++) {
        /* The output block is X35..X32, i.e. x[3], x[2], x[1], x[0]; transpose back. */
        __m256i t0 = _mm256_unpacklo_epi32(x[g][3], x[g][2]);
        __m256i t1 = _mm256_unpackhi_epi32(x[g][3], x[g][2]);
        __m256i t2 = _mm256_unpacklo_epi32(x[g][1], x[g][0]);
        __m256i t3 = _mm256_unpackhi_epi32(x[g][1], x[g][0]);
        __m256i o[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                        _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            /* o[k] holds blocks g*8 + 2k and g*8 + 2k + 1. */
            const unsigned c = (unsigned)(g * SM4_CHUNKS_PER_GROUP + k);
            const uint8_t *src;
            uint8_t *dst;
            if (direct) {
                src = where.in + c * 32;
                dst = where.out + c * 32;
            } else {
                sm4_io_chunk(&where, c, 32, &src, &dst);
            }
            __m256i d = _mm256_loadu_si256((const __m256i *)(src));
            _mm256_storeu_si256((__m256i *)(dst),
                                _mm256_xor_si256(d, _mm256_shuffle_epi8(o[k], bswap)));
        }
    }
}

/* One instance per batch size, so that every loop over groups is unrolled. */
#define BATCH_FN(n)                                                                                \
    static TARGET void batch_##n(const uint32_t rk[SM4_ROUNDS], const uint8_t ctr[16],             \
                                 const sm4_io *io)                                                 \
    {                                                                                              \
        batch(rk, ctr, io, n);                                                                     \
    }
BATCH_FN(1)
BATCH_FN(2)
BATCH_FN(4)
BATCH_FN(8)
BATCH_FN(9)

static const sm4_impl impl = {
    .width = WIDTH,
    .n_sizes = 5,
    .sizes =
        {
            {1, batch_1},
            {2, batch_2},
            {4, batch_4},
            {8, batch_8},
            {9, batch_9},
        },
};

static tde_status
process(void *sched, const uint8_t counter[TDE_CIPHER_BLOCK_LEN], unsigned skip, const uint8_t *in,
        uint8_t *out, size_t len)
{
    return sm4_process(&impl, sched, counter, skip, in, out, len);
}

#endif
