/* Unit tests of csrc/fwd.c: the trusted peers' table, Forwarded and
 * X-Forwarded-* read strictly, the client chosen from the chain.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_fwd.c \
 *       -o tests/c/bin/test_fwd
 *   ./tests/c/bin/test_fwd */
#define _DEFAULT_SOURCE

#include "../../csrc/fwd.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static lx_fwd_allow_t table(const char *text)
{
    lx_fwd_allow_t t = {0};
    const char *bad = NULL;
    size_t bad_len = 0;
    int rc = lx_fwd_allow_parse(&t, text, strlen(text), &bad, &bad_len);
    CHECK(rc == 0, "table %s: %d at %.*s", text, rc, (int)bad_len,
          bad ? bad : "");
    return t;
}

static int v4(const lx_fwd_allow_t *t, const char *text)
{
    uint8_t a[16] = {0};
    if (inet_pton(AF_INET, text, a) != 1)
        abort();
    return lx_fwd_trusted(t, AF_INET, a);
}

static int v6(const lx_fwd_allow_t *t, const char *text)
{
    uint8_t a[16];
    if (inet_pton(AF_INET6, text, a) != 1)
        abort();
    return lx_fwd_trusted(t, AF_INET6, a);
}

static void test_table(void)
{
    lx_fwd_allow_t t = table("127.0.0.1, ::1 ,10.0.0.0/8,192.168.1.128/25,"
                             "2001:db8::/32,unix");
    CHECK(t.n == 5 && t.unix_peers && !t.any, "n %zu", t.n);
    CHECK(v4(&t, "127.0.0.1") && !v4(&t, "127.0.0.2"), "single v4");
    CHECK(v4(&t, "10.0.0.0") && v4(&t, "10.255.255.255") &&
              !v4(&t, "11.0.0.1") && !v4(&t, "9.255.255.255"),
          "v4 /8");
    CHECK(v4(&t, "192.168.1.128") && v4(&t, "192.168.1.255") &&
              !v4(&t, "192.168.1.127"),
          "v4 /25");
    CHECK(v6(&t, "::1") && !v6(&t, "::2"), "single v6");
    CHECK(v6(&t, "2001:db8:ffff::1") && !v6(&t, "2001:db9::1"), "v6 /32");
    CHECK(v6(&t, "::ffff:10.1.2.3") && !v6(&t, "::ffff:11.1.2.3"),
          "v4-mapped peers match as IPv4");
    CHECK(lx_fwd_trusted(&t, AF_UNIX, NULL), "unix");
    lx_fwd_allow_free(&t);

    t = table("127.0.0.1");
    CHECK(!lx_fwd_trusted(&t, AF_UNIX, NULL), "unix not listed");
    CHECK(!v6(&t, "::1"), "::1 not listed");
    lx_fwd_allow_free(&t);

    t = table("*");
    CHECK(t.any && v4(&t, "8.8.8.8") && v6(&t, "2001:db8::1") &&
              lx_fwd_trusted(&t, AF_UNIX, NULL),
          "any");
    lx_fwd_allow_free(&t);

    t = table("");
    CHECK(t.n == 0 && !t.any && !v4(&t, "127.0.0.1") &&
              !lx_fwd_trusted(&t, AF_UNIX, NULL),
          "empty: nothing trusted");
    lx_fwd_allow_free(&t);

    t = table("::ffff:10.0.0.0/104,0.0.0.0/0");
    CHECK(t.n == 2 && t.nets[0].family == AF_INET && t.nets[0].bits == 8,
          "mapped entry as IPv4: %d/%d", t.nets[0].family, t.nets[0].bits);
    CHECK(v4(&t, "1.2.3.4") && !v6(&t, "2001:db8::1"), "/0 of IPv4");
    lx_fwd_allow_free(&t);

    const char *bad[] = {
        "10.0.0.1/8", "1.2.3",           "1.2.3.4.5", "01.2.3.4",
        "256.1.1.1",  "1.2.3.4/33",      "::1/129",   "1.2.3.4/",
        "1.2.3.4/08", "fe80::1%eth0",    "localhost", "127.0.0.1,",
        ",127.0.0.1", "1.2.3.4 5.6.7.8", "::1::2",    "[::1]",
        "**",         "unix:",           " , "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lx_fwd_allow_t b = {0};
        const char *where = NULL;
        size_t wl = 0;
        int rc = lx_fwd_allow_parse(&b, bad[i], strlen(bad[i]), &where, &wl);
        CHECK(rc == -1 && b.nets == NULL && b.n == 0, "bad %s: %d", bad[i],
              rc);
    }
    lx_fwd_allow_t b = {0};
    const char *where = NULL;
    size_t wl = 0;
    const char *text = "127.0.0.1, 10.0.0.1/8 ,::1";
    lx_fwd_allow_parse(&b, text, strlen(text), &where, &wl);
    CHECK(wl == 10 && memcmp(where, "10.0.0.1/8", 10) == 0,
          "the bad entry named: %.*s", (int)wl, where);
}

