/*
 * bench_rocksdb: RocksDB throughput through libtde's encrypted FileSystem, as a
 * ratio to plain RocksDB measured side by side in the same run.
 *
 *   bench_rocksdb [--json] [--quick] [--num N] [--reps R] [--rounds K]
 *                 [--methods LIST] [--workloads LIST] [--dir DIR]
 *
 * Variants: "plain" (Env::Default, the baseline) and one encrypted Env per
 * method: "null" is libtde's Env with method plaintext (the wrapper's own cost,
 * no cipher), then aes128-ctr, aes256-ctr, sm4-ctr (--methods picks them).
 *
 * Workloads (--workloads picks them; each is a phase on the same database):
 * fillrandom and overwrite (N random 16-byte keys, 100-byte values that
 * compress to about half, as db_bench's, WAL on, no sync; timed until the
 * memtable is flushed and every compaction they triggered has finished), a
 * compaction phase (K forced full compactions, ops = N * K), readrandom (3 * N
 * random keys) with an 8 MiB block cache (misses read and decrypt blocks) and
 * with a 1 GiB cache warmed first (no decryption: it measures the harness's and
 * the wrapper's bias).
 *
 * Method: every repetition runs each phase on every variant before the next
 * phase, so one phase of all variants lies within a few seconds. The variant
 * order changes with the repetition and the phase: rotated by one every two
 * repetitions and reversed in odd ones (ABBA: A B C D, D C B A, B C D A, A D C
 * B, ...), so neither warm-up nor drift favours the variant that runs first.
 * Each variant's database is opened before and closed after a phase (outside
 * the timing). For each repetition the ratio variant / plain is taken (a paired
 * ratio); the table gives the median of those ratios and their min..max, for
 * throughput (operations per wall second) and CPU time per operation (every
 * thread of the process: flushes and compactions included). On a shared
 * machine the CPU ratio is the more stable of the two. Defaults make every
 * phase last one second or more; --quick is a short smoke run (< 1 minute).
 *
 * The databases live in /dev/shm (tmpfs) unless --dir says otherwise: no disk
 * and no kernel writeback of another variant's dirty pages in the timings, so
 * the ratios are CPU-bound, the least favourable case for encryption.
 */
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/table.h>

#include "tde/rocksdb.hpp"

