/* Growable byte buffers with a free list. Pure C. */
#ifndef LX_BUF_H
#define LX_BUF_H

#include <stddef.h>

/* Readable bytes are data[off..len); free space is data[len..cap). */
typedef struct lx_buf {
    size_t cap;
    size_t len;
    size_t off;
    struct lx_buf *next; /* free list link */
    char data[];
} lx_buf_t;

typedef struct {
    lx_buf_t *free;
    size_t nfree;
    size_t max_free;
    size_t size; /* capacity of the buffers this pool hands out */
} lx_bufpool_t;

#define LX_BUF_DEFAULT_SIZE (16384 - sizeof(lx_buf_t))

void lx_bufpool_init(lx_bufpool_t *p, size_t size, size_t max_free);
/* Free every pooled buffer. */
void lx_bufpool_clear(lx_bufpool_t *p);
/* A buffer with len == off == 0, or NULL when out of memory. */
lx_buf_t *lx_buf_get(lx_bufpool_t *p);
/* Give a buffer back (to the free list when it has the pool's size). */
void lx_buf_put(lx_bufpool_t *p, lx_buf_t *b);
/* Make room for at least need bytes of free space, compacting first and
 * then growing (doubling) up to max_cap. *b may move. 0 or LX_ERR. */
int lx_buf_reserve(lx_bufpool_t *p, lx_buf_t **b, size_t need, size_t max_cap);
/* Debug counters for the process: buffers allocated (pooled ones
 * included), and those of them waiting in free lists. */
long lx_buf_live(void);
long lx_buf_pooled(void);

static inline size_t lx_buf_avail(const lx_buf_t *b)
{
    return b->len - b->off;
}
static inline char *lx_buf_head(lx_buf_t *b)
{
    return b->data + b->off;
}
static inline void lx_buf_consume(lx_buf_t *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

#endif
