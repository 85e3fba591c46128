/*
 * Sealed buffers (type 2, and the dictionaries' types 5 and 6 with the same
 * layout): a fresh AES-256-GCM data key per record, wrapped by the master key
 * and embedded; the payload's additional data is the fixed header, the
 * plaintext length and the context. Layout: docs/formats.md, "Sealed buffer".
 * Re-wrapping replaces the embedded key and copies the ciphertext unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "envelope/record.h"
#include "tde/gcm.h"

/* GCM's limit for one message: 2^36 - 32 bytes (NIST SP 800-38D). */
#define GCM_MAX_PT (((uint64_t)1 << 36) - 32)

typedef struct sealed_view {
    uint8_t type;
    const uint8_t *wrapped;
    size_t wrapped_len;
    const uint8_t *iv;
    uint64_t pt_len;
    const uint8_t *ct;
    const uint8_t *tag;
} sealed_view;

static int
sealed_type(unsigned t)
{
    return t == TDE_RECORD_SEALED_BUFFER || t == TDE_RECORD_KEY_DICT || t == TDE_RECORD_FILE_DICT;
}

static tde_status
resolve_type(const env_opts *o, uint8_t *type)
{
    *type = o->type == 0 ? TDE_RECORD_SEALED_BUFFER : (uint8_t)o->type;
    if (!sealed_type(*type))
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "sealed buffer: record_type %u does not use the sealed-buffer layout",
                             o->type);
    return TDE_OK;
}

/* Additional data of the payload: prefix (8) || plaintext length (8) || context. */
static tde_status
payload_aad(const uint8_t *prefix, uint64_t pt_len, const env_opts *o, uint8_t **aad,
            size_t *aad_len)
{
    *aad_len = REC_PREFIX_LEN + 8 + o->ctx_len;
    *aad = malloc(*aad_len);
    if (*aad == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "sealed buffer: out of memory");
    memcpy(*aad, prefix, REC_PREFIX_LEN);
    env_put64(*aad + REC_PREFIX_LEN, pt_len);
    if (o->ctx_len > 0)
        memcpy(*aad + REC_PREFIX_LEN + 8, o->ctx, o->ctx_len);
    return TDE_OK;
}

static tde_status
sealed_parse(const uint8_t *rec, size_t len, uint8_t type, sealed_view *v)
{
    const char *what = env_type_name(type);
    size_t fixed = REC_PREFIX_LEN + 4 + TDE_GCM_IV_LEN + 8 + TDE_GCM_TAG_LEN;

    TDE_RET(env_check_prefix(rec, len, type, REC_METHOD_AES256GCM, 0, what));
    if (len < fixed)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated at %zu bytes", what, len);
    v->type = type;
    v->wrapped_len = env_get32(rec + REC_PREFIX_LEN);
    v->wrapped = rec + REC_PREFIX_LEN + 4;
    if (v->wrapped_len > REC_WRAPPED_MAX || v->wrapped_len > len - fixed)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "%s: wrapped key length %zu does not fit in %zu bytes", what,
                             v->wrapped_len, len);
    v->iv = v->wrapped + v->wrapped_len;
    v->pt_len = env_get64(v->iv + TDE_GCM_IV_LEN);
    v->ct = v->iv + TDE_GCM_IV_LEN + 8;
    if (v->pt_len != len - fixed - v->wrapped_len)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "%s: plaintext length %llu does not match the record's %zu bytes",
                             what, (unsigned long long)v->pt_len, len);
    v->tag = v->ct + v->pt_len;
    return TDE_OK;
}

