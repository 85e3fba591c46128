/*
 * The file dictionary: file name -> (data key id, method, IV), kept as a
 * snapshot plus an append-only log of HMAC-SHA256-authenticated records.
 * Format: docs/formats.md, "File dictionary".
 *
 * Threat model: an attacker who can write the disk but does not know the MAC
 * key must not be able to change, add, reorder or splice entries (e.g. flip a
 * file to plaintext or point it at another key) without open failing with
 * TDE_ERR_AUTH or TDE_ERR_CORRUPT. Dropping the newest whole records or
 * restoring an older copy of the directory (rollback) is not detected here.
 *
 * Names are opaque strings ("<root>/<relative>"), 1..TDE_FILEDICT_NAME_MAX bytes.
 * Every function is thread-safe on one handle. Lookups take a read lock;
 * concurrent writers are group-committed (one append + one fsync per batch).
 * A failed append or fsync makes the handle refuse further writes
 * (TDE_ERR_STATE): reopen, which repairs a torn tail.
 *
 * The caller holds the directory's exclusive lock for read-write opens (keymgr
 * does); a read-only open never writes anything and may run beside a writer.
 */
#ifndef TDE_LIB_FILEDICT_H
#define TDE_LIB_FILEDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tde/common.h"
#include "tde/keymgr.h"

#define TDE_FILEDICT_NAME_MAX 4096
#define TDE_FILEDICT_IV_LEN 16
#define TDE_FILEDICT_MAC_KEY_LEN 32

typedef struct tde_filedict tde_filedict;

/* One file's entry. method holds a tde_method value (stored as one byte). */
typedef struct tde_file_entry {
    uint64_t key_id;
    uint8_t method;
    uint8_t iv[TDE_FILEDICT_IV_LEN];
} tde_file_entry;

#define TDE_FILEDICT_OPTIONS_VERSION 1

typedef struct tde_filedict_options {
    unsigned version; /* TDE_FILEDICT_OPTIONS_VERSION */
    const char *dir;  /* directory holding the dictionary files (must exist); copied */
    uint8_t mac_key[TDE_FILEDICT_MAC_KEY_LEN]; /* copied; wiped on close */
    bool read_only;                            /* never writes: no create, repair, compaction */
    uint64_t compact_bytes; /* compact when the log passes this; 0: max(4 MiB, snapshot size / 4) */
} tde_filedict_options;

/*
 * Opens the dictionary in o->dir. A read-write open of a directory without one
 * creates an empty dictionary; a read-only open gives TDE_ERR_NOT_FOUND. A torn
 * last log record is ignored (read-only) or truncated away and logged
 * (read-write); any other damage gives TDE_ERR_CORRUPT or TDE_ERR_AUTH naming
 * the file and offset, and nothing is written. The one exception: a damaged
 * newest snapshot is rebuilt in memory from the previous generation when that
 * is provably complete (logged as a warning; still nothing is written).
 */
TDE_MUST_USE tde_status tde_filedict_open(tde_filedict **out, const tde_filedict_options *o);

/* Closes the handle and wipes the MAC key. Accepts NULL. */
void tde_filedict_close(tde_filedict *d);

/* Copies @p name's entry into *out; TDE_ERR_NOT_FOUND when there is none. */
TDE_MUST_USE tde_status tde_filedict_get(tde_filedict *d, const char *name, tde_file_entry *out);

/* Adds or replaces @p name's entry; durable before it returns. */
TDE_MUST_USE tde_status tde_filedict_put(tde_filedict *d, const char *name,
                                         const tde_file_entry *e);

/* Adds or replaces @p n entries with one append and one fsync (imports, benchmarks). */
TDE_MUST_USE tde_status tde_filedict_put_batch(tde_filedict *d, const char *const *names,
                                               const tde_file_entry *entries, size_t n);

/* Removes @p name's entry durably. A missing entry is not an error (nothing is written). */
TDE_MUST_USE tde_status tde_filedict_delete(tde_filedict *d, const char *name);

/* Makes @p dst's entry a copy of @p src's, durably. TDE_ERR_NOT_FOUND if @p src has none. */
TDE_MUST_USE tde_status tde_filedict_link(tde_filedict *d, const char *src, const char *dst);

/*
 * Calls @p fn for every entry (unspecified order) under the read lock: @p fn
 * must not call back into @p d. A non-zero return from @p fn stops the walk
 * (still TDE_OK). @p name and @p e are borrowed for the call.
 */
TDE_MUST_USE tde_status tde_filedict_foreach(
    tde_filedict *d, int (*fn)(void *arg, const char *name, const tde_file_entry *e), void *arg);

/* Number of entries. */
size_t tde_filedict_count(tde_filedict *d);

/*
 * Read-only handles: picks up records appended (or a compaction done) by the
 * writer since open or the last refresh. A no-op on read-write handles.
 */
TDE_MUST_USE tde_status tde_filedict_refresh(tde_filedict *d);

/* Current sizes of the snapshot and the log, in bytes. */
void tde_filedict_sizes(tde_filedict *d, uint64_t *snapshot_bytes, uint64_t *log_bytes);

/* Approximate heap bytes held by the in-memory table (for the benchmark and metrics). */
size_t tde_filedict_memory(tde_filedict *d);

/*
 * Parses a snapshot and its log held in memory, as open would (the fuzz
 * target; the generation is read from the snapshot). @p verify false skips the MAC checks so a
 * fuzzer reaches the parsers behind them. *entries (may be NULL) gets the resulting entry count.
 */
TDE_MUST_USE tde_status tde_filedict_parse_buffers(const uint8_t *snap, size_t snap_len,
                                                   const uint8_t *log, size_t log_len,
                                                   const uint8_t mac_key[TDE_FILEDICT_MAC_KEY_LEN],
                                                   bool verify, size_t *entries);

/* Salvage (tde_keymgr_salvage): reads a damaged dictionary as far as it can. */
typedef struct tde_filedict_salvage_options {
    const char *dir;
    uint8_t mac_key[TDE_FILEDICT_MAC_KEY_LEN];
    const char *const *skip; /* file names to ignore */
    size_t n_skip;
    void (*fn)(void *arg, const tde_keymgr_salvage_event *ev); /* may be NULL */
    void *arg;
} tde_filedict_salvage_options;

/*
 * Reads the newest generation (or, when its snapshot is damaged, the previous one with its
 * log and the newest log on top), every log past damaged records, into an in-memory handle
 * for tde_filedict_foreach()/count()/close() only. Never writes. *authenticated gets how
 * many snapshots, log headers and records authenticated under the MAC key (to choose among
 * candidate keys), *lost_bytes the damaged log bytes, *lost whether anything was lost.
 * Fails only on memory or directory errors; damage is reported through o->fn.
 */
TDE_MUST_USE tde_status tde_filedict_salvage(tde_filedict **out,
                                             const tde_filedict_salvage_options *o,
                                             uint64_t *authenticated, uint64_t *lost_bytes,
                                             bool *lost);

#endif
