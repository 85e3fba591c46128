/*
 * The I/O layer every metadata write goes through, and the one durable-write
 * helper. Internal (hidden visibility); tests reach it through tde_static.
 *
 * Every call passes through a fault-injection hook so tests can fail the N-th
 * write, fsync, rename or directory fsync (EIO, ENOSPC or a short write), and
 * named failpoints that end the process with _exit() for crash tests. When
 * nothing is armed an I/O hook costs one atomic increment (the call counter) and
 * a failpoint one relaxed atomic load; -DTDE_NO_FAILPOINTS compiles failpoints out.
 *
 * Every error message names the path (or the @p name given for a descriptor).
 * A failed fsync is reported as TDE_ERR_IO and must be treated as fatal by the
 * caller: it is never retried here.
 */
#ifndef TDE_LIB_FILEIO_H
#define TDE_LIB_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tde/common.h"

/*
 * Writes @p data to @p path durably: creates "<path>.tmp" mode 0600, writes,
 * fsyncs, renames over @p path and fsyncs the directory. On failure the old
 * file (if any) is untouched and the temp file is removed when possible.
 * Failpoints: "fileio.durable.after_temp" (temp synced, before rename) and
 * "fileio.durable.after_rename" (before the directory fsync).
 */
TDE_MUST_USE tde_status tde_durable_write(const char *path, const void *data, size_t len);

/* Appends all of @p data at the end of @p fd (opened O_APPEND), then fsyncs. */
TDE_MUST_USE tde_status tde_fileio_append_sync(int fd, const void *data, size_t len,
                                               const char *name);

/* open(2) with mode 0600 and O_CLOEXEC. ENOENT gives TDE_ERR_NOT_FOUND, other errors TDE_ERR_IO. */
TDE_MUST_USE tde_status tde_fileio_open(int *fd, const char *path, int flags);

/* Reads the whole file into a malloc()ed buffer (*data, *len; caller frees). NOT_FOUND if absent.
 */
TDE_MUST_USE tde_status tde_fileio_read_all(const char *path, uint8_t **data, size_t *len);

/* Reads from @p off to the current end of @p fd into a malloc()ed buffer (caller frees). */
TDE_MUST_USE tde_status tde_fileio_read_from(int fd, uint64_t off, uint8_t **data, size_t *len,
                                             const char *name);

/* Writes all of @p data at the current position (retrying short writes and EINTR). */
TDE_MUST_USE tde_status tde_fileio_write(int fd, const void *data, size_t len, const char *name);

/* fsync(2) (fdatasync is not enough: a new or grown file needs its size persisted). */
TDE_MUST_USE tde_status tde_fileio_fsync(int fd, const char *name);

/* rename(2). */
TDE_MUST_USE tde_status tde_fileio_rename(const char *from, const char *to);

/*
 * rename(2) that never replaces @p to (renameat2 RENAME_NOREPLACE; also for directories, which
 * rename(2) would put over an empty one). An existing @p to gives TDE_ERR_EXISTS. Counted and
 * injected as TDE_FILEIO_RENAME.
 */
TDE_MUST_USE tde_status tde_fileio_rename_noreplace(const char *from, const char *to);

/* Best effort, for clean-up after a failure: unlinks the files in @p dir (no subdirectories)
 * and removes it. */
void tde_fileio_remove_flat_dir(const char *dir);

/* Opens @p dir and fsyncs it, so renames, creations and deletions in it are durable. */
TDE_MUST_USE tde_status tde_fileio_fsync_dir(const char *dir);

/* fsyncs the directory that contains @p path. */
TDE_MUST_USE tde_status tde_fileio_fsync_parent(const char *path);

/* ftruncate(2). */
TDE_MUST_USE tde_status tde_fileio_truncate(int fd, uint64_t len, const char *name);

/* unlink(2); a missing file is not an error. */
TDE_MUST_USE tde_status tde_fileio_unlink(const char *path);

/* ---- Fault injection (tests) ---------------------------------------------------------------- */

typedef enum tde_fileio_op {
    TDE_FILEIO_OPEN = 0,
    TDE_FILEIO_WRITE,
    TDE_FILEIO_FSYNC, /* file fsyncs only */
    TDE_FILEIO_RENAME,
    TDE_FILEIO_FSYNC_DIR,
    TDE_FILEIO_TRUNCATE,
    TDE_FILEIO_UNLINK,
    TDE_FILEIO_N_OPS
} tde_fileio_op;

/*
 * Makes the @p nth call (1-based, counted since the last tde_fileio_inject_reset())
 * of @p op fail with errno @p err. With @p short_write (TDE_FILEIO_WRITE only)
 * half the bytes are written first, as on a full disk. Process-wide.
 */
void tde_fileio_inject(tde_fileio_op op, unsigned long nth, int err, bool short_write);

/* Disarms every injection and zeroes the call counters. */
void tde_fileio_inject_reset(void);

/* Calls of @p op since the last reset (tests use it to enumerate every failure point). */
unsigned long tde_fileio_calls(tde_fileio_op op);

/* ---- Failpoints ----------------------------------------------------------------------------- */

/*
 * Arms the failpoint @p name: its @p nth hit (1-based) calls _exit(@p exit_code)
 * without flushing anything, like a crash at that instant. One armed name at a
 * time; every hit of that name is counted. Process-wide.
 */
void tde_failpoint_arm(const char *name, unsigned long nth, int exit_code);

/* Disarms the failpoint and zeroes its hit counter. */
void tde_failpoint_reset(void);

/* Hits of the armed name so far (tests use it to count a name's hits with nth = ULONG_MAX). */
unsigned long tde_failpoint_hits(void);

/* Marks a failpoint in library code. */
void tde_failpoint(const char *name);

#ifdef TDE_NO_FAILPOINTS
#define TDE_FAILPOINT(name) ((void)0)
#else
#define TDE_FAILPOINT(name) tde_failpoint(name)
#endif

#endif
