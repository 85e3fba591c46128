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

} // namespace tde

#endif
