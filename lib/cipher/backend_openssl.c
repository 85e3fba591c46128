/* CTR through OpenSSL EVP: always available, the reference every other backend is checked against.
 */
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include "cipher/backend.h"
#include "cipher/ctx_pool.h"
#include "common/error.h"

static const char *
evp_name(tde_method m)
{
    switch (m) {
    case TDE_METHOD_AES128_CTR: return "AES-128-CTR";
    case TDE_METHOD_AES192_CTR: return "AES-192-CTR";
    case TDE_METHOD_AES256_CTR: return "AES-256-CTR";
    case TDE_METHOD_SM4_CTR: return "SM4-CTR";
    default: return NULL;
    }
}

static bool
openssl_supports(tde_method m)
{
    const char *name = evp_name(m);
    if (name == NULL)
        return false;
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_free(c);
    return c != NULL;
}

typedef struct openssl_sched {
    ctx_pool pool;
    EVP_CIPHER_CTX *proto; /* keyed once; pooled contexts are copies of it */
} openssl_sched;

static void *
openssl_make(void *owner)
{
    openssl_sched *s = owner;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL && EVP_CIPHER_CTX_copy(ctx, s->proto) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static void
openssl_destroy(void *ctx)
{
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
}

static void
openssl_key_free(void *sched)
{
    openssl_sched *s = sched;
    if (s == NULL)
        return;
    ctx_pool_clear(&s->pool);
    EVP_CIPHER_CTX_free(s->proto);
    free(s);
}

static tde_status
openssl_key_new(void **out, tde_method m, const uint8_t *key, size_t key_len)
{
    (void)key_len; /* cipher.c checked it against the method */
    static const uint8_t zero_iv[16];
    openssl_sched *s = calloc(1, sizeof(*s));
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, evp_name(m), NULL);
    tde_status st = TDE_OK;
    TDE_ENSURE(s != NULL, TDE_ERR_NOMEM, "out of memory expanding a %s key", tde_method_name(m));
    TDE_ENSURE(cipher != NULL, TDE_ERR_UNSUPPORTED, "OpenSSL has no %s", evp_name(m));
    s->pool.make = openssl_make;
    s->pool.destroy = openssl_destroy;
    s->pool.owner = s;
    s->proto = EVP_CIPHER_CTX_new();
    TDE_ENSURE(s->proto != NULL && EVP_EncryptInit_ex2(s->proto, cipher, key, zero_iv, NULL) == 1,
               TDE_ERR_CRYPTO, "OpenSSL could not set a %s key", tde_method_name(m));
    EVP_CIPHER_free(cipher);
    *out = s;
    return TDE_OK;
err:
    EVP_CIPHER_free(cipher);
    openssl_key_free(s);
    return st;
}

static tde_status
openssl_process(void *sched, const uint8_t counter[16], unsigned skip, const uint8_t *in,
                uint8_t *out, size_t len)
{
    openssl_sched *s = sched;
    EVP_CIPHER_CTX *ctx = ctx_pool_take(&s->pool);
    if (ctx == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "out of memory for an OpenSSL cipher context");
    /* A new IV resets the counter and the partial-block position; the key stays expanded. */
    bool ok = EVP_EncryptInit_ex2(ctx, NULL, NULL, counter, NULL) == 1;
    int n;
    if (ok && skip > 0) {
        uint8_t scratch[16] = {0};
        ok = EVP_EncryptUpdate(ctx, scratch, &n, scratch, (int)skip) == 1;
    }
    while (ok && len > 0) {
        int chunk = len > (size_t)INT_MAX / 2 ? INT_MAX / 2 / 16 * 16 : (int)len;
        ok = EVP_EncryptUpdate(ctx, out, &n, in, chunk) == 1;
        in += chunk;
        out += chunk;
        len -= (size_t)chunk;
    }
    ctx_pool_give(&s->pool, ctx);
    return ok ? TDE_OK : tde_error_set(TDE_ERR_CRYPTO, "OpenSSL CTR encryption failed");
}

const cipher_backend tde_cipher_backend_openssl = {
    .name = "openssl",
    .supports = openssl_supports,
    .key_new = openssl_key_new,
    .key_free = openssl_key_free,
    .process = openssl_process,
};
