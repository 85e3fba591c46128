/*
 * A stand-in RocksDB host for the tde-ctl retire-key / rewrite tests (RocksDB's C API and
 * libtde-rocksdb's tde_rocksdb_env_new()).
 *
 * Usage: rdb_helper DBPATH KEYDIR|- MASTER_URI ENFORCE OP...
 *   KEYDIR "-" opens the database without encryption (a database before migration).
 *   fill PREFIX N    puts N records PREFIX<i> -> "value of PREFIX<i> ..." and flushes
 *   check PREFIX N   reads them back and compares
 *   hold             keeps the database open until stdin closes
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "tde/rocksdb.h"

static int
die(const char *what, const char *msg)
{
    fprintf(stderr, "rdb_helper: %s: %s\n", what, msg ? msg : "?");
    return 1;
}

int
main(int argc, char **argv)
{
    rocksdb_options_t *opts;
    rocksdb_env_t *env = NULL;
    rocksdb_t *db;
    char *err = NULL, key[64], val[256];
    int rc = 0;

    if (argc < 5)
        return 2;
    opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    if (strcmp(argv[2], "-") != 0) {
        tde_rocksdb_config cfg = {.version = TDE_ROCKSDB_CONFIG_VERSION,
                                  .keymgr_dir = argv[2],
                                  .master_key_uri = argv[3],
                                  .enforce = atoi(argv[4])};
        if (tde_rocksdb_env_new(&env, &cfg) != TDE_OK)
            return die("env", tde_last_error());
        rocksdb_options_set_env(opts, env);
    }
    db = rocksdb_open(opts, argv[1], &err);
    if (db == NULL)
        return die("open", err);
    for (int i = 5; i < argc && rc == 0; i++) {
        if ((strcmp(argv[i], "fill") == 0 || strcmp(argv[i], "check") == 0) && i + 2 < argc) {
            int n = atoi(argv[i + 2]), fill = argv[i][0] == 'f';
            rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
            rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
            for (int j = 0; j < n && rc == 0; j++) {
                snprintf(key, sizeof(key), "%s%06d", argv[i + 1], j);
                snprintf(val, sizeof(val), "value of %s: secret marker %s", key, argv[i + 1]);
                if (fill) {
                    rocksdb_put(db, wo, key, strlen(key), val, strlen(val), &err);
                } else {
                    size_t len = 0;
                    char *got = rocksdb_get(db, ro, key, strlen(key), &len, &err);
                    if (err == NULL && (got == NULL || len != strlen(val) || memcmp(got, val, len)))
                        rc = die(key, "wrong value");
                    rocksdb_free(got);
                }
                if (err != NULL)
                    rc = die(key, err);
            }
            if (fill && rc == 0) {
                rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
                rocksdb_flush(db, fo, &err);
                rocksdb_flushoptions_destroy(fo);
                if (err != NULL)
                    rc = die("flush", err);
            }
            rocksdb_writeoptions_destroy(wo);
            rocksdb_readoptions_destroy(ro);
            i += 2;
        } else if (strcmp(argv[i], "hold") == 0) {
            printf("holding\n");
            fflush(stdout);
            while (read(0, val, sizeof(val)) > 0)
                ;
        } else {
            rc = die("bad op", argv[i]);
        }
    }
    rocksdb_close(db);
    rocksdb_options_destroy(opts);
    if (env != NULL)
        rocksdb_env_destroy(env);
    return rc;
}
