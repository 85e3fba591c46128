/* Helpers shared by the cmocka tests. */
#ifndef TDE_TESTUTIL_H
#define TDE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tde/common.h"

/* Asserts a call returned TDE_OK, printing libtde's message when it did not. */
#define assert_tde_ok(expr)                                                                        \
    do {                                                                                           \
        tde_status st_ = (expr);                                                                   \
        if (st_ != TDE_OK)                                                                         \
            print_error("%s -> %s: %s\n", #expr, tde_status_str(st_), tde_last_error());           \
        assert_int_equal(st_, TDE_OK);                                                             \
    } while (0)

/* Decodes @p hex (no separators) into @p out; returns the byte count. Fails the test on bad hex. */
size_t test_unhex(const char *hex, uint8_t *out, size_t cap);

/* Makes a fresh empty directory under $TMPDIR for one test; returns a malloc()ed path. */
char *test_tmpdir(const char *tag);

/* Removes a directory tree made by test_tmpdir(). */
void test_rmtree(const char *path);

/* A deterministic pseudo-random generator for property tests (xorshift64*). */
uint64_t test_rand(uint64_t *state);

#endif
