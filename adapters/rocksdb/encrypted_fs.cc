// libtde's encrypted rocksdb::FileSystem: every file through every open path.
#include "encrypted_fs.h"

#include <pthread.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include <rocksdb/env.h>

namespace tde
{

using rocksdb::DataVerificationInfo;
using rocksdb::FileOptions;
using rocksdb::FSRandomAccessFile;
using rocksdb::FSRandomRWFile;
using rocksdb::FSReadRequest;
using rocksdb::FSSequentialFile;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus
StatusFromTde(tde_status st, const std::string &context)
{
    std::string msg = tde_last_error();
    if (msg.empty())
        msg = tde_status_str(st);
    if (!context.empty() && msg.find(context) == std::string::npos)
        msg = context + ": " + msg;
    switch (st) {
    case TDE_OK: return IOStatus::OK();
    case TDE_ERR_INVALID_ARG: return IOStatus::InvalidArgument(msg);
    case TDE_ERR_NOT_FOUND: return IOStatus::PathNotFound(msg);
    default: return IOStatus::IOError(msg);
    }
}

std::string
KeyManagerPath(const std::string &fname)
{
    std::string in = fname;
    if (in.empty() || in[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) != nullptr)
            in = std::string(cwd) + "/" + in;
    }
    std::vector<std::string> parts;
    size_t i = 0;
    while (i <= in.size()) {
        size_t j = in.find('/', i);
        if (j == std::string::npos)
            j = in.size();
        std::string p = in.substr(i, j - i);
        if (p == "..") {
            if (!parts.empty())
                parts.pop_back();
        } else if (!p.empty() && p != ".") {
            parts.push_back(p);
        }
        i = j + 1;
    }
    std::string out;
    for (const std::string &p : parts)
        out += "/" + p;
    return out.empty() ? "/" : out;
}

#ifdef TDE_ROCKSDB_KEYSTREAM_AUDIT
namespace
{
struct AuditTrack {
    std::string bytes;
    std::vector<bool> set;
};
std::mutex audit_mu;
std::map<std::string, AuditTrack> audit_map;
uint64_t audit_violations = 0;

void
AuditRecord(const tde_file_key *fk, uint64_t off, const char *plain, size_t n)
{
    std::string id(reinterpret_cast<const char *>(tde_file_key_iv(fk)), TDE_CIPHER_IV_LEN);
    id += std::to_string(tde_file_key_id(fk));
    std::lock_guard<std::mutex> lock(audit_mu);
    AuditTrack &t = audit_map[id];
    if (t.bytes.size() < off + n) {
        t.bytes.resize(off + n);
        t.set.resize(off + n);
    }
    for (size_t i = 0; i < n; i++) {
        if (t.set[off + i] && t.bytes[off + i] != plain[i])
            audit_violations++;
        t.bytes[off + i] = plain[i];
        t.set[off + i] = true;
    }
}
} // namespace

uint64_t
KeystreamAuditViolations()
{
    std::lock_guard<std::mutex> lock(audit_mu);
    return audit_violations;
}
#else
uint64_t
KeystreamAuditViolations()
{
    return 0;
}
#endif

