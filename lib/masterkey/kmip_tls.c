/* KMIP TLS transport on OpenSSL (see kmip_tls.h for the threat model). */
#include "masterkey/kmip_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/error.h"
#include "masterkey/kmip_ttlv.h"

/* One connection's state. */
typedef struct conn {
    int fd;
    SSL *ssl;
    int64_t deadline;
    int sent;    /* the request left us (a retry could repeat it) */
    pid_t owner; /* the process that made it: a forked child must not share a TLS session */
} conn;

struct kmip_client {
    conn idle; /* kept open after a successful call, for the next idempotent one */
    SSL_CTX *ctx;
    char *host;
    int port;
    int host_is_ip;
    int connect_timeout_ms, io_timeout_ms, retries, backoff_ms;
    char peer[300];
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The first queued OpenSSL error as text (the queue is cleared). */
static const char *
ssl_err(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "no details");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static void conn_close(conn *k);

static void
client_free_fields(kmip_client *c)
{
    SSL_CTX_free(c->ctx);
    free(c->host);
    free(c);
}

tde_status
kmip_client_new(kmip_client **out, const kmip_tls_config *cfg)
{
    tde_status st;
    kmip_client *c = NULL;
    char eb[256];
    unsigned char ipbuf[16];

    *out = NULL;
    TDE_ENSURE(cfg->host != NULL && cfg->host[0] != '\0', TDE_ERR_INVALID_ARG,
               "kmip: no server host");
    TDE_ENSURE(cfg->port > 0 && cfg->port < 65536, TDE_ERR_INVALID_ARG, "kmip %s: bad port %d",
               cfg->host, cfg->port);
    TDE_ENSURE(cfg->ca_file && cfg->cert_file && cfg->key_file, TDE_ERR_INVALID_ARG,
               "kmip %s:%d: ca, cert and key files are all required (mutual TLS)", cfg->host,
               cfg->port);
    c = calloc(1, sizeof(*c));
    TDE_ENSURE(c != NULL, TDE_ERR_NOMEM, "kmip: out of memory");
    c->idle.fd = -1;
    c->host = strdup(cfg->host);
    TDE_ENSURE(c->host != NULL, TDE_ERR_NOMEM, "kmip: out of memory");
    c->port = cfg->port;
    c->host_is_ip =
        inet_pton(AF_INET, cfg->host, ipbuf) == 1 || inet_pton(AF_INET6, cfg->host, ipbuf) == 1;
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
    c->io_timeout_ms = cfg->io_timeout_ms > 0 ? cfg->io_timeout_ms : 10000;
    c->retries = cfg->retries >= 0 ? cfg->retries : 0;
    if (c->retries > 10)
        c->retries = 10;
    c->backoff_ms = cfg->backoff_ms > 0 ? cfg->backoff_ms : 100;
    snprintf(c->peer, sizeof(c->peer), "%s:%d", c->host, c->port);

    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    TDE_ENSURE(c->ctx != NULL, TDE_ERR_CRYPTO, "kmip %s: SSL_CTX_new: %s", c->peer,
               ssl_err(eb, sizeof(eb)));
    SSL_CTX_set_min_proto_version(c->ctx, cfg->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    TDE_ENSURE(SSL_CTX_set_cipher_list(c->ctx,
                                       cfg->ciphers ? cfg->ciphers : KMIP_TLS_DEFAULT_CIPHERS) == 1,
               TDE_ERR_INVALID_ARG, "kmip %s: bad TLS cipher list '%s': %s", c->peer,
               cfg->ciphers ? cfg->ciphers : KMIP_TLS_DEFAULT_CIPHERS, ssl_err(eb, sizeof(eb)));
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    TDE_ENSURE(SSL_CTX_load_verify_locations(c->ctx, cfg->ca_file, NULL) == 1, TDE_ERR_IO,
               "kmip %s: cannot load CA file %s: %s", c->peer, cfg->ca_file,
               ssl_err(eb, sizeof(eb)));
    TDE_ENSURE(SSL_CTX_use_certificate_chain_file(c->ctx, cfg->cert_file) == 1, TDE_ERR_IO,
               "kmip %s: cannot load client certificate %s: %s", c->peer, cfg->cert_file,
               ssl_err(eb, sizeof(eb)));
    TDE_ENSURE(SSL_CTX_use_PrivateKey_file(c->ctx, cfg->key_file, SSL_FILETYPE_PEM) == 1,
               TDE_ERR_IO, "kmip %s: cannot load client key %s: %s", c->peer, cfg->key_file,
               ssl_err(eb, sizeof(eb)));
    TDE_ENSURE(SSL_CTX_check_private_key(c->ctx) == 1, TDE_ERR_INVALID_ARG,
               "kmip %s: client key %s does not match certificate %s", c->peer, cfg->key_file,
               cfg->cert_file);
    *out = c;
    return TDE_OK;
err:
    if (c != NULL)
        client_free_fields(c);
    return st;
}

void
kmip_client_free(kmip_client *c)
{
    if (c == NULL)
        return;
    conn_close(&c->idle);
    client_free_fields(c);
}

const char *
kmip_client_peer(const kmip_client *c)
{
    return c->peer;
}

/* Waits until @p fd is ready for @p events or the deadline passes. */
static tde_status
wait_fd(const kmip_client *c, const conn *k, short events, const char *what)
{
    for (;;) {
        int64_t left = k->deadline - now_ms();
        struct pollfd p = {.fd = k->fd, .events = events};
        int r;
        if (left <= 0)
            return tde_error_set(TDE_ERR_TIMEOUT, "kmip %s: timed out during %s", c->peer, what);
        r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return TDE_OK;
        if (r < 0 && errno != EINTR)
            return tde_error_set(TDE_ERR_UNAVAILABLE, "kmip %s: poll: %s", c->peer,
                                 strerror(errno));
    }
}

/* Non-blocking TCP connect to any of the host's addresses within the connect timeout. */
static tde_status
tcp_connect(const kmip_client *c, conn *k)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    int rc, last_errno = 0;
    tde_status st = TDE_ERR_UNAVAILABLE;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", c->port);
    rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0)
        return tde_error_set(TDE_ERR_UNAVAILABLE, "kmip %s: cannot resolve host: %s", c->peer,
                             gai_strerror(rc));
    k->deadline = now_ms() + c->connect_timeout_ms;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        int one = 1, err = 0;
        socklen_t el = sizeof(err);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        k->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            st = TDE_OK;
            break;
        }
        if (errno == EINPROGRESS) {
            st = wait_fd(c, k, POLLOUT, "connect");
            if (st == TDE_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
                break;
            if (st == TDE_OK)
                st = TDE_ERR_UNAVAILABLE;
            last_errno = err;
        } else {
            last_errno = errno;
        }
        close(fd);
        k->fd = -1;
        if (st == TDE_ERR_TIMEOUT)
            break;
    }
    freeaddrinfo(res);
    if (k->fd < 0 && st != TDE_ERR_TIMEOUT)
        return tde_error_set(TDE_ERR_UNAVAILABLE, "kmip %s: connect: %s", c->peer,
                             last_errno ? strerror(last_errno) : "no address");
    return st == TDE_OK ? TDE_OK : st;
}

