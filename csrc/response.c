/* The response's head: start_response and write(), the checks of status
 * and headers, and the head's bytes with the framing chosen. */
#include "response.h"

#include <string.h>

#include <structmember.h>

#include "conn.h"
#include "input.h"
#include "output.h"

#define MAX_HEAD (1u << 20)

struct StartResponseObject {
    PyObject_HEAD lx_req_t *req;
    vectorcallfunc vectorcall;
};

struct WriterObject {
    PyObject_HEAD lx_req_t *req;
    vectorcallfunc vectorcall;
};

/* ------------------------------------------------------------------ */
/* checks */

/* Latin-1 bytes of a str, or NULL with TypeError or UnicodeError (a
 * ValueError, as gevent.pywsgi raises it) set. */
static const char *latin1(PyObject *s, Py_ssize_t *len, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what,
                     Py_TYPE(s)->tp_name);
        return NULL;
    }
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        PyErr_Format(PyExc_UnicodeError,
                     "%s must be latin-1 (non-latin-1 characters in %R)", what,
                     s);
        return NULL;
    }
    *len = PyUnicode_GET_LENGTH(s);
    return (const char *)PyUnicode_1BYTE_DATA(s);
}

/* Field values and status reasons: no CR, LF, NUL or other controls
 * (HTAB allowed): they would split the response. Eight bytes at a time;
 * a word with a control character (a HTAB, most likely) is looked at byte
 * by byte. */
static int text_ok(const unsigned char *u, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, u + i, 8);
        if (LX_UNLIKELY(LX_HAS_LESS(x, 0x20) | LX_HAS_BYTE(x, 0x7f)))
            break;
    }
    for (; i < n; i++)
        if ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7f)
            return 0;
    return 1;
}

static int check_text(const char *p, Py_ssize_t n, const char *what,
                      PyObject *obj)
{
    if (LX_LIKELY(text_ok((const unsigned char *)p, (size_t)n)))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s contains a control character: %R", what,
                 obj);
    return -1;
}

static int check_status(PyObject *status, const char *p, Py_ssize_t n,
                        int *code)
{
    if (n < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9' || (n > 3 && p[3] != ' ')) {
        PyErr_Format(PyExc_ValueError,
                     "status must be a 3-digit code and a reason, got %R",
                     status);
        return -1;
    }
    if (check_text(p, n, "status", status) < 0)
        return -1;
    *code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    return 0;
}

/* Length of a header name or value for the size estimate (what is not a
 * str fails the check that follows). */
static size_t str_len(PyObject *o)
{
    return PyUnicode_Check(o) ? (size_t)PyUnicode_GET_LENGTH(o) : 0;
}

/* What a field the application set means to the framing: 0 to send it
 * as it is, 1 to leave it out (ours to choose), -1 for a bad value (a
 * ValueError set). */
static int field_meaning(lx_req_t *r, const char *name, Py_ssize_t nl,
                         const char *value, Py_ssize_t vl)
{
    switch (nl) {
    case 2:
        return LX_CASEEQ_LIT(name, nl, "te");
    case 4:
        if (LX_CASEEQ_LIT(name, nl, "date"))
            r->app_date = 1;
        return 0;
    case 6:
        if (LX_CASEEQ_LIT(name, nl, "server"))
            r->app_server = 1;
        return 0;
    case 7:
        return LX_CASEEQ_LIT(name, nl, "trailer");
    case 10:
        if (LX_CASEEQ_LIT(name, nl, "connection")) {
            if (lx_http1_list_has(value, (size_t)vl, "close", 5))
                r->app_close = 1;
            return 1;
        }
        return LX_CASEEQ_LIT(name, nl, "keep-alive");
    case 14:
        if (LX_CASEEQ_LIT(name, nl, "content-length")) {
            int64_t v = 0;
            Py_ssize_t k;
            if (vl == 0 || vl > 18 || r->app_length >= 0)
                goto bad_length;
            for (k = 0; k < vl; k++) {
                if (value[k] < '0' || value[k] > '9')
                    goto bad_length;
                v = v * 10 + (value[k] - '0');
            }
            r->app_length = v;
        }
        return 0;
    case 16:
        return LX_CASEEQ_LIT(name, nl, "proxy-connection");
    case 17:
        return LX_CASEEQ_LIT(name, nl, "transfer-encoding");
    }
    return 0;
bad_length:
    PyErr_SetString(PyExc_ValueError,
                    "invalid or repeated Content-Length in the response");
    return -1;
}

