/* Unit tests of csrc/buf.c: pooled, growable byte buffers.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_buf.c \
 *       -o tests/c/bin/test_buf
 *   ./tests/c/bin/test_buf
 *
 * Besides the directed cases, 10k random operations on a handful of
 * buffers are checked against a plain model (an array of expected bytes per
 * buffer), and the live/pooled counters must come back to where they
 * started once everything is freed. */
#define _DEFAULT_SOURCE

#include "../../csrc/buf.c"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* xorshift64*: seeded, reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}
static size_t rnd(size_t n) /* [0, n) */
{
    return n ? (size_t)(rng() % n) : 0;
}

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed + i * 7u);
}

static void test_get_put_reuse(void)
{
    long live0 = lx_buf_live(), pooled0 = lx_buf_pooled();
    lx_bufpool_t p;
    lx_bufpool_init(&p, 64, 2);
    CHECK(p.free == NULL && p.nfree == 0 && p.size == 64 && p.max_free == 2,
          "init fields");

    lx_buf_t *a = lx_buf_get(&p), *b = lx_buf_get(&p), *c = lx_buf_get(&p);
    CHECK(a && b && c, "get");
    CHECK(a->cap == 64 && a->len == 0 && a->off == 0 && a->next == NULL,
          "fresh buffer: cap %zu len %zu off %zu", a->cap, a->len, a->off);
    CHECK(lx_buf_live() - live0 == 3, "live %ld", lx_buf_live() - live0);
    CHECK(lx_buf_pooled() - pooled0 == 0, "pooled %ld",
          lx_buf_pooled() - pooled0);

    a->len = 10;
    a->off = 3;
    lx_buf_put(&p, a);
    lx_buf_put(&p, b);
    CHECK(p.nfree == 2, "nfree %zu", p.nfree);
    CHECK(lx_buf_pooled() - pooled0 == 2, "pooled %ld",
          lx_buf_pooled() - pooled0);
    /* max_free reached: c is freed, not pooled */
    lx_buf_put(&p, c);
    CHECK(p.nfree == 2, "nfree after max_free %zu", p.nfree);
    CHECK(lx_buf_live() - live0 == 2, "live after free %ld",
          lx_buf_live() - live0);
    CHECK(lx_buf_pooled() - pooled0 == 2, "pooled %ld",
          lx_buf_pooled() - pooled0);

    lx_buf_put(&p, NULL); /* harmless */
    CHECK(p.nfree == 2, "put NULL");

    /* LIFO reuse, reset state */
    lx_buf_t *x = lx_buf_get(&p);
    CHECK(x == b, "reuse gives the last put buffer");
    lx_buf_t *y = lx_buf_get(&p);
    CHECK(y == a, "reuse gives the one before");
    CHECK(y->len == 0 && y->off == 0 && y->next == NULL,
          "reused buffer reset: len %zu off %zu", y->len, y->off);
    CHECK(p.nfree == 0 && p.free == NULL, "pool empty");
    CHECK(lx_buf_pooled() - pooled0 == 0, "pooled 0");
    CHECK(lx_buf_live() - live0 == 2, "live 2");

    /* a buffer of another size is never pooled */
    lx_bufpool_t q;
    lx_bufpool_init(&q, 32, 8);
    lx_buf_t *z = lx_buf_get(&q);
    lx_buf_put(&p, z);
    CHECK(p.nfree == 0, "foreign-size buffer not pooled");
    CHECK(lx_buf_live() - live0 == 2, "foreign buffer freed");

    /* max_free 0: nothing is pooled */
    lx_bufpool_t r;
    lx_bufpool_init(&r, 64, 0);
    lx_buf_put(&r, x);
    CHECK(r.nfree == 0 && lx_buf_live() - live0 == 1, "max_free 0");

    lx_buf_put(&p, y);
    CHECK(p.nfree == 1, "pooled again");
    lx_bufpool_clear(&p);
    CHECK(p.nfree == 0 && p.free == NULL, "clear empties");
    lx_bufpool_clear(&p); /* twice is harmless */
    lx_bufpool_clear(&q);
    lx_bufpool_clear(&r);
    CHECK(lx_buf_live() == live0, "live back to start: %ld",
          lx_buf_live() - live0);
    CHECK(lx_buf_pooled() == pooled0, "pooled back to start: %ld",
          lx_buf_pooled() - pooled0);

    /* default size */
    lx_bufpool_t d;
    lx_bufpool_init(&d, LX_BUF_DEFAULT_SIZE, 4);
    lx_buf_t *e = lx_buf_get(&d);
    CHECK(e && e->cap == LX_BUF_DEFAULT_SIZE &&
              sizeof(lx_buf_t) + e->cap == 16384,
          "default size fills 16 KiB");
    memset(e->data, 'x', e->cap); /* ASan: all of it is ours */
    lx_buf_put(&d, e);
    lx_bufpool_clear(&d);
    CHECK(lx_buf_live() == live0 && lx_buf_pooled() == pooled0,
          "counters after default pool");
}

