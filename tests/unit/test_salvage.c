/*
 * tde_keymgr_salvage(): the cases the tde-ctl script cannot make from outside (two key
 * dictionaries with the same key id, copies from different directories), and the
 * outcome fields. The script tests/tde-ctl/test_tde_ctl_salvage.sh covers file damage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keymgr/keydict.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "testutil.h"

typedef struct events {
    int conflicts, missing, keys, notes;
} events;

static void
on_event(void *arg, const tde_keymgr_salvage_event *ev)
{
    events *e = arg;
    e->conflicts += ev->kind == TDE_SALVAGE_KEY_CONFLICT;
    e->missing += ev->kind == TDE_SALVAGE_MISSING_KEY;
    e->keys += ev->kind == TDE_SALVAGE_KEY;
    e->notes += ev->kind == TDE_SALVAGE_NOTE;
}

static uint64_t
fixed_id(void *arg)
{
    return *(uint64_t *)arg;
}

/* A key manager in tmp/NAME with one file, "db/f", under a key whose id is @p id (0: random). */
static void
make_dir(const char *tmp, const char *name, const char *uri, uint64_t id)
{
    char dir[4096], root[4096], file[4200];
    tde_keymgr_root r = {"db", root};
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = dir,
                             .roots = &r,
                             .n_roots = 1,
                             .method = TDE_METHOD_AES256_CTR,
                             .master_key_uri = uri};
    tde_keymgr *km = NULL;
    tde_file_key *fk = NULL;

    snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
    snprintf(root, sizeof(root), "%s/data", tmp);
    snprintf(file, sizeof(file), "%s/f", root);
    mkdir(root, 0700);
    if (id != 0)
        tde_keydict_set_id_source(fixed_id, &id);
    assert_tde_ok(tde_keymgr_open(&km, &cfg));
    tde_keydict_set_id_source(NULL, NULL);
    assert_tde_ok(tde_keymgr_new_file(km, file, &fk));
    tde_file_key_free(fk);
    tde_keymgr_close(km);
}