/* Strs found valid, as names or as values, by address: an application
 * gives the same few objects again and again. Held, so that an address
 * cannot come back as another str. */
static PyObject **valid_slot(PyObject **cache, PyObject *s)
{
    uint32_t h = (uint32_t)((uintptr_t)s >> 4) * 2654435761u;
    return &cache[h >> (32 - LX_VALID_BITS)];
}

void lx_response_forget(lx_server_t *srv)
{
    for (int i = 0; i < (1 << LX_VALID_BITS); i++) {
        Py_CLEAR(srv->valid_names[i]);
        Py_CLEAR(srv->valid_values[i]);
    }
    Py_CLEAR(srv->valid_status);
}

/* Check one (name, value) item and write it into r->fields (room made),
 * unless the framing is ours: 0, or -1 with an exception. */
static int put_field(lx_req_t *r, PyObject *item)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "response headers must be (name, value) tuples, got %R",
                     item);
        return -1;
    }
    PyObject *k = PyTuple_GET_ITEM(item, 0), *v = PyTuple_GET_ITEM(item, 1);
    const char *name, *value;
    Py_ssize_t nl, vl;
    PyObject **kslot = valid_slot(r->srv->valid_names, k);
    PyObject **vslot = valid_slot(r->srv->valid_values, v);
    if (*kslot == k) {
        name = (const char *)PyUnicode_1BYTE_DATA(k);
        nl = PyUnicode_GET_LENGTH(k);
    } else {
        if ((name = latin1(k, &nl, "header name")) == NULL)
            return -1;
        if (!lx_http1_is_token(name, (size_t)nl)) {
            if (nl == 0)
                PyErr_SetString(PyExc_ValueError, "empty header name");
            else
                PyErr_Format(PyExc_ValueError, "invalid header name %R", k);
            return -1;
        }
        Py_XSETREF(*kslot, Py_NewRef(k));
    }
    if (*vslot == v) {
        value = (const char *)PyUnicode_1BYTE_DATA(v);
        vl = PyUnicode_GET_LENGTH(v);
    } else {
        if ((value = latin1(v, &vl, "header value")) == NULL ||
            check_text(value, vl, "header value", v) < 0)
            return -1;
        Py_XSETREF(*vslot, Py_NewRef(v));
    }
    int skip = field_meaning(r, name, nl, value, vl);
    if (skip)
        return skip < 0 ? -1 : 0;
    lx_buf_t *f = r->fields;
    memcpy(f->data + f->len, name, (size_t)nl);
    f->len += (size_t)nl;
    memcpy(f->data + f->len, ": ", 2);
    memcpy(f->data + f->len + 2, value, (size_t)vl);
    f->len += (size_t)vl + 2;
    memcpy(f->data + f->len, "\r\n", 2);
    f->len += 2;
    return 0;
}

/* The status line and fields into r->fields, checked, once: the list may
 * change afterwards, the response stays as it was given (PEP 3333 lets
 * the server take the headers at this call). 0, or -1 with an exception
 * (r->fields then empty). */
