/* Unit tests of csrc/timer.c: per-duration timer lists.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_timer.c \
 *       -o tests/c/bin/test_timer
 *   ./tests/c/bin/test_timer
 *
 * Time is passed in explicitly, so everything but lx_now_ms is
 * deterministic. */
#define _DEFAULT_SOURCE

#include "../../csrc/timer.c"
#include "lx.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* A timer that records its firing order. */
typedef struct {
    lx_timer_t t;
    int id;
} tt_t;

static int fired[64], nfired;
static uint64_t cb_now;            /* "now" seen by callbacks */
static lx_timer_list_t *cb_list;   /* list callbacks arm on */
static tt_t *cb_other, *cb_other2; /* timers callbacks touch */

static void rec_cb(lx_timer_t *t)
{
    tt_t *x = LX_STRUCT_FROM_MEMBER(tt_t, t, t);
    if (nfired < 64)
        fired[nfired++] = x->id;
}

static void reset_fired(void)
{
    nfired = 0;
    memset(fired, 0, sizeof(fired));
}

/* Walk the list both ways and check the links; returns the length. */
static int list_len(const lx_timer_list_t *l)
{
    int n = 0;
    const lx_timer_t *h = &l->head, *t = h->next;
    while (t != h) {
        if (t->next->prev != t || t->prev->next != t)
            return -1;
        t = t->next;
        if (++n > 1000)
            return -1;
    }
    return n;
}

static int order_is(const lx_timer_list_t *l, const int *ids, int n)
{
    const lx_timer_t *t = l->head.next;
    for (int i = 0; i < n; i++, t = t->next) {
        if (t == &l->head)
            return 0;
        if (LX_STRUCT_FROM_MEMBER(tt_t, t, t)->id != ids[i])
            return 0;
    }
    return t == &l->head;
}

static void test_basic(void)
{
    lx_timer_list_t l;
    lx_timer_list_init(&l, 100);
    CHECK(l.duration == 100, "duration %" PRIu64, l.duration);
    CHECK(lx_timer_list_next(&l) == LX_TIMER_NEVER, "empty list: never");
    CHECK(lx_timer_list_expire(&l, UINT64_MAX - 1) == 0, "expire empty");

    tt_t a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    lx_timer_init(&a.t, rec_cb);
    lx_timer_init(&b.t, rec_cb);
    lx_timer_init(&c.t, rec_cb);
    CHECK(!lx_timer_armed(&a.t) && a.t.cb == rec_cb, "init: unarmed");

    /* cancel of an unarmed timer is harmless */
    lx_timer_cancel(&a.t);
    CHECK(!lx_timer_armed(&a.t) && list_len(&l) == 0, "cancel unarmed");

    lx_timer_arm(&l, &a.t, 1000);
    lx_timer_arm(&l, &b.t, 1010);
    lx_timer_arm(&l, &c.t, 1020);
    CHECK(lx_timer_armed(&a.t) && a.t.deadline == 1100,
          "armed, deadline %" PRIu64, a.t.deadline);
    CHECK(list_len(&l) == 3 && order_is(&l, (int[]){1, 2, 3}, 3), "order");
    CHECK(lx_timer_list_next(&l) == 1100, "next %" PRIu64,
          lx_timer_list_next(&l));

    /* re-arm moves to the tail with a new deadline */
    lx_timer_arm(&l, &a.t, 1030);
    CHECK(a.t.deadline == 1130 && order_is(&l, (int[]){2, 3, 1}, 3),
          "re-arm moves to tail");
    CHECK(lx_timer_list_next(&l) == 1110, "next after re-arm");
    /* re-arm of the tail timer keeps the list intact */
    lx_timer_arm(&l, &a.t, 1040);
    CHECK(list_len(&l) == 3 && order_is(&l, (int[]){2, 3, 1}, 3),
          "re-arm of tail");

    /* cancel in the middle, twice */
    lx_timer_cancel(&c.t);
    CHECK(!lx_timer_armed(&c.t) && c.t.prev == NULL &&
              order_is(&l, (int[]){2, 1}, 2),
          "cancel middle");
    lx_timer_cancel(&c.t);
    CHECK(list_len(&l) == 2, "double cancel harmless");

    /* expire: nothing due */
    reset_fired();
    CHECK(lx_timer_list_expire(&l, 1109) == 0 && nfired == 0,
          "nothing due at 1109");
    /* exactly at the deadline fires */
    CHECK(lx_timer_list_expire(&l, 1110) == 1 && nfired == 1 && fired[0] == 2,
          "due at deadline");
    CHECK(!lx_timer_armed(&b.t), "fired timer is unarmed");
    CHECK(lx_timer_list_next(&l) == 1140, "next %" PRIu64,
          lx_timer_list_next(&l));
    CHECK(lx_timer_list_expire(&l, 5000) == 1 && fired[1] == 1 &&
              list_len(&l) == 0,
          "last one");
    CHECK(lx_timer_list_next(&l) == LX_TIMER_NEVER, "empty again");

    /* moving a timer from one list to another */
    lx_timer_list_t m;
    lx_timer_list_init(&m, 7);
    lx_timer_arm(&l, &a.t, 0);
    lx_timer_arm(&l, &b.t, 0);
    lx_timer_arm(&m, &a.t, 0);
    CHECK(list_len(&l) == 1 && list_len(&m) == 1 && a.t.deadline == 7 &&
              order_is(&m, (int[]){1}, 1),
          "arm on another list moves it");
    lx_timer_cancel(&a.t);
    lx_timer_cancel(&b.t);
    CHECK(list_len(&l) == 0 && list_len(&m) == 0, "both empty");
}

