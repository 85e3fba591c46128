/*
 * tde-ctl's commands on a key-manager directory: inspection (status, dump,
 * verify, is-encrypted, metrics, cat) opens it read-only, so they run beside a
 * live database; rotate-data-key, rotate-master-key and gc --apply open it for
 * writing, which the key manager's lock refuses while another process holds it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "tde-ctl.h"
#include "tde/keymgr.h"
#include "tde/masterkey.h"

#define MAX_ROOTS 32
#define LOCK_FILE "keymgr.lock"
#define KEY_DICT "key.dict"

static const char common_opts[] =
    "  -k, --master-key URI    the current master key (also --key); or $TDE_MASTER_KEY\n"
    "  -p, --previous-key URI  the previous master key, during a master-key rotation\n"
    "  -r, --root NAME=PATH    a root the database names its files under, as configured\n"
    "                          in the host (repeat for more); default fs=/ (the RocksDB\n"
    "                          adapter's default)\n"
    "  -h, --help              this text\n";

static const struct {
    const char *name, *synopsis, *text;
} helps[] = {
    {"status", "status DIR [OPTIONS]",
     "Prints the current method and the cipher backend serving it, the current data key's id, age "
     "and next rotation\n"
     "(at the default period of 7 days), the master key's provider and id, the numbers\n"
     "of keys and files, the metadata sizes and whether a process holds DIR. Read-only.\n"},
    {"dump", "dump DIR [--file NAME] [--json] [--show-keys] [OPTIONS]",
     "Prints the key dictionary (id, method, created, current, files) and the file\n"
     "dictionary (name, key id, method, IV) as tables, or as one JSON object with\n"
     "--json. --file NAME (a stored name root/relative or a path) prints one entry.\n"
     "Key bytes are printed only with --show-keys (hex, a KEY column or \"key\"\n"
     "fields), which warns on stderr: whoever sees them can decrypt the data.\n"
     "Read-only.\n"},
    {"verify", "verify DIR [--data-dir PATH]... [--deep] [OPTIONS]",
     "Checks that every data key unwraps under the master key, every file entry names\n"
     "an existing key and an existing file, and reports every regular file on disk\n"
     "without an entry (plaintext). The disk walk covers each --data-dir, or else every\n"
     "root other than '/'. Prints a summary; exits 0 when no problem was found, 1\n"
     "otherwise. Plaintext files are reported, not counted as problems. Read-only.\n"
     "  --deep                  also decrypt the last 8 bytes of every encrypted .sst\n"
     "                          file and check RocksDB's table magic number: proves the\n"
     "                          key and IV actually fit the file\n"},
    {"is-encrypted", "is-encrypted DIR FILE [OPTIONS]",
     "Exits 0 and prints the method and key id when FILE has an entry (encrypted),\n"
     "exits 8 and prints 'plaintext' when it has none. Read-only.\n"},
    {"metrics", "metrics DIR [OPTIONS]",
     "Prints the key manager's metrics in Prometheus text format (what a host's\n"
     "/metrics endpoint gets from tde_keymgr_metrics_text()). Read-only; the\n"
     "per-handle counters are those of tde-ctl's own handle.\n"},
    {"cat", "cat DIR FILE [OPTIONS]",
     "Decrypts FILE (an encrypted LOG, OPTIONS or SST file) to stdout; a plaintext\n"
     "file is copied as is. Read-only.\n"},
    {"rotate-data-key", "rotate-data-key DIR [OPTIONS]",
     "Makes a new current data key; new files use it, existing files keep theirs.\n"
     "Run it while the database is stopped: exits 7 while another process holds DIR.\n"},
    {"rotate-master-key", "rotate-master-key DIR --new URI [OPTIONS]",
     "Re-wraps the key dictionary under the master key URI, durably; on failure\n"
     "nothing changes. --master-key (or --previous-key) must open the dictionary as\n"
     "it is now. Run it while the database is stopped: exits 7 while another process\n"
     "holds DIR. Afterwards configure the host with the new key as current.\n"
     "  -n, --new URI           the master key to re-wrap under\n"},
    {"gc", "gc DIR [--apply] [OPTIONS]",
     "Lists file entries whose file is gone from disk (orphans left by a crash between\n"
     "unlink and the entry's removal). Dry run by default; --apply removes them, which\n"
     "opens DIR for writing (exits 7 while another process holds it).\n"},
    {"backup-metadata", "backup-metadata DIR DEST [OPTIONS]",
     "Copies the key manager's files (key dictionary and its backup, file dictionary\n"
     "snapshot and log) into the new directory DEST (mode 0700, files 0600, fsynced),\n"
     "then opens the copy read-only with the master key to prove it is consistent\n"
     "(retried when a live writer changed DIR meanwhile). Back up DEST together with\n"
     "the data files: the keys without the data are useless and the data without\n"
     "the keys is lost.\n"},
    {"salvage", "salvage DIR DEST [--skip FILE]... [OPTIONS]",
     "For a key-manager directory that does not open. Reads everything that can be\n"
     "read: key.dict and key.dict.bak (the union of their keys; a key whose bytes\n"
     "differ between them stops the salvage: run it again with --skip on one copy),\n"
     "the current and the previous file-dictionary generation, and every log record\n"
     "that authenticates, past damaged ones. Writes a NEW directory DEST (must not\n"
     "exist; built beside it, fsynced, renamed into place; 0700, files 0600) and\n"
     "opens it read-only to prove it. DIR is never modified. Prints what came from\n"
     "where, every damaged log range (offset, bytes) and every file whose key is lost\n"
     "(its entry is kept, so reading it fails naming the key instead of returning\n"
     "ciphertext). Exit 0: nothing lost; 9: DEST written but something was lost;\n"
     "3: no key dictionary opens with the master key; 4: none opens at all, or the\n"
     "copies conflict; 5: DEST exists. Then point the database at DEST (keep DIR).\n"
     "  --skip FILE             ignore FILE of DIR (e.g. key.dict.bak, a snapshot)\n"},
    {"retire-key", "retire-key DIR KEYID --db DBPATH [--cf NAME]... [OPTIONS]",
     "Retires data key KEYID (hex, as dump prints it) of the STOPPED RocksDB database\n"
     "at DBPATH whose key manager is DIR: makes a new current key if KEYID is the\n"
     "current one, rewrites every SST and blob file of the column families (all, or\n"
     "each --cf) by a forced bottommost compaction, reopens the database once (new\n"
     "WAL, MANIFEST and OPTIONS), rewrites IDENTITY, and prints every file still using\n"
     "KEYID (old info LOGs; files of other databases or backups on the same key\n"
     "manager). Exit 0 also when files remain (they are listed); 7 while a process\n"
     "holds the database (its LOCK) or DIR, naming its pid; 1 no such key or column\n"
     "family, or any other error; 10 this tde-ctl was built without the RocksDB\n"
     "adapter.\n"
     "  --db DBPATH             the database directory (required)\n"
     "  --cf NAME               a column family to rewrite (repeatable; default: all)\n"},
    {"rewrite", "rewrite DIR --db DBPATH [--rotate] [OPTIONS]",
     "Rewrites every file of the STOPPED RocksDB database at DBPATH that is not under\n"
     "the current data key, including plaintext files left from enabling encryption\n"
     "on an existing database: with --rotate a new current key first, then a flush and\n"
     "forced bottommost compaction of every column family, a reopen (new WAL, MANIFEST,\n"
     "OPTIONS) and IDENTITY rewritten. Prints the files of DBPATH still not under the\n"
     "current key (typically old info LOGs). Exit 0; 7 while a process holds the\n"
     "database or DIR; 10 built without the RocksDB adapter.\n"
     "  --db DBPATH             the database directory (required)\n"
     "  --rotate                make a new current data key first\n"},
};

const char *const keymgr_cmd_names[] = {"status",
                                        "dump",
                                        "verify",
                                        "is-encrypted",
                                        "metrics",
                                        "cat",
                                        "rotate-data-key",
                                        "rotate-master-key",
                                        "gc",
                                        "backup-metadata",
                                        "salvage",
                                        "retire-key",
                                        "rewrite",
                                        NULL};

const char *
keymgr_cmd_help(const char *name)
{
    static char buf[4096];
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
        if (strcmp(helps[i].name, name) == 0) {
            snprintf(buf, sizeof(buf), "Usage: tde-ctl %s\n\n%s\n%s", helps[i].synopsis,
                     helps[i].text, common_opts);
            return buf;
        }
    return "";
}

typedef struct kopts {
    const char *cmd, *dir, *arg2; /* arg2: FILE or DEST */
    const char *master, *previous, *new_key, *file;
    const char *data_dirs[MAX_ROOTS];
    size_t n_data_dirs;
    const char *skip[MAX_ROOTS];
    size_t n_skip;
    const char *db, *cfs[MAX_ROOTS];
    size_t n_cfs;
    int rotate;
    tde_keymgr_root roots[MAX_ROOTS];
    char *root_bufs[MAX_ROOTS];
    size_t n_roots;
    int json, show_keys, apply, deep;
} kopts;

