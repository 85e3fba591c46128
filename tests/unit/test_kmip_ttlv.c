/* KMIP TTLV decoder/encoder against real PyKMIP captures (tests/vectors/kmip/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "masterkey/kmip_ttlv.h"

/* Reads tests/vectors/kmip/<dir>/<name>.hex into an exactly sized heap buffer. */
static uint8_t *
load_vector(const char *dir, const char *name, size_t *len)
{
    char path[1024], *hex;
    uint8_t *out;
    long n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/tests/vectors/kmip/%s/%s.hex", TDE_SOURCE_DIR, dir, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    hex = calloc(1, (size_t)n + 1);
    assert_non_null(hex);
    assert_int_equal(fread(hex, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r'))
        hex[--n] = '\0';
    out = malloc((size_t)n / 2);
    assert_non_null(out);
    *len = test_unhex(hex, out, (size_t)n / 2);
    free(hex);
    return out;
}

static const char *const dirs[] = {"kmip-1.4", "kmip-2.0"};

/* Calls @p fn on every capture of both versions. */
static void
each_vector(void (*fn)(const char *dir, const char *name, const uint8_t *b, size_t len))
{
    for (size_t d = 0; d < 2; d++)
        for (int i = 1; i <= 23; i++)
            for (int r = 0; r < 2; r++) {
                char name[16];
                size_t len;
                uint8_t *b;
                snprintf(name, sizeof(name), "%02d-%s", i, r ? "resp" : "req");
                b = load_vector(dirs[d], name, &len);
                fn(dirs[d], name, b, len);
                free(b);
            }
}

static void
roundtrip_one(const char *dir, const char *name, const uint8_t *b, size_t len)
{
    kmip_tree *t = NULL;
    kmip_enc e;
    uint8_t *out = NULL;
    size_t out_len = 0;
    tde_status st = kmip_ttlv_decode(&t, b, len);

    if (st != TDE_OK)
        print_error("%s/%s: %s\n", dir, name, tde_last_error());
    assert_int_equal(st, TDE_OK);
    kmip_enc_init(&e);
    kmip_enc_item(&e, kmip_tree_root(t));
    assert_tde_ok(kmip_enc_finish(&e, &out, &out_len));
    assert_int_equal(out_len, len);
    assert_memory_equal(out, b, len);
    kmip_buf_free(out, out_len);
    kmip_tree_free(t);
}

static void
test_kmip_ttlv_captures_roundtrip_byte_exact(void **state)
{
    (void)state;
    each_vector(roundtrip_one);
}

static void
truncate_one(const char *dir, const char *name, const uint8_t *b, size_t len)
{
    (void)dir;
    (void)name;
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        kmip_tree *t = NULL;
        assert_non_null(cut);
        memcpy(cut, b, n);
        assert_int_equal(kmip_ttlv_decode(&t, cut, n), TDE_ERR_PROTOCOL);
        assert_null(t);
        free(cut);
    }
}

static void
test_kmip_ttlv_truncation_at_every_byte_fails(void **state)
{
    (void)state;
    each_vector(truncate_one);
}

static void
test_kmip_ttlv_get_response_fields(void **state)
{
    size_t len, klen, ulen;
    uint8_t *b = load_vector("kmip-1.4", "03-resp", &len);
    const kmip_item *root, *item, *payload, *km;
    const uint8_t *key;
    const char *uid;
    uint8_t want[32];
    uint32_t op;
    int32_t major, minor;
    kmip_tree *t = NULL;
    (void)state;

    assert_tde_ok(kmip_ttlv_decode(&t, b, len));
    root = kmip_tree_root(t);
    assert_int_equal(root->tag, 0x42007B);
    item = kmip_item_find(root, 0x42000F);
    assert_tde_ok(kmip_item_enum(kmip_item_find(item, 0x42005C), &op));
    assert_int_equal(op, 10);
    assert_tde_ok(kmip_item_int(
        kmip_item_find(kmip_item_find(kmip_item_find(root, 0x42007A), 0x420069), 0x42006A),
        &major));
    assert_tde_ok(kmip_item_int(
        kmip_item_find(kmip_item_find(kmip_item_find(root, 0x42007A), 0x420069), 0x42006B),
        &minor));
    assert_int_equal(major, 1);
    assert_int_equal(minor, 4);
    payload = kmip_item_find(item, 0x42007C);
    assert_tde_ok(kmip_item_text(kmip_item_find(payload, 0x420094), &uid, &ulen));
    assert_int_equal(ulen, 1);
    assert_memory_equal(uid, "9", 1);
    km = kmip_item_find(
        kmip_item_find(kmip_item_find(kmip_item_find(payload, 0x42008F), 0x420040), 0x420045),
        0x420043);
    assert_tde_ok(kmip_item_bytes(km, &key, &klen));
    test_unhex("24f06cb92cf7db2f4447382b0208494fddebb0a2c37429b9986381e2e9ea273b", want, 32);
    assert_int_equal(klen, 32);
    assert_memory_equal(key, want, 32);
    /* Wrong types are refused. */
    assert_int_equal(kmip_item_int(km, &major), TDE_ERR_PROTOCOL);
    assert_int_equal(kmip_item_text(NULL, &uid, &ulen), TDE_ERR_PROTOCOL);
    kmip_tree_free(t);
    free(b);
}

static void
test_kmip_ttlv_locate_lists_repeated_ids(void **state)
{
    size_t len;
    uint8_t *b = load_vector("kmip-2.0", "09-resp", &len);
    kmip_tree *t = NULL;
    const kmip_item *payload;
    (void)state;

    assert_tde_ok(kmip_ttlv_decode(&t, b, len));
    payload = kmip_item_find(kmip_item_find(kmip_tree_root(t), 0x42000F), 0x42007C);
    assert_int_equal(kmip_item_count(payload, 0x420094), 7);
    kmip_tree_free(t);
    free(b);
}

/* Decodes @p hex, expecting TDE_ERR_PROTOCOL. */
static void
expect_bad(const char *hex)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n);
    kmip_tree *t = NULL;
    assert_non_null(b);
    test_unhex(hex, b, n);
    assert_int_equal(kmip_ttlv_decode(&t, b, n), TDE_ERR_PROTOCOL);
    assert_null(t);
    free(b);
}

