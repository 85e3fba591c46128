/*
 * Key dictionary record (docs/formats.md, "Key dictionary"). Threat model: the
 * record holds every data key in clear, so it only ever exists in secret
 * memory and on disk sealed under the master key; the parser treats its input
 * as hostile (it is also fuzzed) even though a sealed record is authenticated.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/error.h"
#include "common/fileio.h"
#include "tde/envelope.h"
#include "keymgr/keydict.h"

#define MAX_KEYS 100000u
#define ID_TRIES 16

static uint64_t (*id_source)(void *arg);
static void *id_source_arg;

void
tde_keydict_set_id_source(uint64_t (*fn)(void *arg), void *arg)
{
    id_source = fn;
    id_source_arg = arg;
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

tde_status
tde_keydict_init(tde_keydict *kd)
{
    memset(kd, 0, sizeof(*kd));
    return tde_secret_random(&kd->secret, TDE_KEYDICT_SECRET_LEN);
}

void
tde_keydict_clear(tde_keydict *kd)
{
    for (size_t i = 0; i < kd->n_keys; i++)
        tde_secret_free(kd->keys[i].key);
    free(kd->keys);
    tde_secret_free(kd->secret);
    memset(kd, 0, sizeof(*kd));
}

tde_keydict_key *
tde_keydict_find(const tde_keydict *kd, uint64_t id)
{
    for (size_t i = 0; i < kd->n_keys; i++)
        if (kd->keys[i].id == id)
            return &kd->keys[i];
    return NULL;
}

static tde_status
append_key(tde_keydict *kd, const tde_keydict_key *k)
{
    tde_keydict_key *keys = realloc(kd->keys, (kd->n_keys + 1) * sizeof(*keys));
    if (keys == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "key dictionary: out of memory");
    kd->keys = keys;
    kd->keys[kd->n_keys++] = *k;
    return TDE_OK;
}

static tde_status
new_id(const tde_keydict *kd, uint64_t *out)
{
    /* tikv#14585: a colliding id must never replace a key that files still use. */
    for (int i = 0; i < ID_TRIES; i++) {
        uint64_t id;
        if (id_source != NULL)
            id = id_source(id_source_arg);
        else
            TDE_RET(tde_random_bytes(&id, sizeof(id)));
        if (id != 0 && tde_keydict_find(kd, id) == NULL) {
            *out = id;
            return TDE_OK;
        }
        tde_log(TDE_LOG_WARN, "key dictionary: new key id %016llx collides; drawing another",
                (unsigned long long)id);
    }
    return tde_error_set(TDE_ERR_CRYPTO, "key dictionary: %d key ids in a row collided", ID_TRIES);
}

tde_status
tde_keydict_add(tde_keydict *kd, tde_method m, uint64_t now, uint64_t *id_out)
{
    tde_keydict_key k = {.method = m, .created = now};
    size_t len = tde_method_key_len(m);
    tde_status st;

    if (tde_method_name(m) == NULL || m == TDE_METHOD_UNKNOWN)
        return tde_error_set(TDE_ERR_INVALID_ARG, "key dictionary: unknown method %d", (int)m);
    TDE_RET(new_id(kd, &k.id));
    if (len > 0)
        TDE_RET(tde_secret_random(&k.key, len));
    st = append_key(kd, &k);
    if (st != TDE_OK) {
        tde_secret_free(k.key);
        return st;
    }
    *id_out = k.id;
    return TDE_OK;
}

tde_status
tde_keydict_remove(tde_keydict *kd, uint64_t id)
{
    tde_keydict_key *k = tde_keydict_find(kd, id);

    if (k == NULL)
        return tde_error_set(TDE_ERR_NOT_FOUND, "key dictionary: no key %016llx",
                             (unsigned long long)id);
    if (id == kd->current_id)
        return tde_error_set(TDE_ERR_STATE, "key dictionary: key %016llx is current",
                             (unsigned long long)id);
    tde_secret_free(k->key);
    *k = kd->keys[--kd->n_keys];
    return TDE_OK;
}

