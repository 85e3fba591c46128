#include "cipher/ctx_pool.h"

#include <stddef.h>

void *
ctx_pool_take(ctx_pool *p)
{
    for (size_t i = 0; i < CTX_POOL_SLOTS; i++) {
        if (atomic_load_explicit(&p->slots[i], memory_order_relaxed) == NULL)
            continue;
        void *ctx = atomic_exchange_explicit(&p->slots[i], NULL, memory_order_acquire);
        if (ctx != NULL)
            return ctx;
    }
    return p->make(p->owner);
}

void
ctx_pool_give(ctx_pool *p, void *ctx)
{
    for (size_t i = 0; i < CTX_POOL_SLOTS; i++) {
        void *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&p->slots[i], &expected, ctx,
                                                    memory_order_release, memory_order_relaxed))
            return;
    }
    p->destroy(ctx);
}

void
ctx_pool_clear(ctx_pool *p)
{
    for (size_t i = 0; i < CTX_POOL_SLOTS; i++) {
        void *ctx = atomic_exchange(&p->slots[i], NULL);
        if (ctx != NULL)
            p->destroy(ctx);
    }
}
