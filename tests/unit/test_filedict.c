/* The file dictionary: durability, crash safety, corruption, group commit, read-only opens. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/fileio.h"
#include "keymgr/filedict.h"
#include "testutil.h"

static const uint8_t test_key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                     12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static tde_status
open_dict(tde_filedict **d, const char *dir, bool ro, uint64_t compact)
{
    tde_filedict_options o = {.version = TDE_FILEDICT_OPTIONS_VERSION,
                              .dir = dir,
                              .read_only = ro,
                              .compact_bytes = compact};
    memcpy(o.mac_key, test_key, sizeof(test_key));
    return tde_filedict_open(d, &o);
}

static tde_file_entry
entry_for(uint64_t i)
{
    tde_file_entry e = {.key_id = 0x1000 + i, .method = (uint8_t)(2 + i % 4)};
    for (int k = 0; k < 16; k++)
        e.iv[k] = (uint8_t)(i * 31 + (uint64_t)k);
    return e;
}

static void
assert_entry(tde_filedict *d, const char *name, const tde_file_entry *want)
{
    tde_file_entry got;
    assert_tde_ok(tde_filedict_get(d, name, &got));
    assert_int_equal(got.key_id, want->key_id);
    assert_int_equal(got.method, want->method);
    assert_memory_equal(got.iv, want->iv, 16);
}

static char *
dict_path(const char *dir, uint64_t gen, const char *ext)
{
    char *p = malloc(PATH_MAX);
    assert_non_null(p);
    snprintf(p, PATH_MAX, "%s/filedict-%016llx.%s", dir, (unsigned long long)gen, ext);
    return p;
}

static uint8_t *
read_file(const char *path, size_t *len)
{
    uint8_t *data;
    assert_tde_ok(tde_fileio_read_all(path, &data, len));
    return data;
}

static void
write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A listing of a directory's files and contents, to prove nothing was modified. */
struct dir_image {
    int n;
    char names[16][256];
    uint8_t *data[16];
    size_t len[16];
};

static void
dir_image_take(struct dir_image *img, const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];

    assert_non_null(dp);
    img->n = 0;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        assert_true(img->n < 16);
        snprintf(img->names[img->n], sizeof(img->names[0]), "%s", de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        img->data[img->n] = read_file(path, &img->len[img->n]);
        img->n++;
    }
    closedir(dp);
}

static void
dir_image_free(struct dir_image *img)
{
    for (int i = 0; i < img->n; i++)
        free(img->data[i]);
    img->n = 0;
}

static void
assert_dir_unchanged(const struct dir_image *before, const char *dir)
{
    struct dir_image now;
    dir_image_take(&now, dir);
    assert_int_equal(now.n, before->n);
    for (int i = 0; i < now.n; i++) {
        int j = 0;
        while (j < before->n && strcmp(before->names[j], now.names[i]) != 0)
            j++;
        assert_true(j < before->n);
        assert_int_equal(now.len[i], before->len[j]);
        assert_memory_equal(now.data[i], before->data[j], now.len[i]);
    }
    dir_image_free(&now);
}

/* ---- A model of the dictionary for crash tests ---- */

#define UNIVERSE 6

struct model {
    bool present[UNIVERSE];
    tde_file_entry e[UNIVERSE];
};

struct script_op {
    int type; /* 0 put, 1 delete, 2 link */
    int a, b;
    tde_file_entry e;
};

static void
uname(char *out, int i)
{
    snprintf(out, 32, "db/%06d.sst", i);
}

static void
script_make(struct script_op *ops, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        uint64_t r = test_rand(&seed);
        ops[i].type = i < 3 ? 0 : (int)(r % 5 == 4 ? 1 : r % 5 == 3 ? 2 : 0);
        ops[i].a = (int)((r >> 8) % UNIVERSE);
        ops[i].b = (int)((r >> 16) % UNIVERSE);
        ops[i].e = entry_for((uint64_t)i + 1);
    }
}

/* Applies @p op to the model; returns false when the dictionary call would be refused. */
static bool
model_apply(struct model *m, const struct script_op *op)
{
    switch (op->type) {
    case 0:
        m->present[op->a] = true;
        m->e[op->a] = op->e;
        return true;
    case 1: m->present[op->a] = false; return true;
    default:
        if (!m->present[op->a])
            return false;
        m->present[op->b] = true;
        m->e[op->b] = m->e[op->a];
        return true;
    }
}

static tde_status
script_run_one(tde_filedict *d, const struct script_op *op)
{
    char a[32], b[32];
    uname(a, op->a);
    uname(b, op->b);
    switch (op->type) {
    case 0: return tde_filedict_put(d, a, &op->e);
    case 1: return tde_filedict_delete(d, a);
    default: return tde_filedict_link(d, a, b);
    }
}

static bool
model_matches(tde_filedict *d, const struct model *m)
{
    size_t n = 0;
    for (int i = 0; i < UNIVERSE; i++) {
        char name[32];
        tde_file_entry got;
        tde_status st;
        uname(name, i);
        st = tde_filedict_get(d, name, &got);
        if (!m->present[i]) {
            if (st != TDE_ERR_NOT_FOUND)
                return false;
            continue;
        }
        n++;
        if (st != TDE_OK || got.key_id != m->e[i].key_id || got.method != m->e[i].method ||
            memcmp(got.iv, m->e[i].iv, 16) != 0)
            return false;
    }
    return n == tde_filedict_count(d);
}

/* The model after the first @p k ops of the script (ops the dictionary refuses are skipped). */
static void
model_after(struct model *m, const struct script_op *ops, int k)
{
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < k; i++)
        (void)model_apply(m, &ops[i]);
}

/* ---- Basic behaviour ---- */

