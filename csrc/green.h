/* The greenlet bridge (green.c): the only user of greenlet.h, and the
 * switches between the hub and the greenlets that wait on it. */
#ifndef LX_GREEN_H
#define LX_GREEN_H

#include "engine.h"

int lx_green_import(void);
/* The current greenlet: a new reference, or NULL with an exception. */
PyObject *lx_green_current(void);
/* A new greenlet that calls run() when first switched to. */
PyObject *lx_green_new(PyObject *run, PyObject *parent);
PyObject *lx_green_switch(PyObject *g);
/* Raise GreenletExit in g; what g's parent then receives. */
PyObject *lx_green_throw_exit(PyObject *g);
int lx_green_set_parent(PyObject *g, PyObject *parent);
/* Whether g was started and has finished. */
int lx_green_dead(PyObject *g);
int lx_green_is_exit(PyObject *exc);

/* From the hub: run g until something switches back to the hub. A
 * BaseException that g ends with (KeyboardInterrupt, SystemExit) is kept
 * for the turn to raise; an Exception is reported as unraisable. */
void lx_hub_resume(lx_server_t *srv, PyObject *g);
/* From any other greenlet: switch to the hub until it resumes this one.
 * Outside a turn (something other than the hub resumed this greenlet),
 * the loop's fd is made readable first, so that the hub comes round to
 * what this greenlet changed. Returns the switch's result: a new
 * reference, or NULL with the exception thrown in. */
PyObject *lx_hub_wait(lx_server_t *srv);
/* The same when the caller cannot use the result: 0, or -1 with the
 * exception. */
int lx_hub_wait_quiet(lx_server_t *srv);

#endif
