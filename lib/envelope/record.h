/* Internal: what the envelope record formats share (layouts in docs/formats.md). */
#ifndef TDE_LIB_ENVELOPE_RECORD_H
#define TDE_LIB_ENVELOPE_RECORD_H

#include "tde/envelope.h"

#define REC_MAGIC "TDEE"
#define REC_VERSION 1
#define REC_PREFIX_LEN 8
/* Method bytes: how the record's body is protected. */
#define REC_METHOD_PROVIDER 0x00  /* by the master-key provider (wrapped key, small secret) */
#define REC_METHOD_AES256GCM 0x01 /* AES-256-GCM under a data key (buffers, streams) */

#define REC_PROVIDER_MAX 32
#define REC_KEY_ID_MAX 1024
#define REC_BLOB_MAX 16384
#define REC_DATA_KEY_LEN 32
/* Largest wrapped-key record (embedded in buffers and streams). */
#define REC_WRAPPED_MAX                                                                            \
    (REC_PREFIX_LEN + 1 + REC_PROVIDER_MAX + 2 + REC_KEY_ID_MAX + 4 + REC_BLOB_MAX)

/* The options of one call, checked. */
typedef struct env_opts {
    const uint8_t *ctx;
    size_t ctx_len;
    tde_record_type type;
    uint32_t segment_size;
} env_opts;

/* A parsed provider-wrapped record (wrapped key or small secret), borrowing from the record. */
typedef struct wrapped_view {
    const uint8_t *hdr; /* the bytes bound as additional data (with the context) */
    size_t hdr_len;
    const char *provider; /* not NUL-terminated */
    size_t provider_len;
    const char *key_id; /* not NUL-terminated */
    size_t key_id_len;
    const uint8_t *blob;
    size_t blob_len;
} wrapped_view;

tde_status env_opts_get(const tde_envelope_options *o, env_opts *out);
const char *env_type_name(unsigned type);

void env_put16(uint8_t *p, uint16_t v);
void env_put32(uint8_t *p, uint32_t v);
void env_put64(uint8_t *p, uint64_t v);
uint16_t env_get16(const uint8_t *p);
uint32_t env_get32(const uint8_t *p);
uint64_t env_get64(const uint8_t *p);

/* Writes the 8-byte prefix. */
void env_put_prefix(uint8_t *p, uint8_t type, uint8_t method, uint8_t byte7);

/* Checks magic, version, type, method and byte 7 of a record of @p what. */
tde_status env_check_prefix(const uint8_t *rec, size_t len, uint8_t type, uint8_t method,
                            uint8_t byte7, const char *what);

/*
 * Builds a provider-wrapped record of @p type. With @p pt it wraps those
 * bytes; with pt NULL it has the provider generate a @p gen_len-byte key,
 * returned in *gen_key.
 */
tde_status env_wrapped_build(tde_masterkey *mk, uint8_t type, uint8_t purpose, const env_opts *o,
                             const uint8_t *pt, size_t pt_len, size_t gen_len, tde_secret **gen_key,
                             uint8_t **rec, size_t *rec_len);

/* Parses a provider-wrapped record that must fill exactly @p len bytes. */
tde_status env_wrapped_parse(const uint8_t *rec, size_t len, uint8_t type, uint8_t purpose,
                             wrapped_view *v);

/* Unwraps with whichever of @p current / @p previous matches the record (see envelope.h). */
tde_status env_wrapped_open(tde_masterkey *current, tde_masterkey *previous, const wrapped_view *v,
                            const env_opts *o, const char *what, tde_secret **pt,
                            const tde_masterkey **used);

/* Re-wraps an embedded or standalone wrapped-key record under @p target. */
tde_status env_wrapped_rewrap(tde_masterkey *current, tde_masterkey *previous,
                              tde_masterkey *target, const env_opts *o, const uint8_t *rec,
                              size_t len, uint8_t type, uint8_t purpose, uint8_t **out,
                              size_t *out_len, const tde_masterkey **used);

#endif