static int put_head_fields(lx_req_t *r, PyObject *status, PyObject *headers)
{
    lx_server_t *srv = r->srv;
    Py_ssize_t slen, i, n;
    int code;
    const char *st;
    if (status == srv->valid_status) {
        st = (const char *)PyUnicode_1BYTE_DATA(status);
        slen = PyUnicode_GET_LENGTH(status);
        code = srv->valid_code;
    } else {
        st = latin1(status, &slen, "status");
        if (st == NULL || check_status(status, st, slen, &code) < 0)
            return -1;
        Py_XSETREF(srv->valid_status, Py_NewRef(status));
        srv->valid_code = code;
    }
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        PyErr_Format(PyExc_TypeError,
                     "response headers must be a list, not %.100s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(headers);
    size_t need = 16 + (size_t)slen;
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(headers, i);
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2)
            need += 4 + str_len(PyTuple_GET_ITEM(item, 0)) +
                    str_len(PyTuple_GET_ITEM(item, 1));
    }
    if (need > MAX_HEAD) {
        PyErr_SetString(PyExc_ValueError, "response head too large");
        return -1;
    }
    if (r->fields == NULL && (r->fields = lx_buf_get(&srv->bufs)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->fields->len = r->fields->off = 0;
    if (lx_buf_reserve(&srv->bufs, &r->fields, need, MAX_HEAD) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    lx_buf_t *f = r->fields;
    memcpy(f->data, "HTTP/1.1 ", 9);
    memcpy(f->data + 9, st, (size_t)slen);
    memcpy(f->data + 9 + slen, "\r\n", 2);
    f->len = 11 + (size_t)slen;
    r->app_length = -1;
    r->app_date = r->app_server = r->app_close = 0;
    for (i = 0; i < n; i++)
        if (put_field(r, PySequence_Fast_GET_ITEM(headers, i)) < 0) {
            f->len = 0;
            r->status_code = 0;
            return -1;
        }
    r->status_code = code;
    return 0;
}

/* ------------------------------------------------------------------ */
/* start_response and write */

/* Arguments by position or by name, without building a tuple: this is
 * called once per request. */
static int vc_args(const char *fname, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames, const char *const *names, int nmin,
                   int nmax, PyObject **out)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf), i, k;
    if (n > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fname,
                     nmax);
        return -1;
    }
    for (i = 0; i < nmax; i++)
        out[i] = i < n ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        for (i = 0; i < nmax; i++)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                break;
        if (i == nmax || out[i] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected or repeated argument %R",
                         fname, key);
            return -1;
        }
        out[i] = args[n + k];
    }
    for (i = 0; i < nmin; i++)
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing argument '%s'", fname,
                         names[i]);
            return -1;
        }
    return 0;
}

static PyObject *sr_vectorcall(PyObject *self, PyObject *const *vargs,
                               size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"status", "headers", "exc_info"};
    lx_req_t *r = ((StartResponseObject *)self)->req;
    PyObject *a[3];
    if (vc_args("start_response", vargs, nargsf, kwnames, names, 2, 3, a) < 0)
        return NULL;
    PyObject *status = a[0], *headers = a[1];
    PyObject *exc_info = a[2] ? a[2] : Py_None;
    if (r == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called after the request ended");
        return NULL;
    }
    if (r->ws != NULL && r->head_sent) {
        /* A websocket's 101 went (or its socket was taken over): what a
         * framework answers after its view has no place on the wire. */
        return Py_NewRef((PyObject *)r->writer);
    }
    if (exc_info != Py_None) {
        if (r->head_sent) {
            /* Too late to change the response: re-raise, as PEP 3333
             * says, and the connection is closed. */
            PyObject *t, *v, *tb;
            if (!PyArg_ParseTuple(exc_info, "OOO:exc_info", &t, &v, &tb))
                return NULL;
            PyErr_Restore(Py_NewRef(t), Py_NewRef(v),
                          tb == Py_None ? NULL : Py_NewRef(tb));
            return NULL;
        }
    } else if (r->status_code != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called a second time without "
                        "exc_info");
        return NULL;
    }
    if (put_head_fields(r, status, headers) < 0)
        return NULL;
    return Py_NewRef((PyObject *)r->writer);
}

static PyObject *writer_vectorcall(PyObject *self, PyObject *const *vargs,
                                   size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"data"};
    lx_req_t *r = ((WriterObject *)self)->req;
    PyObject *a[1];
    Py_buffer view;
    if (vc_args("write", vargs, nargsf, kwnames, names, 1, 1, a) < 0)
        return NULL;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = -1;
    if (r == NULL || r->conn == NULL)
        PyErr_SetString(PyExc_RuntimeError,
                        "write() called after the request ended");
    else if (r->status_code == 0)
        PyErr_SetString(PyExc_RuntimeError,
                        "write() called before start_response");
    else if (r->ws != NULL && r->head_sent)
        rc = 0; /* after a websocket's 101: dropped */
    else
        rc = view.len > 0 ? lx_response_block(r, view.buf, (size_t)view.len, 0)
                          : 0;
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void callable_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef sr_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET,
     offsetof(StartResponseObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot sr_slots[] = {
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, sr_members},
    {Py_tp_dealloc, callable_dealloc},
    {0, NULL},
};

PyType_Spec lx_start_response_spec = {
    .name = "lichen._lichen.StartResponse",
    .basicsize = sizeof(StartResponseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = sr_slots,
};

static PyMemberDef writer_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(WriterObject, vectorcall),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, writer_members},
    {Py_tp_dealloc, callable_dealloc},
    {0, NULL},
};