static void
test_filedict_entries_survive_reopen(void **state)
{
    char *dir = test_tmpdir("filedict");
    tde_filedict *d;
    tde_file_entry e1 = entry_for(1), e2 = entry_for(2), e3 = entry_for(3), got;
    struct stat sb;
    char *snap = dict_path(dir, 1, "snap"), *log = dict_path(dir, 1, "log");
    (void)state;

    assert_int_equal(open_dict(&d, dir, true, 0), TDE_ERR_NOT_FOUND);
    assert_tde_ok(open_dict(&d, dir, false, 0));
    assert_int_equal(stat(snap, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(log, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_tde_ok(tde_filedict_put(d, "db/000001.sst", &e1));
    assert_tde_ok(tde_filedict_put(d, "wal/000002.log", &e2));
    assert_tde_ok(tde_filedict_put(d, "db/000001.sst", &e3)); /* re-created: new entry */
    assert_tde_ok(tde_filedict_link(d, "wal/000002.log", "wal/000003.log"));
    assert_int_equal(tde_filedict_link(d, "nope", "x"), TDE_ERR_NOT_FOUND);
    assert_non_null(strstr(tde_last_error(), "nope"));
    assert_tde_ok(tde_filedict_delete(d, "wal/000002.log"));
    assert_tde_ok(tde_filedict_delete(d, "never/there")); /* not an error */
    assert_int_equal(tde_filedict_put(d, "", &e1), TDE_ERR_INVALID_ARG);
    assert_int_equal(tde_filedict_count(d), 2);
    tde_filedict_close(d);

    for (int ro = 0; ro <= 1; ro++) {
        assert_tde_ok(open_dict(&d, dir, ro, 0));
        assert_int_equal(tde_filedict_count(d), 2);
        assert_entry(d, "db/000001.sst", &e3);
        assert_entry(d, "wal/000003.log", &e2);
        assert_int_equal(tde_filedict_get(d, "wal/000002.log", &got), TDE_ERR_NOT_FOUND);
        if (ro)
            assert_int_equal(tde_filedict_put(d, "a", &e1), TDE_ERR_STATE);
        tde_filedict_close(d);
    }
    free(snap);
    free(log);
    test_rmtree(dir);
    free(dir);
}

static void
test_filedict_wrong_key_gives_auth(void **state)
{
    char *dir = test_tmpdir("filedict");
    tde_filedict *d;
    tde_filedict_options o = {.version = TDE_FILEDICT_OPTIONS_VERSION, .dir = dir};
    tde_file_entry e = entry_for(1);
    struct dir_image img;
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 0));
    assert_tde_ok(tde_filedict_put(d, "db/1", &e));
    tde_filedict_close(d);
    dir_image_take(&img, dir);
    memcpy(o.mac_key, test_key, 32);
    o.mac_key[31] ^= 1;
    assert_int_equal(tde_filedict_open(&d, &o), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "filedict-0000000000000001.snap"));
    assert_dir_unchanged(&img, dir);
    dir_image_free(&img);
    test_rmtree(dir);
    free(dir);
}

struct collect {
    int n;
    uint64_t key_sum;
};

static int
collect_fn(void *arg, const char *name, const tde_file_entry *e)
{
    struct collect *c = arg;
    assert_true(strncmp(name, "db/", 3) == 0);
    c->n++;
    c->key_sum += e->key_id;
    return 0;
}

/* Many puts, deletes and re-puts grow, shrink and repack the table; compaction keeps the
 * previous generation and drops older ones. */
static void
test_filedict_compaction_and_table_growth(void **state)
{
    char *dir = test_tmpdir("filedict");
    tde_filedict *d;
    enum { N = 3000 };
    static bool present[N];
    char name[32];
    uint64_t snap, log;
    struct collect c = {0};
    uint64_t want_sum = 0;
    int want_n = 0;
    (void)state;

    memset(present, 0, sizeof(present));
    assert_tde_ok(open_dict(&d, dir, false, 16 * 1024));
    for (int round = 0; round < 3; round++) {
        const char *names[N / 3];
        char buf[N / 3][32];
        tde_file_entry es[N / 3];
        for (int i = 0; i < N / 3; i++) {
            int k = round * (N / 3) + i;
            snprintf(buf[i], 32, "db/%06d.sst", k);
            names[i] = buf[i];
            es[i] = entry_for((uint64_t)k);
            present[k] = true;
        }
        assert_tde_ok(tde_filedict_put_batch(d, names, es, N / 3));
        for (int i = 0; i < N; i += 2 + round) {
            snprintf(name, sizeof(name), "db/%06d.sst", i);
            assert_tde_ok(tde_filedict_delete(d, name));
            present[i] = false;
        }
    }
    tde_filedict_sizes(d, &snap, &log);
    assert_true(snap > 0 && log <= 16 * 1024 + 4096);
    tde_filedict_close(d);
    for (int i = 0; i < N; i++)
        if (present[i]) {
            want_n++;
            want_sum += 0x1000 + (uint64_t)i;
        }
    {
        /* Exactly two generations are kept. */
        DIR *dp = opendir(dir);
        struct dirent *de;
        int snaps = 0, logs = 0;
        while ((de = readdir(dp)) != NULL) {
            snaps += strstr(de->d_name, ".snap") != NULL;
            logs += strstr(de->d_name, ".log") != NULL;
        }
        closedir(dp);
        assert_int_equal(snaps, 2);
        assert_int_equal(logs, 2);
    }
    assert_tde_ok(open_dict(&d, dir, true, 0));
    assert_int_equal(tde_filedict_count(d), want_n);
    assert_tde_ok(tde_filedict_foreach(d, collect_fn, &c));
    assert_int_equal(c.n, want_n);
    assert_int_equal(c.key_sum, want_sum);
    for (int i = 0; i < N; i += 7) {
        tde_file_entry e = entry_for((uint64_t)i);
        snprintf(name, sizeof(name), "db/%06d.sst", i);
        if (present[i])
            assert_entry(d, name, &e);
        else
            assert_int_equal(tde_filedict_get(d, name, &e), TDE_ERR_NOT_FOUND);
    }
    tde_filedict_close(d);
    test_rmtree(dir);
    free(dir);
}

/* A record built here with OpenSSL's one-shot HMAC(), following docs/formats.md, is accepted:
 * the format and the MAC input are what the documentation says. */
