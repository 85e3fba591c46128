/**
 * @file gcm.h
 * @brief AES-256-GCM with additional authenticated data, for wrapping keys and metadata.
 *
 * Only a 32-byte key, a 12-byte IV and a 16-byte tag are supported; other sizes
 * give TDE_ERR_UNSUPPORTED. The tag is checked in constant time, and a failed
 * open leaves no plaintext in @p pt (it is wiped). Callers must never use one
 * IV twice under one key: tde_gcm_seal_random_iv() draws it from RAND_bytes.
 */
#ifndef TDE_GCM_H
#define TDE_GCM_H

#include "tde/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TDE_GCM_KEY_LEN 32
#define TDE_GCM_IV_LEN 12
#define TDE_GCM_TAG_LEN 16

/** Encrypts @p len bytes of @p pt into @p ct (same length; may be the same buffer) and writes the
 * tag. */
TDE_API TDE_MUST_USE tde_status tde_gcm_seal(const uint8_t *key, size_t key_len, const uint8_t *iv,
                                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                                             const uint8_t *pt, size_t len, uint8_t *ct,
                                             uint8_t *tag, size_t tag_len);

/** Like tde_gcm_seal() with a fresh random 12-byte IV written to @p iv_out. */
TDE_API TDE_MUST_USE tde_status tde_gcm_seal_random_iv(const uint8_t *key, size_t key_len,
                                                       uint8_t iv_out[TDE_GCM_IV_LEN],
                                                       const uint8_t *aad, size_t aad_len,
                                                       const uint8_t *pt, size_t len, uint8_t *ct,
                                                       uint8_t tag[TDE_GCM_TAG_LEN]);

/**
 * Decrypts and verifies. TDE_ERR_AUTH when the key, IV, AAD, ciphertext or tag
 * do not match; then @p pt holds zeros, never unauthenticated plaintext.
 */
TDE_API TDE_MUST_USE tde_status tde_gcm_open(const uint8_t *key, size_t key_len, const uint8_t *iv,
                                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                                             const uint8_t *ct, size_t len, const uint8_t *tag,
                                             size_t tag_len, uint8_t *pt);

#ifdef __cplusplus
}
#endif
#endif
