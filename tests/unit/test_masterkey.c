/* Provider registry, master-key URIs, the key-file and plaintext-test-only providers. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provider_double.h"
#include "tde/masterkey.h"
#include "tde/sys/masterkey_provider.h"
#include "testutil.h"

/* ---- helpers ---- */

struct logbuf {
    int warnings;
    char text[8192];
};

static void
capture_log(tde_log_level level, const char *msg, void *arg)
{
    struct logbuf *lb = arg;
    size_t used = strlen(lb->text);
    if (level == TDE_LOG_WARN)
        lb->warnings++;
    snprintf(lb->text + used, sizeof(lb->text) - used, "%s\n", msg);
}

static void
write_file(const char *path, const char *content, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/* Writes a key file under @p dir and returns its file:// URI (malloc()ed). */
static char *
make_keyfile(const char *dir, const char *name, const char *content, mode_t mode)
{
    char path[4096];
    char *uri = malloc(4200);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    write_file(path, content, strlen(content), mode);
    snprintf(uri, 4200, "file://%s", path);
    return uri;
}

/* ---- URI parser ---- */

static void
test_masterkey_uri_parses_components(void **state)
{
    tde_uri *u = NULL;
    const char *n, *v;
    (void)state;

    assert_tde_ok(tde_uri_parse(&u, "file:///etc/tde/master.key"));
    assert_string_equal(tde_uri_scheme(u), "file");
    assert_string_equal(tde_uri_host(u), "");
    assert_int_equal(tde_uri_port(u), 0);
    assert_string_equal(tde_uri_path(u), "/etc/tde/master.key");
    assert_int_equal(tde_uri_param_count(u), 0);
    assert_null(tde_uri_param(u, "x"));
    tde_uri_free(u);

    assert_tde_ok(tde_uri_parse(&u, "KMIP://kms.example:5696/key%20one?ca=/etc/ca.pem&verify"));
    assert_string_equal(tde_uri_scheme(u), "kmip");
    assert_string_equal(tde_uri_host(u), "kms.example");
    assert_int_equal(tde_uri_port(u), 5696);
    assert_string_equal(tde_uri_path(u), "/key one");
    assert_int_equal(tde_uri_param_count(u), 2);
    assert_string_equal(tde_uri_param(u, "ca"), "/etc/ca.pem");
    assert_string_equal(tde_uri_param(u, "verify"), "");
    tde_uri_param_at(u, 1, &n, &v);
    assert_string_equal(n, "verify");
    assert_string_equal(tde_uri_text(u), "KMIP://kms.example:5696/key%20one?ca=/etc/ca.pem&verify");
    tde_uri_free(u);

    assert_tde_ok(tde_uri_parse(&u, "aws-kms://[::1]:4566/arn:aws:kms:us-east-1:1:key/a%2Fb?r=x"));
    assert_string_equal(tde_uri_host(u), "[::1]");
    assert_int_equal(tde_uri_port(u), 4566);
    assert_string_equal(tde_uri_path(u), "/arn:aws:kms:us-east-1:1:key/a/b");
    tde_uri_free(u);

    assert_tde_ok(tde_uri_parse(&u, "plaintext-test-only://"));
    assert_string_equal(tde_uri_scheme(u), "plaintext-test-only");
    assert_string_equal(tde_uri_path(u), "");
    tde_uri_free(u);
}

static void
test_masterkey_uri_rejects_malformed_with_position(void **state)
{
    static const struct {
        const char *uri;
        const char *message; /* substring of the error, including the position */
    } bad[] = {
        {"", "empty URI at position 0"},
        {"1file:///x", "scheme must start with a letter at position 0"},
        {"file:/etc/key", "expected \"://\" after the scheme at position 4"},
        {"file", "expected \"://\" after the scheme at position 4"},
        {"fi_le:///x", "expected \"://\" after the scheme at position 2"},
        {"kmip://user:pw@host/k", "non-digit in the port at position 12"},
        {"kmip://user@host/k", "userinfo ('@') in the host: credentials never go in a URI at "
                               "position 11"},
        {"kmip://host:99999/k", "port above 65535 at position 12"},
        {"kmip://host:0/k", "port 0 at position 12"},
        {"kmip://host:/k", "empty port after ':' at position 12"},
        {"kmip://:80/k", "port without a host at position 7"},
        {"kmip://[::1/k", "IPv6 host not closed by ']'"},
        {"file:///a b", "character ' ' not allowed in the path at position 9"},
        {"file:///a\tb", "byte 0x09 not allowed in the path at position 9"},
        {"file:///a%zzb", "'%' not followed by two hex digits in the path at position 9"},
        {"file:///a%4", "'%' not followed by two hex digits in the path at position 9"},
        {"file:///a%00b", "%00 (NUL) in the path at position 9"},
        {"file:///a#frag", "fragment ('#') not allowed at position 9"},
        {"file:///a?x=1#frag", "fragment ('#') not allowed at position 13"},
        {"file:///a?", "empty query parameter name at position 10"},
        {"file:///a?x=1&&y=2", "empty query parameter name at position 14"},
        {"file:///a?=1", "empty query parameter name at position 10"},
        {"file:///a?x=1&x=2", "repeated query parameter at position 14"},
        {"file:///a?x=a b", "character ' ' not allowed in the query parameter value at position "
                            "13"},
        {"kmip://ho st/k", "character not allowed in the host at position 9"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tde_uri *u = (tde_uri *)1;
        tde_status st = tde_uri_parse(&u, bad[i].uri);
        if (st != TDE_ERR_INVALID_ARG || strstr(tde_last_error(), bad[i].message) == NULL)
            print_error("%s: got %s \"%s\", want \"%s\"\n", bad[i].uri, tde_status_str(st),
                        tde_last_error(), bad[i].message);
        assert_int_equal(st, TDE_ERR_INVALID_ARG);
        assert_non_null(strstr(tde_last_error(), bad[i].message));
        assert_null(u);
    }
    /* Over-long input. */
    {
        char *big = malloc(5000);
        tde_uri *u = NULL;
        memcpy(big, "file:///", 8);
        memset(big + 8, 'a', 4991);
        big[4999] = '\0';
        assert_int_equal(tde_uri_parse(&u, big), TDE_ERR_INVALID_ARG);
        assert_non_null(strstr(tde_last_error(), "longer than 4096"));
        free(big);
    }
}

/* ---- registry ---- */

static tde_status
stub_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    (void)out;
    (void)uri;
    return TDE_ERR_INTERNAL;
}

static void
test_masterkey_register_checks_vtable(void **state)
{
    tde_masterkey_provider_vtable vt = {
        .version = TDE_MASTERKEY_PROVIDER_VERSION, .name = "incomplete", .open = stub_open};
    (void)state;

    assert_int_equal(tde_masterkey_register(NULL), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_register(&vt), TDE_ERR_INVALID_ARG);
    assert_string_equal(tde_last_error(), "provider incomplete: required member key_id is NULL");

    vt.version = 99;
    assert_int_equal(tde_masterkey_register(&vt), TDE_ERR_UNSUPPORTED);
    assert_non_null(strstr(tde_last_error(), "provider incomplete: vtable version 99"));

    vt.version = TDE_MASTERKEY_PROVIDER_VERSION;
    vt.name = "Bad_Name";
    assert_int_equal(tde_masterkey_register(&vt), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "Bad_Name"));
    vt.name = NULL;
    assert_int_equal(tde_masterkey_register(&vt), TDE_ERR_INVALID_ARG);
}

