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
 * in receive() while any other sends on the same websocket. */
#define _GNU_SOURCE
#include "wsock.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "green.h"
#include "log.h"
#include "utf8.h"
#include "wait.h"
#include "ws.h"
#include "wshake.h"
#include "wsz.h"

/* Bytes read into the connection's buffer at most while a message
 * arrives (its payload moves on into the message's own buffer). */
#define READ_CAP (256u * 1024u)
/* The largest window of our own compressor (RFC 7692
 * server_max_window_bits). */
#define DEFLATE_BITS 12

enum { WS_NEW = 0, WS_OPEN, WS_CLOSED };

typedef struct {
    PyObject_HEAD lx_server_t *srv; /* owned (a reference to the server) */
    lx_conn_t *conn;                /* NULL once its request ended */
    lx_req_t *req;                  /* NULL once its request ended */
    PyObject *environ, *path, *origin, *protocol;
    PyObject *offered; /* the client's Sec-WebSocket-Protocol, or NULL */
    uint8_t state;     /* WS_* */
    uint8_t close_sent;
    uint8_t receiving; /* a greenlet is in receive() */
    uint8_t taken;     /* the application took the socket over */
    uint8_t in_frame;  /* a data frame's payload is being read */
    uint8_t msg_op;    /* the data message's opcode ... */
    uint8_t msg_z;     /* ... and whether it is compressed */
    char accept[29];
    lx_deflate_t df;
    lx_wsz_t zin, zout; /* when df.on */
    lx_ws_parser_t p;
    lx_buf_t *msg; /* the data message so far (NULL between messages) */
} WebSocketObject;

static long live_websockets;

long lx_wsock_live(void)
{
    return live_websockets;
}

/* ------------------------------------------------------------------ */
/* errors */

static PyObject *ws_error(WebSocketObject *ws, const char *msg)
{
    PyObject *cls =
        ws->srv->ws_error != NULL ? ws->srv->ws_error : PyExc_OSError;
    PyErr_SetString(cls, msg);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* sending */

/* One frame: its header and payload behind what is queued, then a wait
 * for room if the client lags (not for control frames, which the reader
 * sends: it must not wait on its own client). 0, or -1 with an
 * exception. */
static int send_frame(WebSocketObject *ws, int opcode, int rsv1,
                      const void *data, size_t len, int wait)
{
    lx_conn_t *c = ws->conn;
    uint8_t head[10];
    struct iovec iov[2];
    iov[0].iov_base = head;
    iov[0].iov_len = lx_ws_head(head, opcode, 1, rsv1, len);
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;
    if (lx_conn_send_queued(c, iov, 2) < 0)
        return -1;
    if (ws->req != NULL)
        ws->req->resp_sent += len;
    if (wait && lx_conn_wait_room(c, ws->srv->ws_max_queue) < 0)
        return -1;
    return 0;
}

/* A send failed with the exception set. Thrown into a sender waiting for
 * room (GreenletExit, a gevent.Timeout), it goes up as it is and the
 * websocket goes on: the frame is queued whole. Else the connection
 * failed (or a frame could not be queued whole: no memory), the websocket
 * is closed, and the client's going away is the application's
 * WebSocketError. */
static PyObject *send_failed(WebSocketObject *ws)
{
    int gone = PyErr_ExceptionMatches(ws->srv->st->ClientDisconnected) ||
               PyErr_ExceptionMatches(PyExc_OSError);
    if (!gone && !PyErr_ExceptionMatches(PyExc_MemoryError))
        return NULL;
    ws->state = WS_CLOSED;
    if (ws->conn != NULL)
        ws->conn->flags |= LX_CONN_F_BROKEN;
    if (!gone)
        return NULL;
    PyErr_Clear();
    return ws_error(ws, "the websocket's client went away");
}

/* A close frame with code and reason (code 0: none), once. */
static int send_close(WebSocketObject *ws, int code, const char *reason,
                      size_t rlen)
{
    uint8_t payload[125];
    size_t n = 0;
    if (ws->close_sent || ws->conn == NULL)
        return 0;
    ws->close_sent = 1;
    if (code != 0) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        if (rlen > 123)
            rlen = 123;
        if (rlen > 0)
            memcpy(payload + 2, reason, rlen);
        n = 2 + rlen;
    }
    return send_frame(ws, LX_WS_CLOSE, 0, payload, n, 0);
}

