/*
 * The native AES-CTR backend (aes-vaes-avx512), called through its
 * cipher_backend struct and compared with NIST's vectors and byte for byte
 * with OpenSSL's EVP aes-*-ctr. On a CPU without VAES and AVX-512 every case
 * is reported as skipped, never passed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cipher/backend.h"
#include "tde/cipher.h"
#include "kat_sp800_38a.h"
#include "backend_check.h"
#include "testutil.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
extern const cipher_backend tde_cipher_backend_aes_vaes_avx512;

/* The largest batch in lib/cipher/aes_vaes_avx512.c (TAIL): 12 registers of 4 blocks. */
#define BATCH_BYTES (12 * 64)

static const tde_method aes_methods[] = {TDE_METHOD_AES128_CTR, TDE_METHOD_AES192_CTR,
                                         TDE_METHOD_AES256_CTR};

static const EVP_CIPHER *
evp_cipher(tde_method m)
{
    return m == TDE_METHOD_AES128_CTR   ? EVP_aes_128_ctr()
           : m == TDE_METHOD_AES192_CTR ? EVP_aes_192_ctr()
                                        : EVP_aes_256_ctr();
}

#define openssl_ctr(m, ...) openssl_ctr_ref(evp_cipher(m), __VA_ARGS__)

/* ctr += n, as a 128-bit big-endian integer. */
static void
counter_add(uint8_t ctr[16], uint64_t n)
{
    for (int i = 15; i >= 0 && n != 0; i--) {
        n += ctr[i];
        ctr[i] = (uint8_t)n;
        n >>= 8;
    }
}

/*
 * NIST SP 800-38A, Appendix F.5.1, F.5.3 and F.5.5 (CTR-AES128/192/256.Encrypt):
 * one call for all four blocks, then every split of them into two calls.
 */
static void
test_aes_vaes_sp800_38a_vectors(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[32], ctr[16], pt[64], ct[64], buf[64];

    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    test_unhex(SP800_38A_CTR_INIT, ctr, sizeof(ctr));
    test_unhex(SP800_38A_PLAINTEXT, pt, sizeof(pt));
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(test_unhex(sp800_38a_ctr[i].key, key, sizeof(key)),
                         tde_method_key_len(sp800_38a_ctr[i].m));
        test_unhex(sp800_38a_ctr[i].ct, ct, sizeof(ct));
        void *sched = backend_key_new(b, sp800_38a_ctr[i].m, key);
        assert_tde_ok(b->process(sched, ctr, 0, pt, buf, sizeof(pt)));
        assert_memory_equal(buf, ct, sizeof(ct));
        for (size_t cut = 0; cut <= sizeof(pt); cut++) {
            uint8_t c2[16];
            memcpy(c2, ctr, 16);
            counter_add(c2, cut / 16);
            memcpy(buf, pt, sizeof(pt));
            assert_tde_ok(b->process(sched, ctr, 0, buf, buf, cut));
            assert_tde_ok(b->process(sched, c2, (unsigned)(cut % 16), buf + cut, buf + cut,
                                     sizeof(pt) - cut));
            assert_memory_equal(buf, ct, sizeof(ct));
        }
        b->key_free(sched);
    }
}

/* A counter with @p ones trailing bytes of 0xff-ish, @p before_wrap blocks before it carries. */
static void
counter_before_carry(uint8_t ctr[16], uint64_t *rng, size_t ones, unsigned before_wrap)
{
    for (int i = 0; i < 16; i++)
        ctr[i] = (uint8_t)test_rand(rng);
    if (ones == 0)
        return;
    memset(ctr + 16 - ones, 0xff, ones);
    ctr[15] = (uint8_t)(0x100 - before_wrap); /* before_wrap in 1..255 */
}

/*
 * Every skip (0..15) and every length from 0 to four largest batches plus 33
 * bytes, in place and out of place, in exact-size heap buffers, at counters
 * with no carry and with carries across 2^32, 2^64 and the 2^128 wrap after
 * 1, 16, 31, 32, 33, 47, 48 and 100 blocks: the start, middle and end of a
 * batch (bulk batches are 32 blocks, the last one of a call up to 48).
 */
