/*
 * Writing a new key-manager directory from a list of entries and a key
 * dictionary: shared by tde_keymgr_copy_subset() (a checkpoint's or backup's
 * copy) and tde_keymgr_salvage(), which both build it in a temporary sibling
 * and rename it into place.
 */
#ifndef TDE_LIB_KEYMGR_NEWDIR_H
#define TDE_LIB_KEYMGR_NEWDIR_H

#include "keymgr/filedict.h"
#include "keymgr/keydict.h"

/* File-dictionary entries with the names they will have in the new directory. */
typedef struct keymgr_entries {
    char **names; /* owned */
    tde_file_entry *entries;
    size_t n, cap;
    bool oom; /* an add failed: the list is incomplete */
} keymgr_entries;

/* Appends @p name (taken over; NULL counts as out of memory) and @p e. False on failure. */
bool keymgr_entries_add(keymgr_entries *l, char *name, const tde_file_entry *e);

/* Drops entry @p i (its name freed), moving the last one into its place. */
void keymgr_entries_remove(keymgr_entries *l, size_t i);

void keymgr_entries_free(keymgr_entries *l);

/*
 * Writes the file dictionary of @p l and @p kd (key.dict and its backup copy, sealed under
 * @p mk) into the empty directory @p dir, then fsyncs @p dir.
 */
tde_status keymgr_write_new_dir(const char *dir, const keymgr_entries *l, const tde_keydict *kd,
                                tde_masterkey *mk);

#endif
