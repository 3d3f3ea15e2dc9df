/* The Python boundary: the types its files share. Only the files of this
 * layer include Python.h, through this header; each has a header of its
 * own for what it offers the files above it (docs/architecture.md draws
 * the layers). */
#ifndef LX_ENGINE_H
#define LX_ENGINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "buf.h"
#include "flush.h"
#include "fwd.h"
#include "http1.h"
#include "loop.h"
#include "lx.h"
#include "sock.h"
#include "static.h"
#include "timer.h"
#include "tls.h"

/* Exceptions as one object, whatever the Python version. */
#if PY_VERSION_HEX >= 0x030C0000
#define lx_err_get PyErr_GetRaisedException
#define lx_err_set PyErr_SetRaisedException
#else
static inline PyObject *lx_err_get(void)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (t == NULL)
        return NULL;
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
}
static inline void lx_err_set(PyObject *v)
{
    if (v == NULL)
        return;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(v)), v,
                  PyException_GetTraceback(v));
}
#endif

typedef struct lx_server lx_server_t;
typedef struct lx_conn lx_conn_t;
typedef struct lx_worker lx_worker_t; /* pool.c's own */
typedef struct lx_req lx_req_t;
typedef struct InputObject InputObject;
typedef struct StartResponseObject StartResponseObject;
typedef struct WriterObject WriterObject;

/* Module state: heap types, exceptions and interned strings. */
typedef struct {
    PyTypeObject *server_type;
    PyTypeObject *input_type;
    PyTypeObject *start_response_type;
    PyTypeObject *writer_type;
    PyTypeObject *file_wrapper_type;
    PyTypeObject *websocket_type;
    PyObject *ClientDisconnected;
    PyObject *BodyError;
    PyObject *empty_str;
    /* environ keys */
    PyObject *k_REQUEST_METHOD, *k_SCRIPT_NAME, *k_PATH_INFO, *k_QUERY_STRING,
        *k_RAW_URI, *k_SERVER_PROTOCOL, *k_REMOTE_ADDR, *k_REMOTE_PORT,
        *k_wsgi_input, *k_wsgi_input_terminated, *k_HTTP_REFERER,
        *k_HTTP_USER_AGENT;
    /* common values */
    PyObject *v_http10, *v_http11, *v_GET;
    /* method names */
    PyObject *s_close, *s_fileno, *s_tell, *s_seek;
} lx_state_t;

/* ------------------------------------------------------------------ */
/* connections (conn.c) */

enum {
    LX_CS_HEAD = 0,  /* the hub's: idle, or reading a request head */
    LX_CS_QUEUED,    /* a whole head is buffered: waits for a worker */
    LX_CS_ACTIVE,    /* a worker's: its requests are being served */
    LX_CS_LINGER,    /* closing: output shut down, input discarded */
    LX_CS_HANDSHAKE, /* the hub's: a TLS handshake under way (tlsconn.c) */
    LX_CS_PROXY,     /* the hub's: its PROXY protocol header awaited */
};

#define LX_CONN_F_READABLE 0x01 /* an edge said readable; no EAGAIN since */
#define LX_CONN_F_EOF 0x02      /* the peer closed its side: read to the end */
#define LX_CONN_F_CLOSED 0x04   /* fd closed, struct freed at end of turn */
#define LX_CONN_F_WAITING 0x08  /* a greenlet waits on it */
#define LX_CONN_F_HEADTIMER 0x10 /* the head timeout runs for this request */
#define LX_CONN_F_BROKEN 0x20    /* nothing more can be sent: close it */
#define LX_CONN_F_RESUME 0x40    /* on the server's resume list */
#define LX_CONN_F_OWNED 0x80     /* a worker serves it: the struct stays */
#define LX_CONN_F_WS                                 \
    0x100 /* a websocket: the hub sends its queue, a \
             stop wakes its reader */

/* Outcome of a wait, set by the hub before it switches back. */
enum { LX_WAIT_READY = 0, LX_WAIT_TIMEOUT, LX_WAIT_CLOSED, LX_WAIT_STOP };

/* A greenlet waiting for a connection's send queue to shrink (wait.c). */
typedef struct lx_wwait {
    struct lx_wwait *next;
    PyObject *greenlet; /* borrowed: the waiter holds it */
    uint8_t linked;
} lx_wwait_t;

/* A websocket's send queue (wait.c): frames not yet written, which the
 * hub sends as the socket drains, their write timeout, and the greenlets
 * waiting for the queue to shrink. Made by lx_conn_sendq_open, freed with
 * its connection's struct. */
