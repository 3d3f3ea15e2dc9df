/* start_response, the response head, body iteration, write(),
 * wsgi.file_wrapper with sendfile, application errors, the access log. */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <structmember.h>

#define MAX_HEAD (1u << 20)
#define DEFER_MAX 65536
/* A last block up to this size is copied behind the head, which then
 * leaves with one send() rather than a sendmsg of two iovecs. */
#define SMALL_BODY 2048

struct StartResponseObject {
    PyObject_HEAD lx_req_t *req;
    vectorcallfunc vectorcall;
};

struct WriterObject {
    PyObject_HEAD lx_req_t *req;
    vectorcallfunc vectorcall;
};

typedef struct {
    PyObject_HEAD PyObject *filelike;
    Py_ssize_t blksize;
} FileWrapperObject;

/* ------------------------------------------------------------------ */
/* validation */

static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* Latin-1 bytes of a str, or NULL with TypeError/ValueError set. */
static const char *latin1(PyObject *s, Py_ssize_t *len, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what,
                     Py_TYPE(s)->tp_name);
        return NULL;
    }
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        PyErr_Format(PyExc_ValueError,
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

static int check_status(PyObject *status, int *code)
{
    Py_ssize_t n;
    const char *p = latin1(status, &n, "status");
    if (p == NULL)
        return -1;
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

/* A string's slot in a cache of strings found valid (by address). */
static PyObject **ok_slot(PyObject **cache, PyObject *s)
{
    uint32_t h = (uint32_t)((uintptr_t)s >> 4) * 2654435761u;
    return &cache[h >> (32 - LX_OK_BITS)];
}

/* Whether a header name is a token (RFC 9110 5.1). */
static int token_ok(const unsigned char *u, Py_ssize_t n)
{
    Py_ssize_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (!tchar[u[i]])
            return 0;
    return 1;
}

/* Checks one (name, value) item; sets name and value to latin-1 bytes. */
static int check_header(lx_server_t *srv, PyObject *item, const char **name,
                        Py_ssize_t *nlen, const char **value, Py_ssize_t *vlen)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "response headers must be (name, value) tuples, got %R",
                     item);
        return -1;
    }
    PyObject *k = PyTuple_GET_ITEM(item, 0), *v = PyTuple_GET_ITEM(item, 1);
    PyObject **ks = ok_slot(srv->names_ok, k),
             **vs = ok_slot(srv->values_ok, v);
    if (LX_LIKELY(*ks == k && *vs == v)) {
        /* Both found valid before: latin-1 strs, whose bytes are ready. */
        *name = (const char *)PyUnicode_1BYTE_DATA(k);
        *nlen = PyUnicode_GET_LENGTH(k);
        *value = (const char *)PyUnicode_1BYTE_DATA(v);
        *vlen = PyUnicode_GET_LENGTH(v);
        return 0;
    }
    *name = latin1(k, nlen, "header name");
    if (*name == NULL)
        return -1;
    *value = latin1(v, vlen, "header value");
    if (*value == NULL)
        return -1;
    if (*ks != k) {
        if (!token_ok((const unsigned char *)*name, *nlen)) {
            if (*nlen == 0)
                PyErr_SetString(PyExc_ValueError, "empty header name");
            else
                PyErr_Format(PyExc_ValueError, "invalid header name %R", k);
            return -1;
        }
        Py_XSETREF(*ks, Py_NewRef(k));
    }
    if (*vs != v) {
        if (check_text(*value, *vlen, "header value", v) < 0)
            return -1;
        Py_XSETREF(*vs, Py_NewRef(v));
    }
    return 0;
}

static int check_headers(lx_server_t *srv, PyObject *headers)
{
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        PyErr_Format(PyExc_TypeError,
                     "response headers must be a list, not %.100s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    Py_ssize_t i, n = PySequence_Fast_GET_SIZE(headers);
    for (i = 0; i < n; i++) {
        const char *name, *value;
        Py_ssize_t nl, vl;
        if (check_header(srv, PySequence_Fast_GET_ITEM(headers, i), &name, &nl,
                         &value, &vl) < 0)
            return -1;
    }
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
    } else if (r->status != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response called a second time without "
                        "exc_info");
        return NULL;
    }
    int code;
    lx_server_t *srv = r->srv;
    if (status == srv->status_ok) {
        code = srv->status_ok_code; /* the last status found valid */
    } else {
        if (check_status(status, &code) < 0)
            return NULL;
        Py_XSETREF(srv->status_ok, Py_NewRef(status));
        srv->status_ok_code = code;
    }
    if (check_headers(srv, headers) < 0)
        return NULL;
    Py_XSETREF(r->status, Py_NewRef(status));
    Py_XSETREF(r->headers, Py_NewRef(headers));
    r->status_code = code;
    return Py_NewRef((PyObject *)r->writer);
}