/* The websocket fails (RFC 6455 7.1.7): a close frame with code, no more
 * reading. */
static void fail(WebSocketObject *ws, int code)
{
    if (send_close(ws, code, NULL, 0) < 0)
        PyErr_Clear();
    ws->state = WS_CLOSED;
    lx_log(ws->srv, LX_LOG_DEBUG, "websocket closed: client's frames failed",
           NULL);
}

/* ------------------------------------------------------------------ */
/* the 101 */

/* The application's field lines in its start_response('101 ...'), after
 * the status line. */
static lx_str_t app_fields(lx_req_t *r)
{
    lx_str_t f = {NULL, 0};
    if (r->status_code != 101 || r->fields == NULL)
        return f;
    const char *p = lx_buf_head(r->fields), *e = p + lx_buf_avail(r->fields);
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    if (nl != NULL) {
        f.base = nl + 1;
        f.len = (size_t)(e - nl - 1);
    }
    return f;
}

/* The subprotocol the application chooses, a new str or None: in its
 * start_response('101 ...'), else through gevent-websocket's
 * app_protocol(path) on the application. It must be one the client
 * offered (a whole element of the list). */
static PyObject *choose_protocol(WebSocketObject *ws)
{
    lx_req_t *r = ws->req;
    PyObject *name = NULL;
    lx_str_t fields = app_fields(r), v;
    if (r->status_code == 101) {
        if (lx_wshake_field(fields.base, fields.len,
                            "sec-websocket-protocol:", &v) &&
            (name = PyUnicode_DecodeLatin1(v.base, (Py_ssize_t)v.len, NULL)) ==
                NULL)
            return NULL;
    } else if (ws->offered != NULL) {
        PyObject *fn = PyObject_GetAttrString(ws->srv->app, "app_protocol");
        if (fn == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
        } else {
            name = PyObject_CallOneArg(fn, ws->path ? ws->path : Py_None);
            Py_DECREF(fn);
            if (name == NULL)
                return NULL;
            if (name == Py_None ||
                (PyUnicode_Check(name) && PyUnicode_GET_LENGTH(name) == 0))
                Py_CLEAR(name);
            else if (!PyUnicode_Check(name)) {
                Py_DECREF(name);
                PyErr_SetString(PyExc_TypeError,
                                "app_protocol() must return a str or None");
                return NULL;
            }
        }
    }
    if (name == NULL)
        Py_RETURN_NONE;
    Py_ssize_t n, on;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    const char *o =
        ws->offered != NULL ? PyUnicode_AsUTF8AndSize(ws->offered, &on) : NULL;
    if (s == NULL || (ws->offered != NULL && o == NULL)) {
        Py_DECREF(name);
        return NULL;
    }
    lx_str_t offers = {o, o != NULL ? (size_t)on : 0};
    if (o == NULL || !lx_wshake_offered(offers, s, (size_t)n)) {
        PyErr_Format(PyExc_ValueError,
                     "websocket subprotocol %R was not offered by the client",
                     name);
        Py_DECREF(name);
        return NULL;
    }
    return name;
}

