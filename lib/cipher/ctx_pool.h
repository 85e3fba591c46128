/*
 * A lock-free pool of cipher contexts for one data key. OpenSSL's and
 * libgcrypt's contexts carry the counter state, so one context cannot serve
 * two threads at once; expanding the key per call costs 150-280 ns. The pool
 * keeps keyed contexts and hands each call one of them: a call takes a free
 * slot with one atomic exchange and gives it back with one store.
 */
#ifndef TDE_LIB_CIPHER_CTX_POOL_H
#define TDE_LIB_CIPHER_CTX_POOL_H

#include <stdatomic.h>

#include "tde/common.h"

#define CTX_POOL_SLOTS 32

typedef struct ctx_pool {
    _Atomic(void *) slots[CTX_POOL_SLOTS];
    /* Makes a new keyed context for @p owner (the backend's schedule); NULL when out of memory. */
    void *(*make)(void *owner);
    void (*destroy)(void *ctx);
    void *owner;
} ctx_pool;

/* Takes a keyed context: a pooled one, or a fresh clone when all are busy. NULL: no memory. */
void *ctx_pool_take(ctx_pool *p);

/* Returns @p ctx to the pool (or destroys it when the pool is full). */
void ctx_pool_give(ctx_pool *p, void *ctx);

/* Destroys every pooled context. No call may be in flight. */
void ctx_pool_clear(ctx_pool *p);

#endif
