// The adapter's RenameFile under a crash at every key-manager write and rename step, for every
// kind of source and destination (encrypted, plaintext with and without an entry, missing), in
// enforce and non-enforce mode: after each crash both names read back whole, first through a
// read-only key manager (which must write nothing), then through read-write ones.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
extern "C" {
#include <cmocka.h>
}

#include <rocksdb/file_system.h>

extern "C" {
#include "common/fileio.h" // failpoints (libtde's internal test hooks)
}
#include "rocksdb_test_util.h"
#include "tde/rocksdb.hpp"

using namespace tde_test;

namespace
{

const char *self_exe;

// How a file is before the rename. kPlainEntry: written while the method was plaintext (an
// entry with the plaintext key); kPlainNone: written without the adapter (no entry).
enum Kind { kEncrypted, kPlainEntry, kPlainNone, kMissing };
const char *const kKindName[] = {"encrypted", "plain-entry", "plain-none", "missing"};

// Every file of the key manager's directory and its bytes: a read-only open must not change it.
std::map<std::string, std::string>
Snapshot(const std::string &dir)
{
    std::map<std::string, std::string> out;
    DIR *d = opendir(dir.c_str());
    assert_non_null(d);
    while (struct dirent *e = readdir(d))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, "keymgr.lock") != 0)
            assert_true(rocksdb::ReadFileToString(rocksdb::FileSystem::Default().get(),
                                                  dir + "/" + e->d_name, &out[e->d_name])
                            .ok());
    closedir(d);
    return out;
}

std::shared_ptr<rocksdb::FileSystem>
OpenFs(const std::string &uri)
{
    std::shared_ptr<rocksdb::FileSystem> fs;
    rocksdb::Status s = tde::NewEncryptedFileSystem(uri, &fs);
    if (!s.ok())
        fail_msg("%s: %s", uri.c_str(), s.ToString().c_str());
    return fs;
}

// The content of @p path through the adapter; "<missing>" when there is no file.
std::string
ReadThrough(rocksdb::FileSystem *fs, const std::string &path)
{
    if (access(path.c_str(), F_OK) != 0)
        return "<missing>";
    std::string out;
    rocksdb::IOStatus s = rocksdb::ReadFileToString(fs, path, &out);
    if (!s.ok())
        return "<error: " + s.ToString() + ">";
    return out;
}

struct Scenario {
    std::string root, keyfile, kmdir, data;
    bool enforce;
    std::string
    Uri(const char *method = "aes256-ctr", const char *extra = "") const
    {
        return "libtde:" + kmdir + ",master:file://" + keyfile + ",method:" + method +
               ",enforce:" + (enforce ? "1" : "0") + extra;
    }
    void
    Make(Kind k, const std::string &path, const std::string &content) const
    {
        if (k == kMissing)
            return;
        if (k == kPlainNone) {
            std::ofstream(path, std::ios::binary) << content;
            return;
        }
        auto fs = OpenFs(Uri(k == kPlainEntry ? "plaintext" : "aes256-ctr"));
        assert_true(rocksdb::WriteStringToFile(fs.get(), content, path, true).ok());
    }
};

std::string
Content(const char *what, int run)
{
    std::string c = std::string(what) + "-" + std::to_string(run) + "-";
    while (c.size() < 300)
        c += static_cast<char>('a' + c.size() % 26);
    return c;
}

// Both names after a crash: dst is the old file exactly while src is still there.
void
Check(rocksdb::FileSystem *fs, const std::string &src, const std::string &dst,
      const std::string &old_dst, const std::string &new_dst, const char *what)
{
    bool src_there = access(src.c_str(), F_OK) == 0;
    std::string got = ReadThrough(fs, dst);
    if (got != (src_there ? old_dst : new_dst))
        fail_msg("%s: %s reads back as \"%.40s\", expected \"%.40s\"", what, dst.c_str(),
                 got.c_str(), (src_there ? old_dst : new_dst).c_str());
    if (src_there && ReadThrough(fs, src) != new_dst)
        fail_msg("%s: the source %s no longer reads back", what, src.c_str());
}

