/*
 * The aws-kms and tencent-kms providers end to end against the local KMS test
 * servers (HTTPS with a test CA, signatures checked by botocore or the Tencent
 * SDK, real AES-GCM). Compiled once per provider (KMS_AWS or KMS_TENCENT).
 * Nothing here reaches beyond 127.0.0.1: metadata endpoints are either
 * disabled or pointed at the local server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kms_server.h"
#include "masterkey/kms_common.h"
#include "tde/masterkey.h"
#include "testutil.h"

typedef struct flavor {
    const char *kind, *scheme, *key, *key_uri, *key2;
    const char *id_env, *secret_env, *token_env, *meta_disable_env, *file_env, *meta_param;
    const char *file_fmt; /* profile, id, secret */
    const char *fault_5xx, *meta_log, *sig_error, *skew_error;
    const tde_masterkey_provider_vtable *vt;
} flavor;

#define KEY2 "0f0f0f0f-2222-3333-4444-555555555555"
#ifdef KMS_AWS
#define KEY1 "1234abcd-12ab-34cd-56ef-1234567890ab"
static const flavor F = {
    .kind = "aws",
    .scheme = "aws-kms",
    .key = KEY1,
    .key_uri = "alias/tde",
    .key2 = KEY2,
    .id_env = "AWS_ACCESS_KEY_ID",
    .secret_env = "AWS_SECRET_ACCESS_KEY",
    .token_env = "AWS_SESSION_TOKEN",
    .meta_disable_env = "AWS_EC2_METADATA_DISABLED",
    .file_env = "AWS_SHARED_CREDENTIALS_FILE",
    .meta_param = "imds_endpoint",
    .file_fmt = "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
    .fault_5xx = "500",
    .meta_log = "IMDS ",
    .sig_error = "InvalidSignatureException",
    .skew_error = "Signature expired",
    .vt = &masterkey_aws_kms_vtable,
};
#else
#define KEY1 "23e80852-1e38-11e9-b129-5cb9019b4b01"
static const flavor F = {
    .kind = "tencent",
    .scheme = "tencent-kms",
    .key = KEY1,
    .key_uri = KEY1,
    .key2 = KEY2,
    .id_env = "TENCENTCLOUD_SECRET_ID",
    .secret_env = "TENCENTCLOUD_SECRET_KEY",
    .token_env = "TENCENTCLOUD_SESSION_TOKEN",
    .meta_disable_env = "TENCENTCLOUD_METADATA_DISABLED",
    .file_env = "TENCENTCLOUD_CREDENTIALS_FILE",
    .meta_param = "metadata_endpoint",
    .file_fmt = "[%s]\nsecret_id = %s\nsecret_key = %s\n",
    .fault_5xx = "502",
    .meta_log = "Metadata ",
    .sig_error = "AuthFailure.SignatureFailure",
    .skew_error = "AuthFailure.SignatureExpire",
    .vt = &masterkey_tencent_kms_vtable,
};
#endif

#define TEST_ID "AKIDTEST"
#define TEST_SECRET "testsecret-3f9a2c"

static kms_server S;
static time_t clock_offset;

static time_t
test_clock(void)
{
    return time(NULL) + clock_offset;
}

