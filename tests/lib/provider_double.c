#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "provider_double.h"
#include "tde/gcm.h"
#include "testutil.h"

provider_double_state provider_double;

typedef struct dbl {
    tde_masterkey_provider base;
    uint8_t key[32];
    char id[80];
} dbl;

static const tde_masterkey_provider_vtable double_vtable;

static tde_status
count_call(void)
{
    provider_double.calls++;
    if (provider_double.fail_at != 0 && provider_double.calls == provider_double.fail_at)
        return tde_error_set(provider_double.fail_status, "injected failure on call %u",
                             provider_double.calls);
    return TDE_OK;
}

static tde_status
dbl_open(tde_masterkey_provider **out, const tde_uri *uri)
{
    const char *name = tde_uri_param(uri, "id");
    dbl *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return TDE_ERR_NOMEM;
    if (name == NULL)
        name = "default";
    d->base.vt = &double_vtable;
    snprintf(d->id, sizeof(d->id), "double:%s", name);
    for (size_t i = 0; i < sizeof(d->key); i++)
        d->key[i] = (uint8_t)(name[i % strlen(name)] + i);
    *out = &d->base;
    return TDE_OK;
}

static const char *
dbl_key_id(const tde_masterkey_provider *p)
{
    return ((const dbl *)p)->id;
}

static tde_status
dbl_wrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
         size_t pt_len, uint8_t **blob, size_t *blob_len)
{
    dbl *d = (dbl *)p;
    uint8_t *b;
    tde_status st = count_call();
    if (st != TDE_OK)
        return st;
    b = malloc(12 + pt_len + 16);
    if (b == NULL)
        return TDE_ERR_NOMEM;
    st = tde_gcm_seal_random_iv(d->key, 32, b, aad, aad_len, pt, pt_len, b + 12, b + 12 + pt_len);
    if (st != TDE_OK) {
        free(b);
        return st;
    }
    *blob = b;
    *blob_len = 12 + pt_len + 16;
    return TDE_OK;
}

static tde_status
dbl_unwrap(tde_masterkey_provider *p, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
           size_t blob_len, tde_secret **pt)
{
    dbl *d = (dbl *)p;
    tde_secret *s = NULL;
    tde_status st = count_call();
    if (st != TDE_OK)
        return st;
    if (blob_len <= 28)
        return tde_error_set(TDE_ERR_CORRUPT, "double: short blob");
    TDE_RET(tde_secret_new(&s, blob_len - 28));
    st = tde_gcm_open(d->key, 32, blob, 12, aad, aad_len, blob + 12, blob_len - 28,
                      blob + blob_len - 16, 16, tde_secret_data_mut(s));
    if (st != TDE_OK) {
        tde_secret_free(s);
        return tde_error_set(st, "tag mismatch"); /* names no provider: the registry adds it */
    }
    *pt = s;
    return TDE_OK;
}

static tde_status
dbl_generate(tde_masterkey_provider *p, size_t key_len, const uint8_t *aad, size_t aad_len,
             tde_secret **key, uint8_t **blob, size_t *blob_len)
{
    tde_status st;
    provider_double.generated++;
    TDE_RET(tde_secret_random(key, key_len));
    st = dbl_wrap(p, aad, aad_len, tde_secret_data(*key), key_len, blob, blob_len);
    if (st != TDE_OK) {
        tde_secret_free(*key);
        *key = NULL;
    }
    return st;
}

static void
dbl_destroy(tde_masterkey_provider *p)
{
    free(p);
}

static const tde_masterkey_provider_vtable double_vtable = {
    .version = TDE_MASTERKEY_PROVIDER_VERSION,
    .name = "double",
    .open = dbl_open,
    .key_id = dbl_key_id,
    .wrap = dbl_wrap,
    .unwrap = dbl_unwrap,
    .generate_data_key = dbl_generate,
    .destroy = dbl_destroy,
};

void
provider_double_register(void)
{
    static int registered;
    memset(&provider_double, 0, sizeof(provider_double));
    if (!registered) {
        assert_int_equal(tde_masterkey_register(&double_vtable), TDE_OK);
        registered = 1;
    }
}
