/* epoll backend of loop.c */
#include <sys/epoll.h>

struct lx_loop {
    int fd;
    int max_events;
    struct epoll_event events[];
};

lx_loop_t *lx_loop_new(int max_events)
{
    lx_loop_t *loop =
        malloc(sizeof(*loop) + sizeof(struct epoll_event) * max_events);
    if (loop == NULL)
        return NULL;
    loop->fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->fd < 0) {
        int e = errno;
        free(loop);
        errno = e;
        return NULL;
    }
    loop->max_events = max_events;
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

int lx_loop_wait(lx_loop_t *loop, int timeout_ms)
{
    int n = epoll_wait(loop->fd, loop->events, loop->max_events, timeout_ms);
    if (n < 0) {
        return errno == EINTR ? 0 : LX_ERR;
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
