/*
 * KMIP message layer + TLS transport against a real PyKMIP server (run through
 * run_pykmip.sh), plus a misbehaving in-process TLS server for failure cases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "kmip_harness.h"
#include "masterkey/kmip_msg.h"
#include "tde/gcm.h"
#include "tde/secret.h"

static int retry_logs;

static void
count_logs(tde_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    if (strstr(msg, "retry") != NULL)
        retry_logs++;
}

/* Sends @p rq and decodes the reply into @p r. */
static tde_status
call(kmip_client *c, kmip_version v, const kmip_request *rq, kmip_response *r)
{
    uint8_t *req = NULL, *resp = NULL;
    size_t req_len, resp_len;
    tde_status st = kmip_request_encode(v, rq, &req, &req_len);
    if (st != TDE_OK)
        return st;
    st = kmip_client_call(c, req, req_len, 1, &resp, &resp_len);
    kmip_buf_free(req, req_len);
    if (st != TDE_OK)
        return st;
    return kmip_response_decode(r, resp, resp_len, rq->op);
}

/* Calls and expects success; returns the reply. */
static void
call_ok(kmip_client *c, kmip_version v, const kmip_request *rq, kmip_response *r)
{
    assert_tde_ok(call(c, v, rq, r));
    if (r->status != 0)
        print_error("%s: %s: %.*s\n", kmip_op_str(rq->op), kmip_reason_str(r->reason),
                    (int)r->message_len, r->message);
    assert_int_equal(r->status, 0);
}

static void
lifecycle(kmip_version v)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    kmip_response r;
    char uid[128], reg_uid[128], found[128], name[64];
    tde_secret *key = NULL, *key2 = NULL;
    uint8_t mine[32], iv[12], pt[32], ct[32], tag[16], back[32];
    const uint8_t *d, *t;
    size_t dn, tn;

    snprintf(name, sizeof(name), "tde-test-%d.%d-%ld", v.major, v.minor, (long)time(NULL));
    assert_tde_ok(kmip_client_new(&c, &cfg));

    /* Create + Activate + Locate + Get. */
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_CREATE, rq.name = name, rq.usage = KMIP_USAGE_ENCRYPT | KMIP_USAGE_DECRYPT;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_uid(&r, uid, sizeof(uid)));
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ACTIVATE, rq.uid = uid;
    call_ok(c, v, &rq, &r);
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_LOCATE, rq.name = name;
    call_ok(c, v, &rq, &r);
    assert_int_equal(kmip_response_uid_count(&r), 1);
    assert_tde_ok(kmip_response_uid(&r, found, sizeof(found)));
    assert_string_equal(found, uid);
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET, rq.uid = uid;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_key(&r, &key));
    kmip_response_free(&r);

    /* Server-side AES-GCM agrees with local AES-GCM under the fetched key. */
    assert_tde_ok(tde_random_bytes(iv, sizeof(iv)));
    assert_tde_ok(tde_random_bytes(pt, sizeof(pt)));
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ENCRYPT, rq.uid = uid, rq.data = pt, rq.data_len = 32, rq.iv = iv,
    rq.iv_len = 12, rq.aad = (const uint8_t *)"aad", rq.aad_len = 3;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_data(&r, &d, &dn, &t, &tn));
    assert_int_equal(dn, 32);
    assert_int_equal(tn, 16);
    memcpy(ct, d, 32);
    memcpy(tag, t, 16);
    kmip_response_free(&r);
    assert_tde_ok(tde_gcm_open(tde_secret_data(key), 32, iv, 12, (const uint8_t *)"aad", 3, ct, 32,
                               tag, 16, back));
    assert_memory_equal(back, pt, 32);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DECRYPT, rq.uid = uid, rq.data = ct, rq.data_len = 32, rq.iv = iv,
    rq.iv_len = 12, rq.aad = (const uint8_t *)"aad", rq.aad_len = 3, rq.tag = tag, rq.tag_len = 16;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_data(&r, &d, &dn, &t, &tn));
    assert_int_equal(dn, 32);
    assert_memory_equal(d, pt, 32);
    kmip_response_free(&r);
    /* A damaged tag is refused by the server, never decrypted. */
    tag[0] ^= 1;
    assert_tde_ok(call(c, v, &rq, &r));
    assert_int_equal(r.status, 1);
    kmip_response_free(&r);

    /* Register a key we made, and Get it back. */
    assert_tde_ok(tde_random_bytes(mine, sizeof(mine)));
    strcat(name, "-reg");
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_REGISTER, rq.name = name, rq.usage = KMIP_USAGE_ENCRYPT | KMIP_USAGE_DECRYPT,
    rq.key = mine;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_uid(&r, reg_uid, sizeof(reg_uid)));
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET, rq.uid = reg_uid;
    call_ok(c, v, &rq, &r);
    assert_tde_ok(kmip_response_key(&r, &key2));
    assert_memory_equal(tde_secret_data(key2), mine, 32);
    kmip_response_free(&r);

    /* Destroy refuses an active key; Revoke then Destroy; then Get finds nothing. */
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DESTROY, rq.uid = uid;
    assert_tde_ok(call(c, v, &rq, &r));
    assert_int_equal(r.status, 1);
    assert_int_equal(r.reason, KMIP_REASON_PERMISSION_DENIED);
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_REVOKE, rq.uid = uid, rq.revocation_reason = 6;
    call_ok(c, v, &rq, &r);
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DESTROY, rq.uid = uid;
    call_ok(c, v, &rq, &r);
    kmip_response_free(&r);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_GET, rq.uid = uid;
    assert_tde_ok(call(c, v, &rq, &r));
    assert_int_equal(r.status, 1);
    assert_int_equal(r.reason, KMIP_REASON_ITEM_NOT_FOUND);
    kmip_response_free(&r);

    tde_secret_free(key);
    tde_secret_free(key2);
    kmip_client_free(c);
}

