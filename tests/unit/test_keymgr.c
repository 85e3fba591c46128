/* The data-key manager: file operations, names, rotation, master keys, locking, metrics, and one
 * test per TiKV failure the issue names (tikv#8212, #9488, #9886, #12890, #14585, #15768). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Test paths are short; truncation would fail the test anyway. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "common/fileio.h"
#include "keymgr/keydict.h"
#include "keymgr_fixture.h"
#include "provider_double.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "testutil.h"

typedef keymgr_fixture fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    keymgr_fixture_init(f, "keymgr");
    provider_double_register();
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    tde_keydict_set_id_source(NULL, NULL);
    keymgr_fixture_clean(f);
    free(f);
    return 0;
}

static void
db_path(fixture *f, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", f->db, name);
}

static uint8_t *
slurp(const char *path, size_t *len)
{
    uint8_t *data = NULL;
    if (tde_fileio_read_all(path, &data, len) != TDE_OK)
        return NULL;
    return data;
}

/* Every file in the metadata directory, concatenated with its name, for "nothing changed". */
static char *
dir_image(const char *dir, size_t *len)
{
    char cmd[2048];
    FILE *p;
    char *buf = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&buf, &cap);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && for f in $(ls | grep -v keymgr.lock); do echo $f; od -An -tx1 $f; done",
             dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    for (int c; (c = fgetc(p)) != EOF;)
        fputc(c, m);
    pclose(p);
    fclose(m);
    *len = cap;
    return buf;
}

static void
wait_for(tde_keymgr *km, uint64_t rotations, uint64_t failures)
{
    tde_keymgr_metrics m;
    for (int i = 0; i < 500; i++) {
        assert_tde_ok(tde_keymgr_metrics_get(km, &m));
        if (m.rotations >= rotations && m.rotation_failures >= failures)
            return;
        usleep(10000);
    }
    fail_msg("background rotation did not happen: %llu rotations, %llu failures",
             (unsigned long long)m.rotations, (unsigned long long)m.rotation_failures);
}

/* ---- basics --------------------------------------------------------------------------- */

static void
test_keymgr_new_file_is_durable_and_readable_after_reopen(void **state)
{
    fixture *f = *state;
    char p[2048];
    uint8_t ks[32], data[100], enc[100], dec[100];
    uint64_t id;
    tde_file_key *fk = NULL;
    tde_keymgr *km = keymgr_fixture_open(f);
    struct stat sb;

    db_path(f, "000001.sst", p, sizeof(p));
    assert_tde_ok(tde_keymgr_new_file(km, p, &fk));
    assert_int_equal(tde_file_key_method(fk), TDE_METHOD_AES256_CTR);
    id = tde_file_key_id(fk);
    assert_true(id != 0);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    assert_tde_ok(tde_file_key_process(fk, 7, data, enc, sizeof(data)));
    assert_memory_not_equal(enc, data, sizeof(data));
    test_keystream(fk, ks);
    tde_file_key_free(fk);
    tde_keymgr_close(km);

    assert_int_equal(stat(f->dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(p, sizeof(p), "%s/key.dict", f->dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    km = keymgr_fixture_open(f);
    db_path(f, "000001.sst", p, sizeof(p));
    test_expect_file(km, p, id, ks);
    assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
    assert_tde_ok(tde_file_key_process(fk, 7, enc, dec, sizeof(enc)));
    assert_memory_equal(dec, data, sizeof(data));
    tde_file_key_free(fk);
    tde_keymgr_close(km);
}

static void
test_keymgr_recreating_a_name_gets_a_fresh_iv(void **state)
{
    fixture *f = *state;
    char p[2048];
    uint8_t a[32], b[32];
    uint64_t ia, ib;
    tde_file_key *fk = NULL;
    uint8_t iv[16];
    tde_keymgr *km = keymgr_fixture_open(f);

    snprintf(p, sizeof(p), "%s/000007.log", f->wal);
    assert_tde_ok(tde_keymgr_new_file(km, p, &fk));
    memcpy(iv, tde_file_key_iv(fk), 16);
    test_keystream(fk, a);
    ia = tde_file_key_id(fk);
    tde_file_key_free(fk);
    test_new_file(km, p, &ib, b);
    assert_int_equal(ia, ib);
    assert_memory_not_equal(a, b, 32);
    test_expect_file(km, p, ib, b);
    tde_keymgr_close(km);
}

static void
test_keymgr_enforce_mode_and_plaintext_files(void **state)
{
    fixture *f = *state;
    char p[2048];
    tde_file_key *fk = NULL;
    tde_keymgr_metrics m;
    tde_keymgr *km = keymgr_fixture_open(f);
    uint64_t n = 0;
    FILE *fp;

    db_path(f, "OLD-PLAIN", p, sizeof(p));
    fp = fopen(p, "w");
    fputs("x", fp);
    fclose(fp);
    /* Created with encryption on: enforce by default. */
    assert_int_equal(tde_keymgr_get_file(km, p, &fk), TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "db/OLD-PLAIN"));
    assert_tde_ok(tde_keymgr_list_plaintext_files(km, NULL, NULL, &n));
    assert_int_equal(n, 1);
    tde_keymgr_close(km);

    f->cfg.enforce = 0;
    km = keymgr_fixture_open(f);
    assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
    assert_int_equal(tde_file_key_method(fk), TDE_METHOD_PLAINTEXT);
    assert_int_equal(tde_file_key_id(fk), 0);
    tde_file_key_free(fk);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.plaintext_lookups, 1);
    assert_false(m.enforce);
    /* ... but never grows while encryption is on. */
    assert_int_equal(tde_keymgr_get_file_for_append(km, p, &fk), TDE_ERR_STATE);
    assert_null(fk);
    assert_non_null(strstr(tde_last_error(), "OLD-PLAIN"));
    /* Once it has an entry it is no longer plaintext. */
    test_new_file(km, p, NULL, NULL);
    assert_tde_ok(tde_keymgr_list_plaintext_files(km, NULL, NULL, &n));
    assert_int_equal(n, 0);
    assert_tde_ok(tde_keymgr_get_file_for_append(km, p, &fk));
    assert_int_equal(tde_file_key_method(fk), TDE_METHOD_AES256_CTR);
    tde_file_key_free(fk);
    tde_keymgr_close(km);
}

static void
test_keymgr_plaintext_directory_does_not_enforce(void **state)
{
    fixture *f = *state;
    char p[2048];
    tde_file_key *fk = NULL;
    tde_keymgr_metrics m;
    tde_keymgr *km;

    f->cfg.method = TDE_METHOD_PLAINTEXT;
    km = keymgr_fixture_open(f);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_false(m.encryption_initialized);
    assert_false(m.enforce);
    db_path(f, "x", p, sizeof(p));
    assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
    assert_int_equal(tde_file_key_method(fk), TDE_METHOD_PLAINTEXT);
    tde_file_key_free(fk);
    assert_tde_ok(tde_keymgr_get_file_for_append(km, p, &fk)); /* encryption is off */
    tde_file_key_free(fk);
    tde_keymgr_close(km);
}

static void
test_keymgr_names_are_relative_to_roots(void **state)
{
    fixture *f = *state;
    char p[2048], q[2048], name[2048], moved[2048];
    uint8_t ks[32], ks2[32];
    uint64_t id, id2;
    tde_keymgr *km = keymgr_fixture_open(f);

    /* Different spellings of one file give one name. */
    snprintf(p, sizeof(p), "%s//./sub/../000010.sst", f->db);
    assert_tde_ok(tde_keymgr_stored_name(km, p, name, sizeof(name)));
    assert_string_equal(name, "db/000010.sst");
    test_new_file(km, p, &id, ks);
    snprintf(p, sizeof(p), "%s/000011.log", f->wal);
    test_new_file(km, p, &id2, ks2);
    assert_tde_ok(tde_keymgr_stored_name(km, p, name, sizeof(name)));
    assert_string_equal(name, "wal/000011.log");
    assert_int_equal(tde_keymgr_new_file(km, "/elsewhere/x", &(tde_file_key *){0}),
                     TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "/elsewhere/x"));
    tde_keymgr_close(km);

    /* Move the whole data directory: every file keeps its key (TiKV stores absolute paths). */
    snprintf(moved, sizeof(moved), "%s/moved", f->tmp);
    mkdir(moved, 0700);
    snprintf(q, sizeof(q), "%s/db", moved);
    assert_int_equal(rename(f->db, q), 0);
    snprintf(f->db, sizeof(f->db), "%s", q);
    snprintf(q, sizeof(q), "%s/wal", moved);
    assert_int_equal(rename(f->wal, q), 0);
    snprintf(f->wal, sizeof(f->wal), "%s", q);
    km = keymgr_fixture_open(f);
    db_path(f, "000010.sst", p, sizeof(p));
    test_expect_file(km, p, id, ks);
    snprintf(p, sizeof(p), "%s/000011.log", f->wal);
    test_expect_file(km, p, id2, ks2);
    /* Through a symlink to a root. */
    snprintf(q, sizeof(q), "%s/link", f->tmp);
    assert_int_equal(symlink(f->db, q), 0);
    snprintf(p, sizeof(p), "%s/link/000010.sst", f->tmp);
    test_expect_file(km, p, id, ks);
    tde_keymgr_close(km);
}

