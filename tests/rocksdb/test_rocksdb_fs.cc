// The encrypted RocksDB FileSystem against real RocksDB 7.8: every file RocksDB writes is
// scanned for plaintext, everything reads back, and the keystream audit stays at zero.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
extern "C" {
#include <cmocka.h>
}

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/utilities/object_registry.h>

extern "C" {
#include "common/fileio.h" // failpoints (libtde's internal test hooks)
}
#include "encrypted_fs.h"
#include "rocksdb_test_util.h"
#include "tde/rocksdb.hpp"

using namespace tde_test;

namespace
{

const char *self_exe;

// A scratch area: key file, key-manager directory, database directories.
struct Fixture {
    std::string root, keyfile, kmdir, db;
    explicit Fixture(const char *tag) : root(TmpDir(tag))
    {
        keyfile = root + "/master.key";
        kmdir = root + "/km";
        db = root + "/db";
        std::ofstream(keyfile) << kMasterHex << "\n";
        chmod(keyfile.c_str(), 0600);
    }
    ~Fixture() { RmTree(root); }
    std::string
    Uri(const char *method = "aes256-ctr", const char *extra = "") const
    {
        return std::string("libtde:") + kmdir + ",master:file://" + keyfile + ",method:" + method +
               extra;
    }
};

rocksdb::Options
BaseOptions(rocksdb::Env *env)
{
    rocksdb::Options o;
    o.create_if_missing = true;
    o.env = env;
    o.compression = rocksdb::kNoCompression; // a leak must stay visible to the scan
    o.write_buffer_size = 64 << 10;
    o.max_write_buffer_number = 2;
    o.level0_file_num_compaction_trigger = 2;
    o.target_file_size_base = 128 << 10;
    o.enable_blob_files = true;
    o.min_blob_size = 150;
    o.max_total_wal_size = 256 << 10;
    return o;
}

// Puts @p n records, flushes, compacts, writes an external SST and ingests it.
void
Workload(rocksdb::DB *db, const rocksdb::Options &opts, const std::string &sst_dir, int n)
{
    rocksdb::WriteOptions wo;
    for (int i = 0; i < n; i++)
        ASSERT_OK(db->Put(wo, Key(i), Value(i)));
    ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
    for (int i = 0; i < n; i += 2)
        ASSERT_OK(db->Put(wo, Key(i), Value(i)));
    ASSERT_OK(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr));
    mkdir(sst_dir.c_str(), 0700);
    std::string sst = sst_dir + "/ext.sst";
    rocksdb::SstFileWriter w(rocksdb::EnvOptions(), opts);
    ASSERT_OK(w.Open(sst));
    for (int i = n; i < n + 100; i++)
        ASSERT_OK(w.Put(Key(i), Value(i)));
    ASSERT_OK(w.Finish());
    rocksdb::IngestExternalFileOptions ifo;
    ifo.move_files = true;
    ASSERT_OK(db->IngestExternalFile({sst}, ifo));
}

void
CheckAll(rocksdb::DB *db, int n)
{
    for (int i = 0; i < n + 100; i++) {
        std::string v;
        ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
        assert_string_equal(v.c_str(), Value(i).c_str());
    }
}

// The scanner finds the markers in a plain database (so a zero below means something).
void
test_rocksdb_scan_finds_plaintext_in_plain_db(void **)
{
    Fixture fx("plain");
    rocksdb::Options o = BaseOptions(rocksdb::Env::Default());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    Workload(db, o, fx.root + "/ext", 2000);
    delete db;
    assert_true(PlaintextHits(fx.db) >= 3);
}

// Flush, compaction, WAL roll, blob files, ingestion, separate wal_dir and db_log_dir: no
// file anywhere holds plaintext, and everything reads back after reopening.
void
test_rocksdb_no_plaintext_on_disk(void **)
{
    Fixture fx("scan");
    uint64_t before = tde::KeystreamAuditViolations();
    {
        auto env = MakeEnv(fx.Uri());
        rocksdb::Options o = BaseOptions(env.get());
        o.wal_dir = fx.root + "/wal";
        o.db_log_dir = fx.root + "/log";
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        Workload(db, o, fx.root + "/ext", 2000);
        CheckAll(db, 2000);
        delete db;
        db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        CheckAll(db, 2000);
        delete db;
    }
    int files = 0;
    assert_int_equal(PlaintextHits(fx.root, &files), 0);
    assert_true(files > 8);
    assert_int_equal(tde::KeystreamAuditViolations(), before);
}

