#include "buf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lx.h"

/* Debug counters. Buffers come and go on the thread that holds the GIL
 * (the flusher thread only sends from them), so no two updates race: a
 * relaxed load and store each, not a locked read-modify-write, which would
 * cost as much as the rest of a get or put. Atomic so that a reader on
 * another thread sees whole values. */
static atomic_long live_buffers, pooled_buffers;

static void count(atomic_long *c, long d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

long lx_buf_live(void)
{
    return atomic_load(&live_buffers);
}

long lx_buf_pooled(void)
{
    return atomic_load(&pooled_buffers);
}

void lx_bufpool_init(lx_bufpool_t *p, size_t size, size_t max_free)
{
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
    p->size = size;
}

void lx_bufpool_clear(lx_bufpool_t *p)
{
    while (p->free) {
        lx_buf_t *b = p->free;
        p->free = b->next;
        free(b);
        count(&live_buffers, -1);
        count(&pooled_buffers, -1);
    }
    p->nfree = 0;
}

static lx_buf_t *buf_alloc(size_t cap)
{
    lx_buf_t *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    b->cap = cap;
    b->len = b->off = 0;
    b->next = NULL;
    count(&live_buffers, 1);
    return b;
}

lx_buf_t *lx_buf_get(lx_bufpool_t *p)
{
    lx_buf_t *b = p->free;
    if (b != NULL) {
        p->free = b->next;
        p->nfree--;
        count(&pooled_buffers, -1);
        b->len = b->off = 0;
        b->next = NULL;
        return b;
    }
    return buf_alloc(p->size);
}

void lx_buf_put(lx_bufpool_t *p, lx_buf_t *b)
{
    if (b == NULL)
        return;
    if (b->cap == p->size && p->nfree < p->max_free) {
        b->next = p->free;
        p->free = b;
        p->nfree++;
        count(&pooled_buffers, 1);
        return;
    }
    free(b);
    count(&live_buffers, -1);
}

int lx_buf_reserve(lx_bufpool_t *p, lx_buf_t **bp, size_t need, size_t max_cap)
{
    lx_buf_t *b = *bp;
    (void)p;
    if (b->cap - b->len >= need)
        return LX_OK;
    if (b->off > 0) {
        size_t n = b->len - b->off;
        memmove(b->data, b->data + b->off, n);
        b->off = 0;
        b->len = n;
        if (b->cap - b->len >= need)
            return LX_OK;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < need) {
        if (cap >= max_cap)
            return LX_ERR;
        cap *= 2;
        if (cap > max_cap)
            cap = max_cap;
    }
    if (cap - b->len < need)
        return LX_ERR;
    lx_buf_t *nb = realloc(b, sizeof(*b) + cap);
    if (nb == NULL)
        return LX_ERR;
    nb->cap = cap;
    *bp = nb;
    return LX_OK;
}