/* A provider with only the required members: NULL generate_data_key gets the default. */
typedef struct minimal {
    tde_masterkey_provider base;
    int wraps;
} minimal;
static const tde_masterkey_provider_vtable minimal_vtable;

static tde_status
minimal_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    minimal *m = calloc(1, sizeof(*m));
    (void)uri;
    m->base.vt = &minimal_vtable;
    *out = &m->base;
    return TDE_OK;
}
static const char *
minimal_key_id(const tde_masterkey_provider *p)
{
    (void)p;
    return "minimal-key-1";
}
/* "Wraps" by XOR with 0x5a (a test: the point is the call path, not secrecy). */
static tde_status
minimal_wrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
             size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    (void)aad;
    (void)aad_len;
    ((minimal *)p)->wraps++;
    *blob = malloc(pt_len);
    for (size_t i = 0; i < pt_len; i++)
        (*blob)[i] = pt[i] ^ 0x5a;
    *blob_len = pt_len;
    return TDE_OK;
}
static tde_status
minimal_unwrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
               size_t blob_len, tde_secret **pt)
{
    (void)p;
    (void)aad;
    (void)aad_len;
    if (tde_secret_new(pt, blob_len) != TDE_OK)
        return TDE_ERR_NOMEM;
    for (size_t i = 0; i < blob_len; i++)
        tde_secret_data_mut(*pt)[i] = blob[i] ^ 0x5a;
    return TDE_OK;
}
static void
minimal_destroy(tde_masterkey_provider *p)
{
    free(p);
}
static const tde_masterkey_provider_vtable minimal_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "minimal",
    .open = minimal_open,
    .key_id = minimal_key_id,
    .wrap = minimal_wrap,
    .unwrap = minimal_unwrap,
    .destroy = minimal_destroy,
};

