/* The durable-write helper and the fault-injection layer under it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "testutil.h"

static char *
read_text(const char *path)
{
    uint8_t *data;
    size_t len;
    char *s;

    assert_tde_ok(tde_fileio_read_all(path, &data, &len));
    s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, data, len);
    s[len] = '\0';
    free(data);
    return s;
}

static void
test_fileio_durable_write_creates_0600_and_replaces(void **state)
{
    char *dir = test_tmpdir("fileio");
    char path[PATH_MAX], tmp[PATH_MAX];
    struct stat sb;
    char *s;
    (void)state;

    snprintf(path, sizeof(path), "%s/meta", dir);
    snprintf(tmp, sizeof(tmp), "%s/meta.tmp", dir);
    assert_tde_ok(tde_durable_write(path, "one", 3));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_tde_ok(tde_durable_write(path, "second", 6));
    s = read_text(path);
    assert_string_equal(s, "second");
    free(s);
    assert_int_not_equal(stat(tmp, &sb), 0); /* no temp file left behind */
    test_rmtree(dir);
    free(dir);
}

/* Every write, fsync, rename and directory fsync of a durable write can fail: the old
 * content must survive each failure, and the error must name the path. */
static void
test_fileio_durable_write_failure_keeps_old_content(void **state)
{
    const tde_fileio_op ops[] = {TDE_FILEIO_OPEN, TDE_FILEIO_WRITE, TDE_FILEIO_FSYNC,
                                 TDE_FILEIO_RENAME, TDE_FILEIO_FSYNC_DIR};
    char *dir = test_tmpdir("fileio");
    char path[PATH_MAX];
    (void)state;

    snprintf(path, sizeof(path), "%s/meta", dir);
    assert_tde_ok(tde_durable_write(path, "old", 3));
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        for (int shortw = 0; shortw <= (ops[i] == TDE_FILEIO_WRITE); shortw++) {
            tde_status st;
            char *s;
            tde_fileio_inject_reset();
            tde_fileio_inject(ops[i], 1, shortw ? ENOSPC : EIO, shortw);
            st = tde_durable_write(path, "new content", 11);
            assert_int_equal(tde_fileio_calls(ops[i]), 1);
            tde_fileio_inject_reset();
            assert_int_equal(st, TDE_ERR_IO);
            assert_non_null(strstr(tde_last_error(), dir));
            s = read_text(path);
            /* A failed directory fsync comes after the rename: the new file is in place. */
            assert_string_equal(s, ops[i] == TDE_FILEIO_FSYNC_DIR ? "new content" : "old");
            free(s);
            if (ops[i] == TDE_FILEIO_FSYNC_DIR)
                assert_tde_ok(tde_durable_write(path, "old", 3));
        }
    }
    test_rmtree(dir);
    free(dir);
}

static void
test_fileio_short_write_writes_half(void **state)
{
    char *dir = test_tmpdir("fileio");
    char path[PATH_MAX];
    int fd;
    struct stat sb;
    (void)state;

    snprintf(path, sizeof(path), "%s/log", dir);
    assert_tde_ok(tde_fileio_open(&fd, path, O_WRONLY | O_CREAT | O_APPEND));
    tde_fileio_inject_reset();
    tde_fileio_inject(TDE_FILEIO_WRITE, 2, ENOSPC, true);
    assert_tde_ok(tde_fileio_append_sync(fd, "abcd", 4, path));
    assert_int_equal(tde_fileio_append_sync(fd, "efghij", 6, path), TDE_ERR_IO);
    assert_non_null(strstr(tde_last_error(), "No space left"));
    tde_fileio_inject_reset();
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, 4 + 3);
    assert_int_equal(sb.st_mode & 0777, 0600);
    close(fd);
    assert_int_equal(tde_fileio_open(&fd, "/nonexistent/x", O_RDONLY), TDE_ERR_NOT_FOUND);
    test_rmtree(dir);
    free(dir);
}

/* An armed failpoint ends the process at exactly its N-th hit. */
static void
test_fileio_failpoint_exits_at_nth_hit(void **state)
{
    int status;
    pid_t pid;
    (void)state;

    tde_failpoint_arm("test.point", 3, 42);
    tde_failpoint("other.point");
    tde_failpoint("test.point");
    tde_failpoint("test.point");
    assert_int_equal(tde_failpoint_hits(), 2);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tde_failpoint("test.point");
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    tde_failpoint_reset();
    tde_failpoint("test.point");
    assert_int_equal(tde_failpoint_hits(), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fileio_durable_write_creates_0600_and_replaces),
        cmocka_unit_test(test_fileio_durable_write_failure_keeps_old_content),
        cmocka_unit_test(test_fileio_short_write_writes_half),
        cmocka_unit_test(test_fileio_failpoint_exits_at_nth_hit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
