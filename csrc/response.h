/* The response's head (response.c): start_response and write(), the checks
 * of status and headers, and the head's bytes with the framing chosen. */
#ifndef LX_RESPONSE_H
#define LX_RESPONSE_H

#include "engine.h"

extern PyType_Spec lx_start_response_spec, lx_writer_spec;

/* The start_response and write callables of a worker, bound to its request
 * while one runs (r NULL: unbound, calls raise). NULL with an exception. */
StartResponseObject *lx_start_response_new(lx_state_t *st);
WriterObject *lx_writer_new(lx_state_t *st);
void lx_start_response_bind(StartResponseObject *sr, lx_req_t *r);
void lx_writer_bind(WriterObject *w, lx_req_t *r);

/* Put the head into r->out. whole_len is the body's length when it is
 * known whole (a one-element list, an exhausted iterable), else -1.
 * 0, or -1 with an exception (no start_response, a bad header). */
int lx_response_head(lx_req_t *r, int64_t whole_len);
/* Begin request r, its head parsed: its response state reset, its body
 * set up, keep-alive decided. 1 to serve it; else what the request's
 * caller returns: -1 when it was refused (a canned response, and the
 * connection lingers on its own), 0 when its connection broke. */
int lx_response_begin(lx_req_t *r);
/* A block of the body, the head first if it is not out yet (see
 * lx_out_body): 0, or -1 with an exception. */
int lx_response_block(lx_req_t *r, const char *data, size_t len, int last);

/* Drop the strs kept as found valid. */
void lx_response_forget(lx_server_t *srv);

#endif
