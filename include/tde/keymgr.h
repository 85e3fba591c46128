/**
 * @file keymgr.h
 * @brief The data-key manager: which data key and IV encrypt each file.
 *
 * A key manager owns one directory holding two metadata files: the key
 * dictionary (data keys, wrapped by the master key) and the file dictionary
 * (file name -> key id, method, IV). Every change is durable before the call
 * returns. Files are named relative to one of the configured roots, so a data
 * directory can be moved or restored elsewhere.
 *
 * Name changes keep every file readable at every instant. The protocol for a
 * caller that renames or links files itself:
 *   1. tde_keymgr_link_file(src, dst)   (dst entry durable)
 *   2. rename(2) or link(2) on disk
 *   3. for a rename: tde_keymgr_delete_file(src)
 * and for deletion: unlink(2) first, then tde_keymgr_delete_file(), so a crash
 * leaves at most an orphan entry, never an unreadable file.
 *
 * All functions are thread-safe on one tde_keymgr. Lookups take no exclusive
 * lock; concurrent writers are group-committed into one log append and fsync.
 */
#ifndef TDE_KEYMGR_H
#define TDE_KEYMGR_H

#include <stdbool.h>

#include "tde/cipher.h"
#include "tde/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tde_keymgr tde_keymgr;

/** A directory under which files are named: stored names are "<root name>/<relative path>". */
typedef struct tde_keymgr_root {
    const char *name; /**< short, stable name, e.g. "db", "wal"; no '/' */
    const char *path; /**< absolute or relative directory path */
} tde_keymgr_root;

#define TDE_KEYMGR_CONFIG_VERSION 1
#define TDE_KEYMGR_DEFAULT_ROTATION_SECONDS (7u * 24u * 3600u)

/** Mirrors TiKV's [security.encryption]. Zero-initialise, then set what you need. */
typedef struct tde_keymgr_config {
    unsigned version;             /**< TDE_KEYMGR_CONFIG_VERSION */
    const char *dir;              /**< the key manager's own directory (created 0700) */
    const tde_keymgr_root *roots; /**< where the data files live; at least one */
    size_t n_roots;
    tde_method method;                   /**< for new files; changing it rotates at open */
    uint64_t rotation_period_seconds;    /**< 0: TDE_KEYMGR_DEFAULT_ROTATION_SECONDS */
    const char *master_key_uri;          /**< e.g. "file:///etc/tde/master.key" */
    const char *previous_master_key_uri; /**< accepted at open during master-key rotation */
    int enforce;    /**< files missing from the dictionary: -1 default, 0 plaintext, 1 error */
    bool read_only; /**< never writes: no repair, rotation or compaction (tools, live DBs) */
    /** Seconds since the epoch; NULL uses the real clock. Lets tests move time. */
    uint64_t (*clock)(void *arg);
    void *clock_arg;
} tde_keymgr_config;

TDE_API TDE_MUST_USE tde_status tde_keymgr_open(tde_keymgr **out, const tde_keymgr_config *cfg);
/** Closes and releases the directory lock. Accepts NULL. Every tde_file_key must be freed. */
TDE_API void tde_keymgr_close(tde_keymgr *km);

/** One file's key: method, key id, IV and a shared read-only key schedule. */
typedef struct tde_file_key tde_file_key;

/**
 * Registers @p path as a new file (or re-creates it: always a fresh IV) with
 * the current data key; the entry is durable before this returns, so create
 * the file after it.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_new_file(tde_keymgr *km, const char *path,
                                                    tde_file_key **out);

/**
 * The key of an existing file. A file missing from the dictionary is
 * plaintext (method TDE_METHOD_PLAINTEXT) unless enforce mode is on, where it
 * gives TDE_ERR_NOT_FOUND naming the file.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_get_file(tde_keymgr *km, const char *path,
                                                    tde_file_key **out);

/** Drops @p path's entry (after the caller removed the file). Missing entries are not an error. */
TDE_API TDE_MUST_USE tde_status tde_keymgr_delete_file(tde_keymgr *km, const char *path);

/** Makes @p dst use @p src's key and IV (before the caller links or renames on disk). */
TDE_API TDE_MUST_USE tde_status tde_keymgr_link_file(tde_keymgr *km, const char *src,
                                                     const char *dst);

/** The whole rename protocol: link entry, rename(2), drop the source entry. */
TDE_API TDE_MUST_USE tde_status tde_keymgr_rename_file(tde_keymgr *km, const char *src,
                                                       const char *dst);

/** Encrypts or decrypts bytes at @p offset of the file (see tde_cipher_process()). */
TDE_API TDE_MUST_USE tde_status tde_file_key_process(const tde_file_key *fk, uint64_t offset,
                                                     const void *in, void *out, size_t len);
TDE_API tde_method tde_file_key_method(const tde_file_key *fk);
TDE_API uint64_t tde_file_key_id(const tde_file_key *fk);
TDE_API const uint8_t *tde_file_key_iv(const tde_file_key *fk);
/** Accepts NULL. */
TDE_API void tde_file_key_free(tde_file_key *fk);

/** Makes a new current data key now (new files use it; old files keep theirs). */
TDE_API TDE_MUST_USE tde_status tde_keymgr_rotate_data_key(tde_keymgr *km);

/**
 * Re-wraps the key dictionary under the master key @p new_uri, durably. On any
 * failure everything stays as it was.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_rotate_master_key(tde_keymgr *km, const char *new_uri);

#ifdef __cplusplus
}
#endif
#endif
