// Configuration, URIs, factories (C++, C and RocksDB's ObjectLibrary).
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <rocksdb/convenience.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/utilities/object_registry.h>
#include <rocksdb/version.h>

#include "encrypted_fs.h"
#include "tde/rocksdb.hpp"

namespace tde
{
namespace
{

// A parsed "libtde:" URI owns the strings a tde_rocksdb_config points at.
struct ParsedUri {
    std::string dir, master, previous, method;
    std::vector<std::string> root_names, root_paths;
    std::vector<tde_keymgr_root> roots;
    tde_rocksdb_config cfg{};
};

rocksdb::Status
ParseUri(const std::string &uri, ParsedUri *out)
{
    const std::string prefix = TDE_ROCKSDB_URI_PREFIX;
    if (uri.compare(0, prefix.size(), prefix) != 0)
        return rocksdb::Status::InvalidArgument("libtde: URI must start with " + prefix + ": " +
                                                uri);
    std::vector<std::string> items;
    size_t i = prefix.size();
    while (i <= uri.size()) {
        size_t j = uri.find(',', i);
        if (j == std::string::npos)
            j = uri.size();
        items.push_back(uri.substr(i, j - i));
        i = j + 1;
    }
    ParsedUri &p = *out;
    p.cfg.version = TDE_ROCKSDB_CONFIG_VERSION;
    p.cfg.enforce = -1;
    p.dir = items[0];
    for (size_t k = 1; k < items.size(); k++) {
        const std::string &it = items[k];
        size_t colon = it.find(':');
        std::string key = it.substr(0, colon);
        std::string val = colon == std::string::npos ? "" : it.substr(colon + 1);
        if (key == "master") {
            p.master = val;
        } else if (key == "previous") {
            p.previous = val;
        } else if (key == "method") {
            p.method = val;
        } else if (key == "rotation") {
            p.cfg.rotation_period_seconds = strtoull(val.c_str(), nullptr, 10);
        } else if (key == "enforce") {
            p.cfg.enforce = val.empty() || val == "1" || val == "true" ? 1 : 0;
        } else if (key == "read_only") {
            p.cfg.read_only = val.empty() || val == "1" || val == "true";
        } else if (key == "info_log" && (val == "plaintext" || val == "encrypted")) {
            p.cfg.plaintext_info_log = val == "plaintext";
        } else if (key == "root" && val.find(':') != std::string::npos) {
            p.root_names.push_back(val.substr(0, val.find(':')));
            p.root_paths.push_back(val.substr(val.find(':') + 1));
        } else {
            return rocksdb::Status::InvalidArgument(
                "libtde: unknown URI item '" + it +
                "' (known: master:, previous:, method:, rotation:, enforce, read_only, "
                "info_log:plaintext|encrypted, root:<name>:<path>)");
        }
    }
    if (p.dir.empty() || p.master.empty())
        return rocksdb::Status::InvalidArgument(
            "libtde: URI needs a key-manager directory and master:<uri>: " + uri);
    for (size_t k = 0; k < p.root_names.size(); k++)
        p.roots.push_back(tde_keymgr_root{p.root_names[k].c_str(), p.root_paths[k].c_str()});
    p.cfg.keymgr_dir = p.dir.c_str();
    p.cfg.master_key_uri = p.master.c_str();
    p.cfg.previous_master_key_uri = p.previous.empty() ? nullptr : p.previous.c_str();
    p.cfg.method = p.method.empty() ? nullptr : p.method.c_str();
    p.cfg.roots = p.roots.empty() ? nullptr : p.roots.data();
    p.cfg.n_roots = p.roots.size();
    return rocksdb::Status::OK();
}

std::mutex handles_mu;
std::map<std::string, std::weak_ptr<KeyManagerHandle>> handles;

// One open key manager per directory and process, shared by every FileSystem on it.
rocksdb::Status
OpenHandle(const tde_rocksdb_config &cfg, std::shared_ptr<KeyManagerHandle> *out)
{
    if (cfg.version != TDE_ROCKSDB_CONFIG_VERSION)
        return rocksdb::Status::InvalidArgument("libtde: tde_rocksdb_config.version " +
                                                std::to_string(cfg.version) + " is not " +
                                                std::to_string(TDE_ROCKSDB_CONFIG_VERSION));
    if (cfg.keymgr_dir == nullptr || cfg.master_key_uri == nullptr)
        return rocksdb::Status::InvalidArgument(
            "libtde: the configuration needs keymgr_dir and master_key_uri");
    tde_method method = TDE_METHOD_AES256_CTR;
    if (cfg.method != nullptr) {
        tde_status st = tde_method_from_name(&method, cfg.method);
        if (st != TDE_OK)
            return StatusFromTde(st, "libtde");
    }
    std::string key = KeyManagerPath(cfg.keymgr_dir);
    std::lock_guard<std::mutex> lock(handles_mu);
    auto it = handles.find(key);
    if (it != handles.end()) {
        std::shared_ptr<KeyManagerHandle> h = it->second.lock();
        if (h) {
            *out = h;
            return rocksdb::Status::OK();
        }
    }
    static const tde_keymgr_root default_root = {"fs", "/"};
    tde_keymgr_config kc{};
    kc.version = TDE_KEYMGR_CONFIG_VERSION;
    kc.dir = cfg.keymgr_dir;
    kc.roots = cfg.roots != nullptr ? cfg.roots : &default_root;
    kc.n_roots = cfg.roots != nullptr ? cfg.n_roots : 1;
    kc.method = method;
    kc.rotation_period_seconds = cfg.rotation_period_seconds;
    kc.master_key_uri = cfg.master_key_uri;
    kc.previous_master_key_uri = cfg.previous_master_key_uri;
    kc.enforce = cfg.enforce;
    kc.read_only = cfg.read_only;
    auto h = std::make_shared<KeyManagerHandle>();
    tde_status st = tde_keymgr_open(&h->km, &kc);
    if (st != TDE_OK)
        return StatusFromTde(st, "libtde");
    h->plaintext_info_log = cfg.plaintext_info_log;
    h->read_only = cfg.read_only;
    h->dir = key;
    handles[key] = h;
    *out = h;
    return rocksdb::Status::OK();
}

// Envs made by the env= factory: never destroyed (RocksDB may use them until exit).
std::mutex envs_mu;
std::map<std::string, rocksdb::Env *> *envs = new std::map<std::string, rocksdb::Env *>();

void
RegisterFactories(rocksdb::ObjectLibrary &lib)
{
    using rocksdb::ObjectLibrary;
    lib.AddFactory<rocksdb::FileSystem>(
        ObjectLibrary::PatternEntry("libtde", false).AddSeparator(":"),
        [](const std::string &uri, std::unique_ptr<rocksdb::FileSystem> *guard,
           std::string *errmsg) -> rocksdb::FileSystem * {
            std::shared_ptr<rocksdb::FileSystem> fs;
            rocksdb::Status s = NewEncryptedFileSystem(uri, &fs);
            if (!s.ok()) {
                *errmsg = s.ToString();
                return nullptr;
            }
            // The guard must own its object: wrap the shared one.
            struct Owner : rocksdb::FileSystemWrapper {
                using FileSystemWrapper::FileSystemWrapper;
                const char *
                Name() const override
                {
                    return "libtde-shared";
                }
            };
            guard->reset(new Owner(fs));
            return guard->get();
        });
    // The env= option rejects guarded objects: Envs live as long as the process, one per URI.
    lib.AddFactory<rocksdb::Env>(ObjectLibrary::PatternEntry("libtde", false).AddSeparator(":"),
                                 [](const std::string &uri, std::unique_ptr<rocksdb::Env> *,
                                    std::string *errmsg) -> rocksdb::Env * {
                                     std::lock_guard<std::mutex> lock(envs_mu);
                                     auto it = envs->find(uri);
                                     if (it != envs->end())
                                         return it->second;
                                     std::unique_ptr<rocksdb::Env> env;
                                     rocksdb::Status s = NewEncryptedEnv(uri, &env);
                                     if (!s.ok()) {
                                         *errmsg = s.ToString();
                                         return nullptr;
                                     }
                                     (*envs)[uri] = env.get();
                                     return env.release();
                                 });
}

std::once_flag register_once;

// Loading the library (LD_PRELOAD into the stock tools, or linking it) registers the factories.
const int registered_at_load = (tde_rocksdb_register(), 0);

} // namespace

void
ReleaseRegisteredEnvsForTests()
{
    std::lock_guard<std::mutex> lock(envs_mu);
    for (auto &e : *envs)
        delete e.second;
    envs->clear();
}

rocksdb::Status
NewEncryptedFileSystem(const tde_rocksdb_config &cfg, std::shared_ptr<rocksdb::FileSystem> *out)
{
    std::shared_ptr<KeyManagerHandle> h;
    rocksdb::Status s = OpenHandle(cfg, &h);
    if (!s.ok())
        return s;
    *out = std::make_shared<EncryptedFileSystem>(rocksdb::FileSystem::Default(), h);
    return rocksdb::Status::OK();
}

rocksdb::Status
NewEncryptedFileSystem(const std::string &uri, std::shared_ptr<rocksdb::FileSystem> *out)
{
    ParsedUri p;
    rocksdb::Status s = ParseUri(uri, &p);
    if (!s.ok())
        return s;
    return NewEncryptedFileSystem(p.cfg, out);
}

rocksdb::Status
NewEncryptedEnv(const tde_rocksdb_config &cfg, std::unique_ptr<rocksdb::Env> *out)
{
    std::shared_ptr<rocksdb::FileSystem> fs;
    rocksdb::Status s = NewEncryptedFileSystem(cfg, &fs);
    if (!s.ok())
        return s;
    *out = rocksdb::NewCompositeEnv(fs);
    return rocksdb::Status::OK();
}

rocksdb::Status
NewEncryptedEnv(const std::string &uri, std::unique_ptr<rocksdb::Env> *out)
{
    ParsedUri p;
    rocksdb::Status s = ParseUri(uri, &p);
    if (!s.ok())
        return s;
    return NewEncryptedEnv(p.cfg, out);
}

bool
IsEncryptedFileSystem(const rocksdb::FileSystem *fs)
{
    while (fs != nullptr) {
        if (dynamic_cast<const EncryptedFileSystem *>(fs) != nullptr)
            return true;
        auto *w = dynamic_cast<const rocksdb::FileSystemWrapper *>(fs);
        fs = w != nullptr ? w->target() : nullptr;
    }
    return false;
}

rocksdb::Status
CheckEncryptedOptions(const rocksdb::DBOptions &opts)
{
    const rocksdb::Env *env = opts.env != nullptr ? opts.env : rocksdb::Env::Default();
    if (!IsEncryptedFileSystem(env->GetFileSystem().get()))
        return rocksdb::Status::InvalidArgument(
            "libtde: the options' Env does not encrypt (was \"env=libtde:...\" parsed without "
            "libtde-rocksdb loaded?)");
    if (opts.allow_mmap_reads || opts.allow_mmap_writes)
        return rocksdb::Status::NotSupported("libtde: turn off allow_mmap_reads/writes");
    if (opts.use_direct_io_for_flush_and_compaction)
        return rocksdb::Status::NotSupported(
            "libtde: turn off use_direct_io_for_flush_and_compaction");
    return rocksdb::Status::OK();
}

namespace
{
EncryptedFileSystem *
FindEncrypted(rocksdb::FileSystem *fs)
{
    while (fs != nullptr) {
        if (auto *e = dynamic_cast<EncryptedFileSystem *>(fs))
            return e;
        auto *w = dynamic_cast<rocksdb::FileSystemWrapper *>(fs);
        fs = w != nullptr ? w->target() : nullptr;
    }
    return nullptr;
}

struct KeyWalk {
    uint64_t key_id;
    std::vector<std::string> *names;
    bool current = false;
};
} // namespace

rocksdb::Status
FilesUsingKey(rocksdb::DB *db, uint64_t key_id, std::vector<std::string> *names)
{
    EncryptedFileSystem *fs = FindEncrypted(db->GetEnv()->GetFileSystem().get());
    if (fs == nullptr)
        return rocksdb::Status::InvalidArgument("libtde: the database's Env does not encrypt");
    names->clear();
    KeyWalk walk{key_id, names};
    tde_status st = tde_keymgr_list_files(
        fs->key_manager()->km,
        [](void *arg, const tde_keymgr_file_info *f) {
            auto *w = static_cast<KeyWalk *>(arg);
            if (f->key_id == w->key_id)
                w->names->push_back(f->name);
            return 0;
        },
        &walk);
    if (st != TDE_OK)
        return StatusFromTde(st, "libtde");
    return rocksdb::Status::OK();
}

rocksdb::Status
RetireKey(rocksdb::DB *db, uint64_t key_id, std::vector<std::string> *remaining,
          const std::vector<rocksdb::ColumnFamilyHandle *> &cfs)
{
    EncryptedFileSystem *fs = FindEncrypted(db->GetEnv()->GetFileSystem().get());
    if (fs == nullptr)
        return rocksdb::Status::InvalidArgument("libtde: the database's Env does not encrypt");
    tde_keymgr *km = fs->key_manager()->km;
    std::vector<std::string> unused;
    KeyWalk walk{key_id, &unused};
    tde_status st = tde_keymgr_list_keys(
        km,
        [](void *arg, const tde_keymgr_key_info *k) {
            auto *w = static_cast<KeyWalk *>(arg);
            if (k->id == w->key_id && k->current)
                w->current = true;
            return 0;
        },
        &walk);
    if (st == TDE_OK && walk.current)
        st = tde_keymgr_rotate_data_key(km);
    if (st != TDE_OK)
        return StatusFromTde(st, "libtde");
    std::vector<rocksdb::ColumnFamilyHandle *> all = cfs;
    if (all.empty())
        all.push_back(db->DefaultColumnFamily());
    for (rocksdb::ColumnFamilyHandle *cf : all) {
        rocksdb::Status s = db->Flush(rocksdb::FlushOptions(), cf);
        if (!s.ok())
            return s;
        // Blob files are rewritten only by garbage collection: collect all of them once.
        rocksdb::Options cur = db->GetOptions(cf);
        bool blobs = cur.enable_blob_files;
        if (blobs) {
            s = db->SetOptions(cf, {{"enable_blob_garbage_collection", "true"},
                                    {"blob_garbage_collection_age_cutoff", "1.0"}});
            if (!s.ok())
                return s;
        }
        rocksdb::CompactRangeOptions cro;
        cro.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
        s = db->CompactRange(cro, cf, nullptr, nullptr);
        if (blobs) {
            rocksdb::Status r =
                db->SetOptions(cf, {{"enable_blob_garbage_collection",
                                     cur.enable_blob_garbage_collection ? "true" : "false"},
                                    {"blob_garbage_collection_age_cutoff",
                                     std::to_string(cur.blob_garbage_collection_age_cutoff)}});
            if (s.ok())
                s = r;
        }
        if (!s.ok())
            return s;
    }
    return FilesUsingKey(db, key_id, remaining);
}

// ---- Self-contained key metadata for checkpoints and backups ----

namespace
{
tde_status
CopyKeys(rocksdb::FileSystem *fs, const std::string &data_dir, const std::string &dest_dir,
         const std::string &root_name, const std::string &dest_master_key_uri, uint64_t *n)
{
    EncryptedFileSystem *efs = FindEncrypted(fs);
    if (efs == nullptr)
        return tde_set_last_error(
            TDE_ERR_INVALID_ARG,
            "libtde: the Env's file system does not encrypt (no key manager to copy)");
    tde_status st = tde_keymgr_copy_subset(
        efs->key_manager()->km, data_dir.c_str(), dest_dir.c_str(), root_name.c_str(),
        dest_master_key_uri.empty() ? nullptr : dest_master_key_uri.c_str(), n);
    return tde_set_last_error(st,
                              st == TDE_OK ? "" : StatusFromTde(st, "libtde").ToString().c_str());
}

rocksdb::Status
CopyStatus(tde_status st)
{
    switch (st) {
    case TDE_OK: return rocksdb::Status::OK();
    case TDE_ERR_INVALID_ARG: return rocksdb::Status::InvalidArgument(tde_last_error());
    default: return rocksdb::Status::IOError(tde_last_error());
    }
}
} // namespace

rocksdb::Status
CopyKeyMetadata(rocksdb::FileSystem *fs, const std::string &data_dir,
                const std::string &dest_keymgr_dir, const std::string &root_name,
                const std::string &dest_master_key_uri, uint64_t *n_files)
{
    return CopyStatus(
        CopyKeys(fs, data_dir, dest_keymgr_dir, root_name, dest_master_key_uri, n_files));
}

rocksdb::Status
CopyKeyMetadata(rocksdb::Env *env, const std::string &data_dir, const std::string &dest_keymgr_dir,
                const std::string &root_name, const std::string &dest_master_key_uri,
                uint64_t *n_files)
{
    if (env == nullptr)
        return rocksdb::Status::InvalidArgument("libtde: CopyKeyMetadata: no Env");
    return CopyKeyMetadata(env->GetFileSystem().get(), data_dir, dest_keymgr_dir, root_name,
                           dest_master_key_uri, n_files);
}

rocksdb::Status
CreateCheckpoint(rocksdb::DB *db, const std::string &checkpoint_dir, const std::string &root_name,
                 uint64_t log_size_for_flush, uint64_t *sequence_number)
{
    if (FindEncrypted(db->GetEnv()->GetFileSystem().get()) == nullptr)
        return rocksdb::Status::InvalidArgument("libtde: the database's Env does not encrypt");
    rocksdb::Checkpoint *raw = nullptr;
    rocksdb::Status s = rocksdb::Checkpoint::Create(db, &raw);
    std::unique_ptr<rocksdb::Checkpoint> cp(raw);
    if (s.ok())
        s = cp->CreateCheckpoint(checkpoint_dir, log_size_for_flush, sequence_number);
    if (!s.ok())
        return s;
    s = CopyKeyMetadata(db->GetEnv(), checkpoint_dir,
                        checkpoint_dir + "/" + kCheckpointKeyManagerDir, root_name);
    if (!s.ok())
        return rocksdb::Status::IOError(
            "libtde: checkpoint " + checkpoint_dir +
            " was created but its key metadata was not (it still opens with the database's "
            "key manager; retry with tde::CopyKeyMetadata): " +
            s.ToString());
    return s;
}

} // namespace tde

