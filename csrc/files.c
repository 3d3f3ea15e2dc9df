/* Static files: a request under a static prefix answered by the engine.
 * static.c decides the status and the fields; this file frames them as
 * the application's responses are framed (response.c), sends the body
 * (a small file copied behind the head, a larger one by sendfile), and
 * writes the access log line from the request itself. */
#define _GNU_SOURCE
#include "files.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "environ.h"
#include "input.h"
#include "log.h"
#include "output.h"
#include "response.h"

/* Files up to this size are read behind the head (one send, and a
 * pipelined batch stays one write); larger ones go by sendfile. */
#define READ_MAX 16384
#define HEAD_MAX (1u << 20)

long lx_files_live(void)
{
    return lx_fcache_live();
}

/* ------------------------------------------------------------------ */
/* configuration */

static int utf8_arg(PyObject *o, const char **out)
{
    *out = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
    if (*out == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "lichen: static: expected a str");
    return *out ? 0 : -1;
}

static PyObject *spec_get(PyObject *spec, const char *key)
{
    PyObject *v = PyDict_GetItemString(spec, key); /* borrowed */
    return v == Py_None ? NULL : v;
}

static int pairs(PyObject *list, lx_static_t *s,
                 int (*add)(lx_static_t *, const char *, const char *),
                 const char *what)
{
    PyObject *seq = PySequence_Fast(list, what);
    if (seq == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *a, *b;
        const char *x, *y;
        if (!PyArg_ParseTuple(item, "OO", &a, &b) || utf8_arg(a, &x) < 0 ||
            utf8_arg(b, &y) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (add(s, x, y) < 0) {
            if (errno == ENOMEM)
                PyErr_NoMemory();
            else
                PyErr_SetFromErrnoWithFilename(PyExc_OSError, y);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static int configure(lx_static_t *s, PyObject *spec)
{
    PyObject *v;
    if ((v = spec_get(spec, "mounts")) != NULL &&
        pairs(v, s, lx_static_mount, "static mounts") < 0)
        return -1;
    if ((v = spec_get(spec, "types")) != NULL &&
        pairs(v, s, lx_static_add_type, "static types") < 0)
        return -1;
    if ((v = spec_get(spec, "max_age")) != NULL) {
        long long age = PyLong_AsLongLong(v);
        if (age == -1 && PyErr_Occurred())
            return -1;
        s->max_age = age < 0 ? -1 : age;
    }
    const char *text;
    if ((v = spec_get(spec, "immutable")) != NULL) {
        char err[256];
        if (utf8_arg(v, &text) < 0)
            return -1;
        if (lx_static_set_immutable(s, text, err, sizeof(err)) < 0) {
            PyErr_Format(PyExc_ValueError, "lichen: static immutable: %s",
                         err);
            return -1;
        }
    }
    if ((v = spec_get(spec, "index")) != NULL) {
        if (utf8_arg(v, &text) < 0)
            return -1;
        if (lx_static_set_index(s, text) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if ((v = spec_get(spec, "dotfiles")) != NULL) {
        int t = PyObject_IsTrue(v);
        if (t < 0)
            return -1;
        s->dotfiles = t;
    }
    return 0;
}

int lx_files_configure(lx_server_t *srv, PyObject *spec)
{
    if (spec == NULL || spec == Py_None)
        return 0;
    if (!PyDict_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "lichen: option static: a dict");
        return -1;
    }
    long long cache = 256;
    PyObject *v = spec_get(spec, "cache");
    if (v != NULL && (cache = PyLong_AsLongLong(v)) == -1 && PyErr_Occurred())
        return -1;
    lx_static_t *s = lx_static_new(cache > 0 ? (size_t)cache : 0);
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (configure(s, spec) < 0) {
        lx_static_free(s);
        return -1;
    }
    if (s->nmounts == 0) {
        lx_static_free(s);
        return 0;
    }
    srv->statics = s;
    return 0;
}

void lx_files_free(lx_server_t *srv)
{
    lx_static_free(srv->statics);
    srv->statics = NULL;
}

void lx_files_release(lx_req_t *r)
{
    PyMem_Free(r->sresp);
    r->sresp = NULL;
    PyMem_Free(r->alog_copy);
    r->alog_copy = NULL;
    r->alog_copy_cap = 0;
}

/* ------------------------------------------------------------------ */
/* the access log: the request's fields copied before its head goes */

/* The fields of the line, into f; the bytes that point into the head
 * are copied into r->alog_copy. -1 when out of memory. */
static int keep_log_fields(lx_req_t *r, lx_alog_fields_t *f,
                           char addr[INET6_ADDRSTRLEN])
{
    const lx_http1_req_t *h = &r->h;
    lx_conn_t *c = r->conn;
    size_t an = lx_environ_addr(c, addr);
    f->addr.base = an ? addr : NULL;
    f->addr.len = an;
    f->proto.base = h->minor_version ? "HTTP/1.1" : "HTTP/1.0";
    f->proto.len = 8;
    f->method = h->method;
    f->target = h->target;
    f->referer = lx_http1_field(h, "referer", 7);
    f->agent = lx_http1_field(h, "user-agent", 10);
    lx_str_t *copy[4] = {&f->method, &f->target, &f->referer, &f->agent};
    size_t need = 0;
    for (int i = 0; i < 4; i++)
        need += copy[i]->len;
    if (need > r->alog_copy_cap) {
        char *p = PyMem_Realloc(r->alog_copy, need);
        if (p == NULL)
            return -1;
        r->alog_copy = p;
        r->alog_copy_cap = need;
    }
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        if (copy[i]->base == NULL)
            continue;
        memcpy(r->alog_copy + at, copy[i]->base, copy[i]->len);
        copy[i]->base = r->alog_copy + at;
        at += copy[i]->len;
    }
    return 0;
}

/* With an access_log_call hook, the hook gets an environ of the request
 * (the only Python a static request runs). */
static PyObject *log_environ(lx_req_t *r)
{
    if (r->input == NULL && (r->input = lx_input_new(r->srv->st)) == NULL)
        return NULL;
    lx_input_bind(r->input, r);
    return lx_environ_build(r);
}

static void unbind_input(lx_req_t *r)
{
    if (r->input != NULL) {
        lx_input_bind(r->input, NULL);
        if (Py_REFCNT(r->input) > 1)
            Py_CLEAR(r->input);
    }
}

/* ------------------------------------------------------------------ */
/* the response */

/* The decimal digits of v at p; returns the end. */
static char *decimal(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* The status line and static.c's fields into r->fields (the Location of a
 * redirect from the request's path), then the head with its framing into
 * r->out. 0, or -1 with an exception. */
static int head(lx_req_t *r, const lx_static_resp_t *a)
{
    lx_server_t *srv = r->srv;
    const lx_http1_req_t *h = &r->h;
    lx_str_t path = lx_http1_origin_path(h->path);
    size_t need = 128 + a->fields_len;
    if (a->redirect)
        need += 16 + path.len + h->query.len;
    if (r->fields == NULL && (r->fields = lx_buf_get(&srv->bufs)) == NULL)
        goto nomem;
    r->fields->len = r->fields->off = 0;
    if (lx_buf_reserve(&srv->bufs, &r->fields, need, HEAD_MAX) < 0)
        goto nomem;
    lx_buf_t *f = r->fields;
    const char *reason = lx_static_reason(a->status);
    size_t rl = strlen(reason);
    char *p = f->data;
    memcpy(p, "HTTP/1.1 ", 9);
    p = decimal(p + 9, (uint64_t)a->status);
    *p++ = ' ';
    memcpy(p, reason, rl);
    memcpy(p + rl, "\r\n", 2);
    f->len = (size_t)(p + rl + 2 - f->data);
    memcpy(f->data + f->len, a->fields, a->fields_len);
    f->len += a->fields_len;
    if (a->redirect) {
        memcpy(f->data + f->len, "Location: ", 10);
        f->len += 10;
        memcpy(f->data + f->len, path.base, path.len);
        f->len += path.len;
        f->data[f->len++] = '/';
        if (h->query.len > 0) {
            f->data[f->len++] = '?';
            memcpy(f->data + f->len, h->query.base, h->query.len);
            f->len += h->query.len;
        }
        memcpy(f->data + f->len, "\r\n", 2);
        f->len += 2;
    }
    r->status_code = a->status;
    r->app_length = a->file != NULL   ? (int64_t)a->length
                    : a->body != NULL ? (int64_t)a->body_len
                                      : -1;
    if (r->app_length >= 0) {
        p = f->data + f->len;
        memcpy(p, "Content-Length: ", 16);
        p = decimal(p + 16, (uint64_t)r->app_length);
        memcpy(p, "\r\n", 2);
        f->len = (size_t)(p + 2 - f->data);
    }
    r->app_date = r->app_server = r->app_close = 0;
    return lx_response_head(r, 0);
nomem:
    PyErr_NoMemory();
    return -1;
}

/* The body: a small file read behind the head, a larger one by
 * sendfile; a file that shrank meanwhile ends the response short (and
 * lx_out_end closes the connection). 0, or -1 with an exception. */
static int body(lx_req_t *r, const lx_static_resp_t *a)
{
    if (r->resp_nobody)
        return lx_out_end(r, 1);
    if (a->file == NULL) {
        if (a->body_len > 0 && lx_out_body(r, a->body, a->body_len, 1) < 0)
            return -1;
        return lx_out_end(r, 1);
    }
    if (a->bytes != NULL) {
        /* the small file's snapshot (static.c), whole, of this length */
        if (lx_out_body(r, a->bytes + a->offset, (size_t)a->length, 1) < 0)
            return -1;
        return lx_out_end(r, 1);
    }
    int fd = a->file->fd;
    if (a->length <= READ_MAX) {
        if (lx_out_reserve(r, (size_t)a->length) < 0)
            return -1;
        size_t got = 0;
        while (got < a->length) {
            ssize_t n =
                pread(fd, r->out->data + r->out->len + got,
                      (size_t)a->length - got, (off_t)(a->offset + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        r->out->len += got;
        r->resp_sent += got;
        return lx_out_end(r, 1);
    }
    off_t pos = (off_t)a->offset;
    if (lx_out_sendfile(r, fd, &pos, a->length) < 0)
        return -1;
    return lx_out_end(r, 1);
}

int lx_files_serve(lx_req_t *r, int m, size_t rest)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    if (r->sresp == NULL &&
        (r->sresp = PyMem_Malloc(sizeof(*r->sresp))) == NULL) {
        lx_log(srv, LX_LOG_ERROR, "out of memory", NULL);
        c->flags |= LX_CONN_F_BROKEN;
        return 0;
    }
    int begun = lx_response_begin(r);
    if (begun <= 0)
        return begun;
    lx_static_resp_t *a = r->sresp;
    lx_static_answer(srv->statics, m, lx_http1_origin_path(r->h.path), rest,
                     &r->h, lx_now_us() / 1000, a);
    /* What the access log needs of the head, before the head goes. */
    lx_alog_fields_t lf;
    char addr[INET6_ADDRSTRLEN];
    int log_line = srv->alog_on && srv->alog_call == NULL &&
                   keep_log_fields(r, &lf, addr) == 0;
    if (srv->alog_on && srv->alog_call != NULL &&
        (r->environ = log_environ(r)) == NULL)
        PyErr_Clear();
    int rc = head(r, a);
    lx_buf_consume(c->rbuf, r->head_len);
    if (rc == 0)
        rc = body(r, a);
    if (rc < 0) {
        /* The client went away, or no memory for the head: only a close
         * can tell. */
        PyErr_Clear();
        c->flags |= LX_CONN_F_BROKEN;
    }
    lx_static_done(srv->statics, a);
    if (r->fields != NULL) {
        lx_buf_put(&srv->bufs, r->fields);
        r->fields = NULL;
    }
    int keep = !(c->flags & LX_CONN_F_BROKEN) && !r->resp_close &&
               r->keepalive && lx_body_discard(r);
    srv->served++;
    if (log_line)
        lx_log_access_fields(r, &lf);
    else if (r->environ != NULL)
        lx_log_access(r);
    Py_CLEAR(r->environ);
    unbind_input(r);
    return keep;
}
