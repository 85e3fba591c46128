/* Fuzzes the strict KMIP TTLV decoder: decode, walk with typed getters, re-encode. */
#include <string.h>

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
    return 0;
}