#if ROCKSDB_MAJOR == 7 && ROCKSDB_MINOR == 8
// A replica of RocksDB 7.8's private struct in db/c.cc (checked by the version test above).
struct rocksdb_env_t {
    rocksdb::Env *rep;
    bool is_default;
};
#define TDE_ROCKSDB_ENV_REPLICA 1
#endif

namespace
{
tde_status
CError(tde_status st, const rocksdb::Status &s)
{
    return tde_set_last_error(st, s.ToString().c_str());
}
} // namespace

extern "C" TDE_API tde_status
tde_rocksdb_env_new(rocksdb_env_t **out, const tde_rocksdb_config *cfg)
{
    if (out == nullptr || cfg == nullptr)
        return CError(TDE_ERR_INVALID_ARG, rocksdb::Status::InvalidArgument(
                                               "libtde: tde_rocksdb_env_new: NULL argument"));
#ifdef TDE_ROCKSDB_ENV_REPLICA
    std::unique_ptr<rocksdb::Env> env;
    rocksdb::Status s = tde::NewEncryptedEnv(*cfg, &env);
    if (!s.ok())
        return CError(s.IsInvalidArgument() ? TDE_ERR_INVALID_ARG : TDE_ERR_IO, s);
    *out = new rocksdb_env_t{env.release(), false};
    return TDE_OK;
#else
    return CError(TDE_ERR_UNSUPPORTED,
                  rocksdb::Status::NotSupported("libtde: rocksdb_env_t replica checked for RocksDB "
                                                "7.8 only; use env=libtde:... options strings"));
#endif
}