static int
parse(int argc, char **argv, kopts *o)
{
    static const struct option longopts[] = {
        {"master-key", required_argument, NULL, 'k'},
        {"key", required_argument, NULL, 'k'},
        {"previous-key", required_argument, NULL, 'p'},
        {"root", required_argument, NULL, 'r'},
        {"new", required_argument, NULL, 'n'},
        {"new-key", required_argument, NULL, 'n'},
        {"file", required_argument, NULL, 'F'},
        {"data-dir", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"show-keys", no_argument, NULL, 'S'},
        {"apply", no_argument, NULL, 'a'},
        {"deep", no_argument, NULL, 'D'},
        {"skip", required_argument, NULL, 'K'},
        {"db", required_argument, NULL, 'B'},
        {"cf", required_argument, NULL, 'C'},
        {"rotate", no_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = argv[0];
    int c, want_args = strcmp(cmd, "is-encrypted") == 0 || strcmp(cmd, "cat") == 0 ||
                               strcmp(cmd, "backup-metadata") == 0 || strcmp(cmd, "salvage") == 0 ||
                               strcmp(cmd, "retire-key") == 0
                           ? 2
                           : 1;
    o->cmd = cmd;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:p:r:n:h", longopts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'k': o->master = optarg; break;
        case 'p': o->previous = optarg; break;
        case 'n':
            ok = strcmp(cmd, "rotate-master-key") == 0;
            o->new_key = optarg;
            break;
        case 'F':
            ok = strcmp(cmd, "dump") == 0;
            o->file = optarg;
            break;
        case 'j': ok = strcmp(cmd, "dump") == 0, o->json = 1; break;
        case 'S': ok = strcmp(cmd, "dump") == 0, o->show_keys = 1; break;
        case 'a': ok = strcmp(cmd, "gc") == 0, o->apply = 1; break;
        case 'D': ok = strcmp(cmd, "verify") == 0, o->deep = 1; break;
        case 'B':
            ok = strcmp(cmd, "retire-key") == 0 || strcmp(cmd, "rewrite") == 0;
            o->db = optarg;
            break;
        case 'C':
            ok = strcmp(cmd, "retire-key") == 0 && o->n_cfs < MAX_ROOTS;
            if (ok)
                o->cfs[o->n_cfs++] = optarg;
            break;
        case 'O': ok = strcmp(cmd, "rewrite") == 0, o->rotate = 1; break;
        case 'K':
            ok = strcmp(cmd, "salvage") == 0 && o->n_skip < MAX_ROOTS;
            if (ok)
                o->skip[o->n_skip++] = optarg;
            break;
        case 'd':
            ok = strcmp(cmd, "verify") == 0 && o->n_data_dirs < MAX_ROOTS;
            if (ok)
                o->data_dirs[o->n_data_dirs++] = optarg;
            break;
        case 'r': {
            char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg || eq[1] == '\0' || o->n_roots == MAX_ROOTS) {
                say("%s: --root takes NAME=PATH (at most %d), not '%s'", cmd, MAX_ROOTS, optarg);
                return EXIT_USAGE;
            }
            o->root_bufs[o->n_roots] = strdup(optarg);
            if (o->root_bufs[o->n_roots] == NULL)
                return EXIT_ERROR;
            eq = o->root_bufs[o->n_roots] + (eq - optarg);
            *eq = '\0';
            o->roots[o->n_roots].name = o->root_bufs[o->n_roots];
            o->roots[o->n_roots].path = eq + 1;
            o->n_roots++;
            break;
        }
        case 'h': fputs(keymgr_cmd_help(cmd), stdout); return -1;
        case ':': say("%s: option %s needs a value", cmd, argv[optind - 1]); return EXIT_USAGE;
        default: ok = 0; break;
        }
        if (!ok) {
            say("%s: unknown option %s (see 'tde-ctl %s --help')", cmd, argv[optind - 1], cmd);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != want_args) {
        say("%s: expected %s (see 'tde-ctl %s --help')", cmd,
            want_args == 1                                                       ? "DIR"
            : strcmp(cmd, "backup-metadata") == 0 || strcmp(cmd, "salvage") == 0 ? "DIR DEST"
            : strcmp(cmd, "retire-key") == 0                                     ? "DIR KEYID"
                                                                                 : "DIR FILE",
            cmd);
        return EXIT_USAGE;
    }
    o->dir = argv[optind];
    o->arg2 = want_args == 2 ? argv[optind + 1] : NULL;
    if (o->master == NULL)
        o->master = getenv("TDE_MASTER_KEY");
    if (o->master == NULL) {
        say("%s: --master-key URI is required (or $TDE_MASTER_KEY)", cmd);
        return EXIT_USAGE;
    }
    if ((strcmp(cmd, "retire-key") == 0 || strcmp(cmd, "rewrite") == 0) && o->db == NULL) {
        say("%s: --db DBPATH is required", cmd);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "rotate-master-key") == 0 && o->new_key == NULL) {
        say("rotate-master-key: --new URI is required");
        return EXIT_USAGE;
    }
    if (o->n_roots == 0) {
        o->roots[0] = (tde_keymgr_root){"fs", "/"};
        o->n_roots = 1;
    }
    return EXIT_OK;
}

