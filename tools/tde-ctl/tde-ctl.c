/*
 * tde-ctl: libtde's command-line tool. Makes master-key files and seals or
 * opens files and pipes with the envelope stream format.
 *
 * Threat model: `open` must never leave partial plaintext behind that looks
 * complete. To a file, it writes a 0600 temporary file beside the target and
 * renames it into place only after the final segment verified; to stdout it
 * cannot take back what it wrote, so it exits non-zero and says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tde-ctl.h"
#include "tde/envelope.h"

static const char usage_text[] =
    "Usage: tde-ctl COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Master keys and envelope encryption with libtde.\n"
    "\n"
    "Commands:\n"
    "  gen-master-key PATH   write a new random master key file (TiKV format, mode 0600)\n"
    "  seal [IN]             encrypt IN (or stdin) as a sealed stream\n"
    "  open [IN]             decrypt and verify a sealed stream\n"
    "  rewrap [IN]           re-wrap a sealed stream's data key under a new master key\n"
    "  key-id                print the provider and key id of a master key\n"
    "\n"
    "Key-manager directories (of a database using libtde):\n"
    "  status DIR            method, current key and its age, master key, counts, sizes\n"
    "  dump DIR              the key and file dictionaries (table or --json; --show-keys)\n"
    "  verify DIR            check dictionaries, files on disk and keys (exit 0 or 1)\n"
    "  is-encrypted DIR FILE exit 0 when FILE is encrypted, 8 when plaintext\n"
    "  metrics DIR           the metrics in Prometheus text format\n"
    "  cat DIR FILE          decrypt one data file to stdout\n"
    "  rotate-data-key DIR   make a new current data key (process stopped)\n"
    "  rotate-master-key DIR --new URI   re-wrap the data keys (process stopped)\n"
    "  gc DIR                list (or --apply: remove) entries of files gone from disk\n"
    "  backup-metadata DIR DEST   copy the key manager's files to a new directory\n"
    "  salvage DIR DEST      rebuild a damaged key-manager directory as a new one\n"
    "  retire-key DIR KEYID --db DBPATH   rewrite a stopped RocksDB's files off a key\n"
    "  rewrite DIR --db DBPATH            rewrite a stopped RocksDB's files not under the\n"
    "                        current key (plaintext ones too)\n"
    "  help [COMMAND]        show this text or a command's help\n"
    "\n"
    "Run 'tde-ctl COMMAND --help' for a command's options.\n"
    "\n"
    "Master keys are named by URI, e.g. file:///etc/tde/master.key\n"
    "(see docs/providers.md and docs/formats.md). The DIR commands take\n"
    "--master-key URI and --root NAME=PATH as the database was opened with\n"
    "(see docs/operations.md).\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  any other error (I/O, out of memory, ...)\n"
    "  2  usage error (unknown command or option, missing or malformed argument)\n"
    "  3  authentication failed: wrong master key or context, or tampered data\n"
    "  4  input (or key file) corrupt, truncated or of an unsupported version\n"
    "  5  the output exists already (use --force where offered)\n"
    "  6  the master key's provider could not be reached\n"
    "  7  another process holds the key-manager directory (stop it first)\n"
    "  8  is-encrypted: the file is plaintext\n"
    "  9  salvage: the new directory was written, but something was lost\n"
    "  10 retire-key, rewrite: this tde-ctl was built without the RocksDB adapter\n";

static const char gen_help[] =
    "Usage: tde-ctl gen-master-key PATH\n"
    "\n"
    "Writes a new random 256-bit master key to PATH as 64 hex digits and a\n"
    "newline (TiKV's key-file format), created with mode 0600 and fsynced.\n"
    "Never overwrites: exits 5 when PATH exists. Use it as file:///abs/PATH.\n";

static const char seal_help[] =
    "Usage: tde-ctl seal --key URI [--context TEXT] [--segment-size BYTES]\n"
    "                    [-o OUT] [--force] [--quiet] [IN]\n"
    "\n"
    "Encrypts IN (default or '-': stdin) under a fresh data key wrapped by the\n"
    "master key URI, as a sealed stream of authenticated segments, to OUT\n"
    "(default or '-': stdout). Memory use stays small whatever the input size.\n"
    "\n"
    "  -k, --key URI           master key, e.g. file:///etc/tde/master.key\n"
    "  -c, --context TEXT      bind TEXT as additional data; open needs the same\n"
    "  -s, --segment-size N    plaintext bytes per segment (default 65536)\n"
    "  -o, --output OUT        write to OUT (via a temporary file and rename)\n"
    "  -f, --force             replace OUT if it exists\n"
    "  -q, --quiet             no progress bar\n";

static const char open_help[] =
    "Usage: tde-ctl open --key URI [--previous-key URI] [--context TEXT]\n"
    "                    [-o OUT] [--force] [--quiet] [IN]\n"
    "\n"
    "Decrypts and verifies a sealed stream from IN (default or '-': stdin) to\n"
    "OUT (default or '-': stdout). With -o, OUT appears only after the whole\n"
    "stream verified; on stdout, a failure exits non-zero and the plaintext\n"
    "already written must be discarded.\n"
    "\n"
    "  -k, --key URI           current master key\n"
    "  -p, --previous-key URI  tried when the stream was wrapped by it (rotation)\n"
    "  -c, --context TEXT      the context given to seal\n"
    "  -o, --output OUT        write to OUT (via a temporary file and rename)\n"
    "  -f, --force             replace OUT if it exists\n"
    "  -q, --quiet             no progress bar\n";

static const char rewrap_help[] =
    "Usage: tde-ctl rewrap --key URI [--previous-key URI] --new-key URI\n"
    "                      [--context TEXT] [-o OUT] [--force] [IN]\n"
    "\n"
    "Re-wraps a sealed stream's data key under the master key --new-key. The\n"
    "encrypted segments are copied unchanged (not decrypted).\n"
    "\n"
    "  -k, --key URI           current master key\n"
    "  -p, --previous-key URI  tried when the stream was wrapped by it\n"
    "  -n, --new-key URI       master key to wrap the data key with\n"
    "  -c, --context TEXT      the context given to seal\n"
    "  -o, --output OUT        write to OUT (via a temporary file and rename)\n"
    "  -f, --force             replace OUT if it exists\n";

static const char keyid_help[] = "Usage: tde-ctl key-id --key URI\n"
                                 "\n"
                                 "Prints the master key's provider and key id (the id stored\n"
                                 "in every record it wraps; never the key itself).\n";

void
say(const char *fmt, ...)
{
    va_list ap;
    fputs("tde-ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
on_log(tde_log_level level, const char *msg, void *arg)
{
    (void)arg;
    if (level <= TDE_LOG_WARN)
        say("%s: %s", level == TDE_LOG_ERROR ? "error" : "warning", msg);
    else if (level == TDE_LOG_INFO)
        say("note: %s", msg);
}

int
exit_code(tde_status st)
{
    switch (st) {
    case TDE_OK: return EXIT_OK;
    case TDE_ERR_INVALID_ARG: return EXIT_USAGE;
    case TDE_ERR_AUTH: return EXIT_AUTH;
    case TDE_ERR_CORRUPT:
    case TDE_ERR_UNSUPPORTED: return EXIT_CORRUPT;
    case TDE_ERR_EXISTS: return EXIT_EXISTS;
    case TDE_ERR_UNAVAILABLE:
    case TDE_ERR_TIMEOUT: return EXIT_UNAVAILABLE;
    default: return EXIT_ERROR;
    }
}

int
fail(const char *cmd, tde_status st)
{
    say("%s: %s (%s)", cmd, tde_last_error(), tde_status_str(st));
    return exit_code(st);
}

/* ---- progress-reporting input ---- */