// Child: the adapter's RenameFile with a failpoint armed (exit 99 at its nth hit).
int
Renamer(const char *failpoint, unsigned long nth, const char *uri, const char *src, const char *dst)
{
    std::shared_ptr<rocksdb::FileSystem> fs;
    if (!tde::NewEncryptedFileSystem(uri, &fs).ok())
        return 2;
    tde_failpoint_arm(failpoint, nth, 99);
    rocksdb::IOStatus s = fs->RenameFile(src, dst, rocksdb::IOOptions(), nullptr);
    if (!s.ok()) {
        fprintf(stderr, "rename: %s\n", s.ToString().c_str());
        return 4;
    }
    return 0;
}

const char *const kCrashPoints[] = {
    "filedict.before_append",   "filedict.after_append",      "filedict.after_sync",
    "keymgr.rename.after_link", "keymgr.rename.after_rename", "keymgr.rename.after_drop_source"};

Scenario
NewScenario(const std::string &base, const std::string &name, bool enforce)
{
    Scenario sc;
    sc.root = base + "/" + name + (enforce ? "-enforce" : "");
    sc.keyfile = base + "/master.key";
    sc.kmdir = sc.root + "/km";
    sc.data = sc.root + "/data";
    sc.enforce = enforce;
    assert_int_equal(mkdir(sc.root.c_str(), 0700), 0);
    assert_int_equal(mkdir(sc.data.c_str(), 0700), 0);
    return sc;
}

// For every crash point and every hit of it: @p setup makes a fresh (src, dst) for the run,
// a child renames src to dst through the adapter and dies at that hit, then @p check reads
// both names through a read-only key manager (which must write nothing) and two read-write
// ones in turn. Returns the number of crashes.
int
CrashLoop(const Scenario &sc, const std::string &label,
          const std::function<void(int run, std::string *src, std::string *dst)> &setup,
          const std::function<void(rocksdb::FileSystem *, int run, const std::string &what)> &check)
{
    int crashes = 0, run = 0;
    for (const char *fp : kCrashPoints) {
        for (unsigned long nth = 1;; nth++) {
            std::string src, dst;
            setup(++run, &src, &dst);
            std::string what = label + ", crash at " + fp + " #" + std::to_string(nth);
            pid_t pid = fork();
            if (pid == 0) {
                execl(self_exe, self_exe, "--rename", fp, std::to_string(nth).c_str(),
                      sc.Uri().c_str(), src.c_str(), dst.c_str(), (char *)nullptr);
                _exit(127);
            }
            int status = 0;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFEXITED(status));
            int code = WEXITSTATUS(status);
            if (code != 99 && code != 0)
                fail_msg("%s: the renamer exited %d", what.c_str(), code);
            // A tool's read-only view first: it resolves the interrupted rename in memory.
            std::map<std::string, std::string> before = Snapshot(sc.kmdir);
            {
                auto fs = OpenFs(sc.Uri("aes256-ctr", ",read_only"));
                check(fs.get(), run, what + ", read-only");
            }
            assert_true(Snapshot(sc.kmdir) == before);
            for (int reopen = 0; reopen < 2; reopen++) {
                auto fs = OpenFs(sc.Uri());
                check(fs.get(), run, what);
            }
            if (code == 0) {
                assert_int_equal(access(src.c_str(), F_OK), -1);
                break; // the failpoint was not hit nth times: every hit was covered
            }
            crashes++;
        }
    }
    return crashes;
}

// One (source kind, destination kind, mode) of a file rename, e.g. CURRENT.dbtmp -> CURRENT.
int
RunScenario(const std::string &base, Kind sk, Kind dk, bool enforce)
{
    Scenario sc = NewScenario(base, std::string(kKindName[sk]) + "-" + kKindName[dk], enforce);
    auto names = [&](int run, std::string *src, std::string *dst) {
        *src = sc.data + "/" + std::to_string(run) + ".dbtmp";
        *dst = sc.data + "/CURRENT-" + std::to_string(run);
    };
    auto old_dst = [&](int run) { return dk == kMissing ? "<missing>" : Content("old", run); };
    return CrashLoop(
        sc, std::string(kKindName[sk]) + " -> " + kKindName[dk] + (enforce ? " (enforce)" : ""),
        [&](int run, std::string *src, std::string *dst) {
            names(run, src, dst);
            sc.Make(dk, *dst, old_dst(run));
            sc.Make(sk, *src, Content("new", run));
        },
        [&](rocksdb::FileSystem *fs, int run, const std::string &what) {
            std::string src, dst;
            names(run, &src, &dst);
            Check(fs, src, dst, old_dst(run), Content("new", run), what.c_str());
        });
}