static void
test_kmip_lifecycle_1_4(void **state)
{
    (void)state;
    lifecycle((kmip_version){1, 4});
}

static void
test_kmip_lifecycle_2_0(void **state)
{
    (void)state;
    lifecycle((kmip_version){2, 0});
}

static void
test_kmip_query_and_discover_versions(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    kmip_response r;
    const kmip_version mine[] = {{2, 0}, {1, 4}, {1, 2}, {1, 0}};
    kmip_version got[KMIP_MAX_VERSIONS];
    size_t n;
    (void)state;

    assert_tde_ok(kmip_client_new(&c, &cfg));
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    call_ok(c, (kmip_version){1, 4}, &rq, &r);
    assert_true(kmip_response_has_op(&r, KMIP_OP_ENCRYPT));
    assert_true(kmip_response_has_op(&r, KMIP_OP_GET));
    kmip_response_free(&r);

    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_DISCOVER_VERSIONS, rq.versions = mine, rq.n_versions = 4;
    call_ok(c, (kmip_version){1, 1}, &rq, &r);
    assert_tde_ok(kmip_response_versions(&r, got, KMIP_MAX_VERSIONS, &n));
    /* PyKMIP 0.10 speaks all four; the first is the one to use. */
    assert_true(n >= 1);
    assert_int_equal(kmip_version_cmp(got[0], mine[0]), 0);
    kmip_response_free(&r);
    kmip_client_free(c);
}

static void
test_kmip_default_tls_policy_refuses_pykmip_suites(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    uint8_t *resp = NULL;
    size_t n;
    const uint8_t junk[8] = {0};
    char peer[64];
    (void)state;

    cfg.ciphers = NULL;
    assert_tde_ok(kmip_client_new(&c, &cfg));
    assert_int_equal(kmip_client_call(c, junk, 8, 1, &resp, &n), TDE_ERR_AUTH);
    snprintf(peer, sizeof(peer), "127.0.0.1:%d", cfg.port);
    assert_non_null(strstr(tde_last_error(), peer));
    assert_non_null(strstr(tde_last_error(), "tls_ciphers"));
    kmip_client_free(c);
}

