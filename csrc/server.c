/* Server object: listeners, connections, the hub loop, worker greenlets,
 * timeouts and the graceful stop. */
#define _GNU_SOURCE
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 512
#define MAX_IDLE_WORKERS 64
#define LINGER_MS 2000
#define ACCEPT_PAUSE_MS 100
#define READ_RESERVE 4096
/* A writer that never has to wait still lets the others run after this
 * many bytes: a fast reader of a huge response cannot starve the loop. */
#define WRITE_BURST (256u * 1024u)

static const char canned_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ------------------------------------------------------------------ */
/* small helpers */

uint64_t lx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void lx_server_log(lx_server_t *srv, int level, const char *msg, PyObject *exc)
{
    if (srv->log == NULL || srv->log == Py_None) {
        if (exc != NULL) {
            lx_err_set(Py_NewRef(exc));
            PyErr_WriteUnraisable(NULL);
        } else
            PySys_FormatStderr("lichen: %s\n", msg);
        return;
    }
    PyObject *r = PyObject_CallFunction(srv->log, "isO", level, msg,
                                        exc ? exc : Py_None);
    if (r == NULL)
        PyErr_WriteUnraisable(srv->log);
    else
        Py_DECREF(r);
}

const char *lx_server_date(lx_server_t *srv, size_t *len)
{
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        srv->date_len = strftime(srv->date_line, sizeof(srv->date_line),
                                 "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        srv->date_sec = now;
    }
    *len = srv->date_len;
    return srv->date_line;
}

/* ------------------------------------------------------------------ */
/* connections */

static void conn_on_timer(lx_timer_t *t);
static void hub_switch(lx_server_t *srv, PyObject *g);

static lx_conn_t *conn_new(lx_server_t *srv, int fd, int listener)
{
    lx_conn_t *c = PyMem_RawCalloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->io.fd = fd;
    c->io.kind = LX_IO_CONN;
    c->srv = srv;
    c->listener = (uint16_t)listener;
    lx_timer_init(&c->timer, conn_on_timer);
    c->next = &srv->conns;
    c->prev = srv->conns.prev;
    srv->conns.prev->next = c;
    srv->conns.prev = c;
    srv->nconns++;
    lx_debug_count(LX_COUNT_CONNS, 1);
    return c;
}

static lx_server_t *conn_server(lx_conn_t *c);

static void conn_release_buf(lx_server_t *srv, lx_conn_t *c)
{
    if (c->rbuf != NULL) {
        lx_buf_put(&srv->bufs, c->rbuf);
        c->rbuf = NULL;
    }
    c->parsed_len = 0;
}

void lx_conn_close(lx_conn_t *c)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return;
    lx_server_t *srv = conn_server(c);
    lx_timer_cancel(&c->timer);
    if (c->worker != NULL)
        (void)lx_flush_release(&c->worker->req.held); /* before the fd goes */
    close(c->io.fd);
    c->io.fd = -1;
    c->flags |= LX_CONN_F_CLOSED;
    conn_release_buf(srv, c);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    srv->nconns--;
    /* Events of this turn may still name it: free at the end of the turn. */
    c->next = srv->dead;
    srv->dead = c;
}

static void free_dead_conns(lx_server_t *srv)
{
    if (srv->dead != NULL && srv->npending > 0) {
        size_t i, k = 0;
        for (i = srv->pending_head; i < srv->npending; i++)
            if (!(srv->pending[i]->flags & LX_CONN_F_CLOSED))
                srv->pending[k++] = srv->pending[i];
        srv->pending_head = 0;
        srv->npending = k;
    }
    if (srv->dead != NULL && srv->nready_next > 0) {
        /* No resumption may outlive its connection. */
        size_t i, k = 0;
        for (i = 0; i < srv->nready_next; i++)
            if (!(srv->ready_next[i]->flags & LX_CONN_F_CLOSED))
                srv->ready_next[k++] = srv->ready_next[i];
        srv->nready_next = k;
    }
    while (srv->dead != NULL) {
        lx_conn_t *c = srv->dead;
        srv->dead = c->next;
        PyMem_RawFree(c);
        lx_debug_count(LX_COUNT_CONNS, -1);
    }
}

static lx_server_t *conn_server(lx_conn_t *c)
{
    return c->srv;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "400 Bad Request";
    case 408:
        return "408 Request Timeout";
    case 413:
        return "413 Content Too Large";
    case 414:
        return "414 URI Too Long";
    case 417:
        return "417 Expectation Failed";
    case 431:
        return "431 Request Header Fields Too Large";
    case 500:
        return "500 Internal Server Error";
    case 501:
        return "501 Not Implemented";
    case 503:
        return "503 Service Unavailable";
    case 505:
        return "505 HTTP Version Not Supported";
    default:
        return "400 Bad Request";
    }
}

size_t lx_error_response(lx_server_t *srv, int status, char *buf, size_t cap,
                         size_t *body_len)
{
    const char *text = status_text(status);
    size_t dlen;
    const char *date = lx_server_date(srv, &dlen);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%.*s\r\n"
                     "%s\n",
                     text, strlen(text) + 1, (int)dlen, date, text);
    *body_len = strlen(text) + 1;
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* A connection is registered with the loop only once something has to
 * wait on it (io.events == 0 until then): one served in a single go, the
 * request read right after accept and the response written at once, never
 * costs an epoll_ctl. LX_OK, or LX_ERR (the caller closes). */
static int conn_watch(lx_server_t *srv, lx_conn_t *c)
{
    if (LX_LIKELY(c->io.events != 0))
        return LX_OK;
    return lx_loop_add(srv->loop, &c->io, LX_EV_READ);
}

static void conn_linger(lx_server_t *srv, lx_conn_t *c);

/* After the last response on a connection we close: may the client still
 * be sending? Then the close has to linger. Bytes already buffered, an
 * edge not yet drained or a body not read say yes at no cost; when the
 * request had a body, or the client wanted to keep the connection and we
 * close it on our own, one non-blocking read looks. A client that asked
 * for the close (HTTP/1.0, Connection: close) and sent no body has
 * promised to send nothing more (RFC 9112 9.6): it is closed at once. */
static int conn_may_send_more(lx_conn_t *c, lx_req_t *r)
{
    if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0)
        return 1;
    if ((c->flags & LX_CONN_F_READABLE) && !(c->flags & LX_CONN_F_EOF))
        return 1;
    if (c->flags & LX_CONN_F_EOF)
        return 0;
    if (!r->body_done)
        return 1;
    if (r->body_mode == LX_BODY_NONE && !(r->h.flags & LX_REQ_KEEPALIVE))
        return 0;
    char probe[512];
    return lx_sock_recv(c->io.fd, probe, sizeof(probe)) > 0;
}

void lx_conn_reject(lx_conn_t *c, int status)
{
    lx_server_t *srv = conn_server(c);
    char buf[LX_ERROR_RESPONSE_MAX];
    size_t body;
    size_t n = lx_error_response(srv, status, buf, sizeof(buf), &body);
    /* Small enough for any socket buffer: best effort, never blocks. */
    struct iovec iov = {buf, n};
    (void)lx_sock_writev(c->io.fd, &iov, 1);
    conn_linger(srv, c);
}

