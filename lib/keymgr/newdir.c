#include "keymgr/newdir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "common/fileio.h"

bool
keymgr_entries_add(keymgr_entries *l, char *name, const tde_file_entry *e)
{
    if (name != NULL && l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **names = realloc(l->names, cap * sizeof(*names));
        tde_file_entry *entries = names ? realloc(l->entries, cap * sizeof(*entries)) : NULL;
        if (names != NULL)
            l->names = names;
        if (entries != NULL) {
            l->entries = entries;
            l->cap = cap;
        }
    }
    if (name == NULL || l->n == l->cap) {
        free(name);
        l->oom = true;
        return false;
    }
    l->names[l->n] = name;
    l->entries[l->n++] = *e;
    return true;
}

void
keymgr_entries_remove(keymgr_entries *l, size_t i)
{
    free(l->names[i]);
    l->names[i] = l->names[--l->n];
    l->entries[i] = l->entries[l->n];
}

void
keymgr_entries_free(keymgr_entries *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->entries);
    *l = (keymgr_entries){0};
}

tde_status
keymgr_write_new_dir(const char *dir, const keymgr_entries *l, const tde_keydict *kd,
                     tde_masterkey *mk)
{
    tde_filedict_options fo = {.version = TDE_FILEDICT_OPTIONS_VERSION, .dir = dir};
    tde_filedict *fd = NULL;
    char kd_path[PATH_MAX], bak[PATH_MAX + 16];
    tde_status st;

    TDE_ENSURE((size_t)snprintf(kd_path, sizeof(kd_path), "%s/%s", dir, TDE_KEYDICT_FILE) <
                   sizeof(kd_path),
               TDE_ERR_INVALID_ARG, "key manager: path too long: %s", dir);
    TDE_ERR(tde_keydict_mac_key(kd, fo.mac_key));
    st = tde_filedict_open(&fd, &fo);
    OPENSSL_cleanse(fo.mac_key, sizeof(fo.mac_key));
    TDE_ERR(st);
    TDE_ERR(tde_filedict_put_batch(fd, (const char *const *)l->names, l->entries, l->n));
    tde_filedict_close(fd);
    fd = NULL;
    TDE_ERR(tde_keydict_store(kd, kd_path, mk));
    /* tde_keydict_store() only logs a failed backup copy; a new directory needs both. */
    snprintf(bak, sizeof(bak), "%s%s", kd_path, TDE_KEYDICT_BACKUP_SUFFIX);
    TDE_ENSURE(access(bak, F_OK) == 0, TDE_ERR_IO, "%s: the backup copy was not written", bak);
    TDE_ERR(tde_fileio_fsync_dir(dir));
err:
    tde_filedict_close(fd);
    return st;
}
