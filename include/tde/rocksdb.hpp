/**
 * @file rocksdb.hpp
 * @brief C++ entry points of libtde-rocksdb: an encrypted rocksdb::FileSystem / Env.
 *
 * Errors from libtde come back as rocksdb::Status carrying libtde's message
 * (e.g. "IO error: key.dict: wrong master key (file:///etc/tde/master.key)").
 */
#ifndef TDE_ROCKSDB_HPP
#define TDE_ROCKSDB_HPP

#include <memory>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>

#include "tde/rocksdb.h"

namespace tde
{

/** An encrypted FileSystem over the default (POSIX) one. Shares the key manager per directory. */
TDE_API rocksdb::Status NewEncryptedFileSystem(const tde_rocksdb_config &cfg,
                                               std::shared_ptr<rocksdb::FileSystem> *out);

/** The same from a "libtde:<keymgr dir>,master:<uri>,method:<name>,..." URI. */
TDE_API rocksdb::Status NewEncryptedFileSystem(const std::string &uri,
                                               std::shared_ptr<rocksdb::FileSystem> *out);

/** An Env whose files go through NewEncryptedFileSystem() (threads and clock: Env::Default()). */
TDE_API rocksdb::Status NewEncryptedEnv(const tde_rocksdb_config &cfg,
                                        std::unique_ptr<rocksdb::Env> *out);
TDE_API rocksdb::Status NewEncryptedEnv(const std::string &uri, std::unique_ptr<rocksdb::Env> *out);

/** True when @p fs is libtde's encrypted FileSystem. */
TDE_API bool IsEncryptedFileSystem(const rocksdb::FileSystem *fs);

/**
 * Fails closed when @p opts would not encrypt: its Env's FileSystem is not
 * libtde's (e.g. "env=libtde:..." was parsed while the factory was missing, which
 * RocksDB 7.8 silently turns into the default Env), or it asks for mmap writes,
 * mmap reads or direct I/O writes, which cannot be encrypted safely.
 */
TDE_API rocksdb::Status CheckEncryptedOptions(const rocksdb::DBOptions &opts);

/**
 * The key-manager names ("<root>/<path>") of the files still encrypted with data
 * key @p key_id, in the key manager behind @p db's Env.
 */
TDE_API rocksdb::Status FilesUsingKey(rocksdb::DB *db, uint64_t key_id,
                                      std::vector<std::string> *names);

/**
 * Retires data key @p key_id (a compromised key, or the end of a migration
 * from plaintext): makes a new current data key if @p key_id is the current
 * one, then for each column family in @p cfs (empty: the default one) flushes
 * the memtable (a new WAL) and forces a bottommost compaction with blob
 * garbage collection of every blob (new SSTs and blob files). @p remaining gets
 * the files still using the key: typically the MANIFEST and OPTIONS until the
 * next reopen, IDENTITY, a WAL holding no live data, and info LOGs.
 * Needs a writable key manager.
 */
TDE_API rocksdb::Status RetireKey(rocksdb::DB *db, uint64_t key_id,
                                  std::vector<std::string> *remaining,
                                  const std::vector<rocksdb::ColumnFamilyHandle *> &cfs = {});

/* ---- Self-contained key metadata for checkpoints and backups ---- */

/** Where CreateCheckpoint() puts the checkpoint's key metadata, inside the checkpoint. */
constexpr const char *kCheckpointKeyManagerDir = "tde-keymgr";

/**
 * Writes a new key-manager directory @p dest_keymgr_dir (which must not exist)
 * holding the entries of the files below @p data_dir, named under one root
 * @p root_name, and only the data keys they use (tde_keymgr_copy_subset()),
 * sealed under the same master key unless @p dest_master_key_uri is given.
 * Open the copied data anywhere with
 * "libtde:<dest_keymgr_dir>,master:<uri>,root:<root_name>:<where the data is>".
 * @p fs / @p env must be libtde's (the key manager behind it is copied; a
 * read-only one works). *n_files (may be NULL) gets the number of entries.
 */
TDE_API rocksdb::Status CopyKeyMetadata(rocksdb::FileSystem *fs, const std::string &data_dir,
                                        const std::string &dest_keymgr_dir,
                                        const std::string &root_name = "db",
                                        const std::string &dest_master_key_uri = "",
                                        uint64_t *n_files = nullptr);
TDE_API rocksdb::Status CopyKeyMetadata(rocksdb::Env *env, const std::string &data_dir,
                                        const std::string &dest_keymgr_dir,
                                        const std::string &root_name = "db",
                                        const std::string &dest_master_key_uri = "",
                                        uint64_t *n_files = nullptr);

/**
 * rocksdb::Checkpoint::CreateCheckpoint() through @p db's encrypted Env, then
 * CopyKeyMetadata() into "<checkpoint_dir>/tde-keymgr", so the checkpoint
 * opens on its own (another path or host, after the source is deleted) with
 * "libtde:<dir>/tde-keymgr,master:<uri>,root:<root_name>:<dir>". RocksDB
 * ignores that subdirectory (open, DestroyDB, checkpoints of the checkpoint).
 * @p checkpoint_dir must be under one of the database Env's roots.
 */
TDE_API rocksdb::Status CreateCheckpoint(rocksdb::DB *db, const std::string &checkpoint_dir,
                                         const std::string &root_name = "db",
                                         uint64_t log_size_for_flush = 0,
                                         uint64_t *sequence_number = nullptr);

} // namespace tde

#endif
