/*
 * KMIP message layer against real PyKMIP 1.4 and 2.0 captures
 * (tests/vectors/kmip/README.md): requests are rebuilt byte for byte, responses decoded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "masterkey/kmip_msg.h"
#include "tde/secret.h"

static uint8_t *
load_vector(const char *dir, const char *name, size_t *len)
{
    char path[1024], hex[4096];
    uint8_t *out;
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/tests/vectors/kmip/%s/%s.hex", TDE_SOURCE_DIR, dir, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(hex, 1, sizeof(hex) - 1, f);
    fclose(f);
    while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r'))
        n--;
    hex[n] = '\0';
    out = malloc(n / 2);
    assert_non_null(out);
    *len = test_unhex(hex, out, n / 2);
    return out;
}

/* Depth-first search for the first item with @p tag. */
static const kmip_item *
dfs(const kmip_item *it, uint32_t tag)
{
    for (; it != NULL; it = it->next) {
        const kmip_item *k;
        if (it->tag == tag)
            return it;
        if ((k = dfs(it->kids, tag)) != NULL)
            return k;
    }
    return NULL;
}

static const uint8_t *
bytes_of(const kmip_tree *t, uint32_t tag, size_t *len)
{
    const uint8_t *b = NULL;
    *len = 0;
    if (dfs(kmip_tree_root(t), tag) == NULL)
        return NULL;
    assert_tde_ok(kmip_item_bytes(dfs(kmip_tree_root(t), tag), &b, len));
    return b;
}

/* Rebuilds capture <dir>/<nn>-req from @p rq (data fields taken from the capture itself). */
static void
check_request(const char *dir, kmip_version v, int nn, kmip_request *rq)
{
    char name[16], uid[64] = "";
    size_t len, out_len;
    uint8_t *want, *out = NULL;
    kmip_tree *t = NULL;
    const kmip_item *u;

    snprintf(name, sizeof(name), "%02d-req", nn);
    want = load_vector(dir, name, &len);
    assert_tde_ok(kmip_ttlv_decode(&t, want, len));
    if ((u = dfs(kmip_tree_root(t), 0x420094)) != NULL) {
        const char *s;
        size_t n;
        assert_tde_ok(kmip_item_text(u, &s, &n));
        memcpy(uid, s, n);
        rq->uid = uid;
    }
    rq->key = bytes_of(t, 0x420043, &len);
    rq->data = bytes_of(t, 0x4200C2, &rq->data_len);
    rq->iv = bytes_of(t, 0x42003D, &rq->iv_len);
    rq->aad = bytes_of(t, 0x4200FE, &rq->aad_len);
    rq->tag = bytes_of(t, 0x4200FF, &rq->tag_len);
    assert_tde_ok(kmip_request_encode(v, rq, &out, &out_len));
    if (out_len != kmip_tree_root(t)->len + 8 || memcmp(out, want, out_len) != 0)
        print_error("%s/%s differs\n", dir, name);
    assert_int_equal(out_len, kmip_tree_root(t)->len + 8);
    assert_memory_equal(out, want, out_len);
    kmip_buf_free(out, out_len);
    kmip_tree_free(t);
    free(want);
}

