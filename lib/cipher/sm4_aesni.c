/*
 * SM4-CTR with AES-NI and AVX2, for CPUs without GFNI: up to 128 blocks in
 * flight as 16 groups of 8, each group held transposed (register w holds word
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
#define WIDTH 8 /* blocks per register */
#define GROUPS SM4_MAX_GROUPS

static const uint8_t pre_lo[16] = {SM4_AESNI_PRE_LO}, pre_hi[16] = {SM4_AESNI_PRE_HI},
                     post_lo[16] = {SM4_AESNI_POST_LO}, post_hi[16] = {SM4_AESNI_POST_HI};

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

/*
 * One round: x0 ^ T(x) with T = L(tau(.)): the S-box on every byte, then
 * L(y) = y ^ y<<<2 ^ y<<<10 ^ y<<<18 ^ y<<<24.
 */
INLINE __m256i
sm4_round(__m256i x0, __m256i x)
{
    /* AESENCLAST applies ShiftRows after SubBytes; this shuffle undoes it in advance. */
    const __m256i inv_shift_rows =
        _mm256_setr_epi8(0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3, 0, 13, 10, 7, 4, 1,
                         14, 11, 8, 5, 2, 15, 12, 9, 6, 3);
    __m128i lo, hi;
    __m256i t;

    x = _mm256_shuffle_epi8(nibble_affine(x, pre_lo, pre_hi), inv_shift_rows);
    /* AES-NI without VAES works on 128 bits: one AESENCLAST per half. */
    lo = _mm_aesenclast_si128(_mm256_castsi256_si128(x), _mm_setzero_si128());
    hi = _mm_aesenclast_si128(_mm256_extracti128_si256(x, 1), _mm_setzero_si128());
    x = nibble_affine(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1), post_lo, post_hi);
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

    for (int i = 0; i < 4; i++)
        w[i] = (uint32_t)ctr[4 * i] << 24 | (uint32_t)ctr[4 * i + 1] << 16 |
               (uint32_t)ctr[4 * i + 2] << 8 | ctr[4 * i + 3];
    if (w[3] <= UINT32_MAX - (uint32_t)(groups * WIDTH - 1)) {
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
BATCH_FN(12)
BATCH_FN(16)

static const sm4_impl impl = {
    .width = WIDTH,
    .n_sizes = 6,
    .sizes =
        {
            {1, batch_1},
            {2, batch_2},
            {4, batch_4},
            {8, batch_8},
            {12, batch_12},
            {16, batch_16},
        },
};

static bool
supports(tde_method m)
{
    __builtin_cpu_init(); /* idempotent; needed if called before constructors ran */
    return m == TDE_METHOD_SM4_CTR && __builtin_cpu_supports("aes") &&
           __builtin_cpu_supports("avx2");
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