extern "C" TDE_API tde_status
tde_rocksdb_env_new_from_uri(rocksdb_env_t **out, const char *uri)
{
    if (uri == nullptr)
        return CError(TDE_ERR_INVALID_ARG, rocksdb::Status::InvalidArgument(
                                               "libtde: tde_rocksdb_env_new_from_uri: NULL uri"));
    tde::ParsedUri p;
    rocksdb::Status s = tde::ParseUri(uri, &p);
    if (!s.ok())
        return CError(TDE_ERR_INVALID_ARG, s);
    return tde_rocksdb_env_new(out, &p.cfg);
}

extern "C" TDE_API const char *
tde_rocksdb_last_error(void)
{
    return tde_last_error();
}

extern "C" TDE_API const char *
tde_rocksdb_register(void)
{
    std::call_once(tde::register_once,
                   [] { tde::RegisterFactories(*rocksdb::ObjectLibrary::Default()); });
    return TDE_ROCKSDB_URI_PREFIX;
}

// ---- Self-contained key metadata (C) ----

extern "C" TDE_API tde_status
tde_rocksdb_copy_key_metadata(rocksdb_env_t *env, const char *data_dir, const char *dest_dir,
                              const char *root_name)
{
    if (env == nullptr || data_dir == nullptr || dest_dir == nullptr)
        return CError(TDE_ERR_INVALID_ARG,
                      rocksdb::Status::InvalidArgument(
                          "libtde: tde_rocksdb_copy_key_metadata: NULL argument"));
#ifdef TDE_ROCKSDB_ENV_REPLICA
    rocksdb::Env *e = env->rep != nullptr ? env->rep : rocksdb::Env::Default();
    return tde::CopyKeys(e->GetFileSystem().get(), data_dir, dest_dir,
                         root_name != nullptr ? root_name : "db", "", nullptr);
#else
    return CError(TDE_ERR_UNSUPPORTED,
                  rocksdb::Status::NotSupported("libtde: rocksdb_env_t replica checked for RocksDB "
                                                "7.8 only; use tde::CopyKeyMetadata from C++"));
#endif
}

