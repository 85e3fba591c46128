/*
 * Sealed streams (type 4): any amount of data in bounded memory, as a header
 * and a sequence of AES-256-GCM segments. Layout: docs/formats.md, "Sealed
 * stream".
 *
 * Threat model: an attacker who can edit the sealed file must not make us
 * accept anything but the exact plaintext. Each stream has a fresh data key
 * and a random stream id; segment i's nonce is 00 00 00 || i || final, and its
 * additional data binds the fixed header (with the stream id), i, the final
 * flag and the context. So truncation (no final segment), reordering or
 * duplication (wrong i), splicing (wrong key and stream id) and extension
 * (data after the final segment) all fail. No nonce repeats under a key: i
 * only grows and the key is never reused by another stream.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "envelope/record.h"
#include "tde/gcm.h"

#define STREAM_ID_LEN 16
#define STREAM_FIXED_LEN (REC_PREFIX_LEN + 4 + STREAM_ID_LEN) /* authenticated in every segment */
#define STREAM_HDR_LEN (STREAM_FIXED_LEN + 4)                 /* then the wrapped key */

static const char what[] = "sealed stream";

/* Reads until @p want bytes or end of input. */
static tde_status
read_full(tde_read_fn rd, void *arg, uint8_t *buf, size_t want, size_t *got)
{
    *got = 0;
    while (*got < want) {
        size_t n = 0;
        TDE_RET(rd(arg, buf + *got, want - *got, &n));
        if (n == 0)
            break;
        if (n > want - *got)
            return tde_error_set(TDE_ERR_INTERNAL, "%s: read callback returned too many bytes",
                                 what);
        *got += n;
    }
    return TDE_OK;
}

static void
segment_nonce(uint8_t nonce[TDE_GCM_IV_LEN], uint64_t seg, int final)
{
    memset(nonce, 0, 3);
    env_put64(nonce + 3, seg);
    nonce[11] = (uint8_t)(final != 0);
}

/* aad = fixed header (28) || segment number (8) || final flag (1) || context; sized by caller. */
static void
segment_aad(uint8_t *aad, const uint8_t *fixed, uint64_t seg, int final, const env_opts *o)
{
    memcpy(aad, fixed, STREAM_FIXED_LEN);
    env_put64(aad + STREAM_FIXED_LEN, seg);
    aad[STREAM_FIXED_LEN + 8] = (uint8_t)(final != 0);
    if (o->ctx_len > 0)
        memcpy(aad + STREAM_FIXED_LEN + 9, o->ctx, o->ctx_len);
}

tde_status
tde_envelope_seal_stream(tde_masterkey *mk, const tde_envelope_options *opts, tde_read_fn rd,
                         void *rd_arg, tde_write_fn wr, void *wr_arg)
{
    env_opts o;
    uint8_t hdr[STREAM_HDR_LEN], nonce[TDE_GCM_IV_LEN], *wrapped = NULL, *buf = NULL, *ct = NULL,
                                                        *aad = NULL;
    size_t wrapped_len = 0, aad_len, got;
    uint32_t seg_size;
    uint64_t seg = 0;
    tde_secret *key = NULL;
    tde_status st;

    if (mk == NULL || rd == NULL || wr == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: NULL argument", what);
    TDE_RET(env_opts_get(opts, &o));
    if (o.type != 0 && o.type != TDE_RECORD_STREAM)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: record_type %u is not allowed here", what,
                             o.type);
    seg_size = o.segment_size ? o.segment_size : TDE_ENVELOPE_SEGMENT_DEFAULT;
    env_put_prefix(hdr, TDE_RECORD_STREAM, REC_METHOD_AES256GCM, 0);
    env_put32(hdr + REC_PREFIX_LEN, seg_size);
    TDE_ERR(tde_random_bytes(hdr + REC_PREFIX_LEN + 4, STREAM_ID_LEN));
    TDE_ERR(env_wrapped_build(mk, TDE_RECORD_WRAPPED_KEY, TDE_RECORD_STREAM, &o, NULL, 0,
                              REC_DATA_KEY_LEN, &key, &wrapped, &wrapped_len));
    env_put32(hdr + STREAM_FIXED_LEN, (uint32_t)wrapped_len);
    TDE_ERR(wr(wr_arg, hdr, sizeof(hdr)));
    TDE_ERR(wr(wr_arg, wrapped, wrapped_len));

    aad_len = STREAM_FIXED_LEN + 9 + o.ctx_len;
    buf = malloc((size_t)seg_size + 1);
    ct = malloc((size_t)seg_size + TDE_GCM_TAG_LEN);
    aad = malloc(aad_len);
    TDE_ENSURE(buf != NULL && ct != NULL && aad != NULL, TDE_ERR_NOMEM, "%s: out of memory", what);
    /* One byte of look-ahead tells whether a full segment is the last one. */
    TDE_ERR(read_full(rd, rd_arg, buf, (size_t)seg_size + 1, &got));
    for (;;) {
        int final = got <= seg_size;
        size_t n = final ? got : seg_size;
        segment_nonce(nonce, seg, final);
        segment_aad(aad, hdr, seg, final, &o);
        TDE_ERR(tde_gcm_seal(tde_secret_data(key), REC_DATA_KEY_LEN, nonce, sizeof(nonce), aad,
                             aad_len, buf, n, ct, ct + n, TDE_GCM_TAG_LEN));
        TDE_ERR(wr(wr_arg, ct, n + TDE_GCM_TAG_LEN));
        if (final)
            break;
        buf[0] = buf[seg_size];
        TDE_ERR(read_full(rd, rd_arg, buf + 1, seg_size, &got));
        got += 1;
        seg++;
    }
    st = TDE_OK;
err:
    free(aad);
    free(ct);
    free(buf);
    free(wrapped);
    tde_secret_free(key);
    return st;
}

