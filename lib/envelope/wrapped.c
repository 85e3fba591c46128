/*
 * Provider-wrapped records: the wrapped data key (type 1) and the small secret
 * (type 3), plus what every record format shares (prefix, options, choosing
 * the master key). Layout: docs/formats.md, "Wrapped data key".
 *
 * Threat model: records live in files an attacker may change. Every byte of a
 * record is either checked by the parser or authenticated (the header and
 * context as additional data of the provider's wrap), and the type byte keeps
 * one kind of record from being accepted as another.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "envelope/record.h"

tde_status
env_opts_get(const tde_envelope_options *o, env_opts *out)
{
    memset(out, 0, sizeof(*out));
    if (o == NULL)
        return TDE_OK;
    /* Version 0 is a zero-initialised struct: the current layout. */
    if (o->version != 0 && o->version != TDE_ENVELOPE_OPTIONS_VERSION)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "envelope: options version %u, expected %d (use "
                             "TDE_ENVELOPE_OPTIONS_INIT)",
                             o->version, TDE_ENVELOPE_OPTIONS_VERSION);
    if ((o->context == NULL && o->context_len > 0) || o->context_len > TDE_ENVELOPE_CONTEXT_MAX)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "envelope: context of %zu bytes (0..%d, non-NULL)", o->context_len,
                             TDE_ENVELOPE_CONTEXT_MAX);
    if (o->segment_size > TDE_ENVELOPE_SEGMENT_MAX)
        return tde_error_set(TDE_ERR_INVALID_ARG, "envelope: segment size %u above %u",
                             o->segment_size, TDE_ENVELOPE_SEGMENT_MAX);
    out->ctx = o->context;
    out->ctx_len = o->context_len;
    out->type = o->record_type;
    out->segment_size = o->segment_size;
    return TDE_OK;
}

const char *
env_type_name(unsigned type)
{
    switch (type) {
    case TDE_RECORD_WRAPPED_KEY: return "wrapped data key";
    case TDE_RECORD_SEALED_BUFFER: return "sealed buffer";
    case TDE_RECORD_SMALL_SECRET: return "small secret";
    case TDE_RECORD_STREAM: return "sealed stream";
    case TDE_RECORD_KEY_DICT: return "key dictionary";
    case TDE_RECORD_FILE_DICT: return "file dictionary";
    }
    return "unknown record";
}

void
env_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void
env_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void
env_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint16_t
env_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t
env_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t
env_get64(const uint8_t *p)
{
    return (uint64_t)env_get32(p) << 32 | env_get32(p + 4);
}

void
env_put_prefix(uint8_t *p, uint8_t type, uint8_t method, uint8_t byte7)
{
    memcpy(p, REC_MAGIC, 4);
    p[4] = REC_VERSION;
    p[5] = type;
    p[6] = method;
    p[7] = byte7;
}

tde_status
env_check_prefix(const uint8_t *rec, size_t len, uint8_t type, uint8_t method, uint8_t byte7,
                 const char *what)
{
    if (len < REC_PREFIX_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated: %zu bytes, shorter than the header",
                             what, len);
    if (memcmp(rec, REC_MAGIC, 4) != 0)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: bad magic (not a libtde record)", what);
    if (rec[4] != REC_VERSION)
        return tde_error_set(TDE_ERR_UNSUPPORTED,
                             "%s: format version %u, this libtde reads version %d", what, rec[4],
                             REC_VERSION);
    if (rec[5] != type)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: record type %u (%s), expected %u (%s)", what,
                             rec[5], env_type_name(rec[5]), type, env_type_name(type));
    if (rec[6] != method)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: method 0x%02x, expected 0x%02x", what, rec[6],
                             method);
    if (rec[7] != byte7)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: header byte 7 is 0x%02x, expected 0x%02x", what,
                             rec[7], byte7);
    return TDE_OK;
}

/* Additional data for the provider: the header, then the caller's context. */
static tde_status
make_aad(const uint8_t *hdr, size_t hdr_len, const env_opts *o, uint8_t **aad, size_t *aad_len)
{
    *aad_len = hdr_len + o->ctx_len;
    *aad = malloc(*aad_len);
    if (*aad == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "envelope: out of memory");
    memcpy(*aad, hdr, hdr_len);
    if (o->ctx_len > 0)
        memcpy(*aad + hdr_len, o->ctx, o->ctx_len);
    return TDE_OK;
}