/* Closing with unread input would reset the connection and could destroy
 * the response before the client reads it (RFC 9112 9.6): shut down our
 * side and discard what still comes, for a while. */
static void conn_linger(lx_server_t *srv, lx_conn_t *c)
{
    shutdown(c->io.fd, SHUT_WR);
    conn_release_buf(srv, c);
    c->state = LX_CS_LINGER;
    c->worker = NULL;
    c->flags &= ~LX_CONN_F_WAITING;
    if (conn_watch(srv, c) < 0) {
        lx_conn_close(c);
        return;
    }
    lx_timer_arm(&srv->t_linger, &c->timer, srv->now);
}

static void conn_linger_read(lx_conn_t *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = lx_sock_recv(c->io.fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == LX_AGAIN) {
            c->flags &= ~LX_CONN_F_READABLE;
            return;
        }
        lx_conn_close(c);
        return;
    }
}

/* Wake the worker waiting on c, with the given outcome. */
static void conn_wake(lx_server_t *srv, lx_conn_t *c, int result)
{
    lx_worker_t *w = c->worker;
    c->wait_result = (uint8_t)result;
    c->flags &= ~LX_CONN_F_WAITING;
    lx_timer_cancel(&c->timer);
    hub_switch(srv, w->greenlet);
}

static void conn_on_timer(lx_timer_t *t)
{
    lx_conn_t *c = LX_STRUCT_FROM_MEMBER(lx_conn_t, timer, t);
    lx_server_t *srv = conn_server(c);
    switch (c->state) {
    case LX_CS_HEAD:
        if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0)
            lx_conn_reject(c, 408);
        else
            lx_conn_close(c); /* idle keep-alive connection */
        break;
    case LX_CS_ACTIVE:
        if (c->flags & LX_CONN_F_WAITING)
            conn_wake(srv, c, LX_WAIT_TIMEOUT);
        break;
    case LX_CS_QUEUED:
        break; /* a worker takes it this turn */
    default:
        lx_conn_close(c);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* workers */

static void worker_serve(lx_worker_t *w);
static lx_conn_t *pending_pop(lx_server_t *srv);
static int worker_take(lx_worker_t *w, lx_conn_t *c);

static PyObject *worker_call(PyObject *self, PyObject *args, PyObject *kw)
{
    lx_worker_t *w = (lx_worker_t *)self;
    lx_server_t *srv = w->srv;
    (void)args;
    (void)kw;
    for (;;) {
        if (w->conn != NULL)
            worker_serve(w);
        lx_conn_t *next = pending_pop(srv);
        if (next != NULL) {
            worker_take(w, next);
            continue; /* the next one without a trip to the hub */
        }
        if (srv->torn_down || srv->nidle >= MAX_IDLE_WORKERS)
            break;
        if (srv->nidle == srv->idle_cap) {
            int cap = srv->idle_cap ? srv->idle_cap * 2 : 16;
            lx_worker_t **n =
                PyMem_Realloc(srv->idle, sizeof(*n) * (size_t)cap);
            if (n == NULL)
                break;
            srv->idle = n;
            srv->idle_cap = cap;
        }
        srv->idle[srv->nidle++] = w;
        PyObject *r = lx_green_switch(srv->hub);
        if (r == NULL) {
            /* GreenletExit at teardown: leave the pool. */
            int i;
            for (i = 0; i < srv->nidle; i++) {
                if (srv->idle[i] == w) {
                    srv->idle[i] = srv->idle[--srv->nidle];
                    break;
                }
            }
            w->exiting = 1;
            return NULL;
        }
        Py_DECREF(r);
    }
    w->exiting = 1;
    Py_RETURN_NONE;
}

static void worker_dealloc(PyObject *self)
{
    lx_worker_t *w = (lx_worker_t *)self;
    PyTypeObject *tp = Py_TYPE(self);
    lx_req_release(&w->req);
    PyMem_Free(w->req.h.headers);
    Py_CLEAR(w->greenlet);
    Py_CLEAR(w->srv);
    tp->tp_free(self);
    Py_DECREF(tp);
    lx_debug_count(LX_COUNT_WORKERS, -1);
}

static PyType_Slot worker_slots[] = {
    {Py_tp_call, worker_call},
    {Py_tp_dealloc, worker_dealloc},
    {0, NULL},
};

PyType_Spec lx_worker_spec = {
    .name = "lichen._lichen.Worker",
    .basicsize = sizeof(lx_worker_t),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = worker_slots,
};

static lx_worker_t *worker_new(lx_server_t *srv)
{
    lx_worker_t *w = PyObject_New(lx_worker_t, srv->st->worker_type);
    if (w == NULL)
        return NULL;
    lx_debug_count(LX_COUNT_WORKERS, 1);
    w->srv = (lx_server_t *)Py_NewRef((PyObject *)srv);
    w->greenlet = NULL;
    w->parent = NULL;
    w->conn = NULL;
    w->exiting = 0;
    memset(&w->req, 0, sizeof(w->req));
    w->req.srv = srv;
    w->req.h.headers =
        PyMem_Malloc(sizeof(lx_header_t) * (srv->limits.max_fields + 1));
    w->prev = w->next = NULL;
    if (w->req.h.headers == NULL) {
        Py_DECREF(w);
        PyErr_NoMemory();
        return NULL;
    }
    w->greenlet = lx_green_new((PyObject *)w, srv->hub);
    if (w->greenlet == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    w->parent = srv->hub;
    /* The server owns the worker until its greenlet has finished. */
    w->next = &srv->workers;
    w->prev = srv->workers.prev;
    srv->workers.prev->next = w;
    srv->workers.prev = w;
    return w;
}

/* Free workers whose greenlet has finished (called by the hub). */
static void reap_workers(lx_server_t *srv)
{
    lx_worker_t *w = srv->workers.next;
    while (w != &srv->workers) {
        lx_worker_t *next = w->next;
        if (w->exiting) {
            w->prev->next = w->next;
            w->next->prev = w->prev;
            w->prev = w->next = NULL;
            Py_DECREF(w);
        }
        w = next;
    }
}

static void hub_switch(lx_server_t *srv, PyObject *g)
{
    Py_INCREF(g);
    PyObject *r = lx_green_switch(g);
    Py_DECREF(g);
    if (r != NULL) {
        Py_DECREF(r);
    } else if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_WriteUnraisable((PyObject *)srv);
    } else {
        PyObject *exc = lx_err_get();
        if (lx_green_is_exit(exc))
            Py_DECREF(exc);
        else if (srv->pending_exc == NULL)
            srv->pending_exc = exc;
        else
            Py_DECREF(exc);
    }
}

/* A connection whose whole head is buffered waits here for a worker. */
static void queue_conn(lx_server_t *srv, lx_conn_t *c)
{
    if (srv->npending == srv->pending_cap) {
        if (srv->pending_head > 0) {
            memmove(srv->pending, srv->pending + srv->pending_head,
                    sizeof(*srv->pending) *
                        (srv->npending - srv->pending_head));
            srv->npending -= srv->pending_head;
            srv->pending_head = 0;
        } else {
            size_t cap = srv->pending_cap ? srv->pending_cap * 2 : 64;
            lx_conn_t **q = PyMem_Realloc(srv->pending, sizeof(*q) * cap);
            if (q == NULL) {
                lx_conn_reject(c, 503);
                return;
            }
            srv->pending = q;
            srv->pending_cap = cap;
        }
    }
    srv->pending[srv->npending++] = c;
    c->state = LX_CS_QUEUED;
    c->flags &= ~LX_CONN_F_HEADTIMER;
    /* The idle or head timer is left to run: for a queued or active
     * connection it only acts on a worker waiting on it, whose wait
     * re-arms it first. Saves unlinking it now and again later. */
}

static lx_conn_t *pending_pop(lx_server_t *srv)
{
    while (srv->pending_head < srv->npending) {
        lx_conn_t *c = srv->pending[srv->pending_head++];
        if (!(c->flags & LX_CONN_F_CLOSED) && c->state == LX_CS_QUEUED)
            return c;
    }
    srv->pending_head = srv->npending = 0;
    return NULL;
}

static int head_parse(lx_server_t *srv, lx_conn_t *c, lx_http1_req_t *h,
                      int *status);

/* The worker takes a queued connection: 1 to serve it, 0 when it went
 * elsewhere (rejected, or back to the hub for the rest of its head). */
static int worker_take(lx_worker_t *w, lx_conn_t *c)
{
    lx_server_t *srv = w->srv;
    int status;
    int rc = head_parse(srv, c, &w->req.h, &status);
    if (rc < 0) {
        lx_conn_reject(c, status);
        return 0;
    }
    if (rc == 0) {
        c->state = LX_CS_HEAD;
        lx_timer_arm(&srv->t_header, &c->timer, srv->now);
        c->flags |= LX_CONN_F_HEADTIMER;
        return 0;
    }
    w->req.head_len = (size_t)rc;
    w->req.conn = c;
    w->conn = c;
    c->worker = w;
    c->state = LX_CS_ACTIVE;
    return 1;
}

/* Run workers while connections are queued. The first one switched in
 * takes them one after another; only when it has to wait does the next
 * worker start: one switch in and out per batch, not per request. */
static void run_pending(lx_server_t *srv)
{
    while (srv->pending_head < srv->npending && srv->pending_exc == NULL) {
        lx_worker_t *w;
        if (srv->nidle > 0) {
            w = srv->idle[--srv->nidle];
            if (w->parent != srv->hub) {
                if (lx_green_set_parent(w->greenlet, srv->hub) < 0) {
                    PyErr_WriteUnraisable((PyObject *)srv);
                    srv->idle[srv->nidle++] = w;
                    lx_conn_t *c = pending_pop(srv);
                    if (c != NULL)
                        lx_conn_close(c);
                    continue;
                }
                w->parent = srv->hub;
            }
        } else {
            w = worker_new(srv);
            if (w == NULL) {
                lx_server_log(srv, 40, "cannot start a worker greenlet", NULL);
                PyErr_Clear();
                lx_conn_t *c = pending_pop(srv);
                if (c != NULL)
                    lx_conn_reject(c, 503);
                continue;
            }
        }
        w->conn = NULL;
        hub_switch(srv, w->greenlet);
    }
    if (srv->pending_head >= srv->npending)
        srv->pending_head = srv->npending = 0;
}

/* Whether the buffered bytes hold a whole head: an empty line after the
 * request line (leading empty lines skipped, as the parser does). */
static int head_whole(lx_conn_t *c)
{
    lx_buf_t *b = c->rbuf;
    const char *p = lx_buf_head(b), *e = p + lx_buf_avail(b);
    while (e - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2;
    if (e - p < 4)
        return 0;
    /* Most often the buffer ends with the head it holds. */
    if (memcmp(e - 4, "\r\n\r\n", 4) == 0)
        return 1;
    return memmem(p, (size_t)(e - p), "\r\n\r\n", 4) != NULL;
}

/* Parse the head in c->rbuf into h. Returns the head's length, 0 when
 * incomplete, -1 when it must be rejected with *status. */
static int head_parse(lx_server_t *srv, lx_conn_t *c, lx_http1_req_t *h,
                      int *status)
{
    lx_buf_t *b = c->rbuf;
    size_t avail = lx_buf_avail(b);
    *status = 400;
    h->num_headers = srv->limits.max_fields + 1;
    int rc =
        lx_http1_parse_request(lx_buf_head(b), avail, h, &srv->limits, status);
    c->parsed_len = (uint32_t)avail;
    if (rc > 0)
        return rc;
    if (rc == LX_AGAIN) {
        if (avail < srv->max_head)
            return 0;
        *status = 431;
    }
    return -1;
}

/* Whether new bytes since the last parse can change its outcome: a new
 * line end, or enough bytes to trip a length limit. Keeps a trickled head
 * from being re-parsed byte after byte. */
static int head_worth_parsing(lx_server_t *srv, lx_conn_t *c)
{
    lx_buf_t *b = c->rbuf;
    size_t avail = lx_buf_avail(b);
    size_t from = c->parsed_len;
    if (from >= avail)
        return from == 0 && avail > 0;
    if (memchr(lx_buf_head(b) + from, '\n', avail - from) != NULL)
        return 1;
    return avail - from >= 1024 || avail >= srv->limits.max_request_line;
}

/* Read into the connection's buffer. >0 bytes, 0 EOF, LX_AGAIN, LX_ERR. */
static ssize_t conn_recv(lx_server_t *srv, lx_conn_t *c, size_t max_cap)
{
    if (c->rbuf == NULL) {
        c->rbuf = lx_buf_get(&srv->bufs);
        if (c->rbuf == NULL)
            return LX_ERR;
    }
    lx_buf_t *b = c->rbuf;
    if (b->cap - b->len < READ_RESERVE &&
        lx_buf_reserve(&srv->bufs, &c->rbuf, READ_RESERVE, max_cap) < 0) {
        b = c->rbuf;
        if (b->cap == b->len) {
            errno = ENOBUFS;
            return LX_ERR;
        }
    }
    b = c->rbuf;
    size_t room = b->cap - b->len;
    ssize_t n = lx_sock_recv(c->io.fd, b->data + b->len, room);
    if (n > 0) {
        b->len += (size_t)n;
        /* A short read drained the socket: the next edge will say when
         * more arrives, so no EAGAIN round trip is needed. Not so once the
         * peer closed: that edge is spent, the end must be read. */
        if ((size_t)n < room && !(c->flags & LX_CONN_F_EOF))
            c->flags &= ~LX_CONN_F_READABLE;
    } else if (n == LX_AGAIN) {
        c->flags &= ~LX_CONN_F_READABLE;
    }
    return n;
}

/* The hub reads a request head. */
static void conn_read_head(lx_server_t *srv, lx_conn_t *c)
{
    while (c->flags & LX_CONN_F_READABLE) {
        ssize_t n = conn_recv(srv, c, srv->max_head + READ_RESERVE);
        if (n == LX_AGAIN) {
            if (c->rbuf != NULL && lx_buf_avail(c->rbuf) == 0)
                conn_release_buf(srv, c);
            break;
        }
        if (n <= 0) {
            if (n == LX_ERR && errno == ENOBUFS) {
                lx_conn_reject(c, 431);
                return;
            }
            lx_conn_close(c);
            return;
        }
        /* A whole head goes to a worker, which parses it; one still
         * arriving is parsed here, so that an error or a limit is answered
         * as soon as it can be told. */
        if (head_whole(c)) {
            queue_conn(srv, c);
            return;
        }
        if (head_worth_parsing(srv, c)) {
            int status;
            int rc = head_parse(srv, c, &srv->scratch, &status);
            if (rc < 0) {
                lx_conn_reject(c, status);
                return;
            }
            if (rc > 0) {
                queue_conn(srv, c);
                return;
            }
        }
        if (!(c->flags & LX_CONN_F_HEADTIMER)) {
            /* A head in progress: its timeout is armed once, from here (a
             * head that came whole never needed it). */
            lx_timer_arm(&srv->t_header, &c->timer, srv->now);
            c->flags |= LX_CONN_F_HEADTIMER;
        }
    }
    /* More of the head has to come. */
    if (conn_watch(srv, c) < 0)
        lx_conn_close(c);
}

static void on_conn_event(lx_server_t *srv, lx_conn_t *c, unsigned ev)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return;
    if (ev & LX_EV_READ)
        c->flags |= LX_CONN_F_READABLE;
    if (ev & LX_EV_EOF)
        c->flags |= LX_CONN_F_EOF;
    switch (c->state) {
    case LX_CS_HEAD:
        if (ev & LX_EV_READ)
            conn_read_head(srv, c);
        break;
    case LX_CS_ACTIVE:
        if ((c->flags & LX_CONN_F_WAITING) && (ev & c->wait_for))
            conn_wake(srv, c, LX_WAIT_READY);
        break;
    case LX_CS_LINGER:
        if (ev & LX_EV_READ)
            conn_linger_read(c);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* what a worker does with its connection */

int lx_conn_wait(lx_req_t *r, unsigned what)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    if (srv->hub == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: no loop is running to wait on");
        return -1;
    }
    if ((what & ~c->io.events) &&
        (c->io.events == 0
             ? lx_loop_add(srv->loop, &c->io, LX_EV_READ | what)
             : lx_loop_mod(srv->loop, &c->io, c->io.events | what)) < 0) {
        r->failed = 1;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->wait_for = (uint8_t)what;
    c->wait_result = LX_WAIT_READY;
    c->flags |= LX_CONN_F_WAITING;
    r->burst = 0;
    lx_timer_arm(what & LX_EV_WRITE ? &srv->t_write : &srv->t_body, &c->timer,
                 srv->now);
    PyObject *res = lx_green_switch(srv->hub);
    c->flags &= ~LX_CONN_F_WAITING;
    lx_timer_cancel(&c->timer);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    switch (c->wait_result) {
    case LX_WAIT_TIMEOUT:
        PyErr_SetString(PyExc_TimeoutError,
                        what & LX_EV_WRITE
                            ? "timed out writing the response"
                            : "timed out reading the request body");
        return -1;
    case LX_WAIT_CLOSED:
        r->failed = 1;
        PyErr_SetString(srv->st->ClientDisconnected,
                        "the server closed the connection");
        return -1;
    }
    return 0;
}

int lx_conn_progress(lx_req_t *r, size_t n)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    r->burst += n;
    if (r->burst < WRITE_BURST || srv->hub == NULL)
        return 0;
    r->burst = 0;
    if (srv->nready_next == srv->ready_next_cap) {
        size_t cap = srv->ready_next_cap ? srv->ready_next_cap * 2 : 64;
        lx_conn_t **q = PyMem_Realloc(srv->ready_next, sizeof(*q) * cap);
        if (q == NULL)
            return 0; /* not fair, but not an error either */
        srv->ready_next = q;
        srv->ready_next_cap = cap;
    }
    srv->ready_next[srv->nready_next++] = c;
    /* A wait for nothing: the hub resumes it next turn (or the stop closes
     * it, like any waiter). */
    c->wait_for = 0;
    c->wait_result = LX_WAIT_READY;
    c->flags |= LX_CONN_F_WAITING;
    PyObject *res = lx_green_switch(srv->hub);
    c->flags &= ~LX_CONN_F_WAITING;
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    if (c->wait_result == LX_WAIT_CLOSED) {
        r->failed = 1;
        PyErr_SetString(srv->st->ClientDisconnected,
                        "the server closed the connection");
        return -1;
    }
    return 0;
}

/* Resume the workers that yielded during the previous turn. */
static void run_ready(lx_server_t *srv)
{
    lx_conn_t **q = srv->ready_next;
    size_t n = srv->nready_next, cap = srv->ready_next_cap, i;
    srv->ready_next = srv->ready;
    srv->ready_next_cap = srv->ready_cap;
    srv->nready_next = 0;
    srv->ready = q;
    srv->ready_cap = cap;
    for (i = 0; i < n; i++) {
        lx_conn_t *c = q[i];
        /* Closed since, or already woken by a stop: nothing to resume. */
        if ((c->flags & (LX_CONN_F_CLOSED | LX_CONN_F_WAITING)) !=
                LX_CONN_F_WAITING ||
            c->wait_for != 0 || c->state != LX_CS_ACTIVE)
            continue;
        conn_wake(srv, c, LX_WAIT_READY);
    }
}

int lx_conn_wrote(lx_req_t *r, ssize_t n, const char *what)
{
    if (n > 0)
        return lx_conn_progress(r, (size_t)n);
    if (n == LX_AGAIN) {
        if (lx_conn_wait(r, LX_EV_WRITE) < 0) {
            r->failed = 1;
            return -1;
        }
        return 0;
    }
    r->failed = 1;
    PyErr_Format(r->srv->st->ClientDisconnected,
                 "client went away while sending %s (%s)", what,
                 strerror(errno));
    return -1;
}

int lx_req_lend(lx_req_t *r)
{
    if (r->out == NULL || lx_buf_avail(r->out) == 0 || r->failed)
        return 0;
    if (lx_flush_hold(&r->held, r->conn->io.fd, r->out) == LX_OK)
        return 0;
    return lx_req_flush(r);
}

/* 0, or the errno of a send the flusher found failing (r->failed is then
 * set). */
static int take_back(lx_req_t *r)
{
    if (LX_LIKELY(!r->held.linked))
        return 0;
    int err = lx_flush_release(&r->held);
    if (err != 0)
        r->failed = 1;
    return err;
}

void lx_req_take_back(lx_req_t *r)
{
    (void)take_back(r);
}

int lx_req_unhold(lx_req_t *r)
{
    int err = take_back(r);
    if (err == 0)
        return 0;
    PyErr_Format(r->srv->st->ClientDisconnected,
                 "client went away while sending the response (%s)",
                 strerror(err));
    return -1;
}

int lx_req_writable(lx_req_t *r)
{
    if (lx_req_unhold(r) < 0)
        return -1;
    if (r->failed) {
        PyErr_SetString(r->srv->st->ClientDisconnected,
                        "the connection is closed");
        return -1;
    }
    return 0;
}

int lx_conn_writev_all(lx_req_t *r, struct iovec *iov, int iovcnt)
{
    lx_conn_t *c = r->conn;
    int first = 0;
    if (lx_req_writable(r) < 0)
        return -1;
    while (first < iovcnt) {
        if (iov[first].iov_len == 0) {
            first++;
            continue;
        }
        ssize_t n = lx_sock_writev(c->io.fd, iov + first,
                                   iovcnt - first > IOV_MAX ? IOV_MAX
                                                            : iovcnt - first);
        if (n > 0)
            first += lx_iov_advance(iov + first, iovcnt - first, (size_t)n);
        if (lx_conn_wrote(r, n, "the response") < 0)
            return -1;
    }
    return 0;
}

Py_ssize_t lx_conn_fill(lx_req_t *r, int wait)
{
    return lx_conn_read(r, NULL, 0, wait);
}

Py_ssize_t lx_conn_read(lx_req_t *r, char *dst, size_t len, int wait)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    if (r->failed) {
        PyErr_SetString(srv->st->ClientDisconnected,
                        "the connection is closed");
        return -1;
    }
    for (;;) {
        if (c->flags & LX_CONN_F_READABLE) {
            ssize_t n;
            if (dst == NULL) {
                n = conn_recv(srv, c, srv->bufs.size);
            } else {
                n = lx_sock_recv(c->io.fd, dst, len);
                if ((n > 0 && (size_t)n < len &&
                     !(c->flags & LX_CONN_F_EOF)) ||
                    n == LX_AGAIN)
                    c->flags &= ~LX_CONN_F_READABLE;
            }
            if (n > 0)
                return n;
            if (n == 0) {
                r->failed = 1;
                PyErr_SetString(srv->st->ClientDisconnected,
                                "client closed the connection before "
                                "sending the whole request body");
                return -1;
            }
            if (n == LX_ERR) {
                r->failed = 1;
                PyErr_Format(srv->st->ClientDisconnected,
                             "error reading the request body (%s)",
                             strerror(errno));
                return -1;
            }
        }
        if (!wait)
            return 0;
        if (r->expect_pending && !r->head_sent) {
            /* The client waits for this before it sends the body; earlier
             * pipelined responses deferred in r->out go before it. */
            struct iovec iov = {(void *)canned_continue,
                                sizeof(canned_continue) - 1};
            r->expect_pending = 0;
            if (lx_req_flush(r) < 0 || lx_conn_writev_all(r, &iov, 1) < 0)
                return -1;
        }
        r->expect_pending = 0;
        if (lx_conn_wait(r, LX_EV_READ) < 0) {
            r->failed = 1;
            return -1;
        }
    }
}

/* Serve requests on w->conn while they come, then give it back. */
static void worker_serve(lx_worker_t *w)
{
    lx_req_t *r = &w->req;
    lx_server_t *srv = w->srv;
    lx_conn_t *c = w->conn;
    for (;;) {
        int keep = lx_request_handle(r);
        if (keep < 0)
            goto done; /* rejected: the connection lingers on its own */
        if (srv->pending_exc != NULL || srv->stopping)
            keep = 0;
        if (!keep)
            break;
        /* The next request: maybe pipelined, maybe in the socket already.
         * Read while an edge says there is more, since the hub will not
         * hear of it again. */
        int rc = 0, status = 400;
        for (;;) {
            lx_buf_t *b = c->rbuf;
            if (b != NULL && lx_buf_avail(b) > 0) {
                rc = head_parse(srv, c, &r->h, &status);
                if (rc != 0)
                    break;
            }
            if (!(c->flags & LX_CONN_F_READABLE))
                break;
            ssize_t n = conn_recv(srv, c, srv->max_head + READ_RESERVE);
            if (n == 0 || n == LX_ERR) {
                rc = -2; /* gone */
                break;
            }
            if (n == LX_AGAIN)
                break;
        }
        if (rc == -2) {
            keep = 0;
            break;
        }
        if (rc > 0) {
            r->head_len = (size_t)rc;
            if (r->out != NULL && lx_buf_avail(r->out) >= 65536 &&
                lx_req_flush(r) < 0) {
                keep = 0;
                break;
            }
            continue; /* pipelined */
        }
        if (rc < 0) {
            /* Earlier responses of the batch go out first. */
            if (lx_req_flush(r) < 0) {
                PyErr_Clear();
                lx_conn_close(c);
            } else {
                lx_conn_reject(c, status);
            }
            goto done;
        }
        /* Back to the hub: flush what was deferred for the batch. */
        if (lx_req_flush(r) < 0) {
            PyErr_Clear();
            keep = 0;
            break;
        }
        if (conn_watch(srv, c) < 0) {
            keep = 0;
            break;
        }
        c->worker = NULL;
        c->state = LX_CS_HEAD;
        c->parsed_len = 0;
        if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0) {
            lx_timer_arm(&srv->t_header, &c->timer, srv->now);
            c->flags |= LX_CONN_F_HEADTIMER;
        } else {
            conn_release_buf(srv, c);
            lx_timer_arm(&srv->t_keepalive, &c->timer, srv->now);
        }
        goto done;
    }
    /* Closing: deferred output still goes first. */
    if (!r->failed && lx_req_flush(r) < 0) {
        PyErr_Clear();
        r->failed = 1;
    }
    if (!r->failed && conn_may_send_more(c, r))
        conn_linger(srv, c);
    else
        lx_conn_close(c);
done:
    (void)lx_flush_release(&r->held);
    if (r->out != NULL) {
        lx_buf_put(&srv->bufs, r->out);
        r->out = NULL;
    }
    r->conn = NULL;
    w->conn = NULL;
}

