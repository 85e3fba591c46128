/*
 * The KMIP master-key provider:
 *   kmip://host[:5696]/<key name>?ca=..&cert=..&key=..[&id=..][&mode=local|server]...
 * (parameters in docs/providers.md, section KMIP).
 *
 * Threat model: the master key lives in a KMIP server reached over mutual TLS.
 * mode=local fetches it once with Get into locked memory and wraps with local
 * AES-256-GCM (survives short outages once open); mode=server sends data keys
 * to the server's Encrypt/Decrypt with AES-GCM so the master key never leaves
 * it. Only authenticated server-side modes are used: a damaged wrapped key must
 * fail, never unwrap to a wrong key. Both modes make the same blob, so either
 * mode opens blobs of the other:
 *   version (1 byte, 1) || IV (12) || ciphertext || GCM tag (16), AAD = caller's.
 * No key bytes reach logs or error messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "masterkey/kmip_msg.h"
#include "masterkey/kmip_tls.h"
#include "masterkey/provider.h"
#include "tde/gcm.h"

#define KMIP_DEFAULT_PORT 5696
#define BLOB_VERSION 1
#define BLOB_OVERHEAD (1 + TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN)
#define UID_MAX 256

typedef struct kmipp {
    tde_masterkey_provider base;
    kmip_client *client;
    kmip_version version;
    int server_mode;
    tde_secret *key; /* mode=local */
    char uid[UID_MAX];
    char key_id[UID_MAX + 8];
} kmipp;

static const kmip_version supported[] = {{2, 0}, {1, 4}, {1, 3}, {1, 2}, {1, 1}, {1, 0}};
#define N_SUPPORTED (sizeof(supported) / sizeof(supported[0]))

static const char *const known_params[] = {
    "ca",
    "cert",
    "key",
    "id",
    "mode",
    "version",
    "create",
    "tls_ciphers",
    "tls_min",
    "timeout_ms",
    "connect_timeout_ms",
    "retries",
    "backoff_ms",
};

/* Maps a failed KMIP operation to a status and a message naming the server, key and reason. */
static tde_status
op_failed(const kmipp *k, const kmip_response *r, const char *what)
{
    tde_status st;
    switch (r->reason) {
    case KMIP_REASON_ITEM_NOT_FOUND: st = TDE_ERR_NOT_FOUND; break;
    case KMIP_REASON_AUTH_FAILED:
    case KMIP_REASON_PERMISSION_DENIED: st = TDE_ERR_AUTH; break;
    case 5: /* OperationNotSupported */
    case 8: /* FeatureNotSupported */
    case 16: /* KeyFormatTypeNotSupported */ st = TDE_ERR_UNSUPPORTED; break;
    default:
        /* PyKMIP reports a failed GCM tag check as GeneralFailure. */
        st = r->op == KMIP_OP_DECRYPT ? TDE_ERR_AUTH : TDE_ERR_PROTOCOL;
    }
    return tde_error_set(st, "provider kmip %s: %s%s%s failed: %s: %.*s",
                         kmip_client_peer(k->client), kmip_op_str(r->op), what[0] ? " of " : "",
                         what, kmip_reason_str(r->reason), (int)r->message_len,
                         r->message ? r->message : "");
}

/* Sends @p rq at version @p v and requires a successful reply. */
static tde_status
kmip_do(kmipp *k, kmip_version v, const kmip_request *rq, int idempotent, kmip_response *r)
{
    uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    tde_status st;

    memset(r, 0, sizeof(*r));
    TDE_RET(kmip_request_encode(v, rq, &req, &req_len));
    st = kmip_client_call(k->client, req, req_len, idempotent, &resp, &resp_len);
    kmip_buf_free(req, req_len);
    if (st != TDE_OK) {
        char why[400];
        snprintf(why, sizeof(why), "%s", tde_last_error());
        return tde_error_set(st, "provider %s (during %s%s%s)", why, kmip_op_str(rq->op),
                             rq->uid    ? " of key "
                             : rq->name ? " of "
                                        : "",
                             rq->uid    ? rq->uid
                             : rq->name ? rq->name
                                        : "");
    }
    st = kmip_response_decode(r, resp, resp_len, rq->op);
    if (st != TDE_OK) {
        char why[400];
        snprintf(why, sizeof(why), "%s", tde_last_error());
        return tde_error_set(st, "provider kmip %s: bad %s reply: %s", kmip_client_peer(k->client),
                             kmip_op_str(rq->op), why);
    }
    if (r->status != 0) {
        st = op_failed(k, r, rq->uid ? rq->uid : rq->name ? rq->name : "");
        kmip_response_free(r);
        return st;
    }
    return TDE_OK;
}