static void test_consume(void)
{
    lx_bufpool_t p;
    lx_bufpool_init(&p, 64, 1);
    lx_buf_t *b = lx_buf_get(&p);
    fill(b->data, 20, 1);
    b->len = 20;
    CHECK(lx_buf_avail(b) == 20 && lx_buf_head(b) == b->data, "avail/head");
    lx_buf_consume(b, 5);
    CHECK(b->off == 5 && b->len == 20 && lx_buf_avail(b) == 15,
          "partial consume: off %zu len %zu", b->off, b->len);
    CHECK(lx_buf_head(b) == b->data + 5, "head moves");
    lx_buf_consume(b, 0);
    CHECK(b->off == 5 && b->len == 20, "consume 0");
    lx_buf_consume(b, 15);
    CHECK(b->off == 0 && b->len == 0,
          "consume to empty resets: off %zu "
          "len %zu",
          b->off, b->len);
    /* consume 0 of an empty buffer keeps it at 0/0 */
    lx_buf_consume(b, 0);
    CHECK(b->off == 0 && b->len == 0, "consume 0 of empty");
    lx_buf_put(&p, b);
    lx_bufpool_clear(&p);
}

static void test_reserve_compact(void)
{
    long live0 = lx_buf_live();
    lx_bufpool_t p;
    lx_bufpool_init(&p, 64, 4);
    lx_buf_t *b = lx_buf_get(&p), *orig = b;
    char ref[64];
    fill(ref, 60, 3);
    memcpy(b->data, ref, 60);
    b->len = 60;

    /* enough room at the tail: nothing moves */
    CHECK(lx_buf_reserve(&p, &b, 4, 64) == LX_OK, "fits");
    CHECK(b == orig && b->len == 60 && b->off == 0 && b->cap == 64,
          "untouched when it fits");

    lx_buf_consume(b, 40);
    CHECK(lx_buf_reserve(&p, &b, 4, 64) == LX_OK && b->off == 40,
          "tail room suffices: no compaction (off %zu)", b->off);
    CHECK(lx_buf_reserve(&p, &b, 30, 64) == LX_OK, "compaction suffices");
    CHECK(b == orig && b->cap == 64, "no realloc when compaction suffices");
    CHECK(b->off == 0 && b->len == 20, "compacted: off %zu len %zu", b->off,
          b->len);
    CHECK(memcmp(b->data, ref + 40, 20) == 0, "contents preserved");

    /* compaction + exact fit: need == cap - avail */
    lx_buf_consume(b, 4);
    CHECK(lx_buf_reserve(&p, &b, 48, 64) == LX_OK && b->cap == 64 &&
              b->off == 0 && b->len == 16,
          "exact fit after compaction: cap %zu off %zu len %zu", b->cap,
          b->off, b->len);
    CHECK(memcmp(b->data, ref + 44, 16) == 0, "contents preserved (2)");

    /* overlapping move (avail > off) */
    lx_buf_t *c = lx_buf_get(&p);
    memcpy(c->data, ref, 60);
    c->len = 60;
    lx_buf_consume(c, 10);
    CHECK(lx_buf_reserve(&p, &c, 14, 64) == LX_OK && c->off == 0 &&
              c->len == 50 && memcmp(c->data, ref + 10, 50) == 0,
          "overlapping compaction");
    lx_buf_put(&p, b);
    lx_buf_put(&p, c);
    lx_bufpool_clear(&p);
    CHECK(lx_buf_live() == live0, "live %ld", lx_buf_live() - live0);
}

