/* The WSGI environ (environ.c): a copy of the listener's prepared dict
 * plus the request's keys (PEP 3333). */
#ifndef LX_ENVIRON_H
#define LX_ENVIRON_H

#include "engine.h"

#include <arpa/inet.h>

/* Prebuilt keys of common request headers, once per process. */
int lx_environ_init(void);
/* Set up a listener's base environ from the given dict (the server's
 * keys), and its SCRIPT_NAME for PATH_INFO. 0, or -1 with an exception. */
int lx_environ_base(lx_state_t *st, lx_listener_t *l, PyObject *given);
void lx_environ_base_clear(lx_listener_t *l);
/* The environ of the request r->h: a new dict, or NULL with an
 * exception. */
PyObject *lx_environ_build(lx_req_t *r);
/* The client's address as REMOTE_ADDR has it, into text: its length,
 * 0 for a unix socket's client. */
size_t lx_environ_addr(const lx_conn_t *c, char text[INET6_ADDRSTRLEN]);
/* Drop the strs kept for values that repeat. */
void lx_environ_forget(lx_server_t *srv);

#endif
