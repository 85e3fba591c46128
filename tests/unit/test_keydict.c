/* The key dictionary record: exact bytes (the docs/formats.md example), one bad field per case,
 * and every flipped byte or truncation of a sealed key.dict refused without touching anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "common/fileio.h"
#include "keymgr/keydict.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "testutil.h"

/* The worked example of docs/formats.md, "Key dictionary": two keys, current aes128-ctr. */
static const char example_hex[] = "544b4450"         /* magic */
                                  "0100"             /* version 1 */
                                  "0300"             /* flags: enforce | filedict */
                                  "0500000000000000" /* generation 5 */
                                  "efcdab8967452301" /* current id 0123456789abcdef */
                                  "000102030405060708090a0b0c0d0e0f"
                                  "101112131415161718191a1b1c1d1e1f" /* secret */
                                  "02000000"                         /* 2 keys */
                                  "00000000"                         /* reserved */
                                  /* key 1: id 1111111111111111, created 1700000000, aes256 */
                                  "1111111111111111"
                                  "00f1536500000000"
                                  "04"
                                  "20"
                                  "0000"
                                  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
                                  "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
                                  /* key 2: id 0123456789abcdef, created 1700604800, aes128 */
                                  "efcdab8967452301"
                                  "802b5d6500000000"
                                  "02"
                                  "10"
                                  "0000"
                                  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf";

static size_t
example(uint8_t *buf, size_t cap)
{
    return test_unhex(example_hex, buf, cap);
}

static void
test_keydict_example_decodes_and_encodes_back_exactly(void **state)
{
    uint8_t buf[512];
    size_t n = example(buf, sizeof(buf));
    tde_keydict kd;
    tde_secret *again = NULL;
    const tde_keydict_key *k;
    uint8_t mac[32], want[32];
    (void)state;

    tde_secret_allow_unlocked(1);
    assert_int_equal(n, 64 + 20 + 32 + 20 + 16);
    assert_tde_ok(tde_keydict_decode(&kd, buf, n, "example"));
    assert_int_equal(kd.flags, TDE_KEYDICT_FLAG_ENFORCE | TDE_KEYDICT_FLAG_FILEDICT);
    assert_int_equal(kd.generation, 5);
    assert_int_equal(kd.current_id, 0x0123456789abcdefULL);
    assert_int_equal(kd.n_keys, 2);
    k = tde_keydict_find(&kd, 0x1111111111111111ULL);
    assert_non_null(k);
    assert_int_equal(k->method, TDE_METHOD_AES256_CTR);
    assert_int_equal(k->created, 1700000000);
    assert_int_equal(tde_secret_data(k->key)[0], 0xa0);
    k = tde_keydict_find(&kd, kd.current_id);
    assert_int_equal(k->method, TDE_METHOD_AES128_CTR);
    assert_int_equal(k->created, 1700604800);
    /* The MAC key given in docs/formats.md (computed independently with Python's hmac). */
    assert_tde_ok(tde_keydict_mac_key(&kd, mac));
    test_unhex("23ad7230097445e33774e0a861a8b33bec836e1b636e62d19d3c42d9fe975437", want,
               sizeof(want));
    assert_memory_equal(mac, want, 32);
    assert_tde_ok(tde_keydict_encode(&kd, &again));
    assert_int_equal(tde_secret_len(again), n);
    assert_memory_equal(tde_secret_data(again), buf, n);
    tde_secret_free(again);
    tde_keydict_clear(&kd);
}

static void
expect_bad(const uint8_t *buf, size_t n, tde_status want, const char *what)
{
    tde_keydict kd;
    tde_status st = tde_keydict_decode(&kd, buf, n, "case");
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", what, tde_status_str(st), tde_last_error(),
                 tde_status_str(want));
    assert_non_null(strstr(tde_last_error(), "case"));
}

