/* The error table, the thread-local message, and the log hook. */
#include <stdarg.h>
#include <stdio.h>

#include "common/error.h"

/* Room for an adapter's message wrapping one of libtde's (two paths and a reason). */
#define MESSAGE_MAX 1024

static _Thread_local char last_message[MESSAGE_MAX];

static tde_log_fn log_fn;
static void *log_userdata;

const char *
tde_status_str(tde_status st)
{
    switch (st) {
    case TDE_OK: return "TDE_OK";
    case TDE_ERR_INVALID_ARG: return "TDE_ERR_INVALID_ARG";
    case TDE_ERR_NOMEM: return "TDE_ERR_NOMEM";
    case TDE_ERR_IO: return "TDE_ERR_IO";
    case TDE_ERR_NOT_FOUND: return "TDE_ERR_NOT_FOUND";
    case TDE_ERR_EXISTS: return "TDE_ERR_EXISTS";
    case TDE_ERR_AUTH: return "TDE_ERR_AUTH";
    case TDE_ERR_CORRUPT: return "TDE_ERR_CORRUPT";
    case TDE_ERR_UNSUPPORTED: return "TDE_ERR_UNSUPPORTED";
    case TDE_ERR_UNAVAILABLE: return "TDE_ERR_UNAVAILABLE";
    case TDE_ERR_CRYPTO: return "TDE_ERR_CRYPTO";
    case TDE_ERR_LOCKED: return "TDE_ERR_LOCKED";
    case TDE_ERR_MEMLOCK: return "TDE_ERR_MEMLOCK";
    case TDE_ERR_TIMEOUT: return "TDE_ERR_TIMEOUT";
    case TDE_ERR_PROTOCOL: return "TDE_ERR_PROTOCOL";
    case TDE_ERR_STATE: return "TDE_ERR_STATE";
    case TDE_ERR_INTERNAL: return "TDE_ERR_INTERNAL";
    }
    return "TDE_ERR_UNKNOWN";
}

const char *
tde_last_error(void)
{
    return last_message;
}

tde_status
tde_error_set(tde_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof(last_message), fmt, ap);
    va_end(ap);
    return st;
}

tde_status
tde_set_last_error(tde_status st, const char *msg)
{
    char copy[MESSAGE_MAX];

    /* msg may point into last_message: copy it before writing there. */
    snprintf(copy, sizeof(copy), "%s", msg != NULL ? msg : "");
    return tde_error_set(st, "%s", copy);
}

void
tde_error_clear(void)
{
    last_message[0] = '\0';
}

void
tde_set_log_callback(tde_log_fn fn, void *userdata)
{
    log_fn = fn;
    log_userdata = userdata;
}

void
tde_log(tde_log_level level, const char *fmt, ...)
{
    char msg[MESSAGE_MAX];
    va_list ap;

    if (log_fn == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_userdata);
}

const char *
tde_version(void)
{
    return TDE_VERSION_STRING;
}