static void
test_keymgr_link_rename_delete(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048], c[2048];
    uint8_t ks[32];
    uint64_t id;
    tde_file_key *fk = NULL;
    tde_keymgr_metrics m;
    FILE *fp;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "MANIFEST-tmp", a, sizeof(a));
    db_path(f, "MANIFEST-000001", b, sizeof(b));
    db_path(f, "hardlink", c, sizeof(c));
    test_new_file(km, a, &id, ks);
    fp = fopen(a, "w");
    fclose(fp);
    assert_tde_ok(tde_keymgr_rename_file(km, a, b));
    assert_int_equal(access(a, F_OK), -1);
    assert_int_equal(access(b, F_OK), 0);
    test_expect_file(km, b, id, ks);
    assert_int_equal(tde_keymgr_get_file(km, a, &fk), TDE_ERR_NOT_FOUND);
    assert_tde_ok(tde_keymgr_link_file(km, b, c));
    test_expect_file(km, c, id, ks);
    /* A failed rename(2) leaves the destination's old entry in place. */
    assert_int_equal(tde_keymgr_rename_file(km, a, c), TDE_ERR_NOT_FOUND);
    test_expect_file(km, c, id, ks);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m)); /* b and c: no reserved record left */
    assert_int_equal(m.encrypted_files, 2);
    unlink(b);
    assert_tde_ok(tde_keymgr_delete_file(km, b));
    assert_tde_ok(tde_keymgr_delete_file(km, b)); /* missing: not an error */
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    assert_int_equal(tde_keymgr_get_file(km, b, &fk), TDE_ERR_NOT_FOUND);
    test_expect_file(km, c, id, ks);
    tde_keymgr_close(km);
}

static void
test_keymgr_second_writer_is_refused_naming_the_pid(void **state)
{
    fixture *f = *state;
    char pid[32], p[2048];
    tde_keymgr *km = keymgr_fixture_open(f), *km2 = NULL, *ro = NULL;
    tde_file_key *fk = NULL;
    uint8_t ks[32];
    uint64_t id;

    assert_int_equal(tde_keymgr_open(&km2, &f->cfg), TDE_ERR_LOCKED);
    assert_null(km2);
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    assert_non_null(strstr(tde_last_error(), pid));
    /* A reader may run beside the writer and sees what it appends. */
    f->cfg.read_only = true;
    assert_tde_ok(tde_keymgr_open(&ro, &f->cfg));
    db_path(f, "later.sst", p, sizeof(p));
    test_new_file(km, p, &id, ks);
    test_expect_file(ro, p, id, ks);
    /* ... also files made with a key the writer created after the reader opened. */
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    test_new_file(km, p, &id, ks);
    test_expect_file(ro, p, id, ks);
    assert_int_equal(tde_keymgr_new_file(ro, p, &fk), TDE_ERR_STATE);
    assert_int_equal(tde_keymgr_delete_file(ro, p), TDE_ERR_STATE);
    assert_int_equal(tde_keymgr_rotate_data_key(ro), TDE_ERR_STATE);
    tde_keymgr_close(ro);
    tde_keymgr_close(km);
    f->cfg.read_only = false;
    km = keymgr_fixture_open(f); /* the lock went with the handle */
    tde_keymgr_close(km);
}