namespace
{

// The wrappers below run on every read and write: each caches at open whether its file is
// plaintext, so that case costs no call into libtde (and no copy, where it can be avoided).
bool
IsPlain(const tde_file_key *fk)
{
    return tde_file_key_method(fk) == TDE_METHOD_PLAINTEXT;
}

// Encrypts or decrypts in place (or from @p in to @p out) a file that is not plaintext.
IOStatus
Crypt(const tde_file_key *fk, uint64_t off, const char *in, char *out, size_t n,
      const std::string &fname)
{
    if (n == 0)
        return IOStatus::OK();
    tde_status st = tde_file_key_process(fk, off, in, out, n);
    if (st != TDE_OK)
        return StatusFromTde(st, fname);
    return IOStatus::OK();
}

IOStatus
Encrypt(const tde_file_key *fk, uint64_t off, const char *in, char *out, size_t n,
        const std::string &fname)
{
#ifdef TDE_ROCKSDB_KEYSTREAM_AUDIT
    AuditRecord(fk, off, in, n);
#endif
    return Crypt(fk, off, in, out, n, fname);
}

// Decrypts a read result into @p scratch (copying first if the inner file answered elsewhere).
// A plaintext file's result is left where the inner file put it.
IOStatus
DecryptResult(const tde_file_key *fk, bool plain, uint64_t off, Slice *result, char *scratch,
              const std::string &fname)
{
    if (plain || result->size() == 0)
        return IOStatus::OK();
    if (scratch == nullptr)
        return IOStatus::NotSupported("libtde: read without a scratch buffer: " + fname);
    if (result->data() != scratch)
        memmove(scratch, result->data(), result->size());
    IOStatus s = Crypt(fk, off, scratch, scratch, result->size(), fname);
    *result = Slice(scratch, result->size());
    return s;
}

struct FileKeyDeleter {
    void
    operator()(tde_file_key *fk) const
    {
        tde_file_key_free(fk);
    }
};
using FileKeyPtr = std::unique_ptr<tde_file_key, FileKeyDeleter>;

IOStatus
RefuseUnsafeOptions(const FileOptions &opts, bool writing, const std::string &fname)
{
    if (opts.use_mmap_reads && !writing)
        return IOStatus::NotSupported("libtde: mmap reads (allow_mmap_reads) cannot decrypt "
                                      "in place; turn them off: " +
                                      fname);
    if (writing && opts.use_mmap_writes)
        return IOStatus::NotSupported("libtde: mmap writes (allow_mmap_writes) bypass "
                                      "encryption; turn them off: " +
                                      fname);
    if (writing && opts.use_direct_writes)
        return IOStatus::NotSupported(
            "libtde: direct I/O writes (use_direct_io_for_flush_and_compaction) rewrite the "
            "padded tail page, which would reuse keystream; turn them off: " +
            fname);
    return IOStatus::OK();
}

// The file classes below derive from RocksDB's owner wrappers, which forward every call to
// the inner file; they override only the calls that move data (and keep offsets or marks).
class EncryptedSequentialFile final : public rocksdb::FSSequentialFileOwnerWrapper
{
  public:
    EncryptedSequentialFile(std::unique_ptr<FSSequentialFile> f, FileKeyPtr fk, std::string name)
        : FSSequentialFileOwnerWrapper(std::move(f)), fk_(std::move(fk)),
          plain_(IsPlain(fk_.get())), name_(std::move(name))
    {
    }
    IOStatus
    Read(size_t n, const IOOptions &opts, Slice *result, char *scratch,
         IODebugContext *dbg) override
    {
        IOStatus s = target()->Read(n, opts, result, scratch, dbg);
        if (!s.ok())
            return s;
        s = DecryptResult(fk_.get(), plain_, offset_, result, scratch, name_);
        offset_ += result->size();
        return s;
    }
    IOStatus
    Skip(uint64_t n) override
    {
        IOStatus s = target()->Skip(n);
        if (s.ok())
            offset_ += n;
        return s;
    }
    IOStatus
    PositionedRead(uint64_t offset, size_t n, const IOOptions &opts, Slice *result, char *scratch,
                   IODebugContext *dbg) override
    {
        IOStatus s = target()->PositionedRead(offset, n, opts, result, scratch, dbg);
        if (!s.ok())
            return s;
        return DecryptResult(fk_.get(), plain_, offset, result, scratch, name_);
    }

