/*
 * The interface every CTR backend implements (OpenSSL EVP, libgcrypt, the
 * vectorised SM4 paths). cipher.c owns the list of backends and the counter
 * arithmetic; a backend only turns a starting counter block into keystream.
 */
#ifndef TDE_LIB_CIPHER_BACKEND_H
#define TDE_LIB_CIPHER_BACKEND_H

#include <stdbool.h>

#include "tde/cipher.h"

typedef struct cipher_backend {
    const char *name; /* as listed in TDE_CIPHER_BACKEND */
    /* Whether this backend can serve @p m on this CPU and library build. */
    bool (*supports)(tde_method m);
    /* Expands @p key into a schedule that process() may use from many threads at once. */
    tde_status (*key_new)(void **sched, tde_method m, const uint8_t *key, size_t key_len);
    /* Wipes (as far as the library allows) and frees a schedule. */
    void (*key_free)(void *sched);
    /*
     * XORs keystream into @p len bytes. The first keystream block is the
     * 16-byte big-endian @p counter, of which the first @p skip bytes
     * (0..15) are discarded; later blocks increment the counter modulo 2^128.
     * Thread-safe on one schedule; in == out is allowed.
     */
    tde_status (*process)(void *sched, const uint8_t counter[TDE_CIPHER_BLOCK_LEN], unsigned skip,
                          const uint8_t *in, uint8_t *out, size_t len);
} cipher_backend;

#endif