tde_status
tde_envelope_seal(tde_masterkey *mk, const tde_envelope_options *opts, const uint8_t *pt,
                  size_t pt_len, uint8_t **rec, size_t *rec_len)
{
    env_opts o;
    uint8_t type, prefix[REC_PREFIX_LEN], *wrapped = NULL, *aad = NULL, *out = NULL;
    size_t wrapped_len = 0, aad_len = 0, len;
    tde_secret *key = NULL;
    tde_status st;

    if (mk == NULL || rec == NULL || rec_len == NULL || (pt == NULL && pt_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "sealed buffer: NULL argument");
    *rec = NULL;
    *rec_len = 0;
    TDE_RET(env_opts_get(opts, &o));
    TDE_RET(resolve_type(&o, &type));
    if ((uint64_t)pt_len > GCM_MAX_PT)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "%s: %zu bytes exceed GCM's limit; use a sealed stream",
                             env_type_name(type), pt_len);
    env_put_prefix(prefix, type, REC_METHOD_AES256GCM, 0);
    TDE_ERR(env_wrapped_build(mk, TDE_RECORD_WRAPPED_KEY, type, &o, NULL, 0, REC_DATA_KEY_LEN, &key,
                              &wrapped, &wrapped_len));
    TDE_ERR(payload_aad(prefix, pt_len, &o, &aad, &aad_len));
    len = REC_PREFIX_LEN + 4 + wrapped_len + TDE_GCM_IV_LEN + 8 + pt_len + TDE_GCM_TAG_LEN;
    out = malloc(len);
    TDE_ENSURE(out != NULL, TDE_ERR_NOMEM, "%s: out of memory for %zu bytes", env_type_name(type),
               len);
    memcpy(out, prefix, REC_PREFIX_LEN);
    env_put32(out + REC_PREFIX_LEN, (uint32_t)wrapped_len);
    memcpy(out + REC_PREFIX_LEN + 4, wrapped, wrapped_len);
    {
        uint8_t *iv = out + REC_PREFIX_LEN + 4 + wrapped_len;
        env_put64(iv + TDE_GCM_IV_LEN, pt_len);
        TDE_ERR(tde_gcm_seal_random_iv(tde_secret_data(key), REC_DATA_KEY_LEN, iv, aad, aad_len, pt,
                                       pt_len, iv + TDE_GCM_IV_LEN + 8,
                                       iv + TDE_GCM_IV_LEN + 8 + pt_len));
    }
    *rec = out;
    *rec_len = len;
    out = NULL;
    st = TDE_OK;
err:
    free(out);
    free(aad);
    free(wrapped);
    tde_secret_free(key);
    return st;
}

/* Opens into @p dst (v->pt_len bytes), which the caller allocated. */
static tde_status
sealed_open_into(tde_masterkey *current, tde_masterkey *previous, const env_opts *o,
                 const uint8_t *rec, const sealed_view *v, uint8_t *dst, const tde_masterkey **used)
{
    const char *what = env_type_name(v->type);
    wrapped_view wv;
    tde_secret *key = NULL;
    uint8_t *aad = NULL;
    size_t aad_len = 0;
    tde_status st;

    TDE_ERR(env_wrapped_parse(v->wrapped, v->wrapped_len, TDE_RECORD_WRAPPED_KEY, v->type, &wv));
    TDE_ERR(env_wrapped_open(current, previous, &wv, o, what, &key, used));
    TDE_ENSURE(tde_secret_len(key) == REC_DATA_KEY_LEN, TDE_ERR_CORRUPT,
               "%s: data key of %zu bytes, expected %d", what, tde_secret_len(key),
               REC_DATA_KEY_LEN);
    TDE_ERR(payload_aad(rec, v->pt_len, o, &aad, &aad_len));
    st = tde_gcm_open(tde_secret_data(key), REC_DATA_KEY_LEN, v->iv, TDE_GCM_IV_LEN, aad, aad_len,
                      v->ct, v->pt_len, v->tag, TDE_GCM_TAG_LEN, dst);
    TDE_ENSURE(st == TDE_OK, st, "%s: GCM tag mismatch: the ciphertext or the context was changed",
               what);
err:
    free(aad);
    tde_secret_free(key);
    return st;
}

