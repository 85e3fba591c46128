/*
 * The part of the AWS and Tencent Cloud KMS providers that does not depend on
 * the API: URI options, retries, EncryptionContext, the blob format and the
 * data-key cache.
 *
 * Threat model: the KMS holds the master key; libtde holds, in locked memory,
 * only data keys the KMS released to its credentials. A blob names the KMS
 * key that made it, and a KMS that answers with another key is refused
 * (TDE_ERR_AUTH). Envelope mode (the default) asks the KMS once per process
 * for a data key (GenerateDataKey when there is none, Decrypt of a stored one
 * at start-up), as TiKV does, and wraps with AES-256-GCM locally; direct mode
 * calls KMS Encrypt/Decrypt for every secret.
 *
 * Blob (big-endian), both providers:
 *   "TKMS" | version 1 | mode (1 envelope, 2 direct) | u16 n | KMS key id (n)
 *   | u16 m | KMS CiphertextBlob text (m)
 *   envelope only: | IV (12) | tag (16) | AES-256-GCM ciphertext,
 *   AAD = every byte before the IV, then the caller's aad.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_common.h"
#include "tde/gcm.h"

#define BLOB_MAGIC "TKMS"
#define BLOB_VERSION 1
#define MAX_TEXT 0xffff

static const char *const common_params[] = {
    "endpoint", "ca_file", "timeout_ms", "connect_timeout_ms", "retries", "mode", NULL};

static int
in_list(const char *const *list, const char *name)
{
    for (; list != NULL && *list != NULL; list++)
        if (strcmp(*list, name) == 0)
            return 1;
    return 0;
}

static tde_status
long_param(const kms_provider *p, const tde_uri *uri, const char *name, long lo, long hi, long *out)
{
    const char *v = tde_uri_param(uri, name);
    char *end = NULL;
    if (v == NULL)
        return TDE_OK;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < lo || n > hi)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: %s=%s is not a number in [%ld, %ld]",
                             p->name, name, v, lo, hi);
    *out = n;
    return TDE_OK;
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* Splits https://host[:port][/] into the Host header and the bare host name. */
static tde_status
parse_endpoint(kms_provider *p, const char *endpoint)
{
    static const char https[] = "https://";
    if (strncmp(endpoint, https, sizeof(https) - 1) != 0)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "%s: endpoint %s must start with https:// (TLS is always on)", p->name,
                             endpoint);
    const char *auth = endpoint + sizeof(https) - 1;
    size_t n = strcspn(auth, "/?#");
    if (n == 0 || strspn(auth + n, "/") != strlen(auth + n))
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: endpoint %s must be https://host[:port]",
                             p->name, endpoint);
    p->endpoint = strndup(endpoint, (size_t)(auth - endpoint) + n);
    p->host = strndup(auth, n);
    if (p->endpoint == NULL || p->host == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    size_t hn = strlen(p->host);
    if (hn > 4 && strcmp(p->host + hn - 4, ":443") == 0)
        p->host[hn -= 4] = '\0';
    const char *colon = strrchr(p->host, ':');
    const char *bracket = strrchr(p->host, ']');
    size_t name_len =
        colon != NULL && (bracket == NULL || colon > bracket) ? (size_t)(colon - p->host) : hn;
    p->host_name = strndup(p->host, name_len);
    return p->host_name != NULL ? TDE_OK
                                : tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
}

