/*
 * Fuzzes the AWS KMS and Tencent Cloud KMS reply parsers. Input: one byte picking
 * the parser (bit 0) and the HTTP status (bits 1-3), then the body. Any body either
 * parses into consistent fields or fails with a classified error and a message.
 */
#include <stdlib.h>
#include <string.h>

#include "masterkey/kms_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 200, 200, 400, 429, 500, 502, 503};
    kms_reply r;
    tde_status st;

    if (size < 1)
        return 0;
    tde_secret_allow_unlocked(1);
    long status = statuses[(data[0] >> 1) & 7];
    /* Exactly sized, unterminated: the parsers must respect the length. */
    char *body = malloc(size - 1 ? size - 1 : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, size - 1);
    st = (data[0] & 1) ? kms_tencent_parse_reply(status, body, size - 1, &r)
                       : kms_aws_parse_reply(status, body, size - 1, &r);
    if (st == TDE_OK) {
        if (status != 200 || r.key_id == NULL || strlen(r.key_id) == 0 || r.code[0] != '\0')
            abort();
        if (r.plaintext != NULL && tde_secret_len(r.plaintext) == 0)
            abort();
    } else {
        if (r.key_id != NULL || r.plaintext != NULL || r.ciphertext != NULL ||
            tde_last_error()[0] == '\0')
            abort();
        if (r.retryable && st != TDE_ERR_UNAVAILABLE)
            abort();
    }
    kms_reply_free(&r);
    free(body);
    return 0;
}
