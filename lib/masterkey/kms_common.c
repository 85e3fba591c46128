/* HTTPS, retries, base64, credential files and the clock for the cloud KMS providers. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "masterkey/kms_common.h"

static time_t
system_clock(void)
{
    return time(NULL);
}

time_t (*kms_clock)(void) = system_clock;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct sink {
    char *buf;
    size_t len;
    int too_big;
} sink;

static size_t
on_data(char *data, size_t size, size_t n, void *userdata)
{
    sink *s = userdata;
    size_t add = size * n;
    if (s->len + add > KMS_MAX_REPLY) {
        s->too_big = 1;
        return 0;
    }
    char *grown = realloc(s->buf, s->len + add + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + s->len, data, add);
    s->buf = grown;
    s->len += add;
    s->buf[s->len] = '\0';
    return add;
}

tde_status
kms_http(const char *who, const char *method, const char *url, const char *const *headers,
         const char *body, size_t body_len, const kms_http_opts *o, kms_http_reply *r)
{
    tde_status st = TDE_OK;
    CURL *c = NULL;
    struct curl_slist *list = NULL;
    sink s = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    pthread_once(&curl_once, curl_init);
    TDE_ENSURE(curl_init_rc == CURLE_OK, TDE_ERR_INTERNAL, "%s: curl_global_init failed", who);
    c = curl_easy_init();
    TDE_ENSURE(c != NULL, TDE_ERR_NOMEM, "%s: curl_easy_init failed", who);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *next = curl_slist_append(list, headers[i]);
        TDE_ENSURE(next != NULL, TDE_ERR_NOMEM, "%s: out of memory", who);
        list = next;
    }
    /* curl would add these on its own; KMS requests are signed without them. */
    list = curl_slist_append(list, "Expect:");
    TDE_ENSURE(list != NULL, TDE_ERR_NOMEM, "%s: out of memory", who);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, o->allow_http ? "https,http" : "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    /* Verification is never turned off; a custom CA bundle may be added. */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libtde/" TDE_VERSION_STRING);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    } else if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    }

    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        TDE_ENSURE(!s.too_big, TDE_ERR_PROTOCOL, "%s: reply from %s is larger than %u bytes", who,
                   url, KMS_MAX_REPLY);
        TDE_ENSURE(rc != CURLE_OPERATION_TIMEDOUT, TDE_ERR_TIMEOUT, "%s: %s timed out: %s", who,
                   url, why);
        /* Not TDE_ERR_AUTH: that would claim the blob is not ours. */
        TDE_ENSURE(rc != CURLE_PEER_FAILED_VERIFICATION && rc != CURLE_SSL_CACERT_BADFILE,
                   TDE_ERR_UNAVAILABLE, "%s: TLS verification of %s failed (ca_file?): %s", who,
                   url, why);
        TDE_ENSURE(0, TDE_ERR_UNAVAILABLE, "%s: cannot reach %s: %s", who, url, why);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (s.buf == NULL) {
        s.buf = calloc(1, 1);
        TDE_ENSURE(s.buf != NULL, TDE_ERR_NOMEM, "%s: out of memory", who);
    }
    r->body = s.buf;
    r->len = s.len;
    s.buf = NULL;
err:
    free(s.buf);
    curl_slist_free_all(list);
    if (c != NULL)
        curl_easy_cleanup(c);
    return st;
}