static int
parse_int_param(const tde_uri *uri, const char *name, int dflt, int min, int max, tde_status *st)
{
    const char *s = tde_uri_param(uri, name);
    char *end;
    long v;
    if (s == NULL)
        return dflt;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        *st = tde_error_set(TDE_ERR_INVALID_ARG,
                            "provider kmip: URI \"%s\": %s=%s is not an integer in [%d, %d]",
                            tde_uri_text(uri), name, s, min, max);
        return dflt;
    }
    return (int)v;
}

/* Picks the protocol version: configured, or the server's first that we speak. */
static tde_status
negotiate(kmipp *k, const char *want)
{
    kmip_request rq;
    kmip_response r;
    kmip_version got[KMIP_MAX_VERSIONS];
    size_t n = 0;
    tde_status st;

    if (strcmp(want, "auto") != 0) {
        for (size_t i = 0; i < N_SUPPORTED; i++) {
            char s[8];
            snprintf(s, sizeof(s), "%d.%d", supported[i].major, supported[i].minor);
            if (strcmp(s, want) == 0) {
                k->version = supported[i];
                return TDE_OK;
            }
        }
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider kmip: version=%s: expected auto, 1.0 to 1.4 or 2.0", want);
    }
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DISCOVER_VERSIONS;
    rq.versions = supported;
    rq.n_versions = N_SUPPORTED;
    /* DiscoverVersions exists since KMIP 1.1; ask in that dialect. */
    st = kmip_do(k, (kmip_version){1, 1}, &rq, 1, &r);
    if (st == TDE_ERR_UNSUPPORTED || st == TDE_ERR_PROTOCOL) {
        tde_log(TDE_LOG_WARN, "provider kmip %s: no DiscoverVersions (%s); using KMIP 1.0",
                kmip_client_peer(k->client), tde_last_error());
        k->version = (kmip_version){1, 0};
        return TDE_OK;
    }
    TDE_RET(st);
    st = kmip_response_versions(&r, got, KMIP_MAX_VERSIONS, &n);
    for (size_t i = 0; st == TDE_OK && i < n; i++)
        for (size_t j = 0; j < N_SUPPORTED; j++)
            if (kmip_version_cmp(got[i], supported[j]) == 0) {
                k->version = got[i];
                kmip_response_free(&r);
                return TDE_OK;
            }
    kmip_response_free(&r);
    TDE_RET(st);
    return tde_error_set(TDE_ERR_UNSUPPORTED,
                         "provider kmip %s: the server speaks none of KMIP 1.0-1.4 and 2.0",
                         kmip_client_peer(k->client));
}

/* Finds the key by name (Locate), creating and activating it when @p create is set. */
static tde_status
resolve_name(kmipp *k, const char *name, int create)
{
    kmip_request rq;
    kmip_response r;
    size_t n;
    tde_status st;

    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_LOCATE;
    rq.name = name;
    TDE_RET(kmip_do(k, k->version, &rq, 1, &r));
    n = kmip_response_uid_count(&r);
    if (n == 1) {
        st = kmip_response_uid(&r, k->uid, sizeof(k->uid));
        kmip_response_free(&r);
        return st;
    }
    kmip_response_free(&r);
    if (n > 1)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider kmip %s: %zu objects are named \"%s\"; name one with id=",
                             kmip_client_peer(k->client), n, name);
    if (!create)
        return tde_error_set(TDE_ERR_NOT_FOUND,
                             "provider kmip %s: no key named \"%s\" (add create=1 to make one)",
                             kmip_client_peer(k->client), name);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_CREATE;
    rq.name = name;
    rq.usage = KMIP_USAGE_ENCRYPT | KMIP_USAGE_DECRYPT;
    TDE_RET(kmip_do(k, k->version, &rq, 0, &r));
    st = kmip_response_uid(&r, k->uid, sizeof(k->uid));
    kmip_response_free(&r);
    TDE_RET(st);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ACTIVATE;
    rq.uid = k->uid;
    TDE_RET(kmip_do(k, k->version, &rq, 1, &r));
    kmip_response_free(&r);
    tde_log(TDE_LOG_INFO, "provider kmip %s: created AES-256 key \"%s\" (id %s)",
            kmip_client_peer(k->client), name, k->uid);
    return TDE_OK;
}