  private:
    FileKeyPtr fk_;
    bool plain_;
    std::string name_;
    uint64_t offset_ = 0;
};

class EncryptedRandomAccessFile final : public rocksdb::FSRandomAccessFileOwnerWrapper
{
  public:
    EncryptedRandomAccessFile(std::unique_ptr<FSRandomAccessFile> f, FileKeyPtr fk,
                              std::string name)
        : FSRandomAccessFileOwnerWrapper(std::move(f)), fk_(std::move(fk)),
          plain_(IsPlain(fk_.get())), name_(std::move(name))
    {
    }
    IOStatus
    Read(uint64_t offset, size_t n, const IOOptions &opts, Slice *result, char *scratch,
         IODebugContext *dbg) const override
    {
        IOStatus s = target()->Read(offset, n, opts, result, scratch, dbg);
        if (!s.ok())
            return s;
        return DecryptResult(fk_.get(), plain_, offset, result, scratch, name_);
    }
    // The inner MultiRead may batch the I/O (io_uring); decrypt every answer.
    IOStatus
    MultiRead(FSReadRequest *reqs, size_t num_reqs, const IOOptions &opts,
              IODebugContext *dbg) override
    {
        IOStatus s = target()->MultiRead(reqs, num_reqs, opts, dbg);
        if (!s.ok())
            return s;
        for (size_t i = 0; i < num_reqs; i++) {
            if (reqs[i].status.ok())
                reqs[i].status = DecryptResult(fk_.get(), plain_, reqs[i].offset, &reqs[i].result,
                                               reqs[i].scratch, name_);
        }
        return s;
    }
    IOStatus
    ReadAsync(FSReadRequest &req, const IOOptions &opts,
              std::function<void(const FSReadRequest &, void *)> cb, void *cb_arg, void **io_handle,
              rocksdb::IOHandleDeleter *del_fn, IODebugContext *dbg) override
    {
        const tde_file_key *fk = fk_.get();
        const std::string *name = &name_;
        bool plain = plain_;
        auto decrypting = [fk, plain, name, cb](const FSReadRequest &done, void *arg) {
            FSReadRequest copy = done;
            if (copy.status.ok())
                copy.status =
                    DecryptResult(fk, plain, copy.offset, &copy.result, copy.scratch, *name);
            cb(copy, arg);
        };
        return target()->ReadAsync(req, opts, decrypting, cb_arg, io_handle, del_fn, dbg);
    }

  private:
    FileKeyPtr fk_;
    bool plain_;
    std::string name_;
};

// Ciphertext for the inner file is made in one buffer per thread, reused by every file the
// thread writes: a buffer per file cost an allocation and fresh pages (page faults) for every
// SST a compaction wrote (measured: compaction CPU +50% over plaintext with AES-128).
constexpr size_t kChunk = 1 << 20;

char *
ThreadBuffer(size_t n)
{
    thread_local std::unique_ptr<char[]> buf;
    thread_local size_t cap = 0;
    if (cap < n) {
        cap = std::max(n, std::min(cap * 2, kChunk));
        buf.reset(new char[cap]);
    }
    return buf.get();
}

// Appends only at or above the high-water mark: a rewrite of bytes already
// written (same IV, same offset) would reuse keystream, so it fails closed.
class EncryptedWritableFile final : public rocksdb::FSWritableFileOwnerWrapper
{
  public:
    EncryptedWritableFile(std::unique_ptr<FSWritableFile> f, FileKeyPtr fk, std::string name,
                          uint64_t size)
        : FSWritableFileOwnerWrapper(std::move(f)), fk_(std::move(fk)), plain_(IsPlain(fk_.get())),
          name_(std::move(name)), size_(size), hwm_(size)
    {
    }
    IOStatus
    Append(const Slice &data, const IOOptions &opts, IODebugContext *dbg) override
    {
        return WriteAt(size_, data, false, opts, dbg);
    }
    // The checksum handed off covers the plaintext; the inner file gets ciphertext, so it
    // cannot be verified there and is not passed on.
    IOStatus
    Append(const Slice &data, const IOOptions &opts, const DataVerificationInfo &,
           IODebugContext *dbg) override
    {
        return Append(data, opts, dbg);
    }
    IOStatus
    PositionedAppend(const Slice &data, uint64_t offset, const IOOptions &opts,
                     IODebugContext *dbg) override
    {
        return WriteAt(offset, data, true, opts, dbg);
    }
    IOStatus
    PositionedAppend(const Slice &data, uint64_t offset, const IOOptions &opts,
                     const DataVerificationInfo &, IODebugContext *dbg) override
    {
        return PositionedAppend(data, offset, opts, dbg);
    }
    // Shrinking is allowed, but the mark stays: the truncated range cannot be written again.
    IOStatus
    Truncate(uint64_t size, const IOOptions &opts, IODebugContext *dbg) override
    {
        IOStatus s = target()->Truncate(size, opts, dbg);
        if (s.ok())
            size_ = size;
        return s;
    }