// ---- Offline maintenance of a stopped database (tde-ctl retire-key, rewrite) ----

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/db.h>
#include <rocksdb/utilities/options_util.h>

#define TDE_RET_IF(expr)                                                                           \
    do {                                                                                           \
        tde_status tde_st_ = (expr);                                                               \
        if (tde_st_ != TDE_OK)                                                                     \
            return tde_st_;                                                                        \
    } while (0)

namespace
{
tde_status
MaintError(tde_status st, const std::string &msg)
{
    return tde_set_last_error(st, msg.c_str());
}

std::string
HexId(uint64_t id)
{
    char buf[17];
    snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)id);
    return buf;
}

// A process holding RocksDB's LOCK (fcntl) or the key manager's (flock) is running the database.
tde_status
CheckStopped(const tde_rocksdb_maint_options *o)
{
    std::string lock = std::string(o->db_path) + "/LOCK";
    int fd = open(lock.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        struct flock fl {
        };
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        int r = fcntl(fd, F_GETLK, &fl);
        close(fd);
        if (r == 0 && fl.l_type != F_UNLCK)
            return MaintError(TDE_ERR_LOCKED, "libtde: database " + std::string(o->db_path) +
                                                  " is open by pid " + std::to_string(fl.l_pid) +
                                                  " (it holds " + lock + "); stop it first");
    }
    std::string kl = std::string(o->config->keymgr_dir) + "/keymgr.lock";
    fd = open(kl.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
            char pid[32];
            ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            close(fd);
            return MaintError(TDE_ERR_LOCKED,
                              "libtde: key manager " + std::string(o->config->keymgr_dir) +
                                  " is in use by pid " + (pid[0] ? pid : "unknown") +
                                  " (it holds " + kl + "); stop that process first");
        }
        close(fd);
    }
    return TDE_OK;
}

