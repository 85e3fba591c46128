/*
 * Cipher throughput: libtde vs OpenSSL EVP and libgcrypt called directly, side
 * by side in one run, on one pinned core, from thread CPU time; the median of
 * several repetitions. Each library keeps its key expanded and only sets a new
 * counter per chunk, which is the best a direct caller can do.
 *
 * Bulk rows (4 KiB - 1 MiB, sequential or at random offsets in a 32 MiB file)
 * are GB/s; the small rows (64 and 128 bytes at random unaligned offsets, and
 * 100 bytes starting 5 bytes into a block: WAL appends) matter per call, so
 * every row also gives ns per call. Small calls run on a cache-hot 256 KiB
 * window, as a WAL append does on the bytes it just wrote; the "hot" 4 KiB row
 * does too, so that it shows the cipher rather than memory bandwidth (the
 * 32 MiB file rows are partly memory-bound).
 *
 *   bench_cipher [--json] [--quick] [--cpu N]
 */
#define _GNU_SOURCE
#include <gcrypt.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tde/cipher.h"

/* LIB_TDE_GCRYPT: libtde forced to its gcrypt backend (the path before aes-vaes-avx512). */
enum { LIB_TDE, LIB_TDE_GCRYPT, LIB_OPENSSL, LIB_GCRYPT, N_LIBS };

typedef struct run {
    tde_method method;
    size_t chunk;
    const size_t *offsets; /* where each chunk starts */
    size_t n_chunks;
    uint8_t *buf;
    const uint8_t *key, *iv;
    tde_cipher *tde, *tde_gcrypt;
    EVP_CIPHER_CTX *evp;
    gcry_cipher_hd_t gcry;
} run;

static double
cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
counter_at(const uint8_t *iv, uint64_t offset, uint8_t ctr[16])
{
    uint64_t add = offset / 16;
    unsigned carry = 0;
    for (int i = 15; i >= 0; i--) {
        unsigned sum = iv[i] + (unsigned)(add & 0xff) + carry;
        ctr[i] = (uint8_t)sum;
        carry = sum >> 8;
        add >>= 8;
    }
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_cipher: %s failed\n", what);
    exit(1);
}

static void
process(run *r, int lib, size_t off)
{
    uint8_t *p = r->buf + off, ctr[16], scratch[16] = {0};
    unsigned skip = off % 16;
    int n;
    switch (lib) {
    case LIB_TDE:
    case LIB_TDE_GCRYPT:
        if (tde_cipher_process(lib == LIB_TDE ? r->tde : r->tde_gcrypt, r->iv, off, p, p,
                               r->chunk) != TDE_OK)
            die(tde_last_error());
        break;
    case LIB_OPENSSL:
        counter_at(r->iv, off, ctr);
        if (EVP_EncryptInit_ex(r->evp, NULL, NULL, NULL, ctr) != 1 ||
            (skip && EVP_EncryptUpdate(r->evp, scratch, &n, scratch, (int)skip) != 1) ||
            EVP_EncryptUpdate(r->evp, p, &n, p, (int)r->chunk) != 1)
            die("EVP_EncryptUpdate");
        break;
    default:
        counter_at(r->iv, off, ctr);
        if (gcry_cipher_setctr(r->gcry, ctr, 16) != 0 ||
            (skip && gcry_cipher_encrypt(r->gcry, scratch, skip, NULL, 0) != 0) ||
            gcry_cipher_encrypt(r->gcry, p, r->chunk, NULL, 0) != 0)
            die("gcry_cipher_encrypt");
    }
}

