/* The key manager's metrics in Prometheus text exposition format (version 0.0.4). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tde/keymgr.h"

typedef struct metrics_buf {
    char *s;
    size_t len, cap;
    bool oom;
} metrics_buf;

static void metrics_printf(metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_printf(metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* One metric without labels: HELP, TYPE and the sample. */
static void
metrics_one(metrics_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                   (unsigned long long)v);
}

static void
metrics_seconds(metrics_buf *b, const char *name, const char *help, uint64_t ns)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu.%09llu\n", name, help, name, name,
                   (unsigned long long)(ns / 1000000000u), (unsigned long long)(ns % 1000000000u));
}

tde_status
tde_keymgr_metrics_text(tde_keymgr *km, char **out)
{
    tde_keymgr_metrics m = {.version = TDE_KEYMGR_METRICS_VERSION};
    metrics_buf b = {0};
    const char *method;

    if (out == NULL || km == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "key manager metrics: NULL argument");
    *out = NULL;
    TDE_RET(tde_keymgr_metrics_get(km, &m));
    b.cap = 4096;
    b.s = malloc(b.cap);
    if (b.s == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "key manager metrics: out of memory");
    b.s[0] = '\0';
    method = tde_method_name(m.method);

    metrics_one(&b, "tde_encryption_initialized", "gauge",
                "1 when new files are encrypted (the current method is not plaintext).",
                m.encryption_initialized);
    metrics_one(&b, "tde_enforce", "gauge",
                "1 when files missing from the file dictionary are errors, not plaintext.",
                m.enforce);
    metrics_printf(&b,
                   "# HELP tde_method_info The current data key's encryption method.\n"
                   "# TYPE tde_method_info gauge\n"
                   "tde_method_info{method=\"%s\"} 1\n",
                   method ? method : "unknown");
    metrics_one(&b, "tde_current_key_id", "gauge", "Id of the current data key.", m.current_key_id);
    metrics_one(&b, "tde_current_key_created_timestamp_seconds", "gauge",
                "Creation time of the current data key, seconds since the epoch.",
                m.current_key_created);
    metrics_one(&b, "tde_data_keys", "gauge", "Data keys in the key dictionary.", m.data_keys);
    metrics_one(&b, "tde_encrypted_files", "gauge", "Entries in the file dictionary.",
                m.encrypted_files);
    metrics_printf(&b,
                   "# HELP tde_metadata_bytes Size of the key manager's metadata files.\n"
                   "# TYPE tde_metadata_bytes gauge\n"
                   "tde_metadata_bytes{file=\"key_dict\"} %llu\n"
                   "tde_metadata_bytes{file=\"file_dict_snapshot\"} %llu\n"
                   "tde_metadata_bytes{file=\"file_dict_log\"} %llu\n",
                   (unsigned long long)m.key_dict_bytes,
                   (unsigned long long)m.file_dict_snapshot_bytes,
                   (unsigned long long)m.file_dict_log_bytes);
    metrics_one(&b, "tde_metadata_reads_total", "counter", "Metadata lookups by this handle.",
                m.meta_reads);
    metrics_seconds(&b, "tde_metadata_read_seconds_total", "Time spent in metadata lookups.",
                    m.meta_read_ns);
    metrics_one(&b, "tde_metadata_writes_total", "counter",
                "Durable metadata changes by this handle.", m.meta_writes);
    metrics_seconds(&b, "tde_metadata_write_seconds_total",
                    "Time spent making metadata changes durable.", m.meta_write_ns);
    metrics_one(&b, "tde_data_key_rotations_total", "counter",
                "Data-key rotations done by this handle.", m.rotations);
    metrics_one(&b, "tde_data_key_rotation_failures_total", "counter",
                "Failed data-key rotation attempts.", m.rotation_failures);
    metrics_one(&b, "tde_last_rotation_timestamp_seconds", "gauge",
                "Time of the last data-key rotation by this handle, 0 if none.",
                m.last_rotation_time);
    metrics_one(&b, "tde_data_keys_removed_total", "counter",
                "Unused old data keys removed by this handle.", m.keys_removed);
    metrics_one(&b, "tde_plaintext_lookups_total", "counter",
                "Lookups of files missing from the dictionary (treated as plaintext).",
                m.plaintext_lookups);
    if (b.oom) {
        free(b.s);
        return tde_error_set(TDE_ERR_NOMEM, "key manager metrics: out of memory");
    }
    *out = b.s;
    return TDE_OK;
}