typedef struct lx_sendq {
    lx_conn_t *conn;
    lx_buf_t *buf; /* NULL when nothing waits */
    lx_timer_t timer;
    lx_wwait_t *wait_head, *wait_tail;
} lx_sendq_t;

/* Kinds of lx_io_t. */
enum { LX_IO_CONN = 1, LX_IO_LISTENER, LX_IO_WAKE };

struct lx_conn {
    lx_io_t io; /* first: the loop hands back &io */
    uint8_t state;
    uint16_t flags;
    uint8_t wait_for; /* LX_EV_* the waiter needs; 0: resumed next turn */
    uint8_t wait_result;
    uint16_t listener;
    uint16_t peer_port;
    uint32_t parsed_len; /* rbuf bytes the head parser has seen */
    uint32_t burst;      /* bytes written since it last let others run */
    lx_timer_t timer;
    lx_server_t *srv;
    lx_conn_t *prev, *next; /* all connections of the server */
    lx_buf_t *rbuf;         /* NULL while idle */
    PyObject *waiter;       /* the greenlet waiting on it (owned) */
    lx_conn_t *resume_next; /* on the server's resume list */
    lx_flush_entry_t *held; /* its output's entry while ACTIVE */
    lx_sendq_t *sq;         /* a websocket's send queue, NULL for others */
    lx_tls_t *tls;          /* TLS over the socket, NULL for plain */
    PyObject *tls_env;      /* its environ keys, made at the first request */
    uint8_t peer_family;
    uint8_t peer_addr[16];
};

/* ------------------------------------------------------------------ */
/* one request (its worker's, reused request after request, so nothing of
 * it sits on a greenlet's stack) */

enum { LX_BODY_NONE = 0, LX_BODY_LENGTH, LX_BODY_CHUNKED };
enum { LX_ALOG_COMBINED = 0, LX_ALOG_PYWSGI };

struct lx_req {
    lx_server_t *srv;
    lx_conn_t *conn;
    lx_http1_req_t h;
    size_t head_len;
    /* the request body (input.c) */
    uint8_t body_mode;
    uint8_t body_done;
    uint8_t expect_pending; /* 100 Continue is owed before body bytes */
    int body_error;         /* 0, or the status a failed body read ends with */
    uint64_t body_remaining;
    uint64_t body_read;
    lx_chunked_t chunked;
    /* the response (response.c, result.c) */
    lx_buf_t *fields;   /* the status line and header fields, checked and
                           written out by start_response */
    int status_code;    /* 0 until start_response */
    int64_t app_length; /* the application's Content-Length, -1 if none */
    uint8_t app_date;   /* it set Date */
    uint8_t app_server; /* it set Server */
    uint8_t app_close;  /* it set Connection: close */
    uint8_t head_sent;
    uint8_t resp_chunked;
    uint8_t resp_close;  /* close the connection after this response */
    uint8_t resp_nobody; /* HEAD, 1xx, 204, 304 */
    uint8_t keepalive;   /* the request allows keep-alive */
    uint8_t head_method; /* HEAD (r->h's strings point into a buffer that
                            reading the body may overwrite) */
    uint8_t coalesce;    /* small blocks of an iterable may gather */
    int64_t resp_length; /* Content-Length of the response, -1 if none */
    uint64_t resp_sent;  /* body bytes sent */
    /* its bytes on the way out (output.c) */
    lx_buf_t *out;         /* head and output held back */
    lx_flush_entry_t held; /* out lent to the flusher thread */
    /* Python objects handed to the application (wsgi.c) */
    PyObject *environ;
    InputObject *input;
    StartResponseObject *sr;
    WriterObject *writer;
    uint64_t t_start; /* us, for the access log */
    /* a static file's answer (files.c), and the access log's copy of its
     * request line and fields */
    lx_static_resp_t *sresp;
    char *alog_copy;
    size_t alog_copy_cap;
    /* a websocket request's object (wsock.c), NULL for any other */
    PyObject *ws;
};

/* ------------------------------------------------------------------ */
/* the server (server.c) */

typedef struct {
    lx_io_t io;
    int paused;
    int nodelay_inherited;    /* accepted sockets get TCP_NODELAY from it */
    int tls;                  /* its connections speak TLS */
    PyObject *base_environ;   /* what every request's environ is copied from */
    PyObject *base_values[4]; /* what it holds for the method, the path,
                                 the target, the address (borrowed) */
    PyObject *script_name;    /* its SCRIPT_NAME if a non-empty latin-1 str */
} lx_listener_t;