tde_status
StatusError(const rocksdb::Status &s)
{
    return MaintError(s.IsInvalidArgument() ? TDE_ERR_INVALID_ARG : TDE_ERR_IO, s.ToString());
}

// The database opened with every column family, through the encrypted Env.
struct MaintDb {
    std::unique_ptr<rocksdb::Env> env;
    tde_keymgr *km = nullptr;
    rocksdb::DB *db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle *> cfs;

    tde_status
    Open(const tde_rocksdb_maint_options *o)
    {
        rocksdb::DBOptions dbo;
        std::vector<rocksdb::ColumnFamilyDescriptor> descs;
        rocksdb::ConfigOptions co;
        co.env = env.get();
        rocksdb::Status s = rocksdb::LoadLatestOptions(co, o->db_path, &dbo, &descs);
        if (!s.ok())
            return StatusError(s);
        dbo.env = env.get();
        dbo.create_if_missing = false;
        s = rocksdb::DB::Open(dbo, o->db_path, descs, &cfs, &db);
        return s.ok() ? TDE_OK : StatusError(s);
    }

    tde_status
    Close()
    {
        rocksdb::Status s;
        for (auto *h : cfs)
            if (s.ok())
                s = db->DestroyColumnFamilyHandle(h);
        cfs.clear();
        if (db != nullptr && s.ok())
            s = db->Close();
        delete db;
        db = nullptr;
        return s.ok() ? TDE_OK : StatusError(s);
    }

