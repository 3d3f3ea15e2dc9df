/* Proxy headers (fwd.h): the trusted peers' table, and RFC 7239 Forwarded
 * and X-Forwarded-* read strictly. */
#define _POSIX_C_SOURCE 200809L
#include "fwd.h"
#include "iptext.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------ */
/* addresses */

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_alpha(int ch)
{
    ch |= 0x20;
    return ch >= 'a' && ch <= 'z';
}

/* An address of either family: AF_INET or AF_INET6, or -1. */
static int parse_ip(const char *s, size_t n, uint8_t out[16])
{
    if (memchr(s, ':', n) != NULL)
        return lx_ipv6_parse(s, n, out) == 0 ? AF_INET6 : -1;
    return lx_ipv4_parse(s, n, out) == 0 ? AF_INET : -1;
}

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0,    0,
                                      0, 0, 0, 0, 0xff, 0xff};

/* 1 to 5 digits, 1-65535; -1 for anything else. */
static int32_t parse_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return -1;
    int32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* ------------------------------------------------------------------ */
/* the table of trusted peers */

static int parse_net(const char *s, size_t n, lx_fwd_net_t *net)
{
    const char *slash = memchr(s, '/', n);
    size_t an = slash ? (size_t)(slash - s) : n;
    memset(net, 0, sizeof(*net));
    int family = parse_ip(s, an, net->addr);
    if (family < 0)
        return -1;
    unsigned max = family == AF_INET ? 32 : 128, bits = max;
    if (slash != NULL) {
        const char *b = slash + 1;
        size_t bn = n - an - 1;
        if (bn == 0 || bn > 3 || (b[0] == '0' && bn > 1))
            return -1;
        bits = 0;
        for (size_t i = 0; i < bn; i++) {
            if (!is_digit((unsigned char)b[i]))
                return -1;
            bits = bits * 10 + (unsigned)(b[i] - '0');
        }
        if (bits > max)
            return -1;
    }
    /* no bit set past the prefix */
    for (unsigned i = 0; i < max / 8; i++) {
        unsigned keep = bits >= (i + 1) * 8 ? 8
                        : bits > i * 8      ? bits - i * 8
                                            : 0;
        uint8_t mask = (uint8_t)(0xff00u >> keep);
        if (net->addr[i] & (uint8_t)~mask)
            return -1;
    }
    /* ::ffff:a.b.c.d/96+ is IPv4's a.b.c.d/0+ */
    if (family == AF_INET6 && bits >= 96 &&
        memcmp(net->addr, v4_mapped, 12) == 0) {
        memmove(net->addr, net->addr + 12, 4);
        memset(net->addr + 4, 0, 12);
        family = AF_INET;
        bits -= 96;
    }
    net->family = (uint8_t)family;
    net->bits = (uint8_t)bits;
    return 0;
}

void lx_fwd_allow_free(lx_fwd_allow_t *t)
{
    free(t->nets);
    memset(t, 0, sizeof(*t));
}

static int is_ows(int ch)
{
    return ch == ' ' || ch == '\t';
}

/* s[*i..) up to the next ',' (or the end), OWS trimmed; *i moves past the
 * comma. */
static lx_str_t next_item(const char *s, size_t n, size_t *i)
{
    size_t a = *i, b;
    const char *comma = memchr(s + a, ',', n - a);
    b = comma ? (size_t)(comma - s) : n;
    *i = comma ? b + 1 : n + 1;
    while (a < b && is_ows((unsigned char)s[a]))
        a++;
    while (b > a && is_ows((unsigned char)s[b - 1]))
        b--;
    return (lx_str_t){s + a, b - a};
}

