/*
 * The key-file master-key provider ("file:///path/to/master.key").
 *
 * Threat model: the key file is the root of trust for everything it wraps, so
 * its bytes are read straight into locked secret memory, the read buffer is
 * wiped, nothing derived from the path ends up in records (the key id is a
 * fingerprint of the key), and a file others can read is reported. The
 * format is TiKV's: exactly 64 hex digits (a 256-bit key) and one "\n".
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "masterkey/provider.h"
#include "tde/gcm.h"

#define KEYFILE_LEN (2 * TDE_KEYFILE_KEY_LEN + 1)
#define FINGERPRINT_LEN 16
/* Domain separation: the fingerprint must not be a plain hash of the key. */
static const char fingerprint_label[] = "libtde key-file fingerprint v1";

typedef struct keyfile {
    tde_masterkey_provider base;
    tde_secret *key;
    char key_id[2 * FINGERPRINT_LEN + 1];
} keyfile;

static int
hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Checks the TiKV layout of @p buf (@p len bytes read from @p path) and decodes it into @p key. */
static tde_status
parse_key(const char *path, const unsigned char *buf, size_t len, uint8_t *key)
{
    for (size_t i = 0; i < len && i < 2 * TDE_KEYFILE_KEY_LEN; i++)
        if (hex_digit(buf[i]) < 0)
            return tde_error_set(TDE_ERR_CORRUPT,
                                 "provider file: key file %s: non-hex character at position %zu "
                                 "(expected 64 hex digits and a newline)",
                                 path, i);
    if (len < 2 * TDE_KEYFILE_KEY_LEN)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider file: key file %s: wrong length: %zu hex digits, expected "
                             "64 and a newline",
                             path, len);
    if (len == 2 * TDE_KEYFILE_KEY_LEN)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider file: key file %s: missing newline after the 64 hex digits",
                             path);
    if (buf[2 * TDE_KEYFILE_KEY_LEN] != '\n')
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider file: key file %s: %s at position 64, expected a newline",
                             path,
                             hex_digit(buf[64]) >= 0 ? "wrong length: more than 64 hex digits"
                                                     : "unexpected character");
    if (len > KEYFILE_LEN)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider file: key file %s: wrong length: %zu bytes after the "
                             "newline, expected none (file must be exactly 65 bytes)",
                             path, len - KEYFILE_LEN);
    for (size_t i = 0; i < TDE_KEYFILE_KEY_LEN; i++)
        key[i] = (uint8_t)(hex_digit(buf[2 * i]) << 4 | hex_digit(buf[2 * i + 1]));
    return TDE_OK;
}

static tde_status
fingerprint(keyfile *kf)
{
    uint8_t digest[32];
    unsigned digest_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, fingerprint_label, sizeof(fingerprint_label)) == 1 &&
             EVP_DigestUpdate(ctx, tde_secret_data(kf->key), tde_secret_len(kf->key)) == 1 &&
             EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1;

    EVP_MD_CTX_free(ctx);
    if (!ok)
        return tde_error_set(TDE_ERR_CRYPTO, "provider file: SHA-256 failed");
    for (size_t i = 0; i < FINGERPRINT_LEN; i++)
        snprintf(kf->key_id + 2 * i, 3, "%02x", digest[i]);
    return TDE_OK;
}

static void
keyfile_destroy(tde_masterkey_provider *p)
{
    keyfile *kf = (keyfile *)p;
    if (kf == NULL)
        return;
    tde_secret_free(kf->key);
    free(kf);
}

static tde_status
keyfile_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    const char *path = tde_uri_path(uri), *host = tde_uri_host(uri);
    unsigned char buf[KEYFILE_LEN + 1];
    ssize_t n = 0;
    size_t len = 0;
    struct stat sb;
    keyfile *kf = NULL;
    int fd = -1;
    tde_status st;

    TDE_ENSURE(host[0] == '\0' || strcmp(host, "localhost") == 0, TDE_ERR_INVALID_ARG,
               "provider file: URI \"%s\": host must be empty or localhost (file:///abs/path)",
               tde_uri_text(uri));
    TDE_ENSURE(path[0] == '/', TDE_ERR_INVALID_ARG,
               "provider file: URI \"%s\": needs an absolute path (file:///abs/path)",
               tde_uri_text(uri));
    TDE_ENSURE(tde_uri_param_count(uri) == 0 && tde_uri_port(uri) == 0, TDE_ERR_INVALID_ARG,
               "provider file: URI \"%s\": takes no port or query parameters", tde_uri_text(uri));
    /* O_NONBLOCK: a FIFO in the key's place must not hang us; fstat() refuses it below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    TDE_ENSURE(fd >= 0, errno == ENOENT ? TDE_ERR_NOT_FOUND : TDE_ERR_IO,
               "provider file: key file %s: %s", path, strerror(errno));
    TDE_ENSURE(fstat(fd, &sb) == 0, TDE_ERR_IO, "provider file: key file %s: fstat: %s", path,
               strerror(errno));
    TDE_ENSURE(S_ISREG(sb.st_mode), TDE_ERR_INVALID_ARG,
               "provider file: key file %s: not a regular file", path);
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        tde_log(TDE_LOG_WARN,
                "provider file: key file %s is accessible by group or others (mode %04o); "
                "chmod 600 it",
                path, (unsigned)(sb.st_mode & 07777));
    /* Read one byte more than a valid file holds, to tell "too long" apart. */
    while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        TDE_ENSURE(n > 0, TDE_ERR_IO, "provider file: key file %s: read: %s", path,
                   strerror(errno));
        len += (size_t)n;
    }
    kf = calloc(1, sizeof(*kf));
    TDE_ENSURE(kf != NULL, TDE_ERR_NOMEM, "provider file: out of memory");
    kf->base.vt = &masterkey_keyfile_vtable;
    TDE_ERR(tde_secret_new(&kf->key, TDE_KEYFILE_KEY_LEN));
    TDE_ERR(parse_key(path, buf, len, tde_secret_data_mut(kf->key)));
    TDE_ERR(fingerprint(kf));
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    *out = &kf->base;
    return TDE_OK;
