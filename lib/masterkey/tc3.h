/*
 * Tencent Cloud API 3.0 TC3-HMAC-SHA256 signing, as the official SDKs do it:
 * signed headers are content-type and host (host without port), the credential
 * scope uses the dashed UTC date. The clock is a parameter so tests pin it.
 */
#ifndef TDE_MASTERKEY_TC3_H
#define TDE_MASTERKEY_TC3_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tde/common.h"

typedef struct tc3_request {
    const char *method;       /* "POST" */
    const char *path;         /* "/" */
    const char *query;        /* "" for POST */
    const char *content_type; /* the Content-Type header sent */
    const char *host;         /* host name without port */
    const char *service;      /* "kms" */
    const uint8_t *body;
    size_t body_len;
    const char *secret_id;
    const char *secret_key;
    time_t now; /* the X-TC-Timestamp sent */
} tc3_request;

/* Writes the Authorization header value into @p out. */
tde_status tc3_authorization(const tc3_request *r, char *out, size_t cap);

#endif
