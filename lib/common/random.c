/* Randomness comes from OpenSSL's CSPRNG only; a failure is an error, never a fallback. */
#include <limits.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "common/error.h"

tde_status
tde_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, chunk) != 1) {
            unsigned long e = ERR_get_error();
            ERR_clear_error();
            return tde_error_set(TDE_ERR_CRYPTO, "random: RAND_bytes failed (openssl error %lu)",
                                 e);
        }
        p += chunk;
        len -= (size_t)chunk;
    }
    return TDE_OK;
}
