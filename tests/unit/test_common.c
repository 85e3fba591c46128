/* Error model, log hook, secret memory and randomness. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "common/error.h"
#include "testutil.h"
#include "tde/secret.h"

static void
test_common_every_status_has_a_distinct_name(void **state)
{
    (void)state;
    for (int a = 0; a >= TDE_STATUS_MIN; a--) {
        const char *name = tde_status_str((tde_status)a);
        assert_string_not_equal(name, "TDE_ERR_UNKNOWN");
        assert_true(strncmp(name, a == 0 ? "TDE_OK" : "TDE_ERR_", a == 0 ? 6 : 8) == 0);
        for (int b = a - 1; b >= TDE_STATUS_MIN; b--)
            assert_string_not_equal(name, tde_status_str((tde_status)b));
    }
    assert_string_equal(tde_status_str((tde_status)(TDE_STATUS_MIN - 1)), "TDE_ERR_UNKNOWN");
    assert_string_equal(tde_status_str((tde_status)1), "TDE_ERR_UNKNOWN");
}

static void
test_common_last_error_is_per_call_message(void **state)
{
    (void)state;
    assert_int_equal(tde_error_set(TDE_ERR_CORRUPT, "key.dict: bad magic at offset %d", 0),
                     TDE_ERR_CORRUPT);
    assert_string_equal(tde_last_error(), "key.dict: bad magic at offset 0");
    tde_error_clear();
    assert_string_equal(tde_last_error(), "");
}

struct captured {
    int count;
    tde_log_level level;
    char msg[256];
};

static void
capture(tde_log_level level, const char *msg, void *userdata)
{
    struct captured *c = userdata;
    c->count++;
    c->level = level;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

static void
test_common_log_goes_only_to_callback(void **state)
{
    struct captured c = {0};
    (void)state;
    tde_log(TDE_LOG_WARN, "dropped: no callback yet");
    tde_set_log_callback(capture, &c);
    tde_log(TDE_LOG_WARN, "hello %d", 42);
    tde_set_log_callback(NULL, NULL);
    tde_log(TDE_LOG_WARN, "dropped again");
    assert_int_equal(c.count, 1);
    assert_int_equal(c.level, TDE_LOG_WARN);
    assert_string_equal(c.msg, "hello 42");
}

static void
test_common_secret_is_locked_and_page_aligned(void **state)
{
    tde_secret *s = NULL;
    static const uint8_t bytes[5] = {1, 2, 3, 4, 5};
    (void)state;
    assert_tde_ok(tde_secret_from(&s, bytes, sizeof(bytes)));
    assert_int_equal(tde_secret_len(s), 5);
    assert_memory_equal(tde_secret_data(s), bytes, 5);
    assert_int_equal((uintptr_t)tde_secret_data(s) % 4096, 0);
    /* Tests run as root or with a sane RLIMIT_MEMLOCK; a fallback would be a silent downgrade. */
    assert_int_equal(tde_secret_is_locked(s), 1);
    tde_secret_free(s);
    tde_secret_free(NULL);
}

static void
test_common_secret_rejects_bad_lengths(void **state)
{
    tde_secret *s = (tde_secret *)1;
    (void)state;
    assert_int_equal(tde_secret_new(&s, 0), TDE_ERR_INVALID_ARG);
    assert_null(s);
    assert_int_equal(tde_secret_new(&s, TDE_SECRET_MAX_LEN + 1), TDE_ERR_INVALID_ARG);
}

static void
test_common_random_bytes_differ(void **state)
{
    uint8_t a[32] = {0}, b[32] = {0};
    tde_secret *s = NULL;
    (void)state;
    assert_tde_ok(tde_random_bytes(a, sizeof(a)));
    assert_tde_ok(tde_random_bytes(b, sizeof(b)));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_tde_ok(tde_secret_random(&s, 32));
    assert_memory_not_equal(tde_secret_data(s), a, 32);
    tde_secret_free(s);
    assert_tde_ok(tde_random_bytes(a, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_every_status_has_a_distinct_name),
        cmocka_unit_test(test_common_last_error_is_per_call_message),
        cmocka_unit_test(test_common_log_goes_only_to_callback),
        cmocka_unit_test(test_common_secret_is_locked_and_page_aligned),
        cmocka_unit_test(test_common_secret_rejects_bad_lengths),
        cmocka_unit_test(test_common_random_bytes_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