tde_status
env_wrapped_build(tde_masterkey *mk, uint8_t type, uint8_t purpose, const env_opts *o,
                  const uint8_t *pt, size_t pt_len, size_t gen_len, tde_secret **gen_key,
                  uint8_t **rec, size_t *rec_len)
{
    const char *name = tde_masterkey_provider_name(mk), *id = tde_masterkey_key_id(mk);
    size_t name_len = strlen(name), id_len = strlen(id);
    size_t hdr_len = REC_PREFIX_LEN + 1 + name_len + 2 + id_len, aad_len = 0, blob_len = 0;
    uint8_t *hdr = NULL, *aad = NULL, *blob = NULL, *out = NULL;
    tde_status st;

    *rec = NULL;
    *rec_len = 0;
    /* The registry guarantees non-empty names and ids within bounds. */
    TDE_ENSURE(name_len <= REC_PROVIDER_MAX && id_len <= REC_KEY_ID_MAX, TDE_ERR_INTERNAL,
               "provider %s: name or key id too long for a record", name);
    hdr = malloc(hdr_len);
    TDE_ENSURE(hdr != NULL, TDE_ERR_NOMEM, "envelope: out of memory");
    env_put_prefix(hdr, type, REC_METHOD_PROVIDER, purpose);
    hdr[REC_PREFIX_LEN] = (uint8_t)name_len;
    memcpy(hdr + REC_PREFIX_LEN + 1, name, name_len);
    env_put16(hdr + REC_PREFIX_LEN + 1 + name_len, (uint16_t)id_len);
    memcpy(hdr + REC_PREFIX_LEN + 3 + name_len, id, id_len);
    TDE_ERR(make_aad(hdr, hdr_len, o, &aad, &aad_len));
    if (pt != NULL)
        TDE_ERR(tde_masterkey_wrap(mk, aad, aad_len, pt, pt_len, &blob, &blob_len));
    else
        TDE_ERR(
            tde_masterkey_generate_data_key(mk, gen_len, aad, aad_len, gen_key, &blob, &blob_len));
    TDE_ENSURE(blob_len <= REC_BLOB_MAX, TDE_ERR_INTERNAL,
               "provider %s, master key %s: wrapped blob of %zu bytes exceeds %d", name, id,
               blob_len, REC_BLOB_MAX);
    out = malloc(hdr_len + 4 + blob_len);
    TDE_ENSURE(out != NULL, TDE_ERR_NOMEM, "envelope: out of memory");
    memcpy(out, hdr, hdr_len);
    env_put32(out + hdr_len, (uint32_t)blob_len);
    memcpy(out + hdr_len + 4, blob, blob_len);
    *rec = out;
    *rec_len = hdr_len + 4 + blob_len;
    st = TDE_OK;
err:
    if (st != TDE_OK && gen_key != NULL) {
        tde_secret_free(*gen_key);
        *gen_key = NULL;
    }
    free(blob);
    free(aad);
    free(hdr);
    return st;
}

static int
printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

tde_status
env_wrapped_parse(const uint8_t *rec, size_t len, uint8_t type, uint8_t purpose, wrapped_view *v)
{
    const char *what = env_type_name(type);
    size_t pos = REC_PREFIX_LEN;

    TDE_RET(env_check_prefix(rec, len, type, REC_METHOD_PROVIDER, purpose, what));
    if (len < pos + 1)
        goto truncated;
    v->provider_len = rec[pos];
    v->provider = (const char *)rec + pos + 1;
    if (v->provider_len == 0 || v->provider_len > REC_PROVIDER_MAX)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: provider name length %zu outside 1..%d", what,
                             v->provider_len, REC_PROVIDER_MAX);
    pos += 1 + v->provider_len;
    if (len < pos + 2)
        goto truncated;
    v->key_id_len = env_get16(rec + pos);
    v->key_id = (const char *)rec + pos + 2;
    if (v->key_id_len == 0 || v->key_id_len > REC_KEY_ID_MAX)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: key id length %zu outside 1..%d", what,
                             v->key_id_len, REC_KEY_ID_MAX);
    pos += 2 + v->key_id_len;
    if (len < pos + 4)
        goto truncated;
    /* Names go into error messages: printable ASCII only, no escapes for a terminal. */
    if (!printable(v->provider, v->provider_len) || !printable(v->key_id, v->key_id_len))
        return tde_error_set(TDE_ERR_CORRUPT, "%s: provider name or key id is not printable ASCII",
                             what);
    v->hdr = rec;
    v->hdr_len = pos;
    v->blob_len = env_get32(rec + pos);
    v->blob = rec + pos + 4;
    if (v->blob_len == 0 || v->blob_len > REC_BLOB_MAX)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: wrapped blob length %zu outside 1..%d", what,
                             v->blob_len, REC_BLOB_MAX);
    if (len != pos + 4 + v->blob_len)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: %zu bytes, but its fields add up to %zu", what,
                             len, pos + 4 + v->blob_len);
    return TDE_OK;