  private:
    // Encrypts into this thread's buffer, at most kChunk bytes at a time, and hands each piece
    // to the inner file (which is done with it when its call returns).
    IOStatus
    WriteAt(uint64_t offset, const Slice &data, bool positioned, const IOOptions &opts,
            IODebugContext *dbg)
    {
        if (offset < hwm_)
            return IOStatus::IOError("libtde: refusing to rewrite " + name_ + " at offset " +
                                     std::to_string(offset) + " below its high-water mark " +
                                     std::to_string(hwm_) +
                                     " (the same keystream would encrypt different data)");
        if (plain_) {
            IOStatus s = positioned ? target()->PositionedAppend(data, offset, opts, dbg)
                                    : target()->Append(data, opts, dbg);
            if (s.ok())
                Advance(offset, data.size());
            return s;
        }
        size_t done = 0;
        do {
            size_t n = std::min(data.size() - done, kChunk);
            char *buf = ThreadBuffer(n);
            IOStatus s = Encrypt(fk_.get(), offset + done, data.data() + done, buf, n, name_);
            if (s.ok())
                s = positioned ? target()->PositionedAppend(Slice(buf, n), offset + done, opts, dbg)
                               : target()->Append(Slice(buf, n), opts, dbg);
            if (!s.ok())
                return s;
            done += n;
            Advance(offset, done);
        } while (done < data.size());
        return IOStatus::OK();
    }
    void
    Advance(uint64_t offset, size_t n)
    {
        size_ = offset + n;
        if (size_ > hwm_)
            hwm_ = size_;
    }

    FileKeyPtr fk_;
    bool plain_;
    std::string name_;
    uint64_t size_;
    uint64_t hwm_;
};

// Only for new, empty files: writes below the high-water mark fail closed.
class EncryptedRandomRWFile final : public rocksdb::FSRandomRWFileOwnerWrapper
{
  public:
    EncryptedRandomRWFile(std::unique_ptr<FSRandomRWFile> f, FileKeyPtr fk, std::string name)
        : FSRandomRWFileOwnerWrapper(std::move(f)), fk_(std::move(fk)), plain_(IsPlain(fk_.get())),
          name_(std::move(name))
    {
    }
    IOStatus
    Write(uint64_t offset, const Slice &data, const IOOptions &opts, IODebugContext *dbg) override
    {
        if (offset < hwm_)
            return IOStatus::IOError("libtde: refusing to rewrite " + name_ + " at offset " +
                                     std::to_string(offset) + " below its high-water mark " +
                                     std::to_string(hwm_));
        std::vector<char> buf;
        Slice out = data;
        if (!plain_) {
            buf.resize(data.size());
            IOStatus s = Encrypt(fk_.get(), offset, data.data(), buf.data(), data.size(), name_);
            if (!s.ok())
                return s;
            out = Slice(buf.data(), buf.size());
        }
        IOStatus s = target()->Write(offset, out, opts, dbg);
        if (s.ok())
            hwm_ = offset + data.size();
        return s;
    }
    IOStatus
    Read(uint64_t offset, size_t n, const IOOptions &opts, Slice *result, char *scratch,
         IODebugContext *dbg) const override
    {
        IOStatus s = target()->Read(offset, n, opts, result, scratch, dbg);
        if (!s.ok())
            return s;
        return DecryptResult(fk_.get(), plain_, offset, result, scratch, name_);
    }

