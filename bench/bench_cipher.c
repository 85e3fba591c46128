/*
 * Cipher throughput: libtde vs OpenSSL EVP and libgcrypt called directly, side
 * by side in one run, on one pinned core, from thread CPU time; the median of
 * several repetitions. Each library keeps its key expanded and only sets a new
 * counter per chunk, which is the best a direct caller can do.
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

enum { LIB_TDE, LIB_OPENSSL, LIB_GCRYPT, N_LIBS };

typedef struct run {
    tde_method method;
    size_t chunk;
    const size_t *offsets; /* where each chunk starts */
    size_t n_chunks;
    uint8_t *buf;
    const uint8_t *key, *iv;
    tde_cipher *tde;
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
        if (tde_cipher_process(r->tde, r->iv, off, p, p, r->chunk) != TDE_OK)
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

static double
gbps(run *r, int lib)
{
    double t0 = cpu_seconds();
    for (size_t i = 0; i < r->n_chunks; i++)
        process(r, lib, r->offsets[i]);
    double t = cpu_seconds() - t0;
    return (double)r->n_chunks * (double)r->chunk / t / 1e9;
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
    static const size_t chunks[] = {4096, 16384, 65536, 1 << 20};
    const size_t file_len = quick ? 8u << 20 : 32u << 20;
    const int reps = quick ? 3 : 7;
    uint8_t key[32], iv[16];
    for (size_t i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    memset(iv, 0xfe, sizeof(iv));
    uint8_t *buf = calloc(1, file_len);
    size_t *offsets = malloc(file_len / 4096 * sizeof(size_t));
    if (buf == NULL || offsets == NULL)
        die("malloc");
    srand(1);

    if (!json)
        printf("| method | chunk | pattern | libtde GB/s | OpenSSL GB/s | libgcrypt GB/s | "
               "libtde / best direct | libtde / OpenSSL | libtde backend |\n"
               "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t mi = 0; mi < 4; mi++) {
        tde_method m = methods[mi];
        size_t key_len = tde_method_key_len(m);
        run r = {.method = m, .buf = buf, .key = key, .iv = iv};
        if (tde_cipher_new(&r.tde, m, key, key_len) != TDE_OK)
            die(tde_last_error());
        EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, evp_name(m), NULL);
        r.evp = EVP_CIPHER_CTX_new();
        if (cipher == NULL || EVP_EncryptInit_ex(r.evp, cipher, NULL, key, iv) != 1)
            die("EVP_EncryptInit_ex");
        if (gcry_cipher_open(&r.gcry, gcry_algo(m), GCRY_CIPHER_MODE_CTR, 0) != 0 ||
            gcry_cipher_setkey(r.gcry, key, key_len) != 0)
            die("gcry_cipher_open");
        for (size_t ci = 0; ci < 4; ci++) {
            for (int random = 0; random < 2; random++) {
                r.chunk = chunks[ci];
                r.n_chunks = file_len / r.chunk;
                r.offsets = offsets;
                for (size_t i = 0; i < r.n_chunks; i++)
                    offsets[i] = random ? (size_t)rand() % (file_len - r.chunk + 1) : i * r.chunk;
                double samples[N_LIBS][16], med[N_LIBS];
                for (int rep = 0; rep < reps; rep++) /* interleaved, so drift hits all alike */
                    for (int lib = 0; lib < N_LIBS; lib++)
                        samples[lib][rep] = gbps(&r, lib);
                for (int lib = 0; lib < N_LIBS; lib++) {
                    qsort(samples[lib], (size_t)reps, sizeof(double), cmp_double);
                    med[lib] = samples[lib][reps / 2];
                }
                double best =
                    med[LIB_OPENSSL] > med[LIB_GCRYPT] ? med[LIB_OPENSSL] : med[LIB_GCRYPT];
                const char *pattern = random ? "random" : "sequential";
                if (json)
                    printf(
                        "{\"method\":\"%s\",\"chunk\":%zu,\"pattern\":\"%s\",\"libtde_gbps\":%.3f,"
                        "\"openssl_gbps\":%.3f,\"gcrypt_gbps\":%.3f,\"backend\":\"%s\"}\n",
                        tde_method_name(m), r.chunk, pattern, med[LIB_TDE], med[LIB_OPENSSL],
                        med[LIB_GCRYPT], tde_cipher_backend(r.tde));
                else
                    printf("| %s | %zu KiB | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n",
                           tde_method_name(m), r.chunk / 1024, pattern, med[LIB_TDE],
                           med[LIB_OPENSSL], med[LIB_GCRYPT], med[LIB_TDE] / best,
                           med[LIB_TDE] / med[LIB_OPENSSL], tde_cipher_backend(r.tde));
                fflush(stdout);
            }
        }
        tde_cipher_free(r.tde);
        EVP_CIPHER_CTX_free(r.evp);
        EVP_CIPHER_free(cipher);
        gcry_cipher_close(r.gcry);
    }
    free(buf);
    free(offsets);
    return 0;
}
