/*
 * AWS Signature Version 4 for single-chunk requests (the KMS JSON 1.1 protocol).
 * Pure function of its inputs: the clock is a parameter so tests pin it.
 */
#ifndef TDE_MASTERKEY_SIGV4_H
#define TDE_MASTERKEY_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tde/common.h"

#define SIGV4_MAX_HEADERS 16
/* "YYYYMMDDTHHMMSSZ" and its NUL. */
#define SIGV4_DATE_LEN 17

typedef struct sigv4_header {
    const char *name;  /* any case; signed lower-cased */
    const char *value; /* signed with leading/trailing blanks trimmed */
} sigv4_header;

typedef struct sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* already URI-encoded, "/" for KMS */
    const char *query;  /* canonical query string, "" when none */
    /* Every header to sign; must include host and x-amz-date (see sigv4_date). */
    const sigv4_header *headers;
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    const char *region;
    const char *service;
    const char *access_key;
    const char *secret_key;
    time_t now; /* the instant in x-amz-date */
} sigv4_request;

/* Formats @p now as the x-amz-date value. */
void sigv4_date(time_t now, char out[SIGV4_DATE_LEN]);

/* Writes the Authorization header value (without "Authorization: ") into @p out. */
tde_status sigv4_authorization(const sigv4_request *r, char *out, size_t cap);

#endif
