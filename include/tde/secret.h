/**
 * @file secret.h
 * @brief Key bytes in locked, non-dumpable memory.
 *
 * A tde_secret lives in page-aligned memory that is mlock()ed (never swapped)
 * and madvise(MADV_DONTDUMP)ed (left out of core dumps). It is wiped before
 * it is freed; wipe-then-free is the only way it is released.
 * Secrets are immutable once filled and may be read from any thread.
 */
#ifndef TDE_SECRET_H
#define TDE_SECRET_H

#include "tde/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tde_secret tde_secret;

/** Largest secret libtde allocates (a sanity bound, not a format limit). */
#define TDE_SECRET_MAX_LEN ((size_t)1 << 20)

/**
 * Allocates @p len zero bytes of locked memory. Fails with TDE_ERR_MEMLOCK
 * (naming RLIMIT_MEMLOCK) when mlock is refused, unless
 * tde_secret_allow_unlocked() was called.
 */
TDE_API TDE_MUST_USE tde_status tde_secret_new(tde_secret **out, size_t len);

/** Allocates a secret holding a copy of @p bytes. The caller still owns and should wipe @p bytes.
 */
TDE_API TDE_MUST_USE tde_status tde_secret_from(tde_secret **out, const void *bytes, size_t len);

/** Allocates a secret of @p len random bytes (RAND_bytes; fails closed). */
TDE_API TDE_MUST_USE tde_status tde_secret_random(tde_secret **out, size_t len);

/** The bytes. Borrowed; valid until tde_secret_free(). */
TDE_API const uint8_t *tde_secret_data(const tde_secret *s);

/** Writable bytes, for filling a secret made by tde_secret_new(). */
TDE_API uint8_t *tde_secret_data_mut(tde_secret *s);

/** The length in bytes. */
TDE_API size_t tde_secret_len(const tde_secret *s);

/** Wipes and frees. Accepts NULL. */
TDE_API void tde_secret_free(tde_secret *s);

/** 1 if this secret's memory is mlock()ed, 0 if it fell back to unlocked memory. */
TDE_API int tde_secret_is_locked(const tde_secret *s);

/**
 * Explicit opt-out: when @p allow is non-zero, a refused mlock logs a warning
 * and the secret lives in unlocked (but still non-dumpable, wiped) memory.
 * Process-wide; default 0 (refuse).
 */
TDE_API void tde_secret_allow_unlocked(int allow);

#ifdef __cplusplus
}
#endif
#endif
