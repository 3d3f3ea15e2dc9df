/* The WSGI environ of a parsed request (PEP 3333): a copy of the
 * listener's prepared dict plus the request's keys. */
#include "environ.h"

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
    "content-type",
    "content-length",
};
#define N_COMMON (sizeof(common_headers) / sizeof(common_headers[0]))
/* value_str's slots: the common headers', then these. */
enum { SLOT_METHOD = N_COMMON, SLOT_PATH, SLOT_URI, SLOT_ADDR, N_SLOTS };
_Static_assert(N_SLOTS == LX_LAST_VALUES, "LX_LAST_VALUES counts the slots");
#define HOST_INDEX 0   /* "host" above */
#define COOKIE_INDEX 6 /* "cookie" above */
#define CONTENT_TYPE_INDEX ((int)N_COMMON - 2)
#define CONTENT_LENGTH_INDEX ((int)N_COMMON - 1)
/* Their keys (CGI's CONTENT_TYPE and CONTENT_LENGTH for the last two):
 * interned, immortal for the process, shared by every module instance. */
static PyObject *common_keys[N_COMMON];
static unsigned char common_len[N_COMMON];
static unsigned char common_fwd[N_COMMON]; /* a proxy header (fwd.c) */
/* The keys and values proxy headers change (set_forwarded), made as the
 * common keys are. */
static PyObject *k_url_scheme, *k_SERVER_NAME, *k_SERVER_PORT, *v_http,
    *v_https, *v_port80, *v_port443;

/* "HTTP_" and the name in upper case, '-' as '_'. */
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

int lx_environ_init(void)
{
    size_t i;
    for (i = 0; i < N_COMMON; i++) {
        if (common_keys[i] != NULL)
            continue;
        size_t n = strlen(common_headers[i]);
        PyObject *k = (int)i == CONTENT_TYPE_INDEX
                          ? PyUnicode_FromString("CONTENT_TYPE")
                      : (int)i == CONTENT_LENGTH_INDEX
                          ? PyUnicode_FromString("CONTENT_LENGTH")
                          : make_key(common_headers[i], n);
        if (k == NULL)
            return -1;
        PyUnicode_InternInPlace(&k);
        common_len[i] = (unsigned char)n;
        common_fwd[i] = (unsigned char)lx_fwd_header(common_headers[i], n);
        common_keys[i] = k;
    }
    PyObject **const made[] = {&k_url_scheme, &k_SERVER_NAME, &k_SERVER_PORT,
                               &v_http,       &v_https,       &v_port80,
                               &v_port443};
    const char *const text[] = {
        "wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "http",
        "https",           "80",          "443"};
    for (i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        if (*made[i] != NULL)
            continue;
        PyObject *k = PyUnicode_FromString(text[i]);
        if (k == NULL)
            return -1;
        PyUnicode_InternInPlace(&k);
        *made[i] = k;
    }
    return 0;
}

/* The index of a header name with a prebuilt key, or -1. */
static int known_header(const char *name, size_t n)
{
    size_t i;
    for (i = 0; i < N_COMMON; i++)
        if (common_len[i] == n && lx_caseeq(name, common_headers[i], n))
            return (int)i;
    return -1;
}

/* The str of the latin-1 bytes p[0..n), made directly: the only scan is
 * for a byte of 0x80 or more, eight bytes at a time (the decoders of the
 * C API scan and dispatch more than the whole copy costs). */
static PyObject *latin1_str(const char *p, size_t n)
{
    Py_UCS4 max = 127;
    size_t i = 0;
    for (; i + 8 <= n && max == 127; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (x & LX_BYTES(0x80))
            max = 255;
    }
    for (; i < n && max == 127; i++)
        if ((unsigned char)p[i] & 0x80)
            max = 255;
    PyObject *s = PyUnicode_New((Py_ssize_t)n, max);
    if (s != NULL && n > 0)
        memcpy(PyUnicode_1BYTE_DATA(s), p, n);
    return s;
}