static int
open_km(kopts *o, int writable, tde_keymgr **km)
{
    struct stat sb;
    char kd[4096];
    tde_status st;
    tde_keymgr_config cfg = {.version = TDE_KEYMGR_CONFIG_VERSION,
                             .dir = o->dir,
                             .roots = o->roots,
                             .n_roots = o->n_roots,
                             .master_key_uri = o->master,
                             .previous_master_key_uri = o->previous,
                             .enforce = 0,
                             .read_only = !writable,
                             /* no rotation due at open unless asked for */
                             .rotation_period_seconds = UINT64_MAX / 4};
    snprintf(kd, sizeof(kd), "%s/%s", o->dir, KEY_DICT);
    if (stat(kd, &sb) != 0) {
        say("%s: %s is not a key-manager directory (%s: %s)", o->cmd, o->dir, kd, strerror(errno));
        return EXIT_ERROR;
    }
    st = tde_keymgr_open(km, &cfg);
    if (st == TDE_ERR_LOCKED) {
        say("%s: %s", o->cmd, tde_last_error());
        say("%s: stop the database that uses %s, then run this again", o->cmd, o->dir);
        return EXIT_LOCKED;
    }
    return st == TDE_OK ? EXIT_OK : fail(o->cmd, st);
}

/*
 * The pid holding DIR's lock (from /proc/locks), else 0. Never takes the lock itself,
 * not even shared: that would make a database starting at that moment fail.
 */
static long
lock_holder(const char *dir)
{
    char path[4096], line[512];
    struct stat sb;
    long r = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, LOCK_FILE);
    if (stat(path, &sb) != 0 || (f = fopen("/proc/locks", "r")) == NULL)
        return 0;
    while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
        char type[16], mode[16];
        unsigned maj, min;
        unsigned long long ino;
        long pid;
        if (sscanf(line, "%*[^:]: %15s %*s %15s %ld %x:%x:%llu", type, mode, &pid, &maj, &min,
                   &ino) == 6 &&
            strcmp(type, "FLOCK") == 0 && ino == (unsigned long long)sb.st_ino &&
            maj == major(sb.st_dev) && min == minor(sb.st_dev))
            r = pid > 0 ? pid : -1;
    }
    fclose(f);
    return r;
}

/* The path of stored name "root/rel" into @p buf; 0 when the root is unknown. */
static int
path_of(const kopts *o, const char *name, char *buf, size_t cap)
{
    const char *slash = strchr(name, '/');
    if (slash == NULL)
        return 0;
    for (size_t i = 0; i < o->n_roots; i++) {
        const char *p = o->roots[i].path;
        if (strlen(o->roots[i].name) == (size_t)(slash - name) &&
            memcmp(o->roots[i].name, name, (size_t)(slash - name)) == 0) {
            size_t pl = strlen(p);
            while (pl > 0 && p[pl - 1] == '/')
                pl--;
            return snprintf(buf, cap, "%.*s/%s", (int)pl, p, slash + 1) < (int)cap;
        }
    }
    return 0;
}

static void
fmt_time(uint64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t == 0 || gmtime_r(&tt, &tm) == NULL)
        snprintf(buf, cap, "-");
    else
        strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
