/*
 * The RocksDB Env on the cloud KMS providers, end to end with real RocksDB and
 * both local KMS servers: a database written under a key file, its master key
 * rotated to AWS KMS and then to Tencent Cloud KMS with every row readable
 * throughout; the KMS called once per start; the KMS down at start-up (clear
 * error, key-manager files untouched, works once the KMS is back); a KMS that
 * answers with another key (the provider's TDE_ERR_AUTH, which the adapter reports as an
 * I/O error with libtde's message).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms_server.h"
#include "masterkey/kms_common.h"
#include "tde/masterkey.h"
#include "tde/rocksdb.h"
#include "testutil.h"

#define AWS_KEY "1234abcd-12ab-34cd-56ef-1234567890ab"
#define TC_KEY "23e80852-1e38-11e9-b129-5cb9019b4b01"
#define ROWS 200

static kms_server aws, tc;
static const char *aws_args[] = {"--key", AWS_KEY, "--cred", "AKIDAWS:aws-secret", NULL};
static const char *tc_args[] = {"--key", TC_KEY, "--cred", "AKIDTC:tc-secret", NULL};
static char root[4096], keymgr_dir[4200], db_dir[4200], file_uri[4400], aws_uri[1400], tc_uri[1400];

/* Opens the database on a fresh Env; returns the Env's status (the DB is closed again). */
static tde_status
session(const char *master, const char *previous, int first_row, int n_new, int expect_rows)
{
    tde_rocksdb_config cfg = {.version = TDE_ROCKSDB_CONFIG_VERSION,
                              .keymgr_dir = keymgr_dir,
                              .master_key_uri = master,
                              .previous_master_key_uri = previous};
    rocksdb_env_t *env = NULL;
    tde_status st = tde_rocksdb_env_new(&env, &cfg);
    if (st != TDE_OK)
        return st;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_env(o, env);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, db_dir, &err);
    if (err != NULL)
        fail_msg("rocksdb_open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    for (int i = first_row; i < first_row + n_new; i++) {
        char k[32], v[64];
        snprintf(k, sizeof(k), "key%05d", i);
        snprintf(v, sizeof(v), "value %d under a cloud master key", i);
        rocksdb_put(db, wo, k, strlen(k), v, strlen(v), &err);
        assert_null(err);
    }
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flush(db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    assert_null(err);
    for (int i = 0; i < expect_rows; i++) {
        char k[32], v[64];
        size_t len;
        snprintf(k, sizeof(k), "key%05d", i);
        snprintf(v, sizeof(v), "value %d under a cloud master key", i);
        char *got = rocksdb_get(db, ro, k, strlen(k), &len, &err);
        assert_null(err);
        assert_non_null(got);
        assert_int_equal(len, strlen(v));
        assert_memory_equal(got, v, len);
        rocksdb_free(got);
    }
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    rocksdb_env_destroy(env);
    return TDE_OK;
}

