/*
 * AES-256-GCM. Vectors: "The Galois/Counter Mode of Operation (GCM)", McGrew
 * and Viega, revised 2005 (the test cases NIST's GCM validation uses), test
 * cases 13-18 (256-bit keys); 17 and 18 use 64-bit and 480-bit IVs, which we
 * refuse.
 */
#include <stdlib.h>
#include <string.h>

#include "tde/gcm.h"
#include "testutil.h"

#define K15 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define P15                                                                                        \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"                             \
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
#define C15                                                                                        \
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"                             \
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"

static const struct {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
} vectors[] = {
    {"TC13", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"TC14", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"TC15", K15, "cafebabefacedbaddecaf888", "", P15 "1aafd255", C15 "898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"TC16", K15, "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", P15, C15,
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void
test_known_answers(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
        uint8_t key[32], iv[12], aad[32], pt[64], ct[64], tag[16], out[64], got_tag[16];
        test_unhex(vectors[v].key, key, 32);
        test_unhex(vectors[v].iv, iv, 12);
        size_t aad_len = test_unhex(vectors[v].aad, aad, 32);
        size_t len = test_unhex(vectors[v].pt, pt, 64);
        assert_int_equal(test_unhex(vectors[v].ct, ct, 64), len);
        test_unhex(vectors[v].tag, tag, 16);
        print_message("%s\n", vectors[v].name);
        assert_tde_ok(tde_gcm_seal(key, 32, iv, 12, aad, aad_len, pt, len, out, got_tag, 16));
        assert_memory_equal(out, ct, len);
        assert_memory_equal(got_tag, tag, 16);
        assert_tde_ok(tde_gcm_open(key, 32, iv, 12, aad, aad_len, ct, len, tag, 16, out));
        assert_memory_equal(out, pt, len);
    }
}

/* Test cases 17 (8-byte IV) and 18 (60-byte IV), short tags and other key sizes are refused. */
static void
test_unsupported_sizes(void **state)
{
    (void)state;
    uint8_t key[32], iv[60] = {0}, tag[16], buf[16] = {0};
    test_unhex(K15, key, 32);
    test_unhex("cafebabefacedbad", iv, 8);
    assert_int_equal(tde_gcm_seal(key, 32, iv, 8, NULL, 0, buf, 16, buf, tag, 16),
                     TDE_ERR_UNSUPPORTED);
    assert_int_equal(tde_gcm_open(key, 32, iv, 8, NULL, 0, buf, 16, tag, 16, buf),
                     TDE_ERR_UNSUPPORTED);
    assert_int_equal(tde_gcm_seal(key, 32, iv, 60, NULL, 0, buf, 16, buf, tag, 16),
                     TDE_ERR_UNSUPPORTED);
    assert_int_equal(tde_gcm_seal(key, 32, iv, 12, NULL, 0, buf, 16, buf, tag, 12),
                     TDE_ERR_UNSUPPORTED);
    assert_int_equal(tde_gcm_seal(key, 16, iv, 12, NULL, 0, buf, 16, buf, tag, 16),
                     TDE_ERR_UNSUPPORTED);
    assert_int_equal(tde_gcm_open(key, 32, iv, 12, NULL, 0, buf, 16, tag, 8, buf),
                     TDE_ERR_UNSUPPORTED);
}

/* Flipping any bit of IV, AAD, ciphertext or tag, or truncating, gives AUTH and no plaintext. */
static void
test_tamper(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], aad[20], pt[60], ct[60], tag[16];
    test_unhex(K15, key, 32);
    test_unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    test_unhex(P15, pt, 60);
    assert_tde_ok(tde_gcm_seal_random_iv(key, 32, iv, aad, 20, pt, 60, ct, tag));
    uint8_t *fields[] = {iv, aad, ct, tag};
    size_t sizes[] = {12, 20, 60, 16};
    for (size_t f = 0; f < 4; f++) {
        for (size_t i = 0; i < sizes[f]; i++) {
            for (int bit = 0; bit < 8; bit += 7) {
                fields[f][i] ^= (uint8_t)(1u << bit);
                uint8_t *out = malloc(60);
                memset(out, 0xa5, 60);
                assert_int_equal(tde_gcm_open(key, 32, iv, 12, aad, 20, ct, 60, tag, 16, out),
                                 TDE_ERR_AUTH);
                for (size_t j = 0; j < 60; j++)
                    assert_true(out[j] == 0 || out[j] == 0xa5); /* wiped or untouched */
                free(out);
                fields[f][i] ^= (uint8_t)(1u << bit);
            }
        }
    }
    uint8_t out[60];
    for (size_t len = 0; len < 60; len++) /* truncated ciphertext */
        assert_int_equal(tde_gcm_open(key, 32, iv, 12, aad, 20, ct, len, tag, 16, out),
                         TDE_ERR_AUTH);
    for (size_t len = 0; len < 20; len++) /* truncated AAD */
        assert_int_equal(tde_gcm_open(key, 32, iv, 12, aad, len, ct, 60, tag, 16, out),
                         TDE_ERR_AUTH);
    assert_tde_ok(tde_gcm_open(key, 32, iv, 12, aad, 20, ct, 60, tag, 16, out));
    assert_memory_equal(out, pt, 60);
}

/* Random IVs differ from call to call. */
static void
test_random_iv(void **state)
{
    (void)state;
    uint8_t key[32] = {0}, iv1[12], iv2[12], tag[16], buf[1] = {0};
    assert_tde_ok(tde_gcm_seal_random_iv(key, 32, iv1, NULL, 0, buf, 1, buf, tag));
    assert_tde_ok(tde_gcm_seal_random_iv(key, 32, iv2, NULL, 0, buf, 1, buf, tag));
    assert_memory_not_equal(iv1, iv2, 12);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_unsupported_sizes),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_random_iv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