/* Server-side wrapping needs Encrypt/Decrypt with GCM (KMIP >= 1.4); otherwise falls back. */
static tde_status
choose_server_mode(kmipp *k)
{
    kmip_request rq;
    kmip_response r;
    int ok;

    if (kmip_version_cmp(k->version, (kmip_version){1, 4}) < 0) {
        tde_log(TDE_LOG_WARN,
                "provider kmip %s: KMIP %d.%d has no AES-GCM Encrypt; falling back to Get + local "
                "AES-256-GCM",
                kmip_client_peer(k->client), k->version.major, k->version.minor);
        return TDE_OK;
    }
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    TDE_RET(kmip_do(k, k->version, &rq, 1, &r));
    ok = kmip_response_has_op(&r, KMIP_OP_ENCRYPT) && kmip_response_has_op(&r, KMIP_OP_DECRYPT);
    kmip_response_free(&r);
    if (!ok) {
        tde_log(TDE_LOG_WARN,
                "provider kmip %s: server lists no Encrypt/Decrypt; falling back to Get + local "
                "AES-256-GCM",
                kmip_client_peer(k->client));
        return TDE_OK;
    }
    k->server_mode = 1;
    return TDE_OK;
}

static tde_status
fetch_key(kmipp *k)
{
    kmip_request rq;
    kmip_response r;
    tde_status st;

    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET;
    rq.uid = k->uid;
    TDE_RET(kmip_do(k, k->version, &rq, 1, &r));
    st = kmip_response_key(&r, &k->key);
    kmip_response_free(&r);
    if (st != TDE_OK) {
        char why[300];
        snprintf(why, sizeof(why), "%s", tde_last_error());
        return tde_error_set(st, "provider kmip %s, key %s: %s", kmip_client_peer(k->client),
                             k->uid, why);
    }
    return TDE_OK;
}

static void
kmipp_destroy(tde_masterkey_provider *p)
{
    kmipp *k = (kmipp *)p;
    if (k == NULL)
        return;
    tde_secret_free(k->key);
    kmip_client_free(k->client);
    free(k);
}