static void
test_keymgr_read_only_open_never_writes(void **state)
{
    fixture *f = *state;
    char p[2048];
    size_t l1, l2;
    char *before, *after;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", p, sizeof(p));
    test_new_file(km, p, NULL, NULL);
    tde_keymgr_close(km);
    before = dir_image(f->dir, &l1);
    /* Due rotation and a method change: a reader must do neither. */
    keymgr_fixture_advance(f, 30 * 24 * 3600);
    f->cfg.method = TDE_METHOD_AES128_CTR;
    f->cfg.read_only = true;
    km = keymgr_fixture_open(f);
    usleep(50000);
    tde_keymgr_close(km);
    after = dir_image(f->dir, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    free(before);
    free(after);
}

/* ---- rotation ------------------------------------------------------------------------- */

static void
test_keymgr_rotation_on_period_keeps_old_files_readable(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048];
    uint8_t ka[32], kb[32];
    uint64_t ia, ib, ic;
    tde_keymgr_metrics m;
    tde_keymgr *km;

    f->cfg.rotation_period_seconds = 3600;
    km = keymgr_fixture_open(f);
    db_path(f, "a", a, sizeof(a));
    db_path(f, "b", b, sizeof(b));
    test_new_file(km, a, &ia, ka);
    keymgr_fixture_advance(f, 3599);
    test_new_file(km, b, &ib, kb);
    assert_int_equal(ia, ib);
    keymgr_fixture_advance(f, 1);
    test_new_file(km, b, &ib, kb); /* due: wakes the rotation thread, still the current key */
    wait_for(km, 1, 0);
    test_new_file(km, b, &ic, kb);
    assert_true(ic != ia);
    test_expect_file(km, a, ia, ka);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.current_key_id, ic);
    assert_int_equal(m.last_rotation_time, f->now);
    assert_int_equal(m.data_keys, 2);
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    test_expect_file(km, b, ic, kb);
    tde_keymgr_close(km);
}

static void
test_keymgr_method_change_rotates_at_open(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048];
    uint8_t ka[32];
    uint64_t ia;
    tde_file_key *fk = NULL;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &ia, ka);
    tde_keymgr_close(km);
    f->cfg.method = TDE_METHOD_AES128_CTR;
    km = keymgr_fixture_open(f);
    db_path(f, "b", b, sizeof(b));
    assert_tde_ok(tde_keymgr_new_file(km, b, &fk));
    assert_int_equal(tde_file_key_method(fk), TDE_METHOD_AES128_CTR);
    assert_true(tde_file_key_id(fk) != ia);
    tde_file_key_free(fk);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
}

/* Rotation never breaks I/O: a failing master key leaves new_file on the current key; the
 * failure is counted and retried later, off the I/O path. */
static void
test_keymgr_rotation_failure_does_not_break_new_file(void **state)
{
    fixture *f = *state;
    char a[2048];
    uint64_t i0, i1, i2;
    tde_keymgr_metrics m;
    tde_keymgr *km;

    f->cfg.master_key_uri = "double://?id=kms";
    f->cfg.rotation_period_seconds = 100;
    km = keymgr_fixture_open(f);
    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &i0, NULL);
    provider_double.fail_at = provider_double.calls + 1;
    provider_double.fail_status = TDE_ERR_UNAVAILABLE;
    keymgr_fixture_advance(f, 200);
    test_new_file(km, a, &i1, NULL);
    wait_for(km, 0, 1);
    assert_int_equal(i1, i0);
    test_new_file(km, a, &i1, NULL); /* inside the back-off: no new attempt */
    assert_int_equal(i1, i0);
    usleep(50000);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.rotation_failures, 1);
    assert_int_equal(m.rotations, 0);
    keymgr_fixture_advance(f, 61);
    test_new_file(km, a, &i1, NULL);
    wait_for(km, 1, 1);
    test_new_file(km, a, &i2, NULL);
    assert_true(i2 != i0);
    tde_keymgr_close(km);
}

/* tikv#14585: a new key id that collides with an existing one must not overwrite that key. */
static uint64_t
colliding_ids(void *arg)
{
    uint64_t *ids = arg; /* ids[0]: calls so far; then the sequence */
    return ids[1 + ids[0]++];
}

static void
test_keymgr_key_id_collision_never_overwrites_a_key(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048];
    uint8_t ka[32];
    uint64_t ia, ib, seq[8] = {0};
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &ia, ka);
    seq[1] = ia; /* collides */
    seq[2] = 0;  /* reserved */
    seq[3] = ia; /* collides again */
    seq[4] = 0x1234;
    tde_keydict_set_id_source(colliding_ids, seq);
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    tde_keydict_set_id_source(NULL, NULL);
    assert_int_equal(seq[0], 4);
    db_path(f, "b", b, sizeof(b));
    test_new_file(km, b, &ib, NULL);
    assert_int_equal(ib, 0x1234);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
}

/* tikv#12890: keys no file uses are removed, keeping the newest N, never one a handle holds. */
static void
test_keymgr_unused_keys_are_removed_keeping_the_last_n(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048];
    uint8_t ka[32];
    uint64_t ia;
    tde_file_key *held = NULL;
    tde_keymgr_metrics m;
    tde_keymgr *km;

    f->cfg.keep_unused_keys = 1;
    km = keymgr_fixture_open(f);
    db_path(f, "a", a, sizeof(a));
    db_path(f, "b", b, sizeof(b));
    test_new_file(km, a, &ia, ka); /* key 1 stays used */
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    assert_tde_ok(tde_keymgr_new_file(km, b, &held)); /* key 2: held by an open handle */
    assert_tde_ok(tde_keymgr_delete_file(km, b));
    for (int i = 0; i < 4; i++) {
        keymgr_fixture_advance(f, 10);
        assert_tde_ok(tde_keymgr_rotate_data_key(km));
    }
    assert_tde_ok(tde_keymgr_maintain(km));
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    /* kept: key 1 (used), key 2 (held), key 5 (newest unused), key 6 (current) */
    assert_int_equal(m.data_keys, 4);
    assert_int_equal(m.keys_removed, 2);
    tde_file_key_free(held);
    assert_tde_ok(tde_keymgr_maintain(km));
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.data_keys, 3);
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.data_keys, 3);
    tde_keymgr_close(km);
}