err:
    OPENSSL_cleanse(buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    keyfile_destroy((tde_masterkey_provider *)kf);
    return st;
}

static const char *
keyfile_key_id(const tde_masterkey_provider *p)
{
    return ((const keyfile *)p)->key_id;
}

/* blob = IV (12) || ciphertext || tag (16), AES-256-GCM under the master key. */
static tde_status
keyfile_wrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
             size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    keyfile *kf = (keyfile *)p;
    size_t len = TDE_GCM_IV_LEN + pt_len + TDE_GCM_TAG_LEN;
    uint8_t *b = malloc(len);
    tde_status st;

    if (b == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "provider file: out of memory");
    st = tde_gcm_seal_random_iv(tde_secret_data(kf->key), TDE_KEYFILE_KEY_LEN, b, aad, aad_len, pt,
                                pt_len, b + TDE_GCM_IV_LEN, b + TDE_GCM_IV_LEN + pt_len);
    if (st != TDE_OK) {
        free(b);
        return st;
    }
    *blob = b;
    *blob_len = len;
    return TDE_OK;
}

static tde_status
keyfile_unwrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
               size_t blob_len, tde_secret **pt)
{
    keyfile *kf = (keyfile *)p;
    size_t len;
    tde_secret *s = NULL;
    tde_status st;

    if (blob_len <= TDE_GCM_IV_LEN + TDE_GCM_TAG_LEN)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "provider file, master key %s: wrapped blob of %zu bytes is too short",
                             kf->key_id, blob_len);
    len = blob_len - TDE_GCM_IV_LEN - TDE_GCM_TAG_LEN;
    TDE_RET(tde_secret_new(&s, len));
    st = tde_gcm_open(tde_secret_data(kf->key), TDE_KEYFILE_KEY_LEN, blob, TDE_GCM_IV_LEN, aad,
                      aad_len, blob + TDE_GCM_IV_LEN, len, blob + TDE_GCM_IV_LEN + len,
                      TDE_GCM_TAG_LEN, tde_secret_data_mut(s));
    if (st != TDE_OK) {
        tde_secret_free(s);
        if (st == TDE_ERR_AUTH)
            return tde_error_set(TDE_ERR_AUTH,
                                 "provider file, master key %s: GCM tag mismatch: wrong master key "
                                 "or context, or tampered record",
                                 kf->key_id);
        return st;
    }
    *pt = s;
    return TDE_OK;
}

const tde_masterkey_provider_vtable masterkey_keyfile_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "file",
    .open = keyfile_open,
    .key_id = keyfile_key_id,
    .wrap = keyfile_wrap,
    .unwrap = keyfile_unwrap,
    .generate_data_key = NULL,
    .destroy = keyfile_destroy,
};

/* fsyncs the directory holding @p path, so a new entry in it is durable. */
static tde_status
fsync_parent(const char *path)
{
    char *copy = strdup(path);
    int fd;
    tde_status st = TDE_OK;

    if (copy == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "key file %s: out of memory", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        st = tde_error_set(TDE_ERR_IO, "key file %s: fsync of its directory: %s", path,
                           strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return st;
}

tde_status
tde_keyfile_create(const char *path)
{
    uint8_t key[TDE_KEYFILE_KEY_LEN];
    char text[KEYFILE_LEN + 1], tmp[4096];
    int fd = -1;
    tde_status st;

    if (path == NULL || path[0] == '\0')
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_keyfile_create: empty path");
    TDE_ENSURE(snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) < (int)sizeof(tmp),
               TDE_ERR_INVALID_ARG, "key file %s: path too long", path);
    TDE_ENSURE(access(path, F_OK) != 0, TDE_ERR_EXISTS,
               "key file %s: exists already; refusing to overwrite a master key", path);
    TDE_ERR(tde_random_bytes(key, sizeof(key)));
    for (size_t i = 0; i < sizeof(key); i++)
        snprintf(text + 2 * i, 3, "%02x", key[i]);
    text[KEYFILE_LEN - 1] = '\n';
    /* mkstemp creates 0600; the key is complete and durable before it gets its name. */
    fd = mkstemp(tmp);
    TDE_ENSURE(fd >= 0, TDE_ERR_IO, "key file %s: cannot create a temporary file: %s", path,
               strerror(errno));
    TDE_ENSURE(write(fd, text, KEYFILE_LEN) == KEYFILE_LEN, TDE_ERR_IO, "key file %s: write: %s",
               path, strerror(errno));
    TDE_ENSURE(fsync(fd) == 0, TDE_ERR_IO, "key file %s: fsync: %s", path, strerror(errno));
    /* link() never replaces an existing file, unlike rename(). */
    TDE_ENSURE(link(tmp, path) == 0, errno == EEXIST ? TDE_ERR_EXISTS : TDE_ERR_IO,
               "key file %s: %s", path,
               errno == EEXIST ? "exists already; refusing to overwrite a master key"
                               : strerror(errno));
    TDE_ERR(fsync_parent(path));
    st = TDE_OK;
err:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(text, sizeof(text));
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    return st;
}