static void sr_dealloc(PyObject *self)
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
    {Py_tp_dealloc, sr_dealloc},
    {0, NULL},
};

PyType_Spec lx_start_response_spec = {
    .name = "lichen._lichen.StartResponse",
    .basicsize = sizeof(StartResponseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = sr_slots,
};

static int write_body(lx_req_t *r, const char *data, size_t len, int last);

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
    if (r == NULL || r->conn == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError,
                        "write() called after the request ended");
        return NULL;
    }
    if (r->status == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError,
                        "write() called before start_response");
        return NULL;
    }
    int rc = view.len > 0 ? write_body(r, view.buf, (size_t)view.len, 0) : 0;
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMemberDef writer_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(WriterObject, vectorcall),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, writer_members},
    {Py_tp_dealloc, sr_dealloc},
    {0, NULL},
};

PyType_Spec lx_writer_spec = {
    .name = "lichen._lichen.Writer",
    .basicsize = sizeof(WriterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = writer_slots,
};

/* ------------------------------------------------------------------ */
/* wsgi.file_wrapper */

static int fw_init(PyObject *self, PyObject *args, PyObject *kw)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    PyObject *filelike;
    Py_ssize_t blksize = 8192;
    static char *kwlist[] = {"filelike", "blksize", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:FileWrapper", kwlist,
                                     &filelike, &blksize))
        return -1;
    if (blksize <= 0) {
        PyErr_SetString(PyExc_ValueError, "blksize must be positive");
        return -1;
    }
    Py_XSETREF(fw->filelike, Py_NewRef(filelike));
    fw->blksize = blksize;
    return 0;
}

static PyObject *fw_next(PyObject *self)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    if (fw->filelike == NULL)
        return NULL;
    PyObject *data =
        PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
    if (data == NULL)
        return NULL;
    if (PyObject_Length(data) == 0) {
        Py_DECREF(data);
        if (PyErr_Occurred())
            return NULL;
        return NULL; /* StopIteration */
    }
    return data;
}

static PyObject *fw_close(PyObject *self, PyObject *unused)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    (void)unused;
    if (fw->filelike != NULL) {
        PyObject *close;
        /* (a subclass's type has no module state to hold the name) */
        close = PyObject_GetAttrString(fw->filelike, "close");
        if (close == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
        }
        if (close != NULL) {
            PyObject *res = PyObject_CallNoArgs(close);
            Py_DECREF(close);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
    }
    Py_RETURN_NONE;
}

static int fw_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((FileWrapperObject *)self)->filelike);
    return 0;
}

static int fw_clear(PyObject *self)
{
    Py_CLEAR(((FileWrapperObject *)self)->filelike);
    return 0;
}

