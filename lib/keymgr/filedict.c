/*
 * The file dictionary: reader and writer of the snapshot and log formats
 * (docs/formats.md, "File dictionary"), an in-memory compact hash table, and
 * group commit.
 *
 * Threat model: see filedict.h. Every byte read from disk is authenticated
 * (one HMAC over the snapshot, one per log record bound to the generation and
 * offset) before it is used; parsing is bounds-checked because the MAC key may
 * be wrong or the file fuzzed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "common/fileio.h"
#include "keymgr/filedict.h"

#define SNAP_MAGIC "TDEFDSNP"
#define LOG_MAGIC "TDEFDLOG"
#define FORMAT_VERSION 1
#define SNAP_HEADER_LEN 40
#define LOG_HEADER_LEN 64
#define MAC_LEN 32
#define REC_HEADER_LEN 8
#define REC_TAG 0x52
#define REC_PUT 1
#define REC_DELETE 2
#define REC_LINK 3
#define ENTRY_LEN 25 /* key id, method, IV */
#define REC_MAX_BODY (ENTRY_LEN + 4 + 2 * TDE_FILEDICT_NAME_MAX)
#define DEFAULT_COMPACT_MIN (4u << 20)
#define OPEN_RETRIES 8

/* ---- Little-endian fields ---- */

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void
entry_encode(uint8_t *p, const tde_file_entry *e)
{
    put64(p, e->key_id);
    p[8] = e->method;
    memcpy(p + 9, e->iv, TDE_FILEDICT_IV_LEN);
}

static void
entry_decode(tde_file_entry *e, const uint8_t *p)
{
    e->key_id = get64(p);
    e->method = p[8];
    memcpy(e->iv, p + 9, TDE_FILEDICT_IV_LEN);
}

/* ---- The in-memory table ----
 * Entries live back to back in one arena: u16 name length, name, NUL, 25-byte entry.
 * An open-addressing table of 64-bit slots points into it: low 40 bits hold the
 * arena offset + 2 (0 = empty, 1 = deleted), high 24 bits a tag from the hash. */

#define SLOT_EMPTY 0
#define SLOT_TOMB 1
#define OFF_BITS 40
#define OFF_MASK ((UINT64_C(1) << OFF_BITS) - 1)
#define ARENA_REC(nlen) (2 + (size_t)(nlen) + 1 + ENTRY_LEN)
#define DELETED_BIT 0x8000u /* set in a deleted record's length (names are <= 4096 bytes) */

/* Big slot arrays, arenas and snapshot buffers get their own mappings advised for huge pages:
 * a 1,000,000-entry dictionary then opens with a few hundred page faults, not tens of
 * thousands (which dominate the open time on virtual machines). */
#define BIG_MIN ((size_t)2 << 20)

/* Zeroed memory of @p len bytes; free with big_free(p, len). */
static void *
big_alloc(size_t len)
{
    void *p;

    if (len < BIG_MIN)
        return calloc(1, len > 0 ? len : 1);
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

static void
big_free(void *p, size_t len)
{
    if (p == NULL)
        return;
    if (len < BIG_MIN)
        free(p);
    else
        munmap(p, len);
}

/* Grows @p p from @p old to @p len bytes (len > old). */
static void *
big_grow(void *p, size_t old, size_t len)
{
    void *q;

    if (p != NULL && old >= BIG_MIN) {
        q = mremap(p, old, len, MREMAP_MAYMOVE);
        if (q == MAP_FAILED)
            return NULL;
        (void)madvise(q, len, MADV_HUGEPAGE);
        return q;
    }
    if (len < BIG_MIN)
        return realloc(p, len);
    q = big_alloc(len);
    if (q != NULL && p != NULL)
        memcpy(q, p, old);
    if (q != NULL)
        free(p);
    return q;
}

struct table {
    uint64_t *slots;
    size_t cap;  /* power of two, or 0 */
    size_t used; /* live + deleted slots */
    size_t live;
    uint8_t *arena;
    size_t arena_len, arena_cap, garbage;
};

static uint64_t
hash_name(const char *name, size_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * UINT64_C(0x100000001b3);
    /* FNV's high bits mix poorly; the tag uses them. */
    h ^= h >> 31;
    h *= UINT64_C(0x7fb5d329728ea185);
    h ^= h >> 27;
    return h;
}

static const uint8_t *
slot_rec(const struct table *t, uint64_t s)
{
    return t->arena + (s & OFF_MASK) - 2;
}

/* Index of @p name's slot, or -1. */
static long
table_find(const struct table *t, const char *name, size_t len, uint64_t h)
{
    size_t mask = t->cap - 1;

    if (t->cap == 0)
        return -1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t s = t->slots[i];
        if (s == SLOT_EMPTY)
            return -1;
        if (s != SLOT_TOMB && ((s ^ h) >> OFF_BITS) == 0) {
            const uint8_t *r = slot_rec(t, s);
            if (get16(r) == len && memcmp(r + 2, name, len) == 0)
                return (long)i;
        }
    }
}

static void
table_place(struct table *t, uint64_t h, size_t off)
{
    size_t mask = t->cap - 1;
    size_t i = h & mask;

    while (t->slots[i] > SLOT_TOMB)
        i = (i + 1) & mask;
    if (t->slots[i] == SLOT_EMPTY)
        t->used++;
    t->slots[i] = (h >> OFF_BITS << OFF_BITS) | (uint64_t)(off + 2);
}

