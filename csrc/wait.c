/* The waits of any greenlet on a connection, and the socket I/O of a
 * request, which may wait: the hub resumes the greenlet that waited, at an
 * event, a timeout, or the end of a turn. */
#define _GNU_SOURCE
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "green.h"
#include "xport.h"

/* A writer that never has to wait still lets the others run after this
 * many bytes: a fast reader of a huge response cannot starve the loop. */
#define WRITE_BURST (256u * 1024u)

uint64_t lx_conn_now(lx_server_t *srv)
{
    /* Outside a turn the turn's reading may be old: a timer armed with
     * it would fire early. */
    if (!srv->in_turn)
        srv->now = lx_now_ms();
    return srv->now;
}

void lx_conn_arm(lx_conn_t *c, lx_timer_list_t *l)
{
    lx_timer_arm(l, &c->timer, lx_conn_now(c->srv));
}

/* Queue c's waiter to be resumed at the end of the turn (the next one if
 * the resumptions are under way): it let the others run, or its
 * connection closed under it. A queued connection is not freed. */
void lx_conn_queue_resume(lx_conn_t *c)
{
    lx_server_t *srv = c->srv;
    if (c->flags & LX_CONN_F_RESUME)
        return;
    c->flags |= LX_CONN_F_RESUME;
    c->resume_next = NULL;
    if (srv->resume_tail != NULL)
        srv->resume_tail->resume_next = c;
    else
        srv->resume_head = c;
    srv->resume_tail = c;
}

void lx_conn_wake(lx_conn_t *c, int result)
{
    c->wait_result = (uint8_t)result;
    c->flags &= ~LX_CONN_F_WAITING;
    lx_timer_cancel(&c->timer);
    lx_hub_resume(c->srv, c->waiter);
}

ssize_t lx_conn_fill(lx_conn_t *c, size_t max_cap)
{
    lx_server_t *srv = c->srv;
    if (c->rbuf == NULL) {
        c->rbuf = lx_buf_get(&srv->bufs);
        if (c->rbuf == NULL)
            return LX_ERR;
    }
    lx_buf_t *b = c->rbuf;
    if (b->cap - b->len < LX_READ_RESERVE &&
        lx_buf_reserve(&srv->bufs, &c->rbuf, LX_READ_RESERVE, max_cap) < 0) {
        b = c->rbuf;
        if (b->cap == b->len) {
            errno = ENOBUFS;
            return LX_ERR;
        }
    }
    b = c->rbuf;
    size_t room = b->cap - b->len;
    ssize_t n = lx_xp_recv(c->io.fd, c->tls, b->data + b->len, room);
    if (n > 0) {
        b->len += (size_t)n;
        /* A read that drained the socket: the next edge will say when
         * more arrives, so no EAGAIN round trip is needed. Not so once the
         * peer closed: that edge is spent, the end must be read. */
        if (lx_xp_drained(c->tls, (size_t)n, room) &&
            !(c->flags & LX_CONN_F_EOF))
            c->flags &= ~LX_CONN_F_READABLE;
    } else if (n == LX_AGAIN) {
        c->flags &= ~LX_CONN_F_READABLE;
    }
    return n;
}

/* Park the current greenlet on c until the hub resumes it, within the
 * timeout of the list given (none for a wait for nothing, what 0, which the
 * end of the turn resumes): 0, or -1 with an exception. */
static int park(lx_conn_t *c, unsigned what, lx_timer_list_t *timeout)
{
    lx_server_t *srv = c->srv;
    PyObject *me = lx_green_current();
    if (me == NULL)
        return -1;
    if (srv->hub == NULL || me == srv->hub) {
        Py_DECREF(me);
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: the greenlet that drives the loop cannot "
                        "wait for a client");
        return -1;
    }
    if (c->waiter != NULL) {
        Py_DECREF(me);
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: another greenlet is already waiting on "
                        "this connection");
        return -1;
    }
    if (timeout != NULL)
        lx_conn_arm(c, timeout);
    c->waiter = me;
    c->wait_for = (uint8_t)what;
    c->wait_result = LX_WAIT_READY;
    c->flags |= LX_CONN_F_WAITING;
    c->burst = 0;
    int rc = lx_hub_wait_quiet(srv);
    /* Woken by the hub, or resumed by something else (an exception
     * thrown in): the wait is over either way. */
    c->flags &= ~LX_CONN_F_WAITING;
    lx_timer_cancel(&c->timer);
    Py_CLEAR(c->waiter);
    if (rc < 0)
        return -1;
    if (c->wait_result == LX_WAIT_CLOSED) {
        c->flags |= LX_CONN_F_BROKEN;
        PyErr_SetString(srv->st->ClientDisconnected,
                        "the server closed the connection");
        return -1;
    }
    return 0;
}

