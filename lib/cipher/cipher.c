/* Methods, backend selection and the counter arithmetic shared by every backend. */
#include "tde/cipher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cipher/backend.h"
#include "cipher/sm4.h"
#include "common/error.h"

extern const cipher_backend tde_cipher_backend_gcrypt;
extern const cipher_backend tde_cipher_backend_openssl;
extern const cipher_backend tde_cipher_backend_aes_vaes_avx512; /* x86-64 only */

/* Every backend compiled in, fastest first. */
static const cipher_backend *const all_backends[] = {
#ifdef SM4_HAVE_X86
    &tde_cipher_backend_aes_vaes_avx512, &tde_cipher_backend_sm4_gfni_avx512,
    &tde_cipher_backend_sm4_gfni_avx2,   &tde_cipher_backend_sm4_aesni,
#endif
    &tde_cipher_backend_gcrypt,          &tde_cipher_backend_openssl,
};
#define N_BACKENDS (sizeof(all_backends) / sizeof(all_backends[0]))

static const struct {
    tde_method id;
    const char *name;
    size_t key_len;
} methods[] = {
    {TDE_METHOD_PLAINTEXT, "plaintext", 0},    {TDE_METHOD_AES128_CTR, "aes128-ctr", 16},
    {TDE_METHOD_AES192_CTR, "aes192-ctr", 24}, {TDE_METHOD_AES256_CTR, "aes256-ctr", 32},
    {TDE_METHOD_SM4_CTR, "sm4-ctr", 16},
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

tde_status
tde_method_from_name(tde_method *out, const char *name)
{
    for (size_t i = 0; name != NULL && i < N_METHODS; i++) {
        if (strcmp(name, methods[i].name) == 0) {
            *out = methods[i].id;
            return TDE_OK;
        }
    }
    return tde_error_set(TDE_ERR_INVALID_ARG,
                         "unknown encryption method \"%s\" (valid: plaintext, aes128-ctr, "
                         "aes192-ctr, aes256-ctr, sm4-ctr)",
                         name != NULL ? name : "(null)");
}

const char *
tde_method_name(tde_method m)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (methods[i].id == m)
            return methods[i].name;
    return NULL;
}

size_t
tde_method_key_len(tde_method m)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (methods[i].id == m)
            return methods[i].key_len;
    return 0;
}

static char available_list[256];

static void
build_available_list(void)
{
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (i > 0)
            strcat(available_list, ",");
        strcat(available_list, all_backends[i]->name);
    }
}

const char *
tde_cipher_backends_available(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_available_list);
    return available_list;
}

/*
 * The preference order: indexes into all_backends, chosen by
 * tde_cipher_set_backends() or TDE_CIPHER_BACKEND. A bad TDE_CIPHER_BACKEND is
 * remembered and fails every tde_cipher_new() rather than falling back.
 */
static pthread_mutex_t prefs_lock = PTHREAD_MUTEX_INITIALIZER;
static bool prefs_set;
static size_t prefs[N_BACKENDS];
static size_t n_prefs;
static char prefs_error[256];
static const cipher_backend *logged_choice[TDE_METHOD_SM4_CTR + 1];

static tde_status
parse_backend_list(const char *list, size_t *order, size_t *n)
{
    *n = 0;
    const char *p = list;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        while (i < N_BACKENDS && !(strlen(all_backends[i]->name) == len &&
                                   strncmp(all_backends[i]->name, p, len) == 0))
            i++;
        if (i == N_BACKENDS)
            return tde_error_set(TDE_ERR_INVALID_ARG,
                                 "unknown cipher backend \"%.*s\" in \"%s\" (known: %s)", (int)len,
                                 p, list, tde_cipher_backends_available());
        bool dup = false;
        for (size_t j = 0; j < *n; j++)
            dup = dup || order[j] == i;
        if (!dup)
            order[(*n)++] = i;
        p += len;
        if (*p == ',')
            p++;
    }
    if (*n == 0)
        return tde_error_set(TDE_ERR_INVALID_ARG, "empty cipher backend list (known: %s)",
                             tde_cipher_backends_available());
    return TDE_OK;
}

/* Default order, or TDE_CIPHER_BACKEND. Called with prefs_lock held. */
static void
load_default_prefs(void)
{
    const char *env = getenv("TDE_CIPHER_BACKEND");
    prefs_error[0] = '\0';
    memset(logged_choice, 0, sizeof(logged_choice));
    if (env != NULL && *env != '\0') {
        if (parse_backend_list(env, prefs, &n_prefs) != TDE_OK) {
            snprintf(prefs_error, sizeof(prefs_error), "TDE_CIPHER_BACKEND: %s", tde_last_error());
            n_prefs = 0;
        }
    } else {
        for (n_prefs = 0; n_prefs < N_BACKENDS; n_prefs++)
            prefs[n_prefs] = n_prefs;
    }
    prefs_set = true;
}

