/*
 * Latency of the kmip:// provider against the server run_pykmip.sh started (not a
 * ctest test): open, wrap and unwrap of a 32-byte data key, local vs server mode.
 *   [KMIP_BENCH_ITERATIONS=200] tests/kmip/run_pykmip.sh build/tests/kmip/kmip_bench
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "kmip_harness.h"
#include "tde/masterkey.h"

static double
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints the median and 99th percentile of @p n samples. */
static void
row(const char *mode, const char *op, double *s, int n)
{
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    printf("| %s | %s | %d | %.1f | %.1f |\n", mode, op, n, s[n / 2], s[(n * 99) / 100]);
}

static void
run(const char *mode, int iters)
{
    char uri[4096];
    double *t_open = calloc((size_t)iters, sizeof(double));
    double *t_wrap = calloc((size_t)iters, sizeof(double));
    double *t_unwrap = calloc((size_t)iters, sizeof(double));
    int opens = iters < 20 ? iters : 20;
    uint8_t dk[32] = {0};

    snprintf(uri, sizeof(uri),
             "kmip://127.0.0.1:%d/bench-%d?create=1&mode=%s&ca=%s&cert=%s&key=%s"
             "&tls_ciphers=AES128-SHA256",
             harness_port(), (int)getpid(), mode, harness_cert("ca.crt"),
             harness_cert("client.crt"), harness_cert("client.key"));
    for (int i = 0; i < opens; i++) {
        tde_masterkey *mk = NULL;
        double t0 = now_us();
        if (tde_masterkey_open(&mk, uri) != TDE_OK) {
            fprintf(stderr, "open: %s\n", tde_last_error());
            exit(1);
        }
        t_open[i] = (now_us() - t0) / 1000.0;
        tde_masterkey_free(mk);
    }
    row(mode, "open (ms)", t_open, opens);
    {
        tde_masterkey *mk = NULL;
        if (tde_masterkey_open(&mk, uri) != TDE_OK)
            exit(1);
        for (int i = 0; i < iters; i++) {
            uint8_t *blob = NULL;
            size_t blob_len;
            tde_secret *back = NULL;
            double t0 = now_us();
            if (tde_masterkey_wrap(mk, NULL, 0, dk, sizeof(dk), &blob, &blob_len) != TDE_OK)
                exit(1);
            t_wrap[i] = (now_us() - t0) / 1000.0;
            t0 = now_us();
            if (tde_masterkey_unwrap(mk, NULL, 0, blob, blob_len, &back) != TDE_OK)
                exit(1);
            t_unwrap[i] = (now_us() - t0) / 1000.0;
            tde_secret_free(back);
            free(blob);
        }
        tde_masterkey_free(mk);
    }
    row(mode, "wrap (ms)", t_wrap, iters);
    row(mode, "unwrap (ms)", t_unwrap, iters);
    free(t_open);
    free(t_wrap);
    free(t_unwrap);
}

int
main(void)
{
    const char *env = getenv("KMIP_BENCH_ITERATIONS");
    int iters = env != NULL ? atoi(env) : 200;
    if (iters < 1)
        iters = 1;
    printf("| mode | operation | n | median | p99 |\n|---|---|---|---|---|\n");
    run("local", iters);
    run("server", iters);
    return 0;
}