  private:
    FileKeyPtr fk_;
    bool plain_;
    std::string name_;
    uint64_t hwm_ = 0;
};

// The info LOG through the encrypted file system (RocksDB's own loggers open it on the target).
class EncryptedLogger : public rocksdb::Logger
{
  public:
    explicit EncryptedLogger(std::unique_ptr<FSWritableFile> f) : file_(std::move(f)) {}
    ~EncryptedLogger() override
    {
        if (!closed_) {
            closed_ = true;
            CloseImpl().PermitUncheckedError();
        }
    }
    using rocksdb::Logger::Logv;
    void
    Logv(const char *format, va_list ap) override
    {
        struct timeval now;
        gettimeofday(&now, nullptr);
        struct tm t;
        localtime_r(&now.tv_sec, &t);
        char head[64];
        snprintf(head, sizeof(head), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llx ", t.tm_year + 1900,
                 t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, (long)now.tv_usec,
                 (unsigned long long)pthread_self());
        va_list copy;
        va_copy(copy, ap);
        int n = vsnprintf(nullptr, 0, format, copy);
        va_end(copy);
        if (n < 0)
            return;
        std::string line(head);
        size_t at = line.size();
        line.resize(at + (size_t)n + 1);
        vsnprintf(&line[at], (size_t)n + 1, format, ap);
        line.resize(at + (size_t)n);
        if (line.empty() || line.back() != '\n')
            line.push_back('\n');
        std::lock_guard<std::mutex> lock(mu_);
        if (closed_ || !file_)
            return;
        if (file_->Append(line, IOOptions(), nullptr).ok())
            size_ += line.size();
        file_->Flush(IOOptions(), nullptr).PermitUncheckedError();
    }
    size_t
    GetLogFileSize() const override
    {
        return size_;
    }
    void
    Flush() override
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (file_)
            file_->Flush(IOOptions(), nullptr).PermitUncheckedError();
    }

  protected:
    rocksdb::Status
    CloseImpl() override
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!file_)
            return rocksdb::Status::OK();
        IOStatus s = file_->Close(IOOptions(), nullptr);
        file_.reset();
        return s;
    }

  private:
    std::mutex mu_;
    std::unique_ptr<FSWritableFile> file_;
    size_t size_ = 0;
};

} // namespace

EncryptedFileSystem::EncryptedFileSystem(const std::shared_ptr<rocksdb::FileSystem> &base,
                                         std::shared_ptr<KeyManagerHandle> km)
    : FileSystemWrapper(base), km_(std::move(km))
{
}

namespace
{
// The size of @p fname, or 0 with *exists false when there is no such file.
IOStatus
ExistingSize(rocksdb::FileSystem *fs, const std::string &fname, IODebugContext *dbg, bool *exists,
             uint64_t *size)
{
    *size = 0;
    *exists = fs->FileExists(fname, IOOptions(), dbg).ok();
    return *exists ? fs->GetFileSize(fname, IOOptions(), size, dbg) : IOStatus::OK();
}

// Makes a name change in the directory holding @p path durable.
IOStatus
SyncParent(rocksdb::FileSystem *fs, const std::string &path, IODebugContext *dbg)
{
    std::string abs = KeyManagerPath(path);
    size_t cut = abs.rfind('/');
    std::unique_ptr<rocksdb::FSDirectory> dir;
    IOStatus s = fs->NewDirectory(abs.substr(0, cut == 0 ? 1 : cut), IOOptions(), &dir, dbg);
    return s.ok() ? dir->Fsync(IOOptions(), dbg) : s;
}
} // namespace

