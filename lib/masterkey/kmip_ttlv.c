/* KMIP TTLV encoder and strict decoder (see kmip_ttlv.h for the threat model). */
#include "masterkey/kmip_ttlv.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"

struct kmip_tree {
    kmip_item *items;
    size_t n, cap;
    const uint8_t *buf;
};

static uint32_t
get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static size_t
padded(size_t len)
{
    return (len + 7) & ~(size_t)7;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int
utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Checks a primitive value's size and content for its type. */
static tde_status
check_value(uint8_t type, const uint8_t *v, uint32_t len, size_t off)
{
    switch (type) {
    case KMIP_T_INT:
    case KMIP_T_ENUM:
    case KMIP_T_INTERVAL:
        if (len != 4)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: 4-byte type 0x%02x with length %u at offset %zu", type,
                                 len, off);
        return TDE_OK;
    case KMIP_T_LONG:
    case KMIP_T_DATETIME:
    case KMIP_T_DATETIME_EXT:
        if (len != 8)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: 8-byte type 0x%02x with length %u at offset %zu", type,
                                 len, off);
        return TDE_OK;
    case KMIP_T_BOOL:
        if (len != 8 || get_u64(v) > 1)
            return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: bad boolean at offset %zu", off);
        return TDE_OK;
    case KMIP_T_BIGINT:
        if (len == 0 || len % 8 != 0)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: big integer length %u not a multiple of 8 at offset "
                                 "%zu",
                                 len, off);
        return TDE_OK;
    case KMIP_T_TEXT:
        if (!utf8_valid(v, len))
            return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: invalid UTF-8 text at offset %zu",
                                 off);
        return TDE_OK;
    case KMIP_T_BYTES: return TDE_OK;
    default:
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: unknown type 0x%02x at offset %zu", type,
                             off);
    }
}

/* Decodes the items in buf[off, end) as the children of a structure at @p depth. */
static tde_status
decode_items(kmip_tree *t, size_t off, size_t end, int depth, const kmip_item **first)
{
    const uint8_t *b = t->buf;
    kmip_item *prev = NULL;

    *first = NULL;
    if (depth > KMIP_TTLV_MAX_DEPTH)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: nesting deeper than %d at offset %zu",
                             KMIP_TTLV_MAX_DEPTH, off);
    while (off < end) {
        kmip_item *it;
        uint32_t len;
        size_t vlen;

        if (end - off < KMIP_TTLV_HEADER_LEN)
            return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: truncated item header at offset %zu",
                                 off);
        if (b[off] != 0x42 && b[off] != 0x54)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: bad tag 0x%02x%02x%02x at offset %zu", b[off],
                                 b[off + 1], b[off + 2], off);
        len = get_u32(b + off + 4);
        vlen = b[off + 3] == KMIP_T_STRUCT ? len : padded(len);
        if (b[off + 3] == KMIP_T_STRUCT && len % 8 != 0)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: structure length %u not a multiple of 8 at offset %zu",
                                 len, off);
        if (vlen > end - off - KMIP_TTLV_HEADER_LEN)
            return tde_error_set(TDE_ERR_PROTOCOL,
                                 "kmip ttlv: length %u at offset %zu runs past its container", len,
                                 off);
        if (t->n == t->cap)
            return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: more than %zu items", t->cap);
        it = &t->items[t->n++];
        it->tag = get_u32(b + off) >> 8;
        it->type = b[off + 3];
        it->len = len;
        it->val = b + off + KMIP_TTLV_HEADER_LEN;
        it->kids = NULL;
        it->next = NULL;
        if (it->type == KMIP_T_STRUCT) {
            const kmip_item *kids;
            size_t start = off + KMIP_TTLV_HEADER_LEN;
            TDE_RET(decode_items(t, start, start + len, depth + 1, &kids));
            it->kids = kids;
        } else {
            TDE_RET(check_value(it->type, it->val, len, off));
            for (size_t p = len; p < vlen; p++)
                if (it->val[p] != 0)
                    return tde_error_set(TDE_ERR_PROTOCOL,
                                         "kmip ttlv: non-zero padding at offset %zu",
                                         off + KMIP_TTLV_HEADER_LEN + p);
        }
        if (prev == NULL)
            *first = it;
        else
            prev->next = it;
        prev = it;
        off += KMIP_TTLV_HEADER_LEN + vlen;
    }
    return TDE_OK;
}