/* The str of an environ value that often repeats from one request to the
 * next (the target, the client's address behind a proxy, Host, User-Agent,
 * Accept...): the last one made for its slot is reused while the bytes are
 * the same, which saves making and freeing a str. */
static PyObject *value_str(lx_server_t *srv, int slot, const char *p, size_t n,
                           int *again)
{
    PyObject **last = &srv->last_values[slot];
    *again = *last != NULL && (size_t)PyUnicode_GET_LENGTH(*last) == n &&
             memcmp(PyUnicode_1BYTE_DATA(*last), p, n) == 0;
    if (*again)
        return Py_NewRef(*last);
    PyObject *s = latin1_str(p, n);
    if (s != NULL)
        Py_XSETREF(*last, Py_NewRef(s));
    return s;
}

static PyObject *repeating_key(lx_state_t *st, int slot)
{
    switch (slot) {
    case SLOT_METHOD:
        return st->k_REQUEST_METHOD;
    case SLOT_PATH:
        return st->k_PATH_INFO;
    case SLOT_URI:
        return st->k_RAW_URI;
    default:
        return st->k_REMOTE_ADDR;
    }
}

/* env[key] for a request key whose value often repeats (the method, the
 * path, the target, the client's address): a value seen twice in a row
 * becomes the base environ's, whose copies then hold it already. */
static int set_repeating(lx_req_t *r, PyObject *env, int slot, const char *p,
                         size_t n)
{
    lx_listener_t *l = &r->srv->listeners[r->conn->listener];
    PyObject **base = &l->base_values[slot - SLOT_METHOD];
    int again;
    PyObject *v = value_str(r->srv, slot, p, n, &again);
    if (v == NULL || v == *base) {
        Py_XDECREF(v);
        return v == NULL ? -1 : 0;
    }
    PyObject *key = repeating_key(r->srv->st, slot);
    int rc = PyDict_SetItem(env, key, v);
    if (rc == 0 && again) {
        if (PyDict_SetItem(l->base_environ, key, v) == 0)
            *base = v; /* borrowed: the base holds it */
        else
            PyErr_Clear();
    }
    Py_DECREF(v);
    return rc;
}

void lx_environ_forget(lx_server_t *srv)
{
    for (int i = 0; i < LX_LAST_VALUES; i++)
        Py_CLEAR(srv->last_values[i]);
}

