/* The C API's one error source: the adapter's messages are read with tde_last_error(), and
 * tde_rocksdb_last_error() returns the same text. Links the shared libtde-rocksdb and libtde, as
 * a C program does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tde/masterkey.h"
#include "tde/rocksdb.h"
#include "testutil.h"

typedef struct {
    char *dir;
    char keymgr[4096], key[4096], other_key[4096], key_uri[4200], other_key_uri[4200];
    tde_rocksdb_config cfg; /* keymgr under key */
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_tmpdir("rocksdb_c_errors");
    snprintf(f->keymgr, sizeof(f->keymgr), "%s/keys", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/master.key", f->dir);
    snprintf(f->other_key, sizeof(f->other_key), "%s/other.key", f->dir);
    snprintf(f->key_uri, sizeof(f->key_uri), "file://%s", f->key);
    snprintf(f->other_key_uri, sizeof(f->other_key_uri), "file://%s", f->other_key);
    assert_tde_ok(tde_keyfile_create(f->key));
    assert_tde_ok(tde_keyfile_create(f->other_key));
    f->cfg = (tde_rocksdb_config){.version = TDE_ROCKSDB_CONFIG_VERSION,
                                  .keymgr_dir = f->keymgr,
                                  .master_key_uri = f->key_uri};
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* The failed call's message contains @p needle, and both functions give the same text. */
static void
assert_message(const char *needle)
{
    const char *msg = tde_last_error();
    if (strstr(msg, needle) == NULL)
        print_error("message \"%s\" does not name \"%s\"\n", msg, needle);
    assert_non_null(strstr(msg, needle));
    assert_string_equal(tde_rocksdb_last_error(), msg);
}

/* An Env from @p cfg (NULL: from @p uri) fails with @p want, naming @p needle, and is not made. */
static void
assert_env_fails(const tde_rocksdb_config *cfg, const char *uri, tde_status want,
                 const char *needle)
{
    rocksdb_env_t *env = NULL;
    tde_status st =
        cfg != NULL ? tde_rocksdb_env_new(&env, cfg) : tde_rocksdb_env_new_from_uri(&env, uri);
    assert_int_equal(st, want);
    assert_message(needle);
    assert_null(env);
}

static void
test_malformed_uri(void **state)
{
    (void)state;
    assert_env_fails(NULL, "libtde:/tmp/km,master:file:///k,bogus:1", TDE_ERR_INVALID_ARG,
                     "unknown URI item 'bogus:1'");
    assert_env_fails(NULL, "notlibtde:/tmp/km", TDE_ERR_INVALID_ARG, "notlibtde:/tmp/km");
    assert_env_fails(NULL, "libtde:/tmp/km", TDE_ERR_INVALID_ARG,
                     "needs a key-manager directory and master:");
}

static void
test_unknown_method(void **state)
{
    fixture *f = *state;
    tde_rocksdb_config cfg = f->cfg;
    cfg.method = "rot13-ctr";
    assert_env_fails(&cfg, NULL, TDE_ERR_INVALID_ARG, "rot13-ctr");
    cfg.version = TDE_ROCKSDB_CONFIG_VERSION + 1;
    assert_env_fails(&cfg, NULL, TDE_ERR_INVALID_ARG, "tde_rocksdb_config.version");
}

static void
test_missing_master_key(void **state)
{
    fixture *f = *state;
    char uri[4300];
    snprintf(uri, sizeof(uri), "libtde:%s,master:file://%s/absent.key", f->keymgr, f->dir);
    assert_env_fails(NULL, uri, TDE_ERR_IO, "absent.key");
}

static void
test_wrong_master_key(void **state)
{
    fixture *f = *state;
    tde_rocksdb_config cfg = f->cfg;
    rocksdb_env_t *env = NULL;
    assert_tde_ok(tde_rocksdb_env_new(&env, &cfg));
    rocksdb_env_destroy(env);
    cfg.master_key_uri = f->other_key_uri;
    assert_env_fails(&cfg, NULL, TDE_ERR_IO, "wrong master key");
    assert_message(f->keymgr);
}

static void
test_copy_needs_an_encrypting_env(void **state)
{
    fixture *f = *state;
    rocksdb_env_t *plain = rocksdb_create_default_env();
    assert_int_equal(tde_rocksdb_copy_key_metadata(plain, f->dir, f->keymgr, NULL),
                     TDE_ERR_INVALID_ARG);
    assert_message("does not encrypt");
    rocksdb_env_destroy(plain);
}

/* One slot: a later libtde error replaces the adapter's, whichever function reads it. */
static void
test_one_slot(void **state)
{
    fixture *f = *state;
    assert_env_fails(NULL, "libtde:/tmp/km,master:file:///k,bogus", TDE_ERR_INVALID_ARG, "'bogus'");
    assert_int_not_equal(tde_keyfile_create(f->key), TDE_OK); /* exists already */
    assert_null(strstr(tde_rocksdb_last_error(), "bogus"));
    assert_message(f->key);
}

/* tde_set_last_error() copies, even from the slot it writes. */
static void
test_set_last_error(void **state)
{
    (void)state;
    assert_int_equal(tde_set_last_error(TDE_ERR_IO, "host: disk.img: short read"), TDE_ERR_IO);
    assert_string_equal(tde_last_error(), "host: disk.img: short read");
    assert_int_equal(tde_set_last_error(TDE_ERR_IO, tde_last_error()), TDE_ERR_IO);
    assert_string_equal(tde_last_error(), "host: disk.img: short read");
    assert_int_equal(tde_set_last_error(TDE_ERR_IO, tde_last_error() + 6), TDE_ERR_IO);
    assert_string_equal(tde_rocksdb_last_error(), "disk.img: short read");
    assert_int_equal(tde_set_last_error(TDE_OK, NULL), TDE_OK);
    assert_string_equal(tde_last_error(), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_uri),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_master_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_master_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_needs_an_encrypting_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_slot, setup, teardown),
        cmocka_unit_test(test_set_last_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
