/* The Python boundary: what module.c, server.c, environ.c, response.c,
 * input.c and green.c share. Only these files include Python.h. */
#ifndef LX_ENGINE_H
#define LX_ENGINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "buf.h"
#include "flush.h"
#include "http1.h"
#include "loop.h"
#include "lx.h"
#include "sock.h"
#include "timer.h"

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

/* getattr that treats a missing attribute as 0 (not an error). */
static inline int lx_getattr_opt(PyObject *o, PyObject *name, PyObject **out)
{
    *out = PyObject_GetAttr(o, name);
    if (*out != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
}

typedef struct lx_server lx_server_t;
typedef struct lx_conn lx_conn_t;
typedef struct lx_worker lx_worker_t;
typedef struct lx_req lx_req_t;

/* Module state: heap types, exceptions and interned strings. */
typedef struct {
    PyTypeObject *server_type;
    PyTypeObject *worker_type;
    PyTypeObject *input_type;
    PyTypeObject *start_response_type;
    PyTypeObject *writer_type;
    PyTypeObject *file_wrapper_type;
    PyObject *ClientDisconnected;
    PyObject *BodyError;
    PyObject *empty_str;
    /* environ keys */
    PyObject *k_REQUEST_METHOD, *k_SCRIPT_NAME, *k_PATH_INFO, *k_QUERY_STRING,
        *k_RAW_URI, *k_SERVER_PROTOCOL, *k_REMOTE_ADDR, *k_REMOTE_PORT,
        *k_CONTENT_TYPE, *k_CONTENT_LENGTH, *k_wsgi_input,
        *k_wsgi_input_terminated, *k_HTTP_REFERER, *k_HTTP_USER_AGENT;
    /* common values */
    PyObject *v_http10, *v_http11, *v_GET, *v_POST, *v_HEAD, *v_PUT, *v_DELETE,
        *v_OPTIONS, *v_PATCH;
    /* method names */
    PyObject *s_close, *s_fileno, *s_tell, *s_seek;
} lx_state_t;

/* Connection states. */
enum {
    LX_CS_HEAD = 0, /* owned by the hub: idle or reading a request head */
    LX_CS_ACTIVE,   /* owned by a worker greenlet */
    LX_CS_LINGER,   /* rejected: output shut down, input discarded */
    LX_CS_QUEUED,   /* a whole head is buffered: waits for a worker */
};

#define LX_CONN_F_READABLE 0x01  /* an edge said readable; no EAGAIN since */
#define LX_CONN_F_CLOSED 0x04    /* fd closed, struct freed at end of turn */
#define LX_CONN_F_WAITING 0x08   /* its worker waits on it */
#define LX_CONN_F_HEADTIMER 0x20 /* the head timeout runs for this request */
#define LX_CONN_F_EOF 0x40 /* the peer closed its side: read to the end */

/* Outcome of a wait, set by the hub before it switches back. */
enum { LX_WAIT_READY = 0, LX_WAIT_TIMEOUT, LX_WAIT_CLOSED };

/* Kinds of lx_io_t. */
enum { LX_IO_CONN = 0, LX_IO_LISTENER, LX_IO_WAKE };

struct lx_conn {
    lx_io_t io; /* first: the loop hands back &io */
    uint8_t state;
    uint8_t flags;
    uint8_t wait_for; /* LX_EV_* the waiting worker needs */
    uint8_t wait_result;
    uint16_t listener;
    uint16_t peer_port;
    lx_timer_t timer;
    lx_server_t *srv;
    lx_conn_t *prev, *next; /* all connections of the server */
    lx_buf_t *rbuf;         /* NULL while idle */
    lx_worker_t *worker;    /* while ACTIVE */
    uint32_t parsed_len;    /* rbuf bytes the head parser has seen */
    uint8_t peer_family;
    uint8_t peer_addr[16];
};

/* Keys every request sets whose value often repeats: the bases hold the
 * value, and a request with the same text leaves the copy's. */
enum {
    LX_STICKY_METHOD,
    LX_STICKY_PATH,
    LX_STICKY_URI,
    LX_STICKY_ADDR,
    LX_STICKY_N
};

typedef struct {
    PyObject *base[2]; /* the value base_environ and base_roomy hold */
    PyObject *last;    /* the last value that differed from them */
    unsigned streak;   /* requests in a row with that value */
} lx_sticky_t;

typedef struct {
    lx_io_t io;
    int paused;
    int nodelay_inherited; /* accepted sockets get TCP_NODELAY from it */
    /* What every request's environ is copied from: base_environ for a
     * request of up to base_room header fields, which the copy holds
     * without growing; base_roomy, with room for more, for the others. */
    PyObject *base_environ, *base_roomy;
    size_t base_room;
    PyObject *script_name; /* base_environ's SCRIPT_NAME if a non-empty
                              latin-1 str, else NULL */
    lx_sticky_t sticky[LX_STICKY_N];
} lx_listener_t;

enum { LX_BODY_NONE = 0, LX_BODY_LENGTH, LX_BODY_CHUNKED };

typedef struct InputObject InputObject;
typedef struct StartResponseObject StartResponseObject;
typedef struct WriterObject WriterObject;

/* One request in progress; lives in its worker, reused request after
 * request, so nothing of it sits on the greenlet's stack. */
struct lx_req {
    lx_server_t *srv;
    lx_conn_t *conn;
    lx_http1_req_t h;
    size_t head_len;
    /* request body */
    uint8_t body_mode;
    uint8_t body_done;
    uint8_t expect_pending;
    int body_error; /* 0, 400 or 413: how a failed body read ends */
    uint64_t body_remaining;
    uint64_t body_read;
    lx_chunked_t chunked;
    /* response */
    PyObject *status;  /* str given to start_response */
    PyObject *headers; /* list given to start_response */
    int status_code;
    uint8_t head_sent;
    uint8_t resp_chunked;
    uint8_t resp_close;  /* close the connection after this response */
    uint8_t resp_nobody; /* HEAD, 1xx, 204, 304 */
    uint8_t keepalive;   /* the request allows keep-alive */
    uint8_t failed;      /* the connection is broken: close, send nothing */
    int64_t resp_length; /* Content-Length of the response, -1 if none */
    uint64_t resp_sent;  /* body bytes sent */
    lx_buf_t *out;       /* head and deferred output */
    /* r->out lent to the flusher thread while the application runs (see
     * flush.h); coalesce: small blocks of an iterable may gather in r->out */
    lx_flush_entry_t held;
    uint8_t coalesce;
    /* Python objects handed to the application */
    PyObject *environ;
    InputObject *input;
    StartResponseObject *sr;
    WriterObject *writer;
    uint64_t t_start; /* us, for the access log */
    uint64_t burst;   /* bytes written since this worker last let others run */
};

struct lx_worker {
    PyObject_HEAD lx_server_t *srv;
    PyObject *greenlet;
    PyObject *parent;         /* the hub it was last parented to (not owned) */
    lx_conn_t *conn;          /* assigned by the hub before switching in */
    lx_worker_t *prev, *next; /* all workers of the server */
    int exiting;
    lx_req_t req;
};

#define LX_OK_BITS 5
/* Request header names with prebuilt environ keys (environ.c). */
#define LX_KNOWN_HEADERS 31

struct lx_server {
    PyObject_HEAD lx_state_t *st;
    PyObject *module;
    PyObject *app;
    PyObject *log;
    lx_loop_t *loop;
    lx_listener_t *listeners;
    int nlisteners;
    lx_io_t wake_io;
    int wake_w;
    lx_conn_t conns; /* sentinel */
    size_t nconns;
    lx_conn_t *dead;     /* closed this turn, freed at its end */
    lx_worker_t workers; /* sentinel; the server owns a ref to each */
    lx_worker_t **idle;
    int nidle, idle_cap;
    /* connections with a whole head, in arrival order: a worker takes one
     * after another without going back to the hub in between */
    lx_conn_t **pending;
    size_t pending_head, npending, pending_cap;
    /* connections whose worker yielded to let others run, resumed at the
     * end of the turn (ready) or the next one (ready_next) */
    lx_conn_t **ready, **ready_next;
    size_t nready_next, ready_cap, ready_next_cap;
    lx_bufpool_t bufs;
    lx_timer_list_t t_header, t_body, t_write, t_keepalive, t_linger, t_accept;
    lx_timer_t accept_timer;
    /* configuration */
    uint64_t keepalive_ms; /* 0: no keep-alive */
    lx_http1_limits_t limits;
    size_t max_head;
    uint64_t limit_body; /* 0: unlimited */
    int access_fd;
    char *alog;
    size_t alog_len, alog_cap;
    PyObject *server_line; /* bytes "Server: x\r\n" or NULL */
    /* the loop */
    PyObject *hub; /* greenlet running the loop, while it runs */
    lx_http1_req_t scratch;
    int running;
    int stop_requested; /* set by stop(), from any thread (under GIL) */
    double stop_timeout;
    int stopping;
    uint64_t stop_deadline;
    int torn_down;
    PyObject *pending_exc; /* BaseException raised in a worker */
    /* REMOTE_ADDR / REMOTE_PORT strings, reused while they repeat */
    uint8_t addr_key[17];
    PyObject *addr_str;
    uint16_t port_key[256];
    PyObject *port_str[256];
    /* Response header names and values found valid, by address: an
     * application sends the same few objects again and again. Held, so
     * that an address cannot come back as another string. */
    PyObject *names_ok[1 << LX_OK_BITS], *values_ok[1 << LX_OK_BITS];
    PyObject *status_ok; /* the last status found valid, and its code */
    int status_ok_code;
    /* The last value of each request header with a prebuilt key: a
     * client sends the same Host, User-Agent or Accept again and again. */
    PyObject *header_vals[LX_KNOWN_HEADERS];
    uint64_t now; /* ms, cached per turn */
    uint64_t emfile_logged;
    time_t date_sec;
    char date_line[48];
    size_t date_len;
};

/* server.c */
void lx_conn_close(lx_conn_t *c);
/* Reject a request: canned response, then lingering close. */
void lx_conn_reject(lx_conn_t *c, int status);
/* A complete short response for an error status ("400 Bad Request" ...,
 * text body, Connection: close) into buf; its length, and the body's. */
#define LX_ERROR_RESPONSE_MAX 256
size_t lx_error_response(lx_server_t *srv, int status, char *buf, size_t cap,
                         size_t *body_len);
/* Wait in the current worker until the conn is ready for what
 * (LX_EV_READ / LX_EV_WRITE): 0, or -1 with an exception. */
int lx_conn_wait(lx_req_t *r, unsigned what);
/* Account n bytes written; past a burst limit, let other connections run
 * before going on: 0, or -1 with an exception. */
int lx_conn_progress(lx_req_t *r, size_t n);
/* The outcome of one write of the response: n > 0 bytes went out,
 * LX_AGAIN (wait until writable) or LX_ERR (the client is gone, what says
 * what was being sent). 0 to go on, -1 with an exception. */
int lx_conn_wrote(lx_req_t *r, ssize_t n, const char *what);
/* Lend what r->out holds to the flusher thread before the application
 * runs (it sends the bytes if the application takes a while); when no
 * thread can start, send them now. 0 or -1 (exception). */
int lx_req_lend(lx_req_t *r);
/* Take r->out back from the flusher: 0, or -1 with ClientDisconnected when
 * it found the connection broken (r->failed is then set). Every path that
 * writes to the connection or touches r->out calls it first. */
int lx_req_unhold(lx_req_t *r);
/* The same without an exception: a broken connection only sets r->failed,
 * for the next write to report. */
void lx_req_take_back(lx_req_t *r);
/* r->out taken back, and the connection not broken: 0, or -1 with
 * ClientDisconnected. */
int lx_req_writable(lx_req_t *r);
/* Write every byte of iov, waiting as needed: 0 or -1 (exception). */
int lx_conn_writev_all(lx_req_t *r, struct iovec *iov, int iovcnt);
/* Read more bytes into rbuf. > 0 bytes, 0 would block (only when !wait),
 * -1 with an exception (ClientDisconnected at EOF, TimeoutError). */
Py_ssize_t lx_conn_fill(lx_req_t *r, int wait);
/* The same into dst (at most len bytes), bypassing rbuf: for large body
 * reads, the bytes go straight into the application's object. */
Py_ssize_t lx_conn_read(lx_req_t *r, char *dst, size_t len, int wait);
void lx_server_log(lx_server_t *srv, int level, const char *msg,
                   PyObject *exc);
uint64_t lx_now_us(void);
/* Write out the buffered access log lines (all of them, retrying partial
 * writes). */
void lx_server_alog_flush(lx_server_t *srv);
/* "Date: ...\r\n" for the current second. */
const char *lx_server_date(lx_server_t *srv, size_t *len);

/* environ.c */
PyObject *lx_environ_build(lx_req_t *r);
/* Set up a listener's base environs from the given dict, and its
 * SCRIPT_NAME for PATH_INFO. */
int lx_environ_base(lx_state_t *st, lx_listener_t *l, PyObject *given);
void lx_environ_base_clear(lx_listener_t *l);
int lx_environ_init_state(lx_state_t *st);

/* response.c */
/* Run the application for the parsed request r->h; send the response.
 * Returns 1 when the connection may serve another request, 0 to close. */
int lx_request_handle(lx_req_t *r);
/* Send what r->out holds: 0 or -1 (exception). */
int lx_req_flush(lx_req_t *r);
void lx_req_release(lx_req_t *r);
extern PyType_Spec lx_start_response_spec, lx_writer_spec,
    lx_file_wrapper_spec;

/* input.c */
extern PyType_Spec lx_input_spec;
InputObject *lx_input_new(lx_state_t *st);
void lx_input_attach(InputObject *in, lx_req_t *r);
void lx_input_detach(InputObject *in);
/* Before the response: make the unread body go away without blocking.
 * 1: the connection can carry another request; 0: it must close. */
int lx_body_discard(lx_req_t *r);
int lx_body_unread_fits(lx_req_t *r);

/* green.c: the only user of greenlet.h */
int lx_green_import(void);
PyObject *lx_green_current(void);
PyObject *lx_green_new(PyObject *run, PyObject *parent);
PyObject *lx_green_switch(PyObject *g);
PyObject *lx_green_throw_exit(PyObject *g);
int lx_green_set_parent(PyObject *g, PyObject *parent);
int lx_green_is_exit(PyObject *exc);

/* module.c */
long lx_debug_count(int which, int delta);
enum { LX_COUNT_CONNS = 0, LX_COUNT_WORKERS };

#endif