fmt_age(uint64_t s, char *buf, size_t cap)
{
    if (s >= 86400)
        snprintf(buf, cap, "%llud %lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
    else
        snprintf(buf, cap, "%lluh %llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
}

/* ---- status ---- */

static int
do_status(kopts *o, tde_keymgr *km)
{
    tde_keymgr_metrics m = {.version = TDE_KEYMGR_METRICS_VERSION};
    tde_masterkey *mk = NULL;
    uint64_t now = (uint64_t)time(NULL), next;
    char t1[64], t2[64], age[64];
    long holder = lock_holder(o->dir);
    tde_status st = tde_keymgr_metrics_get(km, &m);

    if (st != TDE_OK)
        return fail(o->cmd, st);
    fmt_time(m.current_key_created, t1, sizeof(t1));
    fmt_age(now > m.current_key_created ? now - m.current_key_created : 0, age, sizeof(age));
    next = m.current_key_created + TDE_KEYMGR_DEFAULT_ROTATION_SECONDS;
    fmt_time(next, t2, sizeof(t2));
    printf("directory:        %s\n", o->dir);
    printf("in use:           %s", holder == 0 ? "no\n" : "yes, by ");
    if (holder > 0)
        printf("pid %ld\n", holder);
    else if (holder < 0)
        printf("an unknown process\n");
    printf("method:           %s\n", tde_method_name(m.method) ? tde_method_name(m.method) : "?");
    printf("cipher backend:   %s\n",
           tde_method_backend(m.method) ? tde_method_backend(m.method) : "none available");
    printf("enforce:          %s\n", m.enforce ? "yes" : "no");
    printf("current key:      %016llx\n", (unsigned long long)m.current_key_id);
    printf("  created:        %s (age %s)\n", t1, age);
    printf("  next rotation:  %s%s (at the default period of 7 days)\n", t2,
           next <= now ? ", due" : "");
    if (tde_masterkey_open(&mk, o->master) == TDE_OK) {
        printf("master key:       %s %s\n", tde_masterkey_provider_name(mk),
               tde_masterkey_key_id(mk));
        tde_masterkey_free(mk);
    }
    printf("data keys:        %llu\n", (unsigned long long)m.data_keys);
    printf("encrypted files:  %llu\n", (unsigned long long)m.encrypted_files);
    printf("metadata bytes:   key dictionary %llu, file dictionary snapshot %llu, log %llu\n",
           (unsigned long long)m.key_dict_bytes, (unsigned long long)m.file_dict_snapshot_bytes,
           (unsigned long long)m.file_dict_log_bytes);
    return EXIT_OK;
}

/* ---- dump ---- */

#define MAX_SHOWN 4096

typedef struct shown_key {
    uint64_t id;
    char hex[2 * 64 + 1];
} shown_key;

typedef struct dump_ctx {
    const kopts *o;
    shown_key *keys; /* --show-keys */
    size_t n_keys;
    const char *only; /* stored name, or NULL */
    int first, found;
} dump_ctx;

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int
export_key(void *arg, uint64_t id, tde_method method, const tde_secret *key)
{
    dump_ctx *d = arg;
    shown_key *s;
    (void)method;
    if (d->n_keys == MAX_SHOWN)
        return 1;
    s = &d->keys[d->n_keys++];
    s->id = id;
    s->hex[0] = '\0';
    for (size_t i = 0; key != NULL && i < tde_secret_len(key) && i < 64; i++)
        snprintf(s->hex + 2 * i, 3, "%02x", tde_secret_data(key)[i]);
    return 0;
}

static const char *
shown_hex(const dump_ctx *d, uint64_t id)
{
    for (size_t i = 0; i < d->n_keys; i++)
        if (d->keys[i].id == id)
            return d->keys[i].hex;
    return "";
}

static int
dump_key(void *arg, const tde_keymgr_key_info *k)
{
    dump_ctx *d = arg;
    char t[64];
    const char *mn = tde_method_name(k->method);
    fmt_time(k->created, t, sizeof(t));
    if (d->o->json) {
        printf("%s\n    {\"id\": \"%016llx\", \"method\": \"%s\", \"created\": %llu, "
               "\"current\": %s, \"files\": %llu",
               d->first ? "" : ",", (unsigned long long)k->id, mn ? mn : "?",
               (unsigned long long)k->created, k->current ? "true" : "false",
               (unsigned long long)k->files);
        if (d->keys != NULL)
            printf(", \"key\": \"%s\"", shown_hex(d, k->id));
        printf("}");
    } else {
        printf("%016llx  %-11s  %-20s  %-7s  %llu", (unsigned long long)k->id, mn ? mn : "?", t,
               k->current ? "current" : "", (unsigned long long)k->files);
        if (d->keys != NULL)
            printf("  %s", shown_hex(d, k->id));
        printf("\n");
    }
    d->first = 0;
    return 0;
}

static int
dump_file(void *arg, const tde_keymgr_file_info *f)
{
    dump_ctx *d = arg;
    char iv[2 * TDE_CIPHER_IV_LEN + 1];
    const char *mn = tde_method_name(f->method);
    if (d->only != NULL && strcmp(d->only, f->name) != 0)
        return 0;
    for (int i = 0; i < TDE_CIPHER_IV_LEN; i++)
        snprintf(iv + 2 * i, 3, "%02x", f->iv[i]);
    if (d->o->json) {
        printf("%s\n    {\"name\": ", d->first ? "" : ",");
        json_str(f->name);
        printf(", \"key_id\": \"%016llx\", \"method\": \"%s\", \"iv\": \"%s\"}",
               (unsigned long long)f->key_id, mn ? mn : "?", iv);
    } else {
        printf("%016llx  %-11s  %s  %s\n", (unsigned long long)f->key_id, mn ? mn : "?", iv,
               f->name);
    }
    d->first = 0;
    d->found = 1;
    return 0;
}

static int
do_dump(kopts *o, tde_keymgr *km)
{
    dump_ctx d = {.o = o, .first = 1};
    char name[4096];
    tde_status st;

    if (o->file != NULL) {
        /* a path under a root, or a stored name as printed by dump */
        if (o->file[0] == '/' && tde_keymgr_stored_name(km, o->file, name, sizeof(name)) == TDE_OK)
            d.only = name;
        else
            d.only = o->file;
    }
    if (o->show_keys && d.only == NULL) {
        say("dump: WARNING: --show-keys prints the data keys unwrapped: anyone who sees this "
            "output (terminal, scrollback, logs) can decrypt the data files; do not store it");
        d.keys = calloc(MAX_SHOWN, sizeof(*d.keys));
        if (d.keys == NULL)
            return EXIT_ERROR;
        st = tde_keymgr_export_keys(o->dir, o->master, o->previous, export_key, &d);
        if (st != TDE_OK) {
            free(d.keys);
            return fail(o->cmd, st);
        }
    }
    if (o->json)
        printf("{\"directory\": "), json_str(o->dir), printf(",\n  \"keys\": [");
    else if (d.only == NULL)
        printf("KEY ID            METHOD       CREATED               CURRENT  FILES%s\n",
               d.keys ? "  KEY" : "");
    if (d.only == NULL) {
        st = tde_keymgr_list_keys(km, dump_key, &d);
        if (d.keys != NULL) {
            explicit_bzero(d.keys, MAX_SHOWN * sizeof(*d.keys));
            free(d.keys);
            d.keys = NULL;
        }
        if (st != TDE_OK)
            return fail(o->cmd, st);
    }
    d.first = 1;
    if (o->json)
        printf("],\n  \"files\": [");
    else
        printf("%sKEY ID            METHOD       IV                                NAME\n",
               d.only == NULL ? "\n" : "");
    st = tde_keymgr_list_files(km, dump_file, &d);
    if (st != TDE_OK)
        return fail(o->cmd, st);
    if (o->json)
        printf("]}\n");
    if (d.only != NULL && !d.found) {
        say("dump: %s has no entry (plaintext)", d.only);
        return EXIT_PLAINTEXT;
    }
    return EXIT_OK;
}

/* ---- verify and gc ---- */

typedef struct name_set {
    char **v;
    size_t n, cap;
} name_set;

static int
set_add(name_set *s, const char *name)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        s->v = v, s->cap = cap;
    }
    s->v[s->n] = strdup(name);
    return s->v[s->n++] == NULL ? -1 : 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
set_has(const name_set *s, const char *name)
{
    return bsearch(&name, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

static void
set_free(name_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

typedef struct keyids {
    uint64_t v[4096];
    size_t n;
} keyids;

static int
collect_key(void *arg, const tde_keymgr_key_info *k)
{
    keyids *ids = arg;
    if (ids->n < sizeof(ids->v) / sizeof(ids->v[0]))
        ids->v[ids->n++] = k->id;
    return 0;
}

typedef struct check_ctx {
    const kopts *o;
    const keyids *ids;
    name_set names;
    tde_keymgr *km;
    uint64_t entries, missing_files, missing_keys, deep_checked, deep_bad;
    int gc; /* list orphans only */
    int oom;
} check_ctx;

/* RocksDB's table magic numbers (table/block_based/block_based_table_builder.cc,
 * table/plain/plain_table_builder.cc, table/cuckoo/cuckoo_table_builder.cc), stored as
 * the file's last 8 bytes, little-endian. */
static const uint64_t table_magics[] = {
    0x88e241b785f4cff7ull, /* block-based */
    0xdb4775248b80fb57ull, /* legacy block-based */
    0x8242229663bf9564ull, /* plain */
    0x4192d4e68f9e4f63ull, /* legacy plain */
    0x926789d0c5f17873ull, /* cuckoo */
};

/* Decrypts the footer's magic number of entry @p name's table with its key (outside the
 * list_files walk: it calls into the key manager). */
static void
deep_check(check_ctx *c, const char *name)
{
    tde_file_key *fk = NULL;
    unsigned char buf[8];
    uint64_t magic = 0, size;
    char path[4096];
    struct stat sb;
    size_t n = strlen(name);
    int fd, ok = 0;

    if (n <= 4 || strcmp(name + n - 4, ".sst") != 0 || !path_of(c->o, name, path, sizeof(path)) ||
        stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return;
    size = (uint64_t)sb.st_size;
    if (tde_keymgr_get_file(c->km, path, &fk) == TDE_OK &&
        tde_file_key_method(fk) == TDE_METHOD_PLAINTEXT) {
        tde_file_key_free(fk);
        return;
    }
    c->deep_checked++;
    if (fk != NULL && size >= 8 && (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        if (pread(fd, buf, 8, (off_t)(size - 8)) == 8 &&
            tde_file_key_process(fk, size - 8, buf, buf, 8) == TDE_OK) {
            for (int i = 7; i >= 0; i--)
                magic = magic << 8 | buf[i];
            for (size_t i = 0; i < sizeof(table_magics) / sizeof(table_magics[0]); i++)
                ok |= magic == table_magics[i];
        }
        close(fd);
    }
    tde_file_key_free(fk);
    if (!ok) {
        printf("BAD KEY       %s: its footer does not decrypt to a RocksDB table magic number "
               "(got %016llx)\n",
               name, (unsigned long long)magic);
        c->deep_bad++;
    }
}

static int
check_file(void *arg, const tde_keymgr_file_info *f)
{
    check_ctx *c = arg;
    char path[4096];
    struct stat sb;
    int known = 0;

    c->entries++;
    if (set_add(&c->names, f->name) != 0) {
        c->oom = 1;
        return 1;
    }
    for (size_t i = 0; i < c->ids->n; i++)
        known |= c->ids->v[i] == f->key_id;
    if (!known && !c->gc) {
        printf("MISSING KEY   %s uses key %016llx, which is not in the key dictionary\n", f->name,
               (unsigned long long)f->key_id);
        c->missing_keys++;
    }
    if (!path_of(c->o, f->name, path, sizeof(path))) {
        if (!c->gc)
            printf("UNKNOWN ROOT  %s: its root is not among the --root options\n", f->name);
        c->missing_files++;
    } else if (lstat(path, &sb) != 0) {
        printf("%s  %s (%s)\n", c->gc ? "orphan" : "MISSING FILE ", f->name, path);
        c->missing_files++;
    }
    return 0;
}

typedef struct walk_ctx {
    tde_keymgr *km;
    const name_set *names;
    const char *skip; /* the key manager's directory */
    uint64_t files, plaintext;
} walk_ctx;

static int
walk(walk_ctx *w, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096], name[4096];

    if (d == NULL) {
        say("verify: %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            char real[4096];
            if (realpath(path, real) != NULL && strcmp(real, w->skip) == 0)
                continue;
            walk(w, path);
        } else if (S_ISREG(sb.st_mode)) {
            w->files++;
            if (tde_keymgr_stored_name(w->km, path, name, sizeof(name)) != TDE_OK ||
                !set_has(w->names, name)) {
                printf("plaintext     %s\n", path);
                w->plaintext++;
            }
        }
    }
    closedir(d);
    return 0;
}

static int
check_entries(kopts *o, tde_keymgr *km, check_ctx *c, keyids *ids)
{
    tde_status st = tde_keymgr_list_keys(km, collect_key, ids);
    if (st == TDE_OK)
        st = tde_keymgr_list_files(km, check_file, c);
    if (st != TDE_OK)
        return fail(o->cmd, st);
    if (c->oom) {
        say("%s: out of memory", o->cmd);
        return EXIT_ERROR;
    }
    qsort(c->names.v, c->names.n, sizeof(*c->names.v), cmp_str);
    return EXIT_OK;
}

static int
do_verify(kopts *o, tde_keymgr *km)
{
    static keyids ids;
    check_ctx c = {.o = o, .ids = &ids, .km = km};
    walk_ctx w = {.km = km};
    char real[4096];
    int rc = check_entries(o, km, &c, &ids), walked = 0;

    if (rc != EXIT_OK)
        goto done;
    if (o->deep)
        for (size_t i = 0; i < c.names.n; i++)
            deep_check(&c, c.names.v[i]);
    w.names = &c.names;
    w.skip = realpath(o->dir, real) ? real : o->dir;
    if (o->n_data_dirs > 0) {
        for (size_t i = 0; i < o->n_data_dirs; i++)
            if (walk(&w, o->data_dirs[i]) != 0)
                rc = EXIT_ERROR;
        walked = 1;
    } else {
        for (size_t i = 0; i < o->n_roots; i++)
            if (strcmp(o->roots[i].path, "/") != 0) {
                if (walk(&w, o->roots[i].path) != 0)
                    rc = EXIT_ERROR;
                walked = 1;
            }
    }
    printf("verify %s: %zu data keys unwrap; %llu entries: %llu missing files, %llu missing "
           "keys; ",
           o->dir, ids.n, (unsigned long long)c.entries, (unsigned long long)c.missing_files,
           (unsigned long long)c.missing_keys);
    if (walked)
        printf("%llu files on disk, %llu plaintext\n", (unsigned long long)w.files,
               (unsigned long long)w.plaintext);
    else
        printf("disk not walked (give --data-dir or a --root other than /)\n");
    if (o->deep)
        printf("deep: %llu tables checked, %llu with a wrong key\n",
               (unsigned long long)c.deep_checked, (unsigned long long)c.deep_bad);
    if (rc == EXIT_OK && (c.missing_files > 0 || c.missing_keys > 0 || c.deep_bad > 0))
        rc = EXIT_ERROR;
    printf("%s\n", rc == EXIT_OK ? "OK" : "PROBLEMS FOUND");
done:
    set_free(&c.names);
    return rc;
}

static int
do_gc(kopts *o, tde_keymgr *km)
{
    static keyids ids;
    check_ctx c = {.o = o, .ids = &ids, .gc = 1};
    int rc = check_entries(o, km, &c, &ids);
    set_free(&c.names);
    if (rc != EXIT_OK)
        return rc;
    if (c.missing_files == 0) {
        printf("no orphan entries among %llu\n", (unsigned long long)c.entries);
        return EXIT_OK;
    }
    if (!o->apply) {
        printf("%llu orphan entries of %llu (dry run: --apply removes them)\n",
               (unsigned long long)c.missing_files, (unsigned long long)c.entries);
        return EXIT_OK;
    }
    return -2; /* the caller reopens writable and removes them */
}

typedef struct orphans {
    const kopts *o;
    name_set names;
} orphans;

static int
collect_orphan(void *arg, const tde_keymgr_file_info *f)
{
    orphans *g = arg;
    char path[4096];
    struct stat sb;
    if (path_of(g->o, f->name, path, sizeof(path)) && lstat(path, &sb) != 0)
        return set_add(&g->names, path) != 0;
    return 0;
}

static int
gc_apply(kopts *o, tde_keymgr *km)
{
    orphans g = {.o = o};
    tde_status st = tde_keymgr_list_files(km, collect_orphan, &g);
    size_t done = 0;
    for (size_t i = 0; st == TDE_OK && i < g.names.n; i++) {
        st = tde_keymgr_delete_file(km, g.names.v[i]);
        done += st == TDE_OK;
    }
    set_free(&g.names);
    printf("removed %zu orphan entries\n", done);
    return st == TDE_OK ? EXIT_OK : fail(o->cmd, st);
}

/* ---- is-encrypted, cat, metrics ---- */

static int
do_is_encrypted(kopts *o, tde_keymgr *km)
{
    tde_file_key *fk = NULL;
    tde_status st = tde_keymgr_get_file(km, o->arg2, &fk);
    int rc;
    if (st != TDE_OK)
        return fail(o->cmd, st);
    if (tde_file_key_method(fk) == TDE_METHOD_PLAINTEXT) {
        printf("plaintext\n");
        rc = EXIT_PLAINTEXT;
    } else {
        printf("encrypted %s key %016llx\n", tde_method_name(tde_file_key_method(fk)),
               (unsigned long long)tde_file_key_id(fk));
        rc = EXIT_OK;
    }
    tde_file_key_free(fk);
    return rc;
}

static int
do_cat(kopts *o, tde_keymgr *km)
{
    static unsigned char buf[1 << 16];
    tde_file_key *fk = NULL;
    uint64_t off = 0;
    int fd, rc = EXIT_OK;
    tde_status st = tde_keymgr_get_file(km, o->arg2, &fk);
    if (st != TDE_OK)
        return fail(o->cmd, st);
    fd = open(o->arg2, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        say("cat: %s: %s", o->arg2, strerror(errno));
        tde_file_key_free(fk);
        return EXIT_ERROR;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            say("cat: %s: %s", o->arg2, strerror(errno));
            rc = EXIT_ERROR;
            break;
        }
        if (n == 0)
            break;
        st = tde_file_key_process(fk, off, buf, buf, (size_t)n);
        if (st != TDE_OK) {
            rc = fail(o->cmd, st);
            break;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            say("cat: write: %s", strerror(errno));
            rc = EXIT_ERROR;
            break;
        }
        off += (uint64_t)n;
    }
    close(fd);
    tde_file_key_free(fk);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        say("cat: write: %s", strerror(errno));
        rc = EXIT_ERROR;
    }
    return rc;
}

static int
do_metrics(kopts *o, tde_keymgr *km)
{
    char *text = NULL;
    tde_status st = tde_keymgr_metrics_text(km, &text);
    if (st != TDE_OK)
        return fail(o->cmd, st);
    fputs(text, stdout);
    free(text);
    return EXIT_OK;
}

/* ---- backup-metadata ---- */

static int
copy_file(const char *src, const char *dst)
{
    static unsigned char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    ssize_t n;
    if (in < 0)
        return errno == ENOENT ? 1 : -1; /* vanished (a compaction): retry */
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        goto done;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            goto done;
    if (n == 0 && fsync(out) == 0)
        rc = 0;
done:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        rc = -1;
    return rc;
}

static int
copy_dir(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *e;
    char a[4096], b[4096];
    int rc = 0;
    if (d == NULL)
        return -1;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, LOCK_FILE) == 0 ||
            strstr(e->d_name, ".tmp") != NULL)
            continue;
        snprintf(a, sizeof(a), "%s/%s", src, e->d_name);
        snprintf(b, sizeof(b), "%s/%s", dst, e->d_name);
        rc = copy_file(a, b);
        if (rc < 0)
            say("backup-metadata: %s -> %s: %s", a, b, strerror(errno));
    }
    closedir(d);
    return rc;
}