/* Reads and checks the header; *wrapped (malloc()ed) is the embedded wrapped-key record. */
static tde_status
read_header(tde_read_fn rd, void *rd_arg, uint8_t hdr[STREAM_HDR_LEN], uint8_t **wrapped,
            size_t *wrapped_len)
{
    size_t got;
    uint32_t seg_size;

    *wrapped = NULL;
    TDE_RET(read_full(rd, rd_arg, hdr, STREAM_HDR_LEN, &got));
    if (got < REC_PREFIX_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated: %zu bytes, shorter than the header",
                             what, got);
    TDE_RET(env_check_prefix(hdr, got, TDE_RECORD_STREAM, REC_METHOD_AES256GCM, 0, what));
    if (got < STREAM_HDR_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated header (%zu bytes)", what, got);
    seg_size = env_get32(hdr + REC_PREFIX_LEN);
    if (seg_size == 0 || seg_size > TDE_ENVELOPE_SEGMENT_MAX)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: segment size %u outside 1..%u", what, seg_size,
                             TDE_ENVELOPE_SEGMENT_MAX);
    *wrapped_len = env_get32(hdr + STREAM_FIXED_LEN);
    if (*wrapped_len == 0 || *wrapped_len > REC_WRAPPED_MAX)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: wrapped key length %zu outside 1..%d", what,
                             *wrapped_len, REC_WRAPPED_MAX);
    *wrapped = malloc(*wrapped_len);
    if (*wrapped == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: out of memory", what);
    TDE_RET(read_full(rd, rd_arg, *wrapped, *wrapped_len, &got));
    if (got < *wrapped_len)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated in the wrapped key", what);
    return TDE_OK;
}

