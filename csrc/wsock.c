/* A request's websocket: the object the application gets as
 * environ['wsgi.websocket'] (gevent-websocket's interface), the opening
 * handshake's 101 sent at its first use, messages read and checked by
 * ws.c, permessage-deflate with zlib, the close handshake, and the end of
 * the connection, which is never read again as HTTP.
 *
 * Receiving waits for the client with no timeout and holds no buffer
 * while it waits. Sending never waits for the socket: frames go out as far
 * as the socket takes them and the rest waits in the connection's queue,
 * which the hub sends as the client reads (wait.c); a sender waits only
 * once more than ws_max_queue bytes are queued. So one greenlet may wait
 * in receive() while any other sends on the same websocket.
 *
 * This file is the Python type and the request's side; wssend.c sends,
 * wsread.c receives (wsobj.h is what they share). */
#define _GNU_SOURCE
#include "wsock.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "utf8.h"
#include "wait.h"
#include "wsobj.h"

/* The largest window of our own compressor (RFC 7692
 * server_max_window_bits). */
#define DEFLATE_BITS 12

static long live_websockets;

long lx_wsock_live(void)
{
    return live_websockets;
}

/* ------------------------------------------------------------------ */
/* the type */

static PyObject *ws_receive(PyObject *self, PyObject *unused)
{
    (void)unused;
    WebSocketObject *ws = (WebSocketObject *)self;
    if (ws->state == WS_CLOSED || ws->conn == NULL)
        Py_RETURN_NONE;
    if (lx_wsk_open(ws) < 0)
        return NULL;
    if (ws->receiving) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another greenlet is already receiving on this "
                        "websocket");
        return NULL;
    }
    Py_INCREF(ws); /* the request may end while this greenlet waits */
    ws->receiving = 1;
    PyObject *m = lx_wsk_receive(ws);
    ws->receiving = 0;
    Py_DECREF(ws);
    return m;
}

/* The payload of a message to send: its bytes (a view into obj, kept in
 * *keep or *view) and opcode. 0, or -1 with an exception. */
static int outgoing(PyObject *msg, PyObject *binary, Py_buffer *view,
                    const char **data, size_t *len, int *op)
{
    int bin = -1; /* None: by type */
    if (binary != NULL && binary != Py_None) {
        bin = PyObject_IsTrue(binary);
        if (bin < 0)
            return -1;
    }
    view->obj = NULL;
    if (PyUnicode_Check(msg)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(msg, &n);
        if (s == NULL)
            return -1;
        *data = s;
        *len = (size_t)n;
        *op = bin == 1 ? LX_WS_BINARY : LX_WS_TEXT;
        return 0;
    }
    if (PyObject_GetBuffer(msg, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "websocket messages are str or bytes-like, not %.100s",
                     Py_TYPE(msg)->tp_name);
        return -1;
    }
    *data = view->buf;
    *len = (size_t)view->len;
    *op = LX_WS_BINARY;
    if (bin == 0) {
        lx_utf8_t u;
        lx_utf8_init(&u);
        if (lx_utf8_feed(&u, view->buf, *len) < 0 || !lx_utf8_complete(&u)) {
            PyBuffer_Release(view);
            view->obj = NULL;
            PyErr_SetString(PyExc_ValueError,
                            "send(binary=False) takes bytes that are UTF-8 "
                            "text");
            return -1;
        }
        *op = LX_WS_TEXT;
    }
    return 0;
}

static PyObject *ws_send(PyObject *self, PyObject *args, PyObject *kwds)
{
    WebSocketObject *ws = (WebSocketObject *)self;
    static char *kwlist[] = {"message", "binary", NULL};
    PyObject *msg, *binary = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:send", kwlist, &msg,
                                     &binary))
        return NULL;
    if (ws->state == WS_CLOSED || ws->close_sent || ws->conn == NULL)
        return lx_wsk_error(ws, "the websocket is closed");
    Py_buffer view;
    const char *data;
    size_t len;
    int op;
    if (outgoing(msg, binary, &view, &data, &len, &op) < 0)
        return NULL;
    PyObject *res = NULL;
    Py_INCREF(ws);
    if (lx_wsk_open(ws) < 0)
        goto out;
    if (ws->state == WS_CLOSED || ws->conn == NULL) {
        lx_wsk_error(ws, "the websocket is closed");
        goto out;
    }
    if (lx_wsk_message(ws, op, data, len) < 0) {
        lx_wsk_failed(ws);
        goto out;
    }
    res = Py_NewRef(Py_None);
out:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    Py_DECREF(ws);
    return res;
}