static void test_duration_zero(void)
{
    lx_timer_list_t l;
    lx_timer_list_init(&l, 0);
    CHECK(l.duration == 1, "duration 0 becomes 1 ms: %" PRIu64, l.duration);
    tt_t a = {.id = 1};
    lx_timer_init(&a.t, rec_cb);
    lx_timer_arm(&l, &a.t, 500);
    CHECK(a.t.deadline == 501, "deadline %" PRIu64, a.t.deadline);
    reset_fired();
    CHECK(lx_timer_list_expire(&l, 500) == 0, "not due at arm time");
    CHECK(lx_timer_list_expire(&l, 501) == 1 && nfired == 1, "due 1 ms on");
}

static void test_expire_order(void)
{
    lx_timer_list_t l;
    lx_timer_list_init(&l, 10);
    tt_t t[20];
    for (int i = 0; i < 20; i++) {
        t[i].id = i;
        lx_timer_init(&t[i].t, rec_cb);
        lx_timer_arm(&l, &t[i].t, (uint64_t)(i / 2)); /* ties in pairs */
    }
    /* re-arm some: they go to the tail in re-arm order */
    lx_timer_arm(&l, &t[3].t, 10);
    lx_timer_arm(&l, &t[0].t, 10);
    reset_fired();
    int n = lx_timer_list_expire(&l, 14); /* deadlines <= 14: i/2 <= 4 */
    CHECK(n == 8, "fired %d, want 8", n);
    int want[] = {1, 2, 4, 5, 6, 7, 8, 9};
    int ok = nfired == 8;
    for (int i = 0; ok && i < 8; i++)
        ok = fired[i] == want[i];
    CHECK(ok, "deadline order");
    CHECK(lx_timer_list_next(&l) == 15, "next %" PRIu64,
          lx_timer_list_next(&l));
    for (int i = 0; i < 20; i++) {
        int due = (i / 2 <= 4 && i != 0 && i != 3);
        CHECK(lx_timer_armed(&t[i].t) == !due, "timer %d armed state", i);
    }
    reset_fired();
    n = lx_timer_list_expire(&l, 1000);
    CHECK(n == 12 && list_len(&l) == 0, "rest fired: %d", n);
    CHECK(fired[10] == 3 && fired[11] == 0, "re-armed ones last");
}

/* Callback that re-arms itself at cb_now: must not fire again in the same
 * expire since its new deadline is in the future. */
static int self_count;
static void rearm_self_cb(lx_timer_t *t)
{
    self_count++;
    rec_cb(t);
    lx_timer_arm(cb_list, t, cb_now);
}

/* Callback that cancels cb_other (due too) and arms cb_other2. */
static void meddle_cb(lx_timer_t *t)
{
    rec_cb(t);
    lx_timer_cancel(&cb_other->t);
    lx_timer_arm(cb_list, &cb_other2->t, cb_now);
}

/* Callback that arms cb_other with an old "now", making it due at once. */
static void arm_due_cb(lx_timer_t *t)
{
    rec_cb(t);
    lx_timer_arm(cb_list, &cb_other->t, 0);
}

