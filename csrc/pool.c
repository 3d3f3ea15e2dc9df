/* The workers: greenlets pooled and reused, each serving the requests of
 * one connection at a time, and the queue of connections with a whole
 * head that they take in turn.
 *
 * A worker is a C struct the server owns, not a Python object: its
 * greenlet runs a function bound to a capsule that points at it, so
 * nothing the greenlet holds (a started greenlet is a root for the
 * garbage collector) refers back to the server. */
#include "pool.h"

#include "conn.h"
#include "files.h"
#include "green.h"
#include "log.h"
#include "output.h"
#include "wsgi.h"

/* Idle workers kept: as many as were busy at once lately, at least
 * MIN_IDLE_WORKERS. Under a load of long requests (an application waiting
 * in gevent.sleep, many at once), a worker that finishes is soon wanted
 * again: freeing it and starting a greenlet for the next request costs
 * more than the request (a greenlet's first Python frame maps a data
 * stack of its own). The peak halves every pool.window (10 s), and each
 * turn lets at most TRIM_PER_TURN of the surplus go. */
#define MIN_IDLE_WORKERS 64
#define TRIM_PER_TURN 16

struct lx_worker {
    lx_server_t *srv;
    PyObject *greenlet;
    PyObject *parent;         /* the hub it was last parented to (not owned) */
    lx_worker_t *prev, *next; /* srv->pool.all, or .finished (next only) */
    lx_conn_t *conn;          /* the connection it serves */
    uint8_t finished;         /* its function returned */
    uint8_t tried;            /* teardown threw GreenletExit into it */
    lx_req_t req;
};

static long live_workers; /* changed and read under the GIL */

long lx_pool_live(void)
{
    return live_workers;
}

