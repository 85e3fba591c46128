/* tde_keymgr_metrics_text(): Prometheus text exposition format 0.0.4, checked line by line
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "tde/secret.h"
#include "testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static bool
valid_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

/* Checks the whole text; returns the value of sample @p want (exact line prefix), or -1. */
static double
check_format(const char *text, const char *want)
{
    char typed[64][128];
    size_t n_typed = 0;
    char helped[128] = "";
    double found = -1;
    const char *p = text;

    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        char line[512];
        assert_non_null(nl);
        assert_true((size_t)(nl - p) < sizeof(line));
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            char *sp = strchr(line + 7, ' ');
            assert_non_null(sp);
            assert_true(valid_name(line + 7, (size_t)(sp - line - 7)));
            assert_true(strncmp(line + 7, "tde_", 4) == 0);
            assert_true(strlen(sp + 1) > 0);
            snprintf(helped, sizeof(helped), "%.*s", (int)(sp - line - 7), line + 7);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], type[32];
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, helped); /* HELP comes right before TYPE */
            assert_true(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0);
            if (strcmp(type, "counter") == 0) /* counters end in _total */
                assert_string_equal(name + strlen(name) - 6, "_total");
            for (size_t i = 0; i < n_typed; i++)
                assert_string_not_equal(typed[i], name); /* one TYPE line per metric */
            assert_true(n_typed < 64);
            snprintf(typed[n_typed++], sizeof(typed[0]), "%s", name);
        } else {
            size_t nlen = strcspn(line, "{ ");
            char *end;
            const char *val;
            double v;
            assert_true(line[0] != '#');
            assert_true(valid_name(line, nlen));
            /* a sample belongs to the metric of the last TYPE line */
            assert_true(n_typed > 0);
            assert_int_equal(strlen(typed[n_typed - 1]), nlen);
            assert_memory_equal(typed[n_typed - 1], line, nlen);
            if (line[nlen] == '{') {
                const char *close = strchr(line, '}');
                assert_non_null(close);
                /* label="value" pairs */
                assert_non_null(strstr(line + nlen, "=\""));
                val = close + 1;
            } else {
                val = line + nlen;
            }
            assert_true(*val == ' ');
            v = strtod(val + 1, &end);
            assert_true(end != val + 1 && *end == '\0');
            if (want != NULL && strncmp(line, want, strlen(want)) == 0 && line[strlen(want)] == ' ')
                found = v;
        }
    }
    return found;
}

static int
count_key(void *arg, uint64_t id, tde_method method, const tde_secret *key)
{
    size_t *n = arg;
    assert_true(id != 0);
    assert_int_equal(method, TDE_METHOD_AES256_CTR);
    assert_non_null(key);
    assert_int_equal(tde_secret_len(key), 32);
    (*n)++;
    return 0;
}

static void
test_metrics_text(void **state)
{
    char *tmp = test_tmpdir("metrics"), dir[1024], db[1024], key[1024], uri[1100], path[1200];
    tde_keymgr_root root = {"db", db};
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = dir,
                             .roots = &root,
                             .n_roots = 1,
                             .method = TDE_METHOD_AES256_CTR,
                             .master_key_uri = uri,
                             .enforce = 0};
    tde_keymgr *km = NULL;
    tde_file_key *fk = NULL;
    char *text = NULL;
    (void)state;

    tde_secret_allow_unlocked(1);
    snprintf(dir, sizeof(dir), "%s/meta", tmp);
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(key, sizeof(key), "%s/master.key", tmp);
    snprintf(uri, sizeof(uri), "file://%s", key);
    assert_int_equal(mkdir(db, 0700), 0);
    assert_tde_ok(tde_keyfile_create(key));
    assert_tde_ok(tde_keymgr_open(&km, &cfg));

    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%06d.sst", db, i);
        assert_tde_ok(tde_keymgr_new_file(km, path, &fk));
        tde_file_key_free(fk);
    }
    assert_tde_ok(tde_keymgr_rotate_data_key(km));
    snprintf(path, sizeof(path), "%s/plain.log", db);
    assert_tde_ok(tde_keymgr_get_file(km, path, &fk));
    tde_file_key_free(fk);

    assert_tde_ok(tde_keymgr_metrics_text(km, &text));
    assert_true(check_format(text, "tde_encrypted_files") == 3);
    assert_true(check_format(text, "tde_data_keys") == 2);
    assert_true(check_format(text, "tde_encryption_initialized") == 1);
    assert_true(check_format(text, "tde_data_key_rotations_total") == 1);
    assert_true(check_format(text, "tde_plaintext_lookups_total") == 1);
    assert_true(check_format(text, "tde_metadata_writes_total") >= 4);
    assert_true(check_format(text, "tde_method_info{method=\"aes256-ctr\"}") == 1);
    assert_true(check_format(text, "tde_metadata_bytes{file=\"key_dict\"}") > 0);
    free(text);

    assert_int_equal(tde_keymgr_metrics_text(km, NULL), TDE_ERR_INVALID_ARG);
    tde_keymgr_close(km);

    /* tde_keymgr_export_keys(): every key, 32 bytes each; another master key is refused */
    size_t n = 0;
    assert_tde_ok(tde_keymgr_export_keys(dir, uri, NULL, count_key, &n));
    assert_int_equal(n, 2);
    snprintf(key, sizeof(key), "%s/other.key", tmp);
    assert_tde_ok(tde_keyfile_create(key));
    snprintf(path, sizeof(path), "file://%s", key);
    n = 0;
    assert_int_equal(tde_keymgr_export_keys(dir, path, NULL, count_key, &n), TDE_ERR_AUTH);
    assert_int_equal(n, 0);
    test_rmtree(tmp);
    free(tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
