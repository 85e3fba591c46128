/*
 * Kill test: a forked worker creates, renames, links and deletes files and
 * rotates keys (explicitly, and on a 1-second period through the background
 * thread, with unused keys removed) and reports each operation before it
 * starts and after it returned. The parent SIGKILLs it at a random moment,
 * reopens, and checks that every acknowledged entry has the key (same id,
 * same keystream) it was acknowledged with, deleted ones are gone, and the one
 * operation in flight is either fully there or absent.
 * TDE_KILL_ITERATIONS sets the number of rounds (default 200), TDE_KILL_SEED the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "tde/keymgr.h"
#include "tde/masterkey.h"
#include "testutil.h"

#define N_NAMES 12

enum { OP_NEW, OP_DELETE, OP_LINK, OP_RENAME, OP_ROTATE };

typedef struct report {
    uint8_t done; /* 0: about to start, 1: returned OK */
    uint8_t op;
    uint8_t a, b;   /* name indexes */
    uint8_t keep_a; /* rename of two links to one inode: both names stay */
    uint64_t key_id;
    uint8_t ks[16];
} report;

typedef struct entry {
    bool present;
    uint64_t key_id;
    uint8_t ks[16];
} entry;

typedef struct ctx {
    char *tmp;
    char dir[1024], db[1024], key[1200];
    tde_keymgr_root root;
    tde_keymgr_config cfg;
} ctx;

static void
name_path(const ctx *c, int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%06d.sst", c->db, i);
}

static void
keystream(const tde_file_key *fk, uint8_t out[16])
{
    uint8_t zero[16] = {0};
    if (tde_file_key_process(fk, 0, zero, out, 16) != TDE_OK)
        memset(out, 0xee, 16);
}

static void
send(int fd, const report *r)
{
    if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
        _exit(7);
}