// MultiGet (batched MultiRead) and async iterator reads decrypt what they return.
void
test_rocksdb_multiget_and_async_reads(void **)
{
    Fixture fx("mget");
    auto env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    o.enable_blob_files = false;
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    Workload(db, o, fx.root + "/ext", 3000);
    delete db;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    for (bool async : {false, true}) {
        rocksdb::ReadOptions ro;
        ro.async_io = async;
        ro.fill_cache = false;
        std::vector<std::string> ks;
        for (int i = 0; i < 3100; i += 37)
            ks.push_back(Key(i));
        std::vector<rocksdb::Slice> keys(ks.begin(), ks.end());
        std::vector<rocksdb::PinnableSlice> vals(keys.size());
        std::vector<rocksdb::Status> sts(keys.size());
        db->MultiGet(ro, db->DefaultColumnFamily(), keys.size(), keys.data(), vals.data(),
                     sts.data());
        for (size_t i = 0; i < keys.size(); i++) {
            ASSERT_OK(sts[i]);
            assert_string_equal(vals[i].ToString().c_str(), Value((int)i * 37).c_str());
        }
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
        int n = 0;
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
            assert_memory_equal(it->value().data(), kValueMarker, strlen(kValueMarker));
            n++;
        }
        ASSERT_OK(it->status());
        assert_int_equal(n, 3100);
    }
    delete db;
}

// WAL recycling renames the old log and gives it a fresh IV: reads back, no keystream reuse.
void
test_rocksdb_wal_recycling(void **)
{
    Fixture fx("recycle");
    uint64_t before = tde::KeystreamAuditViolations();
    auto env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    o.recycle_log_file_num = 4;
    o.wal_recovery_mode = rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords;
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 300; i++)
            ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(round * 300 + i), Value(i)));
        ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
    }
    delete db;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    for (int i = 0; i < 1800; i++) {
        std::string v;
        ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
        assert_string_equal(v.c_str(), Value(i % 300).c_str());
    }
    delete db;
    assert_int_equal(PlaintextHits(fx.root), 0);
    assert_int_equal(tde::KeystreamAuditViolations(), before);
}

// Checkpoints (hard links + copied files) and the backup engine (backup_env = the encrypted
// Env): both open and read back, and their directories hold no plaintext.
void
test_rocksdb_checkpoint_and_backup(void **)
{
    Fixture fx("backup");
    auto env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    Workload(db, o, fx.root + "/ext", 1000);
    rocksdb::Checkpoint *cp = nullptr;
    ASSERT_OK(rocksdb::Checkpoint::Create(db, &cp));
    ASSERT_OK(cp->CreateCheckpoint(fx.root + "/checkpoint"));
    delete cp;
    rocksdb::BackupEngine *be = nullptr;
    rocksdb::BackupEngineOptions bo(fx.root + "/backup", env.get());
    ASSERT_OK(rocksdb::BackupEngine::Open(bo, env.get(), &be));
    ASSERT_OK(be->CreateNewBackup(db, true));
    delete db;
    ASSERT_OK(be->RestoreDBFromLatestBackup(fx.root + "/restored", fx.root + "/restored"));
    delete be;
    for (const char *dir : {"/checkpoint", "/restored"}) {
        ASSERT_OK(rocksdb::DB::Open(o, fx.root + dir, &db));
        CheckAll(db, 1000);
        delete db;
    }
    assert_int_equal(PlaintextHits(fx.root), 0);
}