/* The workers (pool.c). */
typedef struct {
    lx_worker_t *all;   /* every worker alive, a list */
    size_t busy;        /* workers serving a connection */
    size_t limit;       /* requests served at once, 0: no limit */
    size_t peak;        /* most busy at once lately ... */
    uint64_t peak_at;   /* ... since this time (ms; halved each window) */
    uint64_t window;    /* ms */
    lx_worker_t **idle; /* waiting for a connection, most recent last */
    int nidle, idle_cap;
    lx_worker_t *finished; /* returned: freed at the end of the turn */
    /* connections with a whole head, in arrival order: a worker takes one
     * after another without going back to the hub in between */
    lx_conn_t **pending;
    size_t pending_head, npending, pending_cap;
} lx_pool_t;

struct lx_server {
    PyObject_HEAD lx_state_t *st;
    PyObject *module;
    PyObject *app;
    PyObject *log; /* the error log: log(level, msg, exc) */
    /* the loop and the greenlet that drives it */
    lx_loop_t *loop;
    PyObject *hub; /* attached at the first turn, for good */
    unsigned long hub_thread;
    int in_turn;     /* the hub is inside serve_forever/run_once */
    uint64_t now;    /* ms, read at each turn (lx_conn_now) */
    lx_io_t wake_io; /* stop() and signals write to wake_w */
    int wake_w;
    lx_listener_t *listeners;
    int nlisteners;
    lx_timer_list_t t_accept;
    lx_timer_t accept_timer;
    uint64_t emfile_logged;
    PyObject *pending_exc; /* BaseException raised in a greenlet */
    int stop_requested;    /* set by stop(), from any thread */
    double stop_timeout;
    int stopping;
    uint64_t stop_deadline;
    uint64_t stop_fresh_at; /* connections that have sent nothing yet are
                               closed then (0: not pending) */
    int torn_down;
    /* connections (conn.c) */
    lx_conn_t conns; /* sentinel */
    size_t nconns;
    lx_conn_t *dead; /* closed this turn, freed at its end */
    /* connections whose waiter the hub resumes at the end of the turn (it
     * let the others run, or its connection was closed under it), in
     * order, through their resume_next */
    lx_conn_t *resume_head, *resume_tail;
    lx_bufpool_t bufs;
    lx_timer_list_t t_header, t_body, t_write, t_keepalive, t_linger;
    lx_http1_req_t scratch; /* the hub's parse of a head in progress */
    /* workers (pool.c) */
    lx_pool_t pool;
    /* configuration */
    uint64_t keepalive_ms; /* 0: no keep-alive */
    lx_http1_limits_t limits;
    size_t max_head;
    uint64_t limit_body;   /* 0: unlimited */
    PyObject *server_line; /* bytes "Server: x\r\n" or NULL */
    /* the last str of each environ value that often repeats (environ.c) */
#define LX_LAST_VALUES 35
    PyObject *last_values[LX_LAST_VALUES];
    /* strs found valid in responses, by address (response.c) */
#define LX_VALID_BITS 5
    PyObject *valid_names[1 << LX_VALID_BITS];
    PyObject *valid_values[1 << LX_VALID_BITS];
    PyObject *valid_status; /* the last status found valid, and its code */
    int valid_code;
    /* the peers whose proxy headers are read (environ.c, fwd.c), and the
     * only ones served when every connection begins with a PROXY protocol
     * header (conn.c, proxyp.c) */
    lx_fwd_allow_t fwd_allow;
    int proxy_protocol;
    /* the logs (log.c) */
    PyObject *app_error;  /* app_error(environ, exc): the application's
                             exceptions, else the log */
    int alog_on;          /* a line per request ... */
    int alog_style;       /* ... LX_ALOG_COMBINED or LX_ALOG_PYWSGI ... */
    int access_fd;        /* ... written to this fd, or -1 and ... */
    PyObject *alog_write; /* ... given to this callable, line by line; or
                             instead of a line: */
    PyObject *alog_call;  /* alog_call(environ, status, sent, seconds) */
    char *alog;
    size_t alog_len, alog_cap;
    uint64_t served;      /* requests answered */
    lx_static_t *statics; /* static files (files.c), NULL: none */
    /* websockets (wsock.c) */
    uint64_t ws_max_message; /* bytes of one message, 0: any */
    size_t ws_max_queue;     /* bytes queued for a client before send()
                                waits */
    int ws_deflate;          /* permessage-deflate accepted */
    PyObject *ws_error;      /* the WebSocketError class */
    PyObject *ws_socket;     /* ws_socket(ws): environ's gunicorn.socket */
    /* TLS (tlsconn.c) */
    lx_tls_ctx_t *tls_ctx;       /* NULL: no listener speaks TLS */
    lx_timer_list_t t_handshake; /* from accept to the handshake's end */
    uint64_t tls_logged;         /* when a failed handshake was last logged */
    unsigned long tls_unlogged;  /* failures since, not logged */
};

#endif