static void
test_aes_vaes_every_skip_and_length(void **state)
{
    static const unsigned wraps[] = {1, 16, 31, 32, 33, 47, 48, 100};
    static const size_t widths[] = {4, 8, 16}; /* carry across 2^32, 2^64, 2^128 */
    enum { N_WRAPS = sizeof(wraps) / sizeof(wraps[0]) };
    const cipher_backend *b = *state;
    const size_t max_len = 4 * BATCH_BYTES + 33;
    uint64_t rng = 0x0123456789abcdefu;
    uint8_t key[32];

    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    uint8_t *plain = malloc(max_len + 16), *expect = malloc(max_len + 16);
    assert_true(plain && expect);
    for (size_t i = 0; i < max_len + 16; i++)
        plain[i] = (uint8_t)test_rand(&rng);
    for (size_t mi = 0; mi < 3; mi++) {
        tde_method m = aes_methods[mi];
        for (int i = 0; i < 32; i++)
            key[i] = (uint8_t)test_rand(&rng);
        void *sched = backend_key_new(b, m, key);
        /* Base 0: no carry nearby; then each width and wrap (AES-128 gets them all, the others
         * the 2^128 ones, which take the same path). */
        for (size_t base = 0; base <= 3 * N_WRAPS; base++) {
            size_t ones = base == 0 ? 0 : widths[(base - 1) / N_WRAPS];
            unsigned wrap = base == 0 ? 0 : wraps[(base - 1) % N_WRAPS];
            if (mi != 0 && ones != 0 && ones != 16)
                continue;
            uint8_t ctr[16];
            counter_before_carry(ctr, &rng, ones, wrap);
            /* expect[i] is plain[i] XOR keystream byte i from ctr. */
            assert_true(openssl_ctr(m, key, ctr, 0, plain, expect, max_len + 16));
            for (size_t len = 0; len <= max_len; len++) {
                uint8_t *in = malloc(len ? len : 1), *out = malloc(len ? len : 1);
                assert_true(in && out);
                for (unsigned s = 0; s < 16; s++) {
                    for (int in_place = 0; in_place < 2; in_place++) {
                        uint8_t *dst = in_place ? in : out;
                        memcpy(in, plain + s, len);
                        assert_tde_ok(b->process(sched, ctr, s, in, dst, len));
                        if (memcmp(dst, expect + s, len) != 0 ||
                            (!in_place && memcmp(in, plain + s, len) != 0))
                            fail_msg("%s %s, carry at 2^%zu after %u blocks: skip %u, length "
                                     "%zu, %s differs from OpenSSL",
                                     b->name, tde_method_name(m), ones * 8, wrap, s, len,
                                     in_place ? "in place" : "out of place");
                    }
                }
                free(in);
                free(out);
            }
        }
        b->key_free(sched);
    }
    free(plain);
    free(expect);
}

/*
 * Buffers that end at (or start at) an inaccessible page: a masked load or
 * store that touches one byte outside the caller's range faults, whatever the
 * sanitizer instruments (masked-off bytes never fault).
 */
static void
test_aes_vaes_guard_pages(void **state)
{
    const cipher_backend *b = *state;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), max_len = 4 * BATCH_BYTES + 33;
    const size_t span = (max_len + page - 1) / page * page;
    uint8_t key[16] = {9, 8, 7}, ctr[16];
    uint64_t rng = 42;

    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    counter_before_carry(ctr, &rng, 16, 20);
    /* guard | span bytes | guard */
    uint8_t *map =
        mmap(NULL, span + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map, page, PROT_NONE), 0);
    assert_int_equal(mprotect(map + page + span, page, PROT_NONE), 0);
    uint8_t *lo = map + page, *hi = map + page + span;
    uint8_t *expect = malloc(max_len + 16), *zero = calloc(1, max_len + 16);
    assert_true(expect && zero);
    assert_true(openssl_ctr(TDE_METHOD_AES128_CTR, key, ctr, 0, zero, expect, max_len + 16));
    void *sched = backend_key_new(b, TDE_METHOD_AES128_CTR, key);
    for (size_t len = 0; len <= max_len; len++) {
        for (unsigned s = 0; s < 16; s++) {
            /* Starting right after the first guard page, then ending right before the second. */
            for (int end = 0; end < 2; end++) {
                uint8_t *p = end ? hi - len : lo;
                memset(p, 0, len);
                assert_tde_ok(b->process(sched, ctr, s, p, p, len));
                if (memcmp(p, expect + s, len) != 0)
                    fail_msg("skip %u, length %zu differs from OpenSSL next to a guard page", s,
                             len);
            }
        }
    }
    b->key_free(sched);
    free(expect);
    free(zero);
    munmap(map, span + 2 * page);
}

