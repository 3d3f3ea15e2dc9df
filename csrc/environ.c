/* The WSGI environ of a parsed request (PEP 3333): a copy of the
 * listener's prepared dict plus the request's keys. */
#include "engine.h"

#include <arpa/inet.h>
#include <string.h>

/* Common header names with prebuilt keys, by lower-case name. */
static const char *const common_headers[] = {
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "cookie",
    "referer",
    "cache-control",
    "origin",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "if-none-match",
    "if-modified-since",
    "pragma",
    "upgrade",
    "upgrade-insecure-requests",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "range",
    "dnt",
    "te",
    "expect",
    "transfer-encoding",
};
#define N_COMMON (sizeof(common_headers) / sizeof(common_headers[0]))
static PyObject *common_keys[N_COMMON];
#define COOKIE_INDEX 6 /* "cookie" above */
#define CONTENT_TYPE_INDEX ((int)N_COMMON)
#define CONTENT_LENGTH_INDEX ((int)N_COMMON + 1)
_Static_assert(N_COMMON + 2 == LX_KNOWN_HEADERS,
               "LX_KNOWN_HEADERS counts the common headers and two more");
static unsigned char common_len[N_COMMON];

static PyObject *make_key(const char *name, size_t n)
{
    PyObject *k = PyUnicode_New((Py_ssize_t)n + 5, 127);
    if (k == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(k);
    memcpy(d, "HTTP_", 5);
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (unsigned char)(ch - 32);
        else if (ch == '-')
            ch = '_';
        d[5 + i] = ch;
    }
    return k;
}

int lx_environ_init_state(lx_state_t *st)
{
    size_t i;
    (void)st;
    for (i = 0; i < N_COMMON; i++) {
        if (common_keys[i] != NULL)
            continue;
        common_len[i] = (unsigned char)strlen(common_headers[i]);
        PyObject *k = make_key(common_headers[i], strlen(common_headers[i]));
        if (k == NULL)
            return -1;
        PyUnicode_InternInPlace(&k);
        /* Immortal for the process: shared by every module instance. */
        common_keys[i] = k;
    }
    return 0;
}

/* The index of a header name with a prebuilt key (the common ones, then
 * Content-Type and Content-Length), or -1. */
static int known_header(const char *name, size_t n)
{
    size_t i;
    if (n == 12 && lx_caseeq(name, "content-type", 12))
        return CONTENT_TYPE_INDEX;
    if (n == 14 && lx_caseeq(name, "content-length", 14))
        return CONTENT_LENGTH_INDEX;
    for (i = 0; i < N_COMMON; i++) {
        const char *c = common_headers[i];
        if (common_len[i] == n && c[0] == (name[0] | 0x20) &&
            lx_caseeq(name, c, n))
            return (int)i;
    }
    return -1;
}

