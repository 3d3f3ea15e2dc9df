/* One request through the application (wsgi.c): its environ, the call,
 * the result sent, errors answered, the access log line. */
#ifndef LX_WSGI_H
#define LX_WSGI_H

#include "engine.h"

/* Serve the request whose head r->h is parsed (r->head_len bytes of the
 * connection's buffer). 1 when the connection may carry another request,
 * 0 to close it, -1 when it was rejected (it closes on its own). */
int lx_wsgi_call(lx_req_t *r);
/* Drop what r holds (its worker ends). */
void lx_wsgi_release(lx_req_t *r);
/* The Python objects r holds, for the garbage collector. */
int lx_wsgi_traverse(lx_req_t *r, visitproc visit, void *arg);

#endif
