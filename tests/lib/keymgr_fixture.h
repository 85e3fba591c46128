/* The scratch key manager the key-manager tests share. */
#ifndef TDE_TEST_KEYMGR_FIXTURE_H
#define TDE_TEST_KEYMGR_FIXTURE_H

#include <stdint.h>

#include "tde/keymgr.h"

/*
 * A fresh directory tmp holding two master-key files (key1, key2: their "file://" URIs), the data
 * roots "db" (tmp/db) and "wal" (tmp/wal), and cfg: key manager tmp/meta, both roots,
 * AES-256-CTR, enforce -1, key1, and a clock reading `now`. cfg points into the struct: do not
 * move it.
 */
typedef struct keymgr_fixture {
    char *tmp;
    char dir[1024], db[1024], wal[1024];
    char key1[1200], key2[1200];
    tde_keymgr_root roots[2];
    tde_keymgr_config cfg;
    uint64_t now;
} keymgr_fixture;

/* Fills @p f (directories named after @p tag); allows unlocked secrets, resets the failpoints. */
void keymgr_fixture_init(keymgr_fixture *f, const char *tag);

/* Resets the failpoints and removes f->tmp. */
void keymgr_fixture_clean(keymgr_fixture *f);

/* Opens f->cfg, failing the test on error. */
tde_keymgr *keymgr_fixture_open(const keymgr_fixture *f);

/* Moves the fixture's clock on by @p seconds (the background thread may be reading it). */
void keymgr_fixture_advance(keymgr_fixture *f, uint64_t seconds);

/* 32 bytes of keystream for offset 0: equal outputs mean the same key and IV. */
void test_keystream(const tde_file_key *fk, uint8_t out[32]);

/* Registers @p path; its key id to @p id and keystream to @p ks (either may be NULL). */
void test_new_file(tde_keymgr *km, const char *path, uint64_t *id, uint8_t ks[32]);

/* Asserts @p path is registered under key @p id with keystream @p ks. */
void test_expect_file(tde_keymgr *km, const char *path, uint64_t id, const uint8_t ks[32]);

#endif