    ~MaintDb() { (void)Close(); }
};

tde_status
MaintStart(const tde_rocksdb_maint_options *o, MaintDb *m)
{
    if (o == nullptr || o->version != TDE_ROCKSDB_MAINT_VERSION || o->db_path == nullptr ||
        o->config == nullptr || o->config->keymgr_dir == nullptr || o->config->read_only)
        return MaintError(TDE_ERR_INVALID_ARG,
                          "libtde: maintenance needs a db_path and a writable configuration");
    TDE_RET_IF(CheckStopped(o));
    rocksdb::Status s = tde::NewEncryptedEnv(*o->config, &m->env);
    if (!s.ok())
        return StatusError(s);
    m->km = tde::FindEncrypted(m->env->GetFileSystem().get())->key_manager()->km;
    return TDE_OK;
}

// Reopens once (new WAL, MANIFEST and OPTIONS under the current key; the older OPTIONS file
// goes) and rewrites IDENTITY, which RocksDB never rewrites, through the Env.
tde_status
MaintRoll(const tde_rocksdb_maint_options *o, MaintDb *m)
{
    TDE_RET_IF(m->Close());
    TDE_RET_IF(m->Open(o));
    TDE_RET_IF(m->Close());
    std::string id, path = std::string(o->db_path) + "/IDENTITY", tmp = path + ".tde-tmp";
    rocksdb::Status s = rocksdb::ReadFileToString(m->env.get(), path, &id);
    if (s.IsNotFound() || s.IsPathNotFound())
        return TDE_OK;
    if (s.ok())
        s = rocksdb::WriteStringToFile(m->env.get(), id, tmp, true);
    if (s.ok())
        s = m->env->RenameFile(tmp, path);
    return s.ok() ? TDE_OK : StatusError(s);
}

