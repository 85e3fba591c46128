/*
 * The provider registry and the tde_masterkey handle.
 *
 * Providers are plug-ins, possibly written by a host program, so every call
 * into one is checked: the registration for version and required members, the
 * results for shape (non-empty blob, key of the asked length). Errors are
 * re-worded to name the provider and master key id when the provider's own
 * message does not. Calls on one handle are serialized by a mutex, so a
 * provider need not be thread-safe.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "masterkey/provider.h"

#define MAX_PROVIDERS 32
#define MAX_KEY_ID_LEN 1024

struct tde_masterkey {
    tde_masterkey_provider *p;
    const tde_masterkey_provider_vtable *vt;
    const char *key_id;
    char *uri;
    pthread_mutex_t lock;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;
static const tde_masterkey_provider_vtable *registry[MAX_PROVIDERS];
static size_t registry_len;

static int
valid_scheme(const char *name)
{
    size_t n = 0;

    if (name == NULL || !(name[0] >= 'a' && name[0] <= 'z'))
        return 0;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
            return 0;
    }
    return n <= 32;
}

/* Key ids are stored in records and shown in messages: 1..1024 printable ASCII bytes. */
static int
valid_key_id(const char *id)
{
    size_t n = 0;
    if (id == NULL)
        return 0;
    for (; id[n] != '\0'; n++)
        if (id[n] < 0x21 || id[n] > 0x7e)
            return 0;
    return n > 0 && n <= MAX_KEY_ID_LEN;
}

static tde_status
check_vtable(const tde_masterkey_provider_vtable *vt)
{
    const char *missing = NULL;

    if (vt == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_masterkey_register: NULL vtable");
    if (!valid_scheme(vt->name))
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "tde_masterkey_register: provider name \"%.40s\" is not a lower-case "
                             "URI scheme (a-z first, then a-z 0-9 + - ., at most 32)",
                             vt->name ? vt->name : "(null)");
    if (vt->version != TDE_MASTERKEY_PROVIDER_VERSION)
        return tde_error_set(TDE_ERR_UNSUPPORTED,
                             "provider %s: vtable version %u, this libtde supports version %d",
                             vt->name, vt->version, TDE_MASTERKEY_PROVIDER_VERSION);
    if (vt->open == NULL)
        missing = "open";
    else if (vt->key_id == NULL)
        missing = "key_id";
    else if (vt->wrap == NULL)
        missing = "wrap";
    else if (vt->unwrap == NULL)
        missing = "unwrap";
    else if (vt->destroy == NULL)
        missing = "destroy";
    if (missing != NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "provider %s: required member %s is NULL",
                             vt->name, missing);
    return TDE_OK;
}

/* Caller holds registry_lock. */
static tde_status
add_locked(const tde_masterkey_provider_vtable *vt)
{
    for (size_t i = 0; i < registry_len; i++)
        if (strcmp(registry[i]->name, vt->name) == 0)
            return tde_error_set(TDE_ERR_EXISTS, "provider %s: already registered", vt->name);
    if (registry_len == MAX_PROVIDERS)
        return tde_error_set(TDE_ERR_INVALID_ARG, "provider %s: registry full (%d providers)",
                             vt->name, MAX_PROVIDERS);
    registry[registry_len++] = vt;
    return TDE_OK;
}

static void
register_builtins(void)
{
    pthread_mutex_lock(&registry_lock);
    /* Cannot fail: the registry is empty and the vtables are complete. */
    (void)add_locked(&masterkey_keyfile_vtable);
    (void)add_locked(&masterkey_testkey_vtable);
    (void)add_locked(&masterkey_kmip_vtable);
    (void)add_locked(&masterkey_aws_kms_vtable);
    (void)add_locked(&masterkey_tencent_kms_vtable);
    pthread_mutex_unlock(&registry_lock);
}

tde_status
tde_masterkey_register(const tde_masterkey_provider_vtable *vt)
{
    tde_status st;

    pthread_once(&builtins_once, register_builtins);
    TDE_RET(check_vtable(vt));
    pthread_mutex_lock(&registry_lock);
    st = add_locked(vt);
    pthread_mutex_unlock(&registry_lock);
    return st;
}

