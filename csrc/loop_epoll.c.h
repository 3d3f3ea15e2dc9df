/* epoll backend of loop.c; the deadline is a timerfd in the same set. */
#include <sys/epoll.h>
#include <sys/timerfd.h>

struct lx_loop {
    int fd;
    int max_events;
    lx_io_t timer;  /* the timerfd, registered like any io */
    uint64_t armed; /* its deadline, LX_TIMER_NEVER when disarmed */
    struct epoll_event events[];
};

lx_loop_t *lx_loop_new(int max_events)
{
    lx_loop_t *loop =
        malloc(sizeof(*loop) + sizeof(struct epoll_event) * max_events);
    if (loop == NULL)
        return NULL;
    loop->max_events = max_events;
    loop->armed = LX_TIMER_NEVER;
    loop->fd = epoll_create1(EPOLL_CLOEXEC);
    loop->timer.fd =
        timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    loop->timer.kind = 0;
    if (loop->fd < 0 || loop->timer.fd < 0 ||
        lx_loop_add(loop, &loop->timer, LX_EV_READ) < 0) {
        int e = errno;
        if (loop->fd >= 0)
            close(loop->fd);
        if (loop->timer.fd >= 0)
            close(loop->timer.fd);
        free(loop);
        errno = e;
        return NULL;
    }
    return loop;
}

void lx_loop_free(lx_loop_t *loop)
{
    if (loop == NULL)
        return;
    close(loop->timer.fd);
    close(loop->fd);
    free(loop);
}

int lx_loop_fd(const lx_loop_t *loop)
{
    return loop->fd;
}

static int epoll_set(lx_loop_t *loop, int op, lx_io_t *io, unsigned events)
{
    /* Edge-triggered: an owner hears once of each new readiness, and
     * interest changes only ever add a direction. */
    struct epoll_event ev;
    ev.events = EPOLLET | EPOLLRDHUP;
    if (events & LX_EV_READ)
        ev.events |= EPOLLIN;
    if (events & LX_EV_WRITE)
        ev.events |= EPOLLOUT;
    ev.data.ptr = io;
    if (epoll_ctl(loop->fd, op, io->fd, &ev) < 0)
        return LX_ERR;
    io->events = (unsigned short)events;
    return LX_OK;
}

int lx_loop_add(lx_loop_t *loop, lx_io_t *io, unsigned events)
{
    return epoll_set(loop, EPOLL_CTL_ADD, io, events);
}

int lx_loop_mod(lx_loop_t *loop, lx_io_t *io, unsigned events)
{
    return epoll_set(loop, EPOLL_CTL_MOD, io, events);
}

int lx_loop_del(lx_loop_t *loop, lx_io_t *io)
{
    struct epoll_event ev = {0};
    io->events = 0;
    if (epoll_ctl(loop->fd, EPOLL_CTL_DEL, io->fd, &ev) < 0)
        return LX_ERR;
    return LX_OK;
}

int lx_loop_deadline(lx_loop_t *loop, uint64_t at_ms)
{
    if (at_ms >= loop->armed)
        return LX_OK;
    /* Absolute on the clock lx_now_ms reads. A zero it_value would disarm:
     * "now" is the first nanosecond, long past. */
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (at_ms == 0)
        its.it_value.tv_nsec = 1;
    else {
        its.it_value.tv_sec = (time_t)(at_ms / 1000);
        its.it_value.tv_nsec = (long)(at_ms % 1000) * 1000000L;
    }
    if (timerfd_settime(loop->timer.fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
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
    int n = epoll_wait(loop->fd, loop->events, loop->max_events, timeout_ms);
    if (n < 0) {
        return errno == EINTR ? 0 : LX_ERR;
    }
    for (int i = 0; i < n; i++) {
        if (loop->events[i].data.ptr != &loop->timer)
            continue;
        /* The deadline passed: read the expiry count (so the next one is
         * a new edge) and hide the event from the owner. */
        uint64_t ticks;
        (void)!read(loop->timer.fd, &ticks, sizeof(ticks));
        loop->armed = LX_TIMER_NEVER;
        loop->events[i] = loop->events[--n];
        break;
    }
    return n;
}

lx_io_t *lx_loop_event(const lx_loop_t *loop, int i, unsigned *events)
{
    uint32_t e = loop->events[i].events;
    unsigned r = 0;
    if (e & EPOLLIN)
        r |= LX_EV_READ;
    if (e & EPOLLOUT)
        r |= LX_EV_WRITE;
    if (e & EPOLLRDHUP)
        r |= LX_EV_READ | LX_EV_EOF;
    if (e & (EPOLLHUP | EPOLLERR))
        r |= LX_EV_READ | LX_EV_WRITE | LX_EV_EOF;
    *events = r;
    return loop->events[i].data.ptr;
}