// With named roots, a backup plus a copy of the key-manager directory restores on "another
// host" (another directory tree) after the source database and its tree are deleted.
void
test_rocksdb_backup_restores_elsewhere(void **)
{
    Fixture fx("roots");
    Fixture there("roots-there");
    std::string backup = fx.root + "/backup";
    mkdir(fx.db.c_str(), 0700);
    mkdir(backup.c_str(), 0700);
    {
        auto env =
            MakeEnv(fx.Uri("aes256-ctr", (",root:db:" + fx.db + ",root:backup:" + backup).c_str()));
        rocksdb::Options o = BaseOptions(env.get());
        o.enable_blob_files = false;
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        for (int i = 0; i < 1100; i++)
            ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(i), Value(i)));
        ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
        rocksdb::BackupEngine *be = nullptr;
        ASSERT_OK(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(backup, env.get()),
                                              env.get(), &be));
        ASSERT_OK(be->CreateNewBackup(db, true));
        delete be;
        delete db;
    }
    assert_int_equal(PlaintextHits(backup), 0);
    std::string cmd = "cp -a '" + backup + "' '" + there.root + "/backup' && cp -a '" + fx.kmdir +
                      "' '" + there.kmdir + "' && rm -rf '" + fx.db + "' '" + backup + "' '" +
                      fx.kmdir + "'";
    assert_int_equal(system(cmd.c_str()), 0);
    mkdir(there.db.c_str(), 0700);
    std::string there_backup = there.root + "/backup";
    auto env = MakeEnv("libtde:" + there.kmdir + ",master:file://" + fx.keyfile +
                       ",root:db:" + there.db + ",root:backup:" + there_backup);
    rocksdb::BackupEngine *be = nullptr;
    ASSERT_OK(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(there_backup, env.get()),
                                          env.get(), &be));
    ASSERT_OK(be->RestoreDBFromLatestBackup(there.db, there.db));
    delete be;
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, there.db, &db));
    CheckAll(db, 1000);
    delete db;
    assert_int_equal(PlaintextHits(there.root), 0);
}

// Ingestion copies or moves, with and without write_global_seqno; an overlapping file gets a
// global sequence number (kept in the MANIFEST: the file itself is never rewritten).
void
test_rocksdb_ingestion_variants(void **)
{
    Fixture fx("ingest");
    uint64_t before = tde::KeystreamAuditViolations();
    auto env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    for (int i = 0; i < 100; i++)
        ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(i), "old"));
    const rocksdb::Snapshot *snap = db->GetSnapshot(); // forces a global seqno
    int round = 0;
    for (bool move : {false, true}) {
        for (bool write_seqno : {false, true}) {
            std::string sst = fx.root + "/ext" + std::to_string(round) + ".sst";
            rocksdb::SstFileWriter w(rocksdb::EnvOptions(), o);
            ASSERT_OK(w.Open(sst));
            for (int i = 0; i < 100; i++)
                ASSERT_OK(w.Put(Key(i), Value(round * 1000 + i)));
            ASSERT_OK(w.Finish());
            rocksdb::IngestExternalFileOptions ifo;
            ifo.move_files = move;
            ifo.write_global_seqno = write_seqno;
            ASSERT_OK(db->IngestExternalFile({sst}, ifo));
            round++;
        }
    }
    db->ReleaseSnapshot(snap);
    delete db;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    for (int i = 0; i < 100; i++) {
        std::string v;
        ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
        assert_string_equal(v.c_str(), Value(3000 + i).c_str());
    }
    ASSERT_OK(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr));
    delete db;
    assert_int_equal(PlaintextHits(fx.root), 0);
    assert_int_equal(tde::KeystreamAuditViolations(), before);
}

// Unsafe write modes are refused with a message that says what to turn off.
void
test_rocksdb_unsafe_modes_refused(void **)
{
    Fixture fx("unsafe");
    auto env = MakeEnv(fx.Uri());
    struct {
        bool rocksdb::DBOptions::*flag;
        const char *says;
    } cases[] = {{&rocksdb::DBOptions::allow_mmap_writes, "allow_mmap_writes"},
                 {&rocksdb::DBOptions::use_direct_io_for_flush_and_compaction,
                  "use_direct_io_for_flush_and_compaction"}};
    for (auto &c : cases) {
        rocksdb::Options o = BaseOptions(env.get());
        o.*(c.flag) = true;
        rocksdb::DB *db = nullptr;
        rocksdb::Status s = rocksdb::DB::Open(o, fx.db + c.says, &db);
        if (s.ok()) { // direct I/O may be refused only at the first table write
            for (int i = 0; i < 10 && s.ok(); i++)
                s = db->Put(rocksdb::WriteOptions(), Key(i), Value(i));
            if (s.ok())
                s = db->Flush(rocksdb::FlushOptions());
            delete db;
        }
        assert_false(s.ok());
        assert_non_null(strstr(s.ToString().c_str(), c.says));
        assert_false(tde::CheckEncryptedOptions(o).ok());
    }
}

