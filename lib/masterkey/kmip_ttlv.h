/*
 * KMIP TTLV (Tag-Type-Length-Value) encoding, as in the KMIP 1.x/2.0 specifications
 * section 9.1: a 3-byte tag (0x42xxxx, or 0x54xxxx for extensions), a 1-byte type,
 * a 4-byte big-endian length of the value without padding, then the value padded
 * with zero bytes to a multiple of 8. Structures hold a sequence of items.
 *
 * Threat model: the decoder reads bytes from the network, possibly from a hostile
 * or broken server. It is strict (every length, padding byte, type size, nesting
 * depth and item count is checked) and never reads outside its input. Encoded
 * requests can hold key bytes (Register), so encoder buffers are wiped on free.
 */
#ifndef TDE_KMIP_TTLV_H
#define TDE_KMIP_TTLV_H

#include <stddef.h>
#include <stdint.h>

#include "tde/common.h"

/* Item types (KMIP 1.4 section 9.1.1.2; 0x0B is KMIP 2.0's Date-Time Extended). */
enum kmip_type {
    KMIP_T_STRUCT = 0x01,
    KMIP_T_INT = 0x02,
    KMIP_T_LONG = 0x03,
    KMIP_T_BIGINT = 0x04,
    KMIP_T_ENUM = 0x05,
    KMIP_T_BOOL = 0x06,
    KMIP_T_TEXT = 0x07,
    KMIP_T_BYTES = 0x08,
    KMIP_T_DATETIME = 0x09,
    KMIP_T_INTERVAL = 0x0A,
    KMIP_T_DATETIME_EXT = 0x0B,
};

/* Bounds of the decoder. Real KMIP messages nest about 8 deep and hold tens of items. */
#define KMIP_TTLV_MAX_DEPTH 16
#define KMIP_TTLV_MAX_ITEMS 4096
#define KMIP_TTLV_MAX_MESSAGE ((size_t)1 << 20)
#define KMIP_TTLV_HEADER_LEN 8

/* One decoded item. Values point into the decoded buffer (borrowed). */
typedef struct kmip_item {
    uint32_t tag;
    uint8_t type;
    uint32_t len;                 /* value length without padding */
    const uint8_t *val;           /* len bytes */
    const struct kmip_item *kids; /* structures: first child, NULL when empty */
    const struct kmip_item *next; /* next sibling in the parent structure */
} kmip_item;

typedef struct kmip_tree kmip_tree;

/*
 * Decodes exactly one item spanning all of @p buf. The tree borrows @p buf, which
 * must outlive it. TDE_ERR_PROTOCOL says what is malformed and at which offset.
 */
TDE_MUST_USE tde_status kmip_ttlv_decode(kmip_tree **out, const uint8_t *buf, size_t len);
void kmip_tree_free(kmip_tree *t);
const kmip_item *kmip_tree_root(const kmip_tree *t);

/*
 * Reads the 8-byte header of the message starting at @p hdr and returns the
 * whole message length (header + padded value), for reading from a stream.
 * TDE_ERR_PROTOCOL when it is not a structure or is larger than @p max.
 */
TDE_MUST_USE tde_status kmip_ttlv_message_len(const uint8_t hdr[KMIP_TTLV_HEADER_LEN], size_t max,
                                              size_t *total);

/* First child of structure @p s with @p tag, or NULL (also when @p s is NULL or no structure). */
const kmip_item *kmip_item_find(const kmip_item *s, uint32_t tag);
/* The next sibling after @p it with the same tag, or NULL. */
const kmip_item *kmip_item_next_same(const kmip_item *it);
/* Number of children of @p s with @p tag. */
size_t kmip_item_count(const kmip_item *s, uint32_t tag);

/* Typed getters: TDE_ERR_PROTOCOL when @p it is NULL or of another type. */
TDE_MUST_USE tde_status kmip_item_int(const kmip_item *it, int32_t *v);
TDE_MUST_USE tde_status kmip_item_enum(const kmip_item *it, uint32_t *v);
TDE_MUST_USE tde_status kmip_item_long(const kmip_item *it, int64_t *v);
TDE_MUST_USE tde_status kmip_item_bool(const kmip_item *it, int *v);
TDE_MUST_USE tde_status kmip_item_text(const kmip_item *it, const char **s, size_t *len);
TDE_MUST_USE tde_status kmip_item_bytes(const kmip_item *it, const uint8_t **b, size_t *len);

/*
 * Encoder: appends items to a growing buffer; structures are opened and closed
 * and their lengths patched on close. Errors are sticky and reported by
 * kmip_enc_finish(), so building code needs no checks per item.
 */
typedef struct kmip_enc {
    uint8_t *buf;
    size_t len, cap;
    size_t open[KMIP_TTLV_MAX_DEPTH]; /* offsets of open structures' headers */
    int depth;
    tde_status err;
} kmip_enc;

void kmip_enc_init(kmip_enc *e);
void kmip_enc_begin(kmip_enc *e, uint32_t tag);
void kmip_enc_end(kmip_enc *e);
void kmip_enc_int(kmip_enc *e, uint32_t tag, int32_t v);
void kmip_enc_enum(kmip_enc *e, uint32_t tag, uint32_t v);
void kmip_enc_long(kmip_enc *e, uint32_t tag, int64_t v);
void kmip_enc_bool(kmip_enc *e, uint32_t tag, int v);
void kmip_enc_datetime(kmip_enc *e, uint32_t tag, int64_t v);
void kmip_enc_text(kmip_enc *e, uint32_t tag, const char *s, size_t len);
void kmip_enc_bytes(kmip_enc *e, uint32_t tag, const uint8_t *b, size_t len);
/* Appends any primitive item as decoded (for re-encoding); structures recurse. */
void kmip_enc_item(kmip_enc *e, const kmip_item *it);
/* Hands over the bytes (malloc()ed; the caller wipes and frees them with kmip_buf_free). */
TDE_MUST_USE tde_status kmip_enc_finish(kmip_enc *e, uint8_t **out, size_t *len);
/* Wipes and frees an unfinished encoder's buffer. */
void kmip_enc_discard(kmip_enc *e);
/* Wipes and frees a buffer from kmip_enc_finish() or the transport. Accepts NULL. */
void kmip_buf_free(uint8_t *buf, size_t len);

#endif