static tde_status
kmipp_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    tde_status st = TDE_OK;
    kmipp *k = NULL;
    kmip_tls_config cfg;
    const char *name = tde_uri_path(uri), *id = tde_uri_param(uri, "id");
    const char *mode = tde_uri_param(uri, "mode"), *version = tde_uri_param(uri, "version");
    const char *tls_min = tde_uri_param(uri, "tls_min");
    int create;

    *out = NULL;
    for (size_t i = 0; i < tde_uri_param_count(uri); i++) {
        const char *pn, *pv;
        size_t j = 0;
        tde_uri_param_at(uri, i, &pn, &pv);
        while (j < sizeof(known_params) / sizeof(known_params[0]) && strcmp(pn, known_params[j]))
            j++;
        TDE_ENSURE(j < sizeof(known_params) / sizeof(known_params[0]), TDE_ERR_INVALID_ARG,
                   "provider kmip: URI \"%s\": unknown parameter \"%s\"", tde_uri_text(uri), pn);
    }
    while (*name == '/')
        name++;
    TDE_ENSURE(tde_uri_host(uri)[0] != '\0', TDE_ERR_INVALID_ARG,
               "provider kmip: URI \"%s\": needs a server host (kmip://host:5696/name)",
               tde_uri_text(uri));
    TDE_ENSURE(name[0] != '\0' || id != NULL, TDE_ERR_INVALID_ARG,
               "provider kmip: URI \"%s\": needs a key name in the path or id=", tde_uri_text(uri));
    TDE_ENSURE(id == NULL || (id[0] != '\0' && strlen(id) < UID_MAX), TDE_ERR_INVALID_ARG,
               "provider kmip: URI \"%s\": bad id", tde_uri_text(uri));
    TDE_ENSURE(mode == NULL || strcmp(mode, "local") == 0 || strcmp(mode, "server") == 0,
               TDE_ERR_INVALID_ARG, "provider kmip: URI \"%s\": mode must be local or server",
               tde_uri_text(uri));
    TDE_ENSURE(tls_min == NULL || strcmp(tls_min, "1.2") == 0 || strcmp(tls_min, "1.3") == 0,
               TDE_ERR_INVALID_ARG, "provider kmip: URI \"%s\": tls_min must be 1.2 or 1.3",
               tde_uri_text(uri));

    memset(&cfg, 0, sizeof(cfg));
    cfg.host = tde_uri_host(uri);
    cfg.port = tde_uri_port(uri) ? tde_uri_port(uri) : KMIP_DEFAULT_PORT;
    cfg.ca_file = tde_uri_param(uri, "ca");
    cfg.cert_file = tde_uri_param(uri, "cert");
    cfg.key_file = tde_uri_param(uri, "key");
    cfg.ciphers = tde_uri_param(uri, "tls_ciphers");
    cfg.tls13_only = tls_min != NULL && strcmp(tls_min, "1.3") == 0;
    create = parse_int_param(uri, "create", 0, 0, 1, &st);
    cfg.io_timeout_ms = parse_int_param(uri, "timeout_ms", 10000, 1, 600000, &st);
    cfg.connect_timeout_ms = parse_int_param(uri, "connect_timeout_ms", 5000, 1, 600000, &st);
    cfg.retries = parse_int_param(uri, "retries", 2, 0, 10, &st);
    cfg.backoff_ms = parse_int_param(uri, "backoff_ms", 200, 1, 60000, &st);
    TDE_ERR(st);

    k = calloc(1, sizeof(*k));
    TDE_ENSURE(k != NULL, TDE_ERR_NOMEM, "provider kmip: out of memory");
    k->base.vt = &masterkey_kmip_vtable;
    TDE_ERR(kmip_client_new(&k->client, &cfg));
    TDE_ERR(negotiate(k, version ? version : "auto"));
    if (id != NULL)
        snprintf(k->uid, sizeof(k->uid), "%s", id);
    else
        TDE_ERR(resolve_name(k, name, create));
    if (mode != NULL && strcmp(mode, "server") == 0)
        TDE_ERR(choose_server_mode(k));
    /* Even in server mode, check the key exists and is usable: Get in local mode, else a probe. */
    if (!k->server_mode) {
        TDE_ERR(fetch_key(k));
    } else {
        uint8_t *blob = NULL;
        size_t blob_len = 0;
        const uint8_t probe[1] = {0};
        snprintf(k->key_id, sizeof(k->key_id), "kmip:%s", k->uid);
        TDE_ERR(masterkey_kmip_vtable.wrap(&k->base, (const uint8_t *)"kmip-probe", 10, probe,
                                           sizeof(probe), &blob, &blob_len));
        free(blob);
    }
    snprintf(k->key_id, sizeof(k->key_id), "kmip:%s", k->uid);
    tde_log(TDE_LOG_INFO, "provider kmip %s: key %s opened (KMIP %d.%d, %s wrapping)",
            kmip_client_peer(k->client), k->uid, k->version.major, k->version.minor,
            k->server_mode ? "server-side AES-GCM" : "local AES-256-GCM");
    *out = &k->base;
    return TDE_OK;
err:
    kmipp_destroy((tde_masterkey_provider *)k);
    return st;
}

static const char *
kmipp_key_id(const tde_masterkey_provider *p)
{
    return ((const kmipp *)p)->key_id;
}

