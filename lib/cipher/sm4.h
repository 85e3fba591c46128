/*
 * SM4-CTR shared by the vectorised backends: the key schedule, the S-box and
 * the driver that turns a backend's whole-block kernel into
 * cipher_backend.process (partial first and last blocks, counter carries).
 */
#ifndef TDE_LIB_CIPHER_SM4_H
#define TDE_LIB_CIPHER_SM4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cipher/backend.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SM4_HAVE_X86 1
extern const cipher_backend tde_cipher_backend_sm4_gfni_avx512;
extern const cipher_backend tde_cipher_backend_sm4_gfni_avx2;
extern const cipher_backend tde_cipher_backend_sm4_aesni;
#endif

#define SM4_KEY_LEN 16
#define SM4_ROUNDS 32
/*
 * The key schedule: the 32 round keys, then for the byte-sliced kernel
 * (sm4_gfni_avx512_bs.S) byte j (0 = least significant) of round key i, mapped
 * by the GFNI pre-affine map (PRE x + pre_c), in all four bytes of word
 * SM4_ROUNDS + 4i + j, then round key i with each byte so mapped in word
 * SM4_ROUNDS * 5 + i (for the word-sliced group the kernel runs beside).
 */
#define SM4_SCHED_WORDS (SM4_ROUNDS * 6)

/* The S-box of GB/T 32907-2016 (table 1). */
extern const uint8_t sm4_sbox[256];

/*
 * Most registers-full of blocks one batch holds. Long calls run batches of
 * SM4_MAX_GROUPS - 1 groups (measured: 16 were no faster, the state spills);
 * the one-group-larger batch only ends a call, so that a call one block longer
 * than whole bulk batches (a 4 KiB read that starts inside a block) needs no
 * extra, latency-bound one-group batch.
 */
#define SM4_MAX_GROUPS 9
/* A batch stores its output in chunks of width / 4 blocks (one 128-bit lane per block). */
#define SM4_CHUNKS_PER_GROUP 4

/*
 * Where a batch reads and writes its chunks (width / 4 blocks each, numbered
 * from the batch's first block). Chunks [first, end) are in place, chunk first
 * at in/out and the rest following; chunk 0 when first is 1 is in head, chunk
 * end in tail, later ones in spare (whose output nobody reads).
 */
typedef struct sm4_io {
    const uint8_t *in;
    uint8_t *out;
    unsigned first, end;
    uint8_t *head, *tail, *spare;
} sm4_io;

/* Source and destination of chunk @p c of @p chunk_bytes bytes. */
static inline void
sm4_io_chunk(const sm4_io *io, unsigned c, size_t chunk_bytes, const uint8_t **src, uint8_t **dst)
{
    if (c < io->first) {
        *src = *dst = io->head;
    } else if (c < io->end) {
        *src = io->in + (c - io->first) * chunk_bytes;
        *dst = io->out + (c - io->first) * chunk_bytes;
    } else {
        *src = *dst = c == io->end ? io->tail : io->spare;
    }
}

/* XORs the keystream of one batch (counter, counter + 1, ... mod 2^128) into its chunks. */
typedef void (*sm4_batch_fn)(const uint32_t rk[SM4_ROUNDS], const uint8_t counter[16],
                             const sm4_io *io);

/*
 * A vectorised path: width blocks per register, batch sizes in ascending order;
 * the last is SM4_MAX_GROUPS, the one before it SM4_MAX_GROUPS - 1 (the bulk size).
 */
typedef struct sm4_impl {
    unsigned width;
    unsigned n_sizes;
    struct {
        unsigned groups;
        sm4_batch_fn fn;
    } sizes[8];
} sm4_impl;

/* cipher_backend.key_new/key_free for SM4 (the schedule is 32 round keys in a tde_secret). */
tde_status sm4_key_new(void **sched, tde_method m, const uint8_t *key, size_t key_len);
void sm4_key_free(void *sched);

/*
 * cipher_backend.process on top of @p impl: bulk batches while the rest does
 * not fit in the largest, then the smallest batch that covers the rest, its
 * partial first and last blocks included; whole chunks in place, a partial
 * first or last chunk through a small stack buffer.
 */
tde_status sm4_process(const sm4_impl *impl, void *sched, const uint8_t counter[16], unsigned skip,
                       const uint8_t *in, uint8_t *out, size_t len);

static inline uint32_t
sm4_load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The four big-endian words of counter @p ctr into @p w; whether its low word
 * wraps within the @p blocks blocks from it (the kernels then take counters
 * from sm4_counters_transposed instead of adding lane offsets).
 */
static inline bool
sm4_counter_words(const uint8_t ctr[16], uint32_t w[4], unsigned blocks)
{
    for (int i = 0; i < 4; i++)
        w[i] = sm4_load_be32(ctr + 4 * i);
    return w[3] > UINT32_MAX - (blocks - 1);
}

/* Adds @p n to the 128-bit big-endian counter @p ctr (mod 2^128). */
void sm4_counter_add(uint8_t ctr[16], uint64_t n);

/*
 * Fills the counters of @p groups registers-full of @p width lanes each in
 * transposed form: word w (0..3) of the block in lane l of group g goes to
 * words[(g * 4 + w) * width + l]. Lane 4j+i (j: 128-bit lane, i: word in it)
 * holds block g * width + i * (width / 4) + j, so that the 4x4 transposes at
 * the end put the blocks back in order. The kernels use it when the counter's
 * low 32 bits wrap inside a batch (otherwise they add lane offsets in SIMD).
 */
void sm4_counters_transposed(const uint8_t ctr[16], unsigned width, unsigned groups,
                             uint32_t *words);

#endif
