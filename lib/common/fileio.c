/* The metadata I/O layer: durable writes, appends, and the fault-injection hooks under them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"

/* ---- Fault injection ---- */

struct injection {
    atomic_ulong calls;
    atomic_ulong nth; /* 0: disarmed */
    atomic_int err;
    atomic_bool short_write;
};

static struct injection injections[TDE_FILEIO_N_OPS];
static atomic_bool any_injection;

void
tde_fileio_inject(tde_fileio_op op, unsigned long nth, int err, bool short_write)
{
    atomic_store(&injections[op].err, err);
    atomic_store(&injections[op].short_write, short_write);
    atomic_store(&injections[op].nth, nth);
    atomic_store(&any_injection, true);
}

void
tde_fileio_inject_reset(void)
{
    for (int i = 0; i < TDE_FILEIO_N_OPS; i++) {
        atomic_store(&injections[i].nth, 0);
        atomic_store(&injections[i].calls, 0);
    }
    atomic_store(&any_injection, false);
}

unsigned long
tde_fileio_calls(tde_fileio_op op)
{
    return atomic_load(&injections[op].calls);
}

/* Counts a call of @p op; returns the errno to fail it with, or 0. */
static int
injected(tde_fileio_op op, bool *short_write)
{
    struct injection *in = &injections[op];
    unsigned long n = atomic_fetch_add(&in->calls, 1) + 1;

    if (!atomic_load_explicit(&any_injection, memory_order_relaxed))
        return 0;
    if (atomic_load(&in->nth) != n)
        return 0;
    if (short_write != NULL)
        *short_write = atomic_load(&in->short_write);
    return atomic_load(&in->err);
}

/* ---- Failpoints ---- */

static char armed_name[128];
static atomic_bool fp_armed;
static atomic_ulong fp_nth;
static atomic_ulong fp_hits;
static int fp_exit_code;

void
tde_failpoint_arm(const char *name, unsigned long nth, int exit_code)
{
    atomic_store(&fp_armed, false);
    snprintf(armed_name, sizeof(armed_name), "%s", name);
    fp_exit_code = exit_code;
    atomic_store(&fp_hits, 0);
    atomic_store(&fp_nth, nth);
    atomic_store(&fp_armed, true);
}

void
tde_failpoint_reset(void)
{
    atomic_store(&fp_armed, false);
    atomic_store(&fp_hits, 0);
}

unsigned long
tde_failpoint_hits(void)
{
    return atomic_load(&fp_hits);
}

void
tde_failpoint(const char *name)
{
    if (!atomic_load_explicit(&fp_armed, memory_order_relaxed))
        return;
    if (strcmp(name, armed_name) != 0)
        return;
    if (atomic_fetch_add(&fp_hits, 1) + 1 == atomic_load(&fp_nth))
        _exit(fp_exit_code);
}

/* ---- Wrappers ---- */

static tde_status
io_error(int err, const char *what, const char *name)
{
    return tde_error_set(err == ENOENT ? TDE_ERR_NOT_FOUND : TDE_ERR_IO, "%s: %s failed: %s", name,
                         what, strerror(err));
}

tde_status
tde_fileio_open(int *fd, const char *path, int flags)
{
    int err = injected(TDE_FILEIO_OPEN, NULL);

    *fd = -1;
    if (err != 0)
        return io_error(err, "open", path);
    do {
        *fd = open(path, flags | O_CLOEXEC, 0600);
    } while (*fd < 0 && errno == EINTR);
    if (*fd < 0)
        return io_error(errno, "open", path);
    return TDE_OK;
}

tde_status
tde_fileio_write(int fd, const void *data, size_t len, const char *name)
{
    const uint8_t *p = data;
    bool short_write = false;
    int err = injected(TDE_FILEIO_WRITE, &short_write);

    if (err != 0) {
        if (short_write && len > 1 && write(fd, p, len / 2) < 0)
            return io_error(errno, "write", name);
        return io_error(err, "write", name);
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return io_error(errno, "write", name);
        if (n == 0)
            return io_error(ENOSPC, "write", name);
        p += n;
        len -= (size_t)n;
    }
    return TDE_OK;
}

tde_status
tde_fileio_fsync(int fd, const char *name)
{
    int err = injected(TDE_FILEIO_FSYNC, NULL);

    if (err == 0 && fsync(fd) != 0)
        err = errno;
    return err != 0 ? io_error(err, "fsync", name) : TDE_OK;
}

tde_status
tde_fileio_rename(const char *from, const char *to)
{
    int err = injected(TDE_FILEIO_RENAME, NULL);

    if (err == 0 && rename(from, to) != 0)
        err = errno;
    if (err != 0)
        return tde_error_set(TDE_ERR_IO, "%s: rename to %s failed: %s", from, to, strerror(err));
    return TDE_OK;
}

