/*
 * Secret memory. Threat model: key bytes must not reach swap, core dumps or
 * freed heap that a later allocation (or a memory-disclosure bug) could read.
 * Each secret gets its own page-aligned mapping: mlock keeps it out of swap,
 * MADV_DONTDUMP out of core dumps, and OPENSSL_cleanse wipes it before munmap.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "tde/secret.h"

struct tde_secret {
    uint8_t *bytes;
    size_t len;
    size_t map_len;
    int locked;
};

static atomic_int allow_unlocked;

void
tde_secret_allow_unlocked(int allow)
{
    atomic_store(&allow_unlocked, allow != 0);
}

tde_status
tde_secret_new(tde_secret **out, size_t len)
{
    tde_secret *s = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    tde_status st = TDE_OK;

    *out = NULL;
    TDE_ENSURE(len > 0 && len <= TDE_SECRET_MAX_LEN, TDE_ERR_INVALID_ARG,
               "secret: length %zu outside 1..%zu", len, TDE_SECRET_MAX_LEN);
    s = calloc(1, sizeof(*s));
    TDE_ENSURE(s != NULL, TDE_ERR_NOMEM, "secret: out of memory");
    s->len = len;
    s->map_len = (len + page - 1) / page * page;
    s->bytes = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->bytes == MAP_FAILED) {
        s->bytes = NULL;
        TDE_ENSURE(0, TDE_ERR_NOMEM, "secret: mmap of %zu bytes failed: %s", s->map_len,
                   strerror(errno));
    }
    (void)madvise(s->bytes, s->map_len, MADV_DONTDUMP);
    if (mlock(s->bytes, s->map_len) == 0) {
        s->locked = 1;
    } else {
        int e = errno;
        TDE_ENSURE(atomic_load(&allow_unlocked), TDE_ERR_MEMLOCK,
                   "secret: mlock of %zu bytes failed (%s): raise RLIMIT_MEMLOCK (ulimit -l) "
                   "or allow unlocked memory explicitly",
                   s->map_len, strerror(e));
        tde_log(TDE_LOG_WARN, "secret: mlock failed (%s); using unlocked memory as configured",
                strerror(e));
    }
    *out = s;
    return TDE_OK;
err:
    tde_secret_free(s);
    return st;
}

tde_status
tde_secret_from(tde_secret **out, const void *bytes, size_t len)
{
    TDE_RET(tde_secret_new(out, len));
    memcpy((*out)->bytes, bytes, len);
    return TDE_OK;
}

tde_status
tde_secret_random(tde_secret **out, size_t len)
{
    tde_status st;

    TDE_RET(tde_secret_new(out, len));
    st = tde_random_bytes((*out)->bytes, len);
    if (st != TDE_OK) {
        tde_secret_free(*out);
        *out = NULL;
    }
    return st;
}

const uint8_t *
tde_secret_data(const tde_secret *s)
{
    return s->bytes;
}

uint8_t *
tde_secret_data_mut(tde_secret *s)
{
    return s->bytes;
}

size_t
tde_secret_len(const tde_secret *s)
{
    return s->len;
}

int
tde_secret_is_locked(const tde_secret *s)
{
    return s->locked;
}

void
tde_secret_free(tde_secret *s)
{
    if (s == NULL)
        return;
    if (s->bytes != NULL) {
        OPENSSL_cleanse(s->bytes, s->map_len);
        if (s->locked)
            (void)munlock(s->bytes, s->map_len);
        (void)munmap(s->bytes, s->map_len);
    }
    free(s);
}
