/*
 * The vectorised SM4-CTR backends, each called through its cipher_backend
 * struct and compared byte for byte with OpenSSL's EVP_sm4_ctr. A path the CPU
 * lacks is reported as skipped, never passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cipher/sm4.h"
#include "tde/cipher.h"
#include "backend_check.h"
#include "testutil.h"

/* GB/T 32907-2016, appendix A, example 1 (and example 2: 1,000,000 encryptions). */
#define GBT_KEY "0123456789abcdeffedcba9876543210"
#define GBT_CT1 "681edf34d206965e86b3e94f536e4246"
#define GBT_CT1M "595298c7c6fd271f0402f804c33d3f66"

#define openssl_ctr(...) assert_true(openssl_ctr_ref(EVP_sm4_ctr(), __VA_ARGS__))

/* One SM4 block encryption: CTR keystream with the plaintext as counter. */
static void
encrypt_block(const cipher_backend *b, void *sched, const uint8_t pt[16], uint8_t ct[16])
{
    uint8_t zero[16] = {0};
    assert_tde_ok(b->process(sched, pt, 0, zero, ct, 16));
}

static void
test_sm4_gbt32907_vectors(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[16], expect[16], block[16], out[16];
    void *sched;

    if (!backend_available(b, TDE_METHOD_SM4_CTR))
        skip();
    test_unhex(GBT_KEY, key, sizeof(key));
    sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
    encrypt_block(b, sched, key, out);
    test_unhex(GBT_CT1, expect, sizeof(expect));
    assert_memory_equal(out, expect, 16);

    memcpy(block, key, 16);
    for (int i = 0; i < 1000000; i++) {
        encrypt_block(b, sched, block, out);
        memcpy(block, out, 16);
    }
    test_unhex(GBT_CT1M, expect, sizeof(expect));
    assert_memory_equal(block, expect, 16);
    b->key_free(sched);
}

/* Random keys, counters (some about to carry across 2^32, 2^64, 2^128), skips and lengths. */
static void
test_sm4_matches_openssl_at_random_offsets(void **state)
{
    const cipher_backend *b = *state;
    uint64_t rng = 0x5eed5eed12345678u;

    if (!backend_available(b, TDE_METHOD_SM4_CTR))
        skip();
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t key[16], ctr[16];
        for (int i = 0; i < 16; i++) {
            key[i] = (uint8_t)test_rand(&rng);
            ctr[i] = (uint8_t)test_rand(&rng);
        }
        unsigned carry = (unsigned)(test_rand(&rng) % 4); /* none, 2^32, 2^64, 2^128 */
        if (carry != 0) {
            size_t ones = carry == 1 ? 4 : carry == 2 ? 8 : 16;
            memset(ctr + 16 - ones, 0xff, ones);
            ctr[15] = (uint8_t)(0xff - test_rand(&rng) % 80); /* carry within ~80 blocks */
        }
        unsigned skip_bytes = (unsigned)(test_rand(&rng) % 16);
        size_t len =
            iter % 10 == 0 ? (size_t)(test_rand(&rng) % 20000) : (size_t)(test_rand(&rng) % 2100);
        bool in_place = test_rand(&rng) & 1;
        uint8_t *in = malloc(len ? len : 1), *out = malloc(len ? len : 1),
                *expect = malloc(len ? len : 1);
        assert_true(in && out && expect);
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)test_rand(&rng);
        openssl_ctr(key, ctr, skip_bytes, in, expect, len);

        void *sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
        if (in_place) {
            assert_tde_ok(b->process(sched, ctr, skip_bytes, in, in, len));
            if (len != 0)
                assert_memory_equal(in, expect, len);
        } else {
            assert_tde_ok(b->process(sched, ctr, skip_bytes, in, out, len));
            if (len != 0)
                assert_memory_equal(out, expect, len);
        }
        b->key_free(sched);
        free(in);
        free(out);
        free(expect);
    }
}

/* Every batch size, partial chunk and spare chunk: lengths around each boundary, three skips. */
static void
test_sm4_matches_openssl_at_batch_edges(void **state)
{
    const cipher_backend *b = *state;
    static const size_t bases[] = {0, 16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192};
    static const unsigned skips[] = {0, 1, 15};
    uint8_t key[16] = {0x5a}, ctr[16] = {0xc3};

    if (!backend_available(b, TDE_METHOD_SM4_CTR))
        skip();
    void *sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        for (int delta = -17; delta <= 17; delta++) {
            if ((long)bases[i] + delta < 1)
                continue;
            size_t len = (size_t)((long)bases[i] + delta);
            for (size_t k = 0; k < sizeof(skips) / sizeof(skips[0]); k++) {
                uint8_t *buf = malloc(len), *expect = malloc(len);
                assert_true(buf && expect);
                for (size_t j = 0; j < len; j++)
                    buf[j] = (uint8_t)(j * 31 + k);
                openssl_ctr(key, ctr, skips[k], buf, expect, len);
                assert_tde_ok(b->process(sched, ctr, skips[k], buf, buf, len));
                if (memcmp(buf, expect, len) != 0)
                    fail_msg("%s: length %zu, skip %u differs from OpenSSL", b->name, len,
                             skips[k]);
                free(buf);
                free(expect);
            }
        }
    }
    b->key_free(sched);
}