static int
clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    return 0;
}

static int
do_backup(kopts *o)
{
    const char *dest = o->arg2;
    char kd[4096];
    struct stat sb;
    int rc = EXIT_ERROR;

    snprintf(kd, sizeof(kd), "%s/%s", o->dir, KEY_DICT);
    if (stat(kd, &sb) != 0) {
        say("%s: %s is not a key-manager directory (%s: %s)", o->cmd, o->dir, kd, strerror(errno));
        return EXIT_ERROR;
    }
    if (mkdir(dest, 0700) != 0) {
        say("backup-metadata: %s: %s", dest,
            errno == EEXIST ? "exists already (give a new directory)" : strerror(errno));
        return errno == EEXIST ? EXIT_EXISTS : EXIT_ERROR;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        tde_keymgr *km = NULL;
        kopts copy = *o;
        int c;
        clear_dir(dest);
        c = copy_dir(o->dir, dest);
        if (c < 0)
            break;
        if (c > 0)
            continue;
        copy.dir = dest;
        rc = open_km(&copy, 0, &km);
        tde_keymgr_close(km);
        if (rc == EXIT_OK || rc == EXIT_AUTH || rc == EXIT_UNAVAILABLE || rc == EXIT_USAGE)
            break;
        say("backup-metadata: the copy did not open (a writer changed %s meanwhile?); retrying",
            o->dir);
    }
    if (rc == EXIT_OK) {
        int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0)
            rc = EXIT_ERROR;
        if (dfd >= 0)
            close(dfd);
        printf("backed up %s to %s; it opens with the master key given\n", o->dir, dest);
    } else {
        clear_dir(dest);
        rmdir(dest);
        say("backup-metadata: nothing left in %s", dest);
        if (rc == EXIT_OK)
            rc = EXIT_ERROR;
    }
    return rc;
}