namespace
{

struct Sample {
    double ops_s = 0, cpu_us_op = 0, seconds = 0;
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

void
Check(const rocksdb::Status &s, const char *what)
{
    if (!s.ok()) {
        fprintf(stderr, "bench_rocksdb: %s: %s\n", what, s.ToString().c_str());
        exit(1);
    }
}

std::vector<std::string>
Split(const std::string &list)
{
    std::vector<std::string> out;
    size_t i = 0;
    while (i <= list.size()) {
        size_t j = list.find(',', i);
        if (j == std::string::npos)
            j = list.size();
        if (j > i)
            out.push_back(list.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

const std::vector<std::string> kWorkloads = {"fillrandom", "overwrite", "compaction",
                                             "readrandom_small_cache", "readrandom_large_cache"};

struct Config {
    uint64_t num = 200000;
    int reps = 5;
    int rounds = 25;
    std::vector<std::string> methods = {"null", "aes128-ctr", "aes256-ctr", "sm4-ctr"};
    std::vector<std::string> workloads = kWorkloads;
};

// One variant: its Env (nullptr for plain) and its database directory in this repetition.
struct Variant {
    std::string name, dir;
    std::unique_ptr<rocksdb::Env> env;
};

class Bench
{
  public:
    explicit Bench(const Config &cfg) : cfg_(cfg)
    {
        // Values as db_bench's: half random bytes, half a repeat, so they compress to ~50%.
        uint64_t x = 0x2545F4914F6CDD1DULL;
        values_.resize(1 << 20);
        for (size_t i = 0; i < values_.size(); i += 100)
            for (size_t j = 0; j < 100 && i + j < values_.size(); j++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                values_[i + j] = j < 50 ? (char)x : values_[i + j - 50];
            }
    }

    // Runs phase @p w on the database of @p v; the keys follow @p seed.
    Sample
    Run(const std::string &w, Variant &v, uint64_t seed)
    {
        rocksdb::Env *env = v.env ? v.env.get() : rocksdb::Env::Default();
        size_t cache = w == "readrandom_large_cache" ? (size_t)1 << 30 : (size_t)8 << 20;
        rocksdb::DB *db = nullptr;
        Check(rocksdb::DB::Open(Opts(env, cache), v.dir, &db), "open");
        uint64_t rng = seed;
        auto next = [&rng, this]() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            return rng % cfg_.num;
        };
        rocksdb::WriteOptions wo;
        rocksdb::ReadOptions ro;
        std::string got;
        Sample s;
        if (w == "fillrandom" || w == "overwrite") {
            s = Measure(cfg_.num, [&] {
                for (uint64_t i = 0; i < cfg_.num; i++)
                    Check(db->Put(wo, Key(next()), Value(i)), "put");
                Check(db->Flush(rocksdb::FlushOptions()), "flush");
                Quiesce(db);
            });
        } else if (w == "compaction") {
            rocksdb::CompactRangeOptions co;
            co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
            s = Measure(cfg_.num * (uint64_t)cfg_.rounds, [&] {
                for (int i = 0; i < cfg_.rounds; i++)
                    Check(db->CompactRange(co, nullptr, nullptr), "compact");
            });
        } else {
            if (cache > (64u << 20)) // warm the large cache first
                for (uint64_t i = 0; i < cfg_.num; i++)
                    db->Get(ro, Key(i), &got).PermitUncheckedError();
            uint64_t reads = cfg_.num * 3;
            s = Measure(reads, [&] {
                for (uint64_t i = 0; i < reads; i++)
                    db->Get(ro, Key(next()), &got).PermitUncheckedError();
            });
        }
        Check(db->Close(), "close");
        delete db;
        return s;
    }

  private:
    static std::string
    Key(uint64_t i)
    {
        char buf[17];
        snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)(i * 0x9E3779B97F4A7C15ULL));
        return std::string(buf, 16);
    }

    rocksdb::Slice
    Value(uint64_t i) const
    {
        return rocksdb::Slice(values_.data() + (i * 100) % (values_.size() - 100), 100);
    }

    static rocksdb::Options
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

    // Waits until the flushes and compactions a write phase triggered are done.
    static void
    Quiesce(rocksdb::DB *db)
    {
        for (int waited = 0; waited < 300000; waited += 2) {
            uint64_t busy = 0, v = 0;
            for (const char *p : {"rocksdb.num-running-compactions", "rocksdb.compaction-pending",
                                  "rocksdb.num-running-flushes", "rocksdb.mem-table-flush-pending"})
                if (db->GetIntProperty(p, &v))
                    busy += v;
            if (busy == 0)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }

    template <typename F>
    static Sample
    Measure(uint64_t ops, F body)
    {
        double w0 = WallSeconds(), c0 = CpuSeconds();
        body();
        double w = WallSeconds() - w0, c = CpuSeconds() - c0;
        Sample s;
        s.ops_s = (double)ops / w;
        s.cpu_us_op = c * 1e6 / (double)ops;
        s.seconds = w;
        return s;
    }

    const Config &cfg_;
    std::vector<char> values_;
};

// The order of the variants in repetition @p rep, phase @p phase (see the header comment).
std::vector<size_t>
Order(size_t n, int rep, size_t phase)
{
    std::vector<size_t> o(n);
    for (size_t i = 0; i < n; i++)
        o[i] = (i + (size_t)(rep / 2) + phase) % n;
    if (rep % 2 == 1)
        std::reverse(o.begin(), o.end());
    return o;
}

double
Median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
Usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--json] [--quick] [--num N] [--reps R] [--rounds K] [--dir DIR]\n"
            "       [--methods null,aes128-ctr,aes256-ctr,sm4-ctr] [--workloads LIST]\n"
            "workloads: fillrandom,overwrite,compaction,readrandom_small_cache,"
            "readrandom_large_cache\n",
            argv0);
    return 2;
}

} // namespace

