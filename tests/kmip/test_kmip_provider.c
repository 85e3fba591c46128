/*
 * The kmip:// master-key provider against a real PyKMIP server (run through
 * run_pykmip.sh): both protection modes, KMIP 1.x and 2.0, rotation to a new
 * key, a server that is down at start-up, and one that goes down while keys
 * are open (the last case kills the server by its pid, KMIP_SERVER_PID).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "testutil.h"
#include "kmip_harness.h"
#include "masterkey/kmip_msg.h"
#include "tde/gcm.h"
#include "tde/masterkey.h"

/* Everything logged, to grep for key bytes. */
static char logbuf[1 << 16];
static size_t loglen;

static void
capture_log(tde_log_level level, const char *msg, void *ud)
{
    int n;
    (void)level;
    (void)ud;
    n = snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%s\n", msg);
    if (n > 0 && loglen + (size_t)n < sizeof(logbuf))
        loglen += (size_t)n;
}

static char run_tag[32];

/* kmip://127.0.0.1:PORT/<name>?ca=..&cert=..&key=..&tls_ciphers=..<extra> (static buffer). */
static const char *
uri_for(int port, const char *name, const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "kmip://127.0.0.1:%d/%s%s?ca=%s&cert=%s&key=%s&tls_ciphers=AES128-SHA256&retries=1"
             "&backoff_ms=50%s",
             port, name, name[0] ? run_tag : "", harness_cert("ca.crt"), harness_cert("client.crt"),
             harness_cert("client.key"), extra);
    return buf;
}

static void
open_ok(tde_masterkey **mk, const char *name, const char *extra)
{
    assert_tde_ok(tde_masterkey_open(mk, uri_for(harness_port(), name, extra)));
}

/* Wraps a 32-byte key and checks unwrap, wrong AAD, tampering and truncation. */
static void
roundtrip(tde_masterkey *mk)
{
    uint8_t dk[32], *blob = NULL;
    size_t blob_len = 0;
    tde_secret *back = NULL;

    assert_tde_ok(tde_random_bytes(dk, sizeof(dk)));
    assert_tde_ok(tde_masterkey_wrap(mk, (const uint8_t *)"ctx", 3, dk, 32, &blob, &blob_len));
    assert_int_equal(blob_len, 1 + 12 + 32 + 16);
    assert_tde_ok(tde_masterkey_unwrap(mk, (const uint8_t *)"ctx", 3, blob, blob_len, &back));
    assert_int_equal(tde_secret_len(back), 32);
    assert_memory_equal(tde_secret_data(back), dk, 32);
    tde_secret_free(back);
    back = NULL;
    assert_int_equal(tde_masterkey_unwrap(mk, (const uint8_t *)"CTX", 3, blob, blob_len, &back),
                     TDE_ERR_AUTH);
    assert_null(back);
    for (size_t i = 0; i < blob_len; i += 7) {
        blob[i] ^= 0x20;
        assert_true(tde_masterkey_unwrap(mk, (const uint8_t *)"ctx", 3, blob, blob_len, &back) !=
                    TDE_OK);
        assert_null(back);
        blob[i] ^= 0x20;
    }
    assert_int_equal(tde_masterkey_unwrap(mk, (const uint8_t *)"ctx", 3, blob, 29, &back),
                     TDE_ERR_CORRUPT);
    free(blob);
}

static void
test_kmip_provider_local_mode_creates_and_wraps(void **state)
{
    tde_masterkey *mk = NULL, *again = NULL;
    (void)state;
    open_ok(&mk, "local", "&create=1");
    assert_string_equal(tde_masterkey_provider_name(mk), "kmip");
    assert_true(strncmp(tde_masterkey_key_id(mk), "kmip:", 5) == 0);
    roundtrip(mk);
    /* Opening it again by name finds the same key, without create. */
    open_ok(&again, "local", "");
    assert_string_equal(tde_masterkey_key_id(again), tde_masterkey_key_id(mk));
    tde_masterkey_free(again);
    tde_masterkey_free(mk);
}