/* Wake the greenlet waiting in receive() (another greenlet closed). */
static void wake_reader(WebSocketObject *ws)
{
    lx_conn_t *c = ws->conn;
    if (c != NULL && ws->receiving && (c->flags & LX_CONN_F_WAITING) &&
        c->wait_for == LX_EV_READ) {
        c->wait_for = 0;
        c->wait_result = LX_WAIT_READY;
        lx_conn_queue_resume(c);
    }
}

static PyObject *ws_close(PyObject *self, PyObject *args, PyObject *kwds)
{
    WebSocketObject *ws = (WebSocketObject *)self;
    static char *kwlist[] = {"code", "message", NULL};
    int code = LX_WS_NORMAL;
    PyObject *message = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|iO:close", kwlist, &code,
                                     &message))
        return NULL;
    /* Besides the codes a client may send us, the IANA registry's 1012
     * (service restart), 1013 (try again later) and 1014 (bad gateway),
     * which browsers take. */
    if (!lx_ws_close_code_ok(code) && !(code >= 1012 && code <= 1014)) {
        PyErr_Format(PyExc_ValueError, "%d is not a close code to send", code);
        return NULL;
    }
    const char *reason = "";
    Py_ssize_t rlen = 0;
    Py_buffer view = {0};
    if (message != NULL && message != Py_None) {
        if (PyUnicode_Check(message)) {
            reason = PyUnicode_AsUTF8AndSize(message, &rlen);
            if (reason == NULL)
                return NULL;
        } else if (PyObject_GetBuffer(message, &view, PyBUF_SIMPLE) == 0) {
            reason = view.buf;
            rlen = view.len;
            lx_utf8_t u;
            lx_utf8_init(&u);
            if (lx_utf8_feed(&u, view.buf, (size_t)rlen) < 0 ||
                !lx_utf8_complete(&u)) {
                PyBuffer_Release(&view);
                PyErr_SetString(PyExc_ValueError,
                                "a close reason must be UTF-8 text");
                return NULL;
            }
        } else {
            return NULL;
        }
        if (rlen > 123) {
            if (view.obj != NULL)
                PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError,
                            "a close reason is at most 123 bytes");
            return NULL;
        }
    }
    PyObject *res = Py_None;
    if (ws->state == WS_NEW && ws->conn != NULL && lx_wsk_open(ws) < 0)
        res = NULL;
    else if (ws->state == WS_OPEN && !ws->close_sent) {
        if (lx_wsk_close(ws, code, reason, (size_t)rlen) < 0)
            PyErr_Clear(); /* the client is gone: closed all the same */
        ws->state = WS_CLOSED;
        wake_reader(ws);
    }
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return Py_XNewRef(res);
}

/* environ['gunicorn.socket'] was used: the connection is the
 * application's (a duplicate of its fd), the engine sends nothing more. */
