/* Strict incremental HTTP/1.1 request parser and chunked decoder.
 *
 * The head parser keeps no state between calls: it re-scans the buffer from
 * the start each time, so the caller only has to keep the bytes. Every
 * decision is taken at the first byte that settles it and depends only on the
 * bytes before it, which is what makes a prefix give either LX_AGAIN or the
 * very error the whole input gives. */
#include "http1.h"

#include <limits.h>
#include <string.h>

/* Character classes (RFC 9110 5.6.2 tchar, RFC 9112 3.2 request-target,
 * RFC 9110 5.5 field-value bytes, HEXDIG). */
#define C_TCHAR 0x01  /* token character */
#define C_TARGET 0x02 /* request-target byte: 0x21-0x7E but '#' */
#define C_VALUE 0x04  /* field-value byte: HTAB, SP, VCHAR, obs-text */
#define C_HEX 0x08    /* HEXDIG */

static const unsigned char ctab[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0, 0, 0, 0, 0, 0, /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, 0, 0, 0, 0, 0, /* 0x10 */
    4,  7,  6,  5,  7,  7,  7,  7,  6,  6,  7, 7, 6, 7, 7, 6, /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 6, 6, 6, /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7, 7, 7, 7, 7, 7, /* 0x40 */
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, 6, 6, 6, 7, 7, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7, 7, 7, 7, 7, 7, /* 0x60 */
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, 6, 7, 6, 7, 0, /* 0x70 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0x80 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0x90 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xa0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xb0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xc0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xd0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xe0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4, 4, 4, 4, 4, 4, /* 0xf0 */
};

typedef const unsigned char *uptr;

#if defined(__has_attribute)
#if __has_attribute(fallthrough)
#define FALLTHROUGH __attribute__((fallthrough))
#endif
#endif
#ifndef FALLTHROUGH
#define FALLTHROUGH ((void)0)
#endif

/* First byte in [p, e) outside class `cls`, or e. Unrolled because header
 * values and targets are where the time goes. */
static inline uptr scan_class(uptr p, uptr e, unsigned cls)
{
    while (e - p >= 8) {
        if (!(ctab[p[0]] & cls))
            return p;
        if (!(ctab[p[1]] & cls))
            return p + 1;
        if (!(ctab[p[2]] & cls))
            return p + 2;
        if (!(ctab[p[3]] & cls))
            return p + 3;
        if (!(ctab[p[4]] & cls))
            return p + 4;
        if (!(ctab[p[5]] & cls))
            return p + 5;
        if (!(ctab[p[6]] & cls))
            return p + 6;
        if (!(ctab[p[7]] & cls))
            return p + 7;
        p += 8;
    }
    while (p < e && (ctab[*p] & cls))
        p++;
    return p;
}

static inline int is_ows(unsigned c)
{
    return c == ' ' || c == '\t';
}

/* Header facts gathered while parsing, checked at the end of the head. */
typedef struct {
    unsigned cl_seen : 1;
    unsigned te_seen : 1;
    unsigned te_chunked : 1;
    unsigned te_other : 1;
    unsigned host_seen : 1;
    unsigned conn_close : 1;
    unsigned conn_keepalive : 1;
    unsigned conn_upgrade : 1;
    unsigned expect100 : 1;
    unsigned ct_seen : 1;
    int64_t content_length;
} facts_t;

/* Split a comma-separated list value into trimmed, non-empty elements.
 * Returns the next element start, or NULL when the list is exhausted. */
static uptr next_elem(uptr p, uptr e, uptr *es, uptr *ee)
{
    for (;;) {
        while (p < e && (is_ows(*p) || *p == ','))
            p++;
        if (p == e)
            return NULL;
        uptr s = p;
        while (p < e && *p != ',')
            p++;
        uptr t = p;
        while (t > s && is_ows(t[-1]))
            t--;
        *es = s;
        *ee = t;
        return p;
    }
}

/* Whether a list value has an empty element ("a,", ",a", "a, ,b"). RFC
 * 9110 5.6.1 lets a recipient skip them, but a proxy in front may read
 * such a Transfer-Encoding differently: refusing it is the safe side. */