static void
copy_file(const char *from, const char *to)
{
    static char buf[1 << 16];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    size_t n;
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static tde_status
salvage(const char *dir, const char *dest, const char *uri, const char *skip, events *e,
        tde_keymgr_salvage_result *r)
{
    const char *skips[1] = {skip};
    tde_keymgr_salvage_options o = {.version = TDE_KEYMGR_SALVAGE_VERSION,
                                    .dir = dir,
                                    .dest = dest,
                                    .master_key_uri = uri,
                                    .skip = skips,
                                    .n_skip = skip != NULL,
                                    .fn = on_event,
                                    .arg = e};
    memset(e, 0, sizeof(*e));
    return tde_keymgr_salvage(&o, r);
}

/* Both copies hold key id X with different bytes: nothing is written; skipping one works. */
static void
test_salvage_conflicting_copies_write_nothing(void **state)
{
    char *tmp = test_tmpdir("salvage-conflict");
    char key[4200], uri[4300], a[4200], b[4200], dest[4200];
    tde_keymgr_salvage_result r = {0};
    events e;
    (void)state;

    snprintf(key, sizeof(key), "%s/m.key", tmp);
    snprintf(uri, sizeof(uri), "file://%s", key);
    assert_tde_ok(tde_keyfile_create(key));
    make_dir(tmp, "a", uri, 0x1111);
    make_dir(tmp, "b", uri, 0x1111);
    snprintf(a, sizeof(a), "%s/a/key.dict.bak", tmp);
    snprintf(b, sizeof(b), "%s/b/key.dict", tmp);
    copy_file(b, a);
    snprintf(a, sizeof(a), "%s/a", tmp);
    snprintf(dest, sizeof(dest), "%s/out", tmp);
    assert_int_equal(salvage(a, dest, uri, NULL, &e, &r), TDE_ERR_CORRUPT);
    assert_int_equal(e.conflicts, 1);
    assert_non_null(strstr(tde_last_error(), "disagree on 1 data keys (first 0000000000001111)"));
    assert_int_not_equal(access(dest, F_OK), 0);

    assert_tde_ok(salvage(a, dest, uri, "key.dict.bak", &e, &r));
    assert_int_equal(e.conflicts, 0);
    assert_int_equal(r.keys, 1);
    assert_int_equal(r.entries, 1);
    assert_true(r.complete);
    assert_int_equal(salvage(a, dest, uri, NULL, &e, &r), TDE_ERR_EXISTS);
    test_rmtree(tmp);
    free(tmp);
}

/* key.dict.bak from another directory: the union of keys, and the file dictionary is read
 * under the copy whose secret authenticates it. */
static void
test_salvage_copies_of_different_directories(void **state)
{
    char *tmp = test_tmpdir("salvage-foreign");
    char key[4200], uri[4300], a[4200], b[4200], dest[4200];
    tde_keymgr_salvage_result r = {0};
    events e;
    (void)state;

    snprintf(key, sizeof(key), "%s/m.key", tmp);
    snprintf(uri, sizeof(uri), "file://%s", key);
    assert_tde_ok(tde_keyfile_create(key));
    make_dir(tmp, "a", uri, 0);
    make_dir(tmp, "b", uri, 0);
    snprintf(a, sizeof(a), "%s/a/key.dict", tmp);
    snprintf(b, sizeof(b), "%s/b/key.dict", tmp);
    copy_file(b, a); /* key.dict is foreign; key.dict.bak is the directory's own */
    snprintf(a, sizeof(a), "%s/a", tmp);
    snprintf(dest, sizeof(dest), "%s/out", tmp);
    assert_tde_ok(salvage(a, dest, uri, NULL, &e, &r));
    assert_int_equal(e.keys, 2);
    assert_int_equal(r.keys, 2);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.entries_missing_key, 0);
    assert_true(r.complete);
    assert_true(e.notes >= 1); /* "belong to different file dictionaries" */

    /* Only the foreign copy: the entry's key is missing, reported, not complete. */
    snprintf(dest, sizeof(dest), "%s/out2", tmp);
    assert_tde_ok(salvage(a, dest, uri, "key.dict.bak", &e, &r));
    assert_int_equal(r.entries, 0); /* its MAC key does not authenticate the entries */
    assert_false(r.complete);
    test_rmtree(tmp);
    free(tmp);
}

/* A wrong master key: AUTH, nothing written. Bad options: INVALID_ARG. */
static void
test_salvage_wrong_key_and_bad_options(void **state)
{
    char *tmp = test_tmpdir("salvage-auth");
    char key[4200], key2[4200], uri[4300], uri2[4300], a[4200], dest[4200];
    tde_keymgr_salvage_options o = {.version = 99};
    tde_keymgr_salvage_result r = {0};
    events e;
    (void)state;

    snprintf(key, sizeof(key), "%s/m.key", tmp);
    snprintf(key2, sizeof(key2), "%s/m2.key", tmp);
    snprintf(uri, sizeof(uri), "file://%s", key);
    snprintf(uri2, sizeof(uri2), "file://%s", key2);
    assert_tde_ok(tde_keyfile_create(key));
    assert_tde_ok(tde_keyfile_create(key2));
    make_dir(tmp, "a", uri, 0);
    snprintf(a, sizeof(a), "%s/a", tmp);
    snprintf(dest, sizeof(dest), "%s/out", tmp);
    assert_int_equal(salvage(a, dest, uri2, NULL, &e, &r), TDE_ERR_AUTH);
    assert_int_not_equal(access(dest, F_OK), 0);
    assert_int_equal(tde_keymgr_salvage(&o, &r), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_keymgr_salvage(NULL, &r), TDE_ERR_INVALID_ARG);
    test_rmtree(tmp);
    free(tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_salvage_conflicting_copies_write_nothing),
        cmocka_unit_test(test_salvage_copies_of_different_directories),
        cmocka_unit_test(test_salvage_wrong_key_and_bad_options),
    };
    tde_secret_allow_unlocked(1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
