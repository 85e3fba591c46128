/*
 * Key-manager benchmark: new_file + delete_file with real fsync, on 1 and 2
 * threads (2 threads exercise the file dictionary's group commit), against the
 * same number of bare append+fsync calls (40-byte records, one O_APPEND file
 * shared by the same number of threads) on the same disk in the same run.
 * Each new_file and each delete_file counts as one operation; the target is
 * >= 0.8x the bare append+fsync rate. Two baselines: one thread (the disk's
 * plain fsync rate) and the same number of threads as the key manager (where
 * the kernel merges concurrent fsyncs of one file into one journal commit).
 *
 *   bench_keymgr [--json] [--quick] [--ops N] [--dir PATH]
 *
 * --dir must be on the disk you care about (default: the current directory;
 * /tmp may be tmpfs, where fsync is free).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Paths here are short; a truncated one would fail loudly at open. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "tde/secret.h"

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_keymgr: %s: %s\n", what, tde_last_error());
    exit(1);
}

typedef struct job {
    tde_keymgr *km;
    const char *db;
    int fd;
    int t, n; /* thread index, operations (pairs for keymgr) */
} job;

static void *
bare_main(void *arg)
{
    job *j = arg;
    char rec[40];
    memset(rec, j->t, sizeof(rec));
    for (int i = 0; i < j->n; i++)
        if (write(j->fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec) || fsync(j->fd) != 0) {
            perror("bench_keymgr: bare append");
            exit(1);
        }
    return NULL;
}

static void *
km_main(void *arg)
{
    job *j = arg;
    char path[4200];
    for (int i = 0; i < j->n; i++) {
        tde_file_key *fk = NULL;
        snprintf(path, sizeof(path), "%s/%d-%06d.sst", j->db, j->t, i);
        if (tde_keymgr_new_file(j->km, path, &fk) != TDE_OK)
            die("new_file");
        tde_file_key_free(fk);
        if (tde_keymgr_delete_file(j->km, path) != TDE_OK)
            die("delete_file");
    }
    return NULL;
}

#define MAX_REPS 5

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static double run(void *(*fn)(void *), int threads, int per, tde_keymgr *km, const char *db,
                  int fd);

/* @p threads threads appending @p per 40-byte records each, with fsync, to one O_APPEND file. */
static double
run_bare(const char *path, int threads, int per)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    double t;
    if (fd < 0) {
        perror("bench_keymgr: open");
        exit(1);
    }
    t = run(bare_main, threads, per, NULL, NULL, fd);
    close(fd);
    return t;
}

/* Runs @p threads copies of @p fn, each doing @p per operations; returns seconds. */
static double
run(void *(*fn)(void *), int threads, int per, tde_keymgr *km, const char *db, int fd)
{
    pthread_t th[2];
    job jobs[2];
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){km, db, fd, t, per};
        pthread_create(&th[t], NULL, fn, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    return now() - t0;
}

int
main(int argc, char **argv)
{
    bool json = false, quick = false;
    int ops = 1000, reps = 3;
    const char *base = ".";
    char root[4300], dir[4400], db[4400], key[4400], uri[4500], bare[4096];
    tde_keymgr_root r;
    tde_keymgr_config cfg;
    tde_keymgr *km = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            ops = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--json] [--quick] [--ops N] [--dir PATH]\n", argv[0]);
            return 2;
        }
    }
    if (quick) {
        ops = ops / 4 > 0 ? ops / 4 : 1;
        reps = 1;
    }
    tde_secret_allow_unlocked(1);
    if (realpath(base, bare) == NULL) {
        perror("bench_keymgr: --dir");
        return 1;
    }
    snprintf(root, sizeof(root), "%s/bench-keymgr-XXXXXX", bare);
    if (mkdtemp(root) == NULL) {
        perror("bench_keymgr: mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/meta", root);
    snprintf(db, sizeof(db), "%s/db", root);
    snprintf(key, sizeof(key), "%s/master.key", root);
    snprintf(uri, sizeof(uri), "file://%s", key);
    snprintf(bare, sizeof(bare), "%s/bare.log", root);
    mkdir(db, 0700);
    if (tde_keyfile_create(key) != TDE_OK)
        die("keyfile");
    r = (tde_keymgr_root){"db", db};
    cfg = (tde_keymgr_config){.version = TDE_KEYMGR_CONFIG_VERSION,
                              .dir = dir,
                              .roots = &r,
                              .n_roots = 1,
                              .method = TDE_METHOD_AES256_CTR,
                              .master_key_uri = uri,
                              .enforce = -1};
    if (tde_keymgr_open(&km, &cfg) != TDE_OK)
        die("open");

    if (!json)
        printf("| workload | threads | operations | bare append+fsync/s, 1 thread | bare, same "
               "threads | keymgr ops/s | ratio vs 1-thread bare | ratio vs same-threads bare | "
               "mean metadata write |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int threads = 1; threads <= 2; threads++) {
        int per = ops / threads, n = 2 * per * threads;
        double bare1[MAX_REPS], bareN[MAX_REPS], kmr[MAX_REPS], b1, bn, kr, mean_us;
        tde_keymgr_metrics m0, m1;

        if (tde_keymgr_metrics_get(km, &m0) != TDE_OK)
            die("metrics");
        /* Interleaved repetitions (the disk is shared and noisy); medians are reported. */
        for (int r = 0; r < reps; r++) {
            bare1[r] = n / run_bare(bare, 1, n);
            bareN[r] = threads == 1 ? bare1[r] : n / run_bare(bare, threads, n / threads);
            kmr[r] = n / run(km_main, threads, per, km, db, -1);
        }
        if (tde_keymgr_metrics_get(km, &m1) != TDE_OK)
            die("metrics");
        b1 = median(bare1, reps);
        bn = median(bareN, reps);
        kr = median(kmr, reps);
        mean_us = (double)(m1.meta_write_ns - m0.meta_write_ns) / 1e3 /
                  (double)(m1.meta_writes - m0.meta_writes);
        if (json)
            printf("{\"workload\": \"new_file+delete_file %dT\", \"method\": \"aes256-ctr\", "
                   "\"threads\": %d, \"operations\": %d, \"bare_fsync_1t_per_s\": %.1f, "
                   "\"bare_fsync_same_threads_per_s\": %.1f, \"keymgr_ops_per_s\": %.1f, "
                   "\"ratio\": %.3f, \"ratio_same_threads\": %.3f, \"mean_write_us\": %.1f}\n",
                   threads, threads, n, b1, bn, kr, kr / b1, kr / bn, mean_us);
        else
            printf("| new_file+delete_file | %d | %d | %.0f | %.0f | %.0f | %.2fx | %.2fx | %.0f "
                   "us |\n",
                   threads, n, b1, bn, kr, kr / b1, kr / bn, mean_us);
    }
    tde_keymgr_close(km);
    {
        char cmd[4400 + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_keymgr: could not remove %s\n", root);
    }
    return 0;
}