tde_status
kms_provider_init(kms_provider *p, const tde_masterkey_provider_vtable *vt, const kms_dialect *d,
                  const tde_uri *uri, const char *default_endpoint, const char *const *extra)
{
    const char *region = tde_uri_host(uri), *path = tde_uri_path(uri), *mode;
    long attempts = 4, timeout = 10000, connect = 3000;
    char endpoint[512];

    p->base.vt = vt;
    p->dialect = d;
    p->name = vt->name;
    if (region[0] == '\0' ||
        strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region))
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "%s: the URI host must be the region (e.g. %s://us-east-1/KEY): %s",
                             p->name, p->name, tde_uri_text(uri));
    while (*path == '/')
        path++;
    if (path[0] == '\0')
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: the URI path must name the key: %s", p->name,
                             tde_uri_text(uri));
    for (size_t i = 0; i < tde_uri_param_count(uri); i++) {
        const char *name, *value;
        tde_uri_param_at(uri, i, &name, &value);
        if (!in_list(common_params, name) && !in_list(extra, name) && strncmp(name, "ctx_", 4) != 0)
            return tde_error_set(TDE_ERR_INVALID_ARG, "%s: unknown URI parameter %s", p->name,
                                 name);
    }
    TDE_RET(long_param(p, uri, "retries", 1, 10, &attempts));
    TDE_RET(long_param(p, uri, "timeout_ms", 100, 600000, &timeout));
    TDE_RET(long_param(p, uri, "connect_timeout_ms", 100, 600000, &connect));
    p->retry = (kms_retry){.attempts = (int)attempts, .base_ms = 100, .cap_ms = 2000};
    p->http = (kms_http_opts){.connect_timeout_ms = connect, .timeout_ms = timeout};
    mode = tde_uri_param(uri, "mode");
    if (mode == NULL || strcmp(mode, "envelope") == 0)
        p->mode = KMS_MODE_ENVELOPE;
    else if (strcmp(mode, "direct") == 0)
        p->mode = KMS_MODE_DIRECT;
    else
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: mode=%s: use envelope or direct", p->name,
                             mode);

    p->region = strdup(region);
    p->key = strdup(path);
    p->ca_file = dup_or_null(tde_uri_param(uri, "ca_file"));
    p->context = json_object();
    if (p->region == NULL || p->key == NULL || p->context == NULL ||
        (tde_uri_param(uri, "ca_file") != NULL && p->ca_file == NULL) ||
        asprintf(&p->key_id, "%s/%s", region, path) < 0) {
        p->key_id = NULL;
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    }
    p->http.ca_file = p->ca_file;
    for (size_t i = 0; i < tde_uri_param_count(uri); i++) {
        const char *name, *value;
        tde_uri_param_at(uri, i, &name, &value);
        if (strncmp(name, "ctx_", 4) == 0 &&
            json_object_set_new(p->context, name + 4, json_string(value)) != 0)
            return tde_error_set(TDE_ERR_INVALID_ARG,
                                 "%s: URI parameter %s is not a valid context entry", p->name,
                                 name);
    }
    snprintf(endpoint, sizeof(endpoint), default_endpoint, region);
    return parse_endpoint(p, tde_uri_param(uri, "endpoint") ? tde_uri_param(uri, "endpoint")
                                                            : endpoint);
}

void
kms_provider_fini(kms_provider *p)
{
    for (size_t i = 0; i < p->n_cache; i++) {
        tde_secret_free(p->cache[i].dk);
        free(p->cache[i].ciphertext);
        free(p->cache[i].key_id);
    }
    free(p->region);
    free(p->key);
    free(p->key_id);
    free(p->endpoint);
    free(p->host);
    free(p->host_name);
    free(p->ca_file);
    json_decref(p->context);
}

tde_status
kms_provider_call(kms_provider *p, const char *action, const char *body, kms_reply *r)
{
    tde_status st = TDE_OK;
    memset(r, 0, sizeof(*r));
    for (int attempt = 1;; attempt++) {
        kms_http_reply hr = {0};
        int retryable;
        p->kms_requests++;
        st = p->dialect->send(p, action, body, &hr);
        if (st == TDE_OK) {
            st = p->dialect->parse(hr.status, hr.body, hr.len, r);
            retryable = st != TDE_OK && r->retryable;
        } else {
            retryable = st == TDE_ERR_UNAVAILABLE || st == TDE_ERR_TIMEOUT;
        }
        kms_http_reply_free(&hr);
        if (st == TDE_OK || !retryable)
            return st;
        if (attempt >= p->retry.attempts) {
            char last[512];
            snprintf(last, sizeof(last), "%s", tde_last_error());
            return tde_error_set(st, "%s %s (key %s), gave up after %d attempts: %s", p->name,
                                 action, p->key_id, attempt, last);
        }
        tde_log(TDE_LOG_WARN, "%s %s (key %s): attempt %d failed, retrying: %s", p->name, action,
                p->key_id, attempt, tde_last_error());
        kms_backoff(&p->retry, attempt);
    }
}

