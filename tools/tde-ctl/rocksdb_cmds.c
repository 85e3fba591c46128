/*
 * tde-ctl retire-key and rewrite: offline maintenance of a stopped RocksDB
 * database through libtde-rocksdb's C API. Built with the adapter only
 * (TDE_CTL_ROCKSDB); without it the commands say so and exit 10. The library
 * is loaded when one of them runs, not at start: librocksdb adds about 10 MiB
 * of resident memory to every process that maps it.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tde-ctl.h"
#include "tde/keymgr.h"

#ifdef TDE_CTL_ROCKSDB
#include "tde/rocksdb.h"

const int have_rocksdb = 1;

typedef tde_status (*retire_fn)(const tde_rocksdb_maint_options *, uint64_t);
typedef tde_status (*rewrite_fn)(const tde_rocksdb_maint_options *, bool, uint64_t *);

/* The installed layout first (<prefix>/bin/tde-ctl beside <prefix>/<libdir>): the RUNPATH
 * says the same, but a sanitizer's dlopen interceptor hides it. Then the usual search. */
static void *
load_adapter(void)
{
    char exe[4096], path[4096 + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    void *lib;
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/../%s/%s", exe, TDE_CTL_LIBDIR, TDE_CTL_ROCKSDB_LIB);
            if (access(path, R_OK) == 0 && (lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) != NULL)
                return lib;
        }
    }
    return dlopen(TDE_CTL_ROCKSDB_LIB, RTLD_NOW | RTLD_LOCAL);
}

static int
print_file(void *arg, const char *name, uint64_t key_id)
{
    unsigned long long *n = arg;
    (*n)++;
    if (key_id == 0)
        printf("plaintext          %s\n", name);
    else
        printf("%016llx   %s\n", (unsigned long long)key_id, name);
    return 0;
}

int
run_maintenance(const maint_args *a)
{
    const char *cmd = a->retire ? "retire-key" : "rewrite";
    unsigned long long n = 0;
    uint64_t current = 0;
    tde_rocksdb_config cfg = {.version = TDE_ROCKSDB_CONFIG_VERSION,
                              .keymgr_dir = a->dir,
                              .master_key_uri = a->master,
                              .previous_master_key_uri = a->previous,
                              .method = a->method,
                              /* no rotation due at open unless asked for */
                              .rotation_period_seconds = UINT64_MAX / 4,
                              /* rewrite reads the plaintext files a migration left */
                              .enforce = a->retire ? -1 : 0,
                              .roots = a->roots,
                              .n_roots = a->n_roots};
    tde_rocksdb_maint_options o = {.version = TDE_ROCKSDB_MAINT_VERSION,
                                   .db_path = a->db,
                                   .config = &cfg,
                                   .column_families = a->cfs,
                                   .n_column_families = a->n_cfs,
                                   .fn = print_file,
                                   .arg = &n};
    void *lib = load_adapter();
    retire_fn retire;
    rewrite_fn rewrite;
    tde_status st;

    if (lib == NULL) {
        say("%s: cannot load the RocksDB adapter: %s", cmd, dlerror());
        return EXIT_NO_ROCKSDB;
    }
    *(void **)&retire = dlsym(lib, "tde_rocksdb_retire_key");
    *(void **)&rewrite = dlsym(lib, "tde_rocksdb_rewrite");
    if (retire == NULL || rewrite == NULL) {
        say("%s: %s lacks the maintenance functions (an older libtde-rocksdb?)", cmd,
            TDE_CTL_ROCKSDB_LIB);
        return EXIT_NO_ROCKSDB;
    }
    if (a->retire)
        printf("files still using key %016llx:\n", (unsigned long long)a->key_id);
    else
        printf("files of %s not under the current key:\n", a->db);
    fflush(stdout);
    st = a->retire ? retire(&o, a->key_id) : rewrite(&o, a->rotate, &current);
    if (st != TDE_OK) {
        say("%s: %s (%s)", cmd, tde_last_error(), tde_status_str(st));
        if (st == TDE_ERR_LOCKED) {
            say("%s: stop the database, then run this again", cmd);
            return EXIT_LOCKED;
        }
        return exit_code(st);
    }
    if (a->retire)
        printf("%llu files still use key %016llx%s\n", n, (unsigned long long)a->key_id,
               n == 0 ? "; no file of the database needs it any more"
                      : " (old info LOGs can be deleted; other databases or backups on the same "
                        "key manager need their own rewrite)");
    else
        printf("%llu files not under the current key %016llx\n", n, (unsigned long long)current);
    return EXIT_OK;
}

#else

const int have_rocksdb = 0;

int
run_maintenance(const maint_args *a)
{
    say("%s: unavailable: this tde-ctl was built without the RocksDB adapter (libtde-rocksdb)",
        a->retire ? "retire-key" : "rewrite");
    return EXIT_NO_ROCKSDB;
}

#endif
