/*
 * SM4-CTR with GFNI and AVX-512, two layouts of the blocks in flight:
 *
 * - word-sliced (batches up to 64 blocks): a group of 16 blocks in 4
 *   registers, register w holding word w of each block. A round is the S-box
 *   (one GF2P8AFFINEQB, one GF2P8AFFINEINVQB) and L's four rotations, six
 *   instructions on the two ports that run shuffles, rotations and GFNI.
 * - byte-sliced (batches of 128 blocks, or 144 to end a call one block past
 *   whole batches): two groups of 64 blocks, byte j of word w of each block
 *   in row 4w + j, whose 32 rounds run in the assembly kernel
 *   sm4_gfni_avx512_bs.S (layout, register allocation and why there), with
 *   the 16 extra blocks as a word-sliced group beside them. L's rotations by
 *   8, 16 and 24 become the choice of row, the rotation by 2 is folded into
 *   two GF2P8AFFINEINVQB matrices: 8 GFNI instructions per 64 blocks and
 *   round, against 24 GFNI or rotations word-sliced.
 *
 * Constants and their derivation: sm4_consts.h, docs/ciphers.md. Compiled for
 * these instructions only inside this file's functions (and the kernel); used
 * only when the CPU reports them.
 */
#include "cipher/sm4.h"

#ifdef SM4_HAVE_X86
#include <immintrin.h>
#include <string.h>

#include "cipher/sm4_consts.h"

#define TARGET __attribute__((target("gfni,avx512f,avx512bw,avx512vl")))
#define INLINE TARGET __attribute__((always_inline)) static inline
#define WIDTH 16     /* blocks per register, word-sliced */
#define GROUPS 4     /* most word-sliced groups in a batch */
#define BS_BLOCKS 64 /* blocks per byte-sliced group */
#define BS_GROUPS 2  /* byte-sliced groups per batch (the kernel's) */

/*
 * sm4_gfni_avx512_bs.S: the 32 rounds on two groups in the layout bs_init
 * writes, in place; ..._ws also on one word-sliced group in st[2][0..3].
 */
__attribute__((visibility("hidden"))) void
tde_sm4_bs_rounds(__m512i st[][16], const uint32_t rkb[SM4_ROUNDS * 4], const uint64_t mats[2]);
__attribute__((visibility("hidden"))) void tde_sm4_bs_rounds_ws(__m512i st[][16],
                                                                const uint32_t rkb[SM4_ROUNDS * 4],
                                                                const uint64_t mats[2],
                                                                const uint32_t rkw[SM4_ROUNDS]);

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