/* Runs an SSL call until it completes, waiting on the socket as OpenSSL asks. */
static tde_status
ssl_io(const kmip_client *c, conn *k, int op, void *buf, size_t len, size_t *done, const char *what)
{
    char eb[256];
    for (;;) {
        int r, e;
        ERR_clear_error();
        if (op == 0)
            r = SSL_connect(k->ssl);
        else if (op == 1)
            r = SSL_write_ex(k->ssl, buf, len, done);
        else
            r = SSL_read_ex(k->ssl, buf, len, done);
        if (r == 1)
            return TDE_OK;
        e = SSL_get_error(k->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            TDE_RET(wait_fd(c, k, POLLIN, what));
        } else if (e == SSL_ERROR_WANT_WRITE) {
            TDE_RET(wait_fd(c, k, POLLOUT, what));
        } else if (op == 0 && SSL_get_verify_result(k->ssl) != X509_V_OK) {
            return tde_error_set(
                TDE_ERR_AUTH, "kmip %s: server certificate rejected: %s (check ca and host)",
                c->peer, X509_verify_cert_error_string(SSL_get_verify_result(k->ssl)));
        } else if (e == SSL_ERROR_ZERO_RETURN ||
                   (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ||
                   ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return tde_error_set(
                TDE_ERR_UNAVAILABLE, "kmip %s: connection closed by the server during %s%s",
                c->peer, what, op == 0 ? " (client certificate or TLS policy refused?)" : "");
        } else {
            const char *msg = ssl_err(eb, sizeof(eb));
            /* A handshake the server aborted: policy or client-certificate trouble, not reach. */
            return tde_error_set(op == 0 ? TDE_ERR_AUTH : TDE_ERR_UNAVAILABLE,
                                 "kmip %s: TLS %s failed: %s%s", c->peer, what, msg,
                                 op == 0 ? " (client certificate, TLS version or tls_ciphers?)"
                                         : "");
        }
    }
}

/* Frees the connection without a close_notify: the server may be gone, or the TLS
 * session may belong to the parent of a forked process. */
static void
conn_close(conn *k)
{
    if (k->ssl != NULL) {
        /* A quiet shutdown: the server may have gone already. */
        SSL_set_quiet_shutdown(k->ssl, 1);
        SSL_free(k->ssl);
    }
    if (k->fd >= 0)
        close(k->fd);
    k->ssl = NULL;
    k->fd = -1;
}

/* Connects and runs the TLS handshake with the server checks. */
static tde_status
establish(const kmip_client *c, conn *k)
{
    tde_status st;
    char eb[256];

    TDE_RET(tcp_connect(c, k));
    k->owner = getpid();
    k->deadline = now_ms() + c->io_timeout_ms;
    k->ssl = SSL_new(c->ctx);
    TDE_ENSURE(k->ssl != NULL && SSL_set_fd(k->ssl, k->fd) == 1, TDE_ERR_CRYPTO,
               "kmip %s: SSL_new: %s", c->peer, ssl_err(eb, sizeof(eb)));
    if (c->host_is_ip) {
        TDE_ENSURE(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), c->host) == 1,
                   TDE_ERR_INVALID_ARG, "kmip %s: bad IP address", c->peer);
    } else {
        SSL_set_hostflags(k->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        TDE_ENSURE(SSL_set1_host(k->ssl, c->host) == 1 &&
                       SSL_set_tlsext_host_name(k->ssl, c->host) == 1,
                   TDE_ERR_INVALID_ARG, "kmip %s: bad host name", c->peer);
    }
    TDE_ERR(ssl_io(c, k, 0, NULL, 0, NULL, "handshake"));
    return TDE_OK;
err:
    return st;
}

