/*
 * Tencent Cloud KMS master-key provider: tencent-kms://<region>/<key-id>?endpoint=...
 * API 3.0 (version 2019-01-18) signed with TC3-HMAC-SHA256; errors arrive with
 * HTTP 200 in Response.Error; EncryptionContext is a JSON string.
 *
 * Credentials never come from the URI. The chain, first match wins:
 * TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY[/TENCENTCLOUD_SESSION_TOKEN];
 * the credentials file (credentials_file=, TENCENTCLOUD_CREDENTIALS_FILE or
 * ~/.tencentcloud/credentials; profile=, TENCENTCLOUD_PROFILE or "default";
 * keys secret_id, secret_key, token); the CVM role from the metadata service
 * (role=, TENCENTCLOUD_ROLE or the one listed; metadata_endpoint=,
 * TENCENTCLOUD_METADATA_ENDPOINT; off with TENCENTCLOUD_METADATA_DISABLED=true).
 * Role credentials are refreshed 5 minutes before they expire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_common.h"
#include "masterkey/tc3.h"

#define REFRESH_MARGIN 300
#define AUTH_MAX 1024
#define API_VERSION "2019-01-18"
#define CONTENT_TYPE "application/json; charset=utf-8"

typedef struct tencent_kms {
    kms_provider core;
    kms_creds creds;
    char *profile;
    char *credentials_file;
    char *metadata_endpoint;
    char *role;
} tencent_kms;

static const char *const tencent_params[] = {"profile", "credentials_file", "metadata_endpoint",
                                             "role", NULL};

static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static tde_status
from_file(tencent_kms *t, int *found)
{
    static const char *const keys[] = {"secret_id", "secret_key", "token"};
    char *v[3], path[4096];
    const char *profile = t->profile                    ? t->profile
                          : env("TENCENTCLOUD_PROFILE") ? env("TENCENTCLOUD_PROFILE")
                                                        : "default";
    tde_status st;

    if (t->credentials_file != NULL)
        snprintf(path, sizeof(path), "%s", t->credentials_file);
    else if (env("TENCENTCLOUD_CREDENTIALS_FILE"))
        snprintf(path, sizeof(path), "%s", env("TENCENTCLOUD_CREDENTIALS_FILE"));
    else if (env("HOME"))
        snprintf(path, sizeof(path), "%s/.tencentcloud/credentials", env("HOME"));
    else
        return TDE_OK;
    st = kms_ini_read(path, profile, keys, v, 3);
    if (st == TDE_ERR_NOT_FOUND && t->credentials_file == NULL && t->profile == NULL)
        return TDE_OK;
    TDE_RET(st);
    if (v[0] != NULL && v[1] != NULL) {
        char source[64];
        snprintf(source, sizeof(source), "credentials file [%.40s]", profile);
        st = kms_creds_set(&t->creds, v[0], v[1], v[2], 0, source);
        *found = st == TDE_OK;
    } else {
        st = tde_error_set(TDE_ERR_AUTH, "tencent-kms: %s [%s] lacks secret_id or secret_key", path,
                           profile);
    }
    for (int i = 0; i < 3; i++) {
        if (v[i] != NULL)
            OPENSSL_cleanse(v[i], strlen(v[i]));
        free(v[i]);
    }
    return st;
}

static tde_status
from_cvm_role(tencent_kms *t, int *found)
{
    const char *disabled = env("TENCENTCLOUD_METADATA_DISABLED");
    const char *base = t->metadata_endpoint ? t->metadata_endpoint
                       : env("TENCENTCLOUD_METADATA_ENDPOINT")
                           ? env("TENCENTCLOUD_METADATA_ENDPOINT")
                           : "http://metadata.tencentyun.com";
    kms_http_opts o = {.ca_file = t->core.ca_file,
                       .connect_timeout_ms = 1000,
                       .timeout_ms = 3000,
                       .allow_http = 1};
    kms_http_reply list = {0}, cred = {0};
    char url[1024], role[128];
    tde_status st = TDE_OK;
    json_t *j = NULL;

    if (disabled != NULL && strcasecmp(disabled, "true") == 0)
        return TDE_OK;
    if (t->role != NULL || env("TENCENTCLOUD_ROLE")) {
        snprintf(role, sizeof(role), "%s", t->role ? t->role : env("TENCENTCLOUD_ROLE"));
    } else {
        snprintf(url, sizeof(url), "%s/latest/meta-data/cam/security-credentials/", base);
        TDE_ERR(kms_http("tencent-kms (CVM metadata)", "GET", url, NULL, NULL, 0, &o, &list));
        list.body[strcspn(list.body, "\r\n")] = '\0';
        TDE_ENSURE(list.status == 200 && list.body[0] && strlen(list.body) < sizeof(role),
                   TDE_ERR_AUTH, "tencent-kms: no CVM role at %s (HTTP %ld)", url, list.status);
        snprintf(role, sizeof(role), "%s", list.body);
    }
    snprintf(url, sizeof(url), "%s/latest/meta-data/cam/security-credentials/%s", base, role);
    TDE_ERR(kms_http("tencent-kms (CVM metadata)", "GET", url, NULL, NULL, 0, &o, &cred));
    j = json_loadb(cred.body, cred.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "TmpSecretId"));
    const char *key = json_string_value(json_object_get(j, "TmpSecretKey"));
    const char *tok = json_string_value(json_object_get(j, "Token"));
    json_t *exp = json_object_get(j, "ExpiredTime");
    TDE_ENSURE(cred.status == 200 && id && key && tok && json_is_integer(exp), TDE_ERR_AUTH,
               "tencent-kms: CVM role credentials at %s are unusable (HTTP %ld)", url, cred.status);
    TDE_ERR(kms_creds_set(&t->creds, id, key, tok, (time_t)json_integer_value(exp), "CVM role"));
    *found = 1;
err:
    if (cred.body != NULL)
        OPENSSL_cleanse(cred.body, cred.len);
    json_decref(j);
    kms_http_reply_free(&list);
    kms_http_reply_free(&cred);
    return st;
}

static tde_status
credentials(tencent_kms *t)
{
    int found = 0;
    if (t->creds.id != NULL &&
        (t->creds.expires == 0 || kms_clock() < t->creds.expires - REFRESH_MARGIN))
        return TDE_OK;
    if (env("TENCENTCLOUD_SECRET_ID") && env("TENCENTCLOUD_SECRET_KEY"))
        return kms_creds_set(&t->creds, env("TENCENTCLOUD_SECRET_ID"),
                             env("TENCENTCLOUD_SECRET_KEY"), env("TENCENTCLOUD_SESSION_TOKEN"), 0,
                             "environment");
    TDE_RET(from_file(t, &found));
    if (!found)
        TDE_RET(from_cvm_role(t, &found));
    if (!found)
        return tde_error_set(TDE_ERR_AUTH,
                             "tencent-kms (key %s): no credentials: set TENCENTCLOUD_SECRET_ID and "
                             "TENCENTCLOUD_SECRET_KEY, a credentials file or a CVM role",
                             t->core.key_id);
    tde_log(TDE_LOG_INFO, "tencent-kms: credentials %s from %s", t->creds.id, t->creds.source);
    return TDE_OK;
}

static tde_status
tencent_send(kms_provider *p, const char *action, const char *body, kms_http_reply *hr)
{
    tencent_kms *t = (tencent_kms *)p;
    char auth[AUTH_MAX], url[600], h_host[300], h_action[96], h_ts[64], h_region[96];
    char h_auth[AUTH_MAX + 32], *h_token = NULL;
    time_t now = kms_clock();
    tde_status st;

    TDE_RET(credentials(t));
    tc3_request r = {
        .method = "POST",
        .path = "/",
        .query = "",
        .content_type = CONTENT_TYPE,
        .host = p->host_name,
        .service = "kms",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .secret_id = t->creds.id,
        .secret_key = kms_creds_secret(&t->creds),
        .now = now,
    };
    TDE_RET(tc3_authorization(&r, auth, sizeof(auth)));
    snprintf(url, sizeof(url), "%s/", p->endpoint);
    snprintf(h_host, sizeof(h_host), "Host: %s", p->host);
    snprintf(h_action, sizeof(h_action), "X-TC-Action: %s", action);
    snprintf(h_ts, sizeof(h_ts), "X-TC-Timestamp: %lld", (long long)now);
    snprintf(h_region, sizeof(h_region), "X-TC-Region: %s", p->region);
    snprintf(h_auth, sizeof(h_auth), "Authorization: %s", auth);
    if (t->creds.token != NULL && asprintf(&h_token, "X-TC-Token: %s", t->creds.token) < 0)
        return tde_error_set(TDE_ERR_NOMEM, "tencent-kms: out of memory");
    const char *headers[] = {h_host,   "Content-Type: " CONTENT_TYPE,
                             h_action, "X-TC-Version: " API_VERSION,
                             h_ts,     h_region,
                             h_auth,   h_token,
                             NULL};
    st = kms_http("tencent-kms", "POST", url, headers, body, strlen(body), &p->http, hr);
    free(h_token);
    return st;
}

static const kms_dialect tencent_dialect = {
    .send = tencent_send,
    .parse = kms_tencent_parse_reply,
    .context_as_string = 1,
    .decrypt_names_key = 0,
};

static void
tencent_destroy(tde_masterkey_provider *base)
{
    tencent_kms *t = (tencent_kms *)base;
    if (t == NULL)
        return;
    kms_provider_fini(&t->core);
    kms_creds_clear(&t->creds);
    free(t->profile);
    free(t->credentials_file);
    free(t->metadata_endpoint);
    free(t->role);
    free(t);
}

static tde_status
tencent_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    tde_status st = TDE_OK;
    tencent_kms *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "tencent-kms: out of memory");
    /* The region travels in X-TC-Region; one endpoint serves them all. */
    TDE_ERR(kms_provider_init(&t->core, &masterkey_tencent_kms_vtable, &tencent_dialect, uri,
                              "https://kms.tencentcloudapi.com", tencent_params));
    const char *names[] = {"profile", "credentials_file", "metadata_endpoint", "role"};
    char **fields[] = {&t->profile, &t->credentials_file, &t->metadata_endpoint, &t->role};
    for (int i = 0; i < 4; i++) {
        const char *v = tde_uri_param(uri, names[i]);
        if (v != NULL) {
            *fields[i] = strdup(v);
            TDE_ENSURE(*fields[i] != NULL, TDE_ERR_NOMEM, "tencent-kms: out of memory");
        }
    }
    *out = &t->core.base;
    return TDE_OK;
err:
    tencent_destroy(&t->core.base);
    return st;
}

const tde_masterkey_provider_vtable masterkey_tencent_kms_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "tencent-kms",
    .open = tencent_open,
    .key_id = kms_provider_key_id,
    .wrap = kms_provider_wrap,
    .unwrap = kms_provider_unwrap,
    .generate_data_key = kms_provider_generate_data_key,
    .destroy = tencent_destroy,
};