static void
server_mode(const char *version)
{
    tde_masterkey *srv = NULL, *loc = NULL;
    char extra[128];
    uint8_t dk[32], *blob = NULL;
    size_t blob_len;
    tde_secret *back = NULL;

    loglen = 0;
    snprintf(extra, sizeof(extra), "&create=1&mode=server&version=%s", version);
    open_ok(&srv, "srv", extra);
    assert_non_null(strstr(logbuf, "server-side AES-GCM"));
    roundtrip(srv);
    /* The same key in local mode opens the server's blobs: one format for both modes. */
    snprintf(extra, sizeof(extra), "&version=%s", version);
    open_ok(&loc, "srv", extra);
    assert_tde_ok(tde_random_bytes(dk, sizeof(dk)));
    assert_tde_ok(tde_masterkey_wrap(srv, NULL, 0, dk, 32, &blob, &blob_len));
    assert_tde_ok(tde_masterkey_unwrap(loc, NULL, 0, blob, blob_len, &back));
    assert_memory_equal(tde_secret_data(back), dk, 32);
    tde_secret_free(back);
    free(blob);
    tde_masterkey_free(loc);
    tde_masterkey_free(srv);
}

static void
test_kmip_provider_server_mode_1_4(void **state)
{
    (void)state;
    server_mode("1.4");
}

static void
test_kmip_provider_server_mode_2_0(void **state)
{
    (void)state;
    server_mode("2.0");
}

static void
test_kmip_provider_server_mode_falls_back_below_1_4(void **state)
{
    tde_masterkey *mk = NULL;
    (void)state;
    loglen = 0;
    open_ok(&mk, "old", "&create=1&mode=server&version=1.2");
    assert_non_null(strstr(logbuf, "falling back to Get + local AES-256-GCM"));
    roundtrip(mk);
    tde_masterkey_free(mk);
}

static void
test_kmip_provider_every_version_in_local_mode(void **state)
{
    static const char *const versions[] = {"1.0", "1.1", "1.2", "1.3", "1.4", "2.0"};
    tde_masterkey *first = NULL;
    (void)state;
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        tde_masterkey *mk = NULL;
        char extra[64];
        snprintf(extra, sizeof(extra), "&create=1&version=%s", versions[i]);
        loglen = 0;
        open_ok(&mk, "versions", extra);
        assert_non_null(strstr(logbuf, versions[i]));
        roundtrip(mk);
        /* Every dialect finds the same key by name. */
        if (first == NULL)
            first = mk;
        else {
            assert_string_equal(tde_masterkey_key_id(mk), tde_masterkey_key_id(first));
            tde_masterkey_free(mk);
        }
    }
    tde_masterkey_free(first);
}