static void
plain_env(void)
{
    setenv(F.id_env, TEST_ID, 1);
    setenv(F.secret_env, TEST_SECRET, 1);
    unsetenv(F.token_env);
    unsetenv(F.file_env);
    setenv(F.meta_disable_env, "true", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_ROLE_ARN");
    unsetenv("AWS_PROFILE");
    unsetenv("TENCENTCLOUD_PROFILE");
    setenv("HOME", S.dir, 1); /* no ~/.aws or ~/.tencentcloud of the machine */
}

static const char *server_args[] = {"--key",
                                    KEY1,
                                    "--key",
                                    KEY2,
                                    "--cred",
                                    TEST_ID ":" TEST_SECRET,
#ifdef KMS_AWS
                                    "--alias",
                                    "alias/tde=" KEY1,
                                    "--web-identity-token",
                                    "web-token-42",
#endif
                                    NULL};

static int
group_setup(void **state)
{
    (void)state;
    kms_server_init(&S, F.kind);
    kms_server_start(&S, 0, server_args);
    plain_env();
    kms_clock = test_clock;
    tde_status st = tde_masterkey_register(F.vt);
    assert_int_equal(st, TDE_ERR_EXISTS); /* built in */
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    kms_server_fini(&S);
    return 0;
}

static int
test_setup(void **state)
{
    (void)state;
    if (S.pid == 0) /* a failed test left it stopped */
        kms_server_start(&S, S.port, server_args);
    plain_env();
    clock_offset = 0;
    kms_server_fault(&S, "{}");
    kms_server_reset_log(&S);
    return 0;
}

/* Opens "<scheme>://us-east-1/<key>?endpoint=...&ca_file=...<more>". */
static tde_status
open_mk(tde_masterkey **mk, const char *more)
{
    char uri[2048];
    snprintf(uri, sizeof(uri), "%s://ap-guangzhou/%s?endpoint=%s&ca_file=%s/ca.pem%s", F.scheme,
             F.key_uri, S.endpoint, S.certs, more ? more : "");
    return tde_masterkey_open(mk, uri);
}

static void
wrap_ok(tde_masterkey *mk, const char *aad, const char *secret, uint8_t **blob, size_t *len)
{
    assert_tde_ok(tde_masterkey_wrap(mk, (const uint8_t *)aad, strlen(aad), (const uint8_t *)secret,
                                     strlen(secret), blob, len));
}

static void
unwrap_ok(tde_masterkey *mk, const char *aad, const uint8_t *blob, size_t len, const char *want)
{
    tde_secret *pt = NULL;
    assert_tde_ok(tde_masterkey_unwrap(mk, (const uint8_t *)aad, strlen(aad), blob, len, &pt));
    assert_int_equal(tde_secret_len(pt), strlen(want));
    assert_memory_equal(tde_secret_data(pt), want, strlen(want));
    tde_secret_free(pt);
}

static tde_status
unwrap_st(tde_masterkey *mk, const char *aad, const uint8_t *blob, size_t len)
{
    tde_secret *pt = NULL;
    tde_status st = tde_masterkey_unwrap(mk, (const uint8_t *)aad, strlen(aad), blob, len, &pt);
    if (st == TDE_OK)
        tde_secret_free(pt);
    return st;
}

static void
test_cloudkms_kms_is_called_once_per_start(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blobs[3];
    size_t lens[3];
    const char *secrets[3] = {"data key one", "data key two", "a third secret"};

    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(kms_server_count(&S, ""), 0); /* open never calls the KMS */
    char want_id[256];
    snprintf(want_id, sizeof(want_id), "ap-guangzhou/%s", F.key_uri);
    assert_string_equal(tde_masterkey_key_id(mk), want_id);
    for (int i = 0; i < 3; i++)
        wrap_ok(mk, "file-1", secrets[i], &blobs[i], &lens[i]);
    for (int i = 0; i < 3; i++)
        unwrap_ok(mk, "file-1", blobs[i], lens[i], secrets[i]);
    assert_int_equal(kms_server_count(&S, "GenerateDataKey "), 1);
    assert_int_equal(kms_server_count(&S, ""), 1);
    tde_masterkey_free(mk);

    /* A new start: one Decrypt, then everything (including new wraps) is local. */
    kms_server_reset_log(&S);
    assert_tde_ok(open_mk(&mk, NULL));
    for (int i = 0; i < 3; i++)
        unwrap_ok(mk, "file-1", blobs[i], lens[i], secrets[i]);
    uint8_t *b;
    size_t n;
    wrap_ok(mk, "file-2", "later secret", &b, &n);
    unwrap_ok(mk, "file-2", b, n, "later secret");
    assert_int_equal(kms_server_count(&S, "Decrypt "), 1);
    assert_int_equal(kms_server_count(&S, ""), 1);
    free(b);
    tde_masterkey_free(mk);
    for (int i = 0; i < 3; i++)
        free(blobs[i]);
}

static void
test_cloudkms_envelope_blob_is_authenticated(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;

    assert_tde_ok(open_mk(&mk, NULL));
    wrap_ok(mk, "aad", "0123456789abcdef0123456789abcdef", &blob, &len);
    assert_int_equal(unwrap_st(mk, "other aad", blob, len), TDE_ERR_AUTH);
    /* Every single-byte change fails; none decrypts. Header changes that make the
     * blob name another KMS ciphertext would call the KMS: the cache is warm, so
     * they fail locally or at the KMS, never with TDE_OK. */
    for (size_t i = 0; i < len; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, blob, len);
        copy[i] ^= 0x01;
        assert_int_not_equal(unwrap_st(mk, "aad", copy, len), TDE_OK);
        free(copy);
    }
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, blob, cut);
        assert_int_not_equal(unwrap_st(mk, "aad", copy, cut), TDE_OK);
        free(copy);
    }
    free(blob);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_encryption_context_end_to_end(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL, *other = NULL;
    uint8_t *blob;
    size_t len;

    /* Envelope mode: the ctx_* parameters bind the data key at the KMS. */
    assert_tde_ok(open_mk(&mk, "&ctx_cluster=pg1"));
    wrap_ok(mk, "aad", "secret", &blob, &len);
    assert_tde_ok(open_mk(&other, "&ctx_cluster=pg2"));
    assert_int_equal(unwrap_st(other, "aad", blob, len), TDE_ERR_AUTH);
    assert_int_equal(kms_server_count(&S, "Decrypt "), 1);
    tde_masterkey_free(other);
    assert_tde_ok(open_mk(&other, "&ctx_cluster=pg1"));
    unwrap_ok(other, "aad", blob, len, "secret");
    tde_masterkey_free(other);
    tde_masterkey_free(mk);
    free(blob);

    /* Direct mode: every secret goes to KMS Encrypt, the aad in the EncryptionContext. */
    kms_server_reset_log(&S);
    assert_tde_ok(open_mk(&mk, "&mode=direct&ctx_cluster=pg1"));
    wrap_ok(mk, "aad-1", "small secret", &blob, &len);
    unwrap_ok(mk, "aad-1", blob, len, "small secret");
    assert_int_equal(unwrap_st(mk, "aad-2", blob, len), TDE_ERR_AUTH);
    assert_int_equal(kms_server_count(&S, "Encrypt "), 1);
    assert_int_equal(kms_server_count(&S, "Decrypt "), 2);
    free(blob);

    tde_secret *key = NULL;
    assert_tde_ok(
        tde_masterkey_generate_data_key(mk, 32, (const uint8_t *)"k", 1, &key, &blob, &len));
    assert_int_equal(kms_server_count(&S, "GenerateDataKey "), 1);
    tde_secret *back = NULL;
    assert_tde_ok(tde_masterkey_unwrap(mk, (const uint8_t *)"k", 1, blob, len, &back));
    assert_int_equal(tde_secret_len(back), 32);
    assert_memory_equal(tde_secret_data(back), tde_secret_data(key), 32);
    tde_secret_free(key);
    tde_secret_free(back);
    free(blob);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_retries_5xx_and_throttling_then_gives_up(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    char fault[128];

    snprintf(fault, sizeof(fault), "{\"mode\": \"%s\", \"count\": 2}", F.fault_5xx);
    kms_server_fault(&S, fault);
    assert_tde_ok(open_mk(&mk, "&mode=direct"));
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, "Encrypt "), 3);

    kms_server_reset_log(&S);
    kms_server_fault(&S, "{\"mode\": \"throttle\", \"count\": 3}");
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, "Encrypt "), 4);

    kms_server_reset_log(&S);
    kms_server_fault(&S, "{\"mode\": \"throttle\", \"count\": -1}");
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "gave up after 4 attempts"));
    assert_int_equal(kms_server_count(&S, "Encrypt "), 4);
    tde_masterkey_free(mk);

    /* retries=1: a single attempt. */
    kms_server_reset_log(&S);
    assert_tde_ok(open_mk(&mk, "&mode=direct&retries=1"));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_UNAVAILABLE);
    assert_int_equal(kms_server_count(&S, "Encrypt "), 1);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_malformed_reply_is_a_protocol_error(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    kms_server_fault(&S, "{\"mode\": \"malformed\", \"count\": 1}");
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_PROTOCOL);
    assert_non_null(strstr(tde_last_error(), F.scheme));
    assert_int_equal(kms_server_count(&S, ""), 1); /* not retried */
    wrap_ok(mk, "", "x", &blob, &len);             /* the next call works */
    free(blob);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_wrong_signature_is_refused(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;

    kms_server_fault(&S, "{\"mode\": \"badsig\", \"count\": 1}");
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), F.sig_error));
    tde_masterkey_free(mk);

    /* A wrong secret: the server's independent signer disagrees. */
    setenv(F.secret_env, "not-the-secret", 1);
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), F.sig_error));
    assert_null(strstr(tde_last_error(), "not-the-secret"));
    tde_masterkey_free(mk);
}

