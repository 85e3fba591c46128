/*
 * Fuzzes the strict KMIP TTLV decoder (decode, walk with typed getters, re-encode)
 * and the response layer above it (decode as a reply to each operation, extract).
 */
#include <stdlib.h>
#include <string.h>

#include "masterkey/kmip_msg.h"
#include "masterkey/kmip_ttlv.h"

/* Reads every primitive through its getter; re-encoding must reproduce the input. */
static void
walk(const kmip_item *it)
{
    for (; it != NULL; it = it->next) {
        int32_t i;
        uint32_t u;
        int64_t l;
        int b;
        const char *s;
        const uint8_t *p;
        size_t n;
        (void)!kmip_item_int(it, &i);
        (void)!kmip_item_enum(it, &u);
        (void)!kmip_item_long(it, &l);
        (void)!kmip_item_bool(it, &b);
        (void)!kmip_item_text(it, &s, &n);
        (void)!kmip_item_bytes(it, &p, &n);
        (void)kmip_item_count(it, 0x420094);
        walk(it->kids);
    }
}

/* Decodes the input as a reply to @p op and runs every extractor on it. */
static void
as_response(const uint8_t *data, size_t size, uint32_t op)
{
    kmip_response r;
    uint8_t *copy = malloc(size ? size : 1);
    char uid[64];
    tde_secret *key = NULL;
    const uint8_t *d, *t;
    size_t n, tn;
    kmip_version v[KMIP_MAX_VERSIONS];

    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    if (kmip_response_decode(&r, copy, size, op) != TDE_OK)
        return;
    (void)!kmip_response_uid(&r, uid, sizeof(uid));
    (void)kmip_response_uid_count(&r);
    if (kmip_response_key(&r, &key) == TDE_OK && tde_secret_len(key) != KMIP_AES256_KEY_LEN)
        __builtin_trap();
    tde_secret_free(key);
    (void)!kmip_response_data(&r, &d, &n, &t, &tn);
    (void)kmip_response_has_op(&r, KMIP_OP_ENCRYPT);
    (void)!kmip_response_versions(&r, v, KMIP_MAX_VERSIONS, &n);
    kmip_response_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmip_tree *t = NULL;
    kmip_enc e;
    uint8_t *out = NULL;
    size_t out_len = 0;

    if (size >= KMIP_TTLV_HEADER_LEN) {
        size_t total;
        (void)!kmip_ttlv_message_len(data, KMIP_TTLV_MAX_MESSAGE, &total);
    }
    if (kmip_ttlv_decode(&t, data, size) != TDE_OK)
        return 0;
    walk(kmip_tree_root(t));
    kmip_enc_init(&e);
    kmip_enc_item(&e, kmip_tree_root(t));
    if (kmip_enc_finish(&e, &out, &out_len) != TDE_OK || out_len != size ||
        memcmp(out, data, size) != 0)
        __builtin_trap();
    kmip_buf_free(out, out_len);
    kmip_tree_free(t);
    {
        static const uint32_t ops[] = {KMIP_OP_CREATE,  KMIP_OP_REGISTER,          KMIP_OP_LOCATE,
                                       KMIP_OP_GET,     KMIP_OP_DISCOVER_VERSIONS, KMIP_OP_QUERY,
                                       KMIP_OP_ENCRYPT, KMIP_OP_DECRYPT,           KMIP_OP_DESTROY};
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            as_response(data, size, ops[i]);
    }
    return 0;
}