int lx_fwd_allow_parse(lx_fwd_allow_t *t, const char *s, size_t n,
                       const char **bad, size_t *bad_len)
{
    lx_fwd_allow_free(t);
    size_t count = 0, i;
    for (i = 0; i < n; i++)
        count += s[i] == ',';
    if (n == 0)
        return 0;
    t->nets = malloc((count + 1) * sizeof(*t->nets));
    if (t->nets == NULL)
        return -2;
    i = 0;
    while (i <= n) {
        lx_str_t e = next_item(s, n, &i);
        if (e.len == 1 && e.base[0] == '*') {
            t->any = 1;
        } else if (e.len == 4 && lx_lowereq(e.base, 4, "unix")) {
            t->unix_peers = 1;
        } else if (e.len == 0 ||
                   parse_net(e.base, e.len, &t->nets[t->n]) < 0) {
            *bad = e.base;
            *bad_len = e.len;
            lx_fwd_allow_free(t);
            return -1;
        } else {
            t->n++;
        }
    }
    return 0;
}

static int net_contains(const lx_fwd_net_t *net, const uint8_t *addr)
{
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (addr[full] & mask) == net->addr[full];
}

int lx_fwd_trusted(const lx_fwd_allow_t *t, int family, const uint8_t *addr)
{
    if (t->any)
        return 1;
    if (family == AF_UNIX)
        return t->unix_peers;
    if (family == AF_INET6 && memcmp(addr, v4_mapped, 12) == 0) {
        family = AF_INET;
        addr += 12;
    }
    if (family != AF_INET && family != AF_INET6)
        return 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->nets[i].family == family && net_contains(&t->nets[i], addr))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the fields */

int lx_fwd_header(const char *name, size_t n)
{
    switch (n) {
    case 9:
        return lx_caseeq(name, "forwarded", 9);
    case 15:
        return lx_caseeq(name, "x-forwarded-for", 15);
    case 16:
        return lx_caseeq(name, "x-forwarded-host", 16) ||
               lx_caseeq(name, "x-forwarded-port", 16);
    case 17:
        return lx_caseeq(name, "x-forwarded-proto", 17);
    default:
        return 0;
    }
}

/* A node of the chain, as a proxy wrote it. */
enum { NODE_NONE = 0, NODE_ADDR, NODE_HIDDEN };
typedef struct {
    uint8_t kind;   /* NODE_*: NONE when no "for" was given */
    uint8_t family; /* of an address */
    uint8_t scheme; /* Forwarded's proto */
    uint8_t host_quoted;
    int32_t port;
    uint8_t addr[16];
    lx_str_t host; /* Forwarded's host, as sent (quoted or not) */
} node_t;

/* A chain longer than this is not read. */
#define MAX_NODES 32

static int is_tchar(int ch)
{
    return is_alpha(ch) || is_digit(ch) ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* obfnode and obfport: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ) */
