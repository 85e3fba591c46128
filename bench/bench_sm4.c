/*
 * SM4-CTR throughput on one core: every vectorised libtde path this CPU
 * supports, beside OpenSSL EVP and libgcrypt called directly, in the same run.
 * Thread CPU time, median of repetitions.
 *
 *   bench_sm4 [--json] [--size BYTES] [--offset BYTES | --random] [--reps N] [--seconds S]
 *
 * Each call encrypts --size bytes in place at file offset --offset (default 0;
 * an offset that is not a multiple of 16 starts inside a block). With
 * --random, the calls go to random offsets that are never a multiple of 16
 * (the case of a RocksDB block read), within a 256 KiB window so that the
 * data stays in cache and the cipher is what is measured.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gcrypt.h>
#include <openssl/evp.h>

#include "cipher/sm4.h"
#include "tde/secret.h"

typedef struct bench_ctx {
    const cipher_backend *backend;
    void *sched;
    EVP_CIPHER_CTX *evp;
    gcry_cipher_hd_t gcry;
} bench_ctx;

static const uint8_t key[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t iv[16] = {0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
                               0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f};
enum { WINDOW = 256 << 10, N_OFFSETS = 4096 };
static uint64_t offsets[N_OFFSETS]; /* file offset of call i % N_OFFSETS */
static uint64_t base;               /* file offset of buf[0] */
static unsigned next_call;

static double
cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Encrypts @p len bytes in place, as a file cipher would for one read or write.
 * OpenSSL and libgcrypt start inside a block by discarding keystream bytes.
 */
static int
run_once(bench_ctx *c, uint8_t *buf, size_t len)
{
    uint64_t offset = offsets[next_call++ % N_OFFSETS];
    unsigned skip = (unsigned)(offset % 16);
    uint8_t discard[16], counter[16];

    memcpy(counter, iv, 16);
    sm4_counter_add(counter, offset / 16);
    buf += offset - base;
    if (c->backend != NULL)
        return c->backend->process(c->sched, counter, skip, buf, buf, len) == TDE_OK;
    if (c->evp != NULL) {
        int n = 0;
        return EVP_EncryptInit_ex(c->evp, NULL, NULL, NULL, counter) == 1 &&
               EVP_EncryptUpdate(c->evp, discard, &n, discard, (int)skip) == 1 &&
               EVP_EncryptUpdate(c->evp, buf, &n, buf, (int)len) == 1;
    }
    return gcry_cipher_setctr(c->gcry, counter, 16) == 0 &&
           (skip == 0 || gcry_cipher_encrypt(c->gcry, discard, skip, NULL, 0) == 0) &&
           gcry_cipher_encrypt(c->gcry, buf, len, NULL, 0) == 0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median GB/s over @p reps repetitions of about @p seconds each; 0 on failure. */
static double
measure(bench_ctx *c, uint8_t *buf, size_t len, int reps, double seconds)
{
    double *rates = calloc((size_t)reps, sizeof(double)), median;

    if (rates == NULL || !run_once(c, buf, len)) /* warm-up */
        return free(rates), 0;
    for (int r = 0; r < reps; r++) {
        double start = cpu_seconds(), elapsed;
        size_t bytes = 0;
        do {
            /* about 256 KiB between clock reads (a syscall here) so that small calls are timed */
            for (size_t i = 0; i < 16 || i * len < (256u << 10); i++) {
                if (!run_once(c, buf, len))
                    return free(rates), 0;
                bytes += len;
            }
            elapsed = cpu_seconds() - start;
        } while (elapsed < seconds);
        rates[r] = (double)bytes / elapsed / 1e9;
    }
    qsort(rates, (size_t)reps, sizeof(double), cmp_double);
    median = rates[reps / 2];
    free(rates);
    return median;
}

static void
cpu_model(char *out, size_t cap)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];

    snprintf(out, cap, "unknown");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(out, cap, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
}

int
main(int argc, char **argv)
{
    enum { MAX_ROWS = 8 };
    const char *names[MAX_ROWS];
    double rates[MAX_ROWS];
    const char *notes[MAX_ROWS];
    int rows = 0, json = 0, reps = 7, random = 0;
    size_t len = 64 * 1024;
    uint64_t offset = 0;
    double seconds = 0.2, openssl_rate = 0;
    char cpu[128];
    uint8_t *buf;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            len = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--offset") == 0 && i + 1 < argc)
            offset = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--random") == 0)
            random = 1;
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--json] [--size BYTES] [--offset BYTES | --random] [--reps N] "
                    "[--seconds S]\n",
                    argv[0]);
            return 2;
        }
    }
    if (len == 0 || reps < 1 || seconds <= 0) {
        fprintf(stderr, "bench_sm4: size, reps and seconds must be positive\n");
        return 2;
    }
    base = offset;
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < N_OFFSETS; i++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        /* never a multiple of 16: the call starts inside a block */
        offsets[i] =
            random ? base + (rng >> 33) % (WINDOW - 16) / 16 * 16 + 1 + (rng >> 20) % 15 : base;
    }
    buf = calloc(1, len + (random ? WINDOW : 0));
    if (buf == NULL)
        return 1;
    if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
        gcry_check_version(NULL);
        gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
        gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    }
    tde_secret_allow_unlocked(1); /* a benchmark need not depend on RLIMIT_MEMLOCK */