static void
test_filedict_record_matches_documented_format(void **state)
{
    char *dir = test_tmpdir("filedict");
    char *log = dict_path(dir, 1, "log");
    tde_filedict *d;
    tde_file_entry e = entry_for(7);
    uint8_t rec[8 + 25 + 2 + 4 + 32], prefix[16];
    uint8_t *body = rec + 8, *data;
    size_t len;
    unsigned int maclen = 0;
    FILE *f;
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 0));
    tde_filedict_close(d);
    data = read_file(log, &len);
    assert_int_equal(len, 64);
    free(data);
    rec[0] = 0x52;
    rec[1] = 1;
    rec[2] = 31;
    rec[3] = 0;
    rec[4] = (uint8_t)~31;
    rec[5] = 0xff;
    rec[6] = rec[7] = 0;
    for (int i = 0; i < 8; i++)
        body[i] = (uint8_t)(e.key_id >> (8 * i));
    body[8] = e.method;
    memcpy(body + 9, e.iv, 16);
    body[25] = 4;
    body[26] = 0;
    memcpy(body + 27, "db/x", 4);
    memset(prefix, 0, sizeof(prefix));
    prefix[0] = 1;  /* generation 1 */
    prefix[8] = 64; /* offset 64 */
    {
        uint8_t in[16 + 8 + 31];
        memcpy(in, prefix, 16);
        memcpy(in + 16, rec, 8 + 31);
        assert_non_null(HMAC(EVP_sha256(), test_key, 32, in, sizeof(in), rec + 8 + 31, &maclen));
        assert_int_equal(maclen, 32);
    }
    f = fopen(log, "ab");
    assert_non_null(f);
    assert_int_equal(fwrite(rec, 1, sizeof(rec), f), sizeof(rec));
    assert_int_equal(fclose(f), 0);
    assert_tde_ok(open_dict(&d, dir, true, 0));
    assert_entry(d, "db/x", &e);
    tde_filedict_close(d);
    free(log);
    test_rmtree(dir);
    free(dir);
}

/* ---- Corruption ---- */

/* A dictionary with a non-empty snapshot and log, after one compaction (generation 2). */
static void
make_sample(const char *dir)
{
    tde_filedict *d;
    char name[32];
    tde_file_entry e;

    assert_tde_ok(open_dict(&d, dir, false, 300));
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "db/%d", i);
        e = entry_for((uint64_t)i);
        assert_tde_ok(tde_filedict_put(d, name, &e));
    }
    /* The log passed 300 bytes: now generation 2 with an empty log. */
    e = entry_for(9);
    assert_tde_ok(tde_filedict_put(d, "db/9", &e));
    assert_tde_ok(tde_filedict_delete(d, "db/0"));
    assert_tde_ok(tde_filedict_link(d, "db/1", "db/1.link"));
    tde_filedict_close(d);
}

/* The state make_sample() leaves. */
static void
assert_sample_content(tde_filedict *d)
{
    const char *names[] = {"db/1", "db/2", "db/3", "db/4", "db/9", "db/1.link"};
    const uint64_t ids[] = {1, 2, 3, 4, 9, 1};
    tde_file_entry e;

    assert_int_equal(tde_filedict_count(d), 6);
    for (int i = 0; i < 6; i++) {
        e = entry_for(ids[i]);
        assert_entry(d, names[i], &e);
    }
}

/* Damaged files: open fails with CORRUPT or AUTH naming the file, or (when @p recoverable)
 * recovers the exact content from the previous generation; either way nothing is modified.
 * Returns how many of the two opens recovered. */
static int
check_damaged_open(const char *dir, bool recoverable)
{
    struct dir_image img;
    tde_filedict *d = NULL;
    int recovered = 0;

    dir_image_take(&img, dir);
    for (int ro = 1; ro >= 0; ro--) {
        tde_status st = open_dict(&d, dir, ro, 300);
        if (st == TDE_OK) {
            assert_true(recoverable);
            assert_sample_content(d);
            tde_filedict_close(d);
            recovered++;
        } else {
            if (st != TDE_ERR_CORRUPT && st != TDE_ERR_AUTH)
                print_error("unexpected %s: %s\n", tde_status_str(st), tde_last_error());
            assert_true(st == TDE_ERR_CORRUPT || st == TDE_ERR_AUTH);
            assert_non_null(strstr(tde_last_error(), "filedict-"));
            assert_true(strstr(tde_last_error(), "offset") != NULL ||
                        strstr(tde_last_error(), "truncated") != NULL);
        }
        assert_dir_unchanged(&img, dir);
    }
    dir_image_free(&img);
    return recovered;
}

static void
remove_generation(const char *dir, uint64_t gen)
{
    char *p = dict_path(dir, gen, "snap");
    assert_int_equal(unlink(p), 0);
    free(p);
    p = dict_path(dir, gen, "log");
    assert_int_equal(unlink(p), 0);
    free(p);
}

/* Every flipped byte is caught. A damaged newest snapshot is rebuilt from the previous
 * generation when that is provably complete, and is an error when it is not there. */
static void
test_filedict_flip_every_byte_is_detected_and_changes_nothing(void **state)
{
    const char *exts[] = {"snap", "log"};
    (void)state;

    for (int with_prev = 1; with_prev >= 0; with_prev--) {
        char *dir = test_tmpdir("filedict");
        make_sample(dir);
        if (!with_prev)
            remove_generation(dir, 1);
        for (int f = 0; f < 2; f++) {
            char *path = dict_path(dir, 2, exts[f]);
            size_t len;
            uint8_t *orig = read_file(path, &len);
            bool recoverable = with_prev && f == 0;
            int recovered = 0;
            assert_true(len > 64);
            for (size_t i = 0; i < len; i++) {
                orig[i] ^= 0xff;
                write_file(path, orig, len);
                recovered += check_damaged_open(dir, recoverable);
                orig[i] ^= 0xff;
            }
            /* Every snapshot flip is recovered when the previous generation is there. */
            assert_int_equal(recovered, recoverable ? (int)(2 * len) : 0);
            write_file(path, orig, len);
            free(orig);
            free(path);
        }
        test_rmtree(dir);
        free(dir);
    }
}