static void
test_kmip_wrong_client_certificate_is_refused(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    kmip_response r;
    (void)state;

    cfg.cert_file = harness_cert("rogue-client.crt");
    cfg.key_file = harness_cert("rogue-client.key");
    assert_tde_ok(kmip_client_new(&c, &cfg));
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    {
        tde_status st = call(c, (kmip_version){1, 4}, &rq, &r);
        /* TLS 1.2: the server's alert arrives in the handshake (AUTH) or, at worst, as a close. */
        assert_true(st == TDE_ERR_AUTH || st == TDE_ERR_UNAVAILABLE);
    }
    assert_non_null(strstr(tde_last_error(), "127.0.0.1:"));
    kmip_client_free(c);

    /* A key that does not match its certificate is caught at set-up. */
    cfg = harness_config();
    cfg.key_file = harness_cert("rogue-client.key");
    assert_int_equal(kmip_client_new(&c, &cfg), TDE_ERR_IO);
    assert_non_null(strstr(tde_last_error(), "rogue-client.key"));
    cfg = harness_config();
    cfg.ca_file = harness_cert("missing.crt");
    assert_int_equal(kmip_client_new(&c, &cfg), TDE_ERR_IO);
    assert_non_null(strstr(tde_last_error(), "missing.crt"));
}

static void
test_kmip_untrusted_server_certificate_is_refused(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    uint8_t *resp = NULL;
    size_t n;
    const uint8_t junk[8] = {0};
    (void)state;

    cfg.ca_file = harness_cert("rogue-ca.crt");
    cfg.retries = 3;
    retry_logs = 0;
    assert_tde_ok(kmip_client_new(&c, &cfg));
    assert_int_equal(kmip_client_call(c, junk, 8, 1, &resp, &n), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "certificate"));
    /* Verification failures are not retried. */
    assert_int_equal(retry_logs, 0);
    kmip_client_free(c);
}

static void
test_kmip_server_name_mismatch_is_refused(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    uint8_t *resp = NULL;
    size_t n;
    const uint8_t junk[8] = {0};
    fake_server *f;
    (void)state;

    cfg.ciphers = NULL;
    f = fake_start(FAKE_WRONGNAME, &cfg.port);
    assert_tde_ok(kmip_client_new(&c, &cfg));
    assert_int_equal(kmip_client_call(c, junk, 8, 1, &resp, &n), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "mismatch"));
    kmip_client_free(c);
    fake_stop(f);
}

static void
test_kmip_server_down_is_unavailable_after_bounded_retries(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    uint8_t *resp = NULL;
    size_t n;
    const uint8_t junk[8] = {0};
    char peer[64];
    struct timespec a, b;
    (void)state;

    cfg.port = harness_dead_port();
    cfg.retries = 2;
    cfg.backoff_ms = 50;
    retry_logs = 0;
    assert_tde_ok(kmip_client_new(&c, &cfg));
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(kmip_client_call(c, junk, 8, 1, &resp, &n), TDE_ERR_UNAVAILABLE);
    clock_gettime(CLOCK_MONOTONIC, &b);
    snprintf(peer, sizeof(peer), "127.0.0.1:%d", cfg.port);
    assert_non_null(strstr(tde_last_error(), peer));
    assert_non_null(strstr(tde_last_error(), "refused"));
    assert_int_equal(retry_logs, 2);
    /* 50 + 100 ms of backoff, and not much more. */
    assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 150);
    assert_true(b.tv_sec - a.tv_sec < 5);
    assert_null(resp);
    kmip_client_free(c);
}

