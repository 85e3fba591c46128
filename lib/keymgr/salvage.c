/*
 * tde_keymgr_salvage(): a new, consistent key-manager directory from whatever
 * can be read of a damaged one. Threat model as for the key manager: every
 * byte used is authenticated (key dictionaries by the master key, file
 * dictionary snapshots and records by their MACs); unauthenticated bytes are
 * reported as lost, never used. The damaged directory is only read.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "common/fileio.h"
#include "keymgr/filedict.h"
#include "keymgr/keydict.h"
#include "keymgr/newdir.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"

#define N_COPIES 2

typedef struct salvage_ctx {
    const tde_keymgr_salvage_options *o;
    tde_keydict kd[N_COPIES];
    bool have[N_COPIES];
    tde_keydict merged;
    tde_filedict *fd;
    tde_keymgr_salvage_result res;
    keymgr_entries l; /* entries gathered for the new dictionary */
} salvage_ctx;

static const char *const copy_names[N_COPIES] = {TDE_KEYDICT_FILE,
                                                 TDE_KEYDICT_FILE TDE_KEYDICT_BACKUP_SUFFIX};

static void
report(const salvage_ctx *c, tde_keymgr_salvage_kind kind, const char *file, uint64_t key_id,
       const char *name, const char *message)
{
    tde_keymgr_salvage_event ev = {
        .kind = kind, .file = file, .key_id = key_id, .name = name, .message = message};
    if (c->o->fn != NULL)
        c->o->fn(c->o->arg, &ev);
}

static bool
skipped(const salvage_ctx *c, const char *base)
{
    for (size_t i = 0; i < c->o->n_skip; i++)
        if (strcmp(c->o->skip[i], base) == 0)
            return true;
    return false;
}

/* Loads both copies of the key dictionary; *worst gets the most telling failure. */
static void
load_copies(salvage_ctx *c, tde_masterkey *mk, tde_masterkey *prev, tde_status *worst)
{
    char path[PATH_MAX], msg[64];

    *worst = TDE_ERR_NOT_FOUND;
    for (int i = 0; i < N_COPIES; i++) {
        tde_status st;
        if (skipped(c, copy_names[i])) {
            report(c, TDE_SALVAGE_NOTE, copy_names[i], 0, NULL, "skipped as asked");
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", c->o->dir, copy_names[i]);
        st = tde_keydict_load(&c->kd[i], path, mk, prev, NULL);
        if (st != TDE_OK) {
            report(c, TDE_SALVAGE_UNREADABLE, copy_names[i], 0, NULL, tde_last_error());
            /* a wrong master key says more than a missing or damaged copy */
            if (st == TDE_ERR_AUTH || st == TDE_ERR_UNAVAILABLE || *worst == TDE_ERR_NOT_FOUND)
                *worst = st;
            continue;
        }
        c->have[i] = true;
        snprintf(msg, sizeof(msg), "%zu data keys, generation %" PRIu64, c->kd[i].n_keys,
                 c->kd[i].generation);
        report(c, TDE_SALVAGE_READ, copy_names[i], 0, NULL, msg);
    }
}

static bool
same_key(const tde_keydict_key *a, const tde_keydict_key *b)
{
    if (a->method != b->method || (a->key == NULL) != (b->key == NULL))
        return false;
    return a->key == NULL || (tde_secret_len(a->key) == tde_secret_len(b->key) &&
                              CRYPTO_memcmp(tde_secret_data(a->key), tde_secret_data(b->key),
                                            tde_secret_len(a->key)) == 0);
}

/* The union of the copies' keys into c->merged; CORRUPT when they disagree on a key. */
static tde_status
merge_keys(salvage_ctx *c)
{
    int newest = c->have[0] && (!c->have[1] || c->kd[0].generation >= c->kd[1].generation) ? 0 : 1;
    size_t conflicts = 0;
    uint64_t first = 0;
    tde_keydict *m = &c->merged;

    TDE_RET(tde_keydict_copy(m, &c->kd[newest]));
    if (c->have[1 - newest]) {
        const tde_keydict *o = &c->kd[1 - newest];
        m->flags |= o->flags & TDE_KEYDICT_FLAG_ENFORCE;
        for (size_t i = 0; i < o->n_keys; i++) {
            const tde_keydict_key *k = &o->keys[i];
            tde_keydict_key *have = tde_keydict_find(m, k->id);
            if (have != NULL) {
                if (!same_key(have, k)) {
                    report(c, TDE_SALVAGE_KEY_CONFLICT, NULL, k->id, NULL,
                           "key.dict and key.dict.bak hold different keys under this id");
                    if (conflicts++ == 0)
                        first = k->id;
                }
                continue;
            }
            tde_keydict_key *keys = realloc(m->keys, (m->n_keys + 1) * sizeof(*keys));
            if (keys == NULL)
                return tde_error_set(TDE_ERR_NOMEM, "salvage: out of memory");
            m->keys = keys;
            m->keys[m->n_keys] = *k;
            m->keys[m->n_keys].key = NULL;
            m->n_keys++;
            if (k->key != NULL)
                TDE_RET(tde_secret_from(&m->keys[m->n_keys - 1].key, tde_secret_data(k->key),
                                        tde_secret_len(k->key)));
        }
    }
    if (conflicts > 0)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "salvage %s: %s and %s disagree on %zu data keys (first %016" PRIx64
                             "); nothing written. Salvage again skipping one copy "
                             "(--skip %s or --skip %s) and compare the results",
                             c->o->dir, copy_names[0], copy_names[1], conflicts, first,
                             copy_names[0], copy_names[1]);
    for (size_t i = 0; i < m->n_keys; i++) {
        uint64_t id = m->keys[i].id;
        bool a = c->have[0] && tde_keydict_find(&c->kd[0], id) != NULL;
        bool b = c->have[1] && tde_keydict_find(&c->kd[1], id) != NULL;
        report(c, TDE_SALVAGE_KEY,
               a && b ? TDE_KEYDICT_FILE " " TDE_KEYDICT_FILE TDE_KEYDICT_BACKUP_SUFFIX
               : a    ? copy_names[0]
                      : copy_names[1],
               id, NULL, NULL);
    }
    return TDE_OK;
}