static PyObject *latin1_str(const char *p, size_t n)
{
    return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

/* Whether str s is the latin-1 text p[0..n). */
static inline int same_text(PyObject *s, const char *p, size_t n)
{
    return PyUnicode_GET_LENGTH(s) == (Py_ssize_t)n &&
           PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND &&
           memcmp(PyUnicode_1BYTE_DATA(s), p, n) == 0;
}

static int same_str(PyObject *a, PyObject *b)
{
    return a == b || (PyUnicode_KIND(b) == PyUnicode_1BYTE_KIND &&
                      same_text(a, (const char *)PyUnicode_1BYTE_DATA(b),
                                (size_t)PyUnicode_GET_LENGTH(b)));
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode into dst (at least n bytes); returns the length. */
static size_t unquote(const char *src, size_t n, char *dst)
{
    size_t i = 0, o = 0;
    while (i < n) {
        if (src[i] == '%' && i + 2 < n) {
            int h = hexval((unsigned char)src[i + 1]);
            int l = hexval((unsigned char)src[i + 2]);
            if (h >= 0 && l >= 0) {
                dst[o++] = (char)(h * 16 + l);
                i += 3;
                continue;
            }
        }
        dst[o++] = src[i++];
    }
    return o;
}

static PyObject *method_str(lx_state_t *st, lx_str_t m)
{
    switch (m.len) {
    case 3:
        if (memcmp(m.base, "GET", 3) == 0)
            return Py_NewRef(st->v_GET);
        if (memcmp(m.base, "PUT", 3) == 0)
            return Py_NewRef(st->v_PUT);
        break;
    case 4:
        if (memcmp(m.base, "POST", 4) == 0)
            return Py_NewRef(st->v_POST);
        if (memcmp(m.base, "HEAD", 4) == 0)
            return Py_NewRef(st->v_HEAD);
        break;
    case 5:
        if (memcmp(m.base, "PATCH", 5) == 0)
            return Py_NewRef(st->v_PATCH);
        break;
    case 6:
        if (memcmp(m.base, "DELETE", 6) == 0)
            return Py_NewRef(st->v_DELETE);
        break;
    case 7:
        if (memcmp(m.base, "OPTIONS", 7) == 0)
            return Py_NewRef(st->v_OPTIONS);
        break;
    }
    return latin1_str(m.base, m.len);
}

/* env[key] = value, stealing value. */
static int set_steal(PyObject *env, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(env, key, value);
    Py_DECREF(value);
    return rc;
}

static int set_sticky(lx_req_t *r, PyObject *env, int k, const char *p,
                      size_t n, PyObject *value);

static int set_path(lx_req_t *r, PyObject *env)
{
    lx_str_t path = r->h.path;
    if (path.len > 0 && path.base[0] != '/') {
        /* absolute-form (a proxy's request): PATH_INFO is the path */
        const char *sep = memchr(path.base, ':', path.len);
        if (sep != NULL && (size_t)(sep - path.base) + 3 <= path.len &&
            sep[1] == '/' && sep[2] == '/') {
            const char *auth = sep + 3, *end = path.base + path.len;
            const char *slash = memchr(auth, '/', (size_t)(end - auth));
            path.base = slash ? slash : "/";
            path.len = slash ? (size_t)(end - slash) : 1;
        }
    }
    char stackbuf[1024];
    char *buf =
        path.len <= sizeof(stackbuf) ? stackbuf : PyMem_Malloc(path.len);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t n = unquote(path.base, path.len, buf);
    const char *p = buf;
    /* A root path (SCRIPT_NAME) in front of the path is not PATH_INFO. */
    PyObject *script = r->srv->listeners[r->conn->listener].script_name;
    if (script != NULL) {
        size_t sl = (size_t)PyUnicode_GET_LENGTH(script);
        const char *s = (const char *)PyUnicode_1BYTE_DATA(script);
        if (sl > 0 && n >= sl && memcmp(p, s, sl) == 0 &&
            (n == sl || p[sl] == '/')) {
            p += sl;
            n -= sl;
        }
    }
    int rc = set_sticky(r, env, LX_STICKY_PATH, p, n, NULL);
    if (buf != stackbuf)
        PyMem_Free(buf);
    return rc;
}

/* Clients come back: the last address's string is kept. */
static PyObject *remote_addr(lx_server_t *srv, lx_conn_t *c)
{
    char text[INET6_ADDRSTRLEN];
    uint8_t key[17];
    key[0] = c->peer_family;
    memcpy(key + 1, c->peer_addr, 16);
    if (srv->addr_str != NULL && memcmp(key, srv->addr_key, 17) == 0)
        return Py_NewRef(srv->addr_str);
    if (c->peer_family == AF_INET)
        inet_ntop(AF_INET, c->peer_addr, text, sizeof(text));
    else if (c->peer_family == AF_INET6)
        inet_ntop(AF_INET6, c->peer_addr, text, sizeof(text));
    else
        text[0] = '\0';
    PyObject *str = PyUnicode_FromString(text);
    if (str != NULL) {
        Py_XSETREF(srv->addr_str, Py_NewRef(str));
        memcpy(srv->addr_key, key, 17);
    }
    return str;
}

/* Ports of the connections in use, in a small direct-mapped cache. The
 * slot comes from a hash: Linux gives connect() ports of one parity, so
 * the low byte alone would use half of the slots. */
static PyObject *remote_port(lx_server_t *srv, lx_conn_t *c)
{
    lx_state_t *st = srv->st;
    if (c->peer_family == AF_UNIX)
        return Py_NewRef(st->empty_str);
    unsigned port = c->peer_port;
    unsigned slot = ((uint32_t)port * 2654435761u) >> 24;
    if (srv->port_str[slot] != NULL && srv->port_key[slot] == port)
        return Py_NewRef(srv->port_str[slot]);
    char text[8], *p = text + sizeof(text);
    do {
        *--p = (char)('0' + port % 10);
        port /= 10;
    } while (port);
    PyObject *str =
        PyUnicode_FromStringAndSize(p, (Py_ssize_t)(text + sizeof(text) - p));
    if (str != NULL) {
        Py_XSETREF(srv->port_str[slot], Py_NewRef(str));
        srv->port_key[slot] = c->peer_port;
    }
    return str;
}

/* A value that differs from the bases' this many requests in a row
 * becomes theirs. */
#define STICKY_AFTER 8

static PyObject *sticky_key(lx_state_t *st, int k)
{
    switch (k) {
    case LX_STICKY_METHOD:
        return st->k_REQUEST_METHOD;
    case LX_STICKY_PATH:
        return st->k_PATH_INFO;
    case LX_STICKY_URI:
        return st->k_RAW_URI;
    default:
        return st->k_REMOTE_ADDR;
    }
}

/* env[key] for sticky key k, whose value is the text p[0..n): left as the
 * copy has it when it is the base's text, else set to value (or to a str
 * of the text when value is NULL; value is stolen). */
static int set_sticky(lx_req_t *r, PyObject *env, int k, const char *p,
                      size_t n, PyObject *value)
{
    lx_listener_t *l = &r->srv->listeners[r->conn->listener];
    lx_sticky_t *s = &l->sticky[k];
    PyObject *key = sticky_key(r->srv->st, k);
    int b = r->h.num_headers > l->base_room; /* the base copied */
    if (same_text(s->base[b], p, n)) {
        Py_XDECREF(value);
        return 0;
    }
    if (value == NULL && (value = latin1_str(p, n)) == NULL)
        return -1;
    int rc = PyDict_SetItem(env, key, value);
    if (rc == 0) {
        if (s->last != NULL && same_str(s->last, value)) {
            s->streak++;
        } else {
            Py_XSETREF(s->last, Py_NewRef(value));
            s->streak = 1;
        }
        if (s->streak >= STICKY_AFTER) {
            /* Each base records its own value: should the second set
             * fail (no memory), neither is taken for the other's. The
             * request has its value either way. */
            PyObject *bases[2] = {l->base_environ, l->base_roomy};
            for (b = 0; b < 2; b++) {
                if (PyDict_SetItem(bases[b], key, value) < 0) {
                    PyErr_Clear();
                    break;
                }
                Py_SETREF(s->base[b], Py_NewRef(value));
            }
            Py_CLEAR(s->last);
            s->streak = 0;
        }
    }
    Py_DECREF(value);
    return rc;
}

/* The last value of a header with a prebuilt key, when the text is the
 * same; else a new str, kept as the last. */
static PyObject *header_value(lx_server_t *srv, int known, const char *p,
                              size_t n)
{
    if (known < 0)
        return latin1_str(p, n);
    PyObject **last = &srv->header_vals[known];
    if (*last != NULL && same_text(*last, p, n))
        return Py_NewRef(*last);
    PyObject *v = latin1_str(p, n);
    if (v != NULL)
        Py_XSETREF(*last, Py_NewRef(v));
    return v;
}

/* Header fields the roomy base takes before a copy has to grow (a dict
 * that grows rehashes every key). Browsers send 10 to 20 fields. */
#define HEADER_ROOM 24

#if PY_VERSION_HEX < 0x030F0000
#define dict_presized(n) _PyDict_NewPresized(n)
#else
#define dict_presized(n) ((void)(n), PyDict_New())
#endif

/* A dict of the given items and the keys every request sets, key by key
 * into a table presized for `more` keys besides (PyDict_Update could clone
 * the given dict's table instead). A presized table is of the general
 * kind, which keeps each key's hash beside it: the lookups of a request
 * cost fewer instructions in it than in the str-only kind PyDict_New
 * starts with (measured on CPython 3.11). */
static PyObject *base_dict(PyObject *given, PyObject *const *keys,
                           PyObject *const *values, size_t nkeys,
                           Py_ssize_t more)
{
    PyObject *d =
        dict_presized(PyDict_GET_SIZE(given) + (Py_ssize_t)nkeys + more);
    if (d == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    size_t i;
    while (PyDict_Next(given, &pos, &k, &v))
        if (PyDict_SetItem(d, k, v) < 0)
            goto error;
    for (i = 0; i < nkeys; i++)
        if (PyDict_SetItem(d, keys[i], values[i]) < 0)
            goto error;
    return d;
error:
    Py_DECREF(d);
    return NULL;
}

/* How many new keys a copy of d takes before its table grows: tried on a
 * copy, watching its size. */
static int dict_room(PyObject *d, size_t *room)
{
    PyObject *c = PyDict_Copy(d), *size0 = NULL;
    int rc = -1;
    size_t n;
    *room = 0;
    if (c == NULL ||
        (size0 = PyObject_CallMethod(c, "__sizeof__", NULL)) == NULL)
        goto done;
    for (n = 0; n < HEADER_ROOM; n++) {
        PyObject *k = PyUnicode_FromFormat("lichen.room.%zu", n), *size;
        if (k == NULL || PyDict_SetItem(c, k, Py_None) < 0) {
            Py_XDECREF(k);
            goto done;
        }
        Py_DECREF(k);
        if ((size = PyObject_CallMethod(c, "__sizeof__", NULL)) == NULL)
            goto done;
        int same = PyObject_RichCompareBool(size, size0, Py_EQ);
        Py_DECREF(size);
        if (same < 0)
            goto done;
        if (!same)
            break;
        *room = n + 1;
    }
    rc = 0;
done:
    Py_XDECREF(size0);
    Py_XDECREF(c);
    return rc;
}

int lx_environ_base(lx_state_t *st, lx_listener_t *l, PyObject *given)
{
    PyObject *script = PyDict_GetItemWithError(given, st->k_SCRIPT_NAME);
    if (script == NULL && PyErr_Occurred())
        return -1;
    /* The keys every request sets, present from the start (the copy then
     * replaces values), and those whose usual value it can leave. */
    PyObject *const keys[] = {st->k_REQUEST_METHOD,
                              st->k_PATH_INFO,
                              st->k_RAW_URI,
                              st->k_REMOTE_ADDR,
                              st->k_REMOTE_PORT,
                              st->k_wsgi_input,
                              st->k_QUERY_STRING,
                              st->k_SERVER_PROTOCOL,
                              st->k_wsgi_input_terminated};
    PyObject *const values[] = {st->v_GET,     st->empty_str, st->empty_str,
                                st->empty_str, st->empty_str, st->empty_str,
                                st->empty_str, st->v_http11,  Py_True};
    size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    /* Two bases: a copy of a larger table costs more, and a request with
     * one or two fields (a load balancer's health check, a benchmark)
     * fits the smaller. */
    l->base_environ = base_dict(given, keys, values, nkeys, 0);
    l->base_roomy = base_dict(given, keys, values, nkeys, HEADER_ROOM);
    if (l->base_environ == NULL || l->base_roomy == NULL ||
        dict_room(l->base_environ, &l->base_room) < 0) {
        /* The listener is not counted yet: nothing else would free them. */
        lx_environ_base_clear(l);
        return -1;
    }
    /* What the sticky keys start with: the bases' values. */
    PyObject *const bases[2] = {l->base_environ, l->base_roomy};
    int k, b;
    for (k = 0; k < LX_STICKY_N; k++)
        for (b = 0; b < 2; b++) {
            PyObject *v = PyDict_GetItemWithError(bases[b], sticky_key(st, k));
            if (v == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_SystemError, "no sticky key");
                lx_environ_base_clear(l);
                return -1;
            }
            l->sticky[k].base[b] = Py_NewRef(v);
        }
    l->script_name = script != NULL && PyUnicode_Check(script) &&
                             PyUnicode_KIND(script) == PyUnicode_1BYTE_KIND &&
                             PyUnicode_GET_LENGTH(script) > 0
                         ? Py_NewRef(script)
                         : NULL;
    return 0;
}

void lx_environ_base_clear(lx_listener_t *l)
{
    int k;
    Py_CLEAR(l->base_environ);
    Py_CLEAR(l->base_roomy);
    Py_CLEAR(l->script_name);
    for (k = 0; k < LX_STICKY_N; k++) {
        Py_CLEAR(l->sticky[k].base[0]);
        Py_CLEAR(l->sticky[k].base[1]);
        Py_CLEAR(l->sticky[k].last);
        l->sticky[k].streak = 0;
    }
}

PyObject *lx_environ_build(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_state_t *st = srv->st;
    lx_conn_t *c = r->conn;
    lx_listener_t *l = &srv->listeners[c->listener];
    PyObject *env = PyDict_Copy(
        r->h.num_headers <= l->base_room ? l->base_environ : l->base_roomy);
    if (env == NULL)
        return NULL;
    /* QUERY_STRING, SERVER_PROTOCOL and wsgi.input_terminated come with
     * the base's usual values, the sticky keys with the base's last. */
    PyObject *addr;
    if (set_sticky(r, env, LX_STICKY_METHOD, r->h.method.base, r->h.method.len,
                   method_str(st, r->h.method)) < 0 ||
        set_path(r, env) < 0 ||
        (r->h.query.len > 0 &&
         set_steal(env, st->k_QUERY_STRING,
                   latin1_str(r->h.query.base, r->h.query.len)) < 0) ||
        set_sticky(r, env, LX_STICKY_URI, r->h.target.base, r->h.target.len,
                   NULL) < 0 ||
        (r->h.minor_version == 0 &&
         PyDict_SetItem(env, st->k_SERVER_PROTOCOL, st->v_http10) < 0) ||
        (addr = remote_addr(srv, c)) == NULL ||
        set_sticky(r, env, LX_STICKY_ADDR,
                   (const char *)PyUnicode_1BYTE_DATA(addr),
                   (size_t)PyUnicode_GET_LENGTH(addr), addr) < 0 ||
        set_steal(env, st->k_REMOTE_PORT, remote_port(srv, c)) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_input, (PyObject *)r->input) < 0)
        goto error;
    size_t i;
    for (i = 0; i < r->h.num_headers; i++) {
        lx_header_t *hd = &r->h.headers[i];
        const char *name = hd->name.base;
        size_t nl = hd->name.len;
        PyObject *key;
        /* "_" would let a header pose as another one ("X_Forwarded_For"
         * as X-Forwarded-For): such headers are dropped. */
        if (memchr(name, '_', nl) != NULL)
            continue;
        int known = known_header(name, nl);
        if (known == CONTENT_TYPE_INDEX)
            key = Py_NewRef(st->k_CONTENT_TYPE);
        else if (known == CONTENT_LENGTH_INDEX)
            key = Py_NewRef(st->k_CONTENT_LENGTH);
        else if (known >= 0)
            key = Py_NewRef(common_keys[known]);
        else
            key = make_key(name, nl);
        if (key == NULL)
            goto error;
        PyObject *value =
            header_value(srv, known, hd->value.base, hd->value.len);
        if (value == NULL) {
            Py_DECREF(key);
            goto error;
        }
        /* One lookup when the field is new (the common case). The size
         * tells whether it was: a repeated one-character value can be the
         * very object already there. */
        Py_ssize_t size = PyDict_GET_SIZE(env);
        PyObject *prev = PyDict_SetDefault(env, key, value);
        int rc = prev == NULL ? -1 : 0;
        if (prev != NULL && PyDict_GET_SIZE(env) == size) {
            /* Repeated, or a base key (HTTP_* given by the server):
             * RFC 9110 5.3 joins repeated fields with ","; cookies are
             * joined with "; " (RFC 9113 8.2.3), as cookie parsers expect. */
            PyObject *joined = PyUnicode_FromFormat(
                key == common_keys[COOKIE_INDEX] ? "%U; %U" : "%U,%U", prev,
                value);
            rc = joined ? PyDict_SetItem(env, key, joined) : -1;
            Py_XDECREF(joined);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
    }
    return env;
error:
    Py_DECREF(env);
    return NULL;
}
