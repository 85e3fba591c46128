/*
 * Master-key URI parser (grammar in docs/formats.md, "Master-key URIs").
 *
 * URIs come from config files and command lines, so every malformed input is
 * rejected with what is wrong and the 0-based byte position. A URI never holds
 * credentials: userinfo ("user@host") is refused outright.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tde/sys/masterkey_provider.h"

#define URI_MAX_LEN 4096
#define SCHEME_MAX_LEN 32

typedef struct uri_param {
    char *name;
    char *value;
} uri_param;

struct tde_uri {
    char *text;
    char *scheme;
    char *host;
    int port;
    char *path;
    uri_param *params;
    size_t n_params;
};

static int
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_unreserved(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 sub-delims minus '&' and '=', which separate query parameters. */
static int
is_sub_delim(char c)
{
    return c == '!' || c == '$' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' ||
           c == ',' || c == ';';
}

static int
hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static tde_status
malformed(const char *text, size_t pos, const char *what)
{
    return tde_error_set(TDE_ERR_INVALID_ARG, "master-key URI \"%.200s\": %s at position %zu", text,
                         what, pos);
}

/* Which characters a component allows besides unreserved and percent-encoded ones. */
enum component { C_PATH, C_QUERY_NAME, C_QUERY_VALUE };

static int
allowed(enum component comp, char c)
{
    if (is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@')
        return 1;
    switch (comp) {
    case C_PATH: return c == '/';
    case C_QUERY_NAME: return c == '/' || c == '?';
    case C_QUERY_VALUE: return c == '/' || c == '?' || c == '=';
    }
    return 0;
}

/*
 * Copies text[start, end) percent-decoded into a new string, checking every
 * character against @p comp. Rejects "%00" (it would cut a C string short).
 */
static tde_status
decode(const char *text, size_t start, size_t end, enum component comp, const char *name,
       char **out)
{
    char *s = malloc(end - start + 1), *w = s;
    char what[96];

    if (s == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "master-key URI: out of memory");
    for (size_t i = start; i < end; i++) {
        char c = text[i];
        if (c == '%') {
            int hi = i + 1 < end ? hex_value(text[i + 1]) : -1;
            int lo = i + 2 < end ? hex_value(text[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(s);
                snprintf(what, sizeof(what), "'%%' not followed by two hex digits in the %s", name);
                return malformed(text, i, what);
            }
            if (hi == 0 && lo == 0) {
                free(s);
                snprintf(what, sizeof(what), "%%00 (NUL) in the %s", name);
                return malformed(text, i, what);
            }
            *w++ = (char)(hi << 4 | lo);
            i += 2;
        } else if (allowed(comp, c)) {
            *w++ = c;
        } else {
            free(s);
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                snprintf(what, sizeof(what), "byte 0x%02x not allowed in the %s",
                         (unsigned)(unsigned char)c, name);
            else
                snprintf(what, sizeof(what), "character '%c' not allowed in the %s", c, name);
            return malformed(text, i, what);
        }
    }
    *w = '\0';
    *out = s;
    return TDE_OK;
}

static tde_status
parse_scheme(tde_uri *u, const char *text, size_t *pos)
{
    size_t i = 0;

    if (!is_alpha(text[0]))
        return malformed(text, 0, "scheme must start with a letter");
    while (is_alpha(text[i]) || is_digit(text[i]) || text[i] == '+' || text[i] == '-' ||
           text[i] == '.')
        i++;
    if (i > SCHEME_MAX_LEN)
        return malformed(text, SCHEME_MAX_LEN, "scheme longer than 32 characters");
    if (strncmp(text + i, "://", 3) != 0)
        return malformed(text, i, "expected \"://\" after the scheme");
    u->scheme = strndup(text, i);
    if (u->scheme == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "master-key URI: out of memory");
    for (size_t k = 0; k < i; k++)
        if (u->scheme[k] >= 'A' && u->scheme[k] <= 'Z')
            u->scheme[k] = (char)(u->scheme[k] - 'A' + 'a');
    *pos = i + 3;
    return TDE_OK;
}

static tde_status
parse_port(tde_uri *u, const char *text, size_t start, size_t end)
{
    long port = 0;

    if (start == end)
        return malformed(text, start, "empty port after ':'");
    for (size_t i = start; i < end; i++) {
        if (!is_digit(text[i]))
            return malformed(text, i, "non-digit in the port");
        port = port * 10 + (text[i] - '0');
        if (port > 65535)
            return malformed(text, start, "port above 65535");
    }
    if (port == 0)
        return malformed(text, start, "port 0");
    u->port = (int)port;
    return TDE_OK;
}

/* authority = [ host [ ":" port ] ], host = reg-name / "[" IPv6 "]". No userinfo. */
static tde_status
parse_authority(tde_uri *u, const char *text, size_t start, size_t end)
{
    size_t i = start, host_end;

    if (i < end && text[i] == '[') {
        i++;
        while (i < end && (hex_value(text[i]) >= 0 || text[i] == ':' || text[i] == '.'))
            i++;
        if (i >= end || text[i] != ']')
            return malformed(text, i, "IPv6 host not closed by ']' (only hex digits, ':', '.')");
        if (i == start + 1)
            return malformed(text, i, "empty IPv6 host");
        host_end = ++i;
    } else {
        while (i < end && text[i] != ':') {
            if (text[i] == '@')
                return malformed(text, i,
                                 "userinfo ('@') in the host: credentials never go in a URI");
            if (!is_unreserved(text[i]))
                return malformed(text, i, "character not allowed in the host");
            i++;
        }
        host_end = i;
    }
    u->host = strndup(text + start, host_end - start);
    if (u->host == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "master-key URI: out of memory");
    if (i < end) {
        if (text[i] != ':')
            return malformed(text, i, "expected ':' or '/' after the host");
        if (host_end == start)
            return malformed(text, i, "port without a host");
        return parse_port(u, text, i + 1, end);
    }
    return TDE_OK;
}

static tde_status
parse_query(tde_uri *u, const char *text, size_t start, size_t end)
{
    size_t count = 1;

    for (size_t i = start; i < end; i++)
        count += text[i] == '&';
    u->params = calloc(count, sizeof(*u->params));
    if (u->params == NULL)
        return tde_error_set(TDE_ERR_NOMEM, "master-key URI: out of memory");
    for (size_t i = start; i <= end;) {
        size_t amp = i, eq;
        uri_param *p = &u->params[u->n_params];
        while (amp < end && text[amp] != '&')
            amp++;
        eq = i;
        while (eq < amp && text[eq] != '=')
            eq++;
        if (eq == i)
            return malformed(text, i, "empty query parameter name");
        TDE_RET(decode(text, i, eq, C_QUERY_NAME, "query parameter name", &p->name));
        u->n_params++;
        TDE_RET(decode(text, eq < amp ? eq + 1 : amp, amp, C_QUERY_VALUE, "query parameter value",
                       &p->value));
        for (size_t k = 0; k + 1 < u->n_params; k++)
            if (strcmp(u->params[k].name, p->name) == 0)
                return malformed(text, i, "repeated query parameter");
        i = amp + 1;
    }
    return TDE_OK;
}

static tde_status
parse(tde_uri *u, const char *text)
{
    size_t len = strlen(text), pos = 0, auth_end, path_end;

    if (len == 0)
        return malformed(text, 0, "empty URI");
    if (len > URI_MAX_LEN)
        return malformed(text, URI_MAX_LEN, "URI longer than 4096 bytes");
    TDE_RET(parse_scheme(u, text, &pos));
    auth_end = pos;
    while (auth_end < len && text[auth_end] != '/' && text[auth_end] != '?' &&
           text[auth_end] != '#')
        auth_end++;
    TDE_RET(parse_authority(u, text, pos, auth_end));
    path_end = auth_end;
    while (path_end < len && text[path_end] != '?' && text[path_end] != '#')
        path_end++;
    TDE_RET(decode(text, auth_end, path_end, C_PATH, "path", &u->path));
    if (path_end < len && text[path_end] == '#')
        return malformed(text, path_end, "fragment ('#') not allowed");
    if (path_end < len) {
        size_t q_end = path_end + 1;
        while (q_end < len && text[q_end] != '#')
            q_end++;
        if (q_end < len)
            return malformed(text, q_end, "fragment ('#') not allowed");
        TDE_RET(parse_query(u, text, path_end + 1, len));
    }
    return TDE_OK;
}

tde_status
tde_uri_parse(tde_uri **out, const char *text)
{
    tde_status st;
    tde_uri *u;

    if (out == NULL || text == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "tde_uri_parse: NULL argument");
    *out = NULL;
    u = calloc(1, sizeof(*u));
    if (u == NULL || (u->text = strdup(text)) == NULL) {
        free(u);
        return tde_error_set(TDE_ERR_NOMEM, "master-key URI: out of memory");
    }
    st = parse(u, text);
    if (st != TDE_OK) {
        tde_uri_free(u);
        return st;
    }
    *out = u;
    return TDE_OK;
}

void
tde_uri_free(tde_uri *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n_params; i++) {
        free(u->params[i].name);
        free(u->params[i].value);
    }
    free(u->params);
    free(u->path);
    free(u->host);
    free(u->scheme);
    free(u->text);
    free(u);
}

const char *
tde_uri_scheme(const tde_uri *u)
{
    return u->scheme;
}

const char *
tde_uri_host(const tde_uri *u)
{
    return u->host;
}

int
tde_uri_port(const tde_uri *u)
{
    return u->port;
}

const char *
tde_uri_path(const tde_uri *u)
{
    return u->path;
}

const char *
tde_uri_param(const tde_uri *u, const char *name)
{
    for (size_t i = 0; i < u->n_params; i++)
        if (strcmp(u->params[i].name, name) == 0)
            return u->params[i].value;
    return NULL;
}

size_t
tde_uri_param_count(const tde_uri *u)
{
    return u->n_params;
}

void
tde_uri_param_at(const tde_uri *u, size_t i, const char **name, const char **value)
{
    *name = i < u->n_params ? u->params[i].name : NULL;
    *value = i < u->n_params ? u->params[i].value : NULL;
}

const char *
tde_uri_text(const tde_uri *u)
{
    return u->text;
}
