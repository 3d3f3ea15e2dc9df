/* Unit tests of csrc/proxyp.c: PROXY protocol headers, versions 1 and 2,
 * whole, cut short at every byte, and malformed.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_proxyp.c \
 *       -o tests/c/bin/test_proxyp
 *   ./tests/c/bin/test_proxyp */
#define _DEFAULT_SOURCE

#include "../../csrc/proxyp.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Parse an exact-size copy of p[0..n), so that ASan sees a read past it. */
static int parse(const void *p, size_t n, lx_pp_t *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    int rc = lx_pp_parse(copy, n, out);
    free(copy);
    return rc;
}

/* Every proper prefix of a whole header asks for more. */
static void prefixes_want_more(const void *p, size_t n, const char *what)
{
    lx_pp_t o;
    for (size_t k = 0; k < n; k++) {
        int rc = parse(p, k, &o);
        CHECK(rc == LX_PP_MORE, "%s: prefix of %zu: %d", what, k, rc);
    }
}

static void v1_ok(const char *line, int family, const char *addr,
                  unsigned port)
{
    size_t n = strlen(line);
    lx_pp_t o;
    int rc = parse(line, n, &o);
    CHECK(rc == (int)n, "%s: %d", line, rc);
    if (family == 0) {
        CHECK(!o.has_addr, "%s: an address", line);
    } else {
        uint8_t want[16] = {0};
        if (inet_pton(family, addr, want) != 1)
            abort();
        CHECK(o.has_addr && o.family == family, "%s: family", line);
        CHECK(memcmp(o.addr, want, family == AF_INET ? 4 : 16) == 0,
              "%s: address", line);
        CHECK(o.port == port, "%s: port %u", line, o.port);
    }
    prefixes_want_more(line, n, line);
    /* what follows the header is not its own */
    char more[256];
    snprintf(more, sizeof(more), "%sGET / HTTP/1.1\r\n\r\n", line);
    CHECK(parse(more, strlen(more), &o) == (int)n, "%s: with a request", line);
}

static void v1_bad(const char *line)
{
    lx_pp_t o;
    memset(&o, 0xaa, sizeof(o));
    int rc = parse(line, strlen(line), &o);
    CHECK(rc == LX_PP_BAD, "bad %s: %d", line, rc);
    CHECK(!o.has_addr && o.port == 0, "bad %s: out left set", line);
}