static void
expect_good(const char *hex)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n);
    kmip_tree *t = NULL;
    assert_non_null(b);
    test_unhex(hex, b, n);
    assert_tde_ok(kmip_ttlv_decode(&t, b, n));
    kmip_tree_free(t);
    free(b);
}

static void
test_kmip_ttlv_strict_rejections(void **state)
{
    (void)state;
    /* Baselines that must pass, so each bad case differs in one field only. */
    expect_good("42000d02000000040000000100000000");
    expect_good("420078010000001042000d02000000040000000100000000");
    expect_good("4200940700000001"
                "39"
                "00000000000000");
    expect_good("4200940700000003"
                "e282ac"
                "0000000000");
    /* Non-zero padding after an integer. */
    expect_bad("42000d02000000040000000100000001");
    /* Integer with length 8. */
    expect_bad("42000d02000000080000000100000000");
    /* Unknown types 0x00 and 0x0c. */
    expect_bad("42000d00000000040000000100000000");
    expect_bad("42000d0c000000040000000100000000");
    /* Tag outside 0x42xxxx / 0x54xxxx. */
    expect_bad("43000d02000000040000000100000000");
    /* Structure length not a multiple of 8. */
    expect_bad("420078010000000c42000d02000000040000000100000000");
    /* Structure length past the end, and short of its child. */
    expect_bad("420078010000001842000d02000000040000000100000000");
    expect_bad("420078010000000842000d02000000040000000100000000");
    /* Trailing bytes after the message. */
    expect_bad("42000d020000000400000001000000000000000000000000");
    /* Two top-level items. */
    expect_bad("42000d0200000004000000010000000042000d02000000040000000100000000");
    /* Boolean other than 0/1, with wrong length. */
    expect_good("4200060600000008"
                "0000000000000001");
    expect_bad("42000606000000080000000000000002");
    expect_bad("42000606000000040000000100000000");
    /* Text: invalid UTF-8 (lone continuation byte, overlong '/', surrogate). */
    expect_bad("4200940700000001"
               "80"
               "00000000000000");
    expect_bad("4200940700000002"
               "c0af"
               "000000000000");
    expect_bad("4200940700000003"
               "eda080"
               "0000000000");
    /* Text whose padding is non-zero or missing. */
    expect_bad("4200940700000001"
               "39"
               "00000000000001");
    expect_bad("4200940700000001"
               "39");
    /* Big integer not a multiple of 8. */
    expect_bad("4200010400000004"
               "0000000100000000");
    /* Long and date-time with length 4. */
    expect_bad("42000103000000040000000100000000");
    expect_bad("42009209000000040000000100000000");
}

