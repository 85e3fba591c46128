/*
 * SM4 parts shared by the vectorised backends. Threat model: round keys are as
 * secret as the data key, so they live in a tde_secret (locked, wiped on free).
 */
#include <string.h>

#include <openssl/crypto.h>

#include "cipher/sm4.h"
#include "cipher/sm4_consts.h"
#include "common/error.h"
#include "tde/secret.h"

const uint8_t sm4_sbox[256] = {SM4_SBOX_TABLE};

static uint32_t
rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

/*
 * S-box lookup that reads every entry, so that the key-dependent index leaves
 * no trace in the cache (the vector paths compute the S-box instead).
 */
static uint32_t
sbox_ct(uint32_t x)
{
    uint32_t r = 0;
    for (uint32_t i = 0; i < 256; i++)
        r |= sm4_sbox[i] & (((i ^ x) - 1) >> 8 & 0xff); /* 0xff only when i == x */
    return r;
}

/* The key schedule's T': S-box on each byte, then L'(b) = b ^ (b <<< 13) ^ (b <<< 23). */
static uint32_t
key_transform(uint32_t x)
{
    uint32_t b = sbox_ct(x >> 24) << 24 | sbox_ct((x >> 16) & 0xff) << 16 |
                 sbox_ct((x >> 8) & 0xff) << 8 | sbox_ct(x & 0xff);
    return b ^ rol32(b, 13) ^ rol32(b, 23);
}

/* GF2P8AFFINEQB with SM4_GFNI_PRE_MATRIX on one byte: bit i is row qword byte 7 - i. */
static uint32_t
gfni_pre(uint32_t x)
{
    uint32_t r = 0;
    for (int i = 0; i < 8; i++) {
        uint32_t row = (uint32_t)(SM4_GFNI_PRE_MATRIX >> (8 * (7 - i))) & x & 0xff;
        row ^= row >> 4;
        row ^= row >> 2;
        row ^= row >> 1;
        r |= (row & 1) << i;
    }
    return r ^ SM4_GFNI_PRE_CONST;
}

tde_status
sm4_key_new(void **sched, tde_method m, const uint8_t *key, size_t key_len)
{
    static const uint32_t fk[4] = {0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc};
    tde_secret *s = NULL;
    uint32_t k[4];
    uint32_t *rk;

    if (m != TDE_METHOD_SM4_CTR || key_len != SM4_KEY_LEN)
        return tde_error_set(
            TDE_ERR_INVALID_ARG,
            "sm4: needs method sm4-ctr and a %d-byte key (got method %d, %zu bytes)", SM4_KEY_LEN,
            (int)m, key_len);
    TDE_RET(tde_secret_new(&s, SM4_SCHED_WORDS * sizeof(uint32_t)));
    rk = (uint32_t *)(void *)tde_secret_data_mut(s);
    for (int i = 0; i < 4; i++)
        k[i] = sm4_load_be32(key + 4 * i) ^ fk[i];
    for (int i = 0; i < SM4_ROUNDS; i++) {
        /* CK_i's byte j is (4i + j) * 7 mod 256 (GB/T 32907-2016, 7.3). */
        uint32_t ck = 0;
        for (int j = 0; j < 4; j++)
            ck = ck << 8 | (uint32_t)(((4 * i + j) * 7) & 0xff);
        rk[i] = k[i & 3] ^ key_transform(k[(i + 1) & 3] ^ k[(i + 2) & 3] ^ k[(i + 3) & 3] ^ ck);
        k[i & 3] = rk[i];
        rk[SM4_ROUNDS * 5 + i] = 0;
        for (int j = 0; j < 4; j++) {
            uint32_t b = gfni_pre(rk[i] >> (8 * j) & 0xff);
            rk[SM4_ROUNDS + 4 * i + j] = b * 0x01010101u;
            rk[SM4_ROUNDS * 5 + i] |= b << (8 * j);
        }
    }
    OPENSSL_cleanse(k, sizeof(k));
    *sched = s;
    return TDE_OK;
}

void
sm4_key_free(void *sched)
{
    tde_secret_free(sched);
}

void
sm4_counter_add(uint8_t ctr[16], uint64_t n)
{
    for (int i = 15; i >= 0 && n != 0; i--) {
        n += ctr[i];
        ctr[i] = (uint8_t)n;
        n >>= 8;
    }
}