static void
test_cloudkms_clock_skew_is_named(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;

    clock_offset = 3600; /* our clock is an hour fast */
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), F.skew_error));
    assert_non_null(strstr(tde_last_error(), "clock"));
    clock_offset = 0;
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    tde_masterkey_free(mk);

    /* The server's clock is off instead. */
    kms_server_fault(&S, "{\"mode\": \"skew\", \"seconds\": -900, \"count\": 1}");
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "clock"));
    tde_masterkey_free(mk);
}

static void
test_cloudkms_slow_server_times_out(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    struct timespec t0, t1;

    kms_server_fault(&S, "{\"mode\": \"slow\", \"seconds\": 3, \"count\": 2}");
    assert_tde_ok(open_mk(&mk, "&timeout_ms=400&retries=2"));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(strstr(tde_last_error(), "timed out"));
    /* Two bounded attempts and one backoff: well under the server's 3 s delay each. */
    assert_true(t1.tv_sec - t0.tv_sec < 3);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_dropped_connection_is_retried(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    kms_server_fault(&S, "{\"mode\": \"drop\", \"count\": 1}");
    assert_tde_ok(open_mk(&mk, NULL));
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    tde_masterkey_free(mk);

    kms_server_fault(&S, "{\"mode\": \"drop\", \"count\": -1}");
    assert_tde_ok(open_mk(&mk, "&retries=2"));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_UNAVAILABLE);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_down_at_start_then_retry_works(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    int port = S.port;

    assert_tde_ok(open_mk(&mk, NULL));
    wrap_ok(mk, "aad", "survives restarts", &blob, &len);
    tde_masterkey_free(mk);

    kms_server_stop(&S);
    assert_tde_ok(open_mk(&mk, "&retries=2"));
    assert_int_equal(unwrap_st(mk, "aad", blob, len), TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "cannot reach"));
    assert_non_null(strstr(tde_last_error(), F.scheme));

    /* The KMS comes back (same keys, same port): the same handle now works. */
    kms_server_start(&S, port, server_args);
    unwrap_ok(mk, "aad", blob, len, "survives restarts");
    tde_masterkey_free(mk);
    free(blob);
}

