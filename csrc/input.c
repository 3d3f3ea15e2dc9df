/* The request body: wsgi.input, read lazily from the connection,
 * Content-Length or chunked, never buffered whole. */
#include "input.h"

#include <string.h>

#include "wait.h"
#include "output.h"

/* Reads of at least this much go straight from the socket into the
 * application's bytes when nothing is buffered. */
#define DIRECT_READ_MIN 16384

struct InputObject {
    PyObject_HEAD lx_req_t *req;
};

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ------------------------------------------------------------------ */
/* the body stream */

int lx_body_start(lx_req_t *r)
{
    r->body_error = 0;
    r->body_read = 0;
    r->body_done = 0;
    r->expect_pending = 0;
    if (r->h.flags & LX_REQ_CHUNKED) {
        r->body_mode = LX_BODY_CHUNKED;
        lx_chunked_init(&r->chunked);
    } else if (r->h.content_length > 0) {
        r->body_mode = LX_BODY_LENGTH;
        r->body_remaining = (uint64_t)r->h.content_length;
        if (r->srv->limit_body && r->body_remaining > r->srv->limit_body)
            return 413;
    } else {
        r->body_mode = LX_BODY_NONE;
        r->body_done = 1;
        return 0;
    }
    if ((r->h.flags & LX_REQ_EXPECT_100) && r->h.minor_version >= 1)
        r->expect_pending = 1;
    return 0;
}

/* The body cannot be read on: the connection ends after the response,
 * which answers status if the application lets the error through. */
static void body_stop(lx_req_t *r, int status)
{
    r->body_error = status;
    r->body_done = 1;
    r->resp_close = 1;
}

static int body_fail(lx_req_t *r, int status, const char *msg)
{
    body_stop(r, status);
    PyErr_SetString(r->srv->st->BodyError, msg);
    return -1;
}

/* Wait for body bytes; the first time, send the 100 Continue the client
 * waits for (after the batch's earlier responses). 0, or -1 with an
 * exception. */
static int body_wait(lx_req_t *r)
{
    if (r->expect_pending) {
        r->expect_pending = 0;
        if (!r->head_sent) {
            struct iovec iov = {(void *)continue_line,
                                sizeof(continue_line) - 1};
            if (lx_out_flush(r) < 0 ||
                lx_conn_writev(r->conn, &iov, 1, "100 Continue") < 0)
                return -1;
        }
    }
    if (lx_conn_wait(r->conn, LX_EV_READ) == 0)
        return 0;
    if (PyErr_ExceptionMatches(PyExc_TimeoutError))
        body_stop(r, 408);
    return -1;
}

/* Point *p at up to *n contiguous body bytes already buffered.
 * 1: data, 0: end of body, -1: error (exception set), LX_AGAIN: more
 * bytes are needed from the network. Consumes chunk framing. */
static int body_buffered(lx_req_t *r, const char **p, size_t *n)
{
    lx_buf_t *b = r->conn->rbuf;
    if (r->body_done)
        return 0;
    size_t avail = b ? lx_buf_avail(b) : 0;
    if (r->body_mode == LX_BODY_LENGTH) {
        if (avail == 0)
            return LX_AGAIN;
        *p = lx_buf_head(b);
        *n = avail < r->body_remaining ? avail : (size_t)r->body_remaining;
        return 1;
    }
    /* chunked */
    if (!lx_chunked_in_data(&r->chunked)) {
        size_t used = 0;
        int rc = lx_chunked_parse(&r->chunked, avail ? lx_buf_head(b) : "",
                                  avail, &used);
        if (used > 0)
            lx_buf_consume(b, used);
        if (rc == LX_CHUNKED_END) {
            r->body_done = 1;
            return 0;
        }
        if (rc == LX_ERR)
            return body_fail(r, 400, "invalid chunked request body");
        if (rc == LX_AGAIN)
            return LX_AGAIN;
        avail = lx_buf_avail(b);
    }
    if (avail == 0)
        return LX_AGAIN;
    *p = lx_buf_head(b);
    *n = avail < r->chunked.remaining ? avail : (size_t)r->chunked.remaining;
    return 1;
}

static int body_consume(lx_req_t *r, size_t n)
{
    lx_buf_consume(r->conn->rbuf, n);
    r->body_read += n;
    if (r->body_mode == LX_BODY_LENGTH) {
        r->body_remaining -= n;
        if (r->body_remaining == 0)
            r->body_done = 1;
        return 0;
    }
    lx_chunked_take(&r->chunked, n);
    if (r->srv->limit_body && r->body_read > r->srv->limit_body)
        return body_fail(r, 413, "request body larger than the limit");
    return 0;
}

