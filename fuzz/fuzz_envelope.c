/*
 * Fuzzes the envelope record readers. Byte 0 picks the reader (wrapped key,
 * sealed buffer, small secret, stream, re-wrap); the rest is the record,
 * opened with the plaintext-test-only master key so that valid-looking
 * records reach the GCM code. Seeds: tests/vectors/envelope_vectors.py DIR.
 */
#include <stdlib.h>
#include <string.h>

#include "tde/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t left;
};

static tde_status
read_input(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct input *in = arg;
    /* Short reads on purpose: at most 7 bytes a call. */
    size_t n = cap < in->left ? cap : in->left;
    n = n > 7 ? 7 : n;
    memcpy(buf, in->p, n);
    in->p += n;
    in->left -= n;
    *got = n;
    return TDE_OK;
}

static tde_status
discard(void *arg, const uint8_t *buf, size_t len)
{
    (void)arg;
    (void)buf;
    (void)len;
    return TDE_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tde_masterkey *mk;
    const uint8_t *rec = data + 1;
    size_t len = size - 1;
    tde_secret *s = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;
    struct input in = {rec, len};
    tde_status st;

    if (size == 0)
        return 0;
    if (mk == NULL) {
        tde_secret_allow_unlocked(1);
        if (tde_masterkey_open(&mk, "plaintext-test-only://") != TDE_OK)
            abort();
    }
    switch (data[0] % 5) {
    case 0: st = tde_envelope_unwrap_key(mk, NULL, NULL, rec, len, &s, NULL); break;
    case 1: st = tde_envelope_open(mk, NULL, NULL, rec, len, &out, &out_len, NULL); break;
    case 2: st = tde_envelope_open_small(mk, NULL, NULL, rec, len, &s, NULL); break;
    case 3:
        st = tde_envelope_open_stream(mk, NULL, NULL, read_input, &in, discard, NULL, NULL);
        break;
    default: st = tde_envelope_rewrap(mk, NULL, mk, NULL, rec, len, &out, &out_len, NULL); break;
    }
    /* A failed call hands out nothing; a successful one hands out its result. */
    if ((st != TDE_OK && (s != NULL || out != NULL)) ||
        (st == TDE_OK && data[0] % 5 != 3 && s == NULL && out == NULL))
        abort();
    tde_secret_free(s);
    free(out);
    return 0;
}