static void unlink_worker(lx_pool_t *p, lx_worker_t *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        p->all = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* ------------------------------------------------------------------ */
/* the queue */

void lx_pool_queue(lx_server_t *srv, lx_conn_t *c)
{
    lx_pool_t *p = &srv->pool;
    if (p->npending == p->pending_cap) {
        if (p->pending_head > 0) {
            memmove(p->pending, p->pending + p->pending_head,
                    sizeof(*p->pending) * (p->npending - p->pending_head));
            p->npending -= p->pending_head;
            p->pending_head = 0;
        } else {
            size_t cap = p->pending_cap ? p->pending_cap * 2 : 64;
            lx_conn_t **q = PyMem_Realloc(p->pending, sizeof(*q) * cap);
            if (q == NULL) {
                lx_conn_reject(c, 503);
                return;
            }
            p->pending = q;
            p->pending_cap = cap;
        }
    }
    p->pending[p->npending++] = c;
    c->state = LX_CS_QUEUED;
    c->flags &= ~LX_CONN_F_HEADTIMER;
    /* The idle or head timer is left to run: for a queued or active
     * connection it only acts on a greenlet waiting on it, whose wait
     * re-arms it first. Saves unlinking it now and again later. */
}

int lx_pool_queued(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    return p->pending_head < p->npending &&
           (p->limit == 0 || p->busy < p->limit);
}

static lx_conn_t *pending_pop(lx_pool_t *p)
{
    while (p->pending_head < p->npending) {
        lx_conn_t *c = p->pending[p->pending_head++];
        if (!(c->flags & LX_CONN_F_CLOSED) && c->state == LX_CS_QUEUED)
            return c;
    }
    p->pending_head = p->npending = 0;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* serving a connection */

/* The array the worker's request head is parsed into (a websocket's
 * request gives it back while it lasts, wsgi.c): 0, or -1 with an
 * exception. */
static int headers_new(lx_worker_t *w)
{
    w->req.h.headers =
        PyMem_Malloc(sizeof(lx_header_t) * (w->srv->limits.max_fields + 1));
    if (w->req.h.headers == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The worker takes a queued connection: 1 to serve it, 0 when it went
 * elsewhere (rejected, or back to the hub for the rest of its head). */
static int take(lx_worker_t *w, lx_conn_t *c)
{
    lx_req_t *r = &w->req;
    int status;
    if (r->h.headers == NULL && headers_new(w) < 0) {
        PyErr_Clear();
        lx_conn_reject(c, 503); /* out of memory */
        return 0;
    }
    int rc = lx_conn_parse_head(c, &r->h, &status);
    if (rc <= 0) {
        if (rc < 0)
            lx_conn_reject(c, status);
        else
            lx_conn_keep(c);
        return 0;
    }
    r->head_len = (size_t)rc;
    r->conn = c;
    w->conn = c;
    lx_pool_t *p = &w->srv->pool;
    if (++p->busy > p->peak)
        p->peak = p->busy;
    c->state = LX_CS_ACTIVE;
    c->flags |= LX_CONN_F_OWNED;
    c->held = &r->held;
    return 1;
}

/* Serve requests on w->conn while they come, then give it back to the
 * hub or close it. */
static void serve(lx_worker_t *w)
{
    lx_req_t *r = &w->req;
    lx_server_t *srv = w->srv;
    lx_conn_t *c = w->conn;
    int abandoned = 0;
    for (;;) {
        size_t rest;
        int m = lx_files_match(r, &rest);
        int keep = m < 0 ? lx_wsgi_call(r) : lx_files_serve(r, m, rest);
        if (keep < 0)
            goto done; /* rejected: the connection lingers on its own */
        if (c->waiter != NULL) {
            /* A greenlet of the application still waits to read or
             * write: the request is over, and so is the connection (its
             * framing is lost), without lingering. */
            lx_log(srv, LX_LOG_WARNING,
                   "a greenlet still waited on the connection when its "
                   "request ended: the connection is closed",
                   NULL);
            abandoned = 1;
            keep = 0;
        }
        if (srv->pending_exc != NULL || srv->stopping)
            keep = 0;
        if (!keep)
            break;
        int status;
        int rc = lx_conn_next_head(c, &r->h, &status);
        if (rc == -2)
            break; /* gone */
        if (rc > 0) {
            r->head_len = (size_t)rc;
            if (r->out != NULL && lx_buf_avail(r->out) >= 65536 &&
                lx_out_flush(r) < 0) {
                PyErr_Clear();
                break;
            }
            continue; /* pipelined */
        }
        /* Earlier responses of the batch go first. */
        if (lx_out_flush(r) < 0) {
            PyErr_Clear();
            break;
        }
        if (rc < 0)
            lx_conn_reject(c, status);
        else
            lx_conn_keep(c);
        goto done;
    }
    /* Closing: deferred output still goes first. */
    if (lx_out_flush(r) < 0)
        PyErr_Clear();
    if (abandoned)
        c->flags |= LX_CONN_F_BROKEN;
    lx_conn_end(c, !r->body_done ? LX_END_UNREAD
                   : r->body_mode == LX_BODY_NONE &&
                           !(r->h.flags & LX_REQ_KEEPALIVE)
                       ? LX_END_QUIET
                       : LX_END_PROBE);
done:
    lx_out_release(r);
    c->flags &= ~LX_CONN_F_OWNED; /* the struct may go now */
    r->conn = NULL;
    w->conn = NULL;
    srv->pool.busy--;
}

/* How many idle workers to keep. */
static int idle_cap(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    if (srv->now - p->peak_at >= p->window) {
        p->peak = p->peak / 2 > p->busy ? p->peak / 2 : p->busy;
        p->peak_at = srv->now;
    }
    return p->peak > MIN_IDLE_WORKERS ? (int)p->peak : MIN_IDLE_WORKERS;
}

/* The worker's function returned (or is about to): it is freed at the end
 * of the turn, its greenlet then dead. */
static void finish(lx_worker_t *w)
{
    lx_server_t *srv = w->srv;
    lx_pool_t *p = &srv->pool;
    int i;
    for (i = 0; i < p->nidle; i++)
        if (p->idle[i] == w) {
            p->idle[i] = p->idle[--p->nidle];
            break;
        }
    unlink_worker(p, w);
    w->finished = 1;
    w->next = p->finished;
    p->finished = w;
    if (!srv->in_turn)
        (void)lx_loop_deadline(srv->loop, 0);
}

/* What the greenlet runs: connections one after another, then waits in
 * the pool. */
static PyObject *worker_main(PyObject *capsule, PyObject *unused)
{
    lx_worker_t *w = PyCapsule_GetPointer(capsule, NULL);
    (void)unused;
    if (w == NULL)
        return NULL;
    lx_server_t *srv = w->srv;
    lx_pool_t *p = &srv->pool;
    for (;;) {
        if (w->conn != NULL)
            serve(w);
        /* Within the limit of requests served at once, if any. */
        lx_conn_t *next =
            p->limit == 0 || p->busy < p->limit ? pending_pop(p) : NULL;
        if (next != NULL) {
            take(w, next);
            continue; /* the next one without a trip to the hub */
        }
        if (srv->torn_down || p->nidle >= idle_cap(srv))
            break;
        if (p->nidle == p->idle_cap) {
            int cap = p->idle_cap ? p->idle_cap * 2 : 16;
            lx_worker_t **n = PyMem_Realloc(p->idle, sizeof(*n) * (size_t)cap);
            if (n == NULL)
                break;
            p->idle = n;
            p->idle_cap = cap;
        }
        p->idle[p->nidle++] = w;
        PyObject *res = lx_hub_wait(srv);
        if (res == NULL) {
            /* GreenletExit at teardown: leave the pool. */
            finish(w);
            return NULL;
        }
        Py_DECREF(res);
    }
    finish(w);
    Py_RETURN_NONE;
}

static PyMethodDef worker_def = {"lichen_worker", worker_main, METH_NOARGS,
                                 NULL};

static void worker_free(lx_worker_t *w)
{
    lx_wsgi_release(&w->req);
    lx_files_release(&w->req);
    PyMem_Free(w->req.h.headers);
    Py_CLEAR(w->greenlet);
    PyMem_Free(w);
    live_workers--;
}

static lx_worker_t *worker_new(lx_server_t *srv)
{
    lx_worker_t *w = PyMem_Calloc(1, sizeof(*w));
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    live_workers++;
    w->srv = srv;
    w->req.srv = srv;
    if (headers_new(w) < 0) {
        worker_free(w);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(w, NULL, NULL);
    PyObject *run = capsule ? PyCFunction_New(&worker_def, capsule) : NULL;
    Py_XDECREF(capsule);
    w->greenlet = run ? lx_green_new(run, srv->hub) : NULL;
    Py_XDECREF(run);
    if (w->greenlet == NULL) {
        worker_free(w);
        return NULL;
    }
    w->parent = srv->hub;
    lx_pool_t *p = &srv->pool;
    w->next = p->all;
    if (p->all != NULL)
        p->all->prev = w;
    p->all = w;
    return w;
}

/* The most recent idle worker, ready to be resumed from the hub; NULL
 * when none is. */
static lx_worker_t *idle_pop(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    while (p->nidle > 0) {
        lx_worker_t *w = p->idle[--p->nidle];
        if (w->parent == srv->hub)
            return w;
        /* The loop is driven by another greenlet than when this one last
         * ran (the first driver finished). One of another thread is of no
         * use here: left for the teardown. */
        if (lx_green_set_parent(w->greenlet, srv->hub) == 0) {
            w->parent = srv->hub;
            return w;
        }
        PyErr_Clear();
    }
    return NULL;
}

void lx_pool_run(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    while (lx_pool_queued(srv) && srv->pending_exc == NULL) {
        lx_worker_t *w = idle_pop(srv);
        if (w == NULL) {
            w = worker_new(srv);
            if (w == NULL) {
                lx_log(srv, LX_LOG_ERROR, "cannot start a worker greenlet",
                       NULL);
                PyErr_Clear();
                lx_conn_t *c = pending_pop(p);
                if (c != NULL)
                    lx_conn_reject(c, 503);
                continue;
            }
        }
        w->conn = NULL;
        lx_hub_resume(srv, w->greenlet);
    }
    if (p->pending_head >= p->npending)
        p->pending_head = p->npending = 0;
}

void lx_pool_trim(lx_server_t *srv)
{
    for (int n = 0; n < TRIM_PER_TURN && srv->pending_exc == NULL &&
                    srv->pool.nidle > idle_cap(srv);
         n++) {
        lx_worker_t *w = idle_pop(srv);
        if (w == NULL)
            break;
        w->conn = NULL;
        lx_hub_resume(srv, w->greenlet); /* it sees the surplus and ends */
    }
}

void lx_pool_reap(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    lx_worker_t *keep = NULL;
    while (p->finished != NULL) {
        lx_worker_t *w = p->finished;
        p->finished = w->next;
        /* Returned, so dead by now, unless something switched away from
         * it on its very way out: then next time. */
        if (w->greenlet != NULL && !lx_green_dead(w->greenlet)) {
            w->next = keep;
            keep = w;
        } else {
            worker_free(w);
        }
    }
    p->finished = keep;
}

int lx_pool_adopt(lx_server_t *srv)
{
    int rc = 0;
    for (lx_worker_t *w = srv->pool.all; w != NULL; w = w->next) {
        if (w->parent == srv->hub)
            continue;
        if (lx_green_set_parent(w->greenlet, srv->hub) < 0) {
            PyErr_Clear(); /* another thread's, or our own ancestor */
            rc = -1;
            continue;
        }
        w->parent = srv->hub;
    }
    return rc;
}

int lx_pool_is_current(lx_server_t *srv)
{
    PyObject *cur = lx_green_current();
    if (cur == NULL)
        return -1;
    int found = 0;
    for (lx_worker_t *w = srv->pool.all; w != NULL && !found; w = w->next)
        found = w->greenlet == cur;
    Py_DECREF(cur);
    return found;
}

int lx_pool_close(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    /* Busy workers unwind their request, idle ones leave the pool: either
     * way their function returns, to the greenlet now playing the hub. A
     * worker still there after its GreenletExit is given up on, as is one
     * that cannot be switched to from here (another thread's, or an
     * ancestor of the current greenlet). */
    for (;;) {
        lx_worker_t *w = p->all;
        while (w != NULL && w->tried)
            w = w->next;
        if (w == NULL)
            break;
        w->tried = 1;
        if (w->parent != srv->hub)
            continue; /* lx_pool_adopt could not make it ours */
        PyObject *res = lx_green_throw_exit(w->greenlet);
        if (res == NULL)
            PyErr_Clear();
        else
            Py_DECREF(res);
    }
    lx_pool_reap(srv);
    return p->all != NULL || p->finished != NULL ? -1 : 0;
}

void lx_pool_free(lx_server_t *srv)
{
    lx_pool_t *p = &srv->pool;
    PyMem_Free(p->idle);
    PyMem_Free(p->pending);
    p->idle = NULL;
    p->pending = NULL;
    p->nidle = p->idle_cap = 0;
    p->pending_head = p->npending = p->pending_cap = 0;
}

int lx_pool_traverse(lx_server_t *srv, visitproc visit, void *arg)
{
    lx_worker_t *lists[2] = {srv->pool.all, srv->pool.finished};
    for (int i = 0; i < 2; i++)
        for (lx_worker_t *w = lists[i]; w != NULL; w = w->next) {
            Py_VISIT(w->greenlet);
            int rc = lx_wsgi_traverse(&w->req, visit, arg);
            if (rc)
                return rc;
        }
    return 0;
}
