/* Timeouts as intrusive lists, one list per duration. Pure C.
 *
 * Every timer on a list has the same duration, so appending at the tail
 * keeps the list sorted by deadline: arm, cancel and expire are O(1). */
#ifndef LX_TIMER_H
#define LX_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct lx_timer {
    struct lx_timer *prev, *next; /* NULL when not armed */
    uint64_t deadline;            /* ms on the monotonic clock */
    void (*cb)(struct lx_timer *t);
} lx_timer_t;

typedef struct {
    lx_timer_t head; /* sentinel of a circular list */
    uint64_t duration;
} lx_timer_list_t;

#define LX_TIMER_NEVER UINT64_MAX

void lx_timer_list_init(lx_timer_list_t *l, uint64_t duration_ms);
void lx_timer_init(lx_timer_t *t, void (*cb)(lx_timer_t *));
/* (Re)arm t on l to fire at now + l->duration. */
void lx_timer_arm(lx_timer_list_t *l, lx_timer_t *t, uint64_t now);
void lx_timer_cancel(lx_timer_t *t);
static inline int lx_timer_armed(const lx_timer_t *t)
{
    return t->next != NULL;
}
/* Deadline of the first timer, LX_TIMER_NEVER when empty. */
uint64_t lx_timer_list_next(const lx_timer_list_t *l);
/* Unlink and fire every timer due at now; a callback may arm timers. */
int lx_timer_list_expire(lx_timer_list_t *l, uint64_t now);
/* Milliseconds and microseconds on the monotonic clock. */
uint64_t lx_now_ms(void);
uint64_t lx_now_us(void);

#endif
