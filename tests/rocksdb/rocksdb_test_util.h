// Helpers shared by the RocksDB adapter's cmocka tests: scratch directories, the records
// the workloads write, and the plaintext scan. Include after <cmocka.h>.
#ifndef TDE_ROCKSDB_TEST_UTIL_H
#define TDE_ROCKSDB_TEST_UTIL_H

#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <rocksdb/env.h>

#include "tde/rocksdb.hpp"

namespace tde_test
{

inline constexpr char kValueMarker[] = "PLAINTEXT-SECRET-VALUE";
inline constexpr char kKeyMarker[] = "user-key-";
inline constexpr char kMasterHex[] =
    "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0";

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        rocksdb::Status s_ = (expr);                                                               \
        if (!s_.ok())                                                                              \
            print_error("%s -> %s\n", #expr, s_.ToString().c_str());                               \
        assert_true(s_.ok());                                                                      \
    } while (0)

// A new directory "$TMPDIR/tde-rocksdb-<tag>-XXXXXX".
inline std::string
TmpDir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    std::string t = std::string(base ? base : "/tmp") + "/tde-rocksdb-" + tag + "-XXXXXX";
    std::vector<char> buf(t.begin(), t.end());
    buf.push_back('\0');
    assert_non_null(mkdtemp(buf.data()));
    return buf.data();
}

inline void
RmTree(const std::string &dir)
{
    std::string cmd = "rm -rf '" + dir + "'";
    assert_int_equal(system(cmd.c_str()), 0);
}

inline std::string
Value(int i)
{
    std::string v = std::string(kValueMarker) + "-" + std::to_string(i) + "-";
    while (v.size() < 200)
        v += "x";
    return v;
}

inline std::string
Key(int i)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%s%08d", kKeyMarker, i);
    return buf;
}

inline std::string
ReadWhole(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every file below @p dir, recursively.
inline void
ListFiles(const std::string &dir, std::vector<std::string> *out)
{
    DIR *d = opendir(dir.c_str());
    if (d == nullptr)
        return;
    while (struct dirent *e = readdir(d)) {
        std::string n = e->d_name;
        if (n == "." || n == "..")
            continue;
        std::string p = dir + "/" + n;
        struct stat st;
        if (lstat(p.c_str(), &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            ListFiles(p, out);
        else if (S_ISREG(st.st_mode))
            out->push_back(p);
    }
    closedir(d);
}

// Counts the files under @p dir holding a marker, a user key or the master key's bytes.
inline int
PlaintextHits(const std::string &dir, int *files_scanned = nullptr)
{
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)strtol(std::string(kMasterHex + 2 * i, 2).c_str(), nullptr, 16);
    std::vector<std::string> needles = {kValueMarker, kKeyMarker,
                                        std::string((const char *)raw, 16)};
    std::vector<std::string> files;
    ListFiles(dir, &files);
    int hits = 0;
    for (const std::string &f : files) {
        if (f.size() >= 11 && f.compare(f.size() - 11, 11, "/master.key") == 0)
            continue;
        std::string data = ReadWhole(f);
        for (const std::string &n : needles) {
            if (data.find(n) != std::string::npos) {
                print_message("plaintext '%s' in %s\n", n.substr(0, 12).c_str(), f.c_str());
                hits++;
                break;
            }
        }
    }
    if (files_scanned != nullptr)
        *files_scanned = (int)files.size();
    return hits;
}

inline std::unique_ptr<rocksdb::Env>
MakeEnv(const std::string &uri)
{
    std::unique_ptr<rocksdb::Env> env;
    ASSERT_OK(tde::NewEncryptedEnv(uri, &env));
    return env;
}

} // namespace tde_test

#endif
