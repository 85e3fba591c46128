/* tde_keymgr_copy_subset(): a self-contained key-manager copy for the files below one directory
 * (checkpoints, backups): only those entries, re-rooted, and only their keys; never over an
 * existing directory; any I/O failure leaves nothing behind and the source untouched. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "common/fileio.h"
#include "keymgr_fixture.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "testutil.h"

/* The key manager in k; copies go to dest, re-rooted at there. */
typedef struct fixture {
    keymgr_fixture k;
    char there[1024], dest[1024];
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    keymgr_fixture_init(&f->k, "keymgr-subset");
    snprintf(f->there, sizeof(f->there), "%s/there", f->k.tmp);
    snprintf(f->dest, sizeof(f->dest), "%s/copy-meta", f->k.tmp);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    keymgr_fixture_clean(&f->k);
    free(f);
    return 0;
}

/* The copy in f->dest with one root @p root at f->there. */
static tde_keymgr *
open_copy(fixture *f, const char *root, const char *uri, bool read_only)
{
    tde_keymgr_root r = {root, f->there};
    tde_keymgr_config c = {.version = TDE_KEYMGR_CONFIG_VERSION,
                           .dir = f->dest,
                           .roots = &r,
                           .n_roots = 1,
                           .master_key_uri = uri,
                           .enforce = -1,
                           .read_only = read_only};
    tde_keymgr *km = NULL;
    assert_tde_ok(tde_keymgr_open(&km, &c));
    return km;
}

/* Registers @p base/@p rel and returns its key id and keystream. */
static void
new_file(tde_keymgr *km, const char *base, const char *rel, uint64_t *id, uint8_t ks[32])
{
    char p[2048];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    test_new_file(km, p, id, ks);
}

static void
expect_file(tde_keymgr *km, const char *base, const char *rel, uint64_t id, const uint8_t ks[32])
{
    char p[2048];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    test_expect_file(km, p, id, ks);
}

typedef struct names {
    char list[16][256];
    int n;
} names;

static int
collect_name(void *arg, const tde_keymgr_file_info *fi)
{
    names *n = arg;
    assert_true(n->n < 16);
    snprintf(n->list[n->n++], 256, "%s", fi->name);
    return 0;
}

static bool
has_name(const names *n, const char *name)
{
    for (int i = 0; i < n->n; i++)
        if (strcmp(n->list[i], name) == 0)
            return true;
    return false;
}

typedef struct keys {
    uint64_t id[16], current;
    int n;
} keys;

static int
collect_key(void *arg, const tde_keymgr_key_info *k)
{
    keys *ks = arg;
    assert_true(ks->n < 16);
    ks->id[ks->n++] = k->id;
    if (k->current)
        ks->current = k->id;
    return 0;
}

static bool
has_key(const keys *k, uint64_t id)
{
    for (int i = 0; i < k->n; i++)
        if (k->id[i] == id)
            return true;
    return false;
}

/* Every file name and byte in @p dir (flat), to show a directory was not touched. */
static char *
dir_image(const char *dir, size_t *len)
{
    char *img = NULL;
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[64];
    int nn = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && nn < 64)
            names[nn++] = strdup(e->d_name);
    closedir(d);
    for (int i = 0; i < nn; i++) /* readdir order is not stable across runs: sort */
        for (int j = i + 1; j < nn; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < nn; i++) {
        char p[2048];
        uint8_t *data = NULL;
        size_t dl = 0;
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        assert_tde_ok(tde_fileio_read_all(p, &data, &dl));
        img = realloc(img, n + strlen(names[i]) + 1 + dl);
        memcpy(img + n, names[i], strlen(names[i]) + 1);
        n += strlen(names[i]) + 1;
        if (dl > 0)
            memcpy(img + n, data, dl);
        n += dl;
        free(data);
        free(names[i]);
    }
    *len = n;
    return img;
}

