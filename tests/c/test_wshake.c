/* Unit tests of the WebSocket opening handshake (wshake.c). */
#include "../../csrc/http1.c"
#include "../../csrc/wshake.c"

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

static lx_header_t hdrs[32];

static int parse(const char *head, lx_http1_req_t *h)
{
    lx_http1_limits_t lim = {8190, 100, 8190};
    int status = 0;
    h->headers = hdrs;
    h->num_headers = 32;
    return lx_http1_parse_request(head, strlen(head), h, &lim, &status);
}

#define UP "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define V13 "Sec-WebSocket-Version: 13\r\n"

static int check(const char *head, lx_wshake_t *w)
{
    lx_http1_req_t h;
    if (parse(head, &h) <= 0)
        return -1;
    if (!lx_wshake_wanted(&h))
        return -2;
    return lx_wshake_check(&h, w);
}

static void test_check(void)
{
    lx_wshake_t w;
    CHECK(check("GET /chat HTTP/1.1\r\n" UP KEY V13
                "Origin: http://example.com\r\n"
                "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
                &w) == 0,
          "RFC 6455's example");
    CHECK(w.origin.len == 18 && w.protocols.len == 15, "its fields");
    CHECK(check("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &w) == -2, "no upgrade");
    CHECK(check("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
                "Connection: upgrade\r\n\r\n",
                &w) == -2,
          "another protocol");
    CHECK(check("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
                &w) == -2,
          "no Connection: upgrade");
    CHECK(check("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n"
                "Connection: keep-alive, Upgrade\r\n" KEY V13 "\r\n",
                &w) == 0,
          "names' case, lists");
    CHECK(check("POST / HTTP/1.1\r\n" UP KEY V13 "\r\n", &w) == 400, "POST");
    CHECK(check("GET / HTTP/1.0\r\n" UP KEY V13 "\r\n", &w) == 400,
          "HTTP/1.0");
    CHECK(check("GET / HTTP/1.1\r\n" UP KEY "\r\n", &w) == 426, "no version");
    CHECK(check("GET / HTTP/1.1\r\n" UP KEY "Sec-WebSocket-Version: 8\r\n\r\n",
                &w) == 426,
          "version 8");
    CHECK(check("GET / HTTP/1.1\r\n" UP V13 "\r\n", &w) == 400, "no key");
    CHECK(check("GET / HTTP/1.1\r\n" UP V13
                "Sec-WebSocket-Key: short==\r\n\r\n",
                &w) == 400,
          "short key");
    CHECK(check("GET / HTTP/1.1\r\n" UP V13
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n\r\n",
                &w) == 400,
          "a key of more than 16 bytes' bits");
    CHECK(check("GET / HTTP/1.1\r\n" UP V13
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n\r\n",
                &w) == 400,
          "not base64");
}

static void test_offers(void)
{
    lx_str_t o = {"chat, superchat,x-y", 19};
    CHECK(lx_wshake_offered(o, "chat", 4), "chat");
    CHECK(lx_wshake_offered(o, "superchat", 9), "superchat");
    CHECK(lx_wshake_offered(o, "x-y", 3), "the last");
    CHECK(!lx_wshake_offered(o, "hat", 3), "never a substring");
    CHECK(!lx_wshake_offered(o, "superchat,", 10), "nor more");
    CHECK(!lx_wshake_offered(o, "", 0), "nor nothing");
}

static int deflate_is(const char *ext, int max_bits, const char *answer)
{
    lx_str_t e = {ext, strlen(ext)};
    lx_deflate_t d;
    int on = lx_wshake_deflate(e, max_bits, &d);
    if (answer == NULL)
        return !on;
    char out[128];
    lx_wshake_deflate_answer(&d, out, sizeof(out));
    if (!on || strcmp(out, answer) != 0)
        printf("   got %d '%s'\n", on, on ? out : "");
    return on && strcmp(out, answer) == 0;
}

static void test_deflate(void)
{
    CHECK(deflate_is("permessage-deflate", 15, "permessage-deflate"), "plain");
    CHECK(deflate_is("permessage-deflate; client_max_window_bits", 15,
                     "permessage-deflate"),
          "what browsers send");
    CHECK(deflate_is("permessage-deflate; client_max_window_bits=10", 15,
                     "permessage-deflate; client_max_window_bits=10"),
          "client bits");
    CHECK(deflate_is("permessage-deflate; server_max_window_bits=10; "
                     "server_no_context_takeover",
                     15,
                     "permessage-deflate; server_no_context_takeover; "
                     "server_max_window_bits=10"),
          "server bits and no takeover");
    CHECK(deflate_is("permessage-deflate", 12,
                     "permessage-deflate; server_max_window_bits=12"),
          "our own bound");
    CHECK(deflate_is("permessage-deflate; server_max_window_bits=8", 15, NULL),
          "8 bits: declined (zlib cannot keep to it)");
    CHECK(deflate_is("permessage-deflate; server_max_window_bits=8, "
                     "permessage-deflate",
                     12, "permessage-deflate; server_max_window_bits=12"),
          "8 bits declined, the next offer taken");
    CHECK(deflate_is("permessage-deflate; client_no_context_takeover", 15,
                     "permessage-deflate; client_no_context_takeover"),
          "client no takeover");
    CHECK(
        deflate_is("permessage-deflate; server_max_window_bits=16", 15, NULL),
        "bits past 15");
    CHECK(deflate_is("permessage-deflate; server_max_window_bits", 15, NULL),
          "server bits without a value");
    CHECK(deflate_is("permessage-deflate; foo", 15, NULL), "unknown param");
    CHECK(deflate_is("permessage-deflate; server_no_context_takeover; "
                     "server_no_context_takeover",
                     15, NULL),
          "a parameter twice");
    CHECK(deflate_is("x-webkit-deflate-frame", 15, NULL), "another one");
    CHECK(deflate_is("permessage-deflate; foo, permessage-deflate", 15,
                     "permessage-deflate"),
          "the first acceptable offer");
    CHECK(deflate_is("permessage-deflate; client_max_window_bits=\"11\"", 15,
                     "permessage-deflate; client_max_window_bits=11"),
          "a quoted value");
}

/* The 101 into a buffer of exactly its bound (so that the sanitizer sees
 * a byte written past it), NUL-terminated: free it. */
static char *response(const lx_wshake_answer_t *a)
{
    char *out = malloc(lx_wshake_response_max(a) + 1);
    size_t n = lx_wshake_response(a, out);
    CHECK(n <= lx_wshake_response_max(a), "%zu bytes, within the bound", n);
    out[n] = 0;
    return out;
}

static void test_response(void)
{
    lx_deflate_t d = {1, 0, 1, 12, 15};
    const char *fields = "Set-Cookie: a=1\r\nContent-Length: 0\r\n"
                         "connection: keep-alive\r\n"
                         "Sec-WebSocket-Protocol: chat\r\n";
    lx_wshake_answer_t a = {
        .accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        .protocol = {"chat", 4},
        .deflate = &d,
        .fields = {fields, strlen(fields)},
        .server = {"Server: lichen\r\n", 16},
    };
    char *out = response(&a);
    CHECK(strcmp(out, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      "Sec-WebSocket-Protocol: chat\r\n"
                      "Sec-WebSocket-Extensions: permessage-deflate; "
                      "client_no_context_takeover; "
                      "server_max_window_bits=12\r\n"
                      "Set-Cookie: a=1\r\nServer: lichen\r\n\r\n") == 0,
          "the 101, the application's framing and ours left out: %s", out);
    free(out);
    lx_deflate_t all = {1, 1, 1, 9, 9};
    lx_wshake_answer_t every = {.accept = a.accept, .deflate = &all};
    out = response(&every);
    CHECK(strstr(out, "server_no_context_takeover; "
                      "client_no_context_takeover; "
                      "server_max_window_bits=9; "
                      "client_max_window_bits=9\r\n") != NULL,
          "every parameter: %s", out);
    free(out);
    const char *own = "Server: app\r\n";
    lx_wshake_answer_t b = {
        .accept = a.accept, .fields = {own, strlen(own)}, .server = a.server};
    out = response(&b);
    CHECK(strstr(out, "Server: app\r\n") != NULL &&
              strstr(out, "lichen") == NULL &&
              strstr(out, "Sec-WebSocket-Protocol") == NULL &&
              strstr(out, "Extensions") == NULL,
          "the application's Server, no protocol, no extension: %s", out);
    free(out);
    lx_str_t v;
    CHECK(lx_wshake_field(fields, strlen(fields),
                          "sec-websocket-protocol:", &v) &&
              v.len == 4 && memcmp(v.base, "chat", 4) == 0,
          "a field's value");
    CHECK(!lx_wshake_field(fields, strlen(fields), "origin:", &v),
          "no such field");
}

int main(void)
{
    test_check();
    test_offers();
    test_deflate();
    test_response();
    return check_done();
}
