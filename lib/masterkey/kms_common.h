/*
 * Plumbing shared by the cloud KMS providers (aws_kms.c, tencent_kms.c):
 * HTTPS with verification always on, bounded retries with backoff and jitter,
 * strict base64, credential files, the injectable clock, and the provider core
 * that caches one KMS data key per process (TiKV's "KMS once per start").
 */
#ifndef TDE_MASTERKEY_KMS_COMMON_H
#define TDE_MASTERKEY_KMS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "masterkey/provider.h"
#include "tde/secret.h"
#include "tde/sys/masterkey_provider.h"

/* The clock every signature and credential expiry uses; tests replace it. */
extern time_t (*kms_clock)(void);

/* Largest KMS reply body accepted. */
#define KMS_MAX_REPLY (1u << 20)

typedef struct kms_http_opts {
    const char *ca_file;     /* extra CA bundle, NULL: the system's */
    long connect_timeout_ms; /* per attempt */
    long timeout_ms;         /* per attempt, whole transfer */
    int allow_http;          /* metadata services only; KMS endpoints are HTTPS */
} kms_http_opts;

typedef struct kms_http_reply {
    long status;
    char *body; /* NUL-terminated, malloc()ed */
    size_t len;
} kms_http_reply;

/*
 * One HTTP exchange. @p headers is NULL-terminated ("Name: value"). Transport
 * failures give TDE_ERR_UNAVAILABLE (TDE_ERR_TIMEOUT for timeouts) with a
 * message naming @p who and the URL; any HTTP status is TDE_OK.
 */
tde_status kms_http(const char *who, const char *method, const char *url,
                    const char *const *headers, const char *body, size_t body_len,
                    const kms_http_opts *o, kms_http_reply *r);
void kms_http_reply_free(kms_http_reply *r);

/* Retry policy: at most @p attempts tries; full-jitter exponential backoff. */
typedef struct kms_retry {
    int attempts;
    long base_ms;
    long cap_ms;
} kms_retry;

/* Sleeps before retry number @p attempt (1-based): uniform in [0, min(cap, base * 2^attempt)]. */
void kms_backoff(const kms_retry *r, int attempt);

/* Strict base64 (RFC 4648, padded). Encoding returns a malloc()ed string or NULL. */
char *kms_b64_encode(const uint8_t *in, size_t len);
/* Decodes into a new secret; TDE_ERR_PROTOCOL naming @p what when @p in is not base64. */
tde_status kms_b64_decode_secret(const char *in, size_t in_len, const char *what, tde_secret **out);
/* Decoded length, or -1 when @p in is not strict base64. Writes to @p out when non-NULL. */
long kms_b64_decode(const char *in, size_t in_len, uint8_t *out);

/* Credentials of one identity; the secret lives in a tde_secret (NUL-terminated). */
typedef struct kms_creds {
    char *id;
    tde_secret *secret;
    char *token;    /* session token or NULL */
    time_t expires; /* 0: does not expire */
    char source[64];
} kms_creds;

void kms_creds_clear(kms_creds *c);
const char *kms_creds_secret(const kms_creds *c);
tde_status kms_creds_set(kms_creds *c, const char *id, const char *secret, const char *token,
                         time_t expires, const char *source);

/*
 * Reads keys from section [@p section] of an INI file. values[i] is a malloc()ed
 * copy or NULL. TDE_ERR_NOT_FOUND when the file or section is absent.
 */
tde_status kms_ini_read(const char *path, const char *section, const char *const *keys,
                        char **values, size_t n);

/* Parses "2024-01-01T00:00:00Z" (fractional seconds ignored); -1 when malformed. */
time_t kms_parse_iso8601(const char *s);

/* ---- reply parsing (fuzzed by fuzz/fuzz_kms_reply.c) ---- */

typedef struct kms_reply {
    char *key_id;          /* KeyId of the reply */
    tde_secret *plaintext; /* decoded Plaintext, when present */
    char *ciphertext;      /* CiphertextBlob text, when present */
    /* On error: */
    char code[96];
    char message[256];
    int retryable;
} kms_reply;

void kms_reply_free(kms_reply *r);

