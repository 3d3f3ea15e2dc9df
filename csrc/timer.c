#define _POSIX_C_SOURCE 200809L
#include "timer.h"

#include <time.h>

void lx_timer_list_init(lx_timer_list_t *l, uint64_t duration_ms)
{
    l->head.prev = l->head.next = &l->head;
    l->head.cb = NULL;
    l->head.deadline = 0;
    l->duration = duration_ms ? duration_ms : 1;
}

void lx_timer_init(lx_timer_t *t, void (*cb)(lx_timer_t *))
{
    t->prev = t->next = NULL;
    t->deadline = 0;
    t->cb = cb;
}

void lx_timer_cancel(lx_timer_t *t)
{
    if (t->next == NULL)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void lx_timer_arm(lx_timer_list_t *l, lx_timer_t *t, uint64_t now)
{
    lx_timer_cancel(t);
    t->deadline = now + l->duration;
    t->prev = l->head.prev;
    t->next = &l->head;
    l->head.prev->next = t;
    l->head.prev = t;
}

uint64_t lx_timer_list_next(const lx_timer_list_t *l)
{
    if (l->head.next == &l->head)
        return LX_TIMER_NEVER;
    return l->head.next->deadline;
}

int lx_timer_list_expire(lx_timer_list_t *l, uint64_t now)
{
    int n = 0;
    while (l->head.next != &l->head && l->head.next->deadline <= now) {
        lx_timer_t *t = l->head.next;
        lx_timer_cancel(t);
        n++;
        t->cb(t);
    }
    return n;
}

uint64_t lx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t lx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}
