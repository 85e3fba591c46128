/* Envelope records: round trips, every-byte tampering, truncation, key choice, re-wrap, vectors. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provider_double.h"
#include "tde/envelope.h"
#include "testutil.h"

/* The key file 00 01 .. 1f (see tests/vectors/envelope_vectors.py). */
static const char master_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char other_hex[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

static char *tmpdir;
static tde_masterkey *mk_a; /* key file master_hex */
static tde_masterkey *mk_b; /* key file other_hex */

struct logbuf {
    char text[65536];
};
static struct logbuf logs;

static void
capture_log(tde_log_level level, const char *msg, void *arg)
{
    struct logbuf *lb = arg;
    size_t used = strlen(lb->text);
    (void)level;
    snprintf(lb->text + used, sizeof(lb->text) - used, "%s\n", msg);
}

static tde_masterkey *
open_keyfile(const char *name, const char *hex)
{
    char path[4096], uri[4200];
    tde_masterkey *mk = NULL;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, hex, 64), 64);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    snprintf(uri, sizeof(uri), "file://%s", path);
    assert_tde_ok(tde_masterkey_open(&mk, uri));
    return mk;
}

static int
setup(void **state)
{
    (void)state;
    tde_secret_allow_unlocked(1);
    tmpdir = test_tmpdir("env");
    tde_set_log_callback(capture_log, &logs);
    mk_a = open_keyfile("a.key", master_hex);
    mk_b = open_keyfile("b.key", other_hex);
    provider_double_register();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tde_masterkey_free(mk_a);
    tde_masterkey_free(mk_b);
    tde_set_log_callback(NULL, NULL);
    test_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

static uint8_t *
pattern(size_t len, uint64_t seed)
{
    uint8_t *p = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)test_rand(&seed);
    return p;
}

/* ---- in-memory streams ---- */

struct membuf {
    uint8_t *data;
    size_t len, cap, pos;
    size_t max_read; /* short reads when non-zero */
};

static tde_status
mem_read(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct membuf *m = arg;
    size_t n = m->len - m->pos;
    if (n > cap)
        n = cap;
    if (m->max_read && n > m->max_read)
        n = m->max_read;
    if (n > 0)
        memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    *got = n;
    return TDE_OK;
}

static tde_status
mem_write(void *arg, const uint8_t *buf, size_t len)
{
    struct membuf *m = arg;
    if (len == 0)
        return TDE_OK;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 16;
        m->data = realloc(m->data, m->cap);
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return TDE_OK;
}

static tde_status
seal_stream_mem(tde_masterkey *mk, const tde_envelope_options *o, const uint8_t *pt, size_t len,
                struct membuf *out)
{
    struct membuf in = {(uint8_t *)pt, len, len, 0, 5};
    memset(out, 0, sizeof(*out));
    return tde_envelope_seal_stream(mk, o, mem_read, &in, mem_write, out);
}

static tde_status
open_stream_mem(tde_masterkey *cur, tde_masterkey *prev, const tde_envelope_options *o,
                const uint8_t *rec, size_t len, struct membuf *out, const tde_masterkey **used)
{
    struct membuf in = {(uint8_t *)rec, len, len, 0, 0};
    memset(out, 0, sizeof(*out));
    return tde_envelope_open_stream(cur, prev, o, mem_read, &in, mem_write, out, used);
}

/* ---- round trips ---- */

static const size_t sizes[] = {0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 65535, 65536, 65537};

static void
test_envelope_buffer_roundtrip_all_sizes_and_providers(void **state)
{
    tde_masterkey *mks[3] = {mk_a, NULL, NULL};
    (void)state;
    assert_tde_ok(tde_masterkey_open(&mks[1], "plaintext-test-only://?id=rt"));
    assert_tde_ok(tde_masterkey_open(&mks[2], "double://?id=rt"));
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            uint8_t *pt = pattern(sizes[i], i + 1), *rec = NULL, *back = NULL;
            size_t rec_len = 0, back_len = 0;
            const tde_masterkey *used = NULL;
            assert_tde_ok(tde_envelope_seal(mks[k], NULL, pt, sizes[i], &rec, &rec_len));
            assert_tde_ok(
                tde_envelope_open(mks[k], NULL, NULL, rec, rec_len, &back, &back_len, &used));
            assert_ptr_equal(used, mks[k]);
            assert_int_equal(back_len, sizes[i]);
            assert_non_null(back);
            if (sizes[i] > 0)
                assert_memory_equal(back, pt, sizes[i]);
            free(back);
            free(rec);
            free(pt);
        }
    }
    tde_masterkey_free(mks[1]);
    tde_masterkey_free(mks[2]);
}

