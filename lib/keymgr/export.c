/* tde_keymgr_export_keys(): the data-key bytes, for inspection tools only. */
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "keymgr/keydict.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"

tde_status
tde_keymgr_export_keys(const char *dir, const char *master_key_uri,
                       const char *previous_master_key_uri,
                       int (*fn)(void *arg, uint64_t id, tde_method method, const tde_secret *key),
                       void *arg)
{
    tde_masterkey *mk = NULL, *prev = NULL;
    tde_keydict kd = {0};
    const tde_masterkey *used = NULL;
    char *path = NULL;
    tde_status st = TDE_OK;
    size_t n;

    TDE_ENSURE(dir != NULL && master_key_uri != NULL && fn != NULL, TDE_ERR_INVALID_ARG,
               "key export: NULL argument");
    n = (size_t)snprintf(NULL, 0, "%s/%s", dir, TDE_KEYDICT_FILE) + 1;
    path = malloc(n);
    TDE_ENSURE(path != NULL, TDE_ERR_NOMEM, "key export: out of memory");
    snprintf(path, n, "%s/%s", dir, TDE_KEYDICT_FILE);
    TDE_ERR(tde_masterkey_open(&mk, master_key_uri));
    if (previous_master_key_uri != NULL)
        TDE_ERR(tde_masterkey_open(&prev, previous_master_key_uri));
    TDE_ERR(tde_keydict_load(&kd, path, mk, prev, &used));
    tde_log(TDE_LOG_WARN, "%s: exporting %zu data keys unwrapped", path, kd.n_keys);
    for (size_t i = 0; i < kd.n_keys; i++)
        if (fn(arg, kd.keys[i].id, kd.keys[i].method, kd.keys[i].key) != 0)
            break;
err:
    tde_keydict_clear(&kd);
    tde_masterkey_free(prev);
    tde_masterkey_free(mk);
    free(path);
    return st;
}