/* ------------------------------------------------------------------ */
/* accepting */

static void listener_accept(lx_server_t *srv, lx_listener_t *l, int idx)
{
    if (l->paused || srv->stopping)
        return;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof(ss);
        int fd = lx_sock_accept(l->io.fd, (struct sockaddr *)&ss, &slen);
        if (fd == LX_AGAIN)
            return;
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of fds: pause instead of spinning; retry later. */
                int i;
                for (i = 0; i < srv->nlisteners; i++)
                    srv->listeners[i].paused = 1;
                lx_timer_arm(&srv->t_accept, &srv->accept_timer, srv->now);
                if (srv->now >= srv->emfile_logged + 10000) {
                    srv->emfile_logged = srv->now;
                    lx_server_log(srv, 40,
                                  "out of file descriptors: accepting "
                                  "paused, retrying every 100 ms",
                                  NULL);
                }
                return;
            }
            if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO)
                continue;
            return;
        }
        lx_conn_t *c = conn_new(srv, fd, idx);
        if (c == NULL) {
            close(fd);
            continue;
        }
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            c->peer_family = AF_INET;
            memcpy(c->peer_addr, &sin->sin_addr, 4);
            c->peer_port = ntohs(sin->sin_port);
            if (!l->nodelay_inherited)
                lx_sock_nodelay(fd);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            c->peer_family = AF_INET6;
            memcpy(c->peer_addr, &sin6->sin6_addr, 16);
            c->peer_port = ntohs(sin6->sin6_port);
            if (!l->nodelay_inherited)
                lx_sock_nodelay(fd);
        } else {
            c->peer_family = AF_UNIX;
        }
        c->flags |= LX_CONN_F_HEADTIMER;
        lx_timer_arm(&srv->t_header, &c->timer, srv->now);
        /* The request usually comes right behind the connection: read it
         * now. The connection joins the loop (read interest only: write
         * interest would bring an event for nothing) when something has to
         * wait: conn_watch. */
        c->flags |= LX_CONN_F_READABLE;
        conn_read_head(srv, c);
    }
}

