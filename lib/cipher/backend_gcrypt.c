/*
 * CTR through libgcrypt, whose VAES/AVX2 bulk paths are about twice as fast as
 * OpenSSL 3.0's for AES and seven times for SM4 on our machines.
 *
 * A library must not take libgcrypt's process-wide initialisation away from
 * its host: if the host has finished initialising it we use it as it is;
 * otherwise we initialise it ourselves, with secure memory for the key
 * schedules and without letting libgcrypt print anything.
 */
#include <gcrypt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cipher/backend.h"
#include "cipher/ctx_pool.h"
#include "common/error.h"
#include "tde/secret.h"

static int
gcrypt_algo(tde_method m)
{
    switch (m) {
    case TDE_METHOD_AES128_CTR: return GCRY_CIPHER_AES128;
    case TDE_METHOD_AES192_CTR: return GCRY_CIPHER_AES192;
    case TDE_METHOD_AES256_CTR: return GCRY_CIPHER_AES256;
    case TDE_METHOD_SM4_CTR: return GCRY_CIPHER_SM4;
    default: return 0;
    }
}

static pthread_once_t gcrypt_once = PTHREAD_ONCE_INIT;
static bool gcrypt_ready;
static unsigned gcrypt_open_flags; /* GCRY_CIPHER_SECURE when we own secure memory */

static void
gcrypt_init(void)
{
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
        gcrypt_ready = gcry_check_version("1.10.0") != NULL;
        return;
    }
    if (gcry_check_version("1.10.0") == NULL)
        return;
    gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
    /* 64 KiB of locked memory for schedules; it grows (unlocked) when more keys are in use. */
    if (gcry_control(GCRYCTL_INIT_SECMEM, 65536, 0) == 0) {
        gcry_control(GCRYCTL_AUTO_EXPAND_SECMEM, 65536, 0);
        gcrypt_open_flags = GCRY_CIPHER_SECURE;
    }
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    gcrypt_ready = true;
}

static bool
gcrypt_supports(tde_method m)
{
    pthread_once(&gcrypt_once, gcrypt_init);
    int algo = gcrypt_algo(m);
    return gcrypt_ready && algo != 0 && gcry_cipher_test_algo(algo) == 0;
}

typedef struct gcrypt_sched {
    ctx_pool pool;
    int algo;
    size_t key_len;
    tde_secret *key; /* libgcrypt cannot copy a handle, so new ones are keyed from here */
} gcrypt_sched;

static void *
gcrypt_make(void *owner)
{
    gcrypt_sched *s = owner;
    gcry_cipher_hd_t hd;
    if (gcry_cipher_open(&hd, s->algo, GCRY_CIPHER_MODE_CTR, gcrypt_open_flags) != 0)
        return NULL;
    if (gcry_cipher_setkey(hd, tde_secret_data(s->key), s->key_len) != 0) {
        gcry_cipher_close(hd);
        return NULL;
    }
    return hd;
}

static void
gcrypt_destroy(void *ctx)
{
    gcry_cipher_close(ctx); /* wipes the schedule */
}

static void
gcrypt_key_free(void *sched)
{
    gcrypt_sched *s = sched;
    if (s == NULL)
        return;
    ctx_pool_clear(&s->pool);
    tde_secret_free(s->key);
    free(s);
}

static tde_status
gcrypt_key_new(void **out, tde_method m, const uint8_t *key, size_t key_len)
{
    gcrypt_sched *s = calloc(1, sizeof(*s));
    tde_status st = TDE_OK;
    TDE_ENSURE(s != NULL, TDE_ERR_NOMEM, "out of memory expanding a %s key", tde_method_name(m));
    s->algo = gcrypt_algo(m);
    s->key_len = key_len;
    s->pool.make = gcrypt_make;
    s->pool.destroy = gcrypt_destroy;
    s->pool.owner = s;
    TDE_ERR(tde_secret_from(&s->key, key, key_len));
    void *first = gcrypt_make(s);
    TDE_ENSURE(first != NULL, TDE_ERR_CRYPTO, "libgcrypt could not set a %s key",
               tde_method_name(m));
    ctx_pool_give(&s->pool, first);
    *out = s;
    return TDE_OK;
err:
    gcrypt_key_free(s);
    return st;
}

#define GCRYPT_SMALL 512

static tde_status
gcrypt_process(void *sched, const uint8_t counter[16], unsigned skip, const uint8_t *in,
               uint8_t *out, size_t len)
{
    gcrypt_sched *s = sched;
    gcry_cipher_hd_t hd = ctx_pool_take(&s->pool);
    if (hd == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "out of memory for a libgcrypt cipher handle");
    /* Setting the counter also drops any keystream left over from the last call. */
    gcry_error_t e = gcry_cipher_setctr(hd, counter, 16);
    if (e == 0 && skip + len <= GCRYPT_SMALL && (skip > 0 || (len > 64 && len % 128 != 0))) {
        /* A short call (WAL appends: 100-200 bytes, mostly starting mid-block). libgcrypt
         * wants a second call to discard @p skip bytes, and its bulk path runs 8 blocks at a
         * time; one call on a copy behind @p skip discarded bytes, padded to whole 8-block
         * groups when that is more than 4 blocks, costs less (measured: 100-byte calls at
         * running offsets 69 -> 52 ns). */
        uint8_t buf[GCRYPT_SMALL];
        size_t whole = skip + len > 64 ? (skip + len + 127) & ~(size_t)127 : skip + len;
        memset(buf, 0, skip);
        memcpy(buf + skip, in, len);
        memset(buf + skip + len, 0, whole - skip - len);
        e = gcry_cipher_encrypt(hd, buf, whole, NULL, 0);
        memcpy(out, buf + skip, len);
        OPENSSL_cleanse(buf, whole); /* keystream and, when decrypting, plaintext */
    } else {
        if (e == 0 && skip > 0) {
            uint8_t scratch[16] = {0};
            e = gcry_cipher_encrypt(hd, scratch, skip, NULL, 0);
        }
        if (e == 0 && len > 0)
            e = in == out ? gcry_cipher_encrypt(hd, out, len, NULL, 0)
                          : gcry_cipher_encrypt(hd, out, len, in, len);
    }
    ctx_pool_give(&s->pool, hd);
    return e == 0 ? TDE_OK
                  : tde_error_set(TDE_ERR_CRYPTO, "libgcrypt CTR encryption failed: %s",
                                  gcry_strerror(e));
}

const cipher_backend tde_cipher_backend_gcrypt = {
    .name = "gcrypt",
    .supports = gcrypt_supports,
    .key_new = gcrypt_key_new,
    .key_free = gcrypt_key_free,
    .process = gcrypt_process,
};