/* Up to 8 header fields given as "Name: value" strings. */
typedef struct {
    lx_header_t h[8];
    size_t n;
} fields_t;

static fields_t fields(const char *const *lines)
{
    fields_t f = {0};
    for (; *lines != NULL; lines++) {
        const char *colon = strchr(*lines, ':');
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        f.h[f.n].name = (lx_str_t){*lines, (size_t)(colon - *lines)};
        f.h[f.n].value = (lx_str_t){v, strlen(v)};
        f.n++;
    }
    return f;
}

static lx_fwd_allow_t trusted; /* 127.0.0.1, 10.0.0.0/8, ::1 */

static int read_(lx_fwd_t *out, const char *const *lines)
{
    fields_t f = fields(lines);
    return lx_fwd_read(&trusted, f.h, f.n, out);
}
#define READ(out, ...) read_(out, (const char *const[]){__VA_ARGS__, NULL})

static int addr_is(const lx_fwd_t *o, const char *text)
{
    char buf[INET6_ADDRSTRLEN];
    if (!o->has_addr ||
        inet_ntop(o->family, o->addr, buf, sizeof(buf)) == NULL)
        return 0;
    return strcmp(buf, text) == 0;
}

static void test_forwarded(void)
{
    lx_fwd_t o;
    CHECK(READ(&o, "Forwarded: for=192.0.2.60;proto=https;host=example.com") ==
              1,
          "simple");
    CHECK(addr_is(&o, "192.0.2.60") && o.port == -1, "addr");
    CHECK(o.scheme == LX_FWD_SCHEME_HTTPS, "proto");
    CHECK(o.host_len == 11 && strcmp(o.host, "example.com") == 0, "host %s",
          o.host);
    CHECK(o.server_port == 0, "scheme's default port: %d", o.server_port);

    READ(&o, "forwarded: For=\"[2001:db8:cafe::17]:4711\"; PROTO=http; "
             "Host=\"example.com:8080\"");
    CHECK(addr_is(&o, "2001:db8:cafe::17") && o.port == 4711,
          "IPv6 with port, names in any case");
    CHECK(o.scheme == LX_FWD_SCHEME_HTTP && o.server_port == 8080,
          "host's port %d", o.server_port);

    /* a chain: trusted proxies are skipped from the right */
    READ(&o, "Forwarded: for=203.0.113.9, for=198.51.100.1, for=10.1.1.1, "
             "for=127.0.0.1");
    CHECK(addr_is(&o, "198.51.100.1"), "nearest untrusted");
    READ(&o, "Forwarded: for=10.0.0.3;proto=https, for=10.0.0.2");
    CHECK(addr_is(&o, "10.0.0.3") && o.scheme == LX_FWD_SCHEME_HTTPS,
          "all trusted: the leftmost");
    /* proto and host are the chosen element's */
    READ(&o, "Forwarded: for=198.51.100.7;proto=https;host=a.example, "
             "for=10.0.0.9;proto=http;host=inner");
    CHECK(addr_is(&o, "198.51.100.7") && o.scheme == LX_FWD_SCHEME_HTTPS &&
              strcmp(o.host, "a.example") == 0,
          "chosen element's proto/host");
    /* several fields make one list */
    READ(&o, "Forwarded: for=198.51.100.1", "Forwarded: for=10.0.0.1");
    CHECK(addr_is(&o, "198.51.100.1"), "two fields");

    /* unknown and obfuscated nodes stop the walk and give no address */
    CHECK(READ(&o, "Forwarded: for=198.51.100.1, for=unknown;proto=https, "
                   "for=10.0.0.1") == 1,
          "unknown");
    CHECK(!o.has_addr && o.scheme == LX_FWD_SCHEME_HTTPS, "unknown: no addr");
    CHECK(READ(&o, "Forwarded: for=_hidden, for=\"_x:_p\"") == 0 &&
              !o.has_addr,
          "obfuscated");
    READ(&o, "Forwarded: for=\"unknown:80\"");
    CHECK(!o.has_addr, "unknown with a port");
    /* an element without for= is not an address either */
    READ(&o, "Forwarded: for=198.51.100.1, proto=https");
    CHECK(!o.has_addr && o.scheme == LX_FWD_SCHEME_HTTPS, "no for");

    /* quoted strings and escapes */
    READ(&o, "Forwarded: for=\"198.51.100.2\";host=\"ex\\ample.org\"");
    CHECK(addr_is(&o, "198.51.100.2") && strcmp(o.host, "example.org") == 0,
          "escapes: %s", o.host);
    READ(&o, "Forwarded: for=198.51.100.3;by=\"[::1]:80\";ext=\"a,b;c\"");
    CHECK(addr_is(&o, "198.51.100.3"), "other parameters, quoted , and ;");
    READ(&o, "Forwarded: ;;for=198.51.100.4;;, ,for=10.0.0.1");
    CHECK(addr_is(&o, "198.51.100.4"), "empty pairs and elements");

    /* Forwarded wins over X-Forwarded-* */
    READ(&o, "X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https",
         "Forwarded: for=198.51.100.5", "X-Forwarded-Host: x.example");
    CHECK(addr_is(&o, "198.51.100.5") && o.scheme == 0 && o.host_len == 0 &&
              o.server_port == -1,
          "Forwarded wins");

    /* malformed: nothing changes, X-Forwarded-* not used either */
    const char *bad[] = {
        "for=[::1]",      /* IPv6 must be quoted */
        "for=\"::1\"",    /* and in brackets */
        "for=1.2.3.4:80", /* a port must be quoted */
        "for=\"1.2.3.4:0\"",
        "for=\"1.2.3.4:65536\"",
        "for=\"[::1]:\"",
        "for=\"[::1\"",
        "for=\"[::1]x\"",
        "for=1.2.3",
        "for=01.2.3.4",
        "for=\"1.2.3.4",
        "for=1.2.3.4;for=5.6.7.8", /* a parameter twice */
        "FOR=1.2.3.4;For=5.6.7.8",
        "for=1.2.3.4;proto=ftp",
        "for=1.2.3.4;proto=",
        "for = 1.2.3.4",
        "for=1.2.3.4 x",
        "=1.2.3.4",
        "for",
        "for=1.2.3.4;host=\"a b\"",
        "for=1.2.3.4;host=\"a/b\"",
        "host=\"a:\"",
        "for=\"[fe80::1%eth0]\"",
        "for=_",
        "for=\"\\\x01\"",
        "for=\"a\x7f\"",
        "host=\"[::1]:99999\"",
        "for=\"_hidden:99999\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "Forwarded: %s", bad[i]);
        int rc = READ(&o, line, "X-Forwarded-For: 198.51.100.1",
                      "X-Forwarded-Proto: https");
        CHECK(rc == 0 && !o.has_addr && o.scheme == 0 && o.host_len == 0 &&
                  o.server_port == -1,
              "malformed %s: %d", bad[i], rc);
    }
    /* a chain longer than 32 nodes is not read */
    char big[1024] = "Forwarded: for=198.51.100.1";
    for (int i = 0; i < 32; i++)
        strcat(big, ", for=10.0.0.1");
    CHECK(READ(&o, big) == 0, "33 nodes");
    /* a host of 255 bytes is taken, one of 256 is not */
    char host[300] = "Forwarded: host=";
    memset(host + 16, 'a', 255);
    host[16 + 255] = '\0';
    CHECK(READ(&o, host) == 1 && o.host_len == 255, "255 bytes");
    strcat(host, "a");
    CHECK(READ(&o, host) == 0, "256 bytes");
}

