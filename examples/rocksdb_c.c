/*
 * An encrypted RocksDB from RocksDB's C API: a key-file master key, one extra
 * Env, write, reopen, read back, and no file on disk holds the plaintext.
 * Usage: example_rocksdb_c DIR (an empty scratch directory).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "tde/masterkey.h"
#include "tde/rocksdb.h"

#define SECRET "attack at dawn: the vault code is 4711"
#define RECORDS 1000

static int
fail(const char *what, const char *msg)
{
    fprintf(stderr, "%s: %s\n", what, msg ? msg : "(no message)");
    return 1;
}

/* Counts the files under @p dir whose bytes contain @p needle (recursively). */
static int
files_containing(const char *dir, const char *needle, int *scanned)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int hits = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        DIR *sub = opendir(path);
        if (sub != NULL) {
            closedir(sub);
            fclose(f);
            hits += files_containing(path, needle, scanned);
            continue;
        }
        (*scanned)++;
        size_t n = strlen(needle), have = 0;
        char buf[65536 + 64];
        size_t got;
        while ((got = fread(buf + have, 1, sizeof(buf) - have, f)) > 0) {
            have += got;
            if (memmem(buf, have, needle, n) != NULL) {
                printf("  PLAINTEXT FOUND in %s\n", path);
                hits++;
                break;
            }
            /* keep the last n-1 bytes: a match may straddle two reads */
            if (have >= n) {
                memmove(buf, buf + have - (n - 1), n - 1);
                have = n - 1;
            }
        }
        fclose(f);
    }
    closedir(d);
    return hits;
}

static rocksdb_t *
open_db(rocksdb_options_t *opts, const char *path, char **err)
{
    return rocksdb_open(opts, path, err);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char keyfile[4096], kmdir[4096], dbdir[4096];
    snprintf(keyfile, sizeof(keyfile), "%s/master.key", argv[1]);
    snprintf(kmdir, sizeof(kmdir), "%s/keys", argv[1]);
    snprintf(dbdir, sizeof(dbdir), "%s/db", argv[1]);

    /* 1. A master key in a key file (in production: a KMS or KMIP URI instead). */
    if (tde_keyfile_create(keyfile) != TDE_OK)
        return fail("tde_keyfile_create", tde_last_error());
    char master_uri[4200];
    snprintf(master_uri, sizeof(master_uri), "file://%s", keyfile);

    /* 2. The encrypted Env: key manager directory, master key, method. */
    tde_rocksdb_config cfg = {0};
    cfg.version = TDE_ROCKSDB_CONFIG_VERSION;
    cfg.keymgr_dir = kmdir;
    cfg.master_key_uri = master_uri;
    cfg.method = "aes256-ctr";
    rocksdb_env_t *env = NULL;
    if (tde_rocksdb_env_new(&env, &cfg) != TDE_OK)
        return fail("tde_rocksdb_env_new", tde_last_error());

    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_env(opts, env);
    rocksdb_options_set_compression(opts, rocksdb_no_compression);

    /* 3. Write, flush to an SST, close. */
    char *err = NULL;
    rocksdb_t *db = open_db(opts, dbdir, &err);
    if (err != NULL)
        return fail("rocksdb_open", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (int i = 0; i < RECORDS; i++) {
        char key[32], val[128];
        snprintf(key, sizeof(key), "record-%06d", i);
        snprintf(val, sizeof(val), "%s #%d", SECRET, i);
        rocksdb_put(db, wo, key, strlen(key), val, strlen(val), &err);
        if (err != NULL)
            return fail("rocksdb_put", err);
    }
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flush(db, fo, &err);
    if (err != NULL)
        return fail("rocksdb_flush", err);
    rocksdb_close(db);
    printf("wrote %d records to %s\n", RECORDS, dbdir);

    /* 4. Reopen and read everything back. */
    db = open_db(opts, dbdir, &err);
    if (err != NULL)
        return fail("rocksdb_open (reopen)", err);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    for (int i = 0; i < RECORDS; i++) {
        char key[32], want[128];
        snprintf(key, sizeof(key), "record-%06d", i);
        snprintf(want, sizeof(want), "%s #%d", SECRET, i);
        size_t len = 0;
        char *got = rocksdb_get(db, ro, key, strlen(key), &len, &err);
        if (err != NULL)
            return fail("rocksdb_get", err);
        if (got == NULL || len != strlen(want) || memcmp(got, want, len) != 0)
            return fail("read back", key);
        if (i == 0)
            printf("reopened, read back: %s -> %.*s\n", key, (int)len, got);
        rocksdb_free(got);
    }
    rocksdb_close(db);
    printf("read back all %d records\n", RECORDS);

    /* 5. No file on disk contains the plaintext. */
    int scanned = 0;
    int hits = files_containing(argv[1], "attack at dawn", &scanned);
    hits += files_containing(argv[1], "record-0000", &scanned);
    printf("scanned %d files for the value and key plaintext: %d hits\n", scanned, hits);

    rocksdb_readoptions_destroy(ro);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(opts);
    rocksdb_env_destroy(env);
    return hits == 0 ? 0 : 1;
}
