// Checkpoints and backups that carry their own key metadata: each opens on "another host" (a
// moved directory tree) after the source database and its key manager are deleted, holds no
// plaintext, and its key copy holds only the keys its own files use.
#include <dirent.h>
#include <sys/stat.h>
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

#include <rocksdb/c.h>
#include <rocksdb/db.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/utilities/backup_engine.h>

#include "encrypted_fs.h"
#include "rocksdb_test_util.h"
#include "tde/rocksdb.hpp"

using namespace tde_test;

namespace
{

const char *tde_ctl; // argv[1]: tde-ctl, for an independent check of a copy

void
Sh(const std::string &cmd)
{
    assert_int_equal(system(cmd.c_str()), 0);
}

bool
Exists(const std::string &p)
{
    struct stat sb;
    return stat(p.c_str(), &sb) == 0;
}

// The source host: key file, key manager, database. "there" is the other host.
struct Fixture {
    std::string root, there, keyfile, kmdir, db;
    explicit Fixture(const char *tag) : root(TmpDir(tag)), there(TmpDir("there"))
    {
        keyfile = root + "/master.key";
        kmdir = root + "/km";
        db = root + "/db";
        std::ofstream(keyfile) << kMasterHex << "\n";
        chmod(keyfile.c_str(), 0600);
    }
    ~Fixture() { Sh("rm -rf '" + root + "' '" + there + "'"); }
    std::string
    Master() const
    {
        return ",master:file://" + keyfile;
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
    o.enable_blob_files = true;
    o.min_blob_size = 150;
    return o;
}

// The plaintext scan of a copy, which must hold more than a few files.
int
CopyPlaintextHits(const std::string &dir)
{
    int files = 0;
    int hits = PlaintextHits(dir, &files);
    assert_true(files > 3);
    return hits;
}

tde_keymgr *
KeyManagerOf(rocksdb::Env *env)
{
    auto *fs = dynamic_cast<tde::EncryptedFileSystem *>(env->GetFileSystem().get());
    assert_non_null(fs);
    return fs->key_manager()->km;
}

void
Put(rocksdb::DB *db, int from, int to)
{
    for (int i = from; i < to; i++)
        ASSERT_OK(db->Put(rocksdb::WriteOptions(), Key(i), Value(i)));
}

void
CheckAll(rocksdb::DB *db, int n)
{
    for (int i = 0; i < n; i++) {
        std::string v;
        ASSERT_OK(db->Get(rocksdb::ReadOptions(), Key(i), &v));
        assert_string_equal(v.c_str(), Value(i).c_str());
    }
}

struct KeyList {
    std::vector<uint64_t> ids;
    std::vector<uint64_t> files;
};

KeyList
Keys(tde_keymgr *km)
{
    KeyList l;
    assert_int_equal(tde_keymgr_list_keys(
                         km,
                         [](void *arg, const tde_keymgr_key_info *k) {
                             static_cast<KeyList *>(arg)->ids.push_back(k->id);
                             static_cast<KeyList *>(arg)->files.push_back(k->files);
                             return 0;
                         },
                         &l),
                     TDE_OK);
    return l;
}

std::vector<std::string>
Names(tde_keymgr *km)
{
    std::vector<std::string> names;
    assert_int_equal(tde_keymgr_list_files(
                         km,
                         [](void *arg, const tde_keymgr_file_info *f) {
                             static_cast<std::vector<std::string> *>(arg)->push_back(f->name);
                             return 0;
                         },
                         &names),
                     TDE_OK);
    return names;
}

// A key manager directory opened read-only on its own, with one root.
struct KmView {
    tde_keymgr *km = nullptr;
    KmView(const std::string &dir, const std::string &root, const std::string &path,
           const std::string &keyfile)
    {
        std::string master = "file://" + keyfile;
        tde_keymgr_root r = {root.c_str(), path.c_str()};
        tde_keymgr_config kc{};
        kc.version = TDE_KEYMGR_CONFIG_VERSION;
        kc.dir = dir.c_str();
        kc.roots = &r;
        kc.n_roots = 1;
        kc.master_key_uri = master.c_str();
        kc.enforce = -1;
        kc.read_only = true;
        tde_status st = tde_keymgr_open(&km, &kc);
        if (st != TDE_OK)
            print_error("%s: %s\n", dir.c_str(), tde_last_error());
        assert_int_equal(st, TDE_OK);
    }
    ~KmView() { tde_keymgr_close(km); }
};

// tde::CreateCheckpoint: the checkpoint, moved to another tree after the source database and
// its key manager are deleted, opens with its own tde-keymgr and reads every write; the copy
// holds only keys the checkpoint's files use (not the one of a file outside it); RocksDB leaves
// the subdirectory alone in a checkpoint of the checkpoint and in DestroyDB.
void
test_checkpoint_carries_its_keys(void **)
{
    Fixture fx("ckpt");
    const int n = 3000;
    std::string ckpt = fx.root + "/checkpoint", moved = fx.there + "/moved";
    uint64_t outside_key = 0;
    {
        auto env = MakeEnv("libtde:" + fx.kmdir + fx.Master());
        tde_keymgr *km = KeyManagerOf(env.get());
        rocksdb::Options o = BaseOptions(env.get());
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        Put(db, 0, 1000);
        ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
        assert_int_equal(tde_keymgr_rotate_data_key(km), TDE_OK);
        Put(db, 1000, 2000);
        ASSERT_OK(db->Flush(rocksdb::FlushOptions()));
        // A key used only by a file outside the database (an SST never ingested).
        assert_int_equal(tde_keymgr_rotate_data_key(km), TDE_OK);
        rocksdb::SstFileWriter w(rocksdb::EnvOptions(), o);
        ASSERT_OK(w.Open(fx.root + "/outside.sst"));
        ASSERT_OK(w.Put(Key(n + 1), Value(n + 1)));
        ASSERT_OK(w.Finish());
        tde_file_key *fk = nullptr;
        assert_int_equal(tde_keymgr_get_file(km, (fx.root + "/outside.sst").c_str(), &fk), TDE_OK);
        outside_key = tde_file_key_id(fk);
        tde_file_key_free(fk);
        assert_int_equal(tde_keymgr_rotate_data_key(km), TDE_OK);
        Put(db, 2000, n); // the last ones only in the memtable and WAL
        ASSERT_OK(tde::CreateCheckpoint(db, ckpt));
        assert_true(Exists(ckpt + "/tde-keymgr/key.dict"));
        // A second one into the same place is refused, and leaves the first intact.
        assert_false(tde::CopyKeyMetadata(env.get(), ckpt, ckpt + "/tde-keymgr").ok());
        delete db;
    }
    Sh("rm -rf '" + fx.db + "' '" + fx.kmdir + "' '" + fx.root + "/outside.sst' && mv '" + ckpt +
       "' '" + moved + "'");
    {
        KmView v(moved + "/tde-keymgr", "db", moved, fx.keyfile);
        KeyList keys = Keys(v.km);
        assert_true(keys.ids.size() >= 2);
        for (size_t i = 0; i < keys.ids.size(); i++) {
            assert_true(keys.ids[i] != outside_key);
            assert_true(keys.files[i] > 0); // every copied key is used by a checkpoint file
        }
        for (const std::string &name : Names(v.km))
            assert_int_equal(name.compare(0, 3, "db/"), 0);
    }
    if (tde_ctl != nullptr) // every key unwraps, every entry's file exists and its key fits it
        Sh(std::string(tde_ctl) + " verify '" + moved + "/tde-keymgr' --deep -k file://" +
           fx.keyfile + " --root 'db=" + moved + "' --data-dir '" + moved + "' >/dev/null");
    std::string there_uri = "libtde:" + moved + "/tde-keymgr" + fx.Master() + ",root:db:" + moved +
                            ",root:out:" + fx.there;
    auto env = MakeEnv(there_uri);
    rocksdb::Options o = BaseOptions(env.get());
    o.create_if_missing = false;
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, moved, &db));
    CheckAll(db, n);
    Put(db, n, n + 100); // read-write: new files under the copy's keys
    // A checkpoint of the checkpoint gets its own copy; the first copy is not carried along.
    std::string ck2 = fx.there + "/ck2";
    ASSERT_OK(tde::CreateCheckpoint(db, ck2));
    delete db;
    assert_false(Exists(ck2 + "/tde-keymgr/tde-keymgr"));
    {
        KmView v(ck2 + "/tde-keymgr", "db", ck2, fx.keyfile);
        for (const std::string &name : Names(v.km))
            assert_null(strstr(name.c_str(), "tde-keymgr"));
    }
    assert_int_equal(CopyPlaintextHits(fx.there), 0);
    // Reopen (RocksDB ignores the subdirectory), then DestroyDB leaves it in place.
    ASSERT_OK(rocksdb::DB::Open(o, moved, &db));
    CheckAll(db, n + 100);
    delete db;
    ASSERT_OK(rocksdb::DestroyDB(moved, o));
    assert_true(Exists(moved + "/tde-keymgr/key.dict"));
    auto env2 = MakeEnv("libtde:" + ck2 + "/tde-keymgr" + fx.Master() + ",root:db:" + ck2);
    rocksdb::Options o2 = BaseOptions(env2.get());
    ASSERT_OK(rocksdb::DB::Open(o2, ck2, &db));
    CheckAll(db, n + 100);
    delete db;
}