typedef struct input {
    int fd;
    uint64_t done, total; /* total 0: unknown */
    int progress;         /* draw a bar on stderr */
    time_t last_draw;
    const char *verb;
} input;

static void
draw(input *in, int final)
{
    time_t now = time(NULL);
    if (!in->progress || (!final && now == in->last_draw))
        return;
    in->last_draw = now;
    if (in->total > 0) {
        unsigned pct = (unsigned)(in->done * 100 / in->total);
        char bar[41];
        memset(bar, '#', pct * 40 / 100);
        memset(bar + pct * 40 / 100, '.', 40 - pct * 40 / 100);
        bar[40] = '\0';
        fprintf(stderr, "\r%s [%s] %3u%% %llu/%llu MiB", in->verb, bar, pct,
                (unsigned long long)(in->done >> 20), (unsigned long long)(in->total >> 20));
    } else {
        fprintf(stderr, "\r%s %llu MiB", in->verb, (unsigned long long)(in->done >> 20));
    }
    if (final)
        fputc('\n', stderr);
}

static tde_status
read_input(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    input *in = arg;
    ssize_t n;
    do
        n = read(in->fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        say("read: %s", strerror(errno));
        return TDE_ERR_IO;
    }
    *got = (size_t)n;
    in->done += (uint64_t)n;
    draw(in, 0);
    return TDE_OK;
}