// A writable handle refuses a write below its high-water mark.
void
test_rocksdb_rewrite_below_high_water_mark_fails(void **)
{
    Fixture fx("hwm");
    std::shared_ptr<rocksdb::FileSystem> fs;
    ASSERT_OK(tde::NewEncryptedFileSystem(fx.Uri(), &fs));
    mkdir(fx.db.c_str(), 0700);
    std::unique_ptr<rocksdb::FSWritableFile> f;
    rocksdb::FileOptions fo;
    ASSERT_OK(fs->NewWritableFile(fx.db + "/f", fo, &f, nullptr));
    ASSERT_OK(f->Append("0123456789", rocksdb::IOOptions(), nullptr));
    rocksdb::IOStatus s = f->PositionedAppend("abc", 4, rocksdb::IOOptions(), nullptr);
    assert_false(s.ok());
    assert_non_null(strstr(s.ToString().c_str(), "high-water mark"));
    ASSERT_OK(f->Truncate(5, rocksdb::IOOptions(), nullptr));
    assert_false(f->Append("zz", rocksdb::IOOptions(), nullptr).ok());
    ASSERT_OK(f->Close(rocksdb::IOOptions(), nullptr));
    // An existing file is never opened for random writes.
    std::unique_ptr<rocksdb::FSRandomRWFile> rw;
    s = fs->NewRandomRWFile(fx.db + "/f", fo, &rw, nullptr);
    assert_true(s.IsNotSupported());
    assert_non_null(strstr(s.ToString().c_str(), "write_global_seqno=false"));
}

// The options-string path: "env=libtde:..." creates the encrypted Env; an unregistered id
// (silently the default Env in RocksDB 7.8) is caught by CheckEncryptedOptions().
void
test_rocksdb_options_string(void **)
{
    Fixture fx("optstr");
    rocksdb::ConfigOptions co;
    rocksdb::DBOptions base, out;
    ASSERT_OK(rocksdb::GetDBOptionsFromString(co, base, "env=" + fx.Uri(), &out));
    ASSERT_OK(tde::CheckEncryptedOptions(out));
    rocksdb::Options o(out, rocksdb::ColumnFamilyOptions());
    o.create_if_missing = true;
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(1), Value(1)));
    delete db;
    assert_int_equal(PlaintextHits(fx.root), 0);
    rocksdb::DBOptions other;
    rocksdb::Status s = rocksdb::GetDBOptionsFromString(co, base, "env=libtdx:/nowhere", &other);
    assert_true(!s.ok() || !tde::CheckEncryptedOptions(other).ok());
    s = rocksdb::GetDBOptionsFromString(co, base, "env=libtde:/x,bogus:1", &other);
    assert_false(s.ok());
}

// Old files keep their method when the method changes; a plaintext DB becomes readable under
// the encrypted Env and its new files are encrypted.
void
test_rocksdb_method_switch_and_plaintext_migration(void **)
{
    Fixture fx("switch");
    rocksdb::DB *db = nullptr;
    {
        rocksdb::Options o = BaseOptions(rocksdb::Env::Default());
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        for (int i = 0; i < 500; i++)
            ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(i), Value(i)));
        ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
        delete db;
    }
    for (const char *method : {"aes128-ctr", "aes256-ctr"}) {
        // Files written before encryption was turned on have no entry: enforce off.
        auto env = MakeEnv(fx.Uri(method, ",enforce:0"));
        rocksdb::Options o = BaseOptions(env.get());
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        for (int i = 0; i < 500; i++) {
            std::string v;
            ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
            assert_string_equal(v.c_str(), Value(i).c_str());
        }
        for (int i = 0; i < 500; i++)
            ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(i), Value(i)));
        ASSERT_OK(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr));
        delete db;
    }
    assert_int_equal(PlaintextHits(fx.db), 0);
}

