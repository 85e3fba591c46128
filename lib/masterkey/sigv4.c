/* AWS Signature Version 4 (single chunk, signed payload hash) on OpenSSL HMAC/SHA-256. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_crypto.h"
#include "masterkey/sigv4.h"

void
sigv4_date(time_t now, char out[SIGV4_DATE_LEN])
{
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, SIGV4_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

typedef struct lc_header {
    char name[64];
    const char *value;
} lc_header;

static int
cmp_header(const void *a, const void *b)
{
    return strcmp(((const lc_header *)a)->name, ((const lc_header *)b)->name);
}

/* Writes @p v without leading/trailing blanks, inner runs of blanks collapsed to one. */
static void
put_trimmed(FILE *f, const char *v)
{
    int pending_space = 0, started = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            pending_space = started;
            continue;
        }
        if (pending_space)
            fputc(' ', f);
        pending_space = 0;
        started = 1;
        fputc(*v, f);
    }
}

tde_status
sigv4_authorization(const sigv4_request *r, char *out, size_t cap)
{
    tde_status st = TDE_OK;
    lc_header hs[SIGV4_MAX_HEADERS];
    char *canon = NULL, *signed_names = NULL, *sts = NULL;
    size_t canon_len = 0, signed_len = 0, sts_len = 0;
    FILE *fc = NULL, *fs = NULL;
    char date[SIGV4_DATE_LEN], day[9], body_hash[KMS_SHA256_HEX_LEN + 1];
    char canon_hash[KMS_SHA256_HEX_LEN + 1], sig_hex[KMS_SHA256_HEX_LEN + 1];
    uint8_t k[KMS_SHA256_LEN];

    TDE_ENSURE(r->n_headers <= SIGV4_MAX_HEADERS, TDE_ERR_INVALID_ARG,
               "sigv4: %zu headers to sign, at most %d", r->n_headers, SIGV4_MAX_HEADERS);
    for (size_t i = 0; i < r->n_headers; i++) {
        size_t n = strlen(r->headers[i].name);
        TDE_ENSURE(n > 0 && n < sizeof(hs[i].name), TDE_ERR_INVALID_ARG,
                   "sigv4: bad header name length %zu", n);
        for (size_t j = 0; j <= n; j++)
            hs[i].name[j] = (char)tolower((unsigned char)r->headers[i].name[j]);
        hs[i].value = r->headers[i].value;
    }
    qsort(hs, r->n_headers, sizeof(hs[0]), cmp_header);

    sigv4_date(r->now, date);
    memcpy(day, date, 8);
    day[8] = '\0';
    TDE_ERR(kms_sha256_hex(r->body, r->body_len, body_hash));

    fc = open_memstream(&canon, &canon_len);
    fs = open_memstream(&signed_names, &signed_len);
    TDE_ENSURE(fc != NULL && fs != NULL, TDE_ERR_NOMEM, "sigv4: out of memory");
    fprintf(fc, "%s\n%s\n%s\n", r->method, r->path, r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        fprintf(fc, "%s:", hs[i].name);
        put_trimmed(fc, hs[i].value);
        fputc('\n', fc);
        fprintf(fs, "%s%s", i ? ";" : "", hs[i].name);
    }
    TDE_ENSURE(fflush(fs) == 0, TDE_ERR_NOMEM, "sigv4: out of memory");
    fprintf(fc, "\n%s\n%s", signed_names, body_hash);
    TDE_ENSURE(fflush(fc) == 0, TDE_ERR_NOMEM, "sigv4: out of memory");
    TDE_ERR(kms_sha256_hex(canon, canon_len, canon_hash));

    fclose(fc);
    fc = open_memstream(&sts, &sts_len);
    TDE_ENSURE(fc != NULL, TDE_ERR_NOMEM, "sigv4: out of memory");
    fprintf(fc, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", date, day, r->region, r->service,
            canon_hash);
    TDE_ENSURE(fflush(fc) == 0, TDE_ERR_NOMEM, "sigv4: out of memory");

    /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request") */
    {
        size_t sk_len = strlen(r->secret_key);
        char *k0 = malloc(sk_len + 5);
        TDE_ENSURE(k0 != NULL, TDE_ERR_NOMEM, "sigv4: out of memory");
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, r->secret_key, sk_len + 1);
        st = kms_hmac_sha256(k0, sk_len + 4, day, 8, k);
        OPENSSL_cleanse(k0, sk_len + 4);
        free(k0);
        if (st != TDE_OK)
            goto err;
    }
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), r->region, strlen(r->region), k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), r->service, strlen(r->service), k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), "aws4_request", 12, k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), sts, sts_len, k));
    kms_hex(k, sizeof(k), sig_hex);

    {
        int n = snprintf(out, cap,
                         "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                         "SignedHeaders=%s, Signature=%s",
                         r->access_key, day, r->region, r->service, signed_names, sig_hex);
        TDE_ENSURE(n > 0 && (size_t)n < cap, TDE_ERR_INVALID_ARG,
                   "sigv4: Authorization header longer than %zu bytes", cap);
    }
err:
    OPENSSL_cleanse(k, sizeof(k));
    if (fc != NULL)
        fclose(fc);
    if (fs != NULL)
        fclose(fs);
    free(canon);
    free(signed_names);
    free(sts);
    return st;
}