/* Ask the loop for what on c, besides what it already watches: 0, or -1
 * with an exception (c is then broken). */
static int interest(lx_conn_t *c, unsigned what)
{
    lx_server_t *srv = c->srv;
    if ((what & ~c->io.events) &&
        (c->io.events == 0
             ? lx_loop_add(srv->loop, &c->io, LX_EV_READ | what)
             : lx_loop_mod(srv->loop, &c->io, c->io.events | what)) < 0) {
        c->flags |= LX_CONN_F_BROKEN;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int closed_error(lx_conn_t *c)
{
    PyErr_SetString(c->srv->st->ClientDisconnected,
                    "the connection is closed");
    return -1;
}

int lx_conn_wait(lx_conn_t *c, unsigned what)
{
    lx_server_t *srv = c->srv;
    if (c->flags & LX_CONN_F_CLOSED)
        return closed_error(c);
    if (interest(c, what) < 0)
        return -1;
    if (park(c, what, what & LX_EV_WRITE ? &srv->t_write : &srv->t_body) < 0)
        return -1;
    if (c->wait_result == LX_WAIT_TIMEOUT) {
        /* A slow reader of the response has lost it; a slow sender of the
         * body may still read the answer to it. */
        if (what & LX_EV_WRITE)
            c->flags |= LX_CONN_F_BROKEN;
        PyErr_SetString(PyExc_TimeoutError,
                        what & LX_EV_WRITE
                            ? "timed out writing the response"
                            : "timed out reading the request body");
        return -1;
    }
    return 0;
}

int lx_conns_to_resume(lx_server_t *srv)
{
    return srv->resume_head != NULL;
}

void lx_conns_resume(lx_server_t *srv)
{
    /* Those queued meanwhile wait for the next turn. A connection still
     * to be walked keeps its flag, so it cannot be queued again (and its
     * link changed) before its turn. */
    lx_conn_t *c = srv->resume_head;
    srv->resume_head = srv->resume_tail = NULL;
    while (c != NULL) {
        lx_conn_t *next = c->resume_next;
        c->resume_next = NULL;
        c->flags &= ~LX_CONN_F_RESUME;
        /* Not resumed meanwhile (by the turn's events, or by something
         * else that left the wait): its waiter is still there. */
        if ((c->flags & LX_CONN_F_WAITING) && c->waiter != NULL &&
            (c->wait_for == 0 || (c->flags & LX_CONN_F_CLOSED)))
            lx_conn_wake(c, c->wait_result);
        if ((c->flags & LX_CONN_F_CLOSED) && c->sq != NULL &&
            c->sq->wait_head != NULL)
            lx_conn_wake_writers(c);
        c = next;
    }
}

/* Account n bytes written; past the burst, let the other connections run
 * before going on: 0, or -1 with an exception. */
static int progress(lx_conn_t *c, size_t n)
{
    c->burst += (uint32_t)n;
    if (c->burst < WRITE_BURST || c->srv->hub == NULL)
        return 0;
    c->burst = 0;
    lx_conn_queue_resume(c);
    return park(c, 0, NULL);
}

/* ------------------------------------------------------------------ */
/* socket I/O of a request */

static int gone(lx_conn_t *c, const char *msg)
{
    c->flags |= LX_CONN_F_BROKEN;
    PyErr_SetString(c->srv->st->ClientDisconnected, msg);
    return -1;
}

static Py_ssize_t read_outcome(lx_conn_t *c, ssize_t n)
{
    if (n > 0)
        return n;
    if (n == LX_AGAIN)
        return 0;
    if (n == 0)
        return gone(c, "client closed the connection before sending the "
                       "whole request body");
    c->flags |= LX_CONN_F_BROKEN;
    PyErr_Format(c->srv->st->ClientDisconnected,
                 "error reading the request body (%s)", strerror(errno));
    return -1;
}

Py_ssize_t lx_conn_recv(lx_conn_t *c)
{
    if (c->flags & LX_CONN_F_BROKEN)
        return gone(c, "the connection is closed");
    if (!(c->flags & LX_CONN_F_READABLE))
        return 0;
    return read_outcome(c, lx_conn_fill(c, c->srv->bufs.size));
}

Py_ssize_t lx_conn_read(lx_conn_t *c, char *dst, size_t len)
{
    if (c->flags & LX_CONN_F_BROKEN)
        return gone(c, "the connection is closed");
    if (!(c->flags & LX_CONN_F_READABLE))
        return 0;
    ssize_t n = lx_xp_recv(c->io.fd, c->tls, dst, len);
    if ((n > 0 && lx_xp_drained(c->tls, (size_t)n, len) &&
         !(c->flags & LX_CONN_F_EOF)) ||
        n == LX_AGAIN)
        c->flags &= ~LX_CONN_F_READABLE;
    return read_outcome(c, n);
}

/* The outcome of one write: n > 0 bytes went out, LX_AGAIN (wait until
 * writable) or LX_ERR. 0 to go on, -1 with an exception. */
static int wrote(lx_conn_t *c, ssize_t n, const char *what)
{
    if (n > 0)
        return progress(c, (size_t)n);
    if (n == LX_AGAIN)
        return lx_conn_wait(c, LX_EV_WRITE);
    c->flags |= LX_CONN_F_BROKEN;
    PyErr_Format(c->srv->st->ClientDisconnected,
                 "client went away while sending %s (%s)", what,
                 strerror(errno));
    return -1;
}

int lx_conn_writev(lx_conn_t *c, struct iovec *iov, int iovcnt,
                   const char *what)
{
    int first = 0;
    if (c->flags & LX_CONN_F_BROKEN)
        return gone(c, "the connection is closed");
    while (first < iovcnt) {
        if (iov[first].iov_len == 0) {
            first++;
            continue;
        }
        ssize_t n =
            lx_xp_writev(c->io.fd, c->tls, iov + first,
                         iovcnt - first > IOV_MAX ? IOV_MAX : iovcnt - first);
        if (n > 0)
            first += lx_iov_advance(iov + first, iovcnt - first, (size_t)n);
        if (wrote(c, n, what) < 0)
            return -1;
    }
    return 0;
}

int64_t lx_conn_sendfile(lx_conn_t *c, int fd, off_t *pos, uint64_t len)
{
    uint64_t left = len;
    if (c->flags & LX_CONN_F_BROKEN)
        return gone(c, "the connection is closed");
    while (left > 0) {
        size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
        ssize_t n = lx_xp_sendfile(c->io.fd, c->tls, fd, pos, chunk);
        if (n == 0)
            break; /* the file ended early */
        if (n > 0)
            left -= (uint64_t)n;
        if (wrote(c, n, "a file") < 0)
            return -1;
    }
    return (int64_t)(len - left);
}

/* ------------------------------------------------------------------ */
/* a websocket's waits and its send queue */

int lx_conn_wait_input(lx_conn_t *c)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return closed_error(c);
    if (interest(c, LX_EV_READ) < 0)
        return -1;
    return park(c, LX_EV_READ, NULL);
}

/* Send what the queue holds while the socket takes it. LX_OK (all of it,
 * or the socket is full), or LX_ERR (errno). */
static int send_queue(lx_conn_t *c)
{
    lx_buf_t *b = c->sq->buf;
    int moved = 0;
    while (b != NULL && lx_buf_avail(b) > 0) {
        ssize_t n =
            lx_xp_send(c->io.fd, c->tls, lx_buf_head(b), lx_buf_avail(b));
        if (n == LX_AGAIN)
            break;
        if (n < 0)
            return LX_ERR;
        lx_buf_consume(b, (size_t)n);
        moved = 1;
    }
    if (b != NULL && lx_buf_avail(b) == 0) {
        lx_buf_put(&c->srv->bufs, b);
        c->sq->buf = NULL;
        lx_timer_cancel(&c->sq->timer);
    } else if (moved) {
        lx_conn_arm_write(c); /* the client reads: its time starts again */
    }
    return LX_OK;
}

void lx_conn_arm_write(lx_conn_t *c)
{
    lx_timer_arm(&c->srv->t_write, &c->sq->timer, lx_conn_now(c->srv));
}

size_t lx_conn_queued(const lx_conn_t *c)
{
    return c->sq != NULL && c->sq->buf != NULL ? lx_buf_avail(c->sq->buf) : 0;
}

int lx_conn_send_queued(lx_conn_t *c, struct iovec *iov, int n)
{
    lx_server_t *srv = c->srv;
    if ((c->flags & LX_CONN_F_BROKEN) || c->sq == NULL)
        return closed_error(c);
    int first = 0;
    if (c->sq->buf == NULL) {
        /* Nothing ahead of these bytes: as much as the socket takes now. */
        while (first < n) {
            if (iov[first].iov_len == 0) {
                first++;
                continue;
            }
            ssize_t w = lx_xp_writev(c->io.fd, c->tls, iov + first, n - first);
            if (w == LX_AGAIN)
                break;
            if (w < 0) {
                c->flags |= LX_CONN_F_BROKEN;
                PyErr_Format(srv->st->ClientDisconnected,
                             "client went away (%s)", strerror(errno));
                return -1;
            }
            first += lx_iov_advance(iov + first, n - first, (size_t)w);
        }
        if (first == n)
            return 0;
    }
    size_t rest = 0;
    int i;
    for (i = first; i < n; i++)
        rest += iov[i].iov_len;
    int fresh = c->sq->buf == NULL;
    if (fresh && (c->sq->buf = lx_buf_get(&srv->bufs)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (lx_buf_reserve(&srv->bufs, &c->sq->buf, rest, SIZE_MAX / 2) < 0) {
        if (fresh && lx_buf_avail(c->sq->buf) == 0) {
            lx_buf_put(&srv->bufs, c->sq->buf);
            c->sq->buf = NULL;
        }
        PyErr_NoMemory();
        return -1;
    }
    for (i = first; i < n; i++) {
        if (iov[i].iov_len == 0)
            continue;
        memcpy(c->sq->buf->data + c->sq->buf->len, iov[i].iov_base,
               iov[i].iov_len);
        c->sq->buf->len += iov[i].iov_len;
    }
    if (fresh) {
        if (interest(c, LX_EV_WRITE) < 0)
            return -1;
        lx_conn_arm_write(c);
    }
    return 0;
}

static void unlink_writer(lx_conn_t *c, lx_wwait_t *w)
{
    lx_wwait_t **pp = &c->sq->wait_head, *prev = NULL;
    while (*pp != NULL && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = w->next;
    if (c->sq->wait_tail == w)
        c->sq->wait_tail = prev;
    w->next = NULL;
    w->linked = 0;
}

void lx_conn_wake_writers(lx_conn_t *c)
{
    /* Those waiting now, once each: one that waits again goes behind. */
    size_t n = 0;
    lx_wwait_t *w;
    for (w = c->sq->wait_head; w != NULL; w = w->next)
        n++;
    while (n-- > 0 && (w = c->sq->wait_head) != NULL) {
        unlink_writer(c, w);
        lx_hub_resume(c->srv, w->greenlet);
    }
}

int lx_conn_drain(lx_conn_t *c)
{
    return c->sq != NULL && c->sq->buf != NULL ? send_queue(c) : LX_OK;
}

int lx_conn_wait_room(lx_conn_t *c, size_t bound)
{
    lx_server_t *srv = c->srv;
    while (lx_conn_queued(c) > bound) {
        if (c->flags & (LX_CONN_F_CLOSED | LX_CONN_F_BROKEN))
            return closed_error(c);
        PyObject *me = lx_green_current();
        if (me == NULL)
            return -1;
        if (srv->hub == NULL || me == srv->hub) {
            /* The loop's own greenlet never waits: the queue grows. */
            Py_DECREF(me);
            return 0;
        }
        lx_wwait_t *w = PyMem_RawCalloc(1, sizeof(*w));
        if (w == NULL) {
            Py_DECREF(me);
            PyErr_NoMemory();
            return -1;
        }
        w->greenlet = me;
        w->linked = 1;
        if (c->sq->wait_tail != NULL)
            c->sq->wait_tail->next = w;
        else
            c->sq->wait_head = w;
        c->sq->wait_tail = w;
        int rc = lx_hub_wait_quiet(srv);
        if (w->linked)
            unlink_writer(c, w); /* resumed by something else */
        PyMem_RawFree(w);
        Py_DECREF(me);
        if (rc < 0)
            return -1;
    }
    return 0;
}
