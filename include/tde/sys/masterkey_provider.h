/**
 * @file sys/masterkey_provider.h
 * @brief For provider authors: the versioned master-key provider vtable.
 *
 * A provider keeps a master key somewhere (a key file, a KMIP server, a cloud
 * KMS) and wraps small secrets (data keys, at most TDE_MASTERKEY_MAX_WRAP
 * bytes) with it. Master keys are named by URIs whose scheme is the provider's
 * name ("file:///etc/tde/master.key", "kmip://host:5696/...", ...).
 *
 * Implementations embed tde_masterkey_provider as their first member, keep
 * their vtable `static const` with designated initializers, and register it
 * with tde_masterkey_register(). Every error a provider returns should name
 * the provider (vt->name) and, where known, the master key id.
 */
#ifndef TDE_SYS_MASTERKEY_PROVIDER_H
#define TDE_SYS_MASTERKEY_PROVIDER_H

#include "tde/common.h"
#include "tde/secret.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the vtable layout below. Registration refuses any other. */
#define TDE_MASTERKEY_PROVIDER_VERSION 1

/** Largest plaintext a provider must be able to wrap (Tencent/AWS KMS Encrypt limit). */
#define TDE_MASTERKEY_MAX_WRAP 4096

typedef struct tde_uri tde_uri;
typedef struct tde_masterkey_provider tde_masterkey_provider;

typedef struct tde_masterkey_provider_vtable {
    unsigned version; /**< TDE_MASTERKEY_PROVIDER_VERSION */
    const char *name; /**< provider name, which is also its URI scheme: "file", "kmip", ... */

    /** Required. Opens the master key that @p uri names. The uri is borrowed for the call only. */
    tde_status (*open)(tde_masterkey_provider **out, const tde_uri *uri);

    /**
     * Required. A stable id for the master key, stored in every record it wraps
     * and used to pick the key at open: a fingerprint for key files, the key's
     * id or ARN for a KMS. Never derived from a path or a secret in clear.
     * Borrowed; lives as long as the provider.
     */
    const char *(*key_id)(const tde_masterkey_provider *p);

    /**
     * Required. Encrypts @p pt (at most TDE_MASTERKEY_MAX_WRAP bytes) under the
     * master key, authenticating @p aad too. *blob is malloc()ed and owned by
     * the caller; its content is the provider's own and opaque to libtde.
     */
    tde_status (*wrap)(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len,
                       const uint8_t *pt, size_t pt_len, uint8_t **blob, size_t *blob_len);

    /**
     * Required. Inverse of wrap(). TDE_ERR_AUTH when @p blob or @p aad was not
     * wrapped by this master key; TDE_ERR_UNAVAILABLE when the key's home
     * cannot be reached (never confused with AUTH).
     */
    tde_status (*unwrap)(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len,
                         const uint8_t *blob, size_t blob_len, tde_secret **pt);

    /**
     * Optional. Makes a new data key of @p key_len bytes and its wrapped form in
     * one step (a KMS's GenerateDataKey). NULL: random bytes, then wrap().
     */
    tde_status (*generate_data_key)(tde_masterkey_provider *p, size_t key_len, const uint8_t *aad,
                                    size_t aad_len, tde_secret **key, uint8_t **blob,
                                    size_t *blob_len);

    /** Required. Frees the provider, wiping any key material it holds. */
    void (*destroy)(tde_masterkey_provider *p);
} tde_masterkey_provider_vtable;

/** The base every provider embeds first. */
struct tde_masterkey_provider {
    const tde_masterkey_provider_vtable *vt;
};

/**
 * Registers a provider for its URI scheme. Checks the version and the required
 * members (TDE_ERR_INVALID_ARG naming the missing one); a NULL optional member
 * gets the default. The vtable is borrowed for the life of the process.
 * Re-registering a name replaces nothing: TDE_ERR_EXISTS.
 */
TDE_API TDE_MUST_USE tde_status tde_masterkey_register(const tde_masterkey_provider_vtable *vt);

/* Parsed master-key URIs (grammar in docs/formats.md), for providers' open(). */

/** Parses @p text; TDE_ERR_INVALID_ARG says what is malformed and at which position. */
TDE_API TDE_MUST_USE tde_status tde_uri_parse(tde_uri **out, const char *text);
TDE_API void tde_uri_free(tde_uri *u);
/** The scheme, lower case ("file"). */
TDE_API const char *tde_uri_scheme(const tde_uri *u);
/** The host ("" when absent). */
TDE_API const char *tde_uri_host(const tde_uri *u);
/** The port, 0 when absent. */
TDE_API int tde_uri_port(const tde_uri *u);
/** The percent-decoded path ("" when absent). */
TDE_API const char *tde_uri_path(const tde_uri *u);
/** The percent-decoded value of query parameter @p name, NULL when absent. */
TDE_API const char *tde_uri_param(const tde_uri *u, const char *name);
/** Number of query parameters, and the i-th one's name and value (borrowed). */
TDE_API size_t tde_uri_param_count(const tde_uri *u);
TDE_API void tde_uri_param_at(const tde_uri *u, size_t i, const char **name, const char **value);
/** The URI as given (it never holds secrets: credentials come from files or the environment). */
TDE_API const char *tde_uri_text(const tde_uri *u);

#ifdef __cplusplus
}
#endif
#endif