/* ---- salvage ---- */

typedef struct salvage_counts {
    uint64_t both, only_dict, only_bak, lost_ranges;
} salvage_counts;

static void
salvage_event(void *arg, const tde_keymgr_salvage_event *ev)
{
    salvage_counts *n = arg;
    const char *f = ev->file ? ev->file : "";
    const char *m = ev->message ? ev->message : "";
    switch (ev->kind) {
    case TDE_SALVAGE_READ: printf("read          %s: %s\n", f, m); break;
    case TDE_SALVAGE_UNREADABLE: printf("UNREADABLE    %s: %s\n", f, m); break;
    case TDE_SALVAGE_LOST:
        n->lost_ranges++;
        printf("LOST          %s: %llu bytes at offset %llu: %s\n", f,
               (unsigned long long)ev->length, (unsigned long long)ev->offset, m);
        break;
    case TDE_SALVAGE_TORN:
        printf("torn tail     %s: %llu bytes at offset %llu: %s\n", f,
               (unsigned long long)ev->length, (unsigned long long)ev->offset, m);
        break;
    case TDE_SALVAGE_KEY:
        if (strchr(f, ' ') != NULL)
            n->both++;
        else if (strcmp(f, KEY_DICT) == 0)
            n->only_dict++;
        else
            n->only_bak++;
        printf("key           %016llx from %s\n", (unsigned long long)ev->key_id, f);
        break;
    case TDE_SALVAGE_KEY_CONFLICT:
        printf("CONFLICT      key %016llx: %s\n", (unsigned long long)ev->key_id, m);
        break;
    case TDE_SALVAGE_MISSING_KEY:
        printf("MISSING KEY   %s uses key %016llx: %s\n", ev->name ? ev->name : "?",
               (unsigned long long)ev->key_id, m);
        break;
    default: printf("note          %s%s%s\n", f, *f ? ": " : "", m); break;
    }
}