tde_status
tde_keydict_encode(const tde_keydict *kd, tde_secret **out)
{
    size_t len = TDE_KEYDICT_HEADER_LEN;
    uint8_t *p;

    for (size_t i = 0; i < kd->n_keys; i++)
        len += TDE_KEYDICT_KEY_HEADER_LEN + tde_method_key_len(kd->keys[i].method);
    TDE_RET(tde_secret_new(out, len));
    p = tde_secret_data_mut(*out);
    memcpy(p, TDE_KEYDICT_MAGIC, 4);
    put_le(p + 4, TDE_KEYDICT_VERSION, 2);
    put_le(p + 6, kd->flags, 2);
    put_le(p + 8, kd->generation, 8);
    put_le(p + 16, kd->current_id, 8);
    memcpy(p + 24, tde_secret_data(kd->secret), TDE_KEYDICT_SECRET_LEN);
    put_le(p + 56, kd->n_keys, 4);
    put_le(p + 60, 0, 4);
    p += TDE_KEYDICT_HEADER_LEN;
    for (size_t i = 0; i < kd->n_keys; i++) {
        const tde_keydict_key *k = &kd->keys[i];
        size_t klen = tde_method_key_len(k->method);
        put_le(p, k->id, 8);
        put_le(p + 8, k->created, 8);
        p[16] = (uint8_t)k->method;
        p[17] = (uint8_t)klen;
        put_le(p + 18, 0, 2);
        if (klen > 0)
            memcpy(p + 20, tde_secret_data(k->key), klen);
        p += TDE_KEYDICT_KEY_HEADER_LEN + klen;
    }
    return TDE_OK;
}

tde_status
tde_keydict_decode(tde_keydict *kd, const uint8_t *buf, size_t len, const char *name)
{
    tde_status st = TDE_OK;
    size_t off = TDE_KEYDICT_HEADER_LEN;
    uint64_t n;

    memset(kd, 0, sizeof(*kd));
    TDE_ENSURE(len >= TDE_KEYDICT_HEADER_LEN, TDE_ERR_CORRUPT,
               "%s: key dictionary record of %zu bytes is shorter than its %d-byte header", name,
               len, TDE_KEYDICT_HEADER_LEN);
    TDE_ENSURE(memcmp(buf, TDE_KEYDICT_MAGIC, 4) == 0, TDE_ERR_CORRUPT,
               "%s: bad key dictionary magic at offset 0", name);
    TDE_ENSURE(get_le(buf + 4, 2) == TDE_KEYDICT_VERSION, TDE_ERR_UNSUPPORTED,
               "%s: key dictionary version %u is not supported (this build reads %d)", name,
               (unsigned)get_le(buf + 4, 2), TDE_KEYDICT_VERSION);
    kd->flags = (uint16_t)get_le(buf + 6, 2);
    TDE_ENSURE((kd->flags & ~TDE_KEYDICT_KNOWN_FLAGS) == 0, TDE_ERR_UNSUPPORTED,
               "%s: unknown key dictionary flags 0x%04x at offset 6", name, kd->flags);
    kd->generation = get_le(buf + 8, 8);
    kd->current_id = get_le(buf + 16, 8);
    TDE_ERR(tde_secret_from(&kd->secret, buf + 24, TDE_KEYDICT_SECRET_LEN));
    n = get_le(buf + 56, 4);
    TDE_ENSURE(get_le(buf + 60, 4) == 0, TDE_ERR_CORRUPT,
               "%s: reserved key dictionary bytes at offset 60 are not zero", name);
    TDE_ENSURE(n <= MAX_KEYS && n <= (len - off) / TDE_KEYDICT_KEY_HEADER_LEN, TDE_ERR_CORRUPT,
               "%s: key count %llu at offset 56 does not fit the record", name,
               (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        tde_keydict_key k = {0};
        size_t klen;
        TDE_ENSURE(len - off >= TDE_KEYDICT_KEY_HEADER_LEN, TDE_ERR_CORRUPT,
                   "%s: key %llu truncated at offset %zu", name, (unsigned long long)i, off);
        k.id = get_le(buf + off, 8);
        k.created = get_le(buf + off + 8, 8);
        k.method = (tde_method)buf[off + 16];
        klen = buf[off + 17];
        TDE_ENSURE(k.id != 0 && tde_keydict_find(kd, k.id) == NULL, TDE_ERR_CORRUPT,
                   "%s: key id %016llx at offset %zu is zero or repeated", name,
                   (unsigned long long)k.id, off);
        TDE_ENSURE(k.method != TDE_METHOD_UNKNOWN && tde_method_name(k.method) != NULL,
                   TDE_ERR_CORRUPT, "%s: unknown method %u at offset %zu", name,
                   (unsigned)buf[off + 16], off + 16);
        TDE_ENSURE(klen == tde_method_key_len(k.method), TDE_ERR_CORRUPT,
                   "%s: key length %zu at offset %zu does not match method %s", name, klen,
                   off + 17, tde_method_name(k.method));
        TDE_ENSURE(get_le(buf + off + 18, 2) == 0, TDE_ERR_CORRUPT,
                   "%s: reserved bytes at offset %zu are not zero", name, off + 18);
        off += TDE_KEYDICT_KEY_HEADER_LEN;
        TDE_ENSURE(len - off >= klen, TDE_ERR_CORRUPT, "%s: key %016llx truncated at offset %zu",
                   name, (unsigned long long)k.id, off);
        if (klen > 0)
            TDE_ERR(tde_secret_from(&k.key, buf + off, klen));
        off += klen;
        st = append_key(kd, &k);
        if (st != TDE_OK) {
            tde_secret_free(k.key);
            goto err;
        }
    }
    TDE_ENSURE(off == len, TDE_ERR_CORRUPT,
               "%s: %zu trailing bytes after the last key at offset %zu", name, len - off, off);
    TDE_ENSURE(tde_keydict_find(kd, kd->current_id) != NULL, TDE_ERR_CORRUPT,
               "%s: current key %016llx (offset 16) is not in the dictionary", name,
               (unsigned long long)kd->current_id);
    return TDE_OK;
err:
    tde_keydict_clear(kd);
    return st;
}

tde_status
tde_keydict_copy(tde_keydict *dst, const tde_keydict *src)
{
    tde_secret *rec = NULL;
    tde_status st;

    TDE_RET(tde_keydict_encode(src, &rec));
    st = tde_keydict_decode(dst, tde_secret_data(rec), tde_secret_len(rec), "key dictionary copy");
    tde_secret_free(rec);
    return st;
}

tde_status
tde_keydict_mac_key(const tde_keydict *kd, uint8_t out[32])
{
    static const char label[] = "libtde filedict mac v1";
    unsigned int n = 32;

    if (HMAC(EVP_sha256(), tde_secret_data(kd->secret), TDE_KEYDICT_SECRET_LEN,
             (const unsigned char *)label, sizeof(label) - 1, out, &n) == NULL ||
        n != 32)
        return tde_error_set(TDE_ERR_CRYPTO, "key dictionary: HMAC-SHA256 failed");
    return TDE_OK;
}

/* The provider's message, prefixed with the file name (tde_last_error() is reused by the next
 * call). */
static tde_status
name_error(tde_status st, const char *path)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "%s", tde_last_error());
    return tde_error_set(st, "%s: %s", path, msg);
}