/* Sends one request and reads one TTLV message on an established connection. */
static tde_status
exchange(const kmip_client *c, conn *k, const uint8_t *req, size_t req_len, uint8_t **resp,
         size_t *resp_len)
{
    tde_status st;
    uint8_t hdr[KMIP_TTLV_HEADER_LEN], *buf = NULL;
    size_t total = 0, got = 0, n;

    k->deadline = now_ms() + c->io_timeout_ms;
    for (size_t off = 0; off < req_len; off += n) {
        k->sent = 1;
        TDE_ERR(ssl_io(c, k, 1, (void *)(req + off), req_len - off, &n, "send"));
    }
    while (got < KMIP_TTLV_HEADER_LEN) {
        TDE_ERR(ssl_io(c, k, 2, hdr + got, sizeof(hdr) - got, &n, "reply"));
        got += n;
    }
    TDE_ERR(kmip_ttlv_message_len(hdr, KMIP_TTLV_MAX_MESSAGE, &total));
    buf = malloc(total);
    TDE_ENSURE(buf != NULL, TDE_ERR_NOMEM, "kmip %s: out of memory", c->peer);
    memcpy(buf, hdr, sizeof(hdr));
    while (got < total) {
        TDE_ERR(ssl_io(c, k, 2, buf + got, total - got, &n, "reply"));
        got += n;
    }
    *resp = buf;
    *resp_len = total;
    return TDE_OK;
err:
    if (st == TDE_ERR_PROTOCOL) {
        char why[256];
        snprintf(why, sizeof(why), "%s", tde_last_error());
        st = tde_error_set(TDE_ERR_PROTOCOL, "kmip %s: %s", c->peer, why);
    }
    kmip_buf_free(buf, total);
    return st;
}

tde_status
kmip_client_call(kmip_client *c, const uint8_t *req, size_t req_len, int idempotent, uint8_t **resp,
                 size_t *resp_len)
{
    tde_status st = TDE_ERR_UNAVAILABLE;
    sigset_t pipe_set, old_set;
    int backoff = c->backoff_ms;

    *resp = NULL;
    *resp_len = 0;
    /* Writing to a socket the server closed must not kill the host with SIGPIPE. */
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    if (c->idle.ssl != NULL && c->idle.owner != getpid()) {
        /* Inherited through fork(): the parent owns the TLS session; drop our copy quietly. */
        conn_close(&c->idle);
    }
    if (c->idle.ssl != NULL) {
        conn k = c->idle;
        c->idle = (conn){.fd = -1};
        if (idempotent) {
            st = exchange(c, &k, req, req_len, resp, resp_len);
            if (st == TDE_OK) {
                c->idle = k;
                goto done;
            }
        }
        conn_close(&k);
        /* A server may close idle connections: only a bad reply is final, not a lost link. */
        if (idempotent && st != TDE_ERR_UNAVAILABLE && st != TDE_ERR_TIMEOUT)
            goto done;
    }
    for (int i = 0; i <= c->retries; i++) {
        conn k = {.fd = -1};
        if (i > 0) {
            tde_log(TDE_LOG_WARN, "kmip %s: retry %d of %d in %d ms after: %s", c->peer, i,
                    c->retries, backoff, tde_last_error());
            sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        }
        st = establish(c, &k);
        if (st == TDE_OK)
            st = exchange(c, &k, req, req_len, resp, resp_len);
        if (st == TDE_OK) {
            c->idle = k;
            break;
        }
        conn_close(&k);
        if ((st != TDE_ERR_UNAVAILABLE && st != TDE_ERR_TIMEOUT) || (k.sent && !idempotent))
            break;
    }
done:
    if (!sigismember(&old_set, SIGPIPE)) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
            ;
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    }
    return st;
}