static int
do_salvage(kopts *o)
{
    salvage_counts n = {0};
    tde_keymgr_salvage_result r = {0};
    tde_keymgr_salvage_options so = {.version = TDE_KEYMGR_SALVAGE_VERSION,
                                     .dir = o->dir,
                                     .dest = o->arg2,
                                     .master_key_uri = o->master,
                                     .previous_master_key_uri = o->previous,
                                     .skip = o->skip,
                                     .n_skip = o->n_skip,
                                     .fn = salvage_event,
                                     .arg = &n};
    tde_keymgr *km = NULL;
    kopts copy = *o;
    tde_status st;
    int rc;

    printf("salvage %s -> %s\n", o->dir, o->arg2);
    st = tde_keymgr_salvage(&so, &r);
    fflush(stdout);
    if (st != TDE_OK) {
        rc = fail(o->cmd, st);
        say("salvage: nothing was written; %s is unchanged", o->dir);
        return rc;
    }
    copy.dir = o->arg2;
    if ((rc = open_km(&copy, 0, &km)) != EXIT_OK) {
        say("salvage: %s was written but does not open with the roots given", o->arg2);
        return rc;
    }
    tde_keymgr_close(km);
    printf("summary: %llu data keys (%llu in both copies, %llu only in %s, %llu only in %s.bak); "
           "%llu file entries, %llu of them with a lost key (unreadable); %llu damaged log "
           "ranges (%llu bytes of records lost)\n",
           (unsigned long long)r.keys, (unsigned long long)n.both, (unsigned long long)n.only_dict,
           KEY_DICT, (unsigned long long)n.only_bak, KEY_DICT, (unsigned long long)r.entries,
           (unsigned long long)r.entries_missing_key, (unsigned long long)n.lost_ranges,
           (unsigned long long)r.lost_bytes);
    printf("%s: wrote %s, which opens with the master key given; %s is unchanged\n",
           r.complete ? "COMPLETE" : "INCOMPLETE (something was lost, see above)", o->arg2, o->dir);
    return r.complete ? EXIT_OK : EXIT_SALVAGE_LOSSES;
}

