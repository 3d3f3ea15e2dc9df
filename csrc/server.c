/* The Server type: options, listeners and accept, the loop's turn driven
 * by one greenlet (the hub), the graceful stop, teardown and the garbage
 * collector's view of it all. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <pythread.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "environ.h"
#include "files.h"
#include "green.h"
#include "log.h"
#include "pool.h"
#include "response.h"
#include "tlsconn.h"
#include "wait.h"

#define MAX_EVENTS 512
#define ACCEPT_PAUSE_MS 100
/* At a graceful stop, how long a connection that has sent nothing yet
 * gets for its first request (at most the stop's timeout). */
#define STOP_FRESH_GRACE_MS 1000

/* ------------------------------------------------------------------ */
/* accepting */

static void accept_from(lx_server_t *srv, lx_listener_t *l)
{
    if (l->paused || srv->stopping)
        return;
    int idx = (int)(l - srv->listeners);
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
                    lx_log(srv, LX_LOG_ERROR,
                           "out of file descriptors: accepting paused, "
                           "retrying every 100 ms",
                           NULL);
                }
                return;
            }
            if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO)
                continue;
            return;
        }
        if (ss.ss_family != AF_UNIX && !l->nodelay_inherited)
            lx_sock_nodelay(fd);
        lx_conn_t *c = lx_conn_open(srv, fd, idx, &ss);
        if (c == NULL) {
            close(fd);
            continue;
        }
        if (lx_conn_begin(c))
            lx_pool_queue(srv, c);
    }
}

static void accept_resume(lx_timer_t *t)
{
    lx_server_t *srv = LX_STRUCT_FROM_MEMBER(lx_server_t, accept_timer, t);
    int i;
    for (i = 0; i < srv->nlisteners; i++) {
        srv->listeners[i].paused = 0;
        accept_from(srv, &srv->listeners[i]);
    }
}

/* ------------------------------------------------------------------ */
/* stop and teardown */

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
    /* A connection accepted just before the stop (or in its turn) may not
     * have sent its request yet: it gets a moment to, so that a request
     * the kernel took in is not lost. */
    uint64_t fresh = srv->now + STOP_FRESH_GRACE_MS;
    if (srv->stop_fresh_at == 0 || fresh < srv->stop_fresh_at)
        srv->stop_fresh_at = fresh;
    if (srv->stop_deadline < srv->stop_fresh_at)
        srv->stop_fresh_at = srv->stop_deadline;
    lx_conns_close_idle(srv, 0);
}

/* Close everything at once, from the current greenlet, which plays the
 * hub meanwhile: waiters hear that their connection closed, workers
 * unwind. 0, or -1 when some greenlet could not be unwound from here
 * (the server must then stay: they still point at it). */