/* Nothing named f->dest or f->dest.tmp-* is left in its parent. */
static void
assert_nothing_left(fixture *f)
{
    struct stat sb;
    DIR *d = opendir(f->k.tmp);
    struct dirent *e;
    assert_int_not_equal(lstat(f->dest, &sb), 0);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        assert_null(strstr(e->d_name, "copy-meta"));
    closedir(d);
}

/* Source: db/ckpt/a (key 1), db/ckpt/sub/b (key 2), db/ckpt2/c, db/other, wal/w (key 3). */
typedef struct source {
    uint64_t id_a, id_b, id_other;
    uint8_t ks_a[32], ks_b[32];
} source;

static tde_keymgr *
make_source(fixture *f, source *s)
{
    tde_keymgr *km = keymgr_fixture_open(&f->k);
    new_file(km, f->k.db, "ckpt/a", &s->id_a, s->ks_a);
    f->k.now += 10;
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    new_file(km, f->k.db, "ckpt/sub/b", &s->id_b, s->ks_b);
    f->k.now += 10;
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    new_file(km, f->k.db, "ckpt2/c", &s->id_other, NULL);
    new_file(km, f->k.db, "other", NULL, NULL);
    new_file(km, f->k.wal, "w", NULL, NULL);
    assert_true(s->id_a != s->id_b && s->id_b != s->id_other);
    return km;
}

