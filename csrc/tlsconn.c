/* TLS connections in the hub: the server's TLS options, each connection's
 * handshake, plain HTTP sent to a TLS port, failures logged at a bounded
 * rate. */
#define _GNU_SOURCE
#include "tlsconn.h"

#include <arpa/inet.h>
#include <string.h>

#include "environ.h"
#include "log.h"
#include "wait.h"
#include "xport.h"

/* Failed handshakes are logged at most once in this many ms. */
#define LOG_EVERY_MS 1000

static long live_tls; /* changed and read under the GIL */

long lx_tlsconn_live(void)
{
    return live_tls;
}

/* ------------------------------------------------------------------ */
/* options */

static int bad(const char *why)
{
    PyErr_Format(PyExc_ValueError, "lichen: tls: %s", why);
    return -1;
}

/* d[key], a path or None, as bytes in *keep (owned) and *out. */
static int opt_path(PyObject *d, const char *key, PyObject **keep,
                    const char **out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    *out = NULL;
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyUnicode_FSConverter(v, keep))
        return -1;
    *out = PyBytes_AS_STRING(*keep);
    return 0;
}

static int opt_text(PyObject *d, const char *key, const char **out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    *out = NULL;
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "lichen: tls: %s must be a str", key);
        return -1;
    }
    *out = PyUnicode_AsUTF8(v);
    return *out == NULL ? -1 : 0;
}

static int opt_int(PyObject *d, const char *key, int *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL || v == Py_None)
        return 0;
    long n = PyLong_AsLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    *out = (int)n;
    return 0;
}

/* o from the dict d; keep[4] holds what o's paths point into. */
static int read_opts(PyObject *d, lx_tls_opts_t *o, PyObject *keep[4])
{
    memset(o, 0, sizeof(*o));
    o->min_version = 12;
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "lichen: tls options must be a dict");
        return -1;
    }
    if (opt_path(d, "certfile", &keep[0], &o->certfile) < 0 ||
        opt_path(d, "keyfile", &keep[1], &o->keyfile) < 0 ||
        opt_path(d, "ca_certs", &keep[2], &o->ca_certs) < 0 ||
        opt_text(d, "password", &o->password) < 0 ||
        opt_text(d, "ciphers", &o->ciphers) < 0 ||
        opt_int(d, "cert_reqs", &o->cert_reqs) < 0 ||
        opt_int(d, "min_version", &o->min_version) < 0)
        return -1;
    if (o->cert_reqs < LX_TLS_CERT_NONE || o->cert_reqs > LX_TLS_CERT_REQUIRED)
        return bad("cert_reqs is 0 (none), 1 (optional) or 2 (required)");
    return 0;
}

static void drop(PyObject *keep[4])
{
    int i;
    for (i = 0; i < 4; i++)
        Py_CLEAR(keep[i]);
}

/* An ssl.SSLContext's OpenSSL context, when the engine may share it: the
 * ssl module links the same OpenSSL release. NULL with an exception. */