/* ---- master keys ---------------------------------------------------------------------- */

static void
test_keymgr_wrong_master_key_is_auth_naming_the_provider(void **state)
{
    fixture *f = *state;
    tde_keymgr *km = keymgr_fixture_open(f);
    char *before, *after;
    size_t l1, l2;

    tde_keymgr_close(km);
    before = dir_image(f->dir, &l1);
    f->cfg.master_key_uri = f->key2;
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_AUTH);
    print_message("wrong master key: %s\n", tde_last_error());
    assert_non_null(strstr(tde_last_error(), "file"));
    assert_non_null(strstr(tde_last_error(), "key.dict"));
    after = dir_image(f->dir, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    free(before);
    free(after);
}

static void
test_keymgr_master_key_rotation_online_and_at_open(void **state)
{
    fixture *f = *state;
    char a[2048];
    uint8_t ka[32];
    uint64_t ia;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &ia, ka);
    assert_tde_ok(tde_keymgr_rotate_master_key(km, f->key2));
    test_new_file(km, a, &ia, ka); /* still working */
    tde_keymgr_close(km);
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_AUTH); /* only the old key */
    f->cfg.master_key_uri = f->key2;
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);

    /* Offline: configure new = key1, previous = key2; open re-seals under key1. */
    f->cfg.master_key_uri = f->key1;
    f->cfg.previous_master_key_uri = f->key2;
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
    f->cfg.previous_master_key_uri = NULL;
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
}

static void
test_keymgr_failed_master_key_rotation_changes_nothing(void **state)
{
    fixture *f = *state;
    char a[2048], kd[2048];
    uint8_t ka[32], *before, *after;
    size_t l1, l2;
    uint64_t ia;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &ia, ka);
    snprintf(kd, sizeof(kd), "%s/key.dict", f->dir);
    before = slurp(kd, &l1);
    provider_double.fail_at = provider_double.calls + 1;
    provider_double.fail_status = TDE_ERR_UNAVAILABLE;
    assert_int_equal(tde_keymgr_rotate_master_key(km, "double://?id=new"), TDE_ERR_UNAVAILABLE);
    assert_int_equal(tde_keymgr_rotate_master_key(km, "nosuch://x"), TDE_ERR_NOT_FOUND);
    /* A failing write of the re-sealed dictionary, too. */
    tde_fileio_inject_reset();
    tde_fileio_inject(TDE_FILEIO_RENAME, 1, EIO, false);
    assert_int_equal(tde_keymgr_rotate_master_key(km, f->key2), TDE_ERR_IO);
    tde_fileio_inject_reset();
    after = slurp(kd, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    test_new_file(km, a, &ia, ka);
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
    free(before);
    free(after);
}

/* ---- TiKV failures -------------------------------------------------------------------- */

/* tikv#8212: every file operation rewrote the whole dictionary. */
static void
test_keymgr_file_ops_do_not_rewrite_dictionaries(void **state)
{
    fixture *f = *state;
    char p[2048], q[2048], kd[2048];
    struct stat s1, s2;
    unsigned long renames, writes;
    tde_keymgr *km = keymgr_fixture_open(f);

    snprintf(kd, sizeof(kd), "%s/key.dict", f->dir);
    assert_int_equal(stat(kd, &s1), 0);
    tde_fileio_inject_reset();
    for (int i = 0; i < 200; i++) {
        snprintf(p, sizeof(p), "%s/%06d.sst", f->db, i);
        snprintf(q, sizeof(q), "%s/%06d.lnk", f->db, i);
        test_new_file(km, p, NULL, NULL);
        assert_tde_ok(tde_keymgr_link_file(km, p, q));
        assert_tde_ok(tde_keymgr_delete_file(km, p));
    }
    renames = tde_fileio_calls(TDE_FILEIO_RENAME);
    writes = tde_fileio_calls(TDE_FILEIO_WRITE);
    assert_int_equal(renames, 0);
    assert_true(writes <= 600); /* one append per operation at most */
    assert_int_equal(stat(kd, &s2), 0);
    assert_int_equal(s1.st_ino, s2.st_ino);
    assert_int_equal(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);
    tde_keymgr_close(km);
}

/* tikv#9488: a KMS failure at start-up must not corrupt anything or leave a half state. */
static void
test_keymgr_kms_failure_at_open_changes_nothing(void **state)
{
    fixture *f = *state;
    char a[2048];
    uint8_t ka[32];
    uint64_t ia;
    size_t l1, l2;
    char *before, *after;
    tde_keymgr *km;

    f->cfg.master_key_uri = "double://?id=kms";
    km = keymgr_fixture_open(f);
    db_path(f, "a", a, sizeof(a));
    test_new_file(km, a, &ia, ka);
    tde_keymgr_close(km);
    before = dir_image(f->dir, &l1);
    for (int i = 0; i < 3; i++) {
        provider_double.fail_at = provider_double.calls + 1;
        provider_double.fail_status = TDE_ERR_UNAVAILABLE;
        assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_UNAVAILABLE);
        assert_non_null(strstr(tde_last_error(), "key.dict"));
    }
    /* Also when the rotation due at open cannot reach the KMS: open succeeds, nothing changes. */
    keymgr_fixture_advance(f, 30 * 24 * 3600);
    provider_double.fail_at = provider_double.calls + 2; /* unwrap works, the re-seal fails */
    km = keymgr_fixture_open(f);
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
    after = dir_image(f->dir, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    km = keymgr_fixture_open(f); /* KMS back: opens and rotates */
    test_expect_file(km, a, ia, ka);
    tde_keymgr_close(km);
    free(before);
    free(after);
}