tde_status
tde_envelope_open_stream(tde_masterkey *current, tde_masterkey *previous,
                         const tde_envelope_options *opts, tde_read_fn rd, void *rd_arg,
                         tde_write_fn wr, void *wr_arg, const tde_masterkey **used)
{
    env_opts o;
    wrapped_view wv;
    uint8_t hdr[STREAM_HDR_LEN], nonce[TDE_GCM_IV_LEN], *wrapped = NULL, *buf = NULL, *pt = NULL,
                                                        *aad = NULL;
    size_t wrapped_len = 0, aad_len, got, full;
    uint32_t seg_size;
    uint64_t seg = 0;
    tde_secret *key = NULL;
    tde_status st;

    if (current == NULL || rd == NULL || wr == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: NULL argument", what);
    TDE_RET(env_opts_get(opts, &o));
    TDE_ERR(read_header(rd, rd_arg, hdr, &wrapped, &wrapped_len));
    TDE_ERR(
        env_wrapped_parse(wrapped, wrapped_len, TDE_RECORD_WRAPPED_KEY, TDE_RECORD_STREAM, &wv));
    TDE_ERR(env_wrapped_open(current, previous, &wv, &o, what, &key, used));
    TDE_ENSURE(tde_secret_len(key) == REC_DATA_KEY_LEN, TDE_ERR_CORRUPT,
               "%s: data key of %zu bytes, expected %d", what, tde_secret_len(key),
               REC_DATA_KEY_LEN);
    seg_size = env_get32(hdr + REC_PREFIX_LEN);
    full = (size_t)seg_size + TDE_GCM_TAG_LEN;
    aad_len = STREAM_FIXED_LEN + 9 + o.ctx_len;
    buf = malloc(full + 1);
    pt = malloc(seg_size);
    aad = malloc(aad_len);
    TDE_ENSURE(buf != NULL && pt != NULL && aad != NULL, TDE_ERR_NOMEM, "%s: out of memory", what);
    TDE_ERR(read_full(rd, rd_arg, buf, full + 1, &got));
    for (;;) {
        int final = got <= full;
        size_t n;
        TDE_ENSURE(got >= TDE_GCM_TAG_LEN, TDE_ERR_CORRUPT,
                   "%s: truncated: segment %llu has %zu bytes, less than its tag", what,
                   (unsigned long long)seg, got);
        n = final ? got - TDE_GCM_TAG_LEN : seg_size;
        segment_nonce(nonce, seg, final);
        segment_aad(aad, hdr, seg, final, &o);
        st = tde_gcm_open(tde_secret_data(key), REC_DATA_KEY_LEN, nonce, sizeof(nonce), aad,
                          aad_len, buf, n, buf + n, TDE_GCM_TAG_LEN, pt);
        TDE_ENSURE(st == TDE_OK, st,
                   "%s: segment %llu%s failed authentication: the stream was truncated, "
                   "reordered, spliced or changed, or the context differs",
                   what, (unsigned long long)seg, final ? " (last)" : "");
        TDE_ERR(wr(wr_arg, pt, n));
        if (final)
            break;
        buf[0] = buf[full];
        TDE_ERR(read_full(rd, rd_arg, buf + 1, full, &got));
        got += 1;
        seg++;
    }
    st = TDE_OK;
err:
    free(aad);
    free(pt);
    free(buf);
    free(wrapped);
    tde_secret_free(key);
    return st;
}

tde_status
tde_envelope_rewrap_stream(tde_masterkey *current, tde_masterkey *previous, tde_masterkey *target,
                           const tde_envelope_options *opts, tde_read_fn rd, void *rd_arg,
                           tde_write_fn wr, void *wr_arg, const tde_masterkey **used)
{
    env_opts o;
    uint8_t hdr[STREAM_HDR_LEN], *wrapped = NULL, *rewrapped = NULL, *buf = NULL;
    size_t wrapped_len = 0, rewrapped_len = 0, got;
    tde_status st;

    if (current == NULL || target == NULL || rd == NULL || wr == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: NULL argument", what);
    TDE_RET(env_opts_get(opts, &o));
    TDE_ERR(read_header(rd, rd_arg, hdr, &wrapped, &wrapped_len));
    TDE_ERR(env_wrapped_rewrap(current, previous, target, &o, wrapped, wrapped_len,
                               TDE_RECORD_WRAPPED_KEY, TDE_RECORD_STREAM, &rewrapped,
                               &rewrapped_len, used));
    env_put32(hdr + STREAM_FIXED_LEN, (uint32_t)rewrapped_len);
    TDE_ERR(wr(wr_arg, hdr, sizeof(hdr)));
    TDE_ERR(wr(wr_arg, rewrapped, rewrapped_len));
    /* The segments are copied as they are: the data key did not change. */
    buf = malloc(TDE_ENVELOPE_SEGMENT_DEFAULT);
    TDE_ENSURE(buf != NULL, TDE_ERR_NOMEM, "%s: out of memory", what);
    do {
        TDE_ERR(read_full(rd, rd_arg, buf, TDE_ENVELOPE_SEGMENT_DEFAULT, &got));
        if (got > 0)
            TDE_ERR(wr(wr_arg, buf, got));
    } while (got > 0);
    st = TDE_OK;
err:
    free(buf);
    free(rewrapped);
    free(wrapped);
    return st;
}

/* ---- file descriptors ---- */

static tde_status
fd_read(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    int fd = *(int *)arg;
    ssize_t n;

    do
        n = read(fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return tde_error_set(TDE_ERR_IO, "%s: read from fd %d: %s", what, fd, strerror(errno));
    *got = (size_t)n;
    return TDE_OK;
}

static tde_status
fd_write(void *arg, const uint8_t *buf, size_t len)
{
    int fd = *(int *)arg;

    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tde_error_set(TDE_ERR_IO, "%s: write to fd %d: %s", what, fd,
                                 n < 0 ? strerror(errno) : "wrote nothing");
        buf += n;
        len -= (size_t)n;
    }
    return TDE_OK;
}

tde_status
tde_envelope_seal_fd(tde_masterkey *mk, const tde_envelope_options *opts, int in_fd, int out_fd)
{
    return tde_envelope_seal_stream(mk, opts, fd_read, &in_fd, fd_write, &out_fd);
}

tde_status
tde_envelope_open_fd(tde_masterkey *current, tde_masterkey *previous,
                     const tde_envelope_options *opts, int in_fd, int out_fd,
                     const tde_masterkey **used)
{
    return tde_envelope_open_stream(current, previous, opts, fd_read, &in_fd, fd_write, &out_fd,
                                    used);
}