truncated:
    return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated at %zu bytes", what, len);
}

static int
matches(const tde_masterkey *mk, const wrapped_view *v)
{
    const char *name = tde_masterkey_provider_name(mk), *id = tde_masterkey_key_id(mk);
    return strlen(name) == v->provider_len && memcmp(name, v->provider, v->provider_len) == 0 &&
           strlen(id) == v->key_id_len && memcmp(id, v->key_id, v->key_id_len) == 0;
}

tde_status
env_wrapped_open(tde_masterkey *current, tde_masterkey *previous, const wrapped_view *v,
                 const env_opts *o, const char *what, tde_secret **pt, const tde_masterkey **used)
{
    tde_masterkey *candidates[2] = {current, previous};
    uint8_t *aad = NULL;
    size_t aad_len = 0;
    int tried = 0;
    tde_status st = TDE_ERR_AUTH;

    *pt = NULL;
    if (current == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: no master key given", what);
    TDE_RET(make_aad(v->hdr, v->hdr_len, o, &aad, &aad_len));
    for (int i = 0; i < 2; i++) {
        tde_masterkey *mk = candidates[i];
        if (mk == NULL || !matches(mk, v))
            continue;
        tried++;
        st = tde_masterkey_unwrap(mk, aad, aad_len, v->blob, v->blob_len, pt);
        if (st == TDE_OK) {
            if (used != NULL)
                *used = mk;
            if (i == 1)
                tde_log(TDE_LOG_INFO, "%s: opened with the previous master key (%s %s)", what,
                        tde_masterkey_provider_name(mk), tde_masterkey_key_id(mk));
            break;
        }
        /* Only a wrong key falls through; an unreachable provider is reported as is. */
        if (st != TDE_ERR_AUTH)
            break;
    }
    free(aad);
    if (st == TDE_ERR_AUTH && tried > 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", tde_last_error());
        return tde_error_set(st, "%s: %s", what, msg);
    }
    if (tried == 0)
        return tde_error_set(
            TDE_ERR_AUTH,
            "%s: wrapped by provider %.*s, master key %.*s; the current master key (%s %s)%s%s%s%s "
            "does not match: wrong master key",
            what, (int)v->provider_len, v->provider, (int)v->key_id_len, v->key_id,
            tde_masterkey_provider_name(current), tde_masterkey_key_id(current),
            previous ? " and the previous one (" : "",
            previous ? tde_masterkey_provider_name(previous) : "", previous ? " " : "",
            previous ? tde_masterkey_key_id(previous) : "");
    return st;
}

tde_status
env_wrapped_rewrap(tde_masterkey *current, tde_masterkey *previous, tde_masterkey *target,
                   const env_opts *o, const uint8_t *rec, size_t len, uint8_t type, uint8_t purpose,
                   uint8_t **out, size_t *out_len, const tde_masterkey **used)
{
    wrapped_view v;
    tde_secret *pt = NULL;
    tde_status st;

    TDE_RET(env_wrapped_parse(rec, len, type, purpose, &v));
    TDE_RET(env_wrapped_open(current, previous, &v, o, env_type_name(type), &pt, used));
    st = env_wrapped_build(target, type, purpose, o, tde_secret_data(pt), tde_secret_len(pt), 0,
                           NULL, out, out_len);
    tde_secret_free(pt);
    return st;
}

/* ---- public: wrapped data keys and small secrets ---- */

static tde_status
check_common(tde_masterkey *mk, const tde_envelope_options *opts, env_opts *o, uint8_t **rec,
             size_t *rec_len, tde_record_type own)
{
    if (mk == NULL || rec == NULL || rec_len == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: NULL argument", env_type_name(own));
    *rec = NULL;
    *rec_len = 0;
    TDE_RET(env_opts_get(opts, o));
    if (o->type != 0 && o->type != own)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: record_type %u is not allowed here",
                             env_type_name(own), o->type);
    return TDE_OK;
}

tde_status
tde_envelope_wrap_key(tde_masterkey *mk, const tde_envelope_options *opts, const tde_secret *key,
                      uint8_t **rec, size_t *rec_len)
{
    env_opts o;

    TDE_RET(check_common(mk, opts, &o, rec, rec_len, TDE_RECORD_WRAPPED_KEY));
    if (key == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "wrapped data key: NULL key");
    return env_wrapped_build(mk, TDE_RECORD_WRAPPED_KEY, TDE_RECORD_WRAPPED_KEY, &o,
                             tde_secret_data(key), tde_secret_len(key), 0, NULL, rec, rec_len);
}

tde_status
tde_envelope_new_key(tde_masterkey *mk, const tde_envelope_options *opts, size_t key_len,
                     tde_secret **key, uint8_t **rec, size_t *rec_len)
{
    env_opts o;

    TDE_RET(check_common(mk, opts, &o, rec, rec_len, TDE_RECORD_WRAPPED_KEY));
    if (key == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "wrapped data key: NULL key");
    *key = NULL;
    return env_wrapped_build(mk, TDE_RECORD_WRAPPED_KEY, TDE_RECORD_WRAPPED_KEY, &o, NULL, 0,
                             key_len, key, rec, rec_len);
}

static tde_status
open_wrapped_public(tde_masterkey *current, tde_masterkey *previous,
                    const tde_envelope_options *opts, const uint8_t *rec, size_t rec_len,
                    tde_secret **out, const tde_masterkey **used, uint8_t type, uint8_t purpose)
{
    env_opts o;
    wrapped_view v;

    if (out == NULL || (rec == NULL && rec_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: NULL argument", env_type_name(type));
    *out = NULL;
    TDE_RET(env_opts_get(opts, &o));
    if (o.type != 0 && o.type != type)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: record_type %u is not allowed here",
                             env_type_name(type), o.type);
    TDE_RET(env_wrapped_parse(rec, rec_len, type, purpose, &v));
    return env_wrapped_open(current, previous, &v, &o, env_type_name(type), out, used);
}

tde_status
tde_envelope_unwrap_key(tde_masterkey *current, tde_masterkey *previous,
                        const tde_envelope_options *opts, const uint8_t *rec, size_t rec_len,
                        tde_secret **key, const tde_masterkey **used)
{
    return open_wrapped_public(current, previous, opts, rec, rec_len, key, used,
                               TDE_RECORD_WRAPPED_KEY, TDE_RECORD_WRAPPED_KEY);
}

tde_status
tde_envelope_seal_small(tde_masterkey *mk, const tde_envelope_options *opts, const uint8_t *secret,
                        size_t len, uint8_t **rec, size_t *rec_len)
{
    env_opts o;

    TDE_RET(check_common(mk, opts, &o, rec, rec_len, TDE_RECORD_SMALL_SECRET));
    if (secret == NULL || len == 0 || len > TDE_ENVELOPE_SMALL_MAX)
        return tde_error_set(TDE_ERR_INVALID_ARG, "small secret: %zu bytes (1..%d)", len,
                             TDE_ENVELOPE_SMALL_MAX);
    return env_wrapped_build(mk, TDE_RECORD_SMALL_SECRET, 0, &o, secret, len, 0, NULL, rec,
                             rec_len);
}

tde_status
tde_envelope_open_small(tde_masterkey *current, tde_masterkey *previous,
                        const tde_envelope_options *opts, const uint8_t *rec, size_t rec_len,
                        tde_secret **secret, const tde_masterkey **used)
{
    return open_wrapped_public(current, previous, opts, rec, rec_len, secret, used,
                               TDE_RECORD_SMALL_SECRET, 0);
}
