/* Shared between tde-ctl's source files. */
#ifndef TDE_CTL_H
#define TDE_CTL_H

#include "tde/common.h"

/* Exit codes (documented in the usage text). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_AUTH = 3,
    EXIT_CORRUPT = 4,
    EXIT_EXISTS = 5,
    EXIT_UNAVAILABLE = 6,
    EXIT_LOCKED = 7,
    EXIT_PLAINTEXT = 8,
    EXIT_SALVAGE_LOSSES = 9,
    EXIT_NO_ROCKSDB = 10,
};

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int exit_code(tde_status st);
int fail(const char *cmd, tde_status st);

/* The key-manager directory commands (keymgr_cmds.c). */
int cmd_keymgr(int argc, char **argv);
extern const char *const keymgr_cmd_names[];
const char *keymgr_cmd_help(const char *name);

/* retire-key and rewrite (rocksdb_cmds.c): front libtde-rocksdb when it is built. */
typedef struct maint_args {
    const char *dir, *db, *master, *previous, *method;
    const struct tde_keymgr_root *roots;
    size_t n_roots;
    const char *const *cfs;
    size_t n_cfs;
    uint64_t key_id;
    int retire, rotate;
} maint_args;
int run_maintenance(const maint_args *a);
extern const int have_rocksdb;

#endif
