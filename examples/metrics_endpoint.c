/*
 * A host program's /metrics endpoint: serves the key manager's metrics in
 * Prometheus text format over HTTP on 127.0.0.1 (an ephemeral port), fetches
 * them once itself as a scraper would, prints them and exits.
 *
 * Usage: example_metrics_endpoint SCRATCH_DIR
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "tde/secret.h"

static int
die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, tde_last_error());
    return 1;
}

/* Answers one HTTP request on @p fd with the metrics text. */
static void
serve_one(int listener, tde_keymgr *km)
{
    char req[1024], head[256], *text = NULL;
    int fd = accept(listener, NULL, NULL);
    if (fd < 0)
        return;
    if (read(fd, req, sizeof(req)) > 0 && tde_keymgr_metrics_text(km, &text) == TDE_OK) {
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         strlen(text));
        if (write(fd, head, (size_t)n) != n || write(fd, text, strlen(text)) < 0)
            perror("write");
    }
    free(text);
    close(fd);
}

int
main(int argc, char **argv)
{
    char dir[1024], db[1024], key[1024], uri[1100], path[1200], buf[8192];
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(addr);
    tde_keymgr *km = NULL;
    tde_file_key *fk = NULL;
    int listener, client;
    size_t got = 0;
    ssize_t n;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    tde_secret_allow_unlocked(1); /* examples run without a raised RLIMIT_MEMLOCK */
    snprintf(dir, sizeof(dir), "%s/keymgr", argv[1]);
    snprintf(db, sizeof(db), "%s/db", argv[1]);
    snprintf(key, sizeof(key), "%s/master.key", argv[1]);
    snprintf(uri, sizeof(uri), "file://%s", key);
    mkdir(db, 0700);
    if (tde_keyfile_create(key) != TDE_OK)
        return die("master key");

    tde_keymgr_root root = {"db", db};
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = dir,
                             .roots = &root,
                             .n_roots = 1,
                             .method = TDE_METHOD_AES256_CTR,
                             .master_key_uri = uri,
                             .enforce = -1};
    if (tde_keymgr_open(&km, &cfg) != TDE_OK)
        return die("open");
    snprintf(path, sizeof(path), "%s/000001.sst", db);
    if (tde_keymgr_new_file(km, path, &fk) != TDE_OK)
        return die("new file");
    tde_file_key_free(fk);

    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(listener, 1) != 0 || getsockname(listener, (struct sockaddr *)&addr, &alen) != 0) {
        perror("listen");
        return 1;
    }
    fprintf(stderr, "serving http://127.0.0.1:%d/metrics for one request\n", ntohs(addr.sin_port));

    /* The scrape: connect (queued by the backlog), send, then serve and read the answer. */
    client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("connect");
        return 1;
    }
    static const char get[] = "GET /metrics HTTP/1.0\r\n\r\n";
    if (write(client, get, sizeof(get) - 1) != (ssize_t)(sizeof(get) - 1)) {
        perror("write");
        return 1;
    }
    serve_one(listener, km);
    while (got < sizeof(buf) - 1 && (n = read(client, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(client);
    close(listener);
    tde_keymgr_close(km);

    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.0 200", 12) != 0 || body == NULL ||
        strstr(body, "\ntde_encrypted_files 1\n") == NULL) {
        fprintf(stderr, "unexpected answer:\n%s\n", buf);
        return 1;
    }
    fputs(body + 4, stdout);
    return 0;
}