PyType_Spec lx_writer_spec = {
    .name = "lichen._lichen.Writer",
    .basicsize = sizeof(WriterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = writer_slots,
};

StartResponseObject *lx_start_response_new(lx_state_t *st)
{
    StartResponseObject *sr =
        PyObject_New(StartResponseObject, st->start_response_type);
    if (sr != NULL) {
        sr->req = NULL;
        sr->vectorcall = sr_vectorcall;
    }
    return sr;
}

WriterObject *lx_writer_new(lx_state_t *st)
{
    WriterObject *w = PyObject_New(WriterObject, st->writer_type);
    if (w != NULL) {
        w->req = NULL;
        w->vectorcall = writer_vectorcall;
    }
    return w;
}

void lx_start_response_bind(StartResponseObject *sr, lx_req_t *r)
{
    sr->req = r;
}

void lx_writer_bind(WriterObject *w, lx_req_t *r)
{
    w->req = r;
}

/* ------------------------------------------------------------------ */
/* the head */

int lx_response_begin(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    r->t_start = srv->alog_on ? lx_now_us() : 0;
    r->head_method =
        r->h.method.len == 4 && memcmp(r->h.method.base, "HEAD", 4) == 0;
    r->head_sent = r->resp_chunked = r->resp_close = r->resp_nobody = 0;
    r->status_code = 0;
    r->resp_length = -1;
    r->resp_sent = 0;
    int refuse = lx_body_start(r);
    if (refuse) {
        /* Earlier responses of the batch go first. */
        if (lx_out_flush(r) < 0) {
            PyErr_Clear();
            return 0;
        }
        lx_conn_reject(r->conn, refuse);
        return -1;
    }
    r->keepalive = (r->h.flags & LX_REQ_KEEPALIVE) && srv->keepalive_ms > 0;
    return 1;
}

int lx_response_head(lx_req_t *r, int64_t whole_len)
{
    lx_server_t *srv = r->srv;
    if (r->status_code == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the application did not call start_response");
        return -1;
    }
    size_t fl = lx_buf_avail(r->fields);
    size_t need = fl + 160;
    if (srv->server_line != NULL)
        need += (size_t)PyBytes_GET_SIZE(srv->server_line);
    if (lx_out_reserve(r, need) < 0)
        return -1;
    int code = r->status_code;
    r->resp_nobody =
        r->head_method || code < 200 || code == 204 || code == 304;
    lx_out_put(r, lx_buf_head(r->fields), fl);
    r->resp_length = r->app_length;
    r->resp_chunked = 0;
    if (code < 200 || code == 204 || code == 304) {
        /* no body, no framing */
    } else if (r->resp_length >= 0) {
        /* the application's */
    } else if (whole_len >= 0) {
        char num[32];
        int n = snprintf(num, sizeof(num), "Content-Length: %lld\r\n",
                         (long long)whole_len);
        lx_out_put(r, num, (size_t)n);
        r->resp_length = whole_len;
    } else if (r->h.minor_version >= 1) {
        LX_OUT_LIT(r, "Transfer-Encoding: chunked\r\n");
        r->resp_chunked = 1;
    } else {
        r->resp_close = 1; /* HTTP/1.0: the close delimits the body */
    }
    if (r->app_close || !r->keepalive || srv->stopping ||
        !lx_body_unread_fits(r))
        r->resp_close = 1;
    if (r->resp_close)
        LX_OUT_LIT(r, "Connection: close\r\n");
    else if (r->h.minor_version == 0)
        LX_OUT_LIT(r, "Connection: keep-alive\r\n");
    if (!r->app_date) {
        size_t dl;
        const char *d = lx_date_line(&dl);
        lx_out_put(r, d, dl);
    }
    if (srv->server_line != NULL && !r->app_server)
        lx_out_put(r, PyBytes_AS_STRING(srv->server_line),
                   (size_t)PyBytes_GET_SIZE(srv->server_line));
    LX_OUT_LIT(r, "\r\n");
    r->head_sent = 1;
    return 0;
}

int lx_response_block(lx_req_t *r, const char *data, size_t len, int last)
{
    if (!r->head_sent && lx_response_head(r, last ? (int64_t)len : -1) < 0)
        return -1;
    return lx_out_body(r, data, len, last);
}