static int teardown(lx_server_t *srv)
{
    if (srv->torn_down)
        return 0;
    int ours =
        srv->pool.all != NULL || srv->dead != NULL || lx_conns_to_resume(srv);
    /* Greenlets of ours can only be switched to from their own thread;
     * what they point at must stay until they are unwound. */
    if (ours && srv->hub != NULL &&
        srv->hub_thread != PyThread_get_thread_ident())
        return -1;
    PyObject *me = lx_green_current();
    if (me == NULL) {
        /* No greenlet to be had (the interpreter is finishing): fine if
         * there is none to switch to. */
        PyErr_Clear();
        if (ours)
            return -2;
    }
    srv->stopping = srv->torn_down = 1;
    Py_XSETREF(srv->hub, me);
    int in_turn = srv->in_turn;
    srv->in_turn = 1;
    /* Every greenlet of ours comes back here as it unwinds. */
    int rc = lx_pool_adopt(srv);
    lx_conns_close_all(srv);
    int round;
    for (round = 0; round < 4 && lx_conns_to_resume(srv); round++)
        lx_conns_resume(srv);
    if (lx_pool_close(srv) < 0)
        rc = -1;
    lx_files_free(srv); /* the files and directories: closed now */
    while (lx_conns_to_resume(srv) && round++ < 8)
        lx_conns_resume(srv);
    if (lx_conns_to_resume(srv))
        rc = -1;
    lx_conns_free_dead(srv);
    lx_timer_cancel(&srv->accept_timer);
    lx_bufpool_clear(&srv->bufs);
    if (srv->alog_len > 0)
        lx_log_flush(srv);
    srv->in_turn = in_turn;
    if (rc == 0)
        Py_CLEAR(srv->hub);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the loop */

/* The loop's fd must be readable when there is something to do: at the
 * earliest timer, or at once when work is queued for the next turn (unless
 * serve_forever runs that turn itself: it does not wait then, and the
 * timer's two syscalls are saved). */
static void arm_deadline(lx_server_t *srv, int forever)
{
    uint64_t next = lx_conns_deadline(srv);
    uint64_t d = lx_timer_list_next(&srv->t_accept);
    if (d < next)
        next = d;
    if (srv->stopping && srv->stop_deadline < next)
        next = srv->stop_deadline;
    if (srv->stopping && srv->stop_fresh_at != 0 && srv->stop_fresh_at < next)
        next = srv->stop_fresh_at;
    if (!forever && (lx_conns_to_resume(srv) || lx_pool_queued(srv)))
        next = 0;
    if (lx_loop_deadline(srv->loop, next) < 0)
        lx_log(srv, LX_LOG_ERROR, "cannot arm the loop's timer", NULL);
}

/* The events, the workers, the timers: 0, or -1 with an exception. */
static int turn_work(lx_server_t *srv, int timeout_ms)
{
    if (srv->stop_requested || srv->pending_exc || lx_conns_to_resume(srv) ||
        lx_pool_queued(srv))
        timeout_ms = 0;
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
        case LX_IO_CONN: {
            lx_conn_t *c = (lx_conn_t *)io;
            if (lx_conn_event(c, ev))
                lx_pool_queue(srv, c);
            break;
        }
        case LX_IO_LISTENER:
            accept_from(srv, (lx_listener_t *)io);
            break;
        case LX_IO_WAKE: {
            char sink[256];
            while (read(io->fd, sink, sizeof(sink)) > 0)
                ;
            break;
        }
        }
    }
    if (srv->pending_exc == NULL && lx_pool_queued(srv))
        lx_pool_run(srv);
    srv->now = lx_now_ms();
    lx_conns_expire(srv);
    lx_timer_list_expire(&srv->t_accept, srv->now);
    if (srv->pending_exc == NULL && lx_conns_to_resume(srv))
        lx_conns_resume(srv);
    lx_pool_trim(srv);
    lx_pool_reap(srv);
    lx_conns_free_dead(srv);
    if (srv->alog_len > 0)
        lx_log_flush(srv);
    if (srv->pending_exc != NULL) {
        lx_err_set(srv->pending_exc);
        srv->pending_exc = NULL;
        return -1;
    }
    return PyErr_CheckSignals();
}

/* One turn of the loop (forever: serve_forever's, which turns again at
 * once): 1 while serving, 0 once stopped, -1 with an exception. */
static int turn(lx_server_t *srv, int timeout_ms, int forever)
{
    if (turn_work(srv, timeout_ms) < 0) {
        arm_deadline(srv, 0);
        return -1;
    }
    if (srv->stop_requested)
        begin_stop(srv);
    if (srv->stopping) {
        if (srv->stop_fresh_at != 0 && srv->now >= srv->stop_fresh_at) {
            lx_conns_close_idle(srv, 1);
            srv->stop_fresh_at = 0;
        }
        if (srv->nconns > 0 && srv->now >= srv->stop_deadline)
            lx_conns_close_all(srv);
        if (srv->nconns == 0) {
            if (teardown(srv) < 0)
                lx_log(srv, LX_LOG_WARNING,
                       "some greenlets could not be unwound at the stop",
                       NULL);
            return 0;
        }
    }
    arm_deadline(srv, forever);
    return 1;
}

/* The current greenlet drives the loop: it becomes the hub, for good,
 * unless another still is (one whose greenlets are serving). */