static void
requests_of(const char *dir, kmip_version v)
{
    kmip_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_CREATE, rq.name = "tde-mk-1", rq.usage = 60;
    check_request(dir, v, 1, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ACTIVATE;
    check_request(dir, v, 2, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET;
    check_request(dir, v, 3, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_REGISTER, rq.name = "tde-mk-registered", rq.usage = 12;
    check_request(dir, v, 5, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_LOCATE, rq.name = "tde-mk-1";
    check_request(dir, v, 8, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ENCRYPT;
    check_request(dir, v, 16, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DECRYPT;
    check_request(dir, v, 17, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DECRYPT;
    check_request(dir, v, 18, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DESTROY;
    check_request(dir, v, 19, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_REVOKE, rq.revocation_reason = 6;
    check_request(dir, v, 20, &rq);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    check_request(dir, v, 23, &rq);
}

static void
test_kmip_msg_requests_match_captures_1_4(void **state)
{
    (void)state;
    requests_of("kmip-1.4", (kmip_version){1, 4});
}

static void
test_kmip_msg_requests_match_captures_2_0(void **state)
{
    (void)state;
    requests_of("kmip-2.0", (kmip_version){2, 0});
}

/* Decodes capture <dir>/<nn>-resp as a reply to @p op. */
static void
load_response(kmip_response *r, const char *dir, int nn, uint32_t op)
{
    char name[16];
    size_t len;
    uint8_t *b;
    snprintf(name, sizeof(name), "%02d-resp", nn);
    b = load_vector(dir, name, &len);
    assert_tde_ok(kmip_response_decode(r, b, len, op));
}

static void
test_kmip_msg_responses_decode(void **state)
{
    kmip_response r;
    char uid[64];
    tde_secret *key = NULL;
    const uint8_t *data, *tag;
    size_t n, tn;
    uint8_t want[32];
    (void)state;

    load_response(&r, "kmip-1.4", 1, KMIP_OP_CREATE);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.version.major, 1);
    assert_int_equal(r.version.minor, 4);
    assert_tde_ok(kmip_response_uid(&r, uid, sizeof(uid)));
    assert_string_equal(uid, "9");
    /* A buffer too small for the id is refused, not truncated. */
    assert_int_equal(kmip_response_uid(&r, uid, 1), TDE_ERR_PROTOCOL);
    kmip_response_free(&r);

    load_response(&r, "kmip-2.0", 1, KMIP_OP_CREATE);
    assert_int_equal(r.version.major, 2);
    assert_tde_ok(kmip_response_uid(&r, uid, sizeof(uid)));
    assert_string_equal(uid, "11");
    kmip_response_free(&r);

    load_response(&r, "kmip-1.4", 3, KMIP_OP_GET);
    assert_tde_ok(kmip_response_key(&r, &key));
    test_unhex("24f06cb92cf7db2f4447382b0208494fddebb0a2c37429b9986381e2e9ea273b", want, 32);
    assert_int_equal(tde_secret_len(key), 32);
    assert_memory_equal(tde_secret_data(key), want, 32);
    tde_secret_free(key);
    kmip_response_free(&r);

    load_response(&r, "kmip-2.0", 9, KMIP_OP_LOCATE);
    assert_int_equal(kmip_response_uid_count(&r), 7);
    kmip_response_free(&r);

    load_response(&r, "kmip-2.0", 16, KMIP_OP_ENCRYPT);
    assert_tde_ok(kmip_response_data(&r, &data, &n, &tag, &tn));
    assert_int_equal(n, 32);
    assert_int_equal(tn, 16);
    test_unhex("9b6f004e4652bdb8e30c7706e6386cca", want, 16);
    assert_memory_equal(tag, want, 16);
    kmip_response_free(&r);

    load_response(&r, "kmip-1.4", 17, KMIP_OP_DECRYPT);
    assert_tde_ok(kmip_response_data(&r, &data, &n, &tag, &tn));
    test_unhex("30cfbf05645ec6fc1fe79e263ad4e00af2a219aa772ea6aa2cc043dddff2cf02", want, 32);
    assert_int_equal(n, 32);
    assert_memory_equal(data, want, 32);
    assert_null(tag);
    kmip_response_free(&r);

    load_response(&r, "kmip-1.4", 23, KMIP_OP_QUERY);
    assert_true(kmip_response_has_op(&r, KMIP_OP_ENCRYPT));
    assert_true(kmip_response_has_op(&r, KMIP_OP_DISCOVER_VERSIONS));
    assert_false(kmip_response_has_op(&r, 7));
    kmip_response_free(&r);
}

static void
test_kmip_msg_failures_carry_reason_and_message(void **state)
{
    kmip_response r;
    (void)state;

    load_response(&r, "kmip-1.4", 19, KMIP_OP_DESTROY);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.reason, KMIP_REASON_PERMISSION_DENIED);
    assert_string_equal(kmip_reason_str(r.reason), "PermissionDenied");
    assert_int_equal(r.message_len, 41);
    assert_memory_equal(r.message, "Object is active and cannot be destroyed.", 41);
    kmip_response_free(&r);

    load_response(&r, "kmip-2.0", 22, KMIP_OP_GET);
    assert_int_equal(r.status, 1);
    assert_string_equal(kmip_reason_str(r.reason), "ItemNotFound");
    kmip_response_free(&r);

    load_response(&r, "kmip-2.0", 18, KMIP_OP_DECRYPT);
    assert_string_equal(kmip_reason_str(r.reason), "GeneralFailure");
    kmip_response_free(&r);
    assert_string_equal(kmip_reason_str(9999), "Unknown");
}

static void
test_kmip_msg_rejects_mismatched_replies(void **state)
{
    kmip_response r;
    size_t len;
    uint8_t *b;
    (void)state;

    /* A Get reply given to a Create. */
    b = load_vector("kmip-1.4", "03-resp", &len);
    assert_int_equal(kmip_response_decode(&r, b, len, KMIP_OP_CREATE), TDE_ERR_PROTOCOL);
    /* A request where a response belongs. */
    b = load_vector("kmip-1.4", "03-req", &len);
    assert_int_equal(kmip_response_decode(&r, b, len, KMIP_OP_GET), TDE_ERR_PROTOCOL);
    /* Batch count 2 with one item (the count's low byte is at offset 83 of 03-resp). */
    b = load_vector("kmip-1.4", "03-resp", &len);
    assert_int_equal(b[83], 1);
    b[83] = 2;
    assert_int_equal(kmip_response_decode(&r, b, len, KMIP_OP_GET), TDE_ERR_PROTOCOL);
    /* A Create reply's payload has no key to Get. */
    load_response(&r, "kmip-1.4", 1, KMIP_OP_CREATE);
    {
        tde_secret *key = NULL;
        assert_int_equal(kmip_response_key(&r, &key), TDE_ERR_PROTOCOL);
        assert_null(key);
    }
    kmip_response_free(&r);
}

static void
test_kmip_msg_discover_versions_roundtrip(void **state)
{
    const kmip_version mine[] = {{2, 0}, {1, 4}, {1, 2}};
    kmip_request rq;
    uint8_t *out = NULL;
    size_t out_len, n;
    kmip_tree *t = NULL;
    kmip_response r;
    kmip_version got[KMIP_MAX_VERSIONS];
    kmip_enc e;
    (void)state;

    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DISCOVER_VERSIONS, rq.versions = mine, rq.n_versions = 3;
    assert_tde_ok(kmip_request_encode((kmip_version){1, 1}, &rq, &out, &out_len));
    assert_tde_ok(kmip_ttlv_decode(&t, out, out_len));
    /* 3 versions, each 8 + 2 * 16 bytes, in the payload. */
    assert_int_equal(dfs(kmip_tree_root(t), 0x420079)->len, 3 * 40);
    kmip_tree_free(t);
    kmip_buf_free(out, out_len);

    /* A reply as the spec shapes it (KMIP 1.4 section 4.26), built with the encoder. */
    kmip_enc_init(&e);
    kmip_enc_begin(&e, 0x42007B);
    kmip_enc_begin(&e, 0x42007A);
    kmip_enc_begin(&e, 0x420069);
    kmip_enc_int(&e, 0x42006A, 1);
    kmip_enc_int(&e, 0x42006B, 1);
    kmip_enc_end(&e);
    kmip_enc_datetime(&e, 0x420092, 1795567962);
    kmip_enc_int(&e, 0x42000D, 1);
    kmip_enc_end(&e);
    kmip_enc_begin(&e, 0x42000F);
    kmip_enc_enum(&e, 0x42005C, KMIP_OP_DISCOVER_VERSIONS);
    kmip_enc_enum(&e, 0x42007F, 0);
    kmip_enc_begin(&e, 0x42007C);
    for (int i = 0; i < 2; i++) {
        kmip_enc_begin(&e, 0x420069);
        kmip_enc_int(&e, 0x42006A, mine[i].major);
        kmip_enc_int(&e, 0x42006B, mine[i].minor);
        kmip_enc_end(&e);
    }
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    assert_tde_ok(kmip_enc_finish(&e, &out, &out_len));
    assert_tde_ok(kmip_response_decode(&r, out, out_len, KMIP_OP_DISCOVER_VERSIONS));
    assert_tde_ok(kmip_response_versions(&r, got, KMIP_MAX_VERSIONS, &n));
    assert_int_equal(n, 2);
    assert_int_equal(kmip_version_cmp(got[0], mine[0]), 0);
    assert_int_equal(kmip_version_cmp(got[1], mine[1]), 0);
    assert_true(kmip_version_cmp(got[1], got[0]) < 0);
    kmip_response_free(&r);
}

static void
test_kmip_msg_missing_fields_are_refused(void **state)
{
    kmip_request rq;
    uint8_t *out = NULL;
    size_t len;
    (void)state;
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET;
    assert_int_equal(kmip_request_encode((kmip_version){1, 4}, &rq, &out, &len),
                     TDE_ERR_INVALID_ARG);
    rq.op = KMIP_OP_LOCATE;
    assert_int_equal(kmip_request_encode((kmip_version){2, 0}, &rq, &out, &len),
                     TDE_ERR_INVALID_ARG);
    assert_null(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmip_msg_requests_match_captures_1_4),
        cmocka_unit_test(test_kmip_msg_requests_match_captures_2_0),
        cmocka_unit_test(test_kmip_msg_responses_decode),
        cmocka_unit_test(test_kmip_msg_failures_carry_reason_and_message),
        cmocka_unit_test(test_kmip_msg_rejects_mismatched_replies),
        cmocka_unit_test(test_kmip_msg_discover_versions_roundtrip),
        cmocka_unit_test(test_kmip_msg_missing_fields_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