static int list_has_empty(uptr p, uptr e)
{
    int empty = 1; /* the current element has no byte but OWS so far */
    for (; p < e; p++) {
        if (*p == ',') {
            if (empty)
                return 1;
            empty = 1;
        } else if (!is_ows(*p)) {
            empty = 0;
        }
    }
    return empty;
}

/* RFC 3986 authority (userinfo@host:port) of an absolute-form or
 * authority-form target: reg-name or bracketed IP literal, digits port. */
static int authority_ok(uptr p, uptr e, int need_port)
{
    uptr at = NULL;
    for (uptr q = p; q < e; q++)
        if (*q == '@')
            at = q;
    if (at != NULL)
        p = at + 1;
    if (p < e && *p == '[') {
        uptr close = memchr(p, ']', (size_t)(e - p));
        if (close == NULL || close == p + 1)
            return 0;
        for (uptr q = p + 1; q < close; q++)
            if (!((ctab[*q] & C_HEX) || *q == ':' || *q == '.'))
                return 0;
        p = close + 1;
    } else {
        uptr h = p;
        while (p < e && *p != ':') {
            unsigned char c = *p;
            if (!((ctab[c] & C_TCHAR) || c == '(' || c == ')' || c == ',' ||
                  c == ';' || c == '=') ||
                c == '^' || c == '`' || c == '|' || c == '#')
                return 0;
            p++;
        }
        if (p == h)
            return 0;
    }
    if (p == e)
        return !need_port;
    if (*p != ':')
        return 0;
    for (p++; p < e; p++)
        if ((unsigned)*p - '0' > 9)
            return 0;
    return 1;
}

/* RFC 9112 3.2: origin-form for any method, absolute-form for any method,
 * authority-form only and always for CONNECT, asterisk-form only for
 * OPTIONS. Anything else ("foo/bar") is refused. */
