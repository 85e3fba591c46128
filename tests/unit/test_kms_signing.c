/*
 * SigV4 and TC3 request signing against golden vectors computed by independent
 * implementations: botocore (tests/cloudkms/vectors/gen_sigv4.py) and the
 * Tencent Cloud Node SDK (tests/cloudkms/vectors/gen_tc3.js).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "masterkey/sigv4.h"
#include "masterkey/tc3.h"
#include "testutil.h"

#define MAX_FIELDS 16
#define MAX_CASES 16

typedef struct vec {
    char *keys[MAX_FIELDS];
    char *values[MAX_FIELDS];
    int n;
} vec;

static const char *
field(const vec *v, const char *key)
{
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0)
            return v->values[i];
    fail_msg("vector lacks %s", key);
    return NULL;
}

/* Reads blank-line separated blocks of key=value lines; '#' lines are comments. */
static int
load(const char *name, vec *out)
{
    char path[1024], line[4096];
    int n = -1, in_block = 0;
    snprintf(path, sizeof(path), "%s/tests/cloudkms/vectors/%s", TDE_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#')
            continue;
        if (line[0] == '\0') {
            in_block = 0;
            continue;
        }
        if (!in_block) {
            n++;
            assert_true(n < MAX_CASES);
            out[n].n = 0;
            in_block = 1;
        }
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        assert_true(out[n].n < MAX_FIELDS);
        out[n].keys[out[n].n] = strdup(line);
        out[n].values[out[n].n] = strdup(eq + 1);
        out[n].n++;
    }
    fclose(f);
    return n + 1;
}

static void
unload(vec *v, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < v[i].n; j++) {
            free(v[i].keys[j]);
            free(v[i].values[j]);
        }
}

static tde_status
sign_sigv4(const vec *v, const char *secret, char *date, char *auth, size_t cap)
{
    time_t now = (time_t)strtoll(field(v, "time"), NULL, 10);
    const char *token = field(v, "token");
    sigv4_date(now, date);
    /* Deliberately unsorted and mixed-case: the signer sorts and lower-cases. */
    sigv4_header hs[] = {
        {"X-Amz-Target", field(v, "target")},
        {"Host", field(v, "host")},
        {"Content-Type", "  application/x-amz-json-1.1 "},
        {"X-Amz-Date", date},
        {"X-Amz-Security-Token", token},
    };
    const char *body = field(v, "body");
    sigv4_request r = {
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = hs,
        .n_headers = token[0] ? 5 : 4,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .region = field(v, "region"),
        .service = "kms",
        .access_key = field(v, "access_key"),
        .secret_key = secret,
        .now = now,
    };
    return sigv4_authorization(&r, auth, cap);
}

static void
test_kms_signing_sigv4_matches_botocore(void **state)
{
    (void)state;
    vec v[MAX_CASES];
    int n = load("sigv4.txt", v);
    assert_true(n >= 4);
    for (int i = 0; i < n; i++) {
        char date[SIGV4_DATE_LEN], auth[512];
        assert_tde_ok(sign_sigv4(&v[i], field(&v[i], "secret_key"), date, auth, sizeof(auth)));
        assert_string_equal(date, field(&v[i], "amz_date"));
        assert_string_equal(auth, field(&v[i], "authorization"));
        /* A wrong secret gives another signature. */
        assert_tde_ok(sign_sigv4(&v[i], "not-the-secret", date, auth, sizeof(auth)));
        assert_string_not_equal(auth, field(&v[i], "authorization"));
        /* Too small an output buffer is an error, never a truncated header. */
        assert_int_equal(sign_sigv4(&v[i], field(&v[i], "secret_key"), date, auth, 40),
                         TDE_ERR_INVALID_ARG);
    }
    unload(v, n);
}

static void
test_kms_signing_sigv4_refuses_too_many_headers(void **state)
{
    (void)state;
    sigv4_header hs[SIGV4_MAX_HEADERS + 1];
    for (int i = 0; i <= SIGV4_MAX_HEADERS; i++)
        hs[i] = (sigv4_header){"x-h", "v"};
    sigv4_request r = {.method = "POST",
                       .path = "/",
                       .query = "",
                       .headers = hs,
                       .n_headers = SIGV4_MAX_HEADERS + 1,
                       .body = (const uint8_t *)"",
                       .region = "r",
                       .service = "kms",
                       .access_key = "a",
                       .secret_key = "s"};
    char auth[512];
    assert_int_equal(sigv4_authorization(&r, auth, sizeof(auth)), TDE_ERR_INVALID_ARG);
}

static tde_status
sign_tc3(const vec *v, time_t delta, char *auth, size_t cap)
{
    const char *body = field(v, "body");
    tc3_request r = {
        .method = "POST",
        .path = "/",
        .query = "",
        .content_type = field(v, "content_type"),
        .host = field(v, "host"),
        .service = "kms",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .secret_id = field(v, "secret_id"),
        .secret_key = field(v, "secret_key"),
        .now = (time_t)strtoll(field(v, "time"), NULL, 10) + delta,
    };
    return tc3_authorization(&r, auth, cap);
}

static void
test_kms_signing_tc3_matches_tencent_sdk(void **state)
{
    (void)state;
    vec v[MAX_CASES];
    int n = load("tc3.txt", v);
    assert_true(n >= 4);
    for (int i = 0; i < n; i++) {
        char auth[512];
        assert_tde_ok(sign_tc3(&v[i], 0, auth, sizeof(auth)));
        assert_string_equal(auth, field(&v[i], "authorization"));
        /* One second later is another request. */
        assert_tde_ok(sign_tc3(&v[i], 1, auth, sizeof(auth)));
        assert_string_not_equal(auth, field(&v[i], "authorization"));
        assert_int_equal(sign_tc3(&v[i], 0, auth, 40), TDE_ERR_INVALID_ARG);
    }
    unload(v, n);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kms_signing_sigv4_matches_botocore),
        cmocka_unit_test(test_kms_signing_sigv4_refuses_too_many_headers),
        cmocka_unit_test(test_kms_signing_tc3_matches_tencent_sdk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