static const tde_masterkey_provider_vtable *
lookup(const char *scheme, char *known, size_t known_len)
{
    const tde_masterkey_provider_vtable *found = NULL;
    size_t used = 0;

    pthread_once(&builtins_once, register_builtins);
    pthread_mutex_lock(&registry_lock);
    known[0] = '\0';
    for (size_t i = 0; i < registry_len; i++) {
        if (strcmp(registry[i]->name, scheme) == 0)
            found = registry[i];
        if (used < known_len) {
            int n =
                snprintf(known + used, known_len - used, "%s%s", i ? ", " : "", registry[i]->name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

/* Makes sure the thread's message names the provider (and key id), keeping the provider's text. */
static tde_status
name_provider(tde_status st, const tde_masterkey_provider_vtable *vt, const char *key_id,
              const char *op)
{
    char msg[400];

    snprintf(msg, sizeof(msg), "%s", tde_last_error());
    if (strstr(msg, vt->name) != NULL)
        return st;
    if (key_id != NULL)
        return tde_error_set(st, "provider %s, master key %s: %s failed: %s", vt->name, key_id, op,
                             msg[0] ? msg : tde_status_str(st));
    return tde_error_set(st, "provider %s: %s failed: %s", vt->name, op,
                         msg[0] ? msg : tde_status_str(st));
}

tde_status
tde_masterkey_open(tde_masterkey **out, const char *uri)
{
    char known[256];
    tde_uri *u = NULL;
    tde_masterkey *mk = NULL;
    const tde_masterkey_provider_vtable *vt;
    tde_status st;

    if (out == NULL || uri == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_masterkey_open: NULL argument");
    *out = NULL;
    TDE_ERR(tde_uri_parse(&u, uri));
    vt = lookup(tde_uri_scheme(u), known, sizeof(known));
    TDE_ENSURE(vt != NULL, TDE_ERR_NOT_FOUND,
               "master key \"%.200s\": no provider for scheme \"%s\" (registered: %s)", uri,
               tde_uri_scheme(u), known);
    mk = calloc(1, sizeof(*mk));
    TDE_ENSURE(mk != NULL && (mk->uri = strdup(uri)) != NULL, TDE_ERR_NOMEM,
               "provider %s: out of memory", vt->name);
    mk->vt = vt;
    pthread_mutex_init(&mk->lock, NULL);
    st = vt->open(&mk->p, u);
    if (st != TDE_OK) {
        st = name_provider(st, vt, NULL, "open");
        mk->p = NULL;
        goto err;
    }
    TDE_ENSURE(mk->p != NULL, TDE_ERR_INTERNAL, "provider %s: open returned no provider", vt->name);
    mk->key_id = vt->key_id(mk->p);
    TDE_ENSURE(valid_key_id(mk->key_id), TDE_ERR_INTERNAL,
               "provider %s: key_id is empty, longer than %d bytes or not printable ASCII",
               vt->name, MAX_KEY_ID_LEN);
    tde_uri_free(u);
    *out = mk;
    return TDE_OK;
err:
    tde_uri_free(u);
    tde_masterkey_free(mk);
    return st;
}

void
tde_masterkey_free(tde_masterkey *mk)
{
    if (mk == NULL)
        return;
    if (mk->p != NULL)
        mk->vt->destroy(mk->p);
    if (mk->vt != NULL)
        pthread_mutex_destroy(&mk->lock);
    free(mk->uri);
    free(mk);
}

const char *
tde_masterkey_key_id(const tde_masterkey *mk)
{
    return mk->key_id;
}

const char *
tde_masterkey_provider_name(const tde_masterkey *mk)
{
    return mk->vt->name;
}

const char *
tde_masterkey_uri(const tde_masterkey *mk)
{
    return mk->uri;
}

static tde_status
check_blob(tde_status st, const tde_masterkey *mk, uint8_t **blob, size_t *blob_len, const char *op)
{
    if (st != TDE_OK) {
        free(*blob);
        *blob = NULL;
        *blob_len = 0;
        return name_provider(st, mk->vt, mk->key_id, op);
    }
    if (*blob == NULL || *blob_len == 0) {
        free(*blob);
        *blob = NULL;
        return tde_error_set(TDE_ERR_INTERNAL,
                             "provider %s, master key %s: %s returned an empty blob", mk->vt->name,
                             mk->key_id, op);
    }
    return TDE_OK;
}

tde_status
tde_masterkey_wrap(tde_masterkey *mk, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                   size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    tde_status st;

    if (mk == NULL || blob == NULL || blob_len == NULL || (pt == NULL && pt_len > 0) ||
        (aad == NULL && aad_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_masterkey_wrap: NULL argument");
    *blob = NULL;
    *blob_len = 0;
    if (pt_len == 0 || pt_len > TDE_MASTERKEY_MAX_WRAP)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider %s, master key %s: cannot wrap %zu bytes (1..%d)",
                             mk->vt->name, mk->key_id, pt_len, TDE_MASTERKEY_MAX_WRAP);
    pthread_mutex_lock(&mk->lock);
    st = mk->vt->wrap(mk->p, aad, aad_len, pt, pt_len, blob, blob_len);
    pthread_mutex_unlock(&mk->lock);
    return check_blob(st, mk, blob, blob_len, "wrap");
}

tde_status
tde_masterkey_unwrap(tde_masterkey *mk, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
                     size_t blob_len, tde_secret **pt)
{
    tde_status st;

    if (mk == NULL || pt == NULL || blob == NULL || (aad == NULL && aad_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_masterkey_unwrap: NULL argument");
    *pt = NULL;
    pthread_mutex_lock(&mk->lock);
    st = mk->vt->unwrap(mk->p, aad, aad_len, blob, blob_len, pt);
    pthread_mutex_unlock(&mk->lock);
    if (st != TDE_OK) {
        tde_secret_free(*pt);
        *pt = NULL;
        return name_provider(st, mk->vt, mk->key_id, "unwrap");
    }
    if (*pt == NULL)
        return tde_error_set(TDE_ERR_INTERNAL,
                             "provider %s, master key %s: unwrap returned no plaintext",
                             mk->vt->name, mk->key_id);
    return TDE_OK;
}

tde_status
tde_masterkey_generate_data_key(tde_masterkey *mk, size_t key_len, const uint8_t *aad,
                                size_t aad_len, tde_secret **key, uint8_t **blob, size_t *blob_len)
{
    tde_status st;

    if (mk == NULL || key == NULL || blob == NULL || blob_len == NULL ||
        (aad == NULL && aad_len > 0))
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_masterkey_generate_data_key: NULL argument");
    *key = NULL;
    *blob = NULL;
    *blob_len = 0;
    if (key_len == 0 || key_len > TDE_MASTERKEY_MAX_WRAP)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "provider %s, master key %s: data key length %zu outside 1..%d",
                             mk->vt->name, mk->key_id, key_len, TDE_MASTERKEY_MAX_WRAP);
    if (mk->vt->generate_data_key == NULL) {
        /* The default: random bytes from libtde, then the provider's wrap. */
        TDE_RET(tde_secret_random(key, key_len));
        st = tde_masterkey_wrap(mk, aad, aad_len, tde_secret_data(*key), key_len, blob, blob_len);
        if (st != TDE_OK) {
            tde_secret_free(*key);
            *key = NULL;
        }
        return st;
    }
    pthread_mutex_lock(&mk->lock);
    st = mk->vt->generate_data_key(mk->p, key_len, aad, aad_len, key, blob, blob_len);
    pthread_mutex_unlock(&mk->lock);
    st = check_blob(st, mk, blob, blob_len, "generate_data_key");
    if (st == TDE_OK && (*key == NULL || tde_secret_len(*key) != key_len))
        st = tde_error_set(TDE_ERR_INTERNAL,
                           "provider %s, master key %s: generate_data_key returned a key of the "
                           "wrong length",
                           mk->vt->name, mk->key_id);
    if (st != TDE_OK) {
        tde_secret_free(*key);
        *key = NULL;
        free(*blob);
        *blob = NULL;
        *blob_len = 0;
    }
    return st;
}
