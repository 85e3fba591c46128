/*
 * The data-key manager. Threat model: an attacker with the disk (not the
 * master key) must learn no data key and must not be able to redirect a file
 * to another key or to plaintext; a crash at any instant must leave every
 * acknowledged file readable. Hence the orderings below:
 *   - a new data key is durable in key.dict before any file entry uses it, and
 *     becomes current in memory only after that;
 *   - an old key leaves key.dict only when no entry uses it and no live handle
 *     or in-flight new_file holds it (reference count), keeping the newest N;
 *   - key.dict is rewritten only when keys change, never on file operations.
 *
 * Concurrency: `keys_lock` (rwlock) guards the table of per-key ciphers and the
 * current key, so a lookup takes a read lock and "current key and its id" is
 * one pointer read. `write_mu` serialises key-dictionary changes (rotation,
 * removal, master-key rotation). File-dictionary writes take neither: the file
 * dictionary group-commits concurrent writers itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "common/fileio.h"
#include "keymgr/filedict.h"
#include "keymgr/keydict.h"
#include "keymgr/newdir.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"

#define LOCK_FILE "keymgr.lock"
#define DEFAULT_KEEP 3
#define RETRY_SECONDS 60   /* a failed rotation is retried this long after (injected clock) */
#define BG_WAKE_SECONDS 60 /* the background thread looks at the clock this often */

/* One data key's shared cipher; freed when the last reference goes. */
typedef struct km_key {
    atomic_uint refs;
    uint64_t id;
    tde_method method;
    uint64_t created;
    tde_cipher *cipher; /* NULL for plaintext */
} km_key;

/* The method and cipher are copied from k: every read and write of the file uses them, and
 * k's cache line also holds the reference count other threads change on open and close. */
struct tde_file_key {
    km_key *k;
    const tde_cipher *cipher; /* k->cipher */
    tde_method method;        /* k->method */
    uint8_t iv[TDE_CIPHER_IV_LEN];
};

typedef struct km_root {
    char *name;
    char *path; /* lexically normalised, absolute; "" for "/" */
    char *real; /* realpath(), or NULL */
} km_root;

struct tde_keymgr {
    char *dir;
    char *kd_path;
    km_root *roots;
    size_t n_roots;
    tde_method method; /* configured; UNKNOWN keeps the stored one */
    uint64_t period;
    unsigned keep;
    bool read_only;
    bool enforce;
    uint64_t (*clock)(void *arg);
    void *clock_arg;
    int lock_fd;

    tde_masterkey *master;
    tde_masterkey *previous;
    tde_filedict *fd;
    char **ro_pending; /* read-only: reserved entries of interrupted renames found at open */
    size_t n_ro_pending;

    pthread_mutex_t write_mu; /* guards kd, master */
    tde_keydict kd;

    pthread_rwlock_t keys_lock; /* guards keys, n_keys, current */
    km_key **keys;
    size_t n_keys;
    km_key *current;
    km_key *plain; /* for files missing from the dictionary */

    _Atomic uint64_t current_created; /* copies of current's, read without the lock */
    atomic_int current_method;
    _Atomic uint64_t retry_after;

    pthread_t bg;
    bool bg_started;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    bool bg_stop, bg_kick;
    atomic_bool bg_pending;

    _Atomic uint64_t m_reads, m_read_ns, m_writes, m_write_ns, m_rotations, m_rot_fail, m_last_rot,
        m_removed, m_plain;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t
now_s(const tde_keymgr *km)
{
    if (km->clock != NULL)
        return km->clock(km->clock_arg);
    return (uint64_t)time(NULL);
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *
str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static char *
path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (p != NULL) {
        memcpy(p, a, la);
        p[la] = '/';
        memcpy(p + la + 1, b, lb + 1);
    }
    return p;
}

/* ---- keys and file keys ----------------------------------------------------------------- */

static void
key_unref(km_key *k)
{
    if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1) {
        tde_cipher_free(k->cipher);
        free(k);
    }
}

static tde_status
key_new(km_key **out, const tde_keydict_key *dk)
{
    km_key *k = calloc(1, sizeof(*k));
    tde_status st;

    if (k == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "key manager: out of memory");
    atomic_init(&k->refs, 1);
    k->id = dk ? dk->id : 0;
    k->method = dk ? dk->method : TDE_METHOD_PLAINTEXT;
    k->created = dk ? dk->created : 0;
    if (dk != NULL && dk->key != NULL) {
        st = tde_cipher_new(&k->cipher, dk->method, tde_secret_data(dk->key),
                            tde_secret_len(dk->key));
        if (st != TDE_OK) {
            free(k);
            return st;
        }
    }
    *out = k;
    return TDE_OK;
}

static km_key *
find_key_locked(tde_keymgr *km, uint64_t id)
{
    for (size_t i = 0; i < km->n_keys; i++)
        if (km->keys[i]->id == id)
            return km->keys[i];
    return NULL;
}

static tde_status
add_key_locked(tde_keymgr *km, km_key *k)
{
    km_key **keys = realloc(km->keys, (km->n_keys + 1) * sizeof(*keys));
    if (keys == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "key manager: out of memory");
    km->keys = keys;
    km->keys[km->n_keys++] = k;
    return TDE_OK;
}

static tde_status
file_key_make(tde_file_key **out, km_key *k, const uint8_t *iv)
{
    tde_file_key *fk = malloc(sizeof(*fk));

    if (fk == NULL) {
        key_unref(k);
        return tde_error_set(TDE_ERR_NOMEM, "key manager: out of memory");
    }
    fk->k = k;
    fk->cipher = k->cipher;
    fk->method = k->method;
    if (iv != NULL)
        memcpy(fk->iv, iv, TDE_CIPHER_IV_LEN);
    else
        memset(fk->iv, 0, TDE_CIPHER_IV_LEN);
    *out = fk;
    return TDE_OK;
}

tde_status
tde_file_key_process(const tde_file_key *fk, uint64_t offset, const void *in, void *out, size_t len)
{
    if (fk->cipher == NULL) {
        if (in != out && len > 0)
            memmove(out, in, len);
        return TDE_OK;
    }
    return tde_cipher_process(fk->cipher, fk->iv, offset, in, out, len);
}

tde_method
tde_file_key_method(const tde_file_key *fk)
{
    return fk->method;
}

uint64_t
tde_file_key_id(const tde_file_key *fk)
{
    return fk->k->id;
}

const uint8_t *
tde_file_key_iv(const tde_file_key *fk)
{
    return fk->iv;
}

void
tde_file_key_free(tde_file_key *fk)
{
    if (fk == NULL)
        return;
    key_unref(fk->k);
    free(fk);
}

/* ---- names ------------------------------------------------------------------------------ */

/* Lexically normalises @p in to an absolute path without "", "." or ".." components. */
static tde_status
normalize(const char *in, char *out, size_t cap)
{
    char buf[PATH_MAX * 2];
    size_t n = 0;
    const char *p;

    if (in[0] != '/') {
        if (getcwd(buf, PATH_MAX) == NULL)
            return tde_error_set(TDE_ERR_IO, "key manager: getcwd: %s", strerror(errno));
        if (snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%s", in) >=
            (int)(sizeof(buf) - strlen(buf)))
            return tde_error_set(TDE_ERR_INVALID_ARG, "key manager: path too long: %s", in);
        p = buf;
    } else {
        p = in;
    }
    while (*p != '\0') {
        const char *e;
        size_t len;
        while (*p == '/')
            p++;
        e = strchr(p, '/');
        len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0)
            break;
        if (len == 1 && p[0] == '.') {
            /* skip */
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
        } else {
            if (n + len + 2 > cap)
                return tde_error_set(TDE_ERR_INVALID_ARG, "key manager: path too long: %s", in);
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    out[n] = '\0';
    return TDE_OK;
}

/*
 * The root under which @p abs lies (longest match) and the offset of its relative part. A file
 * lies strictly below its root; with @p dir, @p abs may also be the root itself (relative "").
 */
static const km_root *
match_root(const tde_keymgr *km, const char *abs, bool real, bool dir, size_t *rel)
{
    const km_root *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < km->n_roots; i++) {
        const char *rp = real ? km->roots[i].real : km->roots[i].path;
        size_t len;
        if (rp == NULL)
            continue;
        len = strlen(rp);
        if (strncmp(abs, rp, len) == 0 &&
            (abs[len] == '/' ? dir || abs[len + 1] != '\0' : dir && abs[len] == '\0') &&
            (best == NULL || len > best_len)) {
            best = &km->roots[i];
            best_len = len;
        }
    }
    *rel = best == NULL || abs[best_len] == '/' ? best_len + 1 : best_len;
    return best;
}

