/*
 * Helpers for the tests that call a cipher backend's struct directly
 * (lib/cipher/backend.h): skip when the CPU lacks the instructions, key a
 * schedule, and OpenSSL's CTR as the reference.
 */
#ifndef TDE_TEST_BACKEND_CHECK_H
#define TDE_TEST_BACKEND_CHECK_H

#include <openssl/evp.h>

#include "cipher/backend.h"
#include "testutil.h"

/* Whether @p b serves @p m on this CPU; says why a test is skipped when not. */
static inline bool
backend_available(const cipher_backend *b, tde_method m)
{
    if (b->supports(m))
        return true;
    print_message("%s: this CPU lacks its instructions; test skipped\n", b->name);
    return false;
}

static inline void *
backend_key_new(const cipher_backend *b, tde_method m, const uint8_t *key)
{
    void *sched = NULL;
    assert_tde_ok(b->key_new(&sched, m, key, tde_method_key_len(m)));
    return sched;
}

/*
 * OpenSSL's CTR mode @p evp from @p counter, skipping @p skip keystream bytes.
 * Returns 0 on failure (callable from threads, where cmocka's asserts are not).
 */
static inline int
openssl_ctr_ref(const EVP_CIPHER *evp, const uint8_t *key, const uint8_t counter[16], unsigned skip,
                const uint8_t *in, uint8_t *out, size_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t dummy[16] = {0};
    int n = 0, ok = ctx != NULL && EVP_EncryptInit_ex(ctx, evp, NULL, key, counter) == 1 &&
                    EVP_EncryptUpdate(ctx, dummy, &n, dummy, (int)skip) == 1 &&
                    (len == 0 || EVP_EncryptUpdate(ctx, out, &n, in, (int)len) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

#endif