/* Random keys, counters (some about to carry), skips, lengths up to 1 MiB and alignments. */
static void
test_aes_vaes_random_calls(void **state)
{
    const cipher_backend *b = *state;
    uint64_t rng = 0x5eed5eed12345678u;

    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    for (int iter = 0; iter < 600; iter++) {
        tde_method m = aes_methods[iter % 3];
        uint8_t key[32], ctr[16];
        for (int i = 0; i < 32; i++)
            key[i] = (uint8_t)test_rand(&rng);
        static const size_t ones[] = {0, 4, 8, 16};
        counter_before_carry(ctr, &rng, ones[test_rand(&rng) % 4],
                             (unsigned)(1 + test_rand(&rng) % 255));
        unsigned s = (unsigned)(test_rand(&rng) % 16);
        size_t len = iter % 50 == 0  ? (size_t)(test_rand(&rng) % (1u << 20))
                     : iter % 5 == 0 ? (size_t)(test_rand(&rng) % 70000)
                                     : (size_t)(test_rand(&rng) % 5000);
        size_t align = (size_t)(test_rand(&rng) % 64);
        uint8_t *in = malloc(len + align + 1), *out = malloc(len + 1), *expect = malloc(len + 1);
        assert_true(in && out && expect);
        for (size_t i = 0; i < len + align; i++)
            in[i] = (uint8_t)test_rand(&rng);
        assert_true(openssl_ctr(m, key, ctr, s, in + align, expect, len));
        void *sched = backend_key_new(b, m, key);
        if (iter & 1) {
            assert_tde_ok(b->process(sched, ctr, s, in + align, in + align, len));
            assert_memory_equal(in + align, expect, len);
        } else {
            assert_tde_ok(b->process(sched, ctr, s, in + align, out, len));
            assert_memory_equal(out, expect, len);
        }
        b->key_free(sched);
        free(in);
        free(out);
        free(expect);
    }
}

typedef struct thread_arg {
    const cipher_backend *b;
    void *sched;
    const uint8_t *key;
    uint64_t seed;
    int mismatches;
} thread_arg;

static void *
thread_main(void *p)
{
    thread_arg *a = p;
    uint64_t rng = a->seed;
    enum { MAX = 9000 };
    uint8_t *buf = malloc(MAX), *expect = malloc(MAX);
    if (buf == NULL || expect == NULL) {
        a->mismatches = -1;
        goto done;
    }
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t ctr[16];
        counter_before_carry(ctr, &rng, (test_rand(&rng) & 1) ? 16 : 0,
                             (unsigned)(1 + test_rand(&rng) % 255));
        unsigned s = (unsigned)(test_rand(&rng) % 16);
        size_t len = (size_t)(test_rand(&rng) % MAX);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)test_rand(&rng);
        if (!openssl_ctr(TDE_METHOD_AES256_CTR, a->key, ctr, s, buf, expect, len) ||
            a->b->process(a->sched, ctr, s, buf, buf, len) != TDE_OK ||
            memcmp(buf, expect, len) != 0)
            a->mismatches++;
    }
done:
    free(buf);
    free(expect);
    return NULL;
}

/* One schedule used by several threads at once. */
static void
test_aes_vaes_threads_share_a_schedule(void **state)
{
    const cipher_backend *b = *state;
    enum { N = 4 };
    uint8_t key[32];
    pthread_t t[N];
    thread_arg args[N];

    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 13 + 5);
    void *sched = backend_key_new(b, TDE_METHOD_AES256_CTR, key);
    for (int i = 0; i < N; i++) {
        args[i] = (thread_arg){b, sched, key, 1000 + (uint64_t)i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].mismatches, 0);
    }
    b->key_free(sched);
}