static void
test_keydict_each_bad_field_is_refused(void **state)
{
    uint8_t good[512], b[512];
    size_t n = example(good, sizeof(good));
    (void)state;

    tde_secret_allow_unlocked(1);
#define CASE(off, val, want, what)                                                                 \
    do {                                                                                           \
        memcpy(b, good, n);                                                                        \
        b[off] = (val);                                                                            \
        expect_bad(b, n, want, what);                                                              \
    } while (0)
    CASE(0, 'X', TDE_ERR_CORRUPT, "magic");
    CASE(4, 2, TDE_ERR_UNSUPPORTED, "version");
    CASE(6, 0x04, TDE_ERR_UNSUPPORTED, "unknown flag");
    CASE(16, 0x00, TDE_ERR_CORRUPT, "current id not present");
    CASE(56, 3, TDE_ERR_CORRUPT, "key count too large");
    CASE(60, 1, TDE_ERR_CORRUPT, "reserved header bytes");
    CASE(64 + 16, 9, TDE_ERR_CORRUPT, "unknown method");
    CASE(64 + 16, 0, TDE_ERR_CORRUPT, "method 0");
    CASE(64 + 17, 16, TDE_ERR_CORRUPT, "key length not the method's");
    CASE(64 + 18, 1, TDE_ERR_CORRUPT, "reserved key bytes");
#undef CASE
    /* key 2 given key 1's id */
    memcpy(b, good, n);
    memcpy(b + 64 + 52, good + 64, 8);
    expect_bad(b, n, TDE_ERR_CORRUPT, "repeated id");
    memset(b + 64, 0, 8);
    expect_bad(b, n, TDE_ERR_CORRUPT, "zero id");
    for (size_t len = 0; len < n; len++)
        expect_bad(good, len, TDE_ERR_CORRUPT, "truncated");
    memcpy(b, good, n);
    b[n] = 0;
    expect_bad(b, n + 1, TDE_ERR_CORRUPT, "trailing byte");
}

static void
test_keydict_mac_key_depends_on_the_secret(void **state)
{
    tde_keydict a, b;
    uint8_t ma[32], mb[32], ma2[32];
    (void)state;

    tde_secret_allow_unlocked(1);
    assert_tde_ok(tde_keydict_init(&a));
    assert_tde_ok(tde_keydict_init(&b));
    assert_tde_ok(tde_keydict_mac_key(&a, ma));
    assert_tde_ok(tde_keydict_mac_key(&a, ma2));
    assert_tde_ok(tde_keydict_mac_key(&b, mb));
    assert_memory_equal(ma, ma2, 32);
    assert_memory_not_equal(ma, mb, 32);
    /* Not the secret itself. */
    assert_memory_not_equal(ma, tde_secret_data(a.secret), 32);
    tde_keydict_clear(&a);
    tde_keydict_clear(&b);
}

static char *
dir_bytes(const char *dir, const char *skip, size_t *len)
{
    char cmd[2048];
    char *buf = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&buf, &cap), *p;
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && for f in $(ls | grep -v -e keymgr.lock -e '%s'); do echo $f; od -An -tx1 "
             "$f; done",
             dir, skip);
    p = popen(cmd, "r");
    for (int c; (c = fgetc(p)) != EOF;)
        fputc(c, m);
    pclose(p);
    fclose(m);
    *len = cap;
    return buf;
}

/* Flip every byte and truncate at every length of a sealed key.dict: open gives AUTH or CORRUPT
 * (or UNSUPPORTED for the version byte) and writes nothing. */
