/**
 * @file rocksdb.h
 * @brief An encrypted RocksDB Env for programs using RocksDB's C API (library libtde-rocksdb).
 *
 * Every file RocksDB writes through this Env (SSTs, WAL, MANIFEST, OPTIONS,
 * CURRENT, IDENTITY, blob files, the info LOG, ingested and checkpointed files)
 * is encrypted with a data key from a libtde key manager; file sizes equal the
 * plaintext sizes. See docs/rocksdb.md.
 *
 * Two ways in:
 *  - tde_rocksdb_env_new() returns a real @c rocksdb_env_t* for
 *    rocksdb_options_set_env() and rocksdb_backup_engine_options_set_env().
 *  - tde_rocksdb_register() makes sure the "libtde:" factory is in RocksDB's
 *    default ObjectLibrary, so that @c rocksdb_get_options_from_string() with
 *    "env=libtde:<keymgr dir>,master:<uri>,method:<name>" (and the stock tools'
 *    --env_uri / --fs_uri) create the same Env.
 *
 * The C functions return a tde_status; on failure tde_last_error() names the
 * URI item, file, key id or provider, as everywhere in libtde.
 */
#ifndef TDE_ROCKSDB_H
#define TDE_ROCKSDB_H

#include <stdbool.h>

#include <rocksdb/c.h>

#include "tde/common.h"
#include "tde/keymgr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TDE_ROCKSDB_CONFIG_VERSION 1

/** The URI prefix the factory is registered under. */
#define TDE_ROCKSDB_URI_PREFIX "libtde:"

/**
 * Configuration of one encrypted Env; mirrors TiKV's [security.encryption].
 * Zero-initialise, set @c version, then what you need. Strings are copied.
 */
typedef struct tde_rocksdb_config {
    unsigned version;                    /**< TDE_ROCKSDB_CONFIG_VERSION */
    const char *keymgr_dir;              /**< the key manager's directory (required) */
    const char *master_key_uri;          /**< e.g. "file:///etc/tde/master.key" (required) */
    const char *previous_master_key_uri; /**< accepted during master-key rotation; may be NULL */
    const char *method;                  /**< "aes256-ctr" (NULL), "aes128-ctr", "sm4-ctr", ... */
    uint64_t rotation_period_seconds;    /**< data-key rotation; 0: the key manager's default */
    int enforce;    /**< files missing from the key manager: -1/0 read as plaintext, 1 error */
    bool read_only; /**< never write the key manager (tools on a live database) */
    /** Keep the info LOG in plaintext (default false: the LOG is encrypted like every file). */
    bool plaintext_info_log;
    /** Roots files are named under; NULL/0: one root "fs" at "/" (every absolute path). */
    const tde_keymgr_root *roots;
    size_t n_roots;
} tde_rocksdb_config;

/**
 * Creates an encrypted Env. On success @p *out belongs to the caller: set it
 * with rocksdb_options_set_env(), and free it with rocksdb_env_destroy() after
 * every database using it is closed. The key manager stays open (and locked)
 * while any Env or FileSystem on the same directory is alive.
 *
 * The returned struct is a replica of RocksDB's private @c rocksdb_env_t,
 * checked against RocksDB 7.8 at compile time; other versions give
 * TDE_ERR_UNSUPPORTED (use the options-string path there).
 */
TDE_API TDE_MUST_USE tde_status tde_rocksdb_env_new(rocksdb_env_t **out,
                                                    const tde_rocksdb_config *cfg);

/** Like tde_rocksdb_env_new() from a "libtde:..." URI (see docs/rocksdb.md for its syntax). */
TDE_API TDE_MUST_USE tde_status tde_rocksdb_env_new_from_uri(rocksdb_env_t **out, const char *uri);

/**
 * The same as tde_last_error(), kept for callers written against older
 * versions: the tde_rocksdb_* functions record their messages (libtde's own
 * when the key manager failed, else the adapter's: a bad URI, an unsupported
 * RocksDB version) where tde_last_error() reads them.
 */
