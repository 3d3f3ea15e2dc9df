/* Unit tests of csrc/http1.c: the request head parser and the chunked decoder.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_http1.c \
 *       -o tests/c/bin/test_http1
 *   ./tests/c/bin/test_http1
 *
 * Every input is parsed whole, byte by byte (a growing buffer, the parser
 * called again each time) and in 50 random splits, and every call sees its
 * input right before a PROT_NONE page so that any over-read faults. */
#define _DEFAULT_SOURCE

#include "../../csrc/http1.c"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int n_cases;
static int cur_line;

#define CHECK_CONTEXT() \
    printf("FAIL case at line %d (check line %d): ", cur_line, __LINE__)
#include "check.h"

/* ---- guard page ---- */

#define GUARD_PAGES 64
static char *guard_area;
static size_t guard_room;

static void guard_init(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    guard_room = GUARD_PAGES * pg;
    guard_area = mmap(NULL, guard_room + pg, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_area == MAP_FAILED ||
        mprotect(guard_area + guard_room, pg, PROT_NONE) != 0) {
        perror("mmap");
        exit(2);
    }
}

/* Copy len bytes so that they end right at the guard page. */
static const char *place(const char *in, size_t len)
{
    if (len > guard_room) {
        printf("input too large for the guard area\n");
        exit(2);
    }
    char *dst = guard_area + guard_room - len;
    memcpy(dst, in, len);
    return dst;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- request parser harness ---- */

#define MAXH 128

typedef struct {
    size_t off, len;
} span_t;

typedef struct {
    int ret, status;
    span_t method, target, path, query;
    int minor;
    unsigned flags;
    int64_t cl;
    size_t nh;
    span_t hn[MAXH], hv[MAXH];
} outcome_t;

static const lx_http1_limits_t deflim = {8192, 8192, 100};

static span_t to_span(lx_str_t s, const char *base, size_t len, int *bad)
{
    span_t r = {0, 0};
    if (s.base < base || s.base > base + len || s.len > len ||
        (size_t)(s.base - base) + s.len > len) {
        *bad = 1;
        return r;
    }
    r.off = (size_t)(s.base - base);
    r.len = s.len;
    return r;
}

/* One call on buf[0..len) placed before the guard page, with a request
 * struct that persists across the calls of one feed (like a connection's). */
static outcome_t call_parser(const char *in, size_t len,
                             const lx_http1_limits_t *lim, lx_http1_req_t *req,
                             size_t cap)
{
    outcome_t o;
    int bad = 0;
    const char *b = place(in, len);
    int status = -7;

    memset(&o, 0, sizeof o);
    size_t cap_before = req->num_headers;
    o.ret = lx_http1_parse_request(b, len, req, lim, &status);
    if (o.ret == LX_ERR) {
        o.status = status;
        CHECK(status == 400 || status == 414 || status == 431 ||
                  status == 501 || status == 505,
              "error without a valid status (%d)", status);
        req->num_headers = cap; /* a new request would reset it */
        return o;
    }
    if (o.ret == LX_AGAIN) {
        CHECK(req->num_headers == cap_before, "LX_AGAIN changed num_headers");
        return o;
    }
    CHECK(o.ret > 0 && (size_t)o.ret <= len, "return %d out of range", o.ret);
    size_t head = (size_t)o.ret;
    o.method = to_span(req->method, b, head, &bad);
    o.target = to_span(req->target, b, head, &bad);
    o.path = to_span(req->path, b, head, &bad);
    o.query = to_span(req->query, b, head, &bad);
    o.minor = req->minor_version;
    o.flags = req->flags;
    o.cl = req->content_length;
    o.nh = req->num_headers;
    CHECK(o.nh <= cap, "num_headers %zu over capacity %zu", o.nh, cap);
    for (size_t i = 0; i < o.nh && i < MAXH; i++) {
        o.hn[i] = to_span(req->headers[i].name, b, head, &bad);
        o.hv[i] = to_span(req->headers[i].value, b, head, &bad);
    }
    CHECK(!bad, "a reported string lies outside the head");
    req->num_headers = cap;
    return o;
}

static int same_span(span_t a, span_t b)
{
    return a.off == b.off && a.len == b.len;
}

static int same_outcome(const outcome_t *a, const outcome_t *b)
{
    if (a->ret != b->ret)
        return 0;
    if (a->ret == LX_ERR)
        return a->status == b->status;
    if (a->ret == LX_AGAIN)
        return 1;
    if (!same_span(a->method, b->method) || !same_span(a->target, b->target) ||
        !same_span(a->path, b->path) || !same_span(a->query, b->query) ||
        a->minor != b->minor || a->flags != b->flags || a->cl != b->cl ||
        a->nh != b->nh)
        return 0;
    for (size_t i = 0; i < a->nh && i < MAXH; i++)
        if (!same_span(a->hn[i], b->hn[i]) || !same_span(a->hv[i], b->hv[i]))
            return 0;
    return 1;
}

/* Feed growing prefixes ending at each cut (the last cut is len). Before the
 * decision every prefix must give LX_AGAIN; from it on, the final outcome. */
static int feed_cuts(const char *in, const lx_http1_limits_t *lim, size_t cap,
                     const size_t *cuts, size_t ncuts, const outcome_t *whole,
                     const char *how)
{
    lx_header_t hdrs[MAXH];
    lx_http1_req_t req;
    int decided = 0;

    memset(&req, 0x5a, sizeof req);
    req.headers = hdrs;
    req.num_headers = cap;
    for (size_t i = 0; i < ncuts; i++) {
        outcome_t o = call_parser(in, cuts[i], lim, &req, cap);
        if (o.ret == LX_AGAIN && !decided)
            continue;
        if (!same_outcome(&o, whole)) {
            CHECK(0, "%s: prefix of %zu bytes gives %d/%d, whole gives %d/%d",
                  how, cuts[i], o.ret, o.status, whole->ret, whole->status);
            return 0;
        }
        decided = 1;
    }
    return 1;
}

static outcome_t parse_all_ways(const char *in, size_t len,
                                const lx_http1_limits_t *lim, size_t cap)
{
    lx_header_t hdrs[MAXH];
    lx_http1_req_t req;
    size_t cuts[4096 + 1];
    outcome_t whole;
    int ok = 1;

    n_cases++;
    memset(&req, 0x5a, sizeof req);
    req.headers = hdrs;
    req.num_headers = cap;
    whole = call_parser(in, len, lim, &req, cap);

    /* byte by byte, starting with the empty buffer */
    if (len <= 4096) {
        for (size_t i = 0; i <= len; i++)
            cuts[i] = i;
        ok &= feed_cuts(in, lim, cap, cuts, len + 1, &whole, "bytewise");
    } else {
        /* long inputs: every prefix would be quadratic; take a stride */
        size_t n = 0;
        for (size_t i = 0; i < len; i += len / 2048 + 1)
            cuts[n++] = i;
        for (size_t i = len > 64 ? len - 64 : 0; i <= len; i++)
            if (i > cuts[n - 1])
                cuts[n++] = i;
        ok &= feed_cuts(in, lim, cap, cuts, n, &whole, "strided");
    }
    for (int s = 0; s < 50 && ok; s++) {
        size_t n = 0, k = 1 + rnd() % 6;
        for (size_t i = 0; i < k && len > 1; i++)
            cuts[n++] = rnd() % len;
        cuts[n++] = len;
        /* sort: insertion, few items */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        ok &= feed_cuts(in, lim, cap, cuts, n, &whole, "random split");
    }
    CHECK(ok, "incremental parsing disagrees with whole parsing");
    return whole;
}

typedef struct {
    const char *method, *target, *path, *query;
    int v10;        /* HTTP/1.0 expected (default 1.1) */
    unsigned flags; /* exact LX_REQ_* expected */
    const char *cl; /* decimal content_length expected, NULL: -1 */
    const char **h; /* name, value, ..., NULL; NULL: not checked */
    int ret;        /* expected return; 0: the whole input */
    const lx_http1_limits_t *lim;
    size_t cap;
} want_t;

static void check_str(const char *in, span_t s, const char *want,
                      const char *what)
{
    if (!want)
        return;
    size_t wl = strlen(want);
    CHECK(s.len == wl && memcmp(in + s.off, want, wl) == 0,
          "%s is \"%.*s\", want \"%s\"", what, (int)s.len, in + s.off, want);
}

static void expect_ok(int line, const char *in, size_t len, const want_t *w)
{
    cur_line = line;
    outcome_t o = parse_all_ways(in, len, w->lim ? w->lim : &deflim,
                                 w->cap ? w->cap : MAXH);
    int want_ret = w->ret ? w->ret : (int)len;
    CHECK(o.ret == want_ret, "return %d (status %d), want %d", o.ret, o.status,
          want_ret);
    if (o.ret < 0)
        return;
    check_str(in, o.method, w->method, "method");
    check_str(in, o.target, w->target, "target");
    check_str(in, o.path, w->path, "path");
    check_str(in, o.query, w->query, "query");
    CHECK(o.minor == (w->v10 ? 0 : 1), "minor %d", o.minor);
    CHECK(o.flags == w->flags, "flags 0x%x, want 0x%x", o.flags, w->flags);
    int64_t cl = w->cl ? strtoll(w->cl, NULL, 10) : -1;
    CHECK(o.cl == cl, "content_length %" PRId64 ", want %" PRId64, o.cl, cl);
    if (w->h) {
        size_t n = 0;
        while (w->h[2 * n])
            n++;
        CHECK(o.nh == n, "%zu headers, want %zu", o.nh, n);
        for (size_t i = 0; i < n && i < o.nh; i++) {
            check_str(in, o.hn[i], w->h[2 * i], "header name");
            check_str(in, o.hv[i], w->h[2 * i + 1], "header value");
        }
    }
}

static void expect_err(int line, const char *in, size_t len, int status,
                       const lx_http1_limits_t *lim, size_t cap)
{
    cur_line = line;
    outcome_t o =
        parse_all_ways(in, len, lim ? lim : &deflim, cap ? cap : MAXH);
    CHECK(o.ret == LX_ERR && o.status == status,
          "got %d status %d, want error %d", o.ret, o.status, status);
}

static void expect_again(int line, const char *in, size_t len)
{
    cur_line = line;
    outcome_t o = parse_all_ways(in, len, &deflim, MAXH);
    CHECK(o.ret == LX_AGAIN, "got %d status %d, want LX_AGAIN", o.ret,
          o.status);
}

#define H(...) ((const char *[]){__VA_ARGS__, NULL})
#define OK(in, ...) \
    expect_ok(__LINE__, in, sizeof(in) - 1, &(want_t){__VA_ARGS__})
#define BAD(in, st) expect_err(__LINE__, in, sizeof(in) - 1, st, NULL, 0)
#define BADL(in, st, lim, cap) \
    expect_err(__LINE__, in, sizeof(in) - 1, st, lim, cap)
#define AGAIN(in) expect_again(__LINE__, in, sizeof(in) - 1)

#define KA LX_REQ_KEEPALIVE
#define HOST "Host: h\r\n"

static void test_valid(void)
{
    OK("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", .method = "GET",
       .target = "/", .path = "/", .query = "", .flags = KA,
       .h = H("Host", "example.com"));
    OK("GET /search?q=lichen&x=1 HTTP/1.1\r\n" HOST "\r\n",
       .target = "/search?q=lichen&x=1", .path = "/search",
       .query = "q=lichen&x=1", .flags = KA);
    OK("GET /? HTTP/1.1\r\n" HOST "\r\n", .path = "/", .query = "",
       .target = "/?", .flags = KA);
    OK("GET /a?b?c=/d HTTP/1.1\r\n" HOST "\r\n", .path = "/a",
       .query = "b?c=/d", .flags = KA);
    OK("GET /%7Euser/a%20b HTTP/1.1\r\n" HOST "\r\n", .path = "/%7Euser/a%20b",
       .flags = KA);
    OK("GET / HTTP/1.0\r\n\r\n", .v10 = 1, .flags = 0, .h = H(NULL));
    OK("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", .v10 = 1,
       .flags = KA);
    OK("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", .v10 = 1,
       .flags = KA);
    OK("GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n", .v10 = 1,
       .flags = 0);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n", .flags = 0);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: CLOSE\r\n\r\n", .flags = 0);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: Keep-Alive, Upgrade\r\n\r\n",
       .flags = KA | LX_REQ_UPGRADE);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: upgrade\r\nConnection: close"
       "\r\n\r\n",
       .flags = LX_REQ_UPGRADE);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: ,, foo ,\tclose\t,\r\n\r\n",
       .flags = 0);
    OK("GET / HTTP/1.1\r\n" HOST "Connection: closed, xclose\r\n\r\n",
       .flags = KA);
    OK("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"
       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       .flags = KA | LX_REQ_UPGRADE,
       .h = H("Host", "server.example.com", "Upgrade", "websocket",
              "Connection", "Upgrade", "Sec-WebSocket-Key",
              "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13"));
    /* leading empty lines are skipped and counted */
    OK("\r\n\r\nGET /x HTTP/1.1\r\n" HOST "\r\n", .method = "GET",
       .path = "/x", .flags = KA);
    /* the body is not part of the head */
    OK("POST /form HTTP/1.1\r\n" HOST "Content-Length: 5\r\n\r\nhello",
       .method = "POST", .cl = "5", .flags = KA | LX_REQ_HAS_BODY, .ret = 51);
    OK("POST / HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n", .cl = "0",
       .flags = KA);
    OK("POST / HTTP/1.1\r\n" HOST "Content-Length: \t 42 \t\r\n\r\n",
       .cl = "42", .flags = KA | LX_REQ_HAS_BODY,
       .h = H("Host", "h", "Content-Length", "42"));
    OK("POST / HTTP/1.1\r\n" HOST "content-LENGTH: 007\r\n\r\n", .cl = "7",
       .flags = KA | LX_REQ_HAS_BODY);
    OK("POST / HTTP/1.1\r\n" HOST "Content-Length: 999999999999999999\r\n\r\n",
       .cl = "999999999999999999", .flags = KA | LX_REQ_HAS_BODY);
    OK("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", .v10 = 1, .cl = "3",
       .flags = LX_REQ_HAS_BODY, .ret = 38);
    OK("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n",
       .flags = KA | LX_REQ_CHUNKED | LX_REQ_HAS_BODY);
    OK("POST / HTTP/1.1\r\n" HOST "transfer-encoding: CHUNKED\r\n\r\n",
       .flags = KA | LX_REQ_CHUNKED | LX_REQ_HAS_BODY);
    /* Empty list elements are refused: a proxy may read them otherwise. */
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: , chunked ,\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: ,\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked,\r\n\r\n", 400);
    OK("POST / HTTP/1.1\r\n" HOST "Expect: 100-continue\r\n"
       "Content-Length: 10\r\n\r\n",
       .cl = "10", .flags = KA | LX_REQ_HAS_BODY | LX_REQ_EXPECT_100);
    OK("POST / HTTP/1.1\r\n" HOST "Expect:  100-Continue \r\n\r\n",
       .flags = KA | LX_REQ_EXPECT_100);
    OK("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", .v10 = 1,
       .flags = 0);
    OK("POST / HTTP/1.1\r\n" HOST "Expect: 100-continue, x\r\n\r\n",
       .flags = KA);
    OK("POST / HTTP/1.1\r\n" HOST "Expect: 200-ok\r\n\r\n", .flags = KA);
    OK("GET / HTTP/1.1\r\nhOsT: MiXeD\r\nX-CaSe: VaLuE\r\n\r\n", .flags = KA,
       .h = H("hOsT", "MiXeD", "X-CaSe", "VaLuE"));
    OK("GET / HTTP/1.1\r\n" HOST "X-Obs: caf\xc3\xa9 \x80\xff\r\n\r\n",
       .flags = KA, .h = H("Host", "h", "X-Obs", "caf\xc3\xa9 \x80\xff"));
    OK("GET / HTTP/1.1\r\n" HOST "X-Sp: \t a \t b \t\r\n\r\n", .flags = KA,
       .h = H("Host", "h", "X-Sp", "a \t b"));
    OK("GET / HTTP/1.1\r\n" HOST "X-Empty:\r\nX-Blank: \t \r\n\r\n",
       .flags = KA, .h = H("Host", "h", "X-Empty", "", "X-Blank", ""));
    OK("GET / HTTP/1.1\r\n" HOST "X_Forwarded_For: 10.0.0.1\r\n\r\n",
       .flags = KA, .h = H("Host", "h", "X_Forwarded_For", "10.0.0.1"));
    OK("GET / HTTP/1.1\r\n" HOST "!#$%&'*+-.^_`|~0aZ: v\r\n\r\n", .flags = KA,
       .h = H("Host", "h", "!#$%&'*+-.^_`|~0aZ", "v"));
    OK("GET / HTTP/1.1\r\n" HOST "X-Colon: a:b: c\r\n\r\n", .flags = KA,
       .h = H("Host", "h", "X-Colon", "a:b: c"));
    OK("GET / HTTP/1.1\r\n" HOST "X: \"quoted\\\" stuff\" ~`{}\r\n\r\n",
       .flags = KA);
    OK("OPTIONS * HTTP/1.1\r\n" HOST "\r\n", .method = "OPTIONS",
       .target = "*", .path = "*", .query = "", .flags = KA);
    OK("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
       .method = "CONNECT", .target = "example.com:443",
       .path = "example.com:443", .flags = KA);
    OK("GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
       .target = "http://example.com/x?y=1", .path = "http://example.com/x",
       .query = "y=1", .flags = KA);
    /* RFC 9112 3.2: raw bytes >= 0x80 are not target characters. */
    BAD("GET /caf\xc3\xa9?x HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /x?\xff HTTP/1.1\r\n" HOST "\r\n", 400);
    OK("GET /caf%C3%A9 HTTP/1.1\r\n" HOST "\r\n", .path = "/caf%C3%A9",
       .flags = KA);
    /* Target forms against methods (RFC 9112 3.2.1-3.2.4). */
    OK("OPTIONS * HTTP/1.1\r\n" HOST "\r\n", .method = "OPTIONS", .flags = KA);
    BAD("GET * HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("M-SEARCH * HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET foo/bar HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET example.com:443 HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("CONNECT /x HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("CONNECT example.com HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("PUT s://]ufd/: HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET http:///x HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET http://a b/ HTTP/1.1\r\n" HOST "\r\n", 400);
    OK("GET http://[::1]:8080/x HTTP/1.1\r\n" HOST "\r\n",
       .path = "http://[::1]:8080/x", .flags = KA);
    OK("GET https://u:p@example.com?q HTTP/1.1\r\n" HOST "\r\n",
       .path = "https://u:p@example.com", .query = "q", .flags = KA);
    /* Content-Type is a singleton: twice is refused. */
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Type: a\r\n"
        "Content-Type: b\r\n\r\n",
        400);
    OK("PROPFIND /dav HTTP/1.1\r\n" HOST "\r\n", .method = "PROPFIND",
       .flags = KA);
    OK("get / HTTP/1.1\r\n" HOST "\r\n", .method = "get", .flags = KA);
    OK("GET / HTTP/1.1\r\nHost:\r\n\r\n", .flags = KA, .h = H("Host", ""));
    OK("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", .flags = KA,
       .h = H("Host", "[::1]:8080"));
    /* pipelining: only the first head is consumed */
    OK("GET /1 HTTP/1.1\r\n" HOST "\r\nGET /2 HTTP/1.1\r\n" HOST "\r\n",
       .path = "/1", .flags = KA, .ret = 28);
    /* the next request being garbage does not matter yet */
    OK("GET /1 HTTP/1.1\r\n" HOST "\r\n\n\x01garbage", .flags = KA, .ret = 28);
    OK("GET /wp-content/uploads/2024/01/photo.jpg?ver=6.4.2 HTTP/1.1\r\n"
       "Host: www.example.org\r\n"
       "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) "
       "Gecko/20100101 Firefox/121.0\r\n"
       "Accept: image/avif,image/webp,*/*\r\n"
       "Accept-Language: en-US,en;q=0.5\r\n"
       "Accept-Encoding: gzip, deflate, br\r\n"
       "Referer: https://www.example.org/blog/\r\n"
       "Cookie: session=abc123; theme=dark\r\n"
       "Connection: keep-alive\r\n\r\n",
       .method = "GET", .path = "/wp-content/uploads/2024/01/photo.jpg",
       .query = "ver=6.4.2", .flags = KA,
       .h = H("Host", "www.example.org", "User-Agent",
              "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 "
              "Firefox/121.0",
              "Accept", "image/avif,image/webp,*/*", "Accept-Language",
              "en-US,en;q=0.5", "Accept-Encoding", "gzip, deflate, br",
              "Referer", "https://www.example.org/blog/", "Cookie",
              "session=abc123; theme=dark", "Connection", "keep-alive"));
}

