/* What the server sends on a websocket: the 101 at its first use (with
 * the subprotocol the application chose), frames behind what is queued,
 * the close, and how a failed send is told to the application. */
#define _GNU_SOURCE
#include "wsobj.h"

#include <string.h>

#include "log.h"
#include "wait.h"

/* ------------------------------------------------------------------ */
/* errors */

PyObject *lx_wsk_error(WebSocketObject *ws, const char *msg)
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
int lx_wsk_frame(WebSocketObject *ws, int opcode, int rsv1, const void *data,
                 size_t len, int wait)
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
PyObject *lx_wsk_failed(WebSocketObject *ws)
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
    return lx_wsk_error(ws, "the websocket's client went away");
}

/* A close frame with code and reason (code 0: none), once. */
int lx_wsk_close(WebSocketObject *ws, int code, const char *reason,
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
    return lx_wsk_frame(ws, LX_WS_CLOSE, 0, payload, n, 0);
}

/* The websocket fails (RFC 6455 7.1.7): a close frame with code, no more
 * reading. */
void lx_wsk_fail(WebSocketObject *ws, int code)
{
    if (lx_wsk_close(ws, code, NULL, 0) < 0)
        PyErr_Clear();
    ws->state = WS_CLOSED;
    lx_log(ws->srv, LX_LOG_DEBUG, "websocket closed: client's frames failed",
           NULL);
}

/* ------------------------------------------------------------------ */
/* the 101 */

/* The application's field lines in its start_response('101 ...'), after
 * the status line. */
lx_str_t lx_wsk_app_fields(lx_req_t *r)
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
    lx_str_t fields = lx_wsk_app_fields(r), v;
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
int lx_wsk_open(WebSocketObject *ws)
{
    if (ws->state != WS_NEW)
        return 0;
    lx_req_t *r = ws->req;
    if (r == NULL || ws->conn == NULL) {
        lx_wsk_error(ws, "the websocket's request has ended");
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
        .fields = lx_wsk_app_fields(r),
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
        lx_wsk_failed(ws);
        return -1;
    }
    r->status_code = 101;
    r->head_sent = 1;
    ws->state = WS_OPEN;
    return 0;
}

int lx_wsk_message(WebSocketObject *ws, int op, const char *data, size_t len)
{
    if (!ws->df.on)
        return lx_wsk_frame(ws, op, 0, data, len, 1);
    lx_buf_t *z;
    if (lx_wsz_deflate(&ws->zout, &ws->srv->bufs, data, len, &z) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = lx_wsk_frame(ws, op, 1, lx_buf_head(z), lx_buf_avail(z), 0);
    lx_buf_put(&ws->srv->bufs, z);
    if (rc == 0 && ws->conn != NULL)
        rc = lx_conn_wait_room(ws->conn, ws->srv->ws_max_queue);
    return rc;
}