tde_status
kmip_ttlv_decode(kmip_tree **out, const uint8_t *buf, size_t len)
{
    tde_status st;
    kmip_tree *t = NULL;
    const kmip_item *root;

    *out = NULL;
    TDE_ENSURE(len >= KMIP_TTLV_HEADER_LEN, TDE_ERR_PROTOCOL,
               "kmip ttlv: message of %zu bytes is shorter than one item", len);
    TDE_ENSURE(len <= KMIP_TTLV_MAX_MESSAGE, TDE_ERR_PROTOCOL,
               "kmip ttlv: message of %zu bytes exceeds the %zu-byte limit", len,
               KMIP_TTLV_MAX_MESSAGE);
    t = calloc(1, sizeof(*t));
    TDE_ENSURE(t != NULL, TDE_ERR_NOMEM, "kmip ttlv: out of memory");
    /* Every item takes at least 8 bytes, which bounds the array. */
    t->cap = len / KMIP_TTLV_HEADER_LEN;
    if (t->cap > KMIP_TTLV_MAX_ITEMS)
        t->cap = KMIP_TTLV_MAX_ITEMS;
    t->items = calloc(t->cap, sizeof(*t->items));
    TDE_ENSURE(t->items != NULL, TDE_ERR_NOMEM, "kmip ttlv: out of memory");
    t->buf = buf;
    TDE_ERR(decode_items(t, 0, len, 0, &root));
    TDE_ENSURE(root != NULL && root->next == NULL, TDE_ERR_PROTOCOL,
               "kmip ttlv: trailing bytes after the message");
    *out = t;
    return TDE_OK;
err:
    kmip_tree_free(t);
    return st;
}

void
kmip_tree_free(kmip_tree *t)
{
    if (t == NULL)
        return;
    free(t->items);
    free(t);
}

const kmip_item *
kmip_tree_root(const kmip_tree *t)
{
    return t != NULL && t->n > 0 ? &t->items[0] : NULL;
}

tde_status
kmip_ttlv_message_len(const uint8_t hdr[KMIP_TTLV_HEADER_LEN], size_t max, size_t *total)
{
    uint32_t len = get_u32(hdr + 4);
    if (hdr[0] != 0x42 || hdr[3] != KMIP_T_STRUCT || len % 8 != 0)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: reply does not start with a structure");
    if ((size_t)len > max - KMIP_TTLV_HEADER_LEN)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip ttlv: reply of %u bytes exceeds the limit",
                             len);
    *total = (size_t)len + KMIP_TTLV_HEADER_LEN;
    return TDE_OK;
}

const kmip_item *
kmip_item_find(const kmip_item *s, uint32_t tag)
{
    if (s == NULL || s->type != KMIP_T_STRUCT)
        return NULL;
    for (const kmip_item *k = s->kids; k != NULL; k = k->next)
        if (k->tag == tag)
            return k;
    return NULL;
}

const kmip_item *
kmip_item_next_same(const kmip_item *it)
{
    for (const kmip_item *k = it != NULL ? it->next : NULL; k != NULL; k = k->next)
        if (k->tag == it->tag)
            return k;
    return NULL;
}

size_t
kmip_item_count(const kmip_item *s, uint32_t tag)
{
    size_t n = 0;
    for (const kmip_item *k = kmip_item_find(s, tag); k != NULL; k = kmip_item_next_same(k))
        n++;
    return n;
}

static tde_status
want(const kmip_item *it, uint8_t type)
{
    if (it == NULL)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip: a required field is missing");
    if (it->type != type)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip: field 0x%06x has type 0x%02x, not 0x%02x",
                             it->tag, it->type, type);
    return TDE_OK;
}

tde_status
kmip_item_int(const kmip_item *it, int32_t *v)
{
    TDE_RET(want(it, KMIP_T_INT));
    *v = (int32_t)get_u32(it->val);
    return TDE_OK;
}

tde_status
kmip_item_enum(const kmip_item *it, uint32_t *v)
{
    TDE_RET(want(it, KMIP_T_ENUM));
    *v = get_u32(it->val);
    return TDE_OK;
}

tde_status
kmip_item_long(const kmip_item *it, int64_t *v)
{
    if (it != NULL && it->type == KMIP_T_DATETIME) {
        *v = (int64_t)get_u64(it->val);
        return TDE_OK;
    }
    TDE_RET(want(it, KMIP_T_LONG));
    *v = (int64_t)get_u64(it->val);
    return TDE_OK;
}

tde_status
kmip_item_bool(const kmip_item *it, int *v)
{
    TDE_RET(want(it, KMIP_T_BOOL));
    *v = it->val[7];
    return TDE_OK;
}

tde_status
kmip_item_text(const kmip_item *it, const char **s, size_t *len)
{
    TDE_RET(want(it, KMIP_T_TEXT));
    *s = (const char *)it->val;
    *len = it->len;
    return TDE_OK;
}

tde_status
kmip_item_bytes(const kmip_item *it, const uint8_t **b, size_t *len)
{
    TDE_RET(want(it, KMIP_T_BYTES));
    *b = it->val;
    *len = it->len;
    return TDE_OK;
}

/* ---- encoder ---- */

void
kmip_enc_init(kmip_enc *e)
{
    memset(e, 0, sizeof(*e));
}

/* Makes room for @p n more bytes; the old buffer is wiped since it may hold key bytes. */
static uint8_t *
enc_reserve(kmip_enc *e, size_t n)
{
    if (e->err != TDE_OK)
        return NULL;
    if (n > KMIP_TTLV_MAX_MESSAGE || e->len + n > KMIP_TTLV_MAX_MESSAGE) {
        e->err = tde_error_set(TDE_ERR_INVALID_ARG, "kmip: request exceeds %zu bytes",
                               KMIP_TTLV_MAX_MESSAGE);
        return NULL;
    }
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 256;
        uint8_t *nb;
        while (cap < e->len + n)
            cap *= 2;
        nb = malloc(cap);
        if (nb == NULL) {
            e->err = tde_error_set(TDE_ERR_NOMEM, "kmip: out of memory");
            return NULL;
        }
        if (e->len > 0)
            memcpy(nb, e->buf, e->len);
        kmip_buf_free(e->buf, e->cap);
        e->buf = nb;
        e->cap = cap;
    }
    e->len += n;
    return e->buf + e->len - n;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends a primitive item: header, value, zero padding. */