static void
test_kmip_provider_opens_by_id_and_never_logs_key_bytes(void **state)
{
    kmip_tls_config cfg = harness_config();
    kmip_client *c = NULL;
    kmip_request rq;
    kmip_response r;
    uint8_t key[32], *req = NULL, *resp = NULL, *blob = NULL;
    size_t req_len, resp_len, blob_len;
    char uid[128], extra[256], name[64], hex[65];
    tde_masterkey *mk = NULL;
    tde_secret *back = NULL;
    (void)state;

    /* Register a key we know, through the message layer. */
    assert_tde_ok(tde_random_bytes(key, sizeof(key)));
    snprintf(name, sizeof(name), "known%s", run_tag);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_REGISTER, rq.name = name, rq.key = key;
    rq.usage = KMIP_USAGE_ENCRYPT | KMIP_USAGE_DECRYPT;
    assert_tde_ok(kmip_client_new(&c, &cfg));
    assert_tde_ok(kmip_request_encode((kmip_version){1, 4}, &rq, &req, &req_len));
    assert_tde_ok(kmip_client_call(c, req, req_len, 0, &resp, &resp_len));
    assert_tde_ok(kmip_response_decode(&r, resp, resp_len, KMIP_OP_REGISTER));
    assert_tde_ok(kmip_response_uid(&r, uid, sizeof(uid)));
    kmip_response_free(&r);
    kmip_buf_free(req, req_len);
    memset(&rq, 0, sizeof(rq));
    rq.op = KMIP_OP_ACTIVATE, rq.uid = uid;
    assert_tde_ok(kmip_request_encode((kmip_version){1, 4}, &rq, &req, &req_len));
    assert_tde_ok(kmip_client_call(c, req, req_len, 1, &resp, &resp_len));
    kmip_buf_free(req, req_len);
    kmip_buf_free(resp, resp_len);
    kmip_client_free(c);

    loglen = 0;
    snprintf(extra, sizeof(extra), "&id=%s", uid);
    assert_tde_ok(tde_masterkey_open(&mk, uri_for(harness_port(), "", extra)));
    assert_non_null(strstr(tde_masterkey_key_id(mk), uid));
    /* Local mode wraps with exactly the registered key: check with local AES-GCM. */
    assert_tde_ok(tde_masterkey_wrap(mk, (const uint8_t *)"a", 1, key, 16, &blob, &blob_len));
    {
        uint8_t out[16];
        assert_tde_ok(tde_gcm_open(key, 32, blob + 1, 12, (const uint8_t *)"a", 1, blob + 13, 16,
                                   blob + 29, 16, out));
        assert_memory_equal(out, key, 16);
    }
    assert_tde_ok(tde_masterkey_unwrap(mk, (const uint8_t *)"a", 1, blob, blob_len, &back));
    tde_secret_free(back);
    free(blob);
    tde_masterkey_free(mk);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_true(loglen > 0);
    assert_null(strstr(logbuf, hex));
    assert_null(memmem(logbuf, loglen, key, 8));
}

static void
test_kmip_provider_bad_uris(void **state)
{
    tde_masterkey *mk = NULL;
    char uri[512];
    (void)state;
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "x", "&colour=blue")),
                     TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "colour"));
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "x", "&mode=ecb")),
                     TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "x", "&version=3.0")),
                     TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "x", "&retries=99")),
                     TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "", "")), TDE_ERR_INVALID_ARG);
    snprintf(uri, sizeof(uri), "kmip://127.0.0.1:%d/x", harness_port());
    assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "mutual TLS"));
    /* A name the server does not know, without create=1. */
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "absent", "")),
                     TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "absent"));
    /* An id the server does not know. */
    assert_int_equal(tde_masterkey_open(&mk, uri_for(harness_port(), "", "&id=999999")),
                     TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "ItemNotFound"));
    assert_null(mk);
}

static void
test_kmip_provider_server_down_at_start_up(void **state)
{
    tde_masterkey *mk = NULL;
    int port = harness_dead_port();
    char peer[64];
    (void)state;
    assert_int_equal(tde_masterkey_open(&mk, uri_for(port, "any", "&create=1")),
                     TDE_ERR_UNAVAILABLE);
    snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
    assert_non_null(strstr(tde_last_error(), peer));
    assert_null(mk);
}

