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
 * A rename over an existing file is not safe this way (a crash after step 1
 * leaves the old file with the new key): tde_keymgr_rename_file() keeps the
 * old entry (or "none": key id 0) under the reserved name
 * "/rename-prev/<len(dst)>/<dst><src>"
 * (stored names; real ones never start with '/') until the rename is durable,
 * and the next read-write open puts it back if src still exists on disk, else
 * drops it. Read-only opens resolve such records in memory (docs/formats.md,
 * "Reserved names").
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
#include "tde/secret.h"

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
    /** Old data keys no file uses are removed, except the newest this many; 0: default (3). */
    unsigned keep_unused_keys;
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

/**
 * Like tde_keymgr_get_file(), for a caller about to write to or append to an
 * existing file: while the current method is not plaintext, a file missing
 * from the dictionary is refused with TDE_ERR_STATE naming it, whatever the
 * enforce setting, so plaintext files never grow silently.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_get_file_for_append(tde_keymgr *km, const char *path,
                                                               tde_file_key **out);

/** Drops @p path's entry (after the caller removed the file). Missing entries are not an error. */
TDE_API TDE_MUST_USE tde_status tde_keymgr_delete_file(tde_keymgr *km, const char *path);

/** Makes @p dst use @p src's key and IV (before the caller links or renames on disk). */
TDE_API TDE_MUST_USE tde_status tde_keymgr_link_file(tde_keymgr *km, const char *src,
                                                     const char *dst);

/**
 * The whole rename protocol: link entry, rename(2), drop the source entry; over
 * an existing entry, crash-safe as described at the top of this file. Names
 * whose combined stored length passes 4096 bytes are refused (INVALID_ARG)
 * when dst exists or has an entry. A missing source: TDE_ERR_NOT_FOUND.
 */
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

/* ---- Metrics and inspection ---- */

#define TDE_KEYMGR_METRICS_VERSION 1

/** Counters a host can export (tde-ctl metrics prints them in Prometheus format). */
typedef struct tde_keymgr_metrics {
    unsigned version;            /**< TDE_KEYMGR_METRICS_VERSION */
    bool encryption_initialized; /**< the current method is not plaintext */
    bool enforce;                /**< files missing from the dictionary are errors */
    tde_method method;           /**< the current data key's method */
    uint64_t current_key_id;
    uint64_t current_key_created; /**< seconds since the epoch */
    uint64_t data_keys;           /**< keys in the key dictionary */
    uint64_t encrypted_files;     /**< entries in the file dictionary */
    uint64_t key_dict_bytes;      /**< size of the sealed key dictionary file */
    uint64_t file_dict_snapshot_bytes, file_dict_log_bytes;
    /** Metadata reads (lookups) and writes (durable changes): count and total nanoseconds. */
    uint64_t meta_reads, meta_read_ns, meta_writes, meta_write_ns;
    uint64_t rotations;          /**< data-key rotations done by this handle */
    uint64_t rotation_failures;  /**< failed rotation attempts (each logged) */
    uint64_t last_rotation_time; /**< seconds since the epoch of the last rotation, 0: none */
    uint64_t keys_removed;       /**< unused old keys removed by this handle */
    uint64_t plaintext_lookups;  /**< get_file calls answered "plaintext: not in the dictionary" */
} tde_keymgr_metrics;

/** Fills @p out. Never fails on a valid handle. */
TDE_API TDE_MUST_USE tde_status tde_keymgr_metrics_get(tde_keymgr *km, tde_keymgr_metrics *out);

/**
 * The metrics as Prometheus text exposition format (version 0.0.4): HELP and
 * TYPE lines, gauges and counters named tde_*, ending in a newline. *out gets
 * a malloc()ed NUL-terminated string the caller releases with free().
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_metrics_text(tde_keymgr *km, char **out);

/**
 * For inspection tools only (tde-ctl dump --show-keys), never for a database
 * host: opens the key dictionary in @p dir read-only with the master key (or
 * the previous one, may be NULL) and calls @p fn for every data key, in the
 * dictionary's order, with its bytes in secret memory wiped after the walk (NULL for a
 * plaintext key). A non-zero return stops the walk. Whoever prints the bytes
 * makes them unprotected.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_export_keys(
    const char *dir, const char *master_key_uri, const char *previous_master_key_uri,
    int (*fn)(void *arg, uint64_t id, tde_method method, const tde_secret *key), void *arg);

/** One data key as listed: never its bytes. */
typedef struct tde_keymgr_key_info {
    uint64_t id;
    tde_method method;
    uint64_t created; /**< seconds since the epoch */
    bool current;
    uint64_t files; /**< file-dictionary entries using it */
} tde_keymgr_key_info;

/** Calls @p fn for every data key, oldest first; a non-zero return stops the walk. */
TDE_API TDE_MUST_USE tde_status
tde_keymgr_list_keys(tde_keymgr *km, int (*fn)(void *arg, const tde_keymgr_key_info *k), void *arg);

/** One file-dictionary entry as listed. @p name is the stored "<root>/<relative>" name. */
typedef struct tde_keymgr_file_info {
    const char *name; /**< borrowed for the callback */
    uint64_t key_id;
    tde_method method;
    uint8_t iv[TDE_CIPHER_IV_LEN];
} tde_keymgr_file_info;

