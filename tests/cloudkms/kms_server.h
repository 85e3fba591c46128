/* Starts and stops the local KMS test servers (aws_kms_server.py, tencent_kms_server.js). */
#ifndef TDE_TEST_KMS_SERVER_H
#define TDE_TEST_KMS_SERVER_H

#include <sys/types.h>

typedef struct kms_server {
    const char *kind; /* "aws" or "tencent" */
    pid_t pid;        /* 0 when stopped */
    int port;
    char dir[512];   /* state, port file, fault file, request log */
    char certs[600]; /* ca.pem, server.pem, server.key */
    char endpoint[64];
} kms_server;

/* Prepares @p s in a fresh directory and makes its certificates; does not start it. */
void kms_server_init(kms_server *s, const char *kind);
/* Starts the server (port 0: any free one); @p extra is NULL-terminated extra arguments. */
void kms_server_start(kms_server *s, int port, const char *const *extra);
/* Stops it by its pid (SIGTERM, bounded wait, then SIGKILL). */
void kms_server_stop(kms_server *s);
/* Stops it and removes its directory. */
void kms_server_fini(kms_server *s);
/* Sets the fault (JSON text; "" clears it). */
void kms_server_fault(kms_server *s, const char *json);
/* Lines of the request log starting with @p prefix; kms_server_reset_log() empties it. */
int kms_server_count(const kms_server *s, const char *prefix);
void kms_server_reset_log(const kms_server *s);
/* A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
int kms_free_port(void);

#endif