tde_status
tde_keymgr_stored_name(tde_keymgr *km, const char *path, char *buf, size_t cap)
{
    char abs[PATH_MAX];
    const km_root *r;
    size_t rel;

    if (path == NULL || path[0] == '\0')
        return tde_error_set(TDE_ERR_INVALID_ARG, "key manager: empty file name");
    TDE_RET(normalize(path, abs, sizeof(abs)));
    r = match_root(km, abs, false, false, &rel);
    if (r == NULL) {
        /* The caller may name the file through a symlink to a root (or the reverse). */
        char dir[PATH_MAX], real[PATH_MAX];
        char *slash = strrchr(abs, '/');
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - abs), abs);
        if (realpath(dir[0] ? dir : "/", real) != NULL &&
            strlen(real) + strlen(slash) < sizeof(real)) {
            strcat(real, slash);
            r = match_root(km, real, true, false, &rel);
            if (r != NULL)
                memcpy(abs, real, strlen(real) + 1);
        }
    }
    if (r == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "key manager %s: %s is under none of the %zu configured roots "
                             "(first: %s=%s/)",
                             km->dir, path, km->n_roots, km->roots[0].name, km->roots[0].path);
    if ((size_t)snprintf(buf, cap, "%s/%s", r->name, abs + rel) >= cap)
        return tde_error_set(TDE_ERR_INVALID_ARG, "key manager: name too long: %s", path);
    return TDE_OK;
}

/* ---- the directory lock ----------------------------------------------------------------- */

static tde_status
take_lock(tde_keymgr *km)
{
    char *path = path_join(km->dir, LOCK_FILE);
    char pid[32] = "";
    tde_status st = TDE_OK;
    int fd = -1;

    TDE_ENSURE(path != NULL, TDE_ERR_NOMEM, "key manager: out of memory");
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    TDE_ENSURE(fd >= 0, TDE_ERR_IO, "%s: open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        TDE_ENSURE(e != EWOULDBLOCK, TDE_ERR_LOCKED,
                   "key manager %s is in use by another writer (pid %s, lock %s); open it "
                   "read-only or stop that process",
                   km->dir, pid[0] ? pid : "unknown", path);
        TDE_ENSURE(0, TDE_ERR_IO, "%s: flock: %s", path, strerror(e));
    }
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
        tde_log(TDE_LOG_WARN, "%s: could not record the holder's pid: %s", path, strerror(errno));
    km->lock_fd = fd;
    free(path);
    return TDE_OK;
err:
    if (fd >= 0)
        close(fd);
    free(path);
    return st;
}

/* ---- opening ---------------------------------------------------------------------------- */

/* Whether the directory holds anything besides key.dict and the lock (i.e. a file dictionary). */
static bool
has_other_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;

    if (d == NULL)
        return false;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                strncmp(e->d_name, TDE_KEYDICT_FILE, strlen(TDE_KEYDICT_FILE)) != 0 &&
                strcmp(e->d_name, LOCK_FILE) != 0;
    closedir(d);
    return found;
}

/* Replaces km->kd by @p nk after storing it durably; frees @p nk's old contents on failure. */
static tde_status
commit_keydict(tde_keymgr *km, tde_keydict *nk)
{
    uint64_t t0 = mono_ns();
    tde_status st;

    nk->generation = km->kd.generation + 1;
    st = tde_keydict_store(nk, km->kd_path, km->master);
    atomic_fetch_add(&km->m_writes, 1);
    atomic_fetch_add(&km->m_write_ns, mono_ns() - t0);
    if (st != TDE_OK) {
        tde_keydict_clear(nk);
        return st;
    }
    tde_keydict_clear(&km->kd);
    km->kd = *nk;
    memset(nk, 0, sizeof(*nk));
    return TDE_OK;
}

static tde_status
open_filedict(tde_keymgr *km)
{
    tde_filedict_options fo = {.version = TDE_FILEDICT_OPTIONS_VERSION, .dir = km->dir};
    tde_status st;

    fo.read_only = km->read_only;
    TDE_RET(tde_keydict_mac_key(&km->kd, fo.mac_key));
    st = tde_filedict_open(&km->fd, &fo);
    OPENSSL_cleanse(fo.mac_key, sizeof(fo.mac_key));
    return st;
}

/* A fresh directory: key.dict with a first key, then the file dictionary, then the flag saying
 * it exists (so a lost file dictionary is reported rather than silently recreated). */
static tde_status
create_dicts(tde_keymgr *km)
{
    tde_keydict nk;
    tde_status st;

    if (km->method == TDE_METHOD_UNKNOWN)
        return tde_error_set(TDE_ERR_INVALID_ARG, "key manager %s: a new directory needs a method",
                             km->dir);
    if (has_other_files(km->dir))
        return tde_error_set(
            TDE_ERR_CORRUPT,
            "key manager %s: %s is missing but other metadata files are "
            "present, and no %s%s; restore the directory from a backup (without the "
            "data keys there is nothing to salvage)",
            km->dir, TDE_KEYDICT_FILE, TDE_KEYDICT_FILE, TDE_KEYDICT_BACKUP_SUFFIX);
    TDE_RET(tde_keydict_init(&km->kd));
    TDE_RET(tde_keydict_add(&km->kd, km->method, now_s(km), &km->kd.current_id));
    if (km->method != TDE_METHOD_PLAINTEXT)
        km->kd.flags |= TDE_KEYDICT_FLAG_ENFORCE;
    TDE_RET(tde_keydict_store(&km->kd, km->kd_path, km->master));
    TDE_RET(open_filedict(km));
    TDE_RET(tde_keydict_copy(&nk, &km->kd));
    nk.flags |= TDE_KEYDICT_FLAG_FILEDICT;
    st = commit_keydict(km, &nk);
    if (st == TDE_OK)
        tde_log(TDE_LOG_INFO, "key manager %s: created with method %s", km->dir,
                tde_method_name(km->method));
    return st;
}

static bool
has_backup(const tde_keymgr *km)
{
    char bak[PATH_MAX];
    snprintf(bak, sizeof(bak), "%s%s", km->kd_path, TDE_KEYDICT_BACKUP_SUFFIX);
    return access(bak, F_OK) == 0;
}

typedef struct missing_scan {
    const tde_keydict *kd;
    size_t entries, missing;
    uint64_t first;
} missing_scan;

static int
find_missing(void *arg, const char *name, const tde_file_entry *e)
{
    missing_scan *m = arg;
    if (name[0] == '/' && e->key_id == 0)
        return 0; /* an interrupted rename's record of "no entry": needs no key */
    m->entries++;
    if (tde_keydict_find(m->kd, e->key_id) == NULL && m->missing++ == 0)
        m->first = e->key_id;
    return 0;
}

/*
 * key.dict did not open. key.dict.bak replaces it only when that is provably
 * complete: its secret authenticates the file dictionary and it holds the key
 * of every entry. Otherwise the original error stands, with what was found.
 */
static tde_status
recover_from_backup(tde_keymgr *km, tde_status orig)
{
    char why[480], bak[PATH_MAX];
    missing_scan ms = {.kd = &km->kd};
    tde_keydict nk;
    tde_status st;

    snprintf(why, sizeof(why), "%s", tde_last_error());
    snprintf(bak, sizeof(bak), "%s%s", km->kd_path, TDE_KEYDICT_BACKUP_SUFFIX);
    if (access(bak, F_OK) != 0)
        return tde_error_set(orig, "%s", why);
    st = tde_keydict_load(&km->kd, bak, km->master, km->previous, NULL);
    if (st != TDE_OK)
        return tde_error_set(orig, "%s (the backup %s does not open either)", why, bak);
    st = open_filedict(km);
    if (st == TDE_OK)
        st = tde_filedict_foreach(km->fd, find_missing, &ms);
    if (st != TDE_OK || ms.missing > 0) {
        tde_filedict_close(km->fd);
        km->fd = NULL;
        tde_keydict_clear(&km->kd);
        if (st != TDE_OK)
            return tde_error_set(TDE_ERR_CORRUPT,
                                 "%s; the backup %s does not authenticate the file dictionary; "
                                 "nothing was modified: 'tde-ctl salvage %s NEWDIR' writes what "
                                 "can be read to a new directory",
                                 why, bak, km->dir);
        return tde_error_set(TDE_ERR_CORRUPT,
                             "%s; the backup %s lacks the keys of %zu of %zu entries (first "
                             "missing key %016llx); nothing was modified: 'tde-ctl salvage %s "
                             "NEWDIR' writes what can be read to a new directory",
                             why, bak, ms.missing, ms.entries, (unsigned long long)ms.first,
                             km->dir);
    }
    tde_log(TDE_LOG_WARN, "%s; recovered from %s, which holds the key of all %zu entries", why, bak,
            ms.entries);
    if (km->read_only)
        return TDE_OK;
    TDE_RET(tde_keydict_copy(&nk, &km->kd));
    return commit_keydict(km, &nk);
}

