/*
 * KMIP over mutual TLS (OpenSSL): connect and I/O deadlines, bounded retries
 * with exponential backoff, errors naming host:port. A connection is kept open
 * for the next idempotent request; one the server closed meanwhile is replaced
 * transparently. A kmip_client is not thread-safe (the provider's calls are
 * serialized by the master-key handle).
 *
 * Threat model: the server is authenticated by the configured CA and its host
 * name or IP address; the client proves itself with its certificate. Requests
 * and replies may hold key bytes: buffers are wiped and nothing is logged.
 */
#ifndef TDE_KMIP_TLS_H
#define TDE_KMIP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "tde/common.h"

/* Forward-secret AEAD suites; servers such as PyKMIP need e.g. "AES128-SHA256". */
#define KMIP_TLS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

typedef struct kmip_tls_config {
    const char *host; /* name or IP literal; verified against the certificate */
    int port;
    const char *ca_file, *cert_file, *key_file;
    const char *ciphers;    /* TLS 1.2 cipher list; NULL: KMIP_TLS_DEFAULT_CIPHERS */
    int tls13_only;         /* refuse TLS 1.2 */
    int connect_timeout_ms; /* per attempt */
    int io_timeout_ms;      /* handshake + request + reply, per attempt */
    int retries;            /* extra attempts after a failure to reach the server */
    int backoff_ms;         /* first pause between attempts, doubled each time */
} kmip_tls_config;

typedef struct kmip_client kmip_client;

/* Loads the CA, certificate and key (errors name the file). The config's strings are copied. */
TDE_MUST_USE tde_status kmip_client_new(kmip_client **out, const kmip_tls_config *cfg);
void kmip_client_free(kmip_client *c);

/* "host:port", for messages. Borrowed. */
const char *kmip_client_peer(const kmip_client *c);

/*
 * Sends one request and reads one reply (*resp for kmip_buf_free()). Failures to
 * reach the server (TDE_ERR_UNAVAILABLE, TDE_ERR_TIMEOUT) are retried; when
 * @p idempotent is 0 only failures before the request was sent are retried.
 * TLS verification failures (TDE_ERR_AUTH) and bad replies (TDE_ERR_PROTOCOL)
 * are never retried.
 */
TDE_MUST_USE tde_status kmip_client_call(kmip_client *c, const uint8_t *req, size_t req_len,
                                         int idempotent, uint8_t **resp, size_t *resp_len);

#endif