static tde_status
kmipp_wrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
           size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    kmipp *k = (kmipp *)p;
    size_t len = BLOB_OVERHEAD + pt_len;
    uint8_t *b = malloc(len), *iv, *ct, *tag;
    tde_status st;

    if (b == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "provider kmip: out of memory");
    b[0] = BLOB_VERSION;
    iv = b + 1;
    ct = iv + TDE_GCM_IV_LEN;
    tag = ct + pt_len;
    if (!k->server_mode) {
        st = tde_gcm_seal_random_iv(tde_secret_data(k->key), KMIP_AES256_KEY_LEN, iv, aad, aad_len,
                                    pt, pt_len, ct, tag);
    } else {
        kmip_request rq;
        kmip_response r;
        const uint8_t *d, *t;
        size_t dn, tn;

        TDE_ERR(tde_random_bytes(iv, TDE_GCM_IV_LEN));
        memset(&rq, 0, sizeof(rq));
        rq.op = KMIP_OP_ENCRYPT, rq.uid = k->uid, rq.data = pt, rq.data_len = pt_len, rq.iv = iv;
        rq.iv_len = TDE_GCM_IV_LEN, rq.aad = aad, rq.aad_len = aad_len;
        TDE_ERR(kmip_do(k, k->version, &rq, 1, &r));
        st = kmip_response_data(&r, &d, &dn, &t, &tn);
        if (st == TDE_OK && (dn != pt_len || tn != TDE_GCM_TAG_LEN))
            st = tde_error_set(TDE_ERR_PROTOCOL,
                               "provider kmip %s, key %s: Encrypt returned %zu bytes and a "
                               "%zu-byte tag for %zu bytes",
                               kmip_client_peer(k->client), k->uid, dn, tn, pt_len);
        if (st == TDE_OK) {
            memcpy(ct, d, dn);
            memcpy(tag, t, tn);
        }
        kmip_response_free(&r);
    }
    TDE_ERR(st);
    *blob = b;
    *blob_len = len;
    return TDE_OK;
err:
    free(b);
    return st;
}

static tde_status
kmipp_unwrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
             size_t blob_len, tde_secret **pt)
{
    kmipp *k = (kmipp *)p;
    tde_secret *s = NULL;
    const uint8_t *iv = blob + 1, *ct = blob + 1 + TDE_GCM_IV_LEN, *tag;
    size_t len;
    tde_status st;

    *pt = NULL;
    if (blob_len <= BLOB_OVERHEAD || blob[0] != BLOB_VERSION)
        return tde_error_set(blob_len > 0 && blob[0] != BLOB_VERSION ? TDE_ERR_UNSUPPORTED
                                                                     : TDE_ERR_CORRUPT,
                             "provider kmip, master key %s: wrapped blob of %zu bytes is not a "
                             "version-%d KMIP blob",
                             k->key_id, blob_len, BLOB_VERSION);
    len = blob_len - BLOB_OVERHEAD;
    tag = ct + len;
    TDE_RET(tde_secret_new(&s, len));
    if (!k->server_mode) {
        st = tde_gcm_open(tde_secret_data(k->key), KMIP_AES256_KEY_LEN, iv, TDE_GCM_IV_LEN, aad,
                          aad_len, ct, len, tag, TDE_GCM_TAG_LEN, tde_secret_data_mut(s));
        if (st == TDE_ERR_AUTH)
            st = tde_error_set(TDE_ERR_AUTH,
                               "provider kmip, master key %s: GCM tag mismatch: wrong master key "
                               "or tampered record",
                               k->key_id);
    } else {
        kmip_request rq;
        kmip_response r;
        const uint8_t *d, *t;
        size_t dn, tn;

        memset(&rq, 0, sizeof(rq));
        rq.op = KMIP_OP_DECRYPT, rq.uid = k->uid, rq.data = ct, rq.data_len = len, rq.iv = iv;
        rq.iv_len = TDE_GCM_IV_LEN, rq.aad = aad, rq.aad_len = aad_len, rq.tag = tag;
        rq.tag_len = TDE_GCM_TAG_LEN;
        st = kmip_do(k, k->version, &rq, 1, &r);
        if (st == TDE_OK) {
            st = kmip_response_data(&r, &d, &dn, &t, &tn);
            if (st == TDE_OK && dn != len)
                st = tde_error_set(TDE_ERR_PROTOCOL,
                                   "provider kmip %s, key %s: Decrypt returned %zu bytes for %zu",
                                   kmip_client_peer(k->client), k->uid, dn, len);
            if (st == TDE_OK)
                memcpy(tde_secret_data_mut(s), d, dn);
            kmip_response_free(&r);
        }
    }
    if (st != TDE_OK) {
        tde_secret_free(s);
        return st;
    }
    *pt = s;
    return TDE_OK;
}

const tde_masterkey_provider_vtable masterkey_kmip_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "kmip",
    .open = kmipp_open,
    .key_id = kmipp_key_id,
    .wrap = kmipp_wrap,
    .unwrap = kmipp_unwrap,
    .generate_data_key = NULL,
    .destroy = kmipp_destroy,
};