/*
 * Every skip (0..15) and every length from 0 to four largest batches plus 33
 * bytes, at counters with no carry nearby and with carries across 2^32, 2^64
 * and the 2^128 wrap inside the first batch, in place and out of place, in
 * exact-size heap buffers (so that ASan sees any overread or overwrite). On
 * AVX-512, after 100 blocks is in the second byte-sliced group of the first
 * batch, after 200 in the second batch, after 260 in the word-sliced group
 * that the kernel runs beside the second batch of a 257-272 block call.
 */
static void
test_sm4_every_skip_and_length(void **state)
{
    const cipher_backend *b = *state;
    /* Blocks per register: 16 for the AVX-512 path, 8 for the AVX2 ones. */
    const size_t width = strstr(b->name, "avx512") != NULL ? 16 : 8;
    const size_t max_len = 4 * SM4_MAX_GROUPS * width * 16 + 33;
    /* The last two counter bytes; before them, @p ones - 2 bytes of 0xff (the rest random). */
    static const struct {
        const char *what;
        size_t ones;
        uint8_t b14, b15;
    } bases[] = {
        {"no carry", 2, 0x00, 0x10},
        {"carry at 2^32 after 1 block", 4, 0xff, 0xff},
        {"carry at 2^32 after 100 blocks", 4, 0xff, 0x9c},
        {"carry at 2^32 after 200 blocks", 4, 0xff, 0x38},
        {"carry at 2^64 after 260 blocks", 8, 0xfe, 0xfc},
        {"carry at 2^64 after 23 blocks", 8, 0xff, 0xe9},
        {"2^128 wrap after 13 blocks", 16, 0xff, 0xf3},
    };
    uint8_t key[16];
    uint64_t rng = 0x0123456789abcdefu;

    if (!backend_available(b, TDE_METHOD_SM4_CTR))
        skip();
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)test_rand(&rng);
    void *sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
    uint8_t *plain = malloc(max_len + 16), *expect = malloc(max_len + 16);
    assert_true(plain && expect);
    for (size_t i = 0; i < max_len + 16; i++)
        plain[i] = (uint8_t)test_rand(&rng);

    for (size_t k = 0; k < sizeof(bases) / sizeof(bases[0]); k++) {
        uint8_t ctr[16];
        for (int i = 0; i < 16; i++)
            ctr[i] = (uint8_t)test_rand(&rng);
        memset(ctr + 16 - bases[k].ones, 0xff, bases[k].ones);
        ctr[14] = bases[k].b14;
        ctr[15] = bases[k].b15;
        /* expect[i] is plain[i] XOR keystream byte i from ctr. */
        openssl_ctr(key, ctr, 0, plain, expect, max_len + 16);
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
                        fail_msg("%s, %s: skip %u, length %zu, %s differs from OpenSSL", b->name,
                                 bases[k].what, s, len, in_place ? "in place" : "out of place");
                }
            }
            free(in);
            free(out);
        }
    }
    free(plain);
    free(expect);
    b->key_free(sched);
}

/* Splitting a stream at any byte gives the same bytes as one call. */
static void
test_sm4_split_calls_match_one_call(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[16] = {1, 2, 3}, iv[16];
    enum { LEN = 1500 };
    uint8_t *whole = malloc(LEN), *parts = malloc(LEN);

    if (!backend_available(b, TDE_METHOD_SM4_CTR)) {
        free(whole);
        free(parts);
        skip();
    }
    memset(iv, 0xff, sizeof(iv)); /* every split crosses the 2^128 wrap */
    iv[15] = 0xf0;
    memset(whole, 0, LEN);
    memset(parts, 0, LEN);
    void *sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
    assert_tde_ok(b->process(sched, iv, 0, whole, whole, LEN));
    for (size_t cut = 0; cut <= LEN; cut += 37) {
        uint8_t ctr[16];
        memset(parts, 0, LEN);
        assert_tde_ok(b->process(sched, iv, 0, parts, parts, cut));
        memcpy(ctr, iv, 16);
        sm4_counter_add(ctr, cut / 16);
        assert_tde_ok(
            b->process(sched, ctr, (unsigned)(cut % 16), parts + cut, parts + cut, LEN - cut));
        assert_memory_equal(parts, whole, LEN);
    }
    b->key_free(sched);
    free(whole);
    free(parts);
}

