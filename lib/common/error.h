/* Internal error helpers: set the thread's message and return or jump. */
#ifndef TDE_LIB_ERROR_H
#define TDE_LIB_ERROR_H

#include "tde/common.h"

/* Sets the calling thread's error message (printf-style) and returns @p st. */
tde_status tde_error_set(tde_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the calling thread's error message. */
void tde_error_clear(void);

/* Sends a message to the host's log callback, if any. Never pass key bytes. */
void tde_log(tde_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Return early on error. */
#define TDE_RET(expr)                                                                              \
    do {                                                                                           \
        tde_status tde_ret_st_ = (expr);                                                           \
        if (tde_ret_st_ != TDE_OK)                                                                 \
            return tde_ret_st_;                                                                    \
    } while (0)

/* Store the status in `st` and jump to the function's single `err:` label on error. */
#define TDE_ERR(expr)                                                                              \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != TDE_OK)                                                                          \
            goto err;                                                                              \
    } while (0)

/* Check a condition; on failure set the message, store the code in `st` and jump to `err:`. */
#define TDE_ENSURE(cond, code, ...)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            st = tde_error_set((code), __VA_ARGS__);                                               \
            goto err;                                                                              \
        }                                                                                          \
    } while (0)

#endif