static void
test_filedict_truncate_snapshot_at_every_length(void **state)
{
    (void)state;

    for (int with_prev = 1; with_prev >= 0; with_prev--) {
        char *dir = test_tmpdir("filedict");
        char *path;
        size_t len;
        uint8_t *orig;
        make_sample(dir);
        if (!with_prev)
            remove_generation(dir, 1);
        path = dict_path(dir, 2, "snap");
        orig = read_file(path, &len);
        for (size_t n = 0; n < len; n++) {
            write_file(path, orig, n);
            assert_int_equal(check_damaged_open(dir, with_prev), with_prev ? 2 : 0);
        }
        write_file(path, orig, len);
        free(orig);
        free(path);
        test_rmtree(dir);
        free(dir);
    }
}

/* Recovery needs the previous log to end exactly where the damaged snapshot began. */
static void
test_filedict_recovery_refuses_an_unprovable_previous_generation(void **state)
{
    char *dir = test_tmpdir("filedict");
    char *snap = dict_path(dir, 2, "snap"), *log1 = dict_path(dir, 1, "log");
    uint8_t *data;
    size_t len;
    tde_filedict *d;
    (void)state;

    make_sample(dir);
    data = read_file(snap, &len);
    data[len - 1] ^= 1;
    write_file(snap, data, len);
    free(data);
    /* Drop the last record of log 1: snapshot 2 held more than generation 1 now proves. */
    data = read_file(log1, &len);
    write_file(log1, data, len - (8 + 27 + 4 + 32));
    free(data);
    assert_int_equal(open_dict(&d, dir, true, 300), TDE_ERR_AUTH);
    assert_non_null(strstr(tde_last_error(), "previous generation 1"));
    free(snap);
    free(log1);
    test_rmtree(dir);
    free(dir);
}

/* Truncating the log anywhere past its header looks like a crash mid-append: a read-only open
 * sees the whole records before the cut and writes nothing; a read-write open repairs the tail. */
static void
test_filedict_truncate_log_at_every_length(void **state)
{
    char *dir = test_tmpdir("filedict");
    char *path;
    size_t len;
    uint8_t *orig;
    size_t bounds[8];
    int nb = 0;
    (void)state;

    make_sample(dir);
    path = dict_path(dir, 2, "log");
    orig = read_file(path, &len);
    /* Record boundaries, from each record's length field. */
    for (size_t off = 64; off < len; off += 8 + (orig[off + 2] | orig[off + 3] << 8) + 32)
        bounds[nb++] = off;
    bounds[nb] = len;
    assert_int_equal(nb, 3);
    for (size_t n = 0; n < len; n++) {
        tde_filedict *d;
        struct dir_image img;
        size_t whole = 0, got;
        uint8_t *now;
        write_file(path, orig, n);
        if (n < 64) {
            assert_int_equal(check_damaged_open(dir, false), 0);
            continue;
        }
        while ((int)whole < nb && bounds[whole + 1] <= n)
            whole++;
        dir_image_take(&img, dir);
        assert_tde_ok(open_dict(&d, dir, true, 300));
        /* db/0..4 and db/9 minus the delete of db/0 plus the link, in record order. */
        assert_int_equal(tde_filedict_count(d), 5 + (whole >= 1) - (whole >= 2) + (whole >= 3));
        tde_filedict_close(d);
        assert_dir_unchanged(&img, dir);
        dir_image_free(&img);
        assert_tde_ok(open_dict(&d, dir, false, 300));
        tde_filedict_close(d);
        now = read_file(path, &got);
        assert_int_equal(got, bounds[whole]);
        free(now);
    }
    write_file(path, orig, len);
    free(orig);
    free(path);
    test_rmtree(dir);
    free(dir);
}

struct logged {
    int warnings;
    char last[512];
};

static void
log_capture(tde_log_level level, const char *msg, void *arg)
{
    struct logged *l = arg;
    if (level <= TDE_LOG_WARN) {
        l->warnings++;
        snprintf(l->last, sizeof(l->last), "%s", msg);
    }
}

/* tikv#9886: a torn tail after a full disk must not block start-up. The tail is a prefix of
 * a real record, or zeros, as different file systems leave it. */
static void
test_filedict_torn_tail_repaired_on_open(void **state)
{
    char *dir = test_tmpdir("filedict");
    char *path = dict_path(dir, 1, "log");
    tde_filedict *d;
    tde_file_entry e1 = entry_for(1), e2 = entry_for(2);
    struct logged logged = {0};
    size_t len1, len2;
    uint8_t *full;
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 0));
    assert_tde_ok(tde_filedict_put(d, "db/1", &e1));
    tde_filedict_close(d);
    free(read_file(path, &len1));
    assert_tde_ok(open_dict(&d, dir, false, 0));
    assert_tde_ok(tde_filedict_put(d, "db/2", &e2));
    tde_filedict_close(d);
    full = read_file(path, &len2);
    tde_set_log_callback(log_capture, &logged);
    for (int zeros = 0; zeros <= 1; zeros++) {
        for (size_t cut = len1 + 1; cut < len2; cut += 7) {
            uint8_t *now;
            size_t n;
            if (zeros) {
                memset(full + len1, 0, len2 - len1);
                write_file(path, full, len2);
            } else {
                write_file(path, full, cut);
            }
            logged.warnings = 0;
            assert_tde_ok(open_dict(&d, dir, false, 0));
            assert_int_equal(logged.warnings, 1);
            assert_non_null(strstr(logged.last, "torn"));
            assert_entry(d, "db/1", &e1);
            assert_int_equal(tde_filedict_count(d), 1);
            /* The repaired log takes new records. */
            assert_tde_ok(tde_filedict_put(d, "db/3", &e2));
            tde_filedict_close(d);
            assert_tde_ok(open_dict(&d, dir, true, 0));
            assert_int_equal(tde_filedict_count(d), 2);
            tde_filedict_close(d);
            now = read_file(path, &n);
            assert_int_equal(n, len2);
            free(now);
            if (zeros)
                break;
        }
        free(full);
        full = read_file(path, &len2);
        /* Rebuild the same layout for the next round: db/1, then db/2 as the last record. */
        test_rmtree(dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_tde_ok(open_dict(&d, dir, false, 0));
        assert_tde_ok(tde_filedict_put(d, "db/1", &e1));
        assert_tde_ok(tde_filedict_put(d, "db/2", &e2));
        tde_filedict_close(d);
        free(full);
        full = read_file(path, &len2);
    }
    tde_set_log_callback(NULL, NULL);
    free(full);
    free(path);
    test_rmtree(dir);
    free(dir);
}

