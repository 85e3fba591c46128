/*
 * Master-key rotation across providers, file -> AWS KMS -> Tencent Cloud KMS,
 * through the envelope API, with both local KMS servers running: the data stays
 * readable at every step, and a KMS that is down during rotation leaves the old
 * record usable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms_server.h"
#include "masterkey/kms_common.h"
#include "tde/envelope.h"
#include "tde/masterkey.h"
#include "testutil.h"

#define AWS_KEY "1234abcd-12ab-34cd-56ef-1234567890ab"
#define TC_KEY "23e80852-1e38-11e9-b129-5cb9019b4b01"
#define PAYLOAD "rows of a storage engine, sealed under a data key"

static kms_server aws, tc;

static void
open_or_fail(tde_masterkey **mk, const char *uri)
{
    assert_tde_ok(tde_masterkey_open(mk, uri));
}

static void
expect_payload(tde_masterkey *current, tde_masterkey *previous, const uint8_t *rec, size_t len,
               const tde_masterkey *want_used)
{
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    const tde_masterkey *used = NULL;
    assert_tde_ok(tde_envelope_open(current, previous, NULL, rec, len, &pt, &pt_len, &used));
    assert_int_equal(pt_len, strlen(PAYLOAD));
    assert_memory_equal(pt, PAYLOAD, pt_len);
    assert_ptr_equal(used, want_used);
    free(pt);
}

static void
test_cloudkms_rotation_file_to_aws_to_tencent(void **state)
{
    (void)state;
    const char *aws_args[] = {"--key", AWS_KEY, "--cred", "AKIDAWS:aws-secret", NULL};
    const char *tc_args[] = {"--key", TC_KEY, "--cred", "AKIDTC:tc-secret", NULL};
    char *dir = test_tmpdir("rotation"), path[600], uri[1400];
    tde_masterkey *file = NULL, *a = NULL, *t = NULL;
    uint8_t *rec0 = NULL, *rec1 = NULL, *rec2 = NULL;
    size_t len0, len1, len2;
    const tde_masterkey *used;

    setenv("AWS_ACCESS_KEY_ID", "AKIDAWS", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "aws-secret", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("TENCENTCLOUD_SECRET_ID", "AKIDTC", 1);
    setenv("TENCENTCLOUD_SECRET_KEY", "tc-secret", 1);
    setenv("TENCENTCLOUD_METADATA_DISABLED", "true", 1);
    kms_server_init(&aws, "aws");
    kms_server_init(&tc, "tencent");
    kms_server_start(&aws, 0, aws_args);
    kms_server_start(&tc, 0, tc_args);
    tde_status st = tde_masterkey_register(&masterkey_aws_kms_vtable);
    assert_int_equal(st, TDE_ERR_EXISTS); /* built in */
    st = tde_masterkey_register(&masterkey_tencent_kms_vtable);
    assert_int_equal(st, TDE_ERR_EXISTS); /* built in */

    snprintf(path, sizeof(path), "%s/master.key", dir);
    assert_tde_ok(tde_keyfile_create(path));
    snprintf(uri, sizeof(uri), "file://%s", path);
    open_or_fail(&file, uri);
    snprintf(uri, sizeof(uri), "aws-kms://us-east-1/%s?endpoint=%s&ca_file=%s/ca.pem", AWS_KEY,
             aws.endpoint, aws.certs);
    open_or_fail(&a, uri);
    snprintf(uri, sizeof(uri), "tencent-kms://ap-guangzhou/%s?endpoint=%s&ca_file=%s/ca.pem",
             TC_KEY, tc.endpoint, tc.certs);
    open_or_fail(&t, uri);

    /* Sealed under the key file. */
    assert_tde_ok(
        tde_envelope_seal(file, NULL, (const uint8_t *)PAYLOAD, strlen(PAYLOAD), &rec0, &len0));
    expect_payload(file, NULL, rec0, len0, file);

    /* Rotation to AWS while AWS is down: refused, the old record still opens. */
    kms_server_stop(&aws);
    assert_int_equal(tde_envelope_rewrap(a, file, a, NULL, rec0, len0, &rec1, &len1, &used),
                     TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "aws-kms"));
    expect_payload(a, file, rec0, len0, file);
    kms_server_start(&aws, aws.port, aws_args);

    /* file -> AWS: readable with AWS current and the file previous, then AWS alone. */
    assert_tde_ok(tde_envelope_rewrap(a, file, a, NULL, rec0, len0, &rec1, &len1, &used));
    assert_ptr_equal(used, file);
    expect_payload(a, file, rec1, len1, a);
    expect_payload(a, NULL, rec1, len1, a);
    expect_payload(a, file, rec0, len0, file); /* not yet rewritten records too */

    /* AWS -> Tencent. */
    assert_tde_ok(tde_envelope_rewrap(t, a, t, NULL, rec1, len1, &rec2, &len2, &used));
    assert_ptr_equal(used, a);
    expect_payload(t, a, rec2, len2, t);
    expect_payload(t, NULL, rec2, len2, t);
    expect_payload(t, a, rec1, len1, a);

    /* With AWS gone, the Tencent record still opens; the AWS one is UNAVAILABLE, not AUTH. */
    kms_server_stop(&aws);
    expect_payload(t, NULL, rec2, len2, t);
    tde_masterkey_free(a);
    snprintf(uri, sizeof(uri), "aws-kms://us-east-1/%s?endpoint=%s&ca_file=%s/ca.pem&retries=1",
             AWS_KEY, aws.endpoint, aws.certs);
    open_or_fail(&a, uri);
    uint8_t *pt = NULL;
    size_t pt_len;
    assert_int_equal(tde_envelope_open(t, a, NULL, rec1, len1, &pt, &pt_len, &used),
                     TDE_ERR_UNAVAILABLE);

    free(rec0);
    free(rec1);
    free(rec2);
    tde_masterkey_free(file);
    tde_masterkey_free(a);
    tde_masterkey_free(t);
    kms_server_fini(&aws);
    kms_server_fini(&tc);
    test_rmtree(dir);
    free(dir);
}

int
main(void)
{
    tde_secret_allow_unlocked(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloudkms_rotation_file_to_aws_to_tencent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