/* Rebuilds the slots (dropping deleted ones) and, when asked, the arena (dropping garbage). */
static tde_status
table_rebuild(struct table *t, size_t min_live, bool pack)
{
    size_t cap = 16;
    uint64_t *slots;
    uint8_t *arena = t->arena;
    size_t arena_len = t->arena_len;

    while (cap / 2 < min_live + 1)
        cap *= 2;
    slots = big_alloc(cap * sizeof(*slots));
    if (slots == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: cannot allocate %zu slots", cap);
    if (pack && t->garbage > 0) {
        arena = big_alloc(t->arena_len - t->garbage + 1);
        if (arena == NULL) {
            big_free(slots, cap * sizeof(*slots));
            return tde_error_set(TDE_ERR_NOMEM, "filedict: cannot allocate the entry arena");
        }
        arena_len = 0;
    }
    /* Walk the arena in order (deleted records are marked there): sequential reads. */
    for (size_t pos = 0; pos < t->arena_len;) {
        const uint8_t *r = t->arena + pos;
        size_t nlen = get16(r) & ~DELETED_BIT, off = pos;
        uint64_t h;
        pos += ARENA_REC(nlen);
        if (get16(r) & DELETED_BIT)
            continue;
        if (arena != t->arena) {
            memcpy(arena + arena_len, r, ARENA_REC(nlen));
            off = arena_len;
            arena_len += ARENA_REC(nlen);
        }
        h = hash_name((const char *)r + 2, nlen);
        for (size_t mask = cap - 1, j = h & mask;; j = (j + 1) & mask) {
            if (slots[j] == SLOT_EMPTY) {
                slots[j] = (h >> OFF_BITS << OFF_BITS) | (uint64_t)(off + 2);
                break;
            }
        }
    }
    big_free(t->slots, t->cap * sizeof(*t->slots));
    t->slots = slots;
    t->cap = cap;
    t->used = t->live;
    if (arena != t->arena) {
        big_free(t->arena, t->arena_cap);
        t->arena = arena;
        t->arena_len = arena_len;
        t->arena_cap = arena_len + 1;
        t->garbage = 0;
    }
    return TDE_OK;
}

/* Makes room for @p extra more arena bytes: exactly (loading a snapshot) or doubling. */
static tde_status
table_reserve_arena(struct table *t, size_t extra, bool exact)
{
    size_t cap = t->arena_cap ? t->arena_cap : 4096;
    uint8_t *p;

    if (t->arena_len + extra <= t->arena_cap)
        return TDE_OK;
    while (cap < t->arena_len + extra)
        cap *= 2;
    if (exact)
        cap = t->arena_len + extra;
    p = big_grow(t->arena, t->arena_cap, cap);
    if (p == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: cannot grow the entry arena to %zu bytes",
                             cap);
    t->arena = p;
    t->arena_cap = cap;
    return TDE_OK;
}

/* Makes room for @p n live entries without further rebuilds. */
static tde_status
table_reserve(struct table *t, size_t n)
{
    if ((n + 1) * 10 <= t->cap * 7)
        return TDE_OK;
    return table_rebuild(t, n, false);
}

/* Adds or replaces; *added tells which. */
static tde_status
table_put_h(struct table *t, const char *name, size_t len, uint64_t h, const tde_file_entry *e,
            bool *added)
{
    long i = table_find(t, name, len, h);
    uint8_t *r;

    if (added != NULL)
        *added = i < 0;
    if (i >= 0) {
        r = t->arena + (t->slots[i] & OFF_MASK) - 2;
        entry_encode(r + 2 + len + 1, e);
        return TDE_OK;
    }
    if ((t->used + 1) * 10 > t->cap * 7)
        TDE_RET(table_rebuild(t, t->live + 1, t->garbage > t->arena_len / 2));
    TDE_RET(table_reserve_arena(t, ARENA_REC(len), false));
    r = t->arena + t->arena_len;
    put16(r, (uint16_t)len);
    memcpy(r + 2, name, len);
    r[2 + len] = '\0';
    entry_encode(r + 2 + len + 1, e);
    table_place(t, h, t->arena_len);
    t->arena_len += ARENA_REC(len);
    t->live++;
    return TDE_OK;
}

static tde_status
table_put(struct table *t, const char *name, size_t len, const tde_file_entry *e, bool *added)
{
    return table_put_h(t, name, len, hash_name(name, len), e, added);
}

static bool
table_get(const struct table *t, const char *name, size_t len, tde_file_entry *out)
{
    long i = table_find(t, name, len, hash_name(name, len));

    if (i < 0)
        return false;
    if (out != NULL)
        entry_decode(out, slot_rec(t, t->slots[i]) + 2 + len + 1);
    return true;
}

static bool
table_delete_h(struct table *t, const char *name, size_t len, uint64_t h)
{
    long i = table_find(t, name, len, h);

    if (i < 0)
        return false;
    t->garbage += ARENA_REC(len);
    put16(t->arena + (t->slots[i] & OFF_MASK) - 2, (uint16_t)(len | DELETED_BIT));
    t->slots[i] = SLOT_TOMB;
    t->live--;
    return true;
}

static bool
table_delete(struct table *t, const char *name, size_t len)
{
    return table_delete_h(t, name, len, hash_name(name, len));
}

/* Log records are applied a few behind the parser, whose hash prefetches their slot: a log is
 * in time order, so its slots are random and each would otherwise wait for memory. */
#define REPLAY_AHEAD 8

struct replay_op {
    const char *name;
    size_t len;
    uint64_t h;
    bool del;
    tde_file_entry e;
};

struct replay_queue {
    struct replay_op ops[REPLAY_AHEAD];
    size_t head, count;
};

static tde_status
replay_apply(struct table *t, const struct replay_op *op)
{
    if (op->del) {
        (void)table_delete_h(t, op->name, op->len, op->h);
        return TDE_OK;
    }
    return table_put_h(t, op->name, op->len, op->h, &op->e, NULL);
}

static tde_status
replay_push(struct table *t, struct replay_queue *q, const struct replay_op *op)
{
    if (t->cap > 0)
        __builtin_prefetch(&t->slots[op->h & (t->cap - 1)]);
    if (q->count < REPLAY_AHEAD) {
        q->ops[(q->head + q->count++) % REPLAY_AHEAD] = *op;
        return TDE_OK;
    }
    TDE_RET(replay_apply(t, &q->ops[q->head]));
    q->ops[q->head] = *op;
    q->head = (q->head + 1) % REPLAY_AHEAD;
    return TDE_OK;
}

static tde_status
replay_flush(struct table *t, struct replay_queue *q)
{
    for (; q->count > 0; q->count--, q->head = (q->head + 1) % REPLAY_AHEAD)
        TDE_RET(replay_apply(t, &q->ops[q->head]));
    return TDE_OK;
}

static void
table_free(struct table *t)
{
    big_free(t->slots, t->cap * sizeof(*t->slots));
    big_free(t->arena, t->arena_cap);
    memset(t, 0, sizeof(*t));
}

/* ---- The handle ---- */

/* One caller's call: its ops are queued together, so one leader commits all of them. */
struct submission {
    bool done;
    tde_status st;
    char msg[256];
};

struct op {
    struct op *next;
    struct submission *sub;
    uint8_t type;
    const char *name, *src;
    size_t name_len, src_len;
    tde_file_entry e;
};

struct tde_filedict {
    char *dir;
    bool read_only;
    uint64_t compact_bytes;
    EVP_MAC_CTX *mac; /* used by one thread at a time: open, the commit leader, or refresh */

    pthread_rwlock_t lock; /* guards t */
    struct table t;

    pthread_mutex_t mu; /* guards the queue and the leader flag; refresh holds it */
    pthread_cond_t cv;
    struct op *pending, **pending_tail;
    bool leader;

    /* Owned by the leader (or refresh) while it runs. */
    uint64_t gen;
    int log_fd;
    bool broken;
    uint64_t compact_at;
    _Atomic uint64_t log_bytes, snapshot_bytes;
};

/* Parsing context: where bytes come from (for messages) and how to check them. */
struct source {
    tde_filedict *d;
    const char *path;
    uint64_t gen;
    bool verify; /* false only for the fuzzer, to reach past the MACs */
};

static tde_status
mac_compute(tde_filedict *d, const uint8_t *prefix, size_t plen, const uint8_t *data, size_t len,
            uint8_t out[MAC_LEN])
{
    size_t outl = 0;

    if (EVP_MAC_init(d->mac, NULL, 0, NULL) != 1 ||
        (plen > 0 && EVP_MAC_update(d->mac, prefix, plen) != 1) ||
        EVP_MAC_update(d->mac, data, len) != 1 || EVP_MAC_final(d->mac, out, &outl, MAC_LEN) != 1 ||
        outl != MAC_LEN) {
        ERR_clear_error();
        return tde_error_set(TDE_ERR_CRYPTO, "filedict: HMAC-SHA256 failed");
    }
    return TDE_OK;
}

/* Checks the MAC at @p mac over @p data (and the optional prefix); AUTH on mismatch. */
static tde_status
mac_check(const struct source *s, const uint8_t *prefix, size_t plen, const uint8_t *data,
          size_t len, const uint8_t *mac, uint64_t offset, const char *what)
{
    uint8_t want[MAC_LEN];

    if (!s->verify)
        return TDE_OK;
    TDE_RET(mac_compute(s->d, prefix, plen, data, len, want));
    if (CRYPTO_memcmp(want, mac, MAC_LEN) != 0)
        return tde_error_set(
            TDE_ERR_AUTH, "%s: %s MAC mismatch at offset %" PRIu64 ": wrong key or tampered file",
            s->path, what, offset);
    return TDE_OK;
}

static bool
name_ok(const uint8_t *p, size_t len)
{
    return len >= 1 && len <= TDE_FILEDICT_NAME_MAX && memchr(p, '\0', len) == NULL;
}

/* ---- Snapshot ---- */

/* Parses and checks a whole snapshot into @p t (empty on entry). */
static tde_status
snapshot_parse(const struct source *s, const uint8_t *buf, size_t len, struct table *t)
{
    uint64_t count, pos = SNAP_HEADER_LEN;
    size_t body_end;

    if (len < SNAP_HEADER_LEN + MAC_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated snapshot (%zu bytes)", s->path, len);
    if (memcmp(buf, SNAP_MAGIC, 8) != 0)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: bad magic at offset 0", s->path);
    body_end = len - MAC_LEN;
    TDE_RET(mac_check(s, NULL, 0, buf, body_end, buf + body_end, body_end, "snapshot"));
    if (get16(buf + 8) != FORMAT_VERSION)
        return tde_error_set(TDE_ERR_UNSUPPORTED, "%s: snapshot version %u is not supported",
                             s->path, get16(buf + 8));
    if (get16(buf + 10) != 0 || get32(buf + 12) != 0)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: reserved bytes not zero at offset 10", s->path);
    if (get64(buf + 16) != s->gen)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "%s: generation %" PRIu64 " at offset 16, expected %" PRIu64, s->path,
                             get64(buf + 16), s->gen);
    count = get64(buf + 32);
    if (count > (body_end - SNAP_HEADER_LEN) / (2 + 1 + ENTRY_LEN))
        return tde_error_set(TDE_ERR_CORRUPT, "%s: entry count %" PRIu64 " at offset 32 too large",
                             s->path, count);
    TDE_RET(table_rebuild(t, (size_t)count, false));
    TDE_RET(table_reserve_arena(t, (size_t)(body_end - SNAP_HEADER_LEN + count), true));
    for (uint64_t i = 0; i < count; i++) {
        size_t nlen;
        tde_file_entry e;
        bool added;
        if (body_end - pos < 2 || (nlen = get16(buf + pos), body_end - pos - 2 < nlen + ENTRY_LEN))
            return tde_error_set(TDE_ERR_CORRUPT,
                                 "%s: entry %" PRIu64 " truncated at offset %" PRIu64, s->path, i,
                                 pos);
        if (!name_ok(buf + pos + 2, nlen))
            return tde_error_set(TDE_ERR_CORRUPT, "%s: bad name at offset %" PRIu64, s->path, pos);
        entry_decode(&e, buf + pos + 2 + nlen);
        TDE_RET(table_put(t, (const char *)buf + pos + 2, nlen, &e, &added));
        if (!added)
            return tde_error_set(TDE_ERR_CORRUPT, "%s: duplicate name at offset %" PRIu64, s->path,
                                 pos);
        pos += 2 + nlen + ENTRY_LEN;
    }
    if (pos != body_end)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: %zu stray bytes at offset %" PRIu64, s->path,
                             (size_t)(body_end - pos), pos);
    return TDE_OK;
}

