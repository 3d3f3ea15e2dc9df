/* Waits on a connection (wait.c): any greenlet may wait for its client,
 * and the hub resumes the one that waited; the socket I/O of a request,
 * which waits as it must. */
#ifndef LX_WAIT_H
#define LX_WAIT_H

#include "engine.h"

#include <sys/types.h>
#include <sys/uio.h>

/* Free room a read into a connection's buffer asks for. */
#define LX_READ_RESERVE 4096

/* The clock (ms) timers are armed with: the turn's, or a fresh reading
 * outside a turn. */
uint64_t lx_conn_now(lx_server_t *srv);
/* Arm c's timer on l, from lx_conn_now. */
void lx_conn_arm(lx_conn_t *c, lx_timer_list_t *l);

/* Read into c->rbuf (growing it up to max_cap): > 0 bytes, 0 at the end of
 * input, LX_AGAIN, LX_ERR (errno; ENOBUFS when the buffer is full). */
ssize_t lx_conn_fill(lx_conn_t *c, size_t max_cap);

/* From the hub: resume the greenlet waiting on c with the outcome
 * (LX_WAIT_*). */
void lx_conn_wake(lx_conn_t *c, int result);
/* Queue c's waiter to be resumed at the end of the turn (the next one if
 * the resumptions are under way): it let the others run, or its
 * connection closed under it. A queued connection is not freed. */
void lx_conn_queue_resume(lx_conn_t *c);
/* Whether waiters are queued (the next turn must not sleep). */
int lx_conns_to_resume(lx_server_t *srv);
/* From the hub: resume the waiters queued. */
void lx_conns_resume(lx_server_t *srv);

/* Wait in the current greenlet (any but the hub) until c is ready for
 * what (LX_EV_READ or LX_EV_WRITE), within the body or write timeout.
 * 0, or -1 with an exception: TimeoutError, ClientDisconnected (the
 * connection closed under the wait: it is then broken), or what was
 * thrown into the greenlet. */
int lx_conn_wait(lx_conn_t *c, unsigned what);
/* More bytes into c->rbuf without waiting: > 0 bytes, 0 when none are
 * there now, -1 with ClientDisconnected (end of input or error). */
Py_ssize_t lx_conn_recv(lx_conn_t *c);
/* The same straight into dst (at most len bytes), bypassing rbuf. */
Py_ssize_t lx_conn_read(lx_conn_t *c, char *dst, size_t len);
/* Write every byte of iov, waiting as needed: 0, or -1 with an exception
 * (the connection is then broken). what names the bytes in messages. */
int lx_conn_writev(lx_conn_t *c, struct iovec *iov, int iovcnt,
                   const char *what);
/* sendfile len bytes of fd from *pos (advanced), waiting as needed:
 * the bytes sent (fewer if the file ended), or -1 with an exception. */
int64_t lx_conn_sendfile(lx_conn_t *c, int fd, off_t *pos, uint64_t len);

/* ---- websockets ---- */

/* Wait in the current greenlet until c is readable, with no timeout (a
 * websocket may be idle for hours): 0, or -1 with an exception. A
 * graceful stop ends the wait with c->wait_result LX_WAIT_STOP. */
int lx_conn_wait_input(lx_conn_t *c);
/* Send the bytes of iov behind those queued: what the socket takes now
 * goes at once, the rest waits in c->sq (lx_conn_sendq_open), which the hub
 * sends as the socket drains (lx_conn_drain), within the write timeout. Never
 * waits: 0, or -1 with an exception. */
int lx_conn_send_queued(lx_conn_t *c, struct iovec *iov, int n);
/* Bytes queued in c->sq. */
size_t lx_conn_queued(const lx_conn_t *c);
/* Wait in the current greenlet until at most bound bytes are queued (any
 * number of greenlets may wait; the hub itself never does): 0, or -1 with
 * an exception (ClientDisconnected when the connection closed). */
int lx_conn_wait_room(lx_conn_t *c, size_t bound);
/* From the hub: c is writable: send what its queue holds while the
 * socket takes it. LX_OK, or LX_ERR (errno: the client is gone). */
int lx_conn_drain(lx_conn_t *c);
/* Resume every greenlet waiting for room on c. */
void lx_conn_wake_writers(lx_conn_t *c);
/* (Re)arm c's write timeout for its queue. */
void lx_conn_arm_write(lx_conn_t *c);

#endif