// A wrong master key, a damaged key manager and a file deleted behind RocksDB's back give
// clear errors naming what failed.
void
test_rocksdb_errors_are_clear(void **)
{
    Fixture fx("errors");
    {
        auto env = MakeEnv(fx.Uri());
        rocksdb::Options o = BaseOptions(env.get());
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        Workload(db, o, fx.root + "/ext", 500);
        delete db;
    }
    std::string wrong = fx.root + "/wrong.key";
    std::ofstream(wrong) << "ff112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0\n";
    std::unique_ptr<rocksdb::Env> env;
    rocksdb::Status s =
        tde::NewEncryptedEnv("libtde:" + fx.kmdir + ",master:file://" + wrong, &env);
    assert_false(s.ok());
    print_message("wrong master key: %s\n", s.ToString().c_str());
    assert_true(s.IsIOError());
    // A deleted SST: RocksDB's own error names the file; nothing else is touched.
    std::vector<std::string> files;
    ListFiles(fx.db, &files);
    for (const std::string &f : files)
        if (f.size() > 4 && f.compare(f.size() - 4, 4, ".sst") == 0) {
            unlink(f.c_str());
            break;
        }
    env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    s = rocksdb::DB::Open(o, fx.db, &db);
    if (s.ok()) {
        std::string v;
        for (int i = 0; i < 600 && s.ok(); i++)
            s = db->Get(rocksdb::ReadOptions(), Key(i), &v);
        delete db;
    }
    assert_false(s.ok());
    print_message("deleted SST: %s\n", s.ToString().c_str());
}

// kill -9 a writer mid-stream (a separate process), reopen, find every acknowledged write.
void
test_rocksdb_kill9_recovery(void **)
{
    Fixture fx("kill9");
    uint64_t seed = 12345;
    for (int iter = 0; iter < 5; iter++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(fds[1], 1);
            close(fds[0]);
            execl(self_exe, self_exe, "--writer", fx.db.c_str(), fx.Uri().c_str(),
                  std::to_string(iter * 100000).c_str(), (char *)nullptr);
            _exit(127);
        }
        close(fds[1]);
        // Kill at a random instant after the writer's first acknowledged write.
        std::string acked;
        char buf[4096];
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n > 0)
            acked.append(buf, (size_t)n);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        usleep(20000 + (seed >> 33) % 300000);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while ((n = read(fds[0], buf, sizeof(buf))) > 0)
            acked.append(buf, (size_t)n);
        close(fds[0]);
        int last = -1;
        std::istringstream ls(acked);
        std::string line;
        while (std::getline(ls, line))
            if (!line.empty() && line.back() != '\n')
                last = atoi(line.c_str());
        auto env = MakeEnv(fx.Uri());
        rocksdb::Options o = BaseOptions(env.get());
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        for (int i = iter * 100000; i <= last; i++) {
            std::string v;
            ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
            assert_string_equal(v.c_str(), Value(i).c_str());
        }
        delete db;
        print_message("iteration %d: %d acknowledged writes recovered\n", iter,
                      last - iter * 100000 + 1);
        assert_true(last >= iter * 100000);
    }
    assert_int_equal(PlaintextHits(fx.root), 0);
}

// A database life cycle that renames CURRENT/OPTIONS (*.dbtmp) and the LOG through the
// adapter; with a key-manager failpoint armed, the process dies at its nth hit.
int
Crasher(const char *failpoint, unsigned long nth, const char *dir, const char *uri)
{
    std::unique_ptr<rocksdb::Env> env;
    if (!tde::NewEncryptedEnv(uri, &env).ok())
        return 2;
    tde_failpoint_arm(failpoint, nth, 99);
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::WriteOptions wo;
    wo.sync = true;
    for (int round = 0; round < 3; round++) {
        rocksdb::DB *db = nullptr;
        if (!rocksdb::DB::Open(o, dir, &db).ok())
            return 3;
        for (int i = round * 10; i < round * 10 + 10; i++) {
            if (!db->Put(wo, Key(i), Value(i)).ok())
                return 4;
            printf("%d\n", i);
            fflush(stdout);
        }
        if (!db->Flush(rocksdb::FlushOptions()).ok())
            return 5;
        delete db;
    }
    return 0;
}

// Prints "name key_id method iv" for every entry (read-only, like a tool), for the
// independent-decryption test.
int
ListEntries(const char *kmdir, const char *keyfile)
{
    static const tde_keymgr_root root = {"fs", "/"};
    std::string master = std::string("file://") + keyfile;
    tde_keymgr_config kc{};
    kc.version = TDE_KEYMGR_CONFIG_VERSION;
    kc.dir = kmdir;
    kc.roots = &root;
    kc.n_roots = 1;
    kc.method = TDE_METHOD_AES256_CTR;
    kc.master_key_uri = master.c_str();
    kc.enforce = -1;
    kc.read_only = true;
    tde_keymgr *km = nullptr;
    if (tde_keymgr_open(&km, &kc) != TDE_OK) {
        fprintf(stderr, "%s\n", tde_last_error());
        return 2;
    }
    tde_status st = tde_keymgr_list_files(
        km,
        [](void *, const tde_keymgr_file_info *f) {
            printf("%s %llu %s ", f->name, (unsigned long long)f->key_id,
                   tde_method_name(f->method));
            for (int i = 0; i < TDE_CIPHER_IV_LEN; i++)
                printf("%02x", f->iv[i]);
            printf("\n");
            return 0;
        },
        nullptr);
    tde_keymgr_close(km);
    return st == TDE_OK ? 0 : 3;
}