static void
test_envelope_stream_roundtrip_segment_boundaries(void **state)
{
    static const uint32_t segs[] = {1, 16, 64, 0};
    (void)state;
    for (size_t s = 0; s < sizeof(segs) / sizeof(segs[0]); s++) {
        tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
        size_t S = segs[s] ? segs[s] : TDE_ENVELOPE_SEGMENT_DEFAULT;
        size_t lens[] = {0, 1, 15, 16, 17, S - 1, S, S + 1, 2 * S, 2 * S + 1, 5 * S + 3};
        o.segment_size = segs[s];
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            uint8_t *pt = pattern(lens[i], 7 * i + s);
            struct membuf sealed, opened;
            size_t nseg = lens[i] / S + (lens[i] % S != 0) + (lens[i] == 0);
            assert_tde_ok(seal_stream_mem(mk_a, &o, pt, lens[i], &sealed));
            /* Exact size: header, wrapped key, and a tag per segment. */
            assert_int_equal(sealed.len - lens[i] - 16 * nseg, 32 + 111);
            assert_tde_ok(open_stream_mem(mk_a, NULL, &o, sealed.data, sealed.len, &opened, NULL));
            assert_int_equal(opened.len, lens[i]);
            if (lens[i] > 0)
                assert_memory_equal(opened.data, pt, lens[i]);
            free(sealed.data);
            free(opened.data);
            free(pt);
        }
    }
}

static void
test_envelope_stream_random_sizes_and_short_reads(void **state)
{
    uint64_t seed = 0x5eed;
    (void)state;
    for (int round = 0; round < 60; round++) {
        tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
        size_t len = (size_t)(test_rand(&seed) % 5000);
        uint8_t *pt = pattern(len, seed);
        struct membuf in, sealed = {0}, sin, opened = {0};
        o.segment_size = (uint32_t)(1 + test_rand(&seed) % 700);
        in = (struct membuf){pt, len, len, 0, (size_t)(1 + test_rand(&seed) % 900)};
        assert_tde_ok(tde_envelope_seal_stream(mk_a, &o, mem_read, &in, mem_write, &sealed));
        sin = (struct membuf){sealed.data, sealed.len, sealed.len, 0,
                              (size_t)(1 + test_rand(&seed) % 900)};
        assert_tde_ok(
            tde_envelope_open_stream(mk_a, NULL, &o, mem_read, &sin, mem_write, &opened, NULL));
        assert_int_equal(opened.len, len);
        if (len > 0)
            assert_memory_equal(opened.data, pt, len);
        free(opened.data);
        free(sealed.data);
        free(pt);
    }
}

static void
test_envelope_wrapped_key_and_small_secret_roundtrip(void **state)
{
    tde_secret *key = NULL, *back = NULL;
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    const uint8_t secret[] = "database password";
    (void)state;

    assert_tde_ok(tde_envelope_new_key(mk_a, NULL, 32, &key, &rec, &rec_len));
    assert_tde_ok(tde_envelope_unwrap_key(mk_a, NULL, NULL, rec, rec_len, &back, NULL));
    assert_int_equal(tde_secret_len(back), 32);
    assert_memory_equal(tde_secret_data(back), tde_secret_data(key), 32);
    tde_secret_free(back);
    free(rec);
    assert_tde_ok(tde_envelope_wrap_key(mk_a, NULL, key, &rec, &rec_len));
    assert_tde_ok(tde_envelope_unwrap_key(mk_a, NULL, NULL, rec, rec_len, &back, NULL));
    assert_memory_equal(tde_secret_data(back), tde_secret_data(key), 32);
    tde_secret_free(back);
    tde_secret_free(key);
    free(rec);

    assert_tde_ok(tde_envelope_seal_small(mk_a, NULL, secret, sizeof(secret), &rec, &rec_len));
    assert_tde_ok(tde_envelope_open_small(mk_a, NULL, NULL, rec, rec_len, &back, NULL));
    assert_int_equal(tde_secret_len(back), sizeof(secret));
    assert_memory_equal(tde_secret_data(back), secret, sizeof(secret));
    tde_secret_free(back);
    free(rec);
    {
        uint8_t big[TDE_ENVELOPE_SMALL_MAX + 1] = {0};
        assert_tde_ok(
            tde_envelope_seal_small(mk_a, NULL, big, TDE_ENVELOPE_SMALL_MAX, &rec, &rec_len));
        free(rec);
        assert_int_equal(tde_envelope_seal_small(mk_a, NULL, big, sizeof(big), &rec, &rec_len),
                         TDE_ERR_INVALID_ARG);
        assert_null(rec);
    }
}

/* ---- tampering and truncation ---- */

enum kind { K_WRAPPED, K_SMALL, K_BUFFER, K_STREAM };

/* Opens @p rec as @p kind with mk_a and context "ctx"; returns the status. */
static tde_status
open_kind(enum kind kind, const uint8_t *rec, size_t len)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    tde_secret *s = NULL;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    struct membuf out;
    tde_status st = TDE_ERR_INTERNAL;

    o.context = (const uint8_t *)"ctx";
    o.context_len = 3;
    switch (kind) {
    case K_WRAPPED: st = tde_envelope_unwrap_key(mk_a, NULL, &o, rec, len, &s, NULL); break;
    case K_SMALL: st = tde_envelope_open_small(mk_a, NULL, &o, rec, len, &s, NULL); break;
    case K_BUFFER: st = tde_envelope_open(mk_a, NULL, &o, rec, len, &pt, &pt_len, NULL); break;
    case K_STREAM:
        st = open_stream_mem(mk_a, NULL, &o, rec, len, &out, NULL);
        free(out.data);
        break;
    }
    if (st != TDE_OK) {
        assert_null(s);
        assert_null(pt);
    }
    tde_secret_free(s);
    free(pt);
    return st;
}