/*
 * AWS KMS JSON 1.1 reply: TDE_OK with the fields, or the classified error
 * (message: "<__type>: <message>"; r->retryable for throttling and 5xx).
 */
tde_status kms_aws_parse_reply(long http_status, const char *body, size_t len, kms_reply *r);
/* Tencent Cloud API 3.0 reply ({"Response": ...}; errors in Response.Error with HTTP 200). */
tde_status kms_tencent_parse_reply(long http_status, const char *body, size_t len, kms_reply *r);

/* ---- the provider core (kms_provider.c) ---- */

typedef struct kms_provider kms_provider;

/* What differs between the two KMS APIs; the operations and their fields are the same. */
typedef struct kms_dialect {
    /* Signs and sends one request for @p action with @p body; transport errors only. */
    tde_status (*send)(kms_provider *p, const char *action, const char *body, kms_http_reply *hr);
    tde_status (*parse)(long http_status, const char *body, size_t len, kms_reply *r);
    int context_as_string; /* Tencent: EncryptionContext is a JSON string, AWS: an object */
    int decrypt_names_key; /* AWS: Decrypt carries KeyId, so the KMS refuses another key's blob */
} kms_dialect;

enum kms_mode { KMS_MODE_ENVELOPE = 1, KMS_MODE_DIRECT = 2 };

#define KMS_DATA_KEY_LEN 32
#define KMS_CACHE_SLOTS 4

typedef struct kms_cached_key {
    tde_secret *dk;
    char *ciphertext;
    char *key_id;
} kms_cached_key;

/* Embedded first in each provider's own struct. */
struct kms_provider {
    tde_masterkey_provider base;
    const kms_dialect *dialect;
    const char *name; /* vt->name */
    char *region;     /* the URI host */
    char *key;        /* key id, ARN or alias: the URI path */
    char *key_id;     /* "<region>/<key>" */
    char *endpoint;   /* https://host[:port] */
    char *host;       /* Host header: host[:port], without a default port */
    char *host_name;  /* host alone (TC3 signs it without port) */
    kms_http_opts http;
    char *ca_file;
    kms_retry retry;
    enum kms_mode mode;
    struct json_t *context; /* the ctx_* URI parameters, a JSON object */
    /* Envelope mode: data keys from the KMS, cached for the life of the provider. */
    kms_cached_key cache[KMS_CACHE_SLOTS];
    size_t n_cache;
    unsigned long kms_requests;
};

/*
 * Fills the core from @p uri: region (host), key (path), endpoint (default
 * @p default_endpoint, "%s" replaced by the region), ca_file, timeout_ms,
 * connect_timeout_ms, retries, mode, ctx_<name>. Parameters in @p extra are
 * the provider's own; any other parameter is refused.
 */
tde_status kms_provider_init(kms_provider *p, const tde_masterkey_provider_vtable *vt,
                             const kms_dialect *d, const tde_uri *uri, const char *default_endpoint,
                             const char *const *extra);
/* Frees what kms_provider_init() allocated and the cached keys (not @p p itself). */
void kms_provider_fini(kms_provider *p);

/* Sends @p action with retries, parses the reply. */
tde_status kms_provider_call(kms_provider *p, const char *action, const char *body, kms_reply *r);

/* The vtable members both providers share. */
const char *kms_provider_key_id(const tde_masterkey_provider *base);
tde_status kms_provider_wrap(tde_masterkey_provider *base, const uint8_t *aad, size_t aad_len,
                             const uint8_t *pt, size_t pt_len, uint8_t **blob, size_t *blob_len);
tde_status kms_provider_unwrap(tde_masterkey_provider *base, const uint8_t *aad, size_t aad_len,
                               const uint8_t *blob, size_t blob_len, tde_secret **pt);
tde_status kms_provider_generate_data_key(tde_masterkey_provider *base, size_t key_len,
                                          const uint8_t *aad, size_t aad_len, tde_secret **key,
                                          uint8_t **blob, size_t *blob_len);

/* Number of KMS requests (attempts) this provider made: tests check "once per start". */
unsigned long kms_provider_requests(const tde_masterkey_provider *base);

#endif