static void test_invalid(void)
{
    /* line endings */
    BAD("GET / HTTP/1.1\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "\r\r\n", 400);
    BAD("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: ab\r\r\n\r\n", 400);
    BAD("\nGET / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("\r\rGET / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("\rGET / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("\r\n\nGET / HTTP/1.1\r\n" HOST "\r\n", 400);
    /* request line shape */
    BAD("GET  / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /  HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET\t/ HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /\tHTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1.1 \r\n" HOST "\r\n", 400);
    BAD(" GET / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GE@T / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GE(T / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("G\x80T / HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /a\x01z HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /a\x7fz HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /a\0z HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /a#frag HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET HTTP/1.1\r\n" HOST "\r\n", 400);
    BAD("GET /\r\n" HOST "\r\n", 400);
    BAD("GET / \r\n" HOST "\r\n", 400);
    BAD("GET\r\n\r\n", 400);
    /* only empty lines, then a line that is not a request line */
    BAD("\r\n\r\n\r\n\r\n\n", 400);
    /* versions */
    BAD("GET / http/1.1\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1.10\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/11\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1.x\r\n" HOST "\r\n", 400);
    BAD("GET / HTTP/1,1\r\n" HOST "\r\n", 400);
    BAD("GET / HTTQ", 400);
    BAD("GET / HTTP/a", 400);
    BAD("GET / HTTP/2.0\r\n" HOST "\r\n", 505);
    BAD("GET / HTTP/1.2\r\n" HOST "\r\n", 505);
    BAD("GET / HTTP/0.9\r\n" HOST "\r\n", 505);
    BAD("GET / HTTP/3.1\r\n" HOST "\r\n", 505);
    BAD("GET / HTTP/9.9\r\n", 505);
    /* Host */
    BAD("GET / HTTP/1.1\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    BAD("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400);
    /* field syntax */
    BAD("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\r\n b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\r\n\tb\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "NoColon\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST ": empty-name\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X(y): v\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X\"y: v\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X/y: v\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X\x80: v\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\0b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\x01\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\x08\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\x0b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\x1f\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\x7f\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n" HOST "X: a\nb\r\n\r\n", 400);
    /* Content-Length */
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: -5\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5 5\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5,5\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 5\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length:\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 0x10\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 1e3\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 1.0\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 1000000000000000000\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 99999999999999999999999\r\n"
        "\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 5\r\n"
        "\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\ncontent-length: 6\r\n"
        "\r\n",
        400);
    /* Transfer-Encoding */
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n",
        501);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        501);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: identity\r\n\r\n", 501);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: x\r\n\r\n", 501);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, gzip\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST
        "Transfer-Encoding: chunked, chunked\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \t \r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: , ,\r\n\r\n", 400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked;q=1\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked x\r\n\r\n",
        400);
    BAD("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: \"chunked\"\r\n\r\n",
        400);
    BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    /* incomplete heads already known to be bad */
    BAD("GET / HTTP/1.1\r\nHost: a\x01", 400);
    BAD("GET / HTTP/1.1\r\nHo st", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\n ", 400);
    BAD("GET /#", 400);
    BAD("GET / HTTP/2.0\r\nHost", 505);
}