static int enter(lx_server_t *srv)
{
    if (srv->in_turn) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: the server's loop is already running");
        return -1;
    }
    if (srv->torn_down) {
        PyErr_SetString(PyExc_RuntimeError, "lichen: the server is closed");
        return -1;
    }
    PyObject *me = lx_green_current();
    if (me == NULL)
        return -1;
    if (me == srv->hub) {
        Py_DECREF(me);
    } else if (srv->hub != NULL && !lx_green_dead(srv->hub) &&
               srv->nconns > 0) {
        Py_DECREF(me);
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: the loop is driven by another greenlet; "
                        "drive it from one greenlet only");
        return -1;
    } else {
        Py_XSETREF(srv->hub, me);
        srv->hub_thread = PyThread_get_thread_ident();
    }
    srv->in_turn = 1;
    return 0;
}

static PyObject *server_serve_forever(PyObject *self, PyObject *unused)
{
    lx_server_t *srv = (lx_server_t *)self;
    (void)unused;
    if (enter(srv) < 0)
        return NULL;
    int rc;
    do {
        rc = turn(srv, -1, 1);
    } while (rc > 0);
    srv->in_turn = 0;
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
        timeout_ms = t <= 0        ? 0
                     : t > 86400.0 ? 86400000
                                   : (int)(t * 1000.0 + 0.5);
    }
    if (srv->torn_down)
        Py_RETURN_FALSE;
    if (enter(srv) < 0)
        return NULL;
    int rc = turn(srv, timeout_ms, 0);
    srv->in_turn = 0;
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
    /* From any thread, a signal handler or the application: the loop's fd
     * becomes readable and its next turn begins the stop. */
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
    if (srv->in_turn) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lichen: close() while the loop runs; use stop()");
        return NULL;
    }
    if (srv->loop != NULL && teardown(srv) < 0) {
        if (PyErr_Occurred())
            return NULL;
        lx_log(srv, LX_LOG_WARNING,
               "close(): some greenlets could not be unwound from this "
               "greenlet or thread",
               NULL);
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

static PyObject *server_get_driver_thread(PyObject *self, void *closure)
{
    lx_server_t *srv = (lx_server_t *)self;
    (void)closure;
    if (srv->hub == NULL)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(srv->hub_thread);
}

static PyObject *server_get_running(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((lx_server_t *)self)->in_turn);
}

static PyObject *server_get_in_request(PyObject *self, void *closure)
{
    (void)closure;
    int rc = lx_pool_is_current((lx_server_t *)self);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *server_get_served(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(((lx_server_t *)self)->served);
}

static PyObject *server_get_closed(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((lx_server_t *)self)->torn_down);
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

/* A callable option, or NULL for None or no key. */
static int opt_callable(PyObject *opts, const char *key, PyObject **out)
{
    PyObject *v = PyDict_GetItemString(opts, key);
    *out = NULL;
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyCallable_Check(v)) {
        PyErr_Format(PyExc_TypeError, "lichen: option %s must be callable",
                     key);
        return -1;
    }
    *out = Py_NewRef(v);
    return 0;
}

/* The access log (to access_fd, or line by line to access_log_write, in
 * the access_log_format given; or, instead of a line, a call of
 * access_log_call with what the request was) and the application errors'
 * hook. */
static int opt_logs(lx_server_t *srv, PyObject *opts, int access_fd)
{
    PyObject *style = PyDict_GetItemString(opts, "access_log_format");
    if (opt_callable(opts, "access_log_write", &srv->alog_write) < 0 ||
        opt_callable(opts, "access_log_call", &srv->alog_call) < 0 ||
        opt_callable(opts, "app_error", &srv->app_error) < 0)
        return -1;
    srv->access_fd = access_fd;
    srv->alog_on =
        access_fd >= 0 || srv->alog_write != NULL || srv->alog_call != NULL;
    srv->alog_style = LX_ALOG_COMBINED;
    if (style != NULL && style != Py_None) {
        if (PyUnicode_Check(style) &&
            PyUnicode_CompareWithASCIIString(style, "pywsgi") == 0)
            srv->alog_style = LX_ALOG_PYWSGI;
        else if (!PyUnicode_Check(style) ||
                 PyUnicode_CompareWithASCIIString(style, "combined") != 0) {
            PyErr_SetString(PyExc_ValueError,
                            "lichen: access_log_format is 'combined' or "
                            "'pywsgi'");
            return -1;
        }
    }
    return 0;
}