static void
make_kind(enum kind kind, uint8_t **rec, size_t *len)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t *pt = pattern(40, 99);
    tde_secret *key = NULL;
    struct membuf out;

    o.context = (const uint8_t *)"ctx";
    o.context_len = 3;
    o.segment_size = 16;
    switch (kind) {
    case K_WRAPPED:
        assert_tde_ok(tde_envelope_new_key(mk_a, &o, 32, &key, rec, len));
        tde_secret_free(key);
        break;
    case K_SMALL: assert_tde_ok(tde_envelope_seal_small(mk_a, &o, pt, 40, rec, len)); break;
    case K_BUFFER: assert_tde_ok(tde_envelope_seal(mk_a, &o, pt, 40, rec, len)); break;
    case K_STREAM:
        assert_tde_ok(seal_stream_mem(mk_a, &o, pt, 40, &out));
        *rec = out.data;
        *len = out.len;
        break;
    }
    free(pt);
}

/* Offsets of format-version bytes, which give TDE_ERR_UNSUPPORTED when changed. */
static int
is_version_byte(enum kind kind, size_t i)
{
    return i == 4 || (kind == K_BUFFER && i == 12 + 4) || (kind == K_STREAM && i == 32 + 4);
}

static void
test_envelope_every_byte_flip_is_detected(void **state)
{
    (void)state;
    for (int kind = K_WRAPPED; kind <= K_STREAM; kind++) {
        uint8_t *rec = NULL;
        size_t len = 0;
        make_kind(kind, &rec, &len);
        assert_tde_ok(open_kind(kind, rec, len));
        for (size_t i = 0; i < len; i++) {
            for (int bit = 0; bit < 8; bit += 7) {
                tde_status st;
                rec[i] ^= (uint8_t)(1u << bit);
                st = open_kind(kind, rec, len);
                rec[i] ^= (uint8_t)(1u << bit);
                if (is_version_byte(kind, i) ? st != TDE_ERR_UNSUPPORTED
                                             : (st != TDE_ERR_AUTH && st != TDE_ERR_CORRUPT))
                    print_error("kind %d byte %zu bit %d: %s %s\n", kind, i, bit,
                                tde_status_str(st), tde_last_error());
                if (is_version_byte(kind, i))
                    assert_int_equal(st, TDE_ERR_UNSUPPORTED);
                else
                    assert_true(st == TDE_ERR_AUTH || st == TDE_ERR_CORRUPT);
            }
        }
        free(rec);
    }
}

static void
test_envelope_truncation_at_every_length_is_detected(void **state)
{
    (void)state;
    for (int kind = K_WRAPPED; kind <= K_STREAM; kind++) {
        uint8_t *rec = NULL, *cut;
        size_t len = 0;
        make_kind(kind, &rec, &len);
        for (size_t n = 0; n < len; n++) {
            tde_status st;
            cut = malloc(n ? n : 1); /* exact size, for ASan */
            memcpy(cut, rec, n);
            st = open_kind(kind, cut, n);
            if (st != TDE_ERR_AUTH && st != TDE_ERR_CORRUPT)
                print_error("kind %d length %zu: %s %s\n", kind, n, tde_status_str(st),
                            tde_last_error());
            assert_true(st == TDE_ERR_AUTH || st == TDE_ERR_CORRUPT);
            free(cut);
        }
        /* One byte more is as wrong as one byte less. */
        cut = malloc(len + 1);
        memcpy(cut, rec, len);
        cut[len] = 0;
        assert_true(open_kind(kind, cut, len + 1) == TDE_ERR_CORRUPT ||
                    open_kind(kind, cut, len + 1) == TDE_ERR_AUTH);
        free(cut);
        free(rec);
    }
}

static void
test_envelope_stream_reorder_duplicate_splice_detected(void **state)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t *pt = pattern(64, 5);
    struct membuf a, b, out;
    size_t hdr, seg = 16 + 16;
    uint8_t *copy;
    (void)state;

    o.segment_size = 16;
    assert_tde_ok(seal_stream_mem(mk_a, &o, pt, 64, &a)); /* segments 0..3, 3 is final */
    assert_tde_ok(seal_stream_mem(mk_a, &o, pt, 64, &b));
    hdr = a.len - 4 * seg;
    copy = malloc(a.len);
    /* Swap segments 0 and 1. */
    memcpy(copy, a.data, a.len);
    memcpy(copy + hdr, a.data + hdr + seg, seg);
    memcpy(copy + hdr + seg, a.data + hdr, seg);
    assert_int_equal(open_stream_mem(mk_a, NULL, &o, copy, a.len, &out, NULL), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "segment 0"));
    free(out.data);
    /* Duplicate segment 0 over segment 1. */
    memcpy(copy, a.data, a.len);
    memcpy(copy + hdr + seg, a.data + hdr, seg);
    assert_int_equal(open_stream_mem(mk_a, NULL, &o, copy, a.len, &out, NULL), TDE_ERR_AUTH);
    free(out.data);
    /* Splice stream b's segment 2 into stream a (same master key, same sizes). */
    memcpy(copy, a.data, a.len);
    memcpy(copy + hdr + 2 * seg, b.data + (b.len - 4 * seg) + 2 * seg, seg);
    assert_int_equal(open_stream_mem(mk_a, NULL, &o, copy, a.len, &out, NULL), TDE_ERR_AUTH);
    free(out.data);
    /* Drop the final segment: the last one left is not marked final. */
    assert_int_equal(open_stream_mem(mk_a, NULL, &o, a.data, a.len - seg, &out, NULL),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "(last) failed authentication"));
    free(out.data);
    free(copy);
    free(a.data);
    free(b.data);
    free(pt);
}