static int is_obfuscated(const char *s, size_t n)
{
    if (n < 2 || s[0] != '_')
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(is_alpha(ch) || is_digit(ch) || ch == '.' || ch == '_' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

/* node = nodename [ ":" node-port ] (RFC 7239 6), or with bare (bare
 * IPv6 and "unknown" only, as X-Forwarded-For writes them) a bare IPv6
 * address too. 0, or -1 when it is none. */
static int parse_node(const char *s, size_t n, node_t *nd, int xff)
{
    const char *name = s, *port = NULL;
    size_t name_len = n, port_len = 0;
    nd->port = -1;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return -1;
        name = s + 1;
        name_len = (size_t)(close - s) - 1;
        size_t after = (size_t)(close - s) + 1;
        if (after < n) {
            if (s[after] != ':')
                return -1;
            port = s + after + 1;
            port_len = n - after - 1;
        }
        if (lx_ipv6_parse(name, name_len, nd->addr) < 0)
            return -1;
        nd->family = AF_INET6;
        nd->kind = NODE_ADDR;
    } else {
        const char *colon = memchr(s, ':', n);
        if (xff && colon != NULL &&
            memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
            /* a bare IPv6 address */
            if (lx_ipv6_parse(s, n, nd->addr) < 0)
                return -1;
            nd->family = AF_INET6;
            nd->kind = NODE_ADDR;
            return 0;
        }
        if (colon != NULL) {
            name_len = (size_t)(colon - s);
            port = colon + 1;
            port_len = n - name_len - 1;
        }
        if (name_len == 7 && lx_lowereq(name, 7, "unknown")) {
            nd->kind = NODE_HIDDEN;
        } else if (!xff && is_obfuscated(name, name_len)) {
            nd->kind = NODE_HIDDEN;
        } else if (lx_ipv4_parse(name, name_len, nd->addr) == 0) {
            nd->family = AF_INET;
            nd->kind = NODE_ADDR;
        } else {
            return -1;
        }
    }
    if (port != NULL) {
        if (!xff && is_obfuscated(port, port_len))
            return 0;
        if ((nd->port = parse_port(port, port_len)) < 0)
            return -1;
    }
    return 0;
}

/* "http" or "https", any case: LX_FWD_SCHEME_*, or -1. */
static int parse_scheme(const char *s, size_t n)
{
    if (n == 4 && lx_lowereq(s, 4, "http"))
        return LX_FWD_SCHEME_HTTP;
    if (n == 5 && lx_lowereq(s, 5, "https"))
        return LX_FWD_SCHEME_HTTPS;
    return -1;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2): an IP literal in brackets,
 * or a name of letters, digits, "-._~!$&'()*+=" and %XX. Returns the port
 * (0 when none was given), or -1. */
static int32_t parse_host(const char *s, size_t n)
{
    size_t i = 0;
    uint8_t addr[16];
    if (n == 0 || n > LX_FWD_HOST_MAX)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL ||
            lx_ipv6_parse(s + 1, (size_t)(close - s) - 1, addr))
            return -1;
        i = (size_t)(close - s) + 1;
    } else {
        while (i < n && s[i] != ':') {
            unsigned char ch = (unsigned char)s[i];
            if (ch == '%') {
                if (i + 2 >= n || lx_hexval((unsigned char)s[i + 1]) < 0 ||
                    lx_hexval((unsigned char)s[i + 2]) < 0)
                    return -1;
                i += 3;
                continue;
            }
            if (!(is_alpha(ch) || is_digit(ch) ||
                  (ch != 0 && strchr("-._~!$&'()*+=", ch) != NULL)))
                return -1;
            i++;
        }
        if (i == 0)
            return -1;
    }
    if (i == n)
        return 0;
    if (s[i] != ':')
        return -1;
    return parse_port(s + i + 1, n - i - 1);
}

/* A quoted-string at s[0] == '"': its end (past the closing quote) in
 * *end, its content unescaped into dst (cap bytes; NULL: only checked).
 * The length of the content, or -1 when malformed or longer than cap. */
static long unquote(const char *s, size_t n, size_t *end, char *dst,
                    size_t cap)
{
    size_t i = 1, o = 0;
    while (i < n && s[i] != '"') {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\') {
            if (++i >= n)
                return -1;
            ch = (unsigned char)s[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return -1;
        } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return -1;
        }
        if (dst != NULL) {
            if (o >= cap)
                return -1;
            dst[o] = (char)ch;
        }
        o++;
        i++;
    }
    if (i >= n)
        return -1;
    *end = i + 1;
    return (long)o;
}

/* A Forwarded value as the text it stands for: a token as it is, a
 * quoted-string unescaped into buf. 0, or -1. */
static int value_text(const char *s, size_t n, int quoted, char *buf,
                      size_t cap, lx_str_t *out)
{
    if (!quoted) {
        *out = (lx_str_t){s, n};
        return 0;
    }
    size_t end;
    long len = unquote(s, n, &end, buf, cap);
    if (len < 0)
        return -1;
    *out = (lx_str_t){buf, (size_t)len};
    return 0;
}

