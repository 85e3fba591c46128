/*
 * Parsers of AWS KMS and Tencent Cloud KMS replies. Replies come from the
 * network: every field is type-checked, sizes are bounded, and nothing here
 * trusts the server beyond its JSON (fuzzed by fuzz/fuzz_kms_reply.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "masterkey/kms_common.h"

#define MAX_FIELD_LEN 65536

void
kms_reply_free(kms_reply *r)
{
    free(r->key_id);
    tde_secret_free(r->plaintext);
    free(r->ciphertext);
    memset(r, 0, sizeof(*r));
}

/* On error only code, message and retryable stay. */
static void
drop_fields(kms_reply *r)
{
    free(r->key_id);
    tde_secret_free(r->plaintext);
    free(r->ciphertext);
    r->key_id = NULL;
    r->plaintext = NULL;
    r->ciphertext = NULL;
}

/* Copies an optional string member; TDE_ERR_PROTOCOL when present but not a bounded string. */
static tde_status
take_string(json_t *obj, const char *name, const char *who, char **out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return TDE_OK;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_FIELD_LEN ||
        strlen(json_string_value(v)) != json_string_length(v))
        return tde_error_set(TDE_ERR_PROTOCOL, "%s: reply field %s is not a valid string", who,
                             name);
    *out = strdup(json_string_value(v));
    return *out != NULL ? TDE_OK : tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", who);
}

static tde_status
take_fields(json_t *obj, const char *who, kms_reply *r)
{
    json_t *pt = json_object_get(obj, "Plaintext");
    TDE_RET(take_string(obj, "KeyId", who, &r->key_id));
    TDE_RET(take_string(obj, "CiphertextBlob", who, &r->ciphertext));
    if (pt != NULL) {
        if (!json_is_string(pt) || json_string_length(pt) > MAX_FIELD_LEN)
            return tde_error_set(TDE_ERR_PROTOCOL, "%s: reply field Plaintext is not a string",
                                 who);
        char what[64];
        snprintf(what, sizeof(what), "%s: reply field Plaintext", who);
        TDE_RET(kms_b64_decode_secret(json_string_value(pt), json_string_length(pt), what,
                                      &r->plaintext));
    }
    if (r->key_id == NULL)
        return tde_error_set(TDE_ERR_PROTOCOL, "%s: reply lacks KeyId", who);
    return TDE_OK;
}

