#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Test paths are short; truncation would fail the test anyway. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "common/fileio.h"
#include "keymgr_fixture.h"
#include "tde/masterkey.h"
#include "tde/secret.h"
#include "testutil.h"

static uint64_t
fake_clock(void *arg)
{
    return __atomic_load_n((uint64_t *)arg, __ATOMIC_SEQ_CST);
}

/* Writes a new key file tmp/@p name and its URI to @p uri. */
static void
new_master_key(const keymgr_fixture *f, const char *name, char *uri, size_t cap)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", f->tmp, name);
    assert_tde_ok(tde_keyfile_create(path));
    snprintf(uri, cap, "file://%s", path);
}

void
keymgr_fixture_init(keymgr_fixture *f, const char *tag)
{
    tde_secret_allow_unlocked(1);
    f->tmp = test_tmpdir(tag);
    snprintf(f->dir, sizeof(f->dir), "%s/meta", f->tmp);
    snprintf(f->db, sizeof(f->db), "%s/db", f->tmp);
    snprintf(f->wal, sizeof(f->wal), "%s/wal", f->tmp);
    mkdir(f->db, 0700);
    mkdir(f->wal, 0700);
    new_master_key(f, "master1.key", f->key1, sizeof(f->key1));
    new_master_key(f, "master2.key", f->key2, sizeof(f->key2));
    f->roots[0] = (tde_keymgr_root){"db", f->db};
    f->roots[1] = (tde_keymgr_root){"wal", f->wal};
    f->now = 1700000000;
    f->cfg = (tde_keymgr_config){.version = TDE_KEYMGR_CONFIG_VERSION,
                                 .dir = f->dir,
                                 .roots = f->roots,
                                 .n_roots = 2,
                                 .method = TDE_METHOD_AES256_CTR,
                                 .master_key_uri = f->key1,
                                 .enforce = -1,
                                 .clock = fake_clock,
                                 .clock_arg = &f->now};
    tde_fileio_inject_reset();
}

void
keymgr_fixture_clean(keymgr_fixture *f)
{
    tde_fileio_inject_reset();
    test_rmtree(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

tde_keymgr *
keymgr_fixture_open(const keymgr_fixture *f)
{
    tde_keymgr *km = NULL;
    assert_tde_ok(tde_keymgr_open(&km, &f->cfg));
    return km;
}

void
keymgr_fixture_advance(keymgr_fixture *f, uint64_t seconds)
{
    __atomic_add_fetch(&f->now, seconds, __ATOMIC_SEQ_CST);
}

void
test_keystream(const tde_file_key *fk, uint8_t out[32])
{
    uint8_t zero[32] = {0};
    assert_tde_ok(tde_file_key_process(fk, 0, zero, out, 32));
}

void
test_new_file(tde_keymgr *km, const char *path, uint64_t *id, uint8_t ks[32])
{
    tde_file_key *fk = NULL;
    assert_tde_ok(tde_keymgr_new_file(km, path, &fk));
    if (id)
        *id = tde_file_key_id(fk);
    if (ks)
        test_keystream(fk, ks);
    tde_file_key_free(fk);
}

void
test_expect_file(tde_keymgr *km, const char *path, uint64_t id, const uint8_t ks[32])
{
    tde_file_key *fk = NULL;
    uint8_t got[32];
    assert_tde_ok(tde_keymgr_get_file(km, path, &fk));
    assert_int_equal(tde_file_key_id(fk), id);
    test_keystream(fk, got);
    assert_memory_equal(got, ks, 32);
    tde_file_key_free(fk);
}