/* Send the 101 unless it went: 0, or -1 with an exception. */
static int ws_open(WebSocketObject *ws)
{
    if (ws->state != WS_NEW)
        return 0;
    lx_req_t *r = ws->req;
    if (r == NULL || ws->conn == NULL) {
        ws_error(ws, "the websocket's request has ended");
        return -1;
    }
    if (ws->taken) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the websocket's socket was taken over");
        return -1;
    }
    if (r->status_code != 0 && r->status_code != 101) {
        PyErr_Format(PyExc_RuntimeError,
                     "start_response was called with status %d: the "
                     "request is answered as HTTP, not as a websocket",
                     r->status_code);
        return -1;
    }
    PyObject *proto = choose_protocol(ws);
    if (proto == NULL)
        return -1;
    Py_XSETREF(ws->protocol, proto);
    const char *pname = NULL;
    Py_ssize_t plen = 0;
    if (proto != Py_None &&
        (pname = PyUnicode_AsUTF8AndSize(proto, &plen)) == NULL)
        return -1;
    lx_server_t *srv = ws->srv;
    lx_wshake_answer_t ans = {
        .accept = ws->accept,
        .protocol = {pname, (size_t)plen},
        .deflate = &ws->df,
        .fields = app_fields(r),
    };
    if (srv->server_line != NULL) {
        ans.server.base = PyBytes_AS_STRING(srv->server_line);
        ans.server.len = (size_t)PyBytes_GET_SIZE(srv->server_line);
    }
    char *h = PyMem_Malloc(lx_wshake_response_max(&ans));
    if (h == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t len = lx_wshake_response(&ans, h);
    struct iovec iov = {h, len};
    int rc = lx_conn_send_queued(ws->conn, &iov, 1);
    PyMem_Free(h);
    if (rc < 0) {
        send_failed(ws);
        return -1;
    }
    r->status_code = 101;
    r->head_sent = 1;
    ws->state = WS_OPEN;
    return 0;
}

/* ------------------------------------------------------------------ */
/* receiving */

/* A text (UTF-8 checked already) or binary message from data[0..len). */
static PyObject *message_object(int op, const char *data, size_t len)
{
    if (op == LX_WS_TEXT)
        return PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, NULL);
    return PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
}

/* The message in ws->msg is whole: the object for the application, or
 * NULL with ws closed (a close code sent) or an exception. */
static PyObject *finish_message(WebSocketObject *ws)
{
    lx_server_t *srv = ws->srv;
    if (ws->msg == NULL && (ws->msg = lx_buf_get(&srv->bufs)) == NULL)
        return PyErr_NoMemory();
    if (ws->msg_z) {
        lx_buf_t *plain = NULL;
        int code = lx_wsz_inflate(&ws->zin, &srv->bufs, &ws->msg,
                                  srv->ws_max_message, &plain);
        if (code < 0)
            return PyErr_NoMemory();
        if (code == 0) {
            lx_buf_put(&srv->bufs, ws->msg);
            ws->msg = plain;
        }
        if (code == 0 && ws->msg_op == LX_WS_TEXT) {
            lx_utf8_t u;
            lx_utf8_init(&u);
            if (lx_utf8_feed(&u, (const uint8_t *)lx_buf_head(ws->msg),
                             lx_buf_avail(ws->msg)) < 0 ||
                !lx_utf8_complete(&u))
                code = LX_WS_INVALID_DATA;
        }
        if (code > 0) {
            lx_buf_put(&srv->bufs, ws->msg);
            ws->msg = NULL;
            fail(ws, code);
            return NULL;
        }
    }
    PyObject *m = message_object(ws->msg_op, lx_buf_head(ws->msg),
                                 lx_buf_avail(ws->msg));
    lx_buf_put(&srv->bufs, ws->msg);
    ws->msg = NULL;
    return m;
}

/* A control frame whose payload (unmasked) is data[0..n): 0 to go on,
 * 1 when the websocket closed, -1 with an exception. */
static int control(WebSocketObject *ws, int op, const uint8_t *data, size_t n)
{
    if (op == LX_WS_PING) {
        if (!ws->close_sent && send_frame(ws, LX_WS_PONG, 0, data, n, 0) < 0)
            return -1;
        return 0;
    }
    if (op == LX_WS_PONG)
        return 0;
    /* close: echoed with its code (RFC 6455 5.5.1), 1000 when it had none */
    int code;
    int rc = lx_ws_close_payload(data, n, &code);
    if (rc < 0) {
        fail(ws, -rc);
        return 1;
    }
    if (send_close(ws, code == LX_WS_NO_STATUS ? LX_WS_NORMAL : code, NULL,
                   0) < 0)
        PyErr_Clear(); /* the client is gone: closed all the same */
    ws->state = WS_CLOSED;
    return 1;
}