/* A failing repair (truncate or its fsync) fails the open; the next open repairs. */
static void
test_filedict_failed_repair_is_retried_by_the_next_open(void **state)
{
    const tde_fileio_op kinds[] = {TDE_FILEIO_TRUNCATE, TDE_FILEIO_FSYNC};
    char *dir = test_tmpdir("filedict");
    char *path = dict_path(dir, 1, "log");
    tde_filedict *d;
    tde_file_entry e = entry_for(1);
    size_t len;
    uint8_t *full;
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 0));
    assert_tde_ok(tde_filedict_put(d, "db/1", &e));
    assert_tde_ok(tde_filedict_put(d, "db/2", &e));
    tde_filedict_close(d);
    full = read_file(path, &len);
    for (size_t k = 0; k < 2; k++) {
        write_file(path, full, len - 5);
        tde_fileio_inject_reset();
        tde_fileio_inject(kinds[k], 1, EIO, false);
        assert_int_equal(open_dict(&d, dir, false, 0), TDE_ERR_IO);
        tde_fileio_inject_reset();
        assert_tde_ok(open_dict(&d, dir, false, 0));
        assert_int_equal(tde_filedict_count(d), 1);
        tde_filedict_close(d);
    }
    free(full);
    free(path);
    test_rmtree(dir);
    free(dir);
}

/* ---- Crash safety ---- */

#define SCRIPT_LEN 40
#define SCRIPT_COMPACT 700

/*
 * Fails the N-th call of each kind of I/O during a script, for every N the script reaches.
 * After the failure the dictionary is reopened: every acknowledged op is there, and the op that
 * failed is either fully there or absent.
 */
static void
test_filedict_fault_injection_at_every_io_call(void **state)
{
    const tde_fileio_op kinds[] = {TDE_FILEIO_OPEN,   TDE_FILEIO_WRITE,     TDE_FILEIO_FSYNC,
                                   TDE_FILEIO_RENAME, TDE_FILEIO_FSYNC_DIR, TDE_FILEIO_TRUNCATE,
                                   TDE_FILEIO_UNLINK};
    struct script_op ops[SCRIPT_LEN];
    int points = 0;
    (void)state;

    int reached_kind[sizeof(kinds) / sizeof(kinds[0])] = {0};

    script_make(ops, SCRIPT_LEN, 12345);
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (int shortw = 0; shortw <= (kinds[k] == TDE_FILEIO_WRITE); shortw++) {
            for (unsigned long nth = 1;; nth++) {
                char *dir = test_tmpdir("filedict");
                tde_filedict *d = NULL;
                struct model before, after;
                int failed_at = -1;
                tde_status st;
                bool reached;

                tde_fileio_inject_reset();
                tde_fileio_inject(kinds[k], nth, shortw ? ENOSPC : EIO, shortw);
                st = open_dict(&d, dir, false, SCRIPT_COMPACT);
                if (st != TDE_OK)
                    failed_at = 0;
                for (int i = 0; st == TDE_OK && i < SCRIPT_LEN; i++) {
                    struct model m;
                    model_after(&m, ops, i);
                    if (ops[i].type == 2 && !m.present[ops[i].a])
                        continue;
                    st = script_run_one(d, &ops[i]);
                    if (st != TDE_OK)
                        failed_at = i;
                }
                reached = tde_fileio_calls(kinds[k]) >= nth;
                tde_fileio_inject_reset();
                tde_filedict_close(d);
                if (!reached) {
                    assert_int_equal(st, TDE_OK);
                    test_rmtree(dir);
                    free(dir);
                    break;
                }
                points++;
                reached_kind[k]++;
                /* Reopen without faults (this may repair a torn tail). */
                assert_tde_ok(open_dict(&d, dir, false, SCRIPT_COMPACT));
                if (failed_at < 0) {
                    /* A failed compaction or cleanup is not an error for the caller. */
                    model_after(&after, ops, SCRIPT_LEN);
                    assert_true(model_matches(d, &after));
                } else if (failed_at == 0 && tde_filedict_count(d) == 0) {
                    /* failed while creating, or at the first op */
                } else {
                    model_after(&before, ops, failed_at);
                    model_after(&after, ops, failed_at + 1);
                    if (!model_matches(d, &before) && !model_matches(d, &after))
                        fail_msg("kind %zu nth %lu: state after failure at op %d matches "
                                 "neither side",
                                 k, nth, failed_at);
                }
                tde_filedict_close(d);
                test_rmtree(dir);
                free(dir);
            }
        }
    }
    assert_true(points > 50);
    /* Every kind but truncate (only a torn-tail repair truncates) is reached. */
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        if (kinds[k] != TDE_FILEIO_TRUNCATE && reached_kind[k] == 0)
            fail_msg("no %zu-th kind I/O call was ever made", k);
}

/* Kills the process at every hit of every named failpoint during the script, then checks the
 * acknowledged state (the child reports each acknowledgement through a pipe). */