/* Reads the file dictionary under the MAC key that authenticates most of it. */
static tde_status
read_filedict(salvage_ctx *c, bool *lost, uint64_t *lost_bytes)
{
    tde_filedict_salvage_options fo = {
        .dir = c->o->dir, .skip = c->o->skip, .n_skip = c->o->n_skip};
    int best = -1;
    uint64_t best_auth = 0, auth;
    tde_filedict *d = NULL;
    tde_status st;

    for (int i = 0; i < N_COPIES; i++) {
        if (!c->have[i] ||
            (i == 1 && c->have[0] &&
             CRYPTO_memcmp(tde_secret_data(c->kd[0].secret), tde_secret_data(c->kd[1].secret),
                           TDE_KEYDICT_SECRET_LEN) == 0))
            continue;
        TDE_RET(tde_keydict_mac_key(&c->kd[i], fo.mac_key));
        st = tde_filedict_salvage(&d, &fo, &auth, lost_bytes, lost);
        OPENSSL_cleanse(fo.mac_key, sizeof(fo.mac_key));
        tde_filedict_close(d);
        d = NULL;
        TDE_RET(st);
        if (best < 0 || auth > best_auth)
            best = i, best_auth = auth;
    }
    if (best >= 0 && c->have[0] && c->have[1] && best_auth > 0 &&
        CRYPTO_memcmp(tde_secret_data(c->kd[0].secret), tde_secret_data(c->kd[1].secret),
                      TDE_KEYDICT_SECRET_LEN) != 0)
        report(c, TDE_SALVAGE_NOTE, copy_names[best], 0, NULL,
               "the two key dictionary copies belong to different file dictionaries; this one "
               "authenticates it");
    fo.fn = c->o->fn;
    fo.arg = c->o->arg;
    TDE_RET(tde_keydict_mac_key(&c->kd[best], fo.mac_key));
    st = tde_filedict_salvage(&c->fd, &fo, &auth, lost_bytes, lost);
    OPENSSL_cleanse(fo.mac_key, sizeof(fo.mac_key));
    if (st == TDE_OK && auth == 0 && (c->merged.flags & TDE_KEYDICT_FLAG_FILEDICT)) {
        *lost = true;
        report(c, TDE_SALVAGE_NOTE, NULL, 0, NULL,
               "no part of the file dictionary authenticates: every entry is lost");
    }
    return st;
}

static int
gather(void *arg, const char *name, const tde_file_entry *e)
{
    salvage_ctx *c = arg;
    return !keymgr_entries_add(&c->l, strdup(name), e);
}

