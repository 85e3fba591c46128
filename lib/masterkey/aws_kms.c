/*
 * AWS KMS master-key provider: aws-kms://<region>/<key-id|alias/name|arn>?endpoint=...
 * JSON 1.1 protocol (X-Amz-Target: TrentService.<Op>) signed with SigV4.
 *
 * Credentials never come from the URI. The chain, first match wins:
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN]; the shared
 * credentials file (credentials_file=, AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials; profile=, AWS_PROFILE or "default"); web identity
 * (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, STS AssumeRoleWithWebIdentity);
 * the EC2 instance role over IMDSv2 (unless AWS_EC2_METADATA_DISABLED=true).
 * Temporary credentials are refreshed 5 minutes before they expire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_common.h"
#include "masterkey/sigv4.h"

#define REFRESH_MARGIN 300
#define AUTH_MAX 1024

typedef struct aws_kms {
    kms_provider core;
    kms_creds creds;
    char *profile;
    char *credentials_file;
    char *imds_endpoint;
    char *sts_endpoint;
} aws_kms;

static const char *const aws_params[] = {"profile", "credentials_file", "imds_endpoint",
                                         "sts_endpoint", NULL};

static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static tde_status
from_file(aws_kms *a, int *found)
{
    static const char *const keys[] = {"aws_access_key_id", "aws_secret_access_key",
                                       "aws_session_token"};
    char *v[3], path[4096];
    const char *profile = a->profile           ? a->profile
                          : env("AWS_PROFILE") ? env("AWS_PROFILE")
                                               : "default";
    tde_status st;

    if (a->credentials_file != NULL)
        snprintf(path, sizeof(path), "%s", a->credentials_file);
    else if (env("AWS_SHARED_CREDENTIALS_FILE"))
        snprintf(path, sizeof(path), "%s", env("AWS_SHARED_CREDENTIALS_FILE"));
    else if (env("HOME"))
        snprintf(path, sizeof(path), "%s/.aws/credentials", env("HOME"));
    else
        return TDE_OK;
    st = kms_ini_read(path, profile, keys, v, 3);
    if (st == TDE_ERR_NOT_FOUND && a->credentials_file == NULL && a->profile == NULL)
        return TDE_OK; /* no file: try the next source */
    TDE_RET(st);
    if (v[0] != NULL && v[1] != NULL) {
        char source[64];
        snprintf(source, sizeof(source), "credentials file [%.40s]", profile);
        st = kms_creds_set(&a->creds, v[0], v[1], v[2], 0, source);
        *found = st == TDE_OK;
    } else {
        st = tde_error_set(TDE_ERR_AUTH,
                           "aws-kms: %s [%s] lacks aws_access_key_id or "
                           "aws_secret_access_key",
                           path, profile);
    }
    for (int i = 0; i < 3; i++) {
        if (v[i] != NULL)
            OPENSSL_cleanse(v[i], strlen(v[i]));
        free(v[i]);
    }
    return st;
}

/* Copies the text of the first <tag>...</tag> in @p xml, or NULL. */
static char *
xml_text(const char *xml, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *s = strstr(xml, open);
    if (s == NULL)
        return NULL;
    s += strlen(open);
    const char *e = strstr(s, close);
    return e != NULL ? strndup(s, (size_t)(e - s)) : NULL;
}

/* Appends @p s percent-encoded (form encoding for the STS query API). */
static void
put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            fputc(c, f);
        else
            fprintf(f, "%%%02X", c);
    }
}