static void
test_keydict_damaged_file_is_refused_and_left_alone(void **state)
{
    char *tmp = test_tmpdir("keydict"), dir[1024], db[1024], key[1024], uri[1100], kd[1100];
    tde_keymgr_root root;
    tde_keymgr_config cfg;
    tde_keymgr *km = NULL;
    tde_file_key *fk = NULL;
    uint8_t *orig = NULL, *bad;
    size_t len, l1, l2;
    char *before, *after;
    int counts[20] = {0};
    (void)state;

    tde_secret_allow_unlocked(1);
    snprintf(dir, sizeof(dir), "%s/meta", tmp);
    snprintf(db, sizeof(db), "%s/db", tmp);
    mkdir(db, 0700);
    snprintf(key, sizeof(key), "%s/master.key", tmp);
    assert_tde_ok(tde_keyfile_create(key));
    snprintf(uri, sizeof(uri), "file://%s", key);
    root = (tde_keymgr_root){"db", db};
    cfg = (tde_keymgr_config){.version = TDE_KEYMGR_CONFIG_VERSION,
                              .dir = dir,
                              .roots = &root,
                              .n_roots = 1,
                              .method = TDE_METHOD_AES256_CTR,
                              .master_key_uri = uri,
                              .enforce = -1};
    assert_tde_ok(tde_keymgr_open(&km, &cfg));
    snprintf(kd, sizeof(kd), "%s/x", db);
    assert_tde_ok(tde_keymgr_new_file(km, kd, &fk));
    tde_file_key_free(fk);
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    tde_keymgr_close(km);

    snprintf(kd, sizeof(kd), "%s/key.dict.bak", dir);
    assert_int_equal(unlink(kd), 0); /* no backup to recover from (see the next test) */
    snprintf(kd, sizeof(kd), "%s/key.dict", dir);
    assert_tde_ok(tde_fileio_read_all(kd, &orig, &len));
    before = dir_bytes(dir, "key.dict", &l1);
    bad = malloc(len);
    for (size_t i = 0; i < 2 * len; i++) {
        tde_status st;
        size_t n = i < len ? len : i - len; /* flips, then truncations */
        memcpy(bad, orig, len);
        if (i < len)
            bad[i] ^= 0x01;
        assert_tde_ok(tde_durable_write(kd, bad, n));
        st = tde_keymgr_open(&km, &cfg);
        if (st != TDE_ERR_AUTH && st != TDE_ERR_CORRUPT && st != TDE_ERR_UNSUPPORTED)
            fail_msg("%s at byte %zu: %s (%s)", i < len ? "flip" : "truncation", i % len,
                     tde_status_str(st), tde_last_error());
        assert_non_null(strstr(tde_last_error(), "key.dict"));
        counts[-st]++;
        /* Nothing was rewritten: key.dict as damaged, the file dictionary as it was. */
        {
            uint8_t *now = NULL;
            size_t nl;
            assert_tde_ok(tde_fileio_read_all(kd, &now, &nl));
            assert_int_equal(nl, n);
            assert_memory_equal(now, bad, n);
            free(now);
        }
    }
    after = dir_bytes(dir, "key.dict", &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(before, after, l1);
    print_message("key.dict of %zu bytes: %d AUTH, %d CORRUPT, %d UNSUPPORTED\n", len,
                  counts[-TDE_ERR_AUTH], counts[-TDE_ERR_CORRUPT], counts[-TDE_ERR_UNSUPPORTED]);
    /* The original still opens. */
    assert_tde_ok(tde_durable_write(kd, orig, len));
    assert_tde_ok(tde_keymgr_open(&km, &cfg));
    tde_keymgr_close(km);
    free(bad);
    free(orig);
    free(before);
    free(after);
    test_rmtree(tmp);
    free(tmp);
}

typedef struct km_env {
    char *tmp;
    char dir[1024], db[1024], key[1024], uri[1100], kd[1100], bak[1100];
    tde_keymgr_root root;
    tde_keymgr_config cfg;
} km_env;

static void
km_env_init(km_env *e)
{
    tde_secret_allow_unlocked(1);
    e->tmp = test_tmpdir("keydict-bak");
    snprintf(e->dir, sizeof(e->dir), "%s/meta", e->tmp);
    snprintf(e->db, sizeof(e->db), "%s/db", e->tmp);
    mkdir(e->db, 0700);
    snprintf(e->key, sizeof(e->key), "%s/master.key", e->tmp);
    assert_tde_ok(tde_keyfile_create(e->key));
    snprintf(e->uri, sizeof(e->uri), "file://%s", e->key);
    snprintf(e->kd, sizeof(e->kd), "%s/key.dict", e->dir);
    snprintf(e->bak, sizeof(e->bak), "%s/key.dict.bak", e->dir);
    e->root = (tde_keymgr_root){"db", e->db};
    e->cfg = (tde_keymgr_config){.version = TDE_KEYMGR_CONFIG_VERSION,
                                 .dir = e->dir,
                                 .roots = &e->root,
                                 .n_roots = 1,
                                 .method = TDE_METHOD_AES256_CTR,
                                 .master_key_uri = e->uri,
                                 .enforce = -1};
}

static uint64_t
make_file(km_env *e, tde_keymgr *km, const char *name)
{
    char p[1200];
    tde_file_key *fk = NULL;
    uint64_t id;
    snprintf(p, sizeof(p), "%s/%s", e->db, name);
    assert_tde_ok(tde_keymgr_new_file(km, p, &fk));
    id = tde_file_key_id(fk);
    tde_file_key_free(fk);
    return id;
}

static uint64_t
file_key_id(km_env *e, tde_keymgr *km, const char *name)
{
    char p[1200];
    tde_file_key *fk = NULL;
    uint64_t id;
    snprintf(p, sizeof(p), "%s/%s", e->db, name);
    assert_tde_ok(tde_keymgr_get_file(km, p, &fk));
    id = tde_file_key_id(fk);
    tde_file_key_free(fk);
    return id;
}

static void
flip_byte(const char *path, size_t at)
{
    uint8_t *d = NULL;
    size_t n;
    assert_tde_ok(tde_fileio_read_all(path, &d, &n));
    d[at % n] ^= 0x40;
    assert_tde_ok(tde_durable_write(path, d, n));
    free(d);
}

/* One bad sector in key.dict: key.dict.bak takes over only when it provably holds every key. */
static void
test_keydict_backup_recovers_only_when_complete(void **state)
{
    km_env e;
    tde_keymgr *km = NULL;
    uint64_t ia, ib, ic;
    uint8_t *old_bak = NULL, *new_bak = NULL;
    size_t old_len, new_len;
    (void)state;

    km_env_init(&e);
    assert_tde_ok(tde_keymgr_open(&km, &e.cfg));
    ia = make_file(&e, km, "a");
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    ib = make_file(&e, km, "b");
    tde_keymgr_close(km);

    /* Complete backup: open succeeds, every file keeps its key, key.dict is rewritten. */
    assert_tde_ok(tde_fileio_read_all(e.bak, &old_bak, &old_len));
    flip_byte(e.kd, 100);
    assert_tde_ok(tde_keymgr_open(&km, &e.cfg));
    assert_int_equal(file_key_id(&e, km, "a"), ia);
    assert_int_equal(file_key_id(&e, km, "b"), ib);
    tde_keymgr_close(km);
    assert_int_equal(unlink(e.bak), 0);
    assert_tde_ok(tde_keymgr_open(&km, &e.cfg)); /* the rewritten key.dict alone */
    assert_int_equal(file_key_id(&e, km, "a"), ia);

    /* Stale backup (it lacks the key file c uses): refused, with what is missing. */
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    ic = make_file(&e, km, "c");
    tde_keymgr_close(km);
    assert_tde_ok(tde_fileio_read_all(e.bak, &new_bak, &new_len));
    assert_tde_ok(tde_durable_write(e.bak, old_bak, old_len));
    flip_byte(e.kd, 100);
    assert_int_equal(tde_keymgr_open(&km, &e.cfg), TDE_ERR_CORRUPT);
    assert_non_null(strstr(tde_last_error(), "lacks the keys of 1 of 3 entries"));
    {
        char want[40];
        snprintf(want, sizeof(want), "%016llx", (unsigned long long)ic);
        assert_non_null(strstr(tde_last_error(), want));
    }
    /* A missing key.dict: a stale backup is refused, a complete one recovers it. */
    assert_int_equal(unlink(e.kd), 0);
    assert_int_equal(tde_keymgr_open(&km, &e.cfg), TDE_ERR_CORRUPT);
    assert_tde_ok(tde_durable_write(e.bak, new_bak, new_len));
    assert_tde_ok(tde_keymgr_open(&km, &e.cfg));
    assert_int_equal(file_key_id(&e, km, "c"), ic);
    assert_int_equal(file_key_id(&e, km, "a"), ia);
    tde_keymgr_close(km);
    free(old_bak);
    free(new_bak);
    test_rmtree(e.tmp);
    free(e.tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keydict_example_decodes_and_encodes_back_exactly),
        cmocka_unit_test(test_keydict_each_bad_field_is_refused),
        cmocka_unit_test(test_keydict_mac_key_depends_on_the_secret),
        cmocka_unit_test(test_keydict_damaged_file_is_refused_and_left_alone),
        cmocka_unit_test(test_keydict_backup_recovers_only_when_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
