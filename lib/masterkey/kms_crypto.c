/* SHA-256 and HMAC-SHA256 on OpenSSL for the KMS request signers. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/error.h"
#include "masterkey/kms_crypto.h"

tde_status
kms_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                uint8_t out[KMS_SHA256_LEN])
{
    unsigned int out_len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &out_len) == NULL ||
        out_len != KMS_SHA256_LEN)
        return tde_error_set(TDE_ERR_CRYPTO, "kms: HMAC-SHA256 failed");
    return TDE_OK;
}

void
kms_hex(const uint8_t *bytes, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * len] = '\0';
}

tde_status
kms_sha256_hex(const void *data, size_t len, char hex[KMS_SHA256_HEX_LEN + 1])
{
    uint8_t md[KMS_SHA256_LEN];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != KMS_SHA256_LEN)
        return tde_error_set(TDE_ERR_CRYPTO, "kms: SHA-256 failed");
    kms_hex(md, sizeof(md), hex);
    return TDE_OK;
}
