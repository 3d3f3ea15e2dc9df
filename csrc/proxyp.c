/* The PROXY protocol (proxyp.h): version 1's line and version 2's block,
 * read strictly. */
#define _POSIX_C_SOURCE 200809L
#include "proxyp.h"
#include "iptext.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {'\r', '\n', '\r', '\n', 0,   '\r',
                                   '\n', 'Q',  'U',  'I',  'T', '\n'};
static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

/* ------------------------------------------------------------------ */
/* version 1 */

/* 0-65535 in decimal, no leading zero: the value, or -1. */
static int32_t v1_port(const char *s, size_t n)
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return -1;
    int32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? v : -1;
}

/* The next field of s[*at..n), up to a single space or the end; its
 * length, 0 when empty. *at moves past the space. */
static size_t v1_field(const char *s, size_t n, size_t *at, const char **f)
{
    size_t i = *at;
    *f = s + i;
    while (i < n && s[i] != ' ')
        i++;
    size_t len = i - *at;
    *at = i < n ? i + 1 : i;
    return len;
}

/* The line without its CRLF: "PROXY " already checked. */
static int v1_line(const char *s, size_t n, lx_pp_t *out)
{
    size_t at = sizeof(v1_sig);
    const char *proto;
    size_t plen = v1_field(s, n, &at, &proto);
    if (plen == 7 && memcmp(proto, "UNKNOWN", 7) == 0)
        return 0; /* anything may follow, to be ignored */
    int family;
    if (plen == 4 && memcmp(proto, "TCP4", 4) == 0)
        family = AF_INET;
    else if (plen == 4 && memcmp(proto, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return -1;
    const char *f[4];
    size_t len[4];
    for (int k = 0; k < 4; k++) {
        if (at >= n || s[at - 1] != ' ')
            return -1; /* a field missing */
        len[k] = v1_field(s, n, &at, &f[k]);
        if (len[k] == 0)
            return -1; /* two spaces in a row */
    }
    if (at != n || s[n - 1] == ' ')
        return -1; /* a field too many, or a space at the end */
    uint8_t dst[16];
    int ok = family == AF_INET ? lx_ipv4_parse(f[0], len[0], out->addr) == 0 &&
                                     lx_ipv4_parse(f[1], len[1], dst) == 0
                               : lx_ipv6_parse(f[0], len[0], out->addr) == 0 &&
                                     lx_ipv6_parse(f[1], len[1], dst) == 0;
    int32_t sport = v1_port(f[2], len[2]);
    if (!ok || sport < 0 || v1_port(f[3], len[3]) < 0)
        return -1;
    out->has_addr = 1;
    out->family = (uint8_t)family;
    out->port = (uint16_t)sport;
    return 0;
}

static int v1(const uint8_t *p, size_t n, lx_pp_t *out)
{
    size_t lim = n < LX_PP_V1_MAX ? n : LX_PP_V1_MAX;
    for (size_t i = sizeof(v1_sig); i < lim; i++) {
        uint8_t ch = p[i];
        if (ch == '\r') {
            if (i + 1 == lim)
                break; /* its LF may follow */
            if (p[i + 1] != '\n')
                return LX_PP_BAD;
            if (v1_line((const char *)p, i, out) < 0)
                return LX_PP_BAD;
            return (int)i + 2;
        }
        if (ch < 0x20 || ch > 0x7e)
            return LX_PP_BAD; /* a bare LF, a control byte, not ASCII */
    }
    return n >= LX_PP_V1_MAX ? LX_PP_BAD : LX_PP_MORE;
}

/* ------------------------------------------------------------------ */
/* version 2 */

static int v2(const uint8_t *p, size_t n, lx_pp_t *out)
{
    if (n >= 13 && p[12] != 0x20 && p[12] != 0x21)
        return LX_PP_BAD; /* version 2, LOCAL or PROXY */
    if (n < LX_PP_V2_HEAD)
        return LX_PP_MORE;
    int proxy = p[12] == 0x21;
    uint8_t fam = p[13];
    size_t len = (size_t)p[14] << 8 | p[15];
    size_t addr_len;
    int check_tlvs = 1;
    if (!proxy || fam == 0x00) {
        /* LOCAL (the proxy's own connection, a health check) or UNSPEC:
         * the block is skipped whole, the socket's address kept. */
        addr_len = 0;
        check_tlvs = 0;
    } else if (fam == 0x11) {
        addr_len = 12; /* TCP over IPv4 */
    } else if (fam == 0x21) {
        addr_len = 36; /* TCP over IPv6 */
    } else if (fam == 0x31 || fam == 0x32) {
        addr_len = LX_PP_V2_ADDR_MAX; /* AF_UNIX: the socket's kept */
    } else {
        return LX_PP_BAD; /* datagrams, or no such family */
    }
    size_t room = check_tlvs ? addr_len + LX_PP_V2_TLV_MAX
                             : LX_PP_V2_ADDR_MAX + LX_PP_V2_TLV_MAX;
    if (len < addr_len || len > room)
        return LX_PP_BAD;
    size_t total = LX_PP_V2_HEAD + len;
    if (n < total)
        return LX_PP_MORE;
    /* TLVs: type, 16-bit length, value; they must fill the rest. */
    size_t at = LX_PP_V2_HEAD + addr_len;
    while (check_tlvs && at < total) {
        if (total - at < 3)
            return LX_PP_BAD;
        at += 3 + ((size_t)p[at + 1] << 8 | p[at + 2]);
        if (at > total)
            return LX_PP_BAD;
    }
    const uint8_t *a = p + LX_PP_V2_HEAD;
    if (proxy && fam == 0x11) {
        out->has_addr = 1;
        out->family = AF_INET;
        memcpy(out->addr, a, 4);
        out->port = (uint16_t)(a[8] << 8 | a[9]);
    } else if (proxy && fam == 0x21) {
        out->has_addr = 1;
        out->family = AF_INET6;
        memcpy(out->addr, a, 16);
        out->port = (uint16_t)(a[32] << 8 | a[33]);
    }
    return (int)total;
}

/* ------------------------------------------------------------------ */

int lx_pp_parse(const uint8_t *p, size_t n, lx_pp_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return LX_PP_MORE;
    /* The first byte tells the versions apart: CR or 'P'. */
    int rc;
    if (p[0] == v2_sig[0]) {
        size_t k = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
        rc = memcmp(p, v2_sig, k) != 0 ? LX_PP_BAD
             : n < sizeof(v2_sig)      ? LX_PP_MORE
                                       : v2(p, n, out);
    } else {
        size_t k = n < sizeof(v1_sig) ? n : sizeof(v1_sig);
        rc = memcmp(p, v1_sig, k) != 0 ? LX_PP_BAD
             : n < sizeof(v1_sig)      ? LX_PP_MORE
                                       : v1(p, n, out);
    }
    if (rc <= 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