static tde_status
open_prepare(tde_masterkey *current, const tde_envelope_options *opts, const uint8_t *rec,
             size_t rec_len, env_opts *o, sealed_view *v)
{
    uint8_t type;

    if (current == NULL || (rec == NULL && rec_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "sealed buffer: NULL argument");
    TDE_RET(env_opts_get(opts, o));
    TDE_RET(resolve_type(o, &type));
    return sealed_parse(rec, rec_len, type, v);
}

tde_status
tde_envelope_open(tde_masterkey *current, tde_masterkey *previous, const tde_envelope_options *opts,
                  const uint8_t *rec, size_t rec_len, uint8_t **pt, size_t *pt_len,
                  const tde_masterkey **used)
{
    env_opts o;
    sealed_view v;
    uint8_t *out;
    tde_status st;

    if (pt == NULL || pt_len == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "sealed buffer: NULL argument");
    *pt = NULL;
    *pt_len = 0;
    TDE_RET(open_prepare(current, opts, rec, rec_len, &o, &v));
    out = malloc(v.pt_len > 0 ? v.pt_len : 1);
    if (out == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", env_type_name(v.type));
    st = sealed_open_into(current, previous, &o, rec, &v, out, used);
    if (st != TDE_OK) {
        free(out);
        return st;
    }
    *pt = out;
    *pt_len = v.pt_len;
    return TDE_OK;
}

tde_status
tde_envelope_open_to_secret(tde_masterkey *current, tde_masterkey *previous,
                            const tde_envelope_options *opts, const uint8_t *rec, size_t rec_len,
                            tde_secret **pt, const tde_masterkey **used)
{
    env_opts o;
    sealed_view v;
    tde_status st;

    if (pt == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "sealed buffer: NULL argument");
    *pt = NULL;
    TDE_RET(open_prepare(current, opts, rec, rec_len, &o, &v));
    TDE_RET(tde_secret_new(pt, v.pt_len));
    st = sealed_open_into(current, previous, &o, rec, &v, tde_secret_data_mut(*pt), used);
    if (st != TDE_OK) {
        tde_secret_free(*pt);
        *pt = NULL;
    }
    return st;
}

tde_status
tde_envelope_rewrap(tde_masterkey *current, tde_masterkey *previous, tde_masterkey *target,
                    const tde_envelope_options *opts, const uint8_t *rec, size_t rec_len,
                    uint8_t **out, size_t *out_len, const tde_masterkey **used)
{
    env_opts o;
    sealed_view v;
    uint8_t type, *wrapped = NULL, *res = NULL;
    size_t wrapped_len = 0, tail_len;
    tde_status st;

    if (current == NULL || target == NULL || out == NULL || out_len == NULL || rec == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "rewrap: NULL argument");
    *out = NULL;
    *out_len = 0;
    TDE_RET(env_opts_get(opts, &o));
    if (rec_len < REC_PREFIX_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "rewrap: truncated record of %zu bytes", rec_len);
    type = rec[5];
    if (o.type != 0 && o.type != type)
        return tde_error_set(TDE_ERR_CORRUPT, "rewrap: record type %u (%s), expected %u (%s)", type,
                             env_type_name(type), o.type, env_type_name(o.type));
    if (type == TDE_RECORD_WRAPPED_KEY)
        return env_wrapped_rewrap(current, previous, target, &o, rec, rec_len, type, type, out,
                                  out_len, used);
    if (type == TDE_RECORD_SMALL_SECRET)
        return env_wrapped_rewrap(current, previous, target, &o, rec, rec_len, type, 0, out,
                                  out_len, used);
    if (!sealed_type(type))
        return tde_error_set(TDE_ERR_CORRUPT,
                             "rewrap: record type %u cannot be re-wrapped in memory (streams: "
                             "tde_envelope_rewrap_stream)",
                             type);
    TDE_RET(sealed_parse(rec, rec_len, type, &v));
    TDE_RET(env_wrapped_rewrap(current, previous, target, &o, v.wrapped, v.wrapped_len,
                               TDE_RECORD_WRAPPED_KEY, type, &wrapped, &wrapped_len, used));
    tail_len = rec_len - REC_PREFIX_LEN - 4 - v.wrapped_len;
    res = malloc(REC_PREFIX_LEN + 4 + wrapped_len + tail_len);
    TDE_ENSURE(res != NULL, TDE_ERR_NOMEM, "rewrap: out of memory");
    memcpy(res, rec, REC_PREFIX_LEN);
    env_put32(res + REC_PREFIX_LEN, (uint32_t)wrapped_len);
    memcpy(res + REC_PREFIX_LEN + 4, wrapped, wrapped_len);
    memcpy(res + REC_PREFIX_LEN + 4 + wrapped_len, v.iv, tail_len);
    *out = res;
    *out_len = REC_PREFIX_LEN + 4 + wrapped_len + tail_len;
    st = TDE_OK;
err:
    free(wrapped);
    return st;
}