// A backup written through a separate encrypted backup Env whose key manager lives in the
// backup directory: restored on "another host" into a new database with a new key manager after
// the source, its key manager and the original backup path are gone.
void
test_backup_with_own_key_manager_restores_elsewhere(void **)
{
    Fixture fx("backup");
    const int n = 2500;
    std::string backup = fx.root + "/backup";
    mkdir(backup.c_str(), 0700);
    {
        auto env = MakeEnv("libtde:" + fx.kmdir + fx.Master());
        auto benv =
            MakeEnv("libtde:" + backup + "/tde-keymgr" + fx.Master() + ",root:backup:" + backup);
        rocksdb::Options o = BaseOptions(env.get());
        rocksdb::DB *db = nullptr;
        ASSERT_OK(rocksdb::DB::Open(o, fx.db, &db));
        rocksdb::BackupEngine *be = nullptr;
        // db_env (reads the database's files) is the database's Env; backup_env writes.
        ASSERT_OK(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(backup, benv.get()),
                                              env.get(), &be));
        Put(db, 0, 1500);
        ASSERT_OK(be->CreateNewBackup(db, true));
        assert_int_equal(tde_keymgr_rotate_data_key(KeyManagerOf(env.get())), TDE_OK);
        Put(db, 1500, n);
        ASSERT_OK(be->CreateNewBackup(db, true)); // incremental: shares the first SSTs
        ASSERT_OK(be->VerifyBackup(2, true));     // reads every file back through backup_env
        delete be;
        delete db;
        // The backup's files are registered in the backup's key manager, not the database's.
        for (const std::string &name : Names(KeyManagerOf(env.get())))
            assert_null(strstr(name.c_str(), "/backup/"));
        assert_true(Names(KeyManagerOf(benv.get())).size() > 5);
    }
    assert_int_equal(CopyPlaintextHits(backup), 0);
    std::string there_backup = fx.there + "/backup", there_db = fx.there + "/db";
    Sh("rm -rf '" + fx.db + "' '" + fx.kmdir + "' && mv '" + backup + "' '" + there_backup + "'");
    mkdir(there_db.c_str(), 0700);
    auto benv = MakeEnv("libtde:" + there_backup + "/tde-keymgr" + fx.Master() +
                        ",root:backup:" + there_backup);
    // The restored database's own key manager inside its directory: the restore's clean-up of
    // the directory (DeleteChildren) and DB::Open leave it alone.
    auto env = MakeEnv("libtde:" + there_db + "/tde-keymgr" + fx.Master() + ",root:db:" + there_db);
    rocksdb::BackupEngineReadOnly *ro = nullptr;
    ASSERT_OK(rocksdb::BackupEngineReadOnly::Open(
        rocksdb::BackupEngineOptions(there_backup, benv.get()), env.get(), &ro));
    ASSERT_OK(ro->VerifyBackup(1, true));
    ASSERT_OK(ro->RestoreDBFromLatestBackup(there_db, there_db));
    delete ro;
    rocksdb::Options o = BaseOptions(env.get());
    rocksdb::DB *db = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, there_db, &db));
    CheckAll(db, n);
    delete db;
    assert_true(Exists(there_db + "/tde-keymgr/key.dict"));
    assert_int_equal(CopyPlaintextHits(fx.there), 0);
}

