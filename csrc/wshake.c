/* The WebSocket opening handshake: checks, offers, answers. */
#include "wshake.h"

#include <stdio.h>
#include <string.h>

#include "lx.h"

#define FIELD(h, lit) lx_http1_field(h, lit, sizeof(lit) - 1)

int lx_wshake_wanted(const lx_http1_req_t *h)
{
    if (!(h->flags & LX_REQ_UPGRADE))
        return 0;
    lx_str_t up = FIELD(h, "upgrade");
    return up.base != NULL &&
           lx_http1_list_has(up.base, up.len, "websocket", 9);
}

static int b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int lx_wshake_check(const lx_http1_req_t *h, lx_wshake_t *w)
{
    memset(w, 0, sizeof(*w));
    if (h->method.len != 3 || memcmp(h->method.base, "GET", 3) != 0 ||
        h->minor_version < 1)
        return 400;
    lx_str_t v = FIELD(h, "sec-websocket-version");
    if (v.len != 2 || memcmp(v.base, "13", 2) != 0)
        return 426;
    lx_str_t k = FIELD(h, "sec-websocket-key");
    /* 16 bytes in base64: 22 characters and "==" */
    if (k.len != 24 || k.base[22] != '=' || k.base[23] != '=')
        return 400;
    for (int i = 0; i < 22; i++)
        if (!b64(k.base[i]))
            return 400;
    /* the last character holds 2 bits: A, Q, g or w */
    if (strchr("AQgw", k.base[21]) == NULL)
        return 400;
    w->key = k;
    w->protocols = FIELD(h, "sec-websocket-protocol");
    w->origin = FIELD(h, "origin");
    w->extensions = FIELD(h, "sec-websocket-extensions");
    return 0;
}

int lx_wshake_offered(lx_str_t offers, const char *name, size_t n)
{
    size_t i = 0;
    while (i < offers.len) {
        while (i < offers.len &&
               (offers.base[i] == ' ' || offers.base[i] == '\t' ||
                offers.base[i] == ','))
            i++;
        size_t s = i;
        while (i < offers.len && offers.base[i] != ',' &&
               offers.base[i] != ' ' && offers.base[i] != '\t')
            i++;
        if (i - s == n && n > 0 && memcmp(offers.base + s, name, n) == 0)
            return 1;
        while (i < offers.len && offers.base[i] != ',')
            i++;
    }
    return 0;
}