// The key of one SST, from a read-only listing of the key manager (as a tool would do).
uint64_t
KeyOfSomeSst(const Fixture &fx)
{
    static const tde_keymgr_root root = {"fs", "/"};
    std::string master = "file://" + fx.keyfile;
    tde_keymgr_config kc{};
    kc.version = TDE_KEYMGR_CONFIG_VERSION;
    kc.dir = fx.kmdir.c_str();
    kc.roots = &root;
    kc.n_roots = 1;
    kc.method = TDE_METHOD_AES256_CTR;
    kc.master_key_uri = master.c_str();
    kc.enforce = -1;
    kc.read_only = true;
    tde_keymgr *km = nullptr;
    assert_int_equal(tde_keymgr_open(&km, &kc), TDE_OK);
    uint64_t id = 0;
    assert_int_equal(tde_keymgr_list_files(
                         km,
                         [](void *arg, const tde_keymgr_file_info *f) {
                             size_t n = strlen(f->name);
                             if (n > 4 && strcmp(f->name + n - 4, ".sst") == 0) {
                                 *static_cast<uint64_t *>(arg) = f->key_id;
                                 return 1;
                             }
                             return 0;
                         },
                         &id),
                     TDE_OK);
    tde_keymgr_close(km);
    assert_true(id != 0);
    return id;
}

int
Writer(const char *dir, const char *uri, int first)
{
    std::unique_ptr<rocksdb::Env> env;
    if (!tde::NewEncryptedEnv(uri, &env).ok())
        return 2;
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    if (!rocksdb::DB::Open(o, dir, &db).ok())
        return 3;
    for (int i = first;; i++) {
        if (!db->Put(rocksdb::WriteOptions(), Key(i), Value(i)).ok())
            return 4;
        printf("%d\n", i);
        fflush(stdout);
    }
}

// For the stock-tools test: an encrypted DB with 1000 records in SSTs and the WAL.
int
MakeDb(const char *dir, const char *uri)
{
    std::unique_ptr<rocksdb::Env> env;
    if (!tde::NewEncryptedEnv(uri, &env).ok())
        return 2;
    rocksdb::Options o = BaseOptions(env.get());
    o.enable_blob_files = false;
    rocksdb::DB *db = nullptr;
    if (!rocksdb::DB::Open(o, dir, &db).ok())
        return 3;
    for (int i = 0; i < 1000; i++)
        if (!db->Put(rocksdb::WriteOptions(), Key(i), Value(i)).ok())
            return 4;
    if (!db->Flush(rocksdb::FlushOptions()).ok())
        return 5;
    delete db;
    return PlaintextHits(dir) == 0 ? 0 : 6;
}

} // namespace

// Retiring the data key in use rewrites every SST, blob file and WAL under a new key; what is
// left is named, and a reopen leaves at most the files RocksDB never rewrites.
static void
test_rocksdb_retire_key_rewrites_files(void **)
{
    Fixture fx("retire");
    auto env = MakeEnv(fx.Uri());
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    Workload(db, o, fx.root + "/ext", 1000);
    uint64_t old_key = KeyOfSomeSst(fx);
    std::vector<std::string> before, remaining;
    ASSERT_OK(tde::FilesUsingKey(db, old_key, &before));
    ASSERT_OK(tde::RetireKey(db, old_key, &remaining));
    for (const std::string &n : remaining) {
        print_message("still on the retired key: %s\n", n.c_str());
        for (const char *ext : {".sst", ".blob"})
            assert_true(n.find(ext) == std::string::npos);
    }
    assert_true(remaining.size() < before.size());
    CheckAll(db, 1000);
    delete db;
    ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
    CheckAll(db, 1000);
    delete db;
}