static void
copy_text(char *dst, size_t cap, json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
    /* Server text ends up in messages and logs: keep it printable. */
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

typedef struct error_class {
    const char *code; /* exact, or prefix when it ends with '*' */
    tde_status status;
    int retryable;
} error_class;

static const error_class aws_errors[] = {
    {"ThrottlingException", TDE_ERR_UNAVAILABLE, 1},
    {"KMSInternalException", TDE_ERR_UNAVAILABLE, 1},
    {"ServiceUnavailableException", TDE_ERR_UNAVAILABLE, 1},
    {"DependencyTimeoutException", TDE_ERR_UNAVAILABLE, 1},
    {"LimitExceededException", TDE_ERR_UNAVAILABLE, 1},
    {"InvalidCiphertextException", TDE_ERR_AUTH, 0},
    {"IncorrectKeyException", TDE_ERR_AUTH, 0},
    {"InvalidSignatureException", TDE_ERR_AUTH, 0},
    {"UnrecognizedClientException", TDE_ERR_AUTH, 0},
    {"AccessDeniedException", TDE_ERR_AUTH, 0},
    {"ExpiredTokenException", TDE_ERR_AUTH, 0},
    {"IncompleteSignatureException", TDE_ERR_AUTH, 0},
    {"MissingAuthenticationTokenException", TDE_ERR_AUTH, 0},
    {"NotFoundException", TDE_ERR_NOT_FOUND, 0},
    {"DisabledException", TDE_ERR_STATE, 0},
    {"KMSInvalidStateException", TDE_ERR_STATE, 0},
    {"KeyUnavailableException", TDE_ERR_UNAVAILABLE, 0},
    {"ValidationException", TDE_ERR_INVALID_ARG, 0},
    {"SerializationException", TDE_ERR_INVALID_ARG, 0},
    {NULL, TDE_OK, 0},
};

static const error_class tencent_errors[] = {
    {"RequestLimitExceeded*", TDE_ERR_UNAVAILABLE, 1},
    {"InternalError*", TDE_ERR_UNAVAILABLE, 1},
    {"ServiceUnavailable*", TDE_ERR_UNAVAILABLE, 1},
    {"InvalidParameterValue.InvalidCiphertext", TDE_ERR_AUTH, 0},
    {"AuthFailure*", TDE_ERR_AUTH, 0},
    {"UnauthorizedOperation*", TDE_ERR_AUTH, 0},
    {"ResourceUnavailable.CmkNotFound", TDE_ERR_NOT_FOUND, 0},
    {"ResourceNotFound*", TDE_ERR_NOT_FOUND, 0},
    {"ResourceUnavailable*", TDE_ERR_STATE, 0},
    {"InvalidParameter*", TDE_ERR_INVALID_ARG, 0},
    {"MissingParameter*", TDE_ERR_INVALID_ARG, 0},
    {NULL, TDE_OK, 0},
};

static const error_class *
classify(const error_class *table, const char *code)
{
    for (; table->code != NULL; table++) {
        size_t n = strlen(table->code);
        if (table->code[n - 1] == '*' ? strncmp(code, table->code, n - 1) == 0
                                      : strcmp(code, table->code) == 0)
            return table;
    }
    return NULL;
}

/* Sets the message for a classified error; a skewed clock is named as such. */
static tde_status
report(const char *who, long http_status, kms_reply *r, const error_class *c)
{
    /* Unclassified: 5xx and 429 (too many requests) are transient. */
    int transient = http_status >= 500 || http_status == 429;
    tde_status st = c != NULL ? c->status : transient ? TDE_ERR_UNAVAILABLE : TDE_ERR_PROTOCOL;
    r->retryable = c != NULL ? c->retryable : transient;
    int skew = strstr(r->code, "SignatureExpire") != NULL ||
               strstr(r->message, "Signature expired") != NULL;
    return tde_error_set(st, "%s: %s (HTTP %ld): %s%s", who, r->code[0] ? r->code : "error",
                         http_status, r->message,
                         skew ? " (is the clock of this host off by more than 5 minutes?)" : "");
}

tde_status
kms_aws_parse_reply(long http_status, const char *body, size_t len, kms_reply *r)
{
    static const char who[] = "aws-kms";
    tde_status st = TDE_OK;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    memset(r, 0, sizeof(*r));
    if (http_status != 200) {
        if (json_is_object(root)) {
            json_t *type = json_object_get(root, "__type");
            json_t *msg = json_object_get(root, "message");
            copy_text(r->code, sizeof(r->code), type);
            copy_text(r->message, sizeof(r->message),
                      msg != NULL ? msg : json_object_get(root, "Message"));
            /* "__type" may be namespaced: "com.amazonaws.kms#NotFoundException". */
            char *hash = strrchr(r->code, '#');
            if (hash != NULL)
                memmove(r->code, hash + 1, strlen(hash));
        }
        st = report(who, http_status, r, r->code[0] ? classify(aws_errors, r->code) : NULL);
        goto err;
    }
    TDE_ENSURE(json_is_object(root), TDE_ERR_PROTOCOL, "%s: reply is not a JSON object: %s", who,
               root == NULL ? jerr.text : "wrong type");
    TDE_ERR(take_fields(root, who, r));
err:
    json_decref(root);
    if (st != TDE_OK)
        drop_fields(r);
    return st;
}

tde_status
kms_tencent_parse_reply(long http_status, const char *body, size_t len, kms_reply *r)
{
    static const char who[] = "tencent-kms";
    tde_status st = TDE_OK;
    json_error_t jerr;
    json_t *root = NULL, *resp, *error;

    memset(r, 0, sizeof(*r));
    if (http_status != 200) {
        /* Gateways answer 5xx with HTML; the API itself always uses 200. */
        snprintf(r->code, sizeof(r->code), "HTTP%ld", http_status);
        st = report(who, http_status, r, NULL);
        goto err;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    TDE_ENSURE(json_is_object(root), TDE_ERR_PROTOCOL, "%s: reply is not a JSON object: %s", who,
               root == NULL ? jerr.text : "wrong type");
    resp = json_object_get(root, "Response");
    TDE_ENSURE(json_is_object(resp), TDE_ERR_PROTOCOL, "%s: reply lacks the Response object", who);
    error = json_object_get(resp, "Error");
    if (error != NULL) {
        TDE_ENSURE(json_is_object(error), TDE_ERR_PROTOCOL, "%s: Response.Error is not an object",
                   who);
        copy_text(r->code, sizeof(r->code), json_object_get(error, "Code"));
        copy_text(r->message, sizeof(r->message), json_object_get(error, "Message"));
        st = report(who, http_status, r, classify(tencent_errors, r->code));
        goto err;
    }
    TDE_ERR(take_fields(resp, who, r));
err:
    json_decref(root);
    if (st != TDE_OK)
        drop_fields(r);
    return st;
}