static void accept_resume(lx_timer_t *t)
{
    lx_server_t *srv = LX_STRUCT_FROM_MEMBER(lx_server_t, accept_timer, t);
    int i;
    for (i = 0; i < srv->nlisteners; i++) {
        srv->listeners[i].paused = 0;
        listener_accept(srv, &srv->listeners[i], i);
    }
}

/* ------------------------------------------------------------------ */
/* the loop */

void lx_server_alog_flush(lx_server_t *srv)
{
    size_t off = 0;
    while (off < srv->alog_len) {
        ssize_t n =
            write(srv->access_fd, srv->alog + off, srv->alog_len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        off += (size_t)n;
    }
    srv->alog_len = 0;
}

static void begin_stop(lx_server_t *srv)
{
    int i;
    srv->stop_requested = 0;
    if (!srv->stopping) {
        srv->stopping = 1;
        for (i = 0; i < srv->nlisteners; i++) {
            lx_listener_t *l = &srv->listeners[i];
            if (l->io.events)
                (void)lx_loop_del(srv->loop, &l->io);
        }
    }
    uint64_t deadline = srv->now + (uint64_t)(srv->stop_timeout * 1000.0);
    if (srv->stop_deadline == 0 || deadline < srv->stop_deadline)
        srv->stop_deadline = deadline;
    /* Idle connections go now; a head in progress may still finish. */
    lx_conn_t *c = srv->conns.next;
    while (c != &srv->conns) {
        lx_conn_t *next = c->next;
        if (c->state == LX_CS_HEAD &&
            (c->rbuf == NULL || lx_buf_avail(c->rbuf) == 0))
            lx_conn_close(c);
        c = next;
    }
}

/* Past the graceful deadline: close everything, unwinding the workers. */
static void force_close(lx_server_t *srv)
{
    int round;
    for (round = 0; round < 3 && srv->nconns > 0; round++) {
        lx_conn_t *c = srv->conns.next;
        while (c != &srv->conns) {
            lx_conn_t *next = c->next;
            if (c->state != LX_CS_ACTIVE) {
                lx_conn_close(c);
            } else if (c->flags & LX_CONN_F_WAITING) {
                /* Switching may close other connections: restart. */
                conn_wake(srv, c, LX_WAIT_CLOSED);
                next = srv->conns.next;
            }
            c = next;
        }
    }
    /* Workers that still hold a connection are told to exit. */
    lx_worker_t *w = srv->workers.next;
    while (w != &srv->workers) {
        lx_worker_t *next = w->next;
        if (w->conn != NULL && !w->exiting) {
            Py_INCREF(w);
            PyObject *r = lx_green_throw_exit(w->greenlet);
            if (r == NULL)
                PyErr_Clear();
            else
                Py_DECREF(r);
            if (w->conn != NULL && !(w->conn->flags & LX_CONN_F_CLOSED))
                lx_conn_close(w->conn);
            w->conn = NULL;
            w->exiting = 1;
            next = w->next;
            Py_DECREF(w);
        }
        w = next;
    }
    lx_conn_t *c = srv->conns.next;
    while (c != &srv->conns) {
        lx_conn_t *next = c->next;
        lx_conn_close(c);
        c = next;
    }
}

static void teardown(lx_server_t *srv)
{
    if (srv->torn_down)
        return;
    srv->stopping = 1;
    if (srv->nconns > 0)
        force_close(srv);
    srv->torn_down = 1;
    /* Idle workers end when GreenletExit reaches their switch. */
    while (srv->nidle > 0) {
        lx_worker_t *w = srv->idle[srv->nidle - 1];
        Py_INCREF(w);
        PyObject *r = lx_green_throw_exit(w->greenlet);
        if (r == NULL)
            PyErr_Clear();
        else
            Py_DECREF(r);
        if (srv->nidle > 0 && srv->idle[srv->nidle - 1] == w)
            srv->nidle--;
        w->exiting = 1;
        Py_DECREF(w);
    }
    reap_workers(srv);
    free_dead_conns(srv);
    lx_timer_cancel(&srv->accept_timer);
    lx_bufpool_clear(&srv->bufs);
    if (srv->access_fd >= 0)
        lx_server_alog_flush(srv);
}

/* One turn of the loop. 1 while serving, 0 once stopped, -1 on error. */
static int loop_turn(lx_server_t *srv, int timeout_ms)
{
    if (srv->access_fd >= 0 && srv->alog_len > 0)
        lx_server_alog_flush(srv);
    uint64_t next = lx_timer_list_next(&srv->t_header);
    lx_timer_list_t *lists[] = {&srv->t_body, &srv->t_write, &srv->t_keepalive,
                                &srv->t_linger, &srv->t_accept};
    size_t i;
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        uint64_t d = lx_timer_list_next(lists[i]);
        if (d < next)
            next = d;
    }
    if (srv->stopping && srv->stop_deadline < next)
        next = srv->stop_deadline;
    if (srv->stop_requested || srv->pending_exc || srv->nready_next > 0)
        timeout_ms = 0;
    if (next != LX_TIMER_NEVER) {
        uint64_t now = lx_now_ms();
        int t = next <= now
                    ? 0
                    : (int)(next - now > 86400000 ? 86400000 : next - now);
        if (timeout_ms < 0 || t < timeout_ms)
            timeout_ms = t;
    }
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = lx_loop_wait(srv->loop, timeout_ms);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    srv->now = lx_now_ms();
    int j;
    for (j = 0; j < n && srv->pending_exc == NULL; j++) {
        unsigned ev;
        lx_io_t *io = lx_loop_event(srv->loop, j, &ev);
        switch (io->kind) {
        case LX_IO_CONN:
            on_conn_event(srv, (lx_conn_t *)io, ev);
            break;
        case LX_IO_LISTENER: {
            lx_listener_t *l = (lx_listener_t *)io;
            listener_accept(srv, l, (int)(l - srv->listeners));
            break;
        }
        case LX_IO_WAKE: {
            char sink[256];
            while (read(io->fd, sink, sizeof(sink)) > 0)
                ;
            break;
        }
        }
    }
    if (srv->npending > 0 && srv->pending_exc == NULL)
        run_pending(srv);
    srv->now = lx_now_ms();
    lx_timer_list_expire(&srv->t_header, srv->now);
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        lx_timer_list_expire(lists[i], srv->now);
    if (srv->nready_next > 0 && srv->pending_exc == NULL)
        run_ready(srv);
    reap_workers(srv);
    free_dead_conns(srv);
    if (srv->pending_exc != NULL) {
        lx_err_set(srv->pending_exc);
        srv->pending_exc = NULL;
        return -1;
    }
    if (PyErr_CheckSignals() < 0)
        return -1;
    if (srv->stop_requested)
        begin_stop(srv);
    if (srv->stopping) {
        if (srv->nconns > 0 && srv->now >= srv->stop_deadline)
            force_close(srv);
        if (srv->nconns == 0) {
            teardown(srv);
            return 0;
        }
    }
    return 1;
}