/**
 * Calls @p fn for every file entry (unspecified order); a non-zero return
 * stops the walk. @p fn must not call back into @p km.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_list_files(
    tde_keymgr *km, int (*fn)(void *arg, const tde_keymgr_file_info *f), void *arg);

/**
 * Walks every root directory (recursively) and calls @p fn with the path of
 * each regular file that has no entry: files that are plaintext on disk. The
 * key manager's own directory is skipped. *count (may be NULL) gets the number.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_list_plaintext_files(
    tde_keymgr *km, int (*fn)(void *arg, const char *path), void *arg, uint64_t *count);

/**
 * Runs what is due now, on the caller's thread: a data-key rotation when the
 * period has passed (or a retry of a failed one), then removal of unused old
 * keys. The key manager also does this on its own background thread.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_maintain(tde_keymgr *km);

/** The stored name of @p path ("<root>/<relative>") into @p buf; INVALID_ARG if under no root. */
TDE_API TDE_MUST_USE tde_status tde_keymgr_stored_name(tde_keymgr *km, const char *path, char *buf,
                                                       size_t cap);

/* ---- Self-contained copies (checkpoints, backups) ---- */

/**
 * Writes a new key-manager directory @p dest_dir holding only the entries of
 * the files below @p data_dir (stored in the copy as
 * "<dest_root_name>/<path relative to data_dir>") and only the data keys they
 * use, so the copy opens anywhere with one root @p dest_root_name pointing at
 * wherever the data now lives. key.dict is sealed under @p dest_master_key_uri
 * (NULL: this key manager's master key) with a fresh file-dictionary secret;
 * its current key is this one's current key if a copied entry uses it, else
 * the newest used key, else (no entries) a fresh key. The copy opens
 * read-write and then rotates as usual.
 *
 * @p dest_dir must not exist (TDE_ERR_EXISTS, nothing touched). The copy is
 * built in a temporary sibling directory, fsynced, renamed into place (never
 * over anything) and the parent fsynced: after a crash @p dest_dir is absent or
 * complete; after an error it is absent. Works on read-only key managers (a
 * follower of a live writer catches up first). *n_files_out (may be NULL) gets
 * the number of entries copied.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_copy_subset(tde_keymgr *km, const char *data_dir,
                                                       const char *dest_dir,
                                                       const char *dest_root_name,
                                                       const char *dest_master_key_uri,
                                                       uint64_t *n_files_out);

/* ---- Salvage (tde-ctl salvage) ---- */

/** What tde_keymgr_salvage() found, reported as it goes. */
typedef enum tde_keymgr_salvage_kind {
    TDE_SALVAGE_READ = 1,     /**< @c file was read whole */
    TDE_SALVAGE_UNREADABLE,   /**< @c file could not be used; @c message says why */
    TDE_SALVAGE_LOST,         /**< @c length bytes of log @c file at @c offset hold no valid
                                   record: the records there are lost */
    TDE_SALVAGE_TORN,         /**< an incomplete last record of @c file at @c offset (a write that
                                   never returned): not a loss */
    TDE_SALVAGE_KEY,          /**< data key @c key_id recovered from @c file (one or both key
                                   dictionary copies, space separated) */
    TDE_SALVAGE_KEY_CONFLICT, /**< @c key_id has different bytes in the two copies */
    TDE_SALVAGE_MISSING_KEY,  /**< entry @c name uses @c key_id, which no copy holds: that file is
                                   unreadable (the entry is kept, so reads fail naming the key) */
    TDE_SALVAGE_NOTE,         /**< anything else worth saying (@c message) */
} tde_keymgr_salvage_kind;

/** One finding. Strings are borrowed for the callback; unused fields are 0 or NULL. */
typedef struct tde_keymgr_salvage_event {
    tde_keymgr_salvage_kind kind;
    const char *file; /**< a file name in the salvaged directory */
    uint64_t offset, length;
    uint64_t key_id;
    const char *name; /**< a stored file name */
    const char *message;
} tde_keymgr_salvage_event;

#define TDE_KEYMGR_SALVAGE_VERSION 1

/** Zero-initialise, then set what you need. */
typedef struct tde_keymgr_salvage_options {
    unsigned version;                    /**< TDE_KEYMGR_SALVAGE_VERSION */
    const char *dir;                     /**< the damaged directory: only ever read */
    const char *dest;                    /**< the new directory; must not exist */
    const char *master_key_uri;          /**< DEST is sealed under it */
    const char *previous_master_key_uri; /**< also tried when reading DIR; may be NULL */
    const char *const *skip; /**< names of files in DIR to ignore (e.g. "key.dict.bak") */
    size_t n_skip;
    void (*fn)(void *arg, const tde_keymgr_salvage_event *ev); /**< may be NULL */
    void *arg;
} tde_keymgr_salvage_options;

/** The outcome. */
typedef struct tde_keymgr_salvage_result {
    uint64_t keys;                /**< data keys written to DEST */
    uint64_t entries;             /**< file entries written to DEST */
    uint64_t entries_missing_key; /**< of which, entries whose key was not found */
    uint64_t lost_bytes;          /**< damaged log bytes (records lost) */
    bool complete; /**< nothing was lost: every entry and record read, every key found */
} tde_keymgr_salvage_result;

/**
 * For a key-manager directory that does not open: reads everything that can
 * be read (key.dict and key.dict.bak, merged; the current and previous
 * file-dictionary generations; each log up to and past damaged records, whose
 * MACs bind them to their offset) and writes a new, consistent directory
 * @c dest (built in a temporary directory beside it, fsynced, renamed into
 * place; 0700, files 0600), opened read-only once to prove it. @c dir is never
 * modified. Nothing is written when no key dictionary copy opens (AUTH: wrong
 * master key; CORRUPT), when the copies disagree on a key's bytes (CORRUPT:
 * skip one), or when @c dest exists (EXISTS). Needs no lock: stop the database
 * first all the same. @p out (may be NULL) gets the outcome.
 */
TDE_API TDE_MUST_USE tde_status tde_keymgr_salvage(const tde_keymgr_salvage_options *o,
                                                   tde_keymgr_salvage_result *out);

#ifdef __cplusplus
}
#endif
#endif
