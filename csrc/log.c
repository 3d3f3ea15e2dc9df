/* The logs: errors through the server's Python callable, and the access
 * log, formatted and buffered in C. */
#include "log.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Buffered lines are written out at the end of the turn, or once they
 * reach this size. */
#define ALOG_FLUSH 65536

void lx_log(lx_server_t *srv, int level, const char *msg, PyObject *exc)
{
    if (srv->log == NULL) {
        /* A bare engine (no log callable): warnings and errors only. */
        if (level < LX_LOG_WARNING)
            return;
        if (exc != NULL) {
            lx_err_set(Py_NewRef(exc));
            PyErr_WriteUnraisable(NULL);
        } else
            PySys_FormatStderr("lichen: %s\n", msg);
        return;
    }
    PyObject *r = PyObject_CallFunction(srv->log, "isO", level, msg,
                                        exc ? exc : Py_None);
    if (r == NULL)
        PyErr_WriteUnraisable(srv->log);
    else
        Py_DECREF(r);
}

/* The buffered lines, one call of srv->alog_write each. */
static void give_lines(lx_server_t *srv)
{
    const char *p = srv->alog, *e = p + srv->alog_len;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *end = nl ? nl + 1 : e;
        PyObject *line =
            PyUnicode_DecodeLatin1(p, (Py_ssize_t)(end - p), NULL);
        PyObject *r = line ? PyObject_CallOneArg(srv->alog_write, line) : NULL;
        Py_XDECREF(line);
        if (r == NULL)
            PyErr_WriteUnraisable(srv->alog_write);
        else
            Py_DECREF(r);
        p = end;
    }
}

void lx_log_flush(lx_server_t *srv)
{
    size_t off = 0;
    if (srv->access_fd < 0) {
        if (srv->alog_write != NULL && srv->alog_len > 0) {
            PyObject *exc = lx_err_get(); /* a call may come with one set */
            give_lines(srv);
            lx_err_set(exc);
        }
        srv->alog_len = 0;
        return;
    }
    while (off < srv->alog_len) {
        ssize_t n =
            write(srv->access_fd, srv->alog + off, srv->alog_len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        off += (size_t)n;
    }
    srv->alog_len = 0;
}

static void put(lx_server_t *srv, const char *p, size_t n)
{
    if (srv->alog_len + n > srv->alog_cap) {
        size_t cap = srv->alog_cap ? srv->alog_cap : ALOG_FLUSH;
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

/* A field's bytes, escaped for a quoted log field; dflt when missing. */
static void field(lx_server_t *srv, const lx_str_t *v, const char *dflt)
{
    const char *p = v->base != NULL ? v->base : dflt;
    size_t n = v->base != NULL ? v->len : strlen(dflt);
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            put(srv, e, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            char e[5];
            snprintf(e, sizeof(e), "\\x%02x", ch);
            put(srv, e, 4);
        } else {
            put(srv, (const char *)&p[i], 1);
        }
    }
}

/* A latin-1 str of the environ as bytes (missing otherwise). */
static lx_str_t from_environ(PyObject *env, PyObject *key)
{
    lx_str_t s = {NULL, 0};
    PyObject *v = PyDict_GetItemWithError(env, key);
    if (v != NULL && PyUnicode_Check(v) &&
        PyUnicode_KIND(v) == PyUnicode_1BYTE_KIND) {
        s.base = (const char *)PyUnicode_1BYTE_DATA(v);
        s.len = (size_t)PyUnicode_GET_LENGTH(v);
    }
    PyErr_Clear();
    return s;
}

/* How long the request took, "%.6f" seconds. */
static int duration(lx_req_t *r, char *buf, size_t cap)
{
    uint64_t us = lx_now_us() - r->t_start;
    return snprintf(buf, cap, "%llu.%06llu",
                    (unsigned long long)(us / 1000000),
                    (unsigned long long)(us % 1000000));
}

/* METHOD TARGET PROTOCOL, a field that is missing written as missing. */
static void request_line(lx_server_t *srv, const lx_alog_fields_t *f,
                         const char *missing)
{
    field(srv, &f->method, missing);
    put(srv, " ", 1);
    field(srv, &f->target, missing);
    put(srv, " ", 1);
    field(srv, &f->proto, missing);
}

/* A quote, the status code (three digits: start_response checks it), the
 * body bytes sent or "-", then after. */
static void status_length(lx_req_t *r, const char *after)
{
    char num[64];
    int n = snprintf(num, sizeof(num), "\" %d ", r->status_code);
    put(r->srv, num, (size_t)n);
    if (r->resp_sent) {
        n = snprintf(num, sizeof(num), "%llu",
                     (unsigned long long)r->resp_sent);
        put(r->srv, num, (size_t)n);
    } else {
        put(r->srv, "-", 1);
    }
    put(r->srv, after, strlen(after));
}

/* The combined log format and the request's duration:
 * 127.0.0.1 - - [06/Dec/2026:16:00:00 +0000] "GET / HTTP/1.1" 200 13 "-"
 * "curl/8" 0.000061 */
static void combined(lx_req_t *r, const lx_alog_fields_t *f)
{
    lx_server_t *srv = r->srv;
    char tbuf[64], num[96];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    field(srv, &f->addr, "-");
    put(srv, " - - ", 5);
    put(srv, tbuf, strlen(tbuf));
    put(srv, " \"", 2);
    request_line(srv, f, "-");
    status_length(r, " \"");
    field(srv, &f->referer, "-");
    put(srv, "\" \"", 3);
    field(srv, &f->agent, "-");
    put(srv, "\" ", 2);
    int n = duration(r, num, sizeof(num));
    put(srv, num, (size_t)n);
    put(srv, "\n", 1);
}

/* gevent.pywsgi's line, local time:
 * 127.0.0.1 - - [2026-12-06 16:00:00] "GET / HTTP/1.1" 200 13 0.000061 */
static void pywsgi(lx_req_t *r, const lx_alog_fields_t *f)
{
    lx_server_t *srv = r->srv;
    char tbuf[64], num[96];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), " - - [%Y-%m-%d %H:%M:%S] \"", &tm);
    field(srv, &f->addr, "-");
    put(srv, tbuf, strlen(tbuf));
    request_line(srv, f, "");
    status_length(r, " ");
    int n = duration(r, num, sizeof(num));
    put(srv, num, (size_t)n);
    put(srv, "\n", 1);
}