static tde_status
load_dicts(tde_keymgr *km)
{
    const tde_masterkey *used = NULL;
    uint64_t t0 = mono_ns();
    tde_status st;

    st = tde_keydict_load(&km->kd, km->kd_path, km->master, km->previous, &used);
    atomic_fetch_add(&km->m_reads, 1);
    atomic_fetch_add(&km->m_read_ns, mono_ns() - t0);
    if (st == TDE_ERR_NOT_FOUND && !km->read_only && !has_backup(km))
        return create_dicts(km);
    if (st == TDE_ERR_NOT_FOUND || st == TDE_ERR_CORRUPT || st == TDE_ERR_AUTH)
        return recover_from_backup(km, st);
    TDE_RET(st);
    if (used != NULL && used == km->previous && !km->read_only) {
        tde_keydict nk;
        tde_log(TDE_LOG_INFO, "%s: opened with the previous master key %s; re-sealing under %s",
                km->kd_path, tde_masterkey_key_id(km->previous), tde_masterkey_key_id(km->master));
        TDE_RET(tde_keydict_copy(&nk, &km->kd));
        if (commit_keydict(km, &nk) != TDE_OK)
            tde_log(TDE_LOG_WARN,
                    "%s: re-sealing under the new master key failed (%s); the "
                    "previous master key is still needed",
                    km->kd_path, tde_last_error());
    }
    if ((km->kd.flags & TDE_KEYDICT_FLAG_FILEDICT) && !has_other_files(km->dir))
        return tde_error_set(TDE_ERR_CORRUPT,
                             "key manager %s: the file dictionary is missing although %s says "
                             "it was created; restore it from a backup",
                             km->dir, TDE_KEYDICT_FILE);
    TDE_RET(open_filedict(km));
    if (!(km->kd.flags & TDE_KEYDICT_FLAG_FILEDICT) && !km->read_only) {
        tde_keydict nk;
        TDE_RET(tde_keydict_copy(&nk, &km->kd));
        nk.flags |= TDE_KEYDICT_FLAG_FILEDICT;
        TDE_RET(commit_keydict(km, &nk));
    }
    return TDE_OK;
}

/* Makes a cipher for every key in km->kd (an unavailable method fails here, not mid-write). */
static tde_status
build_keys(tde_keymgr *km)
{
    for (size_t i = 0; i < km->kd.n_keys; i++) {
        km_key *k;
        tde_status st;
        if (find_key_locked(km, km->kd.keys[i].id) != NULL)
            continue;
        TDE_RET(key_new(&k, &km->kd.keys[i]));
        st = add_key_locked(km, k);
        if (st != TDE_OK) {
            key_unref(k);
            return st;
        }
    }
    km->current = find_key_locked(km, km->kd.current_id);
    atomic_store(&km->current_created, km->current->created);
    atomic_store(&km->current_method, (int)km->current->method);
    return TDE_OK;
}

static bool
rotation_due(tde_keymgr *km, uint64_t now)
{
    uint64_t created = atomic_load(&km->current_created);
    return (now >= created && now - created >= km->period) ||
           (km->method != TDE_METHOD_UNKNOWN &&
            atomic_load(&km->current_method) != (int)km->method);
}

static tde_status rotate_locked(tde_keymgr *km, uint64_t now, const char *why);
static tde_status remove_unused_locked(tde_keymgr *km);
static tde_status resolve_pending(tde_keymgr *km);
static tde_status resolve_pending_read_only(tde_keymgr *km, const char *name, tde_file_entry *e,
                                            tde_status st);
static void *bg_main(void *arg);

tde_status
tde_keymgr_open(tde_keymgr **out, const tde_keymgr_config *cfg)
{
    tde_keymgr *km = NULL;
    tde_status st = TDE_OK;

    *out = NULL;
    TDE_ENSURE(cfg != NULL && cfg->version == TDE_KEYMGR_CONFIG_VERSION, TDE_ERR_INVALID_ARG,
               "key manager: config version %u, expected %d", cfg ? cfg->version : 0,
               TDE_KEYMGR_CONFIG_VERSION);
    TDE_ENSURE(cfg->dir != NULL && cfg->dir[0] != '\0', TDE_ERR_INVALID_ARG,
               "key manager: no directory given");
    TDE_ENSURE(cfg->roots != NULL && cfg->n_roots > 0, TDE_ERR_INVALID_ARG,
               "key manager %s: at least one root is needed", cfg->dir);
    TDE_ENSURE(cfg->master_key_uri != NULL, TDE_ERR_INVALID_ARG,
               "key manager %s: no master key URI given", cfg->dir);
    TDE_ENSURE(cfg->method == TDE_METHOD_UNKNOWN || tde_method_name(cfg->method) != NULL,
               TDE_ERR_INVALID_ARG, "key manager %s: unknown method %d", cfg->dir,
               (int)cfg->method);
    km = calloc(1, sizeof(*km));
    TDE_ENSURE(km != NULL, TDE_ERR_NOMEM, "key manager: out of memory");
    km->lock_fd = -1;
    pthread_mutex_init(&km->write_mu, NULL);
    pthread_rwlock_init(&km->keys_lock, NULL);
    pthread_mutex_init(&km->bg_mu, NULL);
    pthread_cond_init(&km->bg_cv, NULL);
    km->method = cfg->method;
    km->period = cfg->rotation_period_seconds ? cfg->rotation_period_seconds
                                              : TDE_KEYMGR_DEFAULT_ROTATION_SECONDS;
    km->keep = cfg->keep_unused_keys ? cfg->keep_unused_keys : DEFAULT_KEEP;
    km->read_only = cfg->read_only;
    km->clock = cfg->clock;
    km->clock_arg = cfg->clock_arg;
    km->dir = str_dup(cfg->dir);
    km->kd_path = path_join(cfg->dir, TDE_KEYDICT_FILE);
    km->roots = calloc(cfg->n_roots, sizeof(*km->roots));
    TDE_ENSURE(km->dir && km->kd_path && km->roots, TDE_ERR_NOMEM, "key manager: out of memory");
    km->n_roots = cfg->n_roots;
    for (size_t i = 0; i < cfg->n_roots; i++) {
        char buf[PATH_MAX];
        const tde_keymgr_root *r = &cfg->roots[i];
        TDE_ENSURE(r->name && r->name[0] && !strchr(r->name, '/') && r->path, TDE_ERR_INVALID_ARG,
                   "key manager %s: root %zu needs a name without '/' and a path", cfg->dir, i);
        for (size_t j = 0; j < i; j++)
            TDE_ENSURE(strcmp(km->roots[j].name, r->name) != 0, TDE_ERR_INVALID_ARG,
                       "key manager %s: root name %s given twice", cfg->dir, r->name);
        TDE_ERR(normalize(r->path, buf, sizeof(buf)));
        km->roots[i].name = str_dup(r->name);
        km->roots[i].path = str_dup(buf);
        TDE_ENSURE(km->roots[i].name && km->roots[i].path, TDE_ERR_NOMEM,
                   "key manager: out of memory");
        if (realpath(r->path, buf) != NULL)
            km->roots[i].real = str_dup(strcmp(buf, "/") == 0 ? "" : buf);
    }

    if (!km->read_only) {
        TDE_ENSURE(mkdir(km->dir, 0700) == 0 || errno == EEXIST, TDE_ERR_IO,
                   "key manager %s: mkdir: %s", km->dir, strerror(errno));
        TDE_ERR(take_lock(km));
    }
    TDE_ERR(tde_masterkey_open(&km->master, cfg->master_key_uri));
    if (cfg->previous_master_key_uri != NULL &&
        tde_masterkey_open(&km->previous, cfg->previous_master_key_uri) != TDE_OK)
        tde_log(TDE_LOG_WARN, "key manager %s: previous master key unusable: %s", km->dir,
                tde_last_error());
    TDE_ERR(load_dicts(km));
    TDE_ERR(key_new(&km->plain, NULL));
    TDE_ERR(build_keys(km));
    km->enforce =
        cfg->enforce < 0 ? (km->kd.flags & TDE_KEYDICT_FLAG_ENFORCE) != 0 : cfg->enforce > 0;

    TDE_ERR(resolve_pending(km));
    if (!km->read_only) {
        uint64_t now = now_s(km);
        pthread_mutex_lock(&km->write_mu);
        if (rotation_due(km, now) && rotate_locked(km, now, "at open") != TDE_OK) {
            atomic_fetch_add(&km->m_rot_fail, 1);
            atomic_store(&km->retry_after, now + RETRY_SECONDS);
            tde_log(TDE_LOG_ERROR,
                    "key manager %s: rotation at open failed, keeping key %016llx: %s", km->dir,
                    (unsigned long long)km->current->id, tde_last_error());
        }
        if (remove_unused_locked(km) != TDE_OK)
            tde_log(TDE_LOG_WARN, "key manager %s: removing unused keys failed: %s", km->dir,
                    tde_last_error());
        pthread_mutex_unlock(&km->write_mu);
        TDE_ENSURE(pthread_create(&km->bg, NULL, bg_main, km) == 0, TDE_ERR_INTERNAL,
                   "key manager %s: cannot start the rotation thread", km->dir);
        km->bg_started = true;
    }
    tde_error_clear();
    *out = km;
    return TDE_OK;
err:
    tde_keymgr_close(km);
    return st;
}