static void
test_masterkey_register_refuses_duplicate_name(void **state)
{
    tde_masterkey_provider_vtable fake = minimal_vtable;
    tde_masterkey *mk = NULL;
    (void)state;
    /* Opening a built-in first proves they are registered lazily, on first use. */
    assert_tde_ok(tde_masterkey_open(&mk, "plaintext-test-only://"));
    tde_masterkey_free(mk);
    fake.name = "file";
    assert_int_equal(tde_masterkey_register(&fake), TDE_ERR_EXISTS);
    assert_string_equal(tde_last_error(), "provider file: already registered");
}

static void
test_masterkey_null_optional_member_gets_default(void **state)
{
    tde_masterkey *mk = NULL;
    tde_secret *key = NULL, *back = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    (void)state;

    assert_tde_ok(tde_masterkey_register(&minimal_vtable));
    assert_int_equal(tde_masterkey_register(&minimal_vtable), TDE_ERR_EXISTS);
    assert_non_null(strstr(tde_last_error(), "provider minimal: already registered"));
    assert_tde_ok(tde_masterkey_open(&mk, "minimal://"));
    assert_string_equal(tde_masterkey_key_id(mk), "minimal-key-1");
    assert_string_equal(tde_masterkey_provider_name(mk), "minimal");
    assert_string_equal(tde_masterkey_uri(mk), "minimal://");
    assert_tde_ok(tde_masterkey_generate_data_key(mk, 32, NULL, 0, &key, &blob, &blob_len));
    assert_int_equal(tde_secret_len(key), 32);
    assert_tde_ok(tde_masterkey_unwrap(mk, NULL, 0, blob, blob_len, &back));
    assert_memory_equal(tde_secret_data(back), tde_secret_data(key), 32);
    tde_secret_free(key);
    tde_secret_free(back);
    free(blob);
    tde_masterkey_free(mk);
}

static const char *
badid_key_id(const tde_masterkey_provider *p)
{
    (void)p;
    return "has space";
}

static void
test_masterkey_key_id_must_be_printable(void **state)
{
    static tde_masterkey_provider_vtable vt; /* registered vtables live as long as the process */
    tde_masterkey *mk = NULL;
    (void)state;
    vt = minimal_vtable;
    vt.name = "badid";
    vt.key_id = badid_key_id;
    assert_tde_ok(tde_masterkey_register(&vt));
    assert_int_equal(tde_masterkey_open(&mk, "badid://"), TDE_ERR_INTERNAL);
    assert_non_null(strstr(tde_last_error(), "provider badid: key_id"));
    assert_null(mk);
}

static void
test_masterkey_unknown_scheme_lists_known(void **state)
{
    tde_masterkey *mk = NULL;
    (void)state;
    assert_int_equal(tde_masterkey_open(&mk, "nosuch://x"), TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "no provider for scheme \"nosuch\""));
    assert_non_null(strstr(tde_last_error(), "file"));
    assert_non_null(strstr(tde_last_error(), "plaintext-test-only"));
    assert_null(mk);
    assert_int_equal(tde_masterkey_open(&mk, "file:/x"), TDE_ERR_INVALID_ARG);
}

static void
test_masterkey_provider_failing_on_nth_call_is_named(void **state)
{
    tde_masterkey *mk = NULL;
    tde_secret *key = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    (void)state;

    provider_double_register();
    assert_tde_ok(tde_masterkey_open(&mk, "double://?id=n"));
    provider_double.fail_at = 2;
    provider_double.fail_status = TDE_ERR_UNAVAILABLE;
    assert_tde_ok(tde_masterkey_generate_data_key(mk, 16, NULL, 0, &key, &blob, &blob_len));
    assert_int_equal(provider_double.generated, 1);
    tde_secret_free(key);
    free(blob);
    assert_int_equal(tde_masterkey_generate_data_key(mk, 16, NULL, 0, &key, &blob, &blob_len),
                     TDE_ERR_UNAVAILABLE);
    assert_null(key);
    assert_null(blob);
    assert_string_equal(tde_last_error(), "provider double, master key double:n: "
                                          "generate_data_key failed: injected failure on call 2");
    tde_masterkey_free(mk);
}

/* ---- key-file provider ---- */

