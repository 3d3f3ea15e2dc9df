/* What comes from a websocket's client: frames read from the
 * connection's buffer and checked (ws.c), messages gathered and inflated
 * (wsz.c), pings answered, the close echoed; the wait for more, without a
 * timer and without a buffer. */
#define _GNU_SOURCE
#include "wsobj.h"

#include <string.h>

#include "utf8.h"
#include "wait.h"

/* Bytes read into the connection's buffer at most while a message
 * arrives (its payload moves on into the message's own buffer). */
#define READ_CAP (256u * 1024u)

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
            lx_wsk_fail(ws, code);
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
        if (!ws->close_sent && lx_wsk_frame(ws, LX_WS_PONG, 0, data, n, 0) < 0)
            return -1;
        return 0;
    }
    if (op == LX_WS_PONG)
        return 0;
    /* close: echoed with its code (RFC 6455 5.5.1), 1000 when it had none */
    int code;
    int rc = lx_ws_close_payload(data, n, &code);
    if (rc < 0) {
        lx_wsk_fail(ws, -rc);
        return 1;
    }
    if (lx_wsk_close(ws, code == LX_WS_NO_STATUS ? LX_WS_NORMAL : code, NULL,
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
            lx_wsk_fail(ws, -rc);
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
                lx_wsk_fail(ws, -prc);
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
            lx_wsk_fail(ws, -prc);
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

PyObject *lx_wsk_receive(WebSocketObject *ws)
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
            if (lx_wsk_close(ws, 1001, "server stopping", 15) < 0)
                PyErr_Clear();
            ws->state = WS_CLOSED;
        }
    }
}
