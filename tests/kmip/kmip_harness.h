/* Shared by the KMIP tests run through run_pykmip.sh: the server's address and certificates,
 * and a misbehaving TLS server for failure cases. */
#ifndef TDE_KMIP_HARNESS_H
#define TDE_KMIP_HARNESS_H

#include "masterkey/kmip_tls.h"

/* The PyKMIP server's port (KMIP_PORT) and the certificate directory (KMIP_CERTS). */
int harness_port(void);
/* "<KMIP_CERTS>/<name>" in a static buffer (one of 8 rotating ones). */
const char *harness_cert(const char *name);
/* A transport config for the PyKMIP server with the good client certificate. */
kmip_tls_config harness_config(void);
/* A TCP port on 127.0.0.1 where nothing listens (bound, then released). */
int harness_dead_port(void);

/* How the fake server misbehaves on its one connection. */
enum fake_mode {
    FAKE_SILENT,    /* accepts TCP, never speaks */
    FAKE_GARBAGE,   /* TLS, then a reply that is not TTLV */
    FAKE_HUGE,      /* TLS, then a header announcing a 2 GiB reply */
    FAKE_TRUNCATED, /* TLS, then half a reply and close */
    FAKE_WRONGNAME, /* TLS with a certificate for another host name */
    FAKE_KEEP,      /* one connection; every request gets a canned Query reply */
    FAKE_CLOSE,     /* three connections, one canned Query reply each, then a close */
};

typedef struct fake_server fake_server;
/* Starts the server on 127.0.0.1; returns its port via *port. */
fake_server *fake_start(enum fake_mode mode, int *port);
/* Waits for its thread and frees it. */
void fake_stop(fake_server *f);

#endif