/* The worker: runs until killed. Exit codes name the first failure. */
static void
worker(const ctx *c, int fd, uint64_t seed)
{
    tde_keymgr *km = NULL;
    char pa[1100], pb[1100];

    if (tde_keymgr_open(&km, &c->cfg) != TDE_OK) {
        fprintf(stderr, "worker: open: %s\n", tde_last_error());
        _exit(2);
    }
    send(fd, &(report){.done = 2}); /* opened */
    for (;;) {
        report r = {0};
        uint64_t x = test_rand(&seed);
        tde_file_key *fk = NULL;
        tde_status st = TDE_OK;
        int pick = (int)(x % 100);

        r.a = (uint8_t)((x >> 8) % N_NAMES);
        r.b = (uint8_t)((x >> 16) % N_NAMES);
        r.op = pick < 45   ? OP_NEW
               : pick < 65 ? OP_DELETE
               : pick < 80 ? OP_LINK
               : pick < 95 ? OP_RENAME
                           : OP_ROTATE;
        name_path(c, r.a, pa, sizeof(pa));
        name_path(c, r.b, pb, sizeof(pb));
        if ((r.op == OP_LINK || r.op == OP_RENAME) && (r.a == r.b || access(pa, F_OK) != 0))
            r.op = OP_NEW;
        send(fd, &r);
        switch (r.op) {
        case OP_NEW:
            st = tde_keymgr_new_file(km, pa, &fk);
            if (st == TDE_OK) {
                int f = open(pa, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                if (f >= 0)
                    close(f);
            }
            break;
        case OP_DELETE:
            (void)unlink(pa);
            st = tde_keymgr_delete_file(km, pa);
            break;
        case OP_LINK:
            st = tde_keymgr_link_file(km, pa, pb);
            if (st == TDE_OK) {
                (void)unlink(pb);
                if (link(pa, pb) != 0)
                    _exit(8);
                st = tde_keymgr_get_file(km, pb, &fk);
            }
            break;
        case OP_RENAME:
            st = tde_keymgr_rename_file(km, pa, pb);
            if (st == TDE_OK)
                st = tde_keymgr_get_file(km, pb, &fk);
            r.keep_a = access(pa, F_OK) == 0;
            break;
        case OP_ROTATE: st = tde_keymgr_rotate_data_key(km); break;
        }
        if (st != TDE_OK) {
            fprintf(stderr, "worker: op %d on %d,%d: %s: %s\n", r.op, r.a, r.b, tde_status_str(st),
                    tde_last_error());
            _exit(3);
        }
        if (fk != NULL) {
            r.key_id = tde_file_key_id(fk);
            keystream(fk, r.ks);
            tde_file_key_free(fk);
        }
        r.done = 1;
        send(fd, &r);
    }
}

static void
apply(entry *model, const report *r)
{
    switch (r->op) {
    case OP_NEW:
        model[r->a] = (entry){true, r->key_id, {0}};
        memcpy(model[r->a].ks, r->ks, 16);
        break;
    case OP_DELETE: model[r->a].present = false; break;
    case OP_LINK:
        model[r->b] = (entry){true, r->key_id, {0}};
        memcpy(model[r->b].ks, r->ks, 16);
        break;
    case OP_RENAME:
        model[r->b] = (entry){true, r->key_id, {0}};
        memcpy(model[r->b].ks, r->ks, 16);
        if (!r->keep_a)
            model[r->a].present = false;
        break;
    default: break;
    }
}

/* Reopens and checks every name against the model; names touched by @p inflight are learnt. */
static void
verify(const ctx *c, entry *model, const report *inflight, int round)
{
    tde_keymgr *km = NULL;
    char p[1100];

    assert_tde_ok(tde_keymgr_open(&km, &c->cfg));
    for (int i = 0; i < N_NAMES; i++) {
        tde_file_key *fk = NULL;
        bool uncertain =
            inflight != NULL && inflight->op != OP_ROTATE &&
            (inflight->a == i ||
             ((inflight->op == OP_LINK || inflight->op == OP_RENAME) && inflight->b == i));
        tde_status st;
        name_path(c, i, p, sizeof(p));
        st = tde_keymgr_get_file(km, p, &fk);
        if (st != TDE_OK && st != TDE_ERR_NOT_FOUND)
            fail_msg("round %d: %s: %s: %s", round, p, tde_status_str(st), tde_last_error());
        if (uncertain) {
            model[i].present = st == TDE_OK;
            if (st == TDE_OK) {
                model[i].key_id = tde_file_key_id(fk);
                keystream(fk, model[i].ks);
            }
        } else if (model[i].present) {
            uint8_t ks[16];
            if (st != TDE_OK)
                fail_msg("round %d: acknowledged %s lost: %s", round, p, tde_last_error());
            assert_int_equal(tde_file_key_id(fk), model[i].key_id);
            keystream(fk, ks);
            assert_memory_equal(ks, model[i].ks, 16);
        } else if (st == TDE_OK) {
            fail_msg("round %d: deleted %s came back", round, p);
        }
        tde_file_key_free(fk);
    }
    tde_keymgr_close(km);
}

static void
test_keymgr_kill_at_random_moments_keeps_acknowledged_state(void **state)
{
    ctx c = {0};
    entry model[N_NAMES] = {{0}};
    const char *env = getenv("TDE_KILL_ITERATIONS");
    int rounds = env ? atoi(env) : 200, total_ops = 0, inflight_rounds = 0;
    const char *seed_env = getenv("TDE_KILL_SEED");
    uint64_t seed =
        seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL) * 2654435761u | 1;
    char path[1100];
    (void)state;

    tde_secret_allow_unlocked(1);
    c.tmp = test_tmpdir("keymgr-kill");
    snprintf(c.dir, sizeof(c.dir), "%s/meta", c.tmp);
    snprintf(c.db, sizeof(c.db), "%s/db", c.tmp);
    mkdir(c.db, 0700);
    snprintf(path, sizeof(path), "%s/master.key", c.tmp);
    assert_tde_ok(tde_keyfile_create(path));
    snprintf(c.key, sizeof(c.key), "file://%s", path);
    c.root = (tde_keymgr_root){"db", c.db};
    c.cfg = (tde_keymgr_config){.version = TDE_KEYMGR_CONFIG_VERSION,
                                .dir = c.dir,
                                .roots = &c.root,
                                .n_roots = 1,
                                .method = TDE_METHOD_AES128_CTR,
                                .rotation_period_seconds = 1,
                                .master_key_uri = c.key,
                                .enforce = 1,
                                .keep_unused_keys = 1};
    print_message("kill test: %d rounds, seed %llu\n", rounds, (unsigned long long)seed);
    for (int round = 0; round < rounds; round++) {
        int fds[2], ws;
        report r, last = {0};
        bool have_last = false;
        pid_t pid;
        uint64_t child_seed = test_rand(&seed);

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            worker(&c, fds[1], child_seed);
        }
        close(fds[1]);
        /* Half the rounds kill anywhere (also during open), half once the worker is working. */
        if (round % 2 == 1 && read(fds[0], &r, sizeof(r)) == (ssize_t)sizeof(r))
            assert_int_equal(r.done, 2);
        usleep((useconds_t)(test_rand(&seed) % 40000));
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        if (!WIFSIGNALED(ws))
            fail_msg("round %d: worker exited with %d", round, WEXITSTATUS(ws));
        while (read(fds[0], &r, sizeof(r)) == (ssize_t)sizeof(r)) {
            if (r.done == 2)
                continue;
            if (r.done) {
                apply(model, &r);
                total_ops++;
                have_last = false;
            } else {
                last = r;
                have_last = true;
            }
        }
        close(fds[0]);
        inflight_rounds += have_last;
        verify(&c, model, have_last ? &last : NULL, round);
    }
    print_message("kill test: %d acknowledged operations, %d kills mid-operation\n", total_ops,
                  inflight_rounds);
    assert_true(total_ops >= rounds / 2); /* the kills did land after real work */
    test_rmtree(c.tmp);
    free(c.tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keymgr_kill_at_random_moments_keeps_acknowledged_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