static void
test_masterkey_keyfile_roundtrip_and_fingerprint(void **state)
{
    char *dir = test_tmpdir("mk");
    char content[80], *uri1, *uri2;
    tde_masterkey *a = NULL, *b = NULL;
    tde_secret *pt = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    const uint8_t secret[20] = "twenty bytes secret";
    (void)state;

    snprintf(content, sizeof(content), "%s\n", key_hex);
    uri1 = make_keyfile(dir, "one.key", content, 0600);
    uri2 = make_keyfile(dir, "two.key", content, 0600);
    assert_tde_ok(tde_masterkey_open(&a, uri1));
    assert_tde_ok(tde_masterkey_open(&b, uri2));
    /* Known answer: SHA-256("libtde key-file fingerprint v1\0" || key)[0:16], computed with
     * Python's hashlib for the key 00 01 .. 1f. */
    assert_string_equal(tde_masterkey_key_id(a), "982ad6719d5c9b0a5cc1daed3e4b1106");
    assert_string_equal(tde_masterkey_key_id(b), tde_masterkey_key_id(a));
    assert_null(strstr(tde_masterkey_key_id(a), "one"));
    assert_string_equal(tde_masterkey_provider_name(a), "file");

    assert_tde_ok(tde_masterkey_wrap(a, (const uint8_t *)"ctx", 3, secret, 20, &blob, &blob_len));
    assert_int_equal(blob_len, 12 + 20 + 16);
    assert_tde_ok(tde_masterkey_unwrap(b, (const uint8_t *)"ctx", 3, blob, blob_len, &pt));
    assert_memory_equal(tde_secret_data(pt), secret, 20);
    tde_secret_free(pt);
    assert_int_equal(tde_masterkey_unwrap(b, (const uint8_t *)"ctY", 3, blob, blob_len, &pt),
                     TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "provider file, master key 982ad671"));
    assert_null(pt);
    free(blob);
    tde_masterkey_free(a);
    tde_masterkey_free(b);
    free(uri1);
    free(uri2);
    test_rmtree(dir);
    free(dir);
}

static void
test_masterkey_keyfile_errors_name_file_and_problem(void **state)
{
    static const struct {
        const char *content;
        tde_status st;
        const char *message;
    } bad[] = {
        {"0001\n", TDE_ERR_CORRUPT, "non-hex character at position 4"},
        {"00010203", TDE_ERR_CORRUPT, "wrong length: 8 hex digits, expected 64"},
        {"", TDE_ERR_CORRUPT, "wrong length: 0 hex digits"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", TDE_ERR_CORRUPT,
         "missing newline after the 64 hex digits"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0\n", TDE_ERR_CORRUPT,
         "wrong length: more than 64 hex digits"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n", TDE_ERR_CORRUPT,
         "unexpected character at position 64"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n", TDE_ERR_CORRUPT,
         "1 bytes after the newline"},
        {"0001020304050607080g0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", TDE_ERR_CORRUPT,
         "non-hex character at position 19"},
    };
    char *dir = test_tmpdir("mkbad");
    tde_masterkey *mk = NULL;
    char uri[4200];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *u = make_keyfile(dir, "bad.key", bad[i].content, 0600);
        tde_status st = tde_masterkey_open(&mk, u);
        if (st != bad[i].st || strstr(tde_last_error(), bad[i].message) == NULL)
            print_error("case %zu: %s: %s\n", i, tde_status_str(st), tde_last_error());
        assert_int_equal(st, bad[i].st);
        assert_non_null(strstr(tde_last_error(), bad[i].message));
        assert_non_null(strstr(tde_last_error(), "bad.key"));
        assert_null(mk);
        free(u);
    }
    snprintf(uri, sizeof(uri), "file://%s/missing.key", dir);
    assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "missing.key"));
    snprintf(uri, sizeof(uri), "file://%s", dir);
    assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "not a regular file"));
    /* A FIFO in the key's place is refused at once, not read (which would block). */
    snprintf(uri, sizeof(uri), "%s/fifo.key", dir);
    assert_int_equal(mkfifo(uri, 0600), 0);
    snprintf(uri, sizeof(uri), "file://%s/fifo.key", dir);
    assert_int_equal(tde_masterkey_open(&mk, uri), TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "fifo.key: not a regular file"));
    assert_int_equal(tde_masterkey_open(&mk, "file://host/etc/k"), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&mk, "file://"), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&mk, "file:///etc/k?x=1"), TDE_ERR_INVALID_ARG);
    test_rmtree(dir);
    free(dir);
}