bool
KeyExists(tde_keymgr *km, uint64_t id, bool *current)
{
    struct Find {
        uint64_t id;
        bool found, current;
    } f{id, false, false};
    if (tde_keymgr_list_keys(
            km,
            [](void *arg, const tde_keymgr_key_info *k) {
                auto *f = static_cast<Find *>(arg);
                if (k->id == f->id)
                    f->found = true, f->current = k->current;
                return 0;
            },
            &f) != TDE_OK)
        return false;
    *current = f.current;
    return f.found;
}
} // namespace

extern "C" TDE_API tde_status
tde_rocksdb_retire_key(const tde_rocksdb_maint_options *o, uint64_t key_id)
{
    MaintDb m;
    bool current = false;
    TDE_RET_IF(MaintStart(o, &m));
    if (!KeyExists(m.km, key_id, &current))
        return MaintError(TDE_ERR_NOT_FOUND, "libtde: key manager " +
                                                 std::string(o->config->keymgr_dir) +
                                                 " has no data key " + HexId(key_id));
    // Rotate before opening, so the new WAL, MANIFEST and OPTIONS already use the new key.
    if (current && tde_keymgr_rotate_data_key(m.km) != TDE_OK)
        return MaintError(TDE_ERR_IO, tde_last_error());
    TDE_RET_IF(m.Open(o));
    std::vector<rocksdb::ColumnFamilyHandle *> chosen;
    for (size_t i = 0; i < o->n_column_families; i++) {
        rocksdb::ColumnFamilyHandle *found = nullptr;
        for (auto *h : m.cfs)
            if (h->GetName() == o->column_families[i])
                found = h;
        if (found == nullptr)
            return MaintError(TDE_ERR_NOT_FOUND, "libtde: database " + std::string(o->db_path) +
                                                     " has no column family " +
                                                     o->column_families[i]);
        chosen.push_back(found);
    }
    if (chosen.empty())
        chosen = m.cfs;
    std::vector<std::string> remaining;
    rocksdb::Status s = tde::RetireKey(m.db, key_id, &remaining, chosen);
    if (!s.ok())
        return StatusError(s);
    TDE_RET_IF(MaintRoll(o, &m));
    struct Walk {
        const tde_rocksdb_maint_options *o;
        uint64_t id;
    } w{o, key_id};
    if (tde_keymgr_list_files(
            m.km,
            [](void *arg, const tde_keymgr_file_info *f) {
                auto *w = static_cast<Walk *>(arg);
                if (f->key_id != w->id || w->o->fn == nullptr)
                    return 0;
                return w->o->fn(w->o->arg, f->name, w->id);
            },
            &w) != TDE_OK)
        return MaintError(TDE_ERR_IO, tde_last_error());
    return TDE_OK;
}