/* Seconds per call. */
static double
time_calls(run *r, int lib)
{
    double t0 = cpu_seconds();
    for (size_t i = 0; i < r->n_chunks; i++)
        process(r, lib, r->offsets[i]);
    return (cpu_seconds() - t0) / (double)r->n_chunks;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *
evp_name(tde_method m)
{
    return m == TDE_METHOD_AES128_CTR   ? "AES-128-CTR"
           : m == TDE_METHOD_AES192_CTR ? "AES-192-CTR"
           : m == TDE_METHOD_AES256_CTR ? "AES-256-CTR"
                                        : "SM4-CTR";
}

static int
gcry_algo(tde_method m)
{
    return m == TDE_METHOD_AES128_CTR   ? GCRY_CIPHER_AES128
           : m == TDE_METHOD_AES192_CTR ? GCRY_CIPHER_AES192
           : m == TDE_METHOD_AES256_CTR ? GCRY_CIPHER_AES256
                                        : GCRY_CIPHER_SM4;
}

int
main(int argc, char **argv)
{
    bool json = false, quick = false;
    int cpu = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
            cpu = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--json] [--quick] [--cpu N]\n", argv[0]);
            return 2;
        }
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        fprintf(stderr, "bench_cipher: could not pin to cpu %d; running unpinned\n", cpu);

    static const tde_method methods[] = {TDE_METHOD_AES128_CTR, TDE_METHOD_AES192_CTR,
                                         TDE_METHOD_AES256_CTR, TDE_METHOD_SM4_CTR};
    /* chunk bytes and pattern: 0 sequential, 1 random, 2 random at 5 bytes into a block,
     * 3 random in the hot window */
    static const struct {
        size_t chunk;
        int pattern;
    } rows[] = {{64, 1},    {128, 1},   {100, 2},   {4096, 3},  {4096, 0},    {4096, 1},
                {16384, 0}, {16384, 1}, {65536, 0}, {65536, 1}, {1 << 20, 0}, {1 << 20, 1}};
    static const char *const pattern_names[] = {"sequential", "random", "random, skip 5",
                                                "random, hot"};
    const size_t file_len = quick ? 8u << 20 : 32u << 20, hot_window = 256u << 10;
    const size_t small_calls = quick ? 50000 : 200000;
    const int reps = quick ? 3 : 7;
    uint8_t key[32], iv[16];
    for (size_t i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    memset(iv, 0xfe, sizeof(iv));
    uint8_t *buf = calloc(1, file_len);
    size_t *offsets =
        malloc((file_len / 4096 > small_calls ? file_len / 4096 : small_calls) * sizeof(size_t));
    if (buf == NULL || offsets == NULL)
        die("malloc");
    srand(1);

    if (!json)
        printf("| method | chunk | pattern | libtde GB/s | libtde via gcrypt GB/s | OpenSSL GB/s | "
               "libgcrypt GB/s | libtde ns/call | libtde via gcrypt ns/call | OpenSSL ns/call | "
               "libgcrypt ns/call | libtde / via gcrypt | libtde / best direct | libtde backend "
               "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t mi = 0; mi < 4; mi++) {
        tde_method m = methods[mi];
        size_t key_len = tde_method_key_len(m);
        run r = {.method = m, .buf = buf, .key = key, .iv = iv};
        if (tde_cipher_new(&r.tde, m, key, key_len) != TDE_OK ||
            tde_cipher_set_backends("gcrypt") != TDE_OK ||
            tde_cipher_new(&r.tde_gcrypt, m, key, key_len) != TDE_OK ||
            tde_cipher_set_backends(NULL) != TDE_OK)
            die(tde_last_error());
        EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, evp_name(m), NULL);
        r.evp = EVP_CIPHER_CTX_new();
        if (cipher == NULL || EVP_EncryptInit_ex(r.evp, cipher, NULL, key, iv) != 1)
            die("EVP_EncryptInit_ex");
        if (gcry_cipher_open(&r.gcry, gcry_algo(m), GCRY_CIPHER_MODE_CTR, 0) != 0 ||
            gcry_cipher_setkey(r.gcry, key, key_len) != 0)
            die("gcry_cipher_open");
        for (size_t ri = 0; ri < sizeof(rows) / sizeof(rows[0]); ri++) {
            const int pattern = rows[ri].pattern;
            const bool small = rows[ri].chunk < 4096, hot = small || pattern == 3;
            r.chunk = rows[ri].chunk;
            r.n_chunks = small ? small_calls : file_len / r.chunk;
            r.offsets = offsets;
            for (size_t i = 0; i < r.n_chunks; i++) {
                size_t span = (hot ? hot_window : file_len) - r.chunk + 1;
                if (pattern == 0)
                    offsets[i] = i * r.chunk;
                else if (pattern == 1 || pattern == 3)
                    offsets[i] = (size_t)rand() % span;
                else
                    offsets[i] = (size_t)rand() % (span - 5) / 16 * 16 + 5;
            }
            double samples[N_LIBS][16], ns[N_LIBS], gb[N_LIBS];
            for (int rep = 0; rep < reps; rep++) /* interleaved, so drift hits all alike */
                for (int lib = 0; lib < N_LIBS; lib++)
                    samples[lib][rep] = time_calls(&r, lib);
            for (int lib = 0; lib < N_LIBS; lib++) {
                qsort(samples[lib], (size_t)reps, sizeof(double), cmp_double);
                ns[lib] = samples[lib][reps / 2] * 1e9;
                gb[lib] = (double)r.chunk / ns[lib];
            }
            double best = gb[LIB_OPENSSL] > gb[LIB_GCRYPT] ? gb[LIB_OPENSSL] : gb[LIB_GCRYPT];
            char size[32];
            if (r.chunk % 1024 == 0)
                snprintf(size, sizeof(size), "%zu KiB", r.chunk / 1024);
            else
                snprintf(size, sizeof(size), "%zu B", r.chunk);
            if (json)
                printf("{\"method\":\"%s\",\"chunk\":%zu,\"pattern\":\"%s\",\"libtde_gbps\":%.3f,"
                       "\"libtde_gcrypt_gbps\":%.3f,\"openssl_gbps\":%.3f,\"gcrypt_gbps\":%.3f,"
                       "\"libtde_ns\":%.1f,\"libtde_gcrypt_ns\":%.1f,\"openssl_ns\":%.1f,"
                       "\"gcrypt_ns\":%.1f,\"backend\":\"%s\"}\n",
                       tde_method_name(m), r.chunk, pattern_names[pattern], gb[LIB_TDE],
                       gb[LIB_TDE_GCRYPT], gb[LIB_OPENSSL], gb[LIB_GCRYPT], ns[LIB_TDE],
                       ns[LIB_TDE_GCRYPT], ns[LIB_OPENSSL], ns[LIB_GCRYPT],
                       tde_cipher_backend(r.tde));
            else
                printf("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f | %.1f | "
                       "%.2f | %.2f | %s |\n",
                       tde_method_name(m), size, pattern_names[pattern], gb[LIB_TDE],
                       gb[LIB_TDE_GCRYPT], gb[LIB_OPENSSL], gb[LIB_GCRYPT], ns[LIB_TDE],
                       ns[LIB_TDE_GCRYPT], ns[LIB_OPENSSL], ns[LIB_GCRYPT],
                       gb[LIB_TDE] / gb[LIB_TDE_GCRYPT], gb[LIB_TDE] / best,
                       tde_cipher_backend(r.tde));
            fflush(stdout);
        }
        tde_cipher_free(r.tde);
        tde_cipher_free(r.tde_gcrypt);
        EVP_CIPHER_CTX_free(r.evp);
        EVP_CIPHER_free(cipher);
        gcry_cipher_close(r.gcry);
    }
    free(buf);
    free(offsets);
    return 0;
}