void
tde_keymgr_close(tde_keymgr *km)
{
    if (km == NULL)
        return;
    if (km->bg_started) {
        pthread_mutex_lock(&km->bg_mu);
        km->bg_stop = true;
        pthread_cond_signal(&km->bg_cv);
        pthread_mutex_unlock(&km->bg_mu);
        pthread_join(km->bg, NULL);
    }
    tde_filedict_close(km->fd);
    for (size_t i = 0; i < km->n_ro_pending; i++)
        free(km->ro_pending[i]);
    free(km->ro_pending);
    for (size_t i = 0; i < km->n_keys; i++)
        key_unref(km->keys[i]);
    free(km->keys);
    key_unref(km->plain);
    tde_keydict_clear(&km->kd);
    tde_masterkey_free(km->master);
    tde_masterkey_free(km->previous);
    if (km->lock_fd >= 0)
        close(km->lock_fd); /* releases the flock */
    for (size_t i = 0; km->roots != NULL && i < km->n_roots; i++) {
        free(km->roots[i].name);
        free(km->roots[i].path);
        free(km->roots[i].real);
    }
    free(km->roots);
    free(km->dir);
    free(km->kd_path);
    pthread_mutex_destroy(&km->write_mu);
    pthread_rwlock_destroy(&km->keys_lock);
    pthread_mutex_destroy(&km->bg_mu);
    pthread_cond_destroy(&km->bg_cv);
    free(km);
}

/* ---- rotation and removal of unused keys ------------------------------------------------ */

static tde_status
rotate_locked(tde_keymgr *km, uint64_t now, const char *why)
{
    tde_method m = km->method != TDE_METHOD_UNKNOWN ? km->method : km->current->method;
    tde_keydict nk;
    km_key *k = NULL;
    uint64_t id;
    tde_status st;

    if (km->read_only)
        return tde_error_set(TDE_ERR_STATE, "key manager %s is read-only", km->dir);
    TDE_RET(tde_keydict_copy(&nk, &km->kd));
    st = tde_keydict_add(&nk, m, now, &id);
    if (st == TDE_OK)
        st = key_new(&k, tde_keydict_find(&nk, id));
    if (st != TDE_OK) {
        tde_keydict_clear(&nk);
        return st;
    }
    nk.current_id = id;
    /* The key is durable before anything can use it (tikv#15768: "key not found" after kills). */
    st = commit_keydict(km, &nk);
    if (st != TDE_OK) {
        key_unref(k);
        return st;
    }
    TDE_FAILPOINT("keymgr.rotate.after_store");
    pthread_rwlock_wrlock(&km->keys_lock);
    st = add_key_locked(km, k);
    if (st == TDE_OK)
        km->current = k;
    pthread_rwlock_unlock(&km->keys_lock);
    if (st != TDE_OK) {
        key_unref(k);
        return st;
    }
    atomic_store(&km->current_created, now);
    atomic_store(&km->current_method, (int)m);
    atomic_store(&km->retry_after, 0);
    atomic_fetch_add(&km->m_rotations, 1);
    atomic_store(&km->m_last_rot, now);
    tde_log(TDE_LOG_INFO, "key manager %s: new data key %016llx (%s) %s", km->dir,
            (unsigned long long)id, tde_method_name(m), why);
    return TDE_OK;
}

typedef struct used_scan {
    uint64_t *ids;
    bool *used;
    size_t n;
} used_scan;

static int
mark_used(void *arg, const char *name, const tde_file_entry *e)
{
    used_scan *u = arg;
    (void)name;
    for (size_t i = 0; i < u->n; i++)
        if (u->ids[i] == e->key_id)
            u->used[i] = true;
    return 0;
}

static int
by_created_desc(const void *a, const void *b)
{
    const km_key *x = *(km_key *const *)a, *y = *(km_key *const *)b;
    return x->created < y->created ? 1 : x->created > y->created ? -1 : 0;
}

/* Removes keys that are not current, not among the newest km->keep others, held by no handle and
 * used by no entry (tikv#12890: the key dictionary grew forever). */
static tde_status
remove_unused_locked(tde_keymgr *km)
{
    used_scan u = {0};
    km_key **sorted = NULL;
    tde_keydict nk = {0};
    size_t n_sorted = 0, removed = 0;
    tde_status st = TDE_OK;

    pthread_rwlock_rdlock(&km->keys_lock);
    if (km->n_keys > km->keep + 1) {
        sorted = malloc(km->n_keys * sizeof(*sorted));
        u.ids = malloc(km->n_keys * sizeof(*u.ids));
        u.used = calloc(km->n_keys, sizeof(*u.used));
        if (sorted && u.ids && u.used) {
            for (size_t i = 0; i < km->n_keys; i++)
                if (km->keys[i] != km->current)
                    sorted[n_sorted++] = km->keys[i];
            qsort(sorted, n_sorted, sizeof(*sorted), by_created_desc);
            /* refs == 1: only the table holds it, so no in-flight new_file or open file. */
            for (size_t i = km->keep; i < n_sorted; i++)
                if (atomic_load(&sorted[i]->refs) == 1)
                    u.ids[u.n++] = sorted[i]->id;
        }
    }
    pthread_rwlock_unlock(&km->keys_lock);
    TDE_ENSURE(km->n_keys <= km->keep + 1 || (sorted && u.ids && u.used), TDE_ERR_NOMEM,
               "key manager: out of memory");
    if (u.n == 0)
        goto err;
    TDE_ERR(tde_filedict_foreach(km->fd, mark_used, &u));
    TDE_ERR(tde_keydict_copy(&nk, &km->kd));
    for (size_t i = 0; i < u.n; i++)
        if (!u.used[i] && tde_keydict_remove(&nk, u.ids[i]) == TDE_OK)
            removed++;
    if (removed == 0)
        goto err;
    TDE_ERR(commit_keydict(km, &nk));
    pthread_rwlock_wrlock(&km->keys_lock);
    for (size_t i = 0; i < km->n_keys;) {
        km_key *k = km->keys[i];
        if (tde_keydict_find(&km->kd, k->id) == NULL) {
            km->keys[i] = km->keys[--km->n_keys];
            key_unref(k);
        } else {
            i++;
        }
    }
    pthread_rwlock_unlock(&km->keys_lock);
    atomic_fetch_add(&km->m_removed, removed);
    tde_log(TDE_LOG_INFO, "key manager %s: removed %zu unused data keys", km->dir, removed);
err:
    tde_keydict_clear(&nk);
    free(sorted);
    free(u.ids);
    free(u.used);
    return st;
}

/* Rotation when due (or a retry once the back-off has passed), then removal. */
static tde_status
maintain(tde_keymgr *km)
{
    uint64_t now = now_s(km);
    tde_status st = TDE_OK;

    if (km->read_only)
        return TDE_OK;
    pthread_mutex_lock(&km->write_mu);
    if (rotation_due(km, now) && now >= atomic_load(&km->retry_after)) {
        st = rotate_locked(km, now, "on schedule");
        if (st != TDE_OK) {
            atomic_fetch_add(&km->m_rot_fail, 1);
            atomic_store(&km->retry_after, now + RETRY_SECONDS);
            tde_log(TDE_LOG_ERROR,
                    "key manager %s: data-key rotation failed, new files keep key %016llx; "
                    "retrying in %d s: %s",
                    km->dir, (unsigned long long)km->current->id, RETRY_SECONDS, tde_last_error());
        }
    }
    if (st == TDE_OK)
        st = remove_unused_locked(km);
    pthread_mutex_unlock(&km->write_mu);
    return st;
}

tde_status
tde_keymgr_maintain(tde_keymgr *km)
{
    return maintain(km);
}

static void *
bg_main(void *arg)
{
    tde_keymgr *km = arg;

    pthread_mutex_lock(&km->bg_mu);
    while (!km->bg_stop) {
        if (!km->bg_kick) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += BG_WAKE_SECONDS;
            pthread_cond_timedwait(&km->bg_cv, &km->bg_mu, &ts);
        }
        if (km->bg_stop)
            break;
        km->bg_kick = false;
        pthread_mutex_unlock(&km->bg_mu);
        (void)maintain(km);
        atomic_store(&km->bg_pending, false);
        pthread_mutex_lock(&km->bg_mu);
    }
    pthread_mutex_unlock(&km->bg_mu);
    return NULL;
}