/* Forwarded's pairs of one field into nodes[*count..). 0, or -1. */
static int read_forwarded(const char *s, size_t n, node_t *nodes,
                          size_t *count)
{
    size_t i = 0;
    char buf[LX_FWD_HOST_MAX + 1];
    while (i < n) {
        /* one element */
        node_t nd;
        memset(&nd, 0, sizeof(nd));
        nd.port = -1;
        unsigned seen = 0; /* 1 for, 2 proto, 4 host, 8 by */
        size_t pairs = 0;
        for (;;) {
            while (i < n && is_ows((unsigned char)s[i]))
                i++;
            if (i >= n || s[i] == ',')
                break;
            if (s[i] == ';') {
                i++;
                continue;
            }
            size_t name = i;
            while (i < n && is_tchar((unsigned char)s[i]))
                i++;
            size_t name_len = i - name;
            if (name_len == 0 || i >= n || s[i] != '=')
                return -1;
            i++;
            size_t v = i, vn;
            int quoted = i < n && s[i] == '"';
            if (quoted) {
                size_t end;
                if (unquote(s + i, n - i, &end, NULL, 0) < 0)
                    return -1;
                i += end;
            } else {
                while (i < n && is_tchar((unsigned char)s[i]))
                    i++;
                if (i == v)
                    return -1;
            }
            vn = i - v;
            unsigned bit = LX_CASEEQ_LIT(s + name, name_len, "for")     ? 1
                           : LX_CASEEQ_LIT(s + name, name_len, "proto") ? 2
                           : LX_CASEEQ_LIT(s + name, name_len, "host")  ? 4
                           : LX_CASEEQ_LIT(s + name, name_len, "by")    ? 8
                                                                        : 0;
            if (bit & seen)
                return -1; /* a parameter twice in an element */
            seen |= bit;
            lx_str_t text;
            pairs++;
            if ((bit & 7) != 0 &&
                value_text(s + v, vn, quoted, buf, sizeof(buf), &text) < 0)
                return -1;
            if (bit == 1 && parse_node(text.base, text.len, &nd, 0) < 0)
                return -1;
            if (bit == 2) {
                int scheme = parse_scheme(text.base, text.len);
                if (scheme < 0)
                    return -1;
                nd.scheme = (uint8_t)scheme;
            }
            if (bit == 4) {
                if (parse_host(text.base, text.len) < 0)
                    return -1;
                nd.host = (lx_str_t){s + v, vn};
                nd.host_quoted = (uint8_t)quoted;
            }
            while (i < n && is_ows((unsigned char)s[i]))
                i++;
            if (i < n && s[i] != ';' && s[i] != ',')
                return -1;
        }
        if (pairs > 0) {
            if (*count == MAX_NODES)
                return -1;
            nodes[(*count)++] = nd;
        }
        if (i < n)
            i++; /* the ',' */
    }
    return 0;
}

