/* kqueue backend of loop.c: EV_CLEAR gives the same edge semantics; the
 * deadline is a one-shot EVFILT_TIMER. */
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>

/* The ident of the deadline's timer (timers have their own namespace). */
#define DEADLINE_IDENT 1

struct lx_loop {
    int fd;
    int max_events;
    lx_io_t timer;  /* udata of the deadline's events */
    uint64_t armed; /* its deadline, LX_TIMER_NEVER when disarmed */
    struct kevent events[];
};

lx_loop_t *lx_loop_new(int max_events)
{
    lx_loop_t *loop =
        malloc(sizeof(*loop) + sizeof(struct kevent) * max_events);
    if (loop == NULL)
        return NULL;
    loop->fd = kqueue();
    if (loop->fd < 0) {
        int e = errno;
        free(loop);
        errno = e;
        return NULL;
    }
    loop->max_events = max_events;
    loop->timer.fd = -1;
    loop->armed = LX_TIMER_NEVER;
    return loop;
}

void lx_loop_free(lx_loop_t *loop)
{
    if (loop == NULL)
        return;
    close(loop->fd);
    free(loop);
}

int lx_loop_fd(const lx_loop_t *loop)
{
    return loop->fd;
}

int lx_loop_add(lx_loop_t *loop, lx_io_t *io, unsigned events)
{
    struct kevent ch[2];
    int n = 0;
    if (events & LX_EV_READ)
        EV_SET(&ch[n++], io->fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, io);
    if (events & LX_EV_WRITE)
        EV_SET(&ch[n++], io->fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, io);
    if (kevent(loop->fd, ch, n, NULL, 0, NULL) < 0)
        return LX_ERR;
    io->events = (unsigned short)events;
    return LX_OK;
}

int lx_loop_mod(lx_loop_t *loop, lx_io_t *io, unsigned events)
{
    struct kevent ch[2];
    int n = 0;
    if ((events & LX_EV_READ) != (io->events & LX_EV_READ))
        EV_SET(&ch[n++], io->fd, EVFILT_READ,
               (events & LX_EV_READ) ? EV_ADD | EV_CLEAR : EV_DELETE, 0, 0,
               io);
    if ((events & LX_EV_WRITE) != (io->events & LX_EV_WRITE))
        EV_SET(&ch[n++], io->fd, EVFILT_WRITE,
               (events & LX_EV_WRITE) ? EV_ADD | EV_CLEAR : EV_DELETE, 0, 0,
               io);
    if (n && kevent(loop->fd, ch, n, NULL, 0, NULL) < 0)
        return LX_ERR;
    io->events = (unsigned short)events;
    return LX_OK;
}

int lx_loop_del(lx_loop_t *loop, lx_io_t *io)
{
    struct kevent ch[2];
    int n = 0;
    if (io->events & LX_EV_READ)
        EV_SET(&ch[n++], io->fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    if (io->events & LX_EV_WRITE)
        EV_SET(&ch[n++], io->fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    io->events = 0;
    /* Closing the fd removes its filters anyway; ignore ENOENT. */
    if (n && kevent(loop->fd, ch, n, NULL, 0, NULL) < 0 && errno != ENOENT)
        return LX_ERR;
    return LX_OK;
}

int lx_loop_deadline(lx_loop_t *loop, uint64_t at_ms)
{
    if (at_ms >= loop->armed)
        return LX_OK;
    /* Relative milliseconds (NOTE_ABSTIME is not everywhere); adding a
     * timer with the same ident replaces the armed one. */
    uint64_t now = lx_now_ms();
    int64_t ms = at_ms > now ? (int64_t)(at_ms - now) : 0;
    struct kevent ch;
    EV_SET(&ch, DEADLINE_IDENT, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, ms,
           &loop->timer);
    if (kevent(loop->fd, &ch, 1, NULL, 0, NULL) < 0)
        return LX_ERR;
    loop->armed = at_ms;
    return LX_OK;
}

uint64_t lx_loop_armed(const lx_loop_t *loop)
{
    return loop->armed;
}

int lx_loop_wait(lx_loop_t *loop, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int n = kevent(loop->fd, NULL, 0, loop->events, loop->max_events, tsp);
    if (n < 0) {
        return errno == EINTR ? 0 : LX_ERR;
    }
    for (int i = 0; i < n; i++) {
        if (loop->events[i].filter != EVFILT_TIMER)
            continue;
        /* The deadline passed (one-shot: nothing to consume). */
        loop->armed = LX_TIMER_NEVER;
        loop->events[i] = loop->events[--n];
        break;
    }
    return n;
}

lx_io_t *lx_loop_event(const lx_loop_t *loop, int i, unsigned *events)
{
    const struct kevent *ke = &loop->events[i];
    unsigned r = 0;
    if (ke->filter == EVFILT_READ)
        r |= LX_EV_READ;
    else if (ke->filter == EVFILT_WRITE)
        r |= LX_EV_WRITE;
    if (ke->flags & EV_EOF)
        r |= LX_EV_EOF;
    if (ke->flags & EV_ERROR)
        r |= LX_EV_READ | LX_EV_WRITE | LX_EV_EOF;
    *events = r;
    return ke->udata;
}