static int server_header(lx_server_t *srv, PyObject *value)
{
    if (value == NULL || value == Py_None)
        return 0;
    if (!PyUnicode_Check(value)) {
        PyErr_SetString(PyExc_TypeError,
                        "lichen: server_header must be a str");
        return -1;
    }
    const char *hv = PyUnicode_AsUTF8(value);
    if (hv == NULL)
        return -1;
    for (const char *p = hv; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            PyErr_SetString(PyExc_ValueError,
                            "lichen: server_header has control bytes");
            return -1;
        }
    srv->server_line = PyBytes_FromFormat("Server: %s\r\n", hv);
    return srv->server_line == NULL ? -1 : 0;
}

/* The peers trusted with proxy headers: a str of addresses and networks
 * ("*", "unix"), parsed by fwd.c; none without the option. */
static int opt_forwarded(lx_server_t *srv, PyObject *opts)
{
    PyObject *v = PyDict_GetItemString(opts, "forwarded_allow_ips");
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError,
                        "lichen: forwarded_allow_ips must be a str");
        return -1;
    }
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(v, &n);
    if (text == NULL)
        return -1;
    const char *bad = NULL;
    size_t bad_len = 0;
    int rc =
        lx_fwd_allow_parse(&srv->fwd_allow, text, (size_t)n, &bad, &bad_len);
    if (rc == -2)
        PyErr_NoMemory();
    else if (rc < 0) {
        PyObject *entry =
            PyUnicode_DecodeUTF8(bad, (Py_ssize_t)bad_len, "replace");
        if (entry != NULL) {
            PyErr_Format(PyExc_ValueError,
                         "lichen: forwarded_allow_ips: %R is not an address "
                         "or a network",
                         entry);
            Py_DECREF(entry);
        }
    }
    return rc < 0 ? -1 : 0;
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
    PyObject *log = PyDict_GetItemString(opts, "log");
    srv->app = Py_NewRef(app);
    srv->log = log && log != Py_None ? Py_NewRef(log) : NULL;
    if (opt_logs(srv, opts, (int)access_fd) < 0)
        return -1;
    long long concurrency = 0;
    if (PyDict_GetItemString(opts, "limit_concurrency") != NULL &&
        opt_size(opts, "limit_concurrency", 0, &concurrency) < 0)
        return -1;
    srv->pool.limit = (size_t)concurrency;
    /* How long the pool's peak lasts before it halves (the tests shorten
     * it; not a documented option). */
    long long window = 10000;
    if (PyDict_GetItemString(opts, "pool_window_ms") != NULL &&
        opt_size(opts, "pool_window_ms", 0, &window) < 0)
        return -1;
    srv->pool.window = (uint64_t)window;
    if (server_header(srv, PyDict_GetItemString(opts, "server_header")) < 0)
        return -1;
    if (opt_forwarded(srv, opts) < 0)
        return -1;
    PyObject *proxy = PyDict_GetItemString(opts, "proxy_protocol");
    srv->proxy_protocol = proxy == NULL ? 0 : PyObject_IsTrue(proxy);
    if (srv->proxy_protocol < 0)
        return -1;
    if (lx_files_configure(srv, PyDict_GetItemString(opts, "static")) < 0)
        return -1;
    long long ws_message = 16 << 20, ws_queue = 1 << 20;
    if ((PyDict_GetItemString(opts, "ws_max_message") != NULL &&
         opt_size(opts, "ws_max_message", 0, &ws_message) < 0) ||
        (PyDict_GetItemString(opts, "ws_max_queue") != NULL &&
         opt_size(opts, "ws_max_queue", 0, &ws_queue) < 0))
        return -1;
    srv->ws_max_message = (uint64_t)ws_message;
    srv->ws_max_queue = (size_t)ws_queue;
    PyObject *deflate = PyDict_GetItemString(opts, "ws_compression");
    srv->ws_deflate = deflate == NULL ? 1 : PyObject_IsTrue(deflate);
    if (srv->ws_deflate < 0 ||
        opt_callable(opts, "ws_socket", &srv->ws_socket) < 0)
        return -1;
    PyObject *ws_error = PyDict_GetItemString(opts, "ws_error");
    if (ws_error != NULL && ws_error != Py_None) {
        if (!PyType_Check(ws_error) ||
            !PyType_IsSubtype((PyTypeObject *)ws_error,
                              (PyTypeObject *)PyExc_Exception)) {
            PyErr_SetString(PyExc_TypeError,
                            "lichen: ws_error must be an exception class");
            return -1;
        }
        srv->ws_error = Py_NewRef(ws_error);
    }
    srv->keepalive_ms =
        keepalive > 0 ? (uint64_t)(keepalive * 1000.0 + 0.5) : 0;
    if (keepalive > 0 && srv->keepalive_ms == 0)
        srv->keepalive_ms = 1;
    srv->limits.max_request_line = (size_t)line;
    srv->limits.max_fields = (size_t)fields;
    srv->limits.max_field_size = (size_t)field_size;
    srv->max_head =
        (size_t)line + 2 + (size_t)fields * ((size_t)field_size + 2) + 2;
    if (srv->max_head > (64u << 20))
        srv->max_head = 64u << 20;
    srv->limit_body = (uint64_t)body;
    lx_conns_init(srv, t_header, t_body, t_write);
    if (lx_tlsconn_configure(srv, opts) < 0)
        return -1;
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
        int fd, tls = 0;
        PyObject *env;
        if (!PyArg_ParseTuple(item, "iO!|p:listener", &fd, &PyDict_Type, &env,
                              &tls))
            return -1;
        if (tls && srv->tls_ctx == NULL) {
            PyErr_SetString(PyExc_ValueError,
                            "lichen: a TLS listener needs the tls option");
            return -1;
        }
        lx_listener_t *l = &srv->listeners[i];
        l->tls = tls;
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
    srv->wake_io.fd = -1;
    srv->wake_w = -1;
    srv->access_fd = -1;
    return (PyObject *)srv;
}

