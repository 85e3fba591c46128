/*
 * SM4-CTR with GFNI and AVX-512: up to 144 blocks in flight as 9 groups of 16, each
 * group held transposed (register w holds word w of 16 blocks). The S-box is
 * one GF2P8AFFINEQB and one GF2P8AFFINEINVQB (constants and their derivation:
 * sm4_consts.h, docs/ciphers.md). Compiled for these instructions only inside
 * this file's functions; used only when the CPU reports them.
 */
#include "cipher/sm4.h"

#ifdef SM4_HAVE_X86
#include <immintrin.h>

#include "cipher/sm4_consts.h"

#define TARGET __attribute__((target("gfni,avx512f,avx512bw,avx512vl")))
#define INLINE TARGET __attribute__((always_inline)) static inline
#define WIDTH 16 /* blocks per register */
#define GROUPS SM4_MAX_GROUPS

/*
 * One round: x0 ^ T(t) with T = L(tau(.)): the S-box on every byte, then
 * L(y) = y ^ y<<<2 ^ y<<<10 ^ y<<<18 ^ y<<<24. The six terms are XORed as two
 * independent three-way XORs, to keep the round's dependency chain short.
 */
INLINE __m512i
sm4_round(__m512i x0, __m512i t)
{
    const __m512i pre = _mm512_set1_epi64((long long)SM4_GFNI_PRE_MATRIX);
    const __m512i post = _mm512_set1_epi64((long long)SM4_GFNI_POST_MATRIX);
    __m512i y, a, b;

    y = _mm512_gf2p8affine_epi64_epi8(t, pre, SM4_GFNI_PRE_CONST);
    y = _mm512_gf2p8affineinv_epi64_epi8(y, post, SM4_GFNI_POST_CONST);
    a = _mm512_ternarylogic_epi32(x0, y, _mm512_rol_epi32(y, 2), 0x96);
    b = _mm512_ternarylogic_epi32(_mm512_rol_epi32(y, 10), _mm512_rol_epi32(y, 18),
                                  _mm512_rol_epi32(y, 24), 0x96);
    return _mm512_xor_si512(a, b);
}

/* XORs the keystream of groups * WIDTH blocks from @p ctr into the chunks @p io names. */
INLINE void
batch(const uint32_t *rk, const uint8_t ctr[16], const sm4_io *io, const int groups)
{
    const __m512i bswap =
        _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203); /* per 32-bit word */
    __m512i x[GROUPS][4];
    uint32_t w[4];

    for (int i = 0; i < 4; i++)
        w[i] = (uint32_t)ctr[4 * i] << 24 | (uint32_t)ctr[4 * i + 1] << 16 |
               (uint32_t)ctr[4 * i + 2] << 8 | ctr[4 * i + 3];
    if (w[3] <= UINT32_MAX - (uint32_t)(groups * WIDTH - 1)) {
        /* Lane 4j+i holds block 4i+j (see sm4_counters_transposed). */
        const __m512i lane =
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++) {
            x[g][0] = _mm512_set1_epi32((int)w[0]);
            x[g][1] = _mm512_set1_epi32((int)w[1]);
            x[g][2] = _mm512_set1_epi32((int)w[2]);
            x[g][3] =
                _mm512_add_epi32(_mm512_set1_epi32((int)(w[3] + (uint32_t)(g * WIDTH))), lane);
        }
    } else {
        uint32_t words[GROUPS * 4 * WIDTH];
        sm4_counters_transposed(ctr, WIDTH, (unsigned)groups, words);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < 4; i++)
                x[g][i] = _mm512_loadu_si512(words + (g * 4 + i) * WIDTH);
    }

    for (int r = 0; r < SM4_ROUNDS; r += 4) {
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            const __m512i key = _mm512_set1_epi32((int)rk[r + k]);
#pragma GCC unroll 16
            for (int g = 0; g < groups; g++) {
                /* x[(k + 3) & 3] is the newest word: XOR it in last. */
                __m512i t =
                    _mm512_ternarylogic_epi32(x[g][(k + 1) & 3], x[g][(k + 2) & 3], key, 0x96);
                x[g][k] = sm4_round(x[g][k], _mm512_xor_si512(t, x[g][(k + 3) & 3]));
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
        __m512i t0 = _mm512_unpacklo_epi32(x[g][3], x[g][2]);
        __m512i t1 = _mm512_unpackhi_epi32(x[g][3], x[g][2]);
        __m512i t2 = _mm512_unpacklo_epi32(x[g][1], x[g][0]);
        __m512i t3 = _mm512_unpackhi_epi32(x[g][1], x[g][0]);
        __m512i o[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                        _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            /* o[k] holds blocks g*16 + 4k .. g*16 + 4k + 3 in order. */
            const unsigned c = (unsigned)(g * SM4_CHUNKS_PER_GROUP + k);
            const uint8_t *src;
            uint8_t *dst;
            if (direct) {
                src = where.in + c * 64;
                dst = where.out + c * 64;
            } else {
                sm4_io_chunk(&where, c, 64, &src, &dst);
            }
            __m512i d = _mm512_loadu_si512(src);
            _mm512_storeu_si512(dst, _mm512_xor_si512(d, _mm512_shuffle_epi8(o[k], bswap)));
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

static bool
supports(tde_method m)
{
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return m == TDE_METHOD_SM4_CTR && __builtin_cpu_supports("gfni") &&
           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

static tde_status
process(void *sched, const uint8_t counter[TDE_CIPHER_BLOCK_LEN], unsigned skip, const uint8_t *in,
        uint8_t *out, size_t len)
{
    return sm4_process(&impl, sched, counter, skip, in, out, len);
}

const cipher_backend tde_cipher_backend_sm4_gfni_avx512 = {
    .name = "sm4-gfni-avx512",
    .supports = supports,
    .key_new = sm4_key_new,
    .key_free = sm4_key_free,
    .process = process,
};

#endif