/* tikv#9886: a torn last record after a full disk blocked start-up. */
static void
test_keymgr_disk_full_mid_append_does_not_block_open(void **state)
{
    fixture *f = *state;
    char a[2048], b[2048];
    uint8_t ka[32];
    uint64_t ia;
    tde_file_key *fk = NULL;
    tde_keymgr *km = keymgr_fixture_open(f);

    db_path(f, "a", a, sizeof(a));
    db_path(f, "b", b, sizeof(b));
    test_new_file(km, a, &ia, ka);
    tde_fileio_inject_reset();
    tde_fileio_inject(TDE_FILEIO_WRITE, 1, ENOSPC, true);
    assert_int_not_equal(tde_keymgr_new_file(km, b, &fk), TDE_OK);
    assert_null(fk);
    tde_fileio_inject_reset();
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f); /* repairs the torn tail */
    test_expect_file(km, a, ia, ka);
    assert_int_equal(tde_keymgr_get_file(km, b, &fk), TDE_ERR_NOT_FOUND);
    test_new_file(km, b, NULL, NULL);
    tde_keymgr_close(km);
}

/* Every entry's key is in key.dict, and the listed files match the model. */
static int
check_key_exists(void *arg, const tde_keymgr_file_info *fi)
{
    (void)arg;
    return fi->key_id == 0; /* stops (and is caught) on a zero id */
}

/* tikv#15768: "key not found" after kills. Fail every write, fsync, rename and directory fsync
 * of a rotation in turn, and crash right after its key.dict write: every entry's key must exist
 * after reopen and new files must keep working. */
static void
test_keymgr_rotation_io_failures_never_lose_a_key(void **state)
{
    fixture *f = *state;
    static const tde_fileio_op ops[] = {TDE_FILEIO_WRITE, TDE_FILEIO_FSYNC, TDE_FILEIO_RENAME,
                                        TDE_FILEIO_FSYNC_DIR};
    char p[2048];
    uint8_t ks[64][32];
    uint64_t ids[64];
    int nf = 0;
    tde_keymgr *km = keymgr_fixture_open(f);

    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        unsigned long calls;
        tde_fileio_inject_reset();
        assert_tde_ok(tde_keymgr_rotate_data_key(km));
        calls = tde_fileio_calls(ops[o]);
        assert_true(calls > 0);
        for (unsigned long n = 1; n <= calls; n++) {
            tde_status st;
            tde_fileio_inject_reset();
            tde_fileio_inject(ops[o], n, EIO, false);
            st = tde_keymgr_rotate_data_key(km);
            tde_fileio_inject_reset();
            (void)st; /* a failed directory fsync after the rename may still have replaced it */
            snprintf(p, sizeof(p), "%s/f%d", f->db, nf);
            test_new_file(km, p, &ids[nf], ks[nf]);
            nf++;
            tde_keymgr_close(km);
            km = keymgr_fixture_open(f);
            for (int i = 0; i < nf; i++) {
                snprintf(p, sizeof(p), "%s/f%d", f->db, i);
                test_expect_file(km, p, ids[i], ks[i]);
            }
        }
    }
    assert_tde_ok(tde_keymgr_list_files(km, check_key_exists, NULL));
    tde_keymgr_close(km);

    /* A crash right after the new key is durable, before it is used. */
    {
        pid_t pid = fork();
        if (pid == 0) {
            tde_keymgr *c = NULL;
            if (tde_keymgr_open(&c, &f->cfg) != TDE_OK)
                _exit(3);
            tde_failpoint_arm("keymgr.rotate.after_store", 1, 42);
            if (tde_keymgr_rotate_data_key(c) != TDE_OK)
                _exit(5);
            _exit(4);
        }
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 42);
    }
    km = keymgr_fixture_open(f);
    for (int i = 0; i < nf; i++) {
        snprintf(p, sizeof(p), "%s/f%d", f->db, i);
        test_expect_file(km, p, ids[i], ks[i]);
    }
    tde_keymgr_close(km);
}

/* ---- concurrency, metrics, listing ---------------------------------------------------- */

typedef struct worker {
    fixture *f;
    tde_keymgr *km;
    int t;
} worker;

static void *
worker_main(void *arg)
{
    worker *w = arg;
    char p[2048];
    for (int i = 0; i < 200; i++) {
        tde_file_key *fk = NULL, *g = NULL;
        snprintf(p, sizeof(p), "%s/t%d-%d", w->f->db, w->t, i);
        if (tde_keymgr_new_file(w->km, p, &fk) != TDE_OK ||
            tde_keymgr_get_file(w->km, p, &g) != TDE_OK ||
            tde_file_key_id(fk) != tde_file_key_id(g) ||
            memcmp(tde_file_key_iv(fk), tde_file_key_iv(g), 16) != 0)
            return (void *)1;
        tde_file_key_free(fk);
        tde_file_key_free(g);
        if (w->t == 0 && i % 20 == 0 && tde_keymgr_rotate_data_key(w->km) != TDE_OK)
            return (void *)2;
        /* Removal of unused keys racing new files on old keys (it must skip keys in use). */
        if (w->t == 1 && i % 10 == 0 && tde_keymgr_maintain(w->km) != TDE_OK)
            return (void *)3;
    }
    return NULL;
}

static void
test_keymgr_concurrent_writers_and_rotation(void **state)
{
    fixture *f = *state;
    pthread_t th[3];
    worker w[3];
    tde_keymgr_metrics m;
    tde_keymgr *km;

    f->cfg.keep_unused_keys = 1;
    km = keymgr_fixture_open(f);
    for (int i = 0; i < 3; i++) {
        w[i] = (worker){f, km, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    assert_tde_ok(tde_keymgr_maintain(km));
    tde_keymgr_close(km);
    km = keymgr_fixture_open(f);
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.encrypted_files, 600);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 200; i++) {
            char p[2048];
            tde_file_key *fk = NULL;
            snprintf(p, sizeof(p), "%s/t%d-%d", f->db, t, i);
            assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
            tde_file_key_free(fk);
        }
    tde_keymgr_close(km);
}

typedef struct listed {
    int keys, current, files;
    uint64_t file_sum;
} listed;

static int
on_key(void *arg, const tde_keymgr_key_info *k)
{
    listed *l = arg;
    l->keys++;
    l->current += k->current;
    l->file_sum += k->files;
    return 0;
}

static int
on_file(void *arg, const tde_keymgr_file_info *fi)
{
    listed *l = arg;
    l->files++;
    assert_int_equal(strncmp(fi->name, "db/", 3), 0);
    assert_int_equal(fi->method, TDE_METHOD_AES256_CTR);
    return 0;
}