/* ------------------------------------------------------------------ */
/* the garbage collector */

static int server_traverse(PyObject *self, visitproc visit, void *arg)
{
    lx_server_t *srv = (lx_server_t *)self;
    int i;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(srv->module);
    Py_VISIT(srv->app);
    Py_VISIT(srv->log);
    Py_VISIT(srv->alog_write);
    Py_VISIT(srv->alog_call);
    Py_VISIT(srv->app_error);
    Py_VISIT(srv->ws_error);
    Py_VISIT(srv->ws_socket);
    Py_VISIT(srv->hub);
    Py_VISIT(srv->pending_exc);
    for (i = 0; i < srv->nlisteners; i++)
        Py_VISIT(srv->listeners[i].base_environ);
    for (lx_conn_t *c = srv->conns.next; c != NULL && c != &srv->conns;
         c = c->next)
        Py_VISIT(c->waiter);
    return lx_pool_traverse(srv, visit, arg);
}

/* Only after the finalizer tore everything down (no greenlet of ours is
 * left to run): the references that may close a cycle go. */
static int server_clear(PyObject *self)
{
    lx_server_t *srv = (lx_server_t *)self;
    int i;
    if (!srv->torn_down && srv->loop != NULL)
        return 0;
    Py_CLEAR(srv->app);
    Py_CLEAR(srv->log);
    Py_CLEAR(srv->alog_write);
    Py_CLEAR(srv->alog_call);
    Py_CLEAR(srv->app_error);
    Py_CLEAR(srv->ws_error);
    Py_CLEAR(srv->ws_socket);
    Py_CLEAR(srv->hub);
    Py_CLEAR(srv->pending_exc);
    for (i = 0; i < srv->nlisteners; i++)
        lx_environ_base_clear(&srv->listeners[i]);
    lx_environ_forget(srv);
    lx_response_forget(srv);
    return 0;
}