/* Names, sizes and bytes of every file in the key manager's directory. */
static char *
snapshot(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *s = open_memstream(&out, &len);
    struct dirent **names;
    int n = scandir(keymgr_dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[4500], buf[4096];
        size_t got;
        snprintf(path, sizeof(path), "%s/%s", keymgr_dir, names[i]->d_name);
        fprintf(s, "%s\n", names[i]->d_name);
        FILE *f = fopen(path, "rb");
        while (f != NULL && (got = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, got, s);
        if (f != NULL)
            fclose(f);
        free(names[i]);
    }
    free(names);
    fclose(s);
    return out;
}

static void
test_cloudkms_rocksdb_rotation_file_aws_tencent_and_outages(void **state)
{
    (void)state;
    int rows = 0;

    /* 1. Key file. */
    assert_tde_ok(session(file_uri, NULL, rows, ROWS, ROWS));
    rows += ROWS;
    /* 2. Rotate to AWS KMS (the key file is the previous key), then AWS alone. */
    assert_tde_ok(session(aws_uri, file_uri, rows, ROWS, rows + ROWS));
    rows += ROWS;
    kms_server_reset_log(&aws);
    assert_tde_ok(session(aws_uri, NULL, rows, ROWS, rows + ROWS));
    rows += ROWS;
    /* One start, one KMS call (Decrypt of the stored data key), however many writes. */
    assert_int_equal(kms_server_count(&aws, ""), 1);
    assert_int_equal(kms_server_count(&aws, "Decrypt 200"), 1);

    /* 3. AWS -> Tencent. */
    assert_tde_ok(session(tc_uri, aws_uri, rows, ROWS, rows + ROWS));
    rows += ROWS;
    kms_server_reset_log(&tc);
    assert_tde_ok(session(tc_uri, NULL, rows, 0, rows));
    assert_int_equal(kms_server_count(&tc, ""), 1);

    /* 4. Tencent down at start-up: a clear error, nothing in the key manager touched. */
    char *before = snapshot();
    kms_server_stop(&tc);
    /* The adapter reports key-manager failures as TDE_ERR_IO with libtde's message. */
    assert_int_not_equal(session(tc_uri, NULL, rows, 0, rows), TDE_OK);
    assert_non_null(strstr(tde_last_error(), "tencent-kms Decrypt"));
    assert_non_null(strstr(tde_last_error(), "cannot reach"));
    char *after = snapshot();
    assert_string_equal(before, after);
    free(after);
    /* ... and it works once the KMS is back. */
    kms_server_start(&tc, tc.port, tc_args);
    assert_tde_ok(session(tc_uri, NULL, rows, 0, rows));

    /* 5. A KMS that answers with another key: refused as AUTH, nothing touched. */
    kms_server_fault(&tc, "{\"mode\": \"otherkey\", \"count\": -1}");
    assert_int_not_equal(session(tc_uri, NULL, rows, 0, rows), TDE_OK);
    assert_non_null(strstr(tde_last_error(), "answered with key"));
    after = snapshot();
    assert_string_equal(before, after);
    free(after);
    free(before);
    kms_server_fault(&tc, "{}");
    assert_tde_ok(session(tc_uri, NULL, rows, ROWS, rows + ROWS));
}

static int
setup(void **state)
{
    (void)state;
    char *dir = test_tmpdir("kmsrocks");
    snprintf(root, sizeof(root), "%s", dir);
    free(dir);
    snprintf(keymgr_dir, sizeof(keymgr_dir), "%s/keys", root);
    snprintf(db_dir, sizeof(db_dir), "%s/db", root);
    char key_path[4300];
    snprintf(key_path, sizeof(key_path), "%s/master.key", root);
    assert_tde_ok(tde_keyfile_create(key_path));
    snprintf(file_uri, sizeof(file_uri), "file://%s", key_path);

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
    snprintf(aws_uri, sizeof(aws_uri), "aws-kms://us-east-1/%s?endpoint=%s&ca_file=%s/ca.pem",
             AWS_KEY, aws.endpoint, aws.certs);
    snprintf(tc_uri, sizeof(tc_uri),
             "tencent-kms://ap-guangzhou/%s?endpoint=%s&ca_file=%s/ca.pem&retries=2", TC_KEY,
             tc.endpoint, tc.certs);
    tde_status st = tde_masterkey_register(&masterkey_aws_kms_vtable);
    assert_int_equal(st, TDE_ERR_EXISTS); /* built in */
    st = tde_masterkey_register(&masterkey_tencent_kms_vtable);
    assert_int_equal(st, TDE_ERR_EXISTS); /* built in */
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    kms_server_fini(&aws);
    kms_server_fini(&tc);
    test_rmtree(root);
    return 0;
}

int
main(void)
{
    tde_secret_allow_unlocked(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloudkms_rocksdb_rotation_file_aws_tencent_and_outages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