static tde_status
from_web_identity(aws_kms *a, int *found)
{
    const char *token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env("AWS_ROLE_ARN");
    const char *session = env("AWS_ROLE_SESSION_NAME") ? env("AWS_ROLE_SESSION_NAME") : "libtde";
    tde_status st = TDE_OK;
    char url[512], token[8192], *body = NULL, *ak = NULL, *sk = NULL, *tok = NULL, *exp = NULL;
    size_t body_len = 0, n;
    int rc;
    FILE *f = NULL;
    kms_http_reply hr = {0};

    if (token_file == NULL || role == NULL)
        return TDE_OK;
    f = fopen(token_file, "r");
    TDE_ENSURE(f != NULL, TDE_ERR_AUTH, "aws-kms: cannot read AWS_WEB_IDENTITY_TOKEN_FILE %s",
               token_file);
    n = fread(token, 1, sizeof(token) - 1, f);
    fclose(f);
    f = NULL;
    token[n] = '\0';
    token[strcspn(token, "\r\n")] = '\0';
    if (a->sts_endpoint != NULL)
        snprintf(url, sizeof(url), "%s/", a->sts_endpoint);
    else
        snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com/", a->core.region);
    f = open_memstream(&body, &body_len);
    TDE_ENSURE(f != NULL, TDE_ERR_NOMEM, "aws-kms: out of memory");
    fputs("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=", f);
    put_escaped(f, role);
    fputs("&RoleSessionName=", f);
    put_escaped(f, session);
    fputs("&WebIdentityToken=", f);
    put_escaped(f, token);
    rc = fclose(f);
    f = NULL;
    TDE_ENSURE(rc == 0, TDE_ERR_NOMEM, "aws-kms: out of memory");
    {
        const char *hs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
        TDE_ERR(kms_http("aws-kms (web identity)", "POST", url, hs, body, body_len, &a->core.http,
                         &hr));
    }
    ak = xml_text(hr.body, "AccessKeyId");
    sk = xml_text(hr.body, "SecretAccessKey");
    tok = xml_text(hr.body, "SessionToken");
    exp = xml_text(hr.body, "Expiration");
    TDE_ENSURE(hr.status == 200 && ak && sk && tok && exp, TDE_ERR_AUTH,
               "aws-kms: STS AssumeRoleWithWebIdentity for %s at %s failed (HTTP %ld)", role, url,
               hr.status);
    TDE_ERR(kms_creds_set(&a->creds, ak, sk, tok, kms_parse_iso8601(exp), "web identity"));
    *found = 1;
err:
    OPENSSL_cleanse(token, sizeof(token));
    if (f != NULL)
        fclose(f);
    if (body != NULL)
        OPENSSL_cleanse(body, body_len);
    free(body);
    if (sk != NULL)
        OPENSSL_cleanse(sk, strlen(sk));
    free(ak);
    free(sk);
    free(tok);
    free(exp);
    kms_http_reply_free(&hr);
    return st;
}

static tde_status
from_imds(aws_kms *a, int *found)
{
    const char *disabled = env("AWS_EC2_METADATA_DISABLED");
    const char *base = a->imds_endpoint ? a->imds_endpoint
                       : env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                           ? env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                           : "http://169.254.169.254";
    kms_http_opts o = {.ca_file = a->core.ca_file,
                       .connect_timeout_ms = 1000,
                       .timeout_ms = 3000,
                       .allow_http = 1};
    kms_http_reply tok = {0}, role = {0}, cred = {0};
    char url[1024], hdr[256];
    tde_status st = TDE_OK;
    json_t *j = NULL;

    if (disabled != NULL && strcasecmp(disabled, "true") == 0)
        return TDE_OK;
    snprintf(url, sizeof(url), "%s/latest/api/token", base);
    {
        const char *hs[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
        TDE_ERR(kms_http("aws-kms (IMDSv2)", "PUT", url, hs, NULL, 0, &o, &tok));
    }
    TDE_ENSURE(tok.status == 200 && tok.len > 0 && tok.len < 200, TDE_ERR_AUTH,
               "aws-kms: IMDSv2 token request to %s failed (HTTP %ld)", url, tok.status);
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", tok.body);
    const char *hs[] = {hdr, NULL};
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
    TDE_ERR(kms_http("aws-kms (IMDSv2)", "GET", url, hs, NULL, 0, &o, &role));
    role.body[strcspn(role.body, "\r\n")] = '\0';
    TDE_ENSURE(role.status == 200 && role.body[0] && strlen(role.body) < 128, TDE_ERR_AUTH,
               "aws-kms: no instance role at %s (HTTP %ld)", url, role.status);
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role.body);
    TDE_ERR(kms_http("aws-kms (IMDSv2)", "GET", url, hs, NULL, 0, &o, &cred));
    j = json_loadb(cred.body, cred.len, 0, NULL);
    const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *tk = json_string_value(json_object_get(j, "Token"));
    const char *ex = json_string_value(json_object_get(j, "Expiration"));
    TDE_ENSURE(cred.status == 200 && ak && sk && tk && ex, TDE_ERR_AUTH,
               "aws-kms: instance role credentials at %s are unusable (HTTP %ld)", url,
               cred.status);
    TDE_ERR(kms_creds_set(&a->creds, ak, sk, tk, kms_parse_iso8601(ex), "instance role"));
    *found = 1;
err:
    if (cred.body != NULL)
        OPENSSL_cleanse(cred.body, cred.len);
    json_decref(j);
    kms_http_reply_free(&tok);
    kms_http_reply_free(&role);
    kms_http_reply_free(&cred);
    return st;
}