static void
test_cloudkms_kms_answering_with_another_key_is_auth(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;

    assert_tde_ok(open_mk(&mk, NULL));
    wrap_ok(mk, "aad", "secret", &blob, &len);
    tde_masterkey_free(mk);
    kms_server_fault(&S, "{\"mode\": \"otherkey\", \"count\": 1}");
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(unwrap_st(mk, "aad", blob, len), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "answered with key"));
    unwrap_ok(mk, "aad", blob, len, "secret");
    tde_masterkey_free(mk);
    free(blob);
}

static void
test_cloudkms_blob_of_another_key_is_auth(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL, *other = NULL;
    uint8_t *blob;
    size_t len;
    char uri[1024];

    assert_tde_ok(open_mk(&mk, "&mode=direct"));
    wrap_ok(mk, "aad", "secret", &blob, &len);
    snprintf(uri, sizeof(uri), "%s://ap-guangzhou/%s?endpoint=%s&ca_file=%s/ca.pem", F.scheme,
             F.key2, S.endpoint, S.certs);
    assert_tde_ok(tde_masterkey_open(&other, uri));
    assert_int_equal(unwrap_st(other, "aad", blob, len), TDE_ERR_AUTH);
    unwrap_ok(mk, "aad", blob, len, "secret");
    tde_masterkey_free(other);
    tde_masterkey_free(mk);
    free(blob);
}

