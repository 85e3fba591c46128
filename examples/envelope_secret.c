/*
 * Envelope demo: seal an application secret under a key-file master key, show
 * the record, open it, then rotate the master key without re-encrypting.
 *
 *   example_envelope_secret DIR     (DIR: a scratch directory)
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tde/envelope.h"

static int
check(tde_status st, const char *what)
{
    if (st != TDE_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, tde_status_str(st), tde_last_error());
        exit(1);
    }
    return 0;
}

static tde_masterkey *
new_master_key(const char *dir, const char *name)
{
    char path[4096], uri[4200];
    tde_masterkey *mk = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    check(tde_keyfile_create(path), "create key file");
    snprintf(uri, sizeof(uri), "file://%s", path);
    check(tde_masterkey_open(&mk, uri), "open master key");
    printf("master key %s: provider %s, key id %s\n", name, tde_masterkey_provider_name(mk),
           tde_masterkey_key_id(mk));
    return mk;
}

static void
hexdump(const uint8_t *p, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++)
        printf("%02x%s", p[i], i % 16 == 15 ? "\n  " : " ");
    printf(len > max ? "... (%zu bytes)\n" : "\n", len);
}

int
main(int argc, char **argv)
{
    static const char secret[] = "postgres://app:s3cr3t@db.internal/orders";
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    tde_masterkey *old_key, *new_key;
    const tde_masterkey *used = NULL;
    uint8_t *rec = NULL, *re = NULL, *pt = NULL;
    size_t rec_len = 0, re_len = 0, pt_len = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    old_key = new_master_key(argv[1], "master-1.key");

    /* The context is not stored; opening needs the same one. */
    o.context = (const uint8_t *)"service=orders";
    o.context_len = strlen("service=orders");
    check(tde_envelope_seal(old_key, &o, (const uint8_t *)secret, strlen(secret), &rec, &rec_len),
          "seal");
    printf("sealed %zu bytes into a %zu-byte record:\n  ", strlen(secret), rec_len);
    hexdump(rec, rec_len, 64);
    if (memmem(rec, rec_len, "s3cr3t", 6) != NULL)
        return 1;

    check(tde_envelope_open(old_key, NULL, &o, rec, rec_len, &pt, &pt_len, NULL), "open");
    printf("opened: %.*s\n", (int)pt_len, (const char *)pt);
    free(pt);

    /* Rotation: a new master key becomes current; the data key is re-wrapped, the ciphertext
     * is copied unchanged. */
    new_key = new_master_key(argv[1], "master-2.key");
    check(tde_envelope_rewrap(new_key, old_key, new_key, &o, rec, rec_len, &re, &re_len, &used),
          "rewrap");
    {
        size_t tail = 12 + 8 + strlen(secret) + 16; /* IV, length, ciphertext, tag */
        printf("re-wrapped (opened with the %s key); IV, ciphertext and tag unchanged: %s\n",
               used == old_key ? "previous" : "current",
               memcmp(re + re_len - tail, rec + rec_len - tail, tail) == 0 ? "yes" : "no");
    }
    check(tde_envelope_open(new_key, NULL, &o, re, re_len, &pt, &pt_len, &used), "open re-wrapped");
    printf("opened with the new key alone: %.*s\n", (int)pt_len, (const char *)pt);
    free(pt);

    /* The old record still opens while the old key is configured as the previous one. */
    check(tde_envelope_open(new_key, old_key, &o, rec, rec_len, &pt, &pt_len, &used), "fallback");
    printf("old record opened with the %s master key\n", used == old_key ? "previous" : "current");
    free(pt);

    /* A wrong context fails authentication. */
    o.context = (const uint8_t *)"service=billing";
    o.context_len = strlen("service=billing");
    if (tde_envelope_open(new_key, NULL, &o, re, re_len, &pt, &pt_len, NULL) != TDE_ERR_AUTH)
        return 1;
    printf("wrong context: %s\n", tde_last_error());

    free(re);
    free(rec);
    tde_masterkey_free(new_key);
    tde_masterkey_free(old_key);
    return 0;
}