IOStatus
EncryptedFileSystem::FileKey(const std::string &fname, bool create, tde_file_key **out)
{
    std::string path = KeyManagerPath(fname);
    tde_status st = create ? tde_keymgr_new_file(km_->km, path.c_str(), out)
                           : tde_keymgr_get_file(km_->km, path.c_str(), out);
    if (st != TDE_OK)
        return StatusFromTde(st, fname);
    return IOStatus::OK();
}

// Opens an existing file for reading with @p open on the target, under its key.
template <typename Wrapper, typename File>
IOStatus
EncryptedFileSystem::OpenReadable(OpenFn<File> open, const std::string &fname,
                                  const FileOptions &opts, std::unique_ptr<File> *result,
                                  IODebugContext *dbg)
{
    IOStatus s = RefuseUnsafeOptions(opts, false, fname);
    if (!s.ok())
        return s;
    std::unique_ptr<File> inner;
    s = (target()->*open)(fname, opts, &inner, dbg);
    if (!s.ok())
        return s;
    tde_file_key *fk = nullptr;
    s = FileKey(fname, false, &fk);
    if (!s.ok())
        return s;
    result->reset(new Wrapper(std::move(inner), FileKeyPtr(fk), fname));
    return IOStatus::OK();
}

IOStatus
EncryptedFileSystem::NewSequentialFile(const std::string &fname, const FileOptions &opts,
                                       std::unique_ptr<FSSequentialFile> *result,
                                       IODebugContext *dbg)
{
    return OpenReadable<EncryptedSequentialFile>(&rocksdb::FileSystem::NewSequentialFile, fname,
                                                 opts, result, dbg);
}

IOStatus
EncryptedFileSystem::NewRandomAccessFile(const std::string &fname, const FileOptions &opts,
                                         std::unique_ptr<FSRandomAccessFile> *result,
                                         IODebugContext *dbg)
{
    return OpenReadable<EncryptedRandomAccessFile>(&rocksdb::FileSystem::NewRandomAccessFile, fname,
                                                   opts, result, dbg);
}

IOStatus
EncryptedFileSystem::OpenWritable(const std::string &fname, const FileOptions &opts, bool reopen,
                                  std::unique_ptr<FSWritableFile> *result, IODebugContext *dbg)
{
    IOStatus s = RefuseUnsafeOptions(opts, true, fname);
    if (!s.ok())
        return s;
    uint64_t size = 0;
    bool exists = false;
    if (reopen) {
        s = ExistingSize(target(), fname, dbg, &exists, &size);
        if (!s.ok())
            return s;
    }
    // A new file (or a reopened one that did not exist) gets a fresh IV, durable before the
    // file is created; a reopened file keeps its key and appends above its current size.
    tde_file_key *fk = nullptr;
    s = FileKey(fname, !exists, &fk);
    if (!s.ok())
        return s;
    FileKeyPtr key(fk);
    std::unique_ptr<FSWritableFile> inner;
    s = reopen ? target()->ReopenWritableFile(fname, opts, &inner, dbg)
               : target()->NewWritableFile(fname, opts, &inner, dbg);
    if (!s.ok())
        return s;
    result->reset(new EncryptedWritableFile(std::move(inner), std::move(key), fname, size));
    return IOStatus::OK();
}

IOStatus
EncryptedFileSystem::NewWritableFile(const std::string &fname, const FileOptions &opts,
                                     std::unique_ptr<FSWritableFile> *result, IODebugContext *dbg)
{
    return OpenWritable(fname, opts, false, result, dbg);
}

IOStatus
EncryptedFileSystem::ReopenWritableFile(const std::string &fname, const FileOptions &opts,
                                        std::unique_ptr<FSWritableFile> *result,
                                        IODebugContext *dbg)
{
    return OpenWritable(fname, opts, true, result, dbg);
}

