/*
 * A stand-in host for the tde-ctl tests: opens a key manager as a database
 * would (root "db" at ROOT) and runs operations through the public API.
 *
 * Usage: km_helper DIR ROOT MASTER_URI PREVIOUS_URI|- OP...
 *   write NAME TEXT   registers ROOT/NAME and writes TEXT encrypted to it
 *   copy NAME SRC     registers ROOT/NAME and writes SRC's bytes encrypted to it
 *   rotate-master URI the online master-key rotation API
 *   rotate            a new current data key
 *   fill N            registers and drops N entries with ~3.7 KiB names: grows the log
 *                     past a compaction, so a previous file-dictionary generation exists
 *   hold              keeps the directory open (and locked) until stdin closes
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tde/keymgr.h"
#include "tde/secret.h"

static int
die(const char *what)
{
    fprintf(stderr, "km_helper: %s: %s\n", what, tde_last_error());
    return 1;
}

int
main(int argc, char **argv)
{
    tde_keymgr *km = NULL;
    static char path[4096], buf[1 << 20];

    if (argc < 5)
        return 2;
    tde_secret_allow_unlocked(1);
    tde_keymgr_root root = {"db", argv[2]};
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = argv[1],
                             .roots = &root,
                             .n_roots = 1,
                             .method = TDE_METHOD_AES256_CTR,
                             .master_key_uri = argv[3],
                             .previous_master_key_uri = strcmp(argv[4], "-") ? argv[4] : NULL,
                             .enforce = 0};
    if (tde_keymgr_open(&km, &cfg) != TDE_OK)
        return die("open");
    for (int i = 5; i < argc; i++) {
        if ((strcmp(argv[i], "write") == 0 || strcmp(argv[i], "copy") == 0) && i + 2 < argc) {
            static char src[1 << 20];
            tde_file_key *fk = NULL;
            size_t len = strlen(argv[i + 2]);
            int fd;
            if (strcmp(argv[i], "copy") == 0) {
                FILE *f = fopen(argv[i + 2], "rb");
                len = f ? fread(src, 1, sizeof(src), f) : 0;
                if (f == NULL || fclose(f) != 0)
                    return die(argv[i + 2]);
            } else {
                memcpy(src, argv[i + 2], len);
            }
            snprintf(path, sizeof(path), "%s/%s", argv[2], argv[i + 1]);
            if (len > sizeof(buf) || tde_keymgr_new_file(km, path, &fk) != TDE_OK ||
                tde_file_key_process(fk, 0, src, buf, len) != TDE_OK)
                return die(path);
            tde_file_key_free(fk);
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) != 0)
                return die(path);
            i += 2;
        } else if (strcmp(argv[i], "rotate-master") == 0 && i + 1 < argc) {
            if (tde_keymgr_rotate_master_key(km, argv[++i]) != TDE_OK)
                return die("rotate-master");
        } else if (strcmp(argv[i], "rotate") == 0) {
            if (tde_keymgr_rotate_data_key(km) != TDE_OK)
                return die("rotate");
        } else if (strcmp(argv[i], "fill") == 0 && i + 1 < argc) {
            int n = atoi(argv[++i]);
            for (int j = 0; j < n; j++) {
                tde_file_key *fk = NULL;
                int len = snprintf(path, sizeof(path), "%s/fill", argv[2]);
                for (int c = 0; c < 14; c++)
                    len += snprintf(path + len, sizeof(path) - (size_t)len, "/%0250d", j);
                if (tde_keymgr_new_file(km, path, &fk) != TDE_OK ||
                    tde_keymgr_delete_file(km, path) != TDE_OK)
                    return die(path);
                tde_file_key_free(fk);
            }
        } else if (strcmp(argv[i], "hold") == 0) {
            printf("holding\n");
            fflush(stdout);
            while (read(0, buf, sizeof(buf)) > 0)
                ;
        } else {
            fprintf(stderr, "km_helper: bad op %s\n", argv[i]);
            return 2;
        }
    }
    tde_keymgr_close(km);
    return 0;
}
