/* The cloud KMS plumbing that needs no server: base64, credential files, timestamps, backoff. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "masterkey/kms_common.h"
#include "testutil.h"

static void
test_kms_common_base64_round_trips_rfc4648_vectors(void **state)
{
    (void)state;
    /* RFC 4648 section 10 test vectors. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *e = kms_b64_encode((const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(e, enc[i]);
        free(e);
        uint8_t out[8];
        assert_int_equal(kms_b64_decode(enc[i], strlen(enc[i]), out), (long)strlen(plain[i]));
        assert_memory_equal(out, plain[i], strlen(plain[i]));
    }
}

static void
test_kms_common_base64_rejects_non_canonical_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=", "Zg", "Z===", "Zg=a", "=Zg=", "Zm9v\n", "Zm 9v", "Zm9-", "Zm9_", "Zg==Zg=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kms_b64_decode(bad[i], strlen(bad[i]), NULL), -1);
    tde_secret *s = NULL;
    assert_int_equal(kms_b64_decode_secret("", 0, "Plaintext", &s), TDE_ERR_PROTOCOL);
    assert_int_equal(kms_b64_decode_secret("Zg=", 3, "Plaintext", &s), TDE_ERR_PROTOCOL);
    assert_non_null(strstr(tde_last_error(), "Plaintext"));
    assert_tde_ok(kms_b64_decode_secret("3q2+7w==", 8, "Plaintext", &s));
    assert_int_equal(tde_secret_len(s), 4);
    assert_memory_equal(tde_secret_data(s), "\xde\xad\xbe\xef", 4);
    tde_secret_free(s);
}

static void
test_kms_common_ini_reads_one_profile(void **state)
{
    (void)state;
    char *dir = test_tmpdir("ini"), path[4200];
    snprintf(path, sizeof(path), "%s/credentials", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# comment\n[default]\naws_access_key_id = A1\n\n[ prod ]\r\n"
          "  aws_access_key_id=A2  \n; other\naws_secret_access_key = s = with equals\n"
          "[last]\naws_access_key_id = A3\n",
          f);
    fclose(f);
    const char *keys[] = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"};
    char *v[3];
    assert_tde_ok(kms_ini_read(path, "prod", keys, v, 3));
    assert_string_equal(v[0], "A2");
    assert_string_equal(v[1], "s = with equals");
    assert_null(v[2]);
    for (int i = 0; i < 3; i++)
        free(v[i]);
    assert_int_equal(kms_ini_read(path, "nosuch", keys, v, 3), TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "nosuch"));
    assert_null(v[0]);
    strcat(path, ".missing");
    assert_int_equal(kms_ini_read(path, "default", keys, v, 3), TDE_ERR_NOT_FOUND);
    test_rmtree(dir);
    free(dir);
}

static void
test_kms_common_iso8601_parses_utc_only(void **state)
{
    (void)state;
    assert_int_equal(kms_parse_iso8601("2024-01-01T00:00:00Z"), 1704067200);
    assert_int_equal(kms_parse_iso8601("2024-01-01T00:00:00.123Z"), 1704067200);
    assert_int_equal(kms_parse_iso8601("2024-01-01T00:00:00+00:00"), 1704067200);
    assert_int_equal(kms_parse_iso8601("2024-01-01T00:00:00+08:00"), -1);
    assert_int_equal(kms_parse_iso8601("2024-01-01"), -1);
    assert_int_equal(kms_parse_iso8601(""), -1);
}

static void
test_kms_common_backoff_is_bounded(void **state)
{
    (void)state;
    kms_retry r = {.attempts = 4, .base_ms = 10, .cap_ms = 40};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 1; i <= 20; i++)
        kms_backoff(&r, i);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* 20 sleeps of at most 40 ms each (plus scheduling slack); jitter makes them shorter. */
    assert_true(ms < 20 * 40 + 400);
}

static void
test_kms_common_credentials_keep_the_secret_in_secret_memory(void **state)
{
    (void)state;
    kms_creds c = {0};
    assert_tde_ok(kms_creds_set(&c, "AKID", "s3cr3t", "tok", 42, "test"));
    assert_string_equal(kms_creds_secret(&c), "s3cr3t");
    assert_string_equal(c.token, "tok");
    assert_int_equal(c.expires, 42);
    assert_tde_ok(kms_creds_set(&c, "AKID2", "other", "", 0, "test"));
    assert_null(c.token); /* an empty token is no token */
    kms_creds_clear(&c);
    assert_null(c.id);
    assert_null(c.secret);
}

int
main(void)
{
    tde_secret_allow_unlocked(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kms_common_base64_round_trips_rfc4648_vectors),
        cmocka_unit_test(test_kms_common_base64_rejects_non_canonical_input),
        cmocka_unit_test(test_kms_common_ini_reads_one_profile),
        cmocka_unit_test(test_kms_common_iso8601_parses_utc_only),
        cmocka_unit_test(test_kms_common_backoff_is_bounded),
        cmocka_unit_test(test_kms_common_credentials_keep_the_secret_in_secret_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