/* What the buffered bytes give: a message (new reference), Py_None when
 * more bytes are needed or a control frame was handled (*again set), or
 * NULL with ws closed or an exception. */
static PyObject *parse_some(WebSocketObject *ws, int *again)
{
    lx_server_t *srv = ws->srv;
    lx_conn_t *c = ws->conn;
    lx_buf_t *b = c->rbuf;
    size_t avail = b != NULL ? lx_buf_avail(b) : 0;
    *again = 0;
    if (!ws->in_frame) {
        int rc =
            lx_ws_frame_head(&ws->p, (const uint8_t *)lx_buf_head(b), avail);
        if (rc == LX_AGAIN) {
            *again = 1;
            Py_RETURN_NONE;
        }
        if (rc < 0) {
            fail(ws, -rc);
            return NULL;
        }
        int op = ws->p.opcode;
        size_t plen = (size_t)ws->p.length;
        if (op >= 8) {
            /* A control frame is taken whole (at most 125 bytes); until
             * then its header is read again, which changes nothing. */
            if (avail < (size_t)rc + plen) {
                *again = 1;
                Py_RETURN_NONE;
            }
            uint8_t *data = (uint8_t *)lx_buf_head(b) + rc;
            lx_ws_payload(&ws->p, data, plen);
            uint8_t copy[125];
            memcpy(copy, data, plen);
            lx_buf_consume(b, (size_t)rc + plen);
            int done = control(ws, op, copy, plen);
            if (done < 0)
                return NULL;
            if (done)
                return NULL;
            Py_RETURN_NONE;
        }
        lx_buf_consume(b, (size_t)rc);
        avail -= (size_t)rc;
        if (op != LX_WS_CONT) {
            ws->msg_op = (uint8_t)op;
            ws->msg_z = ws->p.rsv1;
        }
        ws->in_frame = 1;
        /* One whole frame, the whole message, all buffered: straight
         * from the buffer (the common case of small messages). */
        if (ws->p.fin && op != LX_WS_CONT && !ws->msg_z && avail >= plen &&
            ws->msg == NULL) {
            uint8_t *data = (uint8_t *)lx_buf_head(b);
            int prc = lx_ws_payload(&ws->p, data, plen);
            if (prc < 0) {
                fail(ws, -prc);
                return NULL;
            }
            ws->in_frame = 0;
            PyObject *m = message_object(op, (const char *)data, plen);
            lx_buf_consume(b, plen);
            return m;
        }
    }
    /* the payload of a data frame, as much as is buffered */
    size_t take = avail < ws->p.remaining ? avail : (size_t)ws->p.remaining;
    if (take > 0) {
        uint8_t *data = (uint8_t *)lx_buf_head(b);
        int prc = lx_ws_payload(&ws->p, data, take);
        if (prc < 0) {
            fail(ws, -prc);
            return NULL;
        }
        if (ws->msg == NULL && (ws->msg = lx_buf_get(&srv->bufs)) == NULL)
            return PyErr_NoMemory();
        if (lx_buf_reserve(&srv->bufs, &ws->msg, take, SIZE_MAX / 2) < 0)
            return PyErr_NoMemory();
        memcpy(ws->msg->data + ws->msg->len, data, take);
        ws->msg->len += take;
        lx_buf_consume(b, take);
    }
    if (ws->p.remaining > 0) {
        *again = 1;
        Py_RETURN_NONE;
    }
    ws->in_frame = 0;
    if (!ws->p.fin)
        Py_RETURN_NONE; /* the next fragment's header */
    return finish_message(ws);
}

/* Give the connection's buffer back when it holds nothing: an idle
 * websocket holds no buffer. */
static void drop_idle_buffer(lx_conn_t *c)
{
    if (c->rbuf != NULL && lx_buf_avail(c->rbuf) == 0) {
        lx_buf_put(&c->srv->bufs, c->rbuf);
        c->rbuf = NULL;
    }
}

