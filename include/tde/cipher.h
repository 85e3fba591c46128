/**
 * @file cipher.h
 * @brief Random-access CTR file ciphers: AES-128/192/256-CTR and SM4-CTR.
 *
 * A tde_cipher is one data key's expanded key schedule. It is read-only once
 * made and may be shared by every file (and every thread) that uses the key:
 * tde_cipher_process() keeps its counter state on the caller's stack, takes no
 * lock and does no key schedule per call.
 *
 * The counter block for the byte at file offset @c o is the 16-byte IV read
 * as a 128-bit big-endian integer plus <tt>o / 16</tt>, modulo 2^128 (the carry
 * runs through all 128 bits). Encryption and decryption are the same operation.
 */
#ifndef TDE_CIPHER_H
#define TDE_CIPHER_H

#include "tde/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Encryption methods. The numbers are stored on disk and never change (TiKV's EncryptionMethod
 * ids). */
typedef enum tde_method {
    TDE_METHOD_UNKNOWN = 0,
    TDE_METHOD_PLAINTEXT = 1,  /**< "plaintext": no encryption */
    TDE_METHOD_AES128_CTR = 2, /**< "aes128-ctr" */
    TDE_METHOD_AES192_CTR = 3, /**< "aes192-ctr" */
    TDE_METHOD_AES256_CTR = 4, /**< "aes256-ctr" */
    TDE_METHOD_SM4_CTR = 5,    /**< "sm4-ctr" */
} tde_method;

#define TDE_CIPHER_IV_LEN 16
#define TDE_CIPHER_BLOCK_LEN 16
#define TDE_CIPHER_MAX_KEY_LEN 32

/**
 * Parses a method name ("plaintext", "aes128-ctr", "aes192-ctr", "aes256-ctr",
 * "sm4-ctr"). An unknown name gives TDE_ERR_INVALID_ARG with a message listing
 * the valid ones.
 */
TDE_API TDE_MUST_USE tde_status tde_method_from_name(tde_method *out, const char *name);

/** The method's name, or NULL for an unknown id. */
TDE_API const char *tde_method_name(tde_method m);

/** Key length in bytes (0 for plaintext and unknown ids). */
TDE_API size_t tde_method_key_len(tde_method m);

typedef struct tde_cipher tde_cipher;

/**
 * Expands @p key for @p method with the preferred backend for that method
 * (see tde_cipher_set_backends()). The key bytes are copied into the backend's
 * schedule; the caller keeps (and should wipe) its own copy. For
 * TDE_METHOD_PLAINTEXT the key must be empty and processing copies bytes.
 */
TDE_API TDE_MUST_USE tde_status tde_cipher_new(tde_cipher **out, tde_method method,
                                               const uint8_t *key, size_t key_len);

/** Frees the schedule (wiping what the backend allows). Accepts NULL. Callers must have stopped
 * using it. */
TDE_API void tde_cipher_free(tde_cipher *c);

/** The method this cipher was made for. */
TDE_API tde_method tde_cipher_method(const tde_cipher *c);

/** Name of the backend serving this cipher, e.g. "gcrypt". Static storage. */
TDE_API const char *tde_cipher_backend(const tde_cipher *c);

/**
 * Encrypts or decrypts @p len bytes that sit at @p offset of a file whose IV is
 * @p iv. Any offset, any length; @p in == @p out (in place) is allowed, other
 * overlaps are not. Thread-safe: any number of threads may call this at once on
 * one tde_cipher.
 */
TDE_API TDE_MUST_USE tde_status tde_cipher_process(const tde_cipher *c,
                                                   const uint8_t iv[TDE_CIPHER_IV_LEN],
                                                   uint64_t offset, const void *in, void *out,
                                                   size_t len);

/**
 * Chooses backends by an ordered, comma-separated list of names (e.g.
 * "gcrypt,openssl"); for each method the first listed backend that supports it
 * on this CPU is used. NULL restores the default (fastest first), which the
 * environment variable TDE_CIPHER_BACKEND overrides. An unknown name gives
 * TDE_ERR_INVALID_ARG listing the known ones. Affects ciphers made afterwards.
 */
TDE_API TDE_MUST_USE tde_status tde_cipher_set_backends(const char *list);

/**
 * Name of the backend that new ciphers of method @p m would use now (e.g.
 * "sm4-gfni-avx512"), "none" for plaintext, or NULL (with tde_last_error())
 * when no selected backend supports @p m. Static storage.
 */
TDE_API const char *tde_method_backend(tde_method m);

/** Comma-separated names of every backend compiled in, fastest first. Static storage. */
TDE_API const char *tde_cipher_backends_available(void);

#ifdef __cplusplus
}
#endif
#endif