/* Called on the I/O path: never rotates here (a slow KMS must not stall new_file), only wakes the
 * background thread. */
static void
kick_if_due(tde_keymgr *km)
{
    uint64_t now = now_s(km);

    if (!rotation_due(km, now) || now < atomic_load(&km->retry_after) ||
        atomic_exchange(&km->bg_pending, true))
        return;
    pthread_mutex_lock(&km->bg_mu);
    km->bg_kick = true;
    pthread_cond_signal(&km->bg_cv);
    pthread_mutex_unlock(&km->bg_mu);
}

tde_status
tde_keymgr_rotate_data_key(tde_keymgr *km)
{
    tde_status st;

    pthread_mutex_lock(&km->write_mu);
    st = rotate_locked(km, now_s(km), "on request");
    pthread_mutex_unlock(&km->write_mu);
    return st;
}

tde_status
tde_keymgr_rotate_master_key(tde_keymgr *km, const char *new_uri)
{
    tde_masterkey *nm = NULL, *old;
    tde_keydict nk;
    tde_status st;

    if (km->read_only)
        return tde_error_set(TDE_ERR_STATE, "key manager %s is read-only", km->dir);
    TDE_RET(tde_masterkey_open(&nm, new_uri));
    pthread_mutex_lock(&km->write_mu);
    st = tde_keydict_copy(&nk, &km->kd);
    if (st == TDE_OK) {
        old = km->master;
        km->master = nm; /* commit_keydict seals under km->master */
        st = commit_keydict(km, &nk);
        if (st != TDE_OK) {
            km->master = old;
        } else {
            tde_masterkey_free(km->previous);
            km->previous = old;
            nm = NULL;
        }
    }
    pthread_mutex_unlock(&km->write_mu);
    if (st == TDE_OK)
        tde_log(TDE_LOG_INFO, "key manager %s: key dictionary re-sealed under master key %s",
                km->dir, tde_masterkey_key_id(km->master));
    tde_masterkey_free(nm);
    return st;
}

/* ---- file operations -------------------------------------------------------------------- */

static tde_status
check_writable(tde_keymgr *km)
{
    if (km->read_only)
        return tde_error_set(TDE_ERR_STATE, "key manager %s is read-only", km->dir);
    return TDE_OK;
}

static void
count_write(tde_keymgr *km, uint64_t t0)
{
    atomic_fetch_add(&km->m_writes, 1);
    atomic_fetch_add(&km->m_write_ns, mono_ns() - t0);
}

tde_status
tde_keymgr_new_file(tde_keymgr *km, const char *path, tde_file_key **out)
{
    char name[PATH_MAX + 64];
    tde_file_entry e = {0};
    km_key *k;
    uint64_t t0;
    tde_status st;

    *out = NULL;
    TDE_RET(check_writable(km));
    TDE_RET(tde_keymgr_stored_name(km, path, name, sizeof(name)));
    kick_if_due(km);
    /* The current key and its id in one step: a rotation cannot split them. */
    pthread_rwlock_rdlock(&km->keys_lock);
    k = km->current;
    atomic_fetch_add(&k->refs, 1);
    pthread_rwlock_unlock(&km->keys_lock);
    e.key_id = k->id;
    e.method = (uint8_t)k->method;
    /* Always a fresh IV, also when a name is reused: a key and IV never meet two plaintexts. */
    st = tde_random_bytes(e.iv, sizeof(e.iv));
    if (st == TDE_OK) {
        t0 = mono_ns();
        st = tde_filedict_put(km->fd, name, &e);
        count_write(km, t0);
    }
    if (st != TDE_OK) {
        key_unref(k);
        return st;
    }
    return file_key_make(out, k, e.iv);
}

static km_key *
ref_key(tde_keymgr *km, uint64_t id)
{
    km_key *k;

    pthread_rwlock_rdlock(&km->keys_lock);
    k = find_key_locked(km, id);
    if (k != NULL)
        atomic_fetch_add(&k->refs, 1);
    pthread_rwlock_unlock(&km->keys_lock);
    return k;
}

/* Read-only handles: the writer may have rotated since open; pick up its new keys. */
static tde_status
reload_keys(tde_keymgr *km)
{
    tde_keydict nk;
    tde_status st;

    pthread_mutex_lock(&km->write_mu);
    st = tde_keydict_load(&nk, km->kd_path, km->master, km->previous, NULL);
    if (st == TDE_OK) {
        tde_keydict_clear(&km->kd);
        km->kd = nk;
        pthread_rwlock_wrlock(&km->keys_lock);
        st = build_keys(km);
        pthread_rwlock_unlock(&km->keys_lock);
    }
    pthread_mutex_unlock(&km->write_mu);
    return st;
}

tde_status
tde_keymgr_get_file(tde_keymgr *km, const char *path, tde_file_key **out)
{
    char name[PATH_MAX + 64];
    tde_file_entry e;
    km_key *k;
    uint64_t t0;
    tde_status st;

    *out = NULL;
    TDE_RET(tde_keymgr_stored_name(km, path, name, sizeof(name)));
    t0 = mono_ns();
    /* A reader beside a live writer: names are re-created with new IVs, so always catch up. */
    st = km->read_only ? tde_filedict_refresh(km->fd) : TDE_OK;
    if (st == TDE_OK)
        st = tde_filedict_get(km->fd, name, &e);
    if ((st == TDE_OK || st == TDE_ERR_NOT_FOUND) && km->n_ro_pending > 0)
        st = resolve_pending_read_only(km, name, &e, st);
    atomic_fetch_add(&km->m_reads, 1);
    atomic_fetch_add(&km->m_read_ns, mono_ns() - t0);
    if (st == TDE_ERR_NOT_FOUND) {
        if (km->enforce)
            return tde_error_set(TDE_ERR_NOT_FOUND,
                                 "key manager %s: %s (%s) has no entry and enforce mode is on: "
                                 "refusing to treat it as plaintext",
                                 km->dir, path, name);
        atomic_fetch_add(&km->m_plain, 1);
        atomic_fetch_add(&km->plain->refs, 1);
        return file_key_make(out, km->plain, NULL);
    }
    TDE_RET(st);
    k = ref_key(km, e.key_id);
    if (k == NULL && km->read_only && reload_keys(km) == TDE_OK)
        k = ref_key(km, e.key_id);
    if (k == NULL)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "key manager %s: %s uses data key %016llx, which is not in %s",
                             km->dir, name, (unsigned long long)e.key_id, TDE_KEYDICT_FILE);
    if (k->method != (tde_method)e.method) {
        key_unref(k);
        return tde_error_set(
            TDE_ERR_CORRUPT, "key manager %s: %s says method %u but its key %016llx is %s", km->dir,
            name, e.method, (unsigned long long)e.key_id, tde_method_name(k->method));
    }
    return file_key_make(out, k, e.iv);
}

tde_status
tde_keymgr_get_file_for_append(tde_keymgr *km, const char *path, tde_file_key **out)
{
    tde_method current;

    TDE_RET(check_writable(km));
    TDE_RET(tde_keymgr_get_file(km, path, out));
    pthread_rwlock_rdlock(&km->keys_lock);
    current = km->current->method;
    pthread_rwlock_unlock(&km->keys_lock);
    if ((*out)->k == km->plain && current != TDE_METHOD_PLAINTEXT) {
        tde_file_key_free(*out);
        *out = NULL;
        return tde_error_set(TDE_ERR_STATE,
                             "key manager %s: %s is a plaintext file (no entry) and encryption "
                             "is on (%s): it cannot be written to; rewrite it as a new file",
                             km->dir, path, tde_method_name(current));
    }
    return TDE_OK;
}

tde_status
tde_keymgr_delete_file(tde_keymgr *km, const char *path)
{
    char name[PATH_MAX + 64];
    uint64_t t0;
    tde_status st;

    TDE_RET(check_writable(km));
    TDE_RET(tde_keymgr_stored_name(km, path, name, sizeof(name)));
    t0 = mono_ns();
    st = tde_filedict_delete(km->fd, name);
    count_write(km, t0);
    return st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
}

