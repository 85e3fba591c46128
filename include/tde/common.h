/**
 * @file common.h
 * @brief libtde's error model, logging hook, randomness and export macros.
 *
 * Every fallible call returns a tde_status. On failure, tde_last_error()
 * gives a message for the calling thread that names the file, key id or
 * provider involved. Messages never contain key bytes.
 */
#ifndef TDE_COMMON_H
#define TDE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TDE_BUILDING_LIBRARY)
#define TDE_API __attribute__((visibility("default")))
#else
#define TDE_API
#endif
#define TDE_MUST_USE __attribute__((warn_unused_result))

/** Status codes: 0 is success, every error is negative. The numbers are stable. */
typedef enum tde_status {
    TDE_OK = 0,
    TDE_ERR_INVALID_ARG = -1, /**< a caller passed something malformed */
    TDE_ERR_NOMEM = -2,       /**< allocation failed */
    TDE_ERR_IO = -3,          /**< a system call on a file failed */
    TDE_ERR_NOT_FOUND = -4,   /**< no such file, key or entry */
    TDE_ERR_EXISTS = -5,      /**< the thing to create exists already */
    TDE_ERR_AUTH = -6,        /**< authentication failed: wrong key or tampered data */
    TDE_ERR_CORRUPT = -7,     /**< stored data is damaged or malformed */
    TDE_ERR_UNSUPPORTED = -8, /**< unknown version, method or feature */
    TDE_ERR_UNAVAILABLE = -9, /**< a provider or server could not be reached */
    TDE_ERR_CRYPTO = -10,     /**< the crypto library failed (including randomness) */
    TDE_ERR_LOCKED = -11,     /**< another process or handle holds the resource */
    TDE_ERR_MEMLOCK = -12,    /**< mlock failed: raise RLIMIT_MEMLOCK or allow unlocked memory */
    TDE_ERR_TIMEOUT = -13,    /**< a network or lock wait timed out */
    TDE_ERR_PROTOCOL = -14,   /**< a peer sent a malformed or unexpected reply */
    TDE_ERR_STATE = -15,      /**< the call is not valid in this state (e.g. read-only) */
    TDE_ERR_INTERNAL = -16,   /**< a bug in libtde */
} tde_status;

/** The most negative status code; every code from TDE_OK down to it has a name. */
#define TDE_STATUS_MIN TDE_ERR_INTERNAL

/** The code's name, e.g. "TDE_ERR_AUTH". Never NULL; unknown codes give "TDE_ERR_UNKNOWN". */
TDE_API const char *tde_status_str(tde_status st);

/**
 * The message of the calling thread's most recent error. Borrowed: valid until
 * the thread's next libtde call. Empty string when there was none.
 */
TDE_API const char *tde_last_error(void);

/**
 * For libtde's adapters and host integrations: records @p msg (copied, truncated
 * to 1023 bytes; NULL: empty) as the calling thread's last error, the one
 * tde_last_error() returns, and returns @p st. @p msg may be tde_last_error().
 */
TDE_API tde_status tde_set_last_error(tde_status st, const char *msg);

/** Log levels passed to the host's callback. */
typedef enum tde_log_level {
    TDE_LOG_ERROR = 0,
    TDE_LOG_WARN = 1,
    TDE_LOG_INFO = 2,
    TDE_LOG_DEBUG = 3,
} tde_log_level;

/** A host's log sink. @p msg is borrowed for the duration of the call. May be called from any
 * thread. */
typedef void (*tde_log_fn)(tde_log_level level, const char *msg, void *userdata);

/**
 * Sets the process-wide log callback (NULL: discard everything; the default).
 * libtde never prints; this is its only output channel. Not thread-safe with
 * respect to concurrent logging: set it once at start-up.
 */
TDE_API void tde_set_log_callback(tde_log_fn fn, void *userdata);

/** Fills @p buf with @p len bytes from OpenSSL's RAND_bytes. Fails closed: TDE_ERR_CRYPTO. */
TDE_API TDE_MUST_USE tde_status tde_random_bytes(void *buf, size_t len);

/** Library version string, e.g. "0.1.0". */
TDE_API const char *tde_version(void);

#ifdef __cplusplus
}
#endif
#endif