/* ---- keys and contexts ---- */

static void
test_envelope_wrong_master_key_names_provider(void **state)
{
    uint8_t *rec = NULL, *pt = NULL;
    size_t rec_len = 0, pt_len = 0;
    (void)state;

    assert_tde_ok(tde_envelope_seal(mk_a, NULL, (const uint8_t *)"x", 1, &rec, &rec_len));
    assert_int_equal(tde_envelope_open(mk_b, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    assert_null(pt);
    assert_non_null(strstr(tde_last_error(), "wrapped by provider file, master key "
                                             "982ad6719d5c9b0a5cc1daed3e4b1106"));
    assert_non_null(strstr(tde_last_error(), tde_masterkey_key_id(mk_b)));
    assert_non_null(strstr(tde_last_error(), "wrong master key"));
    free(rec);
}

static void
test_envelope_wrong_context_fails(void **state)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT, other = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t *rec = NULL, *pt = NULL;
    size_t rec_len = 0, pt_len = 0;
    tde_secret *s = NULL;
    struct membuf sealed, out;
    (void)state;

    o.context = (const uint8_t *)"tenant=1";
    o.context_len = 8;
    other.context = (const uint8_t *)"tenant=2";
    other.context_len = 8;
    assert_tde_ok(tde_envelope_seal(mk_a, &o, (const uint8_t *)"x", 1, &rec, &rec_len));
    assert_int_equal(tde_envelope_open(mk_a, NULL, &other, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    assert_int_equal(tde_envelope_open(mk_a, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    assert_tde_ok(tde_envelope_open(mk_a, NULL, &o, rec, rec_len, &pt, &pt_len, NULL));
    free(pt);
    free(rec);
    assert_tde_ok(tde_envelope_seal_small(mk_a, &o, (const uint8_t *)"x", 1, &rec, &rec_len));
    assert_int_equal(tde_envelope_open_small(mk_a, NULL, &other, rec, rec_len, &s, NULL),
                     TDE_ERR_AUTH);
    free(rec);
    assert_tde_ok(seal_stream_mem(mk_a, &o, (const uint8_t *)"x", 1, &sealed));
    assert_int_equal(open_stream_mem(mk_a, NULL, &other, sealed.data, sealed.len, &out, NULL),
                     TDE_ERR_AUTH);
    free(out.data);
    free(sealed.data);
}

static void
test_envelope_options_are_checked(void **state)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT, zero;
    uint8_t *rec = NULL, big[TDE_ENVELOPE_CONTEXT_MAX + 1] = {0};
    size_t rec_len = 0;
    (void)state;

    memset(&zero, 0, sizeof(zero));
    assert_tde_ok(tde_envelope_seal(mk_a, &zero, big, 1, &rec, &rec_len));
    free(rec);
    o.version = 99;
    assert_int_equal(tde_envelope_seal(mk_a, &o, big, 1, &rec, &rec_len), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "options version 99"));
    o.version = TDE_ENVELOPE_OPTIONS_VERSION;
    o.context_len = 1;
    assert_int_equal(tde_envelope_seal(mk_a, &o, big, 1, &rec, &rec_len), TDE_ERR_INVALID_ARG);
    o.context = big;
    o.context_len = sizeof(big);
    assert_int_equal(tde_envelope_seal(mk_a, &o, big, 1, &rec, &rec_len), TDE_ERR_INVALID_ARG);
    o.context_len = TDE_ENVELOPE_CONTEXT_MAX;
    assert_tde_ok(tde_envelope_seal(mk_a, &o, big, 1, &rec, &rec_len));
    free(rec);
    o.segment_size = TDE_ENVELOPE_SEGMENT_MAX + 1;
    {
        struct membuf out;
        assert_int_equal(seal_stream_mem(mk_a, &o, big, 1, &out), TDE_ERR_INVALID_ARG);
        free(out.data);
    }
}

static void
test_envelope_previous_key_fallback_reports_key_used(void **state)
{
    tde_masterkey *c = NULL;
    uint8_t *rec = NULL, *pt = NULL;
    size_t rec_len = 0, pt_len = 0;
    const tde_masterkey *used = NULL;
    (void)state;

    c = open_keyfile("c.key", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_tde_ok(tde_envelope_seal(mk_a, NULL, (const uint8_t *)"hello", 5, &rec, &rec_len));
    logs.text[0] = '\0';
    /* Current b does not match the record's key id: previous a opens it. */
    assert_tde_ok(tde_envelope_open(mk_b, mk_a, NULL, rec, rec_len, &pt, &pt_len, &used));
    assert_ptr_equal(used, mk_a);
    assert_memory_equal(pt, "hello", 5);
    assert_non_null(strstr(logs.text, "opened with the previous master key (file "));
    free(pt);
    /* Current a matches: it is used, previous b is never needed. */
    assert_tde_ok(tde_envelope_open(mk_a, mk_b, NULL, rec, rec_len, &pt, &pt_len, &used));
    assert_ptr_equal(used, mk_a);
    free(pt);
    /* Neither matches. */
    assert_int_equal(tde_envelope_open(mk_b, c, NULL, rec, rec_len, &pt, &pt_len, &used),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "and the previous one (file"));
    free(rec);
    tde_masterkey_free(c);
}

static void
test_envelope_fallback_on_auth_failure_not_on_unavailable(void **state)
{
    tde_masterkey *cur = NULL, *prev = NULL;
    uint8_t *rec = NULL, *pt = NULL;
    size_t rec_len = 0, pt_len = 0;
    const tde_masterkey *used = NULL;
    (void)state;

    /* Two handles on the same double key: same id, so both match the record. */
    assert_tde_ok(tde_masterkey_open(&cur, "double://?id=fb"));
    assert_tde_ok(tde_masterkey_open(&prev, "double://?id=fb"));
    provider_double_register();
    assert_tde_ok(tde_envelope_seal(cur, NULL, (const uint8_t *)"abc", 3, &rec, &rec_len));
    assert_int_equal(provider_double.calls, 1); /* generate_data_key's wrap */
    assert_int_equal(provider_double.generated, 1);

    /* The current key's unwrap (call 2) fails authentication: previous (call 3) opens. */
    provider_double.fail_at = 2;
    provider_double.fail_status = TDE_ERR_AUTH;
    assert_tde_ok(tde_envelope_open(cur, prev, NULL, rec, rec_len, &pt, &pt_len, &used));
    assert_ptr_equal(used, prev);
    assert_int_equal(provider_double.calls, 3);
    free(pt);

    /* An unreachable provider is reported as is: no fallback (one call only). */
    provider_double.calls = 0;
    provider_double.fail_at = 1;
    provider_double.fail_status = TDE_ERR_UNAVAILABLE;
    assert_int_equal(tde_envelope_open(cur, prev, NULL, rec, rec_len, &pt, &pt_len, &used),
                     TDE_ERR_UNAVAILABLE);
    assert_int_equal(provider_double.calls, 1);
    assert_non_null(strstr(tde_last_error(), "provider double, master key double:fb: unwrap "
                                             "failed: injected failure on call 1"));

    /* A provider failing on the N-th call while sealing a stream. */
    provider_double.calls = 0;
    provider_double.fail_at = 1;
    provider_double.fail_status = TDE_ERR_UNAVAILABLE;
    {
        struct membuf out;
        assert_int_equal(seal_stream_mem(cur, NULL, (const uint8_t *)"abc", 3, &out),
                         TDE_ERR_UNAVAILABLE);
        assert_int_equal(out.len, 0); /* nothing written before the key existed */
        free(out.data);
    }
    free(rec);
    tde_masterkey_free(cur);
    tde_masterkey_free(prev);
}

static void
test_envelope_record_types_cannot_be_confused(void **state)
{
    tde_envelope_options dict = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t key32[32] = {1}, *rec = NULL, *pt = NULL;
    size_t rec_len = 0, pt_len = 0;
    tde_secret *s = NULL;
    (void)state;

    /* An application's sealed 32-byte secret is not a data key. */
    assert_tde_ok(tde_envelope_seal_small(mk_a, NULL, key32, 32, &rec, &rec_len));
    assert_int_equal(tde_envelope_unwrap_key(mk_a, NULL, NULL, rec, rec_len, &s, NULL),
                     TDE_ERR_CORRUPT);
    assert_non_null(strstr(tde_last_error(), "record type 3 (small secret), expected 1"));
    free(rec);

    /* The data key embedded in a sealed buffer is not a standalone data key. */
    assert_tde_ok(tde_envelope_seal(mk_a, NULL, key32, 32, &rec, &rec_len));
    assert_int_equal(tde_envelope_unwrap_key(mk_a, NULL, NULL, rec + 12,
                                             rec_len - 12 - 12 - 8 - 32 - 16, &s, NULL),
                     TDE_ERR_CORRUPT);
    /* A sealed buffer is not a key dictionary, and the other way round. */
    dict.record_type = TDE_RECORD_KEY_DICT;
    assert_int_equal(tde_envelope_open(mk_a, NULL, &dict, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_CORRUPT);
    free(rec);
    assert_tde_ok(tde_envelope_seal(mk_a, &dict, key32, 32, &rec, &rec_len));
    assert_int_equal(rec[5], TDE_RECORD_KEY_DICT);
    assert_int_equal(tde_envelope_open(mk_a, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_CORRUPT);
    assert_tde_ok(tde_envelope_open_to_secret(mk_a, NULL, &dict, rec, rec_len, &s, NULL));
    assert_memory_equal(tde_secret_data(s), key32, 32);
    tde_secret_free(s);
    /* Even with the type byte changed in both places, the tags fail. */
    rec[5] = TDE_RECORD_SEALED_BUFFER;
    rec[12 + 7] = TDE_RECORD_SEALED_BUFFER;
    assert_int_equal(tde_envelope_open(mk_a, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    free(rec);
    dict.record_type = TDE_RECORD_STREAM;
    assert_int_equal(tde_envelope_seal(mk_a, &dict, key32, 32, &rec, &rec_len),
                     TDE_ERR_INVALID_ARG);
}

/* ---- rotation ---- */

static void
test_envelope_rewrap_keeps_bulk_data(void **state)
{
    uint8_t *pt = pattern(5000, 3), *rec = NULL, *re = NULL, *back = NULL;
    size_t rec_len = 0, re_len = 0, back_len = 0, tail = 12 + 8 + 5000 + 16;
    const tde_masterkey *used = NULL;
    tde_secret *s = NULL;
    (void)state;

    assert_tde_ok(tde_envelope_seal(mk_a, NULL, pt, 5000, &rec, &rec_len));
    /* Rotation a -> b, with b current and a previous (as after a config change). */
    assert_tde_ok(tde_envelope_rewrap(mk_b, mk_a, mk_b, NULL, rec, rec_len, &re, &re_len, &used));
    assert_ptr_equal(used, mk_a);
    assert_memory_equal(re + re_len - tail, rec + rec_len - tail, tail); /* IV, length, ct, tag */
    assert_tde_ok(tde_envelope_open(mk_b, NULL, NULL, re, re_len, &back, &back_len, &used));
    assert_ptr_equal(used, mk_b);
    assert_memory_equal(back, pt, 5000);
    free(back);
    assert_int_equal(tde_envelope_open(mk_a, NULL, NULL, re, re_len, &back, &back_len, NULL),
                     TDE_ERR_AUTH);
    free(re);
    free(rec);

    /* Wrapped keys and small secrets. */
    assert_tde_ok(tde_envelope_seal_small(mk_a, NULL, pt, 100, &rec, &rec_len));
    assert_tde_ok(tde_envelope_rewrap(mk_a, NULL, mk_b, NULL, rec, rec_len, &re, &re_len, NULL));
    assert_tde_ok(tde_envelope_open_small(mk_b, NULL, NULL, re, re_len, &s, NULL));
    assert_memory_equal(tde_secret_data(s), pt, 100);
    tde_secret_free(s);
    free(re);
    free(rec);
    assert_tde_ok(tde_envelope_new_key(mk_a, NULL, 16, &s, &rec, &rec_len));
    tde_secret_free(s);
    assert_tde_ok(tde_envelope_rewrap(mk_a, NULL, mk_b, NULL, rec, rec_len, &re, &re_len, NULL));
    assert_tde_ok(tde_envelope_unwrap_key(mk_b, NULL, NULL, re, re_len, &s, NULL));
    assert_int_equal(tde_secret_len(s), 16);
    tde_secret_free(s);
    free(re);
    free(rec);

    /* Streams: segments copied byte for byte. */
    {
        struct membuf sealed, re_s, out;
        struct membuf in;
        assert_tde_ok(seal_stream_mem(mk_a, NULL, pt, 5000, &sealed));
        in = (struct membuf){sealed.data, sealed.len, sealed.len, 0, 0};
        memset(&re_s, 0, sizeof(re_s));
        assert_tde_ok(tde_envelope_rewrap_stream(mk_a, NULL, mk_b, NULL, mem_read, &in, mem_write,
                                                 &re_s, NULL));
        assert_int_equal(re_s.len, sealed.len);
        assert_memory_equal(re_s.data + re_s.len - 5016, sealed.data + sealed.len - 5016, 5016);
        assert_tde_ok(open_stream_mem(mk_b, NULL, NULL, re_s.data, re_s.len, &out, NULL));
        assert_int_equal(out.len, 5000);
        assert_memory_equal(out.data, pt, 5000);
        free(out.data);
        free(re_s.data);
        free(sealed.data);
    }
    free(pt);
}

/* ---- concurrency: rotation while the process keeps using the keys ---- */

static void *
rotate_worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < 100; i++) {
        size_t len = (size_t)(test_rand(&seed) % 3000);
        uint8_t *pt = pattern(len, seed), *rec = NULL, *re = NULL, *back = NULL;
        size_t rec_len = 0, re_len = 0, back_len = 0;
        const tde_masterkey *used = NULL;
        if (tde_envelope_seal(mk_a, NULL, pt, len, &rec, &rec_len) != TDE_OK ||
            tde_envelope_rewrap(mk_b, mk_a, mk_b, NULL, rec, rec_len, &re, &re_len, &used) !=
                TDE_OK ||
            used != mk_a ||
            tde_envelope_open(mk_b, mk_a, NULL, re, re_len, &back, &back_len, &used) != TDE_OK ||
            used != mk_b || back_len != len || (len > 0 && memcmp(back, pt, len) != 0))
            return (void *)1;
        free(back);
        free(re);
        free(rec);
        free(pt);
    }
    return NULL;
}

static void
test_envelope_rotation_while_threads_use_the_keys(void **state)
{
    pthread_t t[4];
    (void)state;
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rotate_worker, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++) {
        void *ret = (void *)1;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
}

/* ---- known answers ---- */

/* Made by tests/vectors/envelope_vectors.py, an independent Python implementation of
 * docs/formats.md, for the key file 00..1f, context "tenant=42" and fixed IVs. */
static const char vec_wrapped_key[] =
    "54444545010100010466696c65002039383261643637313964356339623061356363316461656433653462313130"
    "360000003cc0c1c2c3c4c5c6c7c8c9cacb40096524333dd019d090b7e97ee1a6191c22b16c68b749ed729a11516b"
    "2021e9c7eaa3c7f36a895fae40e13e9174b4e8";
static const char vec_small_secret[] =
    "54444545010300000466696c65002039383261643637313964356339623061356363316461656433653462313130"
    "3600000027c0c1c2c3c4c5c6c7c8c9cacb642a0a17160be529f7ab993ed4fd774f391957c82b6027c9760fbb";
static const char vec_sealed_buffer[] =
    "54444545010201000000006f54444545010100020466696c6500203938326164363731396435633962306135636331"
    "6461656433653462313130360000003cc0c1c2c3c4c5c6c7c8c9cacb40096524333dd019d090b7e97ee1a6191c22b1"
    "6c68b749ed729a11516b2021e9c31af1cb827777af88416555dc18b5a9d0d1d2d3d4d5d6d7d8d9dadb000000000000"
    "0027beb8a2b6953cc532856b4eeed723c95aced3b5d823010edbfc20fb38e23de61402b85c4a31df0adaef5017dfbd"
    "d1a65c90b2efc08647e8";
static const char vec_stream[] =
    "544445450104010000000010e0e1e2e3e4e5e6e7e8e9eaebecedeeef0000006f54444545010100040466696c650020"
    "39383261643637313964356339623061356363316461656433653462313130360000003cc0c1c2c3c4c5c6c7c8c9ca"
    "cb40096524333dd019d090b7e97ee1a6191c22b16c68b749ed729a11516b2021e9cafa55d3604c8a4fc4426d8346c0"
    "b72b3b404419f703f2caacabfc9248934e6602a741d8879a62d88b6d9d30bca73f12ab2ccf2513ad7ddd4c3078fe93"
    "c070db93db16d5704c25773758c55ad2a67a6e6145dffc8b7c424f1e957dd84eb17d7fe38a97c0682ec4";
static const char vec_plaintext[] = "attack at dawn, bring 40 bytes of data.";

static void
test_envelope_golden_vectors_open(void **state)
{
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t rec[512], *pt = NULL, dek[32];
    size_t n, pt_len = 0;
    tde_secret *s = NULL;
    struct membuf out;
    (void)state;

    o.context = (const uint8_t *)"tenant=42";
    o.context_len = 9;
    for (int i = 0; i < 32; i++)
        dek[i] = (uint8_t)(0x40 + i);
    n = test_unhex(vec_wrapped_key, rec, sizeof(rec));
    assert_tde_ok(tde_envelope_unwrap_key(mk_a, NULL, &o, rec, n, &s, NULL));
    assert_memory_equal(tde_secret_data(s), dek, 32);
    tde_secret_free(s);
    n = test_unhex(vec_small_secret, rec, sizeof(rec));
    assert_tde_ok(tde_envelope_open_small(mk_a, NULL, &o, rec, n, &s, NULL));
    assert_int_equal(tde_secret_len(s), 11);
    assert_memory_equal(tde_secret_data(s), "db-password", 11);
    tde_secret_free(s);
    n = test_unhex(vec_sealed_buffer, rec, sizeof(rec));
    assert_tde_ok(tde_envelope_open(mk_a, NULL, &o, rec, n, &pt, &pt_len, NULL));
    assert_int_equal(pt_len, strlen(vec_plaintext));
    assert_memory_equal(pt, vec_plaintext, pt_len);
    free(pt);
    n = test_unhex(vec_stream, rec, sizeof(rec));
    assert_tde_ok(open_stream_mem(mk_a, NULL, &o, rec, n, &out, NULL));
    assert_int_equal(out.len, strlen(vec_plaintext));
    assert_memory_equal(out.data, vec_plaintext, out.len);
    free(out.data);
}

/* The fuzz seeds are the same vectors under plaintext-test-only, without context. */
static void
test_envelope_fuzz_seeds_are_valid_records(void **state)
{
    static const char *names[] = {"wrapped_key", "sealed_buffer", "small_secret", "stream"};
    tde_masterkey *t = NULL;
    (void)state;
    assert_tde_ok(tde_masterkey_open(&t, "plaintext-test-only://"));
    for (int i = 0; i < 4; i++) {
        char path[4096];
        uint8_t buf[1024], *pt = NULL;
        size_t pt_len = 0;
        tde_secret *s = NULL;
        struct membuf out;
        FILE *f;
        size_t n;
        snprintf(path, sizeof(path), "%s/fuzz/corpus/envelope/%s", TDE_SOURCE_DIR, names[i]);
        f = fopen(path, "rb");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_int_equal(buf[0], i);
        switch (i) {
        case 0:
            assert_tde_ok(tde_envelope_unwrap_key(t, NULL, NULL, buf + 1, n - 1, &s, NULL));
            break;
        case 1:
            assert_tde_ok(tde_envelope_open(t, NULL, NULL, buf + 1, n - 1, &pt, &pt_len, NULL));
            break;
        case 2:
            assert_tde_ok(tde_envelope_open_small(t, NULL, NULL, buf + 1, n - 1, &s, NULL));
            break;
        case 3:
            assert_tde_ok(open_stream_mem(t, NULL, NULL, buf + 1, n - 1, &out, NULL));
            free(out.data);
            break;
        }
        tde_secret_free(s);
        free(pt);
    }
    tde_masterkey_free(t);
}

/* ---- secrets stay secret ---- */

static void
test_envelope_key_bytes_never_reach_logs_errors_or_records(void **state)
{
    char errors[16384] = "";
    uint8_t *rec = NULL, *pt = NULL, raw[32];
    size_t rec_len = 0, pt_len = 0;
    tde_masterkey *bad = NULL;
    char uri[4200];
    (void)state;

    logs.text[0] = '\0';
    assert_tde_ok(tde_envelope_seal(mk_a, NULL, (const uint8_t *)"abc", 3, &rec, &rec_len));
    /* Provoke every kind of failure and keep each message. */
    assert_int_equal(tde_envelope_open(mk_b, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    strcat(errors, tde_last_error());
    rec[rec_len - 1] ^= 1;
    assert_int_equal(tde_envelope_open(mk_a, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                     TDE_ERR_AUTH);
    strcat(errors, tde_last_error());
    rec[40] ^= 1;
    assert_int_not_equal(tde_envelope_open(mk_a, NULL, NULL, rec, rec_len, &pt, &pt_len, NULL),
                         TDE_OK);
    strcat(errors, tde_last_error());
    /* A key file with one bad digit: the message gives the position, not the digits. */
    {
        char path[4096], bad_hex[66];
        int fd;
        snprintf(path, sizeof(path), "%s/bad.key", tmpdir);
        memcpy(bad_hex, master_hex, 64);
        bad_hex[63] = 'x';
        bad_hex[64] = '\n';
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_int_equal(write(fd, bad_hex, 65), 65);
        close(fd);
        snprintf(uri, sizeof(uri), "file://%s", path);
        assert_int_equal(tde_masterkey_open(&bad, uri), TDE_ERR_CORRUPT);
        strcat(errors, tde_last_error());
    }
    assert_null(strstr(errors, master_hex));
    assert_null(strstr(logs.text, master_hex));
    assert_null(strstr(errors, "0001020304050607"));
    assert_null(strstr(logs.text, "0001020304050607"));
    /* Neither the master key in binary nor its hex is in any record. */
    test_unhex(master_hex, raw, sizeof(raw));
    assert_null(memmem(rec, rec_len, raw, 8));
    assert_null(memmem(rec, rec_len, master_hex, 16));
    free(rec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_buffer_roundtrip_all_sizes_and_providers),
        cmocka_unit_test(test_envelope_stream_roundtrip_segment_boundaries),
        cmocka_unit_test(test_envelope_stream_random_sizes_and_short_reads),
        cmocka_unit_test(test_envelope_wrapped_key_and_small_secret_roundtrip),
        cmocka_unit_test(test_envelope_every_byte_flip_is_detected),
        cmocka_unit_test(test_envelope_truncation_at_every_length_is_detected),
        cmocka_unit_test(test_envelope_stream_reorder_duplicate_splice_detected),
        cmocka_unit_test(test_envelope_wrong_master_key_names_provider),
        cmocka_unit_test(test_envelope_wrong_context_fails),
        cmocka_unit_test(test_envelope_options_are_checked),
        cmocka_unit_test(test_envelope_previous_key_fallback_reports_key_used),
        cmocka_unit_test(test_envelope_fallback_on_auth_failure_not_on_unavailable),
        cmocka_unit_test(test_envelope_record_types_cannot_be_confused),
        cmocka_unit_test(test_envelope_rewrap_keeps_bulk_data),
        cmocka_unit_test(test_envelope_rotation_while_threads_use_the_keys),
        cmocka_unit_test(test_envelope_golden_vectors_open),
        cmocka_unit_test(test_envelope_fuzz_seeds_are_valid_records),
        cmocka_unit_test(test_envelope_key_bytes_never_reach_logs_errors_or_records),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
