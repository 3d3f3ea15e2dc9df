/* The websocket object's insides, shared by the files that serve it:
 * wsock.c (the Python type and the request's side), wssend.c (what goes
 * to the client: the 101, frames, the close) and wsread.c (what comes
 * from it). Nothing else includes this. */
#ifndef LX_WSOBJ_H
#define LX_WSOBJ_H

#include "engine.h"
#include "ws.h"
#include "wshake.h"
#include "wsz.h"

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

/* The application's WebSocketError (OSError without one) with msg:
 * NULL. */
PyObject *lx_wsk_error(WebSocketObject *ws, const char *msg);
/* One frame behind what is queued; with wait, then a wait for room. 0,
 * or -1 with an exception. */
int lx_wsk_frame(WebSocketObject *ws, int opcode, int rsv1, const void *data,
                 size_t len, int wait);
/* A message (op: text or binary), compressed if that was negotiated,
 * then a wait for room: 0, or -1 with an exception. */
int lx_wsk_message(WebSocketObject *ws, int op, const char *data, size_t len);
/* A send failed with the exception set: NULL, the exception as the
 * application should see it (see wssend.c). */
PyObject *lx_wsk_failed(WebSocketObject *ws);
/* A close frame with code and reason (code 0: none), once: 0 or -1. */
int lx_wsk_close(WebSocketObject *ws, int code, const char *reason,
                 size_t rlen);
/* The websocket fails with code (RFC 6455 7.1.7). */
void lx_wsk_fail(WebSocketObject *ws, int code);
/* The application's field lines of its start_response('101 ...'). */
lx_str_t lx_wsk_app_fields(lx_req_t *r);
/* Send the 101 unless it went: 0, or -1 with an exception. */
int lx_wsk_open(WebSocketObject *ws);
/* The next message, None once closed, or NULL with an exception; the
 * 101 went and no other greenlet receives. */
PyObject *lx_wsk_receive(WebSocketObject *ws);

#endif