static void test_reserve_grow(void)
{
    long live0 = lx_buf_live(), pooled0 = lx_buf_pooled();
    lx_bufpool_t p;
    lx_bufpool_init(&p, 64, 4);
    char ref[4096];
    fill(ref, sizeof(ref), 9);

    /* doubling: 64 -> 128 -> 256 for 100 bytes after 60 */
    lx_buf_t *b = lx_buf_get(&p);
    memcpy(b->data, ref, 60);
    b->len = 60;
    CHECK(lx_buf_reserve(&p, &b, 100, 1024) == LX_OK, "grow");
    CHECK(b->cap == 256, "doubled to 256, got %zu", b->cap);
    CHECK(b->len == 60 && b->off == 0 && memcmp(b->data, ref, 60) == 0,
          "contents kept across growth");
    memcpy(b->data + 60, ref + 60, 196); /* ASan: the room is really there */
    b->len = 256;
    CHECK(lx_buf_live() - live0 == 1, "growth keeps live count");

    /* compaction happens before growth */
    lx_buf_consume(b, 200); /* off 200 len 256 */
    CHECK(lx_buf_reserve(&p, &b, 300, 4096) == LX_OK, "compact+grow");
    CHECK(b->off == 0 && b->len == 56 && b->cap == 512,
          "compact then double once: off %zu len %zu cap %zu", b->off, b->len,
          b->cap);
    CHECK(memcmp(b->data, ref + 200, 56) == 0, "contents kept (2)");

    /* a grown buffer is freed, not pooled */
    lx_buf_put(&p, b);
    CHECK(p.nfree == 0 && lx_buf_live() == live0, "grown buffer freed");

    /* clamped to max_cap */
    b = lx_buf_get(&p);
    b->len = 60;
    CHECK(lx_buf_reserve(&p, &b, 100, 200) == LX_OK && b->cap == 200,
          "clamped to max_cap: cap %zu", b->cap);
    lx_buf_put(&p, b);

    /* exactly max_cap */
    b = lx_buf_get(&p);
    b->len = 64;
    CHECK(lx_buf_reserve(&p, &b, 192, 256) == LX_OK && b->cap == 256,
          "need reaching max_cap exactly: cap %zu", b->cap);
    lx_buf_put(&p, b);

    /* failure past max_cap: buffer unchanged and usable */
    b = lx_buf_get(&p);
    lx_buf_t *orig = b;
    memcpy(b->data, ref, 60);
    b->len = 60;
    CHECK(lx_buf_reserve(&p, &b, 100, 150) == LX_ERR, "past max_cap fails");
    CHECK(b == orig && b->cap == 64 && b->len == 60 && b->off == 0 &&
              memcmp(b->data, ref, 60) == 0,
          "unchanged after failure: cap %zu len %zu", b->cap, b->len);
    CHECK(lx_buf_reserve(&p, &b, 4, 150) == LX_OK && b == orig,
          "still usable after failure");
    /* max_cap below the current capacity */
    CHECK(lx_buf_reserve(&p, &b, 10, 32) == LX_ERR && b->cap == 64,
          "max_cap below cap fails");
    /* failure after compaction still keeps the data (at the front) */
    lx_buf_consume(b, 10);
    CHECK(lx_buf_reserve(&p, &b, 100, 64) == LX_ERR, "fails at max");
    CHECK(b->cap == 64 && lx_buf_avail(b) == 50 &&
              memcmp(lx_buf_head(b), ref + 10, 50) == 0,
          "data kept after failed compaction+grow");
    lx_buf_put(&p, b);
    CHECK(p.nfree == 1, "unchanged buffer pooled again");

    lx_bufpool_clear(&p);
    CHECK(lx_buf_live() == live0 && lx_buf_pooled() == pooled0,
          "counters back: live %ld pooled %ld", lx_buf_live() - live0,
          lx_buf_pooled() - pooled0);
}

/* ---- random sequences against a model ---- */

#define NSLOT 6
#define MAXCAP 2048

typedef struct {
    lx_buf_t *b;
    unsigned char model[MAXCAP]; /* readable bytes, in order */
    size_t n;
} slot_t;

