/*
 * AES-256-GCM through OpenSSL EVP. Threat model: wrapped keys and metadata sit
 * on disks an attacker may read and write; GCM makes any change detectable.
 * OpenSSL compares the tag with CRYPTO_memcmp (constant time).
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "tde/gcm.h"

static tde_status
check_sizes(size_t key_len, size_t iv_len, size_t tag_len)
{
    if (key_len != TDE_GCM_KEY_LEN || iv_len != TDE_GCM_IV_LEN || tag_len != TDE_GCM_TAG_LEN)
        return tde_error_set(TDE_ERR_UNSUPPORTED,
                             "gcm: only a %d-byte key, %d-byte IV and %d-byte tag are supported "
                             "(got %zu, %zu, %zu)",
                             TDE_GCM_KEY_LEN, TDE_GCM_IV_LEN, TDE_GCM_TAG_LEN, key_len, iv_len,
                             tag_len);
    return TDE_OK;
}

/* Feeds AAD (out == NULL) or data through EVP_CipherUpdate in int-sized chunks. */
static int
update_all(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len > 0) {
        int chunk = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len;
        int n = 0;
        if (EVP_CipherUpdate(ctx, out, &n, in, chunk) != 1)
            return 0;
        in += chunk;
        if (out != NULL)
            out += chunk;
        len -= (size_t)chunk;
    }
    return 1;
}

tde_status
tde_gcm_seal(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
             const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len, uint8_t *ct,
             uint8_t *tag, size_t tag_len)
{
    EVP_CIPHER_CTX *ctx = NULL;
    tde_status st = TDE_OK;
    int n = 0;

    TDE_RET(check_sizes(key_len, iv_len, tag_len));
    ctx = EVP_CIPHER_CTX_new();
    TDE_ENSURE(ctx != NULL, TDE_ERR_NOMEM, "gcm: out of memory");
    TDE_ENSURE(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                   update_all(ctx, NULL, aad, aad_len) && update_all(ctx, ct, pt, len) &&
                   EVP_EncryptFinal_ex(ctx, ct + len, &n) == 1 &&
                   EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, (int)tag_len, tag) == 1,
               TDE_ERR_CRYPTO, "gcm: OpenSSL seal failed (error %lu)", ERR_peek_error());
err:
    ERR_clear_error();
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

tde_status
tde_gcm_seal_random_iv(const uint8_t *key, size_t key_len, uint8_t iv_out[TDE_GCM_IV_LEN],
                       const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                       uint8_t *ct, uint8_t tag[TDE_GCM_TAG_LEN])
{
    TDE_RET(tde_random_bytes(iv_out, TDE_GCM_IV_LEN));
    return tde_gcm_seal(key, key_len, iv_out, TDE_GCM_IV_LEN, aad, aad_len, pt, len, ct, tag,
                        TDE_GCM_TAG_LEN);
}

tde_status
tde_gcm_open(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
             const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len, const uint8_t *tag,
             size_t tag_len, uint8_t *pt)
{
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t tag_copy[TDE_GCM_TAG_LEN];
    tde_status st = TDE_OK;
    int n = 0;

    TDE_RET(check_sizes(key_len, iv_len, tag_len));
    memcpy(tag_copy, tag, sizeof(tag_copy)); /* OpenSSL takes a non-const tag */
    ctx = EVP_CIPHER_CTX_new();
    TDE_ENSURE(ctx != NULL, TDE_ERR_NOMEM, "gcm: out of memory");
    TDE_ENSURE(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                   update_all(ctx, NULL, aad, aad_len) && update_all(ctx, pt, ct, len) &&
                   EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, (int)tag_len, tag_copy) == 1,
               TDE_ERR_CRYPTO, "gcm: OpenSSL open failed (error %lu)", ERR_peek_error());
    if (EVP_DecryptFinal_ex(ctx, pt + len, &n) != 1) {
        OPENSSL_cleanse(pt, len);
        st = tde_error_set(TDE_ERR_AUTH, "gcm: authentication failed: wrong key or tampered data");
    }
err:
    if (st != TDE_OK && st != TDE_ERR_AUTH && len > 0)
        OPENSSL_cleanse(pt, len);
    ERR_clear_error();
    EVP_CIPHER_CTX_free(ctx);
    return st;
}