static void test_x_forwarded(void)
{
    lx_fwd_t o;
    CHECK(READ(&o, "X-Forwarded-For: 203.0.113.7") == 1 &&
              addr_is(&o, "203.0.113.7") && o.port == -1 && o.scheme == 0 &&
              o.host_len == 0 && o.server_port == -1,
          "for only");
    READ(&o,
         "X-Forwarded-For: 203.0.113.7, 198.51.100.2, 10.9.9.9, 127.0.0.1");
    CHECK(addr_is(&o, "198.51.100.2"), "chain");
    READ(&o, "X-Forwarded-For: 198.51.100.1, 203.0.113.7",
         "x-forwarded-for: 10.0.0.1");
    CHECK(addr_is(&o, "203.0.113.7"), "two fields");
    READ(&o, "X-Forwarded-For: 2001:db8::7, ::1");
    CHECK(addr_is(&o, "2001:db8::7") && o.port == -1, "bare IPv6");
    READ(&o, "X-Forwarded-For: [2001:db8::8]:1234");
    CHECK(addr_is(&o, "2001:db8::8") && o.port == 1234, "[IPv6]:port");
    READ(&o, "X-Forwarded-For: 198.51.100.3:5555");
    CHECK(addr_is(&o, "198.51.100.3") && o.port == 5555, "IPv4:port");
    READ(&o, "X-Forwarded-For: 198.51.100.3, unknown");
    CHECK(!o.has_addr, "unknown");
    READ(&o, "X-Forwarded-For: 10.0.0.2,,  ,10.0.0.3");
    CHECK(addr_is(&o, "10.0.0.2"), "empty items");

    READ(&o, "X-Forwarded-Proto: HTTPS");
    CHECK(o.scheme == LX_FWD_SCHEME_HTTPS && o.server_port == 0 && !o.has_addr,
          "proto");
    READ(&o, "X-Forwarded-Proto: https, http");
    CHECK(o.scheme == LX_FWD_SCHEME_HTTP, "the last item");
    READ(&o, "X-Forwarded-Host: example.com:8443", "X-Forwarded-Proto: https");
    CHECK(strcmp(o.host, "example.com:8443") == 0 && o.server_port == 8443,
          "host's port");
    READ(&o, "X-Forwarded-Host: example.com", "X-Forwarded-Port: 8080",
         "X-Forwarded-Proto: https");
    CHECK(o.server_port == 8080, "X-Forwarded-Port wins: %d", o.server_port);
    READ(&o, "X-Forwarded-Host: [2001:db8::1]:444");
    CHECK(o.server_port == 444 && strcmp(o.host, "[2001:db8::1]:444") == 0,
          "IPv6 host");
    READ(&o, "X-Forwarded-Port: 81");
    CHECK(o.server_port == 81 && o.scheme == 0, "port alone");

    /* each malformed field is ignored alone */
    READ(&o, "X-Forwarded-For: 198.51.100.1, nonsense",
         "X-Forwarded-Proto: https");
    CHECK(!o.has_addr && o.scheme == LX_FWD_SCHEME_HTTPS, "bad for");
    const char *bad_for[] = {
        "1.2.3.4:0",    "1.2.3.4:", "[::1]:",          "[::1",
        "::1:80x",      "_hidden",  "1.2.3.4 5.6.7.8", "\"1.2.3.4\"",
        "fe80::1%eth0", "1.2.3.256"};
    for (size_t i = 0; i < sizeof(bad_for) / sizeof(bad_for[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "X-Forwarded-For: %s", bad_for[i]);
        CHECK(READ(&o, line) == 0 && !o.has_addr, "bad for %s", bad_for[i]);
    }
    READ(&o, "X-Forwarded-For: [::1]");
    CHECK(addr_is(&o, "::1"), "[IPv6] without a port");
    CHECK(READ(&o, "X-Forwarded-Proto: ftp") == 0, "bad proto");
    CHECK(READ(&o, "X-Forwarded-Proto: https, ftp") == 0, "bad item");
    CHECK(READ(&o, "X-Forwarded-Proto: ftp, https") == 0, "bad first item");
    CHECK(READ(&o, "X-Forwarded-Host: a b") == 0, "bad host");
    CHECK(READ(&o, "X-Forwarded-Host: a@b") == 0, "userinfo");
    CHECK(READ(&o, "X-Forwarded-Host: a:b") == 0, "bad host port");
    CHECK(READ(&o, "X-Forwarded-Host: %zz") == 0, "bad escape");
    CHECK(READ(&o, "X-Forwarded-Host: :80") == 0, "no name");
    CHECK(READ(&o, "X-Forwarded-Port: 0") == 0, "port 0");
    CHECK(READ(&o, "X-Forwarded-Port: 65536") == 0, "port too large");
    CHECK(READ(&o, "X-Forwarded-Port: +80") == 0, "port sign");
    READ(&o, "X-Forwarded-Host: a%41.example", "X-Forwarded-Port: x");
    CHECK(strcmp(o.host, "a%41.example") == 0 && o.server_port == 0,
          "good host, bad port: %d", o.server_port);
    CHECK(READ(&o, "Host: example.com", "X-Real-IP: 1.2.3.4") == 0,
          "no proxy header");
}

static void test_header_names(void)
{
    CHECK(lx_fwd_header("Forwarded", 9) &&
              lx_fwd_header("X-FORWARDED-FOR", 15) &&
              lx_fwd_header("x-forwarded-host", 16) &&
              lx_fwd_header("X-Forwarded-Port", 16) &&
              lx_fwd_header("x-Forwarded-Proto", 17),
          "names");
    CHECK(!lx_fwd_header("Forwardex", 9) &&
              !lx_fwd_header("X-Forwarded-Ssl", 15) &&
              !lx_fwd_header("Host", 4),
          "other names");
}

int main(void)
{
    test_table();
    const char *bad = NULL;
    size_t bad_len = 0;
    const char *t = "127.0.0.1,10.0.0.0/8,::1";
    if (lx_fwd_allow_parse(&trusted, t, strlen(t), &bad, &bad_len) != 0)
        abort();
    test_forwarded();
    test_x_forwarded();
    test_header_names();
    lx_fwd_allow_free(&trusted);
    return check_done();
}