void
kms_http_reply_free(kms_http_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

void
kms_backoff(const kms_retry *r, int attempt)
{
    long ceiling = r->base_ms;
    for (int i = 0; i < attempt && ceiling < r->cap_ms; i++)
        ceiling *= 2;
    if (ceiling > r->cap_ms)
        ceiling = r->cap_ms;
    uint32_t rnd = 0;
    /* Jitter needs no cryptographic quality; on failure sleep the full ceiling. */
    long ms = tde_random_bytes(&rnd, sizeof(rnd)) == TDE_OK ? (long)(rnd % (uint32_t)(ceiling + 1))
                                                            : ceiling;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
kms_b64_encode(const uint8_t *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = b64_chars[v >> 18 & 63];
        *o++ = b64_chars[v >> 12 & 63];
        *o++ = i + 1 < len ? b64_chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? b64_chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int
b64_value(char c)
{
    const char *p = c ? strchr(b64_chars, c) : NULL;
    return p != NULL ? (int)(p - b64_chars) : -1;
}

long
kms_b64_decode(const char *in, size_t in_len, uint8_t *out)
{
    size_t n = 0;
    if (in_len % 4 != 0)
        return -1;
    for (size_t i = 0; i < in_len; i += 4) {
        int last = i + 4 == in_len;
        int v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = b64_value(in[i + j]);
            if (v[j] < 0 && !(last && j >= 2 && in[i + j] == '='))
                return -1;
        }
        /* "x=y=" is not padding. */
        if (v[2] < 0 && v[3] >= 0)
            return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 | (uint32_t)(v[3] < 0 ? 0 : v[3]);
        size_t k = v[2] < 0 ? 1 : v[3] < 0 ? 2 : 3;
        if (out != NULL) {
            out[n] = (uint8_t)(w >> 16);
            if (k > 1)
                out[n + 1] = (uint8_t)(w >> 8);
            if (k > 2)
                out[n + 2] = (uint8_t)w;
        }
        n += k;
    }
    return (long)n;
}

tde_status
kms_b64_decode_secret(const char *in, size_t in_len, const char *what, tde_secret **out)
{
    long n = kms_b64_decode(in, in_len, NULL);
    if (n <= 0)
        return tde_error_set(TDE_ERR_PROTOCOL, "%s is not base64 or empty", what);
    TDE_RET(tde_secret_new(out, (size_t)n));
    (void)kms_b64_decode(in, in_len, tde_secret_data_mut(*out));
    return TDE_OK;
}

void
kms_creds_clear(kms_creds *c)
{
    free(c->id);
    tde_secret_free(c->secret);
    if (c->token != NULL)
        OPENSSL_cleanse(c->token, strlen(c->token));
    free(c->token);
    memset(c, 0, sizeof(*c));
}

const char *
kms_creds_secret(const kms_creds *c)
{
    return (const char *)tde_secret_data(c->secret);
}

tde_status
kms_creds_set(kms_creds *c, const char *id, const char *secret, const char *token, time_t expires,
              const char *source)
{
    kms_creds n = {0};
    tde_status st = TDE_OK;
    n.id = strdup(id);
    n.token = token != NULL && token[0] ? strdup(token) : NULL;
    TDE_ENSURE(n.id != NULL && (token == NULL || !token[0] || n.token != NULL), TDE_ERR_NOMEM,
               "credentials: out of memory");
    TDE_ERR(tde_secret_from(&n.secret, secret, strlen(secret) + 1));
    n.expires = expires;
    snprintf(n.source, sizeof(n.source), "%s", source);
    kms_creds_clear(c);
    *c = n;
    return TDE_OK;
err:
    kms_creds_clear(&n);
    return st;
}

static char *
trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

tde_status
kms_ini_read(const char *path, const char *section, const char *const *keys, char **values,
             size_t n)
{
    tde_status st = TDE_OK;
    char line[4096];
    int in_section = 0, found = 0;
    FILE *f = fopen(path, "r");

    for (size_t i = 0; i < n; i++)
        values[i] = NULL;
    if (f == NULL)
        return tde_error_set(TDE_ERR_NOT_FOUND, "credentials file %s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL) {
        char *l = trim(line);
        if (l[0] == '#' || l[0] == ';' || l[0] == '\0')
            continue;
        if (l[0] == '[') {
            char *end = strchr(l, ']');
            if (end != NULL)
                *end = '\0';
            in_section = strcmp(trim(l + 1), section) == 0;
            found |= in_section;
            continue;
        }
        char *eq = strchr(l, '=');
        if (!in_section || eq == NULL)
            continue;
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(k, keys[i]) == 0) {
                free(values[i]);
                values[i] = strdup(v);
                TDE_ENSURE(values[i] != NULL, TDE_ERR_NOMEM, "credentials file %s: out of memory",
                           path);
            }
        }
    }
    TDE_ENSURE(found, TDE_ERR_NOT_FOUND, "credentials file %s: no profile [%s]", path, section);
err:
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    if (st != TDE_OK)
        for (size_t i = 0; i < n; i++) {
            if (values[i] != NULL)
                OPENSSL_cleanse(values[i], strlen(values[i]));
            free(values[i]);
            values[i] = NULL;
        }
    return st;
}

time_t
kms_parse_iso8601(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return -1;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++)
            ;
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
        return -1;
    return timegm(&tm);
}