static tde_status
write_output(void *arg, const uint8_t *buf, size_t len)
{
    int fd = *(int *)arg;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            say("write: %s", n < 0 ? strerror(errno) : "wrote nothing");
            return TDE_ERR_IO;
        }
        buf += n;
        len -= (size_t)n;
    }
    return TDE_OK;
}

/* Opens IN ("-" or NULL: stdin) and decides whether to draw progress. */
static int
open_input(const char *path, int quiet, const char *verb, input *in)
{
    struct stat sb;
    memset(in, 0, sizeof(*in));
    in->verb = verb;
    in->fd =
        (path == NULL || strcmp(path, "-") == 0) ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0) {
        say("%s: %s", path, strerror(errno));
        return EXIT_ERROR;
    }
    if (fstat(in->fd, &sb) == 0 && S_ISREG(sb.st_mode))
        in->total = (uint64_t)sb.st_size;
    /* A bar only on a terminal, and only for large or unknown-size inputs. */
    in->progress = !quiet && isatty(STDERR_FILENO) && (in->total == 0 || in->total >= (16u << 20));
    return EXIT_OK;
}

/* ---- output: stdout, or a temporary file renamed into place on success ---- */

typedef struct output {
    int fd;
    const char *path; /* NULL: stdout */
    char tmp[4096];
    int force;
} output;