int
main(int argc, char **argv)
{
    bool json = false;
    Config cfg;
    std::string base;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        bool more = i + 1 < argc;
        if (a == "--json") {
            json = true;
        } else if (a == "--quick") {
            cfg.num = 50000;
            cfg.reps = 1;
            cfg.rounds = 5;
        } else if (a == "--num" && more) {
            cfg.num = strtoull(argv[++i], nullptr, 10);
        } else if (a == "--reps" && more) {
            cfg.reps = atoi(argv[++i]);
        } else if (a == "--dir" && more) {
            base = argv[++i];
        } else if (a == "--rounds" && more) {
            cfg.rounds = atoi(argv[++i]);
        } else if (a == "--methods" && more) {
            cfg.methods = Split(argv[++i]);
        } else if (a == "--workloads" && more) {
            cfg.workloads = Split(argv[++i]);
            for (const std::string &w : cfg.workloads)
                if (std::find(kWorkloads.begin(), kWorkloads.end(), w) == kWorkloads.end())
                    return Usage(argv[0]);
        } else {
            return Usage(argv[0]);
        }
    }
    if (cfg.num < 100 || cfg.reps < 1 || cfg.rounds < 1)
        return Usage(argv[0]);
    // Every phase but fillrandom needs the data fillrandom leaves: it always runs first.
    std::vector<std::string> phases;
    for (const std::string &w : kWorkloads)
        if (w == "fillrandom" ||
            std::find(cfg.workloads.begin(), cfg.workloads.end(), w) != cfg.workloads.end())
            phases.push_back(w);

    if (base.empty())
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/bench_rocksdb-XXXXXX";
    if (mkdtemp(&tmpl[0]) == nullptr) {
        perror(tmpl.c_str());
        return 1;
    }
    std::string root = tmpl;
    std::string keyfile = root + "/master.key";
    FILE *kf = fopen(keyfile.c_str(), "w");
    if (kf == nullptr)
        return 1;
    fprintf(kf, "%s\n", "4f6d2a1c9e8b7a6554433221100ffeeddccbbaa99887766554433221100aabbc");
    fclose(kf);

    std::vector<std::string> names = {"plain"};
    for (const std::string &m : cfg.methods)
        names.push_back(m);
    Bench bench(cfg);
    // samples[workload][variant][rep]
    std::map<std::string, std::map<std::string, std::vector<Sample>>> samples;
    for (int r = 0; r < cfg.reps; r++) {
        std::vector<Variant> vars;
        for (const std::string &n : names) {
            Variant v;
            v.name = n;
            v.dir = root + "/" + n + "-" + std::to_string(r);
            if (n != "plain") {
                std::string method = n == "null" ? "plaintext" : n;
                std::string uri =
                    "libtde:" + v.dir + "-km,master:file://" + keyfile + ",method:" + method;
                rocksdb::Status s = tde::NewEncryptedEnv(uri, &v.env);
                if (!s.ok()) {
                    fprintf(stderr, "bench_rocksdb: %s: %s\n", n.c_str(), s.ToString().c_str());
                    return 1;
                }
            }
            vars.push_back(std::move(v));
        }
        uint64_t seed = 88172645463325252ULL + (uint64_t)r * 7919;
        for (size_t p = 0; p < phases.size(); p++) {
            for (size_t i : Order(vars.size(), r, p)) {
                Sample s = bench.Run(phases[p], vars[i], seed + p);
                samples[phases[p]][vars[i].name].push_back(s);
            }
        }
        for (Variant &v : vars) {
            v.env.reset();
            std::string rm = "rm -rf '" + v.dir + "' '" + v.dir + "-km'";
            if (system(rm.c_str()) != 0)
                return 1;
        }
    }

    if (!json) {
        printf("RocksDB 7.8 in %s, %llu keys (16 B) x 100 B values, %d repetition(s), %d "
               "compaction round(s); medians of paired per-repetition ratios [min..max]\n\n",
               base.c_str(), (unsigned long long)cfg.num, cfg.reps, cfg.rounds);
        printf("| workload | method | plain ops/s | libtde ops/s | ratio (libtde/plain) | "
               "ratio min..max | cpu us/op plain | cpu us/op libtde | cpu ratio | "
               "cpu ratio min..max | phase s |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    for (const std::string &w : kWorkloads) {
        if (std::find(cfg.workloads.begin(), cfg.workloads.end(), w) == cfg.workloads.end())
            continue;
        const std::vector<Sample> &plain = samples[w]["plain"];
        std::vector<double> p_rate, p_cpu, p_sec;
        for (const Sample &s : plain) {
            p_rate.push_back(s.ops_s);
            p_cpu.push_back(s.cpu_us_op);
            p_sec.push_back(s.seconds);
        }
        for (const std::string &m : cfg.methods) {
            const std::vector<Sample> &enc = samples[w][m];
            std::vector<double> t_rate, t_cpu, ratio, cpu_ratio;
            for (size_t r = 0; r < enc.size(); r++) {
                t_rate.push_back(enc[r].ops_s);
                t_cpu.push_back(enc[r].cpu_us_op);
                ratio.push_back(enc[r].ops_s / plain[r].ops_s);
                cpu_ratio.push_back(enc[r].cpu_us_op / plain[r].cpu_us_op);
            }
            auto mm = [](const std::vector<double> &v) {
                return std::make_pair(*std::min_element(v.begin(), v.end()),
                                      *std::max_element(v.begin(), v.end()));
            };
            auto rr = mm(ratio), cr = mm(cpu_ratio);
            if (json)
                printf("{\"workload\": \"%s\", \"method\": \"%s\", \"plain_ops_s\": %.0f, "
                       "\"libtde_ops_s\": %.0f, \"ratio\": %.3f, \"ratio_min\": %.3f, "
                       "\"ratio_max\": %.3f, \"plain_cpu_us_op\": %.3f, "
                       "\"libtde_cpu_us_op\": %.3f, \"cpu_ratio\": %.3f, \"cpu_ratio_min\": %.3f, "
                       "\"cpu_ratio_max\": %.3f, \"phase_s\": %.2f, \"num\": %llu, "
                       "\"reps\": %d}\n",
                       w.c_str(), m.c_str(), Median(p_rate), Median(t_rate), Median(ratio),
                       rr.first, rr.second, Median(p_cpu), Median(t_cpu), Median(cpu_ratio),
                       cr.first, cr.second, Median(p_sec), (unsigned long long)cfg.num, cfg.reps);
            else
                printf("| %s | %s | %.0f | %.0f | %.3f | %.3f..%.3f | %.3f | %.3f | %.3f | "
                       "%.3f..%.3f | %.2f |\n",
                       w.c_str(), m.c_str(), Median(p_rate), Median(t_rate), Median(ratio),
                       rr.first, rr.second, Median(p_cpu), Median(t_cpu), Median(cpu_ratio),
                       cr.first, cr.second, Median(p_sec));
        }
    }
    std::string rm = "rm -rf '" + root + "'";
    return system(rm.c_str()) == 0 ? 0 : 1;
}