static void test_callbacks(void)
{
    lx_timer_list_t l;
    lx_timer_list_init(&l, 10);
    cb_list = &l;

    /* self re-arm */
    tt_t a = {.id = 1}, b = {.id = 2};
    lx_timer_init(&a.t, rearm_self_cb);
    lx_timer_init(&b.t, rec_cb);
    lx_timer_arm(&l, &a.t, 0);
    lx_timer_arm(&l, &b.t, 0);
    reset_fired();
    self_count = 0;
    cb_now = 100;
    int n = lx_timer_list_expire(&l, 100);
    CHECK(n == 2 && self_count == 1, "self re-arm fires once: n %d count %d",
          n, self_count);
    CHECK(lx_timer_armed(&a.t) && a.t.deadline == 110 &&
              !lx_timer_armed(&b.t) && order_is(&l, (int[]){1}, 1),
          "self re-armed at 110");
    cb_now = 110;
    CHECK(lx_timer_list_expire(&l, 110) == 1 && a.t.deadline == 120,
          "fires again next period");
    lx_timer_cancel(&a.t);

    /* a callback cancels a due timer and arms another */
    tt_t m = {.id = 10}, o = {.id = 11}, o2 = {.id = 12}, z = {.id = 13};
    lx_timer_init(&m.t, meddle_cb);
    lx_timer_init(&o.t, rec_cb);
    lx_timer_init(&o2.t, rec_cb);
    lx_timer_init(&z.t, rec_cb);
    cb_other = &o;
    cb_other2 = &o2;
    lx_timer_arm(&l, &m.t, 0);
    lx_timer_arm(&l, &o.t, 0);
    lx_timer_arm(&l, &o2.t, 0); /* due, but re-armed into the future */
    lx_timer_arm(&l, &z.t, 1);
    reset_fired();
    cb_now = 50;
    n = lx_timer_list_expire(&l, 50);
    CHECK(n == 2 && nfired == 2 && fired[0] == 10 && fired[1] == 13,
          "cancelled/re-armed timers do not fire: n %d [%d %d %d]", n,
          fired[0], fired[1], fired[2]);
    CHECK(!lx_timer_armed(&o.t) && lx_timer_armed(&o2.t) &&
              o2.t.deadline == 60 && list_len(&l) == 1,
          "state after meddling");
    lx_timer_cancel(&o2.t);

    /* a callback arms a timer that is already due: it fires in the same
     * expire, after the callback */
    tt_t d = {.id = 20}, e = {.id = 21};
    lx_timer_init(&d.t, arm_due_cb);
    lx_timer_init(&e.t, rec_cb);
    cb_other = &e;
    lx_timer_arm(&l, &d.t, 0);
    reset_fired();
    n = lx_timer_list_expire(&l, 50);
    CHECK(n == 2 && fired[0] == 20 && fired[1] == 21 && list_len(&l) == 0,
          "timer armed due during expire fires: n %d", n);
}

/* Many timers, random arm/cancel/expire against a model. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_random(void)
{
    enum { N = 32 };
    lx_timer_list_t l;
    lx_timer_list_init(&l, 25);
    tt_t t[N];
    uint64_t dl[N]; /* model: deadline or 0 when unarmed */
    for (int i = 0; i < N; i++) {
        t[i].id = i;
        lx_timer_init(&t[i].t, rec_cb);
        dl[i] = 0;
    }
    uint64_t now = 1;
    int bad = 0;
    for (int op = 0; op < 10000 && !bad; op++) {
        int i = (int)(rng() % N);
        switch (rng() % 4) {
        case 0:
        case 1:
            lx_timer_arm(&l, &t[i].t, now);
            dl[i] = now + 25;
            break;
        case 2:
            lx_timer_cancel(&t[i].t);
            dl[i] = 0;
            break;
        default: {
            now += rng() % 10;
            reset_fired();
            int want = 0;
            for (int k = 0; k < N; k++)
                want += dl[k] && dl[k] <= now;
            int n = lx_timer_list_expire(&l, now);
            if (n != want || nfired != n)
                bad = 1;
            uint64_t last = 0;
            for (int k = 0; k < nfired && !bad; k++) {
                int id = fired[k];
                if (dl[id] == 0 || dl[id] > now || dl[id] < last)
                    bad = 2;
                last = dl[id];
                dl[id] = 0;
            }
        }
        }
        uint64_t next = LX_TIMER_NEVER;
        int armed = 0;
        for (int k = 0; k < N; k++) {
            if (dl[k] && dl[k] < next)
                next = dl[k];
            armed += dl[k] != 0;
            if (lx_timer_armed(&t[k].t) != (dl[k] != 0))
                bad = 3;
        }
        if (!bad && (lx_timer_list_next(&l) != next || list_len(&l) != armed))
            bad = 4;
        if (bad)
            CHECK(0, "op %d: invariant %d broken", op, bad);
    }
    if (!bad)
        CHECK(1, "random run");
}

static void test_now(void)
{
    uint64_t a = lx_now_ms();
    CHECK(a > 0, "clock started");
    uint64_t prev = a;
    int mono = 1;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = lx_now_ms();
        if (x < prev)
            mono = 0;
        prev = x;
    }
    CHECK(mono, "monotonic");
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    uint64_t b = lx_now_ms();
    CHECK(b - a >= 50 && b - a < 2000, "50 ms sleep measured as %" PRIu64,
          b - a);
}

int main(void)
{
    test_basic();
    test_duration_zero();
    test_expire_order();
    test_callbacks();
    test_random();
    test_now();
    return check_done();
}