static int target_form_ok(uptr m, size_t mlen, uptr t, size_t tlen)
{
    int connect = mlen == 7 && memcmp(m, "CONNECT", 7) == 0;
    if (connect)
        return authority_ok(t, t + tlen, 1);
    if (t[0] == '/')
        return 1;
    if (tlen == 1 && t[0] == '*')
        return mlen == 7 && memcmp(m, "OPTIONS", 7) == 0;
    /* absolute-form: scheme "://" authority [ path-abempty ] [ "?" query ] */
    uptr p = t, e = t + tlen;
    if (!((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
        return 0;
    while (p < e &&
           (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') ||
            ((unsigned)*p - '0' <= 9) || *p == '+' || *p == '-' || *p == '.'))
        p++;
    if (e - p < 3 || p[0] != ':' || p[1] != '/' || p[2] != '/')
        return 0;
    p += 3;
    uptr a = p;
    while (p < e && *p != '/' && *p != '?')
        p++;
    return authority_ok(a, p, 0);
}

int lx_http1_is_token(const char *s, size_t n)
{
    uptr p = (uptr)s;
    return n > 0 && scan_class(p, p + n, C_TCHAR) == p + n;
}

int lx_http1_list_has(const char *v, size_t n, const char *lower, size_t len)
{
    uptr p = (uptr)v, e = p + n, es, ee;
    while ((p = next_elem(p, e, &es, &ee)) != NULL)
        if ((size_t)(ee - es) == len &&
            lx_caseeq((const char *)es, lower, len))
            return 1;
    return 0;
}

/* Whether SP or HTAB is among the n bytes at v. */
static int has_ows(uptr v, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, v + i, 8);
        if (LX_HAS_BYTE(x, ' ') | LX_HAS_BYTE(x, '\t'))
            return 1;
    }
    for (; i < n; i++)
        if (is_ows(v[i]))
            return 1;
    return 0;
}

/* Apply the meaning of one header field. Returns 0 or an error status. */
static int header_semantics(facts_t *f, uptr n, size_t nlen, uptr v,
                            size_t vlen, int minor)
{
    uptr ve = v + vlen, es, ee, q;

    switch (nlen) {
    case 4:
        if (!LX_CASEEQ_LIT(n, nlen, "host"))
            return 0;
        if (f->host_seen)
            return 400;
        f->host_seen = 1;
        return has_ows(v, vlen) ? 400 : 0;
    case 6:
        if (!LX_CASEEQ_LIT(n, nlen, "expect"))
            return 0;
        if (LX_CASEEQ_LIT(v, vlen, "100-continue"))
            f->expect100 = 1;
        return 0;
    case 10:
        if (!LX_CASEEQ_LIT(n, nlen, "connection"))
            return 0;
        q = v;
        while ((q = next_elem(q, ve, &es, &ee)) != NULL) {
            size_t el = (size_t)(ee - es);
            if (LX_CASEEQ_LIT(es, el, "close"))
                f->conn_close = 1;
            else if (LX_CASEEQ_LIT(es, el, "keep-alive"))
                f->conn_keepalive = 1;
            else if (LX_CASEEQ_LIT(es, el, "upgrade"))
                f->conn_upgrade = 1;
        }
        return 0;
    case 12:
        /* A singleton field: two would reach the application joined. */
        if (!LX_CASEEQ_LIT(n, nlen, "content-type"))
            return 0;
        if (f->ct_seen)
            return 400;
        f->ct_seen = 1;
        return 0;
    case 14:
        if (!LX_CASEEQ_LIT(n, nlen, "content-length"))
            return 0;
        /* A second one, even equal, and any sign, space or list are refused:
         * two parsers that disagree on the length is how smuggling starts. */
        if (f->cl_seen || f->te_seen)
            return 400;
        if (vlen == 0 || vlen > 18)
            return 400;
        {
            int64_t x = 0;
            for (size_t i = 0; i < vlen; i++) {
                unsigned d = (unsigned)v[i] - '0';
                if (d > 9)
                    return 400;
                x = x * 10 + (int64_t)d;
            }
            f->content_length = x;
        }
        f->cl_seen = 1;
        return 0;
    case 17:
        if (!LX_CASEEQ_LIT(n, nlen, "transfer-encoding"))
            return 0;
        if (minor == 0 || f->cl_seen)
            return 400;
        if (vlen == 0 || list_has_empty(v, ve))
            return 400;
        f->te_seen = 1;
        q = v;
        while ((q = next_elem(q, ve, &es, &ee)) != NULL) {
            /* Only bare tokens: a parameter or anything odd is a 400. */
            for (uptr c = es; c < ee; c++)
                if (!(ctab[*c] & C_TCHAR))
                    return 400;
            if (f->te_chunked)
                return 400; /* chunked twice, or not last */
            if (LX_CASEEQ_LIT(es, (size_t)(ee - es), "chunked"))
                f->te_chunked = 1;
            else
                f->te_other = 1;
        }
        return 0;
    default:
        return 0;
    }
}

int lx_http1_parse_request(const char *buf, size_t len, lx_http1_req_t *req,
                           const lx_http1_limits_t *limits, int *status)
{
    uptr start = (uptr)buf, p = start, end = start + len, line, ce, tok;
    size_t max_line = limits->max_request_line;
    size_t max_field = limits->max_field_size;
    size_t max_hdrs = limits->max_fields;
    size_t n = 0;
    int st = 400, minor;
    facts_t f;

    if (req->num_headers < max_hdrs)
        max_hdrs = req->num_headers;
    memset(&f, 0, sizeof f);
    req->flags = 0;
    req->content_length = -1;

    /* Empty lines before the request line (RFC 9112 2.2), bounded so that a
     * stream of CRLFs cannot grow the caller's buffer forever. */
    for (;;) {
        if (p == end)
            return LX_AGAIN;
        if (*p != '\r')
            break;
        if (end - p < 2)
            return LX_AGAIN;
        if (p[1] != '\n')
            goto fail;
        p += 2;
        if ((size_t)(p - start) > max_line)
            goto fail;
    }

    /* request-line. Content may occupy positions [0, max_line); at position
     * max_line only the CR of the CRLF is acceptable, anything else means
     * the line is too long (414) and is known before it ends. */
    line = p;
    ce = ((size_t)(end - line) > max_line) ? line + max_line : end;

#define AT_LINE_END(lim_status)      \
    do {                             \
        if (p == end)                \
            return LX_AGAIN;         \
        if (p == ce && *p != '\r') { \
            st = (lim_status);       \
            goto fail;               \
        }                            \
    } while (0)

    p = scan_class(p, ce, C_TCHAR);
    AT_LINE_END(414);
    if (p == line || *p != ' ')
        goto fail;
    req->method.base = (const char *)line;
    req->method.len = (size_t)(p - line);
    tok = ++p;

    p = scan_class(p, ce, C_TARGET);
    AT_LINE_END(414);
    if (p == tok || *p != ' ')
        goto fail;
    req->target.base = (const char *)tok;
    req->target.len = (size_t)(p - tok);
    if (!target_form_ok(line, req->method.len, tok, req->target.len))
        goto fail;
    {
        uptr qm = memchr(tok, '?', (size_t)(p - tok));
        req->path.base = (const char *)tok;
        if (qm) {
            req->path.len = (size_t)(qm - tok);
            req->query.base = (const char *)qm + 1;
            req->query.len = (size_t)(p - qm - 1);
        } else {
            req->path.len = (size_t)(p - tok);
            req->query.base = (const char *)p;
            req->query.len = 0;
        }
    }
    tok = ++p;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, then CRLF. The usual whole
     * line end first, then byte by byte, which tells the first byte in
     * error (or the end of the bytes so far, or of the line's limit). */
    if (end - p >= 10 && ce - p >= 8 && memcmp(p, "HTTP/1.", 7) == 0 &&
        (p[7] == '1' || p[7] == '0') && p[8] == '\r' && p[9] == '\n') {
        minor = p[7] - '0';
        p += 10;
        goto version_done;
    }
    for (int i = 0; i < 8; i++, p++) {
        AT_LINE_END(414);
        unsigned c = *p;
        if (i == 5 || i == 7) {
            if (c - '0' > 9)
                goto fail;
        } else if (c != (unsigned char)"HTTP/x.y"[i]) {
            goto fail;
        }
    }
    AT_LINE_END(414);
    if (*p != '\r')
        goto fail;
    if (end - p < 2)
        return LX_AGAIN;
    if (p[1] != '\n')
        goto fail;
    p += 2;
    if (tok[5] != '1' || tok[7] > '1') {
        st = 505;
        goto fail;
    }
    minor = tok[7] - '0';
version_done:
    req->minor_version = minor;

    /* header fields */
    for (;;) {
        uptr name, name_end, val, val_end;

        if (p == end)
            return LX_AGAIN;
        if (*p == '\r') {
            if (end - p < 2)
                return LX_AGAIN;
            if (p[1] != '\n')
                goto fail;
            p += 2;
            break;
        }
        if (is_ows(*p))
            goto fail; /* obs-fold */
        if (n >= max_hdrs) {
            st = 431;
            goto fail;
        }
        line = name = p;
        ce = ((size_t)(end - line) > max_field) ? line + max_field : end;

        p = scan_class(p, ce, C_TCHAR);
        AT_LINE_END(431);
        if (p == name || *p != ':')
            goto fail;
        name_end = p++;
        while (p < ce && is_ows(*p))
            p++;
        val = p;
        p = scan_class(p, ce, C_VALUE);
        if (p == end)
            return LX_AGAIN;
        if (*p != '\r') {
            if (p == ce)
                st = 431;
            goto fail;
        }
        if (end - p < 2)
            return LX_AGAIN;
        if (p[1] != '\n')
            goto fail;
        val_end = p;
        while (val_end > val && is_ows(val_end[-1]))
            val_end--;
        p += 2;

        req->headers[n].name.base = (const char *)name;
        req->headers[n].name.len = (size_t)(name_end - name);
        req->headers[n].value.base = (const char *)val;
        req->headers[n].value.len = (size_t)(val_end - val);
        n++;
        int hs = header_semantics(&f, name, (size_t)(name_end - name), val,
                                  (size_t)(val_end - val), minor);
        if (hs) {
            st = hs;
            goto fail;
        }
    }
#undef AT_LINE_END

    if (minor == 1 && !f.host_seen)
        goto fail;
    if (f.te_seen) {
        if (f.te_other) {
            st = 501;
            goto fail;
        }
        if (!f.te_chunked)
            goto fail; /* only empty list elements */
        req->flags |= LX_REQ_CHUNKED | LX_REQ_HAS_BODY;
    } else if (f.cl_seen) {
        req->content_length = f.content_length;
        if (f.content_length > 0)
            req->flags |= LX_REQ_HAS_BODY;
    }
    if (!f.conn_close && (minor == 1 || f.conn_keepalive))
        req->flags |= LX_REQ_KEEPALIVE;
    if (f.conn_upgrade)
        req->flags |= LX_REQ_UPGRADE;
    if (f.expect100 && minor == 1)
        req->flags |= LX_REQ_EXPECT_100;
    if ((size_t)(p - start) > (size_t)INT_MAX) {
        st = 431;
        goto fail;
    }
    req->num_headers = n;
    return (int)(p - start);

fail:
    *status = st;
    return LX_ERR;
}

/* ---- chunked transfer coding (RFC 9112 7.1) ---- */

enum {
    CH_SIZE_START = 0, /* first HEXDIG of chunk-size */
    CH_SIZE,           /* more HEXDIG, or what follows the size */
    CH_EXT_BWS,        /* BWS before ';' */
    CH_EXT_NAME_START, /* BWS, then first tchar of ext-name */
    CH_EXT_NAME,       /* more tchar of ext-name */
    CH_EXT_NAME_BWS,   /* BWS after ext-name: '=' or ';' next */
    CH_EXT_VAL_START,  /* BWS, then token or quoted-string */
    CH_EXT_VAL_TOKEN,
    CH_EXT_VAL_QUOTED,
    CH_EXT_VAL_QPAIR, /* after a backslash inside the quoted-string */
    CH_EXT_VAL_DONE,  /* after the closing quote */
    CH_SIZE_LF,       /* CR seen at the end of the size line */
    CH_DATA,          /* inside chunk-data: d->remaining bytes left */
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_END,
    CH_ERROR
};

#define CH_MAX_SIZE_LINE 4096
#define CH_MAX_TRAILER_LINE 8192
#define CH_MAX_TRAILERS 64
#define CH_MAX_HEX 16

void lx_chunked_init(lx_chunked_t *d)
{
    memset(d, 0, sizeof *d);
}

int lx_chunked_in_data(const lx_chunked_t *d)
{
    return d->state == CH_DATA && d->remaining > 0;
}

void lx_chunked_take(lx_chunked_t *d, uint64_t n)
{
    d->remaining -= (n <= d->remaining) ? n : d->remaining;
}

int lx_chunked_parse(lx_chunked_t *d, const char *buf, size_t len,
                     size_t *consumed)
{
    uptr p = (uptr)buf, end = p + len;
    uint32_t state = d->state;
    int rc;

    if (state == CH_ERROR) {
        *consumed = 0;
        return LX_ERR;
    }

    for (; p < end || state == CH_DATA || state == CH_END; p++) {
        unsigned c;

        if (state == CH_DATA) {
            if (d->remaining > 0) {
                rc = LX_CHUNKED_DATA;
                goto out;
            }
            state = CH_DATA_CR;
            if (p == end)
                break;
        } else if (state == CH_END) {
            rc = LX_CHUNKED_END;
            goto out;
        }
        c = *p;

        /* Size-line bytes count against their limit; the CR does not. */
        if (state <= CH_EXT_VAL_DONE && c != '\r' &&
            ++d->line_len > CH_MAX_SIZE_LINE)
            goto fail;

        switch (state) {
        case CH_SIZE_START:
            if (!(ctab[c] & C_HEX))
                goto fail;
            d->remaining = 0;
            state = CH_SIZE;
            FALLTHROUGH;
        case CH_SIZE:
            if (ctab[c] & C_HEX) {
                /* the digits open the line, so line_len counts them */
                if (d->line_len > CH_MAX_HEX)
                    goto fail;
                d->remaining =
                    (d->remaining << 4) |
                    (uint64_t)((c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10);
                break;
            }
            FALLTHROUGH;
        case CH_EXT_BWS:
        case CH_EXT_VAL_DONE:
            if (is_ows(c))
                state = CH_EXT_BWS;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r' && state != CH_EXT_BWS)
                state = CH_SIZE_LF;
            else
                goto fail;
            break;
        case CH_EXT_NAME_START:
            if (is_ows(c))
                break;
            if (!(ctab[c] & C_TCHAR))
                goto fail;
            state = CH_EXT_NAME;
            break;
        case CH_EXT_NAME:
            if (ctab[c] & C_TCHAR)
                break;
            FALLTHROUGH;
        case CH_EXT_NAME_BWS:
            if (is_ows(c))
                state = CH_EXT_NAME_BWS;
            else if (c == '=')
                state = CH_EXT_VAL_START;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r' && state == CH_EXT_NAME)
                state = CH_SIZE_LF;
            else
                goto fail;
            break;
        case CH_EXT_VAL_START:
            if (is_ows(c))
                break;
            if (c == '"')
                state = CH_EXT_VAL_QUOTED;
            else if (ctab[c] & C_TCHAR)
                state = CH_EXT_VAL_TOKEN;
            else
                goto fail;
            break;
        case CH_EXT_VAL_TOKEN:
            if (ctab[c] & C_TCHAR)
                break;
            if (is_ows(c))
                state = CH_EXT_BWS;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r')
                state = CH_SIZE_LF;
            else
                goto fail;
            break;
        case CH_EXT_VAL_QUOTED:
            if (c == '"')
                state = CH_EXT_VAL_DONE;
            else if (c == '\\')
                state = CH_EXT_VAL_QPAIR;
            else if (!(ctab[c] & C_VALUE))
                goto fail;
            break;
        case CH_EXT_VAL_QPAIR:
            if (!(ctab[c] & C_VALUE))
                goto fail;
            state = CH_EXT_VAL_QUOTED;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                goto fail;
            d->line_len = 0;
            if (d->remaining == 0) {
                state = CH_TRAILER_START;
            } else {
                state = CH_DATA;
                p++;
                rc = LX_CHUNKED_DATA;
                goto out;
            }
            break;
        case CH_DATA_CR:
            if (c != '\r')
                goto fail;
            state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                goto fail;
            state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                state = CH_END_LF;
                break;
            }
            /* A trailer line is held to the rules of a header line. */
            if (!(ctab[c] & C_TCHAR))
                goto fail;
            if (++d->trailer_count > CH_MAX_TRAILERS)
                goto fail;
            d->line_len = 1;
            state = CH_TRAILER_NAME;
            break;
        case CH_TRAILER_NAME:
            if (++d->line_len > CH_MAX_TRAILER_LINE)
                goto fail;
            if (c == ':')
                state = CH_TRAILER_VALUE;
            else if (!(ctab[c] & C_TCHAR))
                goto fail;
            break;
        case CH_TRAILER_VALUE:
            if (c == '\r') {
                state = CH_TRAILER_LF;
                break;
            }
            if (++d->line_len > CH_MAX_TRAILER_LINE)
                goto fail;
            if (!(ctab[c] & C_VALUE))
                goto fail;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                goto fail;
            d->line_len = 0;
            state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (c != '\n')
                goto fail;
            state = CH_END;
            p++;
            rc = LX_CHUNKED_END;
            goto out;
        default: /* CH_ERROR */
            goto fail;
        }
    }
    rc = LX_AGAIN;
out:
    d->state = state;
    *consumed = (size_t)(p - (uptr)buf);
    return rc;
fail:
    d->state = CH_ERROR;
    *consumed = (size_t)(p - (uptr)buf);
    return LX_ERR;
}

lx_str_t lx_http1_origin_path(lx_str_t path)
{
    if (path.len > 0 && path.base[0] != '/') {
        const char *sep = memchr(path.base, ':', path.len);
        if (sep != NULL && (size_t)(sep - path.base) + 3 <= path.len &&
            sep[1] == '/' && sep[2] == '/') {
            const char *auth = sep + 3, *end = path.base + path.len;
            const char *slash = memchr(auth, '/', (size_t)(end - auth));
            path.base = slash ? slash : "/";
            path.len = slash ? (size_t)(end - slash) : 1;
        }
    }
    return path;
}

lx_str_t lx_http1_field(const lx_http1_req_t *h, const char *lower, size_t n)
{
    for (size_t i = 0; i < h->num_headers; i++)
        if (h->headers[i].name.len == n &&
            lx_caseeq(h->headers[i].name.base, lower, n))
            return h->headers[i].value;
    lx_str_t none = {NULL, 0};
    return none;
}