#ifdef SM4_HAVE_X86
    const cipher_backend *ours[] = {&tde_cipher_backend_sm4_gfni_avx512,
                                    &tde_cipher_backend_sm4_gfni_avx2,
                                    &tde_cipher_backend_sm4_aesni};
    for (size_t b = 0; b < sizeof(ours) / sizeof(ours[0]); b++) {
        bench_ctx c = {.backend = ours[b]};
        names[rows] = ours[b]->name;
        notes[rows] = "libtde";
        rates[rows] = 0;
        if (!ours[b]->supports(TDE_METHOD_SM4_CTR))
            notes[rows] = "not supported by this CPU";
        else if (ours[b]->key_new(&c.sched, TDE_METHOD_SM4_CTR, key, sizeof(key)) == TDE_OK) {
            rates[rows] = measure(&c, buf, len, reps, seconds);
            ours[b]->key_free(c.sched);
        }
        rows++;
    }
#endif
    {
        bench_ctx c = {.evp = EVP_CIPHER_CTX_new()};
        names[rows] = "openssl-evp";
        notes[rows] = OpenSSL_version(OPENSSL_VERSION);
        rates[rows] = 0;
        if (c.evp != NULL && EVP_EncryptInit_ex(c.evp, EVP_sm4_ctr(), NULL, key, iv) == 1)
            rates[rows] = openssl_rate = measure(&c, buf, len, reps, seconds);
        EVP_CIPHER_CTX_free(c.evp);
        rows++;
    }
    {
        bench_ctx c = {0};
        static char gcry_note[64];
        snprintf(gcry_note, sizeof(gcry_note), "libgcrypt %s", gcry_check_version(NULL));
        names[rows] = "gcrypt";
        notes[rows] = gcry_note;
        rates[rows] = 0;
        if (gcry_cipher_open(&c.gcry, GCRY_CIPHER_SM4, GCRY_CIPHER_MODE_CTR, 0) == 0 &&
            gcry_cipher_setkey(c.gcry, key, sizeof(key)) == 0)
            rates[rows] = measure(&c, buf, len, reps, seconds);
        gcry_cipher_close(c.gcry);
        rows++;
    }

    cpu_model(cpu, sizeof(cpu));
    if (json) {
        printf("{\"benchmark\": \"sm4-ctr\", \"cpu\": \"%s\", \"buffer_bytes\": %zu, "
               "\"file_offset\": %llu, \"random_offsets\": %s, \"repetitions\": %d, \"clock\": "
               "\"thread cpu time\", "
               "\"results\": [",
               cpu, len, (unsigned long long)offset, random ? "true" : "false", reps);
        for (int r = 0; r < rows; r++)
            printf("%s\n  {\"backend\": \"%s\", \"gb_per_s\": %.3f, \"vs_openssl\": %.2f, "
                   "\"note\": \"%s\"}",
                   r ? "," : "", names[r], rates[r],
                   openssl_rate > 0 ? rates[r] / openssl_rate : 0.0, notes[r]);
        printf("\n]}\n");
    } else {
        if (random)
            printf("SM4-CTR, one core, %zu-byte in-place calls at random offsets (never a "
                   "multiple of 16) from %llu, median of %d, thread CPU time\nCPU: %s\n\n",
                   len, (unsigned long long)offset, reps, cpu);
        else
            printf("SM4-CTR, one core, %zu-byte in-place calls at file offset %llu, median of %d, "
                   "thread CPU time\nCPU: %s\n\n",
                   len, (unsigned long long)offset, reps, cpu);
        printf("| backend | GB/s | x OpenSSL EVP | note |\n|---|---:|---:|---|\n");
        for (int r = 0; r < rows; r++) {
            if (rates[r] > 0)
                printf("| %s | %.3f | %.1f | %s |\n", names[r], rates[r],
                       openssl_rate > 0 ? rates[r] / openssl_rate : 0.0, notes[r]);
            else
                printf("| %s | - | - | %s |\n", names[r], notes[r]);
        }
    }
    free(buf);
    return 0;
}