static void
test_subset_copies_only_entries_below_and_their_keys(void **state)
{
    fixture *f = *state;
    source s;
    char ckpt[1200];
    uint64_t n = 0;
    names nm = {0};
    keys k = {0};
    tde_keymgr *km = make_source(f, &s), *cp;
    size_t l0, l1;
    char *before = dir_image(f->k.dir, &l0), *after;

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", f->k.db);
    assert_tde_ok(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", NULL, &n));
    assert_int_equal(n, 2);
    after = dir_image(f->k.dir, &l1);
    assert_int_equal(l0, l1);
    assert_memory_equal(before, after, l0);
    free(before);
    free(after);

    /* Modes: directory 0700, files 0600. */
    {
        struct stat sb;
        DIR *d = opendir(f->dest);
        struct dirent *e;
        assert_int_equal(stat(f->dest, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0700);
        while ((e = readdir(d)) != NULL) {
            char p[2048];
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", f->dest, e->d_name);
            assert_int_equal(stat(p, &sb), 0);
            assert_int_equal(sb.st_mode & 0777, 0600);
        }
        closedir(d);
    }

    /* Re-rooted names, only the two entries; only their keys; the newest used one current. */
    cp = open_copy(f, "cp", f->k.key1, true);
    assert_tde_ok(tde_keymgr_list_files(cp, collect_name, &nm));
    assert_int_equal(nm.n, 2);
    assert_true(has_name(&nm, "cp/a"));
    assert_true(has_name(&nm, "cp/sub/b"));
    assert_tde_ok(tde_keymgr_list_keys(cp, collect_key, &k));
    assert_int_equal(k.n, 2);
    assert_true(has_key(&k, s.id_a) && has_key(&k, s.id_b));
    assert_false(has_key(&k, s.id_other));
    assert_int_equal(k.current, s.id_b);
    expect_file(cp, f->there, "a", s.id_a, s.ks_a);
    expect_file(cp, f->there, "sub/b", s.id_b, s.ks_b);
    tde_keymgr_close(cp);

    /* After the source is gone, the copy opens read-write, adds files and rotates. */
    tde_keymgr_close(km);
    test_rmtree(f->k.dir);
    cp = open_copy(f, "cp", f->k.key1, false);
    expect_file(cp, f->there, "a", s.id_a, s.ks_a);
    new_file(cp, f->there, "new", NULL, NULL);
    assert_tde_ok(tde_keymgr_rotate_data_key(cp));
    tde_keymgr_close(cp);
    cp = open_copy(f, "cp", f->k.key1, false);
    expect_file(cp, f->there, "sub/b", s.id_b, s.ks_b);
    tde_keymgr_close(cp);
}

/* The source's current key stays current in the copy when a copied file uses it; a directory
 * with no entries gets a fresh key, none of the source's; the data directory may be a root. */
static void
test_subset_current_key_choice(void **state)
{
    fixture *f = *state;
    source s;
    char ckpt[1200], empty[1200];
    uint64_t n = 99;
    keys k = {0};
    names nm = {0};
    tde_keymgr *km = make_source(f, &s), *cp;

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt2", f->k.db);
    assert_tde_ok(tde_keymgr_copy_subset(km, ckpt, f->dest, "x", NULL, &n));
    assert_int_equal(n, 1);
    cp = open_copy(f, "x", f->k.key1, true);
    assert_tde_ok(tde_keymgr_list_keys(cp, collect_key, &k));
    assert_int_equal(k.n, 1);
    assert_int_equal(k.current, s.id_other);
    tde_keymgr_close(cp);
    test_rmtree(f->dest);

    snprintf(empty, sizeof(empty), "%s/empty", f->k.db);
    assert_tde_ok(tde_keymgr_copy_subset(km, empty, f->dest, "x", NULL, &n));
    assert_int_equal(n, 0);
    cp = open_copy(f, "x", f->k.key1, true);
    memset(&k, 0, sizeof(k));
    assert_tde_ok(tde_keymgr_list_keys(cp, collect_key, &k));
    assert_int_equal(k.n, 1);
    assert_false(k.current == s.id_a || k.current == s.id_b || k.current == s.id_other);
    tde_keymgr_close(cp);
    tde_keymgr_close(open_copy(f, "x", f->k.key1, false)); /* and read-write */
    test_rmtree(f->dest);

    /* The root itself: every db entry, none of wal's. */
    assert_tde_ok(tde_keymgr_copy_subset(km, f->k.db, f->dest, "d", NULL, &n));
    assert_int_equal(n, 4);
    cp = open_copy(f, "d", f->k.key1, true);
    assert_tde_ok(tde_keymgr_list_files(cp, collect_name, &nm));
    assert_true(has_name(&nm, "d/ckpt/a") && has_name(&nm, "d/ckpt2/c") &&
                has_name(&nm, "d/other") && !has_name(&nm, "d/w"));
    tde_keymgr_close(cp);
    tde_keymgr_close(km);
}

static void
test_subset_refuses_existing_dest_and_bad_args(void **state)
{
    fixture *f = *state;
    source s;
    char ckpt[1200], marker[1200];
    uint64_t n = 7;
    tde_keymgr *km = make_source(f, &s);
    struct stat sb;

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", f->k.db);
    mkdir(f->dest, 0755); /* an empty directory: rename(2) would replace it */
    assert_int_equal(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", NULL, &n), TDE_ERR_EXISTS);
    assert_non_null(strstr(tde_last_error(), f->dest));
    assert_int_equal(n, 0);
    assert_int_equal(stat(f->dest, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0755);
    snprintf(marker, sizeof(marker), "%s/keep", f->dest);
    assert_tde_ok(tde_durable_write(marker, "x", 1));
    assert_int_equal(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", NULL, NULL), TDE_ERR_EXISTS);
    assert_int_equal(access(marker, F_OK), 0);
    assert_int_equal(unlink(marker), 0);
    assert_int_equal(rmdir(f->dest), 0);

    /* A data directory under no root, a root name with '/', no destination. */
    assert_int_equal(tde_keymgr_copy_subset(km, f->k.tmp, f->dest, "cp", NULL, NULL),
                     TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "none of the"));
    assert_int_equal(tde_keymgr_copy_subset(km, ckpt, f->dest, "c/p", NULL, NULL),
                     TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_keymgr_copy_subset(km, ckpt, "", "cp", NULL, NULL), TDE_ERR_INVALID_ARG);
    assert_nothing_left(f);
    tde_keymgr_close(km);
}

/* Another master key: the copy opens with it only; an unusable one is a clear error. */
static void
test_subset_other_master_key(void **state)
{
    fixture *f = *state;
    source s;
    char ckpt[1200], bad[1200];
    tde_keymgr *km = make_source(f, &s), *cp = NULL;
    tde_keymgr_root r = {"cp", f->there};
    tde_keymgr_config c = {.version = TDE_KEYMGR_CONFIG_VERSION,
                           .dir = f->dest,
                           .roots = &r,
                           .n_roots = 1,
                           .master_key_uri = f->k.key1,
                           .enforce = -1,
                           .read_only = true};

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", f->k.db);
    snprintf(bad, sizeof(bad), "file://%s/no-such.key", f->k.tmp);
    assert_int_equal(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", bad, NULL),
                     TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), bad));
    assert_non_null(strstr(tde_last_error(), "unusable"));
    assert_nothing_left(f);

    assert_tde_ok(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", f->k.key2, NULL));
    assert_int_equal(tde_keymgr_open(&cp, &c), TDE_ERR_AUTH);
    cp = open_copy(f, "cp", f->k.key2, true);
    expect_file(cp, f->there, "a", s.id_a, s.ks_a);
    tde_keymgr_close(cp);
    tde_keymgr_close(km);
}

/* A read-only follower of a live writer copies what the writer registered after it opened. */
static void
test_subset_from_read_only_follower(void **state)
{
    fixture *f = *state;
    source s;
    char ckpt[1200];
    uint64_t n = 0, id_late;
    uint8_t ks_late[32];
    tde_keymgr *km = make_source(f, &s), *ro = NULL, *cp;
    tde_keymgr_config rc = f->k.cfg;
    size_t l0, l1;
    char *before, *after;

    rc.read_only = true;
    assert_tde_ok(tde_keymgr_open(&ro, &rc));
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    new_file(km, f->k.db, "ckpt/late", &id_late, ks_late);
    before = dir_image(f->k.dir, &l0);
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", f->k.db);
    assert_tde_ok(tde_keymgr_copy_subset(ro, ckpt, f->dest, "cp", NULL, &n));
    assert_int_equal(n, 3);
    after = dir_image(f->k.dir, &l1);
    assert_int_equal(l0, l1);
    assert_memory_equal(before, after, l0);
    free(before);
    free(after);
    cp = open_copy(f, "cp", f->k.key1, true);
    expect_file(cp, f->there, "late", id_late, ks_late);
    expect_file(cp, f->there, "a", s.id_a, s.ks_a);
    tde_keymgr_close(cp);
    tde_keymgr_close(ro);
    tde_keymgr_close(km);
}

/* A rename over CURRENT interrupted by a crash leaves a reserved record; a read-only follower
 * copies what the next read-write open would resolve (the source is still there: the old
 * entry), and no reserved record. */
static void
test_subset_read_only_resolves_interrupted_rename(void **state)
{
    fixture *f = *state;
    char dir[1200], src[2048], dst[2048];
    uint64_t id_old, id_new, n = 0;
    uint8_t ks_old[32], ks_new[32];
    names nm = {0};
    tde_keymgr *km = keymgr_fixture_open(&f->k), *ro = NULL, *cp;
    tde_keymgr_config rc = f->k.cfg;
    pid_t pid;
    int ws;

    snprintf(dir, sizeof(dir), "%s/ckpt", f->k.db);
    mkdir(dir, 0700);
    snprintf(src, sizeof(src), "%s/CURRENT.dbtmp", dir);
    snprintf(dst, sizeof(dst), "%s/CURRENT", dir);
    new_file(km, dir, "CURRENT", &id_old, ks_old);
    new_file(km, dir, "CURRENT.dbtmp", &id_new, ks_new);
    assert_tde_ok(tde_durable_write(src, "new", 3));
    assert_tde_ok(tde_durable_write(dst, "old", 3));
    tde_keymgr_close(km);
    pid = fork();
    if (pid == 0) {
        tde_keymgr *c = NULL;
        if (tde_keymgr_open(&c, &f->k.cfg) != TDE_OK)
            _exit(2);
        tde_failpoint_arm("keymgr.rename.after_link", 1, 42);
        _exit(tde_keymgr_rename_file(c, src, dst) == TDE_OK ? 3 : 4);
    }
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 42);

    rc.read_only = true;
    assert_tde_ok(tde_keymgr_open(&ro, &rc));
    assert_tde_ok(tde_keymgr_copy_subset(ro, dir, f->dest, "cp", NULL, &n));
    assert_int_equal(n, 2);
    tde_keymgr_close(ro);
    cp = open_copy(f, "cp", f->k.key1, true);
    assert_tde_ok(tde_keymgr_list_files(cp, collect_name, &nm));
    assert_int_equal(nm.n, 2);
    expect_file(cp, f->there, "CURRENT", id_old, ks_old);
    expect_file(cp, f->there, "CURRENT.dbtmp", id_new, ks_new);
    tde_keymgr_close(cp);
}

/* Every failure of every write, fsync, rename, directory fsync and open leaves no copy (and no
 * temporary directory) and the source unchanged; a copy reported as made is complete. */
static void
test_subset_io_failures_leave_nothing(void **state)
{
    fixture *f = *state;
    static const tde_fileio_op ops[] = {TDE_FILEIO_OPEN, TDE_FILEIO_WRITE, TDE_FILEIO_FSYNC,
                                        TDE_FILEIO_RENAME, TDE_FILEIO_FSYNC_DIR};
    source s;
    char ckpt[1200];
    tde_keymgr *km = make_source(f, &s), *cp;
    size_t l0, l1;
    char *before = dir_image(f->k.dir, &l0), *after;
    int cases = 0, failures = 0;

    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", f->k.db);
    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        unsigned long calls;
        tde_fileio_inject_reset();
        assert_tde_ok(tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", NULL, NULL));
        calls = tde_fileio_calls(ops[o]);
        test_rmtree(f->dest);
        assert_true(calls > 0);
        for (unsigned long n = 1; n <= calls; n++) {
            tde_status st;
            tde_fileio_inject_reset();
            tde_fileio_inject(ops[o], n, o == 1 ? ENOSPC : EIO, o == 1);
            st = tde_keymgr_copy_subset(km, ckpt, f->dest, "cp", NULL, NULL);
            tde_fileio_inject_reset();
            cases++;
            if (st != TDE_OK) {
                failures++;
                assert_non_null(strstr(tde_last_error(), f->dest));
                assert_nothing_left(f);
            } else {
                /* Only the second fsync of key.dict.bak's directory may fail harmlessly (the
                 * copy fsyncs its directory itself afterwards). */
                cp = open_copy(f, "cp", f->k.key1, true);
                expect_file(cp, f->there, "sub/b", s.id_b, s.ks_b);
                tde_keymgr_close(cp);
                test_rmtree(f->dest);
            }
            after = dir_image(f->k.dir, &l1);
            assert_int_equal(l0, l1);
            assert_memory_equal(before, after, l0);
            free(after);
        }
    }
    print_message("%d injected failures, %d reported\n", cases, failures);
    assert_true(failures >= cases - 1);
    free(before);
    expect_file(km, f->k.db, "ckpt/a", s.id_a, s.ks_a);
    tde_keymgr_close(km);
    km = keymgr_fixture_open(&f->k);
    expect_file(km, f->k.db, "ckpt/sub/b", s.id_b, s.ks_b);
    tde_keymgr_close(km);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_subset_copies_only_entries_below_and_their_keys),
        T(test_subset_current_key_choice),
        T(test_subset_refuses_existing_dest_and_bad_args),
        T(test_subset_other_master_key),
        T(test_subset_from_read_only_follower),
        T(test_subset_read_only_resolves_interrupted_rename),
        T(test_subset_io_failures_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