static int
open_output(const char *path, int force, output *out)
{
    memset(out, 0, sizeof(*out));
    out->force = force;
    if (path == NULL || strcmp(path, "-") == 0) {
        out->fd = STDOUT_FILENO;
        return EXIT_OK;
    }
    out->path = path;
    if (!force && access(path, F_OK) == 0) {
        say("%s exists already (use --force to replace it)", path);
        return EXIT_EXISTS;
    }
    if (snprintf(out->tmp, sizeof(out->tmp), "%s.tde-tmp.XXXXXX", path) >= (int)sizeof(out->tmp)) {
        say("%s: path too long", path);
        return EXIT_USAGE;
    }
    out->fd = mkstemp(out->tmp); /* mode 0600 */
    if (out->fd < 0) {
        say("%s: cannot create a temporary file: %s", path, strerror(errno));
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

/* Makes the output durable and visible; with @p ok 0, removes the temporary file. */
static int
close_output(output *out, int ok)
{
    int rc = EXIT_OK;
    if (out->path == NULL)
        return EXIT_OK;
    if (ok && fsync(out->fd) != 0) {
        say("%s: fsync: %s", out->path, strerror(errno));
        ok = 0, rc = EXIT_ERROR;
    }
    close(out->fd);
    if (ok) {
        /* link() refuses to replace; rename() replaces, only with --force. */
        int r = out->force ? rename(out->tmp, out->path) : link(out->tmp, out->path);
        if (r != 0) {
            say("%s: %s", out->path,
                errno == EEXIST ? "exists already (use --force to replace it)" : strerror(errno));
            rc = errno == EEXIST ? EXIT_EXISTS : EXIT_ERROR;
            ok = 0;
        }
    }
    if (!ok || !out->force)
        unlink(out->tmp);
    if (ok) {
        char dir[4096];
        int dfd;
        snprintf(dir, sizeof(dir), "%s", out->path);
        dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            say("%s: fsync of its directory: %s", out->path, strerror(errno));
            rc = EXIT_ERROR;
        }
        if (dfd >= 0)
            close(dfd);
    }
    return rc;
}

/* ---- commands ---- */

typedef struct args {
    const char *key, *previous, *new_key, *context, *output, *input;
    unsigned long segment_size;
    int force, quiet, help;
} args;

static int
parse_args(int argc, char **argv, const char *shortopts, args *a, const char *help)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"previous-key", required_argument, NULL, 'p'},
        {"new-key", required_argument, NULL, 'n'},
        {"context", required_argument, NULL, 'c'},
        {"segment-size", required_argument, NULL, 's'},
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    memset(a, 0, sizeof(*a));
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        char *end;
        if (c != '?' && c != 'h' && c != ':' && strchr(shortopts, c) == NULL)
            c = '?'; /* a long option this command does not take */
        switch (c) {
        case 'k': a->key = optarg; break;
        case 'p': a->previous = optarg; break;
        case 'n': a->new_key = optarg; break;
        case 'c': a->context = optarg; break;
        case 'o': a->output = optarg; break;
        case 'f': a->force = 1; break;
        case 'q': a->quiet = 1; break;
        case 'h': a->help = 1; break;
        case 's':
            errno = 0;
            a->segment_size = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || a->segment_size == 0 ||
                a->segment_size > TDE_ENVELOPE_SEGMENT_MAX) {
                say("%s: --segment-size must be 1..%u", argv[0], TDE_ENVELOPE_SEGMENT_MAX);
                return EXIT_USAGE;
            }
            break;
        case ':': say("%s: option %s needs a value", argv[0], argv[optind - 1]); return EXIT_USAGE;
        default:
            say("%s: unknown option %s (see 'tde-ctl %s --help')", argv[0], argv[optind - 1],
                argv[0]);
            return EXIT_USAGE;
        }
    }
    if (a->help) {
        fputs(help, stdout);
        return -1;
    }
    if (optind < argc)
        a->input = argv[optind++];
    if (optind < argc) {
        say("%s: unexpected argument %s", argv[0], argv[optind]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int
open_key(const char *cmd, const char *opt, const char *uri, tde_masterkey **mk)
{
    tde_status st;
    if (uri == NULL) {
        say("%s: %s URI is required (see 'tde-ctl %s --help')", cmd, opt, cmd);
        return EXIT_USAGE;
    }
    st = tde_masterkey_open(mk, uri);
    return st == TDE_OK ? EXIT_OK : fail(cmd, st);
}

static void
set_context(tde_envelope_options *o, const args *a)
{
    if (a->context != NULL) {
        o->context = (const uint8_t *)a->context;
        o->context_len = strlen(a->context);
    }
}

static int
cmd_gen(int argc, char **argv)
{
    tde_status st;
    args a;
    int rc = parse_args(argc, argv, "+:h", &a, gen_help);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    if (a.input == NULL) {
        say("gen-master-key: PATH is required (see 'tde-ctl gen-master-key --help')");
        return EXIT_USAGE;
    }
    st = tde_keyfile_create(a.input);
    if (st != TDE_OK)
        return fail("gen-master-key", st);
    {
        char *abs = realpath(a.input, NULL);
        say("wrote %s (mode 0600); its URI is file://%s", a.input, abs ? abs : a.input);
        free(abs);
    }
    return EXIT_OK;
}

/* seal, open and rewrap: one stream from input to output. */
static int
cmd_stream(int argc, char **argv)
{
    const char *cmd = argv[0];
    int is_seal = strcmp(cmd, "seal") == 0, is_open = strcmp(cmd, "open") == 0;
    const char *help = is_seal ? seal_help : is_open ? open_help : rewrap_help;
    const char *opts = is_seal ? "+:k:c:s:o:fqh" : is_open ? "+:k:p:c:o:fqh" : "+:k:p:n:c:o:fh";
    tde_envelope_options o = TDE_ENVELOPE_OPTIONS_INIT;
    tde_masterkey *mk = NULL, *prev = NULL, *target = NULL;
    const tde_masterkey *used = NULL;
    tde_status st = TDE_OK;
    input in = {.fd = -1};
    output out;
    args a;
    int rc = parse_args(argc, argv, opts, &a, help), out_open = 0;

    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    set_context(&o, &a);
    o.segment_size = (uint32_t)a.segment_size;
    if ((rc = open_key(cmd, "--key", a.key, &mk)) != EXIT_OK)
        goto done;
    if (a.previous != NULL && (rc = open_key(cmd, "--previous-key", a.previous, &prev)) != EXIT_OK)
        goto done;
    if (!is_seal && !is_open && (rc = open_key(cmd, "--new-key", a.new_key, &target)) != EXIT_OK)
        goto done;
    if ((rc = open_input(a.input, a.quiet,
                         is_seal   ? "sealing"
                         : is_open ? "opening"
                                   : "rewrapping",
                         &in)) != EXIT_OK)
        goto done;
    if ((rc = open_output(a.output, a.force, &out)) != EXIT_OK)
        goto done;
    out_open = 1;
    if (is_seal)
        st = tde_envelope_seal_stream(mk, &o, read_input, &in, write_output, &out.fd);
    else if (is_open)
        st = tde_envelope_open_stream(mk, prev, &o, read_input, &in, write_output, &out.fd, &used);
    else
        st = tde_envelope_rewrap_stream(mk, prev, target, &o, read_input, &in, write_output,
                                        &out.fd, &used);
    if (st == TDE_OK)
        draw(&in, 1);
    else if (in.progress)
        fputc('\n', stderr);
    rc = close_output(&out, st == TDE_OK);
    out_open = 0;
    if (st != TDE_OK) {
        rc = fail(cmd, st);
        if (is_open && out.path == NULL)
            say("open: the plaintext already written to stdout is incomplete or unverified: "
                "discard it");
        else if (out.path != NULL)
            say("%s: nothing written to %s", cmd, out.path);
    } else if (used != NULL && used == prev) {
        say("%s: used the previous master key (%s %s)", cmd, tde_masterkey_provider_name(prev),
            tde_masterkey_key_id(prev));
    }
done:
    if (out_open)
        close_output(&out, 0);
    if (in.fd > 2)
        close(in.fd);
    tde_masterkey_free(target);
    tde_masterkey_free(prev);
    tde_masterkey_free(mk);
    return rc;
}

static int
cmd_keyid(int argc, char **argv)
{
    tde_masterkey *mk = NULL;
    args a;
    int rc = parse_args(argc, argv, "+:k:h", &a, keyid_help);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    if (a.input != NULL) {
        say("key-id: unexpected argument %s", a.input);
        return EXIT_USAGE;
    }
    if ((rc = open_key("key-id", "--key", a.key, &mk)) != EXIT_OK)
        return rc;
    printf("%s %s\n", tde_masterkey_provider_name(mk), tde_masterkey_key_id(mk));
    tde_masterkey_free(mk);
    return EXIT_OK;
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        const char *help;
    } cmds[] = {
        {"gen-master-key", cmd_gen, gen_help}, {"seal", cmd_stream, seal_help},
        {"open", cmd_stream, open_help},       {"rewrap", cmd_stream, rewrap_help},
        {"key-id", cmd_keyid, keyid_help},
    };
    const char *cmd = argc > 1 ? argv[1] : NULL;

    tde_set_log_callback(on_log, NULL);
    if (cmd == NULL) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        (strcmp(cmd, "help") == 0 && argc == 2)) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("tde-ctl (libtde) %s\n", tde_version());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, "help") == 0 && argc == 3 && strcmp(argv[2], cmds[i].name) == 0) {
            fputs(cmds[i].help, stdout);
            return EXIT_OK;
        }
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    }
    for (size_t i = 0; keymgr_cmd_names[i] != NULL; i++) {
        if (strcmp(cmd, "help") == 0 && argc == 3 && strcmp(argv[2], keymgr_cmd_names[i]) == 0) {
            fputs(keymgr_cmd_help(keymgr_cmd_names[i]), stdout);
            return EXIT_OK;
        }
        if (strcmp(cmd, keymgr_cmd_names[i]) == 0)
            return cmd_keymgr(argc - 1, argv + 1);
    }
    say("unknown command '%s' (see 'tde-ctl --help')",
        strcmp(cmd, "help") == 0 && argc > 2 ? argv[2] : cmd);
    return EXIT_USAGE;
}
