// Internal: libtde's encrypted rocksdb::FileSystem.
//
// Threat model: an attacker who reads the disk (or a backup) but not the
// process memory or the master key must learn nothing from any file RocksDB
// writes. CTR mode gives confidentiality only, so the one rule is that no
// keystream byte ever encrypts two different plaintexts: every new or reused
// file gets a fresh IV from the key manager, and every writable handle refuses
// writes below its high-water mark.
#ifndef TDE_ROCKSDB_ENCRYPTED_FS_H
#define TDE_ROCKSDB_ENCRYPTED_FS_H

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <rocksdb/file_system.h>

#include "tde/keymgr.h"
#include "tde/rocksdb.h"

namespace tde
{

// The key manager shared by every FileSystem opened on one directory.
struct KeyManagerHandle {
    tde_keymgr *km = nullptr;
    bool plaintext_info_log = false;
    bool read_only = false;
    std::string dir;
    ~KeyManagerHandle() { tde_keymgr_close(km); }
};

// libtde's message for a failed call, as a rocksdb::IOStatus.
rocksdb::IOStatus StatusFromTde(tde_status st, const std::string &context);

class EncryptedFileSystem : public rocksdb::FileSystemWrapper
{
  public:
    EncryptedFileSystem(const std::shared_ptr<rocksdb::FileSystem> &base,
                        std::shared_ptr<KeyManagerHandle> km);

    static const char *
    kClassName()
    {
        return "libtde";
    }
    const char *
    Name() const override
    {
        return kClassName();
    }

    rocksdb::IOStatus NewSequentialFile(const std::string &fname, const rocksdb::FileOptions &opts,
                                        std::unique_ptr<rocksdb::FSSequentialFile> *result,
                                        rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus NewRandomAccessFile(const std::string &fname,
                                          const rocksdb::FileOptions &opts,
                                          std::unique_ptr<rocksdb::FSRandomAccessFile> *result,
                                          rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus NewWritableFile(const std::string &fname, const rocksdb::FileOptions &opts,
                                      std::unique_ptr<rocksdb::FSWritableFile> *result,
                                      rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus ReopenWritableFile(const std::string &fname, const rocksdb::FileOptions &opts,
                                         std::unique_ptr<rocksdb::FSWritableFile> *result,
                                         rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus ReuseWritableFile(const std::string &fname, const std::string &old_fname,
                                        const rocksdb::FileOptions &opts,
                                        std::unique_ptr<rocksdb::FSWritableFile> *result,
                                        rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus NewRandomRWFile(const std::string &fname, const rocksdb::FileOptions &opts,
                                      std::unique_ptr<rocksdb::FSRandomRWFile> *result,
                                      rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus
    NewMemoryMappedFileBuffer(const std::string &fname,
                              std::unique_ptr<rocksdb::MemoryMappedFileBuffer> *result) override;
    rocksdb::IOStatus RenameFile(const std::string &src, const std::string &dst,
                                 const rocksdb::IOOptions &opts,
                                 rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus LinkFile(const std::string &src, const std::string &dst,
                               const rocksdb::IOOptions &opts,
                               rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus DeleteFile(const std::string &fname, const rocksdb::IOOptions &opts,
                                 rocksdb::IODebugContext *dbg) override;
    rocksdb::IOStatus NewLogger(const std::string &fname, const rocksdb::IOOptions &opts,
                                std::shared_ptr<rocksdb::Logger> *result,
                                rocksdb::IODebugContext *dbg) override;

    const std::shared_ptr<KeyManagerHandle> &
    key_manager() const
    {
        return km_;
    }

  private:
    rocksdb::IOStatus FileKey(const std::string &fname, bool create, tde_file_key **out);
    template <typename File>
    using OpenFn = rocksdb::IOStatus (rocksdb::FileSystem::*)(const std::string &,
                                                              const rocksdb::FileOptions &,
                                                              std::unique_ptr<File> *,
                                                              rocksdb::IODebugContext *);
    template <typename Wrapper, typename File>
    rocksdb::IOStatus OpenReadable(OpenFn<File> open, const std::string &fname,
                                   const rocksdb::FileOptions &opts, std::unique_ptr<File> *result,
                                   rocksdb::IODebugContext *dbg);
    rocksdb::IOStatus OpenWritable(const std::string &fname, const rocksdb::FileOptions &opts,
                                   bool reopen, std::unique_ptr<rocksdb::FSWritableFile> *result,
                                   rocksdb::IODebugContext *dbg);

    rocksdb::IOStatus RenameDir(const std::string &src, const std::string &dst,
                                const rocksdb::IOOptions &opts, rocksdb::IODebugContext *dbg);
    rocksdb::IOStatus CollectEntries(const std::string &src, const std::string &dst,
                                     const rocksdb::IOOptions &opts, rocksdb::IODebugContext *dbg,
                                     std::vector<std::pair<std::string, std::string>> *out);

    std::shared_ptr<KeyManagerHandle> km_;
};

// The absolute, normalised name the key manager stores for @p fname.
std::string KeyManagerPath(const std::string &fname);

// Test builds only (TDE_ROCKSDB_KEYSTREAM_AUDIT): records every encrypted byte
// per (IV, offset) and reports when one is encrypted twice with different data.
uint64_t KeystreamAuditViolations();

// Tests only: deletes the Envs the "libtde:" env= factory made (normally kept until exit), so
// LeakSanitizer sees everything freed. Every database using them must be closed.
void ReleaseRegisteredEnvsForTests();

} // namespace tde

#endif