static void
test_filedict_crash_at_every_failpoint(void **state)
{
    const char *points[] = {"fileio.durable.after_temp", "fileio.durable.after_rename",
                            "filedict.before_append",    "filedict.after_append",
                            "filedict.after_sync",       "filedict.compact.after_snapshot",
                            "filedict.compact.after_log"};
    struct script_op ops[SCRIPT_LEN];
    int crashes = 0;
    (void)state;

    int hit[sizeof(points) / sizeof(points[0])] = {0};

    script_make(ops, SCRIPT_LEN, 777);
    for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
        for (unsigned long nth = 1;; nth++) {
            char *dir = test_tmpdir("filedict");
            int fds[2], status, acked = -1;
            char byte;
            pid_t pid;
            tde_filedict *d;
            struct model before, after;

            assert_int_equal(pipe(fds), 0);
            pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                close(fds[0]);
                tde_failpoint_arm(points[p], nth, 99);
                if (open_dict(&d, dir, false, SCRIPT_COMPACT) != TDE_OK)
                    _exit(2);
                if (write(fds[1], "o", 1) != 1)
                    _exit(3);
                for (int i = 0; i < SCRIPT_LEN; i++) {
                    struct model m;
                    model_after(&m, ops, i);
                    if (!(ops[i].type == 2 && !m.present[ops[i].a]) &&
                        script_run_one(d, &ops[i]) != TDE_OK)
                        _exit(4);
                    if (write(fds[1], "a", 1) != 1)
                        _exit(3);
                }
                _exit(0);
            }
            close(fds[1]);
            while (read(fds[0], &byte, 1) == 1)
                acked++;
            close(fds[0]);
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFEXITED(status));
            if (WEXITSTATUS(status) == 0) {
                test_rmtree(dir);
                free(dir);
                break;
            }
            assert_int_equal(WEXITSTATUS(status), 99);
            crashes++;
            hit[p]++;
            assert_tde_ok(open_dict(&d, dir, false, SCRIPT_COMPACT));
            if (acked < 0) {
                assert_int_equal(tde_filedict_count(d), 0);
            } else {
                model_after(&before, ops, acked);
                model_after(&after, ops, acked + 1);
                if (!model_matches(d, &before) && !(acked < SCRIPT_LEN && model_matches(d, &after)))
                    fail_msg("%s hit %lu: state after %d acknowledged ops is wrong", points[p], nth,
                             acked);
            }
            tde_filedict_close(d);
            test_rmtree(dir);
            free(dir);
        }
    }
    assert_true(crashes > 40);
    for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++)
        if (hit[p] == 0)
            fail_msg("failpoint %s was never reached", points[p]);
}

/* ---- Concurrency ---- */

#define THREADS 8
#define PER_THREAD 150

struct worker {
    tde_filedict *d;
    int id;
    tde_status st;
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    char name[32];
    for (int i = 0; i < PER_THREAD && w->st == TDE_OK; i++) {
        tde_file_entry e = entry_for((uint64_t)(w->id * PER_THREAD + i)), got;
        snprintf(name, sizeof(name), "t%d/%d", w->id, i);
        w->st = tde_filedict_put(w->d, name, &e);
        if (w->st == TDE_OK)
            w->st = tde_filedict_get(w->d, name, &got);
        if (w->st == TDE_OK && got.key_id != e.key_id)
            w->st = TDE_ERR_INTERNAL;
        if (w->st == TDE_OK && i % 3 == 0)
            w->st = tde_filedict_delete(w->d, name);
    }
    return NULL;
}

/* Concurrent writers share appends and fsyncs, and every acknowledged change is durable. */
static void
test_filedict_group_commit_under_threads(void **state)
{
    char *dir = test_tmpdir("filedict");
    tde_filedict *d;
    pthread_t th[THREADS];
    struct worker w[THREADS];
    unsigned long fsyncs;
    int ops = THREADS * (PER_THREAD + (PER_THREAD + 2) / 3);
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 64 * 1024));
    tde_fileio_inject_reset();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.d = d, .id = i, .st = TDE_OK};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_tde_ok(w[i].st);
    }
    fsyncs = tde_fileio_calls(TDE_FILEIO_FSYNC);
    print_message("group commit: %d writes, %lu fsyncs\n", ops, fsyncs);
    assert_true(fsyncs < (unsigned long)ops);
    tde_filedict_close(d);
    assert_tde_ok(open_dict(&d, dir, true, 0));
    assert_int_equal(tde_filedict_count(d), THREADS * (PER_THREAD - (PER_THREAD + 2) / 3));
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            char name[32];
            tde_file_entry e = entry_for((uint64_t)(t * PER_THREAD + i)), got;
            snprintf(name, sizeof(name), "t%d/%d", t, i);
            if (i % 3 == 0)
                assert_int_equal(tde_filedict_get(d, name, &got), TDE_ERR_NOT_FOUND);
            else
                assert_entry(d, name, &e);
        }
    tde_filedict_close(d);
    test_rmtree(dir);
    free(dir);
}

struct acked_worker {
    tde_filedict *d;
    int id;
    bool acked[50];
};

static void *
acked_worker_main(void *arg)
{
    struct acked_worker *w = arg;
    for (int i = 0; i < 50; i++) {
        char name[32];
        tde_file_entry e = entry_for((uint64_t)(w->id * 50 + i));
        snprintf(name, sizeof(name), "w%d/%d", w->id, i);
        w->acked[i] = tde_filedict_put(w->d, name, &e) == TDE_OK;
    }
    return NULL;
}

/* A failed fsync under group commit fails every call of its batch and every later call; after
 * reopening, every acknowledged entry is there. */
