/* Readiness loop behind one pollable fd (epoll on Linux, kqueue on BSD and
 * macOS). Registrations are edge-triggered: an owner is told once when a
 * direction becomes ready and must then work until EAGAIN (or a short read)
 * before waiting again. The loop has a timer of its own, so that its fd is
 * also readable at its owner's next deadline: a program that only watches
 * the fd sees timeouts too. Pure C. */
#ifndef LX_LOOP_H
#define LX_LOOP_H

#include "lx.h"
#include "timer.h"

#define LX_EV_READ 0x01
#define LX_EV_WRITE 0x02
/* The peer closed its side: reported with LX_EV_READ. The edge for it
 * may come with the last bytes, so an owner that skips reading after a
 * short read must not skip it then (or the end goes unseen). */
#define LX_EV_EOF 0x04
/* Hang-ups and errors are reported as readiness (and EOF): the next read or
 * write tells the owner what happened. */

typedef struct lx_io {
    int fd;
    unsigned short events; /* registered interest */
    unsigned short kind;   /* for the owner: what this io belongs to */
} lx_io_t;

typedef struct lx_loop lx_loop_t;

lx_loop_t *lx_loop_new(int max_events);
void lx_loop_free(lx_loop_t *loop);
/* The fd that is readable whenever lx_loop_wait would return events, and
 * from the deadline set by lx_loop_deadline on. */
int lx_loop_fd(const lx_loop_t *loop);
/* Make the fd readable at at_ms (lx_now_ms's clock; 0: now) at the
 * latest. Only a deadline earlier than the one armed re-arms the timer (a
 * syscall): a later one is the caller's to set again once the armed one
 * has passed, which lx_loop_wait notes. LX_TIMER_NEVER changes nothing.
 * LX_OK or LX_ERR (errno). */
int lx_loop_deadline(lx_loop_t *loop, uint64_t at_ms);
/* The deadline armed now, LX_TIMER_NEVER when none is. */
uint64_t lx_loop_armed(const lx_loop_t *loop);
/* Register io->fd edge-triggered for events. LX_OK or LX_ERR (errno). */
int lx_loop_add(lx_loop_t *loop, lx_io_t *io, unsigned events);
/* Change a registration to events (edge-triggered as well): an fd whose
 * writes never block is better left without write interest, which only
 * brings an event when it is registered. */
int lx_loop_mod(lx_loop_t *loop, lx_io_t *io, unsigned events);
int lx_loop_del(lx_loop_t *loop, lx_io_t *io);
/* Wait up to timeout_ms (-1: forever); returns how many events are ready
 * (0 on timeout, EINTR or when only the deadline passed) or LX_ERR. The
 * deadline's own event is consumed here, never returned. Touches no shared
 * state beyond the loop, so it may run with the GIL released. */
int lx_loop_wait(lx_loop_t *loop, int timeout_ms);
/* The i-th ready event of the last wait: its io and LX_EV_* bits. */
lx_io_t *lx_loop_event(const lx_loop_t *loop, int i, unsigned *events);

#endif