/* alog_call(environ, status, body bytes sent or None, seconds): the
 * request as it was, for a logger that formats its own line. */
static void call_access(lx_req_t *r, PyObject *env)
{
    lx_server_t *srv = r->srv;
    double seconds = (double)(lx_now_us() - r->t_start) / 1e6;
    PyObject *exc = lx_err_get();
    PyObject *sent = r->resp_sent ? PyLong_FromUnsignedLongLong(r->resp_sent)
                                  : Py_NewRef(Py_None);
    PyObject *res = sent ? PyObject_CallFunction(srv->alog_call, "OiOd", env,
                                                 r->status_code, sent, seconds)
                         : NULL;
    Py_XDECREF(sent);
    if (res == NULL)
        PyErr_WriteUnraisable(srv->alog_call);
    else
        Py_DECREF(res);
    lx_err_set(exc);
}

void lx_log_access_fields(lx_req_t *r, const lx_alog_fields_t *f)
{
    lx_server_t *srv = r->srv;
    if (srv->alog_style == LX_ALOG_PYWSGI)
        pywsgi(r, f);
    else
        combined(r, f);
    /* Else at the end of the turn; outside one, the greenlet's switch to
     * the hub makes the loop come round. */
    if (srv->alog_len >= ALOG_FLUSH)
        lx_log_flush(srv);
}

void lx_log_access(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_state_t *st = srv->st;
    PyObject *env = r->environ;
    if (env == NULL)
        return;
    if (srv->alog_call != NULL) {
        call_access(r, env);
        return;
    }
    lx_alog_fields_t f = {
        from_environ(env, st->k_REMOTE_ADDR),
        from_environ(env, st->k_REQUEST_METHOD),
        from_environ(env, st->k_RAW_URI),
        from_environ(env, st->k_SERVER_PROTOCOL),
        from_environ(env, st->k_HTTP_REFERER),
        from_environ(env, st->k_HTTP_USER_AGENT),
    };
    lx_log_access_fields(r, &f);
}

void lx_log_app_error(lx_req_t *r, PyObject *exc)
{
    lx_server_t *srv = r->srv;
    if (srv->app_error != NULL) {
        PyObject *res = PyObject_CallFunctionObjArgs(
            srv->app_error, r->environ ? r->environ : Py_None, exc, NULL);
        if (res == NULL)
            PyErr_WriteUnraisable(srv->app_error);
        else
            Py_DECREF(res);
        return;
    }
    lx_state_t *st = srv->st;
    PyObject *m =
        r->environ ? PyDict_GetItemWithError(r->environ, st->k_REQUEST_METHOD)
                   : NULL;
    PyObject *u =
        r->environ ? PyDict_GetItemWithError(r->environ, st->k_RAW_URI) : NULL;
    PyErr_Clear();
    PyObject *msg =
        PyUnicode_FromFormat("Error handling request %.32S %.200S",
                             m ? m : st->empty_str, u ? u : st->empty_str);
    const char *text = msg ? PyUnicode_AsUTF8(msg) : NULL;
    if (text == NULL) {
        PyErr_Clear();
        text = "Error handling request";
    }
    lx_log(srv, LX_LOG_ERROR, text, exc);
    Py_XDECREF(msg);
}