// A scratch directory with a master key file.
std::string
MakeBase()
{
    std::string base = TmpDir("rename");
    std::ofstream(base + "/master.key") << kMasterHex << "\n";
    chmod((base + "/master.key").c_str(), 0600);
    return base;
}

void
test_rocksdb_rename_crash_every_combination(void **)
{
    std::string base = MakeBase();
    int total = 0;
    for (bool enforce : {false, true})
        for (Kind sk : {kEncrypted, kPlainEntry, kPlainNone})
            for (Kind dk : {kEncrypted, kPlainEntry, kPlainNone, kMissing}) {
                if (enforce && (sk == kPlainNone || dk == kPlainNone))
                    continue; // enforce mode: a file without an entry is unreadable anyway
                int n = RunScenario(base, sk, dk, enforce);
                print_message("%s -> %s%s: %d crashes, both names read back whole\n", kKindName[sk],
                              kKindName[dk], enforce ? " (enforce)" : "", n);
                assert_true(n >= 3);
                total += n;
            }
    print_message("%d crashes in all\n", total);
    RmTree(base);
}

// A checkpoint's directory rename ("<dir>.tmp" -> "<dir>", which does not exist yet): after a
// crash every file below reads back whole under whichever name the directory has.
void
test_rocksdb_rename_dir_crash(void **)
{
    std::string base = MakeBase();
    for (bool enforce : {false, true}) {
        Scenario sc = NewScenario(base, "dir", enforce);
        std::vector<std::pair<Kind, std::string>> files = {{kEncrypted, "000007.sst"},
                                                           {kPlainEntry, "OPTIONS-000005"},
                                                           {kEncrypted, "sub/000009.blob"}};
        if (!enforce)
            files.emplace_back(kPlainNone, "CURRENT");
        auto names = [&](int run, std::string *src, std::string *dst) {
            *dst = sc.data + "/ckpt-" + std::to_string(run);
            *src = *dst + ".tmp";
        };
        int n = CrashLoop(
            sc, std::string("directory rename") + (enforce ? " (enforce)" : ""),
            [&](int run, std::string *src, std::string *dst) {
                names(run, src, dst);
                assert_int_equal(mkdir(src->c_str(), 0700), 0);
                assert_int_equal(mkdir((*src + "/sub").c_str(), 0700), 0);
                for (const auto &f : files)
                    sc.Make(f.first, *src + "/" + f.second, Content(f.second.c_str(), run));
            },
            [&](rocksdb::FileSystem *fs, int run, const std::string &what) {
                std::string src, dst;
                names(run, &src, &dst);
                bool src_there = access(src.c_str(), F_OK) == 0;
                assert_true(src_there != (access(dst.c_str(), F_OK) == 0));
                for (const auto &f : files) {
                    std::string path = (src_there ? src : dst) + "/" + f.second;
                    if (ReadThrough(fs, path) != Content(f.second.c_str(), run))
                        fail_msg("%s: %s does not read back", what.c_str(), path.c_str());
                }
            });
        print_message("directory rename%s: %d crashes, every file reads back whole\n",
                      enforce ? " (enforce)" : "", n);
        assert_true(n >= 6);
    }
    RmTree(base);
}

} // namespace

int
main(int argc, char **argv)
{
    self_exe = "/proc/self/exe";
    if (argc == 7 && strcmp(argv[1], "--rename") == 0)
        return Renamer(argv[2], strtoul(argv[3], nullptr, 10), argv[4], argv[5], argv[6]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rocksdb_rename_crash_every_combination),
        cmocka_unit_test(test_rocksdb_rename_dir_crash),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