static tde_status
write_dir(salvage_ctx *c, const char *tmp, tde_masterkey *mk)
{
    tde_keymgr_root root = {"fs", "/"};
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = tmp,
                             .roots = &root,
                             .n_roots = 1,
                             .master_key_uri = c->o->master_key_uri,
                             .read_only = true,
                             .rotation_period_seconds = UINT64_MAX / 4};
    tde_keymgr *km = NULL;
    tde_secret *secret = NULL;
    tde_status st;

    /* A fresh MAC secret: nothing of the old file dictionary can be mixed into the new one. */
    TDE_RET(tde_secret_random(&secret, TDE_KEYDICT_SECRET_LEN));
    tde_secret_free(c->merged.secret);
    c->merged.secret = secret;
    c->merged.flags |= TDE_KEYDICT_FLAG_FILEDICT;
    c->merged.generation++;
    TDE_RET(keymgr_write_new_dir(tmp, &c->l, &c->merged, mk));
    st = tde_keymgr_open(&km, &cfg);
    tde_keymgr_close(km);
    if (st != TDE_OK)
        return tde_error_set(st, "salvage: the new directory does not open: %s", tde_last_error());
    return TDE_OK;
}

tde_status
tde_keymgr_salvage(const tde_keymgr_salvage_options *o, tde_keymgr_salvage_result *out)
{
    salvage_ctx c = {.o = o};
    tde_masterkey *mk = NULL, *prev = NULL;
    tde_status st = TDE_OK, worst;
    char tmp[PATH_MAX] = "";
    struct stat sb;
    bool lost = false;

    TDE_ENSURE(o != NULL && o->version == TDE_KEYMGR_SALVAGE_VERSION && o->dir != NULL &&
                   o->dest != NULL && o->master_key_uri != NULL,
               TDE_ERR_INVALID_ARG, "salvage: bad options");
    TDE_ENSURE(lstat(o->dest, &sb) != 0 && errno == ENOENT, TDE_ERR_EXISTS,
               "salvage: %s exists already; give a new directory", o->dest);
    TDE_ENSURE(stat(o->dir, &sb) == 0 && S_ISDIR(sb.st_mode), TDE_ERR_NOT_FOUND,
               "salvage: %s is not a directory", o->dir);
    TDE_ERR(tde_masterkey_open(&mk, o->master_key_uri));
    if (o->previous_master_key_uri != NULL)
        TDE_ERR(tde_masterkey_open(&prev, o->previous_master_key_uri));

    load_copies(&c, mk, prev, &worst);
    TDE_ENSURE(c.have[0] || c.have[1], worst == TDE_ERR_NOT_FOUND ? TDE_ERR_CORRUPT : worst,
               "salvage %s: no copy of the key dictionary opens (%s, %s): nothing can be "
               "decrypted without the data keys; nothing written",
               o->dir, copy_names[0], copy_names[1]);
    TDE_ERR(merge_keys(&c));
    TDE_ERR(read_filedict(&c, &lost, &c.res.lost_bytes));
    TDE_ERR(tde_filedict_foreach(c.fd, gather, &c));
    TDE_ENSURE(!c.l.oom, TDE_ERR_NOMEM, "salvage: out of memory");
    for (size_t i = 0; i < c.l.n; i++)
        if (tde_keydict_find(&c.merged, c.l.entries[i].key_id) == NULL &&
            c.l.entries[i].method != TDE_METHOD_PLAINTEXT) {
            c.res.entries_missing_key++;
            report(&c, TDE_SALVAGE_MISSING_KEY, NULL, c.l.entries[i].key_id, c.l.names[i],
                   "no copy of the key dictionary holds this file's key: it is unreadable");
        }

    /* Build beside DEST, then rename into place (refusing to replace anything). */
    {
        size_t dl = strlen(o->dest);
        while (dl > 1 && o->dest[dl - 1] == '/')
            dl--; /* "out/" */
        TDE_ENSURE(snprintf(tmp, sizeof(tmp), "%.*s.salvage-XXXXXX", (int)dl, o->dest) <
                       (int)sizeof(tmp),
                   TDE_ERR_INVALID_ARG, "salvage: %s: path too long", o->dest);
    }
    TDE_ENSURE(mkdtemp(tmp) != NULL, TDE_ERR_IO, "salvage: cannot create %s: %s", tmp,
               strerror(errno));
    TDE_ERR(write_dir(&c, tmp, mk));
    TDE_ERR(tde_fileio_rename_noreplace(tmp, o->dest));
    tmp[0] = '\0';
    TDE_ERR(tde_fileio_fsync_parent(o->dest));
    c.res.keys = c.merged.n_keys;
    c.res.entries = c.l.n;
    c.res.complete = !lost && c.res.entries_missing_key == 0;
    if (out != NULL)
        *out = c.res;
err:
    if (tmp[0] != '\0')
        tde_fileio_remove_flat_dir(tmp);
    tde_filedict_close(c.fd);
    keymgr_entries_free(&c.l);
    for (int i = 0; i < N_COPIES; i++)
        tde_keydict_clear(&c.kd[i]);
    tde_keydict_clear(&c.merged);
    tde_masterkey_free(prev);
    tde_masterkey_free(mk);
    return st;
}