static PyObject *ws_takeover(PyObject *self, PyObject *unused)
{
    (void)unused;
    WebSocketObject *ws = (WebSocketObject *)self;
    lx_conn_t *c = ws->conn;
    if (c == NULL || ws->req == NULL || (c->flags & LX_CONN_F_CLOSED))
        return lx_wsk_error(ws, "the websocket's request has ended");
    if (ws->state != WS_NEW || ws->taken) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the websocket is in use: its socket cannot be "
                        "taken over");
        return NULL;
    }
    if (c->tls != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the connection speaks TLS: its socket cannot be "
                        "taken over");
        return NULL;
    }
    if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the client sent bytes before the handshake: the "
                        "socket cannot be taken over");
        return NULL;
    }
    int fd = fcntl(c->io.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    /* The duplicate shares the socket: the loop must not watch it any
     * more (epoll watches the socket, not the descriptor). */
    if (c->io.events != 0 && lx_loop_del(ws->srv->loop, &c->io) < 0) {
        close(fd);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    c->io.events = 0;
    c->flags &= ~LX_CONN_F_WS;
    ws->taken = 1;
    ws->state = WS_CLOSED;
    ws->req->status_code = 101;
    ws->req->head_sent = 1;
    return PyLong_FromLong(fd);
}

static PyObject *ws_get_closed(PyObject *self, void *c)
{
    (void)c;
    WebSocketObject *ws = (WebSocketObject *)self;
    return PyBool_FromLong(ws->state == WS_CLOSED || ws->close_sent ||
                           ws->conn == NULL);
}

static PyObject *ws_get_version(PyObject *self, void *c)
{
    (void)self;
    (void)c;
    return PyUnicode_FromString("13");
}

#define GETTER(name)                                        \
    static PyObject *ws_get_##name(PyObject *self, void *c) \
    {                                                       \
        (void)c;                                            \
        PyObject *v = ((WebSocketObject *)self)->name;      \
        return Py_NewRef(v != NULL ? v : Py_None);          \
    }
GETTER(environ)
GETTER(path)
GETTER(origin)

/* The subprotocol: the one the 101 named, or before it goes the one the
 * application's start_response('101 ...') names (checked against the
 * client's offer when the 101 goes). */
static PyObject *ws_get_protocol(PyObject *self, void *closure)
{
    (void)closure;
    WebSocketObject *ws = (WebSocketObject *)self;
    lx_str_t fields, v;
    if (ws->state == WS_NEW && ws->req != NULL &&
        (fields = lx_wsk_app_fields(ws->req)).base != NULL &&
        lx_wshake_field(fields.base, fields.len,
                        "sec-websocket-protocol:", &v))
        return PyUnicode_DecodeLatin1(v.base, (Py_ssize_t)v.len, NULL);
    return Py_NewRef(ws->protocol != NULL ? ws->protocol : Py_None);
}

static PyMethodDef ws_methods[] = {
    {"receive", ws_receive, METH_NOARGS,
     "The next message: str (text), bytes (binary), or None once closed."},
    {"send", (PyCFunction)(void (*)(void))ws_send,
     METH_VARARGS | METH_KEYWORDS,
     "send(message, binary=None): str as text, bytes as binary."},
    {"close", (PyCFunction)(void (*)(void))ws_close,
     METH_VARARGS | METH_KEYWORDS,
     "close(code=1000, message=b''): the close frame, code and reason."},
    {"_takeover", ws_takeover, METH_NOARGS,
     "The connection's fd (a duplicate), handed to the application."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ws_getset[] = {
    {"closed", ws_get_closed, NULL, "Whether the websocket is closed.", NULL},
    {"version", ws_get_version, NULL, "The protocol's version, '13'.", NULL},
    {"environ", ws_get_environ, NULL, "The request's environ.", NULL},
    {"path", ws_get_path, NULL, "The request's PATH_INFO.", NULL},
    {"origin", ws_get_origin, NULL, "The client's Origin, or None.", NULL},
    {"protocol", ws_get_protocol, NULL, "The subprotocol chosen, or None.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static void ws_clear_state(WebSocketObject *ws)
{
    if (ws->msg != NULL && ws->srv != NULL) {
        lx_buf_put(&ws->srv->bufs, ws->msg);
        ws->msg = NULL;
    }
    lx_wsz_free(&ws->zin);
    lx_wsz_free(&ws->zout);
}

static int ws_traverse(PyObject *self, visitproc visit, void *arg)
{
    WebSocketObject *ws = (WebSocketObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(ws->environ);
    Py_VISIT((PyObject *)ws->srv);
    return 0;
}

static int ws_clear(PyObject *self)
{
    WebSocketObject *ws = (WebSocketObject *)self;
    Py_CLEAR(ws->environ);
    return 0;
}

static void ws_dealloc(PyObject *self)
{
    WebSocketObject *ws = (WebSocketObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ws_clear_state(ws);
    Py_CLEAR(ws->environ);
    Py_CLEAR(ws->path);
    Py_CLEAR(ws->origin);
    Py_CLEAR(ws->protocol);
    Py_CLEAR(ws->offered);
    Py_CLEAR(ws->srv);
    tp->tp_free(self);
    Py_DECREF(tp);
    live_websockets--;
}

static PyType_Slot ws_slots[] = {
    {Py_tp_doc, "A websocket (environ['wsgi.websocket']), with "
                "gevent-websocket's interface."},
    {Py_tp_methods, ws_methods},
    {Py_tp_getset, ws_getset},
    {Py_tp_traverse, ws_traverse},
    {Py_tp_clear, ws_clear},
    {Py_tp_dealloc, ws_dealloc},
    {0, NULL},
};

PyType_Spec lx_websocket_spec = {
    .name = "lichen._lichen.WebSocket",
    .basicsize = sizeof(WebSocketObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ws_slots,
};

/* ------------------------------------------------------------------ */
/* the request's side */

static PyObject *str_or_none(lx_str_t s)
{
    if (s.len == 0)
        return NULL;
    return PyUnicode_DecodeLatin1(s.base, (Py_ssize_t)s.len, NULL);
}

int lx_wsock_begin(lx_req_t *r, int *status)
{
    lx_server_t *srv = r->srv;
    if (!lx_wshake_wanted(&r->h))
        return 0;
    lx_wshake_t w;
    *status = lx_wshake_check(&r->h, &w);
    if (*status != 0)
        return -1;
    *status = 500;
    WebSocketObject *ws =
        PyObject_GC_New(WebSocketObject, srv->st->websocket_type);
    if (ws == NULL)
        return -1;
    live_websockets++;
    memset((char *)ws + sizeof(PyObject), 0, sizeof(*ws) - sizeof(PyObject));
    ws->srv = (lx_server_t *)Py_NewRef((PyObject *)srv);
    ws->conn = r->conn;
    ws->req = r;
    lx_ws_accept(w.key.base, w.key.len, ws->accept);
    if ((w.origin.len > 0 && (ws->origin = str_or_none(w.origin)) == NULL) ||
        (w.protocols.len > 0 &&
         (ws->offered = str_or_none(w.protocols)) == NULL)) {
        Py_DECREF(ws);
        return -1;
    }
    if (srv->ws_deflate)
        lx_wshake_deflate(w.extensions, DEFLATE_BITS, &ws->df);
    lx_ws_parser_init(&ws->p, srv->ws_max_message, ws->df.on);
    lx_wsz_init(&ws->zin, 1, 15, ws->df.client_no_takeover);
    lx_wsz_init(&ws->zout, 0, ws->df.server_bits, ws->df.server_no_takeover);
    PyObject_GC_Track((PyObject *)ws);
    r->ws = (PyObject *)ws;
    if (lx_conn_sendq_open(r->conn) < 0)
        return -1;
    r->conn->flags |= LX_CONN_F_WS;
    return 1;
}

int lx_wsock_environ(lx_req_t *r)
{
    WebSocketObject *ws = (WebSocketObject *)r->ws;
    lx_server_t *srv = r->srv;
    PyObject *env = r->environ;
    ws->environ = Py_NewRef(env);
    PyObject *path = PyDict_GetItemWithError(env, srv->st->k_PATH_INFO);
    if (path == NULL && PyErr_Occurred())
        return -1;
    ws->path = Py_XNewRef(path);
    PyObject *v = PyUnicode_FromString("13");
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItemString(env, "wsgi.websocket", r->ws) < 0 ||
                     PyDict_SetItemString(env, "wsgi.websocket_version", v) < 0
                 ? -1
                 : 0;
    Py_DECREF(v);
    if (rc == 0 && srv->ws_socket != NULL) {
        PyObject *s = PyObject_CallOneArg(srv->ws_socket, r->ws);
        if (s == NULL)
            return -1;
        rc = PyDict_SetItemString(env, "gunicorn.socket", s);
        Py_DECREF(s);
    }
    return rc;
}

int lx_wsock_declined(lx_req_t *r)
{
    WebSocketObject *ws = (WebSocketObject *)r->ws;
    return ws->state == WS_NEW && !ws->taken && r->status_code != 0 &&
           r->status_code != 101;
}

void lx_wsock_end(lx_req_t *r, PyObject *result)
{
    WebSocketObject *ws = (WebSocketObject *)r->ws;
    lx_conn_t *c = r->conn;
    if (ws->taken) {
        /* Nothing more of ours goes on this connection; the application
         * closes its copy of the socket. */
        c->flags |= LX_CONN_F_BROKEN;
        return;
    }
    if (ws->state == WS_NEW && result != NULL) {
        /* Returned without using it: accepted and ended at once, as
         * gevent-websocket's handler would have it. */
        if (lx_wsk_open(ws) < 0) {
            PyObject *exc = lx_err_get();
            lx_log_app_error(r, exc);
            Py_XDECREF(exc);
        }
    }
    if (ws->state == WS_NEW) {
        /* An exception before anything went: the caller answers 500. */
        return;
    }
    if (!ws->close_sent && !(c->flags & LX_CONN_F_BROKEN) &&
        lx_wsk_close(ws, result != NULL ? LX_WS_NORMAL : 1011, NULL, 0) < 0)
        PyErr_Clear();
    ws->state = WS_CLOSED;
    /* What is queued goes out within the write timeout, then the close
     * lingers: the client's own close frame may still come. */
    if (!(c->flags & LX_CONN_F_BROKEN) && lx_conn_wait_room(c, 0) < 0) {
        PyErr_Clear();
        c->flags |= LX_CONN_F_BROKEN;
    }
    r->body_done = 0;
}

void lx_wsock_release(lx_req_t *r)
{
    WebSocketObject *ws = (WebSocketObject *)r->ws;
    if (ws == NULL)
        return;
    ws->conn = NULL;
    ws->req = NULL;
    ws->state = WS_CLOSED;
    ws_clear_state(ws);
    Py_CLEAR(ws->environ); /* which holds the websocket: no cycle left */
    r->conn->flags &= ~LX_CONN_F_WS;
    Py_CLEAR(r->ws);
}