// Crash at every key-manager write (before the log append, after it, after its fsync) while
// RocksDB renames CURRENT, OPTIONS and LOG through the adapter: the database always reopens
// and every acknowledged (synced) write is there.
static void
test_rocksdb_crash_at_every_keymgr_write(void **)
{
    Fixture fx("crash");
    int crashes = 0;
    for (const char *fp :
         {"filedict.before_append", "filedict.after_append", "filedict.after_sync"}) {
        for (unsigned long nth = 1;; nth++) {
            std::string db = fx.root + "/db-" + fp + std::to_string(nth);
            std::string uri = "libtde:" + fx.root + "/km-" + fp + std::to_string(nth) +
                              ",master:file://" + fx.keyfile;
            int fds[2];
            assert_int_equal(pipe(fds), 0);
            pid_t pid = fork();
            if (pid == 0) {
                dup2(fds[1], 1);
                close(fds[0]);
                execl(self_exe, self_exe, "--crash", fp, std::to_string(nth).c_str(), db.c_str(),
                      uri.c_str(), (char *)nullptr);
                _exit(127);
            }
            close(fds[1]);
            std::string acked;
            char buf[4096];
            ssize_t n;
            while ((n = read(fds[0], buf, sizeof(buf))) > 0)
                acked.append(buf, (size_t)n);
            close(fds[0]);
            int status = 0;
            waitpid(pid, &status, 0);
            assert_true(WIFEXITED(status));
            int code = WEXITSTATUS(status);
            if (code != 99 && code != 0)
                fail_msg("crasher %s/%lu exited %d", fp, nth, code);
            int last = -1;
            std::istringstream ls(acked);
            std::string line;
            while (std::getline(ls, line))
                last = atoi(line.c_str());
            if (last >= 0 || code == 0) {
                auto env = MakeEnv(uri);
                rocksdb::Options o = BaseOptions(env.get());
                rocksdb::DB *d = nullptr;
                ASSERT_OK(rocksdb::DB::Open(o, db, &d));
                for (int i = 0; i <= last; i++) {
                    std::string v;
                    ASSERT_OK(d->Get(rocksdb::ReadOptions(), Key(i), &v));
                    assert_string_equal(v.c_str(), Value(i).c_str());
                }
                delete d;
            }
            if (code == 0)
                break; // the failpoint was not hit nth times: every point was covered
            crashes++;
            if (nth >= 30)
                break; // bounded: the later hits repeat the same pattern
        }
    }
    print_message("%d crashes, every database reopened with its acknowledged writes\n", crashes);
    assert_true(crashes >= 3);
    assert_int_equal(PlaintextHits(fx.root), 0);
}

int
main(int argc, char **argv)
{
    self_exe = "/proc/self/exe";
    if (argc == 5 && strcmp(argv[1], "--writer") == 0)
        return Writer(argv[2], argv[3], atoi(argv[4]));
    if (argc == 6 && strcmp(argv[1], "--crash") == 0)
        return Crasher(argv[2], strtoul(argv[3], nullptr, 10), argv[4], argv[5]);
    if (argc == 4 && strcmp(argv[1], "--list") == 0)
        return ListEntries(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "--make-db") == 0)
        return MakeDb(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rocksdb_scan_finds_plaintext_in_plain_db),
        cmocka_unit_test(test_rocksdb_no_plaintext_on_disk),
        cmocka_unit_test(test_rocksdb_multiget_and_async_reads),
        cmocka_unit_test(test_rocksdb_wal_recycling),
        cmocka_unit_test(test_rocksdb_checkpoint_and_backup),
        cmocka_unit_test(test_rocksdb_backup_restores_elsewhere),
        cmocka_unit_test(test_rocksdb_ingestion_variants),
        cmocka_unit_test(test_rocksdb_unsafe_modes_refused),
        cmocka_unit_test(test_rocksdb_rewrite_below_high_water_mark_fails),
        cmocka_unit_test(test_rocksdb_options_string),
        cmocka_unit_test(test_rocksdb_method_switch_and_plaintext_migration),
        cmocka_unit_test(test_rocksdb_errors_are_clear),
        cmocka_unit_test(test_rocksdb_kill9_recovery),
        cmocka_unit_test(test_rocksdb_crash_at_every_keymgr_write),
        cmocka_unit_test(test_rocksdb_retire_key_rewrites_files),
    };
    int failed = cmocka_run_group_tests(tests, nullptr, nullptr);
    tde::ReleaseRegisteredEnvsForTests();
    return failed;
}