/* Serializes @p t as generation @p gen's snapshot (malloc()ed). Caller holds the read lock. */
static tde_status
snapshot_build(tde_filedict *d, const struct table *t, uint64_t gen, uint64_t base_log_bytes,
               uint8_t **out, size_t *out_len)
{
    size_t len = SNAP_HEADER_LEN + MAC_LEN, pos = SNAP_HEADER_LEN;
    uint8_t *buf;
    tde_status st;

    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i] > SLOT_TOMB)
            len += 2 + get16(slot_rec(t, t->slots[i])) + ENTRY_LEN;
    buf = malloc(len);
    if (buf == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: cannot allocate a %zu-byte snapshot", len);
    memcpy(buf, SNAP_MAGIC, 8);
    put16(buf + 8, FORMAT_VERSION);
    memset(buf + 10, 0, 6);
    put64(buf + 16, gen);
    put64(buf + 24, base_log_bytes);
    put64(buf + 32, t->live);
    for (size_t i = 0; i < t->cap; i++) {
        const uint8_t *r;
        size_t nlen;
        if (t->slots[i] <= SLOT_TOMB)
            continue;
        r = slot_rec(t, t->slots[i]);
        nlen = get16(r);
        memcpy(buf + pos, r, 2 + nlen);
        memcpy(buf + pos + 2 + nlen, r + 2 + nlen + 1, ENTRY_LEN);
        pos += 2 + nlen + ENTRY_LEN;
    }
    st = mac_compute(d, NULL, 0, buf, pos, buf + pos);
    if (st != TDE_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return TDE_OK;
}

/* ---- Log ---- */

static tde_status
log_header_parse(const struct source *s, const uint8_t *buf, size_t len)
{
    if (len < LOG_HEADER_LEN)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: truncated log header (%zu bytes)", s->path, len);
    if (memcmp(buf, LOG_MAGIC, 8) != 0)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: bad magic at offset 0", s->path);
    TDE_RET(mac_check(s, NULL, 0, buf, 32, buf + 32, 32, "log header"));
    if (get16(buf + 8) != FORMAT_VERSION)
        return tde_error_set(TDE_ERR_UNSUPPORTED, "%s: log version %u is not supported", s->path,
                             get16(buf + 8));
    if (get16(buf + 10) != 0 || get32(buf + 12) != 0)
        return tde_error_set(TDE_ERR_CORRUPT, "%s: reserved bytes not zero at offset 10", s->path);
    if (get64(buf + 16) != s->gen)
        return tde_error_set(TDE_ERR_CORRUPT,
                             "%s: generation %" PRIu64 " at offset 16, expected %" PRIu64, s->path,
                             get64(buf + 16), s->gen);
    return TDE_OK;
}

static tde_status
log_header_build(tde_filedict *d, uint64_t gen, uint64_t base_log_bytes,
                 uint8_t out[LOG_HEADER_LEN])
{
    memcpy(out, LOG_MAGIC, 8);
    put16(out + 8, FORMAT_VERSION);
    memset(out + 10, 0, 6);
    put64(out + 16, gen);
    put64(out + 24, base_log_bytes);
    return mac_compute(d, NULL, 0, out, 32, out + 32);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static void
mac_prefix(uint8_t prefix[16], uint64_t gen, uint64_t offset)
{
    put64(prefix, gen);
    put64(prefix + 8, offset);
}

/* Whether the REC_HEADER_LEN bytes at @p r are a well-formed record header. */
static inline bool
record_header_ok(const uint8_t *r)
{
    size_t blen = get16(r + 2);
    return r[0] == REC_TAG && r[1] >= REC_PUT && r[1] <= REC_LINK &&
           get16(r + 4) == (uint16_t)~blen && get16(r + 6) == 0 && blen <= REC_MAX_BODY;
}

/*
 * Checks one record at @p r (file offset @p off, @p left bytes available) and decodes it
 * into @p op (names point into @p r). *rec_len gets its length. *torn is set, with TDE_OK,
 * when the bytes are an incomplete record or all zero (a crash mid-append).
 */
static inline tde_status
record_parse(const struct source *s, const uint8_t *r, size_t left, uint64_t off,
             struct replay_op *op, size_t *rec_len, bool *torn)
{
    size_t blen, nlen, slen;
    uint8_t prefix[16], type;

    *torn = false;
    if (left < REC_HEADER_LEN) {
        *torn = true;
        return TDE_OK;
    }
    blen = get16(r + 2);
    if (!record_header_ok(r)) {
        /* A crash can leave a zero-filled tail on some file systems. */
        if (all_zero(r, left)) {
            *torn = true;
            return TDE_OK;
        }
        return tde_error_set(TDE_ERR_CORRUPT, "%s: bad record header at offset %" PRIu64, s->path,
                             off);
    }
    if (left < REC_HEADER_LEN + blen + MAC_LEN) {
        *torn = true;
        return TDE_OK;
    }
    type = r[1];
    mac_prefix(prefix, s->gen, off);
    TDE_RET(mac_check(s, prefix, sizeof(prefix), r, REC_HEADER_LEN + blen,
                      r + REC_HEADER_LEN + blen, off, "record"));
    *rec_len = REC_HEADER_LEN + blen + MAC_LEN;
    r += REC_HEADER_LEN;
    memset(op, 0, sizeof(*op));
    if (type == REC_DELETE) {
        nlen = blen >= 2 ? get16(r) : 0;
        if (blen < 2 || blen != 2 + nlen || !name_ok(r + 2, nlen))
            return tde_error_set(TDE_ERR_CORRUPT, "%s: bad delete record at offset %" PRIu64,
                                 s->path, off);
        op->name = (const char *)r + 2;
        op->len = nlen;
        op->del = true;
    } else {
        bool link = type == REC_LINK;
        nlen = blen >= ENTRY_LEN + 2 ? get16(r + ENTRY_LEN) : 0;
        slen = link && blen >= ENTRY_LEN + 4 + nlen ? get16(r + ENTRY_LEN + 2 + nlen) : 0;
        if (blen != ENTRY_LEN + 2 + nlen + (link ? 2 + slen : 0) ||
            !name_ok(r + ENTRY_LEN + 2, nlen) || (link && !name_ok(r + ENTRY_LEN + 4 + nlen, slen)))
            return tde_error_set(TDE_ERR_CORRUPT, "%s: bad %s record at offset %" PRIu64, s->path,
                                 link ? "link" : "put", off);
        op->name = (const char *)r + ENTRY_LEN + 2;
        op->len = nlen;
        entry_decode(&op->e, r);
    }
    op->h = hash_name(op->name, op->len);
    return TDE_OK;
}

/*
 * Checks the records in @p buf (which starts at file offset @p base) and, when
 * @p t is not NULL, applies them. *end gets the file offset after the last
 * whole record, *torn whether bytes after it form an incomplete record.
 */
static tde_status
log_replay(const struct source *s, const uint8_t *buf, size_t len, uint64_t base, struct table *t,
           uint64_t *end, bool *torn)
{
    size_t pos = 0;
    struct replay_queue q = {.count = 0};

    *torn = false;
    while (pos < len) {
        struct replay_op op;
        size_t rec_len = 0;
        TDE_RET(record_parse(s, buf + pos, len - pos, base + pos, &op, &rec_len, torn));
        if (*torn)
            break;
        if (t != NULL)
            TDE_RET(replay_push(t, &q, &op));
        pos += rec_len;
    }
    if (t != NULL)
        TDE_RET(replay_flush(t, &q));
    *end = base + pos;
    return TDE_OK;
}

/* Encodes one record of @p op at file offset @p off into @p p; returns its length. */
static tde_status
record_build(tde_filedict *d, const struct op *op, uint64_t off, uint8_t *p, size_t *out_len)
{
    uint8_t *b = p + REC_HEADER_LEN, prefix[16];
    size_t blen;

    if (op->type == REC_DELETE) {
        put16(b, (uint16_t)op->name_len);
        memcpy(b + 2, op->name, op->name_len);
        blen = 2 + op->name_len;
    } else {
        entry_encode(b, &op->e);
        put16(b + ENTRY_LEN, (uint16_t)op->name_len);
        memcpy(b + ENTRY_LEN + 2, op->name, op->name_len);
        blen = ENTRY_LEN + 2 + op->name_len;
        if (op->type == REC_LINK) {
            put16(b + blen, (uint16_t)op->src_len);
            memcpy(b + blen + 2, op->src, op->src_len);
            blen += 2 + op->src_len;
        }
    }
    p[0] = REC_TAG;
    p[1] = op->type;
    put16(p + 2, (uint16_t)blen);
    put16(p + 4, (uint16_t)~blen);
    put16(p + 6, 0);
    mac_prefix(prefix, d->gen, off);
    TDE_RET(mac_compute(d, prefix, sizeof(prefix), p, REC_HEADER_LEN + blen,
                        p + REC_HEADER_LEN + blen));
    *out_len = REC_HEADER_LEN + blen + MAC_LEN;
    return TDE_OK;
}

static size_t
record_max_len(const struct op *op)
{
    return REC_HEADER_LEN + ENTRY_LEN + 4 + op->name_len + op->src_len + MAC_LEN;
}

/* ---- Files of a directory ---- */

static void
file_path(char *out, size_t cap, const tde_filedict *d, uint64_t gen, const char *ext)
{
    snprintf(out, cap, "%s/filedict-%016" PRIx64 ".%s", d->dir, gen, ext);
}

/* Parses "filedict-<16 hex>.<ext>"; returns the extension or NULL. */
static const char *
parse_file_name(const char *name, uint64_t *gen)
{
    uint64_t g = 0;

    if (strncmp(name, "filedict-", 9) != 0)
        return NULL;
    for (int i = 9; i < 25; i++) {
        char c = name[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return NULL;
        g = g << 4 | (uint64_t)v;
    }
    if (name[25] != '.')
        return NULL;
    *gen = g;
    return name + 26;
}

/* The newest snapshot generation (0: none); *logs tells whether any log exists. */
static tde_status
newest_generation(const tde_filedict *d, uint64_t *gen, bool *logs)
{
    DIR *dir = opendir(d->dir);
    struct dirent *de;

    *gen = 0;
    *logs = false;
    if (dir == NULL)
        return tde_error_set(errno == ENOENT ? TDE_ERR_NOT_FOUND : TDE_ERR_IO,
                             "%s: cannot list directory: %s", d->dir, strerror(errno));
    while ((de = readdir(dir)) != NULL) {
        uint64_t g;
        const char *ext = parse_file_name(de->d_name, &g);
        if (ext != NULL && strcmp(ext, "snap") == 0 && g > *gen)
            *gen = g;
        if (ext != NULL && strcmp(ext, "log") == 0)
            *logs = true;
    }
    closedir(dir);
    return TDE_OK;
}

/* Read-write only: removes generations other than @p gen and @p gen - 1, and temp files. */
static void
remove_stale_files(const tde_filedict *d, uint64_t gen)
{
    DIR *dir = opendir(d->dir);
    struct dirent *de;
    char path[PATH_MAX];

    if (dir == NULL)
        return;
    while ((de = readdir(dir)) != NULL) {
        uint64_t g;
        const char *ext = parse_file_name(de->d_name, &g);
        if (ext == NULL ||
            ((strcmp(ext, "snap") == 0 || strcmp(ext, "log") == 0) && (g == gen || g + 1 == gen)))
            continue;
        snprintf(path, sizeof(path), "%s/%s", d->dir, de->d_name);
        if (tde_fileio_unlink(path) != TDE_OK)
            tde_log(TDE_LOG_WARN, "filedict: cannot remove stale %s: %s", path, tde_last_error());
        else
            tde_log(TDE_LOG_INFO, "filedict: removed stale %s", path);
    }
    closedir(dir);
}

/* ---- Loading ---- */

/*
 * Reads @p fd from @p off to its current end into big_alloc() memory (*cap bytes, for
 * big_free()). A file that grows meanwhile is read up to the size seen at the start.
 */
/* Replays a whole log file (header already checked) into @p t, sizing the table once. */
static tde_status
replay_whole_log(const struct source *s, const uint8_t *buf, size_t len, struct table *t,
                 uint64_t *log_end, bool *torn)
{
    /* At most one new entry per smallest put record. */
    TDE_RET(table_reserve(t, t->live + (len - LOG_HEADER_LEN) /
                                           (REC_HEADER_LEN + ENTRY_LEN + 3 + MAC_LEN)));
    return log_replay(s, buf + LOG_HEADER_LEN, len - LOG_HEADER_LEN, LOG_HEADER_LEN, t, log_end,
                      torn);
}

static tde_status
read_big(int fd, uint64_t off, const char *path, uint8_t **buf, size_t *len, size_t *cap)
{
    struct stat sb;
    size_t got = 0, want;

    *buf = NULL;
    *len = *cap = 0;
    if (fstat(fd, &sb) != 0)
        return tde_error_set(TDE_ERR_IO, "%s: fstat failed: %s", path, strerror(errno));
    want = (uint64_t)sb.st_size > off ? (size_t)((uint64_t)sb.st_size - off) : 0;
    *cap = want + 1;
    *buf = big_alloc(*cap);
    if (*buf == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, *cap);
    while (got < want) {
        ssize_t n = pread(fd, *buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            big_free(*buf, *cap);
            *buf = NULL;
            return tde_error_set(TDE_ERR_IO, "%s: read failed: %s", path, strerror(err));
        }
        if (n == 0)
            break; /* shrank while reading: parse what is there */
        got += (size_t)n;
    }
    *len = got;
    return TDE_OK;
}

/*
 * Loads generation @p gen (snapshot, then log) into @p t. Leaves the log open
 * in *fd (-1 if it does not exist) and its valid end in *log_end.
 */
static tde_status
load_generation(tde_filedict *d, uint64_t gen, struct table *t, int *fd, uint64_t *log_end,
                bool *torn, uint64_t *snap_len, bool *snap_bad)
{
    char path[PATH_MAX];
    struct source s = {.d = d, .path = path, .gen = gen, .verify = true};
    uint8_t *buf = NULL;
    size_t len, cap = 0;
    tde_status st;

    *fd = -1;
    *log_end = 0;
    *torn = false;
    file_path(path, sizeof(path), d, gen, "snap");
    TDE_RET(tde_fileio_open(fd, path, O_RDONLY));
    st = read_big(*fd, 0, path, &buf, &len, &cap);
    close(*fd);
    *fd = -1;
    TDE_RET(st);
    *snap_len = len;
    st = snapshot_parse(&s, buf, len, t);
    big_free(buf, cap);
    buf = NULL;
    if (snap_bad != NULL)
        *snap_bad = st == TDE_ERR_CORRUPT || st == TDE_ERR_AUTH;
    TDE_ERR(st);

    file_path(path, sizeof(path), d, gen, "log");
    st = tde_fileio_open(fd, path, d->read_only ? O_RDONLY : O_RDWR | O_APPEND);
    if (st == TDE_ERR_NOT_FOUND)
        return TDE_OK; /* a crash right after the snapshot's rename */
    TDE_ERR(st);
    TDE_ERR(read_big(*fd, 0, path, &buf, &len, &cap));
    TDE_ERR(log_header_parse(&s, buf, len));
    TDE_ERR(replay_whole_log(&s, buf, len, t, log_end, torn));
    big_free(buf, cap);
    return TDE_OK;
err:
    big_free(buf, cap);
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    return st;
}

/* Writes generation @p gen's log header durably and opens the log for appending. */
static tde_status
create_log(tde_filedict *d, uint64_t gen, uint64_t base_log_bytes, int *fd)
{
    char path[PATH_MAX];
    uint8_t hdr[LOG_HEADER_LEN];

    file_path(path, sizeof(path), d, gen, "log");
    TDE_RET(log_header_build(d, gen, base_log_bytes, hdr));
    TDE_RET(tde_durable_write(path, hdr, sizeof(hdr)));
    return tde_fileio_open(fd, path, O_RDWR | O_APPEND);
}

/*
 * Snapshot @p gen is damaged: rebuilds its state from generation gen - 1 when that is provably
 * complete, i.e. log gen's header (authenticated) says snapshot gen holds exactly the first B
 * bytes of log gen - 1, and snapshot gen - 1 plus those B bytes of log gen - 1 check out
 * (ending on a record boundary at B). Then log gen is replayed on top. Writes nothing.
 */
static tde_status
recover_previous(tde_filedict *d, uint64_t gen, struct table *t, int *fd, uint64_t *log_end,
                 bool *torn, uint64_t *snap_len)
{
    char path[PATH_MAX];
    struct source s = {.d = d, .path = path, .gen = gen, .verify = true};
    uint8_t *buf = NULL;
    size_t len, cap = 0;
    uint64_t base, prev_end;
    bool prev_torn;
    int prev_fd = -1;
    tde_status st;

    file_path(path, sizeof(path), d, gen, "log");
    TDE_RET(tde_fileio_open(fd, path, d->read_only ? O_RDONLY : O_RDWR | O_APPEND));
    TDE_ERR(read_big(*fd, 0, path, &buf, &len, &cap));
    TDE_ERR(log_header_parse(&s, buf, len));
    base = get64(buf + 24);
    table_free(t);
    TDE_ERR(load_generation(d, gen - 1, t, &prev_fd, &prev_end, &prev_torn, snap_len, NULL));
    if (prev_fd >= 0)
        close(prev_fd);
    TDE_ENSURE(prev_fd >= 0 && prev_end == base && !prev_torn, TDE_ERR_CORRUPT,
               "%s: generation %" PRIu64 " does not end where snapshot %" PRIu64 " began", d->dir,
               gen - 1, gen);
    TDE_ERR(replay_whole_log(&s, buf, len, t, log_end, torn));
    big_free(buf, cap);
    return TDE_OK;
err:
    big_free(buf, cap);
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    return st;
}

/* Loads the newest generation; on a read-only open retries when a writer compacts under us. */
static tde_status
load_newest(tde_filedict *d, struct table *t, int *fd, uint64_t *gen, uint64_t *log_end, bool *torn,
            uint64_t *snap_len)
{
    tde_status st = TDE_OK;
    bool logs, snap_bad = false;
    char msg[512];

    for (int attempt = 0; attempt < OPEN_RETRIES; attempt++) {
        TDE_RET(newest_generation(d, gen, &logs));
        if (*gen == 0) {
            if (logs)
                return tde_error_set(TDE_ERR_CORRUPT, "%s: file dictionary log without snapshot",
                                     d->dir);
            return tde_error_set(TDE_ERR_NOT_FOUND, "%s: no file dictionary", d->dir);
        }
        table_free(t);
        st = load_generation(d, *gen, t, fd, log_end, torn, snap_len, &snap_bad);
        if (st != TDE_ERR_NOT_FOUND || !d->read_only)
            break;
    }
    if ((st != TDE_ERR_CORRUPT && st != TDE_ERR_AUTH) || *gen < 2)
        return st;
    snprintf(msg, sizeof(msg), "%s", tde_last_error());
    if (snap_bad && recover_previous(d, *gen, t, fd, log_end, torn, snap_len) == TDE_OK) {
        tde_log(TDE_LOG_WARN,
                "filedict: %s; recovered every entry from the previous generation %" PRIu64
                " (provably complete); the damaged snapshot is replaced at the next compaction",
                msg, *gen - 1);
        return TDE_OK;
    }
    table_free(t);
    return tde_error_set(st,
                         "%s; nothing was modified; the previous generation %" PRIu64
                         " is kept in %s: 'tde-ctl salvage %s NEWDIR' writes what can be read to a "
                         "new directory",
                         msg, *gen - 1, d->dir, d->dir);
}

/* d->mac: HMAC-SHA256 under @p key. */
static tde_status
mac_setup(tde_filedict *d, const uint8_t key[TDE_FILEDICT_MAC_KEY_LEN])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    OSSL_PARAM params[2];

    d->mac = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (d->mac == NULL || EVP_MAC_init(d->mac, key, TDE_FILEDICT_MAC_KEY_LEN, params) != 1) {
        ERR_clear_error();
        return tde_error_set(TDE_ERR_CRYPTO, "filedict: cannot set up HMAC-SHA256");
    }
    return TDE_OK;
}

tde_status
tde_filedict_open(tde_filedict **out, const tde_filedict_options *o)
{
    tde_filedict *d = NULL;
    uint64_t log_end = 0, snap_len = 0;
    bool torn = false;
    tde_status st;

    *out = NULL;
    if (o == NULL || o->version != TDE_FILEDICT_OPTIONS_VERSION || o->dir == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: bad options");
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: out of memory");
    d->log_fd = -1;
    pthread_rwlock_init(&d->lock, NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->pending_tail = &d->pending;
    d->read_only = o->read_only;
    d->compact_bytes = o->compact_bytes;
    d->dir = strdup(o->dir);
    TDE_ENSURE(d->dir != NULL, TDE_ERR_NOMEM, "filedict: out of memory");

    TDE_ERR(mac_setup(d, o->mac_key));

    st = load_newest(d, &d->t, &d->log_fd, &d->gen, &log_end, &torn, &snap_len);
    if (st == TDE_ERR_NOT_FOUND && !d->read_only && d->gen == 0) {
        /* A new dictionary: the snapshot's rename is the commit point. */
        char path[PATH_MAX];
        uint8_t *snap;
        size_t len;
        d->gen = 1;
        TDE_ERR(snapshot_build(d, &d->t, 1, 0, &snap, &len));
        file_path(path, sizeof(path), d, 1, "snap");
        st = tde_durable_write(path, snap, len);
        free(snap);
        TDE_ERR(st);
        snap_len = len;
        TDE_ERR(create_log(d, 1, 0, &d->log_fd));
        log_end = LOG_HEADER_LEN;
    } else {
        TDE_ERR(st);
    }

    if (!d->read_only) {
        char path[PATH_MAX];
        file_path(path, sizeof(path), d, d->gen, "log");
        if (d->log_fd < 0) {
            TDE_ERR(create_log(d, d->gen, 0, &d->log_fd));
            log_end = LOG_HEADER_LEN;
        } else if (torn) {
            struct stat sb;
            uint64_t size = fstat(d->log_fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
            TDE_ERR(tde_fileio_truncate(d->log_fd, log_end, path));
            TDE_ERR(tde_fileio_fsync(d->log_fd, path));
            tde_log(TDE_LOG_WARN,
                    "filedict: %s: torn last record at offset %" PRIu64 " (%" PRIu64
                    " bytes) truncated",
                    path, log_end, size - log_end);
        }
        remove_stale_files(d, d->gen);
    }
    atomic_store(&d->log_bytes, log_end);
    atomic_store(&d->snapshot_bytes, snap_len);
    *out = d;
    return TDE_OK;
err:
    tde_filedict_close(d);
    return st;
}

void
tde_filedict_close(tde_filedict *d)
{
    if (d == NULL)
        return;
    if (d->log_fd >= 0)
        close(d->log_fd);
    EVP_MAC_CTX_free(d->mac); /* OpenSSL cleanses the HMAC key state on free */
    table_free(&d->t);
    pthread_rwlock_destroy(&d->lock);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->dir);
    free(d);
}

/* ---- Reads ---- */

static tde_status
check_name(const char *name, size_t *len)
{
    if (name == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL name");
    *len = strlen(name);
    if (*len == 0 || *len > TDE_FILEDICT_NAME_MAX)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: name length %zu out of range 1..%d",
                             *len, TDE_FILEDICT_NAME_MAX);
    return TDE_OK;
}

tde_status
tde_filedict_get(tde_filedict *d, const char *name, tde_file_entry *out)
{
    size_t len;
    bool found;

    if (d == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL handle");
    TDE_RET(check_name(name, &len));
    pthread_rwlock_rdlock(&d->lock);
    found = table_get(&d->t, name, len, out);
    pthread_rwlock_unlock(&d->lock);
    if (!found)
        return tde_error_set(TDE_ERR_NOT_FOUND, "filedict: no entry for %s", name);
    return TDE_OK;
}

tde_status
tde_filedict_foreach(tde_filedict *d,
                     int (*fn)(void *arg, const char *name, const tde_file_entry *e), void *arg)
{
    if (d == NULL || fn == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL argument to foreach");
    pthread_rwlock_rdlock(&d->lock);
    for (size_t i = 0; i < d->t.cap; i++) {
        const uint8_t *r;
        tde_file_entry e;
        if (d->t.slots[i] <= SLOT_TOMB)
            continue;
        r = slot_rec(&d->t, d->t.slots[i]);
        entry_decode(&e, r + 2 + get16(r) + 1);
        if (fn(arg, (const char *)r + 2, &e) != 0)
            break;
    }
    pthread_rwlock_unlock(&d->lock);
    return TDE_OK;
}

size_t
tde_filedict_count(tde_filedict *d)
{
    size_t n;

    pthread_rwlock_rdlock(&d->lock);
    n = d->t.live;
    pthread_rwlock_unlock(&d->lock);
    return n;
}

void
tde_filedict_sizes(tde_filedict *d, uint64_t *snapshot_bytes, uint64_t *log_bytes)
{
    if (snapshot_bytes != NULL)
        *snapshot_bytes = atomic_load(&d->snapshot_bytes);
    if (log_bytes != NULL)
        *log_bytes = atomic_load(&d->log_bytes);
}

size_t
tde_filedict_memory(tde_filedict *d)
{
    size_t n;

    pthread_rwlock_rdlock(&d->lock);
    n = sizeof(*d) + d->t.cap * sizeof(uint64_t) + d->t.arena_cap;
    pthread_rwlock_unlock(&d->lock);
    return n;
}

/* ---- Writes: group commit ---- */

/* Writes generation gen + 1 and switches to it. Failures before the new snapshot is in place
 * are logged and retried later; after, the handle is broken (which generation survives a crash
 * is unknown, so appending to either could lose records). */
static void
compact(tde_filedict *d)
{
    char path[PATH_MAX], old[PATH_MAX];
    uint64_t gen = d->gen + 1, log_bytes = atomic_load(&d->log_bytes);
    uint8_t *snap = NULL;
    size_t len = 0;
    int fd = -1;
    struct stat sb;
    tde_status st;

    pthread_rwlock_rdlock(&d->lock);
    st = snapshot_build(d, &d->t, gen, log_bytes, &snap, &len);
    pthread_rwlock_unlock(&d->lock);
    file_path(path, sizeof(path), d, gen, "snap");
    if (st == TDE_OK) {
        st = tde_durable_write(path, snap, len);
        free(snap);
    }
    if (st != TDE_OK && stat(path, &sb) != 0) {
        tde_log(TDE_LOG_WARN, "filedict: compaction into %s failed, will retry: %s", path,
                tde_last_error());
        d->compact_at = log_bytes * 2;
        return;
    }
    if (st == TDE_OK) {
        TDE_FAILPOINT("filedict.compact.after_snapshot");
        st = create_log(d, gen, log_bytes, &fd);
    }
    if (st != TDE_OK) {
        tde_log(TDE_LOG_ERROR, "filedict: compaction into %s failed after the snapshot: %s", path,
                tde_last_error());
        d->broken = true;
        return;
    }
    TDE_FAILPOINT("filedict.compact.after_log");
    close(d->log_fd);
    d->log_fd = fd;
    d->gen = gen;
    d->compact_at = 0;
    atomic_store(&d->log_bytes, LOG_HEADER_LEN);
    atomic_store(&d->snapshot_bytes, len);
    /* Keep generation gen - 1 as the previous one; drop gen - 2. */
    if (gen >= 3) {
        file_path(old, sizeof(old), d, gen - 2, "snap");
        if (tde_fileio_unlink(old) != TDE_OK)
            tde_log(TDE_LOG_WARN, "filedict: %s", tde_last_error());
        file_path(old, sizeof(old), d, gen - 2, "log");
        if (tde_fileio_unlink(old) != TDE_OK)
            tde_log(TDE_LOG_WARN, "filedict: %s", tde_last_error());
    }
}

/* The leader's work: one append and one fsync for the whole batch, then apply it. */
static tde_status
commit_batch(tde_filedict *d, struct op *batch)
{
    char path[PATH_MAX];
    uint64_t off = atomic_load(&d->log_bytes), threshold, snap_len;
    size_t cap = 0, len = 0;
    uint8_t *buf;
    tde_status st = TDE_OK;

    file_path(path, sizeof(path), d, d->gen, "log");
    if (d->broken)
        return tde_error_set(TDE_ERR_STATE, "%s: an earlier write failed; reopen the dictionary",
                             path);
    for (struct op *o = batch; o != NULL; o = o->next)
        cap += record_max_len(o);
    buf = malloc(cap);
    if (buf == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: cannot allocate %zu bytes", cap);
    for (struct op *o = batch; o != NULL; o = o->next) {
        size_t n;
        TDE_ERR(record_build(d, o, off + len, buf + len, &n));
        len += n;
    }
    TDE_FAILPOINT("filedict.before_append");
    st = tde_fileio_write(d->log_fd, buf, len, path);
    if (st == TDE_OK) {
        TDE_FAILPOINT("filedict.after_append");
        st = tde_fileio_fsync(d->log_fd, path);
    }
    if (st != TDE_OK) {
        d->broken = true;
        goto err;
    }
    TDE_FAILPOINT("filedict.after_sync");
    atomic_store(&d->log_bytes, off + len);

    pthread_rwlock_wrlock(&d->lock);
    for (struct op *o = batch; o != NULL && st == TDE_OK; o = o->next) {
        if (o->type == REC_DELETE)
            (void)table_delete(&d->t, o->name, o->name_len);
        else
            st = table_put(&d->t, o->name, o->name_len, &o->e, NULL);
    }
    pthread_rwlock_unlock(&d->lock);
    if (st != TDE_OK) {
        d->broken = true; /* durable but not in memory: refuse to go on */
        goto err;
    }

    snap_len = atomic_load(&d->snapshot_bytes);
    /* A quarter of the snapshot bounds the open time (records to replay, which cost far more
     * than snapshot entries) at a modest write amplification (one snapshot rewrite per quarter
     * snapshot of log, never per operation). */
    threshold = snap_len / 4 > DEFAULT_COMPACT_MIN ? snap_len / 4 : DEFAULT_COMPACT_MIN;
    if (d->compact_bytes != 0)
        threshold = d->compact_bytes;
    if (off + len - LOG_HEADER_LEN > threshold && off + len >= d->compact_at)
        compact(d);
err:
    free(buf);
    return st;
}

static tde_status
submit(tde_filedict *d, struct op *ops, size_t n)
{
    struct submission sub = {.done = false};

    if (d->read_only)
        return tde_error_set(TDE_ERR_STATE, "%s: file dictionary opened read-only", d->dir);
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n; i++) {
        ops[i].next = NULL;
        ops[i].sub = &sub;
        *d->pending_tail = &ops[i];
        d->pending_tail = &ops[i].next;
    }
    while (!sub.done) {
        struct op *batch;
        tde_status st;
        if (d->leader) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        d->leader = true;
        batch = d->pending;
        d->pending = NULL;
        d->pending_tail = &d->pending;
        pthread_mutex_unlock(&d->mu);
        st = commit_batch(d, batch);
        pthread_mutex_lock(&d->mu);
        for (struct op *o = batch; o != NULL; o = o->next) {
            if (o->sub->done)
                continue;
            o->sub->st = st;
            if (st != TDE_OK)
                snprintf(o->sub->msg, sizeof(o->sub->msg), "%s", tde_last_error());
            o->sub->done = true;
        }
        d->leader = false;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    if (sub.st != TDE_OK)
        return tde_error_set(sub.st, "%s", sub.msg);
    return TDE_OK;
}

tde_status
tde_filedict_put(tde_filedict *d, const char *name, const tde_file_entry *e)
{
    struct op op = {.type = REC_PUT, .name = name};

    if (d == NULL || e == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL argument to put");
    op.e = *e;
    TDE_RET(check_name(name, &op.name_len));
    return submit(d, &op, 1);
}

tde_status
tde_filedict_put_batch(tde_filedict *d, const char *const *names, const tde_file_entry *entries,
                       size_t n)
{
    struct op *ops;
    tde_status st;

    if (n == 0)
        return TDE_OK;
    ops = calloc(n, sizeof(*ops));
    if (ops == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: out of memory");
    for (size_t i = 0; i < n; i++) {
        ops[i].type = REC_PUT;
        ops[i].name = names[i];
        ops[i].e = entries[i];
        st = check_name(names[i], &ops[i].name_len);
        if (st != TDE_OK) {
            free(ops);
            return st;
        }
    }
    st = submit(d, ops, n);
    free(ops);
    return st;
}

tde_status
tde_filedict_delete(tde_filedict *d, const char *name)
{
    struct op op = {.type = REC_DELETE, .name = name};
    bool found;

    if (d == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL handle");
    if (d->read_only)
        return tde_error_set(TDE_ERR_STATE, "%s: file dictionary opened read-only", d->dir);
    TDE_RET(check_name(name, &op.name_len));
    pthread_rwlock_rdlock(&d->lock);
    found = table_get(&d->t, name, op.name_len, NULL);
    pthread_rwlock_unlock(&d->lock);
    if (!found)
        return TDE_OK;
    return submit(d, &op, 1);
}

tde_status
tde_filedict_link(tde_filedict *d, const char *src, const char *dst)
{
    struct op op = {.type = REC_LINK, .name = dst, .src = src};
    bool found;

    if (d == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "filedict: NULL handle");
    TDE_RET(check_name(src, &op.src_len));
    TDE_RET(check_name(dst, &op.name_len));
    pthread_rwlock_rdlock(&d->lock);
    found = table_get(&d->t, src, op.src_len, &op.e);
    pthread_rwlock_unlock(&d->lock);
    if (!found)
        return tde_error_set(TDE_ERR_NOT_FOUND, "filedict: no entry for %s (link to %s)", src, dst);
    return submit(d, &op, 1);
}

/* ---- Read-only refresh ---- */

tde_status
tde_filedict_refresh(tde_filedict *d)
{
    char path[PATH_MAX];
    struct source s = {.d = d, .path = path, .verify = true};
    uint64_t gen, end;
    uint8_t *buf = NULL;
    size_t len;
    bool logs, torn;
    tde_status st = TDE_OK;

    if (!d->read_only)
        return TDE_OK;
    pthread_mutex_lock(&d->mu);
    /* Fast path (callers refresh before every lookup): nothing changed when snapshot gen + 1
     * does not exist (a compaction creates it), our log is still linked (the compaction after
     * that removes it) and has not grown. */
    {
        struct stat sb;
        file_path(path, sizeof(path), d, d->gen + 1, "snap");
        if (stat(path, &sb) != 0 && errno == ENOENT && d->log_fd >= 0 &&
            fstat(d->log_fd, &sb) == 0 && sb.st_nlink > 0 &&
            (uint64_t)sb.st_size == atomic_load(&d->log_bytes))
            goto err;
    }
    TDE_ERR(newest_generation(d, &gen, &logs));
    if (gen != d->gen) {
        struct table t = {0};
        int fd;
        uint64_t snap_len;
        st = load_newest(d, &t, &fd, &gen, &end, &torn, &snap_len);
        if (st != TDE_OK) {
            table_free(&t);
            goto err;
        }
        pthread_rwlock_wrlock(&d->lock);
        table_free(&d->t);
        d->t = t;
        pthread_rwlock_unlock(&d->lock);
        if (d->log_fd >= 0)
            close(d->log_fd);
        d->log_fd = fd;
        d->gen = gen;
        atomic_store(&d->log_bytes, end);
        atomic_store(&d->snapshot_bytes, snap_len);
        goto err;
    }
    s.gen = gen;
    file_path(path, sizeof(path), d, gen, "log");
    if (d->log_fd < 0) {
        st = tde_fileio_open(&d->log_fd, path, O_RDONLY);
        if (st == TDE_ERR_NOT_FOUND) {
            st = TDE_OK;
            goto err;
        }
        TDE_ERR(st);
        TDE_ERR(tde_fileio_read_from(d->log_fd, 0, &buf, &len, path));
        TDE_ERR(log_header_parse(&s, buf, len));
        free(buf);
        buf = NULL;
        atomic_store(&d->log_bytes, LOG_HEADER_LEN);
    }
    TDE_ERR(tde_fileio_read_from(d->log_fd, atomic_load(&d->log_bytes), &buf, &len, path));
    /* Check every new record first so a bad one changes nothing. */
    TDE_ERR(log_replay(&s, buf, len, atomic_load(&d->log_bytes), NULL, &end, &torn));
    pthread_rwlock_wrlock(&d->lock);
    st = log_replay(&s, buf, len, atomic_load(&d->log_bytes), &d->t, &end, &torn);
    pthread_rwlock_unlock(&d->lock);
    if (st == TDE_OK)
        atomic_store(&d->log_bytes, end);
err:
    pthread_mutex_unlock(&d->mu);
    free(buf);
    return st;
}

/* ---- Fuzzing entry ---- */

tde_status
tde_filedict_parse_buffers(const uint8_t *snap, size_t snap_len, const uint8_t *log, size_t log_len,
                           const uint8_t mac_key[TDE_FILEDICT_MAC_KEY_LEN], bool verify,
                           size_t *entries)
{
    tde_filedict d = {.log_fd = -1};
    /* The generation is taken from the snapshot, so any generation's files can be parsed. */
    struct source s = {
        .d = &d, .path = "buffer", .gen = snap_len >= 24 ? get64(snap + 16) : 1, .verify = verify};
    uint64_t end;
    bool torn;
    tde_status st;

    TDE_ERR(mac_setup(&d, mac_key));
    TDE_ERR(snapshot_parse(&s, snap, snap_len, &d.t));
    TDE_ERR(log_header_parse(&s, log, log_len));
    TDE_ERR(log_replay(&s, log + LOG_HEADER_LEN, log_len - LOG_HEADER_LEN, LOG_HEADER_LEN, &d.t,
                       &end, &torn));
    if (entries != NULL)
        *entries = d.t.live;
err:
    EVP_MAC_CTX_free(d.mac);
    table_free(&d.t);
    return st;
}

/* ---- Salvage ---- */

struct salvage {
    tde_filedict *d;
    const tde_filedict_salvage_options *o;
    uint64_t authenticated, lost_bytes;
    bool lost;
    tde_status err; /* out of memory while applying */
};

static void
salvage_event(struct salvage *v, tde_keymgr_salvage_kind kind, const char *file, uint64_t offset,
              uint64_t length, const char *message)
{
    tde_keymgr_salvage_event ev = {
        .kind = kind, .file = file, .offset = offset, .length = length, .message = message};
    if (kind == TDE_SALVAGE_LOST) {
        v->lost = true;
        v->lost_bytes += length;
    }
    if (v->o->fn != NULL)
        v->o->fn(v->o->arg, &ev);
}

static bool
salvage_skipped(const struct salvage *v, const char *base)
{
    for (size_t i = 0; i < v->o->n_skip; i++)
        if (strcmp(v->o->skip[i], base) == 0)
            return true;
    return false;
}

/* Reads file gen.ext whole into *buf (malloc()ed); reports why not and returns false. */
static bool
salvage_read(struct salvage *v, uint64_t gen, const char *ext, char *path, size_t cap,
             uint8_t **buf, size_t *len)
{
    const char *base;

    file_path(path, cap, v->d, gen, ext);
    base = strrchr(path, '/') + 1;
    *buf = NULL;
    if (salvage_skipped(v, base)) {
        salvage_event(v, TDE_SALVAGE_NOTE, base, 0, 0, "skipped as asked");
        return false;
    }
    if (tde_fileio_read_all(path, buf, len) != TDE_OK) {
        salvage_event(v, TDE_SALVAGE_UNREADABLE, base, 0, 0, tde_last_error());
        return false;
    }
    return true;
}

/* A plausible record header at @p r: worth a MAC check while scanning past damage. */
static bool
salvage_candidate(const uint8_t *r, size_t left)
{
    return left >= REC_HEADER_LEN + MAC_LEN && record_header_ok(r);
}

/*
 * Replays every record of log @p gen that authenticates, skipping damaged stretches (each
 * record's MAC binds its generation and offset, so one found by scanning is genuine).
 * *base gets the header's "bytes of the previous log folded in" (UINT64_MAX: unknown),
 * *end the offset after the last good record of the unbroken run from the start.
 */
static void
salvage_log(struct salvage *v, uint64_t gen, struct table *t, uint64_t *base, uint64_t *end,
            bool *damaged)
{
    char path[PATH_MAX];
    struct source s = {.d = v->d, .path = path, .gen = gen, .verify = true};
    uint8_t *buf;
    size_t len, pos = LOG_HEADER_LEN;
    uint64_t records = 0;
    const char *file;
    char msg[128];

    *base = UINT64_MAX;
    *end = 0;
    *damaged = false;
    if (!salvage_read(v, gen, "log", path, sizeof(path), &buf, &len))
        return;
    file = strrchr(path, '/') + 1;
    if (log_header_parse(&s, buf, len) == TDE_OK) {
        *base = get64(buf + 24);
        v->authenticated++;
    } else {
        salvage_event(v, TDE_SALVAGE_NOTE, file, 0, len < LOG_HEADER_LEN ? len : LOG_HEADER_LEN,
                      "log header damaged; its records are still read (each has its own MAC)");
    }
    *end = LOG_HEADER_LEN;
    while (pos < len) {
        struct replay_op op;
        size_t rec_len = 0, next;
        bool torn = false;
        if (record_parse(&s, buf + pos, len - pos, pos, &op, &rec_len, &torn) == TDE_OK && !torn) {
            if (op.del)
                (void)table_delete_h(t, op.name, op.len, op.h);
            else if ((v->err = table_put_h(t, op.name, op.len, op.h, &op.e, NULL)) != TDE_OK)
                break;
            records++;
            v->authenticated++;
            pos += rec_len;
            if (!*damaged)
                *end = pos;
            continue;
        }
        /* Look for the next record that authenticates at its own offset. */
        for (next = pos + 1; next < len; next++) {
            struct replay_op op2;
            bool torn2;
            if (salvage_candidate(buf + next, len - next) &&
                record_parse(&s, buf + next, len - next, next, &op2, &rec_len, &torn2) == TDE_OK &&
                !torn2)
                break;
        }
        if (v->err != TDE_OK)
            break;
        if (next >= len && torn) {
            salvage_event(v, TDE_SALVAGE_TORN, file, pos, len - pos,
                          "incomplete last record (a write that never returned)");
        } else {
            salvage_event(v, TDE_SALVAGE_LOST, file, pos, next - pos,
                          next < len ? "damaged records skipped up to the next valid one"
                                     : "damaged records up to the end of the log");
            *damaged = true;
        }
        pos = next;
    }
    free(buf);
    if (v->err != TDE_OK)
        return;
    tde_error_clear();
    snprintf(msg, sizeof(msg), "%" PRIu64 " records", records);
    salvage_event(v, *damaged ? TDE_SALVAGE_NOTE : TDE_SALVAGE_READ, file, 0, len, msg);
}

/* Parses snapshot @p gen into @p t (emptied on failure); reports what happened. */
static bool
salvage_snapshot(struct salvage *v, uint64_t gen, struct table *t)
{
    char path[PATH_MAX], msg[64];
    struct source s = {.d = v->d, .path = path, .gen = gen, .verify = true};
    uint8_t *buf;
    size_t len;
    tde_status st;

    if (!salvage_read(v, gen, "snap", path, sizeof(path), &buf, &len))
        return false;
    table_free(t);
    st = snapshot_parse(&s, buf, len, t);
    free(buf);
    if (st != TDE_OK) {
        table_free(t);
        salvage_event(v, TDE_SALVAGE_UNREADABLE, strrchr(path, '/') + 1, 0, 0, tde_last_error());
        tde_error_clear();
        return false;
    }
    v->authenticated++;
    snprintf(msg, sizeof(msg), "%zu entries", t->live);
    salvage_event(v, TDE_SALVAGE_READ, strrchr(path, '/') + 1, 0, len, msg);
    return true;
}

tde_status
tde_filedict_salvage(tde_filedict **out, const tde_filedict_salvage_options *o,
                     uint64_t *authenticated, uint64_t *lost_bytes, bool *lost)
{
    struct salvage v = {.o = o};
    tde_filedict *d;
    uint64_t gen = 0, base = UINT64_MAX, prev_end = 0, end, unused;
    bool damaged;
    DIR *dir;
    struct dirent *de;
    tde_status st = TDE_OK;

    *out = NULL;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "filedict: out of memory");
    v.d = d;
    d->log_fd = -1;
    d->read_only = true;
    pthread_rwlock_init(&d->lock, NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->pending_tail = &d->pending;
    d->dir = strdup(o->dir);
    TDE_ENSURE(d->dir != NULL, TDE_ERR_NOMEM, "filedict: out of memory");
    TDE_ERR(mac_setup(d, o->mac_key));

    /* The newest generation with any file (a lost snapshot still leaves its log). */
    dir = opendir(o->dir);
    TDE_ENSURE(dir != NULL, TDE_ERR_IO, "%s: cannot list directory: %s", o->dir, strerror(errno));
    while ((de = readdir(dir)) != NULL) {
        uint64_t g;
        const char *ext = parse_file_name(de->d_name, &g);
        if (ext != NULL && (strcmp(ext, "snap") == 0 || strcmp(ext, "log") == 0) && g > gen &&
            !salvage_skipped(&v, de->d_name))
            gen = g;
    }
    closedir(dir);
    d->gen = gen;
    if (gen == 0)
        goto done;
    if (!salvage_snapshot(&v, gen, &d->t)) {
        /* Rebuild from generation gen - 1: its snapshot and log, then this log on top. */
        bool prev_snap = gen >= 2 && salvage_snapshot(&v, gen - 1, &d->t);
        if (gen >= 2)
            salvage_log(&v, gen - 1, &d->t, &unused, &prev_end, &damaged);
        salvage_log(&v, gen, &d->t, &base, &end, &damaged);
        if (!prev_snap || base == UINT64_MAX || prev_end != base) {
            v.lost = true;
            salvage_event(&v, TDE_SALVAGE_NOTE, NULL, 0, 0,
                          "the newest snapshot is lost and the previous generation does not "
                          "provably hold all of it: entries may be missing");
        } else {
            salvage_event(&v, TDE_SALVAGE_NOTE, NULL, 0, 0,
                          "the newest snapshot is lost; the previous generation provably holds "
                          "all of it");
        }
    } else {
        salvage_log(&v, gen, &d->t, &base, &end, &damaged);
    }
    TDE_ERR(v.err);
done:
    *authenticated = v.authenticated;
    *lost_bytes = v.lost_bytes;
    *lost = v.lost;
    *out = d;
    return TDE_OK;
err:
    tde_filedict_close(d);
    return st;
}