/* Current credentials, resolved on first use and refreshed before they expire. */
static tde_status
credentials(aws_kms *a)
{
    int found = 0;
    if (a->creds.id != NULL &&
        (a->creds.expires == 0 || kms_clock() < a->creds.expires - REFRESH_MARGIN))
        return TDE_OK;
    if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
        return kms_creds_set(&a->creds, env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                             env("AWS_SESSION_TOKEN"), 0, "environment");
    }
    TDE_RET(from_file(a, &found));
    if (!found)
        TDE_RET(from_web_identity(a, &found));
    if (!found)
        TDE_RET(from_imds(a, &found));
    if (!found)
        return tde_error_set(TDE_ERR_AUTH,
                             "aws-kms (key %s): no credentials: set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, a credentials file, web identity or an "
                             "instance role",
                             a->core.key_id);
    tde_log(TDE_LOG_INFO, "aws-kms: credentials %s from %s", a->creds.id, a->creds.source);
    return TDE_OK;
}

static tde_status
aws_send(kms_provider *p, const char *action, const char *body, kms_http_reply *hr)
{
    aws_kms *a = (aws_kms *)p;
    char date[SIGV4_DATE_LEN], target[96], auth[AUTH_MAX], url[600];
    char h_host[300], h_target[128], h_date[64], h_auth[AUTH_MAX + 32], *h_token = NULL;
    time_t now = kms_clock();
    tde_status st = TDE_OK;

    TDE_RET(credentials(a));
    sigv4_date(now, date);
    snprintf(target, sizeof(target), "TrentService.%s", action);
    sigv4_header hs[] = {
        {"content-type", "application/x-amz-json-1.1"},
        {"host", p->host},
        {"x-amz-date", date},
        {"x-amz-target", target},
        {"x-amz-security-token", a->creds.token},
    };
    sigv4_request r = {
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = hs,
        .n_headers = a->creds.token != NULL ? 5 : 4,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .region = p->region,
        .service = "kms",
        .access_key = a->creds.id,
        .secret_key = kms_creds_secret(&a->creds),
        .now = now,
    };
    TDE_RET(sigv4_authorization(&r, auth, sizeof(auth)));
    snprintf(url, sizeof(url), "%s/", p->endpoint);
    snprintf(h_host, sizeof(h_host), "Host: %s", p->host);
    snprintf(h_target, sizeof(h_target), "X-Amz-Target: %s", target);
    snprintf(h_date, sizeof(h_date), "X-Amz-Date: %s", date);
    snprintf(h_auth, sizeof(h_auth), "Authorization: %s", auth);
    if (a->creds.token != NULL &&
        asprintf(&h_token, "X-Amz-Security-Token: %s", a->creds.token) < 0)
        return tde_error_set(TDE_ERR_NOMEM, "aws-kms: out of memory");
    const char *headers[] = {
        h_host, "Content-Type: application/x-amz-json-1.1", h_target, h_date, h_auth, h_token,
        NULL};
    st = kms_http("aws-kms", "POST", url, headers, body, strlen(body), &p->http, hr);
    free(h_token);
    return st;
}

static const kms_dialect aws_dialect = {
    .send = aws_send,
    .parse = kms_aws_parse_reply,
    .context_as_string = 0,
    .decrypt_names_key = 1,
};

static void
aws_destroy(tde_masterkey_provider *base)
{
    aws_kms *a = (aws_kms *)base;
    if (a == NULL)
        return;
    kms_provider_fini(&a->core);
    kms_creds_clear(&a->creds);
    free(a->profile);
    free(a->credentials_file);
    free(a->imds_endpoint);
    free(a->sts_endpoint);
    free(a);
}

static tde_status
aws_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    tde_status st = TDE_OK;
    aws_kms *a = calloc(1, sizeof(*a));
    char endpoint[128];

    if (a == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "aws-kms: out of memory");
    /* China regions live under amazonaws.com.cn. */
    snprintf(endpoint, sizeof(endpoint), "https://kms.%%s.amazonaws.com%s",
             strncmp(tde_uri_host(uri), "cn-", 3) == 0 ? ".cn" : "");
    TDE_ERR(kms_provider_init(&a->core, &masterkey_aws_kms_vtable, &aws_dialect, uri, endpoint,
                              aws_params));
    const char *names[] = {"profile", "credentials_file", "imds_endpoint", "sts_endpoint"};
    char **fields[] = {&a->profile, &a->credentials_file, &a->imds_endpoint, &a->sts_endpoint};
    for (int i = 0; i < 4; i++) {
        const char *v = tde_uri_param(uri, names[i]);
        if (v != NULL) {
            *fields[i] = strdup(v);
            TDE_ENSURE(*fields[i] != NULL, TDE_ERR_NOMEM, "aws-kms: out of memory");
        }
    }
    *out = &a->core.base;
    return TDE_OK;
err:
    aws_destroy(&a->core.base);
    return st;
}

const tde_masterkey_provider_vtable masterkey_aws_kms_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "aws-kms",
    .open = aws_open,
    .key_id = kms_provider_key_id,
    .wrap = kms_provider_wrap,
    .unwrap = kms_provider_unwrap,
    .generate_data_key = kms_provider_generate_data_key,
    .destroy = aws_destroy,
};