tde_status
tde_keymgr_link_file(tde_keymgr *km, const char *src, const char *dst)
{
    char sname[PATH_MAX + 64], dname[PATH_MAX + 64];
    uint64_t t0;
    tde_status st;

    TDE_RET(check_writable(km));
    TDE_RET(tde_keymgr_stored_name(km, src, sname, sizeof(sname)));
    TDE_RET(tde_keymgr_stored_name(km, dst, dname, sizeof(dname)));
    t0 = mono_ns();
    st = tde_filedict_link(km->fd, sname, dname);
    count_write(km, t0);
    if (st == TDE_ERR_NOT_FOUND) {
        /* A plaintext source: the destination is plaintext too, so drop any stale entry. */
        if (km->enforce)
            return tde_error_set(TDE_ERR_NOT_FOUND,
                                 "key manager %s: %s has no entry and enforce mode is on", km->dir,
                                 src);
        st = tde_filedict_delete(km->fd, dname);
        return st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
    }
    return st;
}

/*
 * A rename over a file with an entry keeps that entry as "/rename-prev/<len(dst)>/<dst><src>"
 * (stored names never start with '/') until the rename(2) is durable. Found at a read-write
 * open: the source still on disk means the rename did not happen, so the entry goes back.
 */
#define PENDING_PREFIX "/rename-prev/"
/* The record's key id when the destination was a file without an entry (real ids are not 0). */
#define PENDING_NO_ENTRY 0

/* Puts back @p dname's entry as it was before a rename (none: PENDING_NO_ENTRY). */
static tde_status
pending_restore(tde_keymgr *km, const char *dname, const tde_file_entry *prev)
{
    tde_status st = prev->key_id == PENDING_NO_ENTRY ? tde_filedict_delete(km->fd, dname)
                                                     : tde_filedict_put(km->fd, dname, prev);
    return st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
}

static tde_status
pending_name(char *buf, size_t cap, const char *dname, const char *sname)
{
    size_t n = (size_t)snprintf(buf, cap, PENDING_PREFIX "%zu/%s%s", strlen(dname), dname, sname);
    if (n >= cap || n > TDE_FILEDICT_NAME_MAX)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "key manager: names too long to rename %s over %s safely", sname,
                             dname);
    return TDE_OK;
}

/* Splits a pending name into the destination and source stored names; false if not one. */
static bool
pending_parse(const char *name, char *dname, char *sname, size_t cap)
{
    char *end;
    unsigned long long dl;

    if (strncmp(name, PENDING_PREFIX, strlen(PENDING_PREFIX)) != 0)
        return false;
    name += strlen(PENDING_PREFIX);
    dl = strtoull(name, &end, 10);
    if (end == name || *end != '/' || dl == 0 || dl >= cap || strlen(end + 1) <= dl ||
        strlen(end + 1) - dl >= cap)
        return false;
    memcpy(dname, end + 1, dl);
    dname[dl] = '\0';
    strcpy(sname, end + 1 + dl);
    return true;
}

/* The path on disk of the stored name @p name (under its root). */
static bool
stored_to_path(const tde_keymgr *km, const char *name, char *out, size_t cap)
{
    const char *slash = strchr(name, '/');

    if (slash == NULL)
        return false;
    for (size_t i = 0; i < km->n_roots; i++)
        if (strlen(km->roots[i].name) == (size_t)(slash - name) &&
            strncmp(km->roots[i].name, name, (size_t)(slash - name)) == 0)
            return (size_t)snprintf(out, cap, "%s%s", km->roots[i].path, slash) < cap;
    return false;
}

typedef struct pending_list {
    char **names;
    size_t n, cap;
    bool oom;
} pending_list;

static int
collect_pending(void *arg, const char *name, const tde_file_entry *e)
{
    pending_list *l = arg;
    (void)e;
    if (strncmp(name, PENDING_PREFIX, strlen(PENDING_PREFIX)) != 0)
        return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 4;
        char **nn = realloc(l->names, nc * sizeof(*nn));
        if (nn == NULL)
            return l->oom = true;
        l->names = nn;
        l->cap = nc;
    }
    l->names[l->n] = str_dup(name);
    if (l->names[l->n] == NULL)
        return l->oom = true;
    l->n++;
    return 0;
}

/* Whether a recorded rename did not happen: its source @p sname is still on disk. */
static bool
pending_source_there(const tde_keymgr *km, const char *sname)
{
    char path[PATH_MAX + 64];
    return stored_to_path(km, sname, path, sizeof(path)) && access(path, F_OK) == 0;
}

/*
 * Read-only: the entry @p name would have once resolve_pending() ran (nothing is written);
 * @p st is the lookup's own answer (TDE_OK in @p e, or TDE_ERR_NOT_FOUND). Covers renames
 * interrupted before this handle opened, not ones a live writer is doing.
 */
static tde_status
resolve_pending_read_only(tde_keymgr *km, const char *name, tde_file_entry *e, tde_status st)
{
    for (size_t i = 0; i < km->n_ro_pending; i++) {
        char dname[PATH_MAX + 64], sname[PATH_MAX + 64];
        tde_file_entry prev;
        if (pending_parse(km->ro_pending[i], dname, sname, sizeof(dname)) &&
            strcmp(dname, name) == 0 &&
            tde_filedict_get(km->fd, km->ro_pending[i], &prev) == TDE_OK &&
            pending_source_there(km, sname)) {
            *e = prev;
            return prev.key_id == PENDING_NO_ENTRY ? TDE_ERR_NOT_FOUND : TDE_OK;
        }
    }
    return st;
}

/* Open: finishes or undoes every rename a crash interrupted (read-only: only remembers them). */
static tde_status
resolve_pending(tde_keymgr *km)
{
    pending_list l = {0};
    tde_status st = tde_filedict_foreach(km->fd, collect_pending, &l);

    if (km->read_only) {
        km->ro_pending = l.names;
        km->n_ro_pending = l.n;
        return st == TDE_OK && l.oom
                   ? tde_error_set(TDE_ERR_NOMEM, "key manager %s: out of memory", km->dir)
                   : st;
    }

    for (size_t i = 0; i < l.n && st == TDE_OK; i++) {
        char dname[PATH_MAX + 64], sname[PATH_MAX + 64];
        tde_file_entry prev;
        if (!pending_parse(l.names[i], dname, sname, sizeof(dname)))
            continue;
        st = tde_filedict_get(km->fd, l.names[i], &prev);
        if (st != TDE_OK)
            break;
        if (pending_source_there(km, sname)) {
            tde_log(TDE_LOG_WARN,
                    "key manager %s: rename %s -> %s was interrupted before "
                    "rename(2): restoring the entry of %s",
                    km->dir, sname, dname, dname);
            st = pending_restore(km, dname, &prev);
        } else {
            st = tde_filedict_delete(km->fd, sname);
            st = st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
        }
        if (st == TDE_OK)
            st = tde_filedict_delete(km->fd, l.names[i]);
        st = st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
    }
    if (st == TDE_OK && l.oom)
        st = tde_error_set(TDE_ERR_NOMEM, "key manager %s: out of memory", km->dir);
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    return st;
}

tde_status
tde_keymgr_rename_file(tde_keymgr *km, const char *src, const char *dst)
{
    char sname[PATH_MAX + 64], dname[PATH_MAX + 64], pname[TDE_FILEDICT_NAME_MAX + 1];
    tde_file_entry old = {0};
    bool keep;
    tde_status st;

    TDE_RET(check_writable(km));
    TDE_RET(tde_keymgr_stored_name(km, src, sname, sizeof(sname)));
    TDE_RET(tde_keymgr_stored_name(km, dst, dname, sizeof(dname)));
    if (access(src, F_OK) != 0) {
        int e = errno;
        return tde_error_set(e == ENOENT ? TDE_ERR_NOT_FOUND : TDE_ERR_IO, "rename %s -> %s: %s",
                             src, dst, strerror(e));
    }
    st = tde_filedict_get(km->fd, dname, &old);
    if (st != TDE_OK && st != TDE_ERR_NOT_FOUND)
        return st;
    /*
     * The old entry is kept while a crash could leave the old file under the new entry: when
     * dst has an entry, or is a file without one (plaintext: the record says "no entry").
     */
    keep = st == TDE_OK || access(dst, F_OK) == 0;
    if (keep) {
        TDE_RET(pending_name(pname, sizeof(pname), dname, sname));
        TDE_RET(tde_filedict_put(km->fd, pname, &old));
    }
    st = tde_keymgr_link_file(km, src, dst);
    if (st != TDE_OK) {
        /* Nothing was renamed: drop the record (a failed write leaves it to the next open). */
        if (keep && tde_filedict_delete(km->fd, pname) != TDE_OK)
            return tde_error_set(st, "key manager %s: renaming %s over %s failed", km->dir, src,
                                 dst);
        return st;
    }
    TDE_FAILPOINT("keymgr.rename.after_link");
    if (rename(src, dst) != 0) {
        int e = errno;
        /* Put the destination's entry back: its file was not replaced. */
        tde_status undo = pending_restore(km, dname, &old);
        if (undo == TDE_OK && keep)
            undo = tde_filedict_delete(km->fd, pname);
        if (undo != TDE_OK && undo != TDE_ERR_NOT_FOUND)
            tde_log(TDE_LOG_ERROR, "key manager %s: restoring the entry of %s failed: %s", km->dir,
                    dst, tde_last_error());
        return tde_error_set(e == ENOENT ? TDE_ERR_NOT_FOUND : TDE_ERR_IO, "rename %s -> %s: %s",
                             src, dst, strerror(e));
    }
    TDE_FAILPOINT("keymgr.rename.after_rename");
    /* The source's and the previous entry may go only once the rename survives a power loss. */
    TDE_RET(tde_fileio_fsync_parent(dst));
    TDE_RET(tde_fileio_fsync_parent(src));
    /* rename(2) of two links to one inode succeeds and keeps both names: keep both entries. */
    if (access(src, F_OK) != 0)
        TDE_RET(tde_keymgr_delete_file(km, src));
    TDE_FAILPOINT("keymgr.rename.after_drop_source");
    if (!keep)
        return TDE_OK;
    st = tde_filedict_delete(km->fd, pname);
    return st == TDE_ERR_NOT_FOUND ? TDE_OK : st;
}

