/* Helpers for the KMIP tests (see kmip_harness.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "testutil.h"
#include "kmip_harness.h"

int
harness_port(void)
{
    const char *p = getenv("KMIP_PORT");
    if (p == NULL) {
        fprintf(stderr, "KMIP_PORT is not set: run through tests/kmip/run_pykmip.sh\n");
        exit(1);
    }
    return atoi(p);
}

const char *
harness_cert(const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    const char *dir = getenv("KMIP_CERTS");
    if (dir == NULL) {
        fprintf(stderr, "KMIP_CERTS is not set: run through tests/kmip/run_pykmip.sh\n");
        exit(1);
    }
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

kmip_tls_config
harness_config(void)
{
    kmip_tls_config c;
    memset(&c, 0, sizeof(c));
    c.host = "127.0.0.1";
    c.port = harness_port();
    c.ca_file = harness_cert("ca.crt");
    c.cert_file = harness_cert("client.crt");
    c.key_file = harness_cert("client.key");
    /* PyKMIP offers only RSA-key-exchange suites (see docs/providers.md). */
    c.ciphers = "AES128-SHA256:AES256-SHA256";
    c.connect_timeout_ms = 5000;
    c.io_timeout_ms = 30000;
    c.retries = 1;
    c.backoff_ms = 100;
    return c;
}

/* Binds a listening socket on 127.0.0.1:0. */
static int
listen_any(int *port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int
harness_dead_port(void)
{
    int port, fd = listen_any(&port);
    close(fd);
    return port;
}

struct fake_server {
    pthread_t thread;
    int lfd;
    enum fake_mode mode;
    SSL_CTX *ctx;
};

/* Reads one TTLV message (header, then its length); 0 at EOF or error. */
static int
read_message(SSL *ssl, uint8_t *buf, size_t cap)
{
    size_t got = 0, total = 8;
    while (got < total) {
        int n = SSL_read(ssl, buf + got, (int)(total - got));
        if (n <= 0)
            return 0;
        got += (size_t)n;
        if (got == 8) {
            total =
                8 + ((size_t)buf[4] << 24 | (size_t)buf[5] << 16 | (size_t)buf[6] << 8 | buf[7]);
            if (total > cap)
                return 0;
        }
    }
    return 1;
}

/* The canned reply: PyKMIP's answer to Query (tests/vectors/kmip/kmip-1.4/23-resp.hex). */
static size_t
canned_reply(uint8_t *out, size_t cap)
{
    char path[1024], hex[4096];
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "%s/tests/vectors/kmip/kmip-1.4/23-resp.hex", TDE_SOURCE_DIR);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(hex, 1, sizeof(hex) - 1, f);
    fclose(f);
    while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r'))
        n--;
    hex[n] = '\0';
    return test_unhex(hex, out, cap);
}

/* FAKE_KEEP and FAKE_CLOSE: well-behaved KMIP with canned replies. */
static void *
fake_kmip(fake_server *f)
{
    uint8_t reply[1024], buf[8192];
    size_t reply_len = canned_reply(reply, sizeof(reply));
    int conns = f->mode == FAKE_KEEP ? 1 : 3;

    for (int i = 0; i < conns; i++) {
        int fd = accept(f->lfd, NULL, NULL);
        SSL *ssl;
        if (fd < 0)
            return NULL;
        ssl = SSL_new(f->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            while (read_message(ssl, buf, sizeof(buf))) {
                SSL_write(ssl, reply, (int)reply_len);
                if (f->mode == FAKE_CLOSE)
                    break;
            }
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static void *
fake_main(void *arg)
{
    fake_server *f = arg;
    int fd;
    SSL *ssl = NULL;
    uint8_t buf[4096];

    if (f->mode == FAKE_KEEP || f->mode == FAKE_CLOSE)
        return fake_kmip(f);
    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (f->mode == FAKE_SILENT) {
        /* Hold the connection until the client gives up. */
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
        close(fd);
        return NULL;
    }
    ssl = SSL_new(f->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1 && SSL_read(ssl, buf, sizeof(buf)) > 0) {
        static const uint8_t garbage[] = "HTTP/1.1 400 Bad Request\r\n\r\nnot kmip at all";
        static const uint8_t huge[] = {0x42, 0x00, 0x7b, 0x01, 0x7f, 0xff, 0xff, 0xf8};
        static const uint8_t half[] = {0x42, 0x00, 0x7b, 0x01, 0x00, 0x00, 0x00, 0xa0,
                                       0x42, 0x00, 0x7a, 0x01, 0x00, 0x00, 0x00, 0x48};
        if (f->mode == FAKE_GARBAGE)
            SSL_write(ssl, garbage, sizeof(garbage));
        else if (f->mode == FAKE_HUGE)
            SSL_write(ssl, huge, sizeof(huge));
        else if (f->mode == FAKE_TRUNCATED)
            SSL_write(ssl, half, sizeof(half));
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    return NULL;
}

fake_server *
fake_start(enum fake_mode mode, int *port)
{
    fake_server *f = calloc(1, sizeof(*f));
    const char *name = mode == FAKE_WRONGNAME ? "wrongname" : "server";
    char crt[64], key[64];

    assert_non_null(f);
    f->mode = mode;
    f->lfd = listen_any(port);
    assert_int_equal(listen(f->lfd, 4), 0);
    snprintf(crt, sizeof(crt), "%s.crt", name);
    snprintf(key, sizeof(key), "%s.key", name);
    f->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(f->ctx);
    assert_int_equal(SSL_CTX_use_certificate_file(f->ctx, harness_cert(crt), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(f->ctx, harness_cert(key), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(f->ctx, harness_cert("ca.crt"), NULL), 1);
    SSL_CTX_set_verify(f->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

void
fake_stop(fake_server *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
    SSL_CTX_free(f->ctx);
    free(f);
}