static void
test_kmip_silent_server_times_out(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    uint8_t *resp = NULL;
    size_t n;
    const uint8_t junk[8] = {0};
    fake_server *f;
    struct timespec a, b;
    (void)state;

    f = fake_start(FAKE_SILENT, &cfg.port);
    cfg.io_timeout_ms = 300;
    cfg.retries = 0;
    assert_tde_ok(kmip_client_new(&c, &cfg));
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(kmip_client_call(c, junk, 8, 1, &resp, &n), TDE_ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(strstr(tde_last_error(), "timed out"));
    assert_true(b.tv_sec - a.tv_sec < 3);
    kmip_client_free(c);
    fake_stop(f);
}

/* A server that answers @p mode gives TDE_ERR_PROTOCOL (or a clean close for truncation). */
static void
bad_reply(enum fake_mode mode, tde_status want)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    kmip_response r;
    fake_server *f;

    cfg.ciphers = NULL;
    cfg.retries = 0;
    f = fake_start(mode, &cfg.port);
    assert_tde_ok(kmip_client_new(&c, &cfg));
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    assert_int_equal(call(c, (kmip_version){1, 4}, &rq, &r), want);
    assert_non_null(strstr(tde_last_error(), "127.0.0.1:"));
    kmip_client_free(c);
    fake_stop(f);
}

static void
test_kmip_garbage_replies_are_protocol_errors(void **state)
{
    (void)state;
    bad_reply(FAKE_GARBAGE, TDE_ERR_PROTOCOL);
    bad_reply(FAKE_HUGE, TDE_ERR_PROTOCOL);
    bad_reply(FAKE_TRUNCATED, TDE_ERR_UNAVAILABLE);
}

/* Three Query calls on one client. */
static void
three_queries(enum fake_mode mode, int idempotent)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    fake_server *f;

    cfg.ciphers = NULL;
    cfg.retries = 0;
    cfg.io_timeout_ms = 3000;
    f = fake_start(mode, &cfg.port);
    assert_tde_ok(kmip_client_new(&c, &cfg));
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_QUERY;
    for (int i = 0; i < 3; i++) {
        uint8_t *req = NULL, *resp = NULL;
        size_t req_len, resp_len;
        kmip_response r;
        assert_tde_ok(kmip_request_encode((kmip_version){1, 4}, &rq, &req, &req_len));
        assert_tde_ok(kmip_client_call(c, req, req_len, idempotent, &resp, &resp_len));
        kmip_buf_free(req, req_len);
        assert_tde_ok(kmip_response_decode(&r, resp, resp_len, KMIP_OP_QUERY));
        assert_true(kmip_response_has_op(&r, KMIP_OP_ENCRYPT));
        kmip_response_free(&r);
    }
    kmip_client_free(c);
    fake_stop(f);
}

static void
test_kmip_connection_is_reused(void **state)
{
    (void)state;
    /* The server accepts one connection only: a second one would time out. */
    three_queries(FAKE_KEEP, 1);
}

static void
test_kmip_connection_closed_by_server_is_replaced(void **state)
{
    (void)state;
    /* The server closes after every reply: the kept connection is found dead and replaced. */
    three_queries(FAKE_CLOSE, 1);
    /* Non-idempotent requests never go over a kept connection. */
    three_queries(FAKE_CLOSE, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmip_lifecycle_1_4),
        cmocka_unit_test(test_kmip_lifecycle_2_0),
        cmocka_unit_test(test_kmip_query_and_discover_versions),
        cmocka_unit_test(test_kmip_default_tls_policy_refuses_pykmip_suites),
        cmocka_unit_test(test_kmip_wrong_client_certificate_is_refused),
        cmocka_unit_test(test_kmip_untrusted_server_certificate_is_refused),
        cmocka_unit_test(test_kmip_server_name_mismatch_is_refused),
        cmocka_unit_test(test_kmip_server_down_is_unavailable_after_bounded_retries),
        cmocka_unit_test(test_kmip_silent_server_times_out),
        cmocka_unit_test(test_kmip_garbage_replies_are_protocol_errors),
        cmocka_unit_test(test_kmip_connection_is_reused),
        cmocka_unit_test(test_kmip_connection_closed_by_server_is_replaced),
    };
    tde_set_log_callback(count_logs, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