extern "C" TDE_API tde_status
tde_rocksdb_rewrite(const tde_rocksdb_maint_options *o, bool rotate, uint64_t *current_key)
{
    MaintDb m;
    TDE_RET_IF(MaintStart(o, &m));
    if (rotate && tde_keymgr_rotate_data_key(m.km) != TDE_OK)
        return MaintError(TDE_ERR_IO, tde_last_error());
    tde_keymgr_metrics met{};
    met.version = TDE_KEYMGR_METRICS_VERSION;
    if (tde_keymgr_metrics_get(m.km, &met) != TDE_OK)
        return MaintError(TDE_ERR_IO, tde_last_error());
    TDE_RET_IF(m.Open(o));
    // Key id 0 is never a data key: every column family is flushed and compacted, none rotated.
    std::vector<std::string> unused;
    rocksdb::Status s = tde::RetireKey(m.db, 0, &unused, m.cfs);
    if (!s.ok())
        return StatusError(s);
    TDE_RET_IF(MaintRoll(o, &m));
    if (current_key != nullptr)
        *current_key = met.current_key_id;
    std::vector<std::string> names;
    s = m.env->GetChildren(o->db_path, &names);
    if (!s.ok())
        return StatusError(s);
    for (const auto &n : names) {
        std::string path = std::string(o->db_path) + "/" + n;
        struct stat sb;
        if (n == "LOCK" || stat(path.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode))
            continue; // LOCK is empty and never encrypted
        tde_file_key *fk = nullptr;
        uint64_t id = 0;
        if (tde_keymgr_get_file(m.km, path.c_str(), &fk) == TDE_OK &&
            tde_file_key_method(fk) != TDE_METHOD_PLAINTEXT)
            id = tde_file_key_id(fk);
        tde_file_key_free(fk);
        if (id != met.current_key_id && o->fn != nullptr && o->fn(o->arg, path.c_str(), id) != 0)
            break;
    }
    return TDE_OK;
}
