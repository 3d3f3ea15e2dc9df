/* A request's websocket (wsock.c): environ['wsgi.websocket'], with
 * gevent-websocket's interface over ws.c's framing and wshake.c's
 * handshake; its 101 sent at first use, and the end of its connection. */
#ifndef LX_WSOCK_H
#define LX_WSOCK_H

#include "engine.h"

extern PyType_Spec lx_websocket_spec;

/* Live WebSocket objects in this process (a debug counter). */
long lx_wsock_live(void);

/* For a request that asks for a websocket (Upgrade: websocket), before
 * its head's bytes are consumed: 1 with r->ws made; 0 when it does not ask
 * for one; -1 to refuse it with *status (400, 426), or on an error with
 * an exception (*status 500). */
int lx_wsock_begin(lx_req_t *r, int *status);
/* The environ is built: the websocket's keys into it (wsgi.websocket,
 * wsgi.websocket_version, gunicorn.socket). 0, or -1 with an exception. */
int lx_wsock_environ(lx_req_t *r);
/* Whether the application answered with plain HTTP instead (it called
 * start_response with a status other than 101 before using the
 * websocket): the response then goes out as any other. */
int lx_wsock_declined(lx_req_t *r);
/* The application returned (result, or NULL with its exception set) on a
 * websocket request it did not decline: the 101 if it never used the
 * websocket, a close frame if none was sent, the queue sent; nothing
 * when it took the socket over. The connection is not kept. */
void lx_wsock_end(lx_req_t *r, PyObject *result);
/* Cut r's websocket loose from the request (its methods then say the
 * websocket is closed). */
void lx_wsock_release(lx_req_t *r);

#endif