static void
test_cloudkms_tls_verification_stays_on(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    char uri[1024];

    /* Without the test CA the server's certificate is not trusted. */
    snprintf(uri, sizeof(uri), "%s://ap-guangzhou/%s?endpoint=%s&retries=1", F.scheme, F.key_uri,
             S.endpoint);
    assert_tde_ok(tde_masterkey_open(&mk, uri));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "TLS"));
    assert_int_equal(kms_server_count(&S, ""), 0);
    tde_masterkey_free(mk);

    /* Plain HTTP is refused outright. */
    snprintf(uri, sizeof(uri), "%s://ap-guangzhou/%s?endpoint=http://127.0.0.1:%d", F.scheme,
             F.key_uri, S.port);
    assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "https"));
}

static void
test_cloudkms_credentials_file_and_profile(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    char path[700], more[900];

    unsetenv(F.id_env);
    unsetenv(F.secret_env);
    snprintf(path, sizeof(path), "%s/credentials", S.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# test\n");
    fprintf(f, F.file_fmt, "default", "AKIDWRONG", "wrong");
    fprintf(f, F.file_fmt, "prod", TEST_ID, TEST_SECRET);
    fclose(f);

    snprintf(more, sizeof(more), "&credentials_file=%s&profile=prod", path);
    assert_tde_ok(open_mk(&mk, more));
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    tde_masterkey_free(mk);

    /* Through the environment variable, default profile: the wrong key pair. */
    setenv(F.file_env, path, 1);
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    tde_masterkey_free(mk);

    snprintf(more, sizeof(more), "&credentials_file=%s&profile=nosuch", path);
    assert_tde_ok(open_mk(&mk, more));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "nosuch"));
    tde_masterkey_free(mk);
}

static void
test_cloudkms_instance_role_credentials_refresh_before_expiry(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    char more[300];

    unsetenv(F.id_env);
    unsetenv(F.secret_env);
    unsetenv(F.meta_disable_env);
    snprintf(more, sizeof(more), "&mode=direct&%s=%s", F.meta_param, S.endpoint);
    assert_tde_ok(open_mk(&mk, more));
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, F.meta_log), 1);
    /* Role credentials last an hour (AWS server default; Tencent 2 h): be 10 min from
     * expiry and they are fetched again. */
    char fault[96];
    clock_offset = F.kind[0] == 'a' ? 3000 : 6600;
    /* The server's clock moves with ours, so signatures stay within its 5 minutes. */
    snprintf(fault, sizeof(fault), "{\"mode\": \"skew\", \"seconds\": %ld}", (long)clock_offset);
    kms_server_fault(&S, fault);
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, F.meta_log), 1);
    clock_offset += 400;
    snprintf(fault, sizeof(fault), "{\"mode\": \"skew\", \"seconds\": %ld}", (long)clock_offset);
    kms_server_fault(&S, fault);
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, F.meta_log), 2);
    tde_masterkey_free(mk);
}

#ifdef KMS_AWS
static void
test_cloudkms_web_identity_credentials(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    char path[700], more[300];

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    snprintf(path, sizeof(path), "%s/web-token", S.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("web-token-42\n", f);
    fclose(f);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/tde", 1);
    snprintf(more, sizeof(more), "&sts_endpoint=%s", S.endpoint);
    assert_tde_ok(open_mk(&mk, more));
    wrap_ok(mk, "", "x", &blob, &len);
    free(blob);
    assert_int_equal(kms_server_count(&S, "AssumeRoleWithWebIdentity 200"), 1);
    tde_masterkey_free(mk);

    f = fopen(path, "w");
    fputs("a forged token\n", f);
    fclose(f);
    assert_tde_ok(open_mk(&mk, more));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "AssumeRoleWithWebIdentity"));
    tde_masterkey_free(mk);
}
#endif

static void
test_cloudkms_no_credentials_is_a_clear_error(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    unsetenv(F.id_env);
    unsetenv(F.secret_env);
    assert_tde_ok(open_mk(&mk, NULL));
    assert_int_equal(tde_masterkey_wrap(mk, NULL, 0, (const uint8_t *)"x", 1, &blob, &len),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "no credentials"));
    assert_int_equal(kms_server_count(&S, ""), 0);
    tde_masterkey_free(mk);
}