/* X-Forwarded-For's nodes of one field into nodes[*count..). 0, or -1. */
static int read_xff(const char *s, size_t n, node_t *nodes, size_t *count)
{
    size_t i = 0;
    while (i <= n) {
        lx_str_t e = next_item(s, n, &i);
        if (e.len == 0)
            continue;
        if (*count == MAX_NODES)
            return -1;
        node_t *nd = &nodes[*count];
        memset(nd, 0, sizeof(*nd));
        if (parse_node(e.base, e.len, nd, 1) < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

/* The last item of the lists of every field named name (lower case, len
 * n), each item checked by check (>= 0: good). 1 with *last set, 0 when
 * there is none, -1 when an item is bad. */
static int last_item(const lx_header_t *hs, size_t nh, const char *name,
                     size_t n, int32_t (*check)(const char *, size_t),
                     lx_str_t *last)
{
    int found = 0;
    for (size_t h = 0; h < nh; h++) {
        if (hs[h].name.len != n || !lx_caseeq(hs[h].name.base, name, n))
            continue;
        const char *s = hs[h].value.base;
        size_t len = hs[h].value.len, i = 0;
        while (i <= len) {
            lx_str_t e = next_item(s, len, &i);
            if (e.len == 0)
                continue;
            if (check(e.base, e.len) < 0)
                return -1;
            *last = e;
            found = 1;
        }
    }
    return found;
}

static int32_t check_scheme(const char *s, size_t n)
{
    return parse_scheme(s, n);
}

/* The client's node: from the right, the first one that is not a trusted
 * address; the leftmost when all are. */
static const node_t *choose(const lx_fwd_allow_t *t, const node_t *nodes,
                            size_t count)
{
    size_t i = count - 1;
    while (i > 0 && nodes[i].kind == NODE_ADDR &&
           lx_fwd_trusted(t, nodes[i].family, nodes[i].addr))
        i--;
    return &nodes[i];
}

static void take_node(const node_t *nd, lx_fwd_t *out)
{
    if (nd->kind != NODE_ADDR)
        return;
    out->has_addr = 1;
    out->family = nd->family;
    memcpy(out->addr, nd->addr, sizeof(out->addr));
    out->port = nd->port;
}

static void take_host(lx_fwd_t *out, const char *s, size_t n)
{
    memmove(out->host, s, n); /* s may be out->host itself */
    out->host[n] = '\0';
    out->host_len = n;
}

int lx_fwd_read(const lx_fwd_allow_t *t, const lx_header_t *hs, size_t n,
                lx_fwd_t *out)
{
    node_t nodes[MAX_NODES];
    size_t count = 0, h;
    int forwarded = 0;
    memset(out, 0, offsetof(lx_fwd_t, host));
    out->port = -1;
    out->host[0] = '\0';
    out->server_port = -1;
    for (h = 0; h < n; h++)
        if (LX_CASEEQ_LIT(hs[h].name.base, hs[h].name.len, "forwarded")) {
            forwarded = 1;
            if (read_forwarded(hs[h].value.base, hs[h].value.len, nodes,
                               &count) < 0)
                return 0; /* malformed: nothing changes */
        }
    if (forwarded) {
        if (count == 0)
            return 0;
        const node_t *nd = choose(t, nodes, count);
        take_node(nd, out);
        out->scheme = nd->scheme;
        if (nd->host.len > 0) {
            lx_str_t text;
            if (value_text(nd->host.base, nd->host.len, nd->host_quoted,
                           out->host, LX_FWD_HOST_MAX, &text) < 0)
                return 0; /* cannot be: it was read before */
            take_host(out, text.base, text.len);
        }
    } else {
        for (h = 0; h < n; h++)
            if (LX_CASEEQ_LIT(hs[h].name.base, hs[h].name.len,
                              "x-forwarded-for") &&
                read_xff(hs[h].value.base, hs[h].value.len, nodes, &count) <
                    0) {
                count = 0; /* malformed: no address */
                break;
            }
        if (count > 0)
            take_node(choose(t, nodes, count), out);
        lx_str_t v;
        if (last_item(hs, n, "x-forwarded-proto", 17, check_scheme, &v) > 0)
            out->scheme = (uint8_t)parse_scheme(v.base, v.len);
        if (last_item(hs, n, "x-forwarded-host", 16, parse_host, &v) > 0)
            take_host(out, v.base, v.len);
        if (last_item(hs, n, "x-forwarded-port", 16, parse_port, &v) > 0)
            out->server_port = parse_port(v.base, v.len);
    }
    if (out->server_port < 0 && out->host_len > 0)
        out->server_port = parse_host(out->host, out->host_len);
    if (out->server_port < 0 && out->scheme != LX_FWD_SCHEME_NONE)
        out->server_port = 0;
    return out->has_addr || out->scheme != LX_FWD_SCHEME_NONE ||
           out->host_len > 0 || out->server_port >= 0;
}