static void
test_filedict_failed_group_commit_keeps_every_acknowledged_entry(void **state)
{
    (void)state;

    for (int kind = 0; kind < 2; kind++) {
        char *dir = test_tmpdir("filedict");
        tde_filedict *d;
        pthread_t th[4];
        struct acked_worker w[4];
        int acked = 0, failed = 0;

        assert_tde_ok(open_dict(&d, dir, false, 0));
        tde_fileio_inject_reset();
        tde_fileio_inject(kind ? TDE_FILEIO_WRITE : TDE_FILEIO_FSYNC, 20, kind ? ENOSPC : EIO,
                          kind == 1);
        for (int i = 0; i < 4; i++) {
            memset(&w[i], 0, sizeof(w[i]));
            w[i].d = d;
            w[i].id = i;
            assert_int_equal(pthread_create(&th[i], NULL, acked_worker_main, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        tde_fileio_inject_reset();
        tde_filedict_close(d);
        assert_tde_ok(open_dict(&d, dir, false, 0));
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < 50; i++) {
                char name[32];
                tde_file_entry e = entry_for((uint64_t)(t * 50 + i));
                snprintf(name, sizeof(name), "w%d/%d", t, i);
                if (w[t].acked[i]) {
                    assert_entry(d, name, &e);
                    acked++;
                } else {
                    failed++;
                }
            }
        assert_true(acked >= 19 && failed > 0);
        tde_filedict_close(d);
        test_rmtree(dir);
        free(dir);
    }
}

/* A read-only open never writes, and follows a log that a writer appends to and compacts. */
static void
test_filedict_read_only_follows_a_live_writer(void **state)
{
    char *dir = test_tmpdir("filedict");
    char *log = dict_path(dir, 1, "log");
    tde_filedict *w, *r;
    tde_file_entry e = entry_for(1);
    char name[32];
    struct dir_image img;
    uint8_t *data;
    size_t len;
    FILE *f;
    (void)state;

    assert_tde_ok(open_dict(&w, dir, false, 2000));
    assert_tde_ok(tde_filedict_put(w, "db/a", &e));
    tde_fileio_inject_reset();
    assert_tde_ok(open_dict(&r, dir, true, 0));
    assert_int_equal(tde_filedict_count(r), 1);

    /* A record being appended (half written) is not seen until it is whole. */
    assert_tde_ok(tde_filedict_put(w, "db/b", &e));
    data = read_file(log, &len);
    assert_int_equal(truncate(log, (off_t)(len - 10)), 0);
    assert_tde_ok(tde_filedict_refresh(r));
    assert_int_equal(tde_filedict_count(r), 1);
    f = fopen(log, "ab");
    assert_non_null(f);
    assert_int_equal(fwrite(data + len - 10, 1, 10, f), 10);
    assert_int_equal(fclose(f), 0);
    free(data);
    assert_tde_ok(tde_filedict_refresh(r));
    assert_int_equal(tde_filedict_count(r), 2);

    /* Enough writes for several compactions. */
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "db/%d", i);
        e = entry_for((uint64_t)i);
        assert_tde_ok(tde_filedict_put(w, name, &e));
        if (i % 37 == 0) {
            assert_tde_ok(tde_filedict_refresh(r));
            assert_int_equal(tde_filedict_count(r), (size_t)i + 3);
        }
    }
    assert_tde_ok(tde_filedict_refresh(r));
    assert_int_equal(tde_filedict_count(r), 202);
    assert_entry(r, "db/199", &e);

    /* Several compactions between two refreshes (the reader's generation files are gone). */
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "db/%d", i);
        assert_tde_ok(tde_filedict_delete(w, name));
    }
    assert_tde_ok(tde_filedict_refresh(r));
    assert_int_equal(tde_filedict_count(r), 2);
    tde_filedict_close(w);

    /* The reader alone: no write, fsync, rename, truncate or unlink. */
    dir_image_take(&img, dir);
    tde_fileio_inject_reset();
    assert_tde_ok(tde_filedict_refresh(r));
    tde_filedict_close(r);
    assert_tde_ok(open_dict(&r, dir, true, 0));
    assert_tde_ok(tde_filedict_refresh(r));
    tde_filedict_close(r);
    assert_int_equal(
        tde_fileio_calls(TDE_FILEIO_WRITE) + tde_fileio_calls(TDE_FILEIO_FSYNC) +
            tde_fileio_calls(TDE_FILEIO_RENAME) + tde_fileio_calls(TDE_FILEIO_FSYNC_DIR) +
            tde_fileio_calls(TDE_FILEIO_TRUNCATE) + tde_fileio_calls(TDE_FILEIO_UNLINK),
        0);
    assert_dir_unchanged(&img, dir);
    dir_image_free(&img);
    free(log);
    test_rmtree(dir);
    free(dir);
}

struct live_writer {
    tde_filedict *d;
    atomic_int done;
    tde_status st;
};

