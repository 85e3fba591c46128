/*
 * The "plaintext-test-only" provider: NO protection, for tests and demos only.
 *
 * "Wrapping" stores the secret in clear, followed by a SHA-256 check value over
 * the key id and a NUL, the additional data's length (8 bytes, big-endian),
 * the additional data and the secret, so a wrong key id or context
 * still fails with TDE_ERR_AUTH as with a real provider. Opening one logs a
 * warning every time. URI: plaintext-test-only://[?id=NAME]; the key id is
 * "plaintext-test-only:NAME" ("default" without id).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "masterkey/provider.h"

#define CHECK_LEN 32
#define ID_MAX 128

typedef struct testkey {
    tde_masterkey_provider base;
    char key_id[ID_MAX + 32];
} testkey;

static tde_status
testkey_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    const char *id = tde_uri_param(uri, "id");
    testkey *tk;

    if (tde_uri_host(uri)[0] != '\0' || tde_uri_path(uri)[0] != '\0' ||
        tde_uri_param_count(uri) > (id != NULL))
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider plaintext-test-only: URI \"%s\": only "
                             "plaintext-test-only:// or plaintext-test-only://?id=NAME",
                             tde_uri_text(uri));
    if (id != NULL && (id[0] == '\0' || strlen(id) > ID_MAX))
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider plaintext-test-only: id must have 1..%d characters", ID_MAX);
    tk = calloc(1, sizeof(*tk));
    if (tk == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "provider plaintext-test-only: out of memory");
    tk->base.vt = &masterkey_testkey_vtable;
    snprintf(tk->key_id, sizeof(tk->key_id), "plaintext-test-only:%s", id ? id : "default");
    tde_log(TDE_LOG_WARN,
            "provider plaintext-test-only: master key %s stores data keys UNENCRYPTED; "
            "for tests only, never for real data",
            tk->key_id);
    *out = &tk->base;
    return TDE_OK;
}

static const char *
testkey_key_id(const tde_masterkey_provider *p)
{
    return ((const testkey *)p)->key_id;
}

static tde_status
check_value(const testkey *tk, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
            uint8_t out[CHECK_LEN])
{
    unsigned n = 0;
    uint8_t len_be[8];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    for (int i = 0; i < 8; i++)
        len_be[i] = (uint8_t)((uint64_t)aad_len >> (56 - 8 * i));
    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, tk->key_id, strlen(tk->key_id) + 1) == 1 &&
         EVP_DigestUpdate(ctx, len_be, sizeof(len_be)) == 1 &&
         (aad_len == 0 || EVP_DigestUpdate(ctx, aad, aad_len) == 1) &&
         EVP_DigestUpdate(ctx, pt, pt_len) == 1 && EVP_DigestFinal_ex(ctx, out, &n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? TDE_OK : tde_error_set(TDE_ERR_CRYPTO, "provider plaintext-test-only: SHA-256");
}

static tde_status
testkey_wrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
             size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    uint8_t *b = malloc(pt_len + CHECK_LEN);
    tde_status st;

    if (b == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "provider plaintext-test-only: out of memory");
    memcpy(b, pt, pt_len);
    st = check_value((const testkey *)p, aad, aad_len, pt, pt_len, b + pt_len);
    if (st != TDE_OK) {
        free(b);
        return st;
    }
    *blob = b;
    *blob_len = pt_len + CHECK_LEN;
    return TDE_OK;
}

static tde_status
testkey_unwrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
               size_t blob_len, tde_secret **pt)
{
    const testkey *tk = (const testkey *)p;
    uint8_t check[CHECK_LEN];

    if (blob_len <= CHECK_LEN)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider plaintext-test-only, master key %s: blob too short",
                             tk->key_id);
    TDE_RET(check_value(tk, aad, aad_len, blob, blob_len - CHECK_LEN, check));
    if (CRYPTO_memcmp(check, blob + blob_len - CHECK_LEN, CHECK_LEN) != 0)
        return tde_error_set(TDE_ERR_AUTH,
                             "provider plaintext-test-only, master key %s: check value mismatch: "
                             "wrong master key or context, or tampered record",
                             tk->key_id);
    return tde_secret_from(pt, blob, blob_len - CHECK_LEN);
}

static void
testkey_destroy(tde_masterkey_provider *p)
{
    free(p);
}

const tde_masterkey_provider_vtable masterkey_testkey_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "plaintext-test-only",
    .open = testkey_open,
    .key_id = testkey_key_id,
    .wrap = testkey_wrap,
    .unwrap = testkey_unwrap,
    .destroy = testkey_destroy,
};