static void test_v1(void)
{
    v1_ok("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", AF_INET,
          "192.0.2.1", 56324);
    v1_ok("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", AF_INET, "0.0.0.0",
          0);
    v1_ok("PROXY TCP6 2001:db8::1 2001:db8::2 1 80\r\n", AF_INET6,
          "2001:db8::1", 1);
    v1_ok("PROXY TCP6 ::ffff:192.0.2.1 ::1 8080 80\r\n", AF_INET6,
          "::ffff:192.0.2.1", 8080);
    v1_ok("PROXY UNKNOWN\r\n", 0, NULL, 0);
    v1_ok("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0,
          NULL, 0);
    /* the longest TCP6 line (104 bytes; UNKNOWN's may reach 107) */
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 "
                          "65535\r\n";
    CHECK(strlen(longest) == 104, "longest is %zu", strlen(longest));
    v1_ok(longest, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    char unknown[LX_PP_V1_MAX + 1];
    memset(unknown, 'x', sizeof(unknown));
    memcpy(unknown, "PROXY UNKNOWN ", 14);
    memcpy(unknown + LX_PP_V1_MAX - 2, "\r\n", 3);
    v1_ok(unknown, 0, NULL, 0);
    /* one byte longer */
    char too_long[LX_PP_V1_MAX + 2];
    memset(too_long, 'x', sizeof(too_long));
    memcpy(too_long, "PROXY UNKNOWN ", 14);
    memcpy(too_long + LX_PP_V1_MAX - 1, "\r\n", 3);
    v1_bad(too_long);
    lx_pp_t o;
    CHECK(parse(too_long, LX_PP_V1_MAX, &o) == LX_PP_BAD,
          "107 bytes without CRLF");
    CHECK(parse(too_long, LX_PP_V1_MAX - 1, &o) == LX_PP_MORE,
          "106 bytes without CRLF");

    v1_bad("GET / HTTP/1.1\r\n\r\n");
    v1_bad("proxy TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY  TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324  443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 1\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX");
    v1_bad("PROXY TCP4 192.0.2.1\t198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.256 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.01 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 2001:db8::1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100 56324 443\r\n");
    v1_bad("PROXY TCP6 192.0.2.1 2001:db8::2 56324 443\r\n");
    v1_bad("PROXY TCP6 2001:db8::1%eth0 2001:db8::2 56324 443\r\n");
    v1_bad("PROXY TCP6 2001:db8:::1 2001:db8::2 56324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 056324 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n");
    v1_bad("PROXY TCP4 192.0.2.1 198.51.100.2 1 4430000\r\n");
    v1_bad("PROXY UDP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY TCP 192.0.2.1 198.51.100.2 56324 443\r\n");
    v1_bad("PROXY UNKNOWNX\r\n");
    v1_bad("PROXY \r\n");
    v1_bad("PROXY\r\n");
    v1_bad("PROXY TCP4\r\n");
    v1_bad("PROXY TCP4 \r\n");
    v1_bad("PROXY UNKNOWN \xc3\xa9\r\n");
    CHECK(parse("PROXY UNKNOWN\0\r\n", 16, &o) == LX_PP_BAD, "a NUL");
    /* told malformed as soon as it can be */
    CHECK(parse("PROXX", 5, &o) == LX_PP_BAD, "PROXX");
    CHECK(parse("G", 1, &o) == LX_PP_BAD, "G");
    CHECK(parse("\x16\x03\x01", 3, &o) == LX_PP_BAD, "a TLS record");
    CHECK(parse("PROXY TCP4 1\n", 13, &o) == LX_PP_BAD, "a bare LF");
    CHECK(parse("", 0, &o) == LX_PP_MORE, "nothing yet");
}

/* A version 2 header into buf: its length. */
static size_t v2_make(uint8_t *buf, uint8_t cmd, uint8_t fam,
                      const uint8_t *addrs, size_t addr_len,
                      const uint8_t *tlvs, size_t tlv_len)
{
    memcpy(buf, v2_sig, 12);
    buf[12] = cmd;
    buf[13] = fam;
    size_t len = addr_len + tlv_len;
    buf[14] = (uint8_t)(len >> 8);
    buf[15] = (uint8_t)len;
    if (addr_len)
        memcpy(buf + 16, addrs, addr_len);
    if (tlv_len)
        memcpy(buf + 16 + addr_len, tlvs, tlv_len);
    return 16 + len;
}

static const uint8_t inet4[12] = {192, 0, 2,    1,    198, 51,
                                  100, 2, 0xdc, 0x04, 1,   187};

static void test_v2(void)
{
    uint8_t buf[2048];
    lx_pp_t o;
    /* PROXY, TCP over IPv4 */
    size_t n = v2_make(buf, 0x21, 0x11, inet4, 12, NULL, 0);
    CHECK(parse(buf, n, &o) == 28, "v2 inet");
    CHECK(o.has_addr && o.family == AF_INET && o.port == 56324 &&
              memcmp(o.addr, inet4, 4) == 0,
          "v2 inet: what it says");
    prefixes_want_more(buf, n, "v2 inet");
    memcpy(buf + n, "GET / HTTP/1.1\r\n\r\n", 18);
    CHECK(parse(buf, n + 18, &o) == 28, "v2 inet with a request");

    /* PROXY, TCP over IPv6, with TLVs */
    uint8_t inet6[36] = {0};
    inet_pton(AF_INET6, "2001:db8::7", inet6);
    inet_pton(AF_INET6, "2001:db8::8", inet6 + 16);
    inet6[32] = 0x30;
    inet6[33] = 0x39;
    inet6[35] = 80;
    static const uint8_t tlvs[] = {
        0x02, 0x00, 0x0b, 'e',  'x',  'a',  'm',  'p',  'l',
        'e',  '.',  'c',  'o',  'm',  0x04, 0x00, 0x00, /* a NOOP of no length
                                                         */
        0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00};
    n = v2_make(buf, 0x21, 0x21, inet6, 36, tlvs, sizeof(tlvs));
    CHECK(parse(buf, n, &o) == (int)n, "v2 inet6 with TLVs");
    CHECK(o.has_addr && o.family == AF_INET6 && o.port == 12345 &&
              memcmp(o.addr, inet6, 16) == 0,
          "v2 inet6: what it says");
    prefixes_want_more(buf, n, "v2 inet6 with TLVs");

    /* TLVs that do not tile the rest */
    n = v2_make(buf, 0x21, 0x11, inet4, 12, tlvs, sizeof(tlvs) - 1);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "a TLV cut short");
    n = v2_make(buf, 0x21, 0x11, inet4, 12, (const uint8_t *)"\x04\x00", 2);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "a TLV's header cut short");
    /* TLVs up to the bound, and past it */
    static uint8_t big[LX_PP_V2_TLV_MAX + 1];
    big[0] = 0x04;
    big[1] = (uint8_t)((LX_PP_V2_TLV_MAX - 3) >> 8);
    big[2] = (uint8_t)(LX_PP_V2_TLV_MAX - 3);
    n = v2_make(buf, 0x21, 0x11, inet4, 12, big, LX_PP_V2_TLV_MAX);
    CHECK(parse(buf, n, &o) == (int)n && o.has_addr, "TLVs at the bound");
    big[1] = (uint8_t)((LX_PP_V2_TLV_MAX - 2) >> 8);
    big[2] = (uint8_t)(LX_PP_V2_TLV_MAX - 2);
    n = v2_make(buf, 0x21, 0x11, inet4, 12, big, LX_PP_V2_TLV_MAX + 1);
    CHECK(parse(buf, 16, &o) == LX_PP_BAD, "TLVs past the bound, told early");
    /* a length too short for the family's addresses */
    n = v2_make(buf, 0x21, 0x11, inet4, 11, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "short inet block");
    n = v2_make(buf, 0x21, 0x21, inet6, 35, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "short inet6 block");

    /* LOCAL: the socket's address, whatever the block holds */
    n = v2_make(buf, 0x20, 0x00, NULL, 0, NULL, 0);
    CHECK(parse(buf, n, &o) == 16 && !o.has_addr, "v2 LOCAL");
    n = v2_make(buf, 0x20, 0x11, inet4, 12, tlvs, sizeof(tlvs));
    CHECK(parse(buf, n, &o) == (int)n && !o.has_addr, "v2 LOCAL inet");
    prefixes_want_more(buf, n, "v2 LOCAL inet");
    /* UNSPEC and UNIX: the socket's address */
    n = v2_make(buf, 0x21, 0x00, NULL, 0, NULL, 0);
    CHECK(parse(buf, n, &o) == 16 && !o.has_addr, "v2 UNSPEC");
    static uint8_t unix_block[216];
    memcpy(unix_block, "/run/a.sock", 11);
    n = v2_make(buf, 0x21, 0x31, unix_block, 216, NULL, 0);
    CHECK(parse(buf, n, &o) == (int)n && !o.has_addr, "v2 UNIX");
    n = v2_make(buf, 0x21, 0x31, unix_block, 215, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "v2 UNIX short");

    /* what version 2 does not take */
    n = v2_make(buf, 0x21, 0x12, inet4, 12, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "UDP over IPv4");
    n = v2_make(buf, 0x21, 0x22, inet6, 36, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "UDP over IPv6");
    n = v2_make(buf, 0x21, 0x41, inet4, 12, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "family 4");
    n = v2_make(buf, 0x21, 0x10, inet4, 12, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "IPv4, no protocol");
    n = v2_make(buf, 0x22, 0x11, inet4, 12, NULL, 0);
    CHECK(parse(buf, 13, &o) == LX_PP_BAD, "command 2, told early");
    n = v2_make(buf, 0x11, 0x11, inet4, 12, NULL, 0);
    CHECK(parse(buf, n, &o) == LX_PP_BAD, "version 1 in binary");
    memcpy(buf, v2_sig, 12);
    buf[5] = 'X';
    CHECK(parse(buf, 6, &o) == LX_PP_BAD, "a wrong signature, told early");
    CHECK(parse("\r\n\r\n\r\n", 6, &o) == LX_PP_BAD, "empty lines");
    CHECK(parse("\r", 1, &o) == LX_PP_MORE, "a CR");
}

int main(void)
{
    test_v1();
    test_v2();
    return check_done();
}
