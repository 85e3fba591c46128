/*
 * The encrypted RocksDB Env and the key manager on KMIP master keys, against a
 * real PyKMIP server (run through run_pykmip.sh): write/reopen/read with no
 * plaintext on disk, master-key rotation to a new KMIP key, and a rotation
 * whose new key's server is down (clear error, nothing lost).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "testutil.h"
#include "kmip_harness.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "tde/rocksdb.h"

#define SECRET "kmip-guarded value: the launch code is 0000"
#define RECORDS 200

static char run_tag[32];

/* A kmip:// URI for key @p name on @p port (static buffer, one of 4). */
static const char *
kmip_uri(int port, const char *name, const char *extra)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]),
             "kmip://127.0.0.1:%d/%s%s?ca=%s&cert=%s&key=%s&tls_ciphers=AES128-SHA256&retries=1"
             "&backoff_ms=50%s",
             port, name, run_tag, harness_cert("ca.crt"), harness_cert("client.crt"),
             harness_cert("client.key"), extra);
    return b;
}

/* Number of regular files under @p dir holding @p needle; *scanned counts all files. */
static int
files_containing(const char *dir, const char *needle, int *scanned)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int hits = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(lstat(path, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            hits += files_containing(path, needle, scanned);
        } else if (S_ISREG(sb.st_mode) && sb.st_size > 0) {
            FILE *f = fopen(path, "rb");
            char *buf = malloc((size_t)sb.st_size);
            assert_non_null(f);
            assert_non_null(buf);
            assert_int_equal(fread(buf, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
            fclose(f);
            if (memmem(buf, (size_t)sb.st_size, needle, strlen(needle)) != NULL)
                hits++;
            free(buf);
            (*scanned)++;
        }
    }
    closedir(d);
    return hits;
}

static rocksdb_env_t *
env_on(const char *kmdir, const char *master, const char *previous)
{
    tde_rocksdb_config cfg;
    rocksdb_env_t *env = NULL;
    tde_status st;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = TDE_ROCKSDB_CONFIG_VERSION;
    cfg.keymgr_dir = kmdir;
    cfg.master_key_uri = master;
    cfg.previous_master_key_uri = previous;
    cfg.method = "aes256-ctr";
    st = tde_rocksdb_env_new(&env, &cfg);
    if (st != TDE_OK)
        print_error("tde_rocksdb_env_new: %s\n", tde_last_error());
    assert_int_equal(st, TDE_OK);
    return env;
}

/* Opens the database at @p dbdir through @p env; writes the records when @p write. */
static void
use_db(rocksdb_env_t *env, const char *dbdir, int write)
{
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    char *err = NULL;
    rocksdb_t *db;

    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_env(opts, env);
    rocksdb_options_set_compression(opts, rocksdb_no_compression);
    db = rocksdb_open(opts, dbdir, &err);
    if (err != NULL)
        print_error("rocksdb_open: %s\n", err);
    assert_null(err);
    for (int i = 0; i < RECORDS; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%05d", i);
        if (write) {
            rocksdb_put(db, wo, key, strlen(key), SECRET, strlen(SECRET), &err);
            assert_null(err);
        } else {
            size_t len = 0;
            char *got = rocksdb_get(db, ro, key, strlen(key), &len, &err);
            assert_null(err);
            assert_non_null(got);
            assert_int_equal(len, strlen(SECRET));
            assert_memory_equal(got, SECRET, len);
            rocksdb_free(got);
        }
    }
    if (write) {
        rocksdb_flush(db, fo, &err);
        assert_null(err);
    }
    rocksdb_close(db);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(opts);
}

static void
rocksdb_on_kmip(const char *name, const char *mode)
{
    char *dir = test_tmpdir("kmip-rocksdb");
    char kmdir[4096], dbdir[4096];
    const char *master = kmip_uri(harness_port(), name, mode);
    rocksdb_env_t *env;
    int scanned = 0;

    snprintf(kmdir, sizeof(kmdir), "%s/keys", dir);
    snprintf(dbdir, sizeof(dbdir), "%s/db", dir);
    /* Create the key once; the Env then opens it by name. */
    {
        tde_masterkey *mk = NULL;
        assert_tde_ok(tde_masterkey_open(&mk, kmip_uri(harness_port(), name, "&create=1")));
        tde_masterkey_free(mk);
    }
    env = env_on(kmdir, master, NULL);
    use_db(env, dbdir, 1);
    rocksdb_env_destroy(env);
    env = env_on(kmdir, master, NULL);
    use_db(env, dbdir, 0);
    rocksdb_env_destroy(env);
    assert_int_equal(files_containing(dir, SECRET, &scanned), 0);
    assert_true(scanned > 3);
    test_rmtree(dir);
    free(dir);
}

static void
test_kmip_rocksdb_env_local_mode(void **state)
{
    (void)state;
    rocksdb_on_kmip("rdb-local", "&mode=local");
}

static void
test_kmip_rocksdb_env_server_mode(void **state)
{
    (void)state;
    rocksdb_on_kmip("rdb-server", "&mode=server");
}

static tde_keymgr *
keymgr_on(const char *kmdir, const char *root, const char *master, const char *previous,
          tde_status want)
{
    tde_keymgr_root roots[1] = {{"db", root}};
    tde_keymgr_config cfg;
    tde_keymgr *km = NULL;
    tde_status st;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = TDE_KEYMGR_CONFIG_VERSION;
    cfg.dir = kmdir;
    cfg.roots = roots;
    cfg.n_roots = 1;
    cfg.method = TDE_METHOD_AES256_CTR;
    cfg.master_key_uri = master;
    cfg.previous_master_key_uri = previous;
    st = tde_keymgr_open(&km, &cfg);
    if (st != want)
        print_error("tde_keymgr_open: %s: %s\n", tde_status_str(st), tde_last_error());
    assert_int_equal(st, want);
    return km;
}

static void
test_kmip_rocksdb_master_key_rotation_to_new_kmip_key(void **state)
{
    char *dir = test_tmpdir("kmip-rotate");
    char kmdir[4096], file[4096];
    const char *a = kmip_uri(harness_port(), "rot-a", "&create=1");
    const char *b = kmip_uri(harness_port(), "rot-b", "&create=1&mode=server");
    const char *down = kmip_uri(harness_dead_port(), "rot-c", "&create=1");
    tde_keymgr *km;
    tde_file_key *fk = NULL;
    uint64_t id;
    (void)state;

    snprintf(kmdir, sizeof(kmdir), "%s/keys", dir);
    snprintf(file, sizeof(file), "%s/f.sst", dir);
    km = keymgr_on(kmdir, dir, a, NULL, TDE_OK);
    assert_tde_ok(tde_keymgr_new_file(km, file, &fk));
    id = tde_file_key_id(fk);
    tde_file_key_free(fk);

    /* The new key's server is down: a clear error, and everything stays as it was. */
    assert_int_equal(tde_keymgr_rotate_master_key(km, down), TDE_ERR_UNAVAILABLE);
    assert_non_null(strstr(tde_last_error(), "127.0.0.1:"));
    tde_keymgr_close(km);
    km = keymgr_on(kmdir, dir, a, NULL, TDE_OK);

    /* Rotation to a new KMIP key (server-side wrapping). */
    assert_tde_ok(tde_keymgr_rotate_master_key(km, b));
    tde_keymgr_close(km);
    km = keymgr_on(kmdir, dir, b, NULL, TDE_OK);
    assert_tde_ok(tde_keymgr_get_file(km, file, &fk));
    assert_int_equal(tde_file_key_id(fk), id);
    tde_file_key_free(fk);
    tde_keymgr_close(km);
    /* The old key alone no longer opens it. */
    {
        tde_keymgr_root roots[1] = {{"db", dir}};
        tde_keymgr_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.version = TDE_KEYMGR_CONFIG_VERSION, cfg.dir = kmdir, cfg.roots = roots;
        cfg.n_roots = 1, cfg.method = TDE_METHOD_AES256_CTR, cfg.master_key_uri = a;
        km = NULL;
        assert_true(tde_keymgr_open(&km, &cfg) != TDE_OK);
        assert_null(km);
    }
    test_rmtree(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmip_rocksdb_env_local_mode),
        cmocka_unit_test(test_kmip_rocksdb_env_server_mode),
        cmocka_unit_test(test_kmip_rocksdb_master_key_rotation_to_new_kmip_key),
    };
    snprintf(run_tag, sizeof(run_tag), "-r%ld-%d", (long)time(NULL), (int)getpid());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