static void *ssl_context_of(PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    int found = 0;
    Py_ssize_t i;
    for (i = 0; t->tp_mro != NULL && i < PyTuple_GET_SIZE(t->tp_mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(t->tp_mro, i);
        if (strcmp(base->tp_name, "_ssl._SSLContext") == 0)
            found = 1;
    }
    if (!found) {
        PyErr_SetString(PyExc_TypeError,
                        "lichen: tls: ssl_context must be an ssl.SSLContext");
        return NULL;
    }
    PyObject *ssl = PyImport_ImportModule("ssl");
    PyObject *num =
        ssl ? PyObject_GetAttrString(ssl, "OPENSSL_VERSION_NUMBER") : NULL;
    Py_XDECREF(ssl);
    if (num == NULL)
        return NULL;
    unsigned long theirs = PyLong_AsUnsignedLong(num);
    Py_DECREF(num);
    if (theirs == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (theirs != lx_tls_library_version()) {
        PyErr_Format(PyExc_ValueError,
                     "lichen: tls: ssl_context: Python's ssl module uses "
                     "OpenSSL %#lx, the engine %#lx: give certfile and "
                     "keyfile instead",
                     theirs, lx_tls_library_version());
        return NULL;
    }
    /* CPython's context object: the head, then the OpenSSL context. */
    struct py_ssl_context {
        PyObject_HEAD void *ctx;
    };
    return ((struct py_ssl_context *)obj)->ctx;
}

int lx_tlsconn_configure(lx_server_t *srv, PyObject *opts)
{
    PyObject *d = PyDict_GetItemString(opts, "tls");
    if (d == NULL || d == Py_None)
        return 0;
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "lichen: tls options must be a dict");
        return -1;
    }
    PyObject *t = PyDict_GetItemString(d, "handshake_timeout");
    double timeout = 10.0;
    if (t != NULL && t != Py_None) {
        timeout = PyFloat_AsDouble(t);
        if (timeout == -1.0 && PyErr_Occurred())
            return -1;
        if (!(timeout > 0.0 && timeout < 1e7))
            return bad("handshake_timeout must be > 0 seconds");
    }
    uint64_t ms = (uint64_t)(timeout * 1000.0 + 0.5);
    lx_timer_list_init(&srv->t_handshake, ms ? ms : 1);
    PyObject *given = PyDict_GetItemString(d, "ssl_context");
    if (given != NULL && given != Py_None) {
        void *ctx = ssl_context_of(given);
        if (ctx == NULL)
            return -1;
        srv->tls_ctx = lx_tls_ctx_adopt(ctx);
        if (srv->tls_ctx == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        return 0;
    }
    lx_tls_opts_t o;
    PyObject *keep[4] = {NULL, NULL, NULL, NULL};
    char err[512];
    if (read_opts(d, &o, keep) < 0) {
        drop(keep);
        return -1;
    }
    srv->tls_ctx = lx_tls_ctx_new(&o, err, sizeof(err));
    drop(keep);
    return srv->tls_ctx == NULL ? bad(err) : 0;
}

PyObject *lx_tlsconn_reload(lx_server_t *srv, PyObject *opts)
{
    if (srv->tls_ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lichen: this server has no TLS");
        return NULL;
    }
    lx_tls_opts_t o;
    PyObject *keep[4] = {NULL, NULL, NULL, NULL};
    char err[512];
    int rc = read_opts(opts, &o, keep);
    if (rc == 0 && lx_tls_ctx_reload(srv->tls_ctx, &o, err, sizeof(err)) < 0)
        rc = bad(err);
    drop(keep);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* the handshake */

/* Wait in the loop for events (the handshake goes on at the next). */
static int wait_for(lx_conn_t *c, unsigned events)
{
    lx_loop_t *loop = c->srv->loop;
    int rc = c->io.events == 0        ? lx_loop_add(loop, &c->io, events)
             : c->io.events != events ? lx_loop_mod(loop, &c->io, events)
                                      : LX_OK;
    return rc < 0 ? LX_HS_FAILED : LX_HS_WAIT;
}

/* A failed handshake: logged, unless one was this second. */
static int failed(lx_conn_t *c, const char *why)
{
    lx_server_t *srv = c->srv;
    uint64_t now = lx_conn_now(srv);
    if (srv->tls_logged == 0 || now >= srv->tls_logged + LOG_EVERY_MS) {
        char addr[INET6_ADDRSTRLEN + 1], more[64] = "", msg[320];
        addr[lx_environ_addr(c, addr)] = 0;
        if (srv->tls_unlogged > 0)
            snprintf(more, sizeof(more), " (and %lu more not logged)",
                     srv->tls_unlogged);
        snprintf(msg, sizeof(msg), "TLS handshake with %s failed: %s%s",
                 addr[0] ? addr : "a local client", why, more);
        lx_log(srv, LX_LOG_INFO, msg, NULL);
        srv->tls_logged = now;
        srv->tls_unlogged = 0;
    } else {
        srv->tls_unlogged++;
    }
    return LX_HS_FAILED;
}

int lx_tlsconn_handshake(lx_conn_t *c)
{
    lx_server_t *srv = c->srv;
    if (c->tls == NULL) {
        /* Its first byte says whether a handshake or plain HTTP comes. */
        uint8_t first;
        ssize_t n = lx_sock_peek(c->io.fd, &first, 1);
        if (n == LX_AGAIN) {
            c->flags &= (uint16_t)~LX_CONN_F_READABLE;
            return wait_for(c, LX_EV_READ);
        }
        if (n <= 0)
            return LX_HS_GONE; /* before a byte: nothing to tell */
        if (lx_tls_hello(&first, 1) != 1)
            return LX_HS_PLAIN;
        c->tls = lx_tls_new(srv->tls_ctx, c->io.fd);
        if (c->tls == NULL)
            return failed(c, "out of memory");
        live_tls++;
    }
    switch (lx_tls_handshake(c->tls)) {
    case LX_OK:
        break;
    case LX_AGAIN:
        c->flags &= (uint16_t)~LX_CONN_F_READABLE;
        return wait_for(c, LX_EV_READ);
    case LX_TLS_WANT_WRITE:
        return wait_for(c, LX_EV_READ | LX_EV_WRITE);
    default:
        return failed(c, lx_tls_error(c->tls));
    }
    if ((c->io.events & LX_EV_WRITE) &&
        lx_loop_mod(srv->loop, &c->io, LX_EV_READ) < 0)
        return LX_HS_GONE;
    return LX_HS_DONE;
}

void lx_tlsconn_end(lx_conn_t *c)
{
    if (c->tls == NULL)
        return;
    /* close_notify, unless the connection failed or already sent it */
    if (!(c->flags & LX_CONN_F_BROKEN) && c->state != LX_CS_LINGER &&
        c->state != LX_CS_HANDSHAKE)
        lx_tls_close(c->tls);
    lx_tls_free(c->tls);
    c->tls = NULL;
    live_tls--;
}