// WAL recycling: rename the old file and truncate it under a fresh IV, so its stale tail is
// gone and the old keystream is never used again.
IOStatus
EncryptedFileSystem::ReuseWritableFile(const std::string &fname, const std::string &old_fname,
                                       const FileOptions &opts,
                                       std::unique_ptr<FSWritableFile> *result, IODebugContext *dbg)
{
    IOStatus s = RenameFile(old_fname, fname, IOOptions(), dbg);
    if (!s.ok())
        return s;
    return OpenWritable(fname, opts, false, result, dbg);
}

// Rewriting bytes of an existing file would reuse its keystream. RocksDB 7.8 opens one only
// to write an ingested SST's global sequence number; on NotSupported it keeps that number in
// the MANIFEST alone, exactly as with write_global_seqno=false.
IOStatus
EncryptedFileSystem::NewRandomRWFile(const std::string &fname, const FileOptions &opts,
                                     std::unique_ptr<FSRandomRWFile> *result, IODebugContext *dbg)
{
    IOStatus s = RefuseUnsafeOptions(opts, true, fname);
    if (!s.ok())
        return s;
    uint64_t size = 0;
    bool exists = false;
    s = ExistingSize(target(), fname, dbg, &exists, &size);
    if (!s.ok())
        return s;
    if (size > 0)
        return IOStatus::NotSupported("libtde: in-place rewrites of " + fname +
                                      " are refused (they would reuse keystream); use "
                                      "write_global_seqno=false");
    tde_file_key *fk = nullptr;
    s = FileKey(fname, true, &fk);
    if (!s.ok())
        return s;
    FileKeyPtr key(fk);
    std::unique_ptr<FSRandomRWFile> inner;
    s = target()->NewRandomRWFile(fname, opts, &inner, dbg);
    if (!s.ok())
        return s;
    result->reset(new EncryptedRandomRWFile(std::move(inner), std::move(key), fname));
    return IOStatus::OK();
}

IOStatus
EncryptedFileSystem::NewMemoryMappedFileBuffer(const std::string &fname,
                                               std::unique_ptr<rocksdb::MemoryMappedFileBuffer> *)
{
    return IOStatus::NotSupported("libtde: memory-mapped buffers would expose ciphertext: " +
                                  fname);
}

// The key manager renames: it keeps the destination's old entry (or its absence) until the
// rename(2) is durable, so a crash at any instant leaves both names readable (docs/rocksdb.md,
// "Names"). Its rename(2) is the one the target would do: the target is always RocksDB's POSIX
// file system (api.cc).
IOStatus
EncryptedFileSystem::RenameFile(const std::string &src, const std::string &dst,
                                const IOOptions &opts, IODebugContext *dbg)
{
    bool is_dir = false;
    if (target()->IsDirectory(src, opts, &is_dir, dbg).ok() && is_dir)
        return RenameDir(src, dst, opts, dbg);
    std::string s_path = KeyManagerPath(src), d_path = KeyManagerPath(dst);
    tde_status st = tde_keymgr_rename_file(km_->km, s_path.c_str(), d_path.c_str());
    if (st != TDE_OK)
        return StatusFromTde(st, src);
    return IOStatus::OK();
}