/* A window-bits value: 8..15, -1 otherwise. */
static int bits_of(const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One offer ext[s..e) ("permessage-deflate; p; p=v"): 1 with *d when
 * it is permessage-deflate and acceptable. */
static int one_offer(const char *x, size_t n, int max_bits, lx_deflate_t *d)
{
    size_t i = 0;
    while (i < n && ows(x[i]))
        i++;
    size_t s = i;
    while (i < n && x[i] != ';' && !ows(x[i]))
        i++;
    if (!LX_CASEEQ_LIT(x + s, i - s, "permessage-deflate"))
        return 0;
    memset(d, 0, sizeof(*d));
    d->on = 1;
    d->server_bits = (uint8_t)max_bits;
    d->client_bits = 15;
    int seen[4] = {0, 0, 0, 0};
    while (i < n) {
        while (i < n && (ows(x[i]) || x[i] == ';'))
            i++;
        if (i >= n)
            break;
        size_t ps = i;
        while (i < n && x[i] != '=' && x[i] != ';' && !ows(x[i]))
            i++;
        size_t pn = i - ps;
        const char *val = NULL;
        size_t vn = 0;
        while (i < n && ows(x[i]))
            i++;
        if (i < n && x[i] == '=') {
            i++;
            while (i < n && ows(x[i]))
                i++;
            val = x + i;
            while (i < n && x[i] != ';' && !ows(x[i]))
                i++;
            vn = (size_t)(x + i - val);
        }
        const char *p = x + ps;
        int k;
        if (lx_lowereq(p, pn, "server_no_context_takeover") && !val) {
            k = 0;
            d->server_no_takeover = 1;
        } else if (lx_lowereq(p, pn, "client_no_context_takeover") && !val) {
            k = 1;
            d->client_no_takeover = 1;
        } else if (lx_lowereq(p, pn, "server_max_window_bits")) {
            k = 2;
            int b = val ? bits_of(val, vn) : -1;
            if (b < 0)
                return 0;
            if (b < d->server_bits)
                d->server_bits = (uint8_t)b;
        } else if (lx_lowereq(p, pn, "client_max_window_bits")) {
            k = 3;
            int b = val ? bits_of(val, vn) : 15;
            if (b < 0)
                return 0;
            d->client_bits = (uint8_t)b;
        } else {
            return 0; /* unknown parameter: decline this offer */
        }
        if (seen[k]++)
            return 0; /* a parameter twice */
    }
    /* without client-max-window-bits the client may use 15 bits and we
     * cannot ask for fewer (RFC 7692 7.1.2.2) */
    if (!seen[3])
        d->client_bits = 15;
    /* zlib cannot keep to an 8-bit window (it deflates with 9): an offer
     * that asks for it is declined (RFC 7692 7.1.2.1) */
    return d->server_bits >= 9;
}

int lx_wshake_deflate(lx_str_t ext, int max_bits, lx_deflate_t *d)
{
    size_t i = 0;
    memset(d, 0, sizeof(*d));
    if (ext.base == NULL)
        return 0;
    while (i < ext.len) {
        size_t s = i;
        int quoted = 0;
        while (i < ext.len && (quoted || ext.base[i] != ',')) {
            if (ext.base[i] == '"')
                quoted = !quoted;
            i++;
        }
        if (one_offer(ext.base + s, i - s, max_bits, d))
            return 1;
        i++;
    }
    memset(d, 0, sizeof(*d));
    return 0;
}

size_t lx_wshake_deflate_answer(const lx_deflate_t *d, char *out, size_t cap)
{
    int n =
        snprintf(out, cap, "permessage-deflate%s%s",
                 d->server_no_takeover ? "; server_no_context_takeover" : "",
                 d->client_no_takeover ? "; client_no_context_takeover" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    if (d->server_bits < 15) {
        n = snprintf(out + len, cap - len, "; server_max_window_bits=%d",
                     d->server_bits);
        if (n > 0 && (size_t)n < cap - len)
            len += (size_t)n;
    }
    if (d->client_bits < 15) {
        n = snprintf(out + len, cap - len, "; client_max_window_bits=%d",
                     d->client_bits);
        if (n > 0 && (size_t)n < cap - len)
            len += (size_t)n;
    }
    return len;
}

/* ------------------------------------------------------------------ */
/* the 101 */

static size_t lit_len(const char *s)
{
    return strlen(s);
}

/* Whether the field line [p, p + n) is one the handshake owns or one
 * that frames a body: the application's copy is left out. */
static int field_is_ours(const char *p, size_t n)
{
    static const char *const names[] = {
        "upgrade:",
        "connection:",
        "sec-websocket-accept:",
        "sec-websocket-extensions:",
        "sec-websocket-protocol:",
        "content-length:",
        "transfer-encoding:",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t k = lit_len(names[i]);
        if (n >= k && lx_lowereq(p, k, names[i]))
            return 1;
    }
    return 0;
}

size_t lx_wshake_response_max(const lx_wshake_answer_t *a)
{
    /* the status line and our three fields (127 bytes), the protocol's
     * and the extension's names (52), the extension's parameters (at most
     * 127: lx_wshake_deflate_answer's buffer), the CRLFs */
    return 320 + a->protocol.len + a->fields.len + a->server.len;
}

size_t lx_wshake_response(const lx_wshake_answer_t *a, char *out)
{
    char *o = out;
    size_t cap = lx_wshake_response_max(a);
    o += snprintf(o, cap,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %.28s\r\n",
                  a->accept);
    if (a->protocol.len > 0) {
        memcpy(o, "Sec-WebSocket-Protocol: ", 24);
        memcpy(o + 24, a->protocol.base, a->protocol.len);
        o += 24 + a->protocol.len;
        *o++ = '\r';
        *o++ = '\n';
    }
    if (a->deflate != NULL && a->deflate->on) {
        char ext[128];
        size_t n = lx_wshake_deflate_answer(a->deflate, ext, sizeof(ext));
        memcpy(o, "Sec-WebSocket-Extensions: ", 26);
        memcpy(o + 26, ext, n);
        o += 26 + n;
        *o++ = '\r';
        *o++ = '\n';
    }
    int has_server = 0;
    const char *p = a->fields.base, *e = p + a->fields.len;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *end = nl != NULL ? nl + 1 : e;
        size_t n = (size_t)(end - p);
        if (!field_is_ours(p, n)) {
            if (n >= 7 && lx_lowereq(p, 7, "server:"))
                has_server = 1;
            memcpy(o, p, n);
            o += n;
        }
        p = end;
    }
    if (!has_server && a->server.len > 0) {
        memcpy(o, a->server.base, a->server.len);
        o += a->server.len;
    }
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - out);
}

int lx_wshake_field(const char *p, size_t n, const char *name, lx_str_t *value)
{
    size_t k = lit_len(name);
    const char *e = p + n;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *end = nl != NULL ? nl : e;
        if ((size_t)(end - p) >= k && lx_lowereq(p, k, name)) {
            const char *v = p + k, *ve = end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v &&
                   (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            value->base = v;
            value->len = (size_t)(ve - v);
            return 1;
        }
        p = end + 1;
    }
    return 0;
}