tde_status
tde_fileio_rename_noreplace(const char *from, const char *to)
{
    int err = injected(TDE_FILEIO_RENAME, NULL);

    if (err == 0 && renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0)
        err = errno;
    if (err == EEXIST || err == ENOTEMPTY)
        return tde_error_set(TDE_ERR_EXISTS, "%s: rename to %s refused: %s exists already", from,
                             to, to);
    if (err != 0)
        return tde_error_set(TDE_ERR_IO, "%s: rename to %s failed: %s", from, to, strerror(err));
    return TDE_OK;
}

void
tde_fileio_remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX];

    if (d != NULL) {
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                (size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < sizeof(p))
                (void)unlink(p);
        closedir(d);
    }
    (void)rmdir(dir);
}

tde_status
tde_fileio_fsync_dir(const char *dir)
{
    int err = injected(TDE_FILEIO_FSYNC_DIR, NULL);
    int fd;

    if (err != 0)
        return io_error(err, "directory fsync", dir);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error(errno, "open directory", dir);
    if (fsync(fd) != 0) {
        err = errno;
        close(fd);
        return io_error(err, "directory fsync", dir);
    }
    close(fd);
    return TDE_OK;
}

tde_status
tde_fileio_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return tde_fileio_fsync_dir(".");
    if ((size_t)(slash - path) >= sizeof(dir))
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: path too long", path);
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash == path ? 1 : slash - path] = '\0';
    if (slash == path)
        dir[0] = '/';
    return tde_fileio_fsync_dir(dir);
}

tde_status
tde_fileio_truncate(int fd, uint64_t len, const char *name)
{
    int err = injected(TDE_FILEIO_TRUNCATE, NULL);

    if (err == 0 && ftruncate(fd, (off_t)len) != 0)
        err = errno;
    return err != 0 ? io_error(err, "ftruncate", name) : TDE_OK;
}

tde_status
tde_fileio_unlink(const char *path)
{
    int err = injected(TDE_FILEIO_UNLINK, NULL);

    if (err == 0 && unlink(path) != 0 && errno != ENOENT)
        err = errno;
    return err != 0 ? io_error(err, "unlink", path) : TDE_OK;
}

tde_status
tde_fileio_read_from(int fd, uint64_t off, uint8_t **data, size_t *len, const char *name)
{
    struct stat st;
    uint8_t *buf;
    size_t cap, got = 0;

    *data = NULL;
    *len = 0;
    if (fstat(fd, &st) != 0)
        return io_error(errno, "fstat", name);
    cap = (uint64_t)st.st_size > off ? (size_t)((uint64_t)st.st_size - off) : 0;
    /* Exactly sized (+1 so an empty file still gets a buffer); a file that grows while we read
     * is read up to the size seen here, and the rest on the next call. */
    buf = malloc(cap + 1);
    if (buf == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, cap);
    while (got < cap) {
        ssize_t n = pread(fd, buf + got, cap - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            free(buf);
            return io_error(err, "read", name);
        }
        if (n == 0)
            break; /* shrank while reading */
        got += (size_t)n;
    }
    *data = buf;
    *len = got;
    return TDE_OK;
}

tde_status
tde_fileio_read_all(const char *path, uint8_t **data, size_t *len)
{
    int fd;
    tde_status st;

    *data = NULL;
    *len = 0;
    TDE_RET(tde_fileio_open(&fd, path, O_RDONLY));
    st = tde_fileio_read_from(fd, 0, data, len, path);
    close(fd);
    return st;
}

tde_status
tde_fileio_append_sync(int fd, const void *data, size_t len, const char *name)
{
    TDE_RET(tde_fileio_write(fd, data, len, name));
    return tde_fileio_fsync(fd, name);
}

tde_status
tde_durable_write(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    int fd = -1;
    tde_status st;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return tde_error_set(TDE_ERR_INVALID_ARG, "%s: path too long", path);
    TDE_ERR(tde_fileio_open(&fd, tmp, O_WRONLY | O_CREAT | O_TRUNC));
    /* The umask may have widened nothing, but an old temp file may carry other bits. */
    if (fchmod(fd, 0600) != 0)
        TDE_ERR(io_error(errno, "fchmod", tmp));
    TDE_ERR(tde_fileio_write(fd, data, len, tmp));
    TDE_ERR(tde_fileio_fsync(fd, tmp));
    close(fd);
    fd = -1;
    TDE_FAILPOINT("fileio.durable.after_temp");
    TDE_ERR(tde_fileio_rename(tmp, path));
    TDE_FAILPOINT("fileio.durable.after_rename");
    /* After the rename the new file is in place; a failed directory fsync leaves it unknown
     * whether the rename survives a crash, which the caller must treat as fatal. */
    return tde_fileio_fsync_parent(path);
err:
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    return st;
}