/* The counters of @p groups word-sliced groups from block @p first of the batch at @p ctr. */
INLINE void
ws_init(__m512i x[][4], const int groups, const uint8_t batch_ctr[16], const unsigned first)
{
    uint32_t w[4];
    uint8_t ctr[16];

    memcpy(ctr, batch_ctr, 16);
    sm4_counter_add(ctr, first);
    if (!sm4_counter_words(ctr, w, (unsigned)(groups * WIDTH))) {
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
}

/* XORs the keystream of @p groups word-sliced groups (blocks @p first ..) into their chunks. */
INLINE void
ws_output(__m512i x[][4], const int groups, const sm4_io *io, const unsigned first)
{
    const __m512i bswap =
        _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203); /* per 32-bit word */
    /* A local copy: stores through uint8_t pointers would force reloads of *io. */
    const sm4_io where = *io;
    /* The common case: every chunk in place (and no branch per chunk to find it). */
    const unsigned c0 = first / 4;
    const bool direct =
        where.first == 0 && where.end >= c0 + (unsigned)(groups * SM4_CHUNKS_PER_GROUP);
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
            const unsigned c = c0 + (unsigned)(g * SM4_CHUNKS_PER_GROUP + k);
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

/* XORs the keystream of groups * WIDTH blocks from @p ctr into the chunks @p io names. */
INLINE void
ws_batch(const uint32_t *rk, const uint8_t ctr[16], const sm4_io *io, const int groups)
{
    __m512i x[GROUPS][4];

    ws_init(x, groups, ctr, 0);
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
    ws_output(x, groups, io, 0);
}

/*
 * Lane 16L + i of a byte-sliced group holds the group's block 4i + L, so that
 * the byte transpose in bs_output (within 128-bit lanes) leaves blocks 4c..4c+3
 * in register c.
 */
static inline unsigned
bs_block_of_lane(unsigned lane)
{
    return 4 * (lane % 16) + lane / 16;
}

/*
 * The counters of byte-sliced group @p g (blocks g * 64 .. of the batch) into
 * @p st, premapped for the kernel (PRE's linear part on every byte).
 */
INLINE void
bs_init(__m512i st[16], const uint32_t w[4], const uint8_t ctr[16], unsigned g, bool wraps)
{
    const __m512i pre = _mm512_set1_epi64((long long)SM4_GFNI_PRE_MATRIX);
    __m512i x[16];

    if (!wraps) {
        const __m512i idx = _mm512_set_epi64(
            0x3f3b37332f2b2723, 0x1f1b17130f0b0703, 0x3e3a36322e2a2622, 0x1e1a16120e0a0602,
            0x3d3935312d292521, 0x1d1915110d090501, 0x3c3834302c282420, 0x1c1814100c080400);
        const uint32_t lo = w[3] + g * BS_BLOCKS, hi = lo + 256;
#pragma GCC unroll 16
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++)
                x[4 * i + j] = _mm512_set1_epi8((char)(w[i] >> (8 * j)));
        /* Byte 0 of the low word wraps in the lanes where it ends below its start. */
        const __m512i b0 = _mm512_set1_epi8((char)lo);
        x[12] = _mm512_add_epi8(b0, idx);
        const __mmask64 carry = _mm512_cmplt_epu8_mask(x[12], b0);
        for (int j = 1; j < 4; j++)
            x[12 + j] = _mm512_mask_blend_epi8(carry, _mm512_set1_epi8((char)(lo >> (8 * j))),
                                               _mm512_set1_epi8((char)(hi >> (8 * j))));
    } else {
        /* The low word wraps inside the batch: carries into the upper words, counted per lane. */
        uint8_t bytes[16][BS_BLOCKS];
        for (unsigned lane = 0; lane < BS_BLOCKS; lane++) {
            uint8_t c[16];
            memcpy(c, ctr, 16);
            sm4_counter_add(c, g * BS_BLOCKS + bs_block_of_lane(lane));
            for (int b = 0; b < 16; b++)
                bytes[4 * (b / 4) + 3 - b % 4][lane] = c[b]; /* byte 3 - b%4 of word b/4 */
        }
        for (int r = 0; r < 16; r++)
            x[r] = _mm512_loadu_si512(bytes[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        st[r] = _mm512_gf2p8affine_epi64_epi8(x[r], pre, 0);
}

/* XORs the keystream of byte-sliced group state @p st into chunks @p c0 .. c0 + 15. */
INLINE void
bs_output(const __m512i mapped[16], const sm4_io *where, bool direct, unsigned c0)
{
    const __m512i unmap = _mm512_set1_epi64((long long)SM4_GFNI_BS_UNMAP_MATRIX);
    __m512i st[16], a[16], b[16];

#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        st[r] = _mm512_gf2p8affine_epi64_epi8(mapped[r], unmap, 0);

        /*
         * Byte b of an output block is byte 3 - b%4 of X35-b/4, i.e. of word
         * 3 - b/4: st[15 - b]. Transpose the 16x16 bytes in every 128-bit lane:
         * after the byte, 16-, 32- and 64-bit unpack stages, a[c] holds column c.
         */
#pragma GCC unroll 16
    for (int m = 0; m < 8; m++) {
        b[m] = _mm512_unpacklo_epi8(st[15 - 2 * m], st[14 - 2 * m]);
        b[8 + m] = _mm512_unpackhi_epi8(st[15 - 2 * m], st[14 - 2 * m]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) { /* h = i / 4, n = i % 4 */
        a[8 * (i / 4) + i % 4] = _mm512_unpacklo_epi16(b[2 * i], b[2 * i + 1]);
        a[8 * (i / 4) + 4 + i % 4] = _mm512_unpackhi_epi16(b[2 * i], b[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) { /* h = i / 2, p = i % 2 */
        b[4 * (i / 2) + i % 2] = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
        b[4 * (i / 2) + 2 + i % 2] = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int h = 0; h < 8; h++) {
        a[2 * h] = _mm512_unpacklo_epi64(b[2 * h], b[2 * h + 1]);
        a[2 * h + 1] = _mm512_unpackhi_epi64(b[2 * h], b[2 * h + 1]);
    }
#pragma GCC unroll 16
    for (int c = 0; c < 16; c++) {
        const unsigned chunk = c0 + (unsigned)c;
        const uint8_t *src;
        uint8_t *dst;
        if (direct) {
            src = where->in + chunk * 64;
            dst = where->out + chunk * 64;
        } else {
            sm4_io_chunk(where, chunk, 64, &src, &dst);
        }
        _mm512_storeu_si512(dst, _mm512_xor_si512(_mm512_loadu_si512(src), a[c]));
    }
}

/*
 * XORs the keystream of the two byte-sliced groups (128 blocks), and with
 * @p ws of one word-sliced group after them (16 blocks, whose rounds the
 * kernel runs beside), into the chunks @p io names.
 */
INLINE void
bs_batch(const uint32_t *sched, const uint8_t ctr[16], const sm4_io *io, const bool ws)
{
    static const uint64_t mats[2] = {SM4_GFNI_BS_M0_MATRIX, SM4_GFNI_BS_M1_MATRIX};
    const __m512i pre = _mm512_set1_epi64((long long)SM4_GFNI_PRE_MATRIX);
    const __m512i unmap = _mm512_set1_epi64((long long)SM4_GFNI_BS_UNMAP_MATRIX);
    __m512i st[BS_GROUPS + 1][16]; /* keystream after the rounds: wiped below */
    __m512i xw[1][4];
    uint32_t w[4];
    const unsigned blocks = BS_GROUPS * BS_BLOCKS;
    const bool wraps = sm4_counter_words(ctr, w, blocks);

#pragma GCC unroll 2
    for (int g = 0; g < BS_GROUPS; g++)
        bs_init(st[g], w, ctr, (unsigned)g, wraps);
    if (ws) {
        ws_init(xw, 1, ctr, blocks);
        for (int i = 0; i < 4; i++)
            st[BS_GROUPS][i] = _mm512_gf2p8affine_epi64_epi8(xw[0][i], pre, 0);
        tde_sm4_bs_rounds_ws(st, sched + SM4_ROUNDS, mats, sched + SM4_ROUNDS * 5);
    } else {
        tde_sm4_bs_rounds(st, sched + SM4_ROUNDS, mats);
    }
    const sm4_io where = *io;
    const bool direct = where.first == 0 && where.end >= blocks / 4;
#pragma GCC unroll 2
    for (int g = 0; g < BS_GROUPS; g++)
        bs_output(st[g], &where, direct, (unsigned)g * (BS_BLOCKS / 4));
    if (ws) {
        for (int i = 0; i < 4; i++)
            xw[0][i] = _mm512_gf2p8affine_epi64_epi8(st[BS_GROUPS][i], unmap, 0);
        ws_output(xw, 1, &where, blocks);
    }
    /*
     * Wipe the keystream with vector stores the compiler may neither drop nor
     * turn into rep stos (OPENSSL_cleanse's byte loop and rep stos each cost a
     * fifth of a batch).
     */
#pragma GCC unroll 32
    for (int i = 0; i < BS_GROUPS * 16; i++)
        *(volatile __m512i *)&st[i / 16][i % 16] = _mm512_setzero_si512();
    if (ws)
        for (int i = 0; i < 4; i++)
            *(volatile __m512i *)&st[BS_GROUPS][i] = _mm512_setzero_si512();
}

static TARGET void
bs_128(const uint32_t *sched, const uint8_t ctr[16], const sm4_io *io)
{
    bs_batch(sched, ctr, io, false);
}

static TARGET void
bs_144(const uint32_t *sched, const uint8_t ctr[16], const sm4_io *io)
{
    bs_batch(sched, ctr, io, true);
}

/* One instance per batch size, so that every loop over groups is unrolled. */
#define WS_FN(n)                                                                                   \
    static TARGET void ws_##n(const uint32_t *sched, const uint8_t ctr[16], const sm4_io *io)      \
    {                                                                                              \
        ws_batch(sched, ctr, io, n);                                                               \
    }
WS_FN(1)
WS_FN(2)
WS_FN(4)

/* Sizes in word-sliced groups of 16 blocks; 8 is the byte-sliced kernel's 128 blocks. */
static const sm4_impl impl = {
    .width = WIDTH,
    .n_sizes = 5,
    .sizes =
        {
            {1, ws_1},
            {2, ws_2},
            {4, ws_4},
            {8, bs_128},
            {9, bs_144},
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