/* Polls 127.0.0.1:@p port until connections are refused (at most 10 s). */
static int
wait_port_closed(int port)
{
    for (int i = 0; i < 100; i++) {
        struct sockaddr_in a;
        int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc != 0)
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

/* Re-wraps a blob from @p from to @p to; the old blob stays readable by @p from. */
static void
rewrap(tde_masterkey *from, tde_masterkey *to, const uint8_t *blob, size_t blob_len, uint8_t **out,
       size_t *out_len)
{
    tde_secret *dk = NULL;
    assert_tde_ok(tde_masterkey_unwrap(from, NULL, 0, blob, blob_len, &dk));
    assert_tde_ok(
        tde_masterkey_wrap(to, NULL, 0, tde_secret_data(dk), tde_secret_len(dk), out, out_len));
    tde_secret_free(dk);
}

static void
test_kmip_provider_rotation_and_server_going_down(void **state)
{
    tde_masterkey *a_loc = NULL, *a_srv = NULL, *b = NULL, *c = NULL;
    uint8_t dk[32], *blob_a = NULL, *blob_b = NULL;
    size_t la, lb;
    tde_secret *back = NULL;
    const char *pid_s = getenv("KMIP_SERVER_PID");
    pid_t pid;
    (void)state;

    assert_non_null(pid_s);
    pid = (pid_t)atoi(pid_s);
    open_ok(&a_loc, "rot-a", "&create=1");
    open_ok(&a_srv, "rot-a", "&mode=server");
    assert_string_equal(tde_masterkey_key_id(a_loc), tde_masterkey_key_id(a_srv));
    assert_tde_ok(tde_random_bytes(dk, sizeof(dk)));
    assert_tde_ok(tde_masterkey_wrap(a_loc, NULL, 0, dk, 32, &blob_a, &la));

    /* Rotation to a new KMIP key: B reads what it re-wrapped, never A's blob. */
    open_ok(&b, "rot-b", "&create=1&mode=server");
    assert_string_not_equal(tde_masterkey_key_id(a_loc), tde_masterkey_key_id(b));
    rewrap(a_loc, b, blob_a, la, &blob_b, &lb);
    assert_tde_ok(tde_masterkey_unwrap(b, NULL, 0, blob_b, lb, &back));
    assert_memory_equal(tde_secret_data(back), dk, 32);
    tde_secret_free(back);
    back = NULL;
    assert_int_equal(tde_masterkey_unwrap(b, NULL, 0, blob_a, la, &back), TDE_ERR_AUTH);

    /*
     * The server crashes (SIGKILL by its pid) during a rotation to key C. (A SIGTERM would
     * be a graceful stop: PyKMIP closes its port but serves open sessions to their end.)
     */
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_true(wait_port_closed(harness_port()));
    assert_int_equal(tde_masterkey_open(&c, uri_for(harness_port(), "rot-c", "&create=1")),
                     TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "127.0.0.1:"));
    assert_null(c);
    /* Server-side keys say UNAVAILABLE (never AUTH: nothing is judged corrupt) ... */
    assert_int_equal(tde_masterkey_unwrap(a_srv, NULL, 0, blob_a, la, &back), TDE_ERR_UNAVAILABLE);
    assert_int_equal(tde_masterkey_unwrap(b, NULL, 0, blob_b, lb, &back), TDE_ERR_UNAVAILABLE);
    /* ... and a key fetched at open keeps working through the outage: nothing is lost. */
    assert_tde_ok(tde_masterkey_unwrap(a_loc, NULL, 0, blob_a, la, &back));
    assert_memory_equal(tde_secret_data(back), dk, 32);
    tde_secret_free(back);
    free(blob_a);
    free(blob_b);
    tde_masterkey_free(a_loc);
    tde_masterkey_free(a_srv);
    tde_masterkey_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmip_provider_local_mode_creates_and_wraps),
        cmocka_unit_test(test_kmip_provider_server_mode_1_4),
        cmocka_unit_test(test_kmip_provider_server_mode_2_0),
        cmocka_unit_test(test_kmip_provider_server_mode_falls_back_below_1_4),
        cmocka_unit_test(test_kmip_provider_every_version_in_local_mode),
        cmocka_unit_test(test_kmip_provider_opens_by_id_and_never_logs_key_bytes),
        cmocka_unit_test(test_kmip_provider_bad_uris),
        cmocka_unit_test(test_kmip_provider_server_down_at_start_up),
        /* Last: kills the server. */
        cmocka_unit_test(test_kmip_provider_rotation_and_server_going_down),
    };
    snprintf(run_tag, sizeof(run_tag), "-%ld-%d", (long)time(NULL), (int)getpid());
    tde_set_log_callback(capture_log, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
