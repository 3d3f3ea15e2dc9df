/* The workers (pool.c): greenlets pooled and reused, each serving the
 * requests of one connection at a time, and the queue of connections with
 * a whole head that they take in turn. */
#ifndef LX_POOL_H
#define LX_POOL_H

#include "engine.h"

/* c has a whole head buffered: it waits for a worker. */
void lx_pool_queue(lx_server_t *srv, lx_conn_t *c);
/* From the hub: run workers while connections are queued. The first one
 * takes them one after another and the next starts only when it has to
 * wait: one switch in and out per batch, not per request. */
void lx_pool_run(lx_server_t *srv);
/* Whether connections wait for a worker (the next turn must not sleep). */
int lx_pool_queued(lx_server_t *srv);
/* From the hub: let a few idle workers beyond the number kept go. */
void lx_pool_trim(lx_server_t *srv);
/* Free the workers whose greenlet has finished. */
void lx_pool_reap(lx_server_t *srv);
/* Teardown: make srv->hub (the greenlet that now plays the hub) every
 * worker's parent, so that each comes back to it as it unwinds. 0, or -1
 * when some could not be (another thread's, or the current greenlet's
 * own ancestors). */
int lx_pool_adopt(lx_server_t *srv);
/* Whether the current greenlet is one of srv's workers (a request's own
 * greenlet); -1 with an exception set when it cannot be told. */
int lx_pool_is_current(lx_server_t *srv);
/* Teardown, from the greenlet that now plays the hub: unwind every worker
 * with GreenletExit. 0 when none is left, -1 when some could not be
 * (another thread's, or the current greenlet's own). */
int lx_pool_close(lx_server_t *srv);
void lx_pool_free(lx_server_t *srv);
/* The Python objects the workers hold, for the garbage collector. */
int lx_pool_traverse(lx_server_t *srv, visitproc visit, void *arg);
/* Live workers in this process (a debug counter). */
long lx_pool_live(void);

#endif