/* Percent-decode into dst (at least n bytes); returns the length. */
static size_t unquote(const char *src, size_t n, char *dst)
{
    size_t i = 0, o = 0;
    while (i < n) {
        if (src[i] == '%' && i + 2 < n) {
            int h = lx_hexval((unsigned char)src[i + 1]);
            int l = lx_hexval((unsigned char)src[i + 2]);
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

/* env[key] = value, stealing value. */
static int set_steal(PyObject *env, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(env, key, value);
    Py_DECREF(value);
    return rc;
}

static int set_path(lx_req_t *r, PyObject *env)
{
    /* absolute-form (a proxy's request): PATH_INFO is the path */
    lx_str_t path = lx_http1_origin_path(r->h.path);
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
        if (n >= sl && memcmp(p, s, sl) == 0 && (n == sl || p[sl] == '/')) {
            p += sl;
            n -= sl;
        }
    }
    int rc = set_repeating(r, env, SLOT_PATH, p, n);
    if (buf != stackbuf)
        PyMem_Free(buf);
    return rc;
}

/* The decimal digits of v, ending at end; returns where they start.
 * (snprintf would be several times the cost of the whole environ.) */
static char *decimal(char *end, unsigned v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* An address as text: its length, 0 for another family than IPv4's and
 * IPv6's. */
static size_t addr_text(int family, const uint8_t *addr,
                        char text[INET6_ADDRSTRLEN])
{
    size_t n = 0;
    if (family == AF_INET) {
        char *p = text;
        for (int i = 0; i < 4; i++) {
            char d[4], *s = decimal(d + 3, addr[i]);
            memcpy(p, s, (size_t)(d + 3 - s));
            p += d + 3 - s;
            *p++ = '.';
        }
        n = (size_t)(p - text) - 1;
    } else if (family == AF_INET6 &&
               inet_ntop(AF_INET6, addr, text, INET6_ADDRSTRLEN)) {
        n = strlen(text);
    }
    return n;
}

size_t lx_environ_addr(const lx_conn_t *c, char text[INET6_ADDRSTRLEN])
{
    return addr_text(c->peer_family, c->peer_addr, text);
}

static int set_remote_addr(lx_req_t *r, PyObject *env)
{
    char text[INET6_ADDRSTRLEN];
    size_t n = lx_environ_addr(r->conn, text);
    return set_repeating(r, env, SLOT_ADDR, text, n);
}

static PyObject *port_str(unsigned port)
{
    char d[8], *s = decimal(d + sizeof(d), port);
    return latin1_str(s, (size_t)(d + sizeof(d) - s));
}

static PyObject *remote_port(lx_state_t *st, lx_conn_t *c)
{
    if (c->peer_family == AF_UNIX)
        return Py_NewRef(st->empty_str);
    return port_str(c->peer_port);
}

int lx_environ_base(lx_state_t *st, lx_listener_t *l, PyObject *given)
{
    PyObject *script = PyDict_GetItemWithError(given, st->k_SCRIPT_NAME);
    if (script == NULL && PyErr_Occurred())
        return -1;
    /* The keys every request sets are there from the start, so that a
     * copy replaces values rather than adding keys; QUERY_STRING,
     * SERVER_PROTOCOL and wsgi.input_terminated keep their usual value
     * unless the request differs. */
    PyObject *const keys[] = {st->k_REQUEST_METHOD,       st->k_PATH_INFO,
                              st->k_QUERY_STRING,         st->k_RAW_URI,
                              st->k_SERVER_PROTOCOL,      st->k_REMOTE_ADDR,
                              st->k_REMOTE_PORT,          st->k_wsgi_input,
                              st->k_wsgi_input_terminated};
    PyObject *const values[] = {st->v_GET,     st->empty_str, st->empty_str,
                                st->empty_str, st->v_http11,  st->empty_str,
                                st->empty_str, Py_None,       Py_True};
    /* Those first: keys inserted early sit at their first probe, and these
     * are the ones every request looks up. */
    PyObject *d = PyDict_New();
    if (d == NULL)
        return -1;
    size_t i;
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (PyDict_SetItem(d, keys[i], values[i]) < 0) {
            Py_DECREF(d);
            return -1;
        }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(given, &pos, &k, &v))
        if (PyDict_SetItem(d, k, v) < 0) {
            Py_DECREF(d);
            return -1;
        }
    l->base_environ = d;
    /* What the base holds for the keys whose repeated values it takes. */
    for (int k = SLOT_METHOD; k < N_SLOTS; k++)
        l->base_values[k - SLOT_METHOD] =
            PyDict_GetItemWithError(d, repeating_key(st, k));
    l->script_name = script != NULL && PyUnicode_Check(script) &&
                             PyUnicode_KIND(script) == PyUnicode_1BYTE_KIND &&
                             PyUnicode_GET_LENGTH(script) > 0
                         ? Py_NewRef(script)
                         : NULL;
    return 0;
}

void lx_environ_base_clear(lx_listener_t *l)
{
    memset(l->base_values, 0, sizeof(l->base_values));
    Py_CLEAR(l->base_environ);
    Py_CLEAR(l->script_name);
}

/* Add one request header: a prebuilt key for the common ones; repeated
 * fields joined (RFC 9110 5.3: ","; cookies "; ", RFC 9113 8.2.3, as
 * cookie parsers expect). */
static int set_header(lx_server_t *srv, PyObject *env, const lx_header_t *hd,
                      int known)
{
    const char *name = hd->name.base;
    size_t nl = hd->name.len;
    PyObject *key =
        known >= 0 ? Py_NewRef(common_keys[known]) : make_key(name, nl);
    if (key == NULL)
        return -1;
    int again;
    PyObject *value = known >= 0 ? value_str(srv, known, hd->value.base,
                                             hd->value.len, &again)
                                 : latin1_str(hd->value.base, hd->value.len);
    if (value == NULL) {
        Py_DECREF(key);
        return -1;
    }
    /* One lookup when the field is new (the common case). The size tells
     * whether it was: a repeated one-character value can be the very
     * object already there. */
    Py_ssize_t size = PyDict_GET_SIZE(env);
    PyObject *prev = PyDict_SetDefault(env, key, value);
    int rc = prev == NULL ? -1 : 0;
    if (prev != NULL && PyDict_GET_SIZE(env) == size) {
        /* Repeated, or a key the server set (HTTP_*, CONTENT_*). */
        PyObject *joined = PyUnicode_FromFormat(
            known == COOKIE_INDEX ? "%U; %U" : "%U,%U", prev, value);
        rc = joined ? PyDict_SetItem(env, key, joined) : -1;
        Py_XDECREF(joined);
    }
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

/* What the proxy headers of a trusted peer say (fwd.c reads them) over
 * the keys set from the connection: REMOTE_ADDR and REMOTE_PORT,
 * wsgi.url_scheme, HTTP_HOST and SERVER_NAME, SERVER_PORT. The headers'
 * own keys stay as they came. */
static int set_forwarded(lx_req_t *r, PyObject *env)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    lx_fwd_t f;
    if (!lx_fwd_trusted(&srv->fwd_allow, c->peer_family, c->peer_addr) ||
        !lx_fwd_read(&srv->fwd_allow, r->h.headers, r->h.num_headers, &f))
        return 0;
    lx_state_t *st = srv->st;
    if (f.has_addr) {
        char text[INET6_ADDRSTRLEN];
        size_t n = addr_text(f.family, f.addr, text);
        if (set_steal(env, st->k_REMOTE_ADDR, latin1_str(text, n)) < 0 ||
            (f.port > 0 && set_steal(env, st->k_REMOTE_PORT,
                                     port_str((unsigned)f.port)) < 0))
            return -1;
    }
    if (f.scheme != LX_FWD_SCHEME_NONE &&
        PyDict_SetItem(env, k_url_scheme,
                       f.scheme == LX_FWD_SCHEME_HTTPS ? v_https : v_http) < 0)
        return -1;
    if (f.host_len > 0) {
        /* SERVER_NAME: the host without its port */
        const char *end =
            f.host[0] == '[' ? strchr(f.host, ']') + 1 : strchr(f.host, ':');
        size_t name_len = end ? (size_t)(end - f.host) : f.host_len;
        if (set_steal(env, common_keys[HOST_INDEX],
                      latin1_str(f.host, f.host_len)) < 0 ||
            set_steal(env, k_SERVER_NAME, latin1_str(f.host, name_len)) < 0)
            return -1;
    }
    if (f.server_port > 0)
        return set_steal(env, k_SERVER_PORT,
                         port_str((unsigned)f.server_port));
    if (f.server_port == 0) {
        int https = f.scheme != LX_FWD_SCHEME_NONE
                        ? f.scheme == LX_FWD_SCHEME_HTTPS
                        : c->tls != NULL;
        return PyDict_SetItem(env, k_SERVER_PORT,
                              https ? v_port443 : v_port80);
    }
    return 0;
}

/* A client certificate longer than this in PEM is left out of the
 * environ (SSL_CLIENT_CERT). */
#define PEM_MAX (64 * 1024)

/* ------------------------------------------------------------------ */
/* TLS */

static int put_latin1(PyObject *d, const char *key, const char *value,
                      size_t n)
{
    PyObject *v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)n, NULL);
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* The keys of c's TLS, mod_ssl's names: made once per connection. */
static PyObject *tls_keys(lx_conn_t *c)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    const char *version = lx_tls_version(c->tls);
    const char *cipher = lx_tls_cipher(c->tls);
    char text[1024];
    lx_tls_client_verify(c->tls, text, sizeof(text));
    if (put_latin1(d, "SSL_PROTOCOL", version, strlen(version)) < 0 ||
        put_latin1(d, "SSL_CIPHER", cipher ? cipher : "",
                   cipher ? strlen(cipher) : 0) < 0 ||
        put_latin1(d, "SSL_CLIENT_VERIFY", text, strlen(text)) < 0)
        goto fail;
    size_t n = lx_tls_client_dn(c->tls, 0, text, sizeof(text));
    if (n > 0) {
        if (put_latin1(d, "SSL_CLIENT_S_DN", text, n) < 0)
            goto fail;
        n = lx_tls_client_dn(c->tls, 1, text, sizeof(text));
        if (put_latin1(d, "SSL_CLIENT_I_DN", text, n) < 0)
            goto fail;
        char *pem = PyMem_Malloc(PEM_MAX);
        if (pem == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        n = lx_tls_client_pem(c->tls, pem, PEM_MAX);
        int rc = n > 0 ? put_latin1(d, "SSL_CLIENT_CERT", pem, n) : 0;
        PyMem_Free(pem);
        if (rc < 0)
            goto fail;
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* c's TLS keys into env. */
static int set_tls(lx_conn_t *c, PyObject *env)
{
    if (c->tls_env == NULL && (c->tls_env = tls_keys(c)) == NULL)
        return -1;
    return PyDict_Update(env, c->tls_env);
}

PyObject *lx_environ_build(lx_req_t *r)
{
    lx_state_t *st = r->srv->st;
    lx_conn_t *c = r->conn;
    lx_http1_req_t *h = &r->h;
    PyObject *env = PyDict_Copy(r->srv->listeners[c->listener].base_environ);
    if (env == NULL)
        return NULL;
    if (set_repeating(r, env, SLOT_METHOD, h->method.base, h->method.len) <
            0 ||
        set_path(r, env) < 0 ||
        (h->query.len > 0 &&
         set_steal(env, st->k_QUERY_STRING,
                   latin1_str(h->query.base, h->query.len)) < 0) ||
        set_repeating(r, env, SLOT_URI, h->target.base, h->target.len) < 0 ||
        (h->minor_version == 0 &&
         PyDict_SetItem(env, st->k_SERVER_PROTOCOL, st->v_http10) < 0) ||
        set_remote_addr(r, env) < 0 ||
        set_steal(env, st->k_REMOTE_PORT, remote_port(st, c)) < 0 ||
        PyDict_SetItem(env, st->k_wsgi_input, (PyObject *)r->input) < 0 ||
        (c->tls != NULL && set_tls(c, env) < 0))
        goto error;
    size_t i;
    int fwd = 0; /* a proxy header came */
    for (i = 0; i < h->num_headers; i++) {
        const lx_str_t *name = &h->headers[i].name;
        /* "_" would let a header pose as another one ("X_Forwarded_For"
         * as X-Forwarded-For): such headers are dropped. */
        if (memchr(name->base, '_', name->len))
            continue;
        int known = known_header(name->base, name->len);
        if (set_header(r->srv, env, &h->headers[i], known) < 0)
            goto error;
        fwd |= known >= 0 ? common_fwd[known]
                          : lx_fwd_header(name->base, name->len);
    }
    if (fwd && set_forwarded(r, env) < 0)
        goto error;
    return env;
error:
    Py_DECREF(env);
    return NULL;
}
