/* The request body (input.c): wsgi.input, read lazily from the
 * connection, Content-Length or chunked, never buffered whole. */
#ifndef LX_INPUT_H
#define LX_INPUT_H

#include "engine.h"

extern PyType_Spec lx_input_spec;

/* A worker's wsgi.input, bound to its request while one runs (r NULL:
 * unbound, reads raise). NULL with an exception. */
InputObject *lx_input_new(lx_state_t *st);
void lx_input_bind(InputObject *in, lx_req_t *r);

/* Set up r's body from its head: 0, or the status to refuse it with (413:
 * longer than the limit). */
int lx_body_start(lx_req_t *r);
/* Whether what is left of the body is already buffered whole, so the
 * connection can carry another request after the response. */
int lx_body_unread_fits(lx_req_t *r);
/* After the response: drop the unread body without waiting. 1 when the
 * connection can carry another request, 0 when it must close. */
int lx_body_discard(lx_req_t *r);

#endif
