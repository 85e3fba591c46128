/**
 * @file masterkey.h
 * @brief Master keys: open one by URI, wrap and unwrap data keys with it.
 *
 * A master key never leaves its home (a key file, a KMIP server, a cloud KMS);
 * libtde only asks its provider to wrap (encrypt) and unwrap small secrets.
 * Master keys are named by URIs whose scheme is the provider's name, e.g.
 * "file:///etc/tde/master.key" (grammar in docs/formats.md, providers in
 * docs/providers.md). Built-in schemes: "file" (TiKV-compatible key file) and
 * "plaintext-test-only" (no protection at all; for tests only).
 *
 * A tde_masterkey is thread-safe: calls on one handle are serialized, so a
 * provider itself need not be. Every error message names the provider and,
 * where known, the master key id. Blobs returned through `uint8_t **` are
 * malloc()ed and owned by the caller (release with free()); key bytes only
 * ever travel in tde_secret.
 */
#ifndef TDE_MASTERKEY_H
#define TDE_MASTERKEY_H

#include "tde/common.h"
#include "tde/secret.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tde_masterkey tde_masterkey;

/**
 * Opens the master key that @p uri names through the provider registered for
 * its scheme. TDE_ERR_INVALID_ARG for a malformed URI (what and where),
 * TDE_ERR_NOT_FOUND for an unknown scheme (listing the known ones), otherwise
 * the provider's error. The URI is copied.
 */
TDE_API TDE_MUST_USE tde_status tde_masterkey_open(tde_masterkey **out, const char *uri);

/** Frees the handle; the provider wipes any key material it holds. Accepts NULL. */
TDE_API void tde_masterkey_free(tde_masterkey *mk);

/** The master key's stable id (a fingerprint for key files). Borrowed; lives as long as @p mk. */
TDE_API const char *tde_masterkey_key_id(const tde_masterkey *mk);

/** The provider's name, which is also the URI scheme ("file"). Borrowed. */
TDE_API const char *tde_masterkey_provider_name(const tde_masterkey *mk);

/** The URI @p mk was opened with. Borrowed. */
TDE_API const char *tde_masterkey_uri(const tde_masterkey *mk);

/**
 * Encrypts @p pt (at most TDE_MASTERKEY_MAX_WRAP bytes) under the master key,
 * binding @p aad. *blob is the provider's opaque, malloc()ed output.
 */
TDE_API TDE_MUST_USE tde_status tde_masterkey_wrap(tde_masterkey *mk, const uint8_t *aad,
                                                   size_t aad_len, const uint8_t *pt, size_t pt_len,
                                                   uint8_t **blob, size_t *blob_len);

/**
 * Decrypts a blob made by tde_masterkey_wrap() with the same @p aad.
 * TDE_ERR_AUTH when this master key did not wrap it or anything differs;
 * TDE_ERR_UNAVAILABLE when the provider cannot be reached.
 */
TDE_API TDE_MUST_USE tde_status tde_masterkey_unwrap(tde_masterkey *mk, const uint8_t *aad,
                                                     size_t aad_len, const uint8_t *blob,
                                                     size_t blob_len, tde_secret **pt);

/**
 * Makes a fresh random data key of @p key_len bytes (1..TDE_MASTERKEY_MAX_WRAP)
 * and its wrapped form in one step (a KMS's GenerateDataKey where the provider
 * has one; otherwise random bytes, then wrap).
 */
TDE_API TDE_MUST_USE tde_status tde_masterkey_generate_data_key(tde_masterkey *mk, size_t key_len,
                                                                const uint8_t *aad, size_t aad_len,
                                                                tde_secret **key, uint8_t **blob,
                                                                size_t *blob_len);

/** Length of a key file's key: 32 bytes, stored as 64 hex digits and a newline. */
#define TDE_KEYFILE_KEY_LEN 32

/**
 * Writes a new random master key to @p path in the TiKV key-file format
 * (64 lower-case hex digits and "\n"), created 0600 and fsynced. Refuses to
 * overwrite: TDE_ERR_EXISTS when @p path exists.
 */
TDE_API TDE_MUST_USE tde_status tde_keyfile_create(const char *path);

#ifdef __cplusplus
}
#endif
#endif