tde_status
tde_keydict_load(tde_keydict *kd, const char *path, tde_masterkey *current, tde_masterkey *previous,
                 const tde_masterkey **used)
{
    tde_envelope_options eo = TDE_ENVELOPE_OPTIONS_INIT;
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    tde_secret *pt = NULL;
    tde_status st;

    memset(kd, 0, sizeof(*kd));
    eo.record_type = TDE_RECORD_KEY_DICT;
    TDE_RET(tde_fileio_read_all(path, &rec, &rec_len));
    st = tde_envelope_open_to_secret(current, previous, &eo, rec, rec_len, &pt, used);
    free(rec);
    if (st != TDE_OK)
        return name_error(st, path);
    st = tde_keydict_decode(kd, tde_secret_data(pt), tde_secret_len(pt), path);
    tde_secret_free(pt);
    return st;
}

tde_status
tde_keydict_store(const tde_keydict *kd, const char *path, tde_masterkey *mk)
{
    tde_envelope_options eo = TDE_ENVELOPE_OPTIONS_INIT;
    tde_secret *pt = NULL;
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    tde_status st;

    eo.record_type = TDE_RECORD_KEY_DICT;
    TDE_RET(tde_keydict_encode(kd, &pt));
    st = tde_envelope_seal(mk, &eo, tde_secret_data(pt), tde_secret_len(pt), &rec, &rec_len);
    tde_secret_free(pt);
    if (st != TDE_OK)
        return name_error(st, path);
    st = tde_durable_write(path, rec, rec_len);
    if (st == TDE_OK) {
        /* A second copy, so one bad sector does not lose every key (recovery: keymgr.c). */
        char bak[PATH_MAX];
        snprintf(bak, sizeof(bak), "%s%s", path, TDE_KEYDICT_BACKUP_SUFFIX);
        if (tde_durable_write(bak, rec, rec_len) != TDE_OK) {
            tde_log(TDE_LOG_ERROR, "%s: writing the backup copy failed: %s", bak, tde_last_error());
            tde_error_clear();
        }
    }
    free(rec);
    return st;
}