// The C API: rocksdb_checkpoint_create() then tde_rocksdb_copy_key_metadata(); a second copy
// into the same place and an Env that does not encrypt are refused with clear messages.
void
test_c_api_copy_key_metadata(void **)
{
    Fixture fx("capi");
    std::string ckpt = fx.root + "/checkpoint", moved = fx.there + "/moved";
    tde_rocksdb_config cfg{};
    cfg.version = TDE_ROCKSDB_CONFIG_VERSION;
    std::string kmdir = fx.kmdir, master = "file://" + fx.keyfile;
    cfg.keymgr_dir = kmdir.c_str();
    cfg.master_key_uri = master.c_str();
    cfg.enforce = -1;
    rocksdb_env_t *env = nullptr;
    assert_int_equal(tde_rocksdb_env_new(&env, &cfg), TDE_OK);
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_env(opts, env);
    char *err = nullptr;
    rocksdb_t *db = rocksdb_open(opts, fx.db.c_str(), &err);
    assert_null(err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (int i = 0; i < 500; i++) {
        std::string k = Key(i), v = Value(i);
        rocksdb_put(db, wo, k.data(), k.size(), v.data(), v.size(), &err);
        assert_null(err);
    }
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(db, &err);
    assert_null(err);
    rocksdb_checkpoint_create(cp, ckpt.c_str(), 0, &err);
    assert_null(err);
    rocksdb_checkpoint_object_destroy(cp);
    std::string dest = ckpt + "/tde-keymgr";
    assert_int_equal(tde_rocksdb_copy_key_metadata(env, ckpt.c_str(), dest.c_str(), "db"), TDE_OK);
    assert_int_equal(tde_rocksdb_copy_key_metadata(env, ckpt.c_str(), dest.c_str(), "db"),
                     TDE_ERR_EXISTS);
    assert_non_null(strstr(tde_last_error(), dest.c_str()));
    rocksdb_env_t *plain = rocksdb_create_default_env();
    assert_int_equal(
        tde_rocksdb_copy_key_metadata(plain, ckpt.c_str(), (fx.root + "/other").c_str(), "db"),
        TDE_ERR_INVALID_ARG);
    assert_non_null(strstr(tde_last_error(), "does not encrypt"));
    rocksdb_env_destroy(plain);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(opts);
    rocksdb_env_destroy(env);

    Sh("rm -rf '" + fx.db + "' '" + fx.kmdir + "' && mv '" + ckpt + "' '" + moved + "'");
    auto e = MakeEnv("libtde:" + moved + "/tde-keymgr" + fx.Master() + ",root:db:" + moved);
    rocksdb::Options o = BaseOptions(e.get());
    rocksdb::DB *d = nullptr;
    ASSERT_OK(rocksdb::DB::Open(o, moved, &d));
    CheckAll(d, 500);
    delete d;
    assert_int_equal(CopyPlaintextHits(moved), 0);
}

} // namespace

int
main(int argc, char **argv)
{
    tde_ctl = argc > 1 ? argv[1] : nullptr;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_carries_its_keys),
        cmocka_unit_test(test_backup_with_own_key_manager_restores_elsewhere),
        cmocka_unit_test(test_c_api_copy_key_metadata),
    };
    int failed = cmocka_run_group_tests(tests, nullptr, nullptr);
    tde::ReleaseRegisteredEnvsForTests();
    return failed;
}