static void *
live_writer_main(void *arg)
{
    struct live_writer *w = arg;
    for (int b = 0; b < 60 && w->st == TDE_OK; b++) {
        static char buf[10][32];
        const char *names[10];
        tde_file_entry es[10];
        for (int i = 0; i < 10; i++) {
            snprintf(buf[i], sizeof(buf[i]), "live/%04d", b * 10 + i);
            names[i] = buf[i];
            es[i] = entry_for((uint64_t)(b * 10 + i));
        }
        w->st = tde_filedict_put_batch(w->d, names, es, 10);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

struct live_check {
    int bad;
};

static int
live_check_fn(void *arg, const char *name, const tde_file_entry *e)
{
    struct live_check *c = arg;
    tde_file_entry want = entry_for((uint64_t)atoi(name + 5));
    if (e->key_id != want.key_id || memcmp(e->iv, want.iv, 16) != 0)
        c->bad++;
    return 0;
}

/* A reader refreshing in a loop while a writer thread appends and compacts: every state it
 * sees is a prefix of the writer's (counts only grow, every entry is right). */
static void
test_filedict_read_only_refresh_races_a_writer_thread(void **state)
{
    char *dir = test_tmpdir("filedict");
    struct live_writer w = {.st = TDE_OK};
    tde_filedict *r;
    pthread_t th;
    size_t last = 0;
    int refreshes = 0;
    (void)state;

    assert_tde_ok(open_dict(&w.d, dir, false, 3000));
    assert_tde_ok(open_dict(&r, dir, true, 0));
    assert_int_equal(pthread_create(&th, NULL, live_writer_main, &w), 0);
    while (!atomic_load(&w.done)) {
        struct live_check c = {0};
        assert_tde_ok(tde_filedict_refresh(r));
        assert_true(tde_filedict_count(r) >= last);
        last = tde_filedict_count(r);
        assert_tde_ok(tde_filedict_foreach(r, live_check_fn, &c));
        assert_int_equal(c.bad, 0);
        refreshes++;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_tde_ok(w.st);
    assert_tde_ok(tde_filedict_refresh(r));
    assert_int_equal(tde_filedict_count(r), 600);
    print_message("%d refreshes during 60 appends\n", refreshes);
    tde_filedict_close(r);
    tde_filedict_close(w.d);
    test_rmtree(dir);
    free(dir);
}

/* tikv#8212: one file op must not rewrite the whole dictionary. Each put is one append of one
 * record and one fsync; the snapshot is untouched until the log passes the threshold. */
static void
test_filedict_put_appends_one_record_not_a_rewrite(void **state)
{
    char *dir = test_tmpdir("filedict");
    tde_filedict *d;
    char name[32];
    uint64_t snap0, log0, snap, log;
    (void)state;

    assert_tde_ok(open_dict(&d, dir, false, 0));
    {
        static char buf[500][32];
        const char *names[500];
        tde_file_entry es[500];
        for (int i = 0; i < 500; i++) {
            snprintf(buf[i], sizeof(buf[i]), "db/%06d.sst", i);
            names[i] = buf[i];
            es[i] = entry_for((uint64_t)i);
        }
        assert_tde_ok(tde_filedict_put_batch(d, names, es, 500));
    }
    tde_filedict_sizes(d, &snap0, &log0);
    tde_fileio_inject_reset();
    for (int i = 0; i < 20; i++) {
        tde_file_entry e = entry_for((uint64_t)i);
        snprintf(name, sizeof(name), "db/%06d.sst", 1000 + i);
        assert_tde_ok(tde_filedict_put(d, name, &e));
        tde_filedict_sizes(d, &snap, &log);
        assert_int_equal(snap, snap0);
        assert_int_equal(log, log0 + (uint64_t)(i + 1) * (8 + 27 + 13 + 32));
    }
    assert_int_equal(tde_fileio_calls(TDE_FILEIO_WRITE), 20);
    assert_int_equal(tde_fileio_calls(TDE_FILEIO_FSYNC), 20);
    assert_int_equal(tde_fileio_calls(TDE_FILEIO_RENAME), 0);
    tde_filedict_close(d);
    test_rmtree(dir);
    free(dir);
}

/* Files written by version 1 keep opening (tests/fixtures/keymgr/v1/filedict/README.md). */
static void
test_filedict_v1_fixture_opens(void **state)
{
    const char *files[] = {"filedict-0000000000000001.snap", "filedict-0000000000000001.log",
                           "filedict-0000000000000002.snap", "filedict-0000000000000002.log"};
    const char *names[] = {"db/000002.sst", "db/000003.sst",  "db/000004.sst",
                           "db/000005.sst", "wal/000007.log", "db/000002.link"};
    const uint64_t ids[] = {2, 3, 4, 5, 7, 2};
    char *dir = test_tmpdir("filedict");
    tde_filedict_options o = {.version = TDE_FILEDICT_OPTIONS_VERSION, .dir = dir};
    struct dir_image img;
    tde_filedict *d;
    tde_file_entry e;
    (void)state;

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char src[PATH_MAX], dst[PATH_MAX];
        uint8_t *data;
        size_t len;
        snprintf(src, sizeof(src), "%s/tests/fixtures/keymgr/v1/filedict/%s", TDE_SOURCE_DIR,
                 files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
        data = read_file(src, &len);
        write_file(dst, data, len);
        free(data);
    }
    for (int i = 0; i < 32; i++)
        o.mac_key[i] = (uint8_t)i;
    dir_image_take(&img, dir);
    for (int ro = 1; ro >= 0; ro--) {
        o.read_only = ro;
        assert_tde_ok(tde_filedict_open(&d, &o));
        assert_int_equal(tde_filedict_count(d), 6);
        for (size_t i = 0; i < 6; i++) {
            tde_file_entry want = entry_for(ids[i]);
            assert_entry(d, names[i], &want);
        }
        assert_int_equal(tde_filedict_get(d, "db/000001.sst", &e), TDE_ERR_NOT_FOUND);
        tde_filedict_close(d);
        assert_dir_unchanged(&img, dir); /* an intact dictionary is not rewritten by opening */
    }
    dir_image_free(&img);
    test_rmtree(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filedict_entries_survive_reopen),
        cmocka_unit_test(test_filedict_wrong_key_gives_auth),
        cmocka_unit_test(test_filedict_compaction_and_table_growth),
        cmocka_unit_test(test_filedict_record_matches_documented_format),
        cmocka_unit_test(test_filedict_flip_every_byte_is_detected_and_changes_nothing),
        cmocka_unit_test(test_filedict_truncate_snapshot_at_every_length),
        cmocka_unit_test(test_filedict_recovery_refuses_an_unprovable_previous_generation),
        cmocka_unit_test(test_filedict_truncate_log_at_every_length),
        cmocka_unit_test(test_filedict_torn_tail_repaired_on_open),
        cmocka_unit_test(test_filedict_failed_repair_is_retried_by_the_next_open),
        cmocka_unit_test(test_filedict_fault_injection_at_every_io_call),
        cmocka_unit_test(test_filedict_crash_at_every_failpoint),
        cmocka_unit_test(test_filedict_group_commit_under_threads),
        cmocka_unit_test(test_filedict_failed_group_commit_keeps_every_acknowledged_entry),
        cmocka_unit_test(test_filedict_read_only_follows_a_live_writer),
        cmocka_unit_test(test_filedict_read_only_refresh_races_a_writer_thread),
        cmocka_unit_test(test_filedict_put_appends_one_record_not_a_rewrite),
        cmocka_unit_test(test_filedict_v1_fixture_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