/* Dropped without close(): said as an unclosed file says it, and closed.
 * When a greenlet of it cannot be unwound from here, the server stays
 * (leaked, with a warning): that greenlet still points at it. */
static void server_finalize(PyObject *self)
{
    lx_server_t *srv = (lx_server_t *)self;
    if (srv->loop == NULL || srv->torn_down)
        return;
    PyObject *exc = lx_err_get();
    if (PyErr_ResourceWarning(self, 1, "unclosed lichen engine %R", self) < 0)
        PyErr_WriteUnraisable(self);
    int rc = teardown(srv);
    if (rc == -2) {
        Py_INCREF(self); /* the interpreter is finishing: left as is */
    } else if (rc < 0) {
        PyErr_Clear();
        lx_log(srv, LX_LOG_WARNING,
               "an unclosed engine could not be unwound here (its loop "
               "ran in another thread or greenlet): it is left as is",
               NULL);
        Py_INCREF(self); /* resurrected for good */
    }
    lx_err_set(exc);
}

static void server_dealloc(PyObject *self)
{
    lx_server_t *srv = (lx_server_t *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0)
        return; /* resurrected */
    PyObject_GC_UnTrack(self);
    srv->torn_down = 1;
    server_clear(self);
    PyMem_Free(srv->listeners);
    lx_pool_free(srv);
    lx_files_free(srv);
    lx_tls_ctx_free(srv->tls_ctx);
    srv->tls_ctx = NULL;
    lx_fwd_allow_free(&srv->fwd_allow);
    PyMem_Free(srv->scratch.headers);
    PyMem_Free(srv->alog);
    if (srv->wake_io.fd >= 0)
        close(srv->wake_io.fd);
    if (srv->wake_w >= 0)
        close(srv->wake_w);
    lx_loop_free(srv->loop);
    lx_bufpool_clear(&srv->bufs);
    Py_CLEAR(srv->server_line);
    Py_CLEAR(srv->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *server_reload_tls(PyObject *self, PyObject *opts)
{
    return lx_tlsconn_reload((lx_server_t *)self, opts);
}

static PyMethodDef server_methods[] = {
    {"reload_tls", server_reload_tls, METH_O,
     "reload_tls(options): load the TLS certificate and key anew (the tls "
     "option's dict); ValueError, the old ones kept, when they are bad."},
    {"serve_forever", server_serve_forever, METH_NOARGS,
     "Run the loop until a stop has drained, then tear down."},
    {"run_once", (PyCFunction)(void (*)(void))server_run_once, METH_FASTCALL,
     "run_once(timeout=None): one turn of the loop; False once stopped."},
    {"stop", (PyCFunction)(void (*)(void))server_stop, METH_FASTCALL,
     "stop(timeout=None): graceful stop; thread-safe, returns at once."},
    {"close", server_close, METH_NOARGS, "Immediate teardown."},
    {"fileno", server_fileno, METH_NOARGS,
     "The loop's fd: readable whenever run_once(0) has work to do."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"wakeup_fd", server_get_wakeup_fd, NULL,
     "write end of the wake-up pipe (for signal.set_wakeup_fd)", NULL},
    {"connections", server_get_connections, NULL, "open connections", NULL},
    {"driver_thread", server_get_driver_thread, NULL,
     "ident of the thread whose greenlet drives the loop, None before the "
     "first turn",
     NULL},
    {"running", server_get_running, NULL,
     "whether serve_forever or run_once is running", NULL},
    {"closed", server_get_closed, NULL, "whether it was torn down", NULL},
    {"served", server_get_served, NULL, "requests answered so far", NULL},
    {"in_request", server_get_in_request, NULL,
     "whether the calling greenlet is one of its workers", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_new, server_new},
    {Py_tp_init, server_init},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_finalize, server_finalize},
    {Py_tp_traverse, server_traverse},
    {Py_tp_clear, server_clear},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc, "Server(app, listeners, options): the lichen engine."},
    {0, NULL},
};

PyType_Spec lx_server_spec = {
    .name = "lichen._lichen.Server",
    .basicsize = sizeof(lx_server_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = server_slots,
};