/* ---- metrics and inspection ------------------------------------------------------------- */

tde_status
tde_keymgr_metrics_get(tde_keymgr *km, tde_keymgr_metrics *out)
{
    struct stat sb;

    memset(out, 0, sizeof(*out));
    out->version = TDE_KEYMGR_METRICS_VERSION;
    pthread_rwlock_rdlock(&km->keys_lock);
    out->method = km->current->method;
    out->current_key_id = km->current->id;
    out->current_key_created = km->current->created;
    out->data_keys = km->n_keys;
    pthread_rwlock_unlock(&km->keys_lock);
    out->encryption_initialized = out->method != TDE_METHOD_PLAINTEXT;
    out->enforce = km->enforce;
    out->encrypted_files = tde_filedict_count(km->fd);
    if (stat(km->kd_path, &sb) == 0)
        out->key_dict_bytes = (uint64_t)sb.st_size;
    tde_filedict_sizes(km->fd, &out->file_dict_snapshot_bytes, &out->file_dict_log_bytes);
    out->meta_reads = atomic_load(&km->m_reads);
    out->meta_read_ns = atomic_load(&km->m_read_ns);
    out->meta_writes = atomic_load(&km->m_writes);
    out->meta_write_ns = atomic_load(&km->m_write_ns);
    out->rotations = atomic_load(&km->m_rotations);
    out->rotation_failures = atomic_load(&km->m_rot_fail);
    out->last_rotation_time = atomic_load(&km->m_last_rot);
    out->keys_removed = atomic_load(&km->m_removed);
    out->plaintext_lookups = atomic_load(&km->m_plain);
    return TDE_OK;
}

typedef struct key_count {
    tde_keymgr_key_info *info;
    size_t n;
} key_count;

static int
count_files(void *arg, const char *name, const tde_file_entry *e)
{
    key_count *c = arg;
    if (name[0] == '/')
        return 0; /* a reserved entry, not a file */
    for (size_t i = 0; i < c->n; i++)
        if (c->info[i].id == e->key_id)
            c->info[i].files++;
    return 0;
}

static int
by_info_created(const void *a, const void *b)
{
    const tde_keymgr_key_info *x = a, *y = b;
    return x->created < y->created ? -1 : x->created > y->created ? 1 : 0;
}

tde_status
tde_keymgr_list_keys(tde_keymgr *km, int (*fn)(void *arg, const tde_keymgr_key_info *k), void *arg)
{
    key_count c = {0};
    tde_status st = TDE_OK;

    pthread_mutex_lock(&km->write_mu);
    c.info = calloc(km->kd.n_keys ? km->kd.n_keys : 1, sizeof(*c.info));
    if (c.info != NULL) {
        c.n = km->kd.n_keys;
        for (size_t i = 0; i < c.n; i++) {
            c.info[i].id = km->kd.keys[i].id;
            c.info[i].method = km->kd.keys[i].method;
            c.info[i].created = km->kd.keys[i].created;
            c.info[i].current = km->kd.keys[i].id == km->kd.current_id;
        }
    }
    pthread_mutex_unlock(&km->write_mu);
    TDE_ENSURE(c.info != NULL, TDE_ERR_NOMEM, "key manager: out of memory");
    TDE_ERR(tde_filedict_foreach(km->fd, count_files, &c));
    qsort(c.info, c.n, sizeof(*c.info), by_info_created);
    for (size_t i = 0; i < c.n; i++)
        if (fn(arg, &c.info[i]) != 0)
            break;
err:
    free(c.info);
    return st;
}

typedef struct file_walk {
    int (*fn)(void *arg, const tde_keymgr_file_info *f);
    void *arg;
} file_walk;

static int
walk_file(void *arg, const char *name, const tde_file_entry *e)
{
    file_walk *w = arg;
    if (name[0] == '/')
        return 0; /* a reserved entry (an interrupted rename), not a file */
    tde_keymgr_file_info f = {.name = name, .key_id = e->key_id, .method = (tde_method)e->method};
    memcpy(f.iv, e->iv, sizeof(f.iv));
    return w->fn(w->arg, &f);
}

tde_status
tde_keymgr_list_files(tde_keymgr *km, int (*fn)(void *arg, const tde_keymgr_file_info *f),
                      void *arg)
{
    file_walk w = {fn, arg};
    return tde_filedict_foreach(km->fd, walk_file, &w);
}

typedef struct plain_walk {
    tde_keymgr *km;
    const km_root *root;
    char km_dir[PATH_MAX];
    int (*fn)(void *arg, const char *path);
    void *arg;
    uint64_t count;
    bool stop;
} plain_walk;

/* Recursively reports regular files under @p path (relative part at @p rel) with no entry. */
static tde_status
walk_dir(plain_walk *w, char *path, size_t len, size_t rel)
{
    DIR *d = opendir(path);
    struct dirent *e;
    tde_status st = TDE_OK;

    if (d == NULL)
        return errno == ENOENT
                   ? TDE_OK
                   : tde_error_set(TDE_ERR_IO, "%s: opendir: %s", path, strerror(errno));
    while (!w->stop && st == TDE_OK && (e = readdir(d)) != NULL) {
        struct stat sb;
        size_t n = strlen(e->d_name);
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || len + n + 2 > PATH_MAX)
            continue;
        path[len] = '/';
        memcpy(path + len + 1, e->d_name, n + 1);
        if (lstat(path, &sb) != 0 || strcmp(path, w->km_dir) == 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            st = walk_dir(w, path, len + 1 + n, rel);
        } else if (S_ISREG(sb.st_mode)) {
            char name[PATH_MAX + 64];
            tde_file_entry fe;
            snprintf(name, sizeof(name), "%s/%s", w->root->name, path + rel);
            if (tde_filedict_get(w->km->fd, name, &fe) == TDE_ERR_NOT_FOUND) {
                w->count++;
                if (w->fn != NULL && w->fn(w->arg, path) != 0)
                    w->stop = true;
            }
        }
        path[len] = '\0';
    }
    closedir(d);
    return st;
}

tde_status
tde_keymgr_list_plaintext_files(tde_keymgr *km, int (*fn)(void *arg, const char *path), void *arg,
                                uint64_t *count)
{
    plain_walk w = {.km = km, .fn = fn, .arg = arg};
    char path[PATH_MAX + 1];

    TDE_RET(normalize(km->dir, w.km_dir, sizeof(w.km_dir)));
    for (size_t i = 0; i < km->n_roots && !w.stop; i++) {
        size_t len = strlen(km->roots[i].path);
        w.root = &km->roots[i];
        memcpy(path, km->roots[i].path, len + 1);
        TDE_RET(walk_dir(&w, path, len, len + 1));
    }
    if (count != NULL)
        *count = w.count;
    return TDE_OK;
}

/* ---- self-contained copies (checkpoints, backups) --------------------------------------- */

/* The stored-name prefix ("<root>/" or "<root>/<relative>/") of the files below @p dir. */
static tde_status
dir_prefix(tde_keymgr *km, const char *dir, char *out, size_t cap)
{
    char abs[PATH_MAX], real[PATH_MAX];
    const char *rest = "";
    const km_root *r;
    size_t rel = 0;

    TDE_RET(normalize(dir, abs, sizeof(abs)));
    r = match_root(km, abs, false, true, &rel);
    if (r != NULL) {
        rest = abs + rel;
    } else if (realpath(abs[0] ? abs : "/", real) != NULL) {
        const char *in = strcmp(real, "/") == 0 ? "" : real;
        r = match_root(km, in, true, true, &rel);
        if (r != NULL)
            rest = in + rel;
    }
    if (r == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG,
                             "key manager %s: %s is under none of the %zu configured roots "
                             "(first: %s=%s/)",
                             km->dir, dir, km->n_roots, km->roots[0].name, km->roots[0].path);
    if ((size_t)snprintf(out, cap, "%s/%s%s", r->name, rest, rest[0] ? "/" : "") >= cap)
        return tde_error_set(TDE_ERR_INVALID_ARG, "key manager: name too long: %s", dir);
    return TDE_OK;
}