static int enter_loop(lx_server_t *srv)
{
    if (srv->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: the server's loop is already running");
        return -1;
    }
    if (srv->torn_down) {
        PyErr_SetString(PyExc_RuntimeError, "lichen: the server is closed");
        return -1;
    }
    PyObject *hub = lx_green_current();
    if (hub == NULL)
        return -1;
    srv->hub = hub;
    srv->running = 1;
    return 0;
}

static void leave_loop(lx_server_t *srv)
{
    srv->running = 0;
    Py_CLEAR(srv->hub);
}

static PyObject *server_serve_forever(PyObject *self, PyObject *unused)
{
    lx_server_t *srv = (lx_server_t *)self;
    (void)unused;
    if (enter_loop(srv) < 0)
        return NULL;
    int rc;
    do {
        rc = loop_turn(srv, -1);
    } while (rc > 0);
    leave_loop(srv);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *server_run_once(PyObject *self, PyObject *const *args,
                                 Py_ssize_t nargs)
{
    lx_server_t *srv = (lx_server_t *)self;
    int timeout_ms = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "run_once(timeout=None)");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        double t = PyFloat_AsDouble(args[0]);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        timeout_ms = t <= 0 ? 0 : (int)(t * 1000.0 + 0.5);
    }
    if (srv->torn_down)
        Py_RETURN_FALSE;
    if (enter_loop(srv) < 0)
        return NULL;
    int rc = loop_turn(srv, timeout_ms);
    leave_loop(srv);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