/* ---- retire-key, rewrite ---- */

static int
do_maintenance(kopts *o, tde_keymgr *km)
{
    tde_keymgr_metrics m = {.version = TDE_KEYMGR_METRICS_VERSION};
    maint_args a = {.dir = o->dir,
                    .db = o->db,
                    .master = o->master,
                    .previous = o->previous,
                    .roots = o->roots,
                    .n_roots = o->n_roots,
                    .cfs = o->cfs,
                    .n_cfs = o->n_cfs,
                    .retire = strcmp(o->cmd, "retire-key") == 0,
                    .rotate = o->rotate};
    tde_status st = tde_keymgr_metrics_get(km, &m);

    tde_keymgr_close(km); /* the adapter opens DIR for writing */
    if (st != TDE_OK)
        return fail(o->cmd, st);
    if (a.retire) {
        char *end;
        errno = 0;
        a.key_id = strtoull(o->arg2, &end, 16);
        if (errno != 0 || *end != '\0' || o->arg2[0] == '\0' || a.key_id == 0) {
            say("retire-key: KEYID must be a data key id in hex (see 'tde-ctl dump'), not '%s'",
                o->arg2);
            return EXIT_USAGE;
        }
    }
    /* The stored method: the adapter's default would rotate a directory using another one. */
    a.method = tde_method_name(m.method);
    return run_maintenance(&a);
}

/* ---- dispatch ---- */

int
cmd_keymgr(int argc, char **argv)
{
    kopts o;
    tde_keymgr *km = NULL;
    tde_status st;
    int rc, writable;

    memset(&o, 0, sizeof(o));
    rc = parse(argc, argv, &o);
    if (rc != EXIT_OK) {
        rc = rc < 0 ? EXIT_OK : rc;
        goto out;
    }
    if (strcmp(o.cmd, "backup-metadata") == 0) {
        rc = do_backup(&o);
        goto out;
    }
    if (strcmp(o.cmd, "salvage") == 0) {
        rc = do_salvage(&o);
        goto out;
    }
    if ((strcmp(o.cmd, "retire-key") == 0 || strcmp(o.cmd, "rewrite") == 0) && !have_rocksdb) {
        maint_args a = {.retire = strcmp(o.cmd, "retire-key") == 0};
        rc = run_maintenance(&a);
        goto out;
    }
    writable = strcmp(o.cmd, "rotate-data-key") == 0 || strcmp(o.cmd, "rotate-master-key") == 0;
    if ((rc = open_km(&o, writable, &km)) != EXIT_OK)
        goto out;
    if (strcmp(o.cmd, "status") == 0)
        rc = do_status(&o, km);
    else if (strcmp(o.cmd, "dump") == 0)
        rc = do_dump(&o, km);
    else if (strcmp(o.cmd, "verify") == 0)
        rc = do_verify(&o, km);
    else if (strcmp(o.cmd, "is-encrypted") == 0)
        rc = do_is_encrypted(&o, km);
    else if (strcmp(o.cmd, "cat") == 0)
        rc = do_cat(&o, km);
    else if (strcmp(o.cmd, "metrics") == 0)
        rc = do_metrics(&o, km);
    else if (strcmp(o.cmd, "retire-key") == 0 || strcmp(o.cmd, "rewrite") == 0) {
        rc = do_maintenance(&o, km);
        km = NULL; /* closed by do_maintenance */
    } else if (strcmp(o.cmd, "rotate-data-key") == 0) {
        tde_keymgr_metrics m = {.version = TDE_KEYMGR_METRICS_VERSION};
        st = tde_keymgr_rotate_data_key(km);
        if (st == TDE_OK)
            st = tde_keymgr_metrics_get(km, &m);
        rc = st == TDE_OK ? EXIT_OK : fail(o.cmd, st);
        if (rc == EXIT_OK)
            printf("new current data key %016llx (%s)\n", (unsigned long long)m.current_key_id,
                   tde_method_name(m.method));
    } else if (strcmp(o.cmd, "rotate-master-key") == 0) {
        st = tde_keymgr_rotate_master_key(km, o.new_key);
        rc = st == TDE_OK ? EXIT_OK : fail(o.cmd, st);
        if (rc == EXIT_OK)
            printf("re-wrapped the data keys of %s under %s; configure it as the current master "
                   "key\n",
                   o.dir, o.new_key);
    } else if (strcmp(o.cmd, "gc") == 0) {
        rc = do_gc(&o, km);
        if (rc == -2) {
            tde_keymgr_close(km);
            km = NULL;
            if ((rc = open_km(&o, 1, &km)) == EXIT_OK)
                rc = gc_apply(&o, km);
        }
    }
out:
    tde_keymgr_close(km);
    for (size_t i = 0; i < MAX_ROOTS; i++)
        free(o.root_bufs[i]);
    return rc;
}
