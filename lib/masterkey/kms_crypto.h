/* Hashing helpers shared by the SigV4 and TC3 request signers. */
#ifndef TDE_MASTERKEY_KMS_CRYPTO_H
#define TDE_MASTERKEY_KMS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "tde/common.h"

#define KMS_SHA256_LEN 32
#define KMS_SHA256_HEX_LEN 64

/* out = HMAC-SHA256(key, msg). */
tde_status kms_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                           uint8_t out[KMS_SHA256_LEN]);

/* hex = lower-case hex of SHA-256(data), NUL-terminated. */
tde_status kms_sha256_hex(const void *data, size_t len, char hex[KMS_SHA256_HEX_LEN + 1]);

/* Lower-case hex of @p len bytes into @p hex (2*len+1 bytes). */
void kms_hex(const uint8_t *bytes, size_t len, char *hex);

#endif