// A directory rename (checkpoints: "<dir>.tmp" -> "<dir>") moves the entry of every file below
// it: new names first, rename (durable), then drop the old names, so a crash leaves only orphan
// entries.
IOStatus
EncryptedFileSystem::RenameDir(const std::string &src, const std::string &dst,
                               const IOOptions &opts, IODebugContext *dbg)
{
    std::vector<std::pair<std::string, std::string>> moved;
    IOStatus s = CollectEntries(src, dst, opts, dbg, &moved);
    if (!s.ok())
        return s;
    for (const auto &m : moved) {
        tde_status st = tde_keymgr_link_file(km_->km, m.first.c_str(), m.second.c_str());
        if (st != TDE_OK && st != TDE_ERR_NOT_FOUND) // enforce: a file without an entry stays so
            return StatusFromTde(st, m.second);
    }
    s = target()->RenameFile(src, dst, opts, dbg);
    if (s.ok())
        s = SyncParent(target(), dst, dbg); // the old names go only once the rename is durable
    if (s.ok())
        s = SyncParent(target(), src, dbg);
    if (!s.ok())
        return s;
    for (const auto &m : moved) {
        tde_status st = tde_keymgr_delete_file(km_->km, m.first.c_str());
        if (st != TDE_OK)
            return StatusFromTde(st, m.first);
    }
    return IOStatus::OK();
}

// The (old, new) key-manager names of every file below @p src.
IOStatus
EncryptedFileSystem::CollectEntries(const std::string &src, const std::string &dst,
                                    const IOOptions &opts, IODebugContext *dbg,
                                    std::vector<std::pair<std::string, std::string>> *out)
{
    std::vector<std::string> children;
    IOStatus s = target()->GetChildren(src, opts, &children, dbg);
    if (!s.ok())
        return s;
    for (const std::string &c : children) {
        if (c == "." || c == "..")
            continue;
        std::string from = src + "/" + c, to = dst + "/" + c;
        bool is_dir = false;
        if (target()->IsDirectory(from, opts, &is_dir, dbg).ok() && is_dir)
            s = CollectEntries(from, to, opts, dbg, out);
        else
            out->emplace_back(KeyManagerPath(from), KeyManagerPath(to));
        if (!s.ok())
            return s;
    }
    return IOStatus::OK();
}

IOStatus
EncryptedFileSystem::LinkFile(const std::string &src, const std::string &dst, const IOOptions &opts,
                              IODebugContext *dbg)
{
    // link(2) fails on an existing target: fail before replacing that file's entry.
    if (target()->FileExists(dst, opts, dbg).ok())
        return IOStatus::IOError("libtde: cannot link " + src + " to " + dst + ": file exists");
    std::string s_path = KeyManagerPath(src), d_path = KeyManagerPath(dst);
    tde_status st = tde_keymgr_link_file(km_->km, s_path.c_str(), d_path.c_str());
    if (st != TDE_OK)
        return StatusFromTde(st, src);
    return target()->LinkFile(src, dst, opts, dbg);
}

// unlink(2) first, then the entry: a crash leaves an orphan entry, never an unreadable file.
IOStatus
EncryptedFileSystem::DeleteFile(const std::string &fname, const IOOptions &opts,
                                IODebugContext *dbg)
{
    IOStatus s = target()->DeleteFile(fname, opts, dbg);
    if (!s.ok() && !s.IsPathNotFound() && !s.IsNotFound())
        return s;
    std::string path = KeyManagerPath(fname);
    tde_status st = tde_keymgr_delete_file(km_->km, path.c_str());
    if (st != TDE_OK)
        return StatusFromTde(st, fname);
    return s;
}

IOStatus
EncryptedFileSystem::NewLogger(const std::string &fname, const IOOptions &opts,
                               std::shared_ptr<rocksdb::Logger> *result, IODebugContext *dbg)
{
    if (km_->plaintext_info_log) {
        if (!km_->read_only) {
            std::string path = KeyManagerPath(fname);
            tde_status st = tde_keymgr_delete_file(km_->km, path.c_str());
            if (st != TDE_OK)
                return StatusFromTde(st, fname);
        }
        return target()->NewLogger(fname, opts, result, dbg);
    }
    std::unique_ptr<FSWritableFile> file;
    FileOptions fopts;
    fopts.io_options = opts;
    IOStatus s = NewWritableFile(fname, fopts, &file, dbg);
    if (!s.ok())
        return s;
    result->reset(new EncryptedLogger(std::move(file)));
    return IOStatus::OK();
}

} // namespace tde