/* The EncryptionContext: the ctx_* parameters plus, in direct mode, the caller's aad. */
static tde_status
context_json(kms_provider *p, const uint8_t *aad, size_t aad_len, json_t **out)
{
    json_t *ctx = json_copy(p->context);
    if (ctx == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    if (aad_len > 0) {
        char *b64 = kms_b64_encode(aad, aad_len);
        if (b64 == NULL || json_object_set_new(ctx, "tde:aad", json_string(b64)) != 0) {
            free(b64);
            json_decref(ctx);
            return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
        }
        free(b64);
    }
    *out = ctx;
    return TDE_OK;
}

/* Builds a request body (KeyId when @p with_key, @p field = @p value, which is stolen, and the
 * EncryptionContext) and calls the KMS. */
static tde_status
call(kms_provider *p, const char *action, int with_key, const char *field, json_t *value,
     json_t *ctx, kms_reply *r)
{
    tde_status st = TDE_OK;
    char *body = NULL, *ctx_text = NULL;
    json_t *req = json_object();

    if (req == NULL)
        json_decref(value);
    TDE_ENSURE(req != NULL && json_object_set_new(req, field, value) == 0, TDE_ERR_NOMEM,
               "%s: out of memory", p->name);
    if (with_key)
        TDE_ENSURE(json_object_set_new(req, "KeyId", json_string(p->key)) == 0, TDE_ERR_INVALID_ARG,
                   "%s: key %s is not UTF-8", p->name, p->key);
    if (json_object_size(ctx) > 0) {
        if (p->dialect->context_as_string) {
            ctx_text = json_dumps(ctx, JSON_COMPACT | JSON_SORT_KEYS);
            TDE_ENSURE(ctx_text != NULL && json_object_set_new(req, "EncryptionContext",
                                                               json_string(ctx_text)) == 0,
                       TDE_ERR_NOMEM, "%s: out of memory", p->name);
        } else {
            TDE_ENSURE(json_object_set(req, "EncryptionContext", ctx) == 0, TDE_ERR_NOMEM,
                       "%s: out of memory", p->name);
        }
    }
    body = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    TDE_ENSURE(body != NULL, TDE_ERR_NOMEM, "%s: out of memory", p->name);
    TDE_ERR(kms_provider_call(p, action, body, r));
err:
    if (body != NULL) {
        /* Encrypt bodies hold the secret in base64. */
        OPENSSL_cleanse(body, strlen(body));
        free(body);
    }
    free(ctx_text);
    json_decref(req);
    return st;
}

/* A reply's key must be the blob's: a KMS answering with another key is refused. */
static tde_status
check_reply(kms_provider *p, const char *action, const kms_reply *r, const char *want_key,
            int want_plaintext, int want_ciphertext, size_t want_len)
{
    if (want_key != NULL && strcmp(r->key_id, want_key) != 0)
        return tde_error_set(TDE_ERR_AUTH,
                             "%s %s (key %s): the KMS answered with key %s, the blob was wrapped "
                             "by %s",
                             p->name, action, p->key_id, r->key_id, want_key);
    if (want_plaintext &&
        (r->plaintext == NULL || (want_len && tde_secret_len(r->plaintext) != want_len)))
        return tde_error_set(TDE_ERR_PROTOCOL, "%s %s (key %s): reply lacks a %zu-byte Plaintext",
                             p->name, action, p->key_id, want_len);
    if (want_ciphertext && (r->ciphertext == NULL || strlen(r->ciphertext) > MAX_TEXT))
        return tde_error_set(TDE_ERR_PROTOCOL,
                             "%s %s (key %s): reply lacks a usable CiphertextBlob", p->name, action,
                             p->key_id);
    if (strlen(r->key_id) > MAX_TEXT)
        return tde_error_set(TDE_ERR_PROTOCOL, "%s %s: KeyId too long", p->name, action);
    return TDE_OK;
}

/* Moves a reply's data key into the cache; returns its slot. */
static kms_cached_key *
cache_put(kms_provider *p, kms_reply *r)
{
    size_t slot = p->n_cache < KMS_CACHE_SLOTS ? p->n_cache++ : KMS_CACHE_SLOTS - 1;
    kms_cached_key *c = &p->cache[slot];
    if (slot == KMS_CACHE_SLOTS - 1 && c->dk != NULL) {
        tde_secret_free(c->dk);
        free(c->ciphertext);
        free(c->key_id);
    }
    c->dk = r->plaintext;
    c->ciphertext = r->ciphertext;
    c->key_id = r->key_id;
    r->plaintext = NULL;
    r->ciphertext = NULL;
    r->key_id = NULL;
    return c;
}

static tde_status
data_key_for_wrap(kms_provider *p, kms_cached_key **out)
{
    tde_status st = TDE_OK;
    kms_reply r = {0};
    json_t *ctx = NULL;
    if (p->n_cache == 0) {
        TDE_ERR(context_json(p, NULL, 0, &ctx));
        TDE_ERR(call(p, "GenerateDataKey", 1, "NumberOfBytes", json_integer(KMS_DATA_KEY_LEN), ctx,
                     &r));
        TDE_ERR(check_reply(p, "GenerateDataKey", &r, NULL, 1, 1, KMS_DATA_KEY_LEN));
        tde_log(TDE_LOG_INFO, "%s: new data key from KMS key %s", p->name, r.key_id);
        cache_put(p, &r);
    }
    *out = &p->cache[0];
err:
    json_decref(ctx);
    kms_reply_free(&r);
    return st;
}

static void
put16(uint8_t *b, size_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

/* header = magic, version, mode, key id, KMS ciphertext; *out has room for @p extra more. */
static tde_status
blob_header(kms_provider *p, enum kms_mode mode, const char *key_id, const char *ct, size_t extra,
            uint8_t **out, size_t *hdr_len)
{
    size_t n = strlen(key_id), m = strlen(ct);
    size_t len = 4 + 1 + 1 + 2 + n + 2 + m;
    uint8_t *b = malloc(len + extra);
    if (b == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    memcpy(b, BLOB_MAGIC, 4);
    b[4] = BLOB_VERSION;
    b[5] = (uint8_t)mode;
    put16(b + 6, n);
    memcpy(b + 8, key_id, n);
    put16(b + 8 + n, m);
    memcpy(b + 10 + n, ct, m);
    *out = b;
    *hdr_len = len;
    return TDE_OK;
}

typedef struct blob_view {
    enum kms_mode mode;
    char *key_id;
    char *ciphertext;
    size_t hdr_len;
} blob_view;

static void
blob_view_free(blob_view *v)
{
    free(v->key_id);
    free(v->ciphertext);
}

static tde_status
blob_parse(kms_provider *p, const uint8_t *b, size_t len, blob_view *v)
{
    size_t n, m;
    memset(v, 0, sizeof(*v));
    if (len < 10 || memcmp(b, BLOB_MAGIC, 4) != 0)
        return tde_error_set(TDE_ERR_AUTH, "%s (key %s): not a %s blob", p->name, p->key_id,
                             p->name);
    if (b[4] != BLOB_VERSION)
        return tde_error_set(TDE_ERR_UNSUPPORTED, "%s (key %s): blob version %u", p->name,
                             p->key_id, b[4]);
    if (b[5] != KMS_MODE_ENVELOPE && b[5] != KMS_MODE_DIRECT)
        return tde_error_set(TDE_ERR_CORRUPT, "%s (key %s): blob mode %u", p->name, p->key_id,
                             b[5]);
    n = (size_t)b[6] << 8 | b[7];
    if (n == 0 || 8 + n + 2 > len)
        return tde_error_set(TDE_ERR_CORRUPT, "%s (key %s): truncated blob", p->name, p->key_id);
    m = (size_t)b[8 + n] << 8 | b[9 + n];
    if (m == 0 || 10 + n + m > len || memchr(b + 8, 0, n) != NULL ||
        memchr(b + 10 + n, 0, m) != NULL)
        return tde_error_set(TDE_ERR_CORRUPT, "%s (key %s): truncated blob", p->name, p->key_id);
    v->mode = (enum kms_mode)b[5];
    v->key_id = strndup((const char *)b + 8, n);
    v->ciphertext = strndup((const char *)b + 10 + n, m);
    v->hdr_len = 10 + n + m;
    if (v->key_id == NULL || v->ciphertext == NULL) {
        blob_view_free(v);
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    }
    return TDE_OK;
}

/* GCM AAD of an envelope blob: its header, then the caller's aad. */
static tde_status
gcm_aad(kms_provider *p, const uint8_t *hdr, size_t hdr_len, const uint8_t *aad, size_t aad_len,
        uint8_t **out)
{
    *out = malloc(hdr_len + aad_len + 1);
    if (*out == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", p->name);
    memcpy(*out, hdr, hdr_len);
    if (aad_len > 0)
        memcpy(*out + hdr_len, aad, aad_len);
    return TDE_OK;
}

tde_status
kms_provider_wrap(tde_masterkey_provider *base, const uint8_t *aad, size_t aad_len,
                  const uint8_t *pt, size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    kms_provider *p = (kms_provider *)base;
    tde_status st = TDE_OK;
    uint8_t *b = NULL, *full_aad = NULL;
    size_t hdr_len;
    kms_reply r = {0};
    json_t *ctx = NULL;
    char *b64 = NULL;

    TDE_ENSURE(pt_len > 0 && pt_len <= TDE_MASTERKEY_MAX_WRAP, TDE_ERR_INVALID_ARG,
               "%s (key %s): can wrap 1..%d bytes, not %zu", p->name, p->key_id,
               TDE_MASTERKEY_MAX_WRAP, pt_len);
    if (p->mode == KMS_MODE_DIRECT) {
        TDE_ERR(context_json(p, aad, aad_len, &ctx));
        b64 = kms_b64_encode(pt, pt_len);
        TDE_ENSURE(b64 != NULL, TDE_ERR_NOMEM, "%s: out of memory", p->name);
        st = call(p, "Encrypt", 1, "Plaintext", json_string(b64), ctx, &r);
        OPENSSL_cleanse(b64, strlen(b64));
        TDE_ERR(st);
        TDE_ERR(check_reply(p, "Encrypt", &r, NULL, 0, 1, 0));
        TDE_ERR(blob_header(p, KMS_MODE_DIRECT, r.key_id, r.ciphertext, 0, &b, &hdr_len));
        *blob_len = hdr_len;
    } else {
        kms_cached_key *c = NULL;
        TDE_ERR(data_key_for_wrap(p, &c));
        TDE_ERR(blob_header(p, KMS_MODE_ENVELOPE, c->key_id, c->ciphertext,
                            TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN + pt_len, &b, &hdr_len));
        TDE_ERR(gcm_aad(p, b, hdr_len, aad, aad_len, &full_aad));
        TDE_ERR(tde_gcm_seal_random_iv(
            tde_secret_data(c->dk), KMS_DATA_KEY_LEN, b + hdr_len, full_aad, hdr_len + aad_len, pt,
            pt_len, b + hdr_len + TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN, b + hdr_len + TDE_GCM_IV_LEN));
        *blob_len = hdr_len + TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN + pt_len;
    }
    *blob = b;
    b = NULL;
err:
    free(b);
    free(full_aad);
    free(b64);
    json_decref(ctx);
    kms_reply_free(&r);
    return st;
}

/* Finds the blob's data key in the cache, or asks the KMS to decrypt it (once). */
static tde_status
data_key_for_unwrap(kms_provider *p, const blob_view *v, kms_cached_key **out)
{
    tde_status st = TDE_OK;
    kms_reply r = {0};
    json_t *ctx = NULL;
    for (size_t i = 0; i < p->n_cache; i++) {
        if (strcmp(p->cache[i].ciphertext, v->ciphertext) == 0) {
            TDE_ENSURE(strcmp(p->cache[i].key_id, v->key_id) == 0, TDE_ERR_AUTH,
                       "%s (key %s): blob names KMS key %s, its data key came from %s", p->name,
                       p->key_id, v->key_id, p->cache[i].key_id);
            *out = &p->cache[i];
            return TDE_OK;
        }
    }
    TDE_ERR(context_json(p, NULL, 0, &ctx));
    TDE_ERR(call(p, "Decrypt", p->dialect->decrypt_names_key, "CiphertextBlob",
                 json_string(v->ciphertext), ctx, &r));
    TDE_ERR(check_reply(p, "Decrypt", &r, v->key_id, 1, 0, KMS_DATA_KEY_LEN));
    free(r.ciphertext);
    r.ciphertext = strdup(v->ciphertext);
    TDE_ENSURE(r.ciphertext != NULL, TDE_ERR_NOMEM, "%s: out of memory", p->name);
    *out = cache_put(p, &r);
err:
    json_decref(ctx);
    kms_reply_free(&r);
    return st;
}

tde_status
kms_provider_unwrap(tde_masterkey_provider *base, const uint8_t *aad, size_t aad_len,
                    const uint8_t *blob, size_t blob_len, tde_secret **pt)
{
    kms_provider *p = (kms_provider *)base;
    tde_status st = TDE_OK;
    blob_view v;
    kms_reply r = {0};
    json_t *ctx = NULL;
    uint8_t *full_aad = NULL;
    tde_secret *out = NULL;

    TDE_RET(blob_parse(p, blob, blob_len, &v));
    /* Where Decrypt cannot name the key, the blob's key must be ours. */
    TDE_ENSURE(p->dialect->decrypt_names_key || strcmp(v.key_id, p->key) == 0, TDE_ERR_AUTH,
               "%s (key %s): blob was wrapped by KMS key %s", p->name, p->key_id, v.key_id);
    if (v.mode == KMS_MODE_DIRECT) {
        TDE_ENSURE(blob_len == v.hdr_len, TDE_ERR_CORRUPT, "%s (key %s): trailing bytes in blob",
                   p->name, p->key_id);
        TDE_ERR(context_json(p, aad, aad_len, &ctx));
        TDE_ERR(call(p, "Decrypt", p->dialect->decrypt_names_key, "CiphertextBlob",
                     json_string(v.ciphertext), ctx, &r));
        TDE_ERR(check_reply(p, "Decrypt", &r, v.key_id, 1, 0, 0));
        out = r.plaintext;
        r.plaintext = NULL;
    } else {
        kms_cached_key *c = NULL;
        size_t n;
        TDE_ENSURE(blob_len > v.hdr_len + TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN, TDE_ERR_CORRUPT,
                   "%s (key %s): truncated blob", p->name, p->key_id);
        n = blob_len - v.hdr_len - TDE_GCM_IV_LEN - TDE_GCM_TAG_LEN;
        TDE_ERR(data_key_for_unwrap(p, &v, &c));
        TDE_ERR(gcm_aad(p, blob, v.hdr_len, aad, aad_len, &full_aad));
        TDE_ERR(tde_secret_new(&out, n));
        st = tde_gcm_open(
            tde_secret_data(c->dk), KMS_DATA_KEY_LEN, blob + v.hdr_len, TDE_GCM_IV_LEN, full_aad,
            v.hdr_len + aad_len, blob + v.hdr_len + TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN, n,
            blob + v.hdr_len + TDE_GCM_IV_LEN, TDE_GCM_TAG_LEN, tde_secret_data_mut(out));
        TDE_ENSURE(st == TDE_OK, TDE_ERR_AUTH,
                   "%s (key %s): blob or aad does not authenticate under KMS key %s", p->name,
                   p->key_id, v.key_id);
    }
    *pt = out;
    out = NULL;
err:
    tde_secret_free(out);
    free(full_aad);
    json_decref(ctx);
    kms_reply_free(&r);
    blob_view_free(&v);
    return st;
}

tde_status
kms_provider_generate_data_key(tde_masterkey_provider *base, size_t key_len, const uint8_t *aad,
                               size_t aad_len, tde_secret **key, uint8_t **blob, size_t *blob_len)
{
    kms_provider *p = (kms_provider *)base;
    tde_status st = TDE_OK;
    kms_reply r = {0};
    json_t *ctx = NULL;
    tde_secret *k = NULL;
    size_t hdr_len;

    TDE_ENSURE(key_len > 0 && key_len <= 1024, TDE_ERR_INVALID_ARG,
               "%s (key %s): data keys are 1..1024 bytes, not %zu", p->name, p->key_id, key_len);
    if (p->mode == KMS_MODE_ENVELOPE) {
        TDE_ERR(tde_secret_random(&k, key_len));
        TDE_ERR(kms_provider_wrap(base, aad, aad_len, tde_secret_data(k), key_len, blob, blob_len));
    } else {
        TDE_ERR(context_json(p, aad, aad_len, &ctx));
        TDE_ERR(call(p, "GenerateDataKey", 1, "NumberOfBytes", json_integer((json_int_t)key_len),
                     ctx, &r));
        TDE_ERR(check_reply(p, "GenerateDataKey", &r, NULL, 1, 1, key_len));
        TDE_ERR(blob_header(p, KMS_MODE_DIRECT, r.key_id, r.ciphertext, 0, blob, &hdr_len));
        *blob_len = hdr_len;
        k = r.plaintext;
        r.plaintext = NULL;
    }
    *key = k;
    k = NULL;
err:
    tde_secret_free(k);
    json_decref(ctx);
    kms_reply_free(&r);
    return st;
}

const char *
kms_provider_key_id(const tde_masterkey_provider *base)
{
    return ((const kms_provider *)base)->key_id;
}

unsigned long
kms_provider_requests(const tde_masterkey_provider *base)
{
    return ((const kms_provider *)base)->kms_requests;
}
