/* Connections (conn.c), from accept to close: their state and timers, the
 * request heads the hub reads, keep-alive, lingering close and canned
 * error responses. */
#ifndef LX_CONN_H
#define LX_CONN_H

#include "engine.h"

#include <sys/socket.h>

/* Set up the server's connection state: timers (seconds) and buffers. */
void lx_conns_init(lx_server_t *srv, double t_header, double t_body,
                   double t_write);
/* Live connection structs in this process (a debug counter). */
long lx_conn_live(void);

/* ---- the hub's side ---- */

/* A connection accepted from listener, its head timer armed. NULL when
 * out of memory (the caller closes fd). */
lx_conn_t *lx_conn_open(lx_server_t *srv, int fd, int listener,
                        const struct sockaddr_storage *peer);
/* Read what came of a head. 1: a whole head is buffered (queue it for a
 * worker); 0: not yet, or the connection was rejected or closed. */
int lx_conn_read_head(lx_conn_t *c);
/* A connection just accepted: its TLS handshake if it has one, then its
 * first head, as far as they have come (as lx_conn_read_head). */
int lx_conn_begin(lx_conn_t *c);
/* An event of the loop for c: wakes its waiter, reads a head, or discards
 * what a closing connection still receives. 1 when a whole head is
 * buffered, as lx_conn_read_head. */
int lx_conn_event(lx_conn_t *c, unsigned ev);
/* The earliest deadline of the connections' timers, LX_TIMER_NEVER. */
uint64_t lx_conns_deadline(lx_server_t *srv);
/* Fire the timers due at srv->now. */
void lx_conns_expire(lx_server_t *srv);
/* Free the connections closed since (not those a greenlet still waits
 * on: the next turn's end). */
void lx_conns_free_dead(lx_server_t *srv);
/* Graceful stop: close the connections idle between requests, and with
 * fresh_too those that have sent nothing since they were accepted (their
 * first request may be on its way). */
void lx_conns_close_idle(lx_server_t *srv, int fresh_too);
/* Close every connection; their waiters are queued to be resumed with
 * ClientDisconnected. */
void lx_conns_close_all(lx_server_t *srv);

/* ---- a worker's side ---- */

/* Parse the buffered head into h. Its length, 0 when incomplete, -1 when
 * it must be rejected with *status. */
int lx_conn_parse_head(lx_conn_t *c, lx_http1_req_t *h, int *status);
/* The next head of a keep-alive connection, read while the socket has
 * bytes: its length, 0 when none is whole yet, -1 to reject it with
 * *status, -2 when the client is gone. */
int lx_conn_next_head(lx_conn_t *c, lx_http1_req_t *h, int *status);
/* Give the connection back to the hub between requests. */
void lx_conn_keep(lx_conn_t *c);
/* How a connection ends after its last response (lx_conn_end). */
enum {
    LX_END_QUIET,  /* the client sent all it will: close at once */
    LX_END_UNREAD, /* a body was left unread: linger */
    LX_END_PROBE,  /* look (one read) whether the client sends more */
};
void lx_conn_end(lx_conn_t *c, int how);
/* Give c a send queue (a websocket's): 0, or -1 with an exception. */
int lx_conn_sendq_open(lx_conn_t *c);
/* Close our side and discard what the client still sends, for a while
 * (RFC 9112 9.6), then close. */
void lx_conn_linger(lx_conn_t *c);
/* Reject a request: a canned response, then a lingering close. */
void lx_conn_reject(lx_conn_t *c, int status);
void lx_conn_close(lx_conn_t *c);

/* A complete short response for an error status (text body, Connection:
 * close) into buf; its length, and the body's. */
#define LX_ERROR_RESPONSE_MAX 256
/* Plain HTTP on a TLS port: a 400 whose text says the port speaks HTTPS
 * (nginx's 497). */
#define LX_STATUS_PLAIN_ON_TLS 497
size_t lx_error_response(int status, char *buf, size_t cap, size_t *body_len);
/* "Date: ...\r\n" for the current second, and its length. */
const char *lx_date_line(size_t *len);

#endif