/* Like body_buffered, but waits for the network. 1, 0 or -1. */
static int body_peek(lx_req_t *r, const char **p, size_t *n)
{
    for (;;) {
        int rc = body_buffered(r, p, n);
        if (rc != LX_AGAIN)
            return rc;
        Py_ssize_t got = lx_conn_recv(r->conn);
        if (got < 0 || (got == 0 && body_wait(r) < 0))
            return -1;
    }
}

int lx_body_unread_fits(lx_req_t *r)
{
    if (r->body_done || r->body_mode == LX_BODY_NONE)
        return 1;
    lx_buf_t *b = r->conn->rbuf;
    size_t avail = b ? lx_buf_avail(b) : 0;
    if (r->body_mode == LX_BODY_LENGTH)
        return r->body_remaining <= avail;
    /* Run a copy of the decoder over what is buffered. */
    lx_chunked_t d = r->chunked;
    const char *p = avail ? lx_buf_head(b) : "";
    for (;;) {
        if (lx_chunked_in_data(&d)) {
            size_t k = avail < d.remaining ? avail : (size_t)d.remaining;
            lx_chunked_take(&d, k);
            p += k;
            avail -= k;
            if (d.remaining > 0)
                return 0;
        }
        size_t used = 0;
        int rc = lx_chunked_parse(&d, p, avail, &used);
        p += used;
        avail -= used;
        if (rc == LX_CHUNKED_END)
            return 1;
        if (rc != LX_CHUNKED_DATA)
            return 0;
    }
}