static void
test_cloudkms_bad_uris_are_refused(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    const char *bad[] = {
        "://ap-guangzhou/?endpoint=https://127.0.0.1:1",       /* no key */
        "://Bad_Region/k",                                     /* region */
        "://ap-guangzhou/k?secret_key=x",                      /* unknown parameter */
        "://ap-guangzhou/k?retries=0",                         /* out of range */
        "://ap-guangzhou/k?timeout_ms=abc",                    /* not a number */
        "://ap-guangzhou/k?mode=fast",                         /* unknown mode */
        "://ap-guangzhou/k?endpoint=ftp://127.0.0.1",          /* not https */
        "://ap-guangzhou/k?endpoint=https://127.0.0.1:1/path", /* path in endpoint */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char uri[256];
        snprintf(uri, sizeof(uri), "%s%s", F.scheme, bad[i]);
        assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_INVALID_ARG);
        assert_non_null(strstr(tde_last_error(), F.scheme));
    }
}

static char captured_logs[16384];

static void
capture(tde_log_level level, const char *msg, void *userdata)
{
    (void)level;
    (void)userdata;
    strncat(captured_logs, msg, sizeof(captured_logs) - strlen(captured_logs) - 2);
    strcat(captured_logs, "\n");
}

static void
test_cloudkms_logs_and_errors_hold_no_secrets(void **state)
{
    (void)state;
    tde_masterkey *mk = NULL;
    uint8_t *blob;
    size_t len;
    captured_logs[0] = '\0';
    tde_set_log_callback(capture, NULL);
    kms_server_fault(&S, "{\"mode\": \"throttle\", \"count\": 1}");
    assert_tde_ok(open_mk(&mk, "&mode=direct"));
    wrap_ok(mk, "", "PLAINTEXT-MARKER", &blob, &len);
    unwrap_ok(mk, "", blob, len, "PLAINTEXT-MARKER");
    tde_set_log_callback(NULL, NULL);
    assert_non_null(strstr(captured_logs, "retrying")); /* something was logged */
    assert_null(strstr(captured_logs, TEST_SECRET));
    assert_null(strstr(captured_logs, "PLAINTEXT-MARKER"));
    assert_null(strstr(captured_logs, "UExBSU5URVhU")); /* its base64 */
    assert_null(memmem(blob, len, "PLAINTEXT-MARKER", 16));
    free(blob);
    tde_masterkey_free(mk);
}

int
main(void)
{
    tde_secret_allow_unlocked(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_cloudkms_kms_is_called_once_per_start, test_setup),
        cmocka_unit_test_setup(test_cloudkms_envelope_blob_is_authenticated, test_setup),
        cmocka_unit_test_setup(test_cloudkms_encryption_context_end_to_end, test_setup),
        cmocka_unit_test_setup(test_cloudkms_retries_5xx_and_throttling_then_gives_up, test_setup),
        cmocka_unit_test_setup(test_cloudkms_malformed_reply_is_a_protocol_error, test_setup),
        cmocka_unit_test_setup(test_cloudkms_wrong_signature_is_refused, test_setup),
        cmocka_unit_test_setup(test_cloudkms_clock_skew_is_named, test_setup),
        cmocka_unit_test_setup(test_cloudkms_slow_server_times_out, test_setup),
        cmocka_unit_test_setup(test_cloudkms_dropped_connection_is_retried, test_setup),
        cmocka_unit_test_setup(test_cloudkms_down_at_start_then_retry_works, test_setup),
        cmocka_unit_test_setup(test_cloudkms_kms_answering_with_another_key_is_auth, test_setup),
        cmocka_unit_test_setup(test_cloudkms_blob_of_another_key_is_auth, test_setup),
        cmocka_unit_test_setup(test_cloudkms_tls_verification_stays_on, test_setup),
        cmocka_unit_test_setup(test_cloudkms_credentials_file_and_profile, test_setup),
        cmocka_unit_test_setup(test_cloudkms_instance_role_credentials_refresh_before_expiry,
                               test_setup),
#ifdef KMS_AWS
        cmocka_unit_test_setup(test_cloudkms_web_identity_credentials, test_setup),
#endif
        cmocka_unit_test_setup(test_cloudkms_no_credentials_is_a_clear_error, test_setup),
        cmocka_unit_test_setup(test_cloudkms_bad_uris_are_refused, test_setup),
        cmocka_unit_test_setup(test_cloudkms_logs_and_errors_hold_no_secrets, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
