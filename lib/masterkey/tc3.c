/* Tencent Cloud TC3-HMAC-SHA256 request signing on OpenSSL HMAC/SHA-256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_crypto.h"
#include "masterkey/tc3.h"

tde_status
tc3_authorization(const tc3_request *r, char *out, size_t cap)
{
    tde_status st = TDE_OK;
    char *canon = NULL, *sts = NULL, *k0 = NULL;
    size_t canon_len = 0, sts_len = 0, sk_len = strlen(r->secret_key);
    FILE *f = NULL;
    int rc;
    char day[11], ts[24], body_hash[KMS_SHA256_HEX_LEN + 1];
    char canon_hash[KMS_SHA256_HEX_LEN + 1], sig_hex[KMS_SHA256_HEX_LEN + 1];
    uint8_t k[KMS_SHA256_LEN];
    struct tm tm;

    gmtime_r(&r->now, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    snprintf(ts, sizeof(ts), "%lld", (long long)r->now);
    TDE_ERR(kms_sha256_hex(r->body, r->body_len, body_hash));

    f = open_memstream(&canon, &canon_len);
    TDE_ENSURE(f != NULL, TDE_ERR_NOMEM, "tc3: out of memory");
    fprintf(f, "%s\n%s\n%s\ncontent-type:%s\nhost:%s\n\ncontent-type;host\n%s", r->method, r->path,
            r->query, r->content_type, r->host, body_hash);
    rc = fclose(f);
    f = NULL;
    TDE_ENSURE(rc == 0, TDE_ERR_NOMEM, "tc3: out of memory");
    TDE_ERR(kms_sha256_hex(canon, canon_len, canon_hash));

    f = open_memstream(&sts, &sts_len);
    TDE_ENSURE(f != NULL, TDE_ERR_NOMEM, "tc3: out of memory");
    fprintf(f, "TC3-HMAC-SHA256\n%s\n%s/%s/tc3_request\n%s", ts, day, r->service, canon_hash);
    rc = fclose(f);
    f = NULL;
    TDE_ENSURE(rc == 0, TDE_ERR_NOMEM, "tc3: out of memory");

    /* kSigning = HMAC(HMAC(HMAC("TC3" + secret, day), service), "tc3_request") */
    k0 = malloc(sk_len + 4);
    TDE_ENSURE(k0 != NULL, TDE_ERR_NOMEM, "tc3: out of memory");
    memcpy(k0, "TC3", 3);
    memcpy(k0 + 3, r->secret_key, sk_len + 1);
    TDE_ERR(kms_hmac_sha256(k0, sk_len + 3, day, strlen(day), k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), r->service, strlen(r->service), k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), "tc3_request", 11, k));
    TDE_ERR(kms_hmac_sha256(k, sizeof(k), sts, sts_len, k));
    kms_hex(k, sizeof(k), sig_hex);
    {
        int n = snprintf(out, cap,
                         "TC3-HMAC-SHA256 Credential=%s/%s/%s/tc3_request, "
                         "SignedHeaders=content-type;host, Signature=%s",
                         r->secret_id, day, r->service, sig_hex);
        TDE_ENSURE(n > 0 && (size_t)n < cap, TDE_ERR_INVALID_ARG,
                   "tc3: Authorization header longer than %zu bytes", cap);
    }
err:
    OPENSSL_cleanse(k, sizeof(k));
    if (k0 != NULL) {
        OPENSSL_cleanse(k0, sk_len + 3);
        free(k0);
    }
    if (f != NULL)
        fclose(f);
    free(canon);
    free(sts);
    return st;
}