static void
test_kmip_ttlv_bare_item_bounds(void **state)
{
    size_t n = 5000 * 8 + 8;
    uint8_t *b = calloc(1, n);
    kmip_tree *t = NULL;
    (void)state;
    assert_non_null(b);
    /* Structure holding 5000 empty structures: more than KMIP_TTLV_MAX_ITEMS. */
    b[0] = 0x42, b[2] = 0x78, b[3] = KMIP_T_STRUCT;
    b[4] = (uint8_t)((n - 8) >> 24), b[5] = (uint8_t)((n - 8) >> 16);
    b[6] = (uint8_t)((n - 8) >> 8), b[7] = (uint8_t)(n - 8);
    for (size_t i = 8; i < n; i += 8)
        b[i] = 0x42, b[i + 2] = 0x79, b[i + 3] = KMIP_T_STRUCT;
    assert_int_equal(kmip_ttlv_decode(&t, b, n), TDE_ERR_PROTOCOL);
    assert_non_null(strstr(tde_last_error(), "items"));
    free(b);

    /* Nesting: 16 levels decode, 17 do not. */
    for (int depth = 16; depth <= 17; depth++) {
        size_t m = (size_t)depth * 8;
        uint8_t *d = calloc(1, m);
        assert_non_null(d);
        for (int i = 0; i < depth; i++) {
            uint32_t len = (uint32_t)(m - (size_t)(i + 1) * 8);
            d[i * 8] = 0x42, d[i * 8 + 2] = 0x79, d[i * 8 + 3] = KMIP_T_STRUCT;
            d[i * 8 + 6] = (uint8_t)(len >> 8), d[i * 8 + 7] = (uint8_t)len;
        }
        assert_int_equal(kmip_ttlv_decode(&t, d, m), depth == 16 ? TDE_OK : TDE_ERR_PROTOCOL);
        kmip_tree_free(t);
        t = NULL;
        free(d);
    }
}

static void
test_kmip_ttlv_message_len(void **state)
{
    const uint8_t ok[8] = {0x42, 0x00, 0x7b, 0x01, 0x00, 0x00, 0x00, 0xa0};
    const uint8_t big[8] = {0x42, 0x00, 0x7b, 0x01, 0x7f, 0xff, 0xff, 0xf8};
    const uint8_t prim[8] = {0x42, 0x00, 0x7b, 0x02, 0x00, 0x00, 0x00, 0x04};
    size_t total = 0;
    (void)state;
    assert_tde_ok(kmip_ttlv_message_len(ok, KMIP_TTLV_MAX_MESSAGE, &total));
    assert_int_equal(total, 168);
    assert_int_equal(kmip_ttlv_message_len(big, KMIP_TTLV_MAX_MESSAGE, &total), TDE_ERR_PROTOCOL);
    assert_int_equal(kmip_ttlv_message_len(prim, KMIP_TTLV_MAX_MESSAGE, &total), TDE_ERR_PROTOCOL);
    assert_int_equal(kmip_ttlv_message_len(ok, 160, &total), TDE_ERR_PROTOCOL);
}

static void
test_kmip_ttlv_encoder_builds_get_request(void **state)
{
    size_t len, out_len;
    uint8_t *want = load_vector("kmip-1.4", "03-req", &len), *out = NULL;
    kmip_enc e;
    (void)state;

    kmip_enc_init(&e);
    kmip_enc_begin(&e, 0x420078);
    kmip_enc_begin(&e, 0x420077);
    kmip_enc_begin(&e, 0x420069);
    kmip_enc_int(&e, 0x42006A, 1);
    kmip_enc_int(&e, 0x42006B, 4);
    kmip_enc_end(&e);
    kmip_enc_int(&e, 0x42000D, 1);
    kmip_enc_end(&e);
    kmip_enc_begin(&e, 0x42000F);
    kmip_enc_enum(&e, 0x42005C, 10);
    kmip_enc_begin(&e, 0x420079);
    kmip_enc_text(&e, 0x420094, "9", 1);
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    assert_tde_ok(kmip_enc_finish(&e, &out, &out_len));
    assert_int_equal(out_len, len);
    assert_memory_equal(out, want, len);
    kmip_buf_free(out, out_len);

    /* Unbalanced structures are an error, not a silently short message. */
    kmip_enc_init(&e);
    kmip_enc_begin(&e, 0x420078);
    assert_int_equal(kmip_enc_finish(&e, &out, &out_len), TDE_ERR_INTERNAL);
    kmip_enc_init(&e);
    kmip_enc_end(&e);
    assert_int_equal(kmip_enc_finish(&e, &out, &out_len), TDE_ERR_INTERNAL);
    free(want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmip_ttlv_captures_roundtrip_byte_exact),
        cmocka_unit_test(test_kmip_ttlv_truncation_at_every_byte_fails),
        cmocka_unit_test(test_kmip_ttlv_get_response_fields),
        cmocka_unit_test(test_kmip_ttlv_locate_lists_repeated_ids),
        cmocka_unit_test(test_kmip_ttlv_strict_rejections),
        cmocka_unit_test(test_kmip_ttlv_bare_item_bounds),
        cmocka_unit_test(test_kmip_ttlv_message_len),
        cmocka_unit_test(test_kmip_ttlv_encoder_builds_get_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