static void test_limits(void)
{
    static const lx_http1_limits_t small = {20, 16, 3};
    char buf[20000];
    size_t n;

    /* request line of exactly the limit is fine; one more byte is not */
    {
        static const lx_http1_limits_t l29 = {29, 100, 10};
        OK("GET /234567890123456 HTTP/1.0\r\n\r\n", .lim = &l29, .v10 = 1);
        BADL("GET /2345678901234567 HTTP/1.0\r\n\r\n", 414, &l29, 0);
        BADL("GET /234567890123456789012345678", 414, &l29, 0);
        BADL("GET /23456789012345678901234567", 414, &l29, 0);
        /* a CR at position 29 ends the line at the limit, but badly */
        BADL("GET /23456789012345678901234\r\n", 400, &l29, 0);
        /* leading empty lines do not count against the request line */
        OK("\r\n\r\nGET /234567890123456 HTTP/1.0\r\n\r\n", .lim = &l29,
           .v10 = 1);
    }
    /* header line of exactly max_field_size (16) and one more */
    OK("GET / HTTP/1.0\r\nX: 2345678901234\r\n\r\n", .lim = &small, .v10 = 1,
       .h = H("X", "2345678901234"));
    BADL("GET / HTTP/1.0\r\nX: 23456789012345\r\n\r\n", 431, &small, 0);
    BADL("GET / HTTP/1.0\r\nX: 23456789012345", 431, &small, 0);
    BADL("GET / HTTP/1.0\r\nXXXXXXXXXXXXXXXXXXXXXXX", 431, &small, 0);
    BADL("GET / HTTP/1.0\r\nX:                      ", 431, &small, 0);
    BADL("GET / HTTP/1.0\r\nXXXXXXXXXXXXXXXX\r\n", 400, &small, 0);
    /* max_fields (3) */
    OK("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", .lim = &small,
       .v10 = 1, .h = H("A", "1", "B", "2", "C", "3"));
    BADL("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431, &small,
         0);
    BADL("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD", 431, &small, 0);
    /* capacity below max_fields counts as the limit */
    OK("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\n\r\n", .v10 = 1, .cap = 2);
    BADL("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431, NULL, 2);
    BADL("GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC", 431, NULL, 2);
    /* default limits with long inputs */
    n = (size_t)snprintf(buf, sizeof buf, "GET /");
    memset(buf + n, 'a', 8200);
    n += 8200;
    cur_line = __LINE__;
    {
        outcome_t o = parse_all_ways(buf, n, &deflim, MAXH);
        CHECK(o.ret == LX_ERR && o.status == 414, "long line: %d %d", o.ret,
              o.status);
    }
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    memset(buf + n, 'v', 8200);
    n += 8200;
    cur_line = __LINE__;
    {
        outcome_t o = parse_all_ways(buf, n, &deflim, MAXH);
        CHECK(o.ret == LX_ERR && o.status == 431, "long field: %d %d", o.ret,
              o.status);
    }
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: %d\r\n", i, i);
    cur_line = __LINE__;
    {
        outcome_t o = parse_all_ways(buf, n, &deflim, MAXH);
        CHECK(o.ret == LX_ERR && o.status == 431, "101 fields: %d %d", o.ret,
              o.status);
    }
    /* 99 + Host = 100 fields is fine */
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 99; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: %d\r\n", i, i);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "\r\n");
    cur_line = __LINE__;
    {
        outcome_t o = parse_all_ways(buf, n, &deflim, MAXH);
        CHECK(o.ret == (int)n && o.nh == 100, "100 fields: %d %zu", o.ret,
              o.nh);
    }
    /* too many leading empty lines */
    memset(buf, 0, sizeof buf);
    for (n = 0; n < 8200; n += 2)
        memcpy(buf + n, "\r\n", 2);
    cur_line = __LINE__;
    {
        outcome_t o = parse_all_ways(buf, n, &deflim, MAXH);
        CHECK(o.ret == LX_ERR && o.status == 400, "empty lines: %d %d", o.ret,
              o.status);
    }
}

static void test_again(void)
{
    AGAIN("");
    AGAIN("G");
    AGAIN("\r");
    AGAIN("\r\n");
    AGAIN("\r\n\r\n\r");
    AGAIN("GET");
    AGAIN("GET ");
    AGAIN("GET /");
    AGAIN("GET / HTTP/1.");
    AGAIN("GET / HTTP/1.1");
    AGAIN("GET / HTTP/1.1\r");
    AGAIN("GET / HTTP/1.1\r\n");
    AGAIN("GET / HTTP/2.0"); /* 505 needs the CRLF */
    AGAIN("GET / HTTP/1.1\r\nHost");
    AGAIN("GET / HTTP/1.1\r\nHost:  ");
    AGAIN("GET / HTTP/1.1\r\nHost: h\r");
    AGAIN("GET / HTTP/1.1\r\nHost: h\r\n");
    AGAIN("GET / HTTP/1.1\r\nHost: h\r\n\r");
    AGAIN(
        "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"); /* 501 at the end */
}

/* A caller that never re-sets num_headers across LX_AGAIN still works. */
static void test_reentry(void)
{
    static const char in[] = "GET /x HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n";
    lx_header_t h[4];
    lx_http1_req_t req;
    int st = 0, r;

    cur_line = __LINE__;
    n_cases++;
    req.headers = h;
    req.num_headers = 4;
    r = lx_http1_parse_request(in, 20, &req, &deflim, &st);
    CHECK(r == LX_AGAIN && req.num_headers == 4, "first call %d", r);
    r = lx_http1_parse_request(in, sizeof in - 1, &req, &deflim, &st);
    CHECK(r == (int)sizeof in - 1 && req.num_headers == 2, "second call %d",
          r);
}

/* ---- chunked decoder harness ---- */

typedef struct {
    int rc;       /* LX_CHUNKED_END, LX_ERR or LX_AGAIN (ran out) */
    size_t where; /* total consumed at END, error offset at LX_ERR */
    char *data;
    size_t dlen;
} chout_t;

/* Decode in pieces ending at cuts[]; take_one: take data one byte at a time.
 */
static chout_t ch_feed(const char *in, size_t len, const size_t *cuts,
                       size_t ncuts, int take_one)
{
    chout_t o = {LX_AGAIN, 0, malloc(len + 1), 0};
    lx_chunked_t d;
    size_t base = 0;

    lx_chunked_init(&d);
    for (size_t i = 0; i < ncuts; i++) {
        size_t plen = cuts[i] - base, off = 0;
        const char *b = place(in + base, plen);
        for (;;) {
            size_t c = 999999;
            int rc = lx_chunked_parse(&d, b + off, plen - off, &c);
            CHECK(c <= plen - off, "consumed %zu of %zu", c, plen - off);
            off += c;
            if (rc == LX_CHUNKED_DATA) {
                CHECK(d.remaining > 0, "DATA with nothing remaining");
                uint64_t k = plen - off;
                if (k > d.remaining)
                    k = d.remaining;
                if (take_one && k > 1)
                    k = 1;
                memcpy(o.data + o.dlen, b + off, (size_t)k);
                o.dlen += (size_t)k;
                off += (size_t)k;
                lx_chunked_take(&d, k);
                if (k == 0)
                    break;
                continue;
            }
            if (rc == LX_AGAIN) {
                CHECK(off == plen, "LX_AGAIN left %zu bytes", plen - off);
                break;
            }
            o.rc = rc;
            o.where = base + off;
            CHECK(rc == LX_CHUNKED_END || rc == LX_ERR, "rc %d", rc);
            if (rc == LX_ERR) {
                size_t c2;
                CHECK(lx_chunked_parse(&d, b, plen, &c2) == LX_ERR,
                      "error is not sticky");
            } else {
                size_t c2;
                CHECK(lx_chunked_parse(&d, b, plen, &c2) == LX_CHUNKED_END &&
                          c2 == 0,
                      "end is not sticky");
            }
            return o;
        }
        base = cuts[i];
    }
    return o;
}

static int ch_same(const chout_t *a, const chout_t *b)
{
    return a->rc == b->rc && a->where == b->where && a->dlen == b->dlen &&
           memcmp(a->data, b->data, a->dlen) == 0;
}

static chout_t ch_all_ways(const char *in, size_t len)
{
    size_t *cuts = malloc((len + 16) * sizeof *cuts);
    size_t one = len;
    chout_t whole = ch_feed(in, len, &one, 1, 0), o;
    int ok = 1;

    n_cases++;
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    o = ch_feed(in, len, cuts, len, 0);
    ok &= ch_same(&o, &whole);
    free(o.data);
    o = ch_feed(in, len, &one, 1, 1);
    ok &= ch_same(&o, &whole);
    free(o.data);
    for (int s = 0; s < 50; s++) {
        size_t n = 0, k = 1 + rnd() % 6;
        for (size_t i = 0; i < k && len > 1; i++)
            cuts[n++] = rnd() % len;
        cuts[n++] = len;
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        o = ch_feed(in, len, cuts, n, s & 1);
        ok &= ch_same(&o, &whole);
        free(o.data);
    }
    CHECK(ok, "chunked: split decoding disagrees with whole decoding");
    free(cuts);
    return whole;
}

static void ch_expect(int line, const char *in, size_t len, int rc,
                      const char *data, size_t dlen, size_t where)
{
    cur_line = line;
    chout_t o = ch_all_ways(in, len);
    CHECK(o.rc == rc, "chunked rc %d, want %d", o.rc, rc);
    if (rc == LX_CHUNKED_END) {
        CHECK(o.where == where, "consumed %zu, want %zu", o.where, where);
    }
    if (data)
        CHECK(o.dlen == dlen && memcmp(o.data, data, dlen) == 0,
              "data \"%.*s\", want \"%.*s\"", (int)o.dlen, o.data, (int)dlen,
              data);
    free(o.data);
}

#define CH_OK(in, data)                                           \
    ch_expect(__LINE__, in, sizeof(in) - 1, LX_CHUNKED_END, data, \
              sizeof(data) - 1, sizeof(in) - 1)
#define CH_OK_AT(in, data, at)                                    \
    ch_expect(__LINE__, in, sizeof(in) - 1, LX_CHUNKED_END, data, \
              sizeof(data) - 1, at)
#define CH_BAD(in) ch_expect(__LINE__, in, sizeof(in) - 1, LX_ERR, NULL, 0, 0)
#define CH_AGAIN(in) \
    ch_expect(__LINE__, in, sizeof(in) - 1, LX_AGAIN, NULL, 0, 0)

static void test_chunked(void)
{
    char big[20000];
    size_t n;

    CH_OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("0\r\n\r\n", "");
    CH_OK("000\r\n\r\n", "");
    CH_OK("3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n", "abcdef");
    CH_OK("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
          "0123456789abcdefghij");
    CH_OK("0005\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", "hello");
    CH_OK("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n");
    CH_OK("3\r\na\0b\r\n0\r\n\r\n", "a\0b");
    CH_OK("5;foo=bar\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("5 ; foo = bar\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("5\t;\tfoo\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("5;a=b;c=d;e\r\nhello\r\n0;last=1\r\n\r\n", "hello");
    CH_OK("5;a=\"x y\\\"z;\t\x80\"\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("5;a=\"\" ;b=c\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("5;a ;b\r\nhello\r\n0\r\n\r\n", "hello");
    CH_OK("0\r\nX-Trailer: a b\r\nEmpty:\r\n\r\n", "");
    CH_OK("1\r\nx\r\n0\r\nA:1\r\nB: \t\x80\r\n\r\n", "x");
    CH_OK_AT("2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "ab", 12);
    CH_OK_AT("0\r\n\r\n\r\n", "", 5);
    /* a big chunk and 64 trailers */
    n = (size_t)snprintf(big, sizeof big, "1388\r\n");
    memset(big + n, 'z', 5000);
    n += 5000;
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n0\r\n");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "T%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    cur_line = __LINE__;
    {
        chout_t o = ch_all_ways(big, n);
        CHECK(o.rc == LX_CHUNKED_END && o.where == n && o.dlen == 5000,
              "big: rc %d where %zu dlen %zu", o.rc, o.where, o.dlen);
        free(o.data);
    }
    /* 65 trailers */
    n = (size_t)snprintf(big, sizeof big, "0\r\n");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "T%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    cur_line = __LINE__;
    {
        chout_t o = ch_all_ways(big, n);
        CHECK(o.rc == LX_ERR, "65 trailers: rc %d", o.rc);
        free(o.data);
    }
    /* a trailer of 8192 bytes is fine, 8193 is not */
    for (int extra = 0; extra < 2; extra++) {
        n = (size_t)snprintf(big, sizeof big, "0\r\nX: ");
        memset(big + n, 'v', 8192 - 3 + (size_t)extra);
        n += 8192 - 3 + (size_t)extra;
        n += (size_t)snprintf(big + n, sizeof big - n, "\r\n\r\n");
        cur_line = __LINE__;
        chout_t o = ch_all_ways(big, n);
        CHECK(o.rc == (extra ? LX_ERR : LX_CHUNKED_END),
              "trailer of %d bytes: rc %d", 8192 + extra, o.rc);
        free(o.data);
    }
    /* a size line of 4096 bytes is fine, 4097 is not */
    for (int extra = 0; extra < 2; extra++) {
        n = (size_t)snprintf(big, sizeof big, "1;x=");
        memset(big + n, 'e', 4096 - 4 + (size_t)extra);
        n += 4096 - 4 + (size_t)extra;
        n += (size_t)snprintf(big + n, sizeof big - n, "\r\nQ\r\n0\r\n\r\n");
        cur_line = __LINE__;
        chout_t o = ch_all_ways(big, n);
        CHECK(o.rc == (extra ? LX_ERR : LX_CHUNKED_END),
              "size line of %d bytes: rc %d", 4096 + extra, o.rc);
        free(o.data);
    }
    /* incomplete */
    CH_AGAIN("");
    CH_AGAIN("5");
    CH_AGAIN("5\r\nhel");
    CH_AGAIN("5\r\nhello\r\n");
    CH_AGAIN("5\r\nhello\r\n0\r\n");
    CH_AGAIN("5\r\nhello\r\n0\r\nX: y\r\n");
    CH_AGAIN("5;a=\"open");
    /* invalid */
    CH_BAD("\r\n");
    CH_BAD(" 5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("0x5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("+5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("-5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("g\r\n");
    CH_BAD("5g\r\nhello\r\n0\r\n\r\n");
    CH_BAD("00000000000000005\r\nhello\r\n0\r\n\r\n");
    CH_BAD("00000000000000000\r\n\r\n");
    CH_BAD("5\nhello\r\n0\r\n\r\n");
    CH_BAD("5\rhello\r\n0\r\n\r\n");
    CH_BAD("5 \r\nhello\r\n0\r\n\r\n");
    CH_BAD("5\r\nhelloXX0\r\n\r\n");
    CH_BAD("5\r\nhello\n0\r\n\r\n");
    CH_BAD("5\r\nhello\r0\r\n\r\n");
    CH_BAD("5\r\nhello0\r\n\r\n");
    CH_BAD("5\r\nhello\r\n\r\n");
    CH_BAD("5;\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;=x\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a b\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=b c\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=b \r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\ty\x01\"\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\\\x7f\"\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a@=b\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5,6\r\nhello\r\n0\r\n\r\n");
    CH_BAD("0\r\nX: a\r\n b\r\n\r\n");
    CH_BAD("0\r\n X: a\r\n\r\n");
    CH_BAD("0\r\nX\r\n\r\n");
    CH_BAD("0\r\nX : a\r\n\r\n");
    CH_BAD("0\r\n: a\r\n\r\n");
    CH_BAD("0\r\nX: a\x01\r\n\r\n");
    CH_BAD("0\r\nX: a\nY: b\r\n\r\n");
    CH_BAD("0\r\nX: a\r\r\n\r\n");
    CH_BAD("0\r\n\n");
    CH_BAD("0\r\n\r\r");
    CH_BAD("0\n\r\n");
}

/* ---- speed ---- */

static void bench(void)
{
    static const char req[] =
        "GET /api/v1/items?id=12345&sort=desc HTTP/1.1\r\n"
        "Host: www.example.com\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Cookie: sid=0123456789abcdef\r\n"
        "Connection: keep-alive\r\n\r\n";
    lx_header_t h[MAXH];
    lx_http1_req_t r;
    struct timespec t0, t1;
    int st, iters = 200000;
    long sum = 0;

    r.headers = h;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < iters; i++) {
        r.num_headers = MAXH;
        sum += lx_http1_parse_request(req, sizeof req - 1, &r, &deflim, &st);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
                 (double)(t1.tv_nsec - t0.tv_nsec)) /
                iters;
    cur_line = __LINE__;
    CHECK(sum == (long)iters * (long)(sizeof req - 1), "bench parse failed");
    printf("bench: %zu-byte request, %.1f ns/request\n", sizeof req - 1, ns);
}

/* The helpers the response side uses: a token (a field name) and an
 * element of a comma-separated list, case aside. */
static void test_helpers(void)
{
    CHECK(lx_http1_is_token("Content-Type", 12), "a plain name");
    CHECK(lx_http1_is_token("!#$%&'*+-.^_`|~09azAZ", 21), "every symbol");
    CHECK(!lx_http1_is_token("", 0), "empty");
    const char *bad[] = {"X Y", "X:", "X\r",   "X\n",   "\"X\"", "X(",
                         "X,",  "X/", "X;",    "X=",    "X?",    "X@",
                         "X[",  "X{", "X\x7f", "X\x80", "X\xff", "X\t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!lx_http1_is_token(bad[i], strlen(bad[i])), "not a token: %s",
              bad[i]);
    for (int c = 0; c < 256; c++) {
        char name[12] = "abcdefghijk";
        name[c % 11] = (char)c;
        int expect = c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
        CHECK(lx_http1_is_token(name, 11) == expect, "byte 0x%02x", c);
    }
#define HAS(v, t) lx_http1_list_has(v, strlen(v), t, strlen(t))
    CHECK(HAS("close", "close"), "alone");
    CHECK(HAS("Keep-Alive, CLOSE", "close"), "second, upper case");
    CHECK(HAS(" ,\tclose\t, ", "close"), "with OWS and empty elements");
    CHECK(!HAS("closed", "close"), "a longer token");
    CHECK(!HAS("clos", "close"), "a shorter one");
    CHECK(!HAS("keep-alive", "close"), "another one");
    CHECK(!HAS("", "close"), "empty");
    CHECK(!HAS("x-close, close-x", "close"), "only whole elements");
#undef HAS
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_helpers();
    guard_init();
    test_valid();
    test_invalid();
    test_limits();
    test_again();
    test_reentry();
    test_chunked();
    bench();
    printf("%d cases\n", n_cases);
    return check_done();
}