void
sm4_counters_transposed(const uint8_t ctr[16], unsigned width, unsigned groups, uint32_t *words)
{
    for (unsigned g = 0; g < groups; g++) {
        for (unsigned l = 0; l < width; l++) {
            uint8_t c[16];
            memcpy(c, ctr, 16);
            sm4_counter_add(c, g * width + (l % 4) * (width / 4) + l / 4);
            for (unsigned w = 0; w < 4; w++)
                words[(g * 4 + w) * width + l] = sm4_load_be32(c + 4 * w);
        }
    }
}

#ifndef SM4_PREFETCH_AHEAD
#define SM4_PREFETCH_AHEAD 8192
#endif

tde_status
sm4_process(const sm4_impl *impl, void *sched, const uint8_t counter[16], unsigned skip,
            const uint8_t *in, uint8_t *out, size_t len)
{
    const uint32_t *rk = (const uint32_t *)(const void *)tde_secret_data(sched);
    const size_t chunk = (size_t)impl->width / 4 * 16; /* bytes */
    const unsigned last = impl->n_sizes - 1;
    uint8_t head[64], tail[64], spare[64];
    uint8_t ctr[16];
    bool wipe = false;
    size_t fetched = 0; /* bytes from in on that were prefetched */

    if (skip >= 16)
        return tde_error_set(TDE_ERR_INVALID_ARG, "sm4: skip %u is not below the block size", skip);
    memcpy(ctr, counter, 16);
    while (len != 0) {
        /*
         * The kernels read the data only after their 32 rounds: have the lines
         * fetched meanwhile (data not in cache, e.g. a block just read, cost a
         * stall per line). The next SM4_PREFETCH_AHEAD bytes (this batch and
         * the following ones), before the head and tail copies touch the first
         * and last line: a whole 4 KiB call is requested at once, and no line of
         * it is waited for on its own (measured: +15% on cold 4 KiB calls).
         */
        size_t ahead = len < SM4_PREFETCH_AHEAD ? len : SM4_PREFETCH_AHEAD;
        for (; fetched < ahead; fetched += 64) {
            __builtin_prefetch(in + fetched, 0);
            if (out != in)
                __builtin_prefetch(out + fetched, 1);
        }
        if (ahead == len) { /* the last line, which the loop may stop short of */
            __builtin_prefetch(in + len - 1, 0);
            if (out != in)
                __builtin_prefetch(out + len - 1, 1);
        }
        /* Blocks left, the partial first and last included. */
        size_t blocks = (skip + len + 15) / 16, head_len = 0, tail_at, tail_len = 0;
        unsigned s = 0;

        if (blocks > (size_t)impl->sizes[last].groups * impl->width)
            s = last - 1; /* a bulk batch */
        else
            while ((size_t)impl->sizes[s].groups * impl->width < blocks)
                s++;
        /* This batch covers bytes [skip, skip + n) of the blocks from ctr on. */
        size_t cap = (size_t)impl->sizes[s].groups * impl->width * 16 - skip;
        size_t n = len < cap ? len : cap;
        sm4_io io = {in, out, skip != 0, (unsigned)((skip + n) / chunk), head, tail, spare};
        if (io.first) { /* chunk 0 starts before the caller's bytes */
            head_len = chunk - skip < n ? chunk - skip : n;
            memset(head, 0, chunk);
            memcpy(head + skip, in, head_len);
            if (io.end < 1) { /* everything is in the head chunk */
                io.end = 1;
            } else {
                io.in = in + (chunk - skip);
                io.out = out + (chunk - skip);
            }
        }
        tail_at = io.end * chunk - skip; /* chunk end's offset from in */
        if (tail_at < n) {
            tail_len = n - tail_at;
            memset(tail, 0, chunk);
            memcpy(tail, in + tail_at, tail_len);
        }
        impl->sizes[s].fn(rk, ctr, &io);
        wipe |= io.first != 0 || io.end < impl->sizes[s].groups * SM4_CHUNKS_PER_GROUP;
        memcpy(out, head + skip, head_len);
        if (tail_len != 0)
            memcpy(out + tail_at, tail, tail_len);
        sm4_counter_add(ctr, (skip + n) / 16);
        in += n;
        out += n;
        len -= n;
        skip = 0;
        fetched = fetched > n ? fetched - n : 0;
    }
    if (wipe) { /* the buffers hold keystream */
        OPENSSL_cleanse(head, sizeof(head));
        OPENSSL_cleanse(tail, sizeof(tail));
        OPENSSL_cleanse(spare, sizeof(spare));
    }
    return TDE_OK;
}