static PyObject *server_stop(PyObject *self, PyObject *const *args,
                             Py_ssize_t nargs)
{
    lx_server_t *srv = (lx_server_t *)self;
    double timeout = 0.0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "stop(timeout=None)");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        timeout = PyFloat_AsDouble(args[0]);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0)
            timeout = 0;
    }
    srv->stop_timeout = timeout;
    srv->stop_requested = 1;
    if (srv->wake_w >= 0) {
        char x = 's';
        (void)!write(srv->wake_w, &x, 1);
    }
    Py_RETURN_NONE;
}

static PyObject *server_close(PyObject *self, PyObject *unused)
{
    lx_server_t *srv = (lx_server_t *)self;
    (void)unused;
    if (srv->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: close() while the loop runs; use stop()");
        return NULL;
    }
    if (!srv->torn_down) {
        /* Workers need a hub to return to while they unwind. */
        PyObject *hub = lx_green_current();
        if (hub == NULL)
            return NULL;
        srv->hub = hub;
        teardown(srv);
        Py_CLEAR(srv->hub);
    }
    Py_RETURN_NONE;
}

static PyObject *server_fileno(PyObject *self, PyObject *unused)
{
    (void)unused;
    return PyLong_FromLong(lx_loop_fd(((lx_server_t *)self)->loop));
}

