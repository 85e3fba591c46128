/*
 * bench_rocksdb: RocksDB throughput through libtde's encrypted FileSystem, as a
 * ratio to plain RocksDB measured in the same run.
 *
 *   bench_rocksdb [--json] [--quick] [--num N] [--reps R]
 *
 * Each repetition runs every variant (plain, then each method) back to back on a
 * fresh database, so machine noise hits all of them alike; the medians over the
 * repetitions are compared. Workloads: fillrandom, overwrite (16-byte keys,
 * 100-byte values, WAL on, no sync), a full compaction, readrandom with an 8 MiB
 * block cache (misses go to the files: decryption on the read path) and with a
 * 1 GiB cache (warm). Rates are operations per wall second; cpu_us_op counts
 * every thread of the process (flushes and compactions included).
 */
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/table.h>

#include "tde/rocksdb.hpp"

namespace
{

struct Sample {
    double ops_s = 0, cpu_us_op = 0;
};

double
CpuSeconds()
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

double
WallSeconds()
{
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

template <typename F>
Sample
Measure(uint64_t ops, F body)
{
    double w0 = WallSeconds(), c0 = CpuSeconds();
    body();
    double w = WallSeconds() - w0, c = CpuSeconds() - c0;
    Sample s;
    s.ops_s = (double)ops / w;
    s.cpu_us_op = c * 1e6 / (double)ops;
    return s;
}

void
Check(const rocksdb::Status &s, const char *what)
{
    if (!s.ok()) {
        fprintf(stderr, "bench_rocksdb: %s: %s\n", what, s.ToString().c_str());
        exit(1);
    }
}

std::string
Key(uint64_t i)
{
    char buf[17];
    snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)(i * 0x9E3779B97F4A7C15ULL));
    return std::string(buf, 16);
}

rocksdb::Options
Opts(rocksdb::Env *env, size_t cache_bytes)
{
    rocksdb::Options o;
    o.create_if_missing = true;
    o.env = env;
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = rocksdb::NewLRUCache(cache_bytes);
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    return o;
}

// One variant's pass over every workload on a fresh database below @p dir.
std::map<std::string, Sample>
RunVariant(rocksdb::Env *env, const std::string &dir, uint64_t num)
{
    std::map<std::string, Sample> out;
    std::string value(100, 'v');
    rocksdb::DB *db = nullptr;
    Check(rocksdb::DB::Open(Opts(env, 8 << 20), dir, &db), "open");
    uint64_t rng = 88172645463325252ULL;
    auto next = [&rng, num]() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng % num;
    };
    rocksdb::WriteOptions wo;
    out["fillrandom"] = Measure(num, [&] {
        for (uint64_t i = 0; i < num; i++)
            Check(db->Put(wo, Key(next()), value), "put");
        Check(db->Flush(rocksdb::FlushOptions()), "flush");
    });
    out["overwrite"] = Measure(num, [&] {
        for (uint64_t i = 0; i < num; i++)
            Check(db->Put(wo, Key(next()), value), "put");
        Check(db->Flush(rocksdb::FlushOptions()), "flush");
    });
    out["compaction"] = Measure(num, [&] {
        Check(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr), "compact");
    });
    delete db;
    for (auto cache : {std::make_pair("readrandom_small_cache", (size_t)8 << 20),
                       std::make_pair("readrandom_large_cache", (size_t)1 << 30)}) {
        Check(rocksdb::DB::Open(Opts(env, cache.second), dir, &db), "reopen");
        rocksdb::ReadOptions ro;
        std::string v;
        uint64_t reads = num / 2;
        if (cache.second > (64u << 20)) // warm the large cache first
            for (uint64_t i = 0; i < num; i++)
                db->Get(ro, Key(i), &v).PermitUncheckedError();
        out[cache.first] = Measure(reads, [&] {
            for (uint64_t i = 0; i < reads; i++)
                db->Get(ro, Key(next()), &v).PermitUncheckedError();
        });
        delete db;
    }
    return out;
}