static void test_random(uint64_t seed, int ops)
{
    long live0 = lx_buf_live(), pooled0 = lx_buf_pooled();
    static slot_t s[NSLOT];
    lx_bufpool_t p;
    lx_bufpool_init(&p, 48, 3);
    memset(s, 0, sizeof(s));
    rng_state = seed;
    int bad = 0;
    size_t held = 0;
    int n_grow = 0, n_err = 0, n_compact = 0;
    for (int op = 0; op < ops && !bad; op++) {
        slot_t *sl = &s[rnd(NSLOT)];
        int what = (int)rnd(10);
        if (sl->b == NULL) {
            sl->b = lx_buf_get(&p);
            sl->n = 0;
            held++;
            if (sl->b == NULL || sl->b->len != 0 || sl->b->off != 0 ||
                sl->b->cap != 48)
                bad = 1;
        } else if (what == 0) {
            lx_buf_put(&p, sl->b);
            sl->b = NULL;
            held--;
        } else if (what < 6) { /* append */
            size_t k = rnd(what == 5 ? 700 : 60) + 1;
            size_t maxc = rnd(4) == 0 ? 1 + rnd(MAXCAP) : MAXCAP;
            lx_buf_t *before = sl->b;
            size_t cap0 = before->cap;
            int had_off = before->off > 0;
            int rc = lx_buf_reserve(&p, &sl->b, k, maxc);
            lx_buf_t *b = sl->b;
            n_grow += rc == LX_OK && b->cap > cap0;
            n_err += rc == LX_ERR;
            n_compact += had_off && b->off == 0 && b->len > 0;
            if (rc == LX_OK) {
                if (b->cap - b->len < k ||
                    b->cap > (cap0 > maxc ? cap0 : maxc))
                    bad = 2;
                if (b->cap != cap0 && b->cap != maxc && b->cap % cap0 != 0)
                    bad = 3;
                if (sl->n + k > MAXCAP)
                    bad = 4;
                else {
                    for (size_t i = 0; i < k; i++) {
                        unsigned char c = (unsigned char)rng();
                        b->data[b->len + i] = (char)c;
                        sl->model[sl->n + i] = c;
                    }
                    b->len += k;
                    sl->n += k;
                }
            } else {
                if (rc != LX_ERR)
                    bad = 5;
                /* it may fail only when it cannot fit under max_cap */
                if (sl->n + k <= maxc && sl->n + k <= MAXCAP)
                    bad = 6;
                if (b != before || b->cap != cap0)
                    bad = 7;
            }
        } else if (what < 9) { /* consume */
            size_t k = rnd(sl->n + 1);
            lx_buf_consume(sl->b, k);
            memmove(sl->model, sl->model + k, sl->n - k);
            sl->n -= k;
            if (sl->n == 0 && (sl->b->off != 0 || sl->b->len != 0))
                bad = 8;
        }
        /* invariants */
        for (int i = 0; i < NSLOT && !bad; i++) {
            lx_buf_t *b = s[i].b;
            if (b == NULL)
                continue;
            if (b->off > b->len || b->len > b->cap || b->next != NULL)
                bad = 9;
            else if (lx_buf_avail(b) != s[i].n ||
                     memcmp(lx_buf_head(b), s[i].model, s[i].n) != 0)
                bad = 10;
        }
        if (!bad && (p.nfree > p.max_free ||
                     lx_buf_pooled() - pooled0 != (long)p.nfree ||
                     lx_buf_live() - live0 != (long)(held + p.nfree)))
            bad = 11;
        if (bad)
            CHECK(0, "seed %" PRIu64 " op %d: invariant %d broken", seed, op,
                  bad);
    }
    if (!bad)
        CHECK(1, "random run");
    CHECK(n_grow > 50 && n_err > 50 && n_compact > 50,
          "seed %" PRIu64 ": paths exercised (grow %d, fail %d, compact %d)",
          seed, n_grow, n_err, n_compact);
    for (int i = 0; i < NSLOT; i++)
        lx_buf_put(&p, s[i].b);
    lx_bufpool_clear(&p);
    CHECK(lx_buf_live() == live0 && lx_buf_pooled() == pooled0,
          "seed %" PRIu64 ": counters back (live %ld pooled %ld)", seed,
          lx_buf_live() - live0, lx_buf_pooled() - pooled0);
}

int main(void)
{
    test_get_put_reuse();
    test_consume();
    test_reserve_compact();
    test_reserve_grow();
    test_random(1, 10000);
    test_random(0xdeadbeef, 10000);
    test_random((uint64_t)20240601, 10000);
    CHECK(lx_buf_live() == 0 && lx_buf_pooled() == 0,
          "nothing left at exit: live %ld pooled %ld", lx_buf_live(),
          lx_buf_pooled());
    return check_done();
}