static PyObject *server_get_wakeup_fd(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(((lx_server_t *)self)->wake_w);
}

static PyObject *server_get_connections(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(((lx_server_t *)self)->nconns);
}

/* ------------------------------------------------------------------ */
/* construction */

static int opt_double(PyObject *opts, const char *key, double *out)
{
    PyObject *v = PyDict_GetItemString(opts, key); /* borrowed */
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "lichen: option %s missing", key);
        return -1;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    if (d < 0) {
        PyErr_Format(PyExc_ValueError, "lichen: option %s must be >= 0", key);
        return -1;
    }
    *out = d;
    return 0;
}

static int opt_size(PyObject *opts, const char *key, long long min,
                    long long *out)
{
    PyObject *v = PyDict_GetItemString(opts, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "lichen: option %s missing", key);
        return -1;
    }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < min) {
        PyErr_Format(PyExc_ValueError, "lichen: option %s must be >= %lld",
                     key, min);
        return -1;
    }
    *out = n;
    return 0;
}

static uint64_t ms_of(double s)
{
    uint64_t ms = (uint64_t)(s * 1000.0 + 0.5);
    return ms ? ms : 1;
}

static int server_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    lx_server_t *srv = (lx_server_t *)self;
    PyObject *app, *listeners, *opts;
    static char *kwlist[] = {"app", "listeners", "options", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!:Server", kwlist, &app,
                                     &PyList_Type, &listeners, &PyDict_Type,
                                     &opts))
        return -1;
    if (srv->loop != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Server already initialised");
        return -1;
    }
    if (!PyCallable_Check(app)) {
        PyErr_SetString(PyExc_TypeError, "lichen: app must be callable");
        return -1;
    }
    double keepalive, t_header, t_body, t_write;
    long long line, fields, field_size, body, access_fd;
    if (opt_double(opts, "keepalive", &keepalive) < 0 ||
        opt_double(opts, "timeout_header", &t_header) < 0 ||
        opt_double(opts, "timeout_body", &t_body) < 0 ||
        opt_double(opts, "timeout_write", &t_write) < 0 ||
        opt_size(opts, "limit_request_line", 16, &line) < 0 ||
        opt_size(opts, "limit_request_fields", 1, &fields) < 0 ||
        opt_size(opts, "limit_request_field_size", 16, &field_size) < 0 ||
        opt_size(opts, "limit_request_body", 0, &body) < 0 ||
        opt_size(opts, "access_log_fd", -1, &access_fd) < 0)
        return -1;
    if (fields > 10000 || line > (1 << 24) || field_size > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "lichen: request limit too large");
        return -1;
    }
    PyObject *server_header = PyDict_GetItemString(opts, "server_header");
    PyObject *log = PyDict_GetItemString(opts, "log");

    srv->app = Py_NewRef(app);
    srv->log = log && log != Py_None ? Py_NewRef(log) : NULL;
    if (server_header != NULL && server_header != Py_None) {
        if (!PyUnicode_Check(server_header)) {
            PyErr_SetString(PyExc_TypeError,
                            "lichen: server_header must be a str");
            return -1;
        }
        Py_ssize_t hl;
        const char *hv = PyUnicode_AsUTF8AndSize(server_header, &hl);
        if (hv == NULL)
            return -1;
        srv->server_line = PyBytes_FromFormat("Server: %s\r\n", hv);
        if (srv->server_line == NULL)
            return -1;
        const char *p = PyBytes_AS_STRING(srv->server_line) + 8;
        Py_ssize_t n = PyBytes_GET_SIZE(srv->server_line) - 10, k;
        for (k = 0; k < n; k++)
            if ((unsigned char)p[k] < 0x20 || p[k] == 0x7f) {
                PyErr_SetString(PyExc_ValueError,
                                "lichen: server_header has control bytes");
                return -1;
            }
    }
    srv->keepalive_ms = keepalive > 0 ? ms_of(keepalive) : 0;
    srv->limits.max_request_line = (size_t)line;
    srv->limits.max_fields = (size_t)fields;
    srv->limits.max_field_size = (size_t)field_size;
    srv->max_head =
        (size_t)line + 2 + (size_t)fields * ((size_t)field_size + 2) + 2;
    if (srv->max_head > (64u << 20))
        srv->max_head = 64u << 20;
    srv->limit_body = (uint64_t)body;
    srv->access_fd = (int)access_fd;
    lx_timer_list_init(&srv->t_header, ms_of(t_header));
    lx_timer_list_init(&srv->t_body, ms_of(t_body));
    lx_timer_list_init(&srv->t_write, ms_of(t_write));
    lx_timer_list_init(&srv->t_keepalive, srv->keepalive_ms);
    lx_timer_list_init(&srv->t_linger, LINGER_MS);
    lx_timer_list_init(&srv->t_accept, ACCEPT_PAUSE_MS);
    lx_timer_init(&srv->accept_timer, accept_resume);

    srv->scratch.headers =
        PyMem_Malloc(sizeof(lx_header_t) * ((size_t)fields + 1));
    if (srv->scratch.headers == NULL) {
        PyErr_NoMemory();
        return -1;
    }

    lx_sock_ignore_sigpipe();
    srv->loop = lx_loop_new(MAX_EVENTS);
    if (srv->loop == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int p[2];
    if (pipe(p) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int k;
    for (k = 0; k < 2; k++) {
        fcntl(p[k], F_SETFL, fcntl(p[k], F_GETFL) | O_NONBLOCK);
        fcntl(p[k], F_SETFD, FD_CLOEXEC);
    }
    srv->wake_io.fd = p[0];
    srv->wake_io.kind = LX_IO_WAKE;
    srv->wake_w = p[1];
    if (lx_loop_add(srv->loop, &srv->wake_io, LX_EV_READ) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }

    Py_ssize_t nl = PyList_GET_SIZE(listeners), i;
    if (nl < 1 || nl > 1024) {
        PyErr_SetString(PyExc_ValueError,
                        "lichen: between 1 and 1024 listeners are needed");
        return -1;
    }
    srv->listeners = PyMem_Calloc((size_t)nl, sizeof(lx_listener_t));
    if (srv->listeners == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < nl; i++) {
        PyObject *item = PyList_GET_ITEM(listeners, i);
        int fd;
        PyObject *env;
        if (!PyArg_ParseTuple(item, "iO!:listener", &fd, &PyDict_Type, &env))
            return -1;
        lx_listener_t *l = &srv->listeners[i];
        l->io.fd = fd;
        l->io.kind = LX_IO_LISTENER;
        l->nodelay_inherited = lx_sock_listener_nodelay(fd);
        if (lx_environ_base(srv->st, l, env) < 0)
            return -1;
        srv->nlisteners = (int)i + 1;
        if (lx_loop_add(srv->loop, &l->io, LX_EV_READ) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    return 0;
}

static PyObject *server_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    lx_server_t *srv = (lx_server_t *)type->tp_alloc(type, 0);
    if (srv == NULL)
        return NULL;
    PyObject *mod = PyType_GetModule(type);
    srv->module = Py_XNewRef(mod);
    srv->st = mod ? PyModule_GetState(mod) : NULL;
    srv->conns.next = srv->conns.prev = &srv->conns;
    srv->workers.next = srv->workers.prev = &srv->workers;
    srv->wake_io.fd = -1;
    srv->wake_w = -1;
    srv->access_fd = -1;
    lx_bufpool_init(&srv->bufs, LX_BUF_DEFAULT_SIZE, 1024);
    return (PyObject *)srv;
}

static void server_dealloc(PyObject *self)
{
    lx_server_t *srv = (lx_server_t *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (srv->loop != NULL && !srv->torn_down) {
        PyObject *hub = lx_green_current();
        if (hub != NULL) {
            srv->hub = hub;
            teardown(srv);
            Py_CLEAR(srv->hub);
        } else {
            PyErr_Clear();
        }
    }
    int i;
    for (i = 0; i < srv->nlisteners; i++)
        lx_environ_base_clear(&srv->listeners[i]);
    PyMem_Free(srv->listeners);
    PyMem_Free(srv->idle);
    PyMem_Free(srv->pending);
    PyMem_Free(srv->ready);
    PyMem_Free(srv->ready_next);
    PyMem_Free(srv->scratch.headers);
    PyMem_Free(srv->alog);
    if (srv->wake_io.fd >= 0)
        close(srv->wake_io.fd);
    if (srv->wake_w >= 0)
        close(srv->wake_w);
    lx_loop_free(srv->loop);
    lx_bufpool_clear(&srv->bufs);
    Py_CLEAR(srv->app);
    Py_CLEAR(srv->log);
    Py_CLEAR(srv->server_line);
    Py_CLEAR(srv->pending_exc);
    Py_CLEAR(srv->addr_str);
    for (i = 0; i < 256; i++)
        Py_CLEAR(srv->port_str[i]);
    for (i = 0; i < (1 << LX_OK_BITS); i++) {
        Py_CLEAR(srv->names_ok[i]);
        Py_CLEAR(srv->values_ok[i]);
    }
    for (i = 0; i < LX_KNOWN_HEADERS; i++)
        Py_CLEAR(srv->header_vals[i]);
    Py_CLEAR(srv->status_ok);
    Py_CLEAR(srv->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef server_methods[] = {
    {"serve_forever", server_serve_forever, METH_NOARGS,
     "Run the loop until a stop has drained, then tear down."},
    {"run_once", (PyCFunction)(void (*)(void))server_run_once, METH_FASTCALL,
     "run_once(timeout=None): one turn of the loop; False once stopped."},
    {"stop", (PyCFunction)(void (*)(void))server_stop, METH_FASTCALL,
     "stop(timeout=None): graceful stop; thread-safe, returns at once."},
    {"close", server_close, METH_NOARGS, "Immediate teardown."},
    {"fileno", server_fileno, METH_NOARGS, "The loop's pollable fd."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"wakeup_fd", server_get_wakeup_fd, NULL,
     "write end of the wake-up pipe (for signal.set_wakeup_fd)", NULL},
    {"connections", server_get_connections, NULL, "open connections", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_new, server_new},
    {Py_tp_init, server_init},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc, "Server(app, listeners, options): the lichen engine."},
    {0, NULL},
};

PyType_Spec lx_server_spec = {
    .name = "lichen._lichen.Server",
    .basicsize = sizeof(lx_server_t),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = server_slots,
};