static void
test_sm4_rejects_other_methods_and_bad_keys(void **state)
{
    const cipher_backend *b = *state;
    uint8_t key[32] = {0}, iv[16] = {0}, buf[16] = {0};
    void *sched = NULL;

    assert_false(b->supports(TDE_METHOD_AES128_CTR));
    assert_false(b->supports(TDE_METHOD_AES256_CTR));
    assert_false(b->supports(TDE_METHOD_PLAINTEXT));
    assert_int_equal(b->key_new(&sched, TDE_METHOD_SM4_CTR, key, 15), TDE_ERR_INVALID_ARG);
    assert_int_equal(b->key_new(&sched, TDE_METHOD_SM4_CTR, key, 32), TDE_ERR_INVALID_ARG);
    assert_int_equal(b->key_new(&sched, TDE_METHOD_AES128_CTR, key, 16), TDE_ERR_INVALID_ARG);
    assert_null(sched);
    if (!backend_available(b, TDE_METHOD_SM4_CTR))
        skip();
    sched = backend_key_new(b, TDE_METHOD_SM4_CTR, key);
    assert_int_equal(b->process(sched, iv, 16, buf, buf, sizeof(buf)), TDE_ERR_INVALID_ARG);
    b->key_free(sched);
}

#ifdef SM4_HAVE_X86
/* Through the public API: sm4-ctr goes to the first vector path this CPU has, and each can be
 * forced. */
static void
test_sm4_registered_fastest_first(void **state)
{
    const cipher_backend *paths[] = {&tde_cipher_backend_sm4_gfni_avx512,
                                     &tde_cipher_backend_sm4_gfni_avx2,
                                     &tde_cipher_backend_sm4_aesni};
    const char *expect = "gcrypt";
    uint8_t key[16] = {7};
    tde_cipher *c = NULL;

    (void)state;
    if (getenv("TDE_CIPHER_BACKEND") != NULL) {
        print_message("TDE_CIPHER_BACKEND is set: the default order is overridden; skipped\n");
        skip();
    }
    for (int i = 2; i >= 0; i--)
        if (paths[i]->supports(TDE_METHOD_SM4_CTR))
            expect = paths[i]->name;
    assert_tde_ok(tde_cipher_set_backends(NULL));
    assert_tde_ok(tde_cipher_new(&c, TDE_METHOD_SM4_CTR, key, sizeof(key)));
    assert_string_equal(tde_cipher_backend(c), expect);
    tde_cipher_free(c);
    assert_non_null(
        strstr(tde_cipher_backends_available(), "sm4-gfni-avx512,sm4-gfni-avx2,sm4-aesni,gcrypt"));

    for (int i = 0; i < 3; i++) {
        assert_tde_ok(tde_cipher_set_backends(paths[i]->name));
        tde_status st = tde_cipher_new(&c, TDE_METHOD_SM4_CTR, key, sizeof(key));
        if (paths[i]->supports(TDE_METHOD_SM4_CTR)) {
            assert_tde_ok(st);
            assert_string_equal(tde_cipher_backend(c), paths[i]->name);
            tde_cipher_free(c);
        } else {
            print_message("%s: not supported by this CPU; forcing it must fail\n", paths[i]->name);
            assert_int_equal(st, TDE_ERR_UNSUPPORTED);
        }
    }
    assert_tde_ok(tde_cipher_set_backends(NULL));
}

/* Each case once per backend, named "<case> <backend>". */
#define SM4_CASE(fn, b, label)                                                                     \
    {                                                                                              \
#fn " " label, fn, NULL, NULL, (void *)&(b)                                                \
    }
#define SM4_TESTS(b, label)                                                                        \
    SM4_CASE(test_sm4_gbt32907_vectors, b, label),                                                 \
        SM4_CASE(test_sm4_matches_openssl_at_random_offsets, b, label),                            \
        SM4_CASE(test_sm4_matches_openssl_at_batch_edges, b, label),                               \
        SM4_CASE(test_sm4_every_skip_and_length, b, label),                                        \
        SM4_CASE(test_sm4_split_calls_match_one_call, b, label),                                   \
        SM4_CASE(test_sm4_rejects_other_methods_and_bad_keys, b, label)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        SM4_TESTS(tde_cipher_backend_sm4_gfni_avx512, "sm4-gfni-avx512"),
        SM4_TESTS(tde_cipher_backend_sm4_gfni_avx2, "sm4-gfni-avx2"),
        SM4_TESTS(tde_cipher_backend_sm4_aesni, "sm4-aesni"),
        cmocka_unit_test(test_sm4_registered_fastest_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
static void
test_sm4_no_x86_paths(void **state)
{
    (void)state;
    print_message("not an x86-64 build: the vectorised SM4 paths are not compiled in\n");
    skip();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sm4_no_x86_paths)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