double
Median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int
main(int argc, char **argv)
{
    bool json = false;
    uint64_t num = 200000;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            num = 50000;
            reps = 1;
        } else if (strcmp(argv[i], "--num") == 0 && i + 1 < argc) {
            num = strtoull(argv[++i], nullptr, 10);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--json] [--quick] [--num N] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    char tmpl[] = "/tmp/bench_rocksdb-XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
        return 1;
    std::string root = tmpl;
    std::string keyfile = root + "/master.key";
    FILE *kf = fopen(keyfile.c_str(), "w");
    fprintf(kf, "%s\n", "4f6d2a1c9e8b7a6554433221100ffeeddccbbaa99887766554433221100aabbc");
    fclose(kf);

    std::vector<std::string> variants = {"plain", "aes128-ctr", "aes256-ctr", "sm4-ctr"};
    std::map<std::string, std::map<std::string, std::vector<double>>> rate, cpu;
    for (int r = 0; r < reps; r++) {
        for (const std::string &v : variants) {
            std::string dir = root + "/" + v + "-" + std::to_string(r);
            std::unique_ptr<rocksdb::Env> env;
            rocksdb::Env *e = rocksdb::Env::Default();
            if (v != "plain") {
                std::string uri = "libtde:" + dir + "-km,master:file://" + keyfile + ",method:" + v;
                rocksdb::Status s = tde::NewEncryptedEnv(uri, &env);
                if (!s.ok()) {
                    fprintf(stderr, "bench_rocksdb: skipping %s: %s\n", v.c_str(),
                            s.ToString().c_str());
                    continue;
                }
                e = env.get();
            }
            for (auto &w : RunVariant(e, dir, num)) {
                rate[v][w.first].push_back(w.second.ops_s);
                cpu[v][w.first].push_back(w.second.cpu_us_op);
            }
            std::string rm = "rm -rf '" + dir + "' '" + dir + "-km'";
            if (system(rm.c_str()) != 0)
                return 1;
        }
    }
    if (!json) {
        printf("RocksDB %s, %llu keys (16 B) x 100 B values, %d repetition(s), medians\n\n", "7.8",
               (unsigned long long)num, reps);
        printf("| workload | method | plain ops/s | libtde ops/s | ratio (libtde/plain) | "
               "cpu us/op plain | cpu us/op libtde | cpu ratio |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
    }
    for (const auto &w : rate["plain"]) {
        double p_rate = Median(w.second), p_cpu = Median(cpu["plain"][w.first]);
        for (const std::string &v : variants) {
            if (v == "plain" || rate[v].count(w.first) == 0)
                continue;
            double t_rate = Median(rate[v][w.first]), t_cpu = Median(cpu[v][w.first]);
            if (json)
                printf("{\"workload\": \"%s\", \"method\": \"%s\", \"plain_ops_s\": %.0f, "
                       "\"libtde_ops_s\": %.0f, \"ratio\": %.3f, \"plain_cpu_us_op\": %.2f, "
                       "\"libtde_cpu_us_op\": %.2f, \"cpu_ratio\": %.3f, \"num\": %llu, "
                       "\"reps\": %d}\n",
                       w.first.c_str(), v.c_str(), p_rate, t_rate, t_rate / p_rate, p_cpu, t_cpu,
                       t_cpu / p_cpu, (unsigned long long)num, reps);
            else
                printf("| %s | %s | %.0f | %.0f | %.3f | %.2f | %.2f | %.3f |\n", w.first.c_str(),
                       v.c_str(), p_rate, t_rate, t_rate / p_rate, p_cpu, t_cpu, t_cpu / p_cpu);
        }
    }
    std::string rm = "rm -rf '" + root + "'";
    return system(rm.c_str()) == 0 ? 0 : 1;
}