typedef struct subset_walk {
    const char *prefix, *root;
    size_t plen;
    keymgr_entries l; /* names re-rooted: "<root>/<relative to the data directory>" */
} subset_walk;

static int
collect_subset(void *arg, const char *name, const tde_file_entry *e)
{
    subset_walk *w = arg;
    size_t rl = strlen(w->root), nl;
    char *nn;

    /* Reserved entries (interrupted renames) start with '/' and never match a prefix. */
    if (strncmp(name, w->prefix, w->plen) != 0 || name[w->plen] == '\0')
        return 0;
    nl = strlen(name + w->plen);
    nn = malloc(rl + nl + 2);
    if (nn != NULL) {
        memcpy(nn, w->root, rl);
        nn[rl] = '/';
        memcpy(nn + rl + 1, name + w->plen, nl + 1);
    }
    return !keymgr_entries_add(&w->l, nn, e);
}

static bool
id_in(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/*
 * The copy's key dictionary (into @p nk): the keys of @p w's entries, a fresh secret, the
 * source's enforce flag. Current: the source's current key if an entry uses it, else the newest
 * used one, else (no entries) a fresh key of the current method. Called with write_mu held.
 */
static tde_status
subset_keydict(tde_keymgr *km, const subset_walk *w, tde_keydict *nk)
{
    tde_keydict fresh = {0};
    uint64_t *used = NULL, chosen = 0;
    size_t n_used = 0;
    tde_secret *s;
    tde_status st = TDE_OK;

    memset(nk, 0, sizeof(*nk));
    used = malloc((w->l.n ? w->l.n : 1) * sizeof(*used));
    TDE_ENSURE(used != NULL, TDE_ERR_NOMEM, "key manager: out of memory");
    for (size_t i = 0; i < w->l.n; i++) {
        uint64_t id = w->l.entries[i].key_id;
        if (id_in(used, n_used, id))
            continue;
        TDE_ENSURE(tde_keydict_find(&km->kd, id) != NULL, TDE_ERR_CORRUPT,
                   "key manager %s: %s uses data key %016llx, which is not in %s", km->dir,
                   w->l.names[i], (unsigned long long)id, TDE_KEYDICT_FILE);
        used[n_used++] = id;
    }
    TDE_ERR(tde_keydict_copy(nk, &km->kd));
    if (id_in(used, n_used, km->kd.current_id)) {
        chosen = km->kd.current_id;
    } else if (n_used > 0) {
        const tde_keydict_key *newest = NULL;
        for (size_t i = 0; i < n_used; i++) {
            const tde_keydict_key *k = tde_keydict_find(nk, used[i]);
            if (newest == NULL || k->created > newest->created)
                newest = k;
        }
        chosen = newest->id;
    } else {
        TDE_ERR(
            tde_keydict_add(nk, tde_keydict_find(nk, nk->current_id)->method, now_s(km), &chosen));
    }
    nk->current_id = chosen;
    for (size_t i = 0; i < nk->n_keys;) {
        if (nk->keys[i].id != chosen && !id_in(used, n_used, nk->keys[i].id))
            TDE_ERR(tde_keydict_remove(nk, nk->keys[i].id)); /* moves the last key here */
        else
            i++;
    }
    /* Its own file-dictionary MAC secret: the copy shares nothing else with the source. */
    TDE_ERR(tde_keydict_init(&fresh));
    s = nk->secret;
    nk->secret = fresh.secret;
    fresh.secret = s;
    nk->flags = (uint16_t)((km->kd.flags & TDE_KEYDICT_FLAG_ENFORCE) | TDE_KEYDICT_FLAG_FILEDICT);
    nk->generation = 1;
err:
    tde_keydict_clear(&fresh);
    if (st != TDE_OK)
        tde_keydict_clear(nk);
    free(used);
    return st;
}

tde_status
tde_keymgr_copy_subset(tde_keymgr *km, const char *data_dir, const char *dest_dir,
                       const char *dest_root_name, const char *dest_master_key_uri,
                       uint64_t *n_files_out)
{
    char prefix[PATH_MAX + 64], dest[PATH_MAX], tmp[PATH_MAX + 16], why[480];
    subset_walk w = {0};
    tde_keydict nk = {0};
    tde_masterkey *own = NULL;
    struct stat sb;
    bool locked = false, renamed = false;
    tde_status st = TDE_OK;

    if (n_files_out != NULL)
        *n_files_out = 0;
    TDE_ENSURE(km != NULL && data_dir != NULL && dest_dir != NULL && dest_dir[0] != '\0' &&
                   dest_root_name != NULL && dest_root_name[0] != '\0' &&
                   strchr(dest_root_name, '/') == NULL,
               TDE_ERR_INVALID_ARG,
               "key manager: copy needs a data directory, a destination and a root name "
               "without '/'");
    TDE_ERR(normalize(dest_dir, dest, sizeof(dest)));
    TDE_ENSURE(lstat(dest, &sb) != 0, TDE_ERR_EXISTS,
               "key manager %s: the copy's directory %s exists already; refusing to overwrite "
               "it (give a new directory)",
               km->dir, dest_dir);
    TDE_ERR(dir_prefix(km, data_dir, prefix, sizeof(prefix)));
    if (dest_master_key_uri != NULL && tde_masterkey_open(&own, dest_master_key_uri) != TDE_OK) {
        snprintf(why, sizeof(why), "%s", tde_last_error());
        TDE_ERR(tde_error_set(TDE_ERR_INVALID_ARG,
                              "key manager %s: copy to %s: the master key %s is unusable: %s",
                              km->dir, dest_dir, dest_master_key_uri, why));
    }
    if (km->read_only) {
        /* A follower of a live writer: catch up with its entries, then with its keys (a key is
         * durable before any entry uses it, so loading keys second sees every key used). */
        TDE_ERR(tde_filedict_refresh(km->fd));
    }
    w.prefix = prefix;
    w.plen = strlen(prefix);
    w.root = dest_root_name;
    TDE_ERR(tde_filedict_foreach(km->fd, collect_subset, &w));
    TDE_ENSURE(!w.l.oom, TDE_ERR_NOMEM, "key manager: out of memory");
    for (size_t i = 0; i < w.l.n && km->n_ro_pending > 0;) {
        char orig[PATH_MAX + 64];
        snprintf(orig, sizeof(orig), "%s%s", prefix, w.l.names[i] + strlen(dest_root_name) + 1);
        st = resolve_pending_read_only(km, orig, &w.l.entries[i], TDE_OK);
        if (st == TDE_ERR_NOT_FOUND) { /* the rename did not happen: the file had no entry */
            keymgr_entries_remove(&w.l, i);
            continue;
        }
        TDE_ERR(st);
        i++;
    }
    if (km->read_only)
        TDE_ERR(reload_keys(km));
    /* Held to the end: no key leaves key.dict and km->master stays while the copy is sealed. */
    pthread_mutex_lock(&km->write_mu);
    locked = true;
    TDE_ERR(subset_keydict(km, &w, &nk));

    TDE_ENSURE((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dest) < sizeof(tmp),
               TDE_ERR_INVALID_ARG, "key manager: path too long: %s", dest_dir);
    TDE_ENSURE(mkdtemp(tmp) != NULL, TDE_ERR_IO, "%s: mkdtemp: %s", tmp, strerror(errno));
    st = keymgr_write_new_dir(tmp, &w.l, &nk, own != NULL ? own : km->master);
    if (st == TDE_OK)
        st = tde_fileio_rename_noreplace(tmp, dest);
    if (st == TDE_OK) {
        renamed = true;
        st = tde_fileio_fsync_parent(dest);
    }
    if (st != TDE_OK) {
        snprintf(why, sizeof(why), "%s", tde_last_error());
        tde_fileio_remove_flat_dir(renamed ? dest : tmp);
        st = tde_error_set(st, "key manager %s: copy to %s failed, nothing left behind: %s",
                           km->dir, dest_dir, why);
        goto err;
    }
    tde_log(TDE_LOG_INFO, "key manager %s: copied %zu entries below %s and %zu keys to %s", km->dir,
            w.l.n, data_dir, nk.n_keys, dest);
    if (n_files_out != NULL)
        *n_files_out = w.l.n;
err:
    if (locked)
        pthread_mutex_unlock(&km->write_mu);
    tde_keydict_clear(&nk);
    tde_masterkey_free(own);
    keymgr_entries_free(&w.l);
    return st;
}