static void
test_keymgr_metrics_and_listing(void **state)
{
    fixture *f = *state;
    char p[2048];
    listed l = {0};
    tde_keymgr_metrics m;
    tde_keymgr *km = keymgr_fixture_open(f);

    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "%s/%d", f->db, i);
        test_new_file(km, p, NULL, NULL);
        if (i == 2)
            assert_tde_ok(tde_keymgr_rotate_data_key(km));
    }
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.version, TDE_KEYMGR_METRICS_VERSION);
    assert_true(m.encryption_initialized);
    assert_true(m.enforce);
    assert_int_equal(m.method, TDE_METHOD_AES256_CTR);
    assert_int_equal(m.data_keys, 2);
    assert_int_equal(m.encrypted_files, 5);
    assert_true(m.key_dict_bytes > 0);
    assert_true(m.file_dict_snapshot_bytes + m.file_dict_log_bytes > 0);
    assert_true(m.meta_writes >= 5 && m.meta_write_ns > 0);
    assert_true(m.meta_reads >= 1);
    assert_int_equal(m.rotations, 1);
    assert_int_equal(m.current_key_created, f->now);
    assert_tde_ok(tde_keymgr_list_keys(km, on_key, &l));
    assert_int_equal(l.keys, 2);
    assert_int_equal(l.current, 1);
    assert_int_equal(l.file_sum, 5);
    assert_tde_ok(tde_keymgr_list_files(km, on_file, &l));
    assert_int_equal(l.files, 5);
    tde_keymgr_close(km);
}

static void
test_keymgr_lost_file_dictionary_is_reported(void **state)
{
    fixture *f = *state;
    char cmd[2048];
    tde_keymgr *km = keymgr_fixture_open(f);

    tde_keymgr_close(km);
    snprintf(cmd, sizeof(cmd), "cd '%s' && ls | grep -v -e key.dict -e keymgr.lock | xargs rm -f",
             f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_CORRUPT);
    assert_non_null(strstr(tde_last_error(), "file dictionary is missing"));
}

static void
test_keymgr_rejects_bad_config(void **state)
{
    fixture *f = *state;
    tde_keymgr *km = NULL;
    tde_keymgr_root bad[2] = {{"db", "/x"}, {"db", "/y"}};

    f->cfg.version = 99;
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_INVALID_ARG);
    f->cfg.version = TDE_KEYMGR_CONFIG_VERSION;
    f->cfg.roots = bad;
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_INVALID_ARG);
    bad[1].name = "a/b";
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_INVALID_ARG);
    f->cfg.roots = f->roots;
    f->cfg.method = TDE_METHOD_UNKNOWN;
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_INVALID_ARG);
    f->cfg.method = (tde_method)77;
    assert_int_equal(tde_keymgr_open(&km, &f->cfg), TDE_ERR_INVALID_ARG);
    assert_null(km);
}

/* Format compatibility: a directory written by 0.1.0 must keep opening (tests/fixtures). */
static const struct {
    const char *name;
    uint64_t key_id;
    int method;
    const char *iv, *keystream;
} fixture_v1[] = {
    {"db/000002.sst", 0xc09fc43f1f9ec82fULL, 4, "436e2e3bd3ec24c5baac700db8977540",
     "5b9ec0b0e790f96e42ac6f3778dc345d"},
    {"wal/000003.log", 0xc09fc43f1f9ec82fULL, 4, "4e96b716bf6b6988f34b38f60c2cf135",
     "5248e84e07e5c37fde5fd286283748ae"},
    {"db/000004.sst", 0x05590e865ff27832ULL, 4, "20c6d622169a8669ee09478f02fb3f0e",
     "55113311651b11cbf8e41bbae6f14303"},
    {"db/000002.link", 0xc09fc43f1f9ec82fULL, 4, "436e2e3bd3ec24c5baac700db8977540",
     "5b9ec0b0e790f96e42ac6f3778dc345d"},
};

static void
check_fixture(fixture *f, tde_keymgr *km)
{
    tde_keymgr_metrics m;
    tde_file_key *fk = NULL;
    char p[2048];

    for (size_t i = 0; i < sizeof(fixture_v1) / sizeof(fixture_v1[0]); i++) {
        uint8_t iv[16], ks[16], zero[16] = {0}, got[16];
        snprintf(p, sizeof(p), "%s/%s", f->tmp, fixture_v1[i].name);
        assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
        assert_int_equal(tde_file_key_id(fk), fixture_v1[i].key_id);
        assert_int_equal(tde_file_key_method(fk), fixture_v1[i].method);
        test_unhex(fixture_v1[i].iv, iv, sizeof(iv));
        assert_memory_equal(tde_file_key_iv(fk), iv, 16);
        test_unhex(fixture_v1[i].keystream, ks, sizeof(ks));
        assert_tde_ok(tde_file_key_process(fk, 0, zero, got, 16));
        assert_memory_equal(got, ks, 16);
        tde_file_key_free(fk);
    }
    snprintf(p, sizeof(p), "%s/db/000001.sst", f->tmp);
    assert_int_equal(tde_keymgr_get_file(km, p, &fk), TDE_ERR_NOT_FOUND); /* deleted; enforce */
    assert_tde_ok(tde_keymgr_metrics_get(km, &m));
    assert_int_equal(m.current_key_id, 0x05590e865ff27832ULL);
    assert_int_equal(m.data_keys, 2);
    assert_int_equal(m.encrypted_files, 4);
    assert_true(m.enforce);
}