static void fw_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fw_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef fw_methods[] = {
    {"close", fw_close, METH_NOARGS, "Close the wrapped file."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fw_slots[] = {
    {Py_tp_init, fw_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fw_next},
    {Py_tp_methods, fw_methods},
    {Py_tp_traverse, fw_traverse},
    {Py_tp_clear, fw_clear},
    {Py_tp_dealloc, fw_dealloc},
    {Py_tp_doc, "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper; "
                "real files are sent with sendfile(2)."},
    {0, NULL},
};

PyType_Spec lx_file_wrapper_spec = {
    .name = "lichen._lichen.FileWrapper",
    .basicsize = sizeof(FileWrapperObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = fw_slots,
};

/* ------------------------------------------------------------------ */
/* the head */

static int out_reserve(lx_req_t *r, size_t n)
{
    if (lx_req_unhold(r) < 0)
        return -1;
    if (r->out == NULL) {
        r->out = lx_buf_get(&r->srv->bufs);
        if (r->out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (lx_buf_reserve(&r->srv->bufs, &r->out, n, MAX_HEAD + DEFER_MAX * 2) <
        0) {
        PyErr_SetString(PyExc_ValueError, "response head too large");
        return -1;
    }
    return 0;
}

static void out_put(lx_req_t *r, const void *p, size_t n)
{
    memcpy(r->out->data + r->out->len, p, n);
    r->out->len += n;
}

#define OUT_LIT(r, s) out_put(r, s, sizeof(s) - 1)

static int name_is(const char *name, Py_ssize_t n, const char *lower)
{
    size_t len = strlen(lower);
    if ((size_t)n != len)
        return 0;
    return lx_caseeq(name, lower, len);
}

static int has_token(const char *v, Py_ssize_t n, const char *tok)
{
    size_t tl = strlen(tok);
    Py_ssize_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        Py_ssize_t s = i;
        while (i < n && v[i] != ',')
            i++;
        Py_ssize_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(v + s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

/* Length of a header name or value for the head's size estimate (what is
 * not a str fails the check that follows). */
static size_t str_len(PyObject *o)
{
    return PyUnicode_Check(o) ? (size_t)PyUnicode_GET_LENGTH(o) : 0;
}

/* Serialise the head into r->out. whole_len is the body's length when it
 * is known whole (a one-element list, an exhausted iterable), else -1. */
static int head_build(lx_req_t *r, int64_t whole_len)
{
    lx_server_t *srv = r->srv;
    if (r->status == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the application did not call start_response");
        return -1;
    }
    /* checked by start_response: a latin-1 str */
    Py_ssize_t slen = PyUnicode_GET_LENGTH(r->status);
    const char *status = (const char *)PyUnicode_1BYTE_DATA(r->status);
    PyObject *headers = r->headers;
    Py_ssize_t i, nh = PySequence_Fast_GET_SIZE(headers);
    size_t need = 64 + (size_t)slen + 256;
    for (i = 0; i < nh; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(headers, i);
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2)
            need += 4 + str_len(PyTuple_GET_ITEM(item, 0)) +
                    str_len(PyTuple_GET_ITEM(item, 1));
    }
    if (srv->server_line != NULL)
        need += (size_t)PyBytes_GET_SIZE(srv->server_line);
    if (need > MAX_HEAD) {
        PyErr_SetString(PyExc_ValueError, "response head too large");
        return -1;
    }
    if (out_reserve(r, need) < 0)
        return -1;
    size_t mark = r->out->len;
    int code = r->status_code;
    int app_date = 0, app_server = 0, app_close = 0;
    r->resp_length = -1;
    r->resp_nobody =
        (r->h.method.len == 4 && memcmp(r->h.method.base, "HEAD", 4) == 0) ||
        code < 200 || code == 204 || code == 304;
    OUT_LIT(r, "HTTP/1.1 ");
    out_put(r, status, (size_t)slen);
    OUT_LIT(r, "\r\n");
    for (i = 0; i < nh; i++) {
        const char *name, *value;
        Py_ssize_t nl, vl;
        /* The list may have changed since start_response: check again
         * while copying, so nothing can split the response. */
        if (check_header(srv, PySequence_Fast_GET_ITEM(headers, i), &name, &nl,
                         &value, &vl) < 0)
            goto error;
        switch (nl) {
        case 2:
            if (name_is(name, nl, "te"))
                continue;
            break;
        case 4:
            if (name_is(name, nl, "date"))
                app_date = 1;
            break;
        case 6:
            if (name_is(name, nl, "server"))
                app_server = 1;
            break;
        case 7:
            if (name_is(name, nl, "trailer"))
                continue;
            break;
        case 10:
            if (name_is(name, nl, "connection")) {
                if (has_token(value, vl, "close"))
                    app_close = 1;
                continue;
            }
            if (name_is(name, nl, "keep-alive"))
                continue;
            break;
        case 14:
            if (name_is(name, nl, "content-length")) {
                int64_t v = 0;
                Py_ssize_t k;
                if (vl == 0 || vl > 18 || r->resp_length >= 0)
                    goto bad_length;
                for (k = 0; k < vl; k++) {
                    if (value[k] < '0' || value[k] > '9')
                        goto bad_length;
                    v = v * 10 + (value[k] - '0');
                }
                r->resp_length = v;
            }
            break;
        case 16:
            if (name_is(name, nl, "proxy-connection"))
                continue;
            break;
        case 17:
            if (name_is(name, nl, "transfer-encoding"))
                continue; /* framing is ours to choose */
            break;
        }
        out_put(r, name, (size_t)nl);
        OUT_LIT(r, ": ");
        out_put(r, value, (size_t)vl);
        OUT_LIT(r, "\r\n");
    }
    r->resp_chunked = 0;
    if (code < 200 || code == 204 || code == 304) {
        /* no body, no framing */
    } else if (r->resp_length >= 0) {
        /* the application's */
    } else if (whole_len >= 0) {
        char num[32];
        int n = snprintf(num, sizeof(num), "Content-Length: %lld\r\n",
                         (long long)whole_len);
        out_put(r, num, (size_t)n);
        r->resp_length = whole_len;
    } else if (r->h.minor_version >= 1) {
        OUT_LIT(r, "Transfer-Encoding: chunked\r\n");
        r->resp_chunked = 1;
    } else {
        r->resp_close = 1; /* HTTP/1.0: the close delimits the body */
    }
    if (app_close || !r->keepalive || srv->stopping || !lx_body_unread_fits(r))
        r->resp_close = 1;
    if (r->resp_close)
        OUT_LIT(r, "Connection: close\r\n");
    else if (r->h.minor_version == 0)
        OUT_LIT(r, "Connection: keep-alive\r\n");
    if (!app_date) {
        size_t dl;
        const char *d = lx_server_date(srv, &dl);
        out_put(r, d, dl);
    }
    if (srv->server_line != NULL && !app_server)
        out_put(r, PyBytes_AS_STRING(srv->server_line),
                (size_t)PyBytes_GET_SIZE(srv->server_line));
    OUT_LIT(r, "\r\n");
    r->head_sent = 1;
    return 0;
bad_length:
    PyErr_SetString(PyExc_ValueError,
                    "invalid or repeated Content-Length in the response");
error:
    r->out->len = mark;
    return -1;
}

/* ------------------------------------------------------------------ */
/* the body */

int lx_req_flush(lx_req_t *r)
{
    if (lx_req_unhold(r) < 0)
        return -1;
    if (r->out == NULL || lx_buf_avail(r->out) == 0)
        return 0;
    if (r->failed) {
        r->out->len = r->out->off = 0;
        PyErr_SetString(r->srv->st->ClientDisconnected,
                        "the connection is closed");
        return -1;
    }
    struct iovec iov = {lx_buf_head(r->out), lx_buf_avail(r->out)};
    int rc = lx_conn_writev_all(r, &iov, 1);
    r->out->len = r->out->off = 0;
    return rc;
}

/* Whether the rest of the batch can wait: another request is already
 * buffered, so its response can share the next write. */
static int can_defer(lx_req_t *r, size_t more)
{
    lx_buf_t *b = r->conn->rbuf;
    return r->body_done && !r->resp_close && b != NULL &&
           lx_buf_avail(b) > 0 &&
           (r->out ? lx_buf_avail(r->out) : 0) + more < DEFER_MAX;
}

/* "<hex>\r\n" into buf (at least 20 bytes); returns its length. */
static size_t chunk_size_line(char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0, i;
    do {
        tmp[k++] = hex[len & 15];
        len >>= 4;
    } while (len);
    for (i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    buf[k] = '\r';
    buf[k + 1] = '\n';
    return k + 2;
}

static int write_body(lx_req_t *r, const char *data, size_t len, int last)
{
    if (lx_req_writable(r) < 0)
        return -1;
    if (!r->head_sent && head_build(r, last ? (int64_t)len : -1) < 0)
        return -1;
    if (r->resp_nobody)
        len = 0;
    if (r->resp_length >= 0 && r->resp_sent + len > (uint64_t)r->resp_length) {
        /* Longer than announced: send what was announced, then close. */
        len = (size_t)((uint64_t)r->resp_length - r->resp_sent);
        r->resp_close = 1;
    }
    if (last && !r->resp_chunked && len > 0 && len <= SMALL_BODY &&
        r->out != NULL && lx_buf_avail(r->out) > 0) {
        if (out_reserve(r, len) < 0)
            return -1;
        out_put(r, data, len);
        r->resp_sent += len;
        len = 0;
    }
    char chunk_head[24];
    struct iovec iov[5];
    int n = 0;
    size_t total = 0;
    if (r->out != NULL && lx_buf_avail(r->out) > 0) {
        iov[n].iov_base = lx_buf_head(r->out);
        iov[n++].iov_len = lx_buf_avail(r->out);
    }
    if (len > 0 && r->resp_chunked) {
        iov[n].iov_base = chunk_head;
        iov[n++].iov_len = chunk_size_line(chunk_head, len);
    }
    if (len > 0) {
        iov[n].iov_base = (void *)data;
        iov[n++].iov_len = len;
    }
    if (len > 0 && r->resp_chunked) {
        iov[n].iov_base = "\r\n";
        iov[n++].iov_len = 2;
    }
    if (last && r->resp_chunked) {
        iov[n].iov_base = "0\r\n\r\n";
        iov[n++].iov_len = 5;
    }
    r->resp_sent += len;
    int i;
    for (i = 0; i < n; i++)
        total += iov[i].iov_len;
    size_t have = r->out ? lx_buf_avail(r->out) : 0;
    /* Small blocks of an iterable gather up to one pooled buffer; the
     * loop in send_iterable lends them to the flusher meanwhile. */
    if ((last && can_defer(r, total)) ||
        (r->coalesce && !last && total <= r->srv->bufs.size)) {
        if (out_reserve(r, total - have) < 0)
            return -1;
        for (i = (have > 0); i < n; i++)
            out_put(r, iov[i].iov_base, iov[i].iov_len);
        return 0;
    }
    int rc = lx_conn_writev_all(r, iov, n);
    if (r->out != NULL)
        r->out->len = r->out->off = 0;
    return rc;
}

/* The iterable is exhausted: complete the framing. */
static int finish_body(lx_req_t *r)
{
    if (!r->head_sent)
        return write_body(r, NULL, 0, 1);
    if (r->resp_chunked && !r->resp_nobody) {
        if (out_reserve(r, 5) < 0)
            return -1;
        OUT_LIT(r, "0\r\n\r\n");
    }
    if (r->resp_length >= 0 && !r->resp_nobody &&
        r->resp_sent < (uint64_t)r->resp_length)
        r->resp_close = 1; /* shorter than announced: only a close tells */
    if (!can_defer(r, 0))
        return lx_req_flush(r);
    return 0;
}

/* sendfile(2) for a FileWrapper around a real file. 1 done, 0 not a real
 * file (iterate instead), -1 error. */
static int send_file(lx_req_t *r, FileWrapperObject *fw)
{
    lx_state_t *ms = r->srv->st;
    PyObject *fileno = PyObject_CallMethodNoArgs(fw->filelike, ms->s_fileno);
    if (fileno == NULL) {
        PyErr_Clear();
        return 0;
    }
    long fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd < 0) {
        PyErr_Clear();
        return 0;
    }
    struct stat st;
    if (fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    off_t pos;
    PyObject *tell = PyObject_CallMethodNoArgs(fw->filelike, ms->s_tell);
    if (tell != NULL) {
        pos = (off_t)PyLong_AsLongLong(tell);
        Py_DECREF(tell);
        if (pos == -1 && PyErr_Occurred())
            return -1;
    } else {
        PyErr_Clear();
        pos = lseek((int)fd, 0, SEEK_CUR);
        if (pos < 0)
            return 0;
    }
    int64_t size = st.st_size > pos ? (int64_t)(st.st_size - pos) : 0;
    if (!r->head_sent) {
        if (head_build(r, size) < 0)
            return -1;
    }
    if (r->resp_length >= 0 && size > r->resp_length - (int64_t)r->resp_sent)
        size = r->resp_length - (int64_t)r->resp_sent;
    if (r->resp_nobody)
        size = 0;
    if (r->resp_chunked) {
        /* Framed by chunks only when the app insisted on no length after
         * a write(): rare; let the iteration path frame it. */
        return 0;
    }
    if (lx_req_flush(r) < 0)
        return -1;
    lx_conn_t *c = r->conn;
    uint64_t left = (uint64_t)size;
    while (left > 0) {
        size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
        ssize_t n = lx_sock_sendfile(c->io.fd, (int)fd, &pos, chunk);
        if (n == 0)
            break; /* the file shrank */
        if (n > 0) {
            left -= (uint64_t)n;
            r->resp_sent += (uint64_t)n;
        }
        if (lx_conn_wrote(r, n, "a file") < 0)
            return -1;
    }
    /* Keep Python's view of the position in step with what was sent. */
    PyObject *at = PyLong_FromLongLong((long long)pos);
    PyObject *res =
        at ? PyObject_CallMethodOneArg(fw->filelike, ms->s_seek, at) : NULL;
    Py_XDECREF(at);
    if (res == NULL)
        PyErr_Clear();
    else
        Py_DECREF(res);
    return 1;
}

static int send_item(lx_req_t *r, PyObject *item, int last)
{
    if (PyByteArray_Check(item)) {
        /* Not bytes as PEP 3333 asks, but unambiguous: sent as a copy,
         * since the application could resize it while we wait. */
        PyObject *copy = PyBytes_FromObject(item);
        if (copy == NULL)
            return -1;
        int rc = send_item(r, copy, last);
        Py_DECREF(copy);
        return rc;
    }
    if (!PyBytes_Check(item)) {
        PyErr_Format(PyExc_TypeError,
                     "the application must yield bytes, not %.100s",
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(item);
    if (n == 0 && !last)
        return 0; /* nothing to send: the head waits for real data */
    return write_body(r, PyBytes_AS_STRING(item), (size_t)n, last);
}

/* A list or tuple of bytes: the length is announced and the head and
 * every item leave in one writev (or join the batch's deferred output). */
static int send_whole_list(lx_req_t *r, PyObject *seq, int64_t total)
{
    Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq);
    if (head_build(r, total) < 0)
        return -1;
    uint64_t room = r->resp_nobody        ? 0
                    : r->resp_length >= 0 ? (uint64_t)r->resp_length
                                          : UINT64_MAX;
    struct iovec small[17], *iov = small;
    PyObject *held[16], **items = held;
    if (n > 16) {
        iov = PyMem_Malloc(sizeof(*iov) * (size_t)(n + 1));
        items = PyMem_Malloc(sizeof(*items) * (size_t)n);
        if (iov == NULL || items == NULL) {
            PyMem_Free(iov == small ? NULL : iov);
            PyMem_Free(items == held ? NULL : items);
            PyErr_NoMemory();
            return -1;
        }
    }
    int k = 0;
    size_t sum = 0;
    iov[k].iov_base = lx_buf_head(r->out);
    iov[k++].iov_len = lx_buf_avail(r->out);
    sum += lx_buf_avail(r->out);
    for (i = 0; i < n; i++) {
        /* Held: another request could change a shared list meanwhile. */
        items[i] = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        size_t len = (size_t)PyBytes_GET_SIZE(items[i]);
        if (len > room - r->resp_sent) {
            len = (size_t)(room - r->resp_sent);
            if (!r->resp_nobody)
                r->resp_close = 1; /* longer than its Content-Length */
        }
        r->resp_sent += len;
        if (len == 0)
            continue;
        iov[k].iov_base = PyBytes_AS_STRING(items[i]);
        iov[k++].iov_len = len;
        sum += len;
    }
    if (r->resp_length >= 0 && !r->resp_nobody &&
        r->resp_sent < (uint64_t)r->resp_length)
        r->resp_close = 1; /* shorter than announced: only a close tells */
    int rc = 0;
    size_t have = lx_buf_avail(r->out);
    int defer = can_defer(r, sum - have);
    if (defer || sum - have <= SMALL_BODY) {
        rc = out_reserve(r, sum - have);
        for (i = 1; rc == 0 && i < k; i++)
            out_put(r, iov[i].iov_base, iov[i].iov_len);
        if (rc == 0 && !defer)
            rc = lx_req_flush(r);
    } else {
        rc = lx_conn_writev_all(r, iov, k);
        if (r->out != NULL)
            r->out->len = r->out->off = 0;
    }
    for (i = 0; i < n; i++)
        Py_DECREF(items[i]);
    if (iov != small)
        PyMem_Free(iov);
    if (items != held)
        PyMem_Free(items);
    return rc;
}

static int send_iterable(lx_req_t *r, PyObject *result)
{
    lx_state_t *st = r->srv->st;
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        Py_ssize_t i, n = PySequence_Fast_GET_SIZE(result);
        if (n > 1 && !r->head_sent) {
            /* The whole body is known: announce its length. */
            int64_t total = 0;
            for (i = 0; i < n; i++) {
                PyObject *item = PySequence_Fast_GET_ITEM(result, i);
                if (!PyBytes_Check(item))
                    break;
                total += PyBytes_GET_SIZE(item);
            }
            if (i == n)
                return send_whole_list(r, result, total);
        }
        for (i = 0; i < n; i++) {
            PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(result, i));
            int rc = send_item(r, item, i == n - 1);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
            /* The list may shrink while we wait on the socket. */
            n = PySequence_Fast_GET_SIZE(result);
        }
        if (n == 0 || !r->head_sent)
            return finish_body(r);
        if (r->resp_length >= 0 && !r->resp_nobody &&
            r->resp_sent < (uint64_t)r->resp_length)
            r->resp_close = 1;
        if (!can_defer(r, 0))
            return lx_req_flush(r);
        return 0;
    }
    if (Py_IS_TYPE(result, st->file_wrapper_type)) {
        int rc = send_file(r, (FileWrapperObject *)result);
        if (rc < 0)
            return -1;
        if (rc > 0)
            return finish_body(r);
    }
    PyObject *it = PyObject_GetIter(result);
    if (it == NULL)
        return -1;
    for (;;) {
        /* What gathered so far keeps moving while the application makes
         * the next block (PEP 3333: no delaying a block). */
        if (lx_req_lend(r) < 0)
            break;
        PyObject *item = PyIter_Next(it);
        lx_req_take_back(r);
        if (item == NULL)
            break;
        r->coalesce = 1;
        int rc = send_item(r, item, 0);
        r->coalesce = 0;
        Py_DECREF(item);
        if (rc < 0)
            break;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return finish_body(r);
}

/* ------------------------------------------------------------------ */
/* errors */

/* A small response of our own (500, 400, 413) after an error; it follows
 * whatever earlier pipelined responses wait in r->out. */
static int send_simple(lx_req_t *r, int status)
{
    char buf[LX_ERROR_RESPONSE_MAX];
    size_t body;
    size_t n = lx_error_response(r->srv, status, buf, sizeof(buf), &body);
    r->resp_close = 1;
    r->head_sent = 1;
    r->status_code = status;
    r->resp_sent = body;
    if (out_reserve(r, n) < 0)
        return -1;
    out_put(r, buf, n);
    return lx_req_flush(r);
}

static void log_request_error(lx_req_t *r, PyObject *exc)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "Error handling request %.*s %.*s",
             (int)(r->h.method.len > 32 ? 32 : r->h.method.len),
             r->h.method.base ? r->h.method.base : "",
             (int)(r->h.target.len > 200 ? 200 : r->h.target.len),
             r->h.target.base ? r->h.target.base : "");
    lx_server_log(r->srv, 40, msg, exc);
}

/* The exception set now ended the request. */
static void request_error(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    PyObject *exc = lx_err_get();
    if (exc == NULL)
        return;
    if (r->failed ||
        PyErr_GivenExceptionMatches(exc, srv->st->ClientDisconnected)) {
        /* The client is gone (or timed out): nothing to answer. */
        r->failed = 1;
        lx_server_log(srv, 10, "client went away", NULL);
        Py_DECREF(exc);
        return;
    }
    if (!PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        /* KeyboardInterrupt, SystemExit, GreenletExit: the loop's business,
         * raised again from it. */
        r->failed = 1;
        if (lx_green_is_exit(exc) || srv->pending_exc != NULL)
            Py_DECREF(exc);
        else
            srv->pending_exc = exc;
        return;
    }
    int status = 500;
    if (r->body_error && PyErr_GivenExceptionMatches(exc, srv->st->BodyError))
        status = r->body_error;
    else
        log_request_error(r, exc);
    Py_DECREF(exc);
    if (r->head_sent) {
        /* Mid-response: what the application gave still goes out (it may
         * have gathered in r->out), then only a close can tell. */
        if (lx_req_flush(r) < 0)
            PyErr_Clear();
        r->failed = 1;
        return;
    }
    /* r->out holds only earlier pipelined responses (this one's head was
     * never built): they go first, then the error. */
    if (send_simple(r, status) < 0) {
        PyErr_Clear();
        r->failed = 1;
    }
}

/* Lend r->out while the application runs; a connection that breaks on
 * the way only marks the request failed. */
static void lend_quietly(lx_req_t *r)
{
    if (lx_req_lend(r) < 0) {
        PyErr_Clear();
        r->failed = 1;
    }
}

static void call_close(lx_req_t *r, PyObject *result)
{
    PyObject *close;
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result) ||
        PyBytes_CheckExact(result))
        return;
    if (lx_getattr_opt(result, r->srv->st->s_close, &close) < 0) {
        request_error(r);
        return;
    }
    if (close == NULL)
        return;
    lend_quietly(r);
    PyObject *res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    lx_req_take_back(r);
    if (res == NULL)
        request_error(r);
    else
        Py_DECREF(res);
}

/* ------------------------------------------------------------------ */
/* access log */

static void alog_put(lx_server_t *srv, const char *p, size_t n)
{
    if (srv->alog_len + n > srv->alog_cap) {
        size_t cap = srv->alog_cap ? srv->alog_cap : 65536;
        while (cap < srv->alog_len + n)
            cap *= 2;
        char *np = PyMem_Realloc(srv->alog, cap);
        if (np == NULL)
            return;
        srv->alog = np;
        srv->alog_cap = cap;
    }
    memcpy(srv->alog + srv->alog_len, p, n);
    srv->alog_len += n;
}

/* A str from the environ, escaped for a quoted log field. */
static void alog_field(lx_server_t *srv, PyObject *env, PyObject *key,
                       const char *dflt)
{
    PyObject *v = key ? PyDict_GetItemWithError(env, key) : NULL;
    const char *p = dflt;
    Py_ssize_t n = (Py_ssize_t)strlen(dflt);
    if (v != NULL && PyUnicode_Check(v) &&
        PyUnicode_KIND(v) == PyUnicode_1BYTE_KIND) {
        p = (const char *)PyUnicode_1BYTE_DATA(v);
        n = PyUnicode_GET_LENGTH(v);
    }
    PyErr_Clear();
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            alog_put(srv, e, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            char e[5];
            snprintf(e, sizeof(e), "\\x%02x", ch);
            alog_put(srv, e, 4);
        } else {
            alog_put(srv, (const char *)&p[i], 1);
        }
    }
}

static void access_log(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_state_t *st = srv->st;
    PyObject *env = r->environ;
    if (env == NULL)
        return;
    char tbuf[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    alog_field(srv, env, st->k_REMOTE_ADDR, "-");
    alog_put(srv, " - - ", 5);
    alog_put(srv, tbuf, strlen(tbuf));
    alog_put(srv, " \"", 2);
    alog_field(srv, env, st->k_REQUEST_METHOD, "-");
    alog_put(srv, " ", 1);
    alog_field(srv, env, st->k_RAW_URI, "-");
    alog_put(srv, " ", 1);
    alog_field(srv, env, st->k_SERVER_PROTOCOL, "-");
    char num[96];
    int n;
    if (r->resp_sent)
        n = snprintf(num, sizeof(num), "\" %d %llu \"", r->status_code,
                     (unsigned long long)r->resp_sent);
    else
        n = snprintf(num, sizeof(num), "\" %d - \"", r->status_code);
    alog_put(srv, num, (size_t)n);
    alog_field(srv, env, st->k_HTTP_REFERER, "-");
    alog_put(srv, "\" \"", 3);
    alog_field(srv, env, st->k_HTTP_USER_AGENT, "-");
    uint64_t us = lx_now_us() - r->t_start;
    n = snprintf(num, sizeof(num), "\" %llu.%06llu\n",
                 (unsigned long long)(us / 1000000),
                 (unsigned long long)(us % 1000000));
    alog_put(srv, num, (size_t)n);
    if (srv->alog_len >= 65536)
        lx_server_alog_flush(srv); /* else at the end of the loop's turn */
}

/* ------------------------------------------------------------------ */
/* one request */

static int ensure_objects(lx_req_t *r)
{
    lx_state_t *st = r->srv->st;
    if (r->input == NULL) {
        r->input = lx_input_new(st);
        if (r->input == NULL)
            return -1;
    }
    if (r->sr == NULL) {
        r->sr = PyObject_New(StartResponseObject, st->start_response_type);
        if (r->sr == NULL)
            return -1;
        r->sr->req = NULL;
        r->sr->vectorcall = sr_vectorcall;
    }
    if (r->writer == NULL) {
        r->writer = PyObject_New(WriterObject, st->writer_type);
        if (r->writer == NULL)
            return -1;
        r->writer->req = NULL;
        r->writer->vectorcall = writer_vectorcall;
    }
    lx_input_attach(r->input, r);
    r->sr->req = r;
    r->writer->req = r;
    return 0;
}

/* Objects the application kept past the request are cut loose; the others
 * serve the next request. */
static void recycle_objects(lx_req_t *r)
{
    if (r->input != NULL) {
        lx_input_detach(r->input);
        if (Py_REFCNT(r->input) > 1)
            Py_CLEAR(r->input);
    }
    if (r->sr != NULL) {
        r->sr->req = NULL;
        if (Py_REFCNT(r->sr) > 1)
            Py_CLEAR(r->sr);
    }
    if (r->writer != NULL) {
        r->writer->req = NULL;
        if (Py_REFCNT(r->writer) > 1)
            Py_CLEAR(r->writer);
    }
}

void lx_req_release(lx_req_t *r)
{
    recycle_objects(r);
    Py_CLEAR(r->input);
    Py_CLEAR(r->sr);
    Py_CLEAR(r->writer);
    Py_CLEAR(r->environ);
    Py_CLEAR(r->status);
    Py_CLEAR(r->headers);
    (void)lx_flush_release(&r->held);
    if (r->out != NULL) {
        lx_buf_put(&r->srv->bufs, r->out);
        r->out = NULL;
    }
}

int lx_request_handle(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    r->t_start = srv->access_fd >= 0 ? lx_now_us() : 0;
    r->head_sent = r->resp_chunked = r->resp_close = r->resp_nobody = 0;
    r->failed = 0;
    r->status_code = 0;
    r->resp_length = -1;
    r->resp_sent = 0;
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
        if (srv->limit_body && r->body_remaining > srv->limit_body) {
            if (lx_req_flush(r) < 0) {
                PyErr_Clear();
                return 0;
            }
            lx_conn_reject(c, 413);
            return -1;
        }
    } else {
        r->body_mode = LX_BODY_NONE;
        r->body_done = 1;
    }
    if (!r->body_done && (r->h.flags & LX_REQ_EXPECT_100) &&
        r->h.minor_version >= 1)
        r->expect_pending = 1;
    r->keepalive = (r->h.flags & LX_REQ_KEEPALIVE) && srv->keepalive_ms > 0;

    if (ensure_objects(r) < 0) {
        lx_server_log(srv, 40, "out of memory", NULL);
        PyErr_Clear();
        return 0;
    }
    r->environ = lx_environ_build(r);
    lx_buf_consume(c->rbuf, r->head_len);
    if (r->environ == NULL) {
        request_error(r);
    } else {
        PyObject *args[2] = {r->environ, (PyObject *)r->sr};
        /* Responses deferred for the batch keep moving meanwhile. */
        lend_quietly(r);
        PyObject *result = PyObject_Vectorcall(srv->app, args, 2, NULL);
        lx_req_take_back(r);
        if (result == NULL) {
            request_error(r);
        } else {
            if (send_iterable(r, result) < 0)
                request_error(r);
            call_close(r, result);
            Py_DECREF(result);
        }
    }
    if (!r->head_sent && !r->failed) {
        /* The close() above failed before anything was sent. */
        if (send_simple(r, 500) < 0) {
            PyErr_Clear();
            r->failed = 1;
        }
    }
    int keep =
        !r->failed && !r->resp_close && r->keepalive && lx_body_discard(r);
    if (srv->access_fd >= 0)
        access_log(r);
    /* The environ first: it holds wsgi.input, which can then serve the
     * next request unless the application kept it. */
    Py_CLEAR(r->environ);
    recycle_objects(r);
    Py_CLEAR(r->status);
    Py_CLEAR(r->headers);
    return keep;
}