tde_status
tde_cipher_set_backends(const char *list)
{
    size_t order[N_BACKENDS], n = 0;
    if (list != NULL)
        TDE_RET(parse_backend_list(list, order, &n));
    pthread_mutex_lock(&prefs_lock);
    if (list == NULL) {
        load_default_prefs();
    } else {
        memcpy(prefs, order, n * sizeof(order[0]));
        n_prefs = n;
        prefs_error[0] = '\0';
        memset(logged_choice, 0, sizeof(logged_choice));
        prefs_set = true;
    }
    tde_status st =
        prefs_error[0] != '\0' ? tde_error_set(TDE_ERR_INVALID_ARG, "%s", prefs_error) : TDE_OK;
    pthread_mutex_unlock(&prefs_lock);
    return st;
}

/* The first preferred backend that supports @p m. */
static tde_status
pick_backend(tde_method m, const cipher_backend **out)
{
    tde_status st = TDE_OK;
    *out = NULL;
    pthread_mutex_lock(&prefs_lock);
    if (!prefs_set)
        load_default_prefs();
    if (prefs_error[0] != '\0') {
        st = tde_error_set(TDE_ERR_INVALID_ARG, "%s", prefs_error);
    } else {
        for (size_t i = 0; i < n_prefs && *out == NULL; i++)
            if (all_backends[prefs[i]]->supports(m))
                *out = all_backends[prefs[i]];
        if (*out == NULL)
            st = tde_error_set(TDE_ERR_UNSUPPORTED, "no selected cipher backend supports %s",
                               tde_method_name(m));
        else if (logged_choice[m] != *out) /* say which path serves each method, once per choice */
            tde_log(TDE_LOG_INFO, "cipher: %s uses backend %s", tde_method_name(m),
                    (logged_choice[m] = *out)->name);
    }
    pthread_mutex_unlock(&prefs_lock);
    return st;
}

const char *
tde_method_backend(tde_method m)
{
    const cipher_backend *b;
    if (m == TDE_METHOD_PLAINTEXT)
        return "none";
    if (tde_method_name(m) == NULL || m == TDE_METHOD_UNKNOWN) {
        tde_error_set(TDE_ERR_INVALID_ARG, "unknown encryption method id %d", (int)m);
        return NULL;
    }
    return pick_backend(m, &b) == TDE_OK ? b->name : NULL;
}

struct tde_cipher {
    tde_method method;
    const cipher_backend *backend; /* NULL for plaintext */
    void *sched;
};

tde_status
tde_cipher_new(tde_cipher **out, tde_method method, const uint8_t *key, size_t key_len)
{
    *out = NULL;
    const char *name = tde_method_name(method);
    if (name == NULL || method == TDE_METHOD_UNKNOWN)
        return tde_error_set(TDE_ERR_INVALID_ARG, "unknown encryption method id %d", (int)method);
    if (key_len != tde_method_key_len(method) || (key_len > 0 && key == NULL))
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s needs a %zu-byte key, got %zu bytes", name,
                             tde_method_key_len(method), key_len);
    tde_cipher *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "out of memory for a %s cipher", name);
    c->method = method;
    if (method != TDE_METHOD_PLAINTEXT) {
        tde_status st = pick_backend(method, &c->backend);
        if (st == TDE_OK)
            st = c->backend->key_new(&c->sched, method, key, key_len);
        if (st != TDE_OK) {
            free(c);
            return st;
        }
    }
    *out = c;
    return TDE_OK;
}

void
tde_cipher_free(tde_cipher *c)
{
    if (c == NULL)
        return;
    if (c->backend != NULL)
        c->backend->key_free(c->sched);
    free(c);
}

tde_method
tde_cipher_method(const tde_cipher *c)
{
    return c->method;
}

const char *
tde_cipher_backend(const tde_cipher *c)
{
    return c->backend != NULL ? c->backend->name : "none";
}

static uint64_t
load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void
store_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* counter = iv + offset / 16 as 128-bit big-endian integers, modulo 2^128 (two 64-bit halves:
 * this runs on every call, and small WAL appends make calls frequent). */
static void
counter_at(const uint8_t iv[16], uint64_t offset, uint8_t counter[16])
{
    uint64_t hi = load_be64(iv), lo = load_be64(iv + 8);
    uint64_t sum = lo + offset / 16;
    store_be64(counter, hi + (sum < lo));
    store_be64(counter + 8, sum);
}

tde_status
tde_cipher_process(const tde_cipher *c, const uint8_t iv[TDE_CIPHER_IV_LEN], uint64_t offset,
                   const void *in, void *out, size_t len)
{
    if (c == NULL || iv == NULL || (len > 0 && (in == NULL || out == NULL)))
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_cipher_process: NULL argument");
    if (c->backend == NULL) {
        if (in != out && len > 0)
            memmove(out, in, len);
        return TDE_OK;
    }
    uint8_t counter[16];
    counter_at(iv, offset, counter);
    return c->backend->process(c->sched, counter, (unsigned)(offset % 16), in, out, len);
}
