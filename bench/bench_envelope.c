/*
 * Envelope throughput against bare AES-256-GCM, side by side in one run.
 *
 *   bench_envelope [--json] [--quick]
 *
 * For each size: seal and open a buffer with tde_envelope_seal/open under a
 * key-file master key (fresh data key, wrap, header), and the same bytes with
 * one tde_gcm_seal/open call under a fixed key. The ratio (envelope / bare)
 * is the envelope's cost: per-record key generation and wrapping dominate
 * small records and vanish for large ones. Streams are sealed and opened in
 * memory with the default 64 KiB segments. Each number is the median of 5 (process CPU time:
 * the machine may be shared) timed runs of a loop that lasts at least ~0.2 s.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tde/envelope.h"
#include "tde/gcm.h"

static tde_masterkey *mk;
static uint8_t gcm_key[32], iv[12], tag[16];

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
check(tde_status st, const char *what)
{
    if (st != TDE_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, tde_status_str(st), tde_last_error());
        exit(1);
    }
}

typedef void (*op_fn)(const uint8_t *in, size_t len, void *arg);

/* Median seconds per call of @p fn. */
static double
measure(op_fn fn, const uint8_t *in, size_t len, void *arg, double min_seconds)
{
    double runs[5];
    size_t iters = 1;
    for (;;) {
        double t = now();
        for (size_t i = 0; i < iters; i++)
            fn(in, len, arg);
        t = now() - t;
        if (t >= min_seconds / 5 || iters > (1u << 24))
            break;
        iters *= 2;
    }
    for (int r = 0; r < 5; r++) {
        double t = now();
        for (size_t i = 0; i < iters; i++)
            fn(in, len, arg);
        runs[r] = (now() - t) / (double)iters;
    }
    qsort(runs, 5, sizeof(runs[0]), cmp_double);
    return runs[2];
}

static void
env_seal(const uint8_t *in, size_t len, void *arg)
{
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    (void)arg;
    check(tde_envelope_seal(mk, NULL, in, len, &rec, &rec_len), "seal");
    free(rec);
}

struct sealed {
    uint8_t *rec;
    size_t len;
};

static void
env_open(const uint8_t *in, size_t len, void *arg)
{
    struct sealed *s = arg;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    (void)in;
    (void)len;
    check(tde_envelope_open(mk, NULL, NULL, s->rec, s->len, &pt, &pt_len, NULL), "open");
    free(pt);
}

static void
gcm_seal(const uint8_t *in, size_t len, void *arg)
{
    check(tde_gcm_seal(gcm_key, 32, iv, 12, NULL, 0, in, len, arg, tag, 16), "gcm seal");
}

static void
gcm_open(const uint8_t *in, size_t len, void *arg)
{
    check(tde_gcm_open(gcm_key, 32, iv, 12, NULL, 0, in, len, tag, 16, arg), "gcm open");
}

struct mem {
    uint8_t *data;
    size_t len, pos;
};

static tde_status
mem_read(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct mem *m = arg;
    size_t n = m->len - m->pos < cap ? m->len - m->pos : cap;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    *got = n;
    return TDE_OK;
}

static tde_status
mem_write(void *arg, const uint8_t *buf, size_t len)
{
    struct mem *m = arg;
    if (m->data != NULL)
        memcpy(m->data + m->pos, buf, len);
    m->pos += len;
    return TDE_OK;
}

static void
stream_seal(const uint8_t *in, size_t len, void *arg)
{
    struct mem src = {(uint8_t *)in, len, 0}, *dst = arg;
    dst->pos = 0;
    check(tde_envelope_seal_stream(mk, NULL, mem_read, &src, mem_write, dst), "seal stream");
}

static void
stream_open(const uint8_t *in, size_t len, void *arg)
{
    struct mem *src = arg, sink = {NULL, 0, 0};
    (void)in;
    (void)len;
    src->pos = 0;
    check(tde_envelope_open_stream(mk, NULL, NULL, mem_read, src, mem_write, &sink, NULL),
          "open stream");
}

static void
row(int json, const char *workload, size_t size, const char *op, double env_s, double bare_s)
{
    double env_mbps = (double)size / env_s / 1e6, bare_mbps = (double)size / bare_s / 1e6;
    if (json)
        printf("{\"workload\": \"%s %zu B\", \"method\": \"%s\", \"envelope_us\": %.3f, "
               "\"bare_gcm_us\": %.3f, \"envelope_MBps\": %.1f, \"bare_gcm_MBps\": %.1f, "
               "\"ratio\": %.3f}\n",
               workload, size, op, env_s * 1e6, bare_s * 1e6, env_mbps, bare_mbps,
               env_mbps / bare_mbps);
    else
        printf("| %-7s | %10zu | %-4s | %12.2f | %12.2f | %10.1f | %10.1f | %6.3f |\n", workload,
               size, op, env_s * 1e6, bare_s * 1e6, env_mbps, bare_mbps, env_mbps / bare_mbps);
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {64, 4096, 65536, 1 << 20, 16 << 20};
    char dir[] = "/tmp/bench_envelope.XXXXXX", path[64], uri[80];
    int json = 0, quick = 0;
    double min_s;
    size_t big = 64 << 20;
    uint8_t *buf, *ct, *back, *sealed_buf;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--json] [--quick]\n", argv[0]);
            return 2;
        }
    }
    min_s = quick ? 0.05 : 0.2;
    if (quick)
        big = 16 << 20;
    tde_secret_allow_unlocked(1);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/master.key", dir);
    check(tde_keyfile_create(path), "keyfile");
    snprintf(uri, sizeof(uri), "file://%s", path);
    check(tde_masterkey_open(&mk, uri), "masterkey");
    unlink(path);
    rmdir(dir);
    buf = malloc(big);
    ct = malloc(big);
    back = malloc(big);
    /* A sealed stream adds a header and 16 bytes per 64 KiB segment. */
    sealed_buf = malloc(big + big / 1024 + 65536);
    if (buf == NULL || ct == NULL || back == NULL || sealed_buf == NULL)
        return 1;
    check(tde_random_bytes(buf, big), "random");
    check(tde_random_bytes(gcm_key, 32), "random");

    if (!json) {
        printf(
            "| record  | bytes      | op   | envelope us  | bare GCM us  | env MB/s   | GCM MB/s   "
            "| ratio  |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        struct sealed s;
        double e, b;
        if (quick && n > (1u << 20))
            continue;
        e = measure(env_seal, buf, n, NULL, min_s);
        b = measure(gcm_seal, buf, n, ct, min_s);
        row(json, "buffer", n, "seal", e, b);
        check(tde_envelope_seal(mk, NULL, buf, n, &s.rec, &s.len), "seal");
        gcm_seal(buf, n, ct);
        e = measure(env_open, NULL, n, &s, min_s);
        b = measure(gcm_open, ct, n, back, min_s);
        row(json, "buffer", n, "open", e, b);
        free(s.rec);
    }
    {
        struct mem sealed = {sealed_buf, 0, 0};
        double e = measure(stream_seal, buf, big, &sealed, min_s);
        double b = measure(gcm_seal, buf, big, ct, min_s);
        row(json, "stream", big, "seal", e, b);
        sealed.len = sealed.pos;
        e = measure(stream_open, NULL, big, &sealed, min_s);
        b = measure(gcm_open, ct, big, back, min_s);
        row(json, "stream", big, "open", e, b);
    }
    free(buf);
    free(ct);
    free(back);
    free(sealed_buf);
    tde_masterkey_free(mk);
    return 0;
}