static void
enc_prim(kmip_enc *e, uint32_t tag, uint8_t type, const uint8_t *v, size_t len)
{
    uint8_t *p;
    if (len > UINT32_MAX / 2) {
        if (e->err == TDE_OK)
            e->err = tde_error_set(TDE_ERR_INVALID_ARG, "kmip: value too long");
        return;
    }
    p = enc_reserve(e, KMIP_TTLV_HEADER_LEN + padded(len));
    if (p == NULL)
        return;
    put_u32(p, tag << 8 | type);
    put_u32(p + 4, (uint32_t)len);
    if (len > 0)
        memcpy(p + KMIP_TTLV_HEADER_LEN, v, len);
    memset(p + KMIP_TTLV_HEADER_LEN + len, 0, padded(len) - len);
}

void
kmip_enc_begin(kmip_enc *e, uint32_t tag)
{
    uint8_t *p;
    if (e->err == TDE_OK && e->depth == KMIP_TTLV_MAX_DEPTH) {
        e->err = tde_error_set(TDE_ERR_INTERNAL, "kmip: request nests too deep");
        return;
    }
    p = enc_reserve(e, KMIP_TTLV_HEADER_LEN);
    if (p == NULL)
        return;
    put_u32(p, tag << 8 | KMIP_T_STRUCT);
    put_u32(p + 4, 0);
    e->open[e->depth++] = e->len - KMIP_TTLV_HEADER_LEN;
}

void
kmip_enc_end(kmip_enc *e)
{
    size_t at;
    if (e->err != TDE_OK)
        return;
    if (e->depth == 0) {
        e->err = tde_error_set(TDE_ERR_INTERNAL, "kmip: structure closed twice");
        return;
    }
    at = e->open[--e->depth];
    put_u32(e->buf + at + 4, (uint32_t)(e->len - at - KMIP_TTLV_HEADER_LEN));
}

void
kmip_enc_int(kmip_enc *e, uint32_t tag, int32_t v)
{
    uint8_t b[4];
    put_u32(b, (uint32_t)v);
    enc_prim(e, tag, KMIP_T_INT, b, 4);
}

void
kmip_enc_enum(kmip_enc *e, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    enc_prim(e, tag, KMIP_T_ENUM, b, 4);
}

static void
enc_u64(kmip_enc *e, uint32_t tag, uint8_t type, uint64_t v)
{
    uint8_t b[8];
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b + 4, (uint32_t)v);
    enc_prim(e, tag, type, b, 8);
}

void
kmip_enc_long(kmip_enc *e, uint32_t tag, int64_t v)
{
    enc_u64(e, tag, KMIP_T_LONG, (uint64_t)v);
}

void
kmip_enc_bool(kmip_enc *e, uint32_t tag, int v)
{
    enc_u64(e, tag, KMIP_T_BOOL, v ? 1 : 0);
}

void
kmip_enc_datetime(kmip_enc *e, uint32_t tag, int64_t v)
{
    enc_u64(e, tag, KMIP_T_DATETIME, (uint64_t)v);
}

void
kmip_enc_text(kmip_enc *e, uint32_t tag, const char *s, size_t len)
{
    enc_prim(e, tag, KMIP_T_TEXT, (const uint8_t *)s, len);
}

void
kmip_enc_bytes(kmip_enc *e, uint32_t tag, const uint8_t *b, size_t len)
{
    enc_prim(e, tag, KMIP_T_BYTES, b, len);
}

void
kmip_enc_item(kmip_enc *e, const kmip_item *it)
{
    if (it->type != KMIP_T_STRUCT) {
        enc_prim(e, it->tag, it->type, it->val, it->len);
        return;
    }
    kmip_enc_begin(e, it->tag);
    for (const kmip_item *k = it->kids; k != NULL; k = k->next)
        kmip_enc_item(e, k);
    kmip_enc_end(e);
}

tde_status
kmip_enc_finish(kmip_enc *e, uint8_t **out, size_t *len)
{
    tde_status st = e->err;
    if (st == TDE_OK && (e->depth != 0 || e->len == 0))
        st = tde_error_set(TDE_ERR_INTERNAL, "kmip: unbalanced request structure");
    if (st != TDE_OK) {
        kmip_enc_discard(e);
        return st;
    }
    *out = e->buf;
    *len = e->len;
    kmip_enc_init(e);
    return TDE_OK;
}

void
kmip_enc_discard(kmip_enc *e)
{
    kmip_buf_free(e->buf, e->cap);
    kmip_enc_init(e);
}

void
kmip_buf_free(uint8_t *buf, size_t len)
{
    if (buf == NULL)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}