static void
test_aes_vaes_rejects_other_methods_and_bad_keys(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[32] = {0}, iv[16] = {0}, buf[16] = {0};
    void *sched = NULL;

    assert_false(b->supports(TDE_METHOD_SM4_CTR));
    assert_false(b->supports(TDE_METHOD_PLAINTEXT));
    assert_int_equal(b->key_new(&sched, TDE_METHOD_AES128_CTR, key, 32), TDE_ERR_INVALID_ARG);
    assert_int_equal(b->key_new(&sched, TDE_METHOD_AES192_CTR, key, 16), TDE_ERR_INVALID_ARG);
    assert_int_equal(b->key_new(&sched, TDE_METHOD_AES256_CTR, key, 24), TDE_ERR_INVALID_ARG);
    assert_int_equal(b->key_new(&sched, TDE_METHOD_SM4_CTR, key, 16), TDE_ERR_INVALID_ARG);
    assert_null(sched);
    if (!backend_available(b, TDE_METHOD_AES128_CTR))
        skip();
    sched = backend_key_new(b, TDE_METHOD_AES128_CTR, key);
    assert_int_equal(b->process(sched, iv, 16, buf, buf, sizeof(buf)), TDE_ERR_INVALID_ARG);
    b->key_free(sched);
}

/*
 * Through the public API: AES goes to aes-vaes-avx512 by default where the CPU has it,
 * TDE_CIPHER_BACKEND=gcrypt still forces the old path, and both give the same bytes.
 */
static void
test_aes_vaes_is_the_default_and_gcrypt_can_be_forced(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[32] = {3, 1, 4, 1, 5}, iv[16], a[3000], g[3000];

    if (getenv("TDE_CIPHER_BACKEND") != NULL) {
        print_message("TDE_CIPHER_BACKEND is set: the default order is overridden; skipped\n");
        skip();
    }
    memset(iv, 0xff, sizeof(iv));
    for (size_t mi = 0; mi < 3; mi++) {
        tde_method m = aes_methods[mi];
        tde_cipher *c = NULL;
        memset(a, 0x5a, sizeof(a));
        memcpy(g, a, sizeof(a));
        assert_tde_ok(tde_cipher_set_backends(NULL));
        assert_tde_ok(tde_cipher_new(&c, m, key, tde_method_key_len(m)));
        assert_string_equal(tde_cipher_backend(c), b->supports(m) ? b->name : "gcrypt");
        assert_tde_ok(tde_cipher_process(c, iv, 12345, a, a, sizeof(a)));
        tde_cipher_free(c);
        /* TDE_CIPHER_BACKEND=gcrypt, read when the default order is (re)loaded. */
        assert_int_equal(setenv("TDE_CIPHER_BACKEND", "gcrypt", 1), 0);
        assert_tde_ok(tde_cipher_set_backends(NULL));
        assert_int_equal(unsetenv("TDE_CIPHER_BACKEND"), 0);
        assert_tde_ok(tde_cipher_new(&c, m, key, tde_method_key_len(m)));
        assert_string_equal(tde_cipher_backend(c), "gcrypt");
        assert_tde_ok(tde_cipher_process(c, iv, 12345, g, g, sizeof(g)));
        tde_cipher_free(c);
        assert_memory_equal(a, g, sizeof(a));
    }
    assert_tde_ok(tde_cipher_set_backends(NULL));
}

#define AES_CASE(fn)                                                                               \
    {                                                                                              \
#fn, fn, NULL, NULL, (void *)&tde_cipher_backend_aes_vaes_avx512                           \
    }

int
main(void)
{
    const struct CMUnitTest tests[] = {
        AES_CASE(test_aes_vaes_sp800_38a_vectors),
        AES_CASE(test_aes_vaes_every_skip_and_length),
        AES_CASE(test_aes_vaes_guard_pages),
        AES_CASE(test_aes_vaes_random_calls),
        AES_CASE(test_aes_vaes_threads_share_a_schedule),
        AES_CASE(test_aes_vaes_rejects_other_methods_and_bad_keys),
        AES_CASE(test_aes_vaes_is_the_default_and_gcrypt_can_be_forced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
static void
test_aes_vaes_not_x86(void **state)
{
    (void)state;
    print_message("not an x86-64 build: aes-vaes-avx512 is not compiled in\n");
    skip();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_aes_vaes_not_x86)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