int lx_body_discard(lx_req_t *r)
{
    if (!lx_body_unread_fits(r))
        return 0;
    for (;;) {
        const char *p;
        size_t n;
        int rc = body_buffered(r, &p, &n);
        if (rc == 0)
            return 1;
        if (rc != 1 || body_consume(r, n) < 0) {
            PyErr_Clear();
            return 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* reading into Python bytes */

/* Exactly n bytes of a Content-Length body into dst: 0, or -1. */
static int read_exact(lx_req_t *r, char *dst, size_t n)
{
    while (n > 0) {
        lx_buf_t *b = r->conn->rbuf;
        if ((b == NULL || lx_buf_avail(b) == 0) && n >= DIRECT_READ_MIN) {
            /* Nothing buffered and much wanted: read straight into the
             * result, no copy and far fewer calls. */
            Py_ssize_t k = lx_conn_read(r->conn, dst, n);
            if (k < 0 || (k == 0 && body_wait(r) < 0))
                return -1;
            dst += k;
            n -= (size_t)k;
            r->body_read += (uint64_t)k;
            r->body_remaining -= (uint64_t)k;
            if (r->body_remaining == 0)
                r->body_done = 1;
            continue;
        }
        const char *p;
        size_t k;
        int rc = body_peek(r, &p, &k);
        if (rc <= 0) {
            if (rc == 0) /* the body was cut off (by a failed read) */
                PyErr_SetString(r->srv->st->BodyError,
                                "the request body ended early");
            return -1;
        }
        if (k > n)
            k = n;
        memcpy(dst, p, k);
        dst += k;
        n -= k;
        (void)body_consume(r, k); /* cannot fail with a Content-Length */
    }
    return 0;
}

/* Bytes of unknown length gathered in C, then copied once into bytes. */
typedef struct {
    char *data;
    size_t len, cap;
} builder_t;

static int builder_add(builder_t *bl, const char *p, size_t n)
{
    if (bl->len + n > bl->cap) {
        size_t cap = bl->cap ? bl->cap : 256;
        while (cap < bl->len + n)
            cap *= 2;
        char *d = PyMem_Realloc(bl->data, cap);
        if (d == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        bl->data = d;
        bl->cap = cap;
    }
    memcpy(bl->data + bl->len, p, n);
    bl->len += n;
    return 0;
}

static PyObject *builder_finish(builder_t *bl, int ok)
{
    PyObject *res =
        ok ? PyBytes_FromStringAndSize(bl->data, (Py_ssize_t)bl->len) : NULL;
    PyMem_Free(bl->data);
    return res;
}

/* Up to limit bytes of the body, up to and including a newline if
 * line: short only at the end of the body. */
static PyObject *read_some(lx_req_t *r, size_t limit, int line)
{
    builder_t bl = {NULL, 0, 0};
    while (bl.len < limit) {
        const char *p;
        size_t n;
        int rc = body_peek(r, &p, &n);
        if (rc < 0)
            return builder_finish(&bl, 0);
        if (rc == 0)
            break;
        if (n > limit - bl.len)
            n = limit - bl.len;
        const char *nl = line ? memchr(p, '\n', n) : NULL;
        if (nl != NULL)
            n = (size_t)(nl - p) + 1;
        if (builder_add(&bl, p, n) < 0 || body_consume(r, n) < 0)
            return builder_finish(&bl, 0);
        if (nl != NULL)
            break;
    }
    return builder_finish(&bl, 1);
}

/* Up to want bytes (want < 0: all). Returns short only at the end. */
static PyObject *read_body(lx_req_t *r, Py_ssize_t want)
{
    size_t limit = want < 0 ? SIZE_MAX : (size_t)want;
    if (r->body_mode == LX_BODY_CHUNKED && !r->body_done)
        return read_some(r, limit, 0);
    /* A Content-Length body: what is left is known, so the bytes object
     * is made at its final size and filled in place. */
    size_t rem = r->body_done ? 0 : (size_t)r->body_remaining;
    if (limit > rem)
        limit = rem;
    PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)limit);
    if (res != NULL && read_exact(r, PyBytes_AS_STRING(res), limit) < 0)
        Py_CLEAR(res);
    return res;
}

static lx_req_t *input_req(PyObject *self)
{
    lx_req_t *r = ((InputObject *)self)->req;
    if (r == NULL || r->conn == NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "wsgi.input read after the request ended");
        return NULL;
    }
    return r;
}

static int size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *out)
{
    *out = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most one argument");
        return -1;
    }
    if (nargs == 1 && args[0] != Py_None) {
        *out = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (*out == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PyObject *input_read(PyObject *self, PyObject *const *args,
                            Py_ssize_t nargs)
{
    Py_ssize_t size;
    lx_req_t *r = input_req(self);
    if (r == NULL || size_arg(args, nargs, &size) < 0)
        return NULL;
    return read_body(r, size);
}

static PyObject *input_readline(PyObject *self, PyObject *const *args,
                                Py_ssize_t nargs)
{
    Py_ssize_t size;
    lx_req_t *r = input_req(self);
    if (r == NULL || size_arg(args, nargs, &size) < 0)
        return NULL;
    return read_some(r, size < 0 ? SIZE_MAX : (size_t)size, 1);
}

static PyObject *input_readlines(PyObject *self, PyObject *const *args,
                                 Py_ssize_t nargs)
{
    Py_ssize_t hint;
    lx_req_t *r = input_req(self);
    if (r == NULL || size_arg(args, nargs, &hint) < 0)
        return NULL;
    PyObject *lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    Py_ssize_t total = 0;
    for (;;) {
        PyObject *line = read_some(r, SIZE_MAX, 1);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(line);
        if (n == 0) {
            Py_DECREF(line);
            break;
        }
        int rc = PyList_Append(lines, line);
        Py_DECREF(line);
        if (rc < 0) {
            Py_DECREF(lines);
            return NULL;
        }
        total += n;
        if (hint > 0 && total >= hint)
            break;
    }
    return lines;
}

static PyObject *input_next(PyObject *self)
{
    lx_req_t *r = input_req(self);
    if (r == NULL)
        return NULL;
    PyObject *line = read_some(r, SIZE_MAX, 1);
    if (line != NULL && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return NULL; /* StopIteration */
    }
    return line;
}

static void input_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL,
     "read(size=-1): up to size bytes of the body; b'' at its end."},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL,
     "readline(size=-1)"},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL,
     "readlines(hint=-1)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot input_slots[] = {
    {Py_tp_methods, input_methods},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, input_next},
    {Py_tp_dealloc, input_dealloc},
    {Py_tp_doc, "wsgi.input: the request body, streamed."},
    {0, NULL},
};

PyType_Spec lx_input_spec = {
    .name = "lichen._lichen.Input",
    .basicsize = sizeof(InputObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = input_slots,
};

InputObject *lx_input_new(lx_state_t *st)
{
    InputObject *in = PyObject_New(InputObject, st->input_type);
    if (in != NULL)
        in->req = NULL;
    return in;
}

void lx_input_bind(InputObject *in, lx_req_t *r)
{
    in->req = r;
}