static PyObject *receive(WebSocketObject *ws)
{
    for (;;) {
        if (ws->state == WS_CLOSED || ws->conn == NULL)
            Py_RETURN_NONE;
        lx_conn_t *c = ws->conn;
        if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0) {
            int again;
            PyObject *m = parse_some(ws, &again);
            if (m == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                continue; /* closed */
            }
            if (m != Py_None)
                return m;
            Py_DECREF(m);
            if (!again)
                continue;
        }
        if (c->flags & (LX_CONN_F_CLOSED | LX_CONN_F_BROKEN)) {
            ws->state = WS_CLOSED;
            continue;
        }
        if (c->flags & LX_CONN_F_READABLE) {
            ssize_t n = lx_conn_fill(c, READ_CAP);
            if (n > 0)
                continue;
            if (n == 0 || n == LX_ERR) {
                /* gone without a close frame (1006) */
                c->flags |= LX_CONN_F_BROKEN;
                ws->state = WS_CLOSED;
                continue;
            }
        }
        drop_idle_buffer(c);
        if (lx_conn_wait_input(c) < 0) {
            if (!PyErr_ExceptionMatches(ws->srv->st->ClientDisconnected))
                return NULL;
            PyErr_Clear();
            ws->state = WS_CLOSED;
            continue;
        }
        if (c->wait_result == LX_WAIT_STOP) {
            /* the server stops: going away */
            if (send_close(ws, 1001, "server stopping", 15) < 0)
                PyErr_Clear();
            ws->state = WS_CLOSED;
        }
    }
}

/* ------------------------------------------------------------------ */
/* the type */

static PyObject *ws_receive(PyObject *self, PyObject *unused)
{
    (void)unused;
    WebSocketObject *ws = (WebSocketObject *)self;
    if (ws->state == WS_CLOSED || ws->conn == NULL)
        Py_RETURN_NONE;
    if (ws_open(ws) < 0)
        return NULL;
    if (ws->receiving) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another greenlet is already receiving on this "
                        "websocket");
        return NULL;
    }
    Py_INCREF(ws); /* the request may end while this greenlet waits */
    ws->receiving = 1;
    PyObject *m = receive(ws);
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
        return ws_error(ws, "the websocket is closed");
    Py_buffer view;
    const char *data;
    size_t len;
    int op;
    if (outgoing(msg, binary, &view, &data, &len, &op) < 0)
        return NULL;
    PyObject *res = NULL;
    Py_INCREF(ws);
    if (ws_open(ws) < 0)
        goto out;
    if (ws->state == WS_CLOSED || ws->conn == NULL) {
        ws_error(ws, "the websocket is closed");
        goto out;
    }
    if (ws->df.on) {
        lx_buf_t *z;
        if (lx_wsz_deflate(&ws->zout, &ws->srv->bufs, data, len, &z) < 0) {
            PyErr_NoMemory();
            goto out;
        }
        int rc = send_frame(ws, op, 1, lx_buf_head(z), lx_buf_avail(z), 0);
        lx_buf_put(&ws->srv->bufs, z);
        if (rc == 0 && ws->conn != NULL)
            rc = lx_conn_wait_room(ws->conn, ws->srv->ws_max_queue);
        if (rc < 0) {
            send_failed(ws);
            goto out;
        }
    } else if (send_frame(ws, op, 0, data, len, 1) < 0) {
        send_failed(ws);
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
    if (ws->state == WS_NEW && ws->conn != NULL && ws_open(ws) < 0)
        res = NULL;
    else if (ws->state == WS_OPEN && !ws->close_sent) {
        if (send_close(ws, code, reason, (size_t)rlen) < 0)
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
        return ws_error(ws, "the websocket's request has ended");
    if (ws->state != WS_NEW || ws->taken) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the websocket is in use: its socket cannot be "
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
        (fields = app_fields(ws->req)).base != NULL &&
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
        if (ws_open(ws) < 0) {
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
        send_close(ws, result != NULL ? LX_WS_NORMAL : 1011, NULL, 0) < 0)
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
