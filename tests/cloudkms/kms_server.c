/* Local KMS test servers, each stopped by its own pid. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kms_server.h"
#include "testutil.h"

static void
sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void
kms_server_init(kms_server *s, const char *kind)
{
    char *dir = test_tmpdir(kind), cmd[1400];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    free(dir);
    snprintf(s->certs, sizeof(s->certs), "%s/certs", s->dir);
    snprintf(cmd, sizeof(cmd), "%s/mkcerts.sh '%s'", TDE_CLOUDKMS_DIR, s->certs);
    assert_int_equal(system(cmd), 0);
}

void
kms_server_start(kms_server *s, int port, const char *const *extra)
{
    char port_file[600], port_arg[16], lifetime[] = "600";
    const char *argv[48];
    int n = 0;

    assert_int_equal(s->pid, 0);
    snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
    unlink(port_file);
    snprintf(port_arg, sizeof(port_arg), "%d", port);
    if (strcmp(s->kind, "aws") == 0) {
        argv[n++] = "/usr/bin/python3";
        argv[n++] = TDE_CLOUDKMS_DIR "/aws_kms_server.py";
    } else {
        argv[n++] = "node";
        argv[n++] = TDE_CLOUDKMS_DIR "/tencent_kms_server.js";
    }
    const char *common[] = {"--dir",  s->dir,   "--cert-dir", s->certs,
                            "--port", port_arg, "--lifetime", lifetime};
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        argv[n++] = common[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        assert_true(n < 46);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("NODE_PATH", TDE_NODE_MODULES, 1);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    /* Poll for the port file (written after bind), bounded to 20 s. */
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok) {
                snprintf(s->endpoint, sizeof(s->endpoint), "https://127.0.0.1:%d", s->port);
                return;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            fail_msg("%s KMS server exited at start (status %d)", s->kind, status);
        }
        sleep_ms(50);
    }
    kms_server_stop(s);
    fail_msg("%s KMS server did not start in 20 s", s->kind);
}

void
kms_server_stop(kms_server *s)
{
    int status;
    if (s->pid == 0)
        return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        sleep_ms(50);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

void
kms_server_fini(kms_server *s)
{
    kms_server_stop(s);
    test_rmtree(s->dir);
}

void
kms_server_fault(kms_server *s, const char *json)
{
    char path[600], tmp[610];
    snprintf(path, sizeof(path), "%s/fault.json", s->dir);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(json, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

int
kms_server_count(const kms_server *s, const char *prefix)
{
    char path[600], line[256];
    int n = 0;
    snprintf(path, sizeof(path), "%s/requests.log", s->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f);
    return n;
}

void
kms_server_reset_log(const kms_server *s)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/requests.log", s->dir);
    FILE *f = fopen(path, "w");
    if (f != NULL)
        fclose(f);
}

int
kms_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}