static void
test_masterkey_keyfile_warns_when_others_can_read(void **state)
{
    struct logbuf lb = {0};
    char *dir = test_tmpdir("mkperm"), content[80], *u;
    tde_masterkey *mk = NULL;
    (void)state;

    snprintf(content, sizeof(content), "%s\n", key_hex);
    tde_set_log_callback(capture_log, &lb);
    u = make_keyfile(dir, "private.key", content, 0600);
    assert_tde_ok(tde_masterkey_open(&mk, u));
    tde_masterkey_free(mk);
    assert_int_equal(lb.warnings, 0);
    free(u);
    u = make_keyfile(dir, "shared.key", content, 0644);
    assert_tde_ok(tde_masterkey_open(&mk, u));
    tde_masterkey_free(mk);
    assert_int_equal(lb.warnings, 1);
    assert_non_null(strstr(lb.text, "shared.key is accessible by group or others (mode 0644)"));
    assert_null(strstr(lb.text, key_hex));
    tde_set_log_callback(NULL, NULL);
    free(u);
    test_rmtree(dir);
    free(dir);
}

static void
test_masterkey_keyfile_create_is_0600_and_never_overwrites(void **state)
{
    char *dir = test_tmpdir("mkgen"), path[4200], uri[4300], buf[100];
    struct stat sb;
    tde_masterkey *mk = NULL;
    int fd;
    ssize_t n;
    (void)state;

    snprintf(path, sizeof(path), "%s/master.key", dir);
    assert_tde_ok(tde_keyfile_create(path));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 65);
    fd = open(path, O_RDONLY);
    n = read(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(n, 65);
    assert_int_equal(buf[64], '\n');
    for (int i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", buf[i]));
    snprintf(uri, sizeof(uri), "file://%s", path);
    assert_tde_ok(tde_masterkey_open(&mk, uri));
    tde_masterkey_free(mk);

    assert_int_equal(tde_keyfile_create(path), TDE_ERR_EXISTS);
    assert_non_null(strstr(tde_last_error(), "refusing to overwrite"));
    fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf + 65, 35), 65 > 35 ? 35 : 65);
    close(fd);
    assert_memory_equal(buf, buf + 65, 35); /* unchanged */
    test_rmtree(dir);
    free(dir);
}

/* ---- test provider ---- */

static void
test_masterkey_testkey_warns_and_binds_id(void **state)
{
    struct logbuf lb = {0};
    tde_masterkey *a = NULL, *b = NULL;
    tde_secret *pt = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    (void)state;

    tde_set_log_callback(capture_log, &lb);
    assert_tde_ok(tde_masterkey_open(&a, "plaintext-test-only://?id=one"));
    assert_tde_ok(tde_masterkey_open(&b, "plaintext-test-only://?id=two"));
    tde_set_log_callback(NULL, NULL);
    assert_int_equal(lb.warnings, 2);
    assert_non_null(strstr(lb.text, "for tests only"));
    assert_string_equal(tde_masterkey_key_id(a), "plaintext-test-only:one");
    assert_tde_ok(tde_masterkey_wrap(a, NULL, 0, (const uint8_t *)"abc", 3, &blob, &blob_len));
    assert_tde_ok(tde_masterkey_unwrap(a, NULL, 0, blob, blob_len, &pt));
    assert_memory_equal(tde_secret_data(pt), "abc", 3);
    tde_secret_free(pt);
    assert_int_equal(tde_masterkey_unwrap(b, NULL, 0, blob, blob_len, &pt), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "plaintext-test-only"));
    free(blob);
    tde_masterkey_free(a);
    tde_masterkey_free(b);
    assert_int_equal(tde_masterkey_open(&a, "plaintext-test-only://host"), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_masterkey_open(&a, "plaintext-test-only://?id=x&y=z"),
                     TDE_ERR_INVALID_ARG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masterkey_uri_parses_components),
        cmocka_unit_test(test_masterkey_uri_rejects_malformed_with_position),
        cmocka_unit_test(test_masterkey_register_checks_vtable),
        cmocka_unit_test(test_masterkey_register_refuses_duplicate_name),
        cmocka_unit_test(test_masterkey_null_optional_member_gets_default),
        cmocka_unit_test(test_masterkey_key_id_must_be_printable),
        cmocka_unit_test(test_masterkey_unknown_scheme_lists_known),
        cmocka_unit_test(test_masterkey_provider_failing_on_nth_call_is_named),
        cmocka_unit_test(test_masterkey_keyfile_roundtrip_and_fingerprint),
        cmocka_unit_test(test_masterkey_keyfile_errors_name_file_and_problem),
        cmocka_unit_test(test_masterkey_keyfile_warns_when_others_can_read),
        cmocka_unit_test(test_masterkey_keyfile_create_is_0600_and_never_overwrites),
        cmocka_unit_test(test_masterkey_testkey_warns_and_binds_id),
    };
    tde_secret_allow_unlocked(1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