TDE_API const char *tde_rocksdb_last_error(void);

/**
 * Registers the "libtde:" Env and FileSystem factories in RocksDB's default
 * ObjectLibrary (idempotent; the library also does it when loaded). Calling it
 * keeps a linker using --as-needed from dropping libtde-rocksdb.
 * Returns TDE_ROCKSDB_URI_PREFIX.
 */
TDE_API const char *tde_rocksdb_register(void);

/* ---- Self-contained key metadata for checkpoints and backups ---- */

/**
 * Writes a new key-manager directory @p dest_dir (which must not exist: else
 * TDE_ERR_EXISTS) holding the key-manager entries of the files below
 * @p data_dir, named under one root @p root_name (NULL: "db"), and only the
 * data keys they use, sealed under the same master key; see
 * tde_keymgr_copy_subset(). Use it after rocksdb_checkpoint_create() with
 * dest_dir "<checkpoint>/tde-keymgr". @p env must come from
 * tde_rocksdb_env_new(). The message is tde_last_error().
 */
TDE_API TDE_MUST_USE tde_status tde_rocksdb_copy_key_metadata(rocksdb_env_t *env,
                                                              const char *data_dir,
                                                              const char *dest_dir,
                                                              const char *root_name);

/* ---- Offline maintenance of a stopped database (tde-ctl retire-key, rewrite) ---- */

#define TDE_ROCKSDB_MAINT_VERSION 1

/** Zero-initialise, then set what you need. */
typedef struct tde_rocksdb_maint_options {
    unsigned version;                 /**< TDE_ROCKSDB_MAINT_VERSION */
    const char *db_path;              /**< the database directory */
    const tde_rocksdb_config *config; /**< its Env, as the database is configured; not read-only */
    const char *const
        *column_families; /**< retire-key: the column families to rewrite; NULL: all */
    size_t n_column_families;
    /** Called for each file reported (stored name or path, its key id; 0: plaintext). */
    int (*fn)(void *arg, const char *name, uint64_t key_id);
    void *arg;
} tde_rocksdb_maint_options;

/**
 * Retires data key @p key_id of the STOPPED database at @p o->db_path: makes a
 * new current key first if it is the current one, opens the database (every
 * column family, with the options of its latest OPTIONS file) through an
 * encrypted Env, runs tde::RetireKey() on the chosen column families, closes
 * and reopens it once (new WAL, MANIFEST and OPTIONS), rewrites IDENTITY, and
 * then calls @p o->fn with every key-manager entry still using the key
 * (typically old info LOGs; files of other databases or backups sharing the
 * key manager). TDE_ERR_LOCKED, naming the holder's pid, while a process has
 * the database (its LOCK file) or the key manager open; TDE_ERR_NOT_FOUND when
 * the key is not in the key dictionary. Message: tde_last_error().
 */
TDE_API TDE_MUST_USE tde_status tde_rocksdb_retire_key(const tde_rocksdb_maint_options *o,
                                                       uint64_t key_id);

/**
 * Rewrites every file of the STOPPED database at @p o->db_path that is not
 * under the current data key, including plaintext files left from a migration
 * (a new current key first when @p rotate): flush, a forced bottommost
 * compaction with blob garbage collection of every column family, a reopen
 * (new WAL, MANIFEST and OPTIONS) and IDENTITY rewritten. Then @p o->fn gets
 * each file in the database directory still not under the current key (key id
 * 0: plaintext), and *current_key (may be NULL) the current key id. Errors as
 * tde_rocksdb_retire_key().
 */
TDE_API TDE_MUST_USE tde_status tde_rocksdb_rewrite(const tde_rocksdb_maint_options *o, bool rotate,
                                                    uint64_t *current_key);

#ifdef __cplusplus
}
#endif
#endif