static void
test_keymgr_v1_fixture_opens(void **state)
{
    fixture *f = *state;
    char cmd[4096], p[2048];
    tde_keymgr *km;

    snprintf(cmd, sizeof(cmd),
             "cp -r '%s/tests/fixtures/keymgr/v1/keymgr/.' '%s/' && chmod 600 '%s/master.key'",
             TDE_SOURCE_DIR, f->tmp, f->tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(f->key1, sizeof(f->key1), "file://%s/master.key", f->tmp);
    f->now = 1700000200; /* no rotation due */
    f->cfg.read_only = true;
    km = keymgr_fixture_open(f);
    check_fixture(f, km);
    tde_keymgr_close(km);
    f->cfg.read_only = false;
    km = keymgr_fixture_open(f);
    check_fixture(f, km);
    snprintf(p, sizeof(p), "%s/000005.sst", f->db);
    test_new_file(km, p, NULL, NULL);
    tde_keymgr_close(km);
}

/* Every write, fsync, rename and directory fsync of every file operation fails in turn. The
 * operation reports it or succeeded; after reopening, acknowledged changes are there, and a file
 * on disk always has its key, wherever the failed operation stopped. */
enum { FOP_NEW, FOP_LINK, FOP_RENAME, FOP_DELETE, FOP_N };

typedef struct fop_state {
    char base[2048], src[2048], dst[2048];
    uint64_t base_id, src_id;
    uint8_t base_ks[32], src_ks[32];
} fop_state;

/* Sets up what operation @p op of round @p r starts from (no injection active). */
static void
fop_prepare(fixture *f, tde_keymgr *km, fop_state *s, int op, int r)
{
    FILE *fp;
    snprintf(s->src, sizeof(s->src), "%s/src%d", f->db, r);
    snprintf(s->dst, sizeof(s->dst), "%s/dst%d", f->db, r);
    if (op == FOP_RENAME) {
        test_new_file(km, s->src, &s->src_id, s->src_ks);
        fp = fopen(s->src, "w");
        fclose(fp);
    }
}

static tde_status
fop_run(tde_keymgr *km, fop_state *s, int op)
{
    tde_file_key *fk = NULL;
    tde_status st = TDE_OK;
    switch (op) {
    case FOP_NEW:
        st = tde_keymgr_new_file(km, s->dst, &fk);
        tde_file_key_free(fk);
        break;
    case FOP_LINK: st = tde_keymgr_link_file(km, s->base, s->dst); break;
    case FOP_RENAME: st = tde_keymgr_rename_file(km, s->src, s->dst); break;
    case FOP_DELETE: st = tde_keymgr_delete_file(km, s->base); break;
    }
    return st;
}

/* The key id of @p path's entry, 0 when it has none. */
static uint64_t
entry_id(tde_keymgr *km, const char *path, uint8_t ks[32])
{
    tde_file_key *fk = NULL;
    uint64_t id;
    assert_tde_ok(tde_keymgr_get_file(km, path, &fk));
    id = tde_file_key_id(fk);
    test_keystream(fk, ks);
    tde_file_key_free(fk);
    return id;
}

static void
fop_check(tde_keymgr *km, fop_state *s, int op, bool acked)
{
    uint8_t ks[32];
    uint64_t id;
    switch (op) {
    case FOP_NEW:
        id = entry_id(km, s->dst, ks);
        assert_true(!acked || id != 0);
        break;
    case FOP_LINK:
        id = entry_id(km, s->dst, ks);
        assert_true(!acked || id != 0);
        if (id != 0) { /* a link entry is a copy of the source's */
            assert_int_equal(id, s->base_id);
            assert_memory_equal(ks, s->base_ks, 32);
        }
        break;
    case FOP_RENAME:
        /* Wherever the file is on disk, that name has its key. */
        assert_true(access(s->src, F_OK) == 0 || access(s->dst, F_OK) == 0);
        if (access(s->dst, F_OK) == 0) {
            assert_int_equal(entry_id(km, s->dst, ks), s->src_id);
            assert_memory_equal(ks, s->src_ks, 32);
        }
        if (access(s->src, F_OK) == 0) {
            assert_int_equal(entry_id(km, s->src, ks), s->src_id);
            assert_memory_equal(ks, s->src_ks, 32);
        }
        if (acked)
            assert_int_equal(entry_id(km, s->src, ks), 0);
        break;
    case FOP_DELETE:
        id = entry_id(km, s->base, ks);
        assert_true(!acked || id == 0);
        if (id != 0) {
            assert_int_equal(id, s->base_id);
            assert_memory_equal(ks, s->base_ks, 32);
        }
        break;
    }
    if (op != FOP_DELETE) { /* the bystander is intact */
        assert_int_equal(entry_id(km, s->base, ks), s->base_id);
        assert_memory_equal(ks, s->base_ks, 32);
    }
}

static void
test_keymgr_every_io_failure_of_every_file_operation(void **state)
{
    fixture *f = *state;
    static const tde_fileio_op ios[] = {TDE_FILEIO_WRITE, TDE_FILEIO_FSYNC, TDE_FILEIO_RENAME,
                                        TDE_FILEIO_FSYNC_DIR};
    fop_state s;
    int round = 0, failures = 0, cases = 0;
    tde_keymgr *km;

    f->cfg.enforce = 0; /* a missing entry reads as plaintext (id 0) */
    km = keymgr_fixture_open(f);
    db_path(f, "base", s.base, sizeof(s.base));
    test_new_file(km, s.base, &s.base_id, s.base_ks);
    for (int op = 0; op < FOP_N; op++) {
        for (size_t io = 0; io < sizeof(ios) / sizeof(ios[0]); io++) {
            unsigned long calls;
            fop_prepare(f, km, &s, op, round++);
            tde_fileio_inject_reset();
            assert_tde_ok(fop_run(km, &s, op));
            calls = tde_fileio_calls(ios[io]);
            if (op == FOP_DELETE)
                test_new_file(km, s.base, &s.base_id, s.base_ks);
            for (unsigned long n = 1; n <= calls; n++) {
                tde_status st;
                fop_prepare(f, km, &s, op, round++);
                tde_fileio_inject_reset();
                tde_fileio_inject(ios[io], n, EIO, false);
                st = fop_run(km, &s, op);
                tde_fileio_inject_reset();
                failures += st != TDE_OK;
                cases++;
                tde_keymgr_close(km);
                km = keymgr_fixture_open(f);
                fop_check(km, &s, op, st == TDE_OK);
                if (op == FOP_DELETE)
                    test_new_file(km, s.base, &s.base_id, s.base_ks);
            }
        }
    }
    tde_keymgr_close(km);
    print_message("%d injected failures, %d reported\n", cases, failures);
    assert_true(failures > 0);
}

/* ---- crash inside a rename over an existing file ------------------------------------- */

/* Creates @p path with a fresh entry holding @p marker encrypted under its key. */
static void
write_marker(tde_keymgr *km, const char *path, const char *marker)
{
    tde_file_key *fk = NULL;
    uint8_t ct[64];
    size_t n = strlen(marker);
    FILE *fp;

    assert_tde_ok(tde_keymgr_new_file(km, path, &fk));
    assert_tde_ok(tde_file_key_process(fk, 0, marker, ct, n));
    tde_file_key_free(fk);
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(ct, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* What @p path decrypts to with the key the key manager gives it. */
static void
read_marker(tde_keymgr *km, const char *path, char *out, size_t cap)
{
    tde_file_key *fk = NULL;
    size_t n = 0;
    uint8_t *ct = slurp(path, &n);

    assert_true(n < cap);
    assert_tde_ok(tde_keymgr_get_file(km, path, &fk));
    assert_tde_ok(tde_file_key_process(fk, 0, ct, out, n));
    out[n] = '\0';
    tde_file_key_free(fk);
    free(ct);
}

/* A rename over CURRENT (as RocksDB does) crashes at every failpoint hit in turn. After reopen,
 * read-only and then read-write, CURRENT decrypts to either its old or its new content, the
 * source (if still there) to its own, and no reserved entry is left. */
static void
test_keymgr_crash_inside_rename_over_keeps_files_readable(void **state)
{
    fixture *f = *state;
    static const char *const fps[] = {
        "filedict.before_append",     "filedict.after_append",
        "filedict.after_sync",        "keymgr.rename.after_link",
        "keymgr.rename.after_rename", "keymgr.rename.after_drop_source"};
    char src[2048], dst[2048], old[64], new[64], got[64];
    unsigned long runs = 0;
    tde_keymgr *km;

    db_path(f, "CURRENT.dbtmp", src, sizeof(src));
    db_path(f, "CURRENT", dst, sizeof(dst));
    for (size_t i = 0; i < sizeof(fps) / sizeof(fps[0]); i++) {
        unsigned long hits;
        km = keymgr_fixture_open(f);
        write_marker(km, dst, "old");
        write_marker(km, src, "new");
        tde_failpoint_arm(fps[i], ULONG_MAX, 42);
        assert_tde_ok(tde_keymgr_rename_file(km, src, dst));
        hits = tde_failpoint_hits();
        tde_failpoint_reset();
        read_marker(km, dst, got, sizeof(got));
        assert_string_equal(got, "new");
        {
            tde_keymgr_metrics m; /* only CURRENT: the reserved record is gone */
            assert_tde_ok(tde_keymgr_metrics_get(km, &m));
            assert_int_equal(m.encrypted_files, 1);
        }
        tde_keymgr_close(km);
        assert_true(hits > 0);
        for (unsigned long n = 1; n <= hits; n++, runs++) {
            tde_keymgr_metrics m;
            pid_t pid;
            int ws;
            bool src_there;

            snprintf(old, sizeof(old), "old %zu/%lu", i, n);
            snprintf(new, sizeof(new), "new %zu/%lu", i, n);
            km = keymgr_fixture_open(f);
            write_marker(km, dst, old);
            write_marker(km, src, new);
            tde_keymgr_close(km);
            pid = fork();
            if (pid == 0) {
                tde_keymgr *c = NULL;
                if (tde_keymgr_open(&c, &f->cfg) != TDE_OK)
                    _exit(3);
                tde_failpoint_arm(fps[i], n, 42);
                _exit(tde_keymgr_rename_file(c, src, dst) == TDE_OK ? 4 : 5);
            }
            assert_int_equal(waitpid(pid, &ws, 0), pid);
            assert_true(WIFEXITED(ws));
            assert_int_equal(WEXITSTATUS(ws), 42);
            src_there = access(src, F_OK) == 0;

            f->cfg.read_only = true;
            km = keymgr_fixture_open(f);
            read_marker(km, dst, got, sizeof(got));
            assert_string_equal(got, src_there ? old : new);
            tde_keymgr_close(km);
            f->cfg.read_only = false;

            km = keymgr_fixture_open(f);
            read_marker(km, dst, got, sizeof(got));
            assert_string_equal(got, src_there ? old : new);
            if (src_there) {
                read_marker(km, src, got, sizeof(got));
                assert_string_equal(got, new);
            }
            assert_tde_ok(tde_keymgr_metrics_get(km, &m));
            assert_int_equal(m.encrypted_files, src_there ? 2 : 1);
            unlink(src);
            assert_tde_ok(tde_keymgr_delete_file(km, src));
            tde_keymgr_close(km);
        }
    }
    assert_true(runs >= 10);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_keymgr_new_file_is_durable_and_readable_after_reopen),
        T(test_keymgr_recreating_a_name_gets_a_fresh_iv),
        T(test_keymgr_enforce_mode_and_plaintext_files),
        T(test_keymgr_plaintext_directory_does_not_enforce),
        T(test_keymgr_names_are_relative_to_roots),
        T(test_keymgr_link_rename_delete),
        T(test_keymgr_second_writer_is_refused_naming_the_pid),
        T(test_keymgr_read_only_open_never_writes),
        T(test_keymgr_rotation_on_period_keeps_old_files_readable),
        T(test_keymgr_method_change_rotates_at_open),
        T(test_keymgr_rotation_failure_does_not_break_new_file),
        T(test_keymgr_key_id_collision_never_overwrites_a_key),
        T(test_keymgr_unused_keys_are_removed_keeping_the_last_n),
        T(test_keymgr_wrong_master_key_is_auth_naming_the_provider),
        T(test_keymgr_master_key_rotation_online_and_at_open),
        T(test_keymgr_failed_master_key_rotation_changes_nothing),
        T(test_keymgr_file_ops_do_not_rewrite_dictionaries),
        T(test_keymgr_kms_failure_at_open_changes_nothing),
        T(test_keymgr_disk_full_mid_append_does_not_block_open),
        T(test_keymgr_rotation_io_failures_never_lose_a_key),
        T(test_keymgr_concurrent_writers_and_rotation),
        T(test_keymgr_metrics_and_listing),
        T(test_keymgr_lost_file_dictionary_is_reported),
        T(test_keymgr_rejects_bad_config),
        T(test_keymgr_v1_fixture_opens),
        T(test_keymgr_every_io_failure_of_every_file_operation),
        T(test_keymgr_crash_inside_rename_over_keeps_files_readable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
